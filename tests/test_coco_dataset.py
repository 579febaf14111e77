"""CocoKeypoints against the official COCODataset/JointsDataset outputs on the 4-image sample."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from pose.data import (
    AugmentationParams,
    CocoKeypoints,
    CorruptImageWarning,
    ImageReadError,
    collate_skip_none,
)

SPLIT = "val2017"
DET_FILE = "test_coco_det_AP_H_56.json"


def make_root(sample_dir: Path, root: Path, layout: str = "flat", copy: bool = False) -> Path:
    """A dataset root holding the sample: images in <root>/val2017 or <root>/images/val2017."""
    image_dir = root / SPLIT if layout == "flat" else root / "images" / SPLIT
    image_dir.mkdir(parents=True)
    (root / "annotations").mkdir()
    place = shutil.copyfile if copy else (lambda src, dst: os.symlink(src.resolve(), dst))
    place(sample_dir / "test_coco.json", root / "annotations" / f"person_keypoints_{SPLIT}.json")
    for image in sorted(sample_dir.glob("*.jpg")):
        place(image, image_dir / image.name)
    return root


class ReplayDraws:
    """Replays the official run's logged random draws through our two draw methods."""

    def __init__(self, rng_log: list[list]) -> None:
        self.log = list(rng_log)

    def _next(self, allowed: tuple[str, ...]) -> float:
        name, value = self.log.pop(0)
        assert name in allowed, f"we drew {allowed} where the official code called {name}"
        return value

    def random(self) -> float:
        return self._next(("np.random.rand", "random.random"))

    def standard_normal(self) -> float:
        return self._next(("np.random.randn",))


@pytest.fixture(scope="module")
def sample_root(coco_sample_dir, tmp_path_factory) -> Path:
    return make_root(coco_sample_dir, tmp_path_factory.mktemp("coco"), layout="images")


@pytest.fixture(scope="module")
def val_dataset(sample_root) -> CocoKeypoints:
    return CocoKeypoints(sample_root, SPLIT)


def load_json(path: Path):
    return json.loads(path.read_text())


# ------------------------------------------------------------------------------------------------
# Records


@pytest.mark.parametrize("layout", ["flat", "images"])
def test_ground_truth_records_equal_official(reference_dir, coco_sample_dir, tmp_path, layout):
    root = make_root(coco_sample_dir, tmp_path, layout)
    dataset = CocoKeypoints(root, SPLIT)
    expected_dir = root / SPLIT if layout == "flat" else root / "images" / SPLIT
    assert dataset.image_dir == expected_dir
    assert dataset.annotation_file == root / "annotations" / f"person_keypoints_{SPLIT}.json"
    official = load_json(reference_dir / "coco" / "mmpose4_db_gt.json")["db"]
    assert len(dataset) == len(dataset.records) == len(official) == 12
    annotations = load_json(coco_sample_dir / "test_coco.json")["annotations"]
    areas = {a["area"] for a in annotations if not a["iscrowd"] and max(a["keypoints"]) > 0}
    for record, expected in zip(dataset.records, official, strict=True):
        assert record["image_path"] == expected_dir / expected["image"]
        assert record["image_path"].is_file()
        np.testing.assert_array_equal(record["center"], np.float32(expected["center"]))
        np.testing.assert_array_equal(record["scale"], np.float32(expected["scale"]))
        np.testing.assert_array_equal(record["joints"], np.array(expected["joints_3d"])[:, :2])
        np.testing.assert_array_equal(record["visible"], np.array(expected["joints_3d_vis"])[:, 0])
        assert record["score"] == 1.0 and record["area"] in areas
    # Two annotations have no labelled keypoint and are dropped.
    assert len(annotations) == 14


def test_detection_records_equal_official(reference_dir, coco_sample_dir, sample_root):
    dataset = CocoKeypoints(sample_root, SPLIT, det_file=coco_sample_dir / DET_FILE)
    official = load_json(reference_dir / "coco" / "mmpose4_db_det.json")["db"]
    detections = load_json(coco_sample_dir / DET_FILE)
    assert len(dataset) == len(official) == len(detections) == 118
    for record, expected, detection in zip(dataset.records, official, detections, strict=True):
        assert record["image_path"].name == expected["image"]
        assert record["image_id"] == detection["image_id"]
        assert record["score"] == expected["score"] == detection["score"]
        np.testing.assert_array_equal(record["center"], np.float32(expected["center"]))
        np.testing.assert_array_equal(record["scale"], np.float32(expected["scale"]))
        assert record["area"] == pytest.approx(np.prod(np.float32(expected["scale"]) * 200))
        assert not record["visible"].any()  # no keypoints known for a detected box


