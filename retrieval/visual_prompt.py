"""PeKit-style visual prompting: boxes drawn on the query photo, named in the text."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw

# Colours a stock MLLM names reliably, in the order concepts get them.
COLOURS = (
    ("red", (230, 25, 25)),
    ("blue", (30, 90, 230)),
    ("green", (20, 170, 60)),
    ("yellow", (240, 200, 0)),
    ("purple", (150, 40, 190)),
)
VISUAL_NOTE = (
    "Coloured boxes drawn on the photo being asked about mark where a listed concept was "
    "found; the text names the concept in each box."
)


def draw_boxes(
    image: Image.Image, boxes: Sequence[tuple[int, int, int, int]]
) -> tuple[Image.Image, list[str]]:
    """A copy of ``image`` with each box outlined in its own colour, and the colours' names.

    Boxes beyond the palette are not drawn (their name is ""), so two concepts
    never share a colour.
    """
    marked = image.convert("RGB") if image.mode != "RGB" else image.copy()
    draw = ImageDraw.Draw(marked)
    width = max(2, round(min(marked.size) / 150))
    names = []
    for n, box in enumerate(boxes):
        if n >= len(COLOURS):
            names.append("")
            continue
        name, rgb = COLOURS[n]
        draw.rectangle(box, outline=rgb, width=width)
        names.append(name)
    return marked, names
