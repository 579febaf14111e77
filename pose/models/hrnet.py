"""HRNetV1 (Sun et al., CVPR 2019) and HRNetV2 (Wang et al., TPAMI 2020) for top-down pose.

Images [N, 3, H, W] -> heatmaps [N, K, H/4, W/4]. The network keeps a 1/4-resolution branch
throughout, adds a 1/8, 1/16 and 1/32 branch in stages 2, 3 and 4, and fuses all branches at the
end of every module. Module and parameter names (and their registration order) equal the
official ``pose_hrnet.py`` state dict, so official checkpoints load with ``strict=True``: the
backbone's modules sit at the top level beside the head ``final_layer``, and ``model.backbone``
is a view of them (:class:`HRNetBackbone`).

:class:`HRNetV2` is the same backbone whose last module of stage 4 outputs every branch (fused),
with the V2 representation head (:class:`pose.models.heads.HRNetV2Head`) under ``last_layer``:
the layout of HRNet-Semantic-Segmentation's ``seg_hrnet.py``, so the backbones of its and of
HRNet-Facial-Landmark-Detection's checkpoints load (their heads too, under these names). Our
fuse layers upsample with nearest neighbours, as HRNetV1 and the ImageNet HRNets these
repositories start from; their own fuse layers upsample bilinearly, so weights fine-tuned there
load but compute slightly different features.

Variants are rows of :data:`HRNET_VARIANTS` (V1) and :data:`HRNETV2_VARIANTS`;
``pose.models.create_model`` builds them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from pose.models.base import PoseModel, check_input_size, check_positive_ints
from pose.models.heads import HRNetV2Head, batch_norm, heatmap_conv, init_pose_weights

BOTTLENECK_EXPANSION = 4
# The coarsest branch is at 1/32; nearest upsampling only realigns the branches when every
# stride-2 step halves the size exactly.
INPUT_SIZE_MULTIPLE = 32


@dataclass(frozen=True)
class HRNetSpec:
    """Architecture of one HRNet variant (one row of the variant table).

    stem_width: channels of the two stride-2 stem convs.
    stage1_blocks, stage1_planes: stage 1 (``layer1``) is this many Bottlenecks of this many
        planes; it outputs ``4 * stage1_planes`` channels.
    stage_modules: number of HighResolutionModules in stages 2, 3, 4.
    stage_blocks: BasicBlocks per branch in each module of stages 2, 3, 4.
    widths: channels of the 1/4, 1/8, 1/16, 1/32 branches; stage s uses the first s.
    """

    stem_width: int
    stage1_blocks: int
    stage1_planes: int
    stage_modules: tuple[int, int, int]
    stage_blocks: tuple[int, int, int]
    widths: tuple[int, int, int, int]


HRNET_VARIANTS: dict[str, HRNetSpec] = {
    # Official W32 (pose_hrnet w32 yaml): 28.5M params, 7.6 GMACs at 256x192.
    "hrnet_w32": HRNetSpec(64, 4, 64, (1, 4, 3), (4, 4, 4), (32, 64, 128, 256)),
    # Official W48: same depth as W32, 1.5x wider; 63.6M params.
    "hrnet_w48": HRNetSpec(64, 4, 64, (1, 4, 3), (4, 4, 4), (48, 96, 192, 384)),
    # CPU demo size in the spirit of timm's hrnet_w18_small: one module per stage, 2 blocks; a
    # 32-channel stem, because on a CPU the 64-channel stem conv at 1/4 size costs a quarter of
    # the training step.
    "hrnet_w16_small": HRNetSpec(32, 1, 32, (1, 1, 1), (2, 2, 2), (16, 32, 64, 128)),
    # The former CPU demo's model: w16_small with one BasicBlock per branch. It trains 1.5x
    # faster on two cores, and in the demo's minutes more epochs beat more depth (5-minute runs
    # on the embedded set: AP 0.46 after 12 epochs against w16_small's 0.39 after 8).
    "hrnet_w16_tiny": HRNetSpec(32, 1, 32, (1, 1, 1), (1, 1, 1), (16, 32, 64, 128)),
    # The CPU demo's model: w16_tiny with a 16-channel stem and a 64-channel stage 1. Stage 1's
    # 128 channels at 1/4 size cost a quarter of w16_tiny's MACs, mostly in the transition to
    # the branches; without them a training step takes 0.67x the time (one AVX2 core), and in
    # the same minutes 14 epochs of nano beat 10 of tiny (AP 0.558 against 0.542, embedded set).
    "hrnet_w16_nano": HRNetSpec(16, 1, 16, (1, 1, 1), (1, 1, 1), (16, 32, 64, 128)),
    # Smallest variant (fast tests): half of w16_small's widths, 1 block per branch in stage 2.
    "hrnet_w8_tiny": HRNetSpec(32, 1, 16, (1, 1, 1), (1, 2, 2), (8, 16, 32, 64)),
}

# HRNetV2 (HRNet-Semantic-Segmentation / HRNet-Facial-Landmark-Detection configs): the V1
# architecture at widths 18, 32, 48 with the V2 head (the head's input is 15 x the width).
HRNETV2_VARIANTS: dict[str, HRNetSpec] = {
    "hrnetv2_w18": HRNetSpec(64, 4, 64, (1, 4, 3), (4, 4, 4), (18, 36, 72, 144)),
    "hrnetv2_w32": HRNetSpec(64, 4, 64, (1, 4, 3), (4, 4, 4), (32, 64, 128, 256)),
    "hrnetv2_w48": HRNetSpec(64, 4, 64, (1, 4, 3), (4, 4, 4), (48, 96, 192, 384)),
}


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def _conv1x1(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, bias=False)


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus identity, then ReLU; keeps channels and size."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = _conv3x3(channels, channels)
        self.bn1 = batch_norm(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(channels, channels)
        self.bn2 = batch_norm(channels)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + x)


class Bottleneck(nn.Module):
    """1x1-3x3-1x1 residual block, in_channels -> 4 * planes, stride 1.

    The shortcut is a 1x1 conv + BN (``downsample``) when the channel count changes.
    """

    def __init__(self, in_channels: int, planes: int) -> None:
        super().__init__()
        out_channels = planes * BOTTLENECK_EXPANSION
        self.conv1 = _conv1x1(in_channels, planes)
        self.bn1 = batch_norm(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = batch_norm(planes)
        self.conv3 = _conv1x1(planes, out_channels)
        self.bn3 = batch_norm(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module = nn.Identity()
        if in_channels != out_channels:
            self.downsample = nn.Sequential(
                _conv1x1(in_channels, out_channels), batch_norm(out_channels)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.downsample(x))


def _fuse_path(widths: Sequence[int], source: int, target: int) -> nn.Module:
    """Maps branch ``source`` to the resolution and width of branch ``target`` (index = level)."""
    if source == target:
        # The official code stores None here; Identity has no state-dict entries either.
        return nn.Identity()
    if source > target:
        return nn.Sequential(
            _conv1x1(widths[source], widths[target]),
            batch_norm(widths[target]),
            nn.Upsample(scale_factor=2 ** (source - target), mode="nearest"),
        )
    # Downsampling: (target - source) stride-2 convs; the intermediate ones keep the source
    # width and have a ReLU, the last maps to the target width without one.
    steps: list[nn.Module] = []
    num_steps = target - source
    for step in range(num_steps):
        if step == num_steps - 1:
            steps.append(
                nn.Sequential(
                    _conv3x3(widths[source], widths[target], stride=2),
                    batch_norm(widths[target]),
                )
            )
        else:
            steps.append(
                nn.Sequential(
                    _conv3x3(widths[source], widths[source], stride=2),
                    batch_norm(widths[source]),
                    nn.ReLU(inplace=True),
                )
            )
    return nn.Sequential(*steps)


class HighResolutionModule(nn.Module):
    """Parallel branches of BasicBlocks, then every output sums all branches.

    Input and output: a list of [N, widths[b], H/2^b, W/2^b] tensors, b = 0 .. len(widths)-1.
    With ``multi_scale_output=False`` only the highest-resolution output (b = 0) is produced.
    """

    def __init__(
        self, widths: Sequence[int], num_blocks: int, multi_scale_output: bool = True
    ) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(*(BasicBlock(width) for _ in range(num_blocks))) for width in widths
        )
        num_outputs = len(widths) if multi_scale_output else 1
        self.fuse_layers = nn.ModuleList(
            nn.ModuleList(_fuse_path(widths, source, target) for source in range(len(widths)))
            for target in range(num_outputs)
        )
        self.relu = nn.ReLU()

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        branch_outputs = [branch(x) for branch, x in zip(self.branches, features, strict=True)]
        fused = []
        for paths in self.fuse_layers:
            total = paths[0](branch_outputs[0])
            for source in range(1, len(branch_outputs)):
                # Out of place: the identity term is a branch output that other rows still read.
                total = total + paths[source](branch_outputs[source])
            fused.append(self.relu(total))
        return fused


def _make_transition(in_widths: Sequence[int], out_widths: Sequence[int]) -> nn.ModuleList:
    """Layers that turn the previous stage's branches into the next stage's inputs.

    An existing branch keeps its tensor (Identity, official None) or, when its width changes,
    gets conv3x3 + BN + ReLU. A new branch is made from the last existing branch by stride-2
    conv3x3 + BN + ReLU steps (one per new level; intermediate steps keep the width).
    """
    layers: list[nn.Module] = []
    for branch, out_width in enumerate(out_widths):
        if branch < len(in_widths):
            if in_widths[branch] == out_width:
                layers.append(nn.Identity())
            else:
                layers.append(
                    nn.Sequential(
                        _conv3x3(in_widths[branch], out_width),
                        batch_norm(out_width),
                        nn.ReLU(inplace=True),
                    )
                )
            continue
        source_width = in_widths[-1]
        num_steps = branch + 1 - len(in_widths)
        steps = []
        for step in range(num_steps):
            step_width = out_width if step == num_steps - 1 else source_width
            steps.append(
                nn.Sequential(
                    _conv3x3(source_width, step_width, stride=2),
                    batch_norm(step_width),
                    nn.ReLU(inplace=True),
                )
            )
        layers.append(nn.Sequential(*steps))
    return nn.ModuleList(layers)


def _apply_transition(transition: nn.ModuleList, features: list[Tensor]) -> list[Tensor]:
    # Existing branches read their own tensor, new branches the last (lowest-resolution) one.
    last = len(features) - 1
    return [layer(features[min(branch, last)]) for branch, layer in enumerate(transition)]


def _make_stage(
    widths: Sequence[int], num_modules: int, num_blocks: int, multi_scale_output: bool
) -> nn.Sequential:
    # Only the stage's last module may drop the lower-resolution outputs.
    return nn.Sequential(
        *(
            HighResolutionModule(
                widths, num_blocks, multi_scale_output or index < num_modules - 1
            )
            for index in range(num_modules)
        )
    )


def _hrnet_features(modules: nn.Module, images: Tensor) -> list[Tensor]:
    """The HRNetV1 backbone's forward pass, run by :class:`HRNet` and :class:`HRNetBackbone`.

    ``modules``: either of them (both hold conv1 .. stage4 under the official names).
    Images [N, 3, H, W] (H, W multiples of 32) -> features finest first: V1's last module of
    stage 4 fuses into the 1/4 branch only, so it gives [[N, widths[0], H/4, W/4]]; V2's gives
    all four branches [N, widths[b], H/4/2^b, W/4/2^b].
    """
    check_input_size(images, "HRNet", INPUT_SIZE_MULTIPLE)
    x = modules.relu(modules.bn1(modules.conv1(images)))
    x = modules.relu(modules.bn2(modules.conv2(x)))
    x = modules.layer1(x)
    features = modules.stage2(_apply_transition(modules.transition1, [x]))
    features = modules.stage3(_apply_transition(modules.transition2, features))
    return modules.stage4(_apply_transition(modules.transition3, features))


class HRNetBackbone(nn.Module):
    """View of an :class:`HRNet`'s backbone: its top-level modules other than the head.

    Images [N, 3, H, W] -> the model's features (:func:`_hrnet_features`). It registers the
    model's own module objects under their names, so its parameters and buffers are the model's
    (not copies) and its state-dict keys are the model's without the head's, as in the official
    ImageNet checkpoints. The model itself never registers it.
    """

    def __init__(self, modules: Iterable[tuple[str, nn.Module]]) -> None:
        super().__init__()
        for name, module in modules:
            self.add_module(name, module)

    def forward(self, images: Tensor) -> list[Tensor]:
        return _hrnet_features(self, images)


class HRNet(PoseModel):
    """HRNetV1 pose network: normalised images [N, 3, H, W] -> heatmaps [N, K, H/4, W/4].

    H and W must be multiples of 32. Arguments are the columns of :class:`HRNetSpec` plus
    ``num_joints`` (K). Weights are initialised like the official ``init_weights``.
    ``head`` is ``final_layer`` (a 1x1 conv on the 1/4 branch); ``backbone`` a view of the rest.
    """

    # V1's last module of stage 4 fuses into the 1/4 branch only (the official pose network).
    last_stage_outputs_all_branches = False

    def __init__(
        self,
        num_joints: int,
        stem_width: int,
        stage1_blocks: int,
        stage1_planes: int,
        stage_modules: Sequence[int],
        stage_blocks: Sequence[int],
        widths: Sequence[int],
    ) -> None:
        check_positive_ints(
            "num_joints, stem_width, stage1_blocks, stage1_planes",
            (num_joints, stem_width, stage1_blocks, stage1_planes),
            4,
        )
        check_positive_ints("stage_modules", stage_modules, 3)
        check_positive_ints("stage_blocks", stage_blocks, 3)
        check_positive_ints("widths", widths, 4)
        super().__init__(num_joints)
        widths = tuple(widths)

        # Stem: two stride-2 conv3x3 + BN + ReLU, to 1/4 resolution.
        self.conv1 = _conv3x3(3, stem_width, stride=2)
        self.bn1 = batch_norm(stem_width)
        self.conv2 = _conv3x3(stem_width, stem_width, stride=2)
        self.bn2 = batch_norm(stem_width)
        self.relu = nn.ReLU(inplace=True)

        stage1_width = stage1_planes * BOTTLENECK_EXPANSION
        self.layer1 = nn.Sequential(
            Bottleneck(stem_width, stage1_planes),
            *(Bottleneck(stage1_width, stage1_planes) for _ in range(stage1_blocks - 1)),
        )

        self.transition1 = _make_transition([stage1_width], widths[:2])
        self.stage2 = _make_stage(widths[:2], stage_modules[0], stage_blocks[0], True)
        self.transition2 = _make_transition(widths[:2], widths[:3])
        self.stage3 = _make_stage(widths[:3], stage_modules[1], stage_blocks[1], True)
        self.transition3 = _make_transition(widths[:3], widths)
        self.stage4 = _make_stage(widths, stage_modules[2], stage_blocks[2],
                                  self.last_stage_outputs_all_branches)

        self._add_head(widths, num_joints)
        init_pose_weights(self)

    def _add_head(self, widths: tuple[int, ...], num_joints: int) -> None:
        self.final_layer = heatmap_conv(widths[0], num_joints, kernel_size=1)

    @property
    def head(self) -> nn.Conv2d:
        """``final_layer``: features [N, widths[0], h, w] -> heatmaps [N, K, h, w]."""
        return self.final_layer

    @property
    def backbone(self) -> HRNetBackbone:
        """The top-level modules other than ``final_layer``, as an :class:`HRNetBackbone`.

        Built on every access from the modules the model holds now, so it follows a module
        replaced after construction (``SyncBatchNorm.convert_sync_batchnorm`` replaces bn1).
        """
        return HRNetBackbone(
            (name, module) for name, module in self.named_children() if module is not self.head
        )

    def forward_features(self, images: Tensor) -> list[Tensor]:
        """Images [N, 3, H, W] -> [[N, widths[0], H/4, W/4]] (V1 keeps only the finest)."""
        return _hrnet_features(self, images)


class HRNetV2(HRNet):
    """HRNetV2 pose network: normalised images [N, 3, H, W] -> heatmaps [N, K, H/4, W/4].

    The HRNetV1 backbone whose last module of stage 4 outputs all four branches (fused, the
    official V2 layout: ``stage4.<last>.fuse_layers.{0,1,2,3}``), and the V2 representation head
    ``last_layer`` (:class:`pose.models.heads.HRNetV2Head`): the branches upsampled bilinearly
    to 1/4 and concatenated (15 x widths[0] channels for HRNet's widths), conv1x1 + BN + ReLU,
    then the 1x1 heatmap conv. Arguments as :class:`HRNet`; ``head`` is ``last_layer`` and reads
    every branch.
    """

    last_stage_outputs_all_branches = True
    head_reads_all_features = True

    def _add_head(self, widths: tuple[int, ...], num_joints: int) -> None:
        self.last_layer = HRNetV2Head(sum(widths), num_joints)

    @property
    def head(self) -> HRNetV2Head:
        """``last_layer``: features [[N, widths[b], h/2^b, w/2^b]] -> heatmaps [N, K, h, w]."""
        return self.last_layer

    def forward_features(self, images: Tensor) -> list[Tensor]:
        """Images [N, 3, H, W] -> all four branches [N, widths[b], H/4/2^b, W/4/2^b]."""
        return _hrnet_features(self, images)
