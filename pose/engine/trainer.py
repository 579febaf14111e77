"""The training loop: epochs of optimizer steps, periodic evaluation, checkpoints, logs.

Read it top to bottom: the speed settings (autocast precision, channels_last, torch.compile,
DDP), the optimizers and LR schedules, ``train_one_epoch`` (one pass over the loader: forward
under autocast, backward, gradient accumulation and clipping, optimizer step, EMA, logging, the
NaN guard, mid-epoch checkpoints), then ``fit`` (epochs, evaluation, ``last.pt`` and
``best.pt``, resuming from a checkpoint).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from pose.engine.checkpoint import restore_rng_states, rng_states, save_checkpoint
from pose.engine.distributed import DistributedContext, ResumableSampler, mean_over_ranks
from pose.engine.ema import ModelEma
from pose.engine.logger import ScalarWriter, get_logger, progress


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (the data pipeline seeds each sample itself)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# --- Speed settings -------------------------------------------------------------------------

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of the forward pass for ``precision`` on ``device`` (None: float32).

    "auto": bfloat16 on CUDA (float16 on GPUs without bfloat16), float32 on the CPU. "fp32":
    None. "bf16": bfloat16; a CPU without native bfloat16 (AVX512-BF16 or AMX) would emulate
    it several times slower than float32, so there it falls back to float32 with a warning.
    "fp16": float16 (its gradients need :func:`grad_scaler_for`).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"train.precision={precision!r} is not known: expected one of "
                         f"{', '.join(PRECISIONS)}")
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if precision == "fp32":
        return None
    if precision == "fp16":
        return torch.float16
    if device.type == "cpu" and not (torch.cpu._is_avx512_bf16_supported()
                                     or torch.cpu._is_amx_tile_supported()):
        get_logger().warning("train.precision=bf16: this CPU has no native bfloat16 "
                             "(AVX512-BF16 or AMX), so training runs in float32")
        return None
    return torch.bfloat16


def grad_scaler_for(autocast: torch.dtype | None, device: torch.device
                    ) -> torch.amp.GradScaler | None:
    """A GradScaler for float16 autocast (float16 gradients underflow without loss scaling);
    None for float32 and bfloat16, whose exponent range is float32's."""
    if autocast is not torch.float16:
        return None
    return torch.amp.GradScaler(device.type)


def use_channels_last(channels_last: bool | None, device: torch.device) -> bool:
    """``train.channels_last`` resolved: None means on with CUDA, off on the CPU."""
    return device.type == "cuda" if channels_last is None else bool(channels_last)


def prepare_model(model: nn.Module, context: DistributedContext, *,
                  channels_last: bool | None = None, compile_model: bool = False,
                  sync_bn: bool = False, cudnn_benchmark: bool = True) -> nn.Module:
    """Move ``model`` to ``context.device`` in place and return the module to train with.

    ``channels_last``: NHWC weights, so activations follow from the first convolution on
    (faster convolutions with tensor cores and oneDNN); None: on for CUDA, off on the CPU.
    ``sync_bn``: BatchNorm statistics over the whole distributed batch (CUDA only; ignored in a
    single process). Under DDP the returned module is the DistributedDataParallel wrapper;
    ``compile_model`` wraps it in ``torch.compile`` last. ``model`` itself stays the plain
    module: its state dict is what checkpoints hold, and it is what evaluation runs.
    ``cudnn_benchmark``: let cuDNN time its convolution algorithms for the shapes it meets (a
    process-wide setting; CUDA only).
    """
    device = context.device
    torch.backends.cudnn.benchmark = cudnn_benchmark
    model.to(device)
    if use_channels_last(channels_last, device):
        model.to(memory_format=torch.channels_last)
    train_model = model
    if context.enabled:
        if sync_bn:
            if device.type != "cuda":
                raise ValueError("train.sync_bn=true needs CUDA: torch's SyncBatchNorm does not "
                                 "run on the CPU")
            train_model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        train_model = nn.parallel.DistributedDataParallel(
            train_model, device_ids=[device.index] if device.type == "cuda" else None)
    if compile_model:
        train_model = torch.compile(train_model)
    return train_model


