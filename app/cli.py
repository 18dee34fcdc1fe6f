"""The ``rapport`` command: serve, db upgrade, keys, reindex, doctor, import, eval."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Literal

import click

from app.errors import BlobStoreUnavailable
from app.settings import Settings
from retrieval.errors import ModelLoadError

# What stops a start: the model or the photo store named by the settings is unusable.
_START_ERRORS = (ModelLoadError, BlobStoreUnavailable)


def _settings() -> Settings:
    try:
        return Settings()
    except Exception as error:  # pydantic's message names every bad variable
        raise click.ClickException(f"invalid configuration: {error}") from None


@click.group()
@click.option("--log-level", default="info", show_default=True)
def main(log_level: str) -> None:
    """rapport: personal concepts for multimodal LLMs."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--migrate/--no-migrate",
    default=True,
    show_default=True,
    help="bring the database schema up to date before serving",
)
def serve(host: str, port: int, workers: int, migrate: bool) -> None:
    """Run the HTTP service (migrating the database first)."""
    import uvicorn

    from app.blobs import open_blob_store
    from app.db.migrate import upgrade
    from app.http_server import uvicorn_options
    from app.main import build_services, create_app, load_encoder

    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if migrate:
        upgrade(settings.resolved_database_url)
    with _metrics_dir(settings.prometheus_multiproc_dir, shared=workers > 1):
        try:
            if workers == 1:
                app = create_app(services=build_services(settings))
                uvicorn.run(
                    app, host=host, port=port, log_level="info", **uvicorn_options(settings)
                )
                return
            # Check the store and the model once here, so a bad setting fails with one
            # message, not N.
            open_blob_store(settings).close()
            load_encoder(settings)
        except _START_ERRORS as error:
            click.echo(f"error: {error.detail}", err=True)
            sys.exit(2)
        uvicorn.run(
            "app.main:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            **uvicorn_options(settings),
        )


