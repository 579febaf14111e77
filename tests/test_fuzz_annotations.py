"""Malformed annotation, detection and results files against the datasets (COCO, MPII) and the
COCO evaluator: missing keys, wrong types, negative, NaN, infinite or huge boxes, keypoint lists
of the wrong length, unknown image ids, files that are not JSON.

Every case ends in one of: an error a user sees as one line (a ``ValueError`` or ``OSError``,
which the entry points print without a traceback) whose message matches the case's; a skip,
counted (``skipped_annotations`` / ``skipped_detections``, data/README.md "Bad data"); or the
entry used (the items then load with finite crops and targets). The sweep tries 184 cases:
52 ground-truth files x 2 (the dataset and the evaluator), 24 detection files, 26 results
files and 30 MPII files (``test_the_sweep_size`` keeps this count true).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pose.data import CocoKeypoints, MpiiKeypoints
from pose.data.keypoints import COCO_KEYPOINTS
from pose.evaluation.coco_eval import evaluate_coco_keypoints, load_coco_keypoint_ground_truth

USER_ERRORS = (OSError, ValueError)  # what pose.config.run_reporting_errors prints as one line
NAN, INF = float("nan"), float("inf")
DELETE = object()
IMAGE_SIZE = (100, 80)  # width, height of the images the cases' entries refer to


def keypoints(joints: int = 17) -> list[float]:
    return [10.0, 20.0, 2] * joints


def coco_file() -> dict:
    annotation = {"category_id": 1, "keypoints": keypoints(), "num_keypoints": 17,
                  "area": 500.0, "iscrowd": 0}
    return {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80},
                       {"id": 2, "file_name": "b.jpg", "width": 100, "height": 80}],
            "annotations": [{**annotation, "id": 1, "image_id": 1, "bbox": [10, 10, 30, 40]},
                            {**annotation, "id": 2, "image_id": 2, "bbox": [20, 10, 30, 40]}],
            "categories": [{"id": 1, "name": "person",
                            "keypoints": list(COCO_KEYPOINTS.joint_names)}]}


def changed(entry: dict, **changes) -> dict:
    """``entry`` with keys set (or removed: ``DELETE``)."""
    entry = copy.deepcopy(entry)
    for key, value in changes.items():
        if value is DELETE:
            del entry[key]
        else:
            entry[key] = value
    return entry


def annotation(**changes) -> Callable[[dict], None]:
    def mutate(data: dict) -> None:
        data["annotations"][0] = changed(data["annotations"][0], **changes)
    return mutate


def image(**changes) -> Callable[[dict], None]:
    def mutate(data: dict) -> None:
        data["images"][0] = changed(data["images"][0], **changes)
    return mutate


def top(**changes) -> Callable[[dict], None]:
    def mutate(data: dict) -> None:
        new = changed(data, **changes)
        data.clear()
        data.update(new)
    return mutate


def raw(text: str) -> str:
    """The file's whole content (not JSON, or not a COCO dict)."""
    return text


