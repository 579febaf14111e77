"""``make demo``: generate the embedded dataset, train the ``demo`` experiment on the CPU,
evaluate it with detector boxes (with the preset's DARK decoding, and with the official
quarter-offset decoding for comparison), run the trained model with ``pose.infer`` on a few val
images and on a rendered video of people walking, and say where the logs and pictures are, with
the wall time of each stage.
``make demo-quadruped`` (``--subject quadruped``) trains and evaluates the embedded non-human
example the same way: synthetic quadrupeds in AP-10K's layout, ``experiment=demo_quadruped``.

Every step is the public command a user would type (``python -m pose.train`` / ``pose.eval`` /
``pose.infer``). Each stage is its own function, timed by ``main``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from hydra.errors import HydraException

from pose.config import compose_config
from pose.evaluation import format_metrics_table
from pose.evaluation.pck import PCK_NAMES
from pose.synthetic import SUBJECTS, generate_coco_dataset

# Per subject: the experiment preset, the dataset folder, train and val image counts.
DEMOS = {"person": ("demo", "data/demo", 2000, 300),
         "quadruped": ("demo_quadruped", "data/demo_quadruped", 800, 150)}


def run(command: list[str], environment: dict[str, str] | None = None) -> None:
    """Run ``command`` (printed first, with the ``environment`` it adds); raise if it fails."""
    added = " ".join(f"{name}={value}" for name, value in (environment or {}).items())
    print("$", *([added] if added else []), " ".join(command), flush=True)
    subprocess.run(command, check=True, env={**os.environ, **(environment or {})})


def generate_stage(data: Path, subject: str) -> None:
    """The embedded dataset of ``subject`` in ``data``, unless it is there already."""
    if (data / "annotations").is_dir():
        print(f"using the dataset in {data}", flush=True)
        return
    _, _, num_train, num_val = DEMOS[subject]
    print(f"generating the embedded dataset in {data} ...", flush=True)
    summary = generate_coco_dataset(data, num_train_images=num_train, num_val_images=num_val,
                                    seed=0, subject=subject)
    print(f"  {summary}", flush=True)


def train_launch(experiment: str, overrides: list[str]) -> tuple[list[str], dict[str, str]]:
    """How the demo starts ``pose.train``: the command's start and the environment it adds.

    On a CPU of two or more cores, two processes under torchrun (gloo) with half the cores and
    half the preset's batch each: the same people per optimizer step, and each process loads
    its half-batch on its own core. One process of two threads loads on one core while the other
    waits: on two emulated AVX2 cores it trained w16_tiny's 10 epochs in 419 s against 383 s for
    two processes, at the same AP. One process as typed with a GPU, on one core, or when the
    command line sets the batch size or the device.
    """
    single = ([sys.executable, "-m", "pose.train"], {})
    cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
             else os.cpu_count() or 1)
    if (torch.cuda.is_available() or cores < 2
            or any(item.startswith(("train.batch_size=", "device=")) for item in overrides)):
        return single
    config_overrides = [item for item in overrides if not item.startswith("hydra.")]
    try:
        preset = compose_config("train", [f"experiment={experiment}", *config_overrides])
    except HydraException:  # a wrong key: pose.train names it in one line
        return single
    if preset.train.batch_size % 2:
        return single
    print(f"training as two processes (torchrun) of {cores // 2} thread(s) and "
          f"{preset.train.batch_size // 2} people per step each", flush=True)
    return ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
             "-m", "pose.train", f"train.batch_size={preset.train.batch_size // 2}"],
            {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(cores // 2))})


def train_stage(experiment: str, data: Path, run_dir: Path, overrides: list[str]) -> None:
    """``pose.train experiment=<experiment>`` into ``run_dir`` (its final evaluation uses GT
    boxes), launched as :func:`train_launch` says."""
    launch, environment = train_launch(experiment, overrides)
    run([*launch, f"experiment={experiment}", f"data.root={data}", f"hydra.run.dir={run_dir}",
         *overrides], environment)


def evaluate_stage(detections: Path, run_dir: Path) -> tuple[Path, Path]:
    """``pose.eval`` of ``best.pt`` with detector boxes, DARK decoding (the preset's) and the
    official quarter offset; returns their two output folders."""
    eval_dir = run_dir / "eval_detections"
    evaluate_detections = [sys.executable, "-m", "pose.eval",
                           f"checkpoint={run_dir / 'best.pt'}", "eval.use_gt_boxes=false",
                           f"eval.det_file={detections}"]
    run([*evaluate_detections, f"hydra.run.dir={eval_dir}"])
    official_dir = run_dir / "eval_detections_quarter_offset"
    run([*evaluate_detections, "eval.post_process=quarter_offset", "eval.num_visualize=0",
         f"hydra.run.dir={official_dir}"])
    return eval_dir, official_dir


def print_report(run_dir: Path, eval_dir: Path, official_dir: Path,
                 stage_seconds: dict[str, float]) -> None:
    """The AP table, the official decoding's AP beside it, the stage times and the outputs."""
    gt_metrics = json.loads((run_dir / "metrics.json").read_text())
    det_metrics = json.loads((eval_dir / "metrics.json").read_text())
    official_metrics = json.loads((official_dir / "metrics.json").read_text())
    # The demo's budget covers generation, training and evaluation; inference comes after.
    budget = sum(seconds for name, seconds in stage_seconds.items() if name != "inference")
    stages = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in stage_seconds.items())
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"\n=== demo trained and evaluated in {budget / 60:.1f} min ({stages}; "
          f"load average {load}) ===")
    print(f"val AP with detector boxes, flip test and DARK decoding ({eval_dir / 'metrics.json'}):")
    print(format_metrics_table(det_metrics))
    print(format_metrics_table(det_metrics, (*PCK_NAMES, "EPE", "misses")))
    print(f"the same with the official quarter-offset decoding "
          f"({official_dir / 'metrics.json'}): {official_metrics['AP']:.3f}")
    print(f"val AP with ground-truth boxes ({run_dir / 'metrics.json'}): {gt_metrics['AP']:.3f}")
    print(f"checkpoints:      {run_dir / 'best.pt'}, {run_dir / 'last.pt'}")
    print(f"TensorBoard logs: tensorboard --logdir {run_dir / 'tensorboard'}")
    print(f"predicted skeletons on val images: {eval_dir / 'predictions.jpg'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subject", choices=sorted(DEMOS), default="person",
                        help="person (experiment=demo) or quadruped (experiment=demo_quadruped)")
    parser.add_argument("--data", default=None,
                        help="embedded dataset folder (default data/demo, data/demo_quadruped)")
    parser.add_argument("--out", default=None,
                        help="run folder (default outputs/<experiment>/<time>)")
    parser.add_argument("overrides", nargs="*", help="extra pose.train overrides")
    args = parser.parse_args()
    experiment, default_data, _, _ = DEMOS[args.subject]
    data = Path(args.data or default_data)
    run_dir = Path(args.out or f"outputs/{experiment}/{datetime.now():%Y-%m-%d_%H-%M-%S}")
    detections = data / "annotations" / SUBJECTS[args.subject].detections_file
    stage_seconds: dict[str, float] = {}

    def timed(name: str, stage: Callable[..., Any], *stage_args: Any) -> Any:
        started = time.perf_counter()
        result = stage(*stage_args)
        stage_seconds[name] = time.perf_counter() - started
        print(f"--- {name}: {stage_seconds[name]:.0f} s", flush=True)
        return result

    try:
        timed("generation", generate_stage, data, args.subject)
        timed("training", train_stage, experiment, data, run_dir, args.overrides)
        eval_dir, official_dir = timed("evaluation", evaluate_stage, detections, run_dir)
        # pose.infer's stage runs the people model on pictures and a video of people.
        inference_lines = (timed("inference", inference_stage, run_dir, data, detections)
                           if args.subject == "person" else [])
    except subprocess.CalledProcessError as error:
        print(f"demo: a step failed (exit {error.returncode}); see its output above",
              file=sys.stderr)
        return 1
    print_report(run_dir, eval_dir, official_dir, stage_seconds)
    print("\n".join(inference_lines))
    return 0


