"""`medsam2 report`: metrics CSVs + the resolved config -> tables, statistics, figures.

Inputs are the metrics contract (``{metrics_dir}/{dataset}/{model}.csv`` for every model
and the datasets it is configured for) and the resolved config the workflow wrote. A
configured pair without a metrics file is reported as "–" rather than failing, so a
partial run (a baseline that is still training on the cluster) still gives a report.
Outputs are listed by ``report_files`` (the Snakemake rule declares the same names).
The paper's numbers are ``reported_dice.csv`` in this package (source: README.md here).
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
from pathlib import Path

import numpy as np
import pandas as pd

from medsam2.data.layout import LayoutError, StandardDataset
from medsam2.evaluate import BothEmpty, summarise
from medsam2.fileio import read_csv, read_json, read_yaml
from medsam2.provenance import code_version
from medsam2.report import figures, overlays, render, stats
from medsam2.report.files import figures_left_out, report_files
from medsam2.report.tables import (
    MISSING,
    POOLED,
    Context,
    Table,
    build_table1,
    build_table2,
    build_table3,
    footnotes,
    load_reported,
    models_on,
)
from medsam2.spec import Config

METRIC_COLUMNS = ("dataset", "model", "case", "label", "label_value", "dice", "iou", "hd95_mm",
                  "gt_voxels", "pred_voxels", "spacing", "diagonal_mm", "status")
SUMMARY_UNITS = ("Dice as a fraction, HD95 in mm: mean ± std over cases (label 'all': over "
                 "cases and labels); n = case-label pairs in the means.")


def load_config(path: Path | str) -> Config:
    """The resolved config (JSON or YAML), parsed and checked as the workflow did."""
    path = Path(path)
    read = read_json if path.suffix == ".json" else read_yaml
    return Config.from_dict(read(path, "resolved config"), str(path))


def main_model(config: Config) -> str | None:
    """report.main_model, else the first model named MedSAM-2 in the paper, else the first."""
    if config.report.main_model:
        return config.report.main_model
    named = [m for m, c in config.models.items() if c.paper_name == "MedSAM-2"]
    return (named or list(config.models) or [None])[0]


def load_metrics(metrics_dir: Path, config: Config, datasets: list[str] | None = None
                 ) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """The configured metrics CSVs (of ``datasets``, default all) concatenated, and the
    pairs that have no file."""
    frames, missing = [], []
    for dataset, model in config.model_dataset_pairs():
        if datasets is not None and dataset not in datasets:
            continue
        path = metrics_dir / dataset / f"{model}.csv"
        if not path.is_file():
            missing.append((dataset, model))
            continue
        df = read_csv(path, "metrics CSV", columns=METRIC_COLUMNS,
                      dtype={"case": str, "label": str})
        frames.append(df.assign(dataset=dataset, model=model))
    metrics = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=list(METRIC_COLUMNS))
    return metrics, missing


def dataset_labels(config: Config, metrics: pd.DataFrame, datasets_dir: Path | None,
                   reported: pd.DataFrame) -> dict[str, list[str]]:
    """Label names per dataset in label-value order: metrics, dataset.json, paper names."""
    out = {}
    for name, cfg in config.datasets.items():
        values: dict[str, float] = {}
        d = metrics[metrics["dataset"] == name]
        for label, value in zip(d["label"], d["label_value"], strict=True):
            values.setdefault(str(label), float(value))
        if datasets_dir is not None:
            try:
                standard = StandardDataset(datasets_dir / config.data_name(name))
                for label, value in standard.labels.items():
                    values.setdefault(label, float(value))
            except LayoutError:
                pass
        smap = dict(cfg.paper_structures)
        if not values and cfg.paper_key:
            inverse = {v: k for k, v in smap.items()}
            rep = reported[reported["dataset"] == cfg.paper_key]
            structures = [s for s in dict.fromkeys(rep["structure"]) if s not in ("mean",
                                                                                  "target")]
            smap = {inverse.get(s, s): s for s in structures}
        for i, label in enumerate(smap):
            values.setdefault(label, 1e6 + i)
        out[name] = sorted(values, key=lambda k: values[k])
    return out


def provenance(config: Config) -> dict[str, str]:
    """Git commit of the medsam2 code ("unknown" outside git) and the config hash."""
    commit = code_version()
    canonical = json.dumps(config.to_dict(), sort_keys=True, separators=(",", ":"))
    return {"commit": commit, "config_hash": hashlib.sha256(canonical.encode()).hexdigest()[:12]}


def summary_cells(metrics: pd.DataFrame, penalty: str | float,
                  both_empty: BothEmpty = "exclude") -> pd.DataFrame:
    """summarise() per label plus POOLED rows per (dataset, model), indexed by the keys."""
    cols = ["n", "n_error", "n_both_empty", "n_hd95_penalised", "dice_mean", "dice_std",
            "hd95_mean", "hd95_std"]
    if metrics.empty:
        idx = pd.MultiIndex.from_tuples([], names=list(stats.KEYS))
        return pd.DataFrame(columns=cols, index=idx, dtype=float)
    per_label = stats.normalise_summary(summarise(metrics, penalty, both_empty))
    pooled = stats.normalise_summary(summarise(metrics.assign(label=POOLED), penalty,
                                               both_empty))
    both = pd.concat([per_label, pooled], ignore_index=True)
    both["label"] = both["label"].astype(str)
    return both.set_index(list(stats.KEYS))[cols]


def summary_frame(ctx: Context) -> pd.DataFrame:
    """The spine's main table: dataset x model x label (+ 'all' for multi-label datasets)."""
    records = []
    order = {d: i for i, d in enumerate(ctx.datasets)}
    pairs = ctx.config.model_dataset_pairs()
    for dataset, model in sorted(pairs, key=lambda p: order.get(p[0], 0)):
        labels = ctx.labels.get(dataset, [])
        keys = labels + ([POOLED] if len(labels) > 1 else [])
        if (dataset, model, POOLED) not in ctx.cells.index:
            records.append({"dataset": dataset, "model": model, "label": MISSING})
            continue
        for label in keys:
            if (dataset, model, label) not in ctx.cells.index:
                continue
            row = ctx.cells.loc[(dataset, model, label)]
            records.append({"dataset": dataset, "model": model,
                            "label": "all" if label == POOLED else label,
                            **{k: row[k] for k in ctx.cells.columns}})
    df = pd.DataFrame.from_records(records, columns=["dataset", "model", "label",
                                                     *ctx.cells.columns])
    for col in ctx.cells.columns:
        df[col] = [MISSING if pd.isna(v) else (int(v) if col.startswith("n") else round(v, 6))
                   for v in df[col]]
    return df


