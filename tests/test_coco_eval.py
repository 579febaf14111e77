"""COCO results (rescoring + OKS-NMS) and pycocotools evaluation against the official HRNet."""

from __future__ import annotations

import filecmp
import json

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO

from pose.data.keypoints import COCO_KEYPOINTS
from pose.evaluation.coco import (
    METRIC_NAMES,
    coco_results,
    format_metrics_table,
    pycocotools_keypoint_eval,
    pycocotools_keypoint_stats,
)

# Official name_value keys in METRIC_NAMES order.
OFFICIAL_NAMES = ("AP", "Ap .5", "AP .75", "AP (M)", "AP (L)",
                  "AR", "AR .5", "AR .75", "AR (M)", "AR (L)")


@pytest.fixture(scope="module")
def gt_path(coco_sample_dir):
    return coco_sample_dir / "test_coco.json"


def test_sample_gt_is_the_fixture_gt(reference_dir, gt_path):
    assert filecmp.cmp(gt_path, reference_dir / "coco" / "eval_mmpose4" /
                       "gt_person_keypoints.json", shallow=False)


@pytest.mark.parametrize("noise", ["small", "medium", "large"])
def test_stats_equal_official_pycocotools(reference_dir, gt_path, noise):
    eval_dir = reference_dir / "coco" / "eval_mmpose4"
    with (eval_dir / "stats.json").open() as handle:
        expected = json.load(handle)["results"][f"{noise}_noise"]["pycocotools_stats"]
    results_path = eval_dir / f"results_{noise}_noise.json"
    evaluation = pycocotools_keypoint_eval(gt_path, results_path)
    assert list(evaluation.stats) == list(METRIC_NAMES)
    assert [evaluation.stats[name] for name in METRIC_NAMES] == expected
    # Same numbers from a list of dicts, a loaded COCO object and explicit COCO sigmas.
    with results_path.open() as handle:
        results = json.load(handle)
    snapshot = json.dumps(results)
    stats = pycocotools_keypoint_stats(COCO(str(gt_path)), results,
                                       sigmas=COCO_KEYPOINTS.oks_sigmas)
    assert [stats[name] for name in METRIC_NAMES] == expected
    assert json.dumps(results) == snapshot  # the caller's dicts are left alone
    # The printed summary is captured and is the official one's tail.
    official_summary = (eval_dir / f"summarize_{noise}_noise_pycocotools.txt").read_text()
    summary_lines = [line for line in official_summary.splitlines() if "Average" in line]
    assert len(summary_lines) == 10
    for line in summary_lines:
        assert line in evaluation.summary


def test_stats_do_not_print(gt_path, reference_dir, capsys):
    pycocotools_keypoint_stats(gt_path, reference_dir / "coco" / "eval_mmpose4" /
                               "results_small_noise.json")
    assert capsys.readouterr().out == ""


def _e2e_inputs(reference_dir):
    inputs = np.load(reference_dir / "coco" / "e2e_evaluate_mmpose4" / "inputs.npz")
    preds, boxes = inputs["all_preds"], inputs["all_boxes"]
    # The official scales are float32 (the box area column is their float32 product).
    scales = boxes[:, 2:4].astype(np.float32)
    np.testing.assert_array_equal(np.prod(scales * np.float32(200), axis=1), boxes[:, 4])
    return {
        "keypoints": torch.from_numpy(preds[:, :, :2]),
        "maxvals": torch.from_numpy(preds[:, :, 2]),
        "centers": boxes[:, :2],
        "scales": scales,
        "box_scores": boxes[:, 5],
        "image_ids": inputs["image_ids"],
    }


def test_coco_results_equal_official_written_results(reference_dir):
    """Compared as sets keyed by (image_id, score): every value equal bit for bit."""
    results = coco_results(**_e2e_inputs(reference_dir), sigmas=COCO_KEYPOINTS.oks_sigmas)
    with (reference_dir / "coco" / "e2e_evaluate_mmpose4" /
          "written_results_after_rescore_nms.json").open() as handle:
        official = json.load(handle)
    assert len(results) == len(official) == 14

    def keyed(entries):
        return {(entry["image_id"], entry["score"]): entry for entry in entries}

    ours, theirs = keyed(results), keyed(official)
    assert len(ours) == len(results)
    assert ours.keys() == theirs.keys()
    for key, entry in ours.items():
        assert set(entry) == set(theirs[key])
        for field in ("category_id", "keypoints", "center", "scale"):
            assert entry[field] == theirs[key][field], (key, field)
        assert all(isinstance(value, float) for value in entry["keypoints"])
        assert isinstance(entry["image_id"], int)


