"""The evaluation loop: network over val crops (with flip test), decoding, COCO AP or MPII PCKh.

model → heatmaps → (flip-test average) → argmax + quarter offset → image pixels → rescoring and
OKS-NMS → COCO AP (or, for MPII, PCKh). Everything after the network is in ``pose.evaluation``;
:func:`evaluate_predictions` is the one call that turns predictions into a dataset's metrics.
Under DDP, :func:`gather_predictions` collects every rank's predictions first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import distributed, nn
from torch.utils.data import DataLoader, Dataset

from pose.data.mpii import MpiiKeypoints
from pose.engine.logger import progress
from pose.evaluation import (
    METRIC_NAMES,
    PCKH_NAMES,
    CocoKeypointGroundTruth,
    coco_result_entries,
    decode_heatmaps,
    evaluate_coco_keypoints_tensors,
    flip_test_average,
    format_metrics_table,
    load_coco_keypoint_ground_truth,
    pckh,
    rescore,
    rescore_and_nms,
)
from pose.io import atomic_write_text


@dataclass
class Predictions:
    """Decoded predictions for N person crops, on the CPU."""

    keypoints: torch.Tensor  # [N, K, 2] image pixels (x, y), 0-based
    maxvals: torch.Tensor  # [N, K] heatmap peak values
    centers: torch.Tensor  # [N, 2] crop centres, image pixels
    scales: torch.Tensor  # [N, 2] crop sizes / 200 px
    box_scores: torch.Tensor  # [N] detector score (1 for GT boxes)
    image_ids: torch.Tensor  # [N]
    indices: torch.Tensor  # [N] dataset index of each crop (to undo a sampler's order)


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
        parts["indices"].append(torch.as_tensor(batch["index"]))
    return Predictions(**{name: torch.cat(values) for name, values in parts.items()})


# The metric that ranks checkpoints (best.pt), per dataset format.
PRIMARY_METRICS: dict[str, str] = {"coco": "AP", "mpii": "Mean"}


@dataclass
class Evaluation:
    """A dataset's metrics for one set of predictions."""

    metrics: dict[str, float]  # COCO: the ten stats (fractions); MPII: PCKh (percent)
    results: list[dict[str, Any]]  # what results.json holds
    primary: str  # the metric that ranks checkpoints: "AP" (COCO) or "Mean" (MPII)
    names: tuple[str, ...]  # the metrics in table order

    @property
    def primary_value(self) -> float:
        return self.metrics[self.primary]

    def table(self) -> str:
        """The metrics as the official logs print them (two rows)."""
        return format_metrics_table(self.metrics, self.names)


@lru_cache(maxsize=4)
def _coco_ground_truth(annotation_file: str, modified: float) -> CocoKeypointGroundTruth:
    """Parsed once per file version: training evaluates against the same file many times."""
    del modified
    return load_coco_keypoint_ground_truth(annotation_file)


