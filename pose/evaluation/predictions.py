"""Decoded predictions of a set of person crops: what the model side hands to an evaluator."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


@dataclass
class Predictions:
    """Decoded predictions for N person crops, on the CPU."""

    keypoints: torch.Tensor  # [N, K, 2] image pixels (x, y), 0-based
    maxvals: torch.Tensor  # [N, K] heatmap peak values
    centers: torch.Tensor  # [N, 2] crop centres, image pixels
    scales: torch.Tensor  # [N, 2] crop sizes / 200 px
    box_scores: torch.Tensor  # [N] detector score (1 for ground-truth boxes)
    image_ids: torch.Tensor  # [N]
    indices: torch.Tensor  # [N] dataset index of each crop (to undo a sampler's order)

    def select(self, rows: torch.Tensor) -> Predictions:
        """The predictions of ``rows`` (an index or boolean tensor over the N crops)."""
        return Predictions(**{field.name: getattr(self, field.name)[rows]
                              for field in fields(Predictions)})

    def in_dataset_order(self) -> Predictions:
        """Sorted by dataset index, each index once (the first of repeated ones kept).

        A ``DistributedSampler`` pads the ranks' shares with repeated samples; this undoes both
        its order and the repeats.
        """
        order = torch.argsort(self.indices, stable=True)
        indices = self.indices[order]
        first = torch.ones_like(indices, dtype=torch.bool)
        first[1:] = indices[1:] != indices[:-1]
        return self.select(order[first])
