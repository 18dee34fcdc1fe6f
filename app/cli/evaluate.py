"""``rapport eval``: the configured encoder's retrieval quality on a labelled folder."""

from __future__ import annotations

import logging
from typing import Literal

import click

from app import version
from app.cli.support import StartupError, load_settings, model_named
from retrieval.errors import ModelLoadError

logger = logging.getLogger("rapport")

PLOTS_HINT = (
    "plots skipped: matplotlib is not installed (pip install matplotlib, or "
    "pip install -e '.[eval]' in the rapport checkout)"
)


@click.command("eval")
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
@click.option("--seed", default=0, show_default=True, help="draws the collages and open-set users")
@click.option(
    "--open-set-users",
    default=10,
    show_default=True,
    type=click.IntRange(min=0),
    help="simulated users per number of concepts (1, 5, 15, 30 and half the subjects) "
    "for the open-set protocol; 0 skips it",
)
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
    logger.info("rapport %s eval: model %s", version(), model_named(settings))
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
    if plots and report.open_set:
        written.append("open_set.png")
    for name in written:
        click.echo(f"wrote {click.format_filename(out)}/{name}")
    if not plots:
        click.echo(PLOTS_HINT, err=True)
