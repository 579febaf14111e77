"""COCO keypoint AP (pose.evaluation.coco_eval) against pycocotools, and the official results.

pycocotools (the `pycocotools_eval` fixture) is the independent reference: every stat must agree
to 1e-9 and, on the CPU, the precision and recall arrays bit for bit.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import Params

from pose.data.keypoints import COCO_KEYPOINTS
from pose.evaluation import (
    METRIC_NAMES,
    PCKH_NAMES,
    coco_result_entries,
    evaluate_coco_keypoints,
    evaluate_coco_keypoints_tensors,
    format_metrics_table,
    load_coco_keypoint_ground_truth,
    rescore_and_nms,
)
from pose.synthetic import RandomSetParams, random_keypoint_eval_set

# Official name_value keys in METRIC_NAMES order.
OFFICIAL_NAMES = ("AP", "Ap .5", "AP .75", "AP (M)", "AP (L)",
                  "AR", "AR .5", "AR .75", "AR (M)", "AR (L)")
TOLERANCE = 1e-9


def default_sigmas(num_keypoints: int) -> list[float] | None:
    """pycocotools' sigmas for 17 keypoints (None), else a spread of plausible values."""
    if num_keypoints == COCO_KEYPOINTS.num_joints:
        return None
    return np.linspace(0.025, 0.107, num_keypoints).tolist()


def assert_equal_to_pycocotools(reference, gt, results, sigmas=None, device=None):
    """Our stats within TOLERANCE of the reference's, and (on the CPU) the same arrays."""
    stats, arrays = evaluate_coco_keypoints(gt, results, sigmas=sigmas, device=device,
                                            return_arrays=True)
    expected = dict(zip(METRIC_NAMES, reference.stats.tolist()))
    assert list(stats) == list(METRIC_NAMES)
    for name in METRIC_NAMES:
        assert abs(stats[name] - expected[name]) <= TOLERANCE, (name, stats, expected)
    assert arrays["precision"].shape == reference.eval["precision"].shape
    assert arrays["recall"].shape == reference.eval["recall"].shape
    if device is None:
        np.testing.assert_array_equal(arrays["precision"], reference.eval["precision"])
        np.testing.assert_array_equal(arrays["recall"], reference.eval["recall"])
    else:
        np.testing.assert_allclose(arrays["precision"], reference.eval["precision"], atol=1e-12)
    return stats


@pytest.fixture(scope="module")
def gt_path(coco_sample_dir):
    return coco_sample_dir / "test_coco.json"


def test_sample_gt_is_the_fixture_gt(reference_dir, gt_path):
    assert json.loads(gt_path.read_text()) == json.loads(
        (reference_dir / "coco" / "eval_mmpose4" / "gt_person_keypoints.json").read_text())


def test_default_sigmas_are_pycocotools_bits():
    assert np.array_equal(np.asarray(COCO_KEYPOINTS.oks_sigmas), Params("keypoints").kpt_oks_sigmas)


@pytest.mark.parametrize("noise", ["small", "medium", "large"])
def test_stats_equal_official_pycocotools(reference_dir, gt_path, noise, pycocotools_eval):
    eval_dir = reference_dir / "coco" / "eval_mmpose4"
    with (eval_dir / "stats.json").open() as handle:
        expected = json.load(handle)["results"][f"{noise}_noise"]["pycocotools_stats"]
    results_path = eval_dir / f"results_{noise}_noise.json"
    stats = evaluate_coco_keypoints(gt_path, results_path)
    assert [stats[name] for name in METRIC_NAMES] == expected
    # The same from a results list, a loaded COCO object, a dict, parsed ground truth and
    # explicit COCO sigmas; the caller's dicts are left alone.
    results = json.loads(results_path.read_text())
    snapshot = json.dumps(results)
    for gt in (COCO(str(gt_path)), json.loads(gt_path.read_text()),
               load_coco_keypoint_ground_truth(gt_path)):
        stats = evaluate_coco_keypoints(gt, results, sigmas=COCO_KEYPOINTS.oks_sigmas)
        assert [stats[name] for name in METRIC_NAMES] == expected
    assert json.dumps(results) == snapshot
    assert_equal_to_pycocotools(pycocotools_eval(gt_path, results), gt_path, results)


