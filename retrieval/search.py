"""The one query pipeline: photos -> regions -> vectors -> a score per concept.

The service's retrieval and ``rapport eval`` both call ``search_photos``, so
the evaluation measures exactly what is served.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import numpy as np
from PIL import Image

from retrieval.config import Aggregation, RegionConfig, RegionEncoding
from retrieval.image_encoder import ImageEncoder
from retrieval.index import UserIndex
from retrieval.matching import search_concepts
from retrieval.regions import Box, Region, RegionProposer

Stage = Callable[[str], AbstractContextManager[object]]


@dataclass(frozen=True)
class SearchOptions:
    """How photos are searched. ``aggregation`` applies when the photos give more than
    one region (one region is always scored ``"best"``, since ``"winner"`` would keep
    only its top concept). ``encoding`` and ``pooled_side`` as in ``RegionConfig``;
    ``categories`` are words the detector looks for."""

    aggregation: Aggregation = "winner"
    encoding: RegionEncoding = "crop"
    pooled_side: int = 320
    categories: tuple[str, ...] = ()

    @classmethod
    def of(
        cls, regions: RegionConfig, aggregation: Aggregation, categories: Sequence[str] = ()
    ) -> SearchOptions:
        return cls(aggregation, regions.encoding, regions.pooled_side, tuple(categories))


@dataclass(frozen=True)
class RegionMatch:
    """A concept (``label``) and its score, seen in region ``region`` of the search:
    ``box`` (None: the whole photo) in the pixels of ``photos[photo]``."""

    label: str
    score: float
    photo: int
    region: int
    box: Box | None


@dataclass(frozen=True)
class PhotoSearch:
    """Every concept of the index that any region matched, best first, and every
    region searched (photo by photo, each photo's whole first): its photo, its box
    (None: the whole photo) and its vector. ``pooled``: the vectors were pooled from
    one forward pass per photo (decide with ``pooled=True``)."""

    matches: list[RegionMatch]
    vectors: np.ndarray
    regions: list[tuple[int, Box | None]]
    pooled: bool = False


def search_photos(
    index: UserIndex,
    encoder: ImageEncoder,
    proposer: RegionProposer,
    photos: Sequence[Image.Image],
    options: SearchOptions = SearchOptions(),
    *,
    stage: Stage | None = None,
) -> PhotoSearch:
    """Cut each photo into regions (``proposer``), encode them all (crops in one batch,
    or pooled per photo), and score the index's concepts over them (``aggregation``).

    ``stage(name)`` times the steps ("regions", "encode", "search") when given.
    """
    timed = stage or (lambda name: nullcontext())
    with timed("regions"):
        proposals = [proposer.propose(photo, options.categories) for photo in photos]
    with timed("encode"):
        vectors = encode_regions(encoder, photos, proposals, options)
    pooled = pools(encoder, proposals, options)
    located = [(p, region) for p, proposed in enumerate(proposals) for region in proposed]
    with timed("search"):
        aggregation = options.aggregation if len(located) > 1 else "best"
        hits = search_concepts(
            index, vectors, top_k=len(index), min_score=-math.inf, aggregation=aggregation
        )
    matches = [
        RegionMatch(
            label=hit.label,
            score=hit.score,
            photo=located[hit.region][0],
            region=hit.region,
            box=located[hit.region][1].box,
        )
        for hit in hits
    ]
    regions = [(p, region.box) for p, region in located]
    return PhotoSearch(matches, vectors, regions, pooled)


def pools(
    encoder: ImageEncoder, proposals: Sequence[Sequence[Region]], options: SearchOptions
) -> bool:
    """Whether ``encode_regions`` pools these regions from one pass per photo."""
    return (
        options.encoding == "pooled"
        and encoder.pools_regions
        and any(len(proposed) > 1 for proposed in proposals)
    )


def encode_regions(
    encoder: ImageEncoder,
    photos: Sequence[Image.Image],
    proposals: Sequence[Sequence[Region]],
    options: SearchOptions,
) -> np.ndarray:
    """Every region's vector, in order: pooled per photo when the encoder pools regions
    (``pools``), else crops in one batch."""
    if pools(encoder, proposals, options):
        boxed = [
            (photo, [region.box for region in proposed[1:] if region.box is not None])
            for photo, proposed in zip(photos, proposals, strict=True)
        ]
        return np.concatenate(encoder.encode_regions_of(boxed, options.pooled_side))
    return encoder.encode_images([region.image for proposed in proposals for region in proposed])
