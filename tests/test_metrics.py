"""medsam2.metrics: equal to medpy on random masks, and the empty-mask conventions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from medpy.metric import binary as medpy_binary
from scipy import ndimage

from medsam2 import metrics

TOL = 1e-9


def random_mask(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """A non-empty mask of one of several kinds, often touching the image border."""
    kind = rng.integers(4)
    if kind == 0:  # salt noise: many tiny objects, many at the border
        mask = rng.random(shape) < rng.uniform(0.02, 0.5)
    elif kind == 1:  # a few balls, centres anywhere (incl. on the border)
        grids = np.ogrid[tuple(slice(0, s) for s in shape)]
        mask = np.zeros(shape, dtype=bool)
        for _ in range(rng.integers(1, 4)):
            c = [rng.integers(0, s) for s in shape]
            r = rng.uniform(0.5, max(1.0, max(shape) / 2))
            mask |= sum((g - ci) ** 2 for g, ci in zip(grids, c, strict=True)) <= r * r
    elif kind == 2:  # a box sharing faces with the image border
        lo = [rng.integers(0, max(1, s // 2)) if rng.random() < 0.5 else 0 for s in shape]
        hi = [
            rng.integers(lo_ + 1, s + 1) if rng.random() < 0.5 else s
            for lo_, s in zip(lo, shape, strict=True)
        ]
        mask = np.zeros(shape, dtype=bool)
        mask[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = True
    else:  # smoothed noise thresholded: blobby organ-like shapes
        field = ndimage.gaussian_filter(rng.standard_normal(shape), rng.uniform(0.8, 2.5))
        mask = field > np.quantile(field, rng.uniform(0.3, 0.9))
    if not mask.any():
        mask[tuple(rng.integers(0, s) for s in shape)] = True
    return mask


def medpy_values(gt, pred, spacing, connectivity) -> dict[str, float]:
    return {
        "hd95": medpy_binary.hd95(pred, gt, voxelspacing=spacing, connectivity=connectivity),
        "hd": medpy_binary.hd(pred, gt, voxelspacing=spacing, connectivity=connectivity),
        "assd": medpy_binary.assd(pred, gt, voxelspacing=spacing, connectivity=connectivity),
        "dice": medpy_binary.dc(pred, gt),
        "iou": medpy_binary.jc(pred, gt),
    }


def test_equals_medpy_on_240_random_pairs(monkeypatch):
    """|ours - medpy| <= 1e-9 for HD95, HD, ASSD, Dice, IoU (2D/3D, anisotropic, conn 1..nd)."""
    rng = np.random.default_rng(20261127)
    worst = dict.fromkeys(("hd95", "hd", "assd", "dice", "iou"), 0.0)
    seen = set()
    for i in range(240):
        ndim = 2 if i % 2 else 3
        shape = tuple(int(s) for s in rng.integers(2, 40 if ndim == 2 else 18, ndim))
        spacing = tuple(rng.uniform(0.2, 4.0, ndim))
        conn = int(rng.integers(1, ndim + 1))
        gt, pred = random_mask(rng, shape), random_mask(rng, shape)
        # every 3rd pair: tiny slabs, so surfaces are extracted across many slab seams
        monkeypatch.setattr(metrics, "SLAB_VOXELS", 7 if i % 3 == 0 else 4_000_000)
        ours = metrics.binary_metrics(gt, pred, spacing, conn)
        ref = medpy_values(gt, pred, spacing, conn)
        for key in worst:
            worst[key] = max(worst[key], abs(ours[key] - ref[key]))
        assert ours["status"] == "ok"
        seen.add((ndim, conn))
    assert seen == {(2, 1), (2, 2), (3, 1), (3, 2), (3, 3)}
    assert max(worst.values()) <= TOL, worst


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    ndim=st.sampled_from([1, 2, 3]),
    border=st.booleans(),
)
def test_equals_medpy_hypothesis(seed, ndim, border):
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in rng.integers(1, 12, ndim))
    gt, pred = random_mask(rng, shape), random_mask(rng, shape)
    if border:  # force both masks onto the first and last voxel of the image
        gt.flat[0] = pred.flat[-1] = True
    spacing = tuple(rng.uniform(0.1, 5.0, ndim))
    conn = int(rng.integers(1, ndim + 1))
    ours = metrics.binary_metrics(gt, pred, spacing, conn)
    ref = medpy_values(gt, pred, spacing, conn)
    for key, value in ref.items():
        assert abs(ours[key] - value) <= TOL, (key, ours[key], value)


def test_surface_voxels_match_scipy_erosion_with_border_outside():
    rng = np.random.default_rng(1)
    for ndim, conn in [(2, 1), (2, 2), (3, 1), (3, 2), (3, 3)]:
        mask = random_mask(rng, (9,) * ndim)
        structure = ndimage.generate_binary_structure(ndim, conn)
        expected = mask ^ ndimage.binary_erosion(mask, structure)
        got = np.zeros_like(mask)
        got[tuple(metrics.surface_voxels(mask, conn).T)] = True
        np.testing.assert_array_equal(got, expected)
    full = np.ones((4, 5), dtype=bool)  # the image border is the surface of a full mask
    assert len(metrics.surface_voxels(full)) == 4 * 5 - 2 * 3


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize(
    ("gt_on", "pred_on", "status", "dice", "hd95"),
    [
        (False, False, "both_empty", 1.0, 0.0),
        (False, True, "empty_gt", 0.0, math.nan),
        (True, False, "empty_pred", 0.0, math.nan),
        (True, True, "ok", 1.0, 0.0),
    ],
)
def test_empty_mask_conventions(ndim, gt_on, pred_on, status, dice, hd95):
    gt, pred = np.zeros((6,) * ndim, bool), np.zeros((6,) * ndim, bool)
    gt[(2,) * ndim] = gt_on
    pred[(2,) * ndim] = pred_on
    r = metrics.binary_metrics(gt, pred, (0.5,) * ndim)
    assert r["status"] == status
    assert r["dice"] == dice and r["iou"] == dice
    assert (math.isnan(r["hd95"]) and math.isnan(hd95)) or r["hd95"] == hd95
    assert r["gt_voxels"] == int(gt_on) and r["pred_voxels"] == int(pred_on)
    assert metrics.dice(gt, pred) == dice
    if math.isnan(hd95):
        assert math.isnan(metrics.hd95(gt, pred)) and math.isnan(metrics.assd(gt, pred))
    else:
        assert metrics.hd95(gt, pred) == metrics.hd(gt, pred) == hd95


def test_single_voxels_distance_in_mm():
    gt, pred = np.zeros((5, 6, 7), bool), np.zeros((5, 6, 7), bool)
    gt[0, 0, 0] = True
    pred[4, 5, 6] = True
    spacing = (0.8, 0.8, 2.5)
    expected = math.sqrt((4 * 0.8) ** 2 + (5 * 0.8) ** 2 + (6 * 2.5) ** 2)
    assert metrics.hd95(gt, pred, spacing) == pytest.approx(expected, abs=1e-12)
    assert metrics.hd95(gt, pred, spacing) == medpy_binary.hd95(pred, gt, spacing)
    assert metrics.dice(gt, pred) == 0.0 and metrics.iou(gt, pred) == 0.0


def test_full_masks():
    full = np.ones((7, 8, 9), bool)
    r = metrics.binary_metrics(full, full, (1.0, 2.0, 3.0))
    assert (r["dice"], r["hd95"], r["status"]) == (1.0, 0.0, "ok")
    half = full.copy()
    half[4:] = False
    ours = metrics.binary_metrics(full, half, (1.0, 2.0, 3.0), connectivity=3)
    assert abs(ours["hd95"] - medpy_binary.hd95(half, full, (1.0, 2.0, 3.0), 3)) <= TOL
    assert ours["dice"] == pytest.approx(2 * half.sum() / (full.sum() + half.sum()))


def test_label_maps_with_missing_labels():
    rng = np.random.default_rng(3)
    gt, pred = np.zeros((12, 14, 10), np.int16), np.zeros((12, 14, 10), np.uint8)
    gt[2:8, 3:9, 1:6] = 1
    gt[9:11, 0:4, 7:10] = 2  # label 2 only in gt
    pred[3:9, 2:9, 1:7] = 1
    pred[0:2, 10:14, 0:3] = 3  # label 3 only in pred
    pred[rng.random(pred.shape) < 0.02] = 1
    labels = {"organ": 1, "lesion": 2, "cyst": 3, "absent": 4}
    out = metrics.label_metrics(gt, pred, labels, spacing=(0.8, 0.8, 2.5))
    assert [out[k]["status"] for k in labels] == ["ok", "empty_pred", "empty_gt", "both_empty"]
    assert out["absent"]["dice"] == 1.0 and out["absent"]["hd95"] == 0.0
    assert out["lesion"]["gt_voxels"] == 2 * 4 * 3 and out["lesion"]["pred_voxels"] == 0
    organ = metrics.binary_metrics(gt == 1, pred == 1, (0.8, 0.8, 2.5))
    assert out["organ"] == organ
    assert abs(organ["hd95"] - medpy_binary.hd95(pred == 1, gt == 1, (0.8, 0.8, 2.5))) <= TOL
    by_value = metrics.label_metrics(gt, pred, [1, 2])
    assert set(by_value) == {"1", "2"}


def test_bad_input_raises_clear_errors():
    a = np.ones((4, 4), bool)
    with pytest.raises(ValueError, match="shape mismatch"):
        metrics.binary_metrics(a, np.ones((4, 5), bool))
    with pytest.raises(ValueError, match="spacing"):
        metrics.hd95(a, a, spacing=(1.0, 0.0))
    with pytest.raises(ValueError, match="spacing"):
        metrics.hd95(a, a, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="connectivity"):
        metrics.hd95(a, a, connectivity=3)
    with pytest.raises(ValueError, match="foreground"):
        metrics.label_metrics(a.astype(int), a.astype(int), {"bg": 0})
    with pytest.raises(ValueError, match="non-empty"):
        metrics.surface_distances(a, np.zeros_like(a))


def test_image_diagonal():
    assert metrics.image_diagonal_mm((3, 4), (1.0, 1.0)) == 5.0
    assert metrics.image_diagonal_mm((10, 10, 4), (0.8, 0.8, 2.5)) == pytest.approx(
        math.sqrt(8**2 + 8**2 + 10**2)
    )
