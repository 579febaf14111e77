"""``pose.infer``'s run: images or a video → person boxes → :class:`PoseEstimator` → (tracks) →
``predictions.json``, overlays in ``vis/`` and ``<video stem>.mp4``.

Images are read ``batch_size`` at a time by a background thread (decoding overlaps the model);
the boxes of a batch come from one call of the box source, and all their crops go through the
model together. A video streams: with ``detector_interval`` 1 its frames are taken 8 at a time
(:class:`VideoSettings`) the same way; with N > 1 the box source runs every N frames and, in
between, each person's box is made from its keypoints in the previous frame.
``predictions.json`` grows in a temporary file that
replaces nothing until the run has finished.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pose.data.keypoints import KeypointSpec
from pose.data.media import ImageFile, VideoFrames, open_video_writer, read_ahead, read_image
from pose.engine.detectors import BoxSource, no_boxes
from pose.engine.estimator import Person, PoseEstimator
from pose.engine.logger import progress
from pose.engine.tracking import PoseTracker, keypoint_box
from pose.evaluation.coco import PERSON_CATEGORY_ID
from pose.visualize import draw_person, side_colours, track_colour


@dataclass(frozen=True)
class OverlayStyle:
    """How people are drawn: the keypoint set's skeleton and side colours, the least joint
    confidence and pose score drawn, and whether boxes (with track ids) are."""

    keypoints: KeypointSpec
    kpt_threshold: float = 0.3
    person_threshold: float = 0.3
    draw_boxes: bool = True

    def draw(self, image: np.ndarray, people: Sequence[Person]) -> np.ndarray:
        """A copy of ``image`` (BGR) with ``people`` drawn on it."""
        canvas = image.copy()
        colours = side_colours(self.keypoints.num_joints, self.keypoints.skeleton,
                               self.keypoints.flip_pairs)
        for person in people:
            if person.score < self.person_threshold:
                continue
            tracked = person.track_id is not None
            label = f"{person.track_id}" if tracked else f"{person.score:.2f}"
            draw_person(canvas, person.keypoint_triplets(), self.keypoints.skeleton, colours,
                        self.kpt_threshold, person.box if self.draw_boxes else None,
                        track_colour(person.track_id) if tracked else (255, 255, 255), label)
        return canvas


@dataclass
class RunSummary:
    """What a run did: inputs read, inputs skipped as unreadable (names), people predicted
    (after NMS) and those of them scoring at least the person threshold."""

    inputs: int = 0
    skipped: list[str] = field(default_factory=list)
    people: int = 0
    confident: int = 0
    seconds: float = 0.0

    def count(self, people: Sequence[Person], person_threshold: float) -> None:
        self.people += len(people)
        self.confident += sum(person.score >= person_threshold for person in people)


class PredictionsFile:
    """``predictions.json`` (a JSON list in the COCO results format), written entry by entry to a
    temporary file beside it and moved into place by :meth:`commit` (atomic: a reader sees the
    whole list or nothing)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.temporary = path.with_name(f".{path.name}.tmp")
        self._handle = self.temporary.open("w")
        self._handle.write("[")
        self._count = 0

    def add(self, entries: Sequence[dict[str, Any]]) -> None:
        for entry in entries:
            self._handle.write(("," if self._count else "") + "\n" + json.dumps(entry))
            self._count += 1

    def commit(self) -> None:
        self._handle.write("\n]\n")
        self._handle.close()
        os.replace(self.temporary, self.path)

    def discard(self) -> None:
        self._handle.close()
        self.temporary.unlink(missing_ok=True)


def coco_entries(people: Sequence[Person], image_id: int, file_name: str,
                 frame: int | None = None) -> list[dict[str, Any]]:
    """The COCO results entries of one image's people (``image_id``, ``category_id``,
    ``keypoints`` [x, y, score] * K, ``score``, ``bbox`` [x, y, w, h]) plus ``file_name`` and,
    for a video frame, ``frame`` and ``track_id`` (when tracked)."""
    entries = []
    for person in people:
        entry = {"image_id": int(image_id), "category_id": PERSON_CATEGORY_ID,
                 "keypoints": person.keypoint_triplets().reshape(-1).tolist(),
                 "score": float(person.score), "bbox": [float(v) for v in person.box],
                 "file_name": file_name}
        if frame is not None:
            entry["frame"] = int(frame)
            if person.track_id is not None:
                entry["track_id"] = int(person.track_id)
        entries.append(entry)
    return entries


def _read_batches(images: Sequence[ImageFile], batch_size: int, respect_exif: bool
                  ) -> Iterator[list[tuple[ImageFile, np.ndarray | None]]]:
    for start in range(0, len(images), batch_size):
        yield [(image, read_image(image.path, respect_exif))
               for image in images[start:start + batch_size]]


