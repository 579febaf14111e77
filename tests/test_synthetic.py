"""The embedded synthetic dataset: COCO structure, label consistency, visibility against the
rendered pixels, determinism, detections, and the refusal to overwrite."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from pose import synthetic
from pose.data.keypoints import COCO_KEYPOINTS
from pose.synthetic import generate_coco_dataset

SEED = 3
IMAGE_SIZE = (192, 160)  # not square, so that a width/height swap shows
NUM_TRAIN, NUM_VAL = 6, 4
SPLITS = ("train2017", "val2017")
REPO_ROOT = Path(__file__).resolve().parents[1]


def _generate(root: Path, seed: int = SEED) -> dict:
    return generate_coco_dataset(root, num_train_images=NUM_TRAIN, num_val_images=NUM_VAL,
                                 seed=seed, image_size=IMAGE_SIZE)


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic") / "coco"
    _generate(root)
    return root


def _load(root: Path, split: str) -> dict:
    return json.loads((root / "annotations" / f"person_keypoints_{split}.json").read_text())


def _all_files(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes()
            for path in sorted(root.rglob("*")) if path.is_file()}


def test_summary_and_layout(tmp_path: Path) -> None:
    summary = _generate(tmp_path / "data")
    assert summary["train_images"] == NUM_TRAIN and summary["val_images"] == NUM_VAL
    assert NUM_TRAIN <= summary["train_people"] <= 4 * NUM_TRAIN
    assert NUM_VAL <= summary["val_people"] <= 4 * NUM_VAL
    for key in ("train_annotations", "val_annotations", "val_detections_file"):
        assert Path(summary[key]).is_file()
    assert sorted(path.name for path in (tmp_path / "data").iterdir()) == [
        "annotations", "train2017", "val2017"]
    # Nothing is left behind in the parent (the staging folder is renamed into place).
    assert [path.name for path in tmp_path.iterdir()] == ["data"]


def test_same_seed_gives_identical_bytes_and_other_seed_differs(
    dataset_root: Path, tmp_path: Path
) -> None:
    _generate(tmp_path / "again")
    _generate(tmp_path / "other", seed=SEED + 1)
    reference = _all_files(dataset_root)
    assert len(reference) == NUM_TRAIN + NUM_VAL + 3
    assert _all_files(tmp_path / "again") == reference
    other = _all_files(tmp_path / "other")
    assert other.keys() == reference.keys()
    for name in ("annotations/person_keypoints_train2017.json",
                 "annotations/person_keypoints_val2017.json", "train2017/000000000001.jpg"):
        assert other[name] != reference[name]


def test_rendering_in_processes_gives_the_same_bytes(
    dataset_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("pose.synthetic.coco.RENDER_CHUNK", 4)  # chunks of 4 and 2 images
    generate_coco_dataset(tmp_path / "parallel", num_train_images=NUM_TRAIN,
                          num_val_images=NUM_VAL, seed=SEED, image_size=IMAGE_SIZE, workers=2)
    assert _all_files(tmp_path / "parallel") == _all_files(dataset_root)

# pycocotools' mask decoding warns under numpy 2; that is its business, not ours.
@pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools.*")
def test_json_loads_in_pycocotools_with_coco_structure(dataset_root: Path) -> None:
    for split in SPLITS:
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(dataset_root / "annotations" / f"person_keypoints_{split}.json"))
        assert len(coco.getImgIds()) == (NUM_TRAIN if split == "train2017" else NUM_VAL)
        (category,) = coco.loadCats(coco.getCatIds())
        assert category["id"] == 1 and category["name"] == "person"
        assert category["keypoints"] == list(COCO_KEYPOINTS.joint_names)
        # COCO's published 1-based skeleton, written out independently of keypoints.py.
        assert category["skeleton"] == [
            [16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8],
            [7, 9], [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7]]
        annotation_ids = [annotation["id"] for annotation in coco.dataset["annotations"]]
        assert len(set(annotation_ids)) == len(annotation_ids)
        for image_id, info in coco.imgs.items():
            assert set(info) >= {"id", "file_name", "width", "height"}
            assert info["file_name"] == f"{image_id:012d}.jpg"
            image = cv2.imread(str(dataset_root / split / info["file_name"]))
            assert image.shape == (info["height"], info["width"], 3)
            assert (info["width"], info["height"]) == IMAGE_SIZE
            people = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
            assert 1 <= len(people) <= 4
            for person in people:
                assert person["category_id"] == 1 and person["iscrowd"] == 0
                assert len(person["keypoints"]) == 3 * 17
                assert coco.annToMask(person).sum() > 0  # the polygons are valid


def test_every_annotation_is_consistent(dataset_root: Path) -> None:
    width, height = IMAGE_SIZE
    counts = np.zeros(3, dtype=int)
    for split in SPLITS:
        for annotation in _load(dataset_root, split)["annotations"]:
            keypoints = np.asarray(annotation["keypoints"], dtype=np.float64).reshape(17, 3)
            x, y, flags = keypoints.T
            counts += np.bincount(flags.astype(int), minlength=3)
            assert set(flags) <= {0, 1, 2}
            assert annotation["num_keypoints"] == int((flags > 0).sum())
            inside = (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
            labelled = flags > 0
            # Labelled joints lie in the image; unlabelled ones are stored as 0, 0, 0 (that they
            # are exactly the joints outside the image is checked against the scenes below).
            assert np.all(inside[labelled])
            assert np.all(x[~labelled] == 0) and np.all(y[~labelled] == 0)
            box_x, box_y, box_w, box_h = annotation["bbox"]
            assert box_w > 0 and box_h > 0
            assert box_x >= 0 and box_y >= 0
            assert box_x + box_w <= width and box_y + box_h <= height
            assert np.all((x[labelled] >= box_x - 1) & (x[labelled] <= box_x + box_w + 1))
            assert np.all((y[labelled] >= box_y - 1) & (y[labelled] <= box_y + box_h + 1))
            assert 0 < annotation["area"] <= box_w * box_h
    # The set exercises every flag: occluded and out-of-image joints are not rare.
    assert counts.min() > 0, counts


def _scenes(root: Path, split: str) -> list[tuple[synthetic.Scene, dict, list[dict]]]:
    """Re-create each image's scene from its seed, with its JSON entry and annotations."""
    dataset = _load(root, split)
    annotations: dict[int, list[dict]] = {}
    for annotation in dataset["annotations"]:
        annotations.setdefault(annotation["image_id"], []).append(annotation)
    scenes = []
    for index, info in enumerate(dataset["images"]):
        scene = synthetic.sample_scene(synthetic.image_rng(SEED, split, index), IMAGE_SIZE)
        scenes.append((scene, info, annotations[info["id"]]))
    return scenes


