"""Pose models by name: ``create_model("hrnet_w32", num_joints=17)``.

Every model maps normalised images [N, 3, H, W] to heatmaps [N, K, H/4, W/4] and has the
:class:`PoseModel` interface (``backbone``, ``head``, ``forward_features``, ``forward_head``,
``num_joints``, ``heatmap_stride``). Each family file holds a table of named variants (a spec
dataclass per row); :data:`MODELS` joins them, and :func:`create_model` is the one builder.
:func:`hrnet_pyramid` builds HRNetV2p detection backbones (not pose models, not in MODELS).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pose.models.base import PoseModel
from pose.models.heads import HeatmapHead, HRNetV2Head
from pose.models.hrnet import HRNET_VARIANTS, HRNETV2_VARIANTS, HRNet, HRNetSpec, HRNetV2
from pose.models.hrnet_pyramid import HRNetPyramid, hrnet_pyramid
from pose.models.lite_hrnet import LITE_HRNET_VARIANTS, LiteHRNet, LiteHRNetSpec
from pose.models.pretrained import load_backbone_weights, load_pretrained

__all__ = [
    "HRNETV2_VARIANTS",
    "HRNET_VARIANTS",
    "LITE_HRNET_VARIANTS",
    "MODELS",
    "HRNet",
    "HRNetPyramid",
    "HRNetSpec",
    "HRNetV2",
    "HRNetV2Head",
    "HeatmapHead",
    "LiteHRNet",
    "LiteHRNetSpec",
    "PoseModel",
    "create_model",
    "hrnet_pyramid",
    "list_models",
    "load_backbone_weights",
    "load_pretrained",
]

# Model name -> (model class, its spec: a dataclass whose fields are the class's arguments
# besides num_joints).
MODELS: dict[str, tuple[type[PoseModel], Any]] = {
    **{name: (HRNet, spec) for name, spec in HRNET_VARIANTS.items()},
    **{name: (HRNetV2, spec) for name, spec in HRNETV2_VARIANTS.items()},
    **{name: (LiteHRNet, spec) for name, spec in LITE_HRNET_VARIANTS.items()},
}


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`, sorted."""
    return sorted(MODELS)


def create_model(name: str, num_joints: int = 17, **overrides: object) -> PoseModel:
    """Build model ``name`` with ``num_joints`` heatmaps.

    ``overrides`` replace fields of the variant's spec (e.g. ``widths=(...)`` for an HRNet,
    ``official_fuse=False`` for a Lite-HRNet); an unknown name is a ValueError listing them.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    model_class, spec = MODELS[name]
    fields = [field.name for field in dataclasses.fields(spec)]
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(f"unknown {model_class.__name__} override(s) {unknown} for {name}; "
                         f"the fields of {type(spec).__name__} are {fields}")
    spec = dataclasses.replace(spec, **overrides)
    return model_class(num_joints=num_joints, **dataclasses.asdict(spec))
