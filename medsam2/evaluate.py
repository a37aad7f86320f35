"""Evaluate stage: score every prediction of a model on a standard dataset's test cases.

Why a stage of its own: any model that writes ``results/predictions/{dataset}/{model}/
{case}{file_ending}`` (same grid and label values as the ground truth) is scored the same
way, by ``medsam2.metrics``. One bad case (missing or unreadable prediction, wrong shape,
spacing or affine) must not hide the others: it gets ``status = "error: <reason>"`` rows
with NaN metrics and the rest are still scored; ``strict=True`` turns such rows into a
failure, after the CSV is written so that the reasons can be read.

Metrics CSV, one row per (case, foreground label), columns in ``COLUMNS`` order. Status:
``ok``, ``both_empty`` (the label is absent from ground truth and prediction),
``empty_gt`` / ``empty_pred`` (Dice 0, IoU 0, HD95 NaN), ``error: <reason>`` (all metrics
NaN).

A ``both_empty`` pair has no overlap to measure, so what it scores is a policy
(``evaluate.both_empty``): ``exclude`` (default, as nnU-Net's evaluation) writes NaN Dice,
IoU and HD95, so that no mean counts it, while the row and its status stay; ``one``
writes Dice 1, IoU 1, HD95 0. A label absent from every case of a dataset would otherwise
add a perfect score per case, lifting a mean that says nothing about segmentation.
``summarise`` applies the policy by status, whatever the CSV holds, so a summary never
mixes the two conventions.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pandas as pd
from tqdm import tqdm

from medsam2.data.layout import LayoutError, StandardDataset, Volume, check_label, read_volume
from medsam2.metrics import STATUS_BOTH_EMPTY, image_diagonal_mm, label_metrics
from medsam2.spec import BothEmpty

COLUMNS = (
    "dataset", "model", "case", "label", "label_value", "dice", "iou", "hd95_mm",
    "gt_voxels", "pred_voxels", "spacing", "diagonal_mm", "status",
)  # fmt: skip
SUMMARY_COLUMNS = (
    "dataset", "model", "label", "n", "n_error", "n_both_empty", "dice_mean", "dice_std",
    "hd95_mean", "hd95_std", "n_hd95_penalised",
)  # fmt: skip
#: How far prediction and ground-truth affines may differ (mm; NIfTI stores float32).
AFFINE_ATOL = 1e-3
UNDEFINED_HD95 = ("empty_gt", "empty_pred")
#: what a label absent from both ground truth and prediction scores (``evaluate.both_empty``)
BOTH_EMPTY_POLICIES: tuple[str, ...] = get_args(BothEmpty)


class EvaluationError(RuntimeError):
    """Strict evaluation found cases that could not be scored (the CSV is still written)."""


def check_both_empty(both_empty: str) -> BothEmpty:
    """The policy name, or a ValueError naming the choices (a typo must not pick one)."""
    if both_empty not in BOTH_EMPTY_POLICIES:
        raise ValueError(f"both_empty must be one of {BOTH_EMPTY_POLICIES}, not {both_empty!r}")
    return both_empty  # type: ignore[return-value]


def format_spacing(spacing: tuple[float, ...]) -> str:
    """'0.8x0.8x2.5': six significant digits, so float32 NIfTI zooms print cleanly."""
    return "x".join(f"{s:.6g}" for s in spacing)


def geometry_problem(gt: Volume, pred: Volume, atol: float = AFFINE_ATOL) -> str | None:
    """Why a prediction is not on the ground truth's grid, or None if it is."""
    if pred.array.shape != gt.array.shape:
        return f"prediction shape {pred.array.shape} != ground truth shape {gt.array.shape}"
    if not np.allclose(pred.spacing, gt.spacing, atol=atol, rtol=0):
        return (
            f"prediction spacing {format_spacing(pred.spacing)} != ground truth spacing "
            f"{format_spacing(gt.spacing)}"
        )
    if not np.allclose(pred.affine, gt.affine, atol=atol, rtol=0):
        diff = float(np.abs(pred.affine - gt.affine).max())
        return f"prediction affine differs from ground truth (max abs difference {diff:.4g})"
    return None


