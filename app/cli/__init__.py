"""The ``rapport`` command: serve, db upgrade, keys, reindex, doctor, import, eval, settings.

Every command that touches the database brings its schema up to date first, logs which
data folder and database it uses, and fails at start-up with one line (exit status 2).
Each command lives in its own module of this package; this one only groups them.
"""

from __future__ import annotations

import os

import click

from app import logs, version
from app.cli.evaluate import eval_
from app.cli.keys import keys
from app.cli.maintenance import db, doctor, import_, reindex
from app.cli.reference import settings_reference
from app.cli.serve import serve
from app.cli.support import configure_logging


@click.group()
@click.version_option(version(), prog_name="rapport")
@click.option(
    "--log-level", default="info", show_default=True, envvar=logs.LEVEL_VARIABLE, show_envvar=True
)
def main(log_level: str) -> None:
    """rapport: personal concepts for multimodal LLMs."""
    configure_logging(log_level)
    # For the workers of ``serve --workers N``, which configure their own logging.
    os.environ[logs.LEVEL_VARIABLE] = log_level


for command in (serve, db, keys, reindex, doctor, import_, eval_, settings_reference):
    main.add_command(command)
