"""Following people through a video: track ids by greedy matching, One-Euro smoothing of each
track's keypoints, and crop boxes from keypoints (for the frames between detector runs).

Keypoints are [K, 2] image pixels with [K] confidences; boxes are ``x, y, w, h`` pixels; time is
in seconds (frame index / frame rate).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pose.engine.estimator import Person
from pose.evaluation.nms import oks_iou

# A box made from keypoints spans the joints, not the body (the head top, the feet, the hands
# reach beyond them): enlarged by this factor it resembles a detector's person box.
KEYPOINT_BOX_ENLARGEMENT = 1.25


class OneEuroFilter:
    """The One-Euro filter (Casiez, Roussel and Vogel, CHI 2012) of an array-valued signal,
    element by element: an exponential smoother whose cutoff frequency rises with the signal's
    speed, so that slow movements lose their jitter and fast ones keep little lag.

    Args:
        min_cutoff: the cutoff frequency at rest, Hz (lower: smoother).
        beta: cutoff added per unit/s of (smoothed) speed (higher: less lag when moving).
        derivative_cutoff: the cutoff frequency of the speed estimate, Hz.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.1,
                 derivative_cutoff: float = 1.0) -> None:
        if min_cutoff <= 0 or derivative_cutoff <= 0 or beta < 0:
            raise ValueError(f"One-Euro needs min_cutoff > 0, derivative_cutoff > 0 and "
                             f"beta >= 0, got {min_cutoff}, {derivative_cutoff}, {beta}")
        self.min_cutoff = min_cutoff
        self.beta = beta
        self.derivative_cutoff = derivative_cutoff
        self._time: float | None = None
        self._value: np.ndarray | None = None
        self._speed: np.ndarray | None = None

    @staticmethod
    def _smoothing(cutoff: np.ndarray | float, elapsed: float) -> np.ndarray | float:
        """The exponential smoothing factor of a first-order low-pass at ``cutoff`` Hz."""
        time_constant = 1.0 / (2 * math.pi * np.asarray(cutoff))
        return 1.0 / (1.0 + time_constant / elapsed)

    def __call__(self, time: float, value: np.ndarray) -> np.ndarray:
        """The filtered ``value`` (any shape, fixed across calls) at ``time`` seconds (increasing;
        a repeated time returns the previous output)."""
        value = np.asarray(value, dtype=np.float64)
        if self._value is None or self._time is None:
            self._time, self._value, self._speed = time, value.copy(), np.zeros_like(value)
            return value.copy()
        elapsed = time - self._time
        if elapsed <= 0:
            return self._value.copy()
        speed = (value - self._value) / elapsed
        speed_factor = self._smoothing(self.derivative_cutoff, elapsed)
        self._speed = self._speed + speed_factor * (speed - self._speed)
        cutoff = self.min_cutoff + self.beta * np.abs(self._speed)
        self._value = self._value + self._smoothing(cutoff, elapsed) * (value - self._value)
        self._time = time
        return self._value.copy()


def keypoint_box(keypoints: np.ndarray, scores: np.ndarray, threshold: float,
                 enlargement: float = KEYPOINT_BOX_ENLARGEMENT) -> np.ndarray | None:
    """The box ``x, y, w, h`` (pixels) around the keypoints scoring above ``threshold``, enlarged
    by ``enlargement`` about its centre; None with fewer than two such keypoints."""
    shown = keypoints[scores > threshold]
    if len(shown) < 2:
        return None
    low, high = shown.min(axis=0), shown.max(axis=0)
    centre, size = (low + high) / 2, (high - low) * enlargement
    if size[0] <= 0 or size[1] <= 0:
        return None
    return np.concatenate([centre - size / 2, size])


