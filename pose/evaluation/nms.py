"""Object keypoint similarity (OKS), OKS-NMS and keypoint rescoring as in the official HRNet code.

Keypoints are ``[M, K, 3]`` tensors of (x, y, score) in image pixels. Areas are in square pixels;
the official COCO evaluation uses the area of the padded detection box, ``prod(scale * 200)``.
OKS values are computed in float64, with the official operation order, numpy's ``exp``
(:func:`numpy_exp`) and numpy's summation order (:func:`pairwise_sum`), so that on the CPU they
equal the official code's values, computed by the same numpy on the same CPU, bit for bit.

The NMS functions work on a whole result set at once: ``groups`` (e.g. image ids) say which poses
compete, and the greedy passes run over score ranks, vectorised across the groups.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from pose.data.keypoints import COCO_KEYPOINTS

# numpy.spacing(1): the official code adds it to the mean area to avoid dividing by zero.
AREA_EPSILON = 2.220446049250313e-16
# numpy sums up to this many values with 8 interleaved accumulators; longer runs are split.
_NUMPY_PAIRWISE_BLOCK = 128


def _as_tensor(values: torch.Tensor | Sequence | float) -> torch.Tensor:
    """A tensor as is; anything else as float64 (torch would otherwise round floats to float32)."""
    if isinstance(values, torch.Tensor):
        return values
    return torch.as_tensor(np.asarray(values, dtype=np.float64))


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


def numpy_exp(values: torch.Tensor) -> torch.Tensor:
    """``exp`` of a float64 tensor as numpy computes it: numpy's own on the CPU, torch's on CUDA.

    Neither library rounds ``exp`` correctly, and each picks its implementation by the CPU's
    instruction set (torch: MKL's, whose code path depends on the CPU; numpy: its AVX-512F loop,
    else the C library's ``exp``), so the two differ by one unit in the last place for some
    inputs on some CPUs. The official code and pycocotools call ``np.exp``; calling it here gives
    the same bits as theirs on any CPU, and so the same threshold decisions.

    Args:
        values: float64, any shape (the OKS terms' exponents).

    Returns:
        ``exp(values)``, same shape, dtype and device.
    """
    if values.device.type != "cpu":
        return torch.exp(values)
    with np.errstate(all="ignore"):  # over/underflow give inf/0 silently, as torch does
        return torch.from_numpy(np.exp(values.detach().contiguous().numpy()))


# ------------------------------------------------------------------------------------------------
# Sums in numpy's order


def _pairwise_sum_fixed(values: torch.Tensor) -> torch.Tensor:
    """Sum over the last dim (all of it) in numpy's pairwise order."""
    count = values.shape[-1]
    if count < 8:
        total = torch.zeros(values.shape[:-1], dtype=values.dtype, device=values.device)
        for index in range(count):
            total = total + values[..., index]
        return total
    if count <= _NUMPY_PAIRWISE_BLOCK:
        full = count - count % 8
        partial = values[..., :8]
        for start in range(8, full, 8):
            partial = partial + values[..., start:start + 8]
        total = ((partial[..., 0] + partial[..., 1]) + (partial[..., 2] + partial[..., 3])) + (
            (partial[..., 4] + partial[..., 5]) + (partial[..., 6] + partial[..., 7]))
        for index in range(full, count):
            total = total + values[..., index]
        return total
    half = count // 2
    half -= half % 8
    return _pairwise_sum_fixed(values[..., :half]) + _pairwise_sum_fixed(values[..., half:])


def pairwise_sum(values: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Row sums of the first ``counts[i]`` values of each row, added in numpy's order.

    ``np.sum`` of a contiguous float array adds blocks of up to 128 values with 8 interleaved
    accumulators (plain left-to-right below 8 values) and splits longer runs in halves. Adding in
    the same order gives the same bits, which keeps OKS values, and so every threshold decision,
    identical to the official numpy code.

    Args:
        values: [R, K] float; entries at and beyond ``counts`` must be 0.
        counts: [R] int, 0 <= counts <= K.

    Returns:
        [R] sums, same dtype as ``values``.
    """
    num_rows, width = values.shape
    if num_rows == 0:
        return values.new_zeros(0)
    if width > _NUMPY_PAIRWISE_BLOCK:  # rare (> 128 keypoints): one pass per distinct count
        totals = values.new_zeros(num_rows)
        for count in torch.unique(counts).tolist():
            rows = counts == count
            totals[rows] = _pairwise_sum_fixed(values[rows, :count])
        return totals
    if width < 8:
        values = torch.nn.functional.pad(values, (0, 8 - width))
        width = 8
    # Fewer than 8 values: left to right (the zero padding adds nothing).
    sequential = values[:, 0]
    for index in range(1, 7):
        sequential = sequential + values[:, index]
    # 8 or more: whole blocks of 8 into 8 accumulators, a fixed tree, then the rest one by one.
    full = counts - counts % 8
    partial = values[:, :8]
    for start in range(8, width - 7, 8):
        block = values[:, start:start + 8]
        partial = partial + torch.where((full >= start + 8)[:, None], block,
                                        torch.zeros_like(block))
    blocked = ((partial[:, 0] + partial[:, 1]) + (partial[:, 2] + partial[:, 3])) + (
        (partial[:, 4] + partial[:, 5]) + (partial[:, 6] + partial[:, 7]))
    for offset in range(7):
        position = full + offset
        value = values.gather(1, position.clamp(max=width - 1)[:, None])[:, 0]
        blocked = blocked + torch.where(position < counts, value, torch.zeros_like(value))
    return torch.where(counts < 8, sequential, blocked)


def masked_mean_numpy_order(values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor,
                                                                                torch.Tensor]:
    """``np.sum(values[mask]) / count`` per row, as the official code computes masked means.

    Args:
        values: [R, K] float.
        mask: [R, K] bool, the entries to average.

    Returns:
        (means [R], counts [R]); a row without selected entries has mean NaN.
    """
    counts = mask.sum(dim=1)
    # Selected entries first, in their joint order (a stable sort of the mask), then zeros.
    order = torch.argsort((~mask).to(torch.uint8), dim=1, stable=True)
    compact = values.gather(1, order)
    keep = torch.arange(values.shape[1], device=values.device)[None] < counts[:, None]
    compact = torch.where(keep, compact, torch.zeros_like(compact))
    return pairwise_sum(compact, counts) / counts, counts


# ------------------------------------------------------------------------------------------------
# OKS between predictions


def _pairwise_oks(
    references: torch.Tensor,
    reference_areas: torch.Tensor,
    candidates: torch.Tensor,
    candidate_areas: torch.Tensor,
    sigmas: Sequence[float] | torch.Tensor | None,
    visibility_threshold: float | None,
    pairs: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """OKS of references [A, K, 3] against candidates [B, K, 3] -> [A, B] float64, or only of
    the index ``pairs`` (reference indices, candidate indices) -> [P]."""
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
    num_joints = references.shape[1]
    variances = (2.0 * _sigmas_for(sigmas, num_joints, device)) ** 2  # [K]
    if pairs is None:
        grid = torch.meshgrid(torch.arange(references.shape[0], device=device),
                              torch.arange(candidates.shape[0], device=device), indexing="ij")
        reference_index, candidate_index = grid[0].reshape(-1), grid[1].reshape(-1)
    else:
        reference_index, candidate_index = pairs
    reference = references[reference_index]  # [P, K, 3]
    candidate = candidates[candidate_index]
    delta_x = candidate[..., 0] - reference[..., 0]
    delta_y = candidate[..., 1] - reference[..., 1]
    mean_area = (reference_areas[reference_index] + candidate_areas[candidate_index]) / 2
    # Same operation order as the official code so that values agree to the last bits.
    error = (delta_x * delta_x + delta_y * delta_y) / variances / (mean_area + AREA_EPSILON)[
        :, None] / 2
    similarity = numpy_exp(-error)  # [P, K]
    if visibility_threshold is None:
        mask = torch.ones_like(similarity, dtype=torch.bool)
    else:
        # Quirk P7: the official mask `list(vg > t) and list(vd > t)` evaluates to the
        # candidate's mask only, so the reference's scores are ignored.
        mask = candidate[..., 2] > visibility_threshold
    oks, counts = masked_mean_numpy_order(similarity, mask)
    oks = torch.where(counts > 0, oks, torch.zeros_like(oks))  # no joint above it: OKS 0
    if pairs is None:
        return oks.reshape(references.shape[0], candidates.shape[0])
    return oks


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


# ------------------------------------------------------------------------------------------------
# Score order


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


def _group_index(groups: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Each entry's group as 0, 1, ... in order of the groups' first appearance."""
    unique, inverse = torch.unique(groups, return_inverse=True)
    positions = torch.arange(groups.shape[0], device=groups.device)
    first = torch.full((unique.shape[0],), groups.shape[0], dtype=torch.long,
                       device=groups.device).scatter_reduce(0, inverse, positions, "amin")
    rank = torch.empty_like(first)
    rank[torch.argsort(first)] = torch.arange(first.shape[0], device=groups.device)
    return rank[inverse], int(unique.shape[0])


def grouped_score_order(scores: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """The entries grouped by group (in order of first appearance), each group by descending
    score exactly as :func:`score_order` orders it on its own (official per-image order).

    A stable torch sort decides every order that does not involve equal scores; only the groups
    with equal scores are re-sorted with numpy, whose order of ties is its own.

    Args:
        scores: [N] scores.
        groups: [N] int group ids (e.g. image ids).

    Returns:
        [N] int64 permutation (on the scores' device).
    """
    scores = _as_tensor(scores).reshape(-1)
    device = scores.device
    groups = torch.as_tensor(groups, device=device).reshape(-1)
    if groups.shape != scores.shape:
        raise ValueError(f"expected {scores.shape[0]} group ids, got {groups.shape[0]}")
    if scores.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=device)
    group_rank, _ = _group_index(groups)
    # Adding 0.0 turns -0.0 into 0.0, which sorts as its equal; NaN sorts first, as in numpy's
    # reversed order.
    keys = scores.to(torch.float64) + 0.0
    keys = torch.where(torch.isnan(keys), torch.full_like(keys, float("inf")), keys)
    order = torch.argsort(keys, descending=True, stable=True)
    order = order[torch.argsort(group_rank[order], stable=True)]
    sorted_keys, sorted_groups = keys[order], group_rank[order]
    tied = (sorted_keys[1:] == sorted_keys[:-1]) & (sorted_groups[1:] == sorted_groups[:-1])
    tied_groups = torch.unique(sorted_groups[1:][tied]).tolist()
    if tied_groups:
        group_counts = torch.bincount(group_rank)
        group_starts = (torch.cumsum(group_counts, 0) - group_counts).tolist()
        for group in tied_groups:
            members = torch.nonzero(group_rank == group)[:, 0]  # original (appearance) order
            start = group_starts[group]
            order[start:start + members.shape[0]] = members[score_order(scores[members]).to(
                device)]
    return order


# ------------------------------------------------------------------------------------------------
# NMS


def _ranked_groups(scores: torch.Tensor, groups: torch.Tensor | None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """The official processing order and each entry's (group, rank) slot in a padded grid."""
    device = scores.device
    if groups is None:
        groups = torch.zeros(scores.shape[0], dtype=torch.long, device=device)
    order = grouped_score_order(scores, groups)
    group_rank, num_groups = _group_index(torch.as_tensor(groups, device=device).reshape(-1))
    sorted_groups = group_rank[order]
    counts = torch.bincount(sorted_groups, minlength=num_groups)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(order.shape[0], device=device) - starts[sorted_groups]
    return order, sorted_groups, rank, num_groups


def _within_group_pairs(sorted_groups: torch.Tensor, rank: torch.Tensor, num_groups: int
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """All pairs (i, j) of sorted positions in the same group with rank[i] < rank[j], ordered
    by i, then j."""
    device = rank.device
    counts = torch.bincount(sorted_groups, minlength=num_groups)
    later = counts[sorted_groups] - rank - 1  # how many follow each entry in its group
    first = torch.repeat_interleave(torch.arange(rank.shape[0], device=device), later)
    offsets = torch.cumsum(later, 0) - later
    second = first + 1 + torch.arange(first.shape[0], device=device) - offsets[first]
    return first, second


def _may_exceed(keypoints: torch.Tensor, areas: torch.Tensor, first: torch.Tensor,
                second: torch.Tensor, threshold: float, sigmas: torch.Tensor) -> torch.Tensor:
    """[P] bool: False only where the pair's OKS is certainly not above ``threshold``.

    An OKS above it needs some joint with ``exp(-e) > threshold``, i.e. within
    ``sqrt(2 ln(1/threshold) var (mean area + eps))`` of its counterpart, and no two joints are
    nearer than the gap between the two poses' joint boxes. A margin keeps borderline pairs,
    and pairs with NaN or a non-positive area are kept (their OKS is then computed exactly).
    """
    if threshold <= 0:
        return torch.ones_like(first, dtype=torch.bool)
    low, high = torch.aminmax(keypoints[..., :2].to(torch.float64), dim=1)  # [N, 2] each
    gap = torch.clamp_min(torch.maximum(low[first] - high[second], low[second] - high[first]), 0)
    scale = (areas[first] + areas[second]) / 2 + AREA_EPSILON
    variance = float(((2.0 * sigmas) ** 2).max())
    reach_squared = 2 * max(-np.log(threshold), 0.0) * variance * scale * (1 + 1e-6) + 1e-9
    reach_squared = torch.where(scale > 0, reach_squared, torch.full_like(scale, torch.inf))
    return ~((gap * gap).sum(dim=1) > reach_squared)


# Pairs whose OKS is computed at once: bounds the [pairs, K, 3] float64 temporaries (~30 MB).
_PAIRS_PER_CHUNK = 1 << 16


def _groups_on(groups: torch.Tensor | Sequence[int] | None, device: torch.device
               ) -> torch.Tensor | None:
    if groups is None:
        return None
    if not isinstance(groups, torch.Tensor):
        groups = torch.from_numpy(np.asarray(groups, dtype=np.int64))
    return groups.to(device).reshape(-1)


def _check_nms_inputs(keypoints, scores, areas, groups):
    keypoints = _as_tensor(keypoints)
    _check_keypoints(keypoints, "keypoints")
    device = keypoints.device
    scores = _as_float64(scores, device).reshape(-1)
    if scores.shape[0] != keypoints.shape[0]:
        raise ValueError(f"expected {keypoints.shape[0]} scores, got {scores.shape[0]}")
    areas = _as_float64(areas, device).reshape(-1)
    if areas.shape[0] != keypoints.shape[0]:
        raise ValueError(f"expected {keypoints.shape[0]} areas, got {areas.shape[0]}")
    groups = _groups_on(groups, device)
    if groups is not None and groups.shape[0] != keypoints.shape[0]:
        raise ValueError(f"expected {keypoints.shape[0]} group ids, got {groups.shape[0]}")
    return keypoints, scores, areas, groups


def batched_oks_nms(
    keypoints: torch.Tensor,
    scores: torch.Tensor | Sequence[float],
    areas: torch.Tensor | Sequence[float],
    groups: torch.Tensor | Sequence[int] | None = None,
    threshold: float = 0.9,
    sigmas: Sequence[float] | torch.Tensor | None = None,
    visibility_threshold: float | None = None,
) -> torch.Tensor:
    """Greedy OKS-NMS of every group (image) of a result set at once (official ``oks_nms``).

    Within each group: repeatedly keep the highest-scoring remaining pose and drop the remaining
    poses whose OKS with it is not ``<= threshold``. The OKS of all pairs of a group is computed
    in batched chunks; the greedy pass then walks the score ranks once for all groups.

    Args:
        keypoints: [N, K, 3] (x, y, score) in pixels.
        scores: [N] pose scores.
        areas: [N] areas in square pixels.
        groups: [N] int group ids (image ids); None: one group.
        threshold: OKS above which a pose is suppressed.
        sigmas, visibility_threshold: as in :func:`oks_iou`.

    Returns:
        int64 indices of the kept poses: groups in order of first appearance, each group's
        poses highest score first (the official per-image order).
    """
    keypoints, scores, areas, groups = _check_nms_inputs(keypoints, scores, areas, groups)
    device = keypoints.device
    if keypoints.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=device)
    order, sorted_groups, rank, num_groups = _ranked_groups(scores, groups)
    first, second = _within_group_pairs(sorted_groups, rank, num_groups)
    sorted_keypoints, sorted_areas = keypoints[order], areas[order]
    near = _may_exceed(sorted_keypoints, sorted_areas, first, second, threshold,
                       _sigmas_for(sigmas, keypoints.shape[1], device))
    first, second = first[near], second[near]
    overlapping = []
    for start in range(0, first.shape[0], _PAIRS_PER_CHUNK):
        pairs = (first[start:start + _PAIRS_PER_CHUNK], second[start:start + _PAIRS_PER_CHUNK])
        oks = _pairwise_oks(sorted_keypoints, sorted_areas, sorted_keypoints, sorted_areas,
                            sigmas, visibility_threshold, pairs=pairs)
        # NaN counts as an overlap, as in the official `oks <= threshold` test.
        overlapping.append(torch.nonzero(~(oks <= threshold))[:, 0] + start)
    overlapping = torch.cat(overlapping) if overlapping else first[:0]
    first, second = first[overlapping], second[overlapping]
    # Suppression flows from lower to higher ranks, so one pass over the ranks of the
    # suppressing poses settles every pose before it can suppress another.
    by_rank = torch.argsort(rank[first], stable=True)
    first, second = first[by_rank], second[by_rank]
    _, counts = torch.unique_consecutive(rank[first], return_counts=True)
    suppressed = torch.zeros(order.shape[0], dtype=torch.bool, device=device)
    for chunk_first, chunk_second in zip(torch.split(first, counts.tolist()),
                                         torch.split(second, counts.tolist())):
        alive = ~suppressed[chunk_first]
        suppressed[chunk_second[alive]] = True
    return order[~suppressed]


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
    with it exceeds ``threshold``. :func:`batched_oks_nms` does this for many images at once.

    Args:
        keypoints: [M, K, 3] (x, y, score) in pixels.
        scores: [M] pose scores.
        areas: [M] areas in square pixels.
        threshold: OKS above which a pose is suppressed.
        sigmas, visibility_threshold: as in :func:`oks_iou`.

    Returns:
        Indices of the kept poses, highest score first.
    """
    return batched_oks_nms(keypoints, scores, areas, None, threshold, sigmas,
                           visibility_threshold).tolist()


def batched_soft_oks_nms(
    keypoints: torch.Tensor,
    scores: torch.Tensor | Sequence[float],
    areas: torch.Tensor | Sequence[float],
    groups: torch.Tensor | Sequence[int] | None = None,
    threshold: float = 0.9,
    sigmas: Sequence[float] | torch.Tensor | None = None,
    visibility_threshold: float | None = None,
    max_detections: int = 20,
) -> torch.Tensor:
    """Soft OKS-NMS (official ``soft_oks_nms``, Gaussian decay) of every group at once.

    Within each group: take the best remaining pose, multiply the remaining scores by
    ``exp(-oks^2 / threshold)``, and repeat until ``max_detections`` poses are taken. Nothing is
    dropped below that count; only the order changes. ``threshold`` is the Gaussian width, as in
    the official code. The picks run for all groups together; a group in which two remaining
    scores tie for the best is redone alone with numpy's order of ties (:func:`score_order`).

    Returns:
        int64 indices: groups in order of first appearance, each group's picks in the order
        they were taken.
    """
    keypoints, scores, areas, groups = _check_nms_inputs(keypoints, scores, areas, groups)
    device = keypoints.device
    if keypoints.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=device)
    order, sorted_groups, rank, num_groups = _ranked_groups(scores, groups)
    sorted_keypoints, sorted_areas = keypoints[order], areas[order]
    counts = torch.bincount(sorted_groups, minlength=num_groups)
    starts = torch.cumsum(counts, 0) - counts
    max_rank = int(counts.max())
    remaining = torch.full((num_groups, max_rank), -torch.inf, dtype=torch.float64,
                           device=device)
    remaining[sorted_groups, rank] = scores[order]
    available = torch.zeros(num_groups, max_rank, dtype=torch.bool, device=device)
    available[sorted_groups, rank] = True
    rows = torch.arange(num_groups, device=device)
    tied = torch.zeros(num_groups, dtype=torch.bool, device=device)
    picks, picked = [], []
    for _ in range(min(max_detections, max_rank)):
        has_any = available.any(dim=1)
        masked = torch.where(available, remaining, torch.full_like(remaining, -torch.inf))
        best_value = masked.max(dim=1).values
        at_best = available & (masked == best_value[:, None])
        tied |= has_any & ((at_best.sum(dim=1) > 1) | torch.isnan(best_value))
        best = at_best.to(torch.uint8).argmax(dim=1)
        picks.append(starts + best)
        picked.append(has_any)
        available[rows, best] &= ~has_any
        # OKS of each group's pick (reference) against all its poses (candidates).
        reference = (starts + best)[sorted_groups]
        oks = _pairwise_oks(sorted_keypoints, sorted_areas, sorted_keypoints, sorted_areas,
                            sigmas, visibility_threshold,
                            pairs=(reference, torch.arange(order.shape[0], device=device)))
        decay = torch.ones_like(remaining)
        decay[sorted_groups, rank] = torch.exp(-oks ** 2 / threshold)
        remaining = torch.where(available, remaining * decay, remaining)
    picks_tensor = torch.stack(picks, dim=1)  # [groups, steps] sorted positions
    taken = torch.stack(picked, dim=1) & ~tied[:, None]
    kept = order[picks_tensor[taken]]
    if not bool(tied.any()):
        return kept
    # Redo the tied groups with numpy's order of ties; then put the groups back in order.
    kept_groups = [sorted_groups[picks_tensor[taken]]]
    pieces = [kept]
    for group in torch.nonzero(tied)[:, 0].tolist():
        members = order[int(starts[group]):int(starts[group] + counts[group])].sort().values
        local = _soft_oks_nms_one(keypoints[members], scores[members], areas[members],
                                  threshold, sigmas, visibility_threshold, max_detections)
        pieces.append(members[local.to(device)])
        kept_groups.append(torch.full((local.shape[0],), group, dtype=torch.long,
                                      device=device))
    kept, kept_groups = torch.cat(pieces), torch.cat(kept_groups)
    return kept[torch.argsort(kept_groups, stable=True)]


def _soft_oks_nms_one(keypoints: torch.Tensor, scores: torch.Tensor, areas: torch.Tensor,
                      threshold: float, sigmas: Sequence[float] | torch.Tensor | None,
                      visibility_threshold: float | None, max_detections: int) -> torch.Tensor:
    """Soft OKS-NMS of one group, step by step with numpy's sort (ties in numpy's order)."""
    overlaps = oks_matrix(keypoints, areas, sigmas, visibility_threshold).cpu()
    scores = scores.cpu()
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
    return torch.tensor(keep, dtype=torch.long)


def soft_oks_nms(
    keypoints: torch.Tensor,
    scores: torch.Tensor | Sequence[float],
    areas: torch.Tensor | Sequence[float],
    threshold: float = 0.9,
    sigmas: Sequence[float] | torch.Tensor | None = None,
    visibility_threshold: float | None = None,
    max_detections: int = 20,
) -> list[int]:
    """Soft OKS-NMS of the poses of one image (official ``soft_oks_nms``, Gaussian decay); see
    :func:`batched_soft_oks_nms`.

    Returns:
        Indices of up to ``max_detections`` poses in the order they were taken.
    """
    return batched_soft_oks_nms(keypoints, scores, areas, None, threshold, sigmas,
                                visibility_threshold, max_detections).tolist()


# Per-image suppression of duplicate poses: the official OKS-NMS, the official Gaussian soft
# OKS-NMS (its SOFT_NMS switch), or none.
NMS_METHODS = ("oks", "soft_oks", "none")


def batched_nms(
    method: str,
    keypoints: torch.Tensor,
    scores: torch.Tensor,
    areas: torch.Tensor,
    groups: torch.Tensor,
    threshold: float = 0.9,
    sigmas: Sequence[float] | torch.Tensor | None = None,
) -> torch.Tensor:
    """The poses each group (image) keeps under the NMS ``method`` (one of :data:`NMS_METHODS`).

    "oks": :func:`batched_oks_nms` (``threshold``: the OKS above which a pose is dropped);
    "soft_oks": :func:`batched_soft_oks_nms` (``threshold``: the Gaussian width; at most 20
    poses per image, the official ``max_dets``); "none": every pose.

    Args:
        keypoints: [N, K, 3] (x, y, score) in pixels.
        scores: [N] pose scores.
        areas: [N] areas in square pixels.
        groups: [N] int group ids (image ids).
        threshold: see above.
        sigmas: [K] OKS sigmas (None: COCO's).

    Returns:
        int64 indices: groups in order of first appearance, each group's poses in the order
        the method keeps them (highest score first for "oks" and "none").
    """
    if method == "oks":
        return batched_oks_nms(keypoints, scores, areas, groups, threshold, sigmas)
    if method == "soft_oks":
        return batched_soft_oks_nms(keypoints, scores, areas, groups, threshold, sigmas)
    if method == "none":
        return grouped_score_order(scores, groups)
    raise ValueError(f"NMS method {method!r} is not known: expected one of "
                     f"{', '.join(NMS_METHODS)}")


def rescore(
    maxvals: torch.Tensor,
    box_scores: torch.Tensor | Sequence[float],
    visibility_threshold: float = 0.2,
) -> torch.Tensor:
    """Pose score = mean of the joint confidences above the threshold (0 if none) x box score.

    Vectorised over all poses of a result set. The joint confidences are summed joint by joint
    in their own dtype, as the official loop does on float32 values, so that the scores agree
    bit for bit.

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
