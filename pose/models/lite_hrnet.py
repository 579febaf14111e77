"""Lite-HRNet and Naive Lite-HRNet for top-down pose estimation (Yu et al., CVPR 2021).

Images [N, 3, H, W] -> heatmaps [N, K, H/4, W/4]. A ShuffleNet-style stem brings the image to
1/4 resolution; three stages then keep 2, 3 and 4 parallel branches (1/4 .. 1/32) whose modules
end in an HRNet-style fusion built from depthwise-separable convolutions. An iterative head sums
the branches from the coarsest to the finest, and a 1x1 conv (mmpose 0.x ``TopDownSimpleHead``
without deconvolutions) makes the heatmaps.

Blocks inside a module:

* ``"lite"`` (Lite-HRNet): conditional channel weighting. Each branch is split in two halves;
  one half is gated by cross-resolution weights (computed from all branches pooled to the
  coarsest size), filtered by a 3x3 depthwise conv and gated by a squeeze-excitation
  (the official ``SpatialWeighting``, quirk L3), then the halves are re-joined and shuffled.
* ``"naive"`` (Naive Lite-HRNet): stride-1 ShuffleNetV2 units on every branch.

Module and parameter names (and their registration order) equal the official state dict
(``backbone.*`` and ``keypoint_head.*``), so official checkpoints load with ``strict=True``.
By default the fusion reproduces the official fuse loop's double count of branch 0 (quirk L2,
``../shared/reference/README.md``), because the published weights were trained with it;
``official_fuse=False`` gives the textbook HRNet fusion instead.

Variants are rows of :data:`LITE_HRNET_VARIANTS`; ``pose.models.create_model`` builds them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pose.models.base import PoseModel, check_input_size, check_positive_ints
from pose.models.heads import HeatmapHead, batch_norm, init_pose_weights

# The coarsest of the four branches is at 1/32; pooling to it and nearest-upsampling back only
# realign the branches when every stride-2 step halves the size exactly.
INPUT_SIZE_MULTIPLE = 32
NUM_STAGES = 3
BLOCK_TYPES = ("lite", "naive")
# Squeeze-excitation reduction of the official SpatialWeighting.
SPATIAL_WEIGHTING_RATIO = 4


@dataclass(frozen=True)
class LiteHRNetSpec:
    """Architecture of one Lite-HRNet variant (one row of the variant table).

    block: ``"lite"`` (conditional channel weighting) or ``"naive"`` (ShuffleNetV2 units).
    stage_modules: number of modules in stages 0, 1, 2 (2, 3 and 4 branches).
    widths: channels of the 1/4, 1/8, 1/16, 1/32 branches; stage s uses the first s + 2. The
        heatmap head reads widths[0] channels.
    stem_width: channels of the stem (its output feeds the first transition).
    blocks_per_module: blocks in every module (per branch for ``"naive"``).
    reduce_ratio: hidden width divisor of the cross-resolution weighting (``"lite"`` only).
    official_fuse: reproduce the official fuse loop (quirk L2; needed by official weights);
        False gives the textbook sum y_i = relu(sum_j F_ij(x_j)).
    """

    block: str
    stage_modules: tuple[int, int, int]
    widths: tuple[int, int, int, int]
    stem_width: int = 32
    blocks_per_module: int = 2
    reduce_ratio: int = 8
    official_fuse: bool = True


LITE_HRNET_VARIANTS: dict[str, LiteHRNetSpec] = {
    # litehrnet_18_coco_256x192.py: 1.13M params, 205M torchstat "FLOPs" at 256x192.
    "lite_hrnet_18": LiteHRNetSpec("lite", (2, 4, 2), (40, 80, 160, 320)),
    # litehrnet_30_coco_256x192.py: the same widths, deeper stages; 1.76M params.
    "lite_hrnet_30": LiteHRNetSpec("lite", (3, 8, 3), (40, 80, 160, 320)),
    # naive_litehrnet_18_coco_256x192.py: 0.76M params. Its config's head reads 40 channels
    # but the backbone gives 30 and fails at forward (quirk L1); our head reads widths[0].
    "naive_lite_hrnet_18": LiteHRNetSpec("naive", (2, 4, 2), (30, 60, 120, 240)),
    # wider_naive_litehrnet_18_coco_256x192.py: 1.32M params.
    "wider_naive_lite_hrnet_18": LiteHRNetSpec("naive", (2, 4, 2), (40, 80, 160, 320)),
}


_ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, None: nn.Identity}


class ConvNormAct(nn.Module):
    """mmcv ``ConvModule`` layout: ``conv`` (bias only without BN), ``bn``, then an activation.

    [N, in_channels, H, W] -> [N, out_channels, H/stride, W/stride]; ``padding = kernel // 2``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        groups: int = 1,
        norm: bool = True,
        act: str | None = "relu",
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            groups=groups,
            bias=not norm,
        )
        # Identity and the activations hold no state, so the keys stay conv.* and bn.*.
        self.bn: nn.Module = batch_norm(out_channels) if norm else nn.Identity()
        self.act = _ACTIVATIONS[act]()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


