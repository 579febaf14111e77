"""Object keypoint similarity (OKS), OKS-NMS and keypoint rescoring as in the official HRNet code.

Keypoints are ``[M, K, 3]`` tensors of (x, y, score) in image pixels. Areas are in square pixels;
the official COCO evaluation uses the area of the padded detection box, ``prod(scale * 200)``.
OKS values are computed in float64.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from pose.data.keypoints import COCO_KEYPOINTS

# numpy.spacing(1): the official code adds it to the mean area to avoid dividing by zero.
AREA_EPSILON = 2.220446049250313e-16


def _as_tensor(values: torch.Tensor | Sequence | float) -> torch.Tensor:
    """A tensor as is; anything else as float64 (torch would otherwise round floats to float32)."""
    if isinstance(values, torch.Tensor):
        return values
    return torch.as_tensor(values, dtype=torch.float64)


def _as_float64(
    values: torch.Tensor | Sequence | float, device: torch.device | None = None
) -> torch.Tensor:
    return _as_tensor(values).to(device=device, dtype=torch.float64)


def _sigmas_for(
    sigmas: Sequence[float] | torch.Tensor | None, num_joints: int, device: torch.device
) -> torch.Tensor:
    if sigmas is None:
        sigmas = COCO_KEYPOINTS.oks_sigmas
    sigmas = _as_float64(sigmas, device)
    if sigmas.shape != (num_joints,):
        raise ValueError(
            f"expected {num_joints} OKS sigmas (one per joint), got shape {tuple(sigmas.shape)}; "
            "pass sigmas explicitly for non-COCO keypoints"
        )
    return sigmas


def _check_keypoints(keypoints: torch.Tensor, name: str) -> None:
    if keypoints.dim() != 3 or keypoints.shape[2] != 3:
        raise ValueError(f"{name} must have shape [M, K, 3] (x, y, score), got "
                         f"{tuple(keypoints.shape)}")


def _pairwise_oks(
    references: torch.Tensor,
    reference_areas: torch.Tensor,
    candidates: torch.Tensor,
    candidate_areas: torch.Tensor,
    sigmas: Sequence[float] | torch.Tensor | None,
    visibility_threshold: float | None,
) -> torch.Tensor:
    """OKS of every reference [A, K, 3] against every candidate [B, K, 3] -> [A, B] float64."""
    _check_keypoints(references, "reference keypoints")
    _check_keypoints(candidates, "candidate keypoints")
    if references.shape[1] != candidates.shape[1]:
        raise ValueError(f"references have {references.shape[1]} joints but candidates have "
                         f"{candidates.shape[1]}")
    device = candidates.device
    references = _as_float64(references, device)
    candidates = _as_float64(candidates, device)
    reference_areas = _as_float64(reference_areas, device).reshape(-1)
    candidate_areas = _as_float64(candidate_areas, device).reshape(-1)
    if reference_areas.shape[0] != references.shape[0]:
        raise ValueError(f"expected {references.shape[0]} reference areas, "
                         f"got {reference_areas.shape[0]}")
    if candidate_areas.shape[0] != candidates.shape[0]:
        raise ValueError(f"expected {candidates.shape[0]} candidate areas, "
                         f"got {candidate_areas.shape[0]}")
    variances = (2.0 * _sigmas_for(sigmas, references.shape[1], device)) ** 2  # [K]
    delta = candidates[None, :, :, :2] - references[:, None, :, :2]  # [A, B, K, 2]
    squared_distance = delta[..., 0] ** 2 + delta[..., 1] ** 2
    mean_area = (reference_areas[:, None] + candidate_areas[None, :]) / 2 + AREA_EPSILON
    # Same operation order as the official code so that values agree to the last bits.
    error = squared_distance / variances / mean_area[..., None] / 2  # [A, B, K]
    similarity = torch.exp(-error)
    if visibility_threshold is None:
        return similarity.mean(dim=2)
    # Quirk P7: the official mask `list(vg > t) and list(vd > t)` evaluates to the candidate's
    # mask only, so the reference's scores are ignored; no joint above it gives OKS 0.
    mask = (candidates[..., 2] > visibility_threshold).to(torch.float64)[None]  # [1, B, K]
    count = mask.sum(dim=2)
    total = (similarity * mask).sum(dim=2)
    return torch.where(count > 0, total / count.clamp(min=1), torch.zeros_like(total))


def oks_iou(
    reference: torch.Tensor,
    candidates: torch.Tensor,
    reference_area: float | torch.Tensor,
    candidate_areas: torch.Tensor | Sequence[float],
    sigmas: Sequence[float] | torch.Tensor | None = None,
    visibility_threshold: float | None = None,
) -> torch.Tensor:
    """OKS of one pose against several (official ``oks_iou``).

    ``oks = mean_k exp(-d_k^2 / (2 sigma_k)^2 / ((a_ref + a_cand)/2 + eps) / 2)`` over ALL joints.

    Args:
        reference: [K, 3] (x, y, score) in pixels.
        candidates: [M, K, 3].
        reference_area: area of the reference pose in square pixels.
        candidate_areas: [M] areas in square pixels.
        sigmas: [K] per-joint OKS sigmas; default the COCO ones.
        visibility_threshold: official ``in_vis_thre``. When given, averages only over the joints
            whose CANDIDATE score exceeds it (quirk P7 reproduced: the official code means to
            require both poses' scores but ignores the reference's). COCO evaluation never
            passes it.

    Returns:
        [M] float64 OKS values.
    """
    reference = _as_tensor(reference)
    if reference.dim() != 2:
        raise ValueError(f"reference must have shape [K, 3], got {tuple(reference.shape)}")
    reference_area = _as_float64(reference_area).reshape(1)
    return _pairwise_oks(reference[None], reference_area, _as_tensor(candidates),
                         _as_tensor(candidate_areas), sigmas, visibility_threshold)[0]


def oks_matrix(
    keypoints: torch.Tensor,
    areas: torch.Tensor | Sequence[float],
    sigmas: Sequence[float] | torch.Tensor | None = None,
    visibility_threshold: float | None = None,
) -> torch.Tensor:
    """OKS between all pairs of poses of one image.

    Args:
        keypoints: [M, K, 3] (x, y, score) in pixels.
        areas: [M] areas in square pixels.
        sigmas, visibility_threshold: as in :func:`oks_iou`.

    Returns:
        [M, M] float64; entry [i, j] = ``oks_iou(keypoints[i], keypoints[j:j+1], ...)``
        (symmetric unless ``visibility_threshold`` is given).
    """
    keypoints = _as_tensor(keypoints)
    return _pairwise_oks(keypoints, _as_tensor(areas), keypoints, _as_tensor(areas),
                         sigmas, visibility_threshold)


def score_order(scores: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """Indices by descending score, exactly ``np.argsort(scores)[::-1]`` as the official code sorts.

    numpy's default argsort is not stable (on x86 it dispatches to SIMD sorting networks), so the
    official order of EQUAL scores is numpy's and machine-dependent, not simply "later index
    first". Equal scores are common (e.g. every pose with no joint above the visibility
    threshold scores 0), and the order decides which of them suppresses which, so we call the
    same numpy sort rather than a stable torch sort. Returns a CPU int64 tensor.
    """
    values = _as_tensor(scores).detach().to(device="cpu", dtype=torch.float64).numpy()
    return torch.from_numpy(np.argsort(values)[::-1].copy())


def oks_nms(
    keypoints: torch.Tensor,
    scores: torch.Tensor | Sequence[float],
    areas: torch.Tensor | Sequence[float],
    threshold: float = 0.9,
    sigmas: Sequence[float] | torch.Tensor | None = None,
    visibility_threshold: float | None = None,
) -> list[int]:
    """Greedy OKS non-maximum suppression of the poses of one image (official ``oks_nms``).

    Repeatedly keeps the highest-scoring remaining pose and drops the remaining poses whose OKS
    with it exceeds ``threshold``.

    Args:
        keypoints: [M, K, 3] (x, y, score) in pixels.
        scores: [M] pose scores.
        areas: [M] areas in square pixels.
        threshold: OKS above which a pose is suppressed.
        sigmas, visibility_threshold: as in :func:`oks_iou`.

    Returns:
        Indices of the kept poses, highest score first.
    """
    keypoints = _as_tensor(keypoints)
    scores = _as_tensor(scores).reshape(-1)
    if scores.shape[0] != keypoints.shape[0]:
        raise ValueError(f"expected {keypoints.shape[0]} scores, got {scores.shape[0]}")
    if keypoints.shape[0] == 0:
        return []
    overlaps = oks_matrix(keypoints, areas, sigmas, visibility_threshold) > threshold
    overlaps = overlaps.cpu()
    order = score_order(scores.cpu()).tolist()
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    keep: list[int] = []
    for index in order:
        if suppressed[index]:
            continue
        keep.append(index)
        suppressed |= overlaps[index]
    return keep


def soft_oks_nms(
    keypoints: torch.Tensor,
    scores: torch.Tensor | Sequence[float],
    areas: torch.Tensor | Sequence[float],
    threshold: float = 0.9,
    sigmas: Sequence[float] | torch.Tensor | None = None,
    visibility_threshold: float | None = None,
    max_detections: int = 20,
) -> list[int]:
    """Soft OKS-NMS (official ``soft_oks_nms``, Gaussian decay).

    Takes the best remaining pose, multiplies the remaining scores by
    ``exp(-oks^2 / threshold)`` and re-sorts, until ``max_detections`` poses are taken. Nothing is
    dropped below that count; only the order changes. ``threshold`` is the Gaussian width, as in
    the official code.

    Returns:
        Indices of up to ``max_detections`` poses in the order they were taken.
    """
    keypoints = _as_tensor(keypoints)
    scores = _as_float64(scores).reshape(-1).cpu()
    if scores.shape[0] != keypoints.shape[0]:
        raise ValueError(f"expected {keypoints.shape[0]} scores, got {scores.shape[0]}")
    if keypoints.shape[0] == 0:
        return []
    overlaps = oks_matrix(keypoints, areas, sigmas, visibility_threshold).cpu()
    order = score_order(scores)
    remaining_scores = scores[order]
    keep: list[int] = []
    while order.numel() > 0 and len(keep) < max_detections:
        best = int(order[0])
        keep.append(best)
        order = order[1:]
        decay = torch.exp(-overlaps[best, order] ** 2 / threshold)
        remaining_scores = remaining_scores[1:] * decay
        resort = score_order(remaining_scores)
        order = order[resort]
        remaining_scores = remaining_scores[resort]
    return keep


def rescore(
    maxvals: torch.Tensor,
    box_scores: torch.Tensor | Sequence[float],
    visibility_threshold: float = 0.2,
) -> torch.Tensor:
    """Pose score = mean of the joint confidences above the threshold (0 if none) x box score.

    The joint confidences are summed joint by joint in their own dtype, as the official loop does
    on float32 values, so that the scores agree bit for bit.

    Args:
        maxvals: [N, K] joint confidences (heatmap peak values).
        box_scores: [N] detector box scores (1 for ground-truth boxes).
        visibility_threshold: official ``IN_VIS_THRE``; confidences must be strictly above it.

    Returns:
        [N] float64 pose scores.
    """
    maxvals = _as_tensor(maxvals)
    if maxvals.dim() != 2:
        raise ValueError(f"maxvals must have shape [N, K], got {tuple(maxvals.shape)}")
    box_scores = _as_float64(box_scores, maxvals.device).reshape(-1)
    if box_scores.shape[0] != maxvals.shape[0]:
        raise ValueError(f"expected {maxvals.shape[0]} box scores, got {box_scores.shape[0]}")
    above = maxvals > visibility_threshold
    total = torch.zeros(maxvals.shape[0], dtype=maxvals.dtype, device=maxvals.device)
    for joint in range(maxvals.shape[1]):  # sequential, to round as the official loop does
        total = total + torch.where(above[:, joint], maxvals[:, joint], torch.zeros_like(total))
    count = above.sum(dim=1)
    mean_confidence = torch.where(count > 0, total / count.clamp(min=1).to(total.dtype),
                                  torch.zeros_like(total))
    return mean_confidence.to(torch.float64) * box_scores