def value_problem(pred: Volume, labels: dict[str, int]) -> str | None:
    """Why a prediction's values are not the dataset's label values, or None."""
    found = np.unique(pred.array)
    unknown = sorted(int(v) for v in found if v != 0 and int(v) not in set(labels.values()))
    if not unknown:
        return None
    return (f"prediction values {unknown[:8]} are no label of the dataset "
            f"(labels {dict(sorted(labels.items(), key=lambda kv: kv[1]))})")


def _error_rows(
    gt: Volume | None, labels: dict[str, int], reason: str, ids: dict[str, str]
) -> list[dict[str, Any]]:
    """NaN-metric rows, one per label, carrying the reason (and the GT's geometry if read)."""
    nan = float("nan")
    status = "error: " + " ".join(str(reason).split())  # one line, CSV-friendly
    spacing = format_spacing(gt.spacing) if gt is not None else ""
    diagonal = image_diagonal_mm(gt.array.shape, gt.spacing) if gt is not None else nan
    rows = []
    for name, value in labels.items():
        n_gt = int(np.count_nonzero(gt.array == value)) if gt is not None else pd.NA
        rows.append(
            {
                **ids,
                "label": name,
                "label_value": int(value),
                "dice": nan,
                "iou": nan,
                "hd95_mm": nan,
                "gt_voxels": n_gt,
                "pred_voxels": pd.NA,
                "spacing": spacing,
                "diagonal_mm": diagonal,
                "status": status,
            }
        )
    return rows


def evaluate_case(
    gt: Volume,
    pred: Volume,
    labels: dict[str, int],
    connectivity: int = 1,
    *,
    dataset: str = "",
    model: str = "",
    case: str = "",
    both_empty: BothEmpty = "exclude",
) -> list[dict[str, Any]]:
    """Metric rows (one per foreground label) for one case, keys in ``COLUMNS`` order.

    A geometry mismatch or a value in the prediction that is no label of the dataset (a
    map written as 0/255, or 100/200 for labels 1/2) does not raise: every label gets an
    ``error: <reason>`` row, so the caller can keep scoring the other cases; scoring such a
    map would count every label as missed. A label absent from both maps is 'both_empty',
    scored by the ``both_empty`` policy (NaN metrics under 'exclude', 1/1/0 under 'one').
    """
    check_both_empty(both_empty)
    ids = {"dataset": dataset, "model": model, "case": case}
    problem = geometry_problem(gt, pred)
    if problem is None:
        problem = value_problem(pred, labels)
    if problem is not None:
        return _error_rows(gt, labels, problem, ids)
    scores = label_metrics(gt.array, pred.array, labels, gt.spacing, connectivity)
    spacing = format_spacing(gt.spacing)
    diagonal = image_diagonal_mm(gt.array.shape, gt.spacing)
    rows = []
    nan = float("nan")
    for name, value in labels.items():
        s = scores[name]
        if s["status"] == STATUS_BOTH_EMPTY and both_empty == "exclude":
            s = {**s, "dice": nan, "iou": nan, "hd95": nan}
        rows.append(
            {
                **ids,
                "label": name,
                "label_value": int(value),
                "dice": s["dice"],
                "iou": s["iou"],
                "hd95_mm": s["hd95"],
                "gt_voxels": s["gt_voxels"],
                "pred_voxels": s["pred_voxels"],
                "spacing": spacing,
                "diagonal_mm": diagonal,
                "status": s["status"],
            }
        )
    return rows


def _read_prediction(path: Path, spacing_2d: tuple[float, float]) -> Volume:
    vol = read_volume(path, spacing_2d)
    check_label(vol.array, path)
    return vol