@contextmanager
def _metrics_dir(configured: Path | None, *, shared: bool) -> Iterator[None]:
    """Where the workers write their metrics, so that each ``/metrics`` answers for all.

    The operator's PROMETHEUS_MULTIPROC_DIR is emptied first (values of an earlier run
    would count again); with several workers and none configured, a private directory
    is made for this run and removed after it.
    """
    if configured is not None:
        for stale in configured.glob("*.db"):
            stale.unlink()
        yield
        return
    if not shared:
        yield
        return
    private = Path(tempfile.mkdtemp(prefix="rapport-metrics-"))
    # Read by prometheus_client when each worker imports it.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(private)
    try:
        yield
    finally:
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]
        shutil.rmtree(private, ignore_errors=True)


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply Alembic migrations to RAPPORT_DATABASE_URL."""
    from app.db.migrate import upgrade

    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url, revision)


@main.group()
def keys() -> None:
    """API keys of tenants (apps)."""


def _sessions():  # type: ignore[no-untyped-def]
    from app.db.engine import make_engine, make_sessionmaker

    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return make_sessionmaker(make_engine(settings.resolved_database_url))


def _duration(value: str | None) -> timedelta | None:
    if value is None:
        return None
    units = {"d": "days", "h": "hours", "m": "minutes"}
    number, unit = value[:-1], value[-1:]
    if unit not in units or not number.isdigit() or int(number) == 0:
        raise click.BadParameter("use a positive number of days, hours or minutes: 90d, 12h, 30m")
    return timedelta(**{units[unit]: int(number)})


@keys.command("create")
@click.option("--tenant", required=True, help="tenant (app) name; created if new")
@click.option("--expires-in", default=None, help="e.g. 90d, 12h, 30m; default: never")
def keys_create(tenant: str, expires_in: str | None) -> None:
    """Create an API key and print it alone on stdout (only its keyed hash is stored)."""
    from app.db.models import utcnow
    from app.keys import create_key

    lifetime = _duration(expires_in)
    expires_at = utcnow() + lifetime if lifetime else None
    settings = _settings()
    with _sessions()() as session:
        key = create_key(
            session=session, tenant_name=tenant, secret=settings.key_secret, expires_at=expires_at
        )
        session.commit()
    click.echo(key)


@keys.command("revoke")
@click.argument("key_or_prefix")
def keys_revoke(key_or_prefix: str) -> None:
    """Revoke a key, given in full or by its prefix (the 12 characters after 'rk_')."""
    from app.keys import revoke_key

    with _sessions()() as session:
        revoked = revoke_key(session=session, key_or_prefix=key_or_prefix)
        session.commit()
    if not revoked:
        raise click.ClickException("no live key matches")
    click.echo("revoked", err=True)


@main.command()
def reindex() -> None:
    """Embed every stored photo that has no vector of the configured model."""
    from app.main import build_services
    from app.usecases.reindex import reindex_all

    try:
        services = build_services(_settings())
    except _START_ERRORS as error:
        raise click.ClickException(error.detail) from None
    try:
        count = reindex_all(services, progress=lambda done: click.echo(f"{done} photos", err=True))
    finally:
        services.close()
    click.echo(f"embedded {count} photos with {services.encoder.model_id}", err=True)


@main.command()
@click.option(
    "--repair",
    is_flag=True,
    help="delete unreferenced files older than RAPPORT_DOCTOR_GRACE_S and unusable rows",
)
def doctor(repair: bool) -> None:
    """Check that the database and the photo folder agree (exit status 1: problems remain)."""
    from app.blobs import open_blob_store
    from app.db.engine import make_engine, make_sessionmaker
    from app.usecases import doctor as checks
    from retrieval.encoder import model_id_of

    settings = _settings()
    try:
        # Only the configured model's id is needed, not the model: no weights are loaded.
        model_id = model_id_of(settings.encoder_config())
        blobs = open_blob_store(settings)
    except _START_ERRORS as error:
        raise click.ClickException(error.detail) from None
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


@main.command("import")
@click.argument("source", type=click.Path(exists=True))
@click.option("--tenant", required=True, help="tenant (app) name; created if new")
@click.option("--user", required=True, help="the app's own id of the end user")
def import_(source: str, tenant: str, user: str) -> None:
    """Register the concepts of a folder tree or a RAP database.json for one user.

    Brings the database schema up to date first. Running it again adds only photos
    not stored yet. Exit status 1: something failed.
    """
    from tqdm import tqdm

    from app.db.migrate import upgrade
    from app.main import build_services
    from app.usecases.importer import import_concepts
    from retrieval.errors import RapportError

    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    try:
        services = build_services(settings)
    except _START_ERRORS as error:
        raise click.ClickException(error.detail) from None
    bar = tqdm(unit="photo", file=sys.stderr, disable=None)

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


@main.command("eval")
@click.argument("dataset", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="output folder")
@click.option("--references", default=3, show_default=True, type=click.IntRange(min=1))
@click.option("--regions", default="whole", type=click.Choice(["whole", "grid"]))
@click.option("--aggregation", default="best", type=click.Choice(["best", "winner"]))
@click.option(
    "--region-encoding",
    default="crop",
    type=click.Choice(["crop", "pooled"]),
    help="grid regions: crops, or pooled from one pass (torchvision conv nets)",
)
@click.option("--collages", default=40, show_default=True, type=click.IntRange(min=0))
@click.option("--seed", default=0, show_default=True, help="draws the collages")
def eval_(
    dataset: str,
    out: str,
    regions: str,
    region_encoding: Literal["crop", "pooled"],
    collages: int,
    **options: object,
) -> None:
    """Measure the configured encoder's retrieval quality on a folder of concept folders."""
    from app.main import load_encoder
    from retrieval.evaluation import format_table, run_eval
    from retrieval.regions import RegionConfig

    try:
        report = run_eval(
            dataset,
            out,
            load_encoder(_settings()),
            regions=RegionConfig(
                kind="grid" if regions == "grid" else "whole", encoding=region_encoding
            ),
            collages=collages > 0,
            collage_count=collages,
            **options,
        )
    except ModelLoadError as error:
        raise click.ClickException(error.detail) from None
    except ValueError as error:  # a dataset the options cannot evaluate
        raise click.ClickException(str(error)) from None
    except ModuleNotFoundError as error:
        raise click.ClickException(f"{error}; plots need: pip install 'rapport[eval]'") from None
    click.echo(format_table(report) + "\n")
    for name in ("report.json", "table.txt", "scores.png", "precision_recall.png"):
        click.echo(f"wrote {click.format_filename(out)}/{name}")
