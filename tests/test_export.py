"""ONNX export (pose.engine.export, python -m pose.export): parity with PyTorch on the COCO
sample's real crops, the in-graph decoding against the official one, the official fixtures'
outputs under onnxruntime, the metadata, and the command's bad inputs."""

from __future__ import annotations

import hashlib
import inspect

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from conftest import REPO_ROOT
from exported_models import (
    INPUT_SIZE,
    export_model,
    randomised_model,
    sample_crops,
)
from torch import nn

from pose.data import CocoKeypoints
from pose.data.keypoints import COCO_KEYPOINTS
from pose.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from pose.engine.export import (
    BOX_PADDING,
    HEATMAP_TOLERANCE,
    KEYPOINT_TOLERANCE_PX,
    ExportGraph,
    check_parity,
    crop_pixel_keypoints,
    decisive_joints,
    synthetic_crops,
)
from pose.evaluation.decode import heatmap_to_image_coords
from pose.models import create_model, list_models
from pose.runtime import METADATA_KEYS, OnnxPoseModel, PoseMetadata

# One model per family and block type: HRNet, Lite-HRNet, naive Lite-HRNet.
FAMILIES = ["hrnet_w32", "lite_hrnet_18", "naive_lite_hrnet_18"]
# Joints whose maximum is (nearly) tied are left out of the keypoint comparison, as the issue's
# parity rule says; with these weights about 80 to 100% are compared. The check must not be empty.
MIN_DECISIVE_SHARE = 0.7


@pytest.fixture(scope="module")
def crops() -> torch.Tensor:
    return sample_crops()


@pytest.fixture(scope="module")
def exported_families(crops, tmp_path_factory):
    """Family name -> (model, path of its export with the in-graph decoding, dynamic batch)."""
    folder = tmp_path_factory.mktemp("families")
    return {name: (model := randomised_model(name, crops),
                   export_model(model, folder / f"{name}.onnx"))
            for name in FAMILIES}


@pytest.mark.parametrize("name", FAMILIES)
def test_family_matches_pytorch_on_real_crops(exported_families, crops, name):
    model, path = exported_families[name]
    parity = check_parity(model, path, crops)
    assert parity.heatmap_max_diff <= HEATMAP_TOLERANCE, parity.summary()
    assert parity.keypoint_max_diff_px <= KEYPOINT_TOLERANCE_PX, parity.summary()
    assert parity.decisive_joints >= MIN_DECISIVE_SHARE * parity.total_joints, parity.summary()
    assert parity.passed and not parity.half


@pytest.mark.parametrize("name", FAMILIES)
def test_in_graph_decoding_is_the_official_decoding_of_its_heatmaps(exported_families, crops,
                                                                     name):
    """Every joint, tied maxima included: the graph's keypoints are PyTorch's decoding (argmax,
    quarter offset, x stride) of the graph's own heatmaps, and its scores their maxima."""
    _, path = exported_families[name]
    outputs = OnnxPoseModel(path).run(crops.numpy())
    heatmaps = torch.from_numpy(outputs["heatmaps"])
    expected = crop_pixel_keypoints(heatmaps, INPUT_SIZE)
    np.testing.assert_allclose(outputs["keypoints"], expected.numpy(), rtol=0, atol=1e-4)
    np.testing.assert_array_equal(outputs["scores"], heatmaps.flatten(2).amax(2).numpy())


def test_dynamic_batch_gives_each_crop_its_own_result(exported_families, crops):
    _, path = exported_families["lite_hrnet_18"]
    runtime = OnnxPoseModel(path)
    assert runtime.fixed_batch is None
    whole = runtime.run(crops.numpy())
    for count in (1, 5):
        part = runtime.run(crops[:count].numpy())
        for name in ("heatmaps", "keypoints", "scores"):
            np.testing.assert_allclose(part[name], whole[name][:count], rtol=0, atol=1e-6)


def test_fixed_batch_and_no_decoding(crops, tmp_path):
    model = randomised_model("hrnet_w8_tiny", crops)
    path = export_model(model, tmp_path / "fixed.onnx", batch=4, decode=False)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [4, 3, 256, 192]
    assert [output.name for output in session.get_outputs()] == ["heatmaps"]
    # The runtime runs 18 crops in chunks of 4; the parity uses PyTorch's decoding.
    parity = check_parity(model, path, crops)
    assert parity.passed and parity.num_crops == len(crops), parity.summary()
    assert OnnxPoseModel(path).metadata.graph_decoding == "off"


