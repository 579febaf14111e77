"""Inference speed of every pose model: images/s at batch 32 and latency at batch 1.

For each model and each execution mode (eager, channels_last, bfloat16 autocast, torch.compile,
and their combinations) on the CPU (and CUDA when present), times forward passes on random
256x192 inputs and prints one JSON list.

The Lite-HRNet rows are measured twice: our implementation (``pose.models``) and, as the
baseline, ``OfficialLiteHRNet`` below: a plain transcription of the official code's layout
(mmcv-style ConvModules, Python lists of branches, shapes computed in every forward, the fuse
loop's in-place sums). The baseline loads our model's state dict with ``strict=True`` and its
output is checked against ours before anything is timed, so both compute the same function.

    python scripts/bench_models.py                       # CPU defaults
    python scripts/bench_models.py --models lite_hrnet_18 --modes eager bf16_cl compile
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pose.models import create_model, list_models

# ---------------------------------------------------------------------------------------------
# Baseline: the official Lite-HRNet layout, written the way the reference code is written.
# ---------------------------------------------------------------------------------------------


class ConvModule(nn.Module):
    """mmcv's ConvModule: conv (bias only without norm) -> optional BN -> optional activation."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1, norm: bool = True, act: str | None = "relu") -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                              kernel_size // 2, groups=groups, bias=not norm)
        self.bn = nn.BatchNorm2d(out_channels) if norm else None
        self.act = {"relu": nn.ReLU(), "sigmoid": nn.Sigmoid(), None: None}[act]

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.act is not None:
            x = self.act(x)
        return x


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    batch_size, channels, height, width = x.size()
    x = x.view(batch_size, groups, channels // groups, height, width)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(batch_size, -1, height, width)


def dw_pw(in_channels: int, out_channels: int, stride: int, relu: bool) -> list[nn.Module]:
    """dw3x3 + BN + conv1x1 + BN (+ ReLU), as bare layers (the official transitions and fuses)."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, in_channels, 3, stride, 1, groups=in_channels, bias=False),
        nn.BatchNorm2d(in_channels),
        nn.Conv2d(in_channels, out_channels, 1, 1, 0, bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    return [*layers, nn.ReLU(inplace=True)] if relu else layers


class Stem(nn.Module):
    def __init__(self, in_channels: int, stem_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = ConvModule(in_channels, stem_channels, 3, stride=2)
        mid = stem_channels  # expand_ratio 1
        branch = stem_channels // 2
        inc = branch if stem_channels == out_channels else out_channels - branch
        self.branch1 = nn.Sequential(
            ConvModule(branch, branch, 3, stride=2, groups=branch, act=None),
            ConvModule(branch, inc, 1))
        self.expand_conv = ConvModule(branch, mid, 1)
        self.depthwise_conv = ConvModule(mid, mid, 3, stride=2, groups=mid, act=None)
        self.linear_conv = ConvModule(mid, inc, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        x1, x2 = x.chunk(2, dim=1)
        x2 = self.linear_conv(self.depthwise_conv(self.expand_conv(x2)))
        return channel_shuffle(torch.cat((self.branch1(x1), x2), dim=1), 2)


class SpatialWeighting(nn.Module):
    def __init__(self, channels: int, ratio: int = 4) -> None:
        super().__init__()
        self.global_avgpool = nn.AdaptiveAvgPool2d(1)
        self.conv1 = ConvModule(channels, channels // ratio, 1, norm=False)
        self.conv2 = ConvModule(channels // ratio, channels, 1, norm=False, act="sigmoid")

    def forward(self, x: Tensor) -> Tensor:
        return x * self.conv2(self.conv1(self.global_avgpool(x)))


class CrossResolutionWeighting(nn.Module):
    def __init__(self, channels: Sequence[int], ratio: int) -> None:
        super().__init__()
        self.channels = list(channels)
        total = sum(channels)
        self.conv1 = ConvModule(total, total // ratio, 1)
        self.conv2 = ConvModule(total // ratio, total, 1, act="sigmoid")

    def forward(self, x: list[Tensor]) -> list[Tensor]:
        mini_size = x[-1].size()[-2:]
        out = [F.adaptive_avg_pool2d(s, mini_size) for s in x[:-1]] + [x[-1]]
        out = self.conv2(self.conv1(torch.cat(out, dim=1)))
        weights = torch.split(out, self.channels, dim=1)
        return [s * F.interpolate(a, size=s.size()[-2:], mode="nearest")
                for s, a in zip(x, weights, strict=True)]


class ConditionalChannelWeighting(nn.Module):
    def __init__(self, channels: Sequence[int], reduce_ratio: int) -> None:
        super().__init__()
        branch_channels = [c // 2 for c in channels]
        self.cross_resolution_weighting = CrossResolutionWeighting(branch_channels, reduce_ratio)
        self.depthwise_convs = nn.ModuleList(
            ConvModule(c, c, 3, groups=c, act=None) for c in branch_channels)
        self.spatial_weighting = nn.ModuleList(SpatialWeighting(c) for c in branch_channels)

    def forward(self, x: list[Tensor]) -> list[Tensor]:
        halves = [s.chunk(2, dim=1) for s in x]
        x1 = [s[0] for s in halves]
        x2 = self.cross_resolution_weighting([s[1] for s in halves])
        x2 = [dw(s) for s, dw in zip(x2, self.depthwise_convs, strict=True)]
        x2 = [sw(s) for s, sw in zip(x2, self.spatial_weighting, strict=True)]
        return [channel_shuffle(torch.cat([a, b], dim=1), 2) for a, b in zip(x1, x2, strict=True)]


class ShuffleUnit(nn.Module):
    """ShuffleNetV2 unit, stride 1 (the naive Lite-HRNet's block)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        half = channels // 2
        self.branch2 = nn.Sequential(ConvModule(half, half, 1),
                                     ConvModule(half, half, 3, groups=half, act=None),
                                     ConvModule(half, half, 1))

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = x.chunk(2, dim=1)
        return channel_shuffle(torch.cat((x1, self.branch2(x2)), dim=1), 2)


class LiteHRModule(nn.Module):
    def __init__(self, channels: Sequence[int], num_blocks: int, reduce_ratio: int,
                 module_type: str) -> None:
        super().__init__()
        self.num_branches = len(channels)
        self.module_type = module_type
        if module_type == "LITE":
            self.layers: nn.Module = nn.Sequential(
                *(ConditionalChannelWeighting(channels, reduce_ratio) for _ in range(num_blocks)))
        else:
            self.layers = nn.ModuleList(
                nn.Sequential(*(ShuffleUnit(c) for _ in range(num_blocks))) for c in channels)
        fuse_layers = []
        for i in range(self.num_branches):
            row: list[nn.Module | None] = []
            for j in range(self.num_branches):
                if j > i:
                    row.append(nn.Sequential(
                        nn.Conv2d(channels[j], channels[i], 1, bias=False),
                        nn.BatchNorm2d(channels[i]),
                        nn.Upsample(scale_factor=2 ** (j - i), mode="nearest")))
                elif j == i:
                    row.append(None)
                else:
                    steps = [nn.Sequential(*dw_pw(channels[j],
                                                  channels[i] if k == i - j - 1 else channels[j],
                                                  2, relu=k != i - j - 1))
                             for k in range(i - j)]
                    row.append(nn.Sequential(*steps))
            fuse_layers.append(nn.ModuleList(row))
        self.fuse_layers = nn.ModuleList(fuse_layers)
        self.relu = nn.ReLU()

    def forward(self, x: list[Tensor]) -> list[Tensor]:
        if self.module_type == "LITE":
            out = self.layers(x)
        else:
            for i in range(self.num_branches):
                x[i] = self.layers[i](x[i])
            out = x
        out_fuse = []
        for i in range(len(self.fuse_layers)):
            # The official loop, aliasing and in-place sums included (quirk L2).
            y = out[0] if i == 0 else self.fuse_layers[i][0](out[0])
            for j in range(self.num_branches):
                if i == j:
                    y += out[j]
                else:
                    y += self.fuse_layers[i][j](out[j])
            out_fuse.append(self.relu(y))
        return out_fuse


class IterativeHead(nn.Module):
    def __init__(self, in_channels: Sequence[int]) -> None:
        super().__init__()
        channels = list(in_channels)[::-1]
        projects = []
        for i, c in enumerate(channels):
            out = channels[i + 1] if i + 1 < len(channels) else c
            projects.append(nn.Module())
            projects[-1].depthwise_conv = ConvModule(c, c, 3, groups=c, act=None)
            projects[-1].pointwise_conv = ConvModule(c, out, 1)
        self.projects = nn.ModuleList(projects)

    def forward(self, x: list[Tensor]) -> list[Tensor]:
        x = x[::-1]
        y = []
        last = None
        for i, s in enumerate(x):
            if last is not None:
                last = F.interpolate(last, size=s.size()[-2:], mode="bilinear", align_corners=True)
                s = s + last
            project = self.projects[i]
            s = project.pointwise_conv(project.depthwise_conv(s))
            y.append(s)
            last = s
        return y[::-1]


class OfficialLiteHRNet(nn.Module):
    """Backbone (``backbone.*``) plus TopDownSimpleHead without deconvs (``keypoint_head.*``)."""

    def __init__(self, num_modules: Sequence[int], channels: Sequence[Sequence[int]],
                 module_type: str = "LITE", num_joints: int = 17) -> None:
        super().__init__()
        self.backbone = nn.Module()
        backbone = self.backbone
        backbone.stem = Stem(3, 32, 32)
        previous = [32]
        for stage, widths in enumerate(channels):
            transition: list[nn.Module | None] = []
            for i, width in enumerate(widths):
                if i < len(previous):
                    transition.append(nn.Sequential(*dw_pw(previous[i], width, 1, relu=True))
                                      if width != previous[i] else None)
                else:
                    steps = [nn.Sequential(*dw_pw(previous[-1],
                                                  width if k == i - len(previous) else previous[-1],
                                                  2, relu=True))
                             for k in range(i + 1 - len(previous))]
                    transition.append(nn.Sequential(*steps))
            setattr(backbone, f"transition{stage}", nn.ModuleList(transition))
            setattr(backbone, f"stage{stage}", nn.Sequential(
                *(LiteHRModule(widths, 2, 8, module_type) for _ in range(num_modules[stage]))))
            previous = list(widths)
        backbone.head_layer = IterativeHead(previous)
        self.num_branches = [len(widths) for widths in channels]
        self.keypoint_head = nn.Module()
        self.keypoint_head.final_layer = nn.Conv2d(previous[0], num_joints, 1)

    def forward(self, x: Tensor) -> Tensor:
        backbone = self.backbone
        x = backbone.stem(x)
        y_list = [x]
        for stage, num_branches in enumerate(self.num_branches):
            transition = getattr(backbone, f"transition{stage}")
            x_list = []
            for j in range(num_branches):
                if transition[j]:
                    x_list.append(transition[j](y_list[-1] if j >= len(y_list) else y_list[j]))
                else:
                    x_list.append(y_list[j])
            y_list = getattr(backbone, f"stage{stage}")(x_list)
        return self.keypoint_head.final_layer(backbone.head_layer(y_list)[0])


LITE_CHANNELS = ((40, 80), (40, 80, 160), (40, 80, 160, 320))
NAIVE_CHANNELS = ((30, 60), (30, 60, 120), (30, 60, 120, 240))
BASELINES: dict[str, Callable[[], nn.Module]] = {
    "lite_hrnet_18": lambda: OfficialLiteHRNet((2, 4, 2), LITE_CHANNELS),
    "lite_hrnet_30": lambda: OfficialLiteHRNet((3, 8, 3), LITE_CHANNELS),
    "naive_lite_hrnet_18": lambda: OfficialLiteHRNet((2, 4, 2), NAIVE_CHANNELS, "NAIVE"),
    "wider_naive_lite_hrnet_18": lambda: OfficialLiteHRNet((2, 4, 2), LITE_CHANNELS, "NAIVE"),
}

# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------

# name: (channels_last, bfloat16 autocast, torch.compile)
MODES = {
    "eager": (False, False, False),
    "channels_last": (True, False, False),
    "bf16": (False, True, False),
    "bf16_cl": (True, True, False),
    "compile": (False, False, True),
    "compile_bf16_cl": (True, True, True),
}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_forward(model: nn.Module, images: Tensor, bf16: bool, repeats: int,
                 min_seconds: float) -> float:
    """Median seconds per forward pass over ``repeats`` timed runs (after warm-up)."""
    device = images.device

    def forward() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            model(images)

    forward()
    forward()  # warm-up: compilation, cudnn autotuning, allocator
    synchronize(device)
    times = []
    started = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - started < min_seconds:
        start = time.perf_counter()
        forward()
        synchronize(device)
        times.append(time.perf_counter() - start)
        if len(times) >= 10 * repeats:
            break
    return statistics.median(times)


def prepare(model: nn.Module, device: torch.device, channels_last: bool,
            compile_model: bool) -> nn.Module:
    model = model.eval().to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compile_model:
        torch._dynamo.reset()
        model = torch.compile(model)
    return model


@torch.no_grad()
def check_baseline(ours: nn.Module, baseline: nn.Module, height: int, width: int) -> float:
    """Load our weights into the baseline (strict) and return the max output difference."""
    ours = ours.eval().double()
    baseline.load_state_dict(ours.state_dict(), strict=True)
    baseline = baseline.eval().double()
    images = torch.randn(2, 3, height, width, dtype=torch.float64,
                         generator=torch.Generator().manual_seed(0))
    difference = (ours(images) - baseline(images)).abs().max().item()
    ours.float()
    baseline.float()
    return difference


@torch.no_grad()
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=None,
                        help="default: hrnet_w32 and the Lite-HRNet models")
    parser.add_argument("--modes", nargs="*", default=None, choices=sorted(MODES),
                        help="default: all but the compiled ones on the CPU, all on CUDA")
    parser.add_argument("--devices", nargs="*", default=None, help="default: cpu (+ cuda)")
    parser.add_argument("--input", default="256x192", help="HxW")
    parser.add_argument("--batch-sizes", nargs="*", type=int, default=[1, 32])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--min-seconds", type=float, default=1.0)
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()

    height, width = (int(side) for side in args.input.lower().split("x"))
    names = args.models or ["hrnet_w32", *[name for name in BASELINES if name in list_models()]]
    devices = args.devices or ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
    records = []
    for device_name in devices:
        device = torch.device(device_name)
        modes = args.modes or [mode for mode in MODES
                               if device.type == "cuda" or not MODES[mode][2]]
        for name in names:
            implementations = {"pose": create_model(name)}
            if name in BASELINES and not args.no_baseline:
                baseline = BASELINES[name]()
                difference = check_baseline(implementations["pose"], baseline, height, width)
                if difference > 1e-9:
                    print(f"{name}: the baseline differs from ours by {difference:.3g}",
                          file=sys.stderr)
                    return 1
                implementations["official_layout"] = baseline
            for implementation, model in implementations.items():
                for mode in modes:
                    channels_last, bf16, compile_model = MODES[mode]
                    prepared = prepare(model, device, channels_last, compile_model)
                    record = {"model": name, "implementation": implementation,
                              "device": device_name, "mode": mode, "input": f"{height}x{width}"}
                    for batch_size in args.batch_sizes:
                        images = torch.randn(batch_size, 3, height, width, device=device)
                        if channels_last:
                            images = images.contiguous(memory_format=torch.channels_last)
                        seconds = time_forward(prepared, images, bf16, args.repeats,
                                               args.min_seconds)
                        record[f"batch{batch_size}_ms"] = round(seconds * 1e3, 3)
                        record[f"batch{batch_size}_images_per_s"] = round(batch_size / seconds, 1)
                    print(json.dumps(record), file=sys.stderr, flush=True)
                    records.append(record)
                    model.to(memory_format=torch.contiguous_format)
    print(json.dumps(records, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
