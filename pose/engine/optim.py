"""Optimizers and LR schedules: Adam, AdamW or SGD; per-epoch multistep or cosine schedules
after mmcv's linear warmup over the first optimizer steps, which the training loop applies
through :func:`step_with_lr_factor`."""

from __future__ import annotations

from collections.abc import Iterable

import torch


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
    """The per-step warmup that the training loop multiplies onto a per-epoch schedule (through
    :func:`step_with_lr_factor`).

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


def build_optimizer(parameters: Iterable[torch.nn.Parameter] | Iterable[dict], name: str,
                    lr: float, weight_decay: float = 0.0,
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


def step_with_lr_factor(optimizer: torch.optim.Optimizer, factor: float,
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
