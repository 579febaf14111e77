"""pose.infer and PoseEstimator: equal to the evaluation loop (and pose.eval's results.json) on the
shipped COCO sample, inputs (folders, globs, EXIF, videos), boxes files, the torchvision detector
offline, videos with tracks, outputs, and every bad input with its message."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from test_data_loading import with_exif_orientation

from pose import PoseEstimator
from pose.config import Config, to_plain
from pose.data import CocoKeypoints
from pose.data.media import (
    VideoFrames,
    apply_exif_orientation,
    image_ids_for,
    read_image,
    resolve_input,
)
from pose.data.transforms import IMAGENET_STD
from pose.engine.checkpoint import save_checkpoint
from pose.engine.detectors import (
    BoxesFile,
    TorchvisionDetector,
    WholeImageDetector,
    build_torchvision_detector,
)
from pose.engine.distributed import DistributedContext
from pose.engine.estimator import cut_crops_on_device
from pose.engine.inference import evaluate_model, evaluation_loader
from pose.engine.pipeline import RunSummary, VideoSettings, run_on_images, run_on_video
from pose.evaluation.evaluators import CocoEvaluator, EvaluationSettings
from pose.models import create_model
from pose.synthetic.video import write_moving_people_video

SPLIT = "val2017"
DET_FILE = "test_coco_det_AP_H_56.json"


def random_pose_model() -> torch.nn.Module:
    """hrnet_w8_tiny with He-initialised convolutions and a scaled head: heatmaps whose peaks
    spread over 0 to about 1 (the official init gives peaks of 1e-11), so that rescoring and
    OKS-NMS have decisions to make."""
    torch.manual_seed(0)
    model = create_model("hrnet_w8_tiny", num_joints=17)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight)
        model.final_layer.weight.div_(250.0)
    return model


@pytest.fixture(scope="module")
def sample_root(coco_sample_dir, tmp_path_factory) -> Path:
    """The shipped COCO sample as a dataset root (val2017 images and annotations)."""
    root = tmp_path_factory.mktemp("coco")
    (root / SPLIT).mkdir()
    (root / "annotations").mkdir()
    for image in coco_sample_dir.glob("*.jpg"):
        shutil.copyfile(image, root / SPLIT / image.name)
    shutil.copyfile(coco_sample_dir / "test_coco.json",
                    root / "annotations" / f"person_keypoints_{SPLIT}.json")
    return root


@pytest.fixture(scope="module")
def checkpoint(sample_root, tmp_path_factory) -> Path:
    """A pose checkpoint (as pose.train writes it) of :func:`random_pose_model`, 96x128 crops."""
    cfg = OmegaConf.structured(Config)
    cfg.model.name = "hrnet_w8_tiny"
    cfg.data.root = str(sample_root)
    cfg.data.image_size, cfg.data.heatmap_size = [96, 128], [24, 32]
    cfg.data.num_workers = 0
    path = tmp_path_factory.mktemp("checkpoint") / "best.pt"
    save_checkpoint(path, {"model": random_pose_model().state_dict(), "config": to_plain(cfg),
                           "epoch": 1, "step": 1, "metrics": {}})
    return path


@pytest.fixture(scope="module")
def estimator(checkpoint) -> PoseEstimator:
    return PoseEstimator.from_checkpoint(checkpoint, device="cpu")


def people_by_image(entries):
    grouped = defaultdict(list)
    for entry in entries:
        grouped[entry["image_id"]].append(entry)
    return grouped


def assert_same_results(expected, actual):
    """Per image, the same poses in the same order: keypoints within 1e-3 px (and confidences),
    scores within 1e-6."""
    expected, actual = people_by_image(expected), people_by_image(actual)
    assert sorted(expected) == sorted(actual)
    for image_id, poses in expected.items():
        assert len(actual[image_id]) == len(poses), image_id
        for want, got in zip(poses, actual[image_id], strict=True):
            np.testing.assert_allclose(got["keypoints"], want["keypoints"], rtol=0, atol=1e-3)
            assert got["score"] == pytest.approx(want["score"], abs=1e-6)


# ------------------------------------------------------------------------------------------------
# The evaluation loop's path


def test_estimator_equals_the_evaluation_loop(estimator, sample_root, coco_sample_dir):
    dataset = CocoKeypoints(sample_root, SPLIT, image_size=(96, 128), heatmap_size=(24, 32),
                            det_file=coco_sample_dir / DET_FILE)
    context = DistributedContext()
    evaluator = CocoEvaluator.for_dataset(dataset, EvaluationSettings())
    evaluation = evaluate_model(estimator.model, evaluation_loader(dataset, 32, context),
                                evaluator, estimator.decoding, context)
    media = resolve_input(str(sample_root / SPLIT))
    images = [read_image(image.path, respect_exif=False) for image in media.images]
    boxes = BoxesFile(coco_sample_dir / DET_FILE, video=False)(images, media.images)
    people = estimator.predict_batch(images, boxes)
    entries = [{"image_id": image.image_id, "score": person.score,
                "keypoints": person.keypoint_triplets().reshape(-1).tolist()}
               for image, image_people in zip(media.images, people) for person in image_people]
    assert 60 < len(entries) < 118  # the NMS dropped some of the 118 boxes
    assert max(entry["score"] for entry in entries) > 0.3  # poses the rescoring tells apart
    assert_same_results(evaluation.results, entries)


def test_estimator_settings_come_from_the_checkpoint(estimator):
    assert estimator.image_size == (96, 128)
    assert estimator.decoding.flip_test and estimator.decoding.post_process == "quarter_offset"
    assert estimator.scoring.nms == "oks" and estimator.keypoints.num_joints == 17


def test_crops_cut_on_the_device_equal_opencv_crops(estimator, coco_sample_dir):
    image = cv2.imread(str(coco_sample_dir / "000000000785.jpg"))
    boxes = [np.array([[277.1, 45.7, 225.1, 333.6, 1.0], [-40.0, -30.0, 200.0, 150.0, 0.5]])]
    crops = estimator.crop_boxes([image], boxes)
    opencv = estimator.cut_crops([image], crops.image_index, crops.centers, crops.scales)
    estimator.crops_on_device = True
    try:
        on_device = estimator.cut_crops([image], crops.image_index, crops.centers, crops.scales)
    finally:
        estimator.crops_on_device = False
    # In uint8 levels per channel.
    difference = (on_device - opencv).abs() * torch.tensor(IMAGENET_STD)[:, None, None] * 255
    # cv2 samples at 1/32-pixel positions with fixed-point weights: one level at most.
    assert difference.max() <= 1 + 1e-4
    assert (difference > 0.01).float().mean() < 0.02


def test_device_crops_are_the_whole_levels_of_a_bilinear_warp():
    image = np.arange(12 * 16 * 3, dtype=np.uint8).reshape(12, 16, 3)
    identity = np.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    crops = cut_crops_on_device([image], np.array([0]), identity, (16, 12), torch.device("cpu"))
    rgb = torch.from_numpy(image[:, :, ::-1].copy()).permute(2, 0, 1).float()
    expected = (rgb / 255 - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / torch.tensor(
        [0.229, 0.224, 0.225])[:, None, None]
    torch.testing.assert_close(crops[0], expected, rtol=0, atol=1e-6)


def test_estimator_boxes_whole_image_and_scores(estimator, coco_sample_dir):
    image = cv2.imread(str(coco_sample_dir / "000000040083.jpg"))
    whole = estimator(image)
    assert len(whole) == 1
    np.testing.assert_array_equal(whole[0].box, [0, 0, image.shape[1] - 1, image.shape[0] - 1])
    assert whole[0].keypoints.shape == (17, 2) and whole[0].scores.shape == (17,)
    scored = estimator(image, np.array([[100, 50, 120, 200, 0.5]]))
    unscored = estimator(image, np.array([[100, 50, 120, 200]]))
    np.testing.assert_array_equal(scored[0].keypoints, unscored[0].keypoints)
    assert scored[0].score == pytest.approx(0.5 * unscored[0].score)
    assert estimator(image, np.zeros((0, 4))) == []
    assert estimator(image, np.array([[10, 10, 0, 50]])) == []  # no crop of an empty box
    with pytest.raises(ValueError, match=r"boxes must be \[M, 4\]"):
        estimator(image, np.ones((2, 3)))


def test_official_weights_load_with_the_model_named(tmp_path):
    path = tmp_path / "official.pth"
    model = random_pose_model()
    torch.save(model.state_dict(), path)  # a bare state dict, as the HRNet model zoo's files
    estimator = PoseEstimator.from_checkpoint(
        path, device="cpu", overrides=["model=hrnet_w8_tiny", "data.image_size=[96,128]",
                                       "data.heatmap_size=[24,32]", "eval.nms=none"],
        flip_test=False, post_process="dark")
    assert estimator.image_size == (96, 128) and estimator.scoring.nms == "none"
    assert not estimator.decoding.flip_test and estimator.decoding.post_process == "dark"
    torch.testing.assert_close(estimator.model.state_dict(), model.state_dict())
    with pytest.raises(ValueError, match="say which model it holds with model=<name>"):
        PoseEstimator.from_checkpoint(path, device="cpu")


@pytest.mark.slow
def test_import_pose_imports_no_torch():
    code = ("import sys, pose; assert 'torch' not in sys.modules, 'torch imported'; "
            "from pose import PoseEstimator; assert 'torch' in sys.modules")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr


# ------------------------------------------------------------------------------------------------
# Inputs


def test_folders_globs_and_image_ids(tmp_path, coco_sample_dir):
    (tmp_path / "sub").mkdir()
    for name in ("b.png", "a.jpg", "sub/c.webp", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [image.name for image in resolve_input(str(tmp_path)).images] == ["a.jpg", "b.png"]
    recursive = resolve_input(str(tmp_path), recursive=True).images
    assert [image.name for image in recursive] == ["a.jpg", "b.png", "sub/c.webp"]
    assert [image.image_id for image in recursive] == [0, 1, 2]  # stems are not numbers
    globbed = resolve_input(str(tmp_path / "*.png")).images
    assert [image.name for image in globbed] == ["b.png"]
    coco = resolve_input(str(coco_sample_dir)).images
    assert [image.image_id for image in coco] == [785, 40083, 196141, 197388]
    assert image_ids_for(["7.jpg", "a.jpg", "3.png", "b.jpg"]) == [7, 8, 3, 9]
    assert image_ids_for(["1.jpg", "01.jpg"]) == [0, 1]  # the same number twice: positions


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_as_opencv_applies_it(orientation, coco_sample_dir, tmp_path):
    stored = (coco_sample_dir / "000000040083.jpg").read_bytes()
    path = tmp_path / "rotated.jpg"
    path.write_bytes(with_exif_orientation(stored, orientation))
    as_stored = read_image(path, respect_exif=False)
    upright = read_image(path, respect_exif=True)
    # OpenCV's own EXIF handling (IMREAD_COLOR without IGNORE_ORIENTATION): the reference.
    expected = cv2.imread(str(path), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(upright, expected)
    np.testing.assert_array_equal(as_stored, cv2.imread(str(coco_sample_dir /
                                                            "000000040083.jpg")))
    np.testing.assert_array_equal(apply_exif_orientation(as_stored, orientation), expected)


def test_unreadable_images_read_as_none(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    assert read_image(tmp_path / "empty.jpg", True) is None
    assert read_image(tmp_path / "text.png", True) is None
    assert read_image(tmp_path / "missing.jpg", True) is None


# ------------------------------------------------------------------------------------------------
# Boxes files


def write_json(path: Path, value) -> Path:
    path.write_text(json.dumps(value))
    return path


def test_boxes_file_matches_image_ids_and_file_names(tmp_path, coco_sample_dir):
    media = resolve_input(str(coco_sample_dir))
    boxes = BoxesFile(write_json(tmp_path / "boxes.json", [
        {"image_id": 785, "bbox": [1, 2, 3, 4], "score": 0.9},
        {"file_name": "000000040083.jpg", "bbox": [5, 6, 7, 8], "score": 0.8},
        {"image_id": 785, "bbox": [9, 9, 9, 9], "score": 0.7, "category_id": 2},
    ]), video=False)
    boxes.check_images(media.images, "sample")
    found = boxes([None] * 4, media.images)
    np.testing.assert_array_equal(found[0], [[1, 2, 3, 4, 0.9]])
    np.testing.assert_array_equal(found[1], [[5, 6, 7, 8, 0.8]])
    assert found[2].shape == (0, 5) and found[3].shape == (0, 5)  # no entry: no people


def test_boxes_from_the_whole_image():
    boxes = WholeImageDetector()([np.zeros((30, 40, 3), np.uint8)])
    np.testing.assert_array_equal(boxes[0], [[0, 0, 39, 29, 1]])


@pytest.fixture(scope="module")
def detector_weights(tmp_path_factory) -> Path:
    """Random weights of a small torchvision detector, saved to a file; the person class's bias
    is raised so that its random proposals come out as people."""
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

    torch.manual_seed(0)
    model = fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None)
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.bias[1] = 10.0
    path = tmp_path_factory.mktemp("detector") / "detector.pt"
    torch.save(model.state_dict(), path)
    return path


def test_torchvision_detector_runs_offline_from_a_weights_file(detector_weights,
                                                               coco_sample_dir):
    model = build_torchvision_detector("fasterrcnn_mobilenet_v3_large_320_fpn",
                                       str(detector_weights))
    detector = TorchvisionDetector(model, torch.device("cpu"), score_threshold=0.5,
                                   batch_size=2)
    images = [cv2.imread(str(path)) for path in sorted(coco_sample_dir.glob("*.jpg"))[:3]]
    boxes = detector(images)
    assert len(boxes) == 3 and all(found.shape[1] == 5 and len(found) > 0 for found in boxes)
    for image, found in zip(images, boxes):
        assert (found[:, 4] >= 0.5).all()
        assert (found[:, 2:4] >= 0).all()
        assert (found[:, 0] + found[:, 2] <= image.shape[1] + 1e-3).all()


def test_torchvision_detector_offline_without_weights_names_the_other_ways(monkeypatch,
                                                                           tmp_path):
    import urllib.error

    import torchvision.models._api

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(ValueError, match=r"could not get the weights.*boxes=.*"
                                         r"detector=whole_image.*detector.weights="):
        build_torchvision_detector("fasterrcnn_mobilenet_v3_large_320_fpn", "DEFAULT")


# ------------------------------------------------------------------------------------------------
# Runs: images and videos


def test_run_on_images_writes_loadable_predictions_and_overlays(estimator, sample_root,
                                                                 coco_sample_dir, tmp_path):
    from pycocotools.coco import COCO

    from pose.engine.pipeline import OverlayStyle

    folder = tmp_path / "photos"
    shutil.copytree(sample_root / SPLIT, folder)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    media = resolve_input(str(folder))
    out = tmp_path / "out"
    out.mkdir()
    summary = run_on_images(estimator, media.images,
                            BoxesFile(coco_sample_dir / DET_FILE, video=False), out,
                            OverlayStyle(estimator.keypoints), batch_size=3,
                            respect_exif=False)
    assert summary.inputs == 4 and summary.skipped == ["broken.jpg"]
    predictions = json.loads((out / "predictions.json").read_text())
    assert summary.people == len(predictions) > 0
    assert {entry["file_name"] for entry in predictions} == {
        image.name for image in media.images if image.name != "broken.jpg"}
    assert sorted(path.name for path in (out / "vis").iterdir()) == sorted(
        path.name for path in (sample_root / SPLIT).iterdir())
    ground_truth = COCO(str(coco_sample_dir / "test_coco.json"))
    loaded = ground_truth.loadRes([dict(entry) for entry in predictions])
    assert len(loaded.getAnnIds()) == len(predictions)
    assert not list(out.glob(".*.tmp"))


def test_no_readable_image_is_an_error_and_writes_nothing(estimator, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jpg").write_text("no")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(OSError, match="none of the 1 input images could be read"):
        run_on_images(estimator, resolve_input(str(tmp_path / "in")).images,
                      WholeImageDetector(), out, None)
    assert list(out.iterdir()) == []


class CountingBoxes:
    """A box source that records which frames it was asked about."""

    def __init__(self) -> None:
        self.frames: list[int] = []

    def __call__(self, images, keys):
        self.frames += list(keys)
        return WholeImageDetector()(images)


def test_detector_interval_runs_the_detector_every_n_frames(estimator, tmp_path):
    video = tmp_path / "walk.mp4"
    write_moving_people_video(video, seed=1, image_size=(160, 128), num_frames=10,
                              num_people=1)
    boxes = CountingBoxes()
    out = tmp_path / "out"
    out.mkdir()
    summary = run_on_video(estimator, VideoFrames(video), boxes, out,
                           VideoSettings(detector_interval=3, person_threshold=0.0,
                                         kpt_threshold=0.0))
    assert summary == RunSummary(10, [], summary.people, summary.confident, summary.seconds)
    assert boxes.frames == [0, 3, 6, 9]
    frames = [entry["frame"] for entry in json.loads((out / "predictions.json").read_text())]
    assert sorted(set(frames)) == list(range(10))  # boxes from keypoints in between


# ------------------------------------------------------------------------------------------------
# The command line


def run_infer(monkeypatch, capsys, *arguments: str) -> tuple[int, str, str]:
    """``python -m pose.infer <arguments>`` in this process: (exit code, stdout, stderr)."""
    import pose.infer

    monkeypatch.setattr(sys, "argv", ["pose.infer", *arguments])
    # Hydra finds conf/ beside the entry point's file when it runs as __main__ (python -m).
    monkeypatch.setenv("HYDRA_MAIN_MODULE", "__main__")
    code = 0
    try:
        pose.infer.run_command_line()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
        if isinstance(exit_.code, str):
            print(exit_.code, file=sys.stderr)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture()
def bad_inputs(tmp_path, coco_sample_dir, sample_root):
    (tmp_path / "empty").mkdir()
    (tmp_path / "clip.mp4").write_text("not a video")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "keep.txt").write_text("mine")
    write_json(tmp_path / "not_detections.json", {"images": []})
    write_json(tmp_path / "other_images.json", [{"image_id": 1, "bbox": [0, 0, 5, 5],
                                                 "score": 1.0}])
    torch.save({"weights": torch.zeros(3)}, tmp_path / "not_a_checkpoint.pt")
    return tmp_path


BAD_INPUTS = [
    ({"input": "{tmp}/missing"}, "input={tmp}/missing does not exist"),
    ({"input": "{tmp}/empty"}, "input folder {tmp}/empty holds no images"),
    ({"input": "{tmp}/clip.mp4"}, "input={tmp}/clip.mp4 is not a video OpenCV can read"),
    ({"boxes": "{tmp}/not_detections.json"},
     "boxes file {tmp}/not_detections.json is not COCO detection results"),
    ({"boxes": "{tmp}/other_images.json"},
     "boxes file {tmp}/other_images.json names images that are not in input="),
    ({"checkpoint": "{tmp}/not_a_checkpoint.pt"},
     "{tmp}/not_a_checkpoint.pt is not a pose checkpoint"),
    ({"hydra.run.dir": "{tmp}/used"}, "output folder {tmp}/used already exists"),
    ({"track.metric": "pixels"}, "track.metric='pixels' is not known: expected one of oks, iou"),
    ({"backend": "onnx"}, "backend=onnx runs model_file=<file.onnx> (written by pose.export)"),
    ({"model_file": "{tmp}/model.onnx"}, "model_file= needs backend=onnx"),
    ({"backend": "onnx", "model_file": "{tmp}/missing.onnx", "checkpoint": None},
     "ONNX model not found: {tmp}/missing.onnx"),
    ({"backend": "onnx", "model_file": "{tmp}/not_a_checkpoint.pt", "checkpoint": None},
     "{tmp}/not_a_checkpoint.pt is not an ONNX model onnxruntime can load"),
    ({"backend": "onnx", "model_file": "{tmp}/missing.onnx"},
     "checkpoint= is for backend=torch"),
]


@pytest.mark.parametrize(("changes", "message"), BAD_INPUTS,
                         ids=[case[1].split()[0] + "-" + str(i) for i, case in
                              enumerate(BAD_INPUTS)])
def test_bad_input_gets_one_line_and_writes_nothing(changes, message, bad_inputs, checkpoint,
                                                    sample_root, coco_sample_dir, monkeypatch,
                                                    capsys):
    arguments = {"checkpoint": str(checkpoint), "input": str(sample_root / SPLIT),
                 "boxes": str(coco_sample_dir / DET_FILE),
                 "hydra.run.dir": str(bad_inputs / "run")}
    arguments.update({key: value and value.format(tmp=bad_inputs)
                      for key, value in changes.items()})
    code, _, err = run_infer(monkeypatch, capsys, *(f"{key}={value}" for key, value in
                                                    arguments.items() if value is not None))
    assert code != 0
    lines = err.strip().splitlines()
    assert lines[-1].startswith("pose.infer: error: ") and "Traceback" not in err
    assert message.format(tmp=bad_inputs) in lines[-1]
    assert not (bad_inputs / "run").exists()
    assert sorted(path.name for path in (bad_inputs / "used").iterdir()) == ["keep.txt"]


def test_unreadable_image_is_skipped_and_reported(tmp_path, checkpoint, sample_root,
                                                  monkeypatch, capsys):
    folder = tmp_path / "photos"
    shutil.copytree(sample_root / SPLIT, folder)
    (folder / "zz_broken.png").write_bytes(b"\x89PNG broken")
    code, out, err = run_infer(monkeypatch, capsys, f"checkpoint={checkpoint}",
                               f"input={folder}", "detector=whole_image", "visualize=false",
                               f"hydra.run.dir={tmp_path / 'run'}")
    assert code == 0, err
    assert "pose.infer: 4 images, 4 people" in out
    assert "1 unreadable image skipped: zz_broken.png" in out
    predictions = json.loads((tmp_path / "run" / "predictions.json").read_text())
    assert len(predictions) == 4 and not (tmp_path / "run" / "vis").exists()


def test_no_readable_input_fails_and_leaves_no_folder(tmp_path, checkpoint, monkeypatch,
                                                      capsys):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_text("not a picture")
    code, _, err = run_infer(monkeypatch, capsys, f"checkpoint={checkpoint}",
                             f"input={tmp_path / 'photos'}", "detector=whole_image",
                             f"hydra.run.dir={tmp_path / 'run'}")
    assert code == 2
    assert "none of the 1 input images could be read" in err.strip().splitlines()[-1]
    assert not (tmp_path / "run").exists()  # nor its log.txt and config.yaml


# ------------------------------------------------------------------------------------------------
# End to end, as processes


@pytest.mark.slow
def test_infer_equals_eval_results(checkpoint, sample_root, coco_sample_dir, tmp_path,
                                   run_module):
    evaluated = run_module("pose.eval", f"checkpoint={checkpoint}", "eval.use_gt_boxes=false",
                           f"eval.det_file={coco_sample_dir / DET_FILE}", "eval.num_visualize=0",
                           f"hydra.run.dir={tmp_path / 'eval'}")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    inferred = run_module("pose.infer", f"checkpoint={checkpoint}",
                          f"input={sample_root / SPLIT}", f"boxes={coco_sample_dir / DET_FILE}",
                          f"hydra.run.dir={tmp_path / 'infer'}")
    assert inferred.returncode == 0, inferred.stderr[-3000:]
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    predictions = json.loads((tmp_path / "infer" / "predictions.json").read_text())
    assert len(predictions) == len(results) > 60
    assert_same_results(results, predictions)
    assert sorted(path.name for path in (tmp_path / "infer" / "vis").iterdir()) == sorted(
        path.name for path in (sample_root / SPLIT).iterdir())


@pytest.mark.slow
@pytest.mark.slow  # an export and two runs of pose.infer
def test_onnx_backend_equals_the_torch_backend(checkpoint, sample_root, coco_sample_dir,
                                               tmp_path, run_module):
    """``backend=onnx`` on the file pose.export wrote: the same people as the PyTorch backend,
    keypoints within 0.05 px (pose.runtime against pose.infer, issue 17)."""
    onnx_file = tmp_path / "model.onnx"
    exported = run_module("pose.export", f"checkpoint={checkpoint}", f"output={onnx_file}",
                          "parity_crops=2")
    assert exported.returncode == 0, exported.stderr[-3000:]
    common = [f"input={sample_root / SPLIT}", f"boxes={coco_sample_dir / DET_FILE}",
              "visualize=false"]
    results = {}
    for backend, model in (("torch", f"checkpoint={checkpoint}"),
                           ("onnx", f"model_file={onnx_file}")):
        run = run_module("pose.infer", f"backend={backend}", model, *common,
                         f"hydra.run.dir={tmp_path / backend}")
        assert run.returncode == 0, run.stderr[-3000:]
        results[backend] = json.loads((tmp_path / backend / "predictions.json").read_text())
    assert "the exported model" in (tmp_path / "onnx" / "log.txt").read_text()
    expected, actual = people_by_image(results["torch"]), people_by_image(results["onnx"])
    assert sorted(actual) == sorted(expected) and len(results["onnx"]) > 10
    for image_id, poses in expected.items():
        assert len(actual[image_id]) == len(poses), image_id
        for want, got in zip(poses, actual[image_id], strict=True):
            want_xy = np.reshape(want["keypoints"], (-1, 3))[:, :2]
            got_xy = np.reshape(got["keypoints"], (-1, 3))[:, :2]
            np.testing.assert_allclose(got_xy, want_xy, rtol=0, atol=0.05)
            assert got["score"] == pytest.approx(want["score"], abs=1e-4)


def test_video_gives_every_frame_and_keeps_track_ids(checkpoint, tmp_path, run_module):
    """Two people walk across a rendered video; with their boxes (a boxes file keyed by frame)
    each keeps one track id throughout."""
    video, frames = tmp_path / "walk.mp4", 16
    annotations = write_moving_people_video(video, seed=5, image_size=(256, 192),
                                            num_frames=frames, num_people=2, speeds=[4.0, 4.0])
    assert all(len(people) == 2 for people in annotations)
    boxes = [{"frame": frame, "bbox": person["bbox"], "score": 1.0}
             for frame, people in enumerate(annotations) for person in people]
    boxes_file = write_json(tmp_path / "boxes.json", boxes)
    result = run_module("pose.infer", f"checkpoint={checkpoint}", f"input={video}",
                        f"boxes={boxes_file}", "track.metric=iou", "smooth.method=one_euro",
                        f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"pose.infer: {frames} frames" in result.stdout
    predictions = json.loads((tmp_path / "run" / "predictions.json").read_text())
    ids_by_person = defaultdict(set)
    for entry in predictions:
        assert entry["file_name"] == "walk.mp4" and entry["image_id"] == entry["frame"]
        truth = [person["bbox"] for person in annotations[entry["frame"]]]
        ids_by_person[truth.index(entry["bbox"])].add(entry["track_id"])
    assert sorted({entry["frame"] for entry in predictions}) == list(range(frames))
    assert ids_by_person[0] != ids_by_person[1]
    assert all(len(ids) == 1 for ids in ids_by_person.values())
    overlay = cv2.VideoCapture(str(tmp_path / "run" / "walk.mp4"))
    assert overlay.get(cv2.CAP_PROP_FPS) == pytest.approx(12.0)
    assert int(overlay.get(cv2.CAP_PROP_FRAME_COUNT)) == frames


@pytest.mark.slow
def test_torchvision_detector_from_a_weights_file(checkpoint, detector_weights, sample_root,
                                                  tmp_path, run_module):
    result = run_module("pose.infer", f"checkpoint={checkpoint}",
                        f"input={sample_root / SPLIT / '000000040083.jpg'}",
                        "detector.model=fasterrcnn_mobilenet_v3_large_320_fpn",
                        f"detector.weights={detector_weights}",
                        f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 0, result.stderr[-3000:]
    predictions = json.loads((tmp_path / "run" / "predictions.json").read_text())
    assert predictions and {entry["image_id"] for entry in predictions} == {40083}
    assert (tmp_path / "run" / "vis" / "000000040083.jpg").is_file()