def test_half_precision_deviation_is_reported(crops, tmp_path):
    model = randomised_model("lite_hrnet_18", crops)
    path = export_model(model, tmp_path / "half.onnx", half=True)
    parity = check_parity(model, path, crops[:4])
    assert parity.half and parity.passed  # reported, not held to the float32 tolerances
    assert 0 < parity.heatmap_max_diff < 0.1, parity.summary()  # float16, not float32
    assert "float16 graph" in parity.summary() and "px on average" in parity.summary()
    inputs = onnxruntime.InferenceSession(str(path)).get_inputs()
    assert inputs[0].type == "tensor(float)"


def test_graph_decoding_matches_the_official_get_final_preds(reference_dir, tmp_path):
    """The official ``get_final_preds`` fixture (planted peaks, border peaks, ties, all-negative,
    zero and constant maps) through the exported decoding under onnxruntime."""
    fixture = np.load(reference_dir / "pipeline" / "final_preds.npz")
    heatmaps = torch.from_numpy(fixture["heatmaps"])

    class Identity(nn.Module):  # the heatmaps are the input
        heatmap_stride = 4

        def forward(self, images):
            return images

    path = tmp_path / "decode.onnx"
    torch.onnx.export(ExportGraph(Identity(), decode=True, half=False), (heatmaps[:2],),
                      str(path), dynamo=False, input_names=["heatmaps_in"],
                      output_names=["heatmaps", "keypoints", "scores"],
                      dynamic_axes={"heatmaps_in": {0: "batch"}})
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    _, keypoints, scores = session.run(None, {"heatmaps_in": heatmaps.numpy()})
    cells = torch.from_numpy(keypoints) / 4
    image_px = heatmap_to_image_coords(cells, torch.from_numpy(fixture["center"]),
                                       torch.from_numpy(fixture["scale"]),
                                       (heatmaps.shape[3], heatmaps.shape[2]))
    # The official float32 transform (cv2.getAffineTransform on float32 points): <= 5e-5 px.
    np.testing.assert_allclose(image_px.numpy(), fixture["preds_post_process"], rtol=0,
                               atol=1e-4)
    np.testing.assert_array_equal(scores, fixture["maxvals"][..., 0])


@pytest.mark.parametrize(("name", "fixture_name", "image_size"), [
    ("hrnet_w32", "hrnet_w32_coco_256x192", (192, 256)),
    ("lite_hrnet_18", "litehrnet_18_coco_256x192", (192, 256)),
    ("lite_hrnet_18", "litehrnet_18_mpii_256x256", (256, 256)),
])
def test_official_layout_model_reproduces_fixture_output(reference_dir, tmp_path, name,
                                                         fixture_name, image_size):
    """Official weights (the forward fixtures' state dicts) exported and run by onnxruntime give
    the official model's float32 output within 1e-4."""
    fixture = torch.load(reference_dir / "fixtures" / f"forward_{fixture_name}.pt",
                         weights_only=False)
    state_dict = {key: value.float() if value.is_floating_point() else value
                  for key, value in fixture["state_dict_fp16"].items()}
    num_joints = fixture["output"].shape[1]
    model = create_model(name, num_joints=num_joints).eval()
    model.load_state_dict(state_dict, strict=True)
    path = export_model(model, tmp_path / "official.onnx", input_size=image_size)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    heatmaps = session.run(["heatmaps"], {"images": fixture["input"].numpy()})[0]
    assert heatmaps.shape == tuple(fixture["output"].shape)
    np.testing.assert_allclose(heatmaps, fixture["output"].numpy(), rtol=0, atol=1e-4)


