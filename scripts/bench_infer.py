"""Speed of ``pose.infer``'s pose step, printed as JSON.

Each rate is the best of ``--rounds`` interleaved measurements (the per-round values are in
``rounds``): on a shared machine other processes only ever slow a measurement down.

* Images: end-to-end people/s (person boxes through image decoding, crops, the model with the
  flip test, keypoint decoding, rescoring and OKS-NMS; ``pose.engine.pipeline.run_on_images``)
  on a folder of the shipped COCO sample images with their detection boxes (``tests/data/
  coco_sample``), against (a) the model's own throughput at the same batch size (random crops,
  the flip test's two forward passes: the limit) and (b) a one-box-at-a-time loop (what rtmlib
  does: one crop, one forward pass with its flip, one decode per box).
* Video: frames/s of a rendered video of people walking, through ``run_on_video`` with
  tracking, with the detector run every frame (``detector.interval=1``) and every 5th. The
  detector is a torchvision model with random weights (nothing is downloaded): it costs what
  it costs, but its boxes are replaced by the rendered people's, so that the pose step sees
  the people a trained detector would find.

The pose model has random (He-initialised) weights too: speed does not depend on their values.

    python scripts/bench_infer.py                          # CPU, hrnet_w32 at 256x192
    python scripts/bench_infer.py --device cuda --model hrnet_w48 --batch-size 64
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pose.config import resolve_device
from pose.data.keypoints import COCO_KEYPOINTS
from pose.data.media import VideoFrames, read_image, resolve_input
from pose.engine.detectors import BoxesFile, TorchvisionDetector
from pose.engine.estimator import PoseEstimator
from pose.engine.pipeline import VideoSettings, run_on_images, run_on_video
from pose.engine.tracking import PoseTracker
from pose.evaluation.decode import DecodeSettings
from pose.evaluation.evaluators import EvaluationSettings
from pose.models import create_model
from pose.synthetic.video import write_moving_people_video

SAMPLE = Path(__file__).resolve().parents[1] / "tests" / "data" / "coco_sample"
DET_FILE = SAMPLE / "test_coco_det_AP_H_56.json"


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_pose_model(name: str) -> torch.nn.Module:
    """``name`` with He-initialised convolutions: activations of a trained network's magnitude.
    (The official initialisation, std 0.001, shrinks them layer by layer into subnormal floats,
    which x86 CPUs compute many times slower: timings of such a network mean nothing.)"""
    torch.manual_seed(0)
    model = create_model(name, num_joints=17)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight)
    return model


def build_estimator(args: argparse.Namespace, device: torch.device) -> PoseEstimator:
    model = random_pose_model(args.model).eval().to(device)
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    decoding = DecodeSettings(flip_pairs=COCO_KEYPOINTS.flip_pairs, flip_test=True)
    return PoseEstimator(model, args.image_size, decoding, EvaluationSettings(), COCO_KEYPOINTS,
                         device, args.batch_size)


def sample_folder(folder: Path, copies: int) -> Path:
    """``copies`` copies of the sample images and a boxes file (by ``file_name``) for them."""
    detections = json.loads(DET_FILE.read_text())
    boxes = []
    for copy in range(copies):
        for image in sorted(SAMPLE.glob("*.jpg")):
            name = f"copy{copy}_{image.name}"
            shutil.copyfile(image, folder / name)
            boxes += [{"file_name": name, "bbox": entry["bbox"], "score": entry["score"]}
                      for entry in detections if entry["image_id"] == int(image.stem)]
    (folder.parent / "boxes.json").write_text(json.dumps(boxes))
    return folder.parent / "boxes.json"


@torch.no_grad()
def model_throughput(estimator: PoseEstimator, batches: int) -> float:
    """Crops/s of the model alone at the estimator's batch size: forward and flipped forward."""
    width, height = estimator.image_size
    crops = torch.randn(estimator.batch_size, 3, height, width, device=estimator.device)
    estimator.model(crops)  # warm-up
    synchronise(estimator.device)
    started = time.perf_counter()
    for _ in range(batches):
        estimator.model(crops)
        estimator.model(crops.flip(3))
    synchronise(estimator.device)
    return batches * estimator.batch_size / (time.perf_counter() - started)


def end_to_end_rate(estimator: PoseEstimator, media, boxes: BoxesFile, num_boxes: int,
                    out: Path, batch_size: int) -> tuple[float, int]:
    """People/s (person boxes) of one ``run_on_images`` over the folder; the people kept."""
    out.mkdir()
    started = time.perf_counter()
    summary = run_on_images(estimator, media.images, boxes, out, None, batch_size, False)
    return num_boxes / (time.perf_counter() - started), summary.people


def one_box_rate(estimator: PoseEstimator, images: list, per_image: list, limit: int) -> float:
    """People/s of a loop that predicts one box at a time (crop, forward with flip, decode)."""
    count = 0
    started = time.perf_counter()
    for image, found in zip(images, per_image, strict=True):
        for box in found[:limit]:
            estimator(image, box[None])
            count += 1
    return count / (time.perf_counter() - started)


