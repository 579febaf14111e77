"""COCO keypoint results and their evaluation through pycocotools, as the official HRNet does it.

:func:`coco_results` turns decoded predictions into the official results entries (rescoring and
per-image OKS-NMS included); :func:`pycocotools_keypoint_eval` runs pycocotools' ``COCOeval`` on
them exactly as ``COCODataset._do_python_keypoint_eval`` does.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from pose.evaluation.nms import oks_nms, rescore

# The ten numbers COCOeval.summarize() prints for keypoints, in its order.
METRIC_NAMES: tuple[str, ...] = (
    "AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl",
)

PERSON_CATEGORY_ID = 1
# pycocotools' built-in keypoint sigmas are the 17 COCO ones.
PYCOCOTOOLS_DEFAULT_NUM_KEYPOINTS = 17
RESULT_KEYS = ("image_id", "category_id", "keypoints", "score")


def _to_numpy(values: torch.Tensor | np.ndarray | Sequence) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def coco_results(
    keypoints: torch.Tensor | np.ndarray,
    maxvals: torch.Tensor | np.ndarray,
    centers: torch.Tensor | np.ndarray,
    scales: torch.Tensor | np.ndarray,
    box_scores: torch.Tensor | np.ndarray | Sequence[float],
    image_ids: torch.Tensor | np.ndarray | Sequence[int],
    *,
    sigmas: Sequence[float] | None,
    visibility_threshold: float = 0.2,
    oks_threshold: float = 0.9,
    pixel_std: float = 200.0,
) -> list[dict]:
    """COCO keypoint results after rescoring and per-image OKS-NMS (official ``evaluate``).

    Each pose is rescored to ``mean(maxvals > visibility_threshold) * box_score`` (see
    :func:`pose.evaluation.nms.rescore`), then :func:`pose.evaluation.nms.oks_nms` runs per image
    with the area of the padded box, ``prod(scale * pixel_std)``. Images come in order of first
    appearance, and the poses of an image in NMS keep order (highest score first).

    Args:
        keypoints: [N, K, 2] image coordinates (x, y) in pixels.
        maxvals: [N, K] joint confidences.
        centers: [N, 2] box centres in pixels.
        scales: [N, 2] box sizes / pixel_std.
        box_scores: [N] detector scores (1 for ground-truth boxes).
        image_ids: [N] COCO image ids.
        sigmas: [K] OKS sigmas for the NMS; None means the COCO ones.
        visibility_threshold: official ``IN_VIS_THRE``.
        oks_threshold: official ``OKS_THRE``.
        pixel_std: the scale unit in pixels.

    Returns:
        One dict per kept pose: ``image_id`` (int), ``category_id`` (1), ``keypoints``
        ([x, y, maxval] * K floats), ``score`` (float), ``center`` and ``scale`` (2 floats each).
    """
    keypoints_np = _to_numpy(keypoints)
    maxvals_np = _to_numpy(maxvals)
    centers_np = _to_numpy(centers)
    scales_np = _to_numpy(scales)
    image_ids_np = _to_numpy(image_ids).reshape(-1)
    num_poses = keypoints_np.shape[0]
    if keypoints_np.ndim != 3 or keypoints_np.shape[2] != 2:
        raise ValueError(f"keypoints must have shape [N, K, 2], got {keypoints_np.shape}")
    expected_shapes = {
        "maxvals": (maxvals_np.shape, keypoints_np.shape[:2]),
        "centers": (centers_np.shape, (num_poses, 2)),
        "scales": (scales_np.shape, (num_poses, 2)),
        "image_ids": (image_ids_np.shape, (num_poses,)),
    }
    for name, (shape, expected) in expected_shapes.items():
        if tuple(shape) != tuple(expected):
            raise ValueError(f"{name} must have shape {list(expected)}, got {list(shape)}")

    # Same dtypes as the official arrays: the area is a product in the scales' own precision
    # (float32 there), the rescoring sums the float32 confidences.
    areas = np.prod(scales_np * np.asarray(pixel_std, dtype=scales_np.dtype), axis=1)
    scores = rescore(torch.from_numpy(maxvals_np), box_scores, visibility_threshold).numpy()
    poses = np.concatenate([keypoints_np, maxvals_np[..., None]], axis=2)  # [N, K, 3]

    poses_by_image: dict[int, list[int]] = {}
    for index, image_id in enumerate(image_ids_np.tolist()):
        poses_by_image.setdefault(int(image_id), []).append(index)

    results: list[dict] = []
    for image_id, indices in poses_by_image.items():
        keep = oks_nms(
            torch.from_numpy(poses[indices]).to(torch.float64),
            torch.from_numpy(scores[indices]),
            torch.from_numpy(areas[indices]).to(torch.float64),
            threshold=oks_threshold,
            sigmas=sigmas,
        )
        for kept in keep:
            index = indices[kept]
            results.append({
                "image_id": image_id,
                "category_id": PERSON_CATEGORY_ID,
                "keypoints": [float(value) for value in poses[index].reshape(-1)],
                "score": float(scores[index]),
                "center": [float(value) for value in centers_np[index]],
                "scale": [float(value) for value in scales_np[index]],
            })
    return results


@dataclass(frozen=True)
class KeypointEvalResult:
    """pycocotools keypoint evaluation: the ten stats (fractions) and its printed output."""

    stats: dict[str, float]
    summary: str


def _load_gt(gt: str | Path | COCO) -> COCO:
    if isinstance(gt, COCO):
        return gt
    path = Path(gt)
    if not path.is_file():
        raise FileNotFoundError(f"COCO ground-truth annotation file not found: {path}")
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def _load_results(results: str | Path | Sequence[Mapping]) -> list:
    if isinstance(results, (str, Path)):
        path = Path(results)
        if not path.is_file():
            raise FileNotFoundError(f"COCO results file not found: {path}")
        with path.open() as handle:
            results = json.load(handle)
    if not isinstance(results, list):
        # A malformed results file is bad input data, so ValueError like the other checks.
        raise ValueError(  # noqa: TRY004
            f"COCO results must be a list of dicts, got {type(results).__name__}"
        )
    return results


def _check_results(results: list, gt: COCO, num_keypoints: int) -> None:
    image_ids = set(gt.getImgIds())
    for position, entry in enumerate(results):
        where = f"results entry {position}"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where} must be a dict, got {type(entry).__name__}")  # noqa: TRY004
        missing = [key for key in RESULT_KEYS if key not in entry]
        if missing:
            raise ValueError(f"{where} lacks keys {missing} (expected {list(RESULT_KEYS)})")
        keypoints = entry["keypoints"]
        count = len(keypoints) if hasattr(keypoints, "__len__") else None
        if count != 3 * num_keypoints:
            raise ValueError(
                f"{where} (image_id {entry['image_id']}) has {count} keypoint values, "
                f"expected {3 * num_keypoints} ([x, y, score] for {num_keypoints} joints)"
            )
        if entry["image_id"] not in image_ids:
            raise ValueError(
                f"{where} has image_id {entry['image_id']!r}, which is not in the ground truth"
            )


def pycocotools_keypoint_eval(
    gt: str | Path | COCO,
    results: str | Path | Sequence[Mapping],
    sigmas: Sequence[float] | None = None,
) -> KeypointEvalResult:
    """Evaluate keypoint results with pycocotools exactly as the official HRNet does.

    ``COCOeval(gt, dt, 'keypoints')`` with ``params.useSegm = None``; ``kpt_oks_sigmas`` is set
    when ``sigmas`` is given (pycocotools' default is the COCO sigmas). Everything pycocotools
    prints is captured into ``summary`` instead of stdout. An empty results list gives all-zero
    stats (pycocotools itself crashes on it).

    Args:
        gt: path of a COCO keypoint annotation json, or a loaded ``COCO`` object.
        results: a list of result dicts (``image_id``, ``category_id``, ``keypoints``, ``score``)
            or the path of a json file holding one. The dicts are not modified.
        sigmas: [K] per-joint OKS sigmas, or None for pycocotools' COCO defaults.

    Raises:
        FileNotFoundError: a path does not exist.
        ValueError: results are not a list, or an entry misses keys, has the wrong number of
            keypoint values or an image id absent from the ground truth (the first one is named).
    """
    gt_coco = _load_gt(gt)
    results_list = _load_results(results)
    num_keypoints = len(sigmas) if sigmas is not None else PYCOCOTOOLS_DEFAULT_NUM_KEYPOINTS
    _check_results(results_list, gt_coco, num_keypoints)
    if not results_list:
        return KeypointEvalResult(
            stats={name: 0.0 for name in METRIC_NAMES},
            summary="no results to evaluate: all stats are 0\n",
        )
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        # loadRes adds area, bbox and id to the dicts it is given: hand it copies.
        detections = gt_coco.loadRes([dict(entry) for entry in results_list])
        evaluator = COCOeval(gt_coco, detections, "keypoints")
        evaluator.params.useSegm = None
        if sigmas is not None:
            evaluator.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = {name: float(value) for name, value in zip(METRIC_NAMES, evaluator.stats)}
    return KeypointEvalResult(stats=stats, summary=printed.getvalue())


def pycocotools_keypoint_stats(
    gt: str | Path | COCO,
    results: str | Path | Sequence[Mapping],
    sigmas: Sequence[float] | None = None,
) -> dict[str, float]:
    """The ten keypoint stats (fractions) keyed by :data:`METRIC_NAMES`; see
    :func:`pycocotools_keypoint_eval` (which also returns pycocotools' printed summary)."""
    return pycocotools_keypoint_eval(gt, results, sigmas).stats


def format_metrics_table(metrics: Mapping[str, float]) -> str:
    """Two-row text table of the ten metrics (header row of names, row of values, 3 decimals),
    like the official training logs print."""
    missing = [name for name in METRIC_NAMES if name not in metrics]
    if missing:
        raise ValueError(f"metrics lack {missing} (expected keys {list(METRIC_NAMES)})")
    values = [f"{metrics[name]:.3f}" for name in METRIC_NAMES]
    widths = [max(len(name), len(value)) for name, value in zip(METRIC_NAMES, values)]
    header = "| " + " | ".join(name.ljust(w) for name, w in zip(METRIC_NAMES, widths)) + " |"
    row = "| " + " | ".join(value.ljust(w) for value, w in zip(values, widths)) + " |"
    return header + "\n" + row
