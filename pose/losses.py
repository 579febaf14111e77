"""Heatmap losses of the official HRNet code (``core/loss.py``), with its 0.5 factor (quirk P6).

Shapes: predicted and target heatmaps are [N, K, H, W]; target weights are [N, K] or [N, K, 1]
(0 for joints that must not contribute, possibly non-binary).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

LOSS_NAMES = ("mse", "ohkm")


class JointWeighted(nn.Module):
    """A heatmap loss whose target weights are scaled per joint by ``joint_weights`` [K] (the
    official HRNet's ``use_different_joints_weight``: ``target_weight * joints_weight``)."""

    def __init__(self, loss: nn.Module, joint_weights: Sequence[float]) -> None:
        super().__init__()
        self.loss = loss
        self.register_buffer("joint_weights", torch.tensor(joint_weights, dtype=torch.float32),
                             persistent=False)

    def forward(
        self, output: torch.Tensor, target: torch.Tensor, target_weight: torch.Tensor
    ) -> torch.Tensor:
        """The wrapped loss with ``target_weight`` [N, K] or [N, K, 1] scaled per joint."""
        if target_weight.shape[1] != self.joint_weights.shape[0]:
            raise ValueError(f"{self.joint_weights.shape[0]} joint weights for "
                             f"{target_weight.shape[1]} joints")
        scale = self.joint_weights.to(target_weight.device, target_weight.dtype)
        scale = scale.reshape(1, -1, *([1] * (target_weight.dim() - 2)))
        return self.loss(output, target, target_weight * scale)


def per_joint_mse(
    output: torch.Tensor,
    target: torch.Tensor,
    target_weight: torch.Tensor | None,
) -> torch.Tensor:
    """Per-sample, per-joint loss ``0.5 * mean_{h,w}((w * pred - w * gt)^2)`` -> [N, K].

    ``target_weight`` None means every joint has weight 1.
    """
    if output.dim() != 4:
        raise ValueError(f"output must have shape [N, K, H, W], got {tuple(output.shape)}")
    if target.shape != output.shape:
        raise ValueError(
            f"target shape {tuple(target.shape)} differs from output shape {tuple(output.shape)}"
        )
    batch_size, num_joints = output.shape[:2]
    predicted = output.reshape(batch_size, num_joints, -1)
    expected = target.reshape(batch_size, num_joints, -1)
    if target_weight is not None:
        if target_weight.shape not in ((batch_size, num_joints), (batch_size, num_joints, 1)):
            raise ValueError(
                f"target_weight must have shape [{batch_size}, {num_joints}] or "
                f"[{batch_size}, {num_joints}, 1], got {tuple(target_weight.shape)}"
            )
        weight = target_weight.reshape(batch_size, num_joints, 1)
        # Weigh both sides before subtracting, as the official code does (same rounding).
        predicted = predicted * weight
        expected = expected * weight
    return 0.5 * ((predicted - expected) ** 2).mean(dim=2)


class JointsMSELoss(nn.Module):
    """Official HRNet ``JointsMSELoss``: ``(1/K) sum_k 0.5 * mean_{b,h,w}((w_bk (pred - gt))^2)``.

    The 0.5 factor is the official HRNet's; mmpose 0.x (Lite-HRNet) omits it, so its loss is
    exactly twice this one on the same inputs.
    """

    def __init__(self, use_target_weight: bool = True) -> None:
        super().__init__()
        self.use_target_weight = use_target_weight

    def forward(
        self, output: torch.Tensor, target: torch.Tensor, target_weight: torch.Tensor
    ) -> torch.Tensor:
        """Scalar loss for output/target [N, K, H, W] and target_weight [N, K] or [N, K, 1]."""
        weight = target_weight if self.use_target_weight else None
        return per_joint_mse(output, target, weight).mean()


class JointsOHKMMSELoss(nn.Module):
    """Official HRNet ``JointsOHKMMSELoss`` (online hard keypoint mining).

    Per sample, the ``topk`` largest per-joint losses (as in :class:`JointsMSELoss`, 0.5 factor
    included) are summed and divided by ``topk``; the result is averaged over the batch.

    The official implementation crashes with batch size 1 when target weights are off (its
    ``squeeze()`` drops the batch dimension); here batch size 1 gives the same formula's value.
    """

    def __init__(self, use_target_weight: bool = True, topk: int = 8) -> None:
        super().__init__()
        if topk < 1:
            raise ValueError(f"topk must be a positive number of joints, got {topk}")
        self.use_target_weight = use_target_weight
        self.topk = topk

    def forward(
        self, output: torch.Tensor, target: torch.Tensor, target_weight: torch.Tensor
    ) -> torch.Tensor:
        """Scalar loss for output/target [N, K, H, W] and target_weight [N, K] or [N, K, 1]."""
        weight = target_weight if self.use_target_weight else None
        joint_losses = per_joint_mse(output, target, weight)  # [N, K]
        if joint_losses.shape[1] < self.topk:
            raise ValueError(
                f"topk={self.topk} exceeds the number of joints {joint_losses.shape[1]}"
            )
        hardest, _ = joint_losses.topk(self.topk, dim=1, sorted=False)
        return (hardest.sum(dim=1) / self.topk).mean()


def build_loss(name: str, use_target_weight: bool = True, topk: int = 8,
               joint_weights: Sequence[float] | None = None) -> nn.Module:
    """The heatmap loss called ``name``: "mse" (:class:`JointsMSELoss`, what the official training
    always uses) or "ohkm" (:class:`JointsOHKMMSELoss` with ``topk``), with the target weights
    scaled by ``joint_weights`` [K] when given (:class:`JointWeighted`; they act through the
    target weights, so they need ``use_target_weight``)."""
    if name == "mse":
        loss: nn.Module = JointsMSELoss(use_target_weight=use_target_weight)
    elif name == "ohkm":
        loss = JointsOHKMMSELoss(use_target_weight=use_target_weight, topk=topk)
    else:
        raise ValueError(f"unknown loss {name!r}; expected one of {list(LOSS_NAMES)}")
    if joint_weights is None:
        return loss
    if not use_target_weight:
        raise ValueError("the keypoint set's joint_weights scale the target weights, as the "
                         "official use_different_joints_weight does: set "
                         "train.use_target_weight=true")
    return JointWeighted(loss, joint_weights)
