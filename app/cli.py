"""The ``rapport`` command: serve, db upgrade, keys, reindex, doctor, import, eval.

Every command that touches the database brings its schema up to date first, logs which
data folder and database it uses, and fails at start-up with one line (exit status 2).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import click

from app import version
from app.cli_keys import keys
from app.cli_support import (
    StartupError,
    configure_logging,
    load_settings,
    log_start,
    open_database,
    where,
)
from app.errors import BlobStoreUnavailable
from retrieval.errors import ModelLoadError

if TYPE_CHECKING:
    from app.services import Services
    from app.settings import Settings

logger = logging.getLogger("rapport")

# What stops a start: the model or the photo store named by the settings is unusable.
_START_ERRORS = (ModelLoadError, BlobStoreUnavailable)


@click.group()
@click.version_option(version(), prog_name="rapport")
@click.option("--log-level", default="info", show_default=True)
def main(log_level: str) -> None:
    """rapport: personal concepts for multimodal LLMs."""
    configure_logging(log_level)


main.add_command(keys)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--migrate/--no-migrate",
    default=True,
    show_default=True,
    help="bring the database schema up to date before serving (else: refuse an old schema)",
)
def serve(host: str, port: int, workers: int, migrate: bool) -> None:
    """Run the HTTP service (migrating the database first)."""
    import uvicorn

    from app.blobs import open_blob_store
    from app.http_server import uvicorn_options
    from app.main import build_services, create_app, load_encoder

    settings = load_settings()
    log_start("serve", settings)
    open_database(settings, revision="head" if migrate else None)
    with _metrics_dir(settings.prometheus_multiproc_dir, shared=workers > 1):
        try:
            if workers == 1:
                app = create_app(services=build_services(settings), freeze_heap=settings.gc_freeze)
                uvicorn.run(
                    app, host=host, port=port, log_level="info", **uvicorn_options(settings)
                )
                return
            # Check the store and the model once here, so a bad setting fails with one
            # message, not N.
            open_blob_store(settings).close()
            load_encoder(settings)
        except _START_ERRORS as error:
            raise StartupError(error.detail) from None
        uvicorn.run(
            "app.main:served_app",
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
    settings = load_settings()
    log_start("db upgrade", settings)
    open_database(settings, revision=revision)
    click.echo(f"database at revision {revision}: {where(settings)}", err=True)


def _services(settings: Settings) -> Services:
    from app.main import build_services

    try:
        return build_services(settings)
    except _START_ERRORS as error:
        raise StartupError(error.detail) from None


@main.command()
def reindex() -> None:
    """Embed every stored photo that has no vector of the configured model."""
    from app.usecases.reindex import reindex_all

    settings = load_settings()
    log_start("reindex", settings)
    click.echo(f"using {where(settings)}, model {_model_named(settings)}", err=True)
    open_database(settings)
    services = _services(settings)
    try:
        count = reindex_all(services, progress=lambda done: click.echo(f"{done} photos", err=True))
    finally:
        services.close()
    click.echo(f"embedded {count} photos with {services.encoder.model_id}", err=True)


def _model_named(settings: Settings) -> str:
    return f"{settings.encoder_family}:{settings.clip_model}:{settings.clip_pretrained}"


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

    from app.usecases.importer import import_concepts
    from retrieval.errors import RapportError

    settings = load_settings()
    log_start("import", settings)
    open_database(settings)
    services = _services(settings)
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


PLOTS_HINT = (
    "plots skipped: matplotlib is not installed (pip install matplotlib, or "
    "pip install -e '.[eval]' in the rapport checkout)"
)


@main.command("eval")
@click.argument("dataset", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="output folder")
@click.option("--references", default=3, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--regions",
    default=None,
    type=click.Choice(["whole", "grid"]),
    help="how query photos are cut into regions  [default: RAPPORT_REGIONS and its "
    "RAPPORT_REGION_* settings, as the service uses them: whole unless set]",
)
@click.option(
    "--aggregation",
    default=None,
    type=click.Choice(["best", "winner"]),
    help="how the scores of several regions of a photo combine  "
    "[default: RAPPORT_REGION_AGGREGATION, as the service uses it: winner unless set]",
)
@click.option(
    "--region-encoding",
    default=None,
    type=click.Choice(["crop", "pooled"]),
    help="grid regions: crops, or pooled from one pass (torchvision conv nets)  "
    "[default: RAPPORT_REGION_ENCODING: crop unless set]",
)
@click.option("--collages", default=40, show_default=True, type=click.IntRange(min=0))
@click.option("--seed", default=0, show_default=True, help="draws the collages")
def eval_(
    dataset: str,
    out: str,
    regions: Literal["whole", "grid"] | None,
    region_encoding: Literal["crop", "pooled"] | None,
    collages: int,
    aggregation: str | None,
    **options: object,
) -> None:
    """Measure the configured encoder's retrieval quality on a folder of concept folders."""
    from dataclasses import replace

    from app.main import load_encoder
    from retrieval.evaluation import format_table, run_eval

    settings = load_settings()
    logger.info("rapport %s eval: model %s", version(), _model_named(settings))
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        plots = False
    else:
        plots = True
    try:
        report = run_eval(
            dataset,
            out,
            load_encoder(settings),
            # The service's regions and aggregation unless the options say otherwise.
            regions=replace(
                settings.region_config(),
                kind=regions or settings.regions,
                encoding=region_encoding or settings.region_encoding,
            ),
            aggregation=aggregation or settings.region_aggregation,
            collages=collages > 0,
            collage_count=collages,
            plots=plots,
            **options,
        )
    except ModelLoadError as error:
        raise StartupError(error.detail) from None
    except ValueError as error:  # a dataset the options cannot evaluate
        raise click.ClickException(str(error)) from None
    click.echo(format_table(report) + "\n")
    written = ["report.json", "table.txt"] + (
        ["scores.png", "precision_recall.png"] if plots else []
    )
    for name in written:
        click.echo(f"wrote {click.format_filename(out)}/{name}")
    if not plots:
        click.echo(PLOTS_HINT, err=True)
