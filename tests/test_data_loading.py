"""Robust loading (bad images and annotations, EXIF, size mismatches), reduced JPEG decoding,
loader determinism across workers and ranks, and the loading counters' report."""

from __future__ import annotations

import copy
import json
import logging
import platform
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from PIL import Image
from torch.utils.data import DistributedSampler

from pose.config import build_dataset, build_val_dataset, register_configs
from pose.data import (
    LOADING_EVENTS,
    CocoKeypoints,
    CorruptImageWarning,
    DeviceAugmentation,
    ImageReadError,
    build_loader,
    collate_skip_none,
)
from pose.data.exif import jpeg_exif_orientation
from pose.data.loading import keep_freed_memory_for_reuse
from pose.data.transforms import (
    compose_affine,
    decode_reduction,
    get_affine_transform,
    reduced_to_full_matrix,
    warp_image,
)
from pose.engine.logger import get_logger
from pose.engine.trainer import log_loading_counts

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
SPLIT = "val2017"
EXIF_IMAGE = "000000000785.jpg"  # one person


def sample_root(sample_dir: Path, root: Path, annotations: dict | None = None) -> Path:
    """A dataset root with copies of the sample images and ``annotations`` (default: the
    sample's own)."""
    (root / SPLIT).mkdir(parents=True)
    (root / "annotations").mkdir()
    for image in sorted(sample_dir.glob("*.jpg")):
        shutil.copyfile(image, root / SPLIT / image.name)
    if annotations is None:
        annotations = json.loads((sample_dir / "test_coco.json").read_text())
    (root / "annotations" / f"person_keypoints_{SPLIT}.json").write_text(json.dumps(annotations))
    return root


def with_exif_orientation(jpeg: bytes, orientation: int, byte_order: str = "big") -> bytes:
    """``jpeg`` with an APP1 EXIF segment declaring ``orientation`` inserted after SOI."""
    def number(value: int, size: int) -> bytes:
        return value.to_bytes(size, byte_order)

    tiff = (b"MM" if byte_order == "big" else b"II") + number(42, 2) + number(8, 4)
    # One IFD entry: tag 0x0112 (Orientation), type 3 (SHORT), count 1, value; no next IFD.
    tiff += number(1, 2) + number(0x0112, 2) + number(3, 2) + number(1, 4)
    tiff += number(orientation, 2) + b"\x00\x00" + number(0, 4)
    payload = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[2:]


# ------------------------------------------------------------------------------------------------
# Annotations: what is used, what is skipped and counted


def test_unusable_annotations_are_skipped_and_counted(coco_sample_dir, tmp_path):
    annotations = json.loads((coco_sample_dir / "test_coco.json").read_text())
    annotations["images"] = [image for image in annotations["images"] if image["id"] == 785]
    person = next(a for a in annotations["annotations"] if a["image_id"] == 785)

    def variant(**changes):
        changed = copy.deepcopy(person)
        changed.update(changes)
        changed["id"] = 1000 + len(variants)
        return changed

    variants = []
    for changes in (
        {},  # used
        {"iscrowd": 1},  # crowd
        {"category_id": 2},  # not a person
        {"keypoints": [0] * 51},  # no labelled joint
        {"bbox": [700.0, 10.0, 20.0, 20.0]},  # wholly right of the 640-pixel image
        {"bbox": [10.0, float("nan"), 20.0, 20.0]},  # not finite
        {"bbox": [10.0, 10.0, 1.0, 1.0]},  # a single pixel: scale 0
        {"bbox": [10.0, 10.0]},  # not 4 numbers
        {"area": 0.0},  # official rule: area must be > 0
        {"bbox": [10.0, 20.0, 0.5, 50.0]},  # zero width after cleaning: kept, as officially
        {"image_id": 999999},  # an image the file does not list: left out, as officially
    ):
        variants.append(variant(**changes))
    annotations["annotations"] = variants
    root = sample_root(coco_sample_dir, tmp_path, annotations)

    dataset = CocoKeypoints(root, SPLIT)
    assert dataset.skipped_annotations == {
        "crowd": 1, "other_category": 1, "no_labelled_joints": 1, "degenerate_box": 5,
        "unknown_image": 1,
    }
    assert len(dataset) == 2
    assert dataset.records[1]["box_xywh"] == [10.0, 20.0, 0.0, 49.0]
    np.testing.assert_allclose(dataset.records[1]["scale"], [49 * 0.75 / 200 * 1.25,
                                                             49 / 200 * 1.25], rtol=1e-6)
    for index in range(len(dataset)):  # both crop without error
        assert torch.isfinite(dataset[index]["image"]).all()

    annotations["annotations"] = variants[1:4]
    (root / "annotations" / f"person_keypoints_{SPLIT}.json").write_text(json.dumps(annotations))
    with pytest.raises(ValueError, match=r"no person boxes.*person_keypoints_val2017\.json.*"
                                         r"'crowd': 1"):
        CocoKeypoints(root, SPLIT, train=True)


