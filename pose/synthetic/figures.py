"""What figures are painted from: filled shapes (:class:`Primitive`), a drawn figure
(:class:`PersonFigure`), the colours of clothes, objects and backgrounds, and the geometry and
paint order the figures share.

Every skeleton's figure (the human of :mod:`pose.synthetic.human`, the quadruped of
:mod:`pose.synthetic.quadruped`) is a list of primitives in paint order plus its joints;
coordinates are 0-based image pixels whose centres are at integers (OpenCV's convention).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Primitive:
    """One filled shape of a body part or an occluder, in image pixels (centres at integers).

    ``kind`` is ``"capsule"`` (``points`` [2, 2] ends, ``radii`` (r0, r1): a tapered thick
    segment with round ends), ``"polygon"`` (``points`` [n, 2], convex), ``"circle"``
    (``points`` [1, 2], ``radii`` (r,)), ``"ellipse"`` (``points`` [1, 2] centre, ``radii`` (a, b)
    half-axes, ``angles`` (rotation, start, end) in degrees, clockwise as displayed: a sector).
    ``part`` is an index into the figure's part names (-1 for an occluder); ``colour`` is BGR.
    """

    kind: str
    part: int
    points: np.ndarray
    colour: tuple[int, int, int]
    radii: tuple[float, ...] = ()
    angles: tuple[float, float, float] = (0.0, 0.0, 360.0)


@dataclass
class PersonFigure:
    """One drawn person.

    ``keypoints`` float64 [num_joints, 2]: every joint's image position in pixels (also outside
    the image); ``primitives``: body parts in paint order (far to near); ``joint_parts``: per
    joint, the part ids that make it visible; ``height_px``: standing height in pixels.
    """

    keypoints: np.ndarray
    primitives: list[Primitive]
    joint_parts: list[tuple[int, ...]]
    height_px: float


def jitter_colour(rng: np.random.Generator, rgb: Sequence[int], amount: float) -> np.ndarray:
    """``rgb`` (0..255) plus Gaussian noise of std ``amount`` per channel, clipped: float64 [3]."""
    return np.clip(np.asarray(rgb, dtype=np.float64) + rng.normal(0.0, amount, 3), 0, 255)


def bgr(rgb: np.ndarray, brightness: float = 1.0) -> tuple[int, int, int]:
    """An RGB colour (0..255, [3]) times ``brightness`` as OpenCV's integer BGR tuple."""
    red, green, blue = np.clip(np.asarray(rgb) * brightness, 0, 255).round().astype(int)
    return int(blue), int(green), int(red)


def random_rgb(rng: np.random.Generator) -> np.ndarray:
    """A random clothing or object colour: any hue, mostly not too pale or too dark (float64 [3]
    RGB, 0..255)."""
    hsv = np.array([[[rng.integers(0, 180), rng.integers(40, 256), rng.integers(40, 240)]]],
                   dtype=np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float64)


# --------------------------------------------------------------------------------------------
# Geometry and painting shared by the figures


def rotation_y(angle: float) -> np.ndarray:
    """Rotation about the body's vertical axis, [3, 3] (angle in radians)."""
    cos, sin = math.cos(angle), math.sin(angle)
    return np.array([[cos, 0.0, sin], [0.0, 1.0, 0.0], [-sin, 0.0, cos]])


def unit(vector: np.ndarray) -> np.ndarray:
    return vector / max(float(np.linalg.norm(vector)), 1e-9)


def bend(direction: np.ndarray, towards: np.ndarray, angle: float) -> np.ndarray:
    """``direction`` turned by ``angle`` radians in the plane that contains ``towards``."""
    perpendicular = towards - np.dot(towards, direction) * direction
    if np.linalg.norm(perpendicular) < 1e-6:
        perpendicular = np.array([0.0, 0.0, 1.0]) - direction[2] * direction
    return math.cos(angle) * direction + math.sin(angle) * unit(perpendicular)


def place_figure(
    rng: np.random.Generator, offsets: np.ndarray, joint_rows: list[int], height_px: float,
    image_size: tuple[int, int],
) -> np.ndarray:
    """The translation [2] (pixels) that places a figure's ``offsets`` [n, 2]: fully inside the
    image when it fits (mostly), otherwise anywhere near it, with at least 5 joints in the
    image."""
    width, height = image_size
    margin = 0.04 * height_px
    low = offsets.min(axis=0) - margin
    high = offsets.max(axis=0) + margin
    size = np.array([width - 1, height - 1], dtype=np.float64)
    translation = size / 2 - (low + high) / 2
    for attempt in range(20):
        fits = np.all(high - low < size)
        if fits and (attempt == 19 or rng.random() < 0.8):
            translation = rng.uniform(-low, size - high)
        elif attempt == 19:
            translation = rng.uniform(np.minimum(-low, size - high), np.maximum(-low, size - high))
        else:
            translation = rng.uniform(-0.15 * size, 1.15 * size) - (low + high) / 2
        joints = offsets[joint_rows] + translation
        inside = np.all((joints >= 0) & (joints <= size), axis=1)
        if inside.sum() >= 5:
            break
    return translation


class PaintOrder:
    """Primitives with their depth keys: painted by increasing key (far to near), ties in the
    order they were added."""

    def __init__(self) -> None:
        self._items: list[tuple[float, int, Primitive]] = []

    def add(self, key: float, primitive: Primitive) -> None:
        self._items.append((key, len(self._items), primitive))

    def primitives(self) -> list[Primitive]:
        return [item[2] for item in sorted(self._items, key=lambda item: (item[0], item[1]))]
