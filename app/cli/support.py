"""What every ``rapport`` command does first: logging, settings, the database, one-line failures."""

from __future__ import annotations

import difflib
import logging
import os
import shutil
from collections.abc import Mapping
from typing import TYPE_CHECKING

import click
from pydantic import ValidationError
from sqlalchemy import exc as sql_errors

from app import logs, version
from app.domain.errors import BlobStoreUnavailable
from app.logs import LEVEL_VARIABLE
from app.settings import Settings
from app.storage.db.engine import shown_url
from retrieval.errors import ModelLoadError

if TYPE_CHECKING:
    from app.services import Services

logger = logging.getLogger("rapport")


class StartupError(click.ClickException):
    """A failure the operator fixes before anything runs: one line on stderr, exit status 2."""

    exit_code = 2

    def show(self, file: object = None) -> None:
        click.echo(f"error: {self.message}", err=True)


def configure_logging(level: str) -> None:
    try:
        logs.configure(level)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--log-level") from None


def load_settings() -> Settings:
    """The settings of this process, or a StartupError naming each bad RAPPORT_* variable.
    A RAPPORT_* variable that is no setting (a misspelt name would otherwise be ignored
    in silence) is logged as a warning, with the nearest setting's name."""
    for line in unknown_variables(os.environ):
        logger.warning("%s", line)
    try:
        return Settings()
    except ValidationError as error:
        problems = "; ".join(
            f"{_variable(item['loc'])}: {item['msg']}" for item in error.errors(include_url=False)
        )
        raise StartupError(f"invalid configuration: {problems}") from None


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """One line per ``RAPPORT_*`` variable of ``environ`` that no setting reads."""
    known = {f"RAPPORT_{name.upper()}" for name in Settings.model_fields} | {LEVEL_VARIABLE}
    lines = []
    for name in sorted(environ):
        if not name.startswith("RAPPORT_") or name in known or name.startswith("RAPPORT_TEST_"):
            continue
        near = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
        hint = f"; did you mean {near[0]}?" if near else ""
        lines.append(f"{name} is not a rapport setting and is ignored{hint}")
    return lines


def _variable(loc: tuple[object, ...]) -> str:
    if not loc:
        return "settings"
    return f"RAPPORT_{str(loc[0]).upper()}"


def where(settings: Settings) -> str:
    """Which data this process uses: the resolved data folder and database (no password)."""
    return (
        f"data folder {settings.data_dir.resolve()}, "
        f"database {shown_url(settings.resolved_database_url)}"
    )


def log_start(command: str, settings: Settings) -> None:
    logger.info("rapport %s %s: %s", version(), command, where(settings))


def open_database(settings: Settings, *, revision: str | None = "head") -> None:
    """Make the data folder and bring the database schema to ``revision`` (None: only check
    that it is up to date); StartupError in one line otherwise.

    A data folder this call creates is removed again when the database cannot be used, so a
    command that fails leaves nothing behind in the current directory.
    """
    from app.storage.db.migrate import check_current, upgrade

    folder = settings.data_dir
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if revision is not None:
            upgrade(settings.resolved_database_url, revision)
        else:
            check_current(settings.resolved_database_url)
    except Exception as error:
        if created:
            shutil.rmtree(folder, ignore_errors=True)
        raise StartupError(database_problem(settings, error)) from None


def database_problem(settings: Settings, error: BaseException) -> str:
    """One line: which database (RAPPORT_DATABASE_URL, password hidden) and why it failed."""
    from app.storage.db.migrate import SchemaNotCurrent

    if settings.database_url is None:
        named = (
            f"the database {shown_url(settings.resolved_database_url)} "
            f"(RAPPORT_DATABASE_URL is unset: a SQLite file in RAPPORT_DATA_DIR)"
        )
    else:
        named = f"RAPPORT_DATABASE_URL={shown_url(settings.database_url)}"
    if isinstance(error, SchemaNotCurrent):
        return f"{named}: {error}"
    cause = getattr(error, "orig", None) or error
    text = " ".join(str(cause).split()) or type(cause).__name__
    if isinstance(error, sql_errors.ArgumentError | sql_errors.NoSuchModuleError):
        return f"{named} is not a usable SQLAlchemy URL: {text}"
    return f"cannot use {named}: {type(cause).__name__}: {text}"


# What stops a start: the model or the photo store named by the settings is unusable.
START_ERRORS = (ModelLoadError, BlobStoreUnavailable)


def build_services_or_exit(settings: Settings) -> Services:
    """The service's parts, or one line and exit status 2 if the model or store is unusable."""
    from app.main import build_services

    try:
        return build_services(settings)
    except START_ERRORS as error:
        raise StartupError(error.detail) from None


def model_named(settings: Settings) -> str:
    """The configured encoder as ``family:model:pretrained``, for start-up lines."""
    return f"{settings.encoder_family}:{settings.clip_model}:{settings.clip_pretrained}"
