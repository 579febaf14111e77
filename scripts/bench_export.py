"""Exported models on the CPU: onnxruntime against PyTorch eager, and pose.runtime end to end.

For each model (HRNet-W32 and Lite-HRNet-18 at 256x192 by default) the script exports the model
(float32, dynamic batch, in-graph decoding), checks its parity on the COCO sample's people
(``tests/data/coco_sample``), and times forward passes at batch 1 and 32: PyTorch eager in
float32, NCHW and channels_last, and onnxruntime (CPU provider). Then it times ``pose.runtime``
from image and boxes to keypoints (crops, network, flip test, decoding) in people/s. The goal
(issue 17): onnxruntime at least as fast at batch 1 as the faster PyTorch mode. One JSON list.

The weights are the models' seeded initial ones with the last convolution scaled so that the
largest heatmap value on the sample crops is 1 (speed does not depend on them; the parity
figures then mean something); the float16 row also shifts the BN layers (``scaled_model``).
Timings: the median of repeated passes after a warm-up.

    python scripts/bench_export.py
    python scripts/bench_export.py --models lite_hrnet_18 --batches 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from pose.data.keypoints import COCO_KEYPOINTS
from pose.data.transforms import (
    box_to_center_scale,
    get_affine_transform,
    normalise_bgr,
    warp_image,
)
from pose.engine.export import check_parity, export_metadata, export_onnx
from pose.models import create_model
from pose.runtime import OnnxPoseModel

SAMPLE = Path(__file__).resolve().parents[1] / "tests" / "data" / "coco_sample"
INPUT_SIZE = (192, 256)  # (w, h) px
MIN_BOX_SCORE = 0.5
HALF_PARITY_CROPS = 4


def sample_people() -> list[tuple[np.ndarray, np.ndarray]]:
    """(BGR image, detector boxes [n, 4] xywh above MIN_BOX_SCORE) per sample image."""
    detections = json.loads((SAMPLE / "test_coco_det_AP_H_56.json").read_text())
    people = []
    for image_id in sorted({entry["image_id"] for entry in detections}):
        boxes = [entry["bbox"] for entry in detections
                 if entry["image_id"] == image_id and entry["score"] > MIN_BOX_SCORE]
        image = cv2.imread(str(SAMPLE / f"{image_id:012d}.jpg"),
                           cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        people.append((image, np.array(boxes)))
    return people


def sample_crops(people: list[tuple[np.ndarray, np.ndarray]]) -> torch.Tensor:
    crops = []
    for image, boxes in people:
        for box in boxes:
            center, scale = box_to_center_scale(box, INPUT_SIZE[0] / INPUT_SIZE[1])
            matrix = get_affine_transform(center, scale, 0.0, INPUT_SIZE)
            crops.append(normalise_bgr(warp_image(image, matrix, INPUT_SIZE)))
    return torch.from_numpy(np.stack(crops))


def scaled_model(name: str, crops: torch.Tensor, shift_batch_norm: bool = False) -> nn.Module:
    """Seeded initial weights, the last convolution scaled to heatmap peaks of 1 on ``crops``;
    ``shift_batch_norm``: BN shifts from U(-1, 1) too, so that activations are of order 1 as in
    a trained model (float16 flushes the initial weights' tiny activations to 0)."""
    torch.manual_seed(0)
    model = create_model(name).eval()
    for module in model.modules():
        if shift_batch_norm and isinstance(module, nn.BatchNorm2d):
            module.bias.data.uniform_(-1.0, 1.0)
    final = [module for module in model.head.modules() if isinstance(module, nn.Conv2d)][-1]
    with torch.no_grad():
        peak = model(crops).abs().max()
        final.weight.div_(peak)
        final.bias.div_(peak)
    return model


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    run()  # warm-up (oneDNN primitive creation, onnxruntime's first run)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.no_grad()
def time_model(name: str, model: nn.Module, path: Path, batches: list[int]) -> list[dict]:
    runtime = OnnxPoseModel(path)
    rows = []
    for batch in batches:
        images = torch.randn(batch, 3, INPUT_SIZE[1], INPUT_SIZE[0])
        repeats = 20 if batch == 1 else 3
        seconds = {"pytorch_eager": median_seconds(partial(model, images), repeats)}
        model.to(memory_format=torch.channels_last)
        images_cl = images.contiguous(memory_format=torch.channels_last)
        seconds["pytorch_channels_last"] = median_seconds(partial(model, images_cl), repeats)
        model.to(memory_format=torch.contiguous_format)
        seconds["onnxruntime"] = median_seconds(partial(runtime.run, images.numpy()), repeats)
        best = min(("pytorch_eager", "pytorch_channels_last"), key=seconds.get)
        rows.append({
            "model": name, "batch": batch,
            **{f"{mode}_ms": round(1000 * value, 2) for mode, value in seconds.items()},
            **{f"{mode}_images_per_s": round(batch / value, 1) for mode, value in seconds.items()},
            "best_pytorch": best,
            "onnxruntime_speedup_over_best_pytorch": round(seconds[best] / seconds["onnxruntime"],
                                                           2),
        })
    return rows


def predict_all(runtime: OnnxPoseModel, people: list, flip_test: bool) -> None:
    for image, boxes in people:
        runtime.predict(image, boxes, flip_test=flip_test)


def time_runtime(name: str, path: Path, people: list, repeats: int) -> list[dict]:
    runtime = OnnxPoseModel(path)
    count = sum(len(boxes) for _, boxes in people)
    rows = []
    for flip_test in (True, False):
        seconds = median_seconds(partial(predict_all, runtime, people, flip_test), repeats)
        rows.append({"model": name, "runtime_end_to_end": True, "flip_test": flip_test,
                     "people": count, "people_per_s": round(count / seconds, 1)})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["hrnet_w32", "lite_hrnet_18"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--runtime-repeats", type=int, default=3)
    args = parser.parse_args(argv)
    people = sample_people()
    crops = sample_crops(people)
    rows: list[dict] = [{"cpu_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                         "torch": torch.__version__,
                         "onnxruntime": __import__("onnxruntime").__version__}]
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models:
            model = scaled_model(name, crops)
            for half in (False, True):
                checked = scaled_model(name, crops, shift_batch_norm=True) if half else model
                path = Path(folder) / f"{name}_{'fp16' if half else 'fp32'}.onnx"
                metadata = export_metadata(name, "0" * 64, COCO_KEYPOINTS, INPUT_SIZE,
                                           model.heatmap_stride, decoding="quarter_offset",
                                           target_sigma=2.0, flip_test=True, shift_heatmap=True,
                                           decode=True, half=half, batch=None)
                export_onnx(checked, path, INPUT_SIZE, metadata=metadata, half=half)
                # float16 convolutions are slow on most CPUs: a few crops show the deviation.
                parity = check_parity(checked, path, crops[:HALF_PARITY_CROPS] if half else crops)
                rows.append({"model": name, "precision": metadata.precision,
                             "parity": parity.summary(), "parity_passed": parity.passed})
            path = Path(folder) / f"{name}_fp32.onnx"
            rows.extend(time_model(name, model, path, args.batches))
            rows.extend(time_runtime(name, path, people, args.runtime_repeats))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
