"""Training data loader speed: samples/s, and samples per CPU-second ("per core"), for COCO
256x192 and 384x288 crops with 0, 1 and 2 loader workers.

Loaders compared, each in a fresh process on the same generated images:

* ``baseline``: ``OfficialStyleDataset`` below, written the way the official HRNet
  ``JointsDataset`` is: the whole JPEG decoded with ``cv2.imread`` and converted to RGB, draws from
  the global numpy/random state, the flip as a reversed view, ``cv2.warpAffine`` with OpenCV's
  default thread pool, ``ToTensor`` + ``Normalize``, a Python loop over the joints for the affine
  map and another for the targets, a deep copy of the record and a meta dict per item, the
  default collate. Before timing, its evaluation-mode items are checked equal to ours.
* ``ours``: ``CocoKeypoints`` (exact: crops bit-equal to the official) with ``build_loader``.
* ``ours_reduced``: the same with ``reduced_decoding=True`` (JPEG DCT scaling for large people).
* ``ours_device_loader``: the loader side of ``device_augmentation=True`` (decode and pad only);
  the device-side step is not included (it runs on the training device; ``--device cuda`` times
  it too).

The images are COCO-like: 640x480 JPEGs from ``pose.synthetic`` with 1 to 4 people of
40 to 510 pixels' height (smoother than photos, so they decode faster than COCO's). Each
configuration runs ``--repeats`` times, interleaved, and its best run counts; "per core" is
samples per CPU-second of the main process and its workers together (OpenCV's and torch's
thread pools included). Prints one JSON object.

    python scripts/bench_data.py                          # everything (a few minutes)
    python scripts/bench_data.py --sizes 256x192 --workers 0 --batches 5
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from pose.data import CocoKeypoints, build_loader
from pose.data.transforms import IMAGENET_MEAN, IMAGENET_STD, get_affine_transform
from pose.synthetic import generate_coco_dataset

SIZES = {"256x192": ((192, 256), (48, 64), 2.0), "384x288": ((288, 384), (72, 96), 3.0)}
LOADERS = ("baseline", "ours", "ours_reduced", "ours_device_loader")

# ---------------------------------------------------------------------------------------------
# Baseline: the official JointsDataset's per-item work, written the way the reference code is.
# ---------------------------------------------------------------------------------------------


class OfficialStyleDataset(Dataset):
    """Items as the official ``JointsDataset.__getitem__`` computes them (COCO, train or val),
    on the database of a ``CocoKeypoints``."""

    def __init__(self, reference: CocoKeypoints, train: bool) -> None:
        self.db = [
            {
                "image": str(record["image_path"]),
                "center": record["center"], "scale": record["scale"],
                "joints_3d": np.concatenate([record["joints"], np.zeros((17, 1))], axis=1),
                "joints_3d_vis": np.repeat(record["visible"][:, None], 3, axis=1),
                "score": record["score"],
            }
            for record in reference.records
        ]
        self.is_train = train
        self.image_size = np.array(reference.image_size)
        self.heatmap_size = np.array(reference.heatmap_size)
        self.sigma = reference.sigma
        self.num_joints = 17
        self.flip_pairs = [list(pair) for pair in reference.keypoints.flip_pairs]
        self.upper_body_ids = list(reference.keypoints.upper_body_ids)
        self.aspect_ratio = self.image_size[0] * 1.0 / self.image_size[1]
        self.transform = transforms.Compose([
            transforms.ToTensor(), transforms.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
        ])

    def __len__(self) -> int:
        return len(self.db)

    def half_body(self, joints: np.ndarray, joints_vis: np.ndarray):
        upper, lower = [], []
        for joint_id in range(self.num_joints):
            if joints_vis[joint_id][0] > 0:
                (upper if joint_id in self.upper_body_ids else lower).append(joints[joint_id])
        if np.random.randn() < 0.5 and len(upper) > 2:
            selected = upper
        else:
            selected = lower if len(lower) > 2 else upper
        if len(selected) < 2:
            return None, None
        selected = np.array(selected, dtype=np.float32)
        center = selected.mean(axis=0)[:2]
        left_top, right_bottom = np.amin(selected, axis=0), np.amax(selected, axis=0)
        w, h = right_bottom[0] - left_top[0], right_bottom[1] - left_top[1]
        if w > self.aspect_ratio * h:
            h = w * 1.0 / self.aspect_ratio
        elif w < self.aspect_ratio * h:
            w = h * self.aspect_ratio
        scale = np.array([w * 1.0 / 200, h * 1.0 / 200], dtype=np.float32) * 1.5
        return center, scale

    def flip_joints(self, joints: np.ndarray, joints_vis: np.ndarray, width: int):
        joints[:, 0] = width - joints[:, 0] - 1
        for left, right in self.flip_pairs:
            joints[left, :], joints[right, :] = joints[right, :], joints[left, :].copy()
            joints_vis[left, :], joints_vis[right, :] = joints_vis[right, :], \
                joints_vis[left, :].copy()
        return joints * joints_vis, joints_vis

    def generate_target(self, joints: np.ndarray, joints_vis: np.ndarray):
        target_weight = np.ones((self.num_joints, 1), dtype=np.float32)
        target_weight[:, 0] = joints_vis[:, 0]
        target = np.zeros((self.num_joints, self.heatmap_size[1], self.heatmap_size[0]),
                          dtype=np.float32)
        radius = self.sigma * 3
        for joint_id in range(self.num_joints):
            stride = self.image_size / self.heatmap_size
            mu_x = int(joints[joint_id][0] / stride[0] + 0.5)
            mu_y = int(joints[joint_id][1] / stride[1] + 0.5)
            ul = [int(mu_x - radius), int(mu_y - radius)]
            br = [int(mu_x + radius + 1), int(mu_y + radius + 1)]
            if (ul[0] >= self.heatmap_size[0] or ul[1] >= self.heatmap_size[1]
                    or br[0] < 0 or br[1] < 0):
                target_weight[joint_id] = 0
                continue
            size = 2 * radius + 1
            x = np.arange(0, size, 1, np.float32)
            y = x[:, np.newaxis]
            middle = size // 2
            window = np.exp(-((x - middle) ** 2 + (y - middle) ** 2) / (2 * self.sigma ** 2))
            window_x = max(0, -ul[0]), min(br[0], self.heatmap_size[0]) - ul[0]
            window_y = max(0, -ul[1]), min(br[1], self.heatmap_size[1]) - ul[1]
            map_x = max(0, ul[0]), min(br[0], self.heatmap_size[0])
            map_y = max(0, ul[1]), min(br[1], self.heatmap_size[1])
            if target_weight[joint_id] > 0.5:
                target[joint_id][map_y[0]:map_y[1], map_x[0]:map_x[1]] = \
                    window[window_y[0]:window_y[1], window_x[0]:window_x[1]]
        return target, target_weight

    def __getitem__(self, index: int):
        record = copy.deepcopy(self.db[index])
        image = cv2.imread(record["image"], cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        joints, joints_vis = record["joints_3d"], record["joints_3d_vis"]
        center, scale, rotation = record["center"], record["scale"], 0
        if self.is_train:
            if np.sum(joints_vis[:, 0]) > 8 and np.random.rand() < 0.3:
                half_center, half_scale = self.half_body(joints, joints_vis)
                if half_center is not None:
                    center, scale = half_center, half_scale
            scale = scale * np.clip(np.random.randn() * 0.35 + 1, 1 - 0.35, 1 + 0.35)
            rotation = np.clip(np.random.randn() * 45, -90, 90) if random.random() <= 0.6 else 0
            if random.random() <= 0.5:
                image = image[:, ::-1, :]
                joints, joints_vis = self.flip_joints(joints, joints_vis, image.shape[1])
                center[0] = image.shape[1] - center[0] - 1
        trans = get_affine_transform(center, scale, rotation, self.image_size)
        crop = cv2.warpAffine(image, trans, (int(self.image_size[0]), int(self.image_size[1])),
                              flags=cv2.INTER_LINEAR)
        crop = self.transform(crop)
        for joint_id in range(self.num_joints):
            if joints_vis[joint_id, 0] > 0.0:
                point = np.array([joints[joint_id, 0], joints[joint_id, 1], 1.0]).T
                joints[joint_id, 0:2] = np.dot(trans, point)[:2]
        target, target_weight = self.generate_target(joints, joints_vis)
        meta = {"image": record["image"], "joints": joints, "joints_vis": joints_vis,
                "center": center, "scale": scale, "rotation": rotation,
                "score": record["score"]}
        return crop, torch.from_numpy(target), torch.from_numpy(target_weight), meta


def check_baseline_equals_ours(ours: CocoKeypoints, count: int = 8) -> None:
    """The baseline computes the same items as ours (evaluation mode: no random draws)."""
    baseline = OfficialStyleDataset(ours, train=False)
    for index in range(min(count, len(ours))):
        crop, target, target_weight, _ = baseline[index]
        item = ours[index]
        if not (torch.allclose(crop, item["image"], atol=1e-5)
                and torch.equal(target, item["target"])
                and torch.equal(target_weight[:, 0], item["target_weight"])):
            raise RuntimeError(f"baseline and ours differ on item {index}")


# ---------------------------------------------------------------------------------------------
# One measurement (in its own process)
# ---------------------------------------------------------------------------------------------


def process_cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds so far of the processes ``pids`` (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def measure(args: argparse.Namespace) -> dict[str, Any]:
    image_size, heatmap_size, sigma = SIZES[args.size]
    ours = CocoKeypoints(
        args.data, "train2017", image_size, heatmap_size, sigma, train=True, seed=0,
        reduced_decoding=args.loader == "ours_reduced",
        device_augmentation=args.loader == "ours_device_loader",
    )
    if args.loader == "baseline":
        check_baseline_equals_ours(CocoKeypoints(args.data, "train2017", image_size,
                                                 heatmap_size, sigma))
        loader = DataLoader(OfficialStyleDataset(ours, train=True), batch_size=args.batch_size,
                            shuffle=True, num_workers=args.workers, pin_memory=False,
                            drop_last=True)
    else:
        loader = build_loader(ours, args.batch_size, shuffle=True, num_workers=args.workers,
                              drop_last=True)
    transform = ours.batch_transform()
    device = torch.device(args.device)
    iterator = iter(loader)
    next(iterator)  # workers started and warm
    pids = [os.getpid()] + [worker.pid for worker in getattr(iterator, "_workers", [])]
    cpu_start, wall_start = process_cpu_seconds(pids), time.perf_counter()
    samples = 0
    # Within one epoch: the baseline's workers (not persistent, as officially) end with it.
    for _, batch in zip(range(args.batches), iterator, strict=False):
        if transform is not None and device.type == "cuda":
            batch = transform({key: value.to(device, non_blocking=True) if torch.is_tensor(value)
                               else value for key, value in batch.items()})
            torch.cuda.synchronize()
        samples += len(batch[0] if isinstance(batch, list) else batch["index"])
    wall = time.perf_counter() - wall_start
    cpu = process_cpu_seconds(pids) - cpu_start
    if samples < args.batches * args.batch_size:
        raise RuntimeError(f"the dataset has too few people for {args.batches} batches of "
                           f"{args.batch_size}: generate more --images")
    return {"samples": samples, "wall_s": wall, "cpu_s": cpu}


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------


def reduced_share(data: Path, size: str, count: int = 2000) -> float:
    """The share of training samples that ``reduced_decoding`` decodes at reduced size."""
    from pose.data.transforms import decode_reduction, draw_augmentation

    image_size, heatmap_size, sigma = SIZES[size]
    dataset = CocoKeypoints(data, "train2017", image_size, heatmap_size, sigma, train=True)
    reduced = 0
    for index in range(min(count, len(dataset))):
        record = dataset.records[index]
        drawn = draw_augmentation(
            record["joints"], record["visible"], record["center"], record["scale"],
            dataset.augmentation, dataset.keypoints.upper_body_ids,
            dataset.keypoints.lower_body_ids, dataset.aspect_ratio, dataset.sample_rng(index))
        reduced += decode_reduction(drawn.scale, image_size[0]) > 1
    return reduced / min(count, len(dataset))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None,
                        help="a generated dataset to reuse (default: a new one in a temp folder)")
    parser.add_argument("--images", type=int, default=500, help="train images to generate")
    parser.add_argument("--sizes", nargs="*", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--workers", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--loaders", nargs="*", default=list(LOADERS), choices=LOADERS)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=20, help="timed batches per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per configuration (best)")
    parser.add_argument("--device", default="cpu", help="cuda: also time the device-side step")
    parser.add_argument("--one", nargs=3, metavar=("LOADER", "SIZE", "WORKERS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one:
        args.loader, args.size, args.workers = args.one[0], args.one[1], int(args.one[2])
        print(json.dumps(measure(args)))
        return 0

    with tempfile.TemporaryDirectory(prefix="bench-data-") as scratch:
        data = args.data
        if data is None:
            data = Path(scratch) / "coco"
            generate_coco_dataset(data, num_train_images=args.images, num_val_images=1, seed=0,
                                  image_size=(640, 480))
        # Each configuration runs --repeats times, interleaved with the others so that load
        # from other work on the machine spreads over all of them; the best run counts.
        best: dict[tuple[str, int, str], dict[str, Any]] = {}
        for _ in range(args.repeats):
            for size in args.sizes:
                for workers in args.workers:
                    for loader in args.loaders:
                        command = [sys.executable, __file__, "--data", str(data),
                                   "--batch-size", str(args.batch_size), "--batches",
                                   str(args.batches), "--device", args.device,
                                   "--one", loader, size, str(workers)]
                        result = subprocess.run(command, capture_output=True, text=True,
                                                check=False)
                        if result.returncode != 0:
                            print(result.stderr, file=sys.stderr)
                            return 1
                        measured = json.loads(result.stdout.strip().splitlines()[-1])
                        run = best.setdefault((size, workers, loader), {
                            "size": size, "workers": workers, "loader": loader,
                            "samples_per_s": 0.0, "samples_per_cpu_s": 0.0})
                        run["samples_per_s"] = max(run["samples_per_s"],
                                                   measured["samples"] / measured["wall_s"])
                        run["samples_per_cpu_s"] = max(run["samples_per_cpu_s"],
                                                       measured["samples"] / measured["cpu_s"])
        runs = list(best.values())
        summary = {}
        for size in args.sizes:
            for workers in args.workers:
                row = {run["loader"]: run for run in runs
                       if run["size"] == size and run["workers"] == workers}
                if "baseline" not in row:
                    continue
                base = row.pop("baseline")
                summary[f"{size}_workers{workers}"] = {
                    loader: {"speedup_samples_per_s": run["samples_per_s"] / base["samples_per_s"],
                             "speedup_per_core": (run["samples_per_cpu_s"]
                                                  / base["samples_per_cpu_s"])}
                    for loader, run in row.items()
                }
        report = {
            "images": (f"the dataset in {args.data}" if args.data else
                       "640x480 synthetic JPEGs (pose.synthetic), quality 92"),
            "batch_size": args.batch_size,
            "timed_samples_per_run": args.batches * args.batch_size,
            "repeats": args.repeats,
            "cpu_count": os.cpu_count(),
            "reduced_decoding_share": {size: reduced_share(data, size) for size in args.sizes},
            "runs": [{key: (round(value, 3) if isinstance(value, float) else value)
                      for key, value in run.items()} for run in runs],
            "speedup_vs_baseline": {key: {loader: {name: round(value, 2)
                                                   for name, value in values.items()}
                                          for loader, values in row.items()}
                                    for key, row in summary.items()},
        }
        print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
