"""Pose models by name: ``create_model("hrnet_w32", num_joints=17)``.

Every model maps normalised images [N, 3, H, W] to heatmaps [N, K, H/4, W/4].
"""

from __future__ import annotations

from torch import nn

from pose.models.heads import HeatmapHead
from pose.models.hrnet import HRNET_VARIANTS, HRNet, HRNetSpec, create_hrnet
from pose.models.lite_hrnet import (
    LITE_HRNET_VARIANTS,
    LiteHRNet,
    LiteHRNetSpec,
    create_lite_hrnet,
)
from pose.models.pretrained import load_backbone_weights, load_pretrained

__all__ = [
    "HRNET_VARIANTS",
    "LITE_HRNET_VARIANTS",
    "HRNet",
    "HRNetSpec",
    "HeatmapHead",
    "LiteHRNet",
    "LiteHRNetSpec",
    "create_model",
    "list_models",
    "load_backbone_weights",
    "load_pretrained",
]


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`, sorted."""
    return sorted([*HRNET_VARIANTS, *LITE_HRNET_VARIANTS])


def create_model(name: str, num_joints: int = 17, **overrides: object) -> nn.Module:
    """Build model ``name`` with ``num_joints`` heatmaps; ``overrides`` replace table fields."""
    if name in HRNET_VARIANTS:
        return create_hrnet(name, num_joints, **overrides)
    if name in LITE_HRNET_VARIANTS:
        return create_lite_hrnet(name, num_joints, **overrides)
    raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