# ------------------------------------------------------------------------------------------------
# Stage: pose.infer on pictures and a video (the command a user runs on their own files). Kept
# apart from the training stages above, whose schedule may change without touching it.

INFER_IMAGES = 6  # val images the demo runs pose.infer on
VIDEO_FRAMES = 48  # the rendered video: 4 s at 12 frames/s, 3 people walking


def inference_inputs(run_dir: Path, data: Path, detections_file: Path
                     ) -> tuple[Path, Path, Path, Path]:
    """A folder of the first val images with their embedded detection boxes, and a rendered
    video of people walking with simulated detector boxes per frame (nothing is downloaded)."""
    from pose.synthetic.video import write_moving_people_video

    inputs = run_dir / "infer_inputs"
    images = inputs / "images"
    images.mkdir(parents=True, exist_ok=True)
    chosen = sorted((data / "val2017").glob("*.jpg"))[:INFER_IMAGES]
    for path in chosen:
        shutil.copyfile(path, images / path.name)
    ids = {int(path.stem) for path in chosen}
    detections = json.loads(detections_file.read_text())
    image_boxes = inputs / "image_boxes.json"
    image_boxes.write_text(json.dumps([entry for entry in detections
                                       if entry["image_id"] in ids]))
    video, video_boxes = inputs / "walking.mp4", inputs / "walking_boxes.json"
    write_moving_people_video(video, seed=0, image_size=(320, 240), num_frames=VIDEO_FRAMES,
                              num_people=3, fps=12, boxes_path=video_boxes)
    return images, image_boxes, video, video_boxes


def inference_stage(run_dir: Path, data: Path, detections_file: Path) -> list[str]:
    """Run ``pose.infer`` with the trained checkpoint on the images and the video; the lines
    saying where the overlays are."""
    print("\n=== pose.infer on images and a video ===", flush=True)
    images, image_boxes, video, video_boxes = inference_inputs(run_dir, data,
                                                                 detections_file)
    infer = [sys.executable, "-m", "pose.infer", f"checkpoint={run_dir / 'best.pt'}"]
    images_out, video_out = run_dir / "infer_images", run_dir / "infer_video"
    run([*infer, f"input={images}", f"boxes={image_boxes}", f"hydra.run.dir={images_out}"])
    run([*infer, f"input={video}", f"boxes={video_boxes}", "smooth.method=one_euro",
         f"hydra.run.dir={video_out}"])
    video_line = (f"pose.infer on a rendered video (tracks, One-Euro smoothing): "
                  f"{video_out / video.name} (predictions: {video_out / 'predictions.json'})")
    return [f"pose.infer overlays on val images: {images_out / 'vis'}", video_line]


if __name__ == "__main__":
    sys.exit(main())