def _depthwise(channels: int, stride: int = 1) -> ConvNormAct:
    """3x3 depthwise conv + BN, no activation (as everywhere in the official network)."""
    return ConvNormAct(channels, channels, 3, stride=stride, groups=channels, act=None)


def concat_shuffle(first: Tensor, second: Tensor) -> Tensor:
    """``channel_shuffle(cat([first, second], dim=1), groups=2)`` in one copy.

    first, second: [N, C, H, W] -> [N, 2C, H, W] with out[:, 2c] = first[:, c] and
    out[:, 2c + 1] = second[:, c]. Stacking on a new axis next to the channels and flattening
    is the view/transpose/reshape of the official shuffle without the intermediate ``cat``.
    When ``second`` (always a freshly computed tensor here; ``first`` may be a channel slice)
    is channels_last, the stack runs in memory order so the output stays channels_last; the
    official reshape would silently return NCHW and make every next conv convert it back.
    """
    if not second.is_contiguous() and second.is_contiguous(memory_format=torch.channels_last):
        nhwc = torch.stack((first.permute(0, 2, 3, 1), second.permute(0, 2, 3, 1)), dim=4)
        return nhwc.flatten(3).permute(0, 3, 1, 2)
    return torch.stack((first, second), dim=2).flatten(1, 2)


class Stem(nn.Module):
    """[N, 3, H, W] -> [N, width, H/4, W/4]: conv3x3 s2, then a stride-2 ShuffleNetV2 unit.

    The official stem with ``expand_ratio=1`` and ``out_channels == stem_channels``.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        half = width // 2
        self.conv1 = ConvNormAct(3, width, 3, stride=2)
        self.branch1 = nn.Sequential(_depthwise(half, stride=2), ConvNormAct(half, half))
        self.expand_conv = ConvNormAct(half, width)
        self.depthwise_conv = _depthwise(width, stride=2)
        self.linear_conv = ConvNormAct(width, half)

    def forward(self, images: Tensor) -> Tensor:
        x = self.conv1(images)
        first, second = x.chunk(2, dim=1)
        second = self.linear_conv(self.depthwise_conv(self.expand_conv(second)))
        return concat_shuffle(self.branch1(first), second)


class SpatialWeighting(nn.Module):
    """Squeeze-excitation gate (the official name, quirk L3): [N, C, H, W] -> same shape.

    Global average -> 1x1 conv C -> C/4 (+bias, ReLU) -> 1x1 conv (+bias, sigmoid) -> x * gate.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = channels // SPATIAL_WEIGHTING_RATIO
        self.conv1 = ConvNormAct(channels, hidden, norm=False)
        self.conv2 = ConvNormAct(hidden, channels, norm=False, act="sigmoid")

    def forward(self, x: Tensor) -> Tensor:
        return x * self.conv2(self.conv1(x.mean((2, 3), keepdim=True)))


