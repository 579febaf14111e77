"""Painting with OpenCV: primitives into the image and the part buffer, the textured
background, and the finish (outlines between parts, lighting, sensor noise, blur).

The part buffer (uint8 [height, width]) records what shows at each pixel: ``BACKGROUND_ID``,
``1 + person * NUM_PARTS + part`` for a person's body part (``part`` an index into
:data:`pose.synthetic.human.PART_NAMES`), or ``OCCLUDER_ID``; a uint8 buffer holds
``MAX_PEOPLE`` = 4 people of 20 parts. Shapes are drawn anti-aliased into the image and with
hard edges into the part buffer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from pose.synthetic.figures import PersonFigure, Primitive, bgr, random_rgb
from pose.synthetic.human import FACE_PARTS, NUM_PARTS, PART_INDEX

MAX_PEOPLE = 4
BACKGROUND_ID = 0
OCCLUDER_ID = 255
_SHIFT_BITS = 4  # OpenCV drawing with 1/16-pixel precision
_SHIFT_SCALE = 1 << _SHIFT_BITS


def draw_primitive(targets: Sequence[tuple[np.ndarray, Any, int]], primitive: Primitive) -> None:
    """Fill ``primitive`` into each ``(image, colour, line_type)`` target (an image or the part
    buffer), in OpenCV fixed point with ``_SHIFT_BITS`` fraction bits."""
    fixed = np.round(primitive.points * _SHIFT_SCALE).astype(np.int32)
    radii = [max(round(radius * _SHIFT_SCALE), 1) for radius in primitive.radii]
    if primitive.kind == "capsule":
        (x0, y0), (x1, y1) = primitive.points.tolist()
        length = math.hypot(x1 - x0, y1 - y0)
        outline = None
        if length > 1e-6:
            normal_x, normal_y = (y0 - y1) / length, (x1 - x0) / length
            r0, r1 = primitive.radii
            outline = np.round(np.array([
                [x0 + normal_x * r0, y0 + normal_y * r0], [x1 + normal_x * r1, y1 + normal_y * r1],
                [x1 - normal_x * r1, y1 - normal_y * r1], [x0 - normal_x * r0, y0 - normal_y * r0],
            ]) * _SHIFT_SCALE).astype(np.int32)
        ends = fixed.tolist()
        for image, colour, line_type in targets:
            if outline is not None:
                cv2.fillConvexPoly(image, outline, colour, line_type, _SHIFT_BITS)
            for centre, radius in zip(ends, radii, strict=True):
                cv2.circle(image, centre, radius, colour, -1, line_type, _SHIFT_BITS)
    elif primitive.kind == "polygon":
        for image, colour, line_type in targets:
            cv2.fillConvexPoly(image, fixed, colour, line_type, _SHIFT_BITS)
    elif primitive.kind == "circle":
        centre = fixed[0].tolist()
        for image, colour, line_type in targets:
            cv2.circle(image, centre, radii[0], colour, -1, line_type, _SHIFT_BITS)
    elif primitive.kind == "ellipse":
        centre = fixed[0].tolist()
        rotation, start, stop = primitive.angles
        for image, colour, line_type in targets:
            cv2.ellipse(image, centre, radii, rotation, start, stop, colour, -1, line_type,
                        _SHIFT_BITS)
    else:
        raise ValueError(f"unknown primitive kind {primitive.kind!r}")


def paint_figures(
    image: np.ndarray | None, part_buffer: np.ndarray, people: Sequence[PersonFigure],
    occluders: Sequence[Primitive], hide_person: int | None = None,
) -> list[int]:
    """Paint ``people`` in order, then ``occluders``, into ``image`` (uint8 [height, width, 3]
    BGR, or None for the part buffer only) and ``part_buffer`` (uint8 [height, width]), in place.

    Returns per person its pixel count before later people and occluders cover it (0 for
    ``hide_person``, an index into ``people`` left out, or None).
    """
    drawn_area = []
    for index, person in enumerate(people):
        if index == hide_person:
            drawn_area.append(0)
            continue
        first_id = 1 + index * NUM_PARTS
        for primitive in person.primitives:
            targets = [(part_buffer, first_id + primitive.part, cv2.LINE_8)]
            if image is not None:
                targets.append((image, primitive.colour, cv2.LINE_AA))
            draw_primitive(targets, primitive)
        drawn_area.append(int(np.count_nonzero(
            (part_buffer >= first_id) & (part_buffer < first_id + NUM_PARTS))))
    for occluder in occluders:
        targets = [(part_buffer, OCCLUDER_ID, cv2.LINE_8)]
        if image is not None:
            targets.append((image, occluder.colour, cv2.LINE_AA))
        draw_primitive(targets, occluder)
    return drawn_area


def render_background(
    rng: np.random.Generator, width: int, height: int, max_shapes: int
) -> np.ndarray:
    """A textured background, uint8 [height, width, 3] BGR.

    A base of smooth noise or a gradient, sometimes a second texture below a horizon line,
    sometimes stripes, then up to ``max_shapes`` random shapes (rectangles, discs, polygons,
    thick lines).
    """
    xs = np.arange(width, dtype=np.float32)[None, :]
    ys = np.arange(height, dtype=np.float32)[:, None]
    channels = _texture(rng, xs, ys)
    if rng.random() < 0.5:  # a floor below a horizon line
        horizon = rng.uniform(0.3, 0.8) * height + math.tan(rng.uniform(-0.3, 0.3)) * (
            xs - width / 2)
        below = ys > horizon
        channels = [np.where(below, floor, wall)
                    for floor, wall in zip(_texture(rng, xs, ys), channels, strict=True)]
    image = cv2.merge([cv2.convertScaleAbs(cv2.max(channel, 0.0)) for channel in channels])
    scale = min(width, height)
    for _ in range(int(rng.integers(0, max_shapes + 1))):
        colour = bgr(random_rgb(rng))
        centre = rng.uniform(0, 1, 2) * (width, height)
        size = scale * rng.uniform(0.03, 0.35)
        kind = rng.integers(4)
        if kind == 0:
            corner = centre + size * rng.uniform(0.3, 1.5, 2)
            cv2.rectangle(image, tuple(int(v) for v in centre), tuple(int(v) for v in corner),
                          colour, -1, cv2.LINE_AA)
        elif kind == 1:
            cv2.circle(image, tuple(int(v) for v in centre), int(size / 2), colour, -1,
                       cv2.LINE_AA)
        elif kind == 2:
            points = centre + rng.normal(0, size / 2, (int(rng.integers(3, 7)), 2))
            cv2.fillPoly(image, [points.astype(np.int32)], colour, cv2.LINE_AA)
        else:
            end = centre + rng.normal(0, size, 2)
            cv2.line(image, tuple(int(v) for v in centre), tuple(int(v) for v in end), colour,
                     int(rng.integers(2, max(3, int(0.05 * scale)))), cv2.LINE_AA)
    return image


def _texture(rng: np.random.Generator, xs: np.ndarray, ys: np.ndarray) -> list[np.ndarray]:
    """Smooth noise or a linear gradient between two colours, sometimes with stripes: three
    float32 [height, width] BGR channels (``xs`` [1, width] and ``ys`` [height, 1] the pixel
    coordinates).

    Per-channel 2-D arrays: numpy broadcasting over a trailing channel axis is several times
    slower than three plain 2-D operations.
    """
    height, width = ys.shape[0], xs.shape[1]
    first, second = random_rgb(rng)[::-1], random_rgb(rng)[::-1]
    if rng.random() < 0.5:  # smooth noise, grey or coloured
        cells = int(rng.integers(2, 14))
        channels = 1 if rng.random() < 0.6 else 3
        low = rng.random((cells, cells, channels), dtype=np.float32)
        mix = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC)
        mixes = [np.clip(mix, 0, 1)] * 3 if channels == 1 else list(
            np.clip(cv2.split(mix), 0, 1))
    else:  # linear gradient
        angle = rng.uniform(0, 2 * np.pi)
        ramp = xs * math.cos(angle) + ys * math.sin(angle)
        mixes = [(ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1.0)] * 3
    channels = [np.float32(low) + mix * np.float32(high - low)
                for low, high, mix in zip(first, second, mixes, strict=True)]
    if rng.random() < 0.35:  # stripes, soft or hard
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(6, 60)
        wave = np.sin((xs * math.cos(angle) + ys * math.sin(angle)) * (2 * np.pi / period)
                      + rng.uniform(0, 2 * np.pi))
        if rng.random() < 0.5:
            wave = np.sign(wave)
        alpha = np.float32(rng.uniform(0.075, 0.3)) * (wave + 1)
        stripe = random_rgb(rng)[::-1]
        channels = [channel + alpha * (np.float32(value) - channel)
                    for channel, value in zip(channels, stripe, strict=True)]
    return channels


# Part buffer value -> outline group: every person's face parts (head, eyes, ears, nose) form one
# group, so that outlines are drawn between parts but not inside the face.
_OUTLINE_GROUPS = np.arange(256, dtype=np.uint8)
for _person in range(MAX_PEOPLE):
    for _name in FACE_PARTS:
        _OUTLINE_GROUPS[1 + _person * NUM_PARTS + PART_INDEX[_name]] = (
            1 + _person * NUM_PARTS + PART_INDEX["head"])


def finish_image(image: np.ndarray, part_buffer: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray:
    """Outlines between parts, smooth lighting, grey sensor noise and sometimes blur (uint8 BGR
    [height, width, 3] in and out; ``part_buffer`` uint8 [height, width])."""
    height, width = part_buffer.shape
    groups = cv2.LUT(part_buffer, _OUTLINE_GROUPS)
    edge = np.zeros((height, width), dtype=bool)
    edge[:, :-1] |= groups[:, :-1] != groups[:, 1:]
    edge[:-1, :] |= groups[:-1, :] != groups[1:, :]
    cells = int(rng.integers(2, 5))
    light = cv2.resize(rng.uniform(0.75, 1.15, (cells, cells)).astype(np.float32),
                       (width, height), interpolation=cv2.INTER_CUBIC)
    light[edge] *= np.float32(rng.uniform(0.55, 0.8))
    # Uniform noise from raw bytes: as good as Gaussian here and far cheaper to draw.
    noise_bytes = np.frombuffer(rng.bytes(height * width), dtype=np.uint8).reshape(height, width)
    noise = (noise_bytes.astype(np.float32) - np.float32(127.5)) * np.float32(
        rng.uniform(1, 6) / 73.9)
    # Per channel (see _texture); convertScaleAbs rounds and saturates at 255.
    finished = cv2.merge([
        cv2.convertScaleAbs(cv2.max(channel.astype(np.float32) * light + noise, 0.0))
        for channel in cv2.split(image)
    ])
    if rng.random() < 0.3:
        finished = cv2.GaussianBlur(finished, (0, 0), rng.uniform(0.4, 1.0))
    return finished
