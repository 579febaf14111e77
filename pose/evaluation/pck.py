"""PCK and EPE in torch, for any keypoint set.

PCK@α (the AP-10K / animal-pose convention, as mmpose's ``keypoint_pck_accuracy`` computes it):
a labelled keypoint is correct when its distance to the ground truth, divided by the longer side
of the person's ground-truth box, is below α (strictly). Each keypoint's PCK is the fraction of
its labelled instances that are correct; the reported PCK is the mean over the keypoints labelled
at least once. EPE is the mean end-point error in pixels over all labelled keypoints.

Which prediction is a person's: with ground-truth boxes, the crop of the person's own box; with
detector boxes, the crop whose box has the highest IoU (>= 0.5) with the person's box in its
image. A person without one is a *miss*: its labelled keypoints count as wrong for PCK and are
left out of EPE.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

PCK_THRESHOLDS: tuple[float, ...] = (0.05, 0.1, 0.2)
PCK_NAMES: tuple[str, ...] = tuple(f"PCK@{threshold:g}" for threshold in PCK_THRESHOLDS)
EPE_NAME = "EPE"
MISSES_NAME = "misses"  # people without a matching detection (detector boxes only)
MATCH_IOU = 0.5


@dataclass(frozen=True)
class PersonGroundTruth:
    """The people PCK and EPE are computed over, and which crop predicts each one.

    Exactly one of ``crop_person`` (ground-truth boxes) and ``crop_boxes`` (detector boxes) is
    set; both are indexed by the dataset index of the crop (``Predictions.indices``).
    """

    image_ids: torch.Tensor  # [G] int64
    joints: torch.Tensor  # [G, K, 2] float64, image pixels (0-based)
    labelled: torch.Tensor  # [G, K] bool
    boxes: torch.Tensor  # [G, 4] float64, the annotations' boxes (x, y, w, h) in pixels
    crop_person: torch.Tensor | None = None  # [N] int64: the person of each crop (-1: none)
    crop_boxes: torch.Tensor | None = None  # [N, 4] float64: each crop's detection box

    def __post_init__(self) -> None:
        if (self.crop_person is None) == (self.crop_boxes is None):
            raise ValueError("give exactly one of crop_person (ground-truth boxes) and "
                             "crop_boxes (detector boxes)")


def box_iou(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """IoU of boxes (x, y, w, h), pixels: ``first`` [A, 4] x ``second`` [B, 4] -> [A, B]
    (0 where the union is empty)."""
    first, second = first.to(torch.float64), second.to(torch.float64)
    low = torch.maximum(first[:, None, :2], second[None, :, :2])
    high = torch.minimum(first[:, None, :2] + first[:, None, 2:],
                         second[None, :, :2] + second[None, :, 2:])
    overlap = (high - low).clamp(min=0).prod(dim=2)
    union = (first[:, 2] * first[:, 3])[:, None] + (second[:, 2] * second[:, 3])[None] - overlap
    return torch.where(union > 0, overlap / union.clamp(min=torch.finfo(torch.float64).tiny),
                       torch.zeros_like(overlap))


def match_by_box(person_boxes: torch.Tensor, person_images: torch.Tensor,
                 crop_boxes: torch.Tensor, crop_images: torch.Tensor,
                 min_iou: float = MATCH_IOU) -> torch.Tensor:
    """For each person, the crop of highest box IoU (at least ``min_iou``) in the same image.

    Args:
        person_boxes: [G, 4], crop_boxes: [N, 4]: boxes (x, y, w, h) in pixels.
        person_images: [G], crop_images: [N]: image ids.

    Returns:
        [G] int64: a position in the crops, or -1 (a miss). Several people may share a crop; on
        equal IoU the first crop wins.
    """
    if person_boxes.shape[0] == 0 or crop_boxes.shape[0] == 0:
        return torch.full((person_boxes.shape[0],), -1, dtype=torch.int64)
    iou = box_iou(person_boxes, crop_boxes)
    iou = torch.where(person_images[:, None] == crop_images[None, :], iou,
                      torch.full_like(iou, -1.0))
    best_iou, best = iou.max(dim=1)  # max returns the first of equal values
    return torch.where(best_iou >= min_iou, best, torch.full_like(best, -1))


def pck(pred: torch.Tensor, gt: torch.Tensor, labelled: torch.Tensor, sizes: torch.Tensor,
        thresholds: Sequence[float] = PCK_THRESHOLDS) -> dict[str, float]:
    """PCK at each threshold: the mean over keypoints of each keypoint's fraction of correct
    labelled instances (keypoints never labelled are left out; 0 if none is labelled).

    Args:
        pred: [G, K, 2] predicted pixels; NaN for a person without a prediction (always wrong).
        gt: [G, K, 2] ground-truth pixels.
        labelled: [G, K] bool.
        sizes: [G] the normaliser in pixels (the longer side of each person's box, > 0).
        thresholds: the α values.

    Returns:
        ``{"PCK@<α>": fraction}`` in ``thresholds`` order.
    """
    distance = torch.linalg.vector_norm(pred.to(torch.float64) - gt.to(torch.float64), dim=2)
    normalised = distance / sizes.to(torch.float64)[:, None]
    counts = labelled.sum(dim=0)  # [K]
    measured = counts > 0
    metrics = {}
    for threshold in thresholds:
        # NaN (a miss) compares False: wrong.
        correct = ((normalised < threshold) & labelled).sum(dim=0)
        per_joint = correct[measured].to(torch.float64) / counts[measured]
        metrics[f"PCK@{threshold:g}"] = float(per_joint.mean()) if bool(measured.any()) else 0.0
    return metrics


def epe(pred: torch.Tensor, gt: torch.Tensor, labelled: torch.Tensor) -> float:
    """The mean end-point error in pixels over the labelled keypoints with a prediction
    (``pred`` [G, K, 2], NaN rows for people without one; ``gt`` [G, K, 2]; ``labelled`` [G, K]);
    0 when there are none."""
    distance = torch.linalg.vector_norm(pred.to(torch.float64) - gt.to(torch.float64), dim=2)
    used = labelled & torch.isfinite(distance)
    return float(distance[used].mean()) if bool(used.any()) else 0.0


def person_predictions(people: PersonGroundTruth, keypoints: torch.Tensor, indices: torch.Tensor,
                       image_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each person's predicted keypoints [G, K, 2] float64 (NaN for a miss) and whether it has
    one [G], from the predictions ``keypoints`` [N, K, 2] of the crops ``indices`` [N] (dataset
    indices) in ``image_ids`` [N]."""
    count = people.joints.shape[0]
    chosen = torch.full((count,), -1, dtype=torch.int64)
    if people.crop_person is not None:
        person = people.crop_person[indices]
        valid = person >= 0
        chosen[person[valid]] = torch.nonzero(valid)[:, 0]
    else:
        chosen = match_by_box(people.boxes, people.image_ids, people.crop_boxes[indices],
                              image_ids)
    pred = torch.full((count, *keypoints.shape[1:]), float("nan"), dtype=torch.float64)
    found = chosen >= 0
    pred[found] = keypoints[chosen[found]].to(torch.float64)
    return pred, found


def person_metrics(people: PersonGroundTruth, keypoints: torch.Tensor, indices: torch.Tensor,
                   image_ids: torch.Tensor) -> dict[str, float]:
    """PCK@0.05, PCK@0.1, PCK@0.2 (fractions), EPE (pixels) and, with detector boxes, the
    number of people without a matching detection (``misses``), of the predictions
    ``keypoints`` [N, K, 2] (image pixels) of the crops ``indices`` [N] in ``image_ids`` [N]."""
    pred, found = person_predictions(people, keypoints, indices, image_ids)
    sizes = people.boxes[:, 2:].amax(dim=1)
    metrics = pck(pred, people.joints, people.labelled, sizes)
    metrics[EPE_NAME] = epe(pred, people.joints, people.labelled)
    if people.crop_boxes is not None:
        metrics[MISSES_NAME] = int((~found).sum())
    return metrics