class CrossResolutionWeighting(nn.Module):
    """Channel gates computed from all branches together.

    Input and output: a list of [N, channels[b], H/2^b, W/2^b] tensors. Every branch is average
    pooled to the coarsest branch's size, the concatenation goes through 1x1 conv + BN + ReLU
    and 1x1 conv + BN + sigmoid, and each branch is multiplied by its (nearest-upsampled) gates.
    """

    def __init__(self, channels: Sequence[int], reduce_ratio: int) -> None:
        super().__init__()
        self.channels = tuple(channels)
        total = sum(channels)
        hidden = total // reduce_ratio
        self.conv1 = ConvNormAct(total, hidden)
        self.conv2 = ConvNormAct(hidden, total, act="sigmoid")
        # Branch b is 2^(last - b) times the coarsest size. Input sizes are multiples of 32,
        # so the official adaptive pooling to the coarsest size and the nearest interpolation
        # back are fixed-factor ops, known here rather than read from shapes in every forward.
        last = len(channels) - 1
        self.factors = tuple(2 ** (last - branch) for branch in range(len(channels)))

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        pooled = [
            F.avg_pool2d(x, factor) if factor > 1 else x
            for x, factor in zip(features, self.factors, strict=True)
        ]
        gates = self.conv2(self.conv1(torch.cat(pooled, dim=1))).split(self.channels, dim=1)
        return [
            _gate_blocks(x, gate, factor)
            for x, gate, factor in zip(features, gates, self.factors, strict=True)
        ]


def _blocks(fine: Tensor, coarse: Tensor, factor: int) -> tuple[Tensor, Tensor]:
    """Views that make nearest upsampling by ``factor`` a broadcast.

    fine [N, C, h*factor, w*factor] -> [N, C, h, factor, w, factor] blocks; coarse [N, C, h, w]
    -> [N, C, h, 1, w, 1]. ``op(fine_blocks, coarse_blocks).view(fine.shape)`` then equals
    ``op(fine, nearest_upsample(coarse))`` exactly, without building the upsampled tensor (on
    the CPU, upsampling was the slowest op of the model). Splitting H and W is a view in NCHW
    and in channels_last alike.
    """
    batch, channels, height, width = coarse.shape
    blocks = fine.view(batch, channels, height, factor, width, factor)
    return blocks, coarse.view(batch, channels, height, 1, width, 1)


def _gate_blocks(x: Tensor, gate: Tensor, factor: int) -> Tensor:
    """x * nearest_upsample(gate, factor): x [N, C, h*factor, w*factor], gate [N, C, h, w]."""
    if factor == 1:
        return x * gate
    blocks, gate_blocks = _blocks(x, gate, factor)
    return (blocks * gate_blocks).view(x.shape)


def _add_upsampled(total: Tensor, coarse: Tensor, factor: int) -> Tensor:
    """total + nearest_upsample(coarse, factor), shapes as in :func:`_gate_blocks`."""
    blocks, coarse_blocks = _blocks(total, coarse, factor)
    return (blocks + coarse_blocks).view(total.shape)