# Random sets: every case varies the size, keypoint count, score ties and loadRes' area rule.
RANDOM_CASES = [
    {},
    {"score_levels": 4},
    {"score_levels": 20, "duplicate_share": 0.8},
    {"results_with_bbox": True},
    {"mean_people": 4.0, "crowded_image_share": 0.3},
    {"crowd_share": 0.3, "zero_keypoint_share": 0.4},
    {"drop_share": 0.6, "mean_false_positives": 3.0},
    {"empty_image_share": 0.6, "no_result_image_share": 0.5},
    {"num_keypoints": 5},
    {"num_keypoints": 1, "score_levels": 3},
    {"num_keypoints": 14, "results_with_bbox": True},
    {"num_images": 3, "mean_people": 0.5},
]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("case", range(len(RANDOM_CASES)))
def test_random_sets_equal_pycocotools(case, seed, pycocotools_eval):
    params = RandomSetParams(**{"num_images": 30, **RANDOM_CASES[case]})
    gt, results = random_keypoint_eval_set(100 * case + seed, params)
    if not results:
        pytest.skip("this draw has no results (pycocotools cannot evaluate an empty list)")
    sigmas = default_sigmas(params.num_keypoints)
    assert_equal_to_pycocotools(pycocotools_eval(gt, results, sigmas), gt, results, sigmas)


def test_many_keypoints_use_numpy_order_beyond_128(pycocotools_eval):
    """More than 128 keypoints: numpy sums in halves; the OKS is still the same bits."""
    params = RandomSetParams(num_images=12, num_keypoints=140, mean_people=2.0)
    gt, results = random_keypoint_eval_set(7, params)
    sigmas = default_sigmas(140)
    assert_equal_to_pycocotools(pycocotools_eval(gt, results, sigmas), gt, results, sigmas)


def test_tensor_input_equals_result_dicts():
    gt, results = random_keypoint_eval_set(3, RandomSetParams(num_images=40, score_levels=10))
    keypoints = torch.tensor([entry["keypoints"] for entry in results]).reshape(
        len(results), 17, 3)
    scores = torch.tensor([entry["score"] for entry in results], dtype=torch.float64)
    image_ids = torch.tensor([entry["image_id"] for entry in results])
    from_dicts = evaluate_coco_keypoints(gt, results)
    ground_truth = load_coco_keypoint_ground_truth(gt)
    assert evaluate_coco_keypoints_tensors(ground_truth, image_ids, keypoints, scores) == \
        from_dicts
    assert evaluate_coco_keypoints_tensors(gt, image_ids.numpy(), keypoints[..., :2].numpy(),
                                           scores.numpy()) == from_dicts
    with pytest.raises(ValueError, match="result 2 .*not in the ground truth"):
        evaluate_coco_keypoints_tensors(gt, torch.tensor([image_ids[0], image_ids[0], 5, 5]),
                                        keypoints[:4], scores[:4])
    bad = keypoints[:3].clone()
    bad[1, 4, 0] = float("nan")
    with pytest.raises(ValueError, match="result 1 .*non-finite"):
        evaluate_coco_keypoints_tensors(gt, image_ids[:3], bad, scores[:3])
    bad[1, 4, 0] = -float("inf")
    with pytest.raises(ValueError, match="result 1 .*non-finite"):
        evaluate_coco_keypoints_tensors(gt, image_ids[:3], bad, scores[:3])
    # Finite coordinates whose sum overflows, and a non-finite keypoint score (unused, as in
    # pycocotools), are accepted.
    fine = keypoints[:3].clone().to(torch.float64)
    fine[0, :, :2] = 1e308
    fine[2, 3, 2] = float("nan")
    evaluate_coco_keypoints_tensors(gt, image_ids[:3], fine, scores[:3])
    with pytest.raises(ValueError, match="16 keypoints per person, the ground truth 17"):
        evaluate_coco_keypoints_tensors(gt, image_ids[:3], keypoints[:3, :16], scores[:3])


