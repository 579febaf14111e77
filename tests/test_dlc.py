"""The DeepLabCut label converter: both header forms, NaNs, boxes, the split, the outputs (never
overwritten unasked), and a dataset that pose reads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from pose.data import CocoKeypoints
from pose.data.converters.dlc import MIN_BOX_SIDE, convert_dlc, individual_box, read_dlc_csv
from pose.data.keypoints import load_keypoint_spec

REPO_ROOT = Path(__file__).resolve().parents[1]
BODYPARTS = ["snout", "leftear", "rightear", "tailbase"]


def write_images(root: Path, names: list[str], size: tuple[int, int] = (160, 120)) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), np.full((size[1], size[0], 3), 90, dtype=np.uint8))


def single_animal_csv(path: Path) -> list[str]:
    """Three header rows, the index in three columns; the second image's ear is unlabelled
    (an empty cell and a NaN), the third image has nothing labelled."""
    frames = ["img000.png", "img001.png", "img002.png", "img003.png"]
    rows = [
        ["scorer", "", "", *["Ann"] * 8],
        ["bodyparts", "", "", *[part for part in BODYPARTS for _ in range(2)]],
        ["coords", "", "", *["x", "y"] * 4],
        ["labeled-data", "mouse1", frames[0], "50", "40", "40.5", "30", "60", "30", "52", "90"],
        ["labeled-data", "mouse1", frames[1], "80", "60", "", "NaN", "90", "50", "82", "100"],
        ["labeled-data", "mouse1", frames[2], *["NaN"] * 8],
        ["labeled-data", "mouse1", frames[3], "10", "10", "NaN", "NaN", "NaN", "NaN", "NaN", "NaN"],
    ]
    path.write_text("\n".join(",".join(row) for row in rows) + "\n")
    return [f"labeled-data/mouse1/{frame}" for frame in frames]


def multi_animal_csv(path: Path) -> list[str]:
    """Four header rows (individuals), the index in one column, a likelihood column to ignore,
    DLC's "single" individual with its own body part, an individual left unlabelled."""
    images = ["labeled-data/cage/a.png", "labeled-data/cage/b.png"]
    individuals = ["m1"] * 8 + ["m2"] * 8 + ["single"] * 2 + ["m1"]
    rows = [
        ["scorer", *["Bo"] * 19],
        ["individuals", *individuals],
        ["bodyparts", *[part for part in BODYPARTS for _ in range(2)] * 2, "corner", "corner",
         "snout"],
        ["coords", *["x", "y"] * 9, "likelihood"],
        [images[0], "10", "20", "5", "15", "15", "15", "10", "40",
         *["NaN"] * 8, "0", "0", "0.9"],
        [images[1], "30", "30", "25", "25", "35", "25", "30", "50",
         "100", "60", "95", "55", "105", "55", "100", "80", "1", "1", "0.8"],
    ]
    path.write_text("\n".join(",".join(row) for row in rows) + "\n")
    return images


def test_single_animal_labels_become_coco_jsons_and_a_keypoint_set(tmp_path):
    images = single_animal_csv(tmp_path / "CollectedData_Ann.csv")
    write_images(tmp_path / "project", images)
    summary = convert_dlc(tmp_path / "CollectedData_Ann.csv", tmp_path / "project",
                          tmp_path / "out", val_fraction=0.3, seed=0)
    assert summary["flip_pairs"] == "leftear/rightear; unpaired: snout, tailbase"
    assert summary["unlabelled_images"] == 1 and summary["empty_individuals_skipped"] == 1
    assert summary["images"] == {"train": 2, "val": 1}
    train = json.loads((tmp_path / "out" / "train.json").read_text())
    val = json.loads((tmp_path / "out" / "val.json").read_text())
    every = {image["file_name"]: image for image in train["images"] + val["images"]}
    assert set(every) == {images[0], images[1], images[3]}  # relative to the image root
    assert all((image["width"], image["height"]) == (160, 120) for image in every.values())
    assert train["categories"] == val["categories"] == [
        {"id": 1, "name": "Ann", "supercategory": "Ann", "keypoints": BODYPARTS, "skeleton": []}]
    people = {annotation["image_id"]: annotation
              for annotation in train["annotations"] + val["annotations"]}
    first, second, fourth = people[1], people[2], people[4]
    assert first["keypoints"] == [50, 40, 2, 40.5, 30, 2, 60, 30, 2, 52, 90, 2]
    assert second["keypoints"] == [80, 60, 2, 0, 0, 0, 90, 50, 2, 82, 100, 2]
    assert [person["num_keypoints"] for person in (first, second, fourth)] == [4, 3, 1]
    # Extent x 40.5..60, y 30..90; margin 0.1 * 60 = 6 px on each side: y 24..96; x 34.5..66
    # is 31.5 wide, widened to the minimum 32 around its centre.
    assert first["bbox"] == [34.25, 24.0, 32.0, 72.0]
    assert first["area"] == 32.0 * 72.0
    # One keypoint: a MIN_BOX_SIDE square around it, clipped at the image's corner.
    assert fourth["bbox"] == [0.0, 0.0, 10 + MIN_BOX_SIDE / 2, 10 + MIN_BOX_SIDE / 2]

    spec = load_keypoint_spec(tmp_path / "out" / "keypoints.yaml")
    assert spec.joint_names == tuple(BODYPARTS) and spec.flip_pairs == ((1, 2),)
    assert spec.oks_sigmas is None and spec.skeleton == ()
    # pose reads it: file names relative to the image root.
    dataset = CocoKeypoints(tmp_path, "train", image_size=(64, 64), heatmap_size=(16, 16),
                            keypoints=spec, annotation_file=tmp_path / "out" / "train.json",
                            image_dir=tmp_path / "project")
    assert len(dataset) == 2 and dataset[0]["image"].shape == (3, 64, 64)


