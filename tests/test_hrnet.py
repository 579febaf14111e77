"""HRNetV1: official layout (models.json), official outputs (forward fixtures), small variants."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from pose.models import HeatmapHead, create_model, list_models
from pose.models.hrnet import HRNET_VARIANTS

SMALL_VARIANTS = ["hrnet_w16_small", "hrnet_w16_tiny", "hrnet_w16_nano", "hrnet_w8_tiny"]


@pytest.fixture(scope="module")
def reference_models(reference_dir):
    return json.loads((reference_dir / "models.json").read_text())


@pytest.fixture(scope="module")
def coco_fixture(reference_dir):
    return torch.load(
        reference_dir / "fixtures" / "forward_hrnet_w32_coco_256x192.pt", weights_only=False
    )


def _state_dict_layout(model: nn.Module) -> list[list]:
    return [
        [key, list(value.shape), str(value.dtype).removeprefix("torch.")]
        for key, value in model.state_dict().items()
    ]


@pytest.mark.parametrize(
    ("name", "num_joints", "expected"),
    [("hrnet_w32", 17, 28_536_113), ("hrnet_w48", 17, 63_595_745), ("hrnet_w32", 16, 28_536_080)],
)
def test_parameter_count_equals_official(name, num_joints, expected):
    model = create_model(name, num_joints=num_joints)
    assert sum(p.numel() for p in model.parameters()) == expected


@pytest.mark.parametrize(
    ("name", "num_joints", "reference_name"),
    [
        ("hrnet_w32", 17, "hrnet_w32_coco_256x192"),
        ("hrnet_w48", 17, "hrnet_w48_coco_256x192"),
        ("hrnet_w32", 16, "hrnet_w32_mpii_256x256"),
    ],
)
def test_state_dict_equals_official_layout(reference_models, name, num_joints, reference_name):
    # Keys, order, shapes and dtypes (incl. BN num_batches_tracked) of the official checkpoint.
    expected = reference_models[reference_name]["state_dict"]
    assert _state_dict_layout(create_model(name, num_joints=num_joints)) == expected


def _load_official(state_dict_fp16: dict, num_joints: int, dtype: torch.dtype) -> nn.Module:
    model = create_model("hrnet_w32", num_joints=num_joints).to(dtype)
    state_dict = {
        key: value.to(dtype) if value.is_floating_point() else value
        for key, value in state_dict_fp16.items()
    }
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


@pytest.mark.parametrize("dataset", ["coco", "mpii"])
@pytest.mark.parametrize(
    ("dtype", "output_key", "tolerance"),
    [(torch.float64, "output_fp64", 1e-10), (torch.float32, "output", 1e-5)],
)
def test_forward_equals_official(
    reference_dir, coco_fixture, dataset, dtype, output_key, tolerance
):
    state_dict = dict(coco_fixture["state_dict_fp16"])
    fixture = coco_fixture
    if dataset == "mpii":
        # The MPII fixture stores only its own final layer; the rest is the COCO fixture's.
        fixture = torch.load(
            reference_dir / "fixtures" / "forward_hrnet_w32_mpii_256x256.pt", weights_only=False
        )
        state_dict.update(fixture["state_dict_fp16_final_layer_only"])
    expected = fixture[output_key]
    model = _load_official(state_dict, num_joints=expected.shape[1], dtype=dtype)
    with torch.no_grad():
        output = model(fixture["input"].to(dtype))
    assert output.dtype == dtype
    assert output.shape == expected.shape
    assert (output - expected).abs().max().item() <= tolerance


@pytest.mark.parametrize("name", SMALL_VARIANTS)
def test_small_variant_output_shape(name):
    model = create_model(name).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 128, 96)).shape == (2, 17, 32, 24)
        assert create_model(name, num_joints=16).eval()(
            torch.randn(1, 3, 256, 256)
        ).shape == (1, 16, 64, 64)


@pytest.mark.parametrize("name", SMALL_VARIANTS)
def test_small_variant_trains(name):
    torch.manual_seed(0)
    model = create_model(name).train()
    heatmaps = model(torch.randn(2, 3, 128, 96))
    loss = ((heatmaps - torch.rand_like(heatmaps)) ** 2).mean()
    loss.backward()
    for key, parameter in model.named_parameters():
        assert parameter.grad is not None, key
        assert torch.isfinite(parameter.grad).all(), key
        assert parameter.grad.abs().sum() > 0, key
    # Train mode uses batch statistics and updates the running ones.
    assert all(
        bn.num_batches_tracked.item() == 1
        for bn in model.modules()
        if isinstance(bn, nn.BatchNorm2d)
    )
    assert not torch.equal(model.bn1.running_mean, torch.zeros_like(model.bn1.running_mean))


def test_init_is_official():
    torch.manual_seed(0)
    model = create_model("hrnet_w16_small")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    conv_weights = torch.cat([conv.weight.flatten() for conv in convs])
    assert conv_weights.std().item() == pytest.approx(0.001, rel=0.01)
    assert abs(conv_weights.mean().item()) < 1e-5
    assert [conv for conv in convs if conv.bias is not None] == [model.final_layer]
    assert torch.equal(model.final_layer.bias, torch.zeros(17))
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        assert torch.equal(bn.weight, torch.ones_like(bn.weight))
        assert torch.equal(bn.bias, torch.zeros_like(bn.bias))
        assert (bn.momentum, bn.eps) == (0.1, 1e-5)


def test_forward_compiles_without_graph_breaks():
    model = create_model("hrnet_w8_tiny").eval()
    images = torch.randn(1, 3, 64, 64)
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(images), model(images), rtol=0, atol=0)


def test_unknown_model_name_lists_known_names():
    with pytest.raises(ValueError, match="unknown model 'hrnet_w31'") as error:
        create_model("hrnet_w31")
    for name in list_models():
        assert name in str(error.value)
    assert list_models() == sorted(list_models())
    assert set(HRNET_VARIANTS) <= set(list_models())
    assert {"hrnet_w32", "hrnet_w48", *SMALL_VARIANTS} <= set(list_models())


def test_overrides_replace_table_fields():
    model = create_model("hrnet_w8_tiny", widths=(8, 16, 32, 48), stage_modules=(1, 2, 1))
    assert model.transition3[3][0][0].out_channels == 48
    assert len(model.stage3) == 2
    with pytest.raises(ValueError, match="unknown HRNet override"):
        create_model("hrnet_w8_tiny", width=8)
    with pytest.raises(ValueError, match="widths must be 4 positive integers"):
        create_model("hrnet_w8_tiny", widths=(8, 16, 32))


def test_input_size_must_be_multiple_of_32():
    model = create_model("hrnet_w8_tiny").eval()
    with pytest.raises(ValueError, match="multiples of 32, got 100x96"):
        model(torch.randn(1, 3, 100, 96))


def test_heatmap_head_without_deconv_has_lite_hrnet_keys(reference_models):
    head = nn.Module()
    head.keypoint_head = HeatmapHead(40, 17)
    expected = [
        entry
        for entry in reference_models["litehrnet_18_coco_256x192"]["state_dict"]
        if entry[0].startswith("keypoint_head.")
    ]
    assert _state_dict_layout(head) == expected
    features = torch.randn(2, 40, 64, 48)
    assert head.keypoint_head(features).shape == (2, 17, 64, 48)
    # Without deconvs the head is exactly its 1x1 conv.
    torch.testing.assert_close(
        head.keypoint_head(features), head.keypoint_head.final_layer(features)
    )


@pytest.mark.parametrize("kernel_size", [2, 3, 4])
def test_heatmap_head_deconvs_double_resolution(kernel_size):
    head = HeatmapHead(
        32, 17, num_deconv_layers=2, deconv_channels=8, deconv_kernel_size=kernel_size,
        final_kernel_size=3,
    )
    assert [key for key in head.state_dict() if key.endswith("weight")] == [
        "deconv_layers.0.weight",
        "deconv_layers.1.weight",
        "deconv_layers.3.weight",
        "deconv_layers.4.weight",
        "final_layer.weight",
    ]
    assert head.deconv_layers[0].weight.shape == (32, 8, kernel_size, kernel_size)
    assert head.final_layer.weight.shape == (17, 8, 3, 3)
    assert head.eval()(torch.randn(1, 32, 8, 6)).shape == (1, 17, 32, 24)


def test_heatmap_head_rejects_bad_kernels():
    with pytest.raises(ValueError, match="deconv kernel size"):
        HeatmapHead(32, 17, num_deconv_layers=1, deconv_kernel_size=5)
    with pytest.raises(ValueError, match="final kernel size"):
        HeatmapHead(32, 17, final_kernel_size=2)