def hand_gt(annotations):
    """A one-image ground truth around hand-made annotations (17 COCO keypoints)."""
    filled = []
    for index, annotation in enumerate(annotations):
        filled.append({"id": index + 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
                       "bbox": [0, 0, 100, 100], "area": 5000.0, **annotation})
    return {"images": [{"id": 1, "width": 640, "height": 480}],
            "annotations": filled, "categories": [{"id": 1, "name": "person"}]}


def person(x, y, visible=2):
    return [value for k in range(17) for value in (x + 3 * k, y + 2 * k, visible)]


def result(keypoints, score, image_id=1):
    values = np.asarray(keypoints, dtype=np.float64).reshape(17, 3)
    values[:, 2] = 0.5
    return {"image_id": image_id, "category_id": 1, "keypoints": values.reshape(-1).tolist(),
            "score": score}


def test_hand_worked_matching_rules(pycocotools_eval):
    """Crowd regions take many detections, unlabelled people use the box distance, a matched
    ground truth of id 0 counts as unmatched (pycocotools stores the id), equal OKS picks the
    later ground truth, and a better match elsewhere does not steal a taken one."""
    gt = hand_gt([
        {"keypoints": person(10, 10), "num_keypoints": 17},
        {"keypoints": person(10, 10), "num_keypoints": 17},  # a twin: equal OKS
        {"keypoints": [0] * 51, "num_keypoints": 0, "iscrowd": 1, "bbox": [300, 300, 50, 50]},
        {"keypoints": [0] * 51, "num_keypoints": 3, "bbox": [500, 100, 40, 80],
         "area": 2000.0},  # counted, but no joint labelled: box distance
        {"keypoints": person(200, 10), "num_keypoints": 17, "id": 0},
    ])
    results = [
        result(person(10, 10), 0.9), result(person(11, 10), 0.9), result(person(12, 11), 0.8),
        result(person(310, 310), 0.7), result(person(315, 312), 0.6),
        result(person(505, 110), 0.5), result(person(200, 10), 0.4),
    ]
    stats = assert_equal_to_pycocotools(pycocotools_eval(gt, results), gt, results)
    assert 0 < stats["AP"] < 1


def test_more_than_twenty_results_in_an_image(pycocotools_eval):
    gt = hand_gt([{"keypoints": person(10 + 40 * k, 10), "num_keypoints": 17}
                  for k in range(8)])
    results = [result(person(10 + 40 * (k % 8), 10 + k % 3), 0.9 - 0.01 * k) for k in range(30)]
    results.append(result(person(10, 10), 0.1))  # the 31st: cut by maxDets 20
    stats = assert_equal_to_pycocotools(pycocotools_eval(gt, results), gt, results)
    assert stats["AR"] > 0


def coco_results(keypoints, maxvals, centers, scales, box_scores, image_ids, *, sigmas):
    """The official results entries after rescoring and per-image OKS-NMS (official
    ``evaluate``, default thresholds), as the evaluation loop builds them."""
    kept, scores = rescore_and_nms(maxvals, keypoints, scales, box_scores, image_ids,
                                   sigmas=sigmas)
    return coco_result_entries(kept, scores, keypoints, maxvals, centers, scales, image_ids)


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


def test_e2e_stats_equal_official(reference_dir, gt_path):
    results = coco_results(**_e2e_inputs(reference_dir), sigmas=None)
    with (reference_dir / "coco" / "e2e_evaluate_mmpose4" / "stats.json").open() as handle:
        name_value = json.load(handle)["name_value"]
    stats = evaluate_coco_keypoints(gt_path, results)
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


def test_empty_results_give_zero_ap_and_ar(gt_path):
    stats = evaluate_coco_keypoints(gt_path, [])
    assert stats["AP"] == 0.0 and stats["AR"] == 0.0
    assert all(value in (0.0, -1.0) for value in stats.values())