def test_multi_animal_labels_skip_empty_and_other_individuals(tmp_path):
    images = multi_animal_csv(tmp_path / "labels.csv")
    write_images(tmp_path, images, size=(200, 100))
    labels = read_dlc_csv(tmp_path / "labels.csv")
    assert labels.bodyparts == BODYPARTS and labels.other_individuals == ["single"]
    assert labels.scorer == "Bo" and labels.empty_individuals == 1
    assert [len(individuals) for _, individuals in labels.images] == [1, 2]
    np.testing.assert_array_equal(labels.images[1][1][1],
                                  [[100, 60], [95, 55], [105, 55], [100, 80]])
    summary = convert_dlc(tmp_path / "labels.csv", tmp_path, tmp_path / "out", seed=3,
                          name="mice")
    assert summary["individuals"]["train"] + summary["individuals"]["val"] == 3
    assert summary["other_individuals_left_out"] == ["single"]
    assert load_keypoint_spec(tmp_path / "out" / "keypoints.yaml").name == "mice"


def test_the_split_keeps_a_labelled_image_on_each_side(tmp_path):
    images = single_animal_csv(tmp_path / "c.csv")
    write_images(tmp_path, images)
    for fraction, seed in ((0.01, 0), (0.99, 1), (0.5, 2)):
        out = tmp_path / f"out{seed}"
        summary = convert_dlc(tmp_path / "c.csv", tmp_path, out, val_fraction=fraction,
                              seed=seed)
        assert min(summary["images"].values()) >= 1 and sum(summary["images"].values()) == 3
    same = convert_dlc(tmp_path / "c.csv", tmp_path, tmp_path / "again", val_fraction=0.5,
                       seed=2)
    assert (tmp_path / "again" / "val.json").read_bytes() == (
        tmp_path / "out2" / "val.json").read_bytes() and same["images"] == summary["images"]


def test_existing_outputs_are_never_overwritten_unasked(tmp_path):
    images = single_animal_csv(tmp_path / "c.csv")
    write_images(tmp_path, images)
    out = tmp_path / "out"
    out.mkdir()
    (out / "val.json").write_text("mine")
    with pytest.raises(FileExistsError, match=r"out/val.json already exist\(s\); nothing was "
                                              r"written \(--overwrite replaces them\)"):
        convert_dlc(tmp_path / "c.csv", tmp_path, out)
    assert sorted(path.name for path in out.iterdir()) == ["val.json"]
    assert (out / "val.json").read_text() == "mine"
    convert_dlc(tmp_path / "c.csv", tmp_path, out, overwrite=True)
    assert sorted(path.name for path in out.iterdir()) == ["keypoints.yaml", "train.json",
                                                           "val.json"]
    assert json.loads((out / "val.json").read_text())["images"]


@pytest.mark.parametrize(("content", "message"), [
    ("a,b\n1,2\n", "not a DeepLabCut label CSV"),
    ("scorer,,A,A\nbodyparts,,nose,nose\ncoords,,x,x\n", "body part 'nose' has two x columns"),
    ("scorer,A,A\nbodyparts,nose,ear\ncoords,x,y\n", "body part 'nose' lacks its y column"),
    ("scorer,A,A\nbodyparts,nose,nose\ncoords,x,y\nimg.png,1,oops\n",
     "row 4, column 3 is 'oops', not a coordinate"),
    ("scorer,A,A\nbodyparts,nose,nose\ncoords,x,y\nimg.png,1,2\n",
     "1 image(s) with a labelled individual: train and val need at least one each"),
])
def test_malformed_labels_get_one_clear_error(content, message, tmp_path):
    (tmp_path / "c.csv").write_text(content)
    with pytest.raises(ValueError) as raised:
        convert_dlc(tmp_path / "c.csv", tmp_path, tmp_path / "out")
    assert message in str(raised.value)
    assert not (tmp_path / "out").exists()


def test_a_missing_image_is_named(tmp_path):
    single_animal_csv(tmp_path / "c.csv")
    with pytest.raises(FileNotFoundError, match=r"image labeled-data/mouse1/img00\d.png \(from "
                                                r"the CSV\) not found under the image root"):
        convert_dlc(tmp_path / "c.csv", tmp_path, tmp_path / "out")


def test_boxes_of_one_or_two_keypoints_have_the_minimum_size():
    two = np.array([[50.0, 50.0], [52.0, np.nan], [54.0, 50.0]])
    two[1] = np.nan
    box = individual_box(two, 200, 200)
    assert box == [52 - MIN_BOX_SIDE / 2, 50 - MIN_BOX_SIDE / 2, MIN_BOX_SIDE, MIN_BOX_SIDE]


@pytest.mark.slow
def test_the_command_line_prints_the_training_command(tmp_path):
    images = single_animal_csv(tmp_path / "c.csv")
    write_images(tmp_path / "root", images)
    command = [sys.executable, str(REPO_ROOT / "scripts" / "convert_dlc.py"),
               str(tmp_path / "c.csv"), "--image-root", str(tmp_path / "root"),
               "--out", str(tmp_path / "out")]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"data.train_image_dir={(tmp_path / 'root').resolve()}" in result.stdout
    assert f"data.keypoints={(tmp_path / 'out' / 'keypoints.yaml').resolve()}" in result.stdout
    again = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    assert again.returncode == 2 and "convert_dlc: error:" in again.stderr
    assert "already exist" in again.stderr and "Traceback" not in again.stderr
