"""Weight files are read without running code they name: crafted files are refused (and run
nothing), ours (old and new) and the official layouts load, ``.safetensors`` loads,
``trust_checkpoint`` opts in."""

from __future__ import annotations

import random
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from pose.config import Config, checkpoint_config, model_from_checkpoint
from pose.engine.checkpoint import (
    load_checkpoint,
    restore_rng_states,
    rng_states,
    save_checkpoint,
)
from pose.models import create_model, load_backbone_weights, load_pretrained
from pose.models.weights import CHECKPOINT_FORMAT, CheckpointError, read_checkpoint_file


class _CreatesAFile:
    """Unpickling this calls ``open(marker, "w")``: what a crafted checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def crafted_checkpoint(path: Path, marker: Path, legacy: bool = False) -> Path:
    """Weights plus an object whose unpickling creates ``marker``, in torch's zip format or the
    legacy one (torch < 1.6, as the official HRNet model zoo files)."""
    content = {"state_dict": {"conv1.weight": torch.zeros(2)}, "meta": _CreatesAFile(marker)}
    torch.save(content, path, _use_new_zipfile_serialization=not legacy)
    return path


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_a_crafted_checkpoint_is_refused_and_runs_nothing(tmp_path, legacy):
    marker = tmp_path / "created_by_unpickling"
    path = crafted_checkpoint(tmp_path / "weights.pth", marker, legacy)
    with pytest.raises(CheckpointError) as refused:
        read_checkpoint_file(path)
    message = str(refused.value)
    assert "\n" not in message and str(path) in message
    assert "open" in message and "trust_checkpoint=true" in message
    assert not marker.exists()
    # Through every reader of weight files.
    for read in (lambda: load_pretrained(create_model("hrnet_w8_tiny"), path),
                 lambda: load_backbone_weights(create_model("hrnet_w8_tiny"), path),
                 lambda: load_checkpoint(path)):
        with pytest.raises(CheckpointError, match="trust_checkpoint=true"):
            read()
    assert not marker.exists()
    # The opt-in does what the README says: the file's code runs.
    read_checkpoint_file(path, trust_checkpoint=True)
    assert marker.exists()


def test_the_schema_default_refuses_and_the_key_opts_in(tmp_path):
    marker = tmp_path / "created_by_unpickling"
    path = crafted_checkpoint(tmp_path / "weights.pth", marker)
    cli_cfg = OmegaConf.merge(OmegaConf.structured(Config), {"checkpoint": str(path)})
    assert cli_cfg.trust_checkpoint is False
    with pytest.raises(CheckpointError, match="trust_checkpoint=true"):
        checkpoint_config(cli_cfg, [])
    assert not marker.exists()
    cli_cfg.trust_checkpoint = True
    with pytest.raises(ValueError, match="model=<name>"):  # read; then it names no model
        checkpoint_config(cli_cfg, [f"checkpoint={path}"])
    assert marker.exists()


def _old_checkpoint(path: Path) -> dict:
    """A checkpoint as pose.train wrote it before this change: numpy's random state as
    ``np.random.get_state()`` returns it (an ndarray inside a tuple)."""
    model = create_model("hrnet_w8_tiny")
    content = {"format": CHECKPOINT_FORMAT, "model": model.state_dict(), "config": {"seed": 0},
               "epoch": 1, "step": 5, "metrics": {"AP": 0.5}, "best_metric": 0.5,
               "rng": {"python": random.getstate(), "numpy": np.random.get_state(),
                       "torch": torch.get_rng_state()}}
    torch.save(content, path)
    return content


def _numpy1_names(path: Path) -> None:
    """Rewrite ``path`` as numpy 1 pickled it (``numpy.core.multiarray``): the module names the
    official files and checkpoints written under numpy 1 hold."""
    source = zipfile.ZipFile(path)
    entries = [(info.filename, source.read(info)) for info in source.infolist()]
    source.close()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as rewritten:
        for name, data in entries:
            if name.endswith("data.pkl"):
                assert b"cnumpy._core.multiarray\n" in data
                data = data.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
            rewritten.writestr(name, data)


@pytest.mark.parametrize("numpy_names", ["numpy2", "numpy1"])
def test_checkpoints_written_before_still_load_and_resume_exactly(tmp_path, numpy_names):
    path = tmp_path / "last.pt"
    np.random.seed(7)
    written = _old_checkpoint(path)
    if numpy_names == "numpy1":
        _numpy1_names(path)
    assert {"numpy.ndarray", "numpy.dtype"} <= set(
        torch.serialization.get_unsafe_globals_in_checkpoint(path))
    expected = np.random.random(4)  # the draws that followed the saved state

    checkpoint = load_checkpoint(path)
    assert checkpoint["step"] == 5
    for key, value in written["model"].items():
        assert torch.equal(checkpoint["model"][key], value), key
    np.random.seed(0)
    restore_rng_states(checkpoint["rng"])
    assert np.array_equal(np.random.random(4), expected)


def test_new_checkpoints_hold_only_tensors_and_plain_types(tmp_path):
    path = tmp_path / "last.pt"
    random.seed(3)
    np.random.seed(3)
    np.random.standard_normal()  # a cached Gaussian is part of the state
    torch.manual_seed(3)
    save_checkpoint(path, {"model": {"w": torch.ones(2)}, "rng": rng_states(), "step": 1})
    expected = (random.random(), np.random.standard_normal(3), torch.rand(3))
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
    plain = torch.load(path, weights_only=True)  # torch's own restricted load, no allow-list
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    restore_rng_states(plain["rng"])
    assert random.random() == expected[0]
    assert np.array_equal(np.random.standard_normal(3), expected[1])
    assert torch.equal(torch.rand(3), expected[2])


def test_official_training_layouts_with_numpy_scalars_load(tmp_path):
    """The official HRNet training checkpoint (its ``perf`` is a numpy float64 from COCOeval)
    and mmcv's ``meta`` (``hook_msgs.best_score`` likewise), pickled under numpy 1."""
    model = create_model("hrnet_w8_tiny")
    weights = {key: torch.randn_like(value) if value.is_floating_point() else value
               for key, value in model.state_dict().items()}
    hrnet = tmp_path / "checkpoint.pth"
    torch.save({"epoch": 140, "model": "pose_hrnet", "perf": np.float64(0.74),
                "state_dict": {f"module.{key}": value for key, value in weights.items()},
                "best_state_dict": weights, "optimizer": {"state": {}, "param_groups": []}},
               hrnet)
    mmcv = tmp_path / "mmcv.pth"
    meta = {"mmcv_version": "1.3.9", "time": "Mon Aug  2 10:00:00 2021", "mmpose_version": "0.14.0",
            "config": "model = dict(type='TopDown')", "env_info": "sys.platform: linux",
            "seed": 0, "exp_name": "litehrnet_18_coco_256x192.py", "epoch": 210, "iter": 1000,
            "hook_msgs": {"last_ckpt": "work_dirs/epoch_210.pth", "best_score": np.float64(0.65),
                          "best_ckpt": "work_dirs/best_AP_epoch_200.pth"}}
    torch.save({"meta": meta, "state_dict": weights, "optimizer": {}}, mmcv)
    for path in (hrnet, mmcv):
        _numpy1_names(path)
        loaded = create_model("hrnet_w8_tiny")
        load_pretrained(loaded, path)
        assert all(torch.equal(loaded.state_dict()[key], value) for key, value in weights.items())
    assert read_checkpoint_file(hrnet)["perf"] == 0.74


