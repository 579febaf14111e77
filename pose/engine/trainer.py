"""The training loop: epochs of optimizer steps, periodic evaluation, checkpoints, logs.

Read it top to bottom: what a run is given (``TrainSettings``, ``TrainParts``) and where it
stands (``TrainState``); the NaN guard; ``train_one_epoch`` (one pass over the loader: forward
under autocast, backward, gradient accumulation and clipping, optimizer step, EMA, logging,
mid-epoch checkpoints); the training checkpoint; then ``fit`` (epochs, evaluation, ``last.pt``
and ``best.pt``, resuming from a checkpoint). The precision and device policy lives in
``pose.engine.precision``, optimizers and LR schedules in ``pose.engine.optim``, the step
meters (throughput, data wait, ETA) in ``pose.engine.logger``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from pose.data.loading import LoaderWorkerError, worker_death
from pose.engine.checkpoint import restore_rng_states, rng_states, save_checkpoint
from pose.engine.distributed import DistributedContext, ResumableSampler, mean_over_ranks
from pose.engine.ema import ModelEma
from pose.engine.logger import ScalarWriter, SmoothedValue, StepLogger, get_logger
from pose.engine.optim import step_with_lr_factor


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (the data pipeline seeds each sample itself)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# --- What a run is given, and where it stands -----------------------------------------------

@dataclass(frozen=True)
class TrainSettings:
    """How a run trains: its length, the numerics of a step, and when it logs, saves and
    evaluates."""

    epochs: int = 1
    max_steps: int | None = None  # stop after this many optimizer steps (None: all epochs)
    # Batches whose gradients add up to one optimizer step (each loss divided by their count;
    # an epoch's last, shorter group by its own count).
    accumulate_steps: int = 1
    # The forward pass's autocast dtype (None: float32 throughout); the loss is computed in
    # float32 on the upcast heatmaps.
    autocast: torch.dtype | None = None
    clip_grad_norm: float | None = None  # clip the global gradient norm to this (None: never)
    log_interval: int = 20  # optimizer steps between TensorBoard points
    checkpoint_interval: int = 0  # optimizer steps between mid-epoch last.pt saves (0: never)
    eval_interval: int = 1  # epochs between evaluations (and always after the last one)
    best_metric: str = "AP"  # what best.pt is chosen by: "AP" for COCO, "Mean" for MPII PCKh

    def __post_init__(self) -> None:
        if min(self.accumulate_steps, self.log_interval, self.eval_interval) < 1 or (
                self.checkpoint_interval < 0):
            raise ValueError(f"train.accumulate_steps, train.log_interval and "
                             f"train.eval_interval must be >= 1 and train.checkpoint_interval "
                             f">= 0, got {self.accumulate_steps}, {self.log_interval}, "
                             f"{self.eval_interval} and {self.checkpoint_interval}")

    def reached_max_steps(self, step: int) -> bool:
        return self.max_steps is not None and step >= self.max_steps

    def total_steps(self, epoch_batches: int) -> int:
        """The run's optimizer steps, for an epoch of ``epoch_batches`` batches."""
        steps = self.epochs * epoch_batches // self.accumulate_steps
        return min(steps, self.max_steps) if self.max_steps is not None else steps


