"""Keypoint sets from YAML: the shipped sets equal the former constants, every validation error
has its message, flip pairs are inferred from names, datasets and configs follow the set."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from pose.config import (
    Config,
    build_dataset,
    configured_keypoint_spec,
    evaluation_metric,
    record_keypoints,
)
from pose.data import CocoKeypoints
from pose.data.keypoints import (
    COCO_KEYPOINTS,
    MPII_KEYPOINTS,
    infer_flip_pairs,
    keypoint_spec_from_category,
    keypoint_spec_from_dict,
    keypoint_spec_yaml,
    load_keypoint_spec,
    shipped_keypoint_sets,
)
from pose.evaluation import METRIC_NAMES
from pose.evaluation.pck import PCK_NAMES
from pose.losses import build_loss, per_joint_mse

# The constants as pose/data/keypoints.py wrote them before the YAML files existed.
FORMER_COCO_SIGMAS = tuple(value / 10.0 for value in (
    0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72,
    0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89,
))
FORMER_COCO = {
    "joint_names": (
        "nose", "left_eye", "right_eye", "left_ear", "right_ear",
        "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
        "left_wrist", "right_wrist", "left_hip", "right_hip",
        "left_knee", "right_knee", "left_ankle", "right_ankle",
    ),
    "flip_pairs": ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    "skeleton": (
        (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
        (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
    ),
    "upper_body_ids": tuple(range(11)),
    "lower_body_ids": tuple(range(11, 17)),
}
FORMER_MPII = {
    "joint_names": (
        "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
        "pelvis", "thorax", "upper_neck", "head_top",
        "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist",
    ),
    "flip_pairs": ((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)),
    "skeleton": (
        (0, 1), (1, 2), (2, 6), (3, 6), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9),
        (7, 12), (12, 11), (11, 10), (7, 13), (13, 14), (14, 15),
    ),
    "upper_body_ids": (7, 8, 9, 10, 11, 12, 13, 14, 15),
    "lower_body_ids": (0, 1, 2, 3, 4, 5, 6),
}
SPLIT = "val2017"


def test_coco_sigmas_are_the_former_float64_values_bit_for_bit():
    assert COCO_KEYPOINTS.oks_sigmas == FORMER_COCO_SIGMAS
    assert [value.hex() for value in COCO_KEYPOINTS.oks_sigmas] == [
        value.hex() for value in FORMER_COCO_SIGMAS]
    # Three differ from the plain literals in the last bit: the file must keep those bits.
    assert COCO_KEYPOINTS.oks_sigmas[0] != 0.026


@pytest.mark.parametrize(("spec", "former"), [(COCO_KEYPOINTS, FORMER_COCO),
                                              (MPII_KEYPOINTS, FORMER_MPII)])
def test_shipped_sets_equal_the_former_constants(spec, former):
    for name, value in former.items():
        assert getattr(spec, name) == value, name
    assert spec.joint_weights is None and spec.colours is None
    assert spec.source.endswith(f"conf/keypoints/{spec.name}.yaml")


def test_every_shipped_set_loads_and_writes_back_to_the_same_set(tmp_path):
    assert {"coco", "mpii"} <= set(shipped_keypoint_sets())
    for name in shipped_keypoint_sets():
        spec = load_keypoint_spec(name)
        path = tmp_path / f"{name}.yaml"
        path.write_text(keypoint_spec_yaml(spec, header="written back"))
        again = load_keypoint_spec(str(path))
        assert again.source == str(path)
        assert {**again.__dict__, "source": None} == {**spec.__dict__, "source": None}


def test_unknown_set_name_lists_the_shipped_ones():
    with pytest.raises(ValueError, match=r"keypoint set 'cocoo' is not known: expected one of "
                                         r".*coco, .*mpii"):
        load_keypoint_spec("cocoo")
    with pytest.raises(FileNotFoundError, match="keypoint set file /no/such.yaml not found"):
        load_keypoint_spec("/no/such.yaml")


BASE = {"name": "toy", "keypoints": ["nose", "left_eye", "right_eye", "tail"],
        "flip_pairs": [["left_eye", "right_eye"]],
        "skeleton": [["nose", "left_eye"], ["nose", "right_eye"], ["nose", "tail"]],
        "sigmas": [0.03, 0.02, 0.02, 0.05], "joint_weights": [1.0, 1.0, 1.0, 2.0],
        "upper_body": ["nose", "left_eye", "right_eye"], "lower_body": ["tail"],
        "colours": [[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]]}


def test_a_full_set_reads_every_key(tmp_path):
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(BASE))
    spec = load_keypoint_spec(path)
    assert spec.name == "toy" and spec.names == spec.joint_names == tuple(BASE["keypoints"])
    assert spec.flip_pairs == ((1, 2),) and spec.skeleton == ((0, 1), (0, 2), (0, 3))
    assert spec.oks_sigmas == (0.03, 0.02, 0.02, 0.05)
    assert spec.joint_weights == (1.0, 1.0, 1.0, 2.0)
    assert spec.upper_body_ids == (0, 1, 2) and spec.lower_body_ids == (3,)
    assert spec.drawing_colours() == ((255, 0, 0), (0, 255, 0), (0, 0, 255), (10, 20, 30))
    bare = keypoint_spec_from_dict({"name": "bare", "keypoints": ["a", "left_x", "right_x"],
                                    "flip_pairs": [["left_x", "right_x"]]}, "bare.yaml")
    assert bare.oks_sigmas is None and bare.upper_body_ids == bare.lower_body_ids == ()
    # Without colours: the first of each flip pair orange, the second blue, the others green.
    assert bare.drawing_colours() == ((60, 200, 60), (255, 128, 0), (0, 160, 255))


def _with(**changes):
    data = copy.deepcopy(BASE)
    for key, value in changes.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    return data


@pytest.mark.parametrize(("data", "message"), [
    (_with(keypoints=["nose", "left_eye", "right_eye", "nose"]),
     "keypoint 'nose' is listed twice (positions 0 and 3)"),
    (_with(flip_pairs=[["left_eye", "right_ear"]]),
     "'flip_pairs' names an unknown keypoint 'right_ear'"),
    (_with(skeleton=[["nose", "tail_tip"]]), "'skeleton' names an unknown keypoint 'tail_tip'"),
    (_with(upper_body=["nose", "neck"]), "'upper_body' names an unknown keypoint 'neck'"),
    (_with(lower_body=["paw"]), "'lower_body' names an unknown keypoint 'paw'"),
    (_with(flip_pairs=[["left_eye", "right_eye"], ["right_eye", "tail"]]),
     "keypoint 'right_eye' is in more than one flip pair"),
    (_with(flip_pairs=[["tail", "tail"]]), "'flip_pairs' pairs keypoint 'tail' with itself"),
    (_with(sigmas=[0.03, 0.02, 0.02]), "'sigmas' has 3 values for 4 keypoints"),
    (_with(sigmas=[0.03, 0.0, 0.02, 0.05]), "'sigmas' value 1 is 0.0; each must be a positive"),
    (_with(sigmas=[0.03, "1e-2", 0.02, 0.05]),
     "'sigmas' value 1 is the text '1e-2', not a number (YAML reads 1e-2 as text: write 0.01)"),
    (_with(joint_weights=[1.0, 1.0, 1.0, 1.0, 1.0]),
     "'joint_weights' has 5 values for 4 keypoints"),
    (_with(joint_weights=[1.0, -1.0, 1.0, 1.0]),
     "'joint_weights' value 1 is -1.0; each must be a positive"),
    (_with(upper_body=None), "'lower_body' is given without 'upper_body'"),
    (_with(upper_body=["nose", "nose"]), "'upper_body' lists a keypoint twice"),
    (_with(colours=[[0, 0, 0]]), "'colours' has 1 values for 4 keypoints"),
    (_with(colours=[[0, 0, 0], [0, 0, 256], [0, 0, 0], [0, 0, 0]]),
     "'colours' value 1 is [0, 0, 256]"),
    (_with(flip_pair=[]), "unknown key 'flip_pair'"),
    (_with(keypoints=None), "'keypoints' is missing"),
    (_with(skeleton=[["nose"]]), "'skeleton' must be a list of [name, name] pairs"),
    ([1, 2], "a keypoint set is a YAML mapping"),
])
def test_every_validation_error_names_the_file_and_the_item(data, message, tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError) as raised:
        load_keypoint_spec(path)
    assert str(raised.value).startswith(f"{path}: ")
    assert message in str(raised.value)


def test_a_file_that_is_not_yaml_is_named(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("keypoints: [a, b\n")
    with pytest.raises(ValueError, match=rf"{path}: not valid YAML"):
        load_keypoint_spec(path)


@pytest.mark.parametrize(("names", "pairs"), [
    (["nose", "left_eye", "right_eye"], ((1, 2),)),
    (["eye_left", "eye_right", "snout"], ((0, 1),)),
    (["snout", "l_ear", "r_ear", "L.paw", "R.paw"], ((1, 2), (3, 4))),
    (["LShoulder", "RShoulder", "Neck"], ((0, 1),)),
    (["leftear", "rightear", "LeftHind", "RightHind"], ((0, 1), (2, 3))),
    (["front_left_paw", "front_right_paw", "back-left-paw", "back-right-paw"], ((0, 1), (2, 3))),
    (["eyeLeft", "eyeRight"], ((0, 1),)),
    # The right one first: the pair is still (left, right).
    (["right_wing", "left_wing"], ((1, 0),)),
    # No partner, or not a side marker: unpaired.
    (["left_eye", "nose", "leg", "rudder", "lr", "left"], ()),
])
def test_flip_pairs_are_inferred_from_left_right_names(names, pairs):
    assert infer_flip_pairs(names) == pairs


def test_the_inferred_pairs_of_the_shipped_sets_are_their_own():
    assert infer_flip_pairs(COCO_KEYPOINTS.joint_names) == COCO_KEYPOINTS.flip_pairs
    assert {frozenset(pair) for pair in infer_flip_pairs(MPII_KEYPOINTS.joint_names)} == {
        frozenset(pair) for pair in MPII_KEYPOINTS.flip_pairs}


def test_a_category_gives_a_shipped_set_or_one_built_from_it():
    coco = {"id": 1, "name": "person", "keypoints": list(COCO_KEYPOINTS.joint_names)}
    spec, description = keypoint_spec_from_category(coco, "x.json")
    assert spec == COCO_KEYPOINTS and "keypoint set 'coco'" in description
    dog = {"id": 7, "name": "dog", "keypoints": ["nose", "left_ear", "right_ear", "tail"],
           "skeleton": [[1, 2], [1, 3], [1, 4]]}
    spec, description = keypoint_spec_from_category(dog, "x.json")
    assert spec.name == "dog" and spec.oks_sigmas is None
    assert spec.skeleton == ((0, 1), (0, 2), (0, 3)) and spec.flip_pairs == ((1, 2),)
    assert "flip pairs inferred from the names: left_ear/right_ear; unpaired: nose, tail" in (
        description)
    with pytest.raises(ValueError, match=r"x.json: category 7 \(dog\) has skeleton \[\[1, 5\]\]"):
        keypoint_spec_from_category({**dog, "skeleton": [[1, 5]]}, "x.json")
    with pytest.raises(ValueError, match=r"category 7 \(dog\) lists no keypoint names; give the "
                                         r"keypoint set with data.keypoints="):
        keypoint_spec_from_category({"id": 7, "name": "dog"}, "x.json")


# ------------------------------------------------------------------------------------------------
# Datasets: the json's category against the set


def coco_root(sample_dir: Path, root: Path, annotations: dict) -> Path:
    (root / SPLIT).mkdir(parents=True)
    (root / "annotations").mkdir()
    for image in sorted(sample_dir.glob("*.jpg")):
        (root / SPLIT / image.name).symlink_to(image.resolve())
    (root / "annotations" / f"person_keypoints_{SPLIT}.json").write_text(json.dumps(annotations))
    return root


@pytest.fixture
def sample_annotations(coco_sample_dir) -> dict:
    return json.loads((coco_sample_dir / "test_coco.json").read_text())


def test_a_json_whose_category_disagrees_with_the_set_is_refused(coco_sample_dir, tmp_path,
                                                                 sample_annotations):
    annotations = copy.deepcopy(sample_annotations)
    annotations["categories"][0]["keypoints"][3] = "left_earlobe"
    root = coco_root(coco_sample_dir, tmp_path / "names", annotations)
    with pytest.raises(ValueError, match=r"person_keypoints_val2017.json: keypoint 3 of category "
                                         r"1 is 'left_earlobe', in the keypoint set 'coco' "
                                         r"\(.*coco.yaml\) 'left_ear'"):
        CocoKeypoints(root, SPLIT)
    with pytest.raises(ValueError, match=r"category 1 \(person\) has 17 keypoints, the keypoint "
                                         r"set 'mpii' \(.*mpii.yaml\) 16"):
        CocoKeypoints(root, SPLIT, keypoints=MPII_KEYPOINTS)


def test_the_category_is_the_one_with_keypoints_or_the_chosen_one(coco_sample_dir, tmp_path,
                                                                  sample_annotations):
    annotations = copy.deepcopy(sample_annotations)
    person = annotations["categories"][0]
    annotations["categories"].append({**person, "id": 5, "name": "robot"})
    root = coco_root(coco_sample_dir, tmp_path / "two", annotations)
    with pytest.raises(ValueError, match=r"several categories have keypoints \(1 \(person, 17 "
                                         r"keypoints\), 5 \(robot, 17 keypoints\)\): choose one "
                                         r"with data.category_id="):
        CocoKeypoints(root, SPLIT)
    with pytest.raises(ValueError, match=r"there is no category with id 3 \(data.category_id\)"):
        CocoKeypoints(root, SPLIT, category_id=3)
    people = CocoKeypoints(root, SPLIT, category_id=1)
    assert people.category_id == 1 and len(people) > 0
    assert people.skipped_annotations["other_category"] == 0
    # The robots are the same annotations under category 5.
    for annotation in annotations["annotations"]:
        annotation["category_id"] = 5
    robots_root = coco_root(coco_sample_dir, tmp_path / "robots", annotations)
    robots = CocoKeypoints(robots_root, SPLIT, category_id=5)
    assert robots.category_id == 5 and len(robots) == len(people)
    with pytest.raises(ValueError, match=r"no person boxes to use in .*'other_category': 14"):
        CocoKeypoints(robots_root, SPLIT, category_id=1)


def test_without_a_set_the_json_decides_and_the_log_says_so(coco_sample_dir, tmp_path,
                                                            sample_annotations, caplog):
    root = coco_root(coco_sample_dir, tmp_path / "coco", sample_annotations)
    assert CocoKeypoints(root, SPLIT, keypoints=None).keypoints == COCO_KEYPOINTS
    annotations = copy.deepcopy(sample_annotations)
    category = annotations["categories"][0]
    category["name"] = "mannequin"
    category["keypoints"] = [f"j_{name}" for name in category["keypoints"]]
    custom = coco_root(coco_sample_dir, tmp_path / "custom", annotations)
    with caplog.at_level(logging.INFO, logger="pose"):
        dataset = CocoKeypoints(custom, SPLIT, keypoints=None)
    assert dataset.keypoints.name == "mannequin" and dataset.keypoints.oks_sigmas is None
    # "left" between separators marks the side: COCO's pairs, from the names alone.
    assert dataset.keypoints.flip_pairs == COCO_KEYPOINTS.flip_pairs
    assert dataset.keypoints.skeleton == COCO_KEYPOINTS.skeleton
    assert "keypoint set built from the json" in caplog.text
    assert ("flip pairs inferred from the names: j_left_eye/j_right_eye, j_left_ear/j_right_ear"
            in caplog.text)
    assert "j_left_ankle/j_right_ankle; unpaired: j_nose" in caplog.text


def test_given_annotation_file_and_image_folder_replace_the_layout(coco_sample_dir, tmp_path,
                                                                   sample_annotations):
    annotation_file = tmp_path / "labels" / "mine.json"
    annotation_file.parent.mkdir()
    annotation_file.write_text(json.dumps(sample_annotations))
    dataset = CocoKeypoints(tmp_path / "unused", "any", annotation_file=annotation_file,
                            image_dir=coco_sample_dir)
    assert dataset.annotation_file == annotation_file
    assert dataset.records[0]["image_path"].parent == coco_sample_dir
    with pytest.raises(FileNotFoundError, match=r"COCO annotation file .*nope.json not found"):
        CocoKeypoints(tmp_path, SPLIT, annotation_file=tmp_path / "nope.json",
                      image_dir=coco_sample_dir)
    with pytest.raises(FileNotFoundError, match=r"image folder .*nothing does not exist"):
        CocoKeypoints(tmp_path, SPLIT, annotation_file=annotation_file,
                      image_dir=tmp_path / "nothing")


# ------------------------------------------------------------------------------------------------
# Config: the joint count, the metric, data.keypoints


def schema(**sections) -> Config:
    cfg = OmegaConf.structured(Config)
    for key, value in sections.items():
        OmegaConf.update(cfg, key, value, merge=False)
    return cfg


def test_the_joint_count_follows_the_set_and_a_stated_one_must_agree():
    cfg = schema()
    record_keypoints(cfg, MPII_KEYPOINTS)
    assert cfg.model.num_joints == 16 and cfg.data.keypoints == "mpii"
    cfg = schema(**{"model.num_joints": 17})
    with pytest.raises(ValueError, match=r"model.num_joints=17 disagrees with the keypoint set "
                                         r"'mpii' \(.*mpii.yaml\), which has 16 keypoints; leave "
                                         r"model.num_joints out: the set gives it"):
        record_keypoints(cfg, MPII_KEYPOINTS)
    with pytest.raises(ValueError, match=r"run/best.pt holds a model of 17 joints, but the "
                                         r"keypoint set 'mpii' \(.*\) has 16"):
        record_keypoints(cfg, MPII_KEYPOINTS, checkpoint="run/best.pt")


def test_a_set_that_is_not_shipped_is_recorded_inline_and_read_back():
    spec = keypoint_spec_from_dict(BASE, "toy.yaml")
    cfg = schema()
    record_keypoints(cfg, spec)
    assert cfg.model.num_joints == 4 and cfg.data.keypoints.name == "toy"
    plain = OmegaConf.create(OmegaConf.to_container(cfg))  # as a checkpoint stores it
    again = configured_keypoint_spec(plain.data)
    assert {**again.__dict__, "source": None} == {**spec.__dict__, "source": None}


def test_eval_metric_defaults_and_refusals():
    toy = keypoint_spec_from_dict({**BASE, "sigmas": None}, "toy.yaml")
    assert evaluation_metric(schema(), COCO_KEYPOINTS) == "AP"
    assert evaluation_metric(schema(), toy) == "PCK@0.2"
    assert evaluation_metric(schema(**{"data.dataset": "mpii"}), MPII_KEYPOINTS) == "Mean"
    assert evaluation_metric(schema(**{"eval.metric": "PCK@0.05"}), COCO_KEYPOINTS) == "PCK@0.05"
    with pytest.raises(ValueError, match=r"eval.metric='AP' is not reported here: choose one of "
                                         r"PCK@0.05, PCK@0.1, PCK@0.2$"):
        evaluation_metric(schema(**{"eval.metric": "AP"}), toy)
    with pytest.raises(ValueError, match=r"eval.metric=EPE cannot pick best.pt, which goes to the "
                                         r"highest value: EPE is an error in pixels"):
        evaluation_metric(schema(**{"eval.metric": "EPE"}), COCO_KEYPOINTS)


def test_mpii_needs_the_mpii_joints(tmp_path):
    cfg = schema(**{"data.dataset": "mpii", "data.keypoints": "coco", "data.root": str(tmp_path)})
    with pytest.raises(ValueError, match=r"data.dataset=mpii is scored with PCKh on MPII's 16 "
                                         r"joints, but the keypoint set 'coco'"):
        build_dataset(cfg.data, train=False)
    cfg = schema(**{"data.dataset": "mpii", "data.val_annotation_file": "x.json"})
    with pytest.raises(ValueError, match="data.val_annotation_file is for COCO-format datasets"):
        build_dataset(cfg.data, train=False)


# ------------------------------------------------------------------------------------------------
# The loss's joint weights


def test_joint_weights_scale_the_target_weights_as_the_official_code():
    generator = torch.Generator().manual_seed(0)
    output = torch.rand(2, 4, 8, 6, generator=generator)
    target = torch.rand(2, 4, 8, 6, generator=generator)
    target_weight = torch.tensor([[1.0, 0.0, 1.0, 1.0], [1.0, 1.0, 1.0, 0.0]])[..., None]
    weights = [1.0, 1.2, 1.5, 2.0]
    weighted = target_weight * torch.tensor(weights)[None, :, None]
    expected = per_joint_mse(output, target, weighted).mean()
    assert torch.equal(build_loss("mse", joint_weights=weights)(output, target, target_weight),
                       expected)
    plain = build_loss("mse")(output, target, target_weight)
    assert not torch.equal(plain, expected)
    with pytest.raises(ValueError, match="set train.use_target_weight=true"):
        build_loss("mse", use_target_weight=False, joint_weights=weights)


# ------------------------------------------------------------------------------------------------
# End to end: a 13-joint subset of COCO (no eyes or ears) on a converted copy of the COCO sample

SUBSET = [name for name in COCO_KEYPOINTS.joint_names if not name.endswith(("_eye", "_ear"))]
SUBSET_CATEGORY = 7


def subset_rows(values: list, keep: list[int], width: int = 3) -> list:
    return [value for index in keep for value in values[width * index:width * (index + 1)]]


@pytest.fixture(scope="module")
def subset_data(coco_sample_dir, tmp_path_factory) -> dict[str, Path]:
    """The 13-joint set's YAML, the sample's json and detections converted to it (category 7),
    and the sample's images (read where they are)."""
    folder = tmp_path_factory.mktemp("coco13")
    keep = [COCO_KEYPOINTS.joint_names.index(name) for name in SUBSET]
    names = COCO_KEYPOINTS.joint_names
    spec = {
        "name": "coco13", "keypoints": SUBSET,
        "flip_pairs": [[names[a], names[b]] for a, b in COCO_KEYPOINTS.flip_pairs
                       if names[a] in SUBSET],
        "skeleton": [[names[a], names[b]] for a, b in COCO_KEYPOINTS.skeleton
                     if names[a] in SUBSET and names[b] in SUBSET],
        "sigmas": [COCO_KEYPOINTS.oks_sigmas[index] for index in keep],
        "upper_body": [name for name in SUBSET if "hip" not in name and "knee" not in name
                       and "ankle" not in name],
        "lower_body": [name for name in SUBSET if name.endswith(("hip", "knee", "ankle"))],
    }
    (folder / "coco13.yaml").write_text(yaml.safe_dump(spec))
    annotations = json.loads((coco_sample_dir / "test_coco.json").read_text())
    annotations["categories"] = [{"id": SUBSET_CATEGORY, "name": "person13",
                                  "keypoints": SUBSET, "skeleton": []}]
    for annotation in annotations["annotations"]:
        annotation["category_id"] = SUBSET_CATEGORY
        annotation["keypoints"] = subset_rows(annotation["keypoints"], keep)
        annotation["num_keypoints"] = sum(1 for v in annotation["keypoints"][2::3] if v > 0)
    (folder / "coco13.json").write_text(json.dumps(annotations))
    detections = json.loads((coco_sample_dir / "test_coco_det_AP_H_56.json").read_text())
    for detection in detections:
        detection["category_id"] = SUBSET_CATEGORY
    (folder / "detections13.json").write_text(json.dumps(detections))
    return {"yaml": folder / "coco13.yaml", "json": folder / "coco13.json",
            "detections": folder / "detections13.json", "images": coco_sample_dir,
            "folder": folder}


