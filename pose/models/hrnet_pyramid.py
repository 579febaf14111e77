"""HRNetV2p: an HRNetV2 backbone with a feature pyramid, as a torchvision detection backbone.

HRNetV2p (Wang et al., TPAMI 2020; HRNet-Object-Detection's ``HRFPN`` neck) concatenates the four
branches of HRNetV2 upsampled to 1/4 (:func:`pose.models.heads.concat_upsampled`), reduces them
with a 1x1 conv to ``out_channels``, average-pools that map to 1/8, 1/16, 1/32 and 1/64, and
applies a 3x3 conv to every level. :func:`hrnet_pyramid` returns it in torchvision's backbone
convention (``out_channels``; ``forward`` returns an ordered dict of levels keyed ``'0'``,
``'1'``, ``'2'``, ``'3'`` and ``'pool'``, as ``BackboneWithFPN``), so
``torchvision.models.detection.FasterRCNN(backbone=hrnet_pyramid("hrnetv2_w18"), ...)`` works
with its default anchors and RoI pooler. State-dict keys are the official detector's
``backbone.*`` (HRNet's names) and ``neck.reduction_conv.0.*``, ``neck.fpn_conv.<level>.*``.

Pyramid backbones are not pose models: they are not in ``pose.models.list_models()``.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict

import torch.nn.functional as F
from torch import Tensor, nn

from pose.models.heads import concat_upsampled
from pose.models.hrnet import HRNETV2_VARIANTS, HRNetV2

MAX_LEVELS = 5  # 1/4 .. 1/64, as the official HRFPN


def _level_names(levels: int) -> list[str]:
    """'0', '1', ... for strides 4, 8, 16, 32; the fifth level (1/64) is 'pool' (torchvision's
    name for the extra level of ``BackboneWithFPN``)."""
    return [str(level) if level < 4 else "pool" for level in range(levels)]


class HRFPN(nn.Module):
    """The HRNetV2p neck: HRNetV2 branches -> ``levels`` maps of ``out_channels`` channels.

    Branches [N, C_b, h/2^b, w/2^b] -> concat at h x w (bilinear upsampling) -> 1x1 conv (with
    bias) -> level l = average pool of kernel and stride 2^l -> 3x3 conv (with bias, one per
    level): [N, out_channels, h/2^l, w/2^l], l = 0 .. levels - 1. Weights: Kaiming normal
    (a = 1), biases 0, as the official ``init_weights``.
    """

    def __init__(self, in_channels: int, out_channels: int, levels: int) -> None:
        super().__init__()
        self.reduction_conv = nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size=1))
        self.fpn_conv = nn.ModuleList(
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1) for _ in range(levels))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, a=1)
                nn.init.zeros_(module.bias)

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        reduced = self.reduction_conv(concat_upsampled(features))
        pooled = [reduced] + [F.avg_pool2d(reduced, kernel_size=2**level, stride=2**level)
                              for level in range(1, len(self.fpn_conv))]
        return [conv(level) for conv, level in zip(self.fpn_conv, pooled, strict=True)]


class HRNetPyramid(nn.Module):
    """HRNetV2p: images [N, 3, H, W] (multiples of 32) -> OrderedDict of pyramid levels.

    ``backbone``: the HRNetV2 backbone (:class:`pose.models.hrnet.HRNetBackbone`, four
    branches); ``neck``: :class:`HRFPN`. Level l is [N, out_channels, H/4/2^l, W/4/2^l], keyed as
    :func:`_level_names` says. ``out_channels`` is the attribute torchvision's detectors read.
    """

    def __init__(self, backbone: nn.Module, in_channels: int, out_channels: int,
                 levels: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = HRFPN(in_channels, out_channels, levels)
        self.out_channels = out_channels
        self.level_names = _level_names(levels)

    def forward(self, images: Tensor) -> OrderedDict[str, Tensor]:
        levels = self.neck(self.backbone(images))
        return OrderedDict(zip(self.level_names, levels, strict=True))


def hrnet_pyramid(name: str, levels: int = MAX_LEVELS, out_channels: int = 256) -> HRNetPyramid:
    """HRNetV2p of HRNetV2 variant ``name`` (``hrnetv2_w18``, ``hrnetv2_w32``, ``hrnetv2_w48``).

    Args:
        name: a row of :data:`pose.models.hrnet.HRNETV2_VARIANTS`.
        levels: pyramid levels, 1 to 5 (strides 4 .. 64 px; the default 5 is the official one
            and what FasterRCNN's default anchors expect).
        out_channels: channels of every level (256, the official and torchvision's).

    Returns:
        An :class:`HRNetPyramid` whose backbone is initialised as our pose models are (load
        ImageNet weights with :func:`pose.models.load_backbone_weights`-style key matching:
        its ``backbone`` keys are the official ones).
    """
    if name not in HRNETV2_VARIANTS:
        raise ValueError(f"unknown HRNetV2 variant {name!r} for a pyramid; known: "
                         f"{', '.join(sorted(HRNETV2_VARIANTS))}")
    if not 1 <= levels <= MAX_LEVELS:
        raise ValueError(f"levels must be 1 to {MAX_LEVELS}, got {levels}")
    spec = HRNETV2_VARIANTS[name]
    # The pose model's backbone view holds the modules; its head is dropped with the model.
    backbone = HRNetV2(num_joints=1, **dataclasses.asdict(spec)).backbone
    return HRNetPyramid(backbone, sum(spec.widths), out_channels, levels)