@dataclass
class TrainParts:
    """What trains and what steps it.

    ``model``: the plain module (what checkpoints hold and evaluation runs); ``train_model``:
    the module that trains when it is wrapped (DDP, torch.compile; see
    ``pose.engine.precision.prepare_model``), else None for ``model`` itself. ``scheduler``:
    the per-epoch LR schedule (``fit`` needs one); one with a ``warmup_factor``
    (``WarmupMultiStepLR``, ``WarmupCosineLR``) also scales the LR of the first optimizer
    steps. ``grad_scaler``: float16 loss scaling. ``ema``: updated after every optimizer step.
    ``batch_transform``: applied to each batch on the device, before the forward pass (the
    device-side augmentation).
    """

    model: nn.Module
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    train_model: nn.Module | None = None
    grad_scaler: torch.amp.GradScaler | None = None
    ema: ModelEma | None = None
    batch_transform: Callable[[dict], dict] | None = None

    def __post_init__(self) -> None:
        if self.train_model is None:
            self.train_model = self.model

    def lr_factor(self, step: int) -> float:
        """The factor on the scheduled LR of optimizer step ``step`` (0-based): the warmup's."""
        warmup = getattr(self.scheduler, "warmup_factor", None)
        return warmup(step) if warmup is not None else 1.0


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed (the index of the epoch in progress)
    step: int = 0  # optimizer steps taken
    batches_done: int = 0  # batches of the epoch in progress this rank has trained on
    skipped_samples: int = 0  # samples skipped so far because their image was unreadable
    best_metric: float = -math.inf  # the best value of the settings' best_metric so far
    metrics: dict[str, float] = field(default_factory=dict)


# --- The NaN guard --------------------------------------------------------------------------