def test_metadata_describes_the_model(exported_families):
    _, path = exported_families["hrnet_w32"]
    properties = {entry.key: entry.value for entry in onnx.load(str(path)).metadata_props}
    assert set(properties) == set(METADATA_KEYS)
    metadata = PoseMetadata.from_properties(properties, str(path))
    assert metadata.keypoint_names == COCO_KEYPOINTS.joint_names
    assert metadata.flip_pairs == COCO_KEYPOINTS.flip_pairs
    assert metadata.skeleton == COCO_KEYPOINTS.skeleton
    assert metadata.oks_sigmas == COCO_KEYPOINTS.oks_sigmas  # exactly, through JSON
    assert (metadata.input_size, metadata.heatmap_size, metadata.heatmap_stride) == (
        (192, 256), (48, 64), 4)
    assert (metadata.mean, metadata.std) == (IMAGENET_MEAN, IMAGENET_STD)
    assert (metadata.channel_order, metadata.value_range) == ("RGB", (0, 255))
    assert (metadata.decoding, metadata.graph_decoding, metadata.target_sigma) == (
        "quarter_offset", "quarter_offset", 2.0)
    assert (metadata.precision, metadata.batch) == ("float32", "dynamic")
    # The runtime's box padding is the evaluation's.
    assert BOX_PADDING == inspect.signature(CocoKeypoints).parameters["padding"].default


def test_metadata_without_sigmas_and_round_trip():
    from pose.data.keypoints import MPII_KEYPOINTS
    from pose.engine.export import export_metadata

    metadata = export_metadata("lite_hrnet_18", hashlib.sha256(b"x").hexdigest(), MPII_KEYPOINTS,
                               (256, 256), 4, decoding="dark", target_sigma=2.0, flip_test=False,
                               shift_heatmap=True, decode=False, half=True, batch=8)
    properties = metadata.to_properties()
    assert "oks_sigmas" not in properties
    assert PoseMetadata.from_properties(properties, "x.onnx") == metadata


def test_decisive_joints():
    heatmaps = torch.zeros(1, 4, 8, 8)
    heatmaps[0, 0, 4, 4], heatmaps[0, 0, 4, 5] = 1.0, 0.5  # clear maximum and x-neighbour ...
    heatmaps[0, 0, 5, 4] = 0.4  # ... and y-neighbour
    heatmaps[0, 1, 4, 4], heatmaps[0, 1, 2, 2] = 1.0, 0.999  # second maximum too close
    heatmaps[0, 1, 4, 5], heatmaps[0, 1, 5, 4] = 0.5, 0.5
    heatmaps[0, 2, 4, 4], heatmaps[0, 2, 4, 5] = 1.0, 0.5  # equal y-neighbours: sign unclear
    heatmaps[0, 3, 0, 7] = 1.0  # a border peak: the neighbours do not count
    assert decisive_joints(heatmaps, 0.01).tolist() == [[True, False, False, True]]
    assert decisive_joints(heatmaps, 0.0).tolist() == [[True, True, False, True]]


def test_synthetic_crops_are_normalised_people():
    crops = synthetic_crops((96, 128), 3, seed=1)
    assert crops.shape == (3, 3, 128, 96) and crops.dtype == torch.float32
    assert torch.equal(crops, synthetic_crops((96, 128), 3, seed=1))
    assert crops.std() > 0.3  # images, not a constant


def _preset_sizes() -> list[tuple[str, int, tuple[int, int]]]:
    """(model, joints, input size) of every experiment preset, and 256x192 COCO for the models
    that no preset uses."""
    from hydra import compose, initialize_config_dir

    from pose.config import register_configs

    register_configs()
    cases = set()
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base=None):
        for preset in sorted((REPO_ROOT / "conf" / "experiment").glob("*.yaml")):
            cfg = compose(config_name="train", overrides=[f"experiment={preset.stem}"])
            cases.add((cfg.model.name, cfg.model.num_joints, tuple(cfg.data.image_size)))
    used = {name for name, _, _ in cases}
    cases.update((name, 17, INPUT_SIZE) for name in list_models() if name not in used)
    return sorted(cases)


@pytest.mark.slow  # about 20 exports: a minute or two on two cores
def test_every_model_exports_at_its_presets_sizes(tmp_path):
    for name, num_joints, input_size in _preset_sizes():
        crops = sample_crops(input_size)[:3]
        model = randomised_model(name, crops, num_joints=num_joints)
        path = export_model(model, tmp_path / f"{name}.onnx", input_size=input_size)
        parity = check_parity(model, path, crops)
        assert parity.passed, f"{name} {input_size}: {parity.summary()}"
