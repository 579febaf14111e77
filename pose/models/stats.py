"""Model size and cost: parameters, multiply-adds, and the two published "FLOPs" conventions.

The two papers report cost in different units, and neither is 2 x MACs / 10^9:

* HRNet README "GFLOPs": conv and linear multiply-adds (bias ignored) / 2^30, as printed by the
  official ``get_model_summary`` (``../shared/reference/recipes.md`` section 7).
* Lite-HRNet README "FLOPs": the official ``tools/torchstat`` ``Flops`` total / 2^20. torchstat
  records one entry per leaf module (a module called twice keeps its last call) and counts
  conv MACs + conv bias, 2 x BN input elements, ReLU input elements, pooling input elements,
  (H + 1) x (W + 1) per channel of a global adaptive average pool, and nn.Upsample output
  elements *without channels* (its ``out[0].shape[1:]`` reads H x W of the first sample, not
  C x H x W); functional ops, sigmoid, additions and multiplications are not counted.

Shapes are propagated on the meta device, so counting a 35 GMAC model takes no compute.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from pose.models.lite_hrnet import LiteHRModule, SpatialWeighting

HRNET_GFLOPS_UNIT = 2**30  # the official get_model_summary divides by 1024^3
LITE_HRNET_FLOPS_UNIT = 2**20  # the Lite-HRNet README's "M" is 1024^2 torchstat Flops


@dataclass(frozen=True)
class ModelStats:
    """Size and cost of one model at one input size, for a batch of one image.

    params: parameters (weights and biases, not BN running statistics).
    macs: conv and linear multiply-adds of one forward pass, every call counted, bias ignored.
        In eval mode our Lite-HRNet computes the official fuse loop's repeated branch-0 path
        once (quirk L2), so its MACs are the official count with each conv module counted once
        (198.6M for Lite-HRNet-18 at 256x192, where the official code executes 242.3M).
    torchstat_flops: the official Lite-HRNet ``tools/torchstat`` ``Flops`` total.
    """

    model: str
    input_hw: tuple[int, int]  # network input (height, width), px
    num_joints: int
    params: int
    macs: int
    torchstat_flops: int

    @property
    def hrnet_gflops(self) -> float:
        """The HRNet README's "GFLOPs": conv + linear MACs / 2^30."""
        return self.macs / HRNET_GFLOPS_UNIT

    @property
    def lite_hrnet_mflops(self) -> float:
        """The Lite-HRNet README's "FLOPs" in M: torchstat Flops / 2^20."""
        return self.torchstat_flops / LITE_HRNET_FLOPS_UNIT

    def as_dict(self) -> dict[str, object]:
        """The JSON row of ``scripts/model_stats.py --json``."""
        height, width = self.input_hw
        return {
            "model": self.model,
            "input": f"{height}x{width}",
            "num_joints": self.num_joints,
            "params": self.params,
            "macs": self.macs,
            "hrnet_gflops": self.hrnet_gflops,
            "lite_hrnet_mflops": self.lite_hrnet_mflops,
        }


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not; buffers such as BN statistics excluded)."""
    return sum(parameter.numel() for parameter in model.parameters())


def _conv_macs(module: nn.Conv2d, output: Tensor) -> int:
    # weight.numel() = out_c * in_c / groups * kh * kw: the MACs of one output position.
    return module.weight.numel() * output.shape[0] * output.shape[2] * output.shape[3]


def _torchstat_leaf_flops(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> int:
    """torchstat's ``compute_flops`` for one call of a leaf module (0 for unsupported ones)."""
    if isinstance(module, nn.Conv2d):
        flops = _conv_macs(module, output)
        if module.bias is not None:
            flops += output.shape[0] * output.shape[1] * output.shape[2] * output.shape[3]
        return flops
    if isinstance(module, nn.Linear):
        return inputs[0].shape[0] * module.in_features * module.out_features
    if isinstance(module, nn.BatchNorm2d):
        return inputs[0].numel() * (2 if module.affine else 1)
    if isinstance(module, (nn.ReLU, nn.ReLU6, nn.PReLU, nn.ELU, nn.LeakyReLU)):
        return inputs[0].numel()
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        return inputs[0].numel()
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return _adaptive_pool_flops(inputs[0], output)
    if isinstance(module, nn.Upsample):
        # torchstat multiplies the batch size by out[0].shape[1:], i.e. H x W without channels.
        return output.shape[0] * output.shape[2] * output.shape[3]
    return 0