class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the run stops without writing a checkpoint."""


class _LossGuard:
    """Losses of the steps since the last check, kept on the device so that a step does not
    wait for the GPU; ``check`` reads them (on every rank: their mean over ranks), raises
    :class:`NonFiniteLossError` at the first NaN or Inf, and returns their mean. ``losses``:
    every loss checked (its window: those of the last check)."""

    def __init__(self, world_size: int) -> None:
        self.world_size = world_size
        self.pending: list[torch.Tensor] = []
        self.steps: list[int] = []  # the optimizer step (1-based) each loss belongs to
        self.losses = SmoothedValue()

    def add(self, loss: torch.Tensor, step: int) -> None:
        self.pending.append(loss.detach().float())
        self.steps.append(step)

    def check(self, epoch: int) -> float | None:
        if not self.pending:
            return None
        values = torch.stack(self.pending)
        if self.world_size > 1:  # every rank sees the same values and stops at the same step
            values = mean_over_ranks(values)
        values = values.tolist()
        for value, step in zip(values, self.steps, strict=True):
            if not math.isfinite(value):
                raise NonFiniteLossError(
                    f"the training loss is {value} at step {step} (epoch {epoch}); the run "
                    "stopped without saving, so last.pt and best.pt keep the last good weights. "
                    "Lower train.lr, set train.clip_grad_norm=, or check the data")
        self.pending.clear()
        self.steps.clear()
        self.losses.new_window()
        self.losses.update(sum(values), len(values))
        return self.losses.window_average


# --- One epoch ------------------------------------------------------------------------------

def train_one_epoch(parts: TrainParts, loader: Iterable[dict], device: torch.device,
                    state: TrainState, settings: TrainSettings, meter: StepLogger,
                    save_checkpoint: Callable[[], Any] | None = None) -> tuple[float, float]:
    """One pass over ``loader`` (or until ``settings.max_steps``); returns (mean loss,
    samples/s over all ranks).

    ``loader`` has a length; ``state.batches_done`` counts its batches (a loader resumed
    part-way yields only the rest of its epoch). Each batch goes to ``device``, through
    ``parts.batch_transform``, forward under ``settings.autocast`` and backward; each group of
    ``settings.accumulate_steps`` batches ends in one optimizer step and an EMA update.
    ``meter`` times the steps and logs every ``settings.log_interval`` steps;
    ``save_checkpoint`` is called every ``settings.checkpoint_interval`` steps, after the
    losses so far were checked to be finite.
    """
    parts.train_model.train()
    guard = _LossGuard(meter.world_size)
    epoch_batches = state.batches_done + len(loader)  # the whole epoch's, for the last group
    for batch in meter.batches(loader, f"epoch {state.epoch}"):
        state.skipped_samples += int(batch.get("num_skipped", 0))
        state.batches_done += 1
        group_size, steps_now = _accumulation_group(state.batches_done, epoch_batches,
                                                    settings.accumulate_steps)
        if not batch.keys() <= {"num_skipped"}:  # else every image was unreadable
            batch = _to_device(batch, device, parts.batch_transform)
            loss = _forward_backward(parts, batch, device, settings.autocast, group_size,
                                     sync=steps_now)
            guard.add(loss, state.step + 1)
            meter.count_samples(batch["image"].shape[0])
        if not steps_now:
            continue

        log_now = (state.step + 1) % settings.log_interval == 0
        grad_norm, lr = _optimizer_step(parts, state.step, settings.clip_grad_norm,
                                        measure_norm=log_now)
        state.step += 1
        meter.step_done()
        checkpoint_now = (save_checkpoint is not None and settings.checkpoint_interval > 0
                          and state.step % settings.checkpoint_interval == 0)
        mean_loss = guard.check(state.epoch) if log_now or checkpoint_now else None
        if log_now:
            meter.log(state.step, _step_scalars(parts, lr, mean_loss, grad_norm))
        if checkpoint_now:
            save_checkpoint()
            get_logger().info("step %d: checkpoint saved (epoch %d, batch %d)", state.step,
                              state.epoch, state.batches_done)
        if settings.reached_max_steps(state.step):
            break
    guard.check(state.epoch)
    return guard.losses.global_average, meter.samples_per_second()


def _accumulation_group(batch_number: int, epoch_batches: int, accumulate_steps: int
                        ) -> tuple[int, bool]:
    """The size of the group of batches summed into one optimizer step that batch
    ``batch_number`` (1-based, of ``epoch_batches``) belongs to (groups of
    ``accumulate_steps``, the epoch's last possibly shorter), and whether it ends the group."""
    group_start = (batch_number - 1) // accumulate_steps * accumulate_steps
    group_size = min(accumulate_steps, epoch_batches - group_start)
    return group_size, batch_number == group_start + group_size


def _to_device(batch: dict, device: torch.device,
               transform: Callable[[dict], dict] | None) -> dict:
    batch = {name: value.to(device, non_blocking=True) if torch.is_tensor(value) else value
             for name, value in batch.items()}
    return transform(batch) if transform is not None else batch


def _forward_backward(parts: TrainParts, batch: dict, device: torch.device,
                      autocast: torch.dtype | None, group_size: int, sync: bool) -> torch.Tensor:
    """The loss of ``batch``; its gradient, divided by ``group_size``, is added to the
    parameters'. ``sync=False``: not the group's last batch, so DDP does not all-reduce yet."""
    model = parts.train_model
    no_sync = model.no_sync() if not sync and hasattr(model, "no_sync") else nullcontext()
    with no_sync:
        with torch.autocast(device.type, dtype=autocast or torch.float32,
                            enabled=autocast is not None):
            heatmaps = model(batch["image"])
        loss = parts.loss_fn(heatmaps.float(), batch["target"], batch["target_weight"])
        scaled = loss / group_size
        (parts.grad_scaler.scale(scaled) if parts.grad_scaler is not None else scaled).backward()
    return loss


def _optimizer_step(parts: TrainParts, step: int, clip_grad_norm: float | None,
                    measure_norm: bool) -> tuple[torch.Tensor | None, float]:
    """Clip, step optimizer ``step`` (0-based) at its warmup LR, zero the gradients, update
    the EMA; returns the gradient norm (when clipped or ``measure_norm``) and the LR used."""
    scaler, optimizer = parts.grad_scaler, parts.optimizer
    if scaler is not None and (clip_grad_norm is not None or measure_norm):
        scaler.unscale_(optimizer)  # clip and log the true gradient norm
    grad_norm = None
    if clip_grad_norm is not None:
        grad_norm = nn.utils.clip_grad_norm_(parts.train_model.parameters(), clip_grad_norm)
    elif measure_norm:
        grads = [p.grad for p in parts.train_model.parameters() if p.grad is not None]
        grad_norm = nn.utils.get_total_norm(grads) if grads else None
    factor = parts.lr_factor(step)
    step_with_lr_factor(optimizer, factor, scaler)
    optimizer.zero_grad(set_to_none=True)
    if parts.ema is not None:
        parts.ema.update(parts.train_model)
    return grad_norm, optimizer.param_groups[0]["lr"] * factor


def _step_scalars(parts: TrainParts, lr: float, mean_loss: float | None,
                  grad_norm: torch.Tensor | None) -> dict[str, float]:
    """The TensorBoard scalars of a log step (the meter adds throughput and data wait)."""
    scalars = {"train/lr": lr}
    if mean_loss is not None:
        scalars["train/loss"] = mean_loss
    if grad_norm is not None:
        scalars["train/grad_norm"] = float(grad_norm)
    if parts.grad_scaler is not None:
        scalars["train/loss_scale"] = parts.grad_scaler.get_scale()
    return scalars


# --- Checkpoints of the training state ------------------------------------------------------

def training_checkpoint(parts: TrainParts, state: TrainState, *, config: dict[str, Any],
                        samples_per_batch: int) -> dict[str, Any]:
    """Everything a run needs to continue exactly where it is (see :func:`restore_training`).

    ``samples_per_batch``: samples of one batch over all ranks (the loader's batch size times
    the world size): the sampler position is stored as samples of the epoch in progress.
    """
    return {
        "model": parts.model.state_dict(), "optimizer": parts.optimizer.state_dict(),
        "scheduler": parts.scheduler.state_dict(),
        "grad_scaler": parts.grad_scaler.state_dict() if parts.grad_scaler is not None else None,
        "ema": parts.ema.state_dict() if parts.ema is not None else None,
        "rng": rng_states(),
        "epoch": state.epoch, "step": state.step,
        "epoch_samples": state.batches_done * samples_per_batch,
        "skipped_samples": state.skipped_samples, "best_metric": state.best_metric,
        "metrics": state.metrics, "config": config,
    }


def restore_training(checkpoint: dict[str, Any], parts: TrainParts) -> tuple[TrainState, int]:
    """Load what :func:`training_checkpoint` saved into ``parts``; returns the state and the
    samples of the epoch in progress already trained on (the sampler position).

    A checkpoint written without EMA or loss scaling leaves ``parts.ema`` and
    ``parts.grad_scaler`` as they are (with a warning), so a switch turned on at resume starts
    from there.
    """
    parts.model.load_state_dict(checkpoint["model"])
    parts.optimizer.load_state_dict(checkpoint["optimizer"])
    parts.scheduler.load_state_dict(checkpoint["scheduler"])
    for name, target in (("grad_scaler", parts.grad_scaler), ("ema", parts.ema)):
        if target is None:
            continue
        if checkpoint.get(name) is None:
            get_logger().warning("the checkpoint has no %s state: it starts afresh", name)
            continue
        target.load_state_dict(checkpoint[name])
    restore_rng_states(checkpoint["rng"])
    state = TrainState(epoch=checkpoint["epoch"], step=checkpoint["step"],
                       skipped_samples=checkpoint.get("skipped_samples", 0),
                       best_metric=checkpoint.get("best_metric", -math.inf),
                       metrics=checkpoint.get("metrics", {}))
    return state, int(checkpoint.get("epoch_samples", 0))


class _RunCheckpoints:
    """``last.pt`` and ``best.pt`` in the run folder, written by rank 0 only (``enabled``)."""

    def __init__(self, run_dir: Path, parts: TrainParts, config: dict[str, Any],
                 samples_per_batch: int, enabled: bool) -> None:
        self.run_dir, self.parts, self.config = run_dir, parts, config
        self.samples_per_batch, self.enabled = samples_per_batch, enabled
        self.saved_step: int | None = None  # the step last.pt holds, once this run wrote it

    def save_last(self, state: TrainState) -> dict[str, Any] | None:
        if not self.enabled:
            return None
        checkpoint = training_checkpoint(self.parts, state, config=self.config,
                                         samples_per_batch=self.samples_per_batch)
        save_checkpoint(self.run_dir / "last.pt", checkpoint)
        self.saved_step = state.step
        return checkpoint

    def where_to_continue(self) -> str:
        """Which checkpoint a stopped run continues from."""
        if self.saved_step is None:
            return "this run wrote no checkpoint yet"
        return (f"{self.run_dir / 'last.pt'} holds step {self.saved_step} (continue with "
                "train.resume=true)")

    def save_best(self, checkpoint: dict[str, Any] | None, name: str, value: float) -> None:
        """Copy ``checkpoint`` (last.pt's) to best.pt: its ``name`` improved to ``value``."""
        if not self.enabled:
            return
        save_checkpoint(self.run_dir / "best.pt", checkpoint)
        get_logger().info("new best %s %.4f: saved %s", name, value, self.run_dir / "best.pt")


# --- The run --------------------------------------------------------------------------------

def fit(parts: TrainParts, loader: DataLoader, run_dir: str | Path, settings: TrainSettings, *,
        evaluate: Callable[[nn.Module], dict[str, float]], config: dict[str, Any],
        resume: dict[str, Any] | None = None,
        log_images: Callable[[nn.Module], dict[str, np.ndarray]] | None = None,
        context: DistributedContext | None = None) -> TrainState:
    """Train for ``settings.epochs`` (or ``settings.max_steps`` optimizer steps), evaluating
    every ``settings.eval_interval`` epochs and at the end; rank 0 writes ``last.pt`` (after
    every epoch, every ``settings.checkpoint_interval`` steps, and at the end), ``best.pt`` (the
    highest ``settings.best_metric``) and TensorBoard logs to ``run_dir``.

    ``evaluate(module) -> metrics`` runs on every rank (on the EMA's module when ``parts.ema``
    is set); ``log_images(module) -> {tag: [N, H, W, 3] uint8}`` draws pictures after each
    evaluation. ``config``: stored in the checkpoints. ``resume``: a checkpoint to continue
    from (:func:`training_checkpoint`'s content). ``context``: this process's place in a
    distributed run and its device (default: one process on the CPU).
    """
    if parts.scheduler is None:
        raise ValueError("fit needs parts.scheduler, the per-epoch LR schedule")
    context = context or DistributedContext()
    state, epoch_samples = _starting_state(parts, loader, resume)
    writer = ScalarWriter(run_dir if context.is_main else None,
                          purge_step=state.step + 1 if resume is not None else None)
    meter = StepLogger(writer, world_size=context.world_size, show_progress=context.is_main,
                       total_steps=settings.total_steps(len(loader)))
    samples_per_batch = (getattr(loader, "batch_size", None) or 1) * context.world_size
    checkpoints = _RunCheckpoints(Path(run_dir), parts, config, samples_per_batch,
                                  enabled=context.is_main)
    parts.optimizer.zero_grad(set_to_none=True)
    try:
        while state.epoch < settings.epochs and not settings.reached_max_steps(state.step):
            epoch_batches = _start_epoch(loader, state, epoch_samples)
            mean_loss, samples_per_second = train_one_epoch(
                parts, loader, context.device, state, settings, meter,
                save_checkpoint=partial(checkpoints.save_last, state))
            epoch_samples = 0
            epoch_done = state.batches_done >= epoch_batches
            _end_epoch(parts, loader, state, writer, epoch_done, mean_loss, samples_per_second)
            finished = state.epoch >= settings.epochs or settings.reached_max_steps(state.step)
            improved = False
            if finished or (epoch_done and state.epoch % settings.eval_interval == 0):
                improved = _evaluate(parts, state, settings.best_metric, evaluate, writer,
                                     log_images if context.is_main else None)
            checkpoint = checkpoints.save_last(state)
            if improved:
                checkpoints.save_best(checkpoint, settings.best_metric, state.best_metric)
    except RuntimeError as error:  # torch's error for a dead worker can come at any point
        died = worker_death(error)
        if died is None:
            raise
        raise LoaderWorkerError(f"{died}; the run stopped, "
                                f"{checkpoints.where_to_continue()}") from error
    finally:
        writer.close()
    if state.skipped_samples:
        get_logger().warning("skipped %d training samples whose image could not be read (the "
                             "warnings above name the files)", state.skipped_samples)
    return state


def _starting_state(parts: TrainParts, loader: DataLoader, resume: dict[str, Any] | None
                    ) -> tuple[TrainState, int]:
    """A fresh state, or ``resume``'s loaded into ``parts``; and the samples of the epoch in
    progress already trained on."""
    if resume is None:
        return TrainState(), 0
    state, epoch_samples = restore_training(resume, parts)
    if epoch_samples and not isinstance(getattr(loader, "sampler", None), ResumableSampler):
        raise ValueError("resuming part-way through an epoch needs a loader whose sampler "
                         "is a pose.engine.distributed.ResumableSampler")
    get_logger().info("resumed at epoch %d, step %d (%d samples into the epoch)", state.epoch,
                      state.step, epoch_samples)
    return state, epoch_samples


def _start_epoch(loader: DataLoader, state: TrainState, epoch_samples: int) -> int:
    """Give the dataset its epoch (the augmentation draws) and a resumable sampler its epoch
    and position (``epoch_samples`` already trained on); returns the epoch's batches."""
    dataset = getattr(loader, "dataset", None)
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(state.epoch)
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, ResumableSampler):
        sampler.set_epoch(state.epoch, epoch_samples)
        state.batches_done = sampler.start // (loader.batch_size or 1)
    return state.batches_done + len(loader)


