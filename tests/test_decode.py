"""Flip test and heatmap decoding against the official HRNet outputs (pipeline/*.npz)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pose.data.keypoints import COCO_KEYPOINTS, MPII_KEYPOINTS
from pose.evaluation.decode import (
    decode_heatmaps,
    flip_back,
    flip_test_average,
    gaussian_blur,
    heatmap_maxima,
    heatmap_to_image_coords,
    refine_dark,
)

# The official predictions are float32 image pixels (up to ~1000 px, where a float32 step is
# 6.1e-5), computed through cv2.getAffineTransform on float32 points: agree to 1e-4 px.
FLOAT32_PIXEL_TOLERANCE = 1e-4


@pytest.mark.parametrize(("file_name", "spec"), [("flip_coco.npz", COCO_KEYPOINTS),
                                                 ("flip_mpii.npz", MPII_KEYPOINTS)])
def test_flip_test_matches_official(reference_dir, file_name, spec):
    fixture = np.load(reference_dir / "pipeline" / file_name)
    assert [tuple(pair) for pair in fixture["flip_pairs"].tolist()] == list(spec.flip_pairs)
    output = torch.from_numpy(fixture["output"])
    flipped = torch.from_numpy(fixture["output_on_flipped_input"])

    back = flip_back(flipped, spec.flip_pairs)
    np.testing.assert_array_equal(back.numpy(), fixture["flip_back"])

    unshifted = flip_test_average(output, flipped, spec.flip_pairs, shift_heatmap=False)
    expected_unshifted = (fixture["output"] + fixture["flip_back"]) * 0.5
    np.testing.assert_array_equal(unshifted.numpy(), expected_unshifted)

    average = flip_test_average(output, flipped, spec.flip_pairs)
    np.testing.assert_array_equal(average.numpy(), fixture["flip_test_average"])
    # With a zero unflipped output the average is half the shifted flipped-back map (exact).
    shifted_back = flip_test_average(torch.zeros_like(output), flipped, spec.flip_pairs) * 2
    np.testing.assert_array_equal(shifted_back.numpy(), fixture["flip_back_shifted"])
    # Column 0 keeps its own flipped-back value; column c takes column c-1.
    np.testing.assert_array_equal(fixture["flip_back_shifted"][..., 0],
                                  fixture["flip_back"][..., 0])


def test_flip_back_hand_worked_case():
    heatmaps = torch.arange(2 * 3 * 1 * 4, dtype=torch.float32).reshape(2, 3, 1, 4)
    result = flip_back(heatmaps, [(0, 2)])
    # Channel 0 takes channel 2 mirrored, channel 1 is only mirrored.
    assert result[0, 0, 0].tolist() == [11.0, 10.0, 9.0, 8.0]
    assert result[0, 1, 0].tolist() == [7.0, 6.0, 5.0, 4.0]
    assert result[1, 2, 0].tolist() == [15.0, 14.0, 13.0, 12.0]
    with pytest.raises(ValueError, match="out of range"):
        flip_back(heatmaps, [(0, 3)])


def test_heatmap_maxima_matches_official_including_ties(reference_dir):
    fixture = np.load(reference_dir / "pipeline" / "final_preds.npz")
    heatmaps = fixture["heatmaps"]
    coords, maxvals = heatmap_maxima(torch.from_numpy(heatmaps))
    np.testing.assert_array_equal(coords.numpy(), fixture["max_coords"])
    np.testing.assert_array_equal(maxvals.numpy(), fixture["maxvals"][..., 0])
    # The fixture plants a map with two equal peaks; the first in row-major order wins.
    flat = heatmaps.reshape(*heatmaps.shape[:2], -1)
    peak_counts = (flat == flat.max(axis=2, keepdims=True)).sum(axis=2)
    tie = np.argwhere(peak_counts == 2)
    assert len(tie) > 0
    sample, joint = tie[0]
    first_peak = np.flatnonzero(flat[sample, joint] == flat[sample, joint].max())[0]
    width = heatmaps.shape[3]
    assert coords[sample, joint].tolist() == [first_peak % width, first_peak // width]


def test_heatmap_maxima_non_positive_peaks_give_origin():
    heatmaps = torch.full((1, 2, 5, 6), -1.0)
    heatmaps[0, 0, 3, 4] = -0.5
    heatmaps[0, 1] = 0.0
    heatmaps[0, 1, 2, 2] = 0.0
    coords, maxvals = heatmap_maxima(heatmaps)
    assert coords.tolist() == [[[0.0, 0.0], [0.0, 0.0]]]
    assert maxvals.tolist() == [[-0.5, 0.0]]


@pytest.mark.parametrize(("post_process", "key"), [("quarter_offset", "preds_post_process"),
                                                   ("none", "preds_no_post_process")])
def test_decode_heatmaps_matches_official(reference_dir, post_process, key):
    fixture = np.load(reference_dir / "pipeline" / "final_preds.npz")
    keypoints, maxvals = decode_heatmaps(torch.from_numpy(fixture["heatmaps"]),
                                         torch.from_numpy(fixture["center"]),
                                         torch.from_numpy(fixture["scale"]),
                                         post_process=post_process)
    assert keypoints.dtype == torch.float32
    np.testing.assert_allclose(keypoints.numpy(), fixture[key], rtol=0,
                               atol=FLOAT32_PIXEL_TOLERANCE)
    np.testing.assert_array_equal(maxvals.numpy(), fixture["maxvals"][..., 0])


def test_post_processing_border_rule_hand_worked():
    """Quarter shifts only strictly inside 1 < x < W-1, 1 < y < H-1; equal neighbours: none."""
    width, height = 8, 6
    # (peak x, peak y), neighbours set to 0.5 as (x, y), expected refined (x, y)
    cases = [
        ((1, 3), [(2, 3)], (1.0, 3.0)),  # x = 1 is a border cell: no shift despite the gradient
        ((2, 3), [(3, 3)], (2.25, 3.0)),  # right neighbour higher; y neighbours equal
        ((6, 4), [(5, 4), (6, 5)], (5.75, 4.25)),  # x = W-2 and y = H-2 are still inside
        ((5, 4), [(4, 4), (5, 3)], (4.75, 3.75)),  # left and upper neighbours higher
        ((3, 2), [(2, 2), (4, 2)], (3.0, 2.0)),  # equal neighbours: sign 0
        ((7, 3), [(6, 3)], (7.0, 3.0)),  # x = W-1
        ((3, 5), [(3, 4)], (3.0, 5.0)),  # y = H-1
        ((3, 1), [(3, 2)], (3.0, 1.0)),  # y = 1
    ]
    heatmaps = torch.zeros(1, len(cases), height, width, dtype=torch.float64)
    for joint, ((x, y), neighbours, _) in enumerate(cases):
        heatmaps[0, joint, y, x] = 1.0
        for neighbour_x, neighbour_y in neighbours:
            heatmaps[0, joint, neighbour_y, neighbour_x] = 0.5
    # Identity mapping back to pixels: scale[0] * 200 spans the heatmap width, centre mid-map.
    center = torch.tensor([[width / 2, height / 2]], dtype=torch.float64)
    scale = torch.tensor([[width / 200.0, height / 200.0]], dtype=torch.float64)
    keypoints, _ = decode_heatmaps(heatmaps, center, scale)
    assert [tuple(point) for point in keypoints[0].tolist()] == [case[2] for case in cases]
    unrefined, _ = decode_heatmaps(heatmaps, center, scale, post_process="none")
    assert [tuple(point) for point in unrefined[0].tolist()] == [
        (float(x), float(y)) for (x, y), _, _ in cases
    ]


def _gaussian_maps(centres: list[tuple[float, float]], sigma: float, width: int,
                   height: int) -> torch.Tensor:
    """[1, K, H, W] float64 Gaussians exp(-d^2 / 2 sigma^2) centred at sub-cell (x, y) points."""
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float64),
                            torch.arange(width, dtype=torch.float64), indexing="ij")
    return torch.stack([torch.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2))
                        for x, y in centres])[None]


def test_gaussian_blur_preserves_mass_and_matches_convolved_gaussian():
    """A Gaussian of sigma s blurred with sigma b is a Gaussian of sigma sqrt(s^2 + b^2) and peak
    s^2 / (s^2 + b^2), with the same mass, away from the border. The sampled kernel, truncated at
    3b and renormalised, is slightly sharper than the continuous one: 0.2% of the peak here."""
    maps = _gaussian_maps([(16.0, 12.0)], 1.5, 32, 24)
    blurred = gaussian_blur(maps, 2.0)
    expected = _gaussian_maps([(16.0, 12.0)], 2.5, 32, 24) * (1.5**2 / 2.5**2)
    assert torch.allclose(blurred.sum(), maps.sum(), rtol=1e-4)
    assert torch.allclose(blurred, expected, rtol=0, atol=1e-3)
    with pytest.raises(ValueError, match="sigma must be positive"):
        gaussian_blur(maps, 0.0)


def test_dark_recovers_sub_cell_centres_of_gaussian_heatmaps():
    """On exact Gaussians the modulated log-heatmap is a quadratic with its top at the true centre,
    so DARK recovers it to within the blur's truncation error, where the quarter offset is off by
    up to a quarter cell."""
    generator = torch.Generator().manual_seed(0)
    width, height, sigma = 32, 48, 1.25
    centres = [(4 + 24 * float(u), 4 + 40 * float(v))
               for u, v in torch.rand(17, 2, generator=generator, dtype=torch.float64)]
    maps = _gaussian_maps(centres, sigma, width, height)
    coords, _ = heatmap_maxima(maps)
    refined = refine_dark(maps, coords, sigma)
    truth = torch.tensor(centres, dtype=torch.float64)[None]
    assert (refined - truth).abs().max() < 0.01
    # The quarter offset (official) is much coarser on the same maps.
    center = torch.tensor([[width / 2, height / 2]], dtype=torch.float64)
    scale = torch.tensor([[width / 200.0, height / 200.0]], dtype=torch.float64)
    quarter, _ = decode_heatmaps(maps, center, scale, post_process="quarter_offset")
    assert (quarter - truth).abs().max() > 0.1
    dark, _ = decode_heatmaps(maps, center, scale, post_process="dark", sigma=sigma)
    assert torch.allclose(dark, refined)


def test_dark_keeps_peaks_near_the_border_integer():
    """Peaks within two cells of the border (the reach of the second-derivative stencil) keep
    their integer argmax, as in DARK; maps without a positive value stay finite."""
    width, height = 16, 12
    # x = 1, y = H-2 and x = W-2 are too close; x, y = 2 and x = W-3, y = H-3 are refined.
    centres = [(1.3, 6.0), (7.0, 10.4), (13.6, 5.2), (2.3, 2.4), (12.7, 8.6)]
    maps = _gaussian_maps(centres, 1.0, width, height)
    maps = torch.cat([maps, torch.zeros(1, 1, height, width, dtype=torch.float64)], dim=1)
    coords, _ = heatmap_maxima(maps)
    assert coords[0].tolist() == [[1.0, 6.0], [7.0, 10.0], [14.0, 5.0], [2.0, 2.0], [13.0, 9.0],
                                  [0.0, 0.0]]
    refined = refine_dark(maps, coords, 1.0)
    assert torch.equal(refined[0, [0, 1, 2, 5]], coords[0, [0, 1, 2, 5]])
    truth = torch.tensor(centres[3:], dtype=torch.float64)
    assert (refined[0, 3:5] - truth).abs().max() < 0.02


def test_decode_rejects_unknown_post_process():
    with pytest.raises(ValueError, match="post_process='dak' is not known"):
        decode_heatmaps(torch.zeros(1, 1, 4, 4), torch.zeros(1, 2), torch.ones(1, 2),
                        post_process="dak")


def test_heatmap_to_image_coords_matches_official_transform_preds(reference_dir):
    """All 60 affine cases, including those whose scale aspect differs from the output aspect:
    the official inverse uses scale[0] only (quirk P1), and so do we."""
    fixture = np.load(reference_dir / "pipeline" / "affine.npz")
    mismatched = 0
    for case in range(len(fixture["center"])):
        width, height = fixture["output_size"][case].tolist()
        scale = fixture["scale"][case]
        mismatched += not np.isclose(scale[1] / scale[0], height / width, rtol=1e-3)
        image = heatmap_to_image_coords(torch.from_numpy(fixture["tp_coords"][case][None]),
                                        fixture["center"][case][None], scale[None],
                                        (width, height))
        # float32 points inside cv2.getAffineTransform: within 5e-5 px of the closed form.
        np.testing.assert_allclose(image[0].numpy(), fixture["tp_output"][case], rtol=0,
                                   atol=5e-5)
    assert mismatched > 0


def test_decode_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\[N, K, H, W\]"):
        decode_heatmaps(torch.zeros(2, 4, 4), torch.zeros(2, 2), torch.ones(2, 2))
    with pytest.raises(ValueError, match="center and scale"):
        decode_heatmaps(torch.zeros(2, 3, 4, 4), torch.zeros(3, 2), torch.ones(2, 2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_decode_on_cuda_equals_cpu(reference_dir):
    fixture = np.load(reference_dir / "pipeline" / "final_preds.npz")
    heatmaps = torch.from_numpy(fixture["heatmaps"])
    center, scale = torch.from_numpy(fixture["center"]), torch.from_numpy(fixture["scale"])
    cpu_keypoints, cpu_maxvals = decode_heatmaps(heatmaps, center, scale)
    cuda_keypoints, cuda_maxvals = decode_heatmaps(heatmaps.cuda(), center.cuda(), scale.cuda())
    torch.testing.assert_close(cuda_keypoints.cpu(), cpu_keypoints, rtol=0, atol=0)
    torch.testing.assert_close(cuda_maxvals.cpu(), cpu_maxvals, rtol=0, atol=0)
    pairs = COCO_KEYPOINTS.flip_pairs
    torch.testing.assert_close(flip_test_average(heatmaps.cuda(), heatmaps.flip(3).cuda(),
                                                 pairs).cpu(),
                               flip_test_average(heatmaps, heatmaps.flip(3), pairs))
    # DARK: float64 convolutions and a Newton step; CUDA and CPU kernels may round differently.
    cpu_dark, _ = decode_heatmaps(heatmaps, center, scale, post_process="dark")
    cuda_dark, _ = decode_heatmaps(heatmaps.cuda(), center.cuda(), scale.cuda(),
                                   post_process="dark")
    torch.testing.assert_close(cuda_dark.cpu(), cpu_dark, rtol=0, atol=1e-3)
