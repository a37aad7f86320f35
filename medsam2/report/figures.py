"""Figures (PNG + PDF): per-case distributions, the ablation, and reported vs ours.

Figures use matplotlib's object API on the Agg backend (no display, no global pyplot
state) so that the report rule runs on headless cluster nodes. Every figure is written
even without data, as a panel that says what is missing: the Snakemake rule declares
the files up front and a missing file would fail the run for a cosmetic reason.
"""

from __future__ import annotations

import contextlib
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path

import matplotlib

from medsam2.report.files import EXTENSIONS

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib import MatplotlibDeprecationWarning  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from medsam2.report.tables import Table  # noqa: E402


def save(fig: Figure, out_base: Path) -> list[Path]:
    """Write ``out_base``.png (150 dpi) and .pdf; return both paths. No creation date in
    the files: two runs on the same numbers give byte-identical figures."""
    out_base.parent.mkdir(parents=True, exist_ok=True)
    paths = [out_base.with_name(f"{out_base.name}.{ext}") for ext in EXTENSIONS]
    for path in paths:
        metadata = {"CreationDate": None} if path.suffix == ".pdf" else {}
        fig.savefig(path, dpi=150, bbox_inches="tight", metadata=metadata)
    return paths


@contextlib.contextmanager
def seeded_numpy(seed: int = 0) -> Iterator[None]:
    """numpy's global random state seeded for the block, then restored: seaborn draws the
    strip plot's jitter from it and takes no seed of its own."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def note_figure(title: str, text: str, out_base: Path) -> list[Path]:
    fig = Figure(figsize=(6, 2.5))
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=10)
    return save(fig, out_base)


def palette(models: list[str]) -> dict[str, tuple]:
    return dict(zip(models, sns.color_palette("tab10", max(len(models), 1)), strict=False))


def per_case_figure(rows: pd.DataFrame, dataset: str, models: list[str],
                    out_base: Path) -> list[Path]:
    """Dice (%) and HD95 (mm) per case, box + points, one box per model (and structure)."""
    data = rows[(rows["dataset"] == dataset) & rows["model"].isin(models)].copy()
    if data.empty:
        return note_figure(f"{dataset}: per-case results", "no metrics for this dataset",
                           out_base)
    models = [m for m in models if m in set(data["model"])]
    labels = list(dict.fromkeys(data["label"]))
    data["dice_pct"] = data["dice"] * 100
    multi = len(labels) > 1
    width = min(22.0, max(7.0, 1.5 + 0.45 * len(labels) * len(models) + (2.0 if multi else 0)))
    fig = Figure(figsize=(width, 7.5), layout="constrained")
    axes = fig.subplots(2, 1)
    colours = palette(models)
    n_cases = data["case"].nunique()
    for ax, col, ylabel in ((axes[0], "dice_pct", "Dice (%)"), (axes[1], "hd95", "HD95 (mm)")):
        d = data[np.isfinite(data[col].astype(float))]
        x, order = ("label", labels) if multi else ("model", models)
        common = dict(data=d, x=x, y=col, hue="model", order=order, hue_order=models,
                      palette=colours, ax=ax)
        if d.empty:
            ax.text(0.5, 0.5, "no finite values", ha="center", transform=ax.transAxes)
        else:
            with warnings.catch_warnings():  # seaborn 0.13 passes matplotlib's deprecated vert=
                warnings.simplefilter("ignore", MatplotlibDeprecationWarning)
                sns.boxplot(**common, showfliers=False, dodge=multi, fill=False, linewidth=1.2,
                            legend=multi)
            with seeded_numpy():
                sns.stripplot(**common, dodge=multi, size=3.5, alpha=0.75, jitter=0.18,
                              edgecolor="black", linewidth=0.4, legend=False)
        ax.set_ylabel(ylabel)
        ax.set_xlabel("structure" if multi else "model")
        ax.grid(axis="y", alpha=0.3)
        if col == "dice_pct":
            ax.set_ylim(-2, 102)
        else:
            ax.set_ylim(bottom=0)
        if multi and ax.get_legend() is not None:
            if ax is axes[0]:
                sns.move_legend(ax, "upper left", bbox_to_anchor=(1.0, 1.0), title="model")
            else:
                ax.get_legend().remove()
    axes[0].set_title(f"{dataset}: Dice per case ({n_cases} cases, one point per case"
                      f"{' and structure' if multi else ''})")
    axes[1].set_title(f"{dataset}: HD95 per case (one-sided empty masks at the penalty)")
    return save(fig, out_base)


def ablation_figure(table: Table, out_base: Path) -> list[Path]:
    """Bars (ours, mean ± std over cases) per ablation step and task; paper as diamonds."""
    ours = next((b for b in table.blocks if b.kind == "ours"), None)
    rep = next((b for b in table.blocks if b.kind == "reported"), None)
    if ours is None and rep is None:
        return note_figure("Memory-bank ablation", "no ablation variants configured and no "
                           "reported ablation task in this config", out_base)
    columns = [c.name for c in table.columns if c.dataset is not None]
    steps = list(dict.fromkeys(
        [r.split(" (")[0] for r in (ours.mean.index if ours is not None else [])]
        + list(rep.mean.index if rep is not None else [])))
    colours = dict(zip(steps, sns.color_palette("crest", len(steps)), strict=True))
    fig = Figure(figsize=(max(6.4, 1.2 + 1.6 * len(columns)), 5.2), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / max(len(steps), 1)
    xs = np.arange(len(columns))
    for i, step in enumerate(steps):
        pos = xs - 0.4 + width * (i + 0.5)
        if ours is not None:
            rows = [r for r in ours.mean.index if r.split(" (")[0] == step]
            for row in rows[:1]:
                ax.bar(pos, ours.mean.loc[row, columns].astype(float) * 100, width,
                       yerr=ours.std.loc[row, columns].astype(float) * 100, capsize=3,
                       color=colours[step], label=row, edgecolor="black", linewidth=0.5)
        if rep is not None and step in rep.mean.index:
            ax.scatter(pos, rep.mean.loc[step, columns].astype(float) * 100, marker="D",
                       color="black", s=28, zorder=3)
    # long task names (a dataset and its structure) wrap instead of overlapping
    ax.set_xticks(xs, [textwrap.fill(c, 16) for c in columns])
    ax.set_xlabel("task")
    ax.set_ylabel("Dice (%)")
    ax.set_ylim(0, 105)
    ax.grid(axis="y", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if rep is not None:
        handles.append(Line2D([], [], marker="D", color="black", linestyle="none"))
        labels.append("reported (paper)")
    # below the axes: a legend beside them squeezed the bars of a small table
    fig.legend(handles, labels, title="memory bank", loc="outside lower center",
               ncol=2, frameon=False)
    ax.set_title("Memory-bank ablation: bars = ours (mean ± std over cases)"
                 + (", diamonds = paper" if rep is not None else ""), fontsize=10)
    return save(fig, out_base)


def scatter_figure(tables: list[Table], out_base: Path) -> list[Path]:
    """Reported vs our Dice for every (table, model, column) present in both."""
    points = []
    for table in tables:
        blocks = {b.kind: b for b in table.blocks}
        if "delta" not in blocks:
            continue
        for ours_row, rep_row in blocks["delta"].pairs.values():
            for col in table.columns:
                if col.dataset is None:
                    continue
                x = float(blocks["reported"].mean.loc[rep_row, col.name])
                y = float(blocks["ours"].mean.loc[ours_row, col.name])
                if np.isfinite(x) and np.isfinite(y):
                    points.append((table.name.split("_")[0].replace("table", "Table "),
                                   ours_row, col.name, x * 100, y * 100))
    if not points:
        return note_figure("Reported vs ours", "no model and task both in this run and in the "
                           "paper (set paper_name / paper_key in the config)", out_base)
    df = pd.DataFrame(points, columns=["table", "model", "column", "reported", "ours"])
    fig = Figure(figsize=(6.5, 6), layout="constrained")
    ax = fig.add_subplot()
    ax.plot([0, 100], [0, 100], "--", color="grey", lw=1, label="y = x (reproduced)")
    sns.scatterplot(data=df, x="reported", y="ours", hue="table", style="model", s=60, ax=ax)
    if len(df) <= 30:
        for r in df.itertuples():
            ax.annotate(r.column, (r.reported, r.ours), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.set_aspect("equal")
    ax.set_xlabel("Reported Dice (%), Zhu et al. 2024")
    ax.set_ylabel("Our Dice (%)")
    ax.set_title("Reported vs ours (points on the diagonal are reproduced)")
    ax.grid(alpha=0.3)
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return save(fig, out_base)