def _end_epoch(parts: TrainParts, loader: DataLoader, state: TrainState, writer: ScalarWriter,
               epoch_done: bool, mean_loss: float, samples_per_second: float) -> None:
    """Log the epoch (or the part of it trained: the run stopped at max_steps); when it is
    done, step the LR schedule and count it."""
    get_logger().info("epoch %d%s: loss %.4e, lr %.2e, %d steps, %.1f samples/s", state.epoch,
                      "" if epoch_done else f" (stopped after batch {state.batches_done})",
                      mean_loss, parts.optimizer.param_groups[0]["lr"], state.step,
                      samples_per_second)
    writer.scalars({"train/epoch_loss": mean_loss}, state.step)
    log_loading_counts(getattr(loader, "dataset", None))
    if epoch_done:
        parts.scheduler.step()
        state.epoch += 1
        state.batches_done = 0


def _evaluate(parts: TrainParts, state: TrainState, best_metric: str,
              evaluate: Callable[[nn.Module], dict[str, float]], writer: ScalarWriter,
              log_images: Callable[[nn.Module], dict[str, np.ndarray]] | None) -> bool:
    """Evaluate the model (the EMA's when there is one) into ``state.metrics``, log the metrics
    and pictures; returns whether ``best_metric`` improved on the best so far."""
    evaluated = parts.ema.module if parts.ema is not None else parts.model
    state.metrics = evaluate(evaluated)
    writer.scalars({f"val/{name}": value for name, value in state.metrics.items()}, state.step)
    if log_images is not None:
        for tag, images in log_images(evaluated).items():
            writer.images(tag, images, state.step)
    if best_metric not in state.metrics:
        raise KeyError(f"the evaluation gave no {best_metric!r} to choose best.pt by "
                       f"(it gave {', '.join(state.metrics)})")
    improved = state.metrics[best_metric] > state.best_metric
    state.best_metric = max(state.best_metric, state.metrics[best_metric])
    return improved


def log_loading_counts(dataset: Any) -> None:
    """Log what the data loader met so far (missing or corrupt images, EXIF rotations ignored,
    size mismatches: ``CocoKeypoints.loading_counts()``), if anything."""
    counts = dataset.loading_counts() if hasattr(dataset, "loading_counts") else {}
    if any(counts.values()):
        get_logger().warning("data loading so far (item loads): %s", ", ".join(
            f"{name} {count}" for name, count in counts.items() if count))
