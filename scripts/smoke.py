"""``make smoke``: every experiment preset trains 2 steps and evaluates, on the CPU, on a tiny
embedded dataset. Checks that each run leaves its checkpoints and metrics behind.

The embedded dataset comes in COCO's format (COCO presets, evaluated with detector boxes), in
MPII's (the same synthetic people with 16 joints, for the MPII presets, evaluated with PCKh),
and as the non-human example (synthetic quadrupeds in AP-10K's layout, for presets with
``data.keypoints: quadruped``, evaluated with detector boxes)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from pose.config import register_configs
from pose.synthetic import generate_coco_dataset, generate_mpii_dataset

CONF_ROOT = Path(__file__).resolve().parents[1] / "conf"
CONF = CONF_ROOT / "experiment"
MPII_FOLDER = "mpii"  # the MPII-format copy of the smoke data, inside --data
QUADRUPED_FOLDER = "quadruped"  # the non-human example's smoke data, inside --data
# The detector boxes the COCO-format presets are evaluated with, per smoke dataset.
DETECTIONS = {"coco": "annotations/person_detections_val2017.json",
              "quadruped": "annotations/quadruped_detections_val2017.json"}


def preset_data(name: str) -> str:
    """Which smoke dataset experiment preset ``name`` trains on (composed as pose.train would):
    "quadruped" for its keypoint set, else its ``data.dataset`` ("coco" or "mpii")."""
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_ROOT), version_base=None):
        data = compose(config_name="train", overrides=[f"experiment={name}"]).data
    return "quadruped" if data.keypoints == "quadruped" else data.dataset


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="data/smoke", help="tiny embedded dataset folder")
    parser.add_argument("--experiments", nargs="*", default=None, help="default: every preset")
    args = parser.parse_args()
    data = Path(args.data)
    if not (data / "annotations").is_dir():
        generate_coco_dataset(data, num_train_images=8, num_val_images=3, seed=1,
                              image_size=(256, 256))
    if not (data / MPII_FOLDER / "annot").is_dir():
        generate_mpii_dataset(data / MPII_FOLDER, num_train_images=8, num_val_images=3, seed=1,
                              image_size=(256, 256))
    if not (data / QUADRUPED_FOLDER / "annotations").is_dir():
        generate_coco_dataset(data / QUADRUPED_FOLDER, num_train_images=8, num_val_images=3,
                              seed=1, image_size=(256, 256), subject="quadruped")
    roots = {"coco": data, "mpii": data / MPII_FOLDER, "quadruped": data / QUADRUPED_FOLDER}
    experiments = args.experiments or sorted(path.stem for path in CONF.glob("*.yaml"))
    failures, skipped = [], []
    with tempfile.TemporaryDirectory(prefix="pose-smoke-") as scratch:
        for name in experiments:
            try:
                dataset = preset_data(name)
            except (HydraException, OmegaConfBaseException) as error:  # unknown or broken
                print(f"{name:28s}  FAILED to compose: {str(error).splitlines()[0]}", flush=True)
                failures.append(name)
                continue
            if dataset not in roots:
                print(f"{name:28s}  skipped: no smoke data for data.dataset={dataset}",
                      flush=True)
                skipped.append(name)
                continue
            started = time.perf_counter()
            run_dir = Path(scratch) / name
            train = [sys.executable, "-m", "pose.train", f"experiment={name}",
                     f"data.root={roots[dataset]}", "train.max_steps=2", "train.batch_size=2",
                     "data.num_workers=0", "device=cpu", "eval.batch_size=8",
                     "eval.num_visualize=0", "train.num_log_images=1",
                     f"hydra.run.dir={run_dir}"]
            boxes = (["eval.use_gt_boxes=false",
                      f"eval.det_file={roots[dataset] / DETECTIONS[dataset]}"]
                     if dataset in DETECTIONS else [])  # MPII: the annotated people
            evaluate = [sys.executable, "-m", "pose.eval", f"checkpoint={run_dir / 'best.pt'}",
                        *boxes, "eval.batch_size=8", f"hydra.run.dir={run_dir / 'eval'}"]
            ok = True
            for command in (train, evaluate):
                result = subprocess.run(command, capture_output=True, text=True, check=False)
                if result.returncode != 0:
                    print(result.stdout[-3000:], result.stderr[-3000:], sep="\n")
                    ok = False
                    break
            expected = ["last.pt", "best.pt", "results.json", "metrics.json",
                        "eval/metrics.json", "eval/results.json"]
            missing = [file for file in expected if not (run_dir / file).is_file()] if ok else []
            ok = ok and not missing
            status = f"FAILED {missing or ''}"
            if ok:  # metrics.json names the metric that ranks checkpoints
                metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
                status = f"ok ({metrics['metric']} {metrics[metrics['metric']]:.3f})"
            print(f"{name:28s} {time.perf_counter() - started:6.1f} s  {status}", flush=True)
            if not ok:
                failures.append(name)
    passed = len(experiments) - len(failures) - len(skipped)
    print(f"smoke: {passed} passed, {len(failures)} failed, {len(skipped)} skipped")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
