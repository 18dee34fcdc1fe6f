"""Region vectors of an open_clip ViT from one forward pass: patch tokens pooled per box.

A ViT's vector is its class token (or the mean of its patch tokens) after the
final norm and a projection. A region's vector here is the mean of the patch
tokens inside its box, each weighted by the share of its patch the box covers,
through that same norm and projection: the vector the model would give if it
pooled its tokens by averaging and saw only that part of the map. Every token
still attended to the whole photo, so a region's vector carries some context
from outside its box (as a conv net's pooled feature map does).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision import transforms

from retrieval.preprocessing import Preprocessing

Box = tuple[int, int, int, int]


def token_pooling_supported(model: Any) -> bool:
    """Whether ``model.visual`` is an open_clip ViT whose tokens can be pooled per box:
    a class token then a grid of patch tokens, a pooled embedding (class token or
    mean of tokens) and no attentional pooler."""
    try:
        from open_clip.transformer import VisionTransformer
    except ImportError:  # open_clip missing: nothing to pool
        return False
    visual = getattr(model, "visual", None)
    return (
        isinstance(visual, VisionTransformer)
        and getattr(visual, "attn_pool", None) is None
        and getattr(visual, "pool_type", None) in ("tok", "avg")
        and all(hasattr(visual, name) for name in ("_embeds", "_pool", "grid_size"))
    )


def squeezing(pipeline: object, size: tuple[int, int]) -> Preprocessing | None:
    """The model's pipeline with its resize and crop replaced by a squeeze of the whole
    photo to ``size`` (height, width); None if it does not end in ``Normalize``."""
    steps = list(getattr(pipeline, "transforms", []))
    if not steps or not isinstance(steps[-1], transforms.Normalize):
        return None
    normalize = steps[-1]
    resize = transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC)
    return Preprocessing([resize], mean=normalize.mean, std=normalize.std)


def box_weights(
    boxes: Sequence[Box], photo_size: tuple[int, int], grid: tuple[int, int]
) -> torch.Tensor:
    """(boxes, patches) weights: the share of each patch's area that each box covers,
    normalised to sum to one per box. ``photo_size`` is (width, height), ``grid``
    (rows, columns) of patches over the squeezed photo."""
    width, height = photo_size
    rows, columns = grid
    found = torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4)
    scale = torch.tensor([columns / width, rows / height] * 2, dtype=torch.float64)
    found = found * scale
    x_cells = torch.arange(columns, dtype=torch.float64)
    y_cells = torch.arange(rows, dtype=torch.float64)
    # The overlap of [x0, x1) with each patch [j, j + 1), in patch widths.
    x_overlap = (
        torch.minimum(found[:, 2:3], x_cells + 1) - torch.maximum(found[:, 0:1], x_cells)
    ).clamp(min=0)
    y_overlap = (
        torch.minimum(found[:, 3:4], y_cells + 1) - torch.maximum(found[:, 1:2], y_cells)
    ).clamp(min=0)
    weights = (y_overlap[:, :, None] * x_overlap[:, None, :]).reshape(len(found), -1)
    # A box of no area inside the photo falls back on the patch under its centre.
    empty = weights.sum(dim=1) <= 0
    if empty.any():
        centre_x = ((found[empty, 0] + found[empty, 2]) / 2).clamp(0, columns - 1).floor()
        centre_y = ((found[empty, 1] + found[empty, 3]) / 2).clamp(0, rows - 1).floor()
        weights[empty] = 0
        weights[empty, (centre_y * columns + centre_x).long()] = 1
    return (weights / weights.sum(dim=1, keepdim=True)).float()


def pooled_token_vectors(
    model: Any, batch: torch.Tensor, photo_size: tuple[int, int], boxes: Sequence[Box]
) -> torch.Tensor:
    """(1 + boxes, dim) unnormalised vectors from one pass of ``model.visual`` over
    ``batch`` (one squeezed photo): the model's own embedding, then each box's."""
    visual = model.visual
    tokens = visual.transformer(visual._embeds(batch))
    pooled, patches = visual._pool(tokens)
    if len(boxes):
        weights = box_weights(boxes, photo_size, tuple(visual.grid_size))
        regions = weights.to(patches.device, patches.dtype) @ patches[0]
        if visual.final_ln_after_pool:
            # Such models pool first and normalise the pooled vector.
            regions = visual.ln_post(regions)
        pooled = torch.cat([pooled, regions])
    if visual.proj is not None:
        pooled = pooled @ visual.proj
    return pooled
