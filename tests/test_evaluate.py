"""medsam2.evaluate on tiny datasets in the real standard layout (files on disk)."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pandas as pd
import pytest
from medpy.metric import binary as medpy_binary

from medsam2.data.layout import (
    Volume,
    affine_from_spacing,
    write_case,
    write_dataset_json,
    write_volume,
)
from medsam2.evaluate import (
    COLUMNS,
    SUMMARY_COLUMNS,
    EvaluationError,
    add_subcommand,
    evaluate_case,
    evaluate_dataset,
    summarise,
)

SPACING = (0.8, 0.8, 2.5)
LABELS = {"organ": 1, "lesion": 2}


def phantom(seed: int, shape=(20, 18, 8)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lab = np.zeros(shape, np.uint8)
    lab[4:15, 3:14, 1:7] = 1
    lab[6 + seed % 3 : 9 + seed % 3, 5:8, 2:5] = 2
    lab[rng.random(shape) < 0.01] = 1
    return lab


@pytest.fixture
def dataset3d(tmp_path):
    """4 test cases + 1 train case; predictions: 2 good, 1 wrong shape, 1 missing."""
    root, preds = tmp_path / "synth3d", tmp_path / "preds"
    affine = affine_from_spacing(SPACING)
    write_dataset_json(root, {"background": 0, **LABELS}, 1, ".nii.gz")
    write_case(
        root,
        "tr0",
        "train",
        Volume(phantom(9).astype(np.float32), affine),
        Volume(phantom(9), affine),
    )
    gts = {}
    for i in range(4):
        gt = phantom(i)
        gts[f"c{i}"] = gt
        write_case(root, f"c{i}", "test", Volume(gt.astype(np.float32), affine), Volume(gt, affine))
    good0 = np.roll(gts["c0"], 1, axis=0)
    good1 = gts["c1"].copy()
    good1[good1 == 2] = 0  # lesion missed: empty_pred
    write_volume(preds / "c0.nii.gz", Volume(good0, affine), is_label=True)
    write_volume(preds / "c1.nii.gz", Volume(good1, affine), is_label=True)
    write_volume(preds / "c2.nii.gz", Volume(gts["c2"][:, :, :5], affine), is_label=True)
    return root, preds, {"c0": (gts["c0"], good0), "c1": (gts["c1"], good1)}


def test_evaluate_dataset_scores_good_cases_and_flags_bad_ones(dataset3d, tmp_path):
    root, preds, good = dataset3d
    out = tmp_path / "metrics" / "synth3d" / "m.csv"
    df = evaluate_dataset(root, preds, "synth3d", "m", out)
    assert list(df.columns) == list(COLUMNS)
    assert len(df) == 4 * len(LABELS)  # the train case is not evaluated
    assert out.is_file()
    back = pd.read_csv(out)
    assert list(back.columns) == list(COLUMNS) and len(back) == len(df)

    status = df.set_index(["case", "label"])["status"]
    assert status["c0", "organ"] == "ok" and status["c0", "lesion"] == "ok"
    assert status["c1", "organ"] == "ok" and status["c1", "lesion"] == "empty_pred"
    assert status["c2", "organ"].startswith("error: prediction shape (20, 18, 5)")
    assert (
        status["c3", "lesion"].startswith("error: ") and "file not found" in status["c3", "lesion"]
    )

    for case, (gt, pred) in good.items():
        for name, value in LABELS.items():
            row = df[(df.case == case) & (df.label == name)].iloc[0]
            assert row.gt_voxels == int((gt == value).sum())
            assert row.pred_voxels == int((pred == value).sum())
            assert row.spacing == "0.8x0.8x2.5"
            assert row.diagonal_mm == pytest.approx(math.hypot(16, 14.4, 20), rel=1e-6)
            if row.status == "ok":
                ref = medpy_binary.hd95(pred == value, gt == value, voxelspacing=row_spacing(row))
                assert abs(row.hd95_mm - ref) <= 1e-9
                assert abs(row.dice - medpy_binary.dc(pred == value, gt == value)) <= 1e-12
    bad = df[df.status.str.startswith("error")]
    assert bad.dice.isna().all() and bad.hd95_mm.isna().all() and bad.pred_voxels.isna().all()
    assert set(bad.case) == {"c2", "c3"}


def row_spacing(row) -> tuple[float, ...]:
    """The file's float32 zooms (the CSV string is rounded for reading)."""
    return tuple(float(np.float32(s)) for s in row.spacing.split("x"))