def test_detection_score_threshold(coco_sample_dir, sample_root):
    threshold = 0.5
    dataset = CocoKeypoints(
        sample_root, SPLIT, det_file=coco_sample_dir / DET_FILE, det_score_threshold=threshold
    )
    scores = [d["score"] for d in load_json(coco_sample_dir / DET_FILE)]
    assert len(dataset) == sum(score >= threshold for score in scores)
    assert 0 < len(dataset) < len(scores)
    item = dataset[0]
    assert item["score"] == dataset.records[0]["score"] < 1
    assert item["target_weight"].sum() == 0


# ------------------------------------------------------------------------------------------------
# Items


def test_val_items_equal_official(reference_dir, val_dataset, coco_sample_dir):
    official = np.load(reference_dir / "coco" / "mmpose4_getitem_val.npz")
    meta = load_json(reference_dir / "coco" / "mmpose4_getitem_val_meta.json")
    annotation_areas = sorted(
        a["area"] for a in load_json(coco_sample_dir / "test_coco.json")["annotations"]
    )
    one_level = 1 / 255 / 0.225  # one uint8 step after normalisation
    for index, expected in enumerate(meta):
        item = val_dataset[index]
        assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 256, 192)
        # Equal to 1e-5; a different cv2 SIMD path may move a rare pixel by one uint8 level.
        image_error = np.abs(item["image"].numpy() - official["input"][index])
        assert np.mean(image_error > 1e-5) < 1e-3 and image_error.max() <= one_level + 1e-5
        np.testing.assert_array_equal(item["target"].numpy(), official["target"][index])
        np.testing.assert_array_equal(
            item["target_weight"].numpy(), official["target_weight"][index][:, 0]
        )
        np.testing.assert_array_equal(item["center"].numpy(), np.float32(expected["center"]))
        np.testing.assert_array_equal(item["scale"].numpy(), np.float32(expected["scale"]))
        np.testing.assert_array_equal(
            item["joints"].numpy()[:, :2], np.float32(np.array(expected["joints"])[:, :2])
        )
        np.testing.assert_array_equal(
            item["joints"].numpy()[:, 2], np.array(expected["joints_vis"])[:, 0]
        )
        assert item["rotation"] == expected["rotation"] == 0
        assert item["score"] == expected["score"] == 1.0
        assert item["index"] == index
        assert item["image_id"] == int(expected["image"].split(".")[0])
        assert item["area"] in annotation_areas


def test_train_items_replay_official_draws(reference_dir, sample_root):
    official = np.load(reference_dir / "coco" / "mmpose4_getitem_train.npz")
    samples = load_json(reference_dir / "coco" / "mmpose4_getitem_train_meta.json")
    # Bit-exact crops need the full-resolution decode (reduced_decoding is off by default).
    dataset = CocoKeypoints(
        sample_root, SPLIT, train=True, reduced_decoding=False,
        augmentation=AugmentationParams(scale_factor=0.35, rotation_factor=45, half_body_prob=0.3),
    )
    kinds = set()
    for sample in samples:
        index = sample["db_index"]
        draws = ReplayDraws(sample["rng_log"])
        item = dataset.get_item_with_rng(index, draws)
        assert not draws.log, "not every logged draw was consumed"
        kinds.add((len(sample["rng_log"]), sample["rng_log"][-1][1] <= 0.5))
        np.testing.assert_array_equal(item["center"].numpy(), np.float32(sample["center"]))
        np.testing.assert_array_equal(item["scale"].numpy(), np.float32(sample["scale"]))
        assert item["rotation"] == sample["rotation"]
        np.testing.assert_array_equal(
            item["joints"].numpy()[:, :2], np.float32(np.array(sample["joints"])[:, :2])
        )
        np.testing.assert_array_equal(
            item["joints"].numpy()[:, 2], np.array(sample["joints_vis"])[:, 0]
        )
        np.testing.assert_array_equal(item["target"].numpy(), official["target"][index])
        np.testing.assert_array_equal(
            item["target_weight"].numpy(), official["target_weight"][index][:, 0]
        )
        np.testing.assert_allclose(item["image"].numpy(), official["input"][index], atol=1e-5)
    # The fixture covers half-body, rotation and flip, each on and off.
    assert {4, 5, 6} <= {length for length, _ in kinds}
    assert {True, False} == {flipped for _, flipped in kinds}


def test_train_augmentation_depends_only_on_seed_epoch_index(sample_root):
    first = CocoKeypoints(sample_root, SPLIT, train=True, seed=7)
    second = CocoKeypoints(sample_root, SPLIT, train=True, seed=7)
    second.set_epoch(3)
    first.set_epoch(3)
    # Any access order (as in different workers) gives the same samples.
    for index in (5, 0, 5):
        a, b = first[index], second[index]
        assert a["rotation"] == b["rotation"]
        torch.testing.assert_close(a["image"], b["image"], rtol=0, atol=0)
        torch.testing.assert_close(a["joints"], b["joints"], rtol=0, atol=0)
    expected = first.get_item_with_rng(2, np.random.default_rng([7, 3, 2]))
    torch.testing.assert_close(first[2]["scale"], expected["scale"], rtol=0, atol=0)

    def boxes(dataset):
        return [tuple(dataset[i]["scale"].tolist()) for i in range(len(dataset))]

    reference = boxes(first)
    first.set_epoch(4)
    assert boxes(first) != reference
    other_seed = CocoKeypoints(sample_root, SPLIT, train=True, seed=8)
    other_seed.set_epoch(3)
    assert boxes(other_seed) != reference


