"""pose.runtime: torch-free, and equal to the PyTorch path (pose.data crops, pose.evaluation flip
test and decoding) on the COCO sample's people; its numpy steps equal the torch ones."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT
from exported_models import (
    INPUT_SIZE,
    export_model,
    randomised_model,
    sample_crops,
    sample_people,
    torch_crops,
)
from torch import nn

from pose.data.keypoints import COCO_KEYPOINTS
from pose.data.transforms import box_to_center_scale as torch_box_to_center_scale
from pose.data.transforms import get_affine_transform, normalise_bgr, warp_image
from pose.engine.export import decisive_joints, export_metadata, export_onnx
from pose.evaluation.decode import (
    decode_heatmaps,
    flip_test_average,
    heatmap_maxima,
    heatmap_to_image_coords,
    refine_quarter_offset,
)
from pose.runtime import MetadataError, OnnxPoseModel
from pose.runtime.decode import decode_heatmap_cells
from pose.runtime.decode import flip_test_average as numpy_flip_test_average
from pose.runtime.geometry import (
    box_to_center_scale,
    crop_image,
    crop_matrix,
    heatmap_to_image,
    normalisation_table,
    normalise_crop,
)

RUNTIME_TOLERANCE_PX = 0.05  # image px: the runtime against the PyTorch path (issue 17)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(model, path): Lite-HRNet-18 exported with the in-graph decoding, dynamic batch."""
    model = randomised_model("lite_hrnet_18", sample_crops()[:8])
    return model, export_model(model, tmp_path_factory.mktemp("runtime") / "lite.onnx")


def test_importing_and_running_the_runtime_needs_no_torch(exported, tmp_path):
    """In a fresh process where ``import torch`` fails: the runtime imports, loads the model and
    predicts; nothing of pose.data, pose.models, pose.evaluation or pose.engine is loaded."""
    _, path = exported
    image, boxes = sample_people()[0]
    np.save(tmp_path / "image.npy", image)
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np\n"
        "from pose.runtime import OnnxPoseModel\n"
        f"model = OnnxPoseModel({str(path)!r})\n"
        f"keypoints, scores = model.predict(np.load({str(tmp_path / 'image.npy')!r}), "
        f"{boxes.tolist()!r})\n"
        "heavy = ('pose.data', 'pose.models', 'pose.evaluation', 'pose.engine', 'torch.')\n"
        "print(keypoints.shape, sorted(m for m in sys.modules if m.startswith(heavy)))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO_ROOT, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == f"({len(boxes)}, 17, 2) []"


