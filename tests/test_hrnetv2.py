"""HRNetV2 (pose model) and HRNetV2p (detection backbone): layout, shapes, parameter counts,
published cost, and one Faster R-CNN training step."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models.detection import FasterRCNN

from pose.models import (
    HRNETV2_VARIANTS,
    HRNetV2,
    HRNetV2Head,
    create_model,
    hrnet_pyramid,
    list_models,
    load_backbone_weights,
)
from pose.models.stats import V2_PUBLISHED, count_parameters, model_stats, pyramid_stats

# The official pose HRNet-W32 (models.json / recipes.md §7), of which V2-W32 is a variant.
HRNET_W32_PARAMS = 28_536_113


def _conv_bn(in_channels: int, out_channels: int, kernel: int) -> int:
    """Parameters of a bias-free conv and its BN (weight and bias)."""
    return in_channels * out_channels * kernel * kernel + 2 * out_channels


def _extra_fuse_parameters(widths: tuple[int, ...]) -> int:
    """Parameters of the fuse rows 1..3 that V2's last module of stage 4 adds to V1's, counted
    from the official ``_make_fuse_layers``: from a coarser branch j a 1x1 conv + BN; from a
    finer one, (i - j) stride-2 3x3 conv + BN steps, the last one to branch i's width."""
    total = 0
    for target in range(1, len(widths)):
        for source in range(len(widths)):
            if source > target:
                total += _conv_bn(widths[source], widths[target], 1)
            elif source < target:
                steps = target - source
                total += (steps - 1) * _conv_bn(widths[source], widths[source], 3)
                total += _conv_bn(widths[source], widths[target], 3)
    return total


def test_v2_parameter_counts_by_hand():
    # V2-W32 = official V1-W32 - its final_layer + the extra fuse rows + the V2 head
    # (1x1 conv 480 -> 480 with bias, BN, 1x1 conv 480 -> 17 with bias).
    widths = (32, 64, 128, 256)
    final_layer = 32 * 17 + 17
    head = 480 * 480 + 480 + 2 * 480 + 480 * 17 + 17
    expected = HRNET_W32_PARAMS - final_layer + _extra_fuse_parameters(widths) + head
    assert count_parameters(create_model("hrnetv2_w32")) == expected == 29_545_553
    # The other widths, pinned (measured by the same count).
    assert count_parameters(create_model("hrnetv2_w18")) == 9_640_577
    assert count_parameters(create_model("hrnetv2_w48", num_joints=19)) == 65_859_379


