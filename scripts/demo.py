"""``make demo``: generate the embedded dataset, train the ``demo`` experiment on the CPU,
evaluate it with detector boxes (with the preset's DARK decoding, and with the official
quarter-offset decoding for comparison), and say where the logs and pictures are, with the wall
time of each stage.

Every step is the public command a user would type (``python -m pose.train`` / ``pose.eval``).
Each stage is its own function, so that later stages can be appended to ``main``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from pose.evaluation import format_metrics_table
from pose.synthetic import generate_coco_dataset

DETECTIONS = "annotations/person_detections_val2017.json"


def run(command: list[str]) -> None:
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def generate_stage(data: Path) -> None:
    """The embedded dataset in ``data``, unless it is there already."""
    if (data / "annotations").is_dir():
        print(f"using the dataset in {data}", flush=True)
        return
    print(f"generating the embedded dataset in {data} ...", flush=True)
    print(f"  {generate_coco_dataset(data, seed=0)}", flush=True)


def train_stage(data: Path, run_dir: Path, overrides: list[str]) -> None:
    """``pose.train experiment=demo`` into ``run_dir`` (its final evaluation uses GT boxes)."""
    run([sys.executable, "-m", "pose.train", "experiment=demo", f"data.root={data}",
         f"hydra.run.dir={run_dir}", *overrides])


def evaluate_stage(data: Path, run_dir: Path) -> tuple[Path, Path]:
    """``pose.eval`` of ``best.pt`` with detector boxes, DARK decoding (the preset's) and the
    official quarter offset; returns their two output folders."""
    eval_dir = run_dir / "eval_detections"
    evaluate_detections = [sys.executable, "-m", "pose.eval",
                           f"checkpoint={run_dir / 'best.pt'}", "eval.use_gt_boxes=false",
                           f"eval.det_file={data / DETECTIONS}"]
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
    total = sum(stage_seconds.values())
    stages = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in stage_seconds.items())
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"\n=== demo finished in {total / 60:.1f} min ({stages}; load average {load}) ===")
    print(f"val AP with detector boxes, flip test and DARK decoding ({eval_dir / 'metrics.json'}):")
    print(format_metrics_table(det_metrics))
    print(f"the same with the official quarter-offset decoding "
          f"({official_dir / 'metrics.json'}): {official_metrics['AP']:.3f}")
    print(f"val AP with ground-truth boxes ({run_dir / 'metrics.json'}): {gt_metrics['AP']:.3f}")
    print(f"checkpoints:      {run_dir / 'best.pt'}, {run_dir / 'last.pt'}")
    print(f"TensorBoard logs: tensorboard --logdir {run_dir / 'tensorboard'}")
    print(f"predicted skeletons on val images: {eval_dir / 'predictions.jpg'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="data/demo", help="embedded dataset folder")
    parser.add_argument("--out", default=None, help="run folder (default outputs/demo/<time>)")
    parser.add_argument("overrides", nargs="*", help="extra pose.train overrides")
    args = parser.parse_args()
    data = Path(args.data)
    run_dir = Path(args.out or f"outputs/demo/{datetime.now():%Y-%m-%d_%H-%M-%S}")
    stage_seconds: dict[str, float] = {}

    def timed(name: str, stage, *stage_args):
        started = time.perf_counter()
        result = stage(*stage_args)
        stage_seconds[name] = time.perf_counter() - started
        print(f"--- {name}: {stage_seconds[name]:.0f} s", flush=True)
        return result

    try:
        timed("generation", generate_stage, data)
        timed("training", train_stage, data, run_dir, args.overrides)
        eval_dir, official_dir = timed("evaluation", evaluate_stage, data, run_dir)
    except subprocess.CalledProcessError as error:
        print(f"demo: a step failed (exit {error.returncode}); see its output above",
              file=sys.stderr)
        return 1
    print_report(run_dir, eval_dir, official_dir, stage_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