def test_bad_annotation_files_fail_at_start_up(coco_sample_dir, tmp_path):
    root = sample_root(coco_sample_dir, tmp_path)
    annotation_file = root / "annotations" / f"person_keypoints_{SPLIT}.json"
    annotation_file.write_text('{"images": [')
    with pytest.raises(ValueError, match=r"person_keypoints_val2017\.json is not valid JSON"):
        CocoKeypoints(root, SPLIT, train=True)
    annotation_file.write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"person_keypoints_val2017\.json is not in COCO format"):
        CocoKeypoints(root, SPLIT, train=True)
    annotation_file.unlink()
    with pytest.raises(FileNotFoundError, match=r"person_keypoints_val2017\.json not found"):
        CocoKeypoints(root, SPLIT, train=True)


# ------------------------------------------------------------------------------------------------
# Images: missing, corrupt, EXIF-rotated, of the wrong size


def test_missing_image_skipped_in_training_and_fatal_in_evaluation(coco_sample_dir, tmp_path):
    root = sample_root(coco_sample_dir, tmp_path)
    missing = root / SPLIT / "000000196141.jpg"  # four people
    missing.unlink()
    train = CocoKeypoints(root, SPLIT, train=True)
    affected = [i for i, record in enumerate(train.records) if record["image_path"] == missing]
    assert len(affected) == 4
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        items = [train[i] for i in range(len(train))]
    messages = [str(w.message) for w in caught if issubclass(w.category, CorruptImageWarning)]
    assert len(messages) == 1 and "000000196141.jpg (missing or unreadable)" in messages[0]
    assert [i for i, item in enumerate(items) if item is None] == affected
    assert train.loading_counts() == {**dict.fromkeys(LOADING_EVENTS, 0), "missing_image": 4}

    evaluation = CocoKeypoints(root, SPLIT)
    with pytest.raises(ImageReadError, match="000000196141.jpg"):
        evaluation[affected[0]]


def test_counts_add_up_over_workers_and_the_training_log_reports_them(coco_sample_dir, tmp_path):
    root = sample_root(coco_sample_dir, tmp_path)
    (root / SPLIT / "000000040083.jpg").write_bytes(b"")  # empty: corrupt, two people
    (root / SPLIT / "000000000785.jpg").unlink()  # one person
    dataset = CocoKeypoints(root, SPLIT, train=True)
    loader = build_loader(dataset, batch_size=4, num_workers=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorruptImageWarning)
        skipped = sum(batch["num_skipped"] for batch in loader)
        dataset.set_epoch(1)
        skipped += sum(batch["num_skipped"] for batch in loader)
    assert skipped == 6
    counts = dataset.loading_counts()
    assert (counts["corrupt_image"], counts["missing_image"]) == (4, 2)

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    get_logger().addHandler(handler)
    try:
        log_loading_counts(dataset)
    finally:
        get_logger().removeHandler(handler)
    assert len(records) == 1
    assert "missing_image 2, corrupt_image 4" in records[0].getMessage()


