"""MPII PCKh in torch, as the official HRNet ``MPIIDataset.evaluate`` computes it.

A joint is correct when its distance to the ground truth is at most ``threshold`` head sizes,
the head size being 0.6 times the diagonal of the annotated head box. Only visible (annotated)
joints count. The table groups left and right joints; "Mean" is the mean over all joints but
pelvis and thorax, weighted by their visible counts.

Quirk P8: the official tables' "Mean@0.1" is the mean at 0.11 (``pckAll[11]`` of
``arange(0, 0.51, 0.01)``), in the HRNet and Lite-HRNet (mmpose <= 0.16) tables alike. We report
the true "Mean@0.1" and, under :data:`OFFICIAL_MEAN_AT_01`, the official one for comparison with
published numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pose.evaluation.nms import pairwise_sum

HEAD_SIZE_FACTOR = 0.6  # official SC_BIAS
# The thresholds the official code evaluates (its `rng`), computed the same way.
OFFICIAL_THRESHOLDS: np.ndarray = np.arange(0, 0.5 + 0.01, 0.01)
OFFICIAL_MEAN_AT_01 = "Mean@0.1 (official: at 0.11)"
# Joint pairs of the table, (left, right) in MPII's joint order (as the official sums them).
PCKH_GROUPS: dict[str, tuple[int, ...]] = {
    "Head": (9,), "Shoulder": (13, 12), "Elbow": (14, 11), "Wrist": (15, 10), "Hip": (3, 2),
    "Knee": (4, 1), "Ankle": (5, 0),
}
EXCLUDED_FROM_MEAN = (6, 7)  # pelvis and thorax
PCKH_NAMES: tuple[str, ...] = (*PCKH_GROUPS, "Mean", "Mean@0.1", OFFICIAL_MEAN_AT_01)
NUM_MPII_JOINTS = 16


@dataclass(frozen=True)
class PckhGroundTruth:
    """What PCKh compares predictions with, one row per person of the split."""

    joints: np.ndarray  # [N, 16, 2] float64, 0-based pixels
    visible: np.ndarray  # [N, 16] int64, 1 where annotated
    head_boxes: np.ndarray  # [N, 2, 2] float64, two corners, 0-based pixels
    source: str  # the file they were read from


def _check_shapes(pred: torch.Tensor, gt: torch.Tensor, visible: torch.Tensor,
                  head_boxes: torch.Tensor) -> None:
    count = pred.shape[0]
    expected = {"pred": (pred, (count, NUM_MPII_JOINTS, 2)),
                "gt": (gt, (count, NUM_MPII_JOINTS, 2)),
                "visible": (visible, (count, NUM_MPII_JOINTS)),
                "head_boxes": (head_boxes, (count, 2, 2))}
    for name, (value, shape) in expected.items():
        if tuple(value.shape) != shape:
            raise ValueError(f"{name} must have shape {list(shape)} (N people, 16 MPII joints), "
                             f"got {list(value.shape)}")


def pckh_per_joint(pred: torch.Tensor, gt: torch.Tensor, visible: torch.Tensor,
                   head_boxes: torch.Tensor, thresholds: torch.Tensor | np.ndarray
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """PCKh of each joint at each threshold.

    Args:
        pred, gt: [N, 16, 2] joint positions, 0-based pixels.
        visible: [N, 16], nonzero where the joint is annotated.
        head_boxes: [N, 2, 2] two opposite corners (x, y) of each head box, pixels.
        thresholds: [R] in head sizes.

    Returns:
        ``(pckh, counts)``: [R, 16] float64 percentages (NaN for a joint never visible) and the
        [16] int64 visible counts.
    """
    pred, gt = torch.as_tensor(pred), torch.as_tensor(gt)
    visible, head_boxes = torch.as_tensor(visible), torch.as_tensor(head_boxes)
    _check_shapes(pred, gt, visible, head_boxes)
    device = pred.device
    pred, gt = pred.to(torch.float64), gt.to(device, torch.float64)
    head_boxes = head_boxes.to(device, torch.float64)
    visible = visible.to(device) != 0
    delta = pred - gt
    error = torch.sqrt(delta[..., 0] * delta[..., 0] + delta[..., 1] * delta[..., 1])  # [N, 16]
    head_extent = head_boxes[:, 1] - head_boxes[:, 0]
    head_size = torch.sqrt(head_extent[:, 0] * head_extent[:, 0]
                           + head_extent[:, 1] * head_extent[:, 1]) * HEAD_SIZE_FACTOR
    scaled_error = error / head_size[:, None]
    thresholds = torch.as_tensor(np.asarray(thresholds, dtype=np.float64), device=device)
    correct = (scaled_error[None] <= thresholds[:, None, None]) & visible[None]  # [R, N, 16]
    counts = visible.sum(dim=0)
    percent = 100.0 * correct.sum(dim=1).to(torch.float64) / counts.to(torch.float64)
    return percent, counts


def pckh(pred: torch.Tensor, gt: torch.Tensor, visible: torch.Tensor, head_boxes: torch.Tensor,
         threshold: float = 0.5) -> dict[str, float]:
    """The official MPII PCKh table.

    Args:
        pred: [N, 16, 2] predicted joints, 0-based pixels, MPII joint order
            (:data:`pose.data.keypoints.MPII_KEYPOINTS`).
        gt: [N, 16, 2] ground-truth joints, 0-based pixels.
        visible: [N, 16], nonzero where the ground-truth joint is annotated.
        head_boxes: [N, 2, 2] two opposite corners (x, y) of each head box, pixels.
        threshold: the PCKh threshold in head sizes of the table's columns and "Mean".

    Returns:
        Percentages keyed by :data:`PCKH_NAMES`: ``Head``, ``Shoulder``, ``Elbow``, ``Wrist``,
        ``Hip``, ``Knee``, ``Ankle`` (left and right averaged), ``Mean`` (all joints but pelvis
        and thorax, weighted by their visible counts), ``Mean@0.1`` (the same at 0.1), and
        :data:`OFFICIAL_MEAN_AT_01`, the number the official tables print as "Mean@0.1" (at
        0.11, quirk P8). A joint never visible has PCKh NaN and no weight in the means.
    """
    thresholds = np.array([threshold, OFFICIAL_THRESHOLDS[10], OFFICIAL_THRESHOLDS[11]])
    percent, counts = pckh_per_joint(pred, gt, visible, head_boxes, thresholds)
    in_mean = torch.ones(NUM_MPII_JOINTS, dtype=torch.bool, device=counts.device)
    in_mean[list(EXCLUDED_FROM_MEAN)] = False
    weights = torch.where(in_mean, counts, torch.zeros_like(counts))
    # The official ratio is the count over the (masked) total, summed in numpy's order with
    # the excluded joints as zeros.
    ratio = weights.to(torch.float64) / weights.sum().to(torch.float64)
    terms = torch.where((ratio > 0)[None], percent * ratio[None], torch.zeros_like(percent))
    means = pairwise_sum(terms, torch.full((terms.shape[0],), NUM_MPII_JOINTS,
                                           device=terms.device))
    table = {name: float(0.5 * (percent[0, joints[0]] + percent[0, joints[1]]))
             if len(joints) == 2 else float(percent[0, joints[0]])
             for name, joints in PCKH_GROUPS.items()}
    table["Mean"] = float(means[0])
    table["Mean@0.1"] = float(means[1])
    table[OFFICIAL_MEAN_AT_01] = float(means[2])
    return table
