"""The evaluation loop: network over val crops (with flip test), decoding, COCO AP.

model → heatmaps → (flip-test average) → argmax + quarter offset → image pixels → rescoring and
OKS-NMS → COCO results → AP. Everything after the network is in ``pose.evaluation``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from pose.evaluation import (
    coco_results,
    decode_heatmaps,
    flip_test_average,
    pycocotools_keypoint_stats,
)


@dataclass
class Predictions:
    """Decoded predictions for N person crops, on the CPU."""

    keypoints: torch.Tensor  # [N, K, 2] image pixels (x, y), 0-based
    maxvals: torch.Tensor  # [N, K] heatmap peak values
    centers: torch.Tensor  # [N, 2] crop centres, image pixels
    scales: torch.Tensor  # [N, 2] crop sizes / 200 px
    box_scores: torch.Tensor  # [N] detector score (1 for GT boxes)
    image_ids: torch.Tensor  # [N]


def progress(iterable, description: str, total: int | None = None,
             disable: bool = False) -> tqdm:
    """A progress bar that redraws in a terminal and prints sparse lines in a log (with its
    ETA and rate); ``disable``: iterate without one (ranks other than 0)."""
    interactive = sys.stderr.isatty()
    return tqdm(iterable, desc=description, total=total, dynamic_ncols=True, leave=interactive,
                mininterval=0.5 if interactive else 30.0, disable=disable)


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, device: torch.device,
            flip_pairs: tuple[tuple[int, int], ...], *, flip_test: bool = True,
            shift_heatmap: bool = True, post_process: str = "quarter_offset",
            sigma: float = 2.0) -> Predictions:
    """Run ``model`` over every crop of ``loader`` and decode keypoints in image pixels.

    ``post_process`` and ``sigma`` (the training targets', heatmap cells) go to
    :func:`pose.evaluation.decode_heatmaps`.
    """
    model.eval()
    parts: dict[str, list[torch.Tensor]] = {field: [] for field in Predictions.__dataclass_fields__}
    for batch in progress(loader, "eval"):
        images = batch["image"].to(device, non_blocking=True)
        heatmaps = model(images)
        if flip_test:
            heatmaps_flipped = model(images.flip(3))
            heatmaps = flip_test_average(heatmaps, heatmaps_flipped, flip_pairs,
                                         shift_heatmap=shift_heatmap)
        centers, scales = batch["center"].to(device), batch["scale"].to(device)
        keypoints, maxvals = decode_heatmaps(heatmaps.float(), centers, scales,
                                             post_process=post_process, sigma=sigma)
        parts["keypoints"].append(keypoints.cpu())
        parts["maxvals"].append(maxvals.cpu())
        parts["centers"].append(batch["center"])
        parts["scales"].append(batch["scale"])
        parts["box_scores"].append(torch.as_tensor(batch["score"]))
        parts["image_ids"].append(torch.as_tensor(batch["image_id"]))
    return Predictions(**{name: torch.cat(values) for name, values in parts.items()})


def evaluate_coco(predictions: Predictions, annotation_file: str | Path,
                  sigmas: tuple[float, ...], *, visibility_threshold: float = 0.2,
                  oks_nms_threshold: float = 0.9) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Official rescoring and OKS-NMS, then COCO keypoint AP (pycocotools)."""
    results = coco_results(
        predictions.keypoints, predictions.maxvals, predictions.centers, predictions.scales,
        predictions.box_scores, predictions.image_ids, sigmas=sigmas,
        visibility_threshold=visibility_threshold, oks_threshold=oks_nms_threshold)
    metrics = pycocotools_keypoint_stats(annotation_file, results, sigmas=sigmas)
    return metrics, results


def write_evaluation(out_dir: str | Path, metrics: dict[str, float],
                     results: list[dict[str, Any]]) -> None:
    """``results.json`` (COCO results format) and ``metrics.json`` (the ten stats, fractions)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results))
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
