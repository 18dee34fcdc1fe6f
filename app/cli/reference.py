"""``rapport settings``: the settings reference, as docs/configuration.md holds it."""

from __future__ import annotations

import click

from app.settings_reference import render


@click.command("settings")
def settings_reference() -> None:
    """Print every setting with its default and meaning (Markdown)."""
    click.echo(render(), nl=False)