def test_strict_raises_after_writing_csv(dataset3d, tmp_path):
    root, preds, _ = dataset3d
    out = tmp_path / "strict.csv"
    with pytest.raises(EvaluationError, match=r"2 of 4 cases could not be scored.*c2: error"):
        evaluate_dataset(root, preds, "synth3d", "m", out, strict=True)
    assert len(pd.read_csv(out)) == 8


def test_unreadable_and_misplaced_predictions(dataset3d, tmp_path):
    root, preds, _ = dataset3d
    (preds / "c3.nii.gz").write_bytes(b"not a nifti file")
    shifted = np.diag([0.8, 0.8, 2.5, 1.0])
    shifted[0, 3] = 5.0  # same spacing, moved origin
    write_volume(preds / "c2.nii.gz", Volume(phantom(2), shifted), is_label=True)
    df = evaluate_dataset(root, preds, "synth3d", "m", tmp_path / "x.csv")
    status = df.set_index(["case", "label"])["status"]
    assert "unreadable" in status["c3", "organ"] and "c3.nii.gz" in status["c3", "organ"]
    assert "affine differs" in status["c2", "organ"]


def test_evaluate_case_spacing_mismatch_and_label_conventions():
    gt = Volume(phantom(0), affine_from_spacing(SPACING))
    other = Volume(phantom(0), affine_from_spacing((1.0, 1.0, 2.5)))
    rows = evaluate_case(gt, other, LABELS, case="x")
    assert [r["status"] for r in rows] == [
        "error: prediction spacing 1x1x2.5 != ground truth spacing 0.8x0.8x2.5"
    ] * 2
    empty = Volume(np.zeros_like(gt.array), gt.affine)
    rows = evaluate_case(gt, empty, {**LABELS, "absent": 7}, dataset="d", model="m", case="x")
    assert list(rows[0]) == list(COLUMNS)
    assert [r["status"] for r in rows] == ["empty_pred", "empty_pred", "both_empty"]
    assert [r["dice"] for r in rows[:2]] == [0.0, 0.0]
    assert math.isnan(rows[0]["hd95_mm"])
    # both empty: NaN under the default policy, 1 / 1 / 0 under 'one'
    assert all(math.isnan(rows[2][k]) for k in ("dice", "iou", "hd95_mm"))
    rows = evaluate_case(gt, empty, {"absent": 7}, case="x", both_empty="one")
    assert (rows[0]["status"], rows[0]["dice"], rows[0]["iou"], rows[0]["hd95_mm"]) == (
        "both_empty", 1.0, 1.0, 0.0)


def test_prediction_values_that_are_no_label_are_an_error_not_a_miss():
    """Labels 1/2 written as 100/200 (or a 0/255 mask) would score as two empty
    predictions, Dice 0: a silently wrong number. Every label gets an error row instead."""
    gt = Volume(phantom(0), affine_from_spacing(SPACING))
    scaled = Volume((gt.array.astype(np.int32) * 100).astype(np.uint8), gt.affine)
    rows = evaluate_case(gt, scaled, LABELS, case="x")
    assert all(r["status"].startswith("error: prediction values [100, 200] are no label")
               for r in rows)
    assert all(math.isnan(r["dice"]) for r in rows)


def test_png_dataset(tmp_path):
    root, preds = tmp_path / "synth2d", tmp_path / "p2"
    write_dataset_json(root, {"cell": 1}, 0, ".png")
    lab = np.zeros((32, 40), np.uint8)
    lab[5:20, 8:30] = 1
    write_case(root, "img0", "test", Volume(lab * 100), Volume(lab), file_ending=".png")
    write_volume(preds / "img0.png", Volume(np.roll(lab, 2, axis=1)), is_label=True)
    df = evaluate_dataset(root, preds, "synth2d", "m", tmp_path / "m.csv")
    row = df.iloc[0]
    assert row.status == "ok" and row.spacing == "1x1"
    assert row.hd95_mm == medpy_binary.hd95(np.roll(lab, 2, axis=1), lab)


def test_one_slice_nifti_of_a_2d_dataset_is_scored_in_2d(tmp_path):
    root, preds = tmp_path / "d2", tmp_path / "p"
    write_dataset_json(root, {"cell": 1}, 0, ".nii.gz", is_2d=True)
    lab = np.zeros((30, 30, 1), np.uint8)
    lab[4:20, 6:25] = 1
    pred = np.roll(lab, 3, axis=0)
    affine = affine_from_spacing((0.5, 0.7, 1.0))
    write_case(root, "s0", "test", Volume(lab.astype(np.float32), affine), Volume(lab, affine))
    write_volume(preds / "s0.nii.gz", Volume(pred, affine), is_label=True)
    row = evaluate_dataset(root, preds, "d2", "m", tmp_path / "m.csv").iloc[0]
    assert row.spacing == "0.5x0.7"
    assert abs(row.hd95_mm - medpy_binary.hd95(pred[..., 0], lab[..., 0], (0.5, 0.7))) <= 1e-9