# --- Optimizers and LR schedules ------------------------------------------------------------

def linear_warmup_factor(step: int, warmup_iters: int, warmup_ratio: float) -> float:
    """mmcv's linear warmup: the LR factor of optimizer step ``step`` (0-based).

    Rises linearly from ``warmup_ratio`` at step 0 to 1 at step ``warmup_iters``, and stays 1
    from there on: 1 - (1 - step / warmup_iters) * (1 - warmup_ratio). ``warmup_iters=0``: no
    warmup.
    """
    if step >= warmup_iters:
        return 1.0
    return 1.0 - (1.0 - step / warmup_iters) * (1.0 - warmup_ratio)


class _LinearWarmup:
    """The per-step warmup that :func:`train_one_epoch` multiplies onto a per-epoch schedule.

    The param groups keep the scheduled LR, so the per-epoch schedule is unaffected by where in
    an epoch the warmup ends.
    """

    warmup_iters: int
    warmup_ratio: float

    def _set_warmup(self, warmup_iters: int, warmup_ratio: float) -> None:
        if warmup_iters < 0 or not 0.0 < warmup_ratio <= 1.0:
            raise ValueError(f"train.warmup_iters must be >= 0 and train.warmup_ratio in (0, 1], "
                             f"got {warmup_iters} and {warmup_ratio}")
        self.warmup_iters = warmup_iters
        self.warmup_ratio = warmup_ratio

    def warmup_factor(self, step: int) -> float:
        """The factor on the scheduled LR of optimizer step ``step`` (0-based)."""
        return linear_warmup_factor(step, self.warmup_iters, self.warmup_ratio)


class WarmupMultiStepLR(_LinearWarmup, torch.optim.lr_scheduler.MultiStepLR):
    """MultiStepLR (stepped per epoch) with mmcv's linear warmup over the first optimizer steps."""

    def __init__(self, optimizer: torch.optim.Optimizer, milestones: list[int], gamma: float,
                 warmup_iters: int = 0, warmup_ratio: float = 0.001) -> None:
        self._set_warmup(warmup_iters, warmup_ratio)
        super().__init__(optimizer, milestones=milestones, gamma=gamma)


class WarmupCosineLR(_LinearWarmup, torch.optim.lr_scheduler.CosineAnnealingLR):
    """Cosine annealing from the base LR to ``min_lr`` over ``epochs`` (stepped per epoch, as
    mmcv's ``by_epoch`` cosine), with the same linear warmup over the first optimizer steps."""

    def __init__(self, optimizer: torch.optim.Optimizer, epochs: int, min_lr: float = 0.0,
                 warmup_iters: int = 0, warmup_ratio: float = 0.001) -> None:
        self._set_warmup(warmup_iters, warmup_ratio)
        super().__init__(optimizer, T_max=max(epochs, 1), eta_min=min_lr)


def multistep_lr(optimizer: torch.optim.Optimizer, milestones: list[int], gamma: float,
                 warmup_iters: int = 0, warmup_ratio: float = 0.001) -> WarmupMultiStepLR:
    """LR × gamma from each milestone epoch index on (stepped once at the end of every epoch),
    times the linear warmup factor over the first ``warmup_iters`` optimizer steps.

    The official HRNet code steps its scheduler at the start of each epoch, so its LR drops one
    epoch before the configured milestone (quirk P10); we apply the milestones as written, as
    mmcv (Lite-HRNet) does. Lite-HRNet warms up for 500 steps from 0.001x; HRNet has no warmup.
    """
    return WarmupMultiStepLR(optimizer, milestones, gamma, warmup_iters, warmup_ratio)


SCHEDULES = ("multistep", "cosine")


