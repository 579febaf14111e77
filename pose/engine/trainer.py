"""The training loop: epochs of optimizer steps, periodic evaluation, checkpoints, logs.

Read it top to bottom: ``train_one_epoch`` is one pass over the loader; ``fit`` runs epochs,
evaluates, and keeps ``last.pt`` and ``best.pt`` (by COCO AP) in the run folder.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from pose.engine.checkpoint import save_checkpoint
from pose.engine.inference import progress
from pose.engine.logger import ScalarWriter, get_logger


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (the data pipeline seeds each sample itself)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


PRECISIONS = ("fp32", "bf16")


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` ("fp32": None, "bf16": torch.bfloat16) on ``device``.

    A CPU without native bfloat16 (AVX512-BF16 or AMX) would emulate it several times slower
    than float32, so there "bf16" falls back to float32 with a warning.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"train.precision={precision!r} is not known: expected one of "
                         f"{', '.join(PRECISIONS)}")
    if precision == "fp32":
        return None
    if device.type == "cpu" and not (torch.cpu._is_avx512_bf16_supported()
                                     or torch.cpu._is_amx_tile_supported()):
        get_logger().warning("train.precision=bf16: this CPU has no native bfloat16 "
                             "(AVX512-BF16 or AMX), so training runs in float32")
        return None
    return torch.bfloat16


def linear_warmup_factor(step: int, warmup_iters: int, warmup_ratio: float) -> float:
    """mmcv's linear warmup: the LR factor of optimizer step ``step`` (0-based).

    Rises linearly from ``warmup_ratio`` at step 0 to 1 at step ``warmup_iters``, and stays 1
    from there on: 1 - (1 - step / warmup_iters) * (1 - warmup_ratio). ``warmup_iters=0``: no
    warmup.
    """
    if step >= warmup_iters:
        return 1.0
    return 1.0 - (1.0 - step / warmup_iters) * (1.0 - warmup_ratio)


class WarmupMultiStepLR(torch.optim.lr_scheduler.MultiStepLR):
    """MultiStepLR (stepped per epoch) with mmcv's linear warmup over the first optimizer steps.

    The warmup multiplies the scheduled LR of each optimizer step (``warmup_factor``, applied
    by :func:`train_one_epoch`); the param groups keep the scheduled LR, so the per-epoch
    milestones are unaffected by where in an epoch the warmup ends.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, milestones: list[int], gamma: float,
                 warmup_iters: int = 0, warmup_ratio: float = 0.001) -> None:
        if warmup_iters < 0 or not 0.0 < warmup_ratio <= 1.0:
            raise ValueError(f"train.warmup_iters must be >= 0 and train.warmup_ratio in (0, 1], "
                             f"got {warmup_iters} and {warmup_ratio}")
        self.warmup_iters = warmup_iters
        self.warmup_ratio = warmup_ratio
        super().__init__(optimizer, milestones=milestones, gamma=gamma)

    def warmup_factor(self, step: int) -> float:
        """The factor on the scheduled LR of optimizer step ``step`` (0-based)."""
        return linear_warmup_factor(step, self.warmup_iters, self.warmup_ratio)


def multistep_lr(optimizer: torch.optim.Optimizer, milestones: list[int], gamma: float,
                 warmup_iters: int = 0, warmup_ratio: float = 0.001) -> WarmupMultiStepLR:
    """LR × gamma from each milestone epoch index on (stepped once at the end of every epoch),
    times the linear warmup factor over the first ``warmup_iters`` optimizer steps.

    The official HRNet code steps its scheduler at the start of each epoch, so its LR drops one
    epoch before the configured milestone (quirk P10); we apply the milestones as written, as
    mmcv (Lite-HRNet) does. Lite-HRNet warms up for 500 steps from 0.001x; HRNet has no warmup.
    """
    return WarmupMultiStepLR(optimizer, milestones, gamma, warmup_iters, warmup_ratio)


def build_optimizer(parameters, name: str, lr: float, weight_decay: float = 0.0,
                    momentum: float = 0.9) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"train.optimizer={name!r} is not known: expected 'adam' or 'sgd'")


def log_loading_counts(dataset: Any) -> None:
    """Log what the data loader met so far (missing or corrupt images, EXIF rotations ignored,
    size mismatches: ``CocoKeypoints.loading_counts()``), if anything."""
    counts = dataset.loading_counts() if hasattr(dataset, "loading_counts") else {}
    if any(counts.values()):
        get_logger().warning("data loading so far (item loads): %s", ", ".join(
            f"{name} {count}" for name, count in counts.items() if count))


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    skipped_samples: int = 0  # samples skipped so far because their image was unreadable
    best_ap: float = -math.inf
    metrics: dict[str, float] = field(default_factory=dict)


def _step_with_lr_factor(optimizer: torch.optim.Optimizer, factor: float) -> None:
    """``optimizer.step()`` with every group's LR times ``factor`` for this step only.

    The scheduled LR is put back afterwards: MultiStepLR is chainable (it multiplies whatever
    LR the groups hold at a milestone), so it must never see a warmed-down value.
    """
    if factor == 1.0:
        optimizer.step()
        return
    scheduled = [group["lr"] for group in optimizer.param_groups]
    for group, lr in zip(optimizer.param_groups, scheduled, strict=True):
        group["lr"] = lr * factor
    try:
        optimizer.step()
    finally:
        for group, lr in zip(optimizer.param_groups, scheduled, strict=True):
            group["lr"] = lr