def summary_markdown(df: pd.DataFrame, notes: list[str]) -> str:
    def pm(mean: object, std: object, digits: int) -> str:
        if mean == MISSING:
            return MISSING
        return f"{mean:.{digits}f}" + ("" if std == MISSING else f" ± {std:.{digits}f}")

    lines = ["### Summary: Dice and HD95 per dataset and model", "",
             "| Dataset | Model | Label | n | Dice | HD95 (mm) |", "|---|---|---|---:|---:|---:|"]
    for r in df.itertuples():
        lines.append(f"| {r.dataset} | {r.model} | {r.label} | {r.n} | "
                     f"{pm(r.dice_mean, r.dice_std, 3)} | {pm(r.hd95_mean, r.hd95_std, 2)} |")
    lines += ["", "Notes:", ""] + [f"{i}. {n}" for i, n in enumerate(notes, 1)]
    return "\n".join(lines) + "\n"


def prepare(metrics_dir: Path | str, config_path: Path | str,
            datasets_dir: Path | None = None,
            reported_path: Path | str | None = None) -> tuple[Context, pd.DataFrame]:
    """Load config, metrics and paper numbers into the tables' Context (and the raw rows)."""
    config = load_config(config_path)
    reported = load_reported(reported_path)
    metrics, missing = load_metrics(Path(metrics_dir), config)
    penalty = config.evaluate.hd95_penalty
    n_cases = {d: int(metrics.loc[metrics["dataset"] == d, "case"].nunique())
               for d in config.datasets}
    labels = dataset_labels(config, metrics, datasets_dir, reported)
    cells = summary_cells(metrics, penalty, config.evaluate.both_empty)
    ctx = Context(config, cells, labels, n_cases, reported, provenance(config), missing)
    return ctx, metrics