def _random_boxes(seed: int, count: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    corners = rng.uniform(-50, 600, (count, 2))
    sizes = rng.uniform(1, 400, (count, 2))
    return np.concatenate([corners, sizes], axis=1)


def test_crops_are_bit_equal_to_pose_data():
    image, boxes = sample_people()[2]
    boxes = np.concatenate([boxes, _random_boxes(0, 40)])
    table = normalisation_table((0, 255), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    for size in (INPUT_SIZE, (288, 384), (256, 256)):
        for box in boxes:
            center, scale = box_to_center_scale(box, size[0] / size[1], 1.25, 200.0)
            expected_center, expected_scale = torch_box_to_center_scale(box, size[0] / size[1])
            np.testing.assert_array_equal(center, expected_center)
            np.testing.assert_array_equal(scale, expected_scale)
            matrix = crop_matrix(center, scale, size, 200.0)
            np.testing.assert_array_equal(matrix, get_affine_transform(center, scale, 0.0, size))
        crop = crop_image(image, matrix, size)
        np.testing.assert_array_equal(crop, warp_image(image, matrix, size))
        np.testing.assert_array_equal(normalise_crop(crop, table, "RGB"), normalise_bgr(crop))


def test_heatmap_to_image_equals_pose_evaluation():
    rng = np.random.default_rng(1)
    coords = rng.uniform(-2, 50, (6, 17, 2)).astype(np.float32)
    centers = rng.uniform(0, 640, (6, 2)).astype(np.float32)
    scales = rng.uniform(0.1, 3, (6, 2)).astype(np.float32)
    expected = heatmap_to_image_coords(torch.from_numpy(coords), torch.from_numpy(centers),
                                       torch.from_numpy(scales), (48, 64))
    np.testing.assert_array_equal(heatmap_to_image(coords, centers, scales, (48, 64), 200.0),
                                  expected.numpy())


def _hard_heatmaps(seed: int) -> np.ndarray:
    """Random float32 heatmaps with the official decoding's corner cases planted: peaks on and
    next to the border, equal neighbours, ties, all-negative and all-zero maps."""
    rng = np.random.default_rng(seed)
    heatmaps = rng.normal(0, 0.1, (4, 17, 16, 12)).astype(np.float32)
    for joint, (y, x) in enumerate([(0, 0), (1, 5), (5, 1), (14, 5), (5, 10), (15, 11), (8, 6)]):
        heatmaps[:, joint, y, x] = 2.0
    heatmaps[:, 7, 6, 6], heatmaps[:, 7, 6, 5], heatmaps[:, 7, 6, 7] = 2.0, 1.0, 1.0
    heatmaps[:, 8, 3, 3] = heatmaps[:, 8, 9, 9] = 2.0  # a tie: the first in row-major order
    heatmaps[:, 9] = -np.abs(heatmaps[:, 9]) - 0.1
    heatmaps[:, 10] = 0.0
    return heatmaps


@pytest.mark.parametrize("refinement", ["quarter_offset", "none"])
def test_numpy_decoding_equals_pose_evaluation(refinement):
    for seed in range(3):
        heatmaps = _hard_heatmaps(seed)
        coords, maxvals = decode_heatmap_cells(heatmaps, refinement)
        expected, expected_maxvals = heatmap_maxima(torch.from_numpy(heatmaps))
        if refinement == "quarter_offset":
            expected = refine_quarter_offset(torch.from_numpy(heatmaps), expected)
        np.testing.assert_array_equal(coords, expected.numpy())
        np.testing.assert_array_equal(maxvals, expected_maxvals.numpy())
        assert coords.dtype == np.float32


def test_numpy_decoding_matches_the_official_get_final_preds(reference_dir):
    fixture = np.load(reference_dir / "pipeline" / "final_preds.npz")
    for refinement, key in [("quarter_offset", "preds_post_process"),
                            ("none", "preds_no_post_process")]:
        coords, maxvals = decode_heatmap_cells(fixture["heatmaps"], refinement)
        keypoints = heatmap_to_image(coords, fixture["center"], fixture["scale"],
                                     fixture["heatmaps"].shape[:1:-1], 200.0)
        # The official float32 transform (float32 points in cv2.getAffineTransform): <= 5e-5 px.
        np.testing.assert_allclose(keypoints, fixture[key], rtol=0, atol=1e-4)
        np.testing.assert_array_equal(maxvals, fixture["maxvals"][..., 0])


@pytest.mark.parametrize("shift_heatmap", [True, False])
def test_numpy_flip_test_equals_pose_evaluation(shift_heatmap):
    heatmaps, flipped = _hard_heatmaps(0), _hard_heatmaps(1)
    expected = flip_test_average(torch.from_numpy(heatmaps), torch.from_numpy(flipped),
                                 COCO_KEYPOINTS.flip_pairs, shift_heatmap=shift_heatmap)
    np.testing.assert_array_equal(
        numpy_flip_test_average(heatmaps, flipped, COCO_KEYPOINTS.flip_pairs, shift_heatmap),
        expected.numpy())


def _pytorch_path(model: nn.Module, image: np.ndarray, boxes: np.ndarray, flip_test: bool):
    """What pose.eval does with these boxes: crops, network, flip test, official decoding;
    also the averaged heatmaps."""
    images, centers, scales = torch_crops(image, boxes)
    with torch.no_grad():
        heatmaps = model(images)
        if flip_test:
            heatmaps = flip_test_average(heatmaps, model(images.flip(3)),
                                         COCO_KEYPOINTS.flip_pairs, shift_heatmap=True)
    keypoints, scores = decode_heatmaps(heatmaps, torch.from_numpy(centers),
                                        torch.from_numpy(scales))
    return keypoints.numpy(), scores.numpy(), heatmaps


@pytest.mark.parametrize("flip_test", [True, False])
def test_runtime_equals_the_pytorch_path_on_the_coco_sample(exported, flip_test):
    model, path = exported
    runtime = OnnxPoseModel(path)
    compared = total = 0
    for image, boxes in sample_people():
        keypoints, scores = runtime.predict(image, boxes, flip_test=flip_test)
        expected, expected_scores, heatmaps = _pytorch_path(model, image, boxes, flip_test)
        # How far onnxruntime's heatmaps are from PyTorch's bounds where the decoding may
        # legitimately differ (nearly tied maxima).
        crops = runtime.crops(image, boxes).images
        with torch.no_grad():
            deviation = max(np.abs(runtime.run(batch)["heatmaps"] - model(torch.from_numpy(
                batch.copy())).numpy()).max() for batch in (crops, crops[..., ::-1]))
        decisive = decisive_joints(heatmaps, float(deviation)).numpy()
        distance = np.linalg.norm(keypoints - expected, axis=2)
        assert distance[decisive].max(initial=0) <= RUNTIME_TOLERANCE_PX
        np.testing.assert_allclose(scores, expected_scores, rtol=0, atol=1e-4)
        assert keypoints.shape == (len(boxes), 17, 2) and keypoints.dtype == np.float32
        compared, total = compared + decisive.sum(), total + decisive.size
    assert compared >= 0.7 * total, f"only {compared}/{total} joints compared"


def test_fixed_batch_runs_in_chunks(exported, tmp_path):
    model, dynamic_path = exported
    fixed = OnnxPoseModel(export_model(model, tmp_path / "fixed.onnx", batch=4))
    image, boxes = sample_people()[1]  # 5 people: a full chunk and a padded one
    assert fixed.fixed_batch == 4 and len(boxes) == 5
    crops = fixed.crops(image, boxes).images
    outputs, expected = fixed.run(crops), OnnxPoseModel(dynamic_path).run(crops)
    assert outputs["heatmaps"].shape == (5, 17, 64, 48)
    np.testing.assert_allclose(outputs["heatmaps"], expected["heatmaps"], rtol=0, atol=1e-6)
    assert fixed.predict(image, boxes)[0].shape == (5, 17, 2)


def test_no_boxes_give_empty_arrays(exported):
    image, _ = sample_people()[0]
    keypoints, scores = OnnxPoseModel(exported[1]).predict(image, np.zeros((0, 4)))
    assert keypoints.shape == (0, 17, 2) and scores.shape == (0, 17)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter's
def test_an_onnx_file_without_pose_metadata_is_refused(tmp_path):
    path = tmp_path / "conv.onnx"
    torch.onnx.export(nn.Conv2d(3, 17, 1), (torch.zeros(1, 3, 8, 8),), str(path), dynamo=False)
    with pytest.raises(MetadataError, match=r"conv.onnx is not an exported pose model: its ONNX "
                                            r"metadata has no 'pose_format' entry"):
        OnnxPoseModel(path)


def test_files_that_are_not_onnx_models_are_refused(tmp_path):
    text = tmp_path / "notes.onnx"
    text.write_text("not a model")
    with pytest.raises(MetadataError, match="notes.onnx is not an ONNX model onnxruntime can load"):
        OnnxPoseModel(text)
    with pytest.raises(FileNotFoundError, match="ONNX model not found"):
        OnnxPoseModel(tmp_path / "missing.onnx")


def test_bad_images_and_unknown_decodings_are_clear_errors(exported, tmp_path):
    model, path = exported
    runtime = OnnxPoseModel(path)
    with pytest.raises(ValueError, match=r"expected a uint8 BGR image \[H, W, 3\]"):
        runtime.predict(np.zeros((10, 10), dtype=np.uint8), [[0, 0, 5, 5]])
    metadata = export_metadata("lite_hrnet_18", "0" * 64, COCO_KEYPOINTS, INPUT_SIZE, 4,
                               decoding="dark", target_sigma=2.0, flip_test=True,
                               shift_heatmap=True, decode=True, half=False, batch=None)
    export_onnx(model, tmp_path / "dark.onnx", INPUT_SIZE, metadata=metadata)
    dark = OnnxPoseModel(tmp_path / "dark.onnx")
    image, boxes = sample_people()[0]
    with pytest.raises(ValueError, match="evaluated with 'dark' decoding, which pose.runtime "
                                         "does not implement"):
        dark.predict(image, boxes)
    assert dark.predict(image, boxes, decoding="quarter_offset")[0].shape == (1, 17, 2)
