"""``make demo``: generate the embedded dataset, train the ``demo`` experiment on the CPU,
evaluate it with detector boxes (with the preset's DARK decoding, and with the official
quarter-offset decoding for comparison), and say where the logs and pictures are.

Every step is the public command a user would type (``python -m pose.train`` / ``pose.eval``).
"""

from __future__ import annotations

import argparse
import json
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="data/demo", help="embedded dataset folder")
    parser.add_argument("--out", default=None, help="run folder (default outputs/demo/<time>)")
    parser.add_argument("overrides", nargs="*", help="extra pose.train overrides")
    args = parser.parse_args()
    started = time.perf_counter()

    data = Path(args.data)
    if not (data / "annotations").is_dir():
        print(f"generating the embedded dataset in {data} ...", flush=True)
        summary = generate_coco_dataset(data, seed=0)
        print(f"  {summary} in {time.perf_counter() - started:.0f} s", flush=True)
    run_dir = Path(args.out or f"outputs/demo/{datetime.now():%Y-%m-%d_%H-%M-%S}")

    try:
        run([sys.executable, "-m", "pose.train", "experiment=demo", f"data.root={data}",
             f"hydra.run.dir={run_dir}", *args.overrides])
        eval_dir = run_dir / "eval_detections"
        evaluate_detections = [sys.executable, "-m", "pose.eval",
                               f"checkpoint={run_dir / 'best.pt'}", "eval.use_gt_boxes=false",
                               f"eval.det_file={data / DETECTIONS}"]
        run([*evaluate_detections, f"hydra.run.dir={eval_dir}"])
        official_dir = run_dir / "eval_detections_quarter_offset"
        run([*evaluate_detections, "eval.post_process=quarter_offset", "eval.num_visualize=0",
             f"hydra.run.dir={official_dir}"])
    except subprocess.CalledProcessError as error:
        print(f"demo: a step failed (exit {error.returncode}); see its output above",
              file=sys.stderr)
        return 1

    gt_metrics = json.loads((run_dir / "metrics.json").read_text())
    det_metrics = json.loads((eval_dir / "metrics.json").read_text())
    official_metrics = json.loads((official_dir / "metrics.json").read_text())
    minutes = (time.perf_counter() - started) / 60
    print(f"\n=== demo finished in {minutes:.1f} min ===")
    print(f"val AP with detector boxes, flip test and DARK decoding ({eval_dir / 'metrics.json'}):")
    print(format_metrics_table(det_metrics))
    print(f"the same with the official quarter-offset decoding "
          f"({official_dir / 'metrics.json'}): {official_metrics['AP']:.3f}")
    print(f"val AP with ground-truth boxes ({run_dir / 'metrics.json'}): {gt_metrics['AP']:.3f}")
    print(f"checkpoints:      {run_dir / 'best.pt'}, {run_dir / 'last.pt'}")
    print(f"TensorBoard logs: tensorboard --logdir {run_dir / 'tensorboard'}")
    print(f"predicted skeletons on val images: {eval_dir / 'predictions.jpg'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
