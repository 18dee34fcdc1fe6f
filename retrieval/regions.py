"""Region proposers: which parts of a query photo are encoded and searched.

Every proposer returns the whole photo first, then crops of it, so a caller
can always tell which hit came from the whole photo (region 0).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, get_args

import torch
from PIL import Image

from retrieval.config import RegionConfig, RegionKind
from retrieval.devices import resolve_device
from retrieval.errors import ModelLoadError
from retrieval.hub import require_hub

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Region:
    """A part of a photo: ``box`` is (x0, y0, x1, y1) in its pixels, None for all of it."""

    box: Box | None
    image: Image.Image


class RegionProposer(Protocol):
    def propose(self, image: Image.Image, categories: Sequence[str] = ()) -> list[Region]:
        """The whole photo first, then crops of it."""
        ...


def open_region_proposer(config: RegionConfig) -> RegionProposer:
    """The proposer ``config.kind`` names; ValueError lists the valid kinds."""
    if config.kind == "whole":
        return WholePhoto()
    if config.kind == "grid":
        return GridRegions(scales=config.grid_scales, overlap=config.grid_overlap)
    if config.kind == "detector":
        return DetectorRegions.from_config(config)
    raise ValueError(
        f"unknown region kind {config.kind!r}; known: {', '.join(get_args(RegionKind))}"
    )


class WholePhoto:
    """The photo alone, as one region."""

    def propose(self, image: Image.Image, categories: Sequence[str] = ()) -> list[Region]:
        return [Region(box=None, image=image)]


class GridRegions:
    """The photo, then a fixed multi-scale grid of overlapping tiles: no model, no cost."""

    def __init__(self, scales: Sequence[int] = (2, 3), overlap: float = 0.25) -> None:
        if not scales or any(scale < 1 for scale in scales):
            raise ValueError(f"grid scales must be integers >= 1, got {tuple(scales)}")
        if not 0 <= overlap < 1:
            raise ValueError(f"grid overlap must be in [0, 1), got {overlap}")
        self.scales = tuple(scales)
        self.overlap = overlap

    def boxes(self, width: int, height: int) -> list[Box]:
        """The tiles of a ``width`` x ``height`` photo, scale by scale, row by row."""
        boxes: list[Box] = []
        for scale in self.scales:
            if scale == 1:
                continue
            # n tiles that overlap by a fraction o of a tile span n - (n - 1) * o tiles.
            span = scale - (scale - 1) * self.overlap
            tile_w, tile_h = width / span, height / span
            step_w, step_h = tile_w * (1 - self.overlap), tile_h * (1 - self.overlap)
            for row in range(scale):
                for column in range(scale):
                    x0, y0 = round(column * step_w), round(row * step_h)
                    x1 = min(width, round(column * step_w + tile_w))
                    y1 = min(height, round(row * step_h + tile_h))
                    boxes.append((x0, y0, x1, y1))
        return boxes

    def propose(self, image: Image.Image, categories: Sequence[str] = ()) -> list[Region]:
        tiles = [Region(box=box, image=image.crop(box)) for box in self.boxes(*image.size)]
        return [Region(box=None, image=image), *tiles]


class DetectorRegions:
    """The photo, then the boxes an open-vocabulary detector finds, best first.

    Prompts are the caller's category words plus generic ones, at most
    ``max_prompts`` of them (each is encoded by the detector's text model and scored
    against every patch, for every photo); overlapping boxes of different prompts
    are merged (class-agnostic non-maximum suppression).
    """

    def __init__(
        self,
        *,
        model: torch.nn.Module,
        processor: object,
        device: torch.device,
        threshold: float,
        max_regions: int,
        generic_words: Sequence[str],
        min_box_pixels: int = 16,
        max_prompts: int = 32,
    ) -> None:
        if max_prompts < 1:
            raise ValueError(f"max_prompts must be at least 1, got {max_prompts}")
        self._model = model
        self._processor = processor
        self.device = device
        self.threshold = threshold
        self.max_regions = max_regions
        self.generic_words = tuple(generic_words)
        self.min_box_pixels = min_box_pixels
        self.max_prompts = max_prompts
        # OWLv2 pads photos to a square at the bottom and right, so its boxes are
        # relative to that square (OWL-ViT's to the photo). transformers 5 scales
        # them by the longer side itself, older versions need a square target.
        self._pads_to_square = getattr(model.config, "model_type", "") == "owlv2"
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: RegionConfig) -> DetectorRegions:
        """Load ``config.detector_model`` (hub id or local folder) or raise ModelLoadError."""

        device = resolve_device(config.device)
        try:
            processor, model = _load_detector(config.detector_model)
        except ModelLoadError:
            raise
        except Exception as error:
            raise ModelLoadError(
                f"could not load detector {config.detector_model!r}: "
                f"{type(error).__name__}: {str(error)[:300]}"
            ) from error
        return cls(
            model=model.eval().to(device),
            processor=processor,
            device=device,
            threshold=config.detector_threshold,
            max_regions=config.max_regions,
            generic_words=config.generic_words,
            min_box_pixels=config.min_box_pixels,
            max_prompts=config.detector_max_prompts,
        )

    def prompts(self, categories: Sequence[str]) -> list[str]:
        """Category words then generic words, each once, at most ``max_prompts`` in all.

        The generic words are always kept (the first ``max_prompts`` of them); the
        category words fill the room left in the caller's order, so the caller puts
        the ones that matter most first and the rest are not looked for.
        """
        generic = _distinct(self.generic_words)[: self.max_prompts]
        room = self.max_prompts - len(generic)
        chosen: dict[str, None] = {}
        for word in categories:
            if len(chosen) >= room:
                break
            word = _prompt_word(word)
            if word and word not in generic:
                chosen[word] = None
        return [*chosen, *generic]

    def detect(self, image: Image.Image, categories: Sequence[str] = ()) -> list[tuple[Box, float]]:
        """At most ``max_regions`` (box, score) pairs scoring >= ``threshold``, best first.

        Boxes lie inside the photo and are at least ``min_box_pixels`` on each side.
        """
        from torchvision.ops import nms

        prompts = self.prompts(categories)
        if not prompts or self.max_regions <= 0:
            return []
        width, height = image.size
        side = max(width, height)
        target = (side, side) if self._pads_to_square else (height, width)
        inputs = self._processor(  # type: ignore[operator]
            text=[prompts],
            images=image,
            return_tensors="pt",
            padding="max_length",
            truncation=True,
        ).to(self.device)
        with self._lock, torch.inference_mode():
            outputs = self._model(**inputs)
        result = self._processor.post_process_grounded_object_detection(  # type: ignore[attr-defined]
            outputs, threshold=self.threshold, target_sizes=[target]
        )[0]
        boxes, scores = result["boxes"].float().cpu(), result["scores"].float().cpu()
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        sizes = (boxes[:, 2:] - boxes[:, :2]).min(dim=1).values
        keep = (sizes >= self.min_box_pixels) & (scores >= self.threshold)
        boxes, scores = boxes[keep], scores[keep]
        order = nms(boxes, scores, iou_threshold=0.5)[: self.max_regions]
        found: list[tuple[Box, float]] = []
        for i in order.tolist():
            x0, y0, x1, y1 = (int(value) for value in boxes[i].round().tolist())
            found.append(((x0, y0, x1, y1), float(scores[i])))
        return found

    def propose(self, image: Image.Image, categories: Sequence[str] = ()) -> list[Region]:
        crops = [
            Region(box=box, image=image.crop(box)) for box, _ in self.detect(image, categories)
        ]
        return [Region(box=None, image=image), *crops]


def _prompt_word(word: str) -> str:
    return " ".join(word.split()).casefold()


def _distinct(words: Sequence[str]) -> list[str]:
    """The words in detector form, each once, in order, blanks dropped."""
    return list(dict.fromkeys(word for word in map(_prompt_word, words) if word))


def _load_detector(name: str) -> tuple[object, torch.nn.Module]:
    """The processor and model of a local folder or hub id: the hub cache first, the hub
    only when it answers (ModelLoadError in one line at once otherwise)."""
    from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

    def load(local_only: bool) -> tuple[object, torch.nn.Module]:
        processor = AutoProcessor.from_pretrained(name, local_files_only=local_only)
        model = AutoModelForZeroShotObjectDetection.from_pretrained(
            name, local_files_only=local_only
        )
        return processor, model

    if Path(name).expanduser().is_dir():
        return load(True)
    try:
        return load(True)
    except Exception:  # not (wholly) in the cache, or unreadable there
        require_hub(f"detector {name!r}")
        return load(False)