def build_tables(ctx: Context) -> list[Table]:
    """Tables 1-3 analogues, each as a Dice table and an HD95 companion."""
    return build_table1(ctx) + build_table2(ctx) + build_table3(ctx)


def dataset_figures(config: Config, rows: pd.DataFrame, dataset: str, fig_dir: Path,
                    datasets_dir: Path | None, predictions_dir: Path | None) -> list[Path]:
    """One dataset's figures (``dataset_figure_files``) from its per-row values: the Dice
    and HD95 boxes per case, and overlays of the main model's best, median and worst case."""
    models = models_on(config, [dataset])
    written = figures.per_case_figure(rows, dataset, models, fig_dir / f"{dataset}_per_case")
    base = fig_dir / f"{dataset}_overlays"
    main = main_model(config)
    if datasets_dir is None or predictions_dir is None or main is None:
        return written + figures.note_figure(f"{dataset}: overlays", "no --datasets-dir / "
                                             "--predictions-dir given", base)
    return written + overlays.overlay_figure(datasets_dir / config.data_name(dataset),
                                             predictions_dir, dataset, models, main,
                                             stats.per_case_values(rows), base)


def build_dataset_figures(metrics_dir: Path | str, config_path: Path | str, dataset: str,
                          out_dir: Path | str, datasets_dir: Path | str | None = None,
                          predictions_dir: Path | str | None = None) -> list[Path]:
    """One dataset's figures from its own metrics files only: in the workflow a job per
    dataset, which starts as soon as that dataset is evaluated and runs beside the others,
    so the report itself waits for its tables only (overlays read every model's
    predictions of three cases: minutes for a large 3D dataset)."""
    config = load_config(config_path)
    if dataset not in config.datasets:
        raise ValueError(f"{config_path}: no dataset {dataset!r} in the config "
                         f"(datasets: {', '.join(config.datasets)})")
    metrics, _ = load_metrics(Path(metrics_dir), config, [dataset])
    rows = stats.per_row_values(metrics, config.evaluate.hd95_penalty,
                                config.evaluate.both_empty)
    return dataset_figures(config, rows, dataset, Path(out_dir) / "figures",
                           Path(datasets_dir) if datasets_dir else None,
                           Path(predictions_dir) if predictions_dir else None)


