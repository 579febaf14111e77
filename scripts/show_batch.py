"""See what the model sees: a PNG grid of augmented training crops, each shown with the skeleton
of its weighted joints and with its target heatmaps overlaid.

Takes the same config overrides as ``pose.train``; the training data, augmentation (scale,
rotation, flip, half-body, colour jitter) and, with ``data.device_augmentation=true``, the
device-side step (run here on the CPU) are built exactly as for training.

    python scripts/show_batch.py experiment=hrnet_w32_256x192 data.root=data/coco
    python scripts/show_batch.py experiment=demo data.brightness=0.4 --num 24 --epoch 3 \\
        --out batch.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException

from pose.config import build_dataset, register_configs, run_reporting_errors
from pose.data import collate_skip_none
from pose.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from pose.visualize import tile_grid, training_sample_tiles

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def show_batch(overrides: list[str], out: Path, num: int, epoch: int, columns: int) -> Path:
    """Write the grid of ``num`` training samples of ``epoch`` to ``out`` (refuses to overwrite)."""
    if out.exists():
        raise FileExistsError(f"{out} already exists; choose another --out")
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose(config_name="train", overrides=overrides)
    dataset = build_dataset(cfg.data, train=True, seed=cfg.seed)
    dataset.set_epoch(epoch)
    # The same people every run of an epoch: an evenly spread selection, not the first ones.
    indices = np.linspace(0, len(dataset) - 1, min(num, len(dataset))).round().astype(int)
    batch = collate_skip_none([dataset[int(index)] for index in indices])
    if "index" not in batch:
        raise ValueError("none of the selected samples' images could be read")
    transform = dataset.batch_transform()
    if transform is not None:
        batch = transform(batch)
    skeleton = dataset.keypoints.skeleton
    tiles = [
        training_sample_tiles(batch["image"][i].numpy(), batch["joints"][i].numpy(),
                              batch["target"][i].numpy(), batch["target_weight"][i].numpy(),
                              skeleton, IMAGENET_MEAN, IMAGENET_STD)
        for i in range(len(batch["index"]))
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), tile_grid(tiles, columns)):
        raise OSError(f"could not write {out}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="config overrides, as for pose.train")
    parser.add_argument("--out", type=Path, default=Path("batch.png"), help="PNG to write")
    parser.add_argument("--num", type=int, default=16, help="samples to show")
    parser.add_argument("--epoch", type=int, default=0, help="whose augmentation draws to use")
    parser.add_argument("--columns", type=int, default=4, help="samples per row")
    args = parser.parse_args()
    try:
        out = run_reporting_errors("show_batch", show_batch, args.overrides, args.out, args.num,
                                   args.epoch, args.columns)
    except HydraException as error:  # an unknown experiment or config key
        print(f"show_batch: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