def test_exif_orientation_is_ignored_and_counted(coco_sample_dir, tmp_path):
    root = sample_root(coco_sample_dir, tmp_path)
    reference = CocoKeypoints(root, SPLIT, train=True, seed=4)
    expected = reference[0]
    path = root / SPLIT / EXIF_IMAGE
    for byte_order in ("big", "little"):
        rotated = with_exif_orientation(path.read_bytes(), 6, byte_order)
        assert jpeg_exif_orientation(rotated) == 6
    path.write_bytes(rotated)
    # Independent checks that the file really declares a rotation: PIL reads the tag, and an
    # EXIF-honouring decode comes out rotated by 90 degrees.
    assert Image.open(path).getexif()[0x0112] == 6
    assert cv2.imread(str(path)).shape[:2] == (640, 425)
    assert jpeg_exif_orientation(coco_sample_dir.joinpath(EXIF_IMAGE).read_bytes()) == 1
    assert jpeg_exif_orientation(b"not a jpeg") == 1

    dataset = CocoKeypoints(root, SPLIT, train=True, seed=4)
    assert dataset.records[0]["image_path"] == path
    item = dataset[0]
    for key in ("image", "target", "target_weight", "joints"):
        torch.testing.assert_close(item[key], expected[key], rtol=0, atol=0)
    assert dataset.loading_counts()["exif_orientation_ignored"] == 1
    assert reference.loading_counts()["exif_orientation_ignored"] == 0


def test_size_mismatch_is_counted_and_warned(coco_sample_dir, tmp_path):
    root = sample_root(coco_sample_dir, tmp_path)
    path = root / SPLIT / EXIF_IMAGE  # 640 x 425 in the annotations
    image = cv2.imread(str(path))
    cv2.imwrite(str(path), cv2.resize(image, (320, 212)))
    dataset = CocoKeypoints(root, SPLIT, train=True)
    with pytest.warns(CorruptImageWarning, match="is 320x212 pixels but .* says 640x425"):
        assert dataset[0] is not None
    assert dataset.loading_counts()["size_mismatch"] == 1

    # Device augmentation pads every image to the largest annotated size: a larger file cannot
    # be batched, so its samples are skipped.
    cv2.imwrite(str(path), cv2.resize(image, (1280, 850)))
    device_set = CocoKeypoints(root, SPLIT, train=True, device_augmentation=True)
    assert device_set.canvas_size == (640, 429)
    with pytest.warns(CorruptImageWarning, match=r"larger than the batch canvas\); skipping"):
        assert device_set[0] is None
    assert device_set.loading_counts()["size_mismatch"] == 1


# ------------------------------------------------------------------------------------------------
# Reduced JPEG decoding