def build_report(metrics_dir: Path | str, config_path: Path | str, out_dir: Path | str,
                 datasets_dir: Path | str | None = None,
                 predictions_dir: Path | str | None = None,
                 reported_path: Path | str | None = None, n_boot: int = 2000,
                 with_dataset_figures: bool = True) -> list[Path]:
    """Write every file of ``report_files`` under ``out_dir``; return their paths. Without
    ``with_dataset_figures`` the per-dataset figures are left to ``build_dataset_figures``
    (the workflow's jobs per dataset); report.md lists them either way."""
    out_dir = Path(out_dir)
    datasets_dir = Path(datasets_dir) if datasets_dir else None
    predictions_dir = Path(predictions_dir) if predictions_dir else None
    ctx, metrics = prepare(metrics_dir, config_path, datasets_dir, reported_path)
    config = ctx.config
    penalty = config.evaluate.hd95_penalty
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    tables = build_tables(ctx)
    for table in tables:
        written += render.write_table(table, out_dir)
    summary = summary_frame(ctx)
    notes = footnotes(ctx, list(config.datasets), SUMMARY_UNITS, None)[:-1]
    notes.append(f"{MISSING} = not run (no metrics file for that dataset and model).")
    summary.to_csv(out_dir / "summary.csv", index=False)
    (out_dir / "summary.md").write_text(summary_markdown(summary, notes), encoding="utf-8")
    (out_dir / "summary.html").write_text(
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Summary</title></head><body>"
        + summary.to_html(index=False, border=0) + "<ol>"
        + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ol></body></html>\n",
        encoding="utf-8")
    written += [out_dir / n for n in ("summary.csv", "summary.md", "summary.html")]

    rows = stats.per_row_values(metrics, penalty, config.evaluate.both_empty)
    per_case = stats.per_case_values(rows)
    main = main_model(config)
    stats.stats_table(per_case, main, config.seed, n_boot).to_csv(
        out_dir / "stats.csv", index=False)
    written.append(out_dir / "stats.csv")

    fig_dir = out_dir / "figures"
    for dataset in config.datasets if with_dataset_figures else ():
        written += dataset_figures(config, rows[rows["dataset"] == dataset], dataset, fig_dir,
                                   datasets_dir, predictions_dir)
    by_name = {t.name: t for t in tables}
    left_out = figures_left_out(config)
    if "ablation" not in left_out:
        written += figures.ablation_figure(by_name["table3_dice"], fig_dir / "ablation")
    if "reported_vs_ours" not in left_out:
        written += figures.scatter_figure([t for t in tables if t.metric == "dice"],
                                          fig_dir / "reported_vs_ours")
    parts = [summary_markdown(summary, notes)]
    parts += [(out_dir / f"{t.name}.md").read_text(encoding="utf-8") for t in tables]
    parts.append("### Figures\n\n" + "\n".join(
        [f"- [{Path(n).name}]({n})" for n in report_files(config) if n.endswith(".png")]
        + [f"- {stem}: not drawn, {why}." for stem, why in left_out.items()]))
    (out_dir / "report.md").write_text("\n".join(parts) + "\n", encoding="utf-8")
    written.append(out_dir / "report.md")
    return written


# ----------------------------------------------------------------------------- CLI
def _run(args: argparse.Namespace) -> int:
    if args.figures_of:
        paths = build_dataset_figures(args.metrics_dir, args.config, args.figures_of,
                                      args.out_dir, args.datasets_dir, args.predictions_dir)
        print(f"medsam2 report: wrote {len(paths)} figures of {args.figures_of} under "
              f"{args.out_dir}")
        return 0 if all(p.is_file() for p in paths) else 1
    paths = build_report(args.metrics_dir, args.config, args.out_dir, args.datasets_dir,
                         args.predictions_dir, args.reported, args.n_boot,
                         with_dataset_figures=not args.without_dataset_figures)
    print(f"medsam2 report: wrote {len(paths)} files under {args.out_dir}")
    summary = pd.read_csv(Path(args.out_dir) / "summary.csv", dtype=str)
    print(summary.to_string(index=False))
    return 0 if np.all([p.is_file() for p in paths]) else 1


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("report", help="tables, statistics and figures from the metrics",
                              description=__doc__.splitlines()[0])
    p.add_argument("--metrics-dir", type=Path, required=True,
                   help="folder with {dataset}/{model}.csv metrics files")
    p.add_argument("--config", type=Path, required=True,
                   help="the resolved config (JSON or YAML) the workflow wrote")
    p.add_argument("--out-dir", type=Path, required=True, help="where the report goes")
    p.add_argument("--datasets-dir", type=Path, default=None,
                   help="standard datasets (for overlays and label names)")
    p.add_argument("--predictions-dir", type=Path, default=None,
                   help="predictions {dataset}/{model}/{case}{ending} (for overlays)")
    p.add_argument("--reported", type=Path, default=None,
                   help="reported-numbers CSV (default: the paper's, shipped in the package)")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples for the CIs")
    figs = p.add_mutually_exclusive_group()
    figs.add_argument("--figures-of", metavar="DATASET", default=None,
                      help="draw only this dataset's figures (per-case boxes, overlays) from "
                           "its metrics files: the workflow's job per dataset")
    figs.add_argument("--without-dataset-figures", action="store_true",
                      help="leave the per-dataset figures to --figures-of jobs (report.md "
                           "still lists them)")
    p.set_defaults(func=_run)
