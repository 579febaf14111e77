"""Convert DeepLabCut / lightning-pose labels to a COCO-format keypoint dataset pose trains on.

    python scripts/convert_dlc.py <CollectedData.csv> --image-root <dir> --out <dataset_dir> \
        [--val-fraction 0.1] [--seed 0] [--name mice] [--overwrite]

Reads the label CSV (scorer / bodyparts / coords header rows, or the multi-animal form with
individuals; empty or NaN cells are unlabelled), and writes ``<out>/train.json`` and
``<out>/val.json`` (COCO format, one annotation per labelled individual, boxes around the
labelled keypoints) and ``<out>/keypoints.yaml`` (the body parts, flip pairs inferred from
left/right names, no OKS sigmas). The images are referenced, not copied: each ``file_name`` is
relative to ``--image-root``. Existing output files are never replaced without ``--overwrite``.
Prints what it wrote and the training command.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from pose.data.converters.dlc import convert_dlc


def training_command(summary: dict, image_root: Path) -> str:
    """The pose.train command line for the converted dataset."""
    root = shlex.quote(str(image_root.resolve()))
    arguments = [
        "python -m pose.train experiment=hrnet_w32_256x192",
        f"data.keypoints={shlex.quote(str(Path(summary['keypoints']).resolve()))}",
        f"data.train_annotation_file={shlex.quote(str(Path(summary['train']).resolve()))}",
        f"data.val_annotation_file={shlex.quote(str(Path(summary['val']).resolve()))}",
        f"data.train_image_dir={root}", f"data.val_image_dir={root}",
    ]
    return " \\\n    ".join(arguments)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv_file", type=Path, help="the DLC label CSV (CollectedData_*.csv)")
    parser.add_argument("--image-root", type=Path, required=True,
                        help="the folder the CSV's image paths are relative to")
    parser.add_argument("--out", type=Path, required=True,
                        help="where train.json, val.json and keypoints.yaml are written")
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="share of the labelled images held out for validation")
    parser.add_argument("--seed", type=int, default=0, help="seed of that draw")
    parser.add_argument("--name", default=None,
                        help="name of the keypoint set and category (default: the scorer)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing output files")
    args = parser.parse_args()
    try:
        summary = convert_dlc(args.csv_file, args.image_root, args.out,
                              val_fraction=args.val_fraction, seed=args.seed, name=args.name,
                              overwrite=args.overwrite)
    except (OSError, ValueError) as error:
        print(f"convert_dlc: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    print(f"\nTrain on it (any experiment preset; the keypoint set gives the joint count):\n"
          f"{training_command(summary, args.image_root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