def test_safetensors_load_wherever_a_checkpoint_path_is_accepted(tmp_path):
    from safetensors.torch import save_file

    model = create_model("hrnet_w8_tiny")
    weights = {key: torch.randn_like(value) if value.is_floating_point() else value.clone()
               for key, value in model.state_dict().items()}
    path = tmp_path / "weights.safetensors"
    save_file(weights, str(path))
    assert read_checkpoint_file(path).keys() == weights.keys()
    loaded = create_model("hrnet_w8_tiny")  # checkpoint= with model=
    load_pretrained(loaded, path)
    assert all(torch.equal(loaded.state_dict()[key], value) for key, value in weights.items())
    backbone = create_model("hrnet_w8_tiny")  # model.pretrained=
    report = load_backbone_weights(backbone, path)
    assert f"backbone weights from {path}: loaded" in str(report)
    cli_cfg = OmegaConf.merge(OmegaConf.structured(Config), {
        "checkpoint": str(path), "model": {"name": "hrnet_w8_tiny"}})  # pose.eval's path
    cfg, checkpoint, ours = checkpoint_config(cli_cfg, ["model=hrnet_w8_tiny"])
    evaluated, _ = model_from_checkpoint(cfg, checkpoint, ours)
    assert all(torch.equal(evaluated.state_dict()[key], value) for key, value in weights.items())

    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=f"cannot read checkpoint {damaged}: ") as error:
        read_checkpoint_file(damaged)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04truncated"],
                         ids=["empty", "text", "truncated_zip"])
def test_damaged_files_get_one_line(tmp_path, content):
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=f"cannot read checkpoint {path}: ") as error:
        read_checkpoint_file(path)
    assert "\n" not in str(error.value) and "trust_checkpoint" not in str(error.value)


@pytest.mark.slow
def test_pose_eval_refuses_a_crafted_file_and_leaves_nothing(tmp_path, run_module):
    marker = tmp_path / "created_by_unpickling"
    path = crafted_checkpoint(tmp_path / "weights.pth", marker)
    out_dir = tmp_path / "eval"
    result = run_module("pose.eval", f"checkpoint={path}", "model=hrnet_w8_tiny", "device=cpu",
                        f"hydra.run.dir={out_dir}")
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert lines == [f"pose.eval: error: {lines[0].split('error: ', 1)[1]}"], result.stderr
    assert f"refusing to read {path}" in lines[0] and "trust_checkpoint=true" in lines[0]
    assert not marker.exists()
    assert not out_dir.exists()