def test_scenes_regenerate_the_written_images(dataset_root: Path) -> None:
    """The images and labels are those of the scenes drawn from the documented per-image seeds,
    and v = 0 marks exactly the joints outside the image."""
    for scene, info, people in _scenes(dataset_root, "val2017"):
        image, _, _ = synthetic.render_scene(scene)
        _, encoded = cv2.imencode(".jpg", image,
                                  [cv2.IMWRITE_JPEG_QUALITY, synthetic.DEFAULT_JPEG_QUALITY])
        assert (dataset_root / "val2017" / info["file_name"]).read_bytes() == encoded.tobytes()
        assert len(scene.people) == len(people)
        width, height = IMAGE_SIZE
        for person, annotation in zip(scene.people, people, strict=True):
            keypoints = np.asarray(annotation["keypoints"], dtype=np.float64).reshape(17, 3)
            labelled = keypoints[:, 2] > 0
            x, y = np.round(person.keypoints, 2).T
            outside = (x < 0) | (x > width - 1) | (y < 0) | (y > height - 1)
            np.testing.assert_array_equal(labelled, ~outside)
            np.testing.assert_allclose(keypoints[labelled, :2], person.keypoints[labelled],
                                       atol=0.006)


def _paint_parts(scene: synthetic.Scene, person_index: int, parts: tuple[int, ...],
                 colour: tuple[int, int, int]) -> np.ndarray:
    """The scene before lighting, noise and blur (which spread a pixel's change to its
    neighbours), with the given parts of one person painted in ``colour``."""
    person = scene.people[person_index]
    primitives = [dataclasses.replace(primitive, colour=colour) if primitive.part in parts
                  else primitive for primitive in person.primitives]
    people = list(scene.people)
    people[person_index] = dataclasses.replace(person, primitives=primitives)
    image, _, _ = synthetic.render_scene(dataclasses.replace(scene, people=people), finish=False)
    return image