def test_e2e_stats_equal_official(reference_dir, gt_path):
    results = coco_results(**_e2e_inputs(reference_dir), sigmas=None)
    with (reference_dir / "coco" / "e2e_evaluate_mmpose4" / "stats.json").open() as handle:
        name_value = json.load(handle)["name_value"]
    stats = pycocotools_keypoint_stats(gt_path, results)
    assert stats["AP"] == pytest.approx(0.5416, abs=1e-4)
    assert [stats[name] for name in METRIC_NAMES] == [name_value[name] for name in OFFICIAL_NAMES]


def test_coco_results_rescoring_and_nms_hand_worked():
    pose = torch.rand(17, 2, generator=torch.Generator().manual_seed(1)) * 100 + 50
    keypoints = torch.stack([pose, pose + 0.5, pose + 300])  # 0 and 1 overlap, 2 is far away
    maxvals = torch.full((3, 17), 0.1, dtype=torch.float64)
    maxvals[0, :4] = 0.8
    maxvals[1, :2] = 0.6
    maxvals[2, 0] = 0.9
    results = coco_results(keypoints, maxvals, torch.full((3, 2), 100.0), torch.ones(3, 2),
                           [1.0, 1.0, 0.5], [7, 7, 9], sigmas=None)
    assert [entry["image_id"] for entry in results] == [7, 9]
    assert [entry["score"] for entry in results] == pytest.approx([0.8, 0.45], abs=1e-15)
    assert results[0]["keypoints"][:3] == [float(pose[0, 0]), float(pose[0, 1]), 0.8]
    assert results[0]["category_id"] == 1
    assert results[1]["center"] == [100.0, 100.0] and results[1]["scale"] == [1.0, 1.0]
    with pytest.raises(ValueError, match="maxvals"):
        coco_results(keypoints, maxvals[:2], torch.zeros(3, 2), torch.ones(3, 2), [1.0] * 3,
                     [1, 1, 1], sigmas=None)


def test_empty_results_give_zero_stats(gt_path):
    evaluation = pycocotools_keypoint_eval(gt_path, [])
    assert evaluation.stats == {name: 0.0 for name in METRIC_NAMES}


def test_bad_results_raise_value_errors(gt_path, tmp_path):
    good = {"image_id": 785, "category_id": 1, "keypoints": [1.0, 2.0, 0.5] * 17, "score": 0.9}
    not_a_list = tmp_path / "results.json"
    not_a_list.write_text(json.dumps({"annotations": [good]}))
    with pytest.raises(ValueError, match="list"):
        pycocotools_keypoint_stats(gt_path, not_a_list)
    missing = {key: value for key, value in good.items() if key != "score"}
    with pytest.raises(ValueError, match=r"entry 1 .*'score'"):
        pycocotools_keypoint_stats(gt_path, [good, missing])
    short = {**good, "keypoints": [1.0, 2.0, 0.5] * 16}
    with pytest.raises(ValueError, match="entry 2 .*48 keypoint values, expected 51"):
        pycocotools_keypoint_stats(gt_path, [good, good, short])
    unknown_image = {**good, "image_id": 123456789}
    with pytest.raises(ValueError, match="entry 0 has image_id 123456789"):
        pycocotools_keypoint_stats(gt_path, [unknown_image, good])
    with pytest.raises(FileNotFoundError, match="results file"):
        pycocotools_keypoint_stats(gt_path, tmp_path / "absent.json")
    with pytest.raises(FileNotFoundError, match="ground-truth"):
        pycocotools_keypoint_stats(tmp_path / "absent_gt.json", [good])


def test_format_metrics_table():
    metrics = {name: index / 10 for index, name in enumerate(METRIC_NAMES)}
    metrics["AP"] = 0.74449
    table = format_metrics_table(metrics)
    header, values = table.splitlines()
    assert header.split("|")[1:-1] == [f" {name.ljust(5)} " for name in METRIC_NAMES]
    assert values.split("|")[1].strip() == "0.744"
    assert values.split("|")[-2].strip() == "0.900"
    with pytest.raises(ValueError, match="AR"):
        format_metrics_table({"AP": 0.5})