def _adaptive_pool_flops(inputs: Tensor, output: Tensor) -> int:
    # The official torchstat charges (kernel_h + 1) x (kernel_w + 1) per output element of an
    # adaptive average pool. Only the global pool (output 1 x 1, kernel = the input's H x W) is
    # pinned down by the published numbers: the Lite-HRNet totals need N * C * (H + 1) * (W + 1).
    kernel_h = -(-inputs.shape[2] // output.shape[2])
    kernel_w = -(-inputs.shape[3] // output.shape[3])
    return output.numel() * (kernel_h + 1) * (kernel_w + 1)


def _spatial_weighting_flops(module: nn.Module, inputs: tuple[Tensor, ...],
                             output: Tensor) -> dict[nn.Module, int]:
    # The official SpatialWeighting pools with an nn.AdaptiveAvgPool2d(1) module (counted by
    # torchstat); ours takes the mean in the forward pass.
    pooled = inputs[0][:, :, :1, :1]
    return {module: _adaptive_pool_flops(inputs[0], pooled)}


def _lite_module_flops(module: nn.Module, inputs: tuple[Tensor, ...],
                       output: list[Tensor]) -> dict[nn.Module, int]:
    # The official LiteHRModule applies one nn.ReLU module to every fused branch in turn;
    # torchstat keeps the last call, the lowest-resolution branch. Ours uses F.relu.
    terms = {module: output[-1].numel()}
    # Each fuse path from a coarser branch ends in an nn.Upsample, called once per forward in
    # the official loop. Ours may apply it as a broadcast without calling the module, so its
    # count (output H x W per image, torchstat's slip) is entered under the module itself:
    # the same key and value as the leaf hook's, should the module be called.
    for target, paths in enumerate(module.fuse_layers):
        batch, _, height, width = output[target].shape
        for path in paths:
            for layer in path.modules():
                if isinstance(layer, nn.Upsample):
                    terms[layer] = batch * height * width
    return terms


# torchstat terms of official nn.Modules that our models may compute functionally: composite
# module type -> the entries (keyed by module, so each is counted once) from the hook's
# (module, inputs, output).
FUNCTIONAL_TORCHSTAT_TERMS: dict[type[nn.Module], Callable[..., dict[nn.Module, int]]] = {
    SpatialWeighting: _spatial_weighting_flops,
    LiteHRModule: _lite_module_flops,
}


def count_ops(model: nn.Module, input_hw: Sequence[int]) -> tuple[int, int]:
    """(conv + linear MACs, torchstat Flops) of one forward pass of one image.

    model: any module mapping [1, 3, H, W] images to outputs; it is run in eval mode on
    whatever device its parameters are on (the meta device costs no compute).
    input_hw: (height, width), px.

    MACs count every call of every conv and linear layer (bias ignored, as the official HRNet
    ``get_model_summary``); torchstat Flops keep one entry per module, its last call.
    """
    macs = 0
    torchstat: dict[nn.Module, int] = {}

    def leaf_hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        nonlocal macs
        if isinstance(module, nn.Conv2d):
            macs += _conv_macs(module, output)
        elif isinstance(module, nn.Linear):
            macs += output.numel() // output.shape[-1] * module.in_features * module.out_features
        torchstat[module] = _torchstat_leaf_flops(module, inputs, output)

    def functional_hook(module: nn.Module, inputs: tuple[Tensor, ...], output: object) -> None:
        torchstat.update(FUNCTIONAL_TORCHSTAT_TERMS[type(module)](module, inputs, output))

    handles = []
    for module in model.modules():
        if type(module) in FUNCTIONAL_TORCHSTAT_TERMS:
            handles.append(module.register_forward_hook(functional_hook))
        elif not any(True for _ in module.children()):
            handles.append(module.register_forward_hook(leaf_hook))
    was_training = model.training
    device = next(model.parameters()).device
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, *input_hw, device=device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return macs, sum(torchstat.values())


def model_stats(name: str, input_hw: Sequence[int], num_joints: int = 17) -> ModelStats:
    """Parameters, MACs and both papers' FLOPs of model ``name`` (pose.models.list_models()).

    input_hw: network input (height, width), px. The model is built on the meta device.
    """
    from pose.models import create_model

    with torch.device("meta"):
        model = create_model(name, num_joints=num_joints)
    macs, torchstat_flops = count_ops(model, input_hw)
    height, width = input_hw
    return ModelStats(model=name, input_hw=(int(height), int(width)), num_joints=num_joints,
                      params=count_parameters(model), macs=macs,
                      torchstat_flops=torchstat_flops)


def pyramid_stats(name: str, input_hw: Sequence[int], levels: int = 5) -> ModelStats:
    """Parameters and MACs of the HRNetV2p detection backbone ``hrnet_pyramid(name, levels)``
    (HRNetV2 backbone + HRFPN neck; no detector heads), for one image of ``input_hw`` (height,
    width) px. The row is named ``hrnetv2p_w<width>``; ``num_joints`` is 0 (not a pose model)."""
    from pose.models.hrnet_pyramid import hrnet_pyramid

    with torch.device("meta"):
        model = hrnet_pyramid(name, levels=levels)
    macs, torchstat_flops = count_ops(model, input_hw)
    height, width = input_hw
    return ModelStats(model=name.replace("hrnetv2_", "hrnetv2p_"),
                      input_hw=(int(height), int(width)), num_joints=0,
                      params=count_parameters(model), macs=macs, torchstat_flops=torchstat_flops)


def faster_rcnn_parameters(name: str, num_classes: int = 81) -> int:
    """Parameters of torchvision's Faster R-CNN on ``hrnet_pyramid(name)`` with its default RPN
    and RoI heads (the layout of HRNet-Object-Detection's: 3 anchors per location, two 1024-wide
    FC layers on 7x7 RoIs, class-specific boxes), ``num_classes`` including the background."""
    from torchvision.models.detection import FasterRCNN

    from pose.models.hrnet_pyramid import hrnet_pyramid

    with torch.device("meta"):
        detector = FasterRCNN(hrnet_pyramid(name), num_classes=num_classes)
    return count_parameters(detector)


@dataclass(frozen=True)
class PublishedFigure:
    """A published size and cost of an HRNetV2 / V2p model, with where it was printed.

    What the figure counts: ``counts``; our corresponding measurement is made by
    :func:`published_comparison`.
    """

    label: str
    name: str  # our variant (hrnetv2_w18 / w32 / w48)
    input_hw: tuple[int, int]
    num_outputs: int  # segmentation classes, or detection classes incl. background
    params_m: float  # #Params, millions, as printed
    gflops: float  # GFLOPs as printed
    source: str
    counts: str


V2_PUBLISHED = (
    PublishedFigure(
        "HRNetV2-W48 segmentation (Cityscapes)", "hrnetv2_w48", (1024, 2048), 19, 65.8, 696.2,
        "HRNet-Semantic-Segmentation README (master and pytorch-v1.1 branches), Cityscapes table",
        "the whole network (backbone + last_layer, 19 classes); GFLOPs = conv MACs / 2^30 from "
        "its get_model_summary at the 1024x2048 test size"),
    *(PublishedFigure(
        f"Faster R-CNN + HRNetV2p-W{width} (COCO)", f"hrnetv2_w{width}", (800, 1280), 81,
        params_m, gflops, "HRNet-Object-Detection README, Faster R-CNN table",
        "the whole mmdetection detector (backbone, HRFPN, RPN, RoI heads; 81 classes); the "
        "input size of its GFLOPs is not stated")
      for width, params_m, gflops in ((18, 26.2, 159.1), (32, 45.0, 245.3), (48, 79.4, 399.1))),
)


def published_comparison(figure: PublishedFigure) -> tuple[int, float]:
    """Our (parameters, HRNet GFLOPs) for what ``figure`` counts: the pose model with
    ``num_outputs`` heatmaps (= the segmentation network) for a segmentation figure; for a
    detector figure, torchvision's Faster R-CNN parameters and the pyramid backbone's GFLOPs at
    ``input_hw`` (RPN and RoI-head cost depend on the proposals and are not counted)."""
    if figure.label.startswith("Faster R-CNN"):
        return (faster_rcnn_parameters(figure.name, figure.num_outputs),
                pyramid_stats(figure.name, figure.input_hw).hrnet_gflops)
    stats = model_stats(figure.name, figure.input_hw, num_joints=figure.num_outputs)
    return stats.params, stats.hrnet_gflops
