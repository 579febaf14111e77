"""Heatmap heads and the weight initialisation shared by the pose models.

:class:`HeatmapHead` follows SimpleBaseline / mmpose 0.x ``TopDownSimpleHead``: optional stride-2
deconvolutions (``deconv_layers``) followed by one convolution with bias (``final_layer``) that
maps features to one heatmap per joint. Stored under ``keypoint_head`` its keys are exactly those
of Lite-HRNet checkpoints (``keypoint_head.final_layer.weight``).

:class:`HRNetV2Head` is HRNetV2's representation head (Wang et al., TPAMI 2020): every branch
upsampled to the finest and concatenated (:func:`concat_upsampled`), then 1x1 conv + BN + ReLU
and the heatmap conv.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Official HRNet (BN_MOMENTUM) and mmcv defaults.
BN_MOMENTUM = 0.1
BN_EPS = 1e-5
INIT_STD = 0.001

# (padding, output_padding) that make a stride-2 transposed conv exactly double H and W.
_DECONV_PADDING = {4: (1, 0), 3: (1, 1), 2: (0, 0)}


def batch_norm(channels: int) -> nn.BatchNorm2d:
    """BatchNorm2d with the official momentum and eps."""
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def heatmap_conv(in_channels: int, num_joints: int, kernel_size: int = 1) -> nn.Conv2d:
    """The last layer of a heatmap head: stride-1 conv with bias, size-preserving padding.

    Maps [N, in_channels, h, w] features to [N, num_joints, h, w] heatmaps.
    """
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"final kernel size must be a positive odd integer, got {kernel_size}")
    return nn.Conv2d(
        in_channels, num_joints, kernel_size, stride=1, padding=kernel_size // 2, bias=True
    )


def init_pose_weights(module: nn.Module) -> None:
    """Official HRNet / mmpose init: conv and deconv weights ~ N(0, 0.001²), biases 0, BN 1/0."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(layer.weight, std=INIT_STD)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)


class HeatmapHead(nn.Module):
    """Features [N, in_channels, h, w] -> heatmaps [N, num_joints, h·2^d, w·2^d], d deconvs.

    Each deconv layer is ConvTranspose2d(stride 2, no bias) + BN + ReLU with
    ``deconv_channels`` outputs. With ``num_deconv_layers=0`` ``deconv_layers`` is an identity
    and has no state-dict entries.
    """

    def __init__(
        self,
        in_channels: int,
        num_joints: int,
        num_deconv_layers: int = 0,
        deconv_channels: int = 256,
        deconv_kernel_size: int = 4,
        final_kernel_size: int = 1,
    ) -> None:
        super().__init__()
        if num_deconv_layers < 0:
            raise ValueError(f"num_deconv_layers must be >= 0, got {num_deconv_layers}")
        if num_deconv_layers > 0 and deconv_kernel_size not in _DECONV_PADDING:
            raise ValueError(
                f"deconv kernel size must be one of {sorted(_DECONV_PADDING)}, "
                f"got {deconv_kernel_size}"
            )
        self.deconv_layers: nn.Module = nn.Identity()
        channels = in_channels
        if num_deconv_layers > 0:
            padding, output_padding = _DECONV_PADDING[deconv_kernel_size]
            layers: list[nn.Module] = []
            for _ in range(num_deconv_layers):
                layers += [
                    nn.ConvTranspose2d(
                        channels,
                        deconv_channels,
                        deconv_kernel_size,
                        stride=2,
                        padding=padding,
                        output_padding=output_padding,
                        bias=False,
                    ),
                    batch_norm(deconv_channels),
                    nn.ReLU(inplace=True),
                ]
                channels = deconv_channels
            self.deconv_layers = nn.Sequential(*layers)
        self.final_layer = heatmap_conv(channels, num_joints, final_kernel_size)
        init_pose_weights(self)

    def forward(self, features: Tensor) -> Tensor:
        return self.final_layer(self.deconv_layers(features))


def concat_upsampled(features: list[Tensor]) -> Tensor:
    """HRNetV2's representation: [N, C_b, H/2^b, W/2^b] branches -> [N, sum C_b, H, W].

    Every branch is upsampled bilinearly (``align_corners=False``, as the official facial
    landmark and segmentation code) to the size of the first, channels unchanged, and the
    branches are concatenated finest first.
    """
    size = features[0].shape[-2:]
    upsampled = [features[0]] + [
        F.interpolate(feature, size=size, mode="bilinear", align_corners=False)
        for feature in features[1:]
    ]
    return torch.cat(upsampled, dim=1)


class HRNetV2Head(nn.Sequential):
    """HRNetV2's head: branches -> :func:`concat_upsampled` -> conv1x1 (with bias) + BN + ReLU
    -> heatmap conv, i.e. features [[N, C_b, h/2^b, w/2^b]] -> heatmaps [N, K, h, w].

    The layers are the official ``last_layer`` of HRNet-Semantic-Segmentation (indices 0, 1, 2,
    3: conv, BN, ReLU, conv; the facial-landmark repository names the same layers ``head``), so
    under ``last_layer`` the state-dict keys are theirs. ``in_channels`` = sum of the branch
    widths (15 C for HRNet's C, 2C, 4C, 8C).
    """

    def __init__(self, in_channels: int, num_joints: int, final_kernel_size: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, in_channels, kernel_size=1, bias=True),
            batch_norm(in_channels),
            nn.ReLU(inplace=True),
            heatmap_conv(in_channels, num_joints, final_kernel_size),
        )
        init_pose_weights(self)

    def forward(self, features: list[Tensor]) -> Tensor:  # type: ignore[override]
        return super().forward(concat_upsampled(features))
