"""Keypoint metadata: joint names, flip pairs, skeletons, OKS sigmas and half-body joint sets.

Every other module takes a :class:`KeypointSpec` (or plain values read from one) instead of
hard-coding joint indices, so a new keypoint layout is one new constant here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class KeypointSpec:
    """A keypoint layout. Joint ids are 0-based indices into ``joint_names``."""

    name: str
    joint_names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    skeleton: tuple[tuple[int, int], ...]
    upper_body_ids: tuple[int, ...]
    lower_body_ids: tuple[int, ...]
    # Per-joint OKS sigmas (COCO's are the published per-joint standard deviations / 10);
    # None where the dataset defines none (MPII is evaluated with PCKh).
    oks_sigmas: tuple[float, ...] | None = None

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)


def flip_permutation(num_joints: int, flip_pairs: Sequence[Sequence[int]]) -> list[int]:
    """Index map that swaps each (left, right) joint pair: ``flipped[k] = original[perm[k]]``.

    The one place the flip test (heatmap channels) and flip augmentation (joint rows) get
    their joint order from.
    """
    permutation = list(range(num_joints))
    for left, right in flip_pairs:
        if not (0 <= left < num_joints and 0 <= right < num_joints):
            raise ValueError(f"flip pair ({left}, {right}) is out of range for {num_joints} joints")
        permutation[left], permutation[right] = right, left
    return permutation


COCO_KEYPOINTS = KeypointSpec(
    name="coco",
    joint_names=(
        "nose", "left_eye", "right_eye", "left_ear", "right_ear",
        "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
        "left_wrist", "right_wrist", "left_hip", "right_hip",
        "left_knee", "right_knee", "left_ankle", "right_ankle",
    ),
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    # COCO's own skeleton from person_keypoints_*.json, converted to 0-based ids.
    skeleton=(
        (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
        (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
    ),
    upper_body_ids=tuple(range(11)),
    lower_body_ids=tuple(range(11, 17)),
    # Written as the official code and pycocotools compute them (the published values / 10.0),
    # which differs from the literals 0.026, ... in the last bit of three of them.
    oks_sigmas=tuple(value / 10.0 for value in (
        0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72,
        0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89,
    )),
)

MPII_KEYPOINTS = KeypointSpec(
    name="mpii",
    joint_names=(
        "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
        "pelvis", "thorax", "upper_neck", "head_top",
        "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist",
    ),
    flip_pairs=((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)),
    skeleton=(
        (0, 1), (1, 2), (2, 6), (3, 6), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9),
        (7, 12), (12, 11), (11, 10), (7, 13), (13, 14), (14, 15),
    ),
    upper_body_ids=(7, 8, 9, 10, 11, 12, 13, 14, 15),
    lower_body_ids=(0, 1, 2, 3, 4, 5, 6),
)

KEYPOINT_SPECS: dict[str, KeypointSpec] = {spec.name: spec for spec in (COCO_KEYPOINTS, MPII_KEYPOINTS)}