def test_cli_subcommand(dataset3d, tmp_path):
    root, preds, _ = dataset3d
    parser = argparse.ArgumentParser()
    add_subcommand(parser.add_subparsers(dest="command"))
    common = ["evaluate", "--dataset-dir", str(root), "--pred-dir", str(preds), "--model", "m"]
    args = parser.parse_args([*common, "--out", str(tmp_path / "a.csv")])
    assert args.func(args) == 0
    assert pd.read_csv(tmp_path / "a.csv")["dataset"].eq("synth3d").all()
    args = parser.parse_args([*common, "--out", str(tmp_path / "b.csv"), "--strict"])
    assert args.func(args) == 1


def summary_frame() -> pd.DataFrame:
    rows = [
        # case, label, dice, hd95, status, diagonal
        ("a", "organ", 0.9, 2.0, "ok", 100.0),
        ("b", "organ", 0.7, 4.0, "ok", 100.0),
        ("c", "organ", 0.0, math.nan, "empty_pred", 60.0),
        ("d", "organ", math.nan, math.nan, "error: prediction shape (1,) != (2,)", 100.0),
        ("a", "lesion", 1.0, 0.0, "both_empty", 100.0),
        ("b", "lesion", math.nan, math.nan, "error: file not found", 100.0),
    ]
    return pd.DataFrame([
        {"dataset": "d", "model": "m", "case": c, "label": lab, "label_value": 1, "dice": d,
         "iou": d, "hd95_mm": h, "gt_voxels": 1, "pred_voxels": 1, "spacing": "1x1",
         "diagonal_mm": diag, "status": s}
        for c, lab, d, h, s, diag in rows
    ])  # fmt: skip


@pytest.mark.parametrize(
    ("penalty", "organ_hd95", "penalised"),
    [("diagonal", (2 + 4 + 60) / 3, 1), (50, (2 + 4 + 50) / 3, 1), ("50", (2 + 4 + 50) / 3, 1),
     ("nan", 3.0, 0)],
)  # fmt: skip
def test_summarise_penalty_modes(penalty, organ_hd95, penalised):
    summary = summarise(summary_frame(), hd95_penalty=penalty, both_empty="one")
    assert list(summary.columns) == list(SUMMARY_COLUMNS)
    assert list(summary.label) == ["organ", "lesion"]  # order of first appearance
    s = summary.set_index("label")
    organ = s.loc["organ"]
    assert (organ.n, organ.n_error, organ.n_hd95_penalised) == (3, 1, penalised)
    assert organ.dice_mean == pytest.approx((0.9 + 0.7 + 0.0) / 3)
    assert organ.dice_std == pytest.approx(np.std([0.9, 0.7, 0.0], ddof=1))
    assert organ.hd95_mean == pytest.approx(organ_hd95)
    lesion = s.loc["lesion"]
    assert (lesion.n, lesion.n_error, lesion.dice_mean, lesion.hd95_mean) == (1, 1, 1.0, 0.0)
    assert (organ.n_both_empty, lesion.n_both_empty, lesion.n_hd95_penalised) == (0, 1, 0)


def test_summarise_leaves_both_empty_out_by_default_and_counts_it_apart():
    """The 'lesion' of summary_frame: one both-empty row (written under the old policy,
    Dice 1) and one error row. By default it is in no mean, and it is neither an error
    nor a penalised HD95; under 'one' it is Dice 1 and HD95 0 whatever the CSV holds."""
    frame = summary_frame()
    s = summarise(frame).set_index("label")
    lesion = s.loc["lesion"]
    assert (lesion.n, lesion.n_error, lesion.n_both_empty, lesion.n_hd95_penalised) == (
        0, 1, 1, 0)
    assert math.isnan(lesion.dice_mean) and math.isnan(lesion.hd95_mean)
    assert s.loc["organ"].dice_mean == pytest.approx((0.9 + 0.7 + 0.0) / 3)
    # a CSV written under 'exclude' (NaN metrics) summarised under 'one'
    both = frame["status"] == "both_empty"
    frame.loc[both, ["dice", "iou", "hd95_mm"]] = math.nan
    one = summarise(frame, both_empty="one").set_index("label").loc["lesion"]
    assert (one.n, one.n_error, one.n_both_empty, one.n_hd95_penalised) == (1, 1, 1, 0)
    assert (one.dice_mean, one.hd95_mean) == (1.0, 0.0)
    assert summarise(frame, hd95_penalty="diagonal").set_index("label").loc[
        "lesion", "n_hd95_penalised"] == 0
    with pytest.raises(ValueError, match="both_empty must be one of"):
        summarise(frame, both_empty="zero")  # type: ignore[arg-type]


