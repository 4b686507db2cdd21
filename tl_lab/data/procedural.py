"""Procedural image sets drawn from a fixed seed: ``shapes`` (with exact object masks) and ``textures``.

Why they exist: each isolates one thing a lesson wants to show.

- ``shapes``: one object (circle, square, triangle, star, cross, ring) at a random position, size, rotation and
  colour on a cluttered background (smooth colour fields, irregular blotches, thin lines, none of which is a
  class shape). The exact object mask comes with every image, so attribution maps (Grad-CAM, integrated
  gradients) can be scored against where the object really is.
- ``textures``: six classes that differ only in texture (stripes, checker, dots, waves, blotches, crosshatch),
  each at random phase, period, rotation and colours. Raw pixels carry almost nothing (a pixel-wise linear
  model stays near chance) while the classes remain obvious to the eye and to pretrained filters.

The random parameters of image ``i`` of class ``c`` come from their own generator, seeded by
``(POOL_SEED, c, i)``, so the pool is byte-identical on every machine and independent of the few-shot ``seed``
(which only picks samples from it), and a larger ``image_size`` draws the same scenes at a higher resolution.

Example::

    >>> from tl_lab.data.procedural import make_shapes
    >>> images, labels, masks, classes = make_shapes(per_class=2, size=64)
    >>> images.shape, masks.shape, classes[:3]
    ((12, 64, 64, 3), (12, 64, 64), ('circle', 'square', 'triangle'))
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["POOL_SEED", "SHAPE_CLASSES", "SHAPE_TARGETS", "TEXTURE_CLASSES", "make_shapes", "make_textures",
           "shape_targets"]

POOL_SEED = 20_240_917
SHAPE_CLASSES = ("circle", "square", "triangle", "star", "cross", "ring")
TEXTURE_CLASSES = ("stripes", "checker", "dots", "waves", "blotches", "crosshatch")
_SHAPES_STREAM, _TEXTURES_STREAM = 1, 2
# The label sets of the ``shapes`` pool: the shape itself and two attributes of the same object, read off the
# drawn scene (so the pool's bytes are unchanged): where it is and which colour channel dominates it.
POSITION_CLASSES = ("top left", "top right", "bottom left", "bottom right")
COLOUR_CLASSES = ("red", "green", "blue")
SHAPE_TARGETS = {"shape": SHAPE_CLASSES, "position": POSITION_CLASSES, "colour": COLOUR_CLASSES}


def _smooth_field(rng: np.random.Generator, size: int, cells: int, channels: int = 1) -> np.ndarray:
    """A smooth random field in [0, 1]: a ``cells`` x ``cells`` grid of random values, upsampled bicubically."""
    grid = rng.random((cells, cells, channels)).astype(np.float32)
    planes = [
        np.asarray(Image.fromarray(grid[..., k]).resize((size, size), Image.Resampling.BICUBIC))
        for k in range(channels)
    ]
    return np.clip(np.stack(planes, axis=-1), 0.0, 1.0)


def _random_colour(rng: np.random.Generator, avoid: np.ndarray | None = None, min_distance: float = 0.45):
    """A random RGB colour in [0, 1], at least ``min_distance`` (Euclidean) from ``avoid`` when given."""
    colour = rng.random(3)
    for _ in range(50):
        if avoid is None or np.linalg.norm(colour - avoid) >= min_distance:
            break
        colour = rng.random(3)
    return colour.astype(np.float32)


def _shape_polygon(name: str, radius: float) -> list[np.ndarray]:
    """Outline(s) of a shape centred at 0 with circumradius ``radius``; a ring is (outer, inner)."""
    if name in ("circle", "ring"):
        t = np.linspace(0.0, 2 * np.pi, 72, endpoint=False)
        outer = np.stack([np.cos(t), np.sin(t)], axis=1) * radius
        return [outer] if name == "circle" else [outer, outer * 0.55]
    if name == "square":
        t = np.pi / 4 + np.arange(4) * np.pi / 2
        return [np.stack([np.cos(t), np.sin(t)], axis=1) * radius]
    if name == "triangle":
        t = -np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        return [np.stack([np.cos(t), np.sin(t)], axis=1) * radius]
    if name == "star":
        t = -np.pi / 2 + np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, radius, radius * 0.42)
        return [np.stack([np.cos(t) * r, np.sin(t) * r], axis=1)]
    if name == "cross":
        a, b = radius * 0.3, radius * 0.95
        corners = [(-a, -b), (a, -b), (a, -a), (b, -a), (b, a), (a, a)]
        corners += [(-x, -y) for x, y in corners]  # the same half, turned 180 degrees
        return [np.asarray(corners, dtype=np.float64)]
    raise ValueError(f"unknown shape {name!r}; choose one of: {', '.join(SHAPE_CLASSES)}")


def _draw_shape(label: int, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One cluttered scene with one object: ``(size, size, 3)`` uint8 image and ``(size, size)`` bool mask."""
    # background: a smooth colour field
    base = _random_colour(rng)
    field = _smooth_field(rng, size, 4, 3)
    canvas = np.clip(base * 0.6 + field * 0.4, 0.0, 1.0)
    # clutter 1: irregular blotches (thresholded smooth noise), never a regular shape
    for _ in range(int(rng.integers(2, 5))):
        blob = _smooth_field(rng, size, int(rng.integers(4, 8)))[..., 0] > rng.uniform(0.72, 0.82)
        canvas[blob] = _random_colour(rng)
    # clutter 2: thin straight lines
    clutter = Image.fromarray((canvas * 255).astype(np.uint8))
    draw = ImageDraw.Draw(clutter)
    for _ in range(int(rng.integers(2, 6))):
        x0, y0, x1, y1 = (rng.random(4) * size).tolist()
        width = max(1, round(size * rng.uniform(0.01, 0.03)))
        draw.line([(x0, y0), (x1, y1)], fill=tuple(int(v) for v in _random_colour(rng) * 255), width=width)
    canvas = np.asarray(clutter, dtype=np.float32) / 255.0
    # the object: exact mask, flat colour that stands out from the background under it
    radius = size * rng.uniform(0.16, 0.3)
    angle = rng.uniform(0.0, 2 * np.pi)
    margin = radius * 1.05
    centre = rng.uniform(margin, size - margin, size=2)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    mask_image = Image.new("L", (size, size), 0)
    mask_draw = ImageDraw.Draw(mask_image)
    for k, outline in enumerate(_shape_polygon(SHAPE_CLASSES[label], radius)):
        points = outline @ rotation.T + centre
        mask_draw.polygon([tuple(p) for p in points.tolist()], fill=0 if k else 1)
    mask = np.asarray(mask_image, dtype=bool)
    under = canvas[mask].mean(axis=0) if mask.any() else None
    colour = _random_colour(rng, avoid=under, min_distance=0.6)
    canvas[mask] = colour
    noise = rng.normal(0.0, 0.015, size=canvas.shape).astype(np.float32)
    image = np.clip((canvas + noise) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return image, mask


def make_shapes(*, per_class: int = 150, size: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """Generate the ``shapes`` pool: images ``(N, size, size, 3)`` uint8, labels ``(N,)`` int64, masks
    ``(N, size, size)`` bool and the class names. Same arguments, same bytes."""
    _check_pool_args(per_class, size)
    images, labels, masks = [], [], []
    for label in range(len(SHAPE_CLASSES)):
        for i in range(per_class):
            rng = np.random.default_rng([POOL_SEED, _SHAPES_STREAM, label, i])
            image, mask = _draw_shape(label, rng, size)
            images.append(image)
            masks.append(mask)
            labels.append(label)
    return np.stack(images), np.asarray(labels, dtype=np.int64), np.stack(masks), SHAPE_CLASSES


def shape_targets(images: np.ndarray, labels: np.ndarray, masks: np.ndarray) -> dict[str, tuple[np.ndarray, tuple[str, ...]]]:
    """Every label set of a ``shapes`` pool, ``{name: (labels (N,) int64, class names)}``, in :data:`SHAPE_TARGETS`.

    - ``shape``: the object's shape (the pool's own labels).
    - ``position``: the quadrant that holds the centre of the object's mask (image y grows downwards).
    - ``colour``: the strongest channel of the object's mean colour (its pixels under the mask).

    The two attributes are chosen independently of the shape when a scene is drawn, so they are *different* tasks
    on the *same* images: what multi-task learning needs (:func:`tl_lab.fit` with ``tasks=``).

    >>> images, labels, masks, _ = make_shapes(per_class=2, size=32)
    >>> {k: v[1] for k, v in shape_targets(images, labels, masks).items()}["colour"]
    ('red', 'green', 'blue')
    """
    n, size = masks.shape[0], masks.shape[1]
    area = masks.reshape(n, -1).sum(1).clip(min=1)
    ys, xs = np.mgrid[0:size, 0:size]
    cy = (masks * ys).reshape(n, -1).sum(1) / area
    cx = (masks * xs).reshape(n, -1).sum(1) / area
    centre = (size - 1) / 2
    position = (cy > centre).astype(np.int64) * 2 + (cx > centre).astype(np.int64)
    colour_sum = (images.astype(np.float64) * masks[..., None]).reshape(n, -1, 3).sum(1)
    colour = (colour_sum / area[:, None]).argmax(1).astype(np.int64)
    return {"shape": (np.asarray(labels, dtype=np.int64), SHAPE_CLASSES), "position": (position, POSITION_CLASSES),
            "colour": (colour, COLOUR_CLASSES)}


def _texture_pattern(label: int, rng: np.random.Generator, size: int) -> np.ndarray:
    """Foreground weight in [0, 1] of one texture, rendered at 2x and box-filtered (anti-aliased)."""
    ss = 2
    n = size * ss
    period = size * rng.uniform(0.1, 0.24)  # pixels at the output size
    angle = rng.uniform(0.0, np.pi)
    phase = rng.random(2)
    y, x = np.mgrid[0:n, 0:n].astype(np.float32) / ss
    u = (x * math.cos(angle) + y * math.sin(angle)) / period + phase[0]
    v = (-x * math.sin(angle) + y * math.cos(angle)) / period + phase[1]
    name = TEXTURE_CLASSES[label]
    if name == "stripes":
        pattern = (u % 1.0) < rng.uniform(0.35, 0.65)
    elif name == "checker":
        pattern = (np.floor(u) + np.floor(v)) % 2 == 0
    elif name == "dots":
        radius = rng.uniform(0.2, 0.34)
        pattern = (u % 1.0 - 0.5) ** 2 + (v % 1.0 - 0.5) ** 2 < radius**2
    elif name == "waves":
        amplitude, wavelength = rng.uniform(0.3, 0.7), rng.uniform(2.0, 4.0)
        pattern = ((u + amplitude * np.sin(2 * np.pi * v / wavelength)) % 1.0) < rng.uniform(0.35, 0.6)
    elif name == "blotches":
        cells = max(3, round(size / period * 1.6))
        field = _smooth_field(rng, n, cells)[..., 0]
        pattern = field > np.median(field)
    elif name == "crosshatch":
        thickness = rng.uniform(0.14, 0.24)
        skew = rng.uniform(np.pi / 3, 2 * np.pi / 3)
        w = (x * math.cos(angle + skew) + y * math.sin(angle + skew)) / period + phase[1]
        pattern = ((u % 1.0) < thickness) | ((w % 1.0) < thickness)
    else:  # pragma: no cover - TEXTURE_CLASSES and this chain are edited together
        raise ValueError(f"unknown texture {name!r}")
    return pattern.astype(np.float32).reshape(size, ss, size, ss).mean(axis=(1, 3))


def _draw_texture(label: int, rng: np.random.Generator, size: int) -> np.ndarray:
    background = _random_colour(rng)
    foreground = _random_colour(rng, avoid=background, min_distance=0.5)
    weight = _texture_pattern(label, rng, size)[..., None]
    image = background * (1.0 - weight) + foreground * weight
    # soft illumination gradient in a random direction, then sensor noise
    direction = rng.uniform(0.0, 2 * np.pi)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1) - 0.5
    light = 1.0 + rng.uniform(0.0, 0.3) * (x * math.cos(direction) + y * math.sin(direction))
    image = image * light[..., None] + rng.normal(0.0, 0.02, size=image.shape)
    return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)


def make_textures(*, per_class: int = 150, size: int = 64) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Generate the ``textures`` pool: images ``(N, size, size, 3)`` uint8, labels ``(N,)`` int64, class names."""
    _check_pool_args(per_class, size)
    images, labels = [], []
    for label in range(len(TEXTURE_CLASSES)):
        for i in range(per_class):
            rng = np.random.default_rng([POOL_SEED, _TEXTURES_STREAM, label, i])
            images.append(_draw_texture(label, rng, size))
            labels.append(label)
    return np.stack(images), np.asarray(labels, dtype=np.int64), TEXTURE_CLASSES


def _check_pool_args(per_class: int, size: int) -> None:
    if not isinstance(per_class, int) or per_class < 2:
        raise ValueError(f"per_class must be an int >= 2 (one image to train, one to test); got {per_class!r}")
    if not isinstance(size, int) or size < 16:
        raise ValueError(f"image_size must be an int >= 16 for procedural data; got {size!r}")