def train_one_epoch(model: nn.Module, loader: DataLoader, loss_fn: nn.Module,
                    optimizer: torch.optim.Optimizer, device: torch.device, state: TrainState,
                    writer: ScalarWriter, *, max_steps: int | None = None,
                    log_interval: int = 20,
                    autocast: torch.dtype | None = None,
                    lr_factor: Callable[[int], float] | None = None,
                    batch_transform: Callable[[dict], dict] | None = None,
                    ) -> tuple[float, float]:
    """One pass over ``loader`` (or until ``max_steps``); returns (mean loss, samples/s).

    ``autocast``: run the forward pass under autocast to this dtype (None: float32 throughout);
    the loss is computed in float32 on the upcast heatmaps.
    ``lr_factor``: maps the 0-based optimizer step to a factor on the param groups' LR for that
    step only (the warmup, :meth:`WarmupMultiStepLR.warmup_factor`); None: 1.
    ``batch_transform``: applied to each batch once its tensors are on ``device``, before the
    forward pass (the device-side augmentation, ``CocoKeypoints.batch_transform()``).
    """
    model.train()
    total_loss, total_samples = 0.0, 0
    started = time.perf_counter()
    bar = progress(loader, f"epoch {state.epoch}")
    for batch in bar:
        if max_steps is not None and state.step >= max_steps:
            break
        state.skipped_samples += int(batch.get("num_skipped", 0))
        if batch.keys() <= {"num_skipped"}:  # every image of this batch was unreadable
            continue
        if batch_transform is not None:
            batch = batch_transform({
                key: value.to(device, non_blocking=True) if torch.is_tensor(value) else value
                for key, value in batch.items()})
        images = batch["image"].to(device, non_blocking=True)
        targets = batch["target"].to(device, non_blocking=True)
        target_weights = batch["target_weight"].to(device, non_blocking=True)

        with torch.autocast(device.type, dtype=autocast or torch.float32,
                            enabled=autocast is not None):
            heatmaps = model(images)
        loss = loss_fn(heatmaps.float(), targets, target_weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        factor = lr_factor(state.step) if lr_factor is not None else 1.0
        _step_with_lr_factor(optimizer, factor)
        state.step += 1

        batch_size = images.shape[0]
        total_loss += loss.item() * batch_size
        total_samples += batch_size
        samples_per_second = total_samples / (time.perf_counter() - started)
        bar.set_postfix(loss=f"{loss.item():.3e}", samples_per_s=f"{samples_per_second:.1f}",
                        refresh=False)
        if state.step % log_interval == 0:
            writer.scalars({"train/loss": loss.item(),
                            "train/lr": optimizer.param_groups[0]["lr"] * factor,
                            "train/samples_per_s": samples_per_second}, state.step)
    bar.close()
    samples_per_second = total_samples / max(time.perf_counter() - started, 1e-9)
    return total_loss / max(total_samples, 1), samples_per_second


def fit(model: nn.Module, train_loader: DataLoader, loss_fn: nn.Module,
        optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
        device: torch.device, run_dir: str | Path, *, epochs: int,
        evaluate: Callable[[nn.Module], dict[str, float]], config: dict[str, Any],
        max_steps: int | None = None, eval_interval: int = 1, log_interval: int = 20,
        autocast: torch.dtype | None = None,
        batch_transform: Callable[[dict], dict] | None = None) -> TrainState:
    """Train for ``epochs`` (or ``max_steps``), evaluating every ``eval_interval`` epochs and
    after the last; writes ``last.pt``, ``best.pt`` and TensorBoard scalars to ``run_dir``.
    ``autocast`` is the training forward pass's dtype (see :func:`train_one_epoch`); evaluation
    runs in float32. A :class:`WarmupMultiStepLR` ``scheduler`` also scales the LR of the first
    optimizer steps (its warmup)."""
    warmup = scheduler.warmup_factor if isinstance(scheduler, WarmupMultiStepLR) else None
    run_dir = Path(run_dir)
    logger = get_logger()
    writer = ScalarWriter(run_dir)
    state = TrainState()
    try:
        for epoch in range(epochs):
            state.epoch = epoch
            if hasattr(train_loader.dataset, "set_epoch"):
                train_loader.dataset.set_epoch(epoch)
            mean_loss, samples_per_second = train_one_epoch(
                model, train_loader, loss_fn, optimizer, device, state, writer,
                max_steps=max_steps, log_interval=log_interval, autocast=autocast,
                lr_factor=warmup, batch_transform=batch_transform)
            scheduler.step()
            logger.info("epoch %d: loss %.4e, lr %.2e, %d steps, %.1f samples/s", epoch,
                        mean_loss, optimizer.param_groups[0]["lr"], state.step, samples_per_second)
            writer.scalars({"train/epoch_loss": mean_loss}, state.step)
            log_loading_counts(train_loader.dataset)
            finished = epoch == epochs - 1 or (max_steps is not None and state.step >= max_steps)
            improved = False
            if finished or (epoch + 1) % eval_interval == 0:
                state.metrics = evaluate(model)
                writer.scalars({f"val/{name}": value for name, value in state.metrics.items()},
                               state.step)
                improved = state.metrics["AP"] > state.best_ap
                state.best_ap = max(state.best_ap, state.metrics["AP"])
            checkpoint = {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "epoch": epoch + 1, "step": state.step,
                "metrics": state.metrics, "config": config,
            }
            save_checkpoint(run_dir / "last.pt", checkpoint)
            if improved:
                save_checkpoint(run_dir / "best.pt", checkpoint)
                logger.info("new best AP %.4f: saved %s", state.best_ap, run_dir / "best.pt")
            if finished:
                break
    finally:
        writer.close()
    if state.skipped_samples:
        logger.warning("skipped %d training samples whose image could not be read (the "
                       "warnings above name the files)", state.skipped_samples)
    return state
