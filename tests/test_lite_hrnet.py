"""Lite-HRNet: official layout (models.json), official outputs (forward fixtures), fuse quirk L2."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from pose.models import LITE_HRNET_VARIANTS, create_model, list_models
from pose.models.lite_hrnet import concat_shuffle

# Our name -> the models.json entry with the official layout (17 joints, COCO 256x192).
OFFICIAL_NAMES = {
    "lite_hrnet_18": "litehrnet_18_coco_256x192",
    "lite_hrnet_30": "litehrnet_30_coco_256x192",
    # The official naive-18 config fails at forward (quirk L1); this entry has the 30-channel head.
    "naive_lite_hrnet_18": "naive_litehrnet_18_coco_256x192__HEAD_IN30_PATCHED",
    "wider_naive_lite_hrnet_18": "wider_naive_litehrnet_18_coco_256x192",
}
# (our name, fixture name) for every Lite-HRNet forward fixture.
FORWARD_FIXTURES = [
    ("lite_hrnet_18", "litehrnet_18_coco_256x192"),
    ("lite_hrnet_18", "litehrnet_18_mpii_256x256"),
    ("lite_hrnet_30", "litehrnet_30_coco_256x192"),
    ("naive_lite_hrnet_18", "naive_litehrnet_18_coco_256x192__HEAD_IN30_PATCHED"),
    ("wider_naive_lite_hrnet_18", "wider_naive_litehrnet_18_coco_256x192"),
]


@pytest.fixture(scope="module")
def reference_models(reference_dir):
    return json.loads((reference_dir / "models.json").read_text())


def _load_fixture(reference_dir, fixture_name: str) -> dict:
    return torch.load(reference_dir / "fixtures" / f"forward_{fixture_name}.pt", weights_only=False)


def _state_dict_layout(model: nn.Module) -> list[list]:
    return [
        [key, list(value.shape), str(value.dtype).removeprefix("torch.")]
        for key, value in model.state_dict().items()
    ]


def _load_official(name: str, state_dict_fp16: dict, dtype: torch.dtype, **overrides) -> nn.Module:
    num_joints = state_dict_fp16["keypoint_head.final_layer.weight"].shape[0]
    model = create_model(name, num_joints=num_joints, **overrides).to(dtype)
    state_dict = {
        key: value.to(dtype) if value.is_floating_point() else value
        for key, value in state_dict_fp16.items()
    }
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


def test_every_variant_is_listed():
    assert set(LITE_HRNET_VARIANTS) <= set(list_models())


@pytest.mark.parametrize(
    ("name", "num_joints", "expected"),
    [
        ("lite_hrnet_18", 17, 1_130_769),
        ("lite_hrnet_30", 17, 1_763_717),
        ("naive_lite_hrnet_18", 17, 760_365),
        ("wider_naive_lite_hrnet_18", 17, 1_318_625),
        ("lite_hrnet_18", 16, 1_130_728),
    ],
)
def test_parameter_count_equals_official(name, num_joints, expected):
    model = create_model(name, num_joints=num_joints)
    assert sum(p.numel() for p in model.parameters()) == expected


@pytest.mark.parametrize("name", sorted(OFFICIAL_NAMES))
def test_state_dict_equals_official_layout(reference_models, name):
    # Keys (backbone.* and keypoint_head.*), order, shapes and dtypes of the official checkpoint.
    expected = reference_models[OFFICIAL_NAMES[name]]["state_dict"]
    assert _state_dict_layout(create_model(name, num_joints=17)) == expected


@pytest.mark.parametrize(("name", "fixture_name"), FORWARD_FIXTURES)
@pytest.mark.parametrize(
    ("dtype", "output_key", "tolerance"),
    [(torch.float64, "output_fp64", 1e-10), (torch.float32, "output", 1e-5)],
)
def test_forward_equals_official(reference_dir, name, fixture_name, dtype, output_key, tolerance):
    fixture = _load_fixture(reference_dir, fixture_name)
    model = _load_official(name, fixture["state_dict_fp16"], dtype)
    with torch.no_grad():
        output = model(fixture["input"].to(dtype))
    expected = fixture[output_key].to(dtype)
    assert output.shape == expected.shape
    assert (output - expected).abs().max().item() <= tolerance


def test_textbook_fuse_differs_from_official(reference_dir):
    # Quirk L2: the official fuse double-counts branch 0; the textbook sum is a different
    # function of the same weights (0.010 apart on a 0.23-scale output, quirk_litehrnet_fuse).
    fixture = _load_fixture(reference_dir, "litehrnet_18_coco_256x192")
    images = fixture["input"].to(torch.float64)
    official = _load_official("lite_hrnet_18", fixture["state_dict_fp16"], torch.float64)
    textbook = _load_official(
        "lite_hrnet_18", fixture["state_dict_fp16"], torch.float64, official_fuse=False
    )
    with torch.no_grad():
        difference = (official(images) - textbook(images)).abs().max().item()
    # The recorded 0.01043 was measured on the official code's own weights; these fixture
    # weights give 0.01043 too, to 1e-4 relative.
    recorded = json.loads((reference_dir / "quirk_litehrnet_fuse.json").read_text())
    assert difference == pytest.approx(recorded["max_abs_official_vs_textbook_fuse_fp64"], rel=1e-2)


def test_textbook_fuse_option_without_reference():
    torch.manual_seed(0)
    official = create_model("naive_lite_hrnet_18", num_joints=3).eval()
    # Non-trivial BN shifts: with the initial N(0, 0.001^2) convs both outputs would be ~0.
    for module in official.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.bias.data.uniform_(-1.0, 1.0)
    textbook = create_model("naive_lite_hrnet_18", num_joints=3, official_fuse=False).eval()
    textbook.load_state_dict(official.state_dict())
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(official(images), textbook(images))


def test_official_fuse_runs_branch0_paths_twice_in_training():
    # Officially the branch-0 path of rows i >= 1 runs twice, so in training its BN running
    # statistics are updated twice per batch; eval mode computes it once and doubles it.
    model = create_model("wider_naive_lite_hrnet_18", num_joints=17).train()
    downsample_bn = model.backbone.stage0[0].fuse_layers[1][0][0][1]
    upsample_bn = model.backbone.stage0[0].fuse_layers[0][1][1]
    model(torch.randn(2, 3, 64, 64))
    assert downsample_bn.num_batches_tracked.item() == 2
    assert upsample_bn.num_batches_tracked.item() == 1
    model.eval()
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    assert downsample_bn.num_batches_tracked.item() == 2


def test_non_square_input_shape():
    model = create_model("lite_hrnet_18", num_joints=5).eval()
    with torch.no_grad():
        heatmaps = model(torch.randn(1, 3, 96, 160))
    assert heatmaps.shape == (1, 5, 24, 40)


@pytest.mark.parametrize("size", [(256, 200), (100, 192)])
def test_bad_input_size_is_a_clear_error(size):
    model = create_model("naive_lite_hrnet_18", num_joints=17).eval()
    with pytest.raises(ValueError, match="multiples of 32"):
        model(torch.randn(1, 3, *size))


def test_bad_variant_or_override_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown model"):
        create_model("lite_hrnet_99")
    with pytest.raises(ValueError, match="override"):
        create_model("lite_hrnet_18", official_fusion=False)
    with pytest.raises(ValueError, match="block"):
        create_model("lite_hrnet_18", block="heavy")


def test_concat_shuffle_equals_cat_then_channel_shuffle():
    # As in the blocks: the first half is a channel slice, the second a fresh tensor.
    first, second = torch.randn(2, 12, 4, 3)[:, :6], torch.randn(2, 6, 4, 3)
    reference = torch.cat((first, second), 1).view(2, 2, 6, 4, 3).transpose(1, 2)
    reference = reference.reshape(2, 12, 4, 3)
    assert torch.equal(concat_shuffle(first, second), reference)
    whole = torch.cat((first, first), 1).contiguous(memory_format=torch.channels_last)
    channels_last = concat_shuffle(
        whole[:, :6], second.contiguous(memory_format=torch.channels_last)
    )
    assert torch.equal(channels_last, reference)
    assert channels_last.is_contiguous(memory_format=torch.channels_last)


def test_channels_last_and_bfloat16_autocast():
    torch.manual_seed(0)
    model = create_model("lite_hrnet_18", num_joints=4).eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(images)
        model_cl = model.to(memory_format=torch.channels_last)
        output_cl = model_cl(images.contiguous(memory_format=torch.channels_last))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            output_bf16 = model_cl(images.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(output_cl, expected, rtol=1e-4, atol=1e-6)
    # The shuffles keep channels_last inside the network, not just at the last conv.
    features = model_cl.backbone.stem(images.contiguous(memory_format=torch.channels_last))
    block_outputs = model_cl.backbone.stage0[0].layers(model_cl.backbone.transition0([features]))
    assert all(x.is_contiguous(memory_format=torch.channels_last) for x in block_outputs)
    assert output_bf16.shape == expected.shape and torch.isfinite(output_bf16.float()).all()


def test_compiles_without_graph_breaks():
    # fullgraph=True fails on any graph break (data-dependent Python control flow).
    model = create_model("lite_hrnet_18", num_joints=3).eval()
    images = torch.randn(1, 3, 64, 64)
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(images), model(images), rtol=0, atol=0)
