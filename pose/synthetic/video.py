"""Short videos of synthetic people who move (for the demo, tests and benchmarks of
``pose.infer``): one scene of :mod:`pose.synthetic.scenes` whose people walk across a fixed
background, each at a steady speed with a slight bob, labelled frame by frame as the embedded
dataset is (:func:`pose.synthetic.annotation.annotate_scene`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from pose.synthetic.annotation import annotate_scene, simulate_detections
from pose.synthetic.figures import PersonFigure
from pose.synthetic.scenes import Scene, SceneParams, render_scene, sample_scene

# Frames per bob of a walking person (a step), and its height as a share of the person's.
BOB_PERIOD_FRAMES = 8
BOB_SHARE = 0.015


def _moved(person: PersonFigure, offset: np.ndarray) -> PersonFigure:
    """``person`` moved by ``offset`` (x, y) pixels."""
    return PersonFigure(keypoints=person.keypoints + offset,
                        primitives=[replace(primitive, points=primitive.points + offset)
                                    for primitive in person.primitives],
                        joint_parts=person.joint_parts, height_px=person.height_px)


def person_speeds(rng: np.random.Generator, num_people: int, image_width: int,
                  num_frames: int) -> np.ndarray:
    """[P] horizontal speeds (pixels per frame): each person crosses 20 to 45% of the width over
    the video, in a random direction."""
    shares = rng.uniform(0.2, 0.45, num_people) * rng.choice([-1.0, 1.0], num_people)
    return shares * image_width / max(num_frames - 1, 1)


def moving_people_frames(seed: int, image_size: Sequence[int] = (320, 240),
                         num_frames: int = 24, num_people: int = 2,
                         speeds: Sequence[float] | None = None
                         ) -> Iterator[tuple[np.ndarray, list[dict[str, Any]]]]:
    """The frames of a video of ``num_people`` people walking across one scene.

    Args:
        seed: the scene, the speeds and the renderer's noise depend on it only.
        image_size: (width, height) pixels.
        num_frames: how many frames.
        num_people: people in the scene (1 to 4), no occluders.
        speeds: [P] horizontal speeds in pixels per frame (None: :func:`person_speeds`).

    Yields:
        Per frame, the image (BGR uint8 [H, W, 3]) and the people's COCO annotations
        (``keypoints``, ``bbox``, ``area``, ...; :func:`annotate_scene`), in scene order.
    """
    rng = np.random.default_rng(seed)
    weights = tuple(1.0 if count == num_people else 0.0 for count in range(1, 5))
    params = SceneParams(people_weights=weights, occluder_weights=(1.0,))
    first = sample_scene(rng, (int(image_size[0]), int(image_size[1])), params)
    speeds = (person_speeds(rng, len(first.people), image_size[0], num_frames)
              if speeds is None else np.asarray(speeds, dtype=np.float64))
    phases = rng.uniform(0, 2 * math.pi, len(first.people))
    for frame in range(num_frames):
        people = []
        for person, speed, phase in zip(first.people, speeds, phases, strict=True):
            bob = BOB_SHARE * person.height_px * math.sin(
                2 * math.pi * frame / BOB_PERIOD_FRAMES + phase)
            people.append(_moved(person, np.array([speed * frame, bob])))
        scene = Scene(first.image_size, people, [], first.background_seed, first.finish_seed,
                      params)
        image, part_buffer, _ = render_scene(scene)
        yield image, annotate_scene(scene, part_buffer)


def write_moving_people_video(video_path: str | Path, seed: int,
                              image_size: Sequence[int] = (320, 240), num_frames: int = 24,
                              num_people: int = 2, fps: float = 12.0,
                              speeds: Sequence[float] | None = None,
                              boxes_path: str | Path | None = None) -> list[list[dict]]:
    """Write :func:`moving_people_frames` as an mp4 (MPEG-4, ``fps`` frames/s) and, with
    ``boxes_path``, a simulated person detector's boxes for it (COCO detection results with a
    0-based ``frame`` each, :func:`simulate_detections`), as ``pose.infer boxes=`` reads them.

    Returns:
        Per frame, the people's annotations.
    """
    from pose.data.media import open_video_writer

    writer = open_video_writer(video_path, fps, (int(image_size[0]), int(image_size[1])))
    rng = np.random.default_rng([seed, 1])
    annotations, detections = [], []
    try:
        for frame, (image, people) in enumerate(moving_people_frames(
                seed, image_size, num_frames, num_people, speeds)):
            writer.write(image)
            annotations.append(people)
            for detection in simulate_detections(rng, frame, people, tuple(image_size)):
                detections.append({**detection, "frame": frame})
    finally:
        writer.release()
    if boxes_path is not None:
        Path(boxes_path).write_text(json.dumps(detections))
    return annotations