NOT_IN_FORMAT = "is not in COCO format"
NOT_FLAT = "not a flat list of numbers"
DEGENERATE, USED = "skip:degenerate_box", "used"
EVALUATED = "used"  # the evaluator parses it (what pycocotools ignores, it ignores)
# case: (change to the file, what CocoKeypoints does, what the evaluator's ground truth does)
GROUND_TRUTH_CASES = {
    **{f"annotation_without_{key}": (annotation(**{key: DELETE}), dataset, evaluator)
       for key, dataset, evaluator in (
           ("id", f"error:{NOT_IN_FORMAT}.*lacks 'id'", r"error:lacks keys \['id'\]"),
           ("image_id", f"error:{NOT_IN_FORMAT}.*'image_id'", "error:lacks keys.*'image_id'"),
           ("category_id", f"error:{NOT_IN_FORMAT}.*'category_id'", "error:lacks.*category_id"),
           ("keypoints", "error:annotation 1 has 0 keypoints", "error:lacks.*keypoints"),
           ("num_keypoints", USED, "error:lacks keys.*num_keypoints"),
           ("area", DEGENERATE, r"error:lacks keys \['area'\]"),
           ("bbox", DEGENERATE, r"error:lacks keys \['bbox'\]"),
           ("iscrowd", USED, r"error:lacks keys \['iscrowd'\]"))},
    "keypoints_string": (annotation(keypoints="abc"), f"error:{NOT_FLAT}",
                         "error:not a list of numbers: 'abc'"),
    "keypoints_none": (annotation(keypoints=None), f"error:{NOT_FLAT}", "error:not a list of"),
    "keypoints_16_joints": (annotation(keypoints=keypoints(16)),
                            "error:annotation 1 has 16 keypoints, expected 17",
                            "error:has 48 keypoint values where most annotations have 51"),
    "keypoints_one_value_more": (annotation(keypoints=keypoints() + [1]),
                                 "error:17.3333 keypoints",
                                 "error:52 keypoint values, not a positive multiple of 3"),
    "keypoints_empty": (annotation(keypoints=[]), "error:has 0 keypoints",
                        "error:0 keypoint values, not a positive multiple"),
    "keypoints_nan": (annotation(keypoints=[NAN] * 51), "skip:no_labelled_joints",
                      "error:non-finite keypoints"),
    "keypoints_strings": (annotation(keypoints=["1"] * 51), f"error:{NOT_FLAT}",
                          "error:not a list of numbers"),
    "keypoints_nested": (annotation(keypoints=[[10, 20, 2]] * 17), f"error:{NOT_FLAT}",
                         "error:not a list of numbers"),
    "keypoints_huge": (annotation(keypoints=[1e300, 1e300, 2] * 17), USED, EVALUATED),
    "bbox_string": (annotation(bbox="box"), DEGENERATE, "error:has bbox 'box', expected"),
    "bbox_three_numbers": (annotation(bbox=[1, 2, 3]), DEGENERATE, r"error:has bbox \[1, 2, 3\]"),
    "bbox_dict": (annotation(bbox={"x": 1}), DEGENERATE, "error:has bbox {'x': 1}"),
    "bbox_strings": (annotation(bbox=["1", "2", "3", "4"]), DEGENERATE, "error:has bbox"),
    "bbox_negative": (annotation(bbox=[10, 10, -30, -40]), DEGENERATE, EVALUATED),
    "bbox_nan": (annotation(bbox=[NAN, 10, 30, 40]), DEGENERATE, "error:non-finite bbox"),
    "bbox_infinite": (annotation(bbox=[10, 10, INF, 40]), DEGENERATE, "error:non-finite bbox"),
    "bbox_huge": (annotation(bbox=[0, 0, 1e30, 1e30]), USED, EVALUATED),
    "bbox_outside_the_image": (annotation(bbox=[500, 500, 30, 40]), DEGENERATE, EVALUATED),
    "area_string": (annotation(area="big"), DEGENERATE, "error:has area 'big', expected a"),
    "area_negative": (annotation(area=-5.0), DEGENERATE, EVALUATED),
    "area_nan": (annotation(area=NAN), DEGENERATE, "error:non-finite area"),
    "iscrowd_string": (annotation(iscrowd="no"), "skip:crowd", "error:has iscrowd 'no'"),
    "category_id_string": (annotation(category_id="person"), "skip:other_category", EVALUATED),
    "image_id_unknown": (annotation(image_id=99), "skip:unknown_image", EVALUATED),
    "image_id_string": (annotation(image_id="1"), "skip:unknown_image", EVALUATED),
    "image_id_null": (annotation(image_id=None), "skip:unknown_image", EVALUATED),
    "num_keypoints_string": (annotation(num_keypoints="x"), USED, EVALUATED),
    "annotation_not_a_dict": (lambda data: data["annotations"].__setitem__(0, [1, 2]),
                              f"error:{NOT_IN_FORMAT}", "error:annotation 0 must be a dict"),
    "duplicate_annotation_ids": (annotation(id=2), USED, "error:id 2 is used more than once"),
    "image_without_width": (image(width=DELETE), "error:image 1 needs a 'file_name' and a positive",
                            EVALUATED),
    "image_without_file_name": (image(file_name=DELETE), "error:image 1 needs a 'file_name'",
                                EVALUATED),
    "image_width_string": (image(width="wide"), "error:image 1 needs", EVALUATED),
    "image_width_negative": (image(width=-100), "error:image 1 needs", EVALUATED),
    "image_without_id": (image(id=DELETE), f"error:{NOT_IN_FORMAT}",
                         "error:needs a sortable 'id'"),
    "image_not_a_dict": (lambda data: data["images"].__setitem__(0, "a.jpg"),
                         f"error:{NOT_IN_FORMAT}", "error:needs a sortable 'id'"),
    "duplicate_image_ids": (image(id=2), "skip:unknown_image", EVALUATED),
    "images_missing": (top(images=DELETE), "error:no person boxes.*'unknown_image': 2",
                       "error:needs non-empty 'images'"),
    "images_not_a_list": (top(images={"id": 1}), f"error:{NOT_IN_FORMAT}", "error:sortable"),
    "annotations_missing": (top(annotations=DELETE), "error:no person boxes", EVALUATED),
    "annotations_not_a_list": (top(annotations={"id": 1}), f"error:{NOT_IN_FORMAT}",
                               "error:and an 'annotations' list"),
    "categories_missing": (top(categories=DELETE), USED, "error:and 'categories' lists"),
    "not_json": (raw("{'images': ["), "error:is not valid JSON", "error:is not valid JSON"),
    "empty_file": (raw(""), "error:is not valid JSON", "error:is not valid JSON"),
    "a_list_not_a_dict": (raw("[]"), f"error:{NOT_IN_FORMAT}", "error:ground truth is a dict"),
}