def test_ground_truth_without_people_gives_minus_one(pycocotools_eval):
    gt = hand_gt([{"keypoints": [0] * 51, "num_keypoints": 0}])
    results = [result(person(10, 10), 0.9)]
    stats = assert_equal_to_pycocotools(pycocotools_eval(gt, results), gt, results)
    assert set(stats.values()) == {-1.0}


def test_bad_results_raise_value_errors(gt_path, tmp_path):
    good = {"image_id": 785, "category_id": 1, "keypoints": [1.0, 2.0, 0.5] * 17, "score": 0.9}
    not_a_list = tmp_path / "results.json"
    not_a_list.write_text(json.dumps({"annotations": [good]}))
    with pytest.raises(ValueError, match="list"):
        evaluate_coco_keypoints(gt_path, not_a_list)
    missing = {key: value for key, value in good.items() if key != "score"}
    with pytest.raises(ValueError, match=r"entry 1 lacks keys \['score'\]"):
        evaluate_coco_keypoints(gt_path, [good, missing])
    short = {**good, "keypoints": [1.0, 2.0, 0.5] * 16}
    with pytest.raises(ValueError, match="entry 2 .*48 keypoint values, expected 51"):
        evaluate_coco_keypoints(gt_path, [good, good, short])
    unknown_image = {**good, "image_id": 123456789}
    with pytest.raises(ValueError, match="entry 0 .*123456789.* not in the ground truth"):
        evaluate_coco_keypoints(gt_path, [unknown_image, good])
    nan = {**good, "keypoints": [1.0, float("nan"), 0.5] + [1.0, 2.0, 0.5] * 16}
    with pytest.raises(ValueError, match="entry 1 .*non-finite"):
        evaluate_coco_keypoints(gt_path, [good, nan])
    with pytest.raises(ValueError, match="entry 0 .*NaN score"):
        evaluate_coco_keypoints(gt_path, [{**good, "score": float("nan")}])
    with pytest.raises(ValueError, match="entry 1 .*score that is not a number: 'high'"):
        evaluate_coco_keypoints(gt_path, [good, {**good, "score": "high"}])
    with pytest.raises(ValueError, match="entry 1 must be a dict"):
        evaluate_coco_keypoints(gt_path, [good, [1, 2]])
    with pytest.raises(ValueError, match="17 keypoints per person but 5 OKS sigmas"):
        evaluate_coco_keypoints(gt_path, [good], sigmas=[0.05] * 5)
    with pytest.raises(FileNotFoundError, match="results file"):
        evaluate_coco_keypoints(gt_path, tmp_path / "absent.json")
    with pytest.raises(FileNotFoundError, match="ground-truth"):
        evaluate_coco_keypoints(tmp_path / "absent_gt.json", [good])


def test_bad_ground_truth_raises_value_errors(gt_path):
    gt = json.loads(gt_path.read_text())
    lacking = copy.deepcopy(gt)
    del lacking["annotations"][3]["num_keypoints"]
    with pytest.raises(ValueError, match=r"annotation 3 .*lacks keys \['num_keypoints'\]"):
        load_coco_keypoint_ground_truth(lacking)
    repeated = copy.deepcopy(gt)
    repeated["annotations"][2]["id"] = repeated["annotations"][0]["id"]
    with pytest.raises(ValueError, match="used more than once"):
        load_coco_keypoint_ground_truth(repeated)
    with pytest.raises(ValueError, match="'images' and 'categories'"):
        load_coco_keypoint_ground_truth({"images": [], "annotations": [], "categories": []})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_pycocotools(pycocotools_eval):
    for seed in range(3):
        gt, results = random_keypoint_eval_set(seed, RandomSetParams(score_levels=10))
        assert_equal_to_pycocotools(pycocotools_eval(gt, results), gt, results, device="cuda")


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
    pckh_table = format_metrics_table(dict.fromkeys(PCKH_NAMES, 90.25), PCKH_NAMES)
    assert pckh_table.splitlines()[0].split("|")[1].strip() == "Head"
    assert pckh_table.splitlines()[1].split("|")[1].strip() == "90.250"