def bench_images(args: argparse.Namespace, estimator: PoseEstimator, work: Path) -> dict:
    """The three rates, measured in ``args.rounds`` interleaved rounds (best of each kept: on
    a shared machine the others' load only ever slows a round down)."""
    folder = work / "images"
    folder.mkdir()
    boxes_file = sample_folder(folder, args.copies)
    media = resolve_input(str(folder))
    boxes = BoxesFile(boxes_file, video=False)
    num_boxes = sum(len(found) for found in boxes([None] * len(media.images), media.images))
    images = [read_image(image.path, False) for image in media.images[:4]]
    per_image = boxes(images, media.images[:4])
    estimator.predict_batch(images[:1], per_image[:1])  # warm-up
    rounds: dict[str, list[float]] = {"end_to_end": [], "model": [], "one_box": []}
    for index in range(args.rounds):
        rate, people = end_to_end_rate(estimator, media, boxes, num_boxes,
                                       work / f"images_out_{index}", args.batch_size)
        rounds["end_to_end"].append(rate)
        rounds["model"].append(model_throughput(estimator, args.model_batches))
        rounds["one_box"].append(one_box_rate(estimator, images, per_image, args.one_box_limit))
    best = {name: max(values) for name, values in rounds.items()}
    return {"images": len(media.images), "person_boxes": num_boxes, "people_after_nms": people,
            "end_to_end_people_per_s": round(best["end_to_end"], 2),
            "model_forward_crops_per_s": round(best["model"], 2),
            "end_to_end_share_of_model": round(best["end_to_end"] / best["model"], 3),
            "one_box_loop_people_per_s": round(best["one_box"], 2),
            "speedup_over_one_box_loop": round(best["end_to_end"] / best["one_box"], 2),
            "rounds": {name: [round(value, 2) for value in values]
                       for name, values in rounds.items()}}


class RenderedBoxes:
    """A torchvision detector's cost with the rendered people's boxes as its answer."""

    def __init__(self, detector: TorchvisionDetector, boxes_by_frame: list[np.ndarray]) -> None:
        self.detector = detector
        self.boxes_by_frame = boxes_by_frame

    def __call__(self, images, keys):
        self.detector(images, keys)
        return [self.boxes_by_frame[int(key)] for key in keys]


def bench_video(args: argparse.Namespace, estimator: PoseEstimator, work: Path) -> dict:
    video = work / "walking.mp4"
    annotations = write_moving_people_video(video, seed=0, image_size=args.video_size,
                                            num_frames=args.video_frames, num_people=3)
    boxes_by_frame = [np.array([[*person["bbox"], 1.0] for person in people]).reshape(-1, 5)
                      for people in annotations]
    detector = TorchvisionDetector(random_detector(args.detector), estimator.device)
    boxes = RenderedBoxes(detector, boxes_by_frame)
    boxes([np.zeros((args.video_size[1], args.video_size[0], 3), np.uint8)], [0])  # warm-up
    rounds: dict[int, list[float]] = {1: [], 5: []}
    for index in range(args.rounds):
        for interval, rates in rounds.items():
            out = work / f"video_out_{interval}_{index}"
            out.mkdir()
            frames = VideoFrames(video)
            settings = VideoSettings(detector_interval=interval,
                                     tracker=PoseTracker(sigmas=COCO_KEYPOINTS.oks_sigmas,
                                                         fps=frames.fps))
            summary = run_on_video(estimator, frames, boxes, out, settings)
            rates.append(summary.inputs / summary.seconds)
    return {"detector": f"{args.detector} (random weights)", "frames": args.video_frames,
            "frame_size": list(args.video_size), "people_per_frame": 3,
            **{f"interval_{interval}_frames_per_s": round(max(rates), 2)
               for interval, rates in rounds.items()},
            "rounds": {f"interval_{interval}": [round(rate, 2) for rate in rates]
                       for interval, rates in rounds.items()}}


def random_detector(name: str) -> torch.nn.Module:
    """The torchvision detection model ``name`` with random weights (nothing downloaded)."""
    from torchvision.models import get_model

    torch.manual_seed(0)
    return get_model(name, weights=None, weights_backbone=None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="hrnet_w32")
    parser.add_argument("--image-size", type=int, nargs=2, default=(192, 256),
                        help="crop width height")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--copies", type=int, default=1, help="copies of the 4 sample images")
    parser.add_argument("--one-box-limit", type=int, default=4,
                        help="boxes per image timed in the one-box loop")
    parser.add_argument("--model-batches", type=int, default=2,
                        help="batches timed for the model's own throughput")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved measurements of each rate (the best is reported)")
    parser.add_argument("--detector", default="fasterrcnn_mobilenet_v3_large_fpn",
                        help="torchvision detection model (random weights) timed in the video")
    parser.add_argument("--video-frames", type=int, default=20)
    parser.add_argument("--video-size", type=int, nargs=2, default=(640, 480))
    parser.add_argument("--skip-video", action="store_true")
    args = parser.parse_args()
    device = resolve_device(args.device)
    estimator = build_estimator(args, device)
    report = {"device": str(device), "cpu": platform.processor() or platform.machine(),
              "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
              "model": args.model, "crop_size": list(args.image_size),
              "batch_size": args.batch_size, "flip_test": True, "precision": "fp32",
              "channels_last": args.channels_last}
    if device.type == "cuda":
        report["gpu"] = torch.cuda.get_device_name(device)
    with tempfile.TemporaryDirectory() as folder:
        report["images"] = bench_images(args, estimator, Path(folder))
        if not args.skip_video:
            report["video"] = bench_video(args, estimator, Path(folder))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