def _squeeze_2d(vol: Volume) -> Volume:
    """A 2D dataset stored as one-slice NIfTI is scored in 2D (surfaces within the slice)."""
    if vol.array.ndim == 3 and vol.array.shape[-1] == 1:
        return Volume(vol.array[..., 0], vol.affine)
    return vol


def evaluate_dataset(
    dataset_dir: Path | str,
    pred_dir: Path | str,
    dataset: str,
    model: str,
    out_csv: Path | str,
    strict: bool = False,
    split: str = "test",
    connectivity: int = 1,
    both_empty: BothEmpty = "exclude",
) -> pd.DataFrame:
    """Score ``{pred_dir}/{case}{file_ending}`` for every labelled case of ``split``.

    Writes ``out_csv`` (``COLUMNS``) and returns it as a DataFrame. Unscorable cases get
    error rows; with ``strict`` an ``EvaluationError`` is raised after writing the CSV.
    ``both_empty`` is the policy for labels absent from both masks (module docstring).
    """
    check_both_empty(both_empty)
    ds = StandardDataset(dataset_dir)
    pred_dir = Path(pred_dir)
    labels = ds.labels
    if not labels:
        raise LayoutError(f"{ds.root / 'dataset.json'}: no foreground labels to evaluate")
    cases = [c for c in ds.cases(split) if c.label is not None]
    if not cases:
        raise LayoutError(f"{ds.root}: no labelled cases in split '{split}' to evaluate")
    rows: list[dict[str, Any]] = []
    for case in tqdm(cases, desc=f"evaluate {dataset}/{model}", unit="case"):
        ids = {"dataset": dataset, "model": model, "case": case.case_id}
        try:
            gt = ds.read_label(case)
        except LayoutError as exc:
            rows += _error_rows(None, labels, f"ground truth: {exc}", ids)
            continue
        pred_path = pred_dir / f"{case.case_id}{ds.file_ending}"
        try:
            pred = _read_prediction(pred_path, ds.spacing_2d)
        except LayoutError as exc:
            rows += _error_rows(gt, labels, str(exc), ids)
            continue
        if not ds.is_3d:
            gt, pred = _squeeze_2d(gt), _squeeze_2d(pred)
        rows += evaluate_case(gt, pred, labels, connectivity, **ids, both_empty=both_empty)
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    df = df.astype({"gt_voxels": "Int64", "pred_voxels": "Int64"})  # NA for error rows
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out_csv, index=False)
    errors = df[df["status"].str.startswith("error")]
    if strict and len(errors):
        bad = errors.drop_duplicates("case")
        detail = "; ".join(f"{c}: {s}" for c, s in zip(bad["case"], bad["status"], strict=True))
        raise EvaluationError(
            f"{len(bad)} of {len(cases)} cases could not be scored (see {out_csv}): {detail}"
        )
    return df


def _penalty_values(df: pd.DataFrame, hd95_penalty: str | float) -> pd.Series | float:
    if isinstance(hd95_penalty, str):
        key = hd95_penalty.strip().lower()
        if key == "diagonal":
            return df["diagonal_mm"].astype(float)
        if key == "nan":
            return float("nan")
        try:
            return float(key)
        except ValueError:
            raise ValueError(
                f"hd95_penalty must be 'diagonal', 'nan' or a number of mm, not {hd95_penalty!r}"
            ) from None
    return float(hd95_penalty)


