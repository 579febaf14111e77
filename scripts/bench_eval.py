"""COCO keypoint evaluation speed: ours (torch, CPU and CUDA) against pycocotools, xtcocotools and
faster-coco-eval, on a generated COCO-val-sized set. Prints JSON and checks the stats agree.

    python scripts/bench_eval.py [--images 5000] [--repeats 3] [--out bench_eval.json]

The set (pose.synthetic.results) has 5,000 images, about 6,500 people with keypoints
plus crowd regions and annotations without keypoints (~11k annotations, as COCO val2017), and
about 65k results. Every evaluator gets the same parsed input: the ground truth as a loaded dict
(each library's COCO object is built from it outside the timing, as a loaded val set is) and the
results as a list of dicts, both as ``json.load`` gives them. Timed is what it takes from the
results list to the ten stats:
pycocotools' ``loadRes``, ``evaluate``, ``accumulate`` and ``summarize``; ours from the result
dicts (``evaluate_coco_keypoints``, ground truth parsing included and, separately, with the
ground truth parsed once) and from tensors (``evaluate_coco_keypoints_tensors``, what the
evaluation loop hands over). A comparator that is not installed is skipped, saying so.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pose.evaluation import (
    METRIC_NAMES,
    evaluate_coco_keypoints,
    evaluate_coco_keypoints_tensors,
    load_coco_keypoint_ground_truth,
)
from pose.synthetic import RandomSetParams, random_keypoint_eval_set

AGREEMENT = 1e-9  # largest allowed |ours - pycocotools| on any stat


def coco_val_sized_set(num_images: int, seed: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """About 2.2 annotations per image (60% with keypoints, 2% crowd) and 13 results per image
    (people found, near-duplicates, and many low-scoring false positives)."""
    params = RandomSetParams(
        num_images=num_images, mean_people=2.6, empty_image_share=0.15, crowd_share=0.02,
        zero_keypoint_share=0.38, drop_share=0.1, duplicate_share=0.3,
        mean_false_positives=9.3, crowded_image_share=0.01, no_result_image_share=0.02,
        inconsistent_counts=False)
    return random_keypoint_eval_set(seed, params)


def timed(function: Callable[[], Any], repeats: int, synchronize: bool = False
          ) -> tuple[float, Any]:
    """Best wall time of ``repeats`` calls (seconds) and the last call's value."""
    best, value = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        value = function()
        if synchronize:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return best, value


def run_cocoeval(coco_class, cocoeval_class, gt: dict, results: list[dict], repeats: int,
                 official_use_segm: bool = True) -> tuple[float, list[float]]:
    """Time a pycocotools-style library from the results list to the stats
    (``official_use_segm``: set ``params.useSegm = None`` as the official HRNet does; in
    faster-coco-eval that setter would switch to box evaluation)."""
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = coco_class()
        ground_truth.dataset = copy.deepcopy(gt)
        ground_truth.createIndex()
    best, stats = float("inf"), None
    for _ in range(repeats):
        # loadRes writes into the dicts it gets: fresh shallow copies each time, made untimed.
        copies = [dict(entry) for entry in results]
        with contextlib.redirect_stdout(io.StringIO()):
            started = time.perf_counter()
            detections = ground_truth.loadRes(copies)
            evaluator = cocoeval_class(ground_truth, detections, "keypoints")
            if official_use_segm:
                evaluator.params.useSegm = None
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
            best = min(best, time.perf_counter() - started)
        stats = [float(value) for value in evaluator.stats[:len(METRIC_NAMES)]]
    return best, stats


