"""``rapport serve``: the HTTP service, one process or several workers."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from app.cli.support import START_ERRORS, StartupError, load_settings, log_start, open_database


@click.command()
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

    from app.http.server import uvicorn_options
    from app.main import build_services, create_app, load_encoder
    from app.storage.blobs import open_blob_store

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
        except START_ERRORS as error:
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