def box_iou_matrix(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """[A, B] intersection over union of boxes ``first`` [A, 4] and ``second`` [B, 4]
    (``x, y, w, h`` pixels); 0 where both are empty."""
    first, second = np.asarray(first, np.float64), np.asarray(second, np.float64)
    low = np.maximum(first[:, None, :2], second[None, :, :2])
    high = np.minimum(first[:, None, :2] + first[:, None, 2:],
                      second[None, :, :2] + second[None, :, 2:])
    overlap = np.clip(high - low, 0, None).prod(axis=2)
    union = first[:, None, 2:].prod(axis=2) + second[None, :, 2:].prod(axis=2) - overlap
    return np.where(union > 0, overlap / np.where(union > 0, union, 1), 0.0)


@dataclass
class _Track:
    track_id: int
    person: Person
    last_frame: int
    smoother: OneEuroFilter | None


class PoseTracker:
    """Track ids for the people of consecutive frames, with optional One-Euro smoothing.

    Each frame's people are matched greedily to the live tracks: the pair of highest similarity
    first (OKS of the poses, with the keypoint set's sigmas, or IoU of the boxes), down to
    ``threshold``; a person left over starts a new track (ids 0, 1, ...), and a track unmatched
    for more than ``max_age`` frames ends.

    Args:
        max_age: frames a track waits for its person.
        metric: "oks" or "iou".
        threshold: the least similarity of a match.
        sigmas: [K] OKS sigmas (None: IoU is used whatever ``metric`` says).
        smoothing: (min_cutoff Hz, beta) of a One-Euro filter per track, or None.
        fps: frames per second (the filter's time base).
    """

    def __init__(self, max_age: int = 30, metric: str = "oks", threshold: float = 0.3,
                 sigmas: Sequence[float] | None = None,
                 smoothing: tuple[float, float] | None = None, fps: float = 25.0) -> None:
        if metric not in ("oks", "iou"):
            raise ValueError(f"track metric {metric!r} is not known: expected oks or iou")
        self.max_age = max_age
        self.metric = metric if sigmas is not None else "iou"
        self.threshold = threshold
        self.sigmas = sigmas
        self.smoothing = smoothing
        self.fps = fps
        self.tracks: list[_Track] = []
        self._next_id = 0

    def similarity(self, tracks: Sequence[_Track], people: Sequence[Person]) -> np.ndarray:
        """[T, P] OKS (or IoU) of each track's last person with each new person."""
        matrix = np.zeros((len(tracks), len(people)))
        if not tracks or not people:
            return matrix
        if self.metric == "iou":
            return box_iou_matrix(np.stack([track.person.box for track in tracks]),
                                  np.stack([person.box for person in people]))
        candidates = np.stack([person.keypoint_triplets() for person in people])
        areas = np.array([person.box[2] * person.box[3] for person in people])
        for row, track in enumerate(tracks):
            reference = track.person
            matrix[row] = oks_iou(reference.keypoint_triplets(), candidates,
                                  reference.box[2] * reference.box[3], areas,
                                  sigmas=self.sigmas).numpy()
        return matrix

    def update(self, frame: int, people: Sequence[Person]) -> list[Person]:
        """Give the people of ``frame`` (0-based, increasing) their ``track_id`` and, with
        smoothing, their tracks' smoothed keypoints; returns them (the same objects)."""
        self.tracks = [track for track in self.tracks if frame - track.last_frame <= self.max_age]
        matrix = self.similarity(self.tracks, people)
        assigned: dict[int, _Track] = {}
        for flat in np.argsort(-matrix, axis=None, kind="stable"):
            row, column = divmod(int(flat), matrix.shape[1])
            if matrix[row, column] < self.threshold:
                break
            track = self.tracks[row]
            if column in assigned or any(t is track for t in assigned.values()):
                continue
            assigned[column] = track
        for column, person in enumerate(people):
            track = assigned.get(column)
            if track is None:
                smoother = OneEuroFilter(*self.smoothing) if self.smoothing else None
                track = _Track(self._next_id, person, frame, smoother)
                self._next_id += 1
                self.tracks.append(track)
            person.track_id = track.track_id
            if track.smoother is not None:
                person.keypoints = track.smoother(frame / self.fps, person.keypoints)
            track.person, track.last_frame = person, frame
        return list(people)