class ConditionalChannelWeighting(nn.Module):
    """The Lite-HRNet block (stride 1): a list of [N, widths[b], h_b, w_b] -> same shapes.

    Per branch, the first channel half passes through; the second half is gated across
    resolutions, filtered by a 3x3 depthwise conv + BN and gated by squeeze-excitation; the
    halves are then concatenated and channel-shuffled (2 groups).
    """

    def __init__(self, widths: Sequence[int], reduce_ratio: int) -> None:
        super().__init__()
        halves = [width // 2 for width in widths]
        self.cross_resolution_weighting = CrossResolutionWeighting(halves, reduce_ratio)
        self.depthwise_convs = nn.ModuleList(_depthwise(half) for half in halves)
        self.spatial_weighting = nn.ModuleList(SpatialWeighting(half) for half in halves)

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        splits = [x.chunk(2, dim=1) for x in features]
        weighted = self.cross_resolution_weighting([second for _, second in splits])
        return [
            concat_shuffle(first, gate(depthwise(x)))
            for (first, _), x, depthwise, gate in zip(
                splits, weighted, self.depthwise_convs, self.spatial_weighting, strict=True
            )
        ]


class ShuffleUnit(nn.Module):
    """Stride-1 ShuffleNetV2 unit (the naive block): [N, C, H, W] -> same shape.

    The second channel half goes through 1x1 conv + BN + ReLU, 3x3 depthwise + BN and
    1x1 conv + BN + ReLU; the halves are concatenated and channel-shuffled (2 groups).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        half = channels // 2
        self.branch2 = nn.Sequential(
            ConvNormAct(half, half), _depthwise(half), ConvNormAct(half, half)
        )

    def forward(self, x: Tensor) -> Tensor:
        first, second = x.chunk(2, dim=1)
        return concat_shuffle(first, self.branch2(second))


class ParallelBranches(nn.ModuleList):
    """One module per branch, applied elementwise to a list of branch tensors.

    A ModuleList, so the state-dict keys are ``<index>.<...>`` as in the official naive layers.
    """

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        return [branch(x) for branch, x in zip(self, features, strict=True)]


def _downsample_step(in_channels: int, out_channels: int, relu: bool) -> nn.Sequential:
    # dw3x3 s2 + BN + conv1x1 + BN (+ ReLU); plain Sequential indices as in the official code.
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, in_channels, 3, 2, 1, groups=in_channels, bias=False),
        batch_norm(in_channels),
        nn.Conv2d(in_channels, out_channels, 1, bias=False),
        batch_norm(out_channels),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _fuse_path(widths: Sequence[int], source: int, target: int) -> nn.Module:
    """Maps branch ``source`` to the resolution and width of branch ``target`` (index = level)."""
    if source == target:
        # The official code stores None here; Identity has no state-dict entries either.
        return nn.Identity()
    if source > target:
        # The Upsample keeps the official layout (and makes the path usable on its own);
        # LiteHRModule applies it as a broadcast in the sum instead (see _add_upsampled).
        return nn.Sequential(
            nn.Conv2d(widths[source], widths[target], 1, bias=False),
            batch_norm(widths[target]),
            nn.Upsample(scale_factor=2 ** (source - target), mode="nearest"),
        )
    # (target - source) depthwise-separable stride-2 steps; the intermediate ones keep the
    # source width and end in a ReLU, the last maps to the target width without one.
    num_steps = target - source
    return nn.Sequential(
        *(
            _downsample_step(
                widths[source],
                widths[target] if step == num_steps - 1 else widths[source],
                relu=step < num_steps - 1,
            )
            for step in range(num_steps)
        )
    )


class LiteHRModule(nn.Module):
    """``blocks`` Lite-HRNet or naive blocks on parallel branches, then a multi-scale fusion.

    Input and output: a list of [N, widths[b], H/2^b, W/2^b] tensors, b = 0 .. len(widths)-1.
    The fusion is the official loop (quirk L2) with ``official_fuse=True``:
    a_0 = 2 x_0 + sum_{j>=1} F_0j(x_j) and, for i >= 1, a_i = 2 F_i0(a_0) + x_i +
    sum_{j>=1, j!=i} F_ij(x_j); with ``official_fuse=False`` it is a_i = sum_j F_ij(x_j), F_ii
    the identity. Every output is relu(a_i).
    """

    def __init__(
        self,
        widths: Sequence[int],
        blocks: int,
        block: str,
        reduce_ratio: int,
        official_fuse: bool = True,
    ) -> None:
        super().__init__()
        if block == "lite":
            self.layers: nn.Module = nn.Sequential(
                *(ConditionalChannelWeighting(widths, reduce_ratio) for _ in range(blocks))
            )
        else:
            self.layers = ParallelBranches(
                nn.Sequential(*(ShuffleUnit(width) for _ in range(blocks))) for width in widths
            )
        num_branches = len(widths)
        self.fuse_layers = nn.ModuleList(
            nn.ModuleList(_fuse_path(widths, source, target) for source in range(num_branches))
            for target in range(num_branches)
        )
        self.official_fuse = official_fuse

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        features = self.layers(features)
        if self.official_fuse:
            return self._fuse_official(features)
        return self._fuse_textbook(features)

    def _add_path(self, total: Tensor, target: int, source: int, x: Tensor) -> Tensor:
        """total + F_target,source(x), branch ``source``'s features mapped to ``target``."""
        path = self.fuse_layers[target][source]
        if source > target:
            # conv1x1 + BN, then the path's nearest Upsample (index 2) applied as a broadcast.
            return _add_upsampled(total, path[1](path[0](x)), 2 ** (source - target))
        return total + path(x)

    def _fuse_textbook(self, features: list[Tensor]) -> list[Tensor]:
        fused = []
        for target in range(len(self.fuse_layers)):
            total = features[target]
            for source in range(len(features)):
                if source != target:
                    total = self._add_path(total, target, source, features[source])
            fused.append(F.relu(total))
        return fused

    def _fuse_official(self, features: list[Tensor]) -> list[Tensor]:
        # The official loop starts its accumulator for row 0 as an alias of x_0 and adds in
        # place, j = 0 included: x_0 is doubled and overwritten by the row-0 sum a_0 before the
        # other rows read "x_0". Rows i >= 1 start from F_i0(a_0) and add F_i0(a_0) again.
        paths = self.fuse_layers
        top = features[0] + features[0]
        for source in range(1, len(features)):
            top = self._add_path(top, 0, source, features[source])
        fused = [F.relu(top)]
        for target in range(1, len(paths)):
            from_top = paths[target][0](top)
            # In training the second call also repeats the official BN running-statistics
            # update; in eval it is the same tensor, so it is computed once.
            total = from_top + (paths[target][0](top) if self.training else from_top)
            for source in range(1, len(features)):
                if source == target:
                    total = total + features[source]
                else:
                    total = self._add_path(total, target, source, features[source])
            fused.append(F.relu(total))
        return fused


class Transition(nn.ModuleList):
    """Turns a stage's branches into the next stage's inputs (official ``transition{s}``).

    An existing branch keeps its tensor (Identity, official None) or, when its width changes,
    gets dw3x3 + BN + conv1x1 + BN + ReLU. A new branch is made from the last existing branch by
    stride-2 dw3x3 + BN + conv1x1 + BN + ReLU steps.
    """

    def __init__(self, in_widths: Sequence[int], out_widths: Sequence[int]) -> None:
        layers: list[nn.Module] = []
        for branch, out_width in enumerate(out_widths):
            if branch < len(in_widths):
                in_width = in_widths[branch]
                if in_width == out_width:
                    layers.append(nn.Identity())
                else:
                    layers.append(
                        nn.Sequential(
                            nn.Conv2d(in_width, in_width, 3, 1, 1, groups=in_width, bias=False),
                            batch_norm(in_width),
                            nn.Conv2d(in_width, out_width, 1, bias=False),
                            batch_norm(out_width),
                            nn.ReLU(inplace=True),
                        )
                    )
                continue
            source_width = in_widths[-1]
            num_steps = branch + 1 - len(in_widths)
            layers.append(
                nn.Sequential(
                    *(
                        _downsample_step(
                            source_width,
                            out_width if step == num_steps - 1 else source_width,
                            relu=True,
                        )
                        for step in range(num_steps)
                    )
                )
            )
        super().__init__(layers)
        # New branches read the last (lowest-resolution) input branch.
        self.sources = tuple(min(branch, len(in_widths) - 1) for branch in range(len(layers)))

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        return [layer(features[source]) for layer, source in zip(self, self.sources, strict=True)]


class DepthwiseSeparableConv(nn.Module):
    """mmcv ``DepthwiseSeparableConvModule``: dw3x3 + BN, then 1x1 conv + BN + ReLU.

    [N, in_channels, H, W] -> [N, out_channels, H, W].
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.depthwise_conv = _depthwise(in_channels)
        self.pointwise_conv = ConvNormAct(in_channels, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise_conv(self.depthwise_conv(x))


class IterativeHead(nn.Module):
    """Sums the branches from coarse to fine: a list of [N, widths[b], H/2^b, W/2^b] tensors
    -> [N, widths[0], H, W].

    s = project_0(x_last); then for each finer branch b, s = project(x_b + up(s)), with
    ``up`` the official 2x bilinear upsampling with ``align_corners=True``. Each projection
    maps to the next finer width (the last keeps widths[0]).
    """

    def __init__(self, widths: Sequence[int]) -> None:
        super().__init__()
        coarse_to_fine = list(reversed(widths))
        out_widths = [*coarse_to_fine[1:], coarse_to_fine[-1]]
        self.projects = nn.ModuleList(
            DepthwiseSeparableConv(in_width, out_width)
            for in_width, out_width in zip(coarse_to_fine, out_widths, strict=True)
        )

    def forward(self, features: list[Tensor]) -> Tensor:
        last = len(features) - 1
        fused = self.projects[0](features[last])
        for level in range(1, len(self.projects)):
            # With align_corners=True the sampling grid depends only on the sizes, and a 2x
            # scale factor gives the same sizes as the official interpolation to x_b's size.
            upsampled = F.interpolate(fused, scale_factor=2, mode="bilinear", align_corners=True)
            fused = self.projects[level](features[last - level] + upsampled)
        return fused


class LiteHRNetBackbone(nn.Module):
    """Images [N, 3, H, W] -> features [[N, widths[0], H/4, W/4]] (official ``LiteHRNet``).

    H and W must be multiples of 32. Like the official backbone it returns a one-element list:
    the iterative head's finest output, which the heatmap head reads.
    """

    def __init__(
        self,
        block: str,
        stage_modules: Sequence[int],
        widths: Sequence[int],
        stem_width: int,
        blocks_per_module: int,
        reduce_ratio: int,
        official_fuse: bool,
    ) -> None:
        super().__init__()
        self.stem = Stem(stem_width)
        previous: Sequence[int] = (stem_width,)
        for stage, num_modules in enumerate(stage_modules):
            stage_widths = tuple(widths[: stage + 2])
            # Registration order (transition0, stage0, transition1, ...) is the checkpoint's.
            self.add_module(f"transition{stage}", Transition(previous, stage_widths))
            self.add_module(
                f"stage{stage}",
                nn.Sequential(
                    *(
                        LiteHRModule(
                            stage_widths, blocks_per_module, block, reduce_ratio, official_fuse
                        )
                        for _ in range(num_modules)
                    )
                ),
            )
            previous = stage_widths
        self.head_layer = IterativeHead(widths)

    def forward(self, images: Tensor) -> list[Tensor]:
        check_input_size(images, "Lite-HRNet", INPUT_SIZE_MULTIPLE)
        features = [self.stem(images)]
        features = self.stage0(self.transition0(features))
        features = self.stage1(self.transition1(features))
        features = self.stage2(self.transition2(features))
        return [self.head_layer(features)]


class LiteHRNet(PoseModel):
    """Lite-HRNet pose network: normalised images [N, 3, H, W] -> heatmaps [N, K, H/4, W/4].

    H and W must be multiples of 32. Arguments are the columns of :class:`LiteHRNetSpec` plus
    ``num_joints`` (K). ``backbone`` and ``keypoint_head`` are named as in mmpose 0.x
    checkpoints; ``head`` is ``keypoint_head``. Weights are initialised like the official
    ``init_weights``.
    """

    def __init__(
        self,
        num_joints: int,
        block: str,
        stage_modules: Sequence[int],
        widths: Sequence[int],
        stem_width: int = 32,
        blocks_per_module: int = 2,
        reduce_ratio: int = 8,
        official_fuse: bool = True,
    ) -> None:
        if block not in BLOCK_TYPES:
            raise ValueError(f"block must be one of {BLOCK_TYPES}, got {block!r}")
        check_positive_ints(
            "num_joints, stem_width, blocks_per_module, reduce_ratio",
            (num_joints, stem_width, blocks_per_module, reduce_ratio),
            4,
        )
        check_positive_ints("stage_modules", stage_modules, NUM_STAGES)
        check_positive_ints("widths", widths, NUM_STAGES + 1)
        if stem_width % 2 or any(width % 2 for width in widths):
            raise ValueError(
                f"stem_width and widths must be even (blocks split channels in halves), "
                f"got {stem_width} and {tuple(widths)}"
            )
        super().__init__(num_joints)
        self.backbone = LiteHRNetBackbone(
            block,
            stage_modules,
            widths,
            stem_width,
            blocks_per_module,
            reduce_ratio,
            official_fuse,
        )
        self.keypoint_head = HeatmapHead(widths[0], num_joints)
        init_pose_weights(self)

    @property
    def head(self) -> HeatmapHead:
        """``keypoint_head``: features [N, widths[0], h, w] -> heatmaps [N, K, h, w]."""
        return self.keypoint_head

    def forward_features(self, images: Tensor) -> list[Tensor]:
        """Images [N, 3, H, W] -> [[N, widths[0], H/4, W/4]] (what the head reads)."""
        return self.backbone(images)
