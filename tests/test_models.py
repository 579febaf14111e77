"""The one model interface (pose.models.base): backbone/head views, features, the builder."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from pose.models import MODELS, PoseModel, create_model, list_models

REPO_ROOT = Path(__file__).resolve().parents[1]
NUM_JOINTS = 5
IMAGE_HW = (32, 64)  # px; multiples of 32, not square (height and width cannot be swapped)


def _tensor_ids(module: nn.Module) -> list[int]:
    return [id(tensor) for tensor in (*module.parameters(), *module.buffers())]


def _randomised(name: str) -> PoseModel:
    """Model ``name`` in eval mode with BN shifts drawn from U(-1, 1), so that no output is ~0."""
    torch.manual_seed(0)
    model = create_model(name, num_joints=NUM_JOINTS).eval()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.bias.data.uniform_(-1.0, 1.0)
    return model


@pytest.mark.parametrize("name", list_models())
def test_backbone_and_head_partition_the_model(name):
    model = create_model(name, num_joints=NUM_JOINTS)
    assert isinstance(model, PoseModel)
    backbone, head = model.backbone, model.head
    own = _tensor_ids(model)
    assert len(own) == len(set(own))
    backbone_ids, head_ids = _tensor_ids(backbone), _tensor_ids(head)
    assert head_ids and backbone_ids and not set(backbone_ids) & set(head_ids)
    assert sorted(backbone_ids + head_ids) == sorted(own)  # the model's own tensors, no copies
    # Views, not registered again: every state-dict entry is a distinct tensor, and the parts'
    # entries are the model's entries under the same names (Lite-HRNet's under backbone.).
    state_dict = model.state_dict(keep_vars=True)
    assert len({id(tensor) for tensor in state_dict.values()}) == len(state_dict)
    by_tensor = {id(tensor): key for key, tensor in state_dict.items()}
    parts = {**backbone.state_dict(keep_vars=True), **{
        f"head:{key}": tensor for key, tensor in head.state_dict(keep_vars=True).items()}}
    assert len(parts) == len(state_dict)
    for key, tensor in parts.items():
        assert by_tensor[id(tensor)].endswith(key.removeprefix("head:"))
    modules = [id(module) for module in model.modules()]
    assert id(head) in modules
    assert all(id(child) in modules for child in backbone.children())
    assert model.num_joints == NUM_JOINTS and type(model.num_joints) is int
    assert model.heatmap_stride == 4


@pytest.mark.parametrize("name", list_models())
def test_forward_is_head_of_features(name):
    model = _randomised(name)
    images = torch.randn(1, 3, *IMAGE_HW)
    with torch.no_grad():
        heatmaps = model(images)
        features = model.forward_features(images)
        from_parts = model.forward_head(features)
        from_backbone = model.backbone(images)
        from_head = model.head(features if model.head_reads_all_features else features[0])
    height, width = (size // model.heatmap_stride for size in IMAGE_HW)
    assert heatmaps.shape == (1, NUM_JOINTS, height, width)
    assert heatmaps.abs().max().item() > 1e-3  # not trivially equal
    torch.testing.assert_close(from_parts, heatmaps, rtol=0, atol=0)
    torch.testing.assert_close(from_backbone, features, rtol=0, atol=0)
    torch.testing.assert_close(from_head, heatmaps, rtol=0, atol=0)
    # Finest first: feature b is at 1/(4 * 2^b) of the input with the spec's b-th width.
    _, spec = MODELS[name]
    assert isinstance(features, list) and len(features) >= 1
    for level, feature in enumerate(features):
        scale = model.heatmap_stride * 2**level
        assert feature.shape == (1, spec.widths[level], IMAGE_HW[0] // scale,
                                 IMAGE_HW[1] // scale)


@pytest.mark.parametrize("name", ["hrnet_w8_tiny", "naive_lite_hrnet_18"])
def test_backbone_refuses_bad_input_size(name):
    with pytest.raises(ValueError, match="multiples of 32, got 100x96"):
        create_model(name).backbone(torch.randn(1, 3, 100, 96))


def test_hrnet_backbone_view_follows_replaced_modules():
    # SyncBatchNorm conversion replaces the top-level bn1 in place; the view must see it.
    model = create_model("hrnet_w8_tiny")
    model.bn1 = nn.BatchNorm2d(model.bn1.num_features)
    assert model.backbone.bn1 is model.bn1
    assert list(dict(model.backbone.named_children())) == [
        name for name, _ in model.named_children() if name != "final_layer"]


def test_builder_validates_overrides_against_the_spec():
    with pytest.raises(ValueError, match=r"unknown HRNet override\(s\) \['width'\] for "
                                         r"hrnet_w8_tiny; the fields of HRNetSpec are"):
        create_model("hrnet_w8_tiny", width=8)
    with pytest.raises(ValueError, match=r"unknown LiteHRNet override\(s\) \['official_fusion'\]"):
        create_model("lite_hrnet_18", official_fusion=False)
    model = create_model("lite_hrnet_18", num_joints=3, official_fuse=False,
                         widths=(20, 40, 80, 160))
    assert model.num_joints == 3 and model.head.final_layer.in_channels == 20
    assert set(MODELS) == set(list_models())


def _imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


def test_models_import_nothing_from_engine():
    # Every import statement in pose/models (lazy ones inside functions included) ...
    for path in sorted((REPO_ROOT / "pose" / "models").glob("*.py")):
        engine = {name for name in _imported_modules(path) if name.startswith("pose.engine")}
        assert not engine, f"{path.name} imports {engine}"
    # ... and what importing every module of pose/models pulls in, transitively.
    code = ("import sys, pose.models, pose.models.stats, pose.models.weights; "
            "print(sorted(name for name in sys.modules if name.startswith('pose.engine')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO_ROOT, check=True)
    assert result.stdout.strip() == "[]"
