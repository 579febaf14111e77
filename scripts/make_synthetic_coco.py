"""Generate an embedded synthetic COCO-format keypoint dataset (see pose/synthetic/): people
(COCO's 17 keypoints), or ``--subject quadruped`` (AP-10K's 17, conf/keypoints/quadruped.yaml).

Example::

    python scripts/make_synthetic_coco.py --out data/demo --num-train 2000 --num-val 300
    python scripts/make_synthetic_coco.py --out data/demo_quadruped --subject quadruped
"""

from __future__ import annotations

import argparse
import sys
import time

from pose.synthetic import SUBJECTS, generate_coco_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="dataset folder to create")
    parser.add_argument("--num-train", type=int, default=2000, help="training images")
    parser.add_argument("--num-val", type=int, default=300, help="validation images")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--width", type=int, default=320, help="image width in pixels")
    parser.add_argument("--height", type=int, default=320, help="image height in pixels")
    parser.add_argument("--subject", choices=sorted(SUBJECTS), default="person",
                        help="what the images show")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes that render the images (the files do not depend on it)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        summary = generate_coco_dataset(
            args.out, num_train_images=args.num_train, num_val_images=args.num_val,
            seed=args.seed, image_size=(args.width, args.height), subject=args.subject,
            workers=args.workers,
        )
    except (FileExistsError, ValueError) as error:
        print(f"make_synthetic_coco: {error}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - started
    print(f"wrote {summary['train_images']} train images ({summary['train_people']} figures) and "
          f"{summary['val_images']} val images ({summary['val_people']} figures, "
          f"{summary['val_detections']} detection boxes) to {summary['root']} in {seconds:.1f} s")
    for key in ("train_annotations", "val_annotations", "val_detections_file"):
        print(f"  {key}: {summary[key]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
