"""The embedded non-human example: the synthetic quadruped dataset (AP-10K's 17 keypoints,
category 2) is deterministic, in COCO format, labelled consistently with its pixels, and read
with its shipped keypoint set."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO

from pose import synthetic
from pose.data import CocoKeypoints
from pose.data.keypoints import load_keypoint_spec
from pose.synthetic import generate_coco_dataset
from pose.synthetic.coco import SUBJECTS

SEED, IMAGE_SIZE = 2, (192, 160)
QUADRUPED = load_keypoint_spec("quadruped")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("quadruped") / "data"
    generate_coco_dataset(root, num_train_images=5, num_val_images=4, seed=SEED,
                          image_size=IMAGE_SIZE, subject="quadruped")
    return root


def test_the_set_has_twelve_or_more_keypoints_a_flip_pair_and_sigmas():
    assert QUADRUPED.num_joints >= 12 and QUADRUPED.flip_pairs
    assert QUADRUPED.oks_sigmas is not None and len(QUADRUPED.oks_sigmas) == 17


def test_the_same_seed_gives_the_same_bytes(root, tmp_path):
    again = tmp_path / "again"
    generate_coco_dataset(again, num_train_images=5, num_val_images=4, seed=SEED,
                          image_size=IMAGE_SIZE, subject="quadruped")
    files = sorted(path.relative_to(root) for path in root.rglob("*") if path.is_file())
    assert files == sorted(path.relative_to(again) for path in again.rglob("*") if path.is_file())
    assert all((root / name).read_bytes() == (again / name).read_bytes() for name in files)
    with pytest.raises(ValueError, match="subject 'dragon' is not known: expected one of "
                                         "person, quadruped"):
        generate_coco_dataset(tmp_path / "x", subject="dragon")


def test_coco_format_with_its_own_category(root):
    for split in ("train2017", "val2017"):
        path = root / "annotations" / f"quadruped_keypoints_{split}.json"
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(path))
        assert coco.getCatIds() == [2]
        category = coco.loadCats(2)[0]
        assert category["keypoints"] == list(QUADRUPED.joint_names)
        assert all(len(annotation["keypoints"]) == 17 * 3 for annotation in
                   coco.dataset["annotations"])
    detections = json.loads((root / "annotations" / "quadruped_detections_val2017.json")
                            .read_text())
    assert detections and {entry["category_id"] for entry in detections} == {2}


def test_read_without_a_keypoint_set_it_gets_the_shipped_quadruped(root):
    dataset = CocoKeypoints(
        root, "val2017", keypoints=None,
        annotation_file=root / "annotations" / "quadruped_keypoints_val2017.json")
    assert dataset.keypoints == QUADRUPED and dataset.category_id == 2
    item = dataset[0]
    assert item["joints"].shape == (17, 3) and item["target"].shape[0] == 17


def test_visibility_flags_agree_with_the_pixels(root):
    """As for the person: a visible keypoint's pixel changes when its parts are repainted, an
    occluded one's mostly does not."""
    dataset = json.loads((root / "annotations" / "quadruped_keypoints_train2017.json")
                         .read_text())
    subject = SUBJECTS["quadruped"]
    visible, occluded, occluded_unchanged = 0, 0, 0
    for index, info in enumerate(dataset["images"]):
        scene = synthetic.sample_scene(synthetic.image_rng(SEED, "train2017", index), IMAGE_SIZE,
                                       None, subject.sample_figure)
        people = [annotation for annotation in dataset["annotations"]
                  if annotation["image_id"] == info["id"]]
        assert len(people) == len(scene.people)
        for person_index, annotation in enumerate(people):
            figure = scene.people[person_index]
            for joint, (x, y, flag) in enumerate(np.reshape(annotation["keypoints"], (17, 3))):
                if flag == 0:
                    continue
                pixels = []
                for colour in ((0, 0, 0), (255, 255, 255)):
                    primitives = [dataclasses.replace(primitive, colour=colour)
                                  if primitive.part in figure.joint_parts[joint] else primitive
                                  for primitive in figure.primitives]
                    figures = list(scene.people)
                    figures[person_index] = dataclasses.replace(figure, primitives=primitives)
                    image, _, _ = synthetic.render_scene(
                        dataclasses.replace(scene, people=figures), finish=False)
                    pixels.append(image[int(np.floor(y + 0.5)), int(np.floor(x + 0.5))])
                changed = bool(np.any(pixels[0] != pixels[1]))
                if flag == 2:
                    visible += 1
                    assert changed, (annotation["id"], joint)
                else:
                    occluded += 1
                    occluded_unchanged += not changed
    assert visible > 40 and occluded > 5
    assert occluded_unchanged >= 0.9 * occluded, (occluded_unchanged, occluded)
