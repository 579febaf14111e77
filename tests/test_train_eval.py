"""End to end through the public commands: pose.train then pose.eval on a tiny generated dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pose.evaluation import METRIC_NAMES
from pose.evaluation.pck import PCK_NAMES

# metrics.json: COCO AP's ten stats (the set has sigmas), PCK, EPE, and the ranking metric.
GT_BOX_METRICS = [*METRIC_NAMES, *PCK_NAMES, "EPE", "metric"]

# Every test here starts pose.train or pose.eval processes.
pytestmark = pytest.mark.slow

DETECTIONS = "annotations/person_detections_val2017.json"


@pytest.fixture(scope="module")
def dataset(synthetic_coco) -> Path:
    return synthetic_coco(num_train_images=6, num_val_images=3, seed=3,
                          image_size=(192, 192))


@pytest.fixture(scope="module")
def trained_run(dataset, tmp_path_factory, run_module) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "demo"
    result = run_module("pose.train", "experiment=demo", f"data.root={dataset}",
                        "train.max_steps=2",
                        "train.batch_size=4", "data.num_workers=0", "device=cpu",
                        f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def test_training_writes_checkpoints_logs_and_metrics(trained_run, dataset, pycocotools_eval):
    for name in ("last.pt", "best.pt", "results.json", "metrics.json", "config.yaml", "log.txt"):
        assert (trained_run / name).is_file(), name
    assert list((trained_run / "tensorboard").glob("events.out.tfevents.*"))
    checkpoint = torch.load(trained_run / "last.pt", map_location="cpu", weights_only=False)
    assert checkpoint["step"] == 2
    assert checkpoint["config"]["data"]["root"] == str(dataset)
    assert checkpoint["config"]["model"]["name"] == "hrnet_w16_nano"
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert list(metrics) == GT_BOX_METRICS and metrics.pop("metric") == "AP"
    assert metrics.pop("EPE") >= 0
    assert all(-1.0 <= value <= 1.0 for value in metrics.values())
    # metrics.json is pycocotools' verdict on results.json against the val annotations.
    results = json.loads((trained_run / "results.json").read_text())
    assert results and all(len(entry["keypoints"]) == 17 * 3 for entry in results)
    recomputed = pycocotools_eval(dataset / "annotations" / "person_keypoints_val2017.json",
                                  results).stats
    assert dict(zip(METRIC_NAMES, recomputed.tolist())) == pytest.approx(
        {name: metrics[name] for name in METRIC_NAMES}, abs=1e-12)


def test_eval_with_detector_boxes_needs_only_the_checkpoint(trained_run, dataset, run_module):
    out_dir = trained_run / "eval_det"
    result = run_module("pose.eval", f"checkpoint={trained_run / 'best.pt'}",
                        "eval.use_gt_boxes=false",
                        f"eval.det_file={dataset / DETECTIONS}", "eval.flip_test=false",
                        f"hydra.run.dir={out_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| AP" in result.stdout
    metrics = json.loads((out_dir / "metrics.json").read_text())
    # Detector boxes: also the people no detection matched.
    assert list(metrics) == [*GT_BOX_METRICS[:-1], "misses", "metric"]
    results = json.loads((out_dir / "results.json").read_text())
    detections = json.loads((dataset / DETECTIONS).read_text())
    detected_images = {entry["image_id"] for entry in detections}
    assert {entry["image_id"] for entry in results} <= detected_images
    assert (out_dir / "predictions.jpg").is_file()

    again = run_module("pose.eval", f"checkpoint={trained_run / 'best.pt'}",
                       f"hydra.run.dir={out_dir}")
    assert again.returncode == 2 and "already holds an evaluation" in again.stderr
    assert json.loads((out_dir / "metrics.json").read_text()) == metrics


def test_an_existing_run_is_never_overwritten(trained_run, dataset, run_module):
    before = (trained_run / "last.pt").read_bytes()
    result = run_module("pose.train", "experiment=demo", f"data.root={dataset}",
                        "train.max_steps=1",
                        f"hydra.run.dir={trained_run}")
    assert result.returncode == 2
    assert "already holds a training run" in result.stderr
    assert (trained_run / "last.pt").read_bytes() == before


def test_experiment_is_refused_for_a_checkpoint_with_its_own_config(trained_run, tmp_path,
                                                                     run_module):
    result = run_module("pose.eval", f"checkpoint={trained_run / 'best.pt'}", "experiment=demo",
                        f"hydra.run.dir={tmp_path / 'eval'}")
    assert result.returncode == 2
    assert "experiment=demo: a pose checkpoint's config already fixes its experiment" in (
        result.stderr)
    assert "Traceback" not in result.stderr


def test_checkpoint_of_another_architecture_is_named(trained_run, tmp_path, run_module):
    result = run_module("pose.eval", f"checkpoint={trained_run / 'best.pt'}", "model=hrnet_w8_tiny",
                        f"hydra.run.dir={tmp_path / 'eval'}")
    assert result.returncode == 2
    assert "trained as hrnet_w16_nano" in result.stderr
    assert "do not fit the model hrnet_w8_tiny" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("overrides", "message"), [
    (["data.root=/no/such/folder"], "COCO root /no/such/folder does not exist"),
    (["train.epoch=3"], "Key 'epoch' not in 'TrainConfig'"),
    (["experiment=no_such_preset"], "Could not find 'experiment/no_such_preset'"),
    (["eval.post_process=darkk"], ("eval.post_process='darkk' is not known: expected one of "
                                   "quarter_offset, dark, udp, none")),
    (["data.codec=udp"], ("data.codec=udp does not go with eval.post_process=dark: "
                          "data.codec=udp needs eval.post_process=udp")),
])
def test_bad_input_gets_one_clear_message(overrides, message, tmp_path, run_module):
    result = run_module("pose.train", "experiment=demo", *overrides,
                        f"hydra.run.dir={tmp_path / 'r'}")
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_eval_without_checkpoint_says_so(run_module):
    result = run_module("pose.eval")
    assert result.returncode != 0 and "checkpoint=<path> is required" in result.stderr


def test_corrupt_training_image_is_skipped_and_counted(dataset, tmp_path, run_module):
    import shutil

    copy = tmp_path / "coco"
    shutil.copytree(dataset, copy)
    victim = min((copy / "train2017").glob("*.jpg"))
    victim.write_bytes(b"this is not a jpeg")
    result = run_module("pose.train", "experiment=demo", f"data.root={copy}", "train.epochs=1",
                        "train.batch_size=64", "data.num_workers=0", "device=cpu",
                        "eval.flip_test=false",
                        f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 0, result.stderr[-3000:]
    annotations = json.loads((copy / "annotations/person_keypoints_train2017.json").read_text())
    image_id = next(image["id"] for image in annotations["images"]
                    if image["file_name"] == victim.name)
    people = sum(1 for person in annotations["annotations"]
                 if person["image_id"] == image_id and person["num_keypoints"] > 0)
    assert f"cannot read image {victim}" in result.stderr
    assert f"skipped {people} training samples whose image could not be read" in result.stderr
