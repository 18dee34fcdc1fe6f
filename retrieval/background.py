"""Generic background photos, generated: what "none of the user's concepts" looks like.

The decision rule (retrieval/decision.py) compares a concept's similarity to
a query with its similarity to photos that show none of the user's concepts.
Those photos are drawn here, deterministically, from a fixed seed: smooth
colour fields, 1/f "cloud" textures, stripes and scattered shapes on a
textured ground. Nothing is downloaded or shipped, so there is no licence to
handle and no overlap with anyone's evaluation photos.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

BACKGROUND_COUNT = 48
SIDE = 256


def background_photos(count: int = BACKGROUND_COUNT, seed: int = 0) -> list[Image.Image]:
    """``count`` RGB photos of ``SIDE`` pixels, the same for the same ``seed``."""
    rng = np.random.default_rng(seed)
    makers = (_clouds, _gradient, _stripes, _shapes)
    return [makers[i % len(makers)](rng) for i in range(count)]


def _clouds(rng: np.random.Generator) -> Image.Image:
    """Colour noise with a 1/f spectrum, like natural textures (foliage, sky, walls)."""
    frequencies = np.fft.fftfreq(SIDE)
    radius = np.hypot(*np.meshgrid(frequencies, frequencies))
    radius[0, 0] = 1.0
    channels = []
    exponent = rng.uniform(1.5, 2.5)
    for _ in range(3):
        spectrum = rng.normal(size=(SIDE, SIDE)) + 1j * rng.normal(size=(SIDE, SIDE))
        field = np.real(np.fft.ifft2(spectrum / radius ** (exponent / 1.0)))
        channels.append((field - field.mean()) / (field.std() + 1e-9))
    mix = rng.normal(size=(3, 3)) * 0.5 + np.eye(3)
    pixels = np.tensordot(mix, np.stack(channels), axes=1)
    pixels = 128 + 40 * pixels + rng.uniform(-60, 60, size=(3, 1, 1))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8).transpose(1, 2, 0))


def _gradient(rng: np.random.Generator) -> Image.Image:
    ys, xs = np.mgrid[0:SIDE, 0:SIDE] / SIDE
    angle = rng.uniform(0, np.pi)
    ramp = np.cos(angle) * xs + np.sin(angle) * ys
    start, end = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    pixels = start[:, None, None] + (end - start)[:, None, None] * ramp / max(ramp.max(), 1e-9)
    pixels += rng.normal(0, 6, size=pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8).transpose(1, 2, 0))


def _stripes(rng: np.random.Generator) -> Image.Image:
    ys, xs = np.mgrid[0:SIDE, 0:SIDE].astype(np.float64)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(6, 48)
    wave = np.sin((np.cos(angle) * xs + np.sin(angle) * ys) * 2 * np.pi / period)
    first, second = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    weight = (wave > 0)[None] if rng.random() < 0.5 else ((wave + 1) / 2)[None]
    pixels = first[:, None, None] * weight + second[:, None, None] * (1 - weight)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8).transpose(1, 2, 0))
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(0, 2)))


def _shapes(rng: np.random.Generator) -> Image.Image:
    image = _clouds(rng).filter(ImageFilter.GaussianBlur(4))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 12))):
        x0, y0 = rng.uniform(-SIDE / 4, SIDE, 2)
        w, h = rng.uniform(SIDE / 10, SIDE / 2, 2)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        box = (x0, y0, x0 + w, y0 + h)
        if rng.random() < 0.5:
            draw.ellipse(box, fill=colour)
        else:
            draw.rectangle(box, fill=colour)
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2)))