def test_visibility_flags_agree_with_the_pixels(dataset_root: Path) -> None:
    """A visible joint (v = 2) shows its own body part: repainting the parts that draw it (the
    elbow's upper arm and forearm, the eye's dot) black or white changes the pixel at the joint.
    An occluded one (v = 1) is covered by something else, so the pixel stays the same."""
    occluded_unchanged, occluded_total, visible_total = 0, 0, 0
    for split in SPLITS:
        for scene, _, people in _scenes(dataset_root, split):
            for person_index, annotation in enumerate(people):
                person = scene.people[person_index]
                keypoints = np.asarray(annotation["keypoints"]).reshape(17, 3)
                for joint, (x, y, flag) in enumerate(keypoints):
                    if flag == 0:
                        continue
                    parts = person.joint_parts[joint]
                    black = _paint_parts(scene, person_index, parts, (0, 0, 0))
                    white = _paint_parts(scene, person_index, parts, (255, 255, 255))
                    column, row = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
                    changed = np.any(black[row, column] != white[row, column])
                    if flag == 2:
                        visible_total += 1
                        assert changed, (split, annotation["id"], joint)
                    else:
                        occluded_total += 1
                        occluded_unchanged += not changed
    assert visible_total > 50 and occluded_total > 10
    # The anti-aliased edge of a covering shape may still let a little of the hidden part show.
    assert occluded_unchanged >= 0.9 * occluded_total, (occluded_unchanged, occluded_total)


def test_annotation_of_a_hand_made_scene() -> None:
    """One 21 x 21 square 'torso' at pixels 40..60 holding most joints; the left wrist under an
    occluder beyond it, the right wrist and left ankle outside a 128 x 96 image, the right ankle
    in the image corner on the background."""
    torso = synthetic.PART_NAMES.index("torso")
    keypoints = np.full((17, 2), 50.0)
    names = COCO_KEYPOINTS.joint_names
    keypoints[names.index("left_wrist")] = (100.0, 80.0)
    keypoints[names.index("right_wrist")] = (200.0, 50.0)
    keypoints[names.index("left_ankle")] = (127.4, 95.0)  # beyond the last pixel centre
    keypoints[names.index("right_ankle")] = (127.0, 95.0)
    square = np.array([[40.0, 40.0], [60.0, 40.0], [60.0, 60.0], [40.0, 60.0]])
    person = synthetic.PersonFigure(
        keypoints=keypoints,
        primitives=[synthetic.Primitive("polygon", torso, square, (0, 0, 255))],
        joint_parts=[(torso,)] * 17, height_px=100.0)
    occluder = synthetic.Primitive("polygon", -1, square + (50.0, 30.0), (0, 255, 0))
    scene = synthetic.Scene(image_size=(128, 96), people=[person], occluders=[occluder])
    image, part_buffer, drawn_area = synthetic.render_scene(scene)
    assert image.shape == (96, 128, 3) and drawn_area == [21 * 21]
    (annotation,) = synthetic.annotate_scene(scene, part_buffer)
    flags = np.asarray(annotation["keypoints"]).reshape(17, 3)[:, 2]
    expected = np.full(17, 2)
    expected[[names.index("left_wrist"), names.index("right_ankle")]] = 1
    expected[[names.index("right_wrist"), names.index("left_ankle")]] = 0
    np.testing.assert_array_equal(flags, expected)
    stored = np.asarray(annotation["keypoints"]).reshape(17, 3)
    np.testing.assert_array_equal(stored[names.index("right_wrist")], [0, 0, 0])
    np.testing.assert_array_equal(stored[names.index("left_wrist")], [100.0, 80.0, 1])
    assert annotation["num_keypoints"] == 15
    # Visible pixels 40..60, extended to the labelled joints at x = 127 and y = 95.
    assert annotation["bbox"] == [40.0, 40.0, 88.0, 56.0]
    assert annotation["area"] == 21 * 21