def write_images(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        cv2.imwrite(str(folder / name), np.full((IMAGE_SIZE[1], IMAGE_SIZE[0], 3), 128, np.uint8))


def write_case(path: Path, mutate: Callable[[dict], None] | str, base: Callable[[], object]
               ) -> Path:
    """The case's file at ``path``: the base content changed by ``mutate``, or a raw text."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(mutate, str):
        path.write_text(mutate)
    else:
        data = base()
        mutate(data)
        path.write_text(json.dumps(data))
    return path


def expect(outcome: str, build: Callable[[], object], names: str) -> object:
    """Run ``build`` and check the outcome: "error:<regex>" (one line naming ``names``, a user
    error), else the result of ``build``."""
    if not outcome.startswith("error:"):
        return build()
    with pytest.raises(USER_ERRORS) as raised:
        build()
    message = str(raised.value)
    assert "\n" not in message, message
    assert re.search(outcome[len("error:"):], message), message
    assert names in message, message
    return None


def check_items(dataset: CocoKeypoints) -> None:
    """Every item of a dataset built from a malformed file loads, finite."""
    for index in range(len(dataset)):
        item = dataset[index]
        assert torch.isfinite(item["image"]).all() and torch.isfinite(item["target"]).all()


def check_dataset(dataset: CocoKeypoints, outcome: str, people: int,
                  skips: dict[str, int]) -> None:
    if outcome == USED:
        assert len(dataset) == people and not any(skips.values()), skips
    else:
        reason = outcome[len("skip:"):]
        assert len(dataset) == people - 1 and skips == {**dict.fromkeys(skips, 0), reason: 1}
    check_items(dataset)


@pytest.mark.parametrize("case", sorted(GROUND_TRUTH_CASES))
def test_coco_ground_truth_files(case, tmp_path):
    mutate, dataset_outcome, evaluator_outcome = GROUND_TRUTH_CASES[case]
    root = tmp_path / "coco"
    path = write_case(root / "annotations" / "person_keypoints_val2017.json", mutate, coco_file)
    write_images(root / "val2017", ["a.jpg", "b.jpg"])
    dataset = expect(dataset_outcome, lambda: CocoKeypoints(
        root, "val2017", image_size=(64, 64), heatmap_size=(16, 16)), str(path))
    if dataset is not None:
        check_dataset(dataset, dataset_outcome, 2, dataset.skipped_annotations)
    # The evaluator's errors name the annotation (a path reaches it through the entry point).
    expect(evaluator_outcome, lambda: load_coco_keypoint_ground_truth(path),
           str(path) if "JSON" in evaluator_outcome else "")


def detection(**changes) -> list[dict]:
    first = {"image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 40], "score": 0.9}
    return [changed(first, **changes),
            {"image_id": 2, "category_id": 1, "bbox": [20, 10, 30, 40], "score": 0.8}]


NOT_A_DETECTION = "error:entry 0 is not a detection"
# case: (the detection file's content, what CocoKeypoints(det_file=...) does)
DETECTION_CASES = {
    **{f"without_{key}": (detection(**{key: DELETE}), NOT_A_DETECTION)
       for key in ("image_id", "bbox", "score")},
    "without_category_id": (detection(category_id=DELETE), USED),  # taken as a person
    "not_a_list": ({"image_id": 1}, "error:must hold a JSON list of detections, got dict"),
    "entry_not_a_dict": ([[1, 2]], NOT_A_DETECTION),
    "bbox_string": (detection(bbox="abc"), NOT_A_DETECTION),
    "bbox_three_numbers": (detection(bbox=[1, 2, 3]), NOT_A_DETECTION),
    "bbox_strings": (detection(bbox=["1", "2", "3", "4"]), NOT_A_DETECTION),
    "bbox_nan": (detection(bbox=[NAN, 1, 2, 3]), NOT_A_DETECTION),
    "bbox_infinite": (detection(bbox=[0, 0, INF, 10]), NOT_A_DETECTION),
    "bbox_negative": (detection(bbox=[10, 10, -30, -40]), USED),  # used as given, as officially
    "bbox_zero": (detection(bbox=[10, 10, 0, 0]), USED),
    "bbox_huge": (detection(bbox=[0, 0, 1e30, 1e30]), USED),
    "score_string": (detection(score="high"), NOT_A_DETECTION),
    "score_nan": (detection(score=NAN), NOT_A_DETECTION),
    "score_null": (detection(score=None), NOT_A_DETECTION),
    "score_below_threshold": (detection(score=0.01), "skip:below_score_threshold"),
    "category_id_string": (detection(category_id="person"), "skip:other_category"),
    "image_id_unknown": (detection(image_id=99), "error:refers to image_id 99, which is not in"),
    "image_id_string": (detection(image_id="1"), "error:refers to image_id '1'"),
    "image_id_list": (detection(image_id=[1]), NOT_A_DETECTION),
    "empty_list": ([], "error:no person boxes to use in"),
    "not_json": ("[{", "error:is not valid JSON"),
}


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fuzz") / "coco"
    write_case(root / "annotations" / "person_keypoints_val2017.json", lambda data: None,
               coco_file)
    write_images(root / "val2017", ["a.jpg", "b.jpg"])
    return root


@pytest.mark.parametrize("case", sorted(DETECTION_CASES))
def test_detection_files(case, coco_root, tmp_path):
    content, outcome = DETECTION_CASES[case]
    path = tmp_path / "detections.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    dataset = expect(outcome, lambda: CocoKeypoints(
        coco_root, "val2017", image_size=(64, 64), heatmap_size=(16, 16), det_file=path,
        det_score_threshold=0.05), str(path))
    if dataset is not None:
        check_dataset(dataset, outcome, 2, dataset.skipped_detections)


def result(**changes) -> list[dict]:
    first = {"image_id": 1, "category_id": 1, "keypoints": [10.0, 20.0, 0.9] * 17, "score": 0.9}
    return [changed(first, **changes),
            {"image_id": 2, "category_id": 1, "keypoints": [20.0, 20.0, 0.9] * 17, "score": 0.8}]


NO_BBOX = "error:entry 1 .* has no 'bbox'"  # the first entry's bbox makes every one need one
# case: (the results file's content, what evaluate_coco_keypoints does)
RESULTS_CASES = {
    **{f"without_{key}": (result(**{key: DELETE}), f"error:results entry 0 lacks keys .*{key}")
       for key in ("image_id", "category_id", "keypoints", "score")},
    "not_a_list": ({"image_id": 1}, "error:COCO results must be a list of dicts, got dict"),
    "entry_not_a_dict": ([[1]], "error:results entry 0 must be a dict, got list"),
    "keypoints_16_joints": (result(keypoints=[1.0] * 48), "error:48 keypoint values, expected"),
    "keypoints_one_joint_more": (result(keypoints=[1.0] * 54), "error:has 54 keypoint values"),
    "keypoints_string": (result(keypoints="abc"), "error:has 3 keypoint values, expected 51"),
    "keypoints_strings": (result(keypoints=["1"] * 51), "error:keypoint values that are not"),
    "keypoints_null": (result(keypoints=None), "error:has None keypoint values"),
    "keypoints_nan": (result(keypoints=[NAN] * 51), "error:non-finite .* keypoint coordinates"),
    "keypoints_huge": (result(keypoints=[1e300] * 51), USED),
    "score_string": (result(score="x"), "error:has a score that is not a number: 'x'"),
    "score_nan": (result(score=NAN), "error:has a NaN score"),
    "score_infinite": (result(score=INF), USED),
    "image_id_unknown": (result(image_id=99), "error:image_id that is not in the ground truth"),
    "image_id_string": (result(image_id="1"), "error:image_id that is not in the ground truth"),
    "category_id_unknown": (result(category_id=5), USED),  # not evaluated, as pycocotools
    "bbox_string": (result(bbox="abc"), "error:entry 0 .* has no 'bbox'"),
    "bbox_two_numbers": (result(bbox=[1, 2]), "error:entry 0 .* has no 'bbox'"),
    "bbox_strings": (result(bbox=["1", "2", "3", "4"]), "error:bbox that is not 4 numbers"),
    "bbox_nan": (result(bbox=[NAN, 1, 2, 3]), NO_BBOX),
    "bbox_negative": (result(bbox=[1, 1, -5, -5]), NO_BBOX),
    "empty_list": ([], USED),
    "not_json": ("[{", "error:is not valid JSON"),
}


@pytest.mark.parametrize("case", sorted(RESULTS_CASES))
def test_results_files(case, tmp_path):
    content, outcome = RESULTS_CASES[case]
    ground_truth = tmp_path / "gt.json"
    ground_truth.write_text(json.dumps(coco_file()))
    path = tmp_path / "results.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    metrics = expect(outcome, lambda: evaluate_coco_keypoints(ground_truth, path),
                     str(path) if "JSON" in outcome else "")
    if metrics is not None:
        assert all(np.isfinite(value) for value in metrics.values()), metrics


def person(**changes) -> list[dict]:
    first = {"image": "a.jpg", "center": [50.0, 40.0], "scale": 0.3,
             "joints": [[10.0, 20.0]] * 16, "joints_vis": [1] * 16, "head_box": [[1, 2], [10, 12]]}
    second = {**first, "image": "b.jpg"}
    return [changed(first, **changes), second]


NOT_A_PERSON = "error:entry 0 is not an MPII person"
SHAPES = "error:entry 0 must have a 2-value center, 16 joints"
NOT_FINITE = "error:entry 0 needs finite numbers"
# case: (the MPII json's content, what MpiiKeypoints (and its PCKh ground truth) does)
MPII_CASES = {
    **{f"without_{key}": (person(**{key: DELETE}), f"{NOT_A_PERSON}.*KeyError\\('{key}'\\)")
       for key in ("image", "center", "scale", "joints", "joints_vis")},
    "without_head_box": (person(head_box=DELETE), "error:PCKh needs head boxes: .* entry 0"),
    "not_a_list": ({"image": "a.jpg"}, "error:must hold a JSON list of people, got dict"),
    "entry_not_a_dict": ([[1]], "error:entry 0 is not a dict"),
    "joints_15": (person(joints=[[1.0, 2.0]] * 15), SHAPES),
    "joints_flat": (person(joints=[1.0] * 32), SHAPES),
    "joints_vis_15": (person(joints_vis=[1] * 15), SHAPES),
    "center_one_number": (person(center=[1.0]), SHAPES),
    "joints_nan": (person(joints=[[NAN, NAN]] * 16), f"{NOT_FINITE}.*non-finite joints"),
    "joints_strings": (person(joints=[["a", "b"]] * 16), f"{NOT_A_PERSON}.*could not convert"),
    "joints_null": (person(joints=None), SHAPES),
    "center_nan": (person(center=[NAN, NAN]), f"{NOT_FINITE}.*non-finite center"),
    "center_infinite": (person(center=[INF, 1.0]), f"{NOT_FINITE}.*non-finite center"),
    "scale_string": (person(scale="big"), f"{NOT_A_PERSON}.*could not convert"),
    "scale_negative": (person(scale=-1.0), f"{NOT_FINITE}.*scale -1.0"),
    "scale_zero": (person(scale=0.0), f"{NOT_FINITE}.*scale 0.0"),
    "scale_nan": (person(scale=NAN), f"{NOT_FINITE}.*scale nan"),
    "scale_list": (person(scale=[0.3]), f"{NOT_A_PERSON}.*TypeError"),
    "scale_huge": (person(scale=1e30), USED),
    "image_file_missing": (person(image="missing.jpg"), "error:cannot read image .*missing.jpg"),
    "image_a_number": (person(image=5), "error:cannot read image .*images/5 "),
    "head_box_string": (person(head_box="x"), "error:entry 0 has head_box 'x', expected"),
    "head_box_one_corner": (person(head_box=[[1, 2]]), "error:entry 0 has head_box"),
    "head_box_nan": (person(head_box=[[NAN, 2], [3, 4]]), "error:entry 0 has head_box"),
    "empty_list": ([], "error:no person boxes to use in"),
    "not_json": ("[{", "error:is not valid JSON"),
}


@pytest.mark.parametrize("case", sorted(MPII_CASES))
def test_mpii_files(case, tmp_path):
    content, outcome = MPII_CASES[case]
    root = tmp_path / "mpii"
    path = root / "annot" / "valid.json"
    path.parent.mkdir(parents=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    write_images(root / "images", ["a.jpg", "b.jpg"])

    def build() -> MpiiKeypoints:
        dataset = MpiiKeypoints(root, "valid", image_size=(64, 64), heatmap_size=(16, 16))
        check_items(dataset)  # evaluation mode: an unreadable image is an error
        dataset.pckh_ground_truth()
        return dataset

    names = "images" if "cannot read image" in outcome else str(path)
    dataset = expect(outcome, build, names)
    if dataset is not None:
        assert len(dataset) == 2


def test_the_sweep_size():
    """The count the module docstring states."""
    sizes = (2 * len(GROUND_TRUTH_CASES), len(DETECTION_CASES), len(RESULTS_CASES),
             len(MPII_CASES))
    assert sizes == (2 * 52, 24, 26, 30)
    assert sum(sizes) == 184