def build_scheduler(optimizer: torch.optim.Optimizer, name: str, *, epochs: int,
                    milestones: list[int], gamma: float = 0.1, min_lr: float = 0.0,
                    warmup_iters: int = 0, warmup_ratio: float = 0.001
                    ) -> WarmupMultiStepLR | WarmupCosineLR:
    """The per-epoch LR schedule ``name`` ("multistep": ``milestones`` and ``gamma``; "cosine":
    down to ``min_lr`` over ``epochs``), each after the linear warmup."""
    if name == "multistep":
        return multistep_lr(optimizer, milestones, gamma, warmup_iters, warmup_ratio)
    if name == "cosine":
        return WarmupCosineLR(optimizer, epochs, min_lr, warmup_iters, warmup_ratio)
    raise ValueError(f"train.scheduler={name!r} is not known: expected one of "
                     f"{', '.join(SCHEDULES)}")


OPTIMIZERS = ("adam", "adamw", "sgd")


def build_optimizer(parameters, name: str, lr: float, weight_decay: float = 0.0,
                    momentum: float = 0.9) -> torch.optim.Optimizer:
    """Adam (L2 weight decay in the gradient, as the official recipes), AdamW (decoupled weight
    decay) or SGD with momentum."""
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"train.optimizer={name!r} is not known: expected one of "
                     f"{', '.join(OPTIMIZERS)}")


def log_loading_counts(dataset: Any) -> None:
    """Log what the data loader met so far (missing or corrupt images, EXIF rotations ignored,
    size mismatches: ``CocoKeypoints.loading_counts()``), if anything."""
    counts = dataset.loading_counts() if hasattr(dataset, "loading_counts") else {}
    if any(counts.values()):
        get_logger().warning("data loading so far (item loads): %s", ", ".join(
            f"{name} {count}" for name, count in counts.items() if count))


def _step_with_lr_factor(optimizer: torch.optim.Optimizer, factor: float,
                         grad_scaler: torch.amp.GradScaler | None = None) -> None:
    """``optimizer.step()`` (through ``grad_scaler`` when given) with every group's LR times
    ``factor`` for this step only.

    The scheduled LR is put back afterwards: MultiStepLR is chainable (it multiplies whatever
    LR the groups hold at a milestone), so it must never see a warmed-down value.
    """
    def step() -> None:
        if grad_scaler is None:
            optimizer.step()
        else:
            grad_scaler.step(optimizer)
            grad_scaler.update()

    if factor == 1.0:
        step()
        return
    scheduled = [group["lr"] for group in optimizer.param_groups]
    for group, lr in zip(optimizer.param_groups, scheduled, strict=True):
        group["lr"] = lr * factor
    try:
        step()
    finally:
        for group, lr in zip(optimizer.param_groups, scheduled, strict=True):
            group["lr"] = lr


# --- One epoch ------------------------------------------------------------------------------

