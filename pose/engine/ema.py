"""An exponential moving average (EMA) of a model's weights, evaluated in place of the model."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class ModelEma:
    """Keeps ``module``, a copy of a model whose weights follow the model's as an EMA.

    After each optimizer step, ``update(model)`` moves every floating-point parameter and buffer
    (BatchNorm's running statistics included) a fraction ``1 - d`` of the way to the model's,
    with ``d = min(decay, (1 + n) / (10 + n))`` at the n-th update: the ramp (TensorFlow's
    ``ExponentialMovingAverage`` with ``num_updates``) keeps the first updates from being tied
    to the random initialisation. Integer buffers (BatchNorm's batch counter) are copied.

    ``model`` may be wrapped (DDP, ``torch.compile``): parameters and buffers are matched in
    order, which wrapping does not change.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"train.ema_decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    def current_decay(self) -> float:
        """The decay the next update uses."""
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        weight = 1.0 - self.current_decay()
        averaged, current = [], []
        ema_tensors = [*self.module.parameters(), *self.module.buffers()]
        model_tensors = [*model.parameters(), *model.buffers()]
        for ema_tensor, model_tensor in zip(ema_tensors, model_tensors, strict=True):
            if ema_tensor.is_floating_point():
                averaged.append(ema_tensor)
                current.append(model_tensor.detach())
            else:
                ema_tensor.copy_(model_tensor)
        torch._foreach_lerp_(averaged, current, weight)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        """``module``'s weights (a plain model state dict, loadable by ``pose.eval``) and the
        update count."""
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
