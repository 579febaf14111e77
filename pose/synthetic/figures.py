"""What figures are painted from: filled shapes (:class:`Primitive`), a drawn figure
(:class:`PersonFigure`) and the colours of clothes, objects and backgrounds.

Every skeleton's figure (the human of :mod:`pose.synthetic.human`, later others) is a list of
primitives in paint order plus its joints; coordinates are 0-based image pixels whose centres
are at integers (OpenCV's convention).
"""

from __future__ import annotations

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