def ap_metrics(metrics: dict) -> dict:
    return {name: metrics[name] for name in METRIC_NAMES}


@pytest.fixture(scope="module")
def subset_run(subset_data, run_module) -> Path:
    run_dir = subset_data["folder"] / "run"
    result = run_module(
        "pose.train", "experiment=demo", f"data.keypoints={subset_data['yaml']}",
        f"data.train_annotation_file={subset_data['json']}",
        f"data.val_annotation_file={subset_data['json']}",
        f"data.train_image_dir={subset_data['images']}",
        f"data.val_image_dir={subset_data['images']}", "train.max_steps=2",
        "train.batch_size=4", "data.num_workers=0", "device=cpu", "eval.num_visualize=0",
        f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.mark.slow
def test_a_13_joint_subset_trains_and_its_ap_equals_pycocotools(subset_run, subset_data,
                                                               pycocotools_eval):
    metrics = json.loads((subset_run / "metrics.json").read_text())
    assert list(metrics) == [*METRIC_NAMES, *PCK_NAMES, "EPE", "metric"]
    assert metrics["metric"] == "AP"
    results = json.loads((subset_run / "results.json").read_text())
    assert results and all(len(entry["keypoints"]) == 13 * 3 for entry in results)
    assert {entry["category_id"] for entry in results} == {SUBSET_CATEGORY}
    sigmas = load_keypoint_spec(subset_data["yaml"]).oks_sigmas
    reference = pycocotools_eval(subset_data["json"], results, sigmas=sigmas).stats
    assert dict(zip(METRIC_NAMES, reference.tolist())) == pytest.approx(ap_metrics(metrics),
                                                                        abs=1e-12)
    checkpoint = torch.load(subset_run / "best.pt", map_location="cpu", weights_only=False)
    assert checkpoint["config"]["model"]["num_joints"] == 13
    # Not a shipped set: the checkpoint carries it whole.
    assert checkpoint["config"]["data"]["keypoints"]["keypoints"] == SUBSET
    assert checkpoint["model"]["final_layer.weight"].shape[0] == 13  # the model's heatmaps


@pytest.mark.slow
def test_the_subset_checkpoint_evaluates_with_detections_from_itself_alone(
        subset_run, subset_data, run_module, pycocotools_eval):
    out_dir = subset_run / "eval_det"
    result = run_module("pose.eval", f"checkpoint={subset_run / 'best.pt'}",
                        "eval.use_gt_boxes=false", f"eval.det_file={subset_data['detections']}",
                        "eval.num_visualize=0", f"hydra.run.dir={out_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["misses"] >= 0 and "PCK@0.2" in metrics and "| misses" in result.stdout
    results = json.loads((out_dir / "results.json").read_text())
    sigmas = load_keypoint_spec(subset_data["yaml"]).oks_sigmas
    reference = pycocotools_eval(subset_data["json"], results, sigmas=sigmas).stats
    assert dict(zip(METRIC_NAMES, reference.tolist())) == pytest.approx(ap_metrics(metrics),
                                                                        abs=1e-12)


@pytest.mark.slow
def test_a_checkpoint_of_another_joint_count_is_refused(subset_run, coco_sample_dir, tmp_path,
                                                        run_module):
    result = run_module("pose.eval", f"checkpoint={subset_run / 'best.pt'}", "data.keypoints=coco",
                        f"data.val_annotation_file={coco_sample_dir / 'test_coco.json'}",
                        f"hydra.run.dir={tmp_path / 'eval'}")
    assert result.returncode == 2
    assert (f"{subset_run / 'best.pt'} holds a model of 13 joints, but the keypoint set 'coco'"
            in result.stderr)
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_preset_stating_another_joint_count_is_refused(subset_data, tmp_path, run_module):
    result = run_module(
        "pose.train", "experiment=demo", f"data.keypoints={subset_data['yaml']}",
        "model.num_joints=17", f"data.train_annotation_file={subset_data['json']}",
        f"data.train_image_dir={subset_data['images']}", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    assert ("model.num_joints=17 disagrees with the keypoint set 'coco13'" in result.stderr)
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "config.yaml").exists()
