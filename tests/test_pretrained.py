"""Weights from other implementations' files: official HRNet, Lite-HRNet, mmpose 0.x/1.x, ours."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pose.engine.checkpoint import save_checkpoint
from pose.models import PoseModel, create_model, load_backbone_weights, load_pretrained
from pose.models.weights import CheckpointError

LITE_HRNET = "lite_hrnet_18"
# Keys of an official HRNet ImageNet classifier that the pose network does not have.
CLASSIFIER_KEYS = {
    "incre_modules.0.0.conv1.weight": (32, 32, 1, 1),
    "incre_modules.0.0.bn1.running_mean": (32,),
    "downsamp_modules.0.0.weight": (256, 128, 3, 3),
    "final_layer.0.weight": (2048, 1024, 1, 1),
    "final_layer.1.weight": (2048,),
    "classifier.weight": (1000, 2048),
    "classifier.bias": (1000,),
}


def _float32(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # The fixtures store float16; released checkpoints hold float32.
    return {key: value.float() if value.is_floating_point() else value
            for key, value in state_dict.items()}


def _is_head(key: str) -> bool:
    return key.startswith(("final_layer.", "keypoint_head."))


def _role_free(key: str) -> str:
    return key.removeprefix("backbone.").removeprefix("keypoint_head.")


def write_checkpoint(path: Path, layout: str, state_dict: dict[str, torch.Tensor]) -> Path:
    """``state_dict`` (official naming: bare for HRNet, mmpose 0.x for Lite-HRNet) as ``layout``."""
    def prefixed(backbone: str, head: str) -> dict[str, torch.Tensor]:
        return {(head if _is_head(key) else backbone) + _role_free(key): value
                for key, value in state_dict.items()}

    meta = {"mmpose_version": "0.13.0", "epoch": 210}
    if layout == "bare":  # the official HRNet model zoo: model.module.state_dict()
        content = state_dict
    elif layout == "hrnet_training":  # the official HRNet tools/train.py checkpoint.pth
        content = {"epoch": 140, "model": "pose_hrnet", "perf": 0.74, "optimizer": {},
                   "state_dict": {f"module.{key}": value for key, value in state_dict.items()}}
    elif layout == "mmpose0":  # official Lite-HRNet / mmpose 0.x (mmcv save_checkpoint)
        content = {"meta": meta, "state_dict": prefixed("backbone.", "keypoint_head."),
                   "optimizer": {}}
    elif layout == "mmpose1":  # mmpose 1.x (mmengine)
        content = {"meta": meta, "state_dict": prefixed("backbone.", "head."),
                   "message_hub": {}, "optimizer": {}}
    elif layout == "ours":
        save_checkpoint(path, {"model": state_dict, "config": {}, "epoch": 1, "step": 1})
        return path
    else:
        raise AssertionError(layout)
    torch.save(content, path)
    return path


@pytest.fixture(scope="module")
def hrnet_fixture(reference_dir):
    return torch.load(reference_dir / "fixtures" / "forward_hrnet_w32_coco_256x192.pt",
                      weights_only=False)


@pytest.fixture(scope="module")
def lite_hrnet_fixture(reference_dir):
    return torch.load(reference_dir / "fixtures" / "forward_litehrnet_18_coco_256x192.pt",
                      weights_only=False)


def _assert_output(model: torch.nn.Module, fixture: dict) -> None:
    with torch.no_grad():
        output = model.eval()(fixture["input"])
    assert output.dtype == torch.float32
    assert output.shape == fixture["output"].shape
    assert (output - fixture["output"]).abs().max().item() <= 1e-5


@pytest.mark.parametrize("layout", ["bare", "hrnet_training", "mmpose0", "mmpose1", "ours"])
def test_hrnet_loads_from_every_layout(hrnet_fixture, layout, tmp_path):
    path = write_checkpoint(tmp_path / f"{layout}.pth", layout,
                            _float32(hrnet_fixture["state_dict_fp16"]))
    model = create_model("hrnet_w32")
    load_pretrained(model, path)
    _assert_output(model, hrnet_fixture)


def test_what_torch_load_returned_loads_too(hrnet_fixture, tmp_path):
    path = write_checkpoint(tmp_path / "m.pth", "mmpose1",
                            _float32(hrnet_fixture["state_dict_fp16"]))
    model = create_model("hrnet_w32")
    load_pretrained(model, torch.load(path, weights_only=False))
    _assert_output(model, hrnet_fixture)


@pytest.mark.parametrize("layout", ["mmpose0", "mmpose1", "ours"])
def test_lite_hrnet_loads_from_mmpose_layouts(lite_hrnet_fixture, layout, tmp_path):
    path = write_checkpoint(tmp_path / f"{layout}.pth", layout,
                            _float32(lite_hrnet_fixture["state_dict_fp16"]))
    model = create_model(LITE_HRNET)
    load_pretrained(model, path)
    _assert_output(model, lite_hrnet_fixture)


@pytest.fixture
def tiny_state_dict() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return create_model("hrnet_w8_tiny").state_dict()


def test_foreign_keys_are_listed(tiny_state_dict, tmp_path):
    state_dict = dict(tiny_state_dict)
    del state_dict["final_layer.bias"]
    state_dict["decoder.weight"] = torch.zeros(3)
    path = write_checkpoint(tmp_path / "foreign.pth", "mmpose0", state_dict)
    with pytest.raises(CheckpointError) as error:
        load_pretrained(create_model("hrnet_w8_tiny"), path, model_name="hrnet_w8_tiny")
    message = str(error.value)
    assert str(path) in message and "do not fit the model hrnet_w8_tiny" in message
    assert "missing keys: final_layer.bias" in message
    assert "unexpected keys: backbone.decoder.weight" in message


def test_another_width_is_a_shape_mismatch(tiny_state_dict, tmp_path):
    path = write_checkpoint(tmp_path / "w8.pth", "bare", tiny_state_dict)
    with pytest.raises(CheckpointError, match=r"shape mismatches \(file vs model\): "
                       r"layer1.0.conv1.weight: \(16, 32, 1, 1\) vs \(32"):
        load_pretrained(create_model("hrnet_w16_tiny"), path)


def test_unreadable_files_are_named(tmp_path):
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match=f"cannot read checkpoint {corrupt}"):
        load_pretrained(create_model("hrnet_w8_tiny"), corrupt)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_pretrained(create_model("hrnet_w8_tiny"), tmp_path / "absent.pth")
    no_weights = tmp_path / "optimizer_only.pth"
    torch.save({"meta": {}, "optimizer": {"lr": 0.1}}, no_weights)
    with pytest.raises(CheckpointError, match=f"{no_weights} holds no model weights.*meta"):
        load_pretrained(create_model("hrnet_w8_tiny"), no_weights)


def test_imagenet_backbone_loads_and_the_head_stays(hrnet_fixture, tmp_path):
    official = _float32(hrnet_fixture["state_dict_fp16"])
    backbone = {key: value for key, value in official.items() if not _is_head(key)}
    # Files from before torch 0.4.1 have no BN step counters: they are not weights.
    without_counters = {key: value for key, value in backbone.items()
                        if not key.endswith("num_batches_tracked")}
    classifier = {key: torch.randn(shape) for key, shape in CLASSIFIER_KEYS.items()}
    path = tmp_path / "hrnetv2_w32_imagenet_pretrained.pth"
    torch.save({**without_counters, **classifier}, path)

    torch.manual_seed(0)
    model = create_model("hrnet_w32")
    head_before = {key: value.clone() for key, value in model.state_dict().items() if _is_head(key)}
    report = load_backbone_weights(model, path)

    own = model.state_dict()
    assert report.loaded == list(without_counters)
    assert all(torch.equal(own[key], value) for key, value in without_counters.items())
    assert all(torch.equal(own[key], value) for key, value in head_before.items())
    assert report.ignored == list(CLASSIFIER_KEYS)
    assert set(report.initialised) == set(head_before) | (set(backbone) - set(without_counters))
    text = str(report)
    assert f"loaded {len(without_counters)} tensors" in text
    assert f"ignored {len(CLASSIFIER_KEYS)} in the file (incre_modules.0.0.conv1.weight" in text
    assert "final_layer.weight" in text


def test_backbone_of_another_width_is_an_error(tiny_state_dict, tmp_path):
    path = write_checkpoint(tmp_path / "w8.pth", "bare", tiny_state_dict)
    with pytest.raises(CheckpointError, match=r"shape mismatches \(file vs model\): "
                       r"layer1.0.conv1.weight: \(16, 32, 1, 1\) vs \(32"):
        load_backbone_weights(create_model("hrnet_w16_tiny"), path)
    unrelated = tmp_path / "unrelated.pth"
    torch.save({"classifier.weight": torch.zeros(2, 2)}, unrelated)
    with pytest.raises(CheckpointError, match="missing keys: conv1.weight"):
        load_backbone_weights(create_model("hrnet_w8_tiny"), unrelated)


def _head_keys(model: torch.nn.Module) -> list[str]:
    head = {id(tensor) for tensor in model.head.state_dict(keep_vars=True).values()}
    return [key for key, tensor in model.state_dict(keep_vars=True).items() if id(tensor) in head]


@pytest.mark.parametrize(("name", "expected_head"), [
    ("hrnet_w8_tiny", ["final_layer.weight", "final_layer.bias"]),
    ("naive_lite_hrnet_18", ["keypoint_head.final_layer.weight", "keypoint_head.final_layer.bias"]),
])
def test_backbone_loading_keeps_model_head(name, expected_head, tmp_path):
    torch.manual_seed(0)
    trained = create_model(name, num_joints=3).state_dict()
    model = create_model(name, num_joints=3)
    assert _head_keys(model) == expected_head
    path = tmp_path / "backbone.pth"
    torch.save({key: value for key, value in trained.items() if key not in expected_head}, path)
    report = load_backbone_weights(model, path)
    assert report.initialised == expected_head and report.ignored == []
    assert report.loaded == [key for key in trained if key not in expected_head]


class _RenamedHead(PoseModel):
    """A pose model whose head is registered under a name no file format uses."""

    def __init__(self) -> None:
        super().__init__(num_joints=2)
        self.stem = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.heatmap_layer = torch.nn.Conv2d(4, 2, 1)

    backbone = property(lambda self: self.stem)
    head = property(lambda self: self.heatmap_layer)

    def forward_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        return [self.stem(images)]


def test_backbone_loading_finds_the_head_by_model_head_not_by_name(tmp_path):
    model = _RenamedHead()
    path = tmp_path / "stem.pth"
    stem = {"stem.weight": torch.randn(4, 3, 3, 3), "stem.bias": torch.randn(4)}
    torch.save(stem, path)
    report = load_backbone_weights(model, path)
    assert report.loaded == ["stem.weight", "stem.bias"]
    assert report.initialised == ["heatmap_layer.weight", "heatmap_layer.bias"]
    assert torch.equal(model.stem.weight, stem["stem.weight"])


# End to end through the command lines.


@pytest.fixture(scope="module")
def dataset(synthetic_coco) -> Path:
    return synthetic_coco(num_train_images=2, num_val_images=2, seed=5,
                          image_size=(160, 160))


@pytest.mark.slow
def test_eval_runs_on_an_official_file(dataset, tiny_state_dict, tmp_path, run_module):
    path = write_checkpoint(tmp_path / "pose_hrnet_w8_tiny.pth", "bare", tiny_state_dict)
    common = [f"data.root={dataset}", "data.num_workers=0", "device=cpu", "eval.flip_test=false",
              "eval.num_visualize=0"]

    unnamed = run_module("pose.eval", f"checkpoint={path}", *common,
                         f"hydra.run.dir={tmp_path / 'a'}")
    assert unnamed.returncode == 2
    assert f"{path} is not a pose checkpoint" in unnamed.stderr
    assert "model=<name>" in unnamed.stderr and "Traceback" not in unnamed.stderr
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())

    wrong = run_module("pose.eval", f"checkpoint={path}", "model=hrnet_w16_tiny", *common,
                       f"hydra.run.dir={tmp_path / 'b'}")
    assert wrong.returncode == 2
    assert "do not fit the model hrnet_w16_tiny" in wrong.stderr
    assert "Traceback" not in wrong.stderr

    out_dir = tmp_path / "eval"
    result = run_module("pose.eval", f"checkpoint={path}", "model=hrnet_w8_tiny", *common,
                        f"hydra.run.dir={out_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| AP" in result.stdout
    assert (out_dir / "metrics.json").is_file() and (out_dir / "results.json").is_file()
    assert "name: hrnet_w8_tiny" in (out_dir / "config.yaml").read_text()
    assert json.loads((out_dir / "results.json").read_text())

    # An experiment preset gives the rest of the config; model= on the command line wins.
    preset_dir = tmp_path / "eval_preset"
    preset = run_module("pose.eval", f"checkpoint={path}", "experiment=demo", "model=hrnet_w8_tiny",
                        *common, f"hydra.run.dir={preset_dir}")
    assert preset.returncode == 0, preset.stderr[-3000:]
    config = (preset_dir / "config.yaml").read_text()
    assert "name: hrnet_w8_tiny" in config and "post_process: dark" in config


@pytest.mark.slow
def test_training_starts_from_imagenet_backbone(dataset, tiny_state_dict, tmp_path, run_module):
    path = tmp_path / "imagenet.pth"
    classifier = {"incre_modules.0.0.conv1.weight": torch.zeros(1),
                  "classifier.bias": torch.zeros(2)}
    torch.save({**{key: value for key, value in tiny_state_dict.items()
                   if not key.startswith("final_layer.")}, **classifier}, path)
    result = run_module("pose.train", "experiment=demo", "model=hrnet_w8_tiny",
                        f"model.pretrained={path}", f"data.root={dataset}", "train.max_steps=1",
                        "train.batch_size=2", "train.precision=fp32", "eval.flip_test=false",
                        "eval.num_visualize=0", "device=cpu", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = len(tiny_state_dict) - 2
    assert (f"backbone weights from {path}: loaded {loaded} tensors; kept 2 as initialised "
            "(final_layer.weight, final_layer.bias); ignored 2 in the file") in result.stderr