def summarise(df: pd.DataFrame, hd95_penalty: str | float = "diagonal",
              both_empty: BothEmpty = "exclude") -> pd.DataFrame:
    """Per (dataset, model, label): n, n_error, n_both_empty, Dice and HD95 mean / sample std.

    Error rows are excluded from the statistics and counted in ``n_error``. Rows whose
    HD95 is undefined because exactly one mask is empty take ``hd95_penalty`` in the HD95
    statistics: 'diagonal' = that row's image diagonal in mm, a number = that many mm,
    'nan' = left out; ``n_hd95_penalised`` counts the rows that got a penalty. Rows with
    status 'both_empty' are counted in ``n_both_empty`` and, by ``both_empty``, left out
    ('exclude') or scored Dice 1 and HD95 0 ('one'), decided by the status rather than the
    CSV's numbers so that a CSV written under the other policy gives the same summary.
    ``n`` is the number of rows in the means.
    """
    check_both_empty(both_empty)
    status = df["status"].astype(str)
    is_error = status.str.startswith("error")
    is_both = status.eq(STATUS_BOTH_EMPTY)
    in_means = ~is_error & ~is_both if both_empty == "exclude" else ~is_error
    scored = df[in_means].copy()
    undefined = scored["status"].isin(UNDEFINED_HD95) & scored["hd95_mm"].isna()
    penalty = _penalty_values(scored, hd95_penalty)
    fill = penalty[undefined] if isinstance(penalty, pd.Series) else penalty
    scored["dice"] = scored["dice"].astype(float)
    scored["_hd95"] = scored["hd95_mm"].astype(float)
    scored.loc[undefined, "_hd95"] = fill
    if both_empty == "one":
        one = scored["status"].eq(STATUS_BOTH_EMPTY)
        scored.loc[one, "dice"] = 1.0
        scored.loc[one, "_hd95"] = 0.0
    scored["_penalised"] = undefined & scored["_hd95"].notna()
    keys = ["dataset", "model", "label"]
    stats = scored.groupby(keys, sort=False).agg(
        n=("status", "size"),
        dice_mean=("dice", "mean"),
        dice_std=("dice", "std"),
        hd95_mean=("_hd95", "mean"),
        hd95_std=("_hd95", "std"),
        n_hd95_penalised=("_penalised", "sum"),
    )
    n_error = df[is_error].groupby(keys, sort=False).size().rename("n_error")
    n_both = df[is_both].groupby(keys, sort=False).size().rename("n_both_empty")
    groups = df[keys].drop_duplicates().set_index(keys).index
    out = stats.reindex(groups).join(n_error).join(n_both).reset_index()
    for col in ("n", "n_error", "n_both_empty", "n_hd95_penalised"):
        out[col] = out[col].fillna(0).astype(int)
    return out[list(SUMMARY_COLUMNS)]


# ---------------------------------------------------------------- CLI (thin)
def _run(args: argparse.Namespace) -> int:
    try:
        df = evaluate_dataset(
            args.dataset_dir, args.pred_dir, args.dataset or Path(args.dataset_dir).name,
            args.model, args.out, strict=args.strict, split=args.split,
            connectivity=args.connectivity, both_empty=args.both_empty,
        )  # fmt: skip
    except (EvaluationError, LayoutError) as exc:
        print(f"medsam2 evaluate: {exc}", file=sys.stderr)
        return 1
    n_err = int(df["status"].str.startswith("error").sum())
    print(f"wrote {args.out}: {len(df)} rows, {n_err} error rows")
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="Dice/IoU/HD95 of a model's predictions on a standard dataset",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("--dataset-dir", required=True, type=Path, help="standard dataset folder")
    p.add_argument("--pred-dir", required=True, type=Path, help="folder of {case}{ending}")
    p.add_argument("--dataset", default=None, help="dataset name (default: folder name)")
    p.add_argument("--model", required=True, help="model name written to the CSV")
    p.add_argument("--out", required=True, type=Path, help="metrics CSV to write")
    p.add_argument("--strict", action="store_true", help="fail if any case cannot be scored")
    p.add_argument("--split", default="test", choices=("train", "test"))
    p.add_argument("--connectivity", type=int, default=1, help="surface connectivity (1..ndim)")
    p.add_argument("--both-empty", default="exclude", choices=BOTH_EMPTY_POLICIES,
                   help="a label absent from both ground truth and prediction: exclude "
                        "(NaN metrics, in no mean) or one (Dice 1, IoU 1, HD95 0)")
    p.set_defaults(func=_run)
