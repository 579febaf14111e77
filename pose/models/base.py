"""What every pose model is: a backbone that makes features and a head that makes heatmaps.

Every model :func:`pose.models.create_model` returns is a :class:`PoseModel`:

* ``model.forward_features(images)``: images [N, 3, H, W] -> the backbone's features, a list
  of [N, C_b, H/4/2^b, W/4/2^b] tensors, finest first (b = 0, 1, ...).
* ``model.forward_head(features)``: that list -> heatmaps [N, K, H/4, W/4], so that
  ``model(images) == model.forward_head(model.forward_features(images))`` (timm's naming).
* ``model.backbone`` and ``model.head``: the modules behind the two steps, as views of the
  model's own modules. They are properties, not modules registered again, so the state-dict
  keys stay those of the official checkpoints (HRNet keeps its backbone's modules at the top
  level beside ``final_layer``; Lite-HRNet names them ``backbone`` and ``keypoint_head``).
  Their parameters and buffers partition the model's; ``model.backbone(images)`` gives the
  features, and ``model.head`` takes the finest of them, or the whole list where the class says
  ``head_reads_all_features`` (HRNetV2's head reads every branch).
* ``model.num_joints`` (K) and ``model.heatmap_stride`` (4: input pixels per heatmap cell).

Code outside a model family (loading backbone weights, exporters) uses only this interface.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


def check_positive_ints(name: str, values: Sequence[object], length: int) -> None:
    """Raise ValueError unless ``values`` are ``length`` positive integers (``name`` says which)."""
    if len(values) != length or any(not isinstance(value, int) or value < 1 for value in values):
        raise ValueError(f"{name} must be {length} positive integers, got {tuple(values)}")


def check_input_size(images: Tensor, family: str, multiple: int) -> None:
    """Raise ValueError unless the height and width of ``images`` [N, 3, H, W] are multiples of
    ``multiple`` px (``family`` names the network in the message)."""
    height, width = images.shape[-2:]
    if height % multiple or width % multiple:
        raise ValueError(
            f"{family} input height and width must be multiples of {multiple}, "
            f"got {height}x{width}"
        )


class PoseModel(nn.Module):
    """Base of the pose networks: the interface in the module docstring.

    A family defines ``backbone`` (a registered submodule or a property), ``head`` (a property
    naming its head module) and :meth:`forward_features`; :meth:`forward_head` feeds the finest
    feature to ``head``, or the whole list where ``head_reads_all_features`` (HRNetV2).
    """

    heatmap_stride = 4  # input pixels per heatmap cell
    # Whether ``head`` takes every feature (the list) rather than the finest one.
    head_reads_all_features = False

    # Views of the model's own modules, defined by each family (see the module docstring).
    backbone: nn.Module
    head: nn.Module

    def __init__(self, num_joints: int) -> None:
        super().__init__()
        self.num_joints = num_joints

    def forward_features(self, images: Tensor) -> list[Tensor]:
        """Images [N, 3, H, W] -> features, finest first: [N, C_b, H/4/2^b, W/4/2^b]."""
        raise NotImplementedError

    def forward_head(self, features: list[Tensor]) -> Tensor:
        """Features (as :meth:`forward_features` gives them) -> heatmaps [N, K, H/4, W/4]."""
        return self.head(features if self.head_reads_all_features else features[0])

    def forward(self, images: Tensor) -> Tensor:
        """Normalised images [N, 3, H, W] -> heatmaps [N, K, H/4, W/4]."""
        return self.forward_head(self.forward_features(images))