def test_detections_are_coco_results_near_the_people(dataset_root: Path) -> None:
    width, height = IMAGE_SIZE
    detections = json.loads(
        (dataset_root / "annotations" / "person_detections_val2017.json").read_text())
    dataset = _load(dataset_root, "val2017")
    val_ids = {image["id"] for image in dataset["images"]}
    assert isinstance(detections, list)
    assert {detection["image_id"] for detection in detections} == val_ids
    for detection in detections:
        assert set(detection) == {"image_id", "category_id", "bbox", "score"}
        assert detection["category_id"] == 1
        assert 0 < detection["score"] <= 1
        x, y, w, h = detection["bbox"]
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= width and y + h <= height
    # Detections are jittered ground-truth boxes: nearly every person has one that overlaps well.
    matched = 0
    for annotation in dataset["annotations"]:
        candidates = [d["bbox"] for d in detections if d["image_id"] == annotation["image_id"]]
        best = max((synthetic.box_iou(box, annotation["bbox"]) for box in candidates), default=0)
        matched += best > 0.6
    assert matched >= 0.8 * len(dataset["annotations"])
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(dataset_root / "annotations" / "person_keypoints_val2017.json"))
        coco.loadRes(detections)


def test_refuses_to_overwrite_a_dataset(dataset_root: Path) -> None:
    before = _all_files(dataset_root)
    with pytest.raises(FileExistsError, match=str(dataset_root)):
        _generate(dataset_root, seed=SEED + 1)
    assert _all_files(dataset_root) == before
    assert [path.name for path in dataset_root.parent.iterdir()] == [dataset_root.name]


def test_fills_an_existing_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    _generate(tmp_path / "empty")
    assert (tmp_path / "empty" / "annotations" / "person_keypoints_val2017.json").is_file()


def test_an_interrupted_run_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def failing_annotate(*args: object) -> list:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_annotate(*args)

    real_annotate = synthetic.annotate_scene
    # The COCO writer's own reference is the one it calls.
    monkeypatch.setattr("pose.synthetic.coco.annotate_scene", failing_annotate)
    with pytest.raises(KeyboardInterrupt):
        _generate(tmp_path / "data")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs", [
    {"num_train_images": -1}, {"num_val_images": 0}, {"image_size": (32, 320)},
    {"image_size": (320,)},
])
def test_bad_arguments_are_refused(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        generate_coco_dataset(tmp_path / "data", **kwargs)
    assert not (tmp_path / "data").exists()


def _load_cli():
    path = REPO_ROOT / "scripts" / "make_synthetic_coco.py"
    spec = importlib.util.spec_from_file_location("make_synthetic_coco", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_writes_then_refuses_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = _load_cli()
    argv = ["--out", str(tmp_path / "cli"), "--num-train", "2", "--num-val", "1", "--seed", "5",
            "--width", "128", "--height", "96"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "2 train images" in printed and "1 val images" in printed
    image = cv2.imread(str(tmp_path / "cli" / "val2017" / "000100000001.jpg"))
    assert image.shape == (96, 128, 3)
    assert cli.main(argv) == 1
    error = capsys.readouterr().err
    assert "already holds a dataset" in error and str(tmp_path / "cli") in error
    assert "Traceback" not in error