def comparators() -> dict[str, Callable[[dict, list, int], tuple[float, list[float]]]]:
    """The installed reference libraries, each as a timing function; a line on stderr for each
    missing one."""
    found = {}
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        found["pycocotools"] = lambda gt, results, repeats: run_cocoeval(
            COCO, COCOeval, gt, results, repeats)
    except ImportError:
        print("bench_eval: pycocotools is not installed: skipped", file=sys.stderr)
    try:
        from xtcocotools.coco import COCO as XtCOCO
        from xtcocotools.cocoeval import COCOeval as XtCOCOeval

        from pose.data.keypoints import COCO_KEYPOINTS

        # As mmpose calls it, with the sigmas passed.
        found["xtcocotools"] = lambda gt, results, repeats: run_cocoeval(
            XtCOCO, lambda g, d, kind: XtCOCOeval(g, d, kind, np.array(COCO_KEYPOINTS.oks_sigmas)),
            gt, results, repeats)
    except ImportError:
        print("bench_eval: xtcocotools is not installed: skipped", file=sys.stderr)
    try:
        from faster_coco_eval import COCO as FastCOCO
        from faster_coco_eval import COCOeval_faster

        found["faster_coco_eval"] = lambda gt, results, repeats: run_cocoeval(
            FastCOCO, lambda g, d, kind: COCOeval_faster(g, d, kind,
                                                         print_function=lambda *_: None),
            gt, results, repeats, official_use_segm=False)
    except ImportError:
        print("bench_eval: faster-coco-eval is not installed (pip install -e '.[dev]'): "
              "skipped", file=sys.stderr)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="ours: best of this many runs")
    parser.add_argument("--reference-repeats", type=int, default=1,
                        help="the reference libraries: best of this many runs")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads for ours (default: torch's own choice)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    started = time.perf_counter()
    gt, results = coco_val_sized_set(args.images, args.seed)
    # As a ground-truth file and a results file parse them (json.load): the objects then lie
    # in memory as they do for every user, not scattered by the generator.
    gt, results = json.loads(json.dumps(gt)), json.loads(json.dumps(results))
    generation_s = time.perf_counter() - started
    annotations = gt["annotations"]
    report: dict[str, Any] = {
        "set": {
            "images": len(gt["images"]), "annotations": len(annotations),
            "people_with_keypoints": sum(1 for a in annotations
                                         if a["num_keypoints"] > 0 and not a["iscrowd"]),
            "crowd": sum(1 for a in annotations if a["iscrowd"]),
            "zero_keypoint": sum(1 for a in annotations
                                 if a["num_keypoints"] == 0 and not a["iscrowd"]),
            "results": len(results), "generation_s": round(generation_s, 2),
        },
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads(),
                    "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
    }
    seconds: dict[str, float] = {}
    stats: dict[str, list[float]] = {}

    ground_truth = load_coco_keypoint_ground_truth(gt)
    keypoints = torch.tensor([entry["keypoints"] for entry in results],
                             dtype=torch.float64).reshape(len(results), -1, 3)
    scores = torch.tensor([entry["score"] for entry in results], dtype=torch.float64)
    image_ids = torch.tensor([entry["image_id"] for entry in results])
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        sync = device == "cuda"
        if sync:  # warm up CUDA (context, kernels) outside the timing
            evaluate_coco_keypoints_tensors(ground_truth, image_ids, keypoints, scores,
                                            device=device)
        seconds[f"ours_{device}_dicts"], value = timed(
            lambda device=device: evaluate_coco_keypoints(gt, results, device=device),
            args.repeats, sync)
        stats[f"ours_{device}_dicts"] = [value[name] for name in METRIC_NAMES]
        seconds[f"ours_{device}_dicts_parsed_gt"], value = timed(
            lambda device=device: evaluate_coco_keypoints(ground_truth, results, device=device),
            args.repeats, sync)
        stats[f"ours_{device}_dicts_parsed_gt"] = [value[name] for name in METRIC_NAMES]
        seconds[f"ours_{device}_tensors"], value = timed(
            lambda device=device: evaluate_coco_keypoints_tensors(
                ground_truth, image_ids, keypoints, scores, device=device),
            args.repeats, sync)
        stats[f"ours_{device}_tensors"] = [value[name] for name in METRIC_NAMES]
    for name, run in comparators().items():
        seconds[name], stats[name] = run(gt, results, args.reference_repeats)

    reference = stats.get("pycocotools")
    report["seconds"] = {name: round(value, 4) for name, value in seconds.items()}
    if reference is not None:
        report["speedup_vs_pycocotools"] = {
            name: round(seconds["pycocotools"] / value, 1)
            for name, value in seconds.items() if name != "pycocotools"}
        report["max_abs_diff_vs_pycocotools"] = {
            name: float(np.max(np.abs(np.subtract(values, reference))))
            for name, values in stats.items() if name != "pycocotools"}
    report["stats"] = dict(zip(METRIC_NAMES, stats["ours_cpu_dicts"]))
    if reference is not None:
        report["agree_with_pycocotools"] = {
            name: report["max_abs_diff_vs_pycocotools"][name] <= AGREEMENT
            for name in stats if name != "pycocotools"}
    ours_agree = reference is None or all(
        agree for name, agree in report["agree_with_pycocotools"].items()
        if name.startswith("ours_"))
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0 if ours_agree else 1


if __name__ == "__main__":
    sys.exit(main())