def evaluate_coco(predictions: Predictions, annotation_file: str | Path,
                  sigmas: tuple[float, ...] | None, *, visibility_threshold: float = 0.2,
                  oks_nms_threshold: float = 0.9, device: torch.device | str | None = None
                  ) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Official rescoring and OKS-NMS, then COCO keypoint AP (:mod:`pose.evaluation.coco_eval`,
    equal to pycocotools) straight from the tensors; also the results entries of results.json.

    Returns:
        (the ten stats keyed by ``METRIC_NAMES``, the COCO results entries).
    """
    path = Path(annotation_file)
    ground_truth = _coco_ground_truth(str(path.resolve()), path.stat().st_mtime)
    kept, scores = rescore_and_nms(
        predictions.maxvals, predictions.keypoints, predictions.scales, predictions.box_scores,
        predictions.image_ids, sigmas=sigmas, visibility_threshold=visibility_threshold,
        oks_threshold=oks_nms_threshold)
    metrics = evaluate_coco_keypoints_tensors(
        ground_truth, predictions.image_ids[kept], predictions.keypoints[kept], scores[kept],
        sigmas=sigmas, device=device)
    results = coco_result_entries(kept, scores, predictions.keypoints, predictions.maxvals,
                                  predictions.centers, predictions.scales, predictions.image_ids)
    return metrics, results


def evaluate_mpii(predictions: Predictions, dataset: MpiiKeypoints, *,
                  visibility_threshold: float = 0.2) -> tuple[dict[str, float],
                                                               list[dict[str, Any]]]:
    """MPII PCKh (:func:`pose.evaluation.pckh`) of one prediction per person of ``dataset``.

    Returns:
        (the PCKh table keyed by ``PCKH_NAMES``, in percent; one results entry per person:
        ``index``, ``image``, ``image_id``, ``keypoints`` ([x, y, maxval] * 16, 0-based
        pixels), ``score`` (mean maxval above ``visibility_threshold``), ``center``, ``scale``).
    """
    predictions = _in_dataset_order(predictions)
    if predictions.indices.tolist() != list(range(len(dataset))):
        raise ValueError(f"PCKh needs one prediction per person of the split: got "
                         f"{predictions.indices.shape[0]} for {len(dataset)} people")
    ground_truth = dataset.pckh_ground_truth()
    metrics = pckh(predictions.keypoints, torch.from_numpy(ground_truth.joints),
                   torch.from_numpy(ground_truth.visible),
                   torch.from_numpy(ground_truth.head_boxes))
    scores = rescore(predictions.maxvals, predictions.box_scores, visibility_threshold)
    poses = torch.cat([predictions.keypoints, predictions.maxvals[..., None]], dim=2)
    results = [
        {"index": index, "image": dataset.image_names[image_id], "image_id": image_id,
         "keypoints": pose, "score": score, "center": center, "scale": scale}
        for index, image_id, pose, score, center, scale in zip(
            predictions.indices.tolist(), predictions.image_ids.tolist(),
            poses.reshape(poses.shape[0], -1).to(torch.float64).tolist(), scores.tolist(),
            predictions.centers.to(torch.float64).tolist(),
            predictions.scales.to(torch.float64).tolist())
    ]
    return metrics, results


def evaluate_predictions(predictions: Predictions, dataset: Dataset, *,
                         visibility_threshold: float = 0.2, oks_nms_threshold: float = 0.9,
                         device: torch.device | str | None = None) -> Evaluation:
    """The metrics of ``predictions`` (from :func:`predict`, gathered across ranks under DDP)
    on ``dataset``: MPII PCKh for :class:`pose.data.mpii.MpiiKeypoints`, COCO keypoint AP for
    :class:`pose.data.CocoKeypoints` (after the official rescoring and OKS-NMS).

    Args:
        predictions: every crop of ``dataset``'s val split.
        dataset: the dataset the predictions were made on.
        visibility_threshold: joints above it count in the rescoring (official IN_VIS_THRE).
        oks_nms_threshold: COCO's OKS-NMS threshold.
        device: where the COCO evaluation runs (None: the CPU).

    Returns:
        An :class:`Evaluation`: ``metrics``, ``results`` (results.json), ``primary`` ("AP" or
        "Mean", the metric that ranks checkpoints) and the table's ``names``.
    """
    # In dataset order, each crop once (a no-op for one process; it makes a sampler's padding
    # harmless should ungathered predictions come here).
    predictions = _in_dataset_order(predictions)
    if isinstance(dataset, MpiiKeypoints):
        metrics, results = evaluate_mpii(predictions, dataset,
                                         visibility_threshold=visibility_threshold)
        return Evaluation(metrics, results, PRIMARY_METRICS["mpii"], PCKH_NAMES)
    metrics, results = evaluate_coco(predictions, dataset.annotation_file,
                                     dataset.keypoints.oks_sigmas,
                                     visibility_threshold=visibility_threshold,
                                     oks_nms_threshold=oks_nms_threshold, device=device)
    return Evaluation(metrics, results, PRIMARY_METRICS["coco"], METRIC_NAMES)


# ------------------------------------------------------------------------------------------------
# DDP


def _in_dataset_order(predictions: Predictions) -> Predictions:
    """Sorted by dataset index, each index once (the first of repeated ones kept)."""
    order = torch.argsort(predictions.indices, stable=True)
    indices = predictions.indices[order]
    first = torch.ones_like(indices, dtype=torch.bool)
    first[1:] = indices[1:] != indices[:-1]
    keep = order[first]
    return Predictions(**{field.name: getattr(predictions, field.name)[keep]
                          for field in fields(Predictions)})


def _all_gather_rows(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Every rank's ``tensor`` (rows may differ in number across ranks), concatenated by rank."""
    world_size = distributed.get_world_size()
    local = tensor.to(device)
    count = torch.tensor([local.shape[0]], dtype=torch.long, device=device)
    counts = [torch.zeros_like(count) for _ in range(world_size)]
    distributed.all_gather(counts, count)
    counts = [int(value) for value in counts]
    padded = torch.zeros((max(counts), *local.shape[1:]), dtype=local.dtype, device=device)
    padded[:local.shape[0]] = local
    gathered = [torch.empty_like(padded) for _ in range(world_size)]
    distributed.all_gather(gathered, padded)
    return torch.cat([part[:size] for part, size in zip(gathered, counts)]).to(tensor.device)


def gather_predictions(predictions: Predictions) -> Predictions:
    """Every rank's predictions, once each, in dataset order, on every rank.

    A ``DistributedSampler`` gives each rank a share of the dataset and pads the shares to equal
    length with repeated samples; gathering all shares and keeping each dataset index once gives
    exactly the predictions of a single process (whose loader runs in dataset order). Works with
    the gloo and nccl backends (nccl needs the current CUDA device set for this rank); without
    an initialised process group it only sorts and de-duplicates.

    Args:
        predictions: this rank's predictions (CPU tensors, with their dataset ``indices``).

    Returns:
        The gathered predictions, on the CPU.
    """
    if distributed.is_available() and distributed.is_initialized() and (
            distributed.get_world_size() > 1):
        device = (torch.device("cuda", torch.cuda.current_device())
                  if distributed.get_backend() == "nccl" else torch.device("cpu"))
        predictions = Predictions(**{
            field.name: _all_gather_rows(getattr(predictions, field.name).cpu(), device).cpu()
            for field in fields(Predictions)})
    return _in_dataset_order(predictions)


def write_evaluation(out_dir: str | Path, metrics: dict[str, float],
                     results: list[dict[str, Any]]) -> None:
    """``results.json`` (COCO results format; for MPII, one entry per person) and
    ``metrics.json`` (COCO's ten stats as fractions, or MPII's PCKh table in percent), each
    written atomically (a run stopped mid-write leaves the previous file)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "results.json", json.dumps(results))
    atomic_write_text(out_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