@pytest.mark.parametrize("reduction", [2, 4])
def test_reduced_decoding_gives_the_same_crop_up_to_interpolation(tmp_path, reduction):
    # A smooth 640 x 480 image with a bright disc: its position must survive the reduction.
    ys, xs = np.mgrid[0:480, 0:640].astype(np.float32)
    image = np.stack([xs / 640 * 200, ys / 480 * 200, (xs + ys) / 1120 * 200], axis=-1)
    cv2.circle(image, (400, 150), 24, (255, 255, 255), -1, cv2.LINE_AA)
    ok, encoded = cv2.imencode(".jpg", image.astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    data = np.frombuffer(encoded.tobytes(), np.uint8)
    full = cv2.imdecode(data, cv2.IMREAD_COLOR)
    reduced = cv2.imdecode(data, {2: cv2.IMREAD_REDUCED_COLOR_2,
                                  4: cv2.IMREAD_REDUCED_COLOR_4}[reduction])
    assert reduced.shape == (480 // reduction, 640 // reduction, 3)

    # A crop that spans reduction x 1.2 image pixels per crop pixel, rotated.
    scale = np.float32([192 * reduction * 1.2 / 200, 256 * reduction * 1.2 / 200])
    assert decode_reduction(scale, 192) == reduction
    matrix = get_affine_transform(np.float32([380, 200]), scale, 20.0, (192, 256))
    crop_full = warp_image(full, matrix, (192, 256)).astype(np.float64)
    crop_reduced = warp_image(
        reduced, compose_affine(matrix, reduced_to_full_matrix(reduction)), (192, 256)
    ).astype(np.float64)
    assert np.abs(crop_full - crop_reduced).mean() < 1.5

    def disc_centre(crop: np.ndarray) -> np.ndarray:
        bright = (crop.min(axis=2) > 230).astype(np.float64)
        rows, columns = np.nonzero(bright)
        return np.array([columns.mean(), rows.mean()])

    expected = matrix @ np.array([400.0, 150.0, 1.0])
    np.testing.assert_allclose(disc_centre(crop_full), expected, atol=0.3)
    np.testing.assert_allclose(disc_centre(crop_reduced), expected, atol=0.3)


def misfit(first: torch.Tensor, second: torch.Tensor, shift_x: int, shift_y: int) -> float:
    """Mean absolute difference of two [3, H, W] crops blurred over 5 x 5 pixels, the second
    shifted by whole pixels; 8-pixel margins left out."""
    second = torch.roll(second, (shift_y, shift_x), dims=(1, 2))
    first, second = (F.avg_pool2d(crop[None], 5, stride=1)[0, :, 8:-8, 8:-8]
                     for crop in (first, second))
    return float((first - second).abs().mean())


def test_reduced_decoding_changes_only_the_pixels_of_large_crops(coco_sample_dir, tmp_path):
    root = sample_root(coco_sample_dir, tmp_path)
    exact = CocoKeypoints(root, SPLIT, (96, 128), (24, 32), train=True, reduced_decoding=False)
    fast = CocoKeypoints(root, SPLIT, (96, 128), (24, 32), train=True, reduced_decoding=True)
    reduced = 0
    for epoch in range(2):
        exact.set_epoch(epoch)
        fast.set_epoch(epoch)
        for index in range(len(exact)):
            a, b = exact[index], fast[index]
            for key in ("target", "target_weight", "joints", "center", "scale"):
                torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
            scale = a["scale"].numpy()
            if decode_reduction(scale, 96) == 1:
                torch.testing.assert_close(a["image"], b["image"], rtol=0, atol=0)
            else:
                reduced += 1
                # Bilinear sampling of the full image aliases where the reduced decode averages,
                # so fine detail differs; blurred, the crops agree, and best without any shift.
                level = 1 / 255 / 0.225
                aligned = misfit(a["image"], b["image"], 0, 0)
                assert aligned < 3 * level
                for shift in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                    assert aligned < misfit(a["image"], b["image"], *shift)
    assert reduced > 5  # 96-pixel crops of these people are mostly decoded reduced


# ------------------------------------------------------------------------------------------------
# Determinism across workers and ranks


def batches_by_index(loader) -> dict[int, dict[str, torch.Tensor]]:
    items = {}
    for batch in loader:
        for position, index in enumerate(batch["index"].tolist()):
            items[index] = {key: batch[key][position]
                            for key in ("image", "target", "target_weight", "scale", "joints")}
    return items


def assert_same_items(first: dict, second: dict) -> None:
    assert first.keys() == second.keys()
    for index, item in first.items():
        for key, value in item.items():
            torch.testing.assert_close(value, second[index][key], rtol=0, atol=0)


def test_same_batches_with_0_and_2_workers_and_across_ranks(coco_sample_dir, tmp_path):
    root = sample_root(coco_sample_dir, tmp_path)
    dataset = CocoKeypoints(root, SPLIT, (96, 128), (24, 32), train=True, seed=11)
    dataset.set_epoch(2)
    orders, contents = [], []
    for workers in (0, 2):
        loader = build_loader(dataset, batch_size=4, shuffle=True, seed=5, num_workers=workers)
        batches = list(loader)
        orders.append(torch.cat([batch["index"] for batch in batches]).tolist())
        contents.append(batches_by_index(batches))
    assert orders[0] == orders[1] and orders[0] != sorted(orders[0])  # same shuffled order
    assert_same_items(contents[0], contents[1])

    # Two ranks of a DistributedSampler together see the single-process epoch.
    ranks = {}
    for rank in (0, 1):
        sampler = DistributedSampler(dataset, num_replicas=2, rank=rank, shuffle=True, seed=5)
        sampler.set_epoch(2)
        ranks[rank] = batches_by_index(build_loader(dataset, batch_size=4, sampler=sampler))
    assert not ranks[0].keys() & ranks[1].keys()
    assert_same_items({**ranks[0], **ranks[1]}, contents[0])


def test_collate_keeps_device_items(coco_sample_dir, tmp_path):
    root = sample_root(coco_sample_dir, tmp_path)
    dataset = CocoKeypoints(root, SPLIT, train=True, device_augmentation=True)
    batch = collate_skip_none([dataset[0], None, dataset[1]])
    assert batch["num_skipped"] == 1
    assert batch["source_image"].shape == (2, 429, 640, 3)
    assert batch["source_image"].dtype == torch.uint8
    assert batch["crop_matrix"].dtype == torch.float64 and batch["crop_matrix"].shape == (2, 2, 3)
    assert batch["crop_joints"].dtype == torch.float64
    assert "image" not in batch and "target" not in batch


def test_config_keys_reach_the_datasets(coco_sample_dir, tmp_path):
    root = sample_root(coco_sample_dir, tmp_path)
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose(config_name="train", overrides=[
            f"data.root={root}", f"data.train_split={SPLIT}", "data.brightness=0.3",
            "data.contrast=0.2", "data.contrast_prob=1.0", "data.saturation_prob=0.1",
            "data.reduced_decoding=true", "data.device_augmentation=true",
        ])
    train = build_dataset(cfg.data, train=True)
    assert (train.augmentation.brightness, train.augmentation.contrast) == (0.3, 0.2)
    assert (train.augmentation.contrast_prob, train.augmentation.saturation_prob) == (1.0, 0.1)
    assert train.reduced_decoding and train.device_augmentation
    assert isinstance(train.batch_transform(), DeviceAugmentation)
    evaluation = build_val_dataset(cfg)  # evaluation crops stay exact and on the CPU
    assert not evaluation.reduced_decoding and not evaluation.device_augmentation
    assert evaluation.batch_transform() is None


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_accepts_the_memory_reuse_settings():
    assert keep_freed_memory_for_reuse()


@pytest.mark.slow
def test_init_worker_does_not_deadlock_a_forked_worker():
    """Forked from a process whose OpenCV thread pool has run and gone to sleep (as in a training
    process that evaluated or showed a batch), a worker must still start: resizing the inherited
    pool (setNumThreads(1)) hangs it, which is why init_worker does not."""
    script = textwrap.dedent("""
        import os, signal, time
        import cv2, numpy as np
        from pose.data import init_worker
        image = np.zeros((800, 800, 3), np.uint8)
        matrix = np.float64([[0.9, 0.1, 3.0], [0.1, 0.9, 4.0]])
        for _ in range(10):
            cv2.warpAffine(image, matrix, (800, 800))
        time.sleep(0.5)  # the pool's threads stop spinning and block
        child = os.fork()
        if child == 0:
            signal.alarm(10)  # a hang ends the child with SIGALRM
            init_worker(0)
            cv2.warpAffine(image, matrix, (800, 800))
            os._exit(0 if cv2.getNumThreads() == 1 else 3)
        print(os.waitpid(child, 0)[1])
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "0"