@pytest.fixture
def lesion_free_case(tmp_path):
    """c0: organ and lesion, the prediction halves the lesion; c1: an all-zero lesion in the
    ground truth and none predicted (organ perfect in both)."""
    root, preds = tmp_path / "d", tmp_path / "p"
    affine = affine_from_spacing(SPACING)
    write_dataset_json(root, {"background": 0, **LABELS}, 0, ".nii.gz")
    gt0 = np.zeros((20, 18, 8), np.uint8)
    gt0[2:16, 2:16, 1:7] = 1
    gt0[5:9, 5:9, 2:6] = 2
    gt1 = np.zeros_like(gt0)
    gt1[3:15, 4:14, 1:7] = 1
    pred0 = gt0.copy()
    pred0[5:7, 5:9, 2:6] = 1  # half the lesion predicted as organ
    for cid, gt, pred in (("c0", gt0, pred0), ("c1", gt1, gt1)):
        write_case(root, cid, "test", Volume(gt.astype(np.float32), affine), Volume(gt, affine))
        write_volume(preds / f"{cid}.nii.gz", Volume(pred, affine), is_label=True)
    return root, preds


def test_all_zero_label_is_left_out_of_the_mean_by_default(lesion_free_case, tmp_path):
    root, preds = lesion_free_case
    df = evaluate_dataset(root, preds, "d", "m", tmp_path / "m.csv")
    row = df.set_index(["case", "label"]).loc[("c1", "lesion")]
    assert row.status == "both_empty"
    assert math.isnan(row.dice) and math.isnan(row.iou) and math.isnan(row.hd95_mm)
    on_disk = pd.read_csv(tmp_path / "m.csv").set_index(["case", "label"])
    assert on_disk.loc[("c1", "lesion"), "status"] == "both_empty"
    assert math.isnan(on_disk.loc[("c1", "lesion"), "dice"])
    lesion_c0 = df.set_index(["case", "label"]).loc[("c0", "lesion"), "dice"]
    assert lesion_c0 == pytest.approx(2 * 32 / (64 + 32))
    s = summarise(df).set_index("label")
    assert s.loc["lesion", "dice_mean"] == pytest.approx(lesion_c0)  # not (lesion_c0 + 1) / 2
    assert (s.loc["lesion", "n"], s.loc["lesion", "n_error"], s.loc["lesion", "n_both_empty"]) \
        == (1, 0, 1)
    assert df["dice"].mean() == pytest.approx(s.loc[["organ", "lesion"], "dice_mean"] @ [2, 1] / 3)


def test_all_zero_label_counts_as_one_under_policy_one(lesion_free_case, tmp_path):
    root, preds = lesion_free_case
    df = evaluate_dataset(root, preds, "d", "m", tmp_path / "m.csv", both_empty="one")
    row = df.set_index(["case", "label"]).loc[("c1", "lesion")]
    assert (row.status, row.dice, row.iou, row.hd95_mm) == ("both_empty", 1.0, 1.0, 0.0)
    lesion_c0 = df.set_index(["case", "label"]).loc[("c0", "lesion"), "dice"]
    s = summarise(df, both_empty="one").set_index("label")
    assert s.loc["lesion", "dice_mean"] == pytest.approx((lesion_c0 + 1.0) / 2)
    assert (s.loc["lesion", "n"], s.loc["lesion", "n_error"], s.loc["lesion", "n_both_empty"]) \
        == (2, 0, 1)
    with pytest.raises(ValueError, match="both_empty must be one of"):
        evaluate_dataset(root, preds, "d", "m", tmp_path / "x.csv", both_empty="1")


def test_cli_both_empty_option(lesion_free_case, tmp_path):
    root, preds = lesion_free_case
    parser = argparse.ArgumentParser()
    add_subcommand(parser.add_subparsers(dest="command"))
    common = ["evaluate", "--dataset-dir", str(root), "--pred-dir", str(preds), "--model", "m"]
    for policy, expected in (("exclude", None), ("one", 1.0)):
        out = tmp_path / f"{policy}.csv"
        args = parser.parse_args([*common, "--out", str(out), "--both-empty", policy])
        assert args.func(args) == 0
        dice = pd.read_csv(out).set_index(["case", "label"]).loc[("c1", "lesion"), "dice"]
        assert math.isnan(dice) if expected is None else dice == expected


def test_summarise_rejects_unknown_penalty():
    with pytest.raises(ValueError, match="hd95_penalty"):
        summarise(summary_frame(), hd95_penalty="max")
