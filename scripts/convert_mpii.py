"""Convert the original MPII Human Pose release to the json layout pose reads (data/README.md).

    python scripts/convert_mpii.py /path/to/mpii_human_pose_v1_u12_1.mat data/mpii \
        [--valid-images valid_images.txt | --valid-fraction 0.1 --seed 0]

Writes ``<out>/annot/train.json`` and ``<out>/annot/valid.json`` (HRNet's layout plus each
person's head box, which PCKh needs); put the images in ``<out>/images/``. Prints the counts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pose.data.converters.mpii import convert_mpii_release


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mat_file", type=Path, help="mpii_human_pose_v1_u12_1.mat")
    parser.add_argument("out_dir", type=Path, help="dataset root (annot/ is written there)")
    parser.add_argument("--valid-images", type=Path, default=None,
                        help="text file of validation image names, one per line")
    parser.add_argument("--valid-fraction", type=float, default=0.1,
                        help="share of training images held out when no list is given")
    parser.add_argument("--seed", type=int, default=0, help="seed of that draw")
    args = parser.parse_args()
    valid_images = None
    try:
        if args.valid_images is not None:
            valid_images = [line.strip() for line in args.valid_images.read_text().splitlines()
                            if line.strip()]
        counts = convert_mpii_release(args.mat_file, args.out_dir, valid_images=valid_images,
                                      valid_fraction=args.valid_fraction, seed=args.seed)
    except (OSError, ValueError) as error:
        print(f"convert_mpii: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
