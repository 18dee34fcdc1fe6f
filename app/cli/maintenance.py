"""Commands on the stored data: ``db upgrade``, ``reindex``, ``doctor``, ``import``."""

from __future__ import annotations

import os
import sys

import click

from app.cli.support import (
    StartupError,
    build_services_or_exit,
    load_settings,
    log_start,
    model_named,
    open_database,
    where,
)
from app.domain.errors import BlobStoreUnavailable
from retrieval.errors import ModelLoadError


@click.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply Alembic migrations to RAPPORT_DATABASE_URL."""
    settings = load_settings()
    log_start("db upgrade", settings)
    open_database(settings, revision=revision)
    click.echo(f"database at revision {revision}: {where(settings)}", err=True)


@click.command()
def reindex() -> None:
    """Embed every stored photo that has no vector of the configured model."""
    from app.usecases.reindex import reindex_all

    settings = load_settings()
    log_start("reindex", settings)
    click.echo(f"using {where(settings)}, model {model_named(settings)}", err=True)
    open_database(settings)
    services = build_services_or_exit(settings)
    try:
        count = reindex_all(services, progress=lambda done: click.echo(f"{done} photos", err=True))
    finally:
        services.close()
    click.echo(f"embedded {count} photos with {services.encoder.model_id}", err=True)


@click.command()
@click.option(
    "--repair",
    is_flag=True,
    help="delete unreferenced files older than RAPPORT_DOCTOR_GRACE_S and unusable rows",
)
def doctor(repair: bool) -> None:
    """Check that the database and the photo folder agree (exit status 1: problems remain)."""
    from app.storage.blobs import open_blob_store
    from app.storage.db.engine import make_engine, make_sessionmaker
    from app.usecases import doctor as checks
    from retrieval.encoders import model_id_of

    settings = load_settings()
    log_start("doctor", settings)
    try:
        # Only the configured model's id is needed, not the model: no weights are loaded.
        model_id = model_id_of(settings.encoder_config())
    except ModelLoadError as error:
        raise StartupError(error.detail) from None
    open_database(settings)  # first: a database it cannot use leaves no photo folder behind
    try:
        blobs = open_blob_store(settings)
    except BlobStoreUnavailable as error:
        raise StartupError(error.detail) from None
    photos = settings.blob_store or settings.resolved_blob_dir
    click.echo(f"using {where(settings)}, photos {photos}, model {model_id}")
    engine = make_engine(settings.resolved_database_url)
    storage = checks.Storage(settings, make_sessionmaker(engine), blobs, model_id)
    try:
        report = checks.repair(storage) if repair else checks.check(storage)
    except BlobStoreUnavailable as error:
        raise click.ClickException(error.detail) from None
    finally:
        engine.dispose()
        blobs.close()
    for line in report.lines():
        click.echo(line)
    sys.exit(1 if report.problems else 0)


@click.command("import")
@click.argument("source", type=click.Path(exists=True))
@click.option("--tenant", required=True, help="tenant (app) name; created if new")
@click.option("--user", required=True, help="the app's own id of the end user")
def import_(source: str, tenant: str, user: str) -> None:
    """Register the concepts of a folder tree or a RAP database.json for one user.

    Brings the database schema up to date first. Running it again adds only photos
    not stored yet. Exit status 1: something failed.
    """
    from tqdm import tqdm

    from app.usecases.importer import import_concepts
    from retrieval.errors import RapportError

    settings = load_settings()
    log_start("import", settings)
    open_database(settings)
    services = build_services_or_exit(settings)
    # In a terminal only. One that reports no size (0 x 0, tqdm then draws nothing) still
    # gets a bar.
    sized = _columns() > 0
    bar = tqdm(
        unit="photo",
        file=sys.stderr,
        disable=None,
        ncols=None if sized else 80,
        nrows=None if sized else 24,
    )

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        report = import_concepts(
            services, tenant_name=tenant, external_user_id=user, root=source, progress=progress
        )
    except RapportError as error:
        raise click.ClickException(error.detail) from None
    finally:
        bar.close()
        services.close()
    for line in report.lines():
        click.echo(line)
    sys.exit(1 if report.failures else 0)


def _columns() -> int:
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError):
        return 0