# One width here: tests/test_models.py runs every variant through the generic interface checks.
@pytest.mark.parametrize("name", ["hrnetv2_w32"])
def test_v2_forward_shapes(name):
    torch.manual_seed(0)
    model = create_model(name, num_joints=5).eval()
    widths = HRNETV2_VARIANTS[name].widths
    assert isinstance(model, HRNetV2) and model.head_reads_all_features
    assert isinstance(model.head, HRNetV2Head) and model.head is model.last_layer
    assert model.last_layer[0].in_channels == sum(widths) == 15 * widths[0]
    images = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        features = model.forward_features(images)
        heatmaps = model(images)
    assert [tuple(feature.shape) for feature in features] == [
        (2, width, 16 // 2**level, 24 // 2**level) for level, width in enumerate(widths)]
    assert heatmaps.shape == (2, 5, 16, 24)
    assert name in list_models()


def test_v2_head_upsamples_bilinearly_and_concatenates():
    # The head equals its layers applied to the bilinear (align_corners=False) concatenation.
    torch.manual_seed(1)
    head = HRNetV2Head(3 + 5, num_joints=2).eval()
    for module in head.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.bias.data.uniform_(-1, 1)
    features = [torch.randn(1, 3, 8, 6), torch.randn(1, 5, 4, 3)]
    upsampled = nn.functional.interpolate(features[1], size=(8, 6), mode="bilinear",
                                          align_corners=False)
    expected = head[3](head[2](head[1](head[0](torch.cat([features[0], upsampled], dim=1)))))
    torch.testing.assert_close(head(features), expected, rtol=0, atol=0)


def test_v2_state_dict_follows_the_official_segmentation_layout():
    model = create_model("hrnetv2_w18", num_joints=19)
    state = model.state_dict()
    # seg_hrnet.py: conv1 .. stage4 (its last module fuses into all four branches), last_layer.
    assert next(iter(state)) == "conv1.weight" and list(state)[-1] == "last_layer.3.bias"
    assert state["stage4.2.fuse_layers.3.0.2.0.weight"].shape == (144, 18, 3, 3)
    assert state["stage4.2.fuse_layers.1.3.0.weight"].shape == (36, 144, 1, 1)
    assert state["last_layer.0.weight"].shape == (270, 270, 1, 1)
    assert state["last_layer.0.bias"].shape == (270,)
    assert state["last_layer.1.running_var"].shape == (270,)
    assert state["last_layer.3.weight"].shape == (19, 270, 1, 1)
    # V1's backbone keys (what the pose HRNet's ImageNet checkpoints hold) are all there.
    v1 = create_model("hrnet_w8_tiny", widths=(18, 36, 72, 144), stem_width=64,
                      stage1_blocks=4, stage1_planes=64, stage_modules=(1, 4, 3),
                      stage_blocks=(4, 4, 4))
    v1_backbone = v1.backbone.state_dict()
    assert all(state[key].shape == value.shape for key, value in v1_backbone.items())
    assert set(state) - set(v1_backbone) - {key for key in state if key.startswith("last_layer")} \
        == {key for key in state if key.startswith("stage4.2.fuse_layers.") and
            key.split(".")[3] != "0"}


def test_backbone_of_a_facial_landmark_checkpoint_loads():
    # HRNet-Facial-Landmark-Detection names the head "head" (the segmentation repository
    # "last_layer"): its backbone loads, its head is left out.
    source = create_model("hrnetv2_w18", num_joints=68)
    for parameter in source.parameters():
        parameter.data.normal_()
    checkpoint = {(f"head.{key.removeprefix('last_layer.')}" if key.startswith("last_layer")
                   else key): value for key, value in source.state_dict().items()}
    model = create_model("hrnetv2_w18", num_joints=17)
    report = load_backbone_weights(model, checkpoint, source="face.pth")
    assert all(key.startswith("head.") for key in report.ignored)
    assert all(key.startswith("last_layer") for key in report.initialised)
    torch.testing.assert_close(model.stage4[2].fuse_layers[3][0][2][0].weight,
                               source.stage4[2].fuse_layers[3][0][2][0].weight)


def test_v2_matches_published_segmentation_cost():
    # HRNet-Semantic-Segmentation README: HRNetV2-W48 on Cityscapes (19 classes, tested at
    # 1024x2048), 696.2 GFLOPs by the same conv-MAC counter (get_model_summary, / 2^30).
    figure = V2_PUBLISHED[0]
    assert (figure.name, figure.input_hw, figure.num_outputs) == ("hrnetv2_w48", (1024, 2048), 19)
    stats = model_stats("hrnetv2_w48", (1024, 2048), num_joints=19)
    assert round(stats.hrnet_gflops, 1) == figure.gflops == 696.2
    # Printed as 65.8M: the count truncated to 0.1M.
    assert stats.params == 65_859_379 and int(stats.params / 1e5) / 10 == figure.params_m


def test_pyramid_is_a_torchvision_backbone():
    torch.manual_seed(0)
    pyramid = hrnet_pyramid("hrnetv2_w18").eval()
    assert pyramid.out_channels == 256
    with torch.no_grad():
        levels = pyramid(torch.randn(1, 3, 128, 192))
    assert list(levels) == ["0", "1", "2", "3", "pool"]
    assert [tuple(level.shape) for level in levels.values()] == [
        (1, 256, 32 // 2**level, 48 // 2**level) for level in range(5)]
    keys = pyramid.state_dict()
    assert "backbone.conv1.weight" in keys
    assert "backbone.stage4.2.fuse_layers.3.0.0.0.weight" in keys
    assert keys["neck.reduction_conv.0.weight"].shape == (256, 270, 1, 1)
    assert keys["neck.fpn_conv.4.weight"].shape == (256, 256, 3, 3)
    assert not any(key.startswith("last_layer") or ".last_layer" in key for key in keys)
    assert list(hrnet_pyramid("hrnetv2_w18", levels=3)(torch.randn(1, 3, 64, 64))) == [
        "0", "1", "2"]
    assert not any(name.startswith("hrnetv2p") for name in list_models())
    with pytest.raises(ValueError, match="unknown HRNetV2 variant 'hrnet_w32'"):
        hrnet_pyramid("hrnet_w32")
    with pytest.raises(ValueError, match="levels must be 1 to 5"):
        hrnet_pyramid("hrnetv2_w18", levels=6)


def test_pyramid_stats_count_backbone_and_neck():
    stats = pyramid_stats("hrnetv2_w18", (256, 192))
    backbone = count_parameters(create_model("hrnetv2_w18").backbone)
    neck = 270 * 256 + 256 + 5 * (256 * 256 * 9 + 256)
    assert stats.model == "hrnetv2p_w18" and stats.params == backbone + neck
    assert stats.macs > model_stats("hrnetv2_w18", (256, 192)).macs


def test_faster_rcnn_trains_one_step_on_hrnetv2p_w18():
    torch.manual_seed(0)
    # Small images and few proposals keep the step fast; anchors and the RoI pooler are the
    # defaults (five levels, '0'-'3' pooled).
    detector = FasterRCNN(hrnet_pyramid("hrnetv2_w18"), num_classes=3, min_size=64, max_size=96,
                          rpn_pre_nms_top_n_train=200, rpn_post_nms_top_n_train=50,
                          box_batch_size_per_image=32, representation_size=64)
    detector.train()
    images = [torch.rand(3, 60, 90), torch.rand(3, 64, 64)]
    targets = [
        {"boxes": torch.tensor([[5.0, 10.0, 30.0, 50.0], [35.0, 15.0, 85.0, 55.0]]),
         "labels": torch.tensor([1, 2])},
        {"boxes": torch.tensor([[3.0, 3.0, 25.0, 35.0]]), "labels": torch.tensor([2])},
    ]
    optimizer = torch.optim.SGD(detector.parameters(), lr=0.01, momentum=0.9)
    stem = detector.backbone.backbone.conv1.weight.detach().clone()
    neck = detector.backbone.neck.fpn_conv[0].weight.detach().clone()
    losses = detector(images, targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness",
                           "loss_rpn_box_reg"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    optimizer.zero_grad()
    total.backward()
    optimizer.step()
    assert not torch.equal(detector.backbone.backbone.conv1.weight, stem)
    assert not torch.equal(detector.backbone.neck.fpn_conv[0].weight, neck)
