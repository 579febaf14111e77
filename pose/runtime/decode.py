"""Heatmap decoding and the flip test in numpy, equal to ``pose.evaluation.decode``.

The runtime cannot import ``pose.evaluation`` (torch), so the official steps are here again:
``tests/test_runtime.py`` checks them against the torch functions. Heatmaps are [N, K, H, W];
coordinates are 0-based heatmap cells (x, y).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

QUARTER_OFFSET = 0.25  # cells towards the higher neighbour (quirk P4)


def flip_test_average(heatmaps: np.ndarray, heatmaps_on_flipped: np.ndarray,
                      flip_pairs: Sequence[Sequence[int]], shift_heatmap: bool) -> np.ndarray:
    """The mean of ``heatmaps`` and ``heatmaps_on_flipped`` (the network's output for the
    mirrored input) mirrored back along W with the left/right channels swapped and, with
    ``shift_heatmap``, moved one column right (column 0 keeps its value): quirk P5."""
    permutation = list(range(heatmaps.shape[1]))
    for left, right in flip_pairs:
        permutation[left], permutation[right] = right, left
    flipped_back = heatmaps_on_flipped[:, permutation, :, ::-1]
    if shift_heatmap:
        flipped_back = np.concatenate([flipped_back[..., :1], flipped_back[..., :-1]], axis=3)
    return (heatmaps + flipped_back) * np.asarray(0.5, dtype=heatmaps.dtype)


def decode_heatmap_cells(heatmaps: np.ndarray, refinement: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-joint argmax (the first maximum in row-major order; joints whose maximum is <= 0 get
    (0, 0)), then with ``refinement="quarter_offset"`` a quarter cell towards the higher
    neighbour where ``1 < x < W-1`` and ``1 < y < H-1`` (the official ``get_final_preds``).

    Returns ``coords`` [N, K, 2] heatmap cells in the heatmaps' dtype and ``maxvals`` [N, K].
    """
    if refinement not in ("quarter_offset", "none"):
        raise ValueError(f"decoding {refinement!r} is not one the runtime knows: quarter_offset "
                         "or none")
    batch_size, num_joints, height, width = heatmaps.shape
    flat = heatmaps.reshape(batch_size, num_joints, height * width)
    flat_index = flat.argmax(axis=2)
    maxvals = np.take_along_axis(flat, flat_index[..., None], axis=2)[..., 0]
    peak_x, peak_y = flat_index % width, flat_index // width
    positive = maxvals > 0
    peak_x, peak_y = peak_x * positive, peak_y * positive
    coords = np.stack([peak_x, peak_y], axis=2).astype(heatmaps.dtype)
    if refinement == "none":
        return coords, maxvals
    inside = (peak_x > 1) & (peak_x < width - 1) & (peak_y > 1) & (peak_y < height - 1)
    x = np.clip(peak_x, 1, max(width - 2, 1))
    y = np.clip(peak_y, 1, max(height - 2, 1))

    def value_at(ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        index = np.clip(ys, 0, height - 1) * width + np.clip(xs, 0, width - 1)
        return np.take_along_axis(flat, index[..., None], axis=2)[..., 0]

    diff_x = value_at(y, x + 1) - value_at(y, x - 1)
    diff_y = value_at(y + 1, x) - value_at(y - 1, x)
    offset = np.stack([np.sign(diff_x), np.sign(diff_y)], axis=2) * QUARTER_OFFSET
    return coords + (offset * inside[..., None]).astype(heatmaps.dtype), maxvals
