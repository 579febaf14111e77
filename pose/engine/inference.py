"""The one evaluation path: person crops → model → decoded keypoints → gathered → scored →
written.

model → heatmaps → (flip-test average) → sub-cell refinement → image pixels (:func:`predict`);
under DDP every rank predicts a share and :func:`gather_predictions` collects them; an evaluator
(:mod:`pose.evaluation.evaluators`, chosen by the kind of data) turns them into metrics and the
results file; :func:`evaluate_model` runs the whole sequence and is what ``pose.train`` (at each
evaluation) and ``pose.eval`` call.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import torch
from torch import distributed, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from pose.data.loading import build_loader
from pose.engine.distributed import DistributedContext
from pose.engine.logger import progress
from pose.evaluation.decode import DecodeSettings, decode_heatmaps, flip_test_average
from pose.evaluation.evaluators import Evaluation, Evaluator
from pose.evaluation.predictions import Predictions
from pose.io import atomic_write_text


@torch.no_grad()
def predict_crops(model: nn.Module, images: torch.Tensor, centers: torch.Tensor,
                  scales: torch.Tensor, decoding: DecodeSettings
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch of crops → keypoints in image pixels: the model (and, with the flip test, on
    the mirrored crops), the flip-test average, the sub-cell refinement, the inverse crop map.

    Args:
        images: [B, 3, H, W] normalised crops on the model's device.
        centers, scales: [B, 2] the crop boxes (pixels, pixels / 200), on the same device.
        decoding: flip test and decoding settings.

    Returns:
        ``keypoints`` [B, K, 2] image pixels and ``maxvals`` [B, K], on the model's device.
    """
    heatmaps = model(images)
    if decoding.flip_test:
        heatmaps = flip_test_average(heatmaps, model(images.flip(3)), decoding.flip_pairs,
                                     shift_heatmap=decoding.shift_heatmap)
    return decode_heatmaps(heatmaps.float(), centers, scales,
                           post_process=decoding.post_process, sigma=decoding.sigma)


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, device: torch.device,
            decoding: DecodeSettings, show_progress: bool = True) -> Predictions:
    """Run ``model`` over every crop of ``loader`` and decode keypoints in image pixels.

    Batches hold ``image`` [B, 3, H, W] (normalised crops), ``center`` and ``scale`` [B, 2]
    (the crop boxes, pixels and pixels / 200), ``score`` (the box's), ``image_id`` and
    ``index`` (the crop's position in its dataset).
    """
    model.eval()
    parts: dict[str, list[torch.Tensor]] = {field.name: [] for field in fields(Predictions)}
    for batch in progress(loader, "eval", disable=not show_progress):
        keypoints, maxvals = predict_crops(model, batch["image"].to(device, non_blocking=True),
                                           batch["center"].to(device), batch["scale"].to(device),
                                           decoding)
        parts["keypoints"].append(keypoints.cpu())
        parts["maxvals"].append(maxvals.cpu())
        parts["centers"].append(batch["center"])
        parts["scales"].append(batch["scale"])
        parts["box_scores"].append(torch.as_tensor(batch["score"]))
        parts["image_ids"].append(torch.as_tensor(batch["image_id"]))
        parts["indices"].append(torch.as_tensor(batch["index"]))
    return Predictions(**{name: torch.cat(values) for name, values in parts.items()})


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
    return predictions.in_dataset_order()


def evaluation_loader(dataset: Dataset, batch_size: int, context: DistributedContext,
                      num_workers: int = 0) -> DataLoader:
    """The crops of ``dataset`` in order; under DDP this rank's share (a ``DistributedSampler``
    without shuffling, padded to equal shares; :func:`gather_predictions` drops the repeats)."""
    sampler = (DistributedSampler(dataset, context.world_size, context.rank, shuffle=False)
               if context.enabled else None)
    return build_loader(dataset, batch_size, sampler=sampler, num_workers=num_workers,
                        pin_memory=context.device.type == "cuda")


def write_evaluation(out_dir: str | Path, evaluation: Evaluation) -> None:
    """``results.json`` (COCO results format; for MPII, one entry per person) and
    ``metrics.json`` (the evaluation's metrics: COCO's ten stats, PCK as fractions, EPE in
    pixels, MPII's PCKh table in percent; and under ``metric`` the name of the one that ranks
    checkpoints), each written atomically (a run stopped mid-write leaves the previous file)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "results.json", json.dumps(evaluation.results))
    atomic_write_text(out_dir / "metrics.json", json.dumps(
        {**evaluation.metrics, "metric": evaluation.primary}, indent=2) + "\n")


def evaluate_model(model: nn.Module, loader: DataLoader, evaluator: Evaluator,
                   decoding: DecodeSettings, context: DistributedContext,
                   out_dir: str | Path | None = None) -> Evaluation | None:
    """Predict → gather (under DDP) → score → write: the evaluation of ``model`` on the crops of
    ``loader`` (this rank's share under DDP, see :func:`evaluation_loader`).

    Every rank predicts its share; rank 0 scores the gathered predictions with ``evaluator``
    and, when ``out_dir`` is given, writes ``results.json`` and ``metrics.json`` there.

    Returns:
        The :class:`~pose.evaluation.evaluators.Evaluation` on rank 0; None on the other ranks.
    """
    predictions = gather_predictions(predict(model, loader, context.device, decoding,
                                             show_progress=context.is_main))
    if not context.is_main:
        return None
    evaluation = evaluator(predictions)
    if out_dir is not None:
        write_evaluation(out_dir, evaluation)
    return evaluation
