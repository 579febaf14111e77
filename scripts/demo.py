"""``make demo``: generate the embedded dataset, train the ``demo`` experiment on the CPU,
evaluate it with detector boxes (with the preset's DARK decoding, and with the official
quarter-offset decoding for comparison), and say where the logs and pictures are.
``make demo-quadruped`` (``--subject quadruped``) does the same for the embedded non-human
example: synthetic quadrupeds in AP-10K's layout, ``experiment=demo_quadruped``.

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
from pose.evaluation.pck import PCK_NAMES
from pose.synthetic import SUBJECTS, generate_coco_dataset

# Per subject: the experiment preset, the dataset folder, train and val image counts.
DEMOS = {"person": ("demo", "data/demo", 2000, 300),
         "quadruped": ("demo_quadruped", "data/demo_quadruped", 800, 150)}


def run(command: list[str]) -> None:
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True)


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
    started = time.perf_counter()

    experiment, default_data, num_train, num_val = DEMOS[args.subject]
    data = Path(args.data or default_data)
    if not (data / "annotations").is_dir():
        print(f"generating the embedded dataset in {data} ...", flush=True)
        summary = generate_coco_dataset(data, num_train_images=num_train,
                                        num_val_images=num_val, seed=0, subject=args.subject)
        print(f"  {summary} in {time.perf_counter() - started:.0f} s", flush=True)
    run_dir = Path(args.out or f"outputs/{experiment}/{datetime.now():%Y-%m-%d_%H-%M-%S}")
    detections = data / "annotations" / SUBJECTS[args.subject].detections_file

    try:
        run([sys.executable, "-m", "pose.train", f"experiment={experiment}", f"data.root={data}",
             f"hydra.run.dir={run_dir}", *args.overrides])
        eval_dir = run_dir / "eval_detections"
        evaluate_detections = [sys.executable, "-m", "pose.eval",
                               f"checkpoint={run_dir / 'best.pt'}", "eval.use_gt_boxes=false",
                               f"eval.det_file={detections}"]
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
    print(format_metrics_table(det_metrics, (*PCK_NAMES, "EPE", "misses")))
    print(f"the same with the official quarter-offset decoding "
          f"({official_dir / 'metrics.json'}): {official_metrics['AP']:.3f}")
    print(f"val AP with ground-truth boxes ({run_dir / 'metrics.json'}): {gt_metrics['AP']:.3f}")
    print(f"checkpoints:      {run_dir / 'best.pt'}, {run_dir / 'last.pt'}")
    print(f"TensorBoard logs: tensorboard --logdir {run_dir / 'tensorboard'}")
    print(f"predicted skeletons on val images: {eval_dir / 'predictions.jpg'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