@dataclass
class TrainState:
    epoch: int = 0  # epochs completed (the index of the epoch in progress)
    step: int = 0  # optimizer steps taken
    batches_done: int = 0  # batches of the epoch in progress this rank has trained on
    skipped_samples: int = 0  # samples skipped so far because their image was unreadable
    best_metric: float = -math.inf  # the best value of fit's best_metric so far
    metrics: dict[str, float] = field(default_factory=dict)


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the run stops without writing a checkpoint."""


class _LossLog:
    """Losses of the steps since the last check, kept on the device so that a step does not
    wait for the GPU; ``check`` reads them (on every rank: their mean over ranks), raises
    :class:`NonFiniteLossError` at the first NaN or Inf, and returns their mean."""

    def __init__(self, world_size: int) -> None:
        self.world_size = world_size
        self.pending: list[torch.Tensor] = []
        self.steps: list[int] = []  # the optimizer step (1-based) each loss belongs to
        self.total, self.count = 0.0, 0  # of every loss checked

    def mean(self) -> float:
        """The mean of every loss checked so far (0 if none)."""
        return self.total / max(self.count, 1)

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
        self.total += sum(values)
        self.count += len(values)
        return sum(values) / len(values)


def train_one_epoch(model: nn.Module, loader: DataLoader, loss_fn: nn.Module,
                    optimizer: torch.optim.Optimizer, device: torch.device, state: TrainState,
                    writer: ScalarWriter, *, max_steps: int | None = None,
                    log_interval: int = 20,
                    autocast: torch.dtype | None = None,
                    lr_factor: Callable[[int], float] | None = None,
                    grad_scaler: torch.amp.GradScaler | None = None,
                    accumulate_steps: int = 1,
                    clip_grad_norm: float | None = None,
                    ema: ModelEma | None = None,
                    batch_transform: Callable[[dict], dict] | None = None,
                    checkpoint_interval: int = 0,
                    save_checkpoint_now: Callable[[], None] | None = None,
                    world_size: int = 1,
                    total_steps: int | None = None,
                    show_progress: bool = True) -> tuple[float, float]:
    """One pass over ``loader`` (or until ``max_steps``); returns (mean loss, samples/s).

    ``model``: the module to train (it may be DDP- or compile-wrapped). ``state.batches_done``
    counts the loader's batches (a loader resumed part-way yields only the rest of its epoch).
    ``autocast``: run the forward pass under autocast to this dtype (None: float32 throughout);
    the loss is computed in float32 on the upcast heatmaps. ``grad_scaler``: float16 loss
    scaling. ``lr_factor``: maps the 0-based optimizer step to a factor on the param groups' LR
    for that step only (the warmup); None: 1.
    ``accumulate_steps``: batches whose gradients add up to one optimizer step (the loss of each
    is divided by their count; an epoch's last, shorter group by its own count).
    ``clip_grad_norm``: clip the global gradient norm to this (None: no clipping).
    ``ema``: updated after every optimizer step. ``batch_transform``: applied to each batch
    after it is moved to the device, before the forward pass (GPU-side augmentation).
    ``save_checkpoint_now``: called every ``checkpoint_interval`` optimizer steps (0: never),
    after the losses so far were checked to be finite.
    ``world_size``: ranks training together (the logged samples/s counts all of them).
    ``total_steps``: the run's optimizer steps, for the progress bar's ETA.
    """
    if accumulate_steps < 1 or checkpoint_interval < 0 or log_interval < 1:
        raise ValueError(f"train.accumulate_steps and train.log_interval must be >= 1 and "
                         f"train.checkpoint_interval >= 0, got {accumulate_steps}, "
                         f"{log_interval} and {checkpoint_interval}")
    model.train()
    logger = get_logger()
    losses = _LossLog(world_size)
    epoch_batches = state.batches_done + len(loader)  # the whole epoch's, for the last group
    epoch_samples, epoch_steps = 0, 0
    window_samples, window_data_time = 0, 0.0  # since the last log step
    started = window_started = time.perf_counter()
    bar = progress(loader, f"epoch {state.epoch}", disable=not show_progress)
    fetch_started = time.perf_counter()
    for batch in bar:
        window_data_time += time.perf_counter() - fetch_started
        state.skipped_samples += int(batch.get("num_skipped", 0))
        state.batches_done += 1
        # The batches summed into one optimizer step: groups of accumulate_steps, the last
        # group of the epoch possibly shorter.
        group_start = (state.batches_done - 1) // accumulate_steps * accumulate_steps
        group_size = min(accumulate_steps, epoch_batches - group_start)
        steps_now = state.batches_done == group_start + group_size
        if not batch.keys() <= {"num_skipped"}:  # else every image was unreadable
            batch = {name: value.to(device, non_blocking=True) if torch.is_tensor(value)
                     else value for name, value in batch.items()}
            if batch_transform is not None:
                batch = batch_transform(batch)
            # DDP all-reduces the gradients in backward: only on the group's last batch.
            no_sync = model.no_sync() if not steps_now and hasattr(model, "no_sync") else (
                nullcontext())
            with no_sync:
                with torch.autocast(device.type, dtype=autocast or torch.float32,
                                    enabled=autocast is not None):
                    heatmaps = model(batch["image"])
                loss = loss_fn(heatmaps.float(), batch["target"], batch["target_weight"])
                scaled = loss / group_size
                (grad_scaler.scale(scaled) if grad_scaler is not None else scaled).backward()
            losses.add(loss, state.step + 1)
            window_samples += batch["image"].shape[0]
            epoch_samples += batch["image"].shape[0]
        if not steps_now:
            fetch_started = time.perf_counter()
            continue

        log_now = (state.step + 1) % log_interval == 0
        if grad_scaler is not None and (clip_grad_norm is not None or log_now):
            grad_scaler.unscale_(optimizer)  # clip and log the true gradient norm
        grad_norm = None
        if clip_grad_norm is not None:
            grad_norm = nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
        elif log_now:
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            grad_norm = nn.utils.get_total_norm(grads) if grads else None
        factor = lr_factor(state.step) if lr_factor is not None else 1.0
        _step_with_lr_factor(optimizer, factor, grad_scaler)
        optimizer.zero_grad(set_to_none=True)
        state.step += 1
        epoch_steps += 1
        if ema is not None:
            ema.update(model)

        finished = max_steps is not None and state.step >= max_steps
        checkpoint_now = (save_checkpoint_now is not None and checkpoint_interval > 0
                          and state.step % checkpoint_interval == 0)
        if log_now or checkpoint_now:
            mean_loss = losses.check(state.epoch)
        if log_now:
            elapsed = time.perf_counter() - window_started
            samples_per_second = window_samples * world_size / max(elapsed, 1e-9)
            scalars = {"train/lr": optimizer.param_groups[0]["lr"] * factor,
                       "train/samples_per_s": samples_per_second,
                       "train/data_wait_fraction": window_data_time / max(elapsed, 1e-9)}
            postfix = {"img/s": f"{samples_per_second:.1f}"}
            if mean_loss is not None:
                scalars["train/loss"] = mean_loss
                postfix["loss"] = f"{mean_loss:.3e}"
            if grad_norm is not None:
                scalars["train/grad_norm"] = float(grad_norm)
            if grad_scaler is not None:
                scalars["train/loss_scale"] = grad_scaler.get_scale()
            writer.scalars(scalars, state.step)
            if total_steps:
                seconds_per_step = (time.perf_counter() - started) / epoch_steps
                postfix["run ETA"] = _format_duration((total_steps - state.step) * seconds_per_step)
            bar.set_postfix(postfix, refresh=False)
            window_samples, window_data_time = 0, 0.0
            window_started = time.perf_counter()
        if checkpoint_now:
            save_checkpoint_now()
            logger.info("step %d: checkpoint saved (epoch %d, batch %d)", state.step,
                        state.epoch, state.batches_done)
        if finished:
            break
        fetch_started = time.perf_counter()
    bar.close()
    losses.check(state.epoch)
    samples_per_second = epoch_samples * world_size / max(time.perf_counter() - started, 1e-9)
    return losses.mean(), samples_per_second


def _format_duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


# --- Checkpoints of the training state ------------------------------------------------------

def training_checkpoint(model: nn.Module, optimizer: torch.optim.Optimizer,
                        scheduler: torch.optim.lr_scheduler.LRScheduler, state: TrainState, *,
                        config: dict[str, Any], samples_per_batch: int,
                        grad_scaler: torch.amp.GradScaler | None = None,
                        ema: ModelEma | None = None) -> dict[str, Any]:
    """Everything a run needs to continue exactly where it is (see :func:`restore_training`).

    ``samples_per_batch``: samples of one batch over all ranks (the loader's batch size times
    the world size): the sampler position is stored as samples of the epoch in progress.
    """
    return {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "grad_scaler": grad_scaler.state_dict() if grad_scaler is not None else None,
        "ema": ema.state_dict() if ema is not None else None,
        "rng": rng_states(),
        "epoch": state.epoch, "step": state.step,
        "epoch_samples": state.batches_done * samples_per_batch,
        "skipped_samples": state.skipped_samples, "best_metric": state.best_metric,
        "metrics": state.metrics, "config": config,
    }


def restore_training(checkpoint: dict[str, Any], model: nn.Module,
                     optimizer: torch.optim.Optimizer,
                     scheduler: torch.optim.lr_scheduler.LRScheduler, *,
                     grad_scaler: torch.amp.GradScaler | None = None,
                     ema: ModelEma | None = None) -> tuple[TrainState, int]:
    """Load what :func:`training_checkpoint` saved into the given objects; returns the state
    and the samples of the epoch in progress already trained on (the sampler position).

    A checkpoint written without EMA or loss scaling leaves ``ema`` and ``grad_scaler`` as they
    are (with a warning), so a switch turned on at resume starts from there.
    """
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    for name, target in (("grad_scaler", grad_scaler), ("ema", ema)):
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


# --- The run --------------------------------------------------------------------------------

def fit(model: nn.Module, train_loader: DataLoader, loss_fn: nn.Module,
        optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
        device: torch.device, run_dir: str | Path, *, epochs: int,
        evaluate: Callable[[nn.Module], dict[str, float]], config: dict[str, Any],
        max_steps: int | None = None, eval_interval: int = 1, log_interval: int = 20,
        autocast: torch.dtype | None = None,
        train_model: nn.Module | None = None,
        grad_scaler: torch.amp.GradScaler | None = None,
        accumulate_steps: int = 1,
        clip_grad_norm: float | None = None,
        ema: ModelEma | None = None,
        checkpoint_interval: int = 0,
        best_metric: str = "AP",
        resume: dict[str, Any] | None = None,
        batch_transform: Callable[[dict], dict] | None = None,
        log_images: Callable[[nn.Module], dict[str, np.ndarray]] | None = None,
        context: DistributedContext | None = None) -> TrainState:
    """Train for ``epochs`` (or ``max_steps`` optimizer steps), evaluating every
    ``eval_interval`` epochs and at the end; rank 0 writes ``last.pt`` (after every epoch, every
    ``checkpoint_interval`` steps, and at the end), ``best.pt`` (the highest ``best_metric``:
    "AP" for COCO, "Mean" for MPII PCKh) and TensorBoard logs to ``run_dir``.

    ``model``: the plain module (what checkpoints hold and evaluation runs); ``train_model``:
    the module that trains, when wrapped (DDP, torch.compile; see :func:`prepare_model`).
    ``evaluate(module) -> metrics`` runs on every rank (the EMA's module when ``ema`` is given);
    ``log_images(module) -> {tag: [N, H, W, 3] uint8}`` draws pictures after each evaluation.
    ``resume``: a checkpoint to continue from (:func:`training_checkpoint`'s content).
    A scheduler with a ``warmup_factor`` (``WarmupMultiStepLR``, ``WarmupCosineLR``) also
    scales the LR of the first optimizer steps. Other arguments: see :func:`train_one_epoch`.
    """
    context = context or DistributedContext(device=device)
    train_model = train_model if train_model is not None else model
    warmup = getattr(scheduler, "warmup_factor", None)
    run_dir = Path(run_dir)
    logger = get_logger()
    sampler = getattr(train_loader, "sampler", None)
    resumable = isinstance(sampler, ResumableSampler)
    samples_per_batch = (getattr(train_loader, "batch_size", None) or 1) * context.world_size
    state, epoch_samples = TrainState(), 0
    if resume is not None:
        state, epoch_samples = restore_training(resume, model, optimizer, scheduler,
                                                grad_scaler=grad_scaler, ema=ema)
        if epoch_samples and not resumable:
            raise ValueError("resuming part-way through an epoch needs a loader whose sampler "
                             "is a pose.engine.distributed.ResumableSampler")
        logger.info("resumed at epoch %d, step %d (%d samples into the epoch)", state.epoch,
                    state.step, epoch_samples)
    total_steps = epochs * len(train_loader) // accumulate_steps
    total_steps = min(total_steps, max_steps) if max_steps is not None else total_steps
    writer = ScalarWriter(run_dir if context.is_main else None,
                          purge_step=state.step + 1 if resume is not None else None)

    def save_last() -> dict[str, Any] | None:
        if not context.is_main:
            return None
        checkpoint = training_checkpoint(model, optimizer, scheduler, state, config=config,
                                         samples_per_batch=samples_per_batch,
                                         grad_scaler=grad_scaler, ema=ema)
        save_checkpoint(run_dir / "last.pt", checkpoint)
        return checkpoint

    def reached_max_steps() -> bool:
        return max_steps is not None and state.step >= max_steps

    optimizer.zero_grad(set_to_none=True)
    try:
        while state.epoch < epochs and not reached_max_steps():
            dataset = getattr(train_loader, "dataset", None)
            if hasattr(dataset, "set_epoch"):  # the augmentation draws of this epoch
                dataset.set_epoch(state.epoch)
            if resumable:
                sampler.set_epoch(state.epoch, epoch_samples)
                state.batches_done = sampler.start // (train_loader.batch_size or 1)
            epoch_batches = state.batches_done + len(train_loader)
            mean_loss, samples_per_second = train_one_epoch(
                train_model, train_loader, loss_fn, optimizer, device, state, writer,
                max_steps=max_steps, log_interval=log_interval, autocast=autocast,
                lr_factor=warmup, grad_scaler=grad_scaler, accumulate_steps=accumulate_steps,
                clip_grad_norm=clip_grad_norm, ema=ema, batch_transform=batch_transform,
                checkpoint_interval=checkpoint_interval, save_checkpoint_now=save_last,
                world_size=context.world_size, total_steps=total_steps,
                show_progress=context.is_main)
            epoch_samples = 0
            epoch_done = state.batches_done >= epoch_batches
            logger.info("epoch %d%s: loss %.4e, lr %.2e, %d steps, %.1f samples/s", state.epoch,
                        "" if epoch_done else f" (stopped after batch {state.batches_done})",
                        mean_loss, optimizer.param_groups[0]["lr"], state.step,
                        samples_per_second)
            writer.scalars({"train/epoch_loss": mean_loss}, state.step)
            log_loading_counts(dataset)
            if epoch_done:
                scheduler.step()
                state.epoch += 1
                state.batches_done = 0
            finished = state.epoch >= epochs or reached_max_steps()
            improved = False
            if finished or (epoch_done and state.epoch % eval_interval == 0):
                evaluated = ema.module if ema is not None else model
                state.metrics = evaluate(evaluated)
                writer.scalars({f"val/{name}": value for name, value in state.metrics.items()},
                               state.step)
                if log_images is not None and context.is_main:
                    for tag, images in log_images(evaluated).items():
                        writer.images(tag, images, state.step)
                if best_metric not in state.metrics:
                    raise KeyError(f"the evaluation gave no {best_metric!r} to choose best.pt by "
                                   f"(it gave {', '.join(state.metrics)})")
                improved = state.metrics[best_metric] > state.best_metric
                state.best_metric = max(state.best_metric, state.metrics[best_metric])
            checkpoint = save_last()
            if improved and context.is_main:
                save_checkpoint(run_dir / "best.pt", checkpoint)
                logger.info("new best %s %.4f: saved %s", best_metric, state.best_metric,
                            run_dir / "best.pt")
    finally:
        writer.close()
    if state.skipped_samples:
        logger.warning("skipped %d training samples whose image could not be read (the "
                       "warnings above name the files)", state.skipped_samples)
    return state