def run_on_images(estimator: PoseEstimator, images: Sequence[ImageFile], box_source: BoxSource,
                  out_dir: Path, style: OverlayStyle | None, batch_size: int = 32,
                  respect_exif: bool = True, person_threshold: float = 0.3) -> RunSummary:
    """Predict the people of every image and write ``predictions.json`` and, with ``style``,
    ``vis/<name>``; unreadable images are skipped and named in the summary (which counts the
    people scoring at least ``person_threshold`` apart).

    Raises:
        OSError: not one image could be read (nothing is written then).
    """
    started, summary = time.perf_counter(), RunSummary()
    predictions = PredictionsFile(out_dir / "predictions.json")
    bar = progress(None, "infer", total=len(images), unit="img")
    batches = read_ahead(_read_batches(images, batch_size, respect_exif))
    try:
        for batch in batches:
            readable = [(image, pixels) for image, pixels in batch if pixels is not None]
            summary.skipped += [image.name for image, pixels in batch if pixels is None]
            keys = [image for image, _ in readable]
            pictures = [pixels for _, pixels in readable]
            people = estimator.predict_batch(pictures, box_source(pictures, keys))
            for image, pixels, image_people in zip(keys, pictures, people, strict=True):
                predictions.add(coco_entries(image_people, image.image_id, image.name))
                if style is not None:
                    _write_overlay(out_dir / "vis" / image.name, style.draw(pixels, image_people))
                summary.count(image_people, person_threshold)
            summary.inputs += len(readable)
            bar.update(len(batch))
        if summary.inputs == 0:
            raise OSError(f"none of the {len(images)} input images could be read "
                          f"(corrupt or not images), e.g. {images[0].path}")
        predictions.commit()
    finally:
        batches.close()  # stops the reading thread
        bar.close()
        predictions.discard()
    summary.seconds = time.perf_counter() - started
    return summary


def _write_overlay(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"cannot write the overlay {path}")


def boxes_from_people(people: Sequence[Person], kpt_threshold: float,
                      person_threshold: float) -> np.ndarray:
    """[M, 5] boxes for the next frame from this frame's people scoring at least
    ``person_threshold``: around their keypoints above ``kpt_threshold``, enlarged as a crop
    box (:func:`pose.engine.tracking.keypoint_box`), each with its person's box score."""
    rows = []
    for person in people:
        if person.score < person_threshold:
            continue
        box = keypoint_box(person.keypoints, person.scores, kpt_threshold)
        if box is not None:
            rows.append([*box, person.box_score])
    return np.asarray(rows, dtype=np.float64).reshape(-1, 5) if rows else no_boxes()


@dataclass
class VideoSettings:
    """How a video is run: the box source every ``detector_interval`` frames (boxes from the
    previous frame's people in between: joints above ``kpt_threshold`` of people scoring at
    least ``person_threshold``), frames per step with ``detector_interval`` 1 (their crops go
    through the model together; a few people each fill a forward batch, and even 4K frames
    stay small in memory), tracks and overlays."""

    detector_interval: int = 1
    frames_per_step: int = 8
    kpt_threshold: float = 0.3
    person_threshold: float = 0.3
    tracker: PoseTracker | None = None
    style: OverlayStyle | None = None


def _frame_batches(video: VideoFrames, size: int) -> Iterator[list[tuple[int, np.ndarray]]]:
    batch = []
    for item in video:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def run_on_video(estimator: PoseEstimator, video: VideoFrames, box_source: BoxSource,
                 out_dir: Path, settings: VideoSettings) -> RunSummary:
    """Predict the people of every frame, streaming, and write ``predictions.json`` (``frame``,
    ``track_id``) and, with an overlay style, ``<video stem>.mp4`` at the source frame rate."""
    started, summary = time.perf_counter(), RunSummary()
    predictions = PredictionsFile(out_dir / "predictions.json")
    writer = None
    if settings.style is not None:
        writer = open_video_writer(out_dir / f"{video.path.stem}.mp4", video.fps, video.size)
    bar = progress(None, "infer", total=video.frame_count or None, unit="frame")
    # Frames depend on the previous frame's people when the detector skips frames.
    frames_per_step = settings.frames_per_step if settings.detector_interval == 1 else 1
    previous: list[Person] = []
    batches = read_ahead(_frame_batches(video, frames_per_step))
    try:
        for batch in batches:
            indices = [index for index, _ in batch]
            frames = [frame for _, frame in batch]
            if indices[0] % settings.detector_interval == 0:
                boxes = box_source(frames, indices)
            else:
                boxes = [boxes_from_people(previous, settings.kpt_threshold,
                                           settings.person_threshold)]
            for index, frame, people in zip(indices, frames,
                                            estimator.predict_batch(frames, boxes), strict=True):
                if settings.tracker is not None:
                    settings.tracker.update(index, people)
                predictions.add(coco_entries(people, index, video.path.name, frame=index))
                if writer is not None:
                    writer.write(settings.style.draw(frame, people))
                summary.count(people, settings.person_threshold)
                previous = people
            summary.inputs += len(batch)
            bar.update(len(batch))
        predictions.commit()
    finally:
        batches.close()  # stops the reading thread before its video is released
        bar.close()
        predictions.discard()
        video.close()
        if writer is not None:
            writer.release()
    summary.seconds = time.perf_counter() - started
    return summary