def test_set_epoch_reaches_persistent_workers(sample_root):
    dataset = CocoKeypoints(sample_root, SPLIT, train=True, seed=3)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=4, num_workers=1, persistent_workers=True,
        collate_fn=collate_skip_none,
    )
    for epoch in (0, 5):
        dataset.set_epoch(epoch)
        scales = torch.cat([batch["scale"] for batch in loader])
        expected = torch.stack([
            dataset.get_item_with_rng(i, np.random.default_rng([3, epoch, i]))["scale"]
            for i in range(len(dataset))
        ])
        torch.testing.assert_close(scales, expected, rtol=0, atol=0)


# ------------------------------------------------------------------------------------------------
# Errors and corrupt images


def test_missing_paths_name_the_problem(coco_sample_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*annotations/person_keypoints"):
        CocoKeypoints(tmp_path / "nowhere", SPLIT)
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(FileNotFoundError, match=r"person_keypoints_val2017\.json not found"):
        CocoKeypoints(root, SPLIT)
    (root / "annotations").mkdir()
    shutil.copyfile(
        coco_sample_dir / "test_coco.json", root / "annotations" / "person_keypoints_val2017.json"
    )
    with pytest.raises(FileNotFoundError, match="no COCO image folder.*images/val2017"):
        CocoKeypoints(root, SPLIT)


def test_bad_detection_files(sample_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.json"):
        CocoKeypoints(sample_root, SPLIT, det_file=tmp_path / "missing.json")
    not_a_list = tmp_path / "dict.json"
    not_a_list.write_text(json.dumps({"image_id": 785}))
    with pytest.raises(ValueError, match="dict.json.*JSON list"):
        CocoKeypoints(sample_root, SPLIT, det_file=not_a_list)
    no_score = tmp_path / "no_score.json"
    no_score.write_text(json.dumps([
        {"image_id": 785, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.9},
        {"image_id": 785, "category_id": 1, "bbox": [1, 2, 3, 4]},
    ]))
    with pytest.raises(ValueError, match=r"no_score.json: entry 1 .*'bbox': \[1, 2, 3, 4\]"):
        CocoKeypoints(sample_root, SPLIT, det_file=no_score)
    unknown_image = tmp_path / "unknown.json"
    unknown_image.write_text(json.dumps([{"image_id": 5, "bbox": [1, 2, 3, 4], "score": 0.9}]))
    with pytest.raises(ValueError, match="image_id 5"):
        CocoKeypoints(sample_root, SPLIT, det_file=unknown_image)
    with pytest.raises(ValueError, match="evaluation"):
        CocoKeypoints(sample_root, SPLIT, train=True, det_file=unknown_image)


def test_corrupt_image_skipped_in_training_and_fatal_in_evaluation(coco_sample_dir, tmp_path):
    root = make_root(coco_sample_dir, tmp_path, layout="flat", copy=True)
    corrupt = root / SPLIT / "000000040083.jpg"  # holds two people
    corrupt.write_bytes(b"this is not a jpeg" * 10)

    train = CocoKeypoints(root, SPLIT, train=True)
    corrupt_indices = [i for i, r in enumerate(train.records) if r["image_path"] == corrupt]
    assert len(corrupt_indices) == 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        items = [train[i] for i in range(len(train))]
    messages = [str(w.message) for w in caught if issubclass(w.category, CorruptImageWarning)]
    assert len(messages) == 1 and str(corrupt) in messages[0]  # once per image
    assert [i for i, item in enumerate(items) if item is None] == corrupt_indices

    batch = collate_skip_none(items[:4])
    assert batch["num_skipped"] == 2
    assert batch["image"].shape == (2, 3, 256, 192)
    assert batch["target"].shape == (2, 17, 64, 48)
    assert batch["index"].tolist() == [0, 3]
    assert collate_skip_none([None, None]) == {"num_skipped": 2}

    evaluation = CocoKeypoints(root, SPLIT)
    with pytest.raises(ImageReadError, match="000000040083.jpg") as error:
        evaluation[corrupt_indices[0]]
    assert isinstance(error.value, OSError)


def test_collate_full_batch(val_dataset):
    batch = collate_skip_none([val_dataset[0], val_dataset[1]])
    assert batch["num_skipped"] == 0
    assert batch["center"].shape == (2, 2) and batch["center"].dtype == torch.float32
    assert batch["joints"].shape == (2, 17, 3)
    assert batch["target_weight"].shape == (2, 17)
    assert batch["image_id"].tolist() == [785, 40083]
    assert batch["score"].tolist() == [1.0, 1.0]
