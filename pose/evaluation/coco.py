"""COCO keypoint results as the official HRNet writes them: rescoring and OKS-NMS.

:func:`rescore_and_nms` selects the poses (tensors in, indices out, for the whole result set at
once); :func:`coco_result_entries` turns them into the official results entries. Their
evaluation is :func:`pose.evaluation.evaluate_coco_keypoints`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from pose.evaluation.coco_eval import METRIC_NAMES
from pose.evaluation.nms import batched_nms, rescore

PERSON_CATEGORY_ID = 1


def _to_numpy(values: torch.Tensor | np.ndarray | Sequence) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def rescore_and_nms(
    maxvals: torch.Tensor | np.ndarray,
    keypoints: torch.Tensor | np.ndarray,
    scales: torch.Tensor | np.ndarray,
    box_scores: torch.Tensor | np.ndarray | Sequence[float],
    image_ids: torch.Tensor | np.ndarray | Sequence[int],
    *,
    sigmas: Sequence[float] | None,
    visibility_threshold: float = 0.2,
    oks_threshold: float = 0.9,
    pixel_std: float = 200.0,
    nms: str = "oks",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The official rescoring and per-image OKS-NMS of a whole result set (official
    ``evaluate``), batched across images.

    Each pose is rescored to ``mean(maxvals > visibility_threshold) * box_score`` (see
    :func:`pose.evaluation.nms.rescore`), then the NMS ``nms`` (official: "oks",
    :func:`pose.evaluation.nms.batched_nms`) runs within each image with the area of the padded
    box, ``prod(scale * pixel_std)``.

    Args:
        maxvals: [N, K] joint confidences.
        keypoints: [N, K, 2] image coordinates (x, y) in pixels.
        scales: [N, 2] box sizes / pixel_std.
        box_scores: [N] detector scores (1 for ground-truth boxes).
        image_ids: [N] COCO image ids.
        sigmas: [K] OKS sigmas for the NMS; None means the COCO ones.
        visibility_threshold: official ``IN_VIS_THRE``.
        oks_threshold: official ``OKS_THRE`` (the Gaussian width for "soft_oks").
        pixel_std: the scale unit in pixels.
        nms: "oks", "soft_oks" or "none" (:data:`pose.evaluation.nms.NMS_METHODS`).

    Returns:
        ``(kept, scores)``: int64 indices of the kept poses, images in order of first appearance
        and each image's poses in the NMS's keep order (for "oks", highest score first: the
        official order of the written results);
        the [N] float64 rescored scores of all poses.
    """
    keypoints_np = _to_numpy(keypoints)
    maxvals_np = _to_numpy(maxvals)
    scales_np = _to_numpy(scales)
    image_ids_np = _to_numpy(image_ids).reshape(-1)
    num_poses = keypoints_np.shape[0]
    if keypoints_np.ndim != 3 or keypoints_np.shape[2] != 2:
        raise ValueError(f"keypoints must have shape [N, K, 2], got {keypoints_np.shape}")
    expected_shapes = {
        "maxvals": (maxvals_np.shape, keypoints_np.shape[:2]),
        "scales": (scales_np.shape, (num_poses, 2)),
        "image_ids": (image_ids_np.shape, (num_poses,)),
    }
    for name, (shape, expected) in expected_shapes.items():
        if tuple(shape) != tuple(expected):
            raise ValueError(f"{name} must have shape {list(expected)}, got {list(shape)}")
    # Same dtypes as the official arrays: the area is a product in the scales' own precision
    # (float32 there), the rescoring sums the float32 confidences.
    areas = np.prod(scales_np * np.asarray(pixel_std, dtype=scales_np.dtype), axis=1)
    scores = rescore(torch.from_numpy(maxvals_np), box_scores, visibility_threshold)
    poses = torch.from_numpy(np.concatenate([keypoints_np, maxvals_np[..., None]], axis=2))
    kept = batched_nms(nms, poses.to(torch.float64), scores,
                       torch.from_numpy(areas).to(torch.float64),
                       torch.from_numpy(image_ids_np.astype(np.int64)),
                       threshold=oks_threshold, sigmas=sigmas)
    return kept, scores


def coco_result_entries(
    kept: torch.Tensor | Sequence[int],
    scores: torch.Tensor | np.ndarray,
    keypoints: torch.Tensor | np.ndarray,
    maxvals: torch.Tensor | np.ndarray,
    centers: torch.Tensor | np.ndarray,
    scales: torch.Tensor | np.ndarray,
    image_ids: torch.Tensor | np.ndarray | Sequence[int],
    category_id: int = PERSON_CATEGORY_ID,
) -> list[dict]:
    """The official results entries of the poses ``kept`` (in that order).

    Args:
        kept, scores: the output of :func:`rescore_and_nms`.
        keypoints: [N, K, 2] image coordinates (x, y) in pixels.
        maxvals: [N, K] joint confidences.
        centers: [N, 2] box centres in pixels.
        scales: [N, 2] box sizes / pixel_std.
        image_ids: [N] COCO image ids.
        category_id: the dataset's category (COCO's person: 1).

    Returns:
        One dict per kept pose: ``image_id`` (int), ``category_id``, ``keypoints``
        ([x, y, maxval] * K floats), ``score`` (float), ``center`` and ``scale`` (2 floats each).
    """
    kept_list = (kept.tolist() if isinstance(kept, torch.Tensor)
                 else [int(index) for index in kept])
    poses = np.concatenate([_to_numpy(keypoints), _to_numpy(maxvals)[..., None]], axis=2)
    poses = poses[kept_list].reshape(len(kept_list), -1).tolist()
    image_ids_list = _to_numpy(image_ids).reshape(-1)[kept_list].tolist()
    scores_list = _to_numpy(scores)[kept_list].astype(np.float64).tolist()
    centers_list = _to_numpy(centers)[kept_list].astype(np.float64).tolist()
    scales_list = _to_numpy(scales)[kept_list].astype(np.float64).tolist()
    return [
        {"image_id": int(image_id), "category_id": category_id, "keypoints": pose,
         "score": score, "center": center, "scale": scale}
        for image_id, pose, score, center, scale in zip(
            image_ids_list, poses, scores_list, centers_list, scales_list)
    ]


def format_metrics_table(metrics: Mapping[str, float],
                         names: Sequence[str] = METRIC_NAMES) -> str:
    """Two-row text table of the metrics ``names`` (header row of names, row of values, 3
    decimals; counts as integers), like the official training logs print (COCO's ten stats by
    default; MPII's PCKh table with ``names=pose.evaluation.PCKH_NAMES``)."""
    missing = [name for name in names if name not in metrics]
    if missing:
        raise ValueError(f"metrics lack {missing} (expected keys {list(names)})")
    values = [str(metrics[name]) if isinstance(metrics[name], int) else f"{metrics[name]:.3f}"
              for name in names]
    widths = [max(len(name), len(value)) for name, value in zip(names, values)]
    header = "| " + " | ".join(name.ljust(w) for name, w in zip(names, widths)) + " |"
    row = "| " + " | ".join(value.ljust(w) for value, w in zip(values, widths)) + " |"
    return header + "\n" + row
