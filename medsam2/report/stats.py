"""Per-case values and the statistics beside the tables: bootstrap CIs and Wilcoxon tests.

The unit of every statistic is the *case* (a patient volume or an image): a case's value
is the mean over its labels, so cases with many structures do not count more. HD95 uses
the configured penalty for one-sided empty masks, and a label absent from both masks
follows the configured ``both_empty`` policy (left out, or Dice 1 / HD95 0), both applied
by ``medsam2.evaluate.summarise`` (called per case and label) so that figures, statistics
and tables agree.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

from medsam2.evaluate import BothEmpty, check_both_empty, summarise
from medsam2.metrics import STATUS_BOTH_EMPTY

_SEP = "\x1f"  # joins label and case into one group key for summarise
KEYS = ("dataset", "model", "label")
STATS_COLUMNS = ["dataset", "model", "metric", "n_cases", "mean", "std", "ci_low", "ci_high",
                 "vs_model", "n_pairs", "median_main_minus_model", "wilcoxon_statistic", "p_value"]


def normalise_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """summarise() output with dataset/model/label as columns, whatever its index."""
    if any(name in KEYS for name in (summary.index.names or [])):
        summary = summary.reset_index()
    missing = [k for k in KEYS if k not in summary.columns]
    if missing:
        raise ValueError(f"medsam2.evaluate.summarise returned no columns {missing}")
    return summary


def per_row_values(metrics: pd.DataFrame, hd95_penalty: str | float,
                   both_empty: BothEmpty = "exclude") -> pd.DataFrame:
    """One row per (dataset, model, case, label): dice and penalised hd95 (NaN for errors).

    Under ``both_empty='exclude'`` a label absent from both masks of a case has no row, so
    that a case's mean over labels and the figures' points leave it out as the tables do
    (an error row stays, NaN, as a case that was run); under 'one' it is Dice 1, HD95 0.
    """
    cols = ["dataset", "model", "case", "label", "dice", "hd95"]
    if check_both_empty(both_empty) == "exclude" and not metrics.empty:
        metrics = metrics[metrics["status"].astype(str) != STATUS_BOTH_EMPTY]
    if metrics.empty:
        return pd.DataFrame(columns=cols)
    keyed = metrics.assign(label=metrics["label"].astype(str) + _SEP + metrics["case"].astype(str))
    summ = normalise_summary(summarise(keyed, hd95_penalty, both_empty))
    parts = summ["label"].astype(str).str.split(_SEP, n=1, expand=True)
    return pd.DataFrame({
        "dataset": summ["dataset"].to_numpy(), "model": summ["model"].to_numpy(),
        "case": parts[1].to_numpy(), "label": parts[0].to_numpy(),
        "dice": summ["dice_mean"].astype(float).to_numpy(),
        "hd95": summ["hd95_mean"].astype(float).to_numpy(),
    }, columns=cols)


def per_case_values(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean over labels per (dataset, model, case); NaN only when every label failed. A case
    whose every label was left out as empty in both masks has no row (nothing measured)."""
    if rows.empty:
        return pd.DataFrame(columns=["dataset", "model", "case", "dice", "hd95"])
    return rows.groupby(["dataset", "model", "case"], sort=True)[["dice", "hd95"]].mean() \
        .reset_index()


def bootstrap_ci(values: np.ndarray, seed: int, n_boot: int = 2000,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean; the same seed gives the same interval."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return np.nan, np.nan
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(n_boot, values.size))].mean(axis=1)
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def paired_wilcoxon(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sided Wilcoxon signed-rank test of a vs b; (0, 1) when all pairs are equal."""
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if diff.size == 0:
        return np.nan, np.nan
    if np.allclose(diff, 0):
        return 0.0, 1.0
    res = sps.wilcoxon(a, b, zero_method="wilcox", alternative="two-sided")
    return float(res.statistic), float(res.pvalue)


def stats_table(per_case: pd.DataFrame, main_model: str | None, seed: int,
                n_boot: int = 2000) -> pd.DataFrame:
    """Mean, std, bootstrap CI per (dataset, model, metric); Wilcoxon vs the main model."""
    records = []
    for (dataset, model), group in per_case.groupby(["dataset", "model"], sort=True):
        main = per_case[(per_case["dataset"] == dataset) & (per_case["model"] == main_model)]
        for metric in ("dice", "hd95"):
            vals = group[metric].astype(float).to_numpy()
            vals = vals[np.isfinite(vals)]
            lo, hi = bootstrap_ci(vals, seed, n_boot)
            rec = {"dataset": dataset, "model": model, "metric": metric,
                   "n_cases": int(vals.size),
                   "mean": float(vals.mean()) if vals.size else np.nan,
                   "std": float(vals.std(ddof=1)) if vals.size > 1 else np.nan,
                   "ci_low": lo, "ci_high": hi, "vs_model": "", "n_pairs": 0,
                   "median_main_minus_model": np.nan, "wilcoxon_statistic": np.nan,
                   "p_value": np.nan}
            if model != main_model and not main.empty:
                pair = group.merge(main, on="case", suffixes=("", "_main"))
                a, b = pair[metric].astype(float), pair[f"{metric}_main"].astype(float)
                ok = np.isfinite(a) & np.isfinite(b)
                stat, p = paired_wilcoxon(b[ok].to_numpy(), a[ok].to_numpy())
                diff = (b[ok] - a[ok]).to_numpy()
                rec.update(vs_model=main_model, n_pairs=int(ok.sum()), wilcoxon_statistic=stat,
                           p_value=p,
                           median_main_minus_model=float(np.median(diff)) if diff.size else np.nan)
            records.append(rec)
    out = pd.DataFrame.from_records(records, columns=STATS_COLUMNS)
    numeric = ["mean", "std", "ci_low", "ci_high", "median_main_minus_model", "p_value"]
    out[numeric] = out[numeric].astype(float).round(6)
    return out
