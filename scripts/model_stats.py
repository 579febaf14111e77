"""``make stats``: parameters, multiply-adds and the papers' "FLOPs" of every named model.

For each model and input size prints params, conv + linear MACs, the HRNet README's "GFLOPs"
(MACs / 2^30) and the Lite-HRNet README's "FLOPs" (official torchstat count / 2^20), which
reproduce the published tables (``pose/models/stats.py`` explains both conventions). Without
``--models`` it adds the HRNetV2p detection backbones (``pose.models.hrnet_pyramid``: HRNetV2 +
HRFPN neck, no detector heads) and a table of the published HRNetV2 / V2p figures beside ours.

    python scripts/model_stats.py                                   # every model, 256x192, 384x288
    python scripts/model_stats.py --models lite_hrnet_18 --sizes 256x256 --num-joints 16  # MPII
    python scripts/model_stats.py --json
"""

from __future__ import annotations

import argparse
import json
import sys

from pose.models import list_models
from pose.models.hrnet import HRNETV2_VARIANTS
from pose.models.stats import (
    V2_PUBLISHED,
    ModelStats,
    model_stats,
    published_comparison,
    pyramid_stats,
)

DEFAULT_SIZES = ("256x192", "384x288")  # the COCO inputs (height x width), px


def parse_size(text: str) -> tuple[int, int]:
    """``"256x192"`` -> (256, 192): network input (height, width), px."""
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size: expected HxW, e.g. 256x192")
    if height < 1 or width < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: height and width must be positive")
    return height, width


def format_table(rows: list[ModelStats]) -> str:
    header = (f"{'model':28s} {'input':>8s} {'params':>12s} {'MACs':>16s} "
              f"{'HRNet GFLOPs':>13s} {'Lite-HRNet FLOPs (M)':>21s}")
    lines = [header, "-" * len(header)]
    for row in rows:
        height, width = row.input_hw
        lines.append(f"{row.model:28s} {f'{height}x{width}':>8s} {row.params:12,d} "
                     f"{row.macs:16,d} {row.hrnet_gflops:13.2f} {row.lite_hrnet_mflops:21.1f}")
    return "\n".join(lines)


def format_published() -> str:
    """The published HRNetV2 / V2p figures beside ours, with what each counts and its source."""
    lines = ["Published HRNetV2 / V2p figures (params in M, GFLOPs) against ours:"]
    for figure in V2_PUBLISHED:
        params, gflops = published_comparison(figure)
        height, width = figure.input_hw
        lines += [(f"  {figure.label}: published {figure.params_m:.1f}M, {figure.gflops:.1f} "
                  f"GFLOPs; ours ({figure.name}, {figure.num_outputs} outputs, {height}x{width}) "
                  f"{params / 1e6:.2f}M, {gflops:.1f} GFLOPs"),
                  f"    counts: {figure.counts}", f"    source: {figure.source}"]
    lines.append("  ours for detectors: parameters of torchvision's FasterRCNN on hrnet_pyramid "
                 "(same RPN and RoI-head layout); GFLOPs of the pyramid backbone alone at "
                 "800x1280 (the RPN and RoI heads' cost depends on the proposals)")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=None, help="default: every named model")
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=None,
                        help="input sizes HxW (default: 256x192 384x288)")
    parser.add_argument("--num-joints", type=int, default=17, help="17 (COCO) or 16 (MPII)")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead")
    args = parser.parse_args()
    models = args.models or list_models()
    unknown = [name for name in models if name not in list_models()]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(list_models())}")
    sizes = args.sizes or [parse_size(size) for size in DEFAULT_SIZES]
    rows = [model_stats(name, size, num_joints=args.num_joints)
            for name in models for size in sizes]
    if args.models is None:  # every model: the HRNetV2p detection backbones too
        rows += [pyramid_stats(name, size) for name in sorted(HRNETV2_VARIANTS) for size in sizes]
    if args.json:
        print(json.dumps([row.as_dict() for row in rows], indent=1))
        return 0
    print(format_table(rows))
    if args.models is None:
        print()
        print(format_published())
    return 0


if __name__ == "__main__":
    sys.exit(main())
