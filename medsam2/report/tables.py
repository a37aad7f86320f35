"""The analogues of the paper's Tables 1-3, with the reported numbers beside ours.

A table is a list of *blocks* over shared columns: "ours" (this run, mean ± std over
cases), "reported" (the paper, from ``reported_dice.csv``) and "delta" (ours - reported,
for our models whose ``paper_name`` is in the paper). Stacked blocks keep Table 1 (13
columns) readable where "reported | ours | delta" side by side would need 39. A missing
run or number is NaN in the data and "–" on the page, never 0. This module only builds
and renders; numbers come from ``Context.cell`` (means from ``medsam2.evaluate.summarise``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from medsam2 import protocols
from medsam2.fileio import read_csv
from medsam2.report.files import is_ablation
from medsam2.spec import Config, DatasetSpec, ModelSpec, ReportSpec, TrackerSpec

MISSING = "–"
POOLED = "__all__"  # label key of the summary rows pooled over all labels of a dataset
PAPER = "Zhu et al. 2024 (arXiv:2408.00874)"
REPORTED_COLUMNS = ("table", "model", "dataset", "structure", "dice")
DICE_UNITS = "Dice in % (mean ± std over cases; the mean column averages the other columns)."
HD95_UNITS = "HD95 in mm (mean ± std over cases); the paper reports no HD95."
ABLATION_STEPS = {  # paper_name -> row label, in the paper's (cumulative) order
    "MedSAM-2[none]": "none",
    "MedSAM-2[+confidence_threshold]": "+confidence",
    "MedSAM-2[+dissimilarity_selection]": "+dissimilarity",
    "MedSAM-2[+resampling]": "+resampling",
}


def load_reported(path: Path | str | None = None) -> pd.DataFrame:
    """The paper's Dice numbers (long format); a bad file fails naming it."""
    source = path or resources.files("medsam2.report") / "reported_dice.csv"
    return read_csv(Path(str(source)), "reported-numbers CSV", columns=REPORTED_COLUMNS)


@dataclass(frozen=True)
class Column:
    """One table column: a dataset (and label, or POOLED), or the mean of the others."""

    name: str
    dataset: str | None  # None: the mean over the table's other columns
    label: str = POOLED
    paper_dataset: str | None = None
    paper_structure: str | None = None
    mean_of: str | None = None  # a mean column: over this dataset's columns only (None: all)


@dataclass
class Block:
    """Rows of one kind; ``mean``/``std`` are rows x column names, NaN where missing."""

    kind: str  # ours | reported | delta
    title: str
    mean: pd.DataFrame
    std: pd.DataFrame | None = None
    runs: dict[str, str] = field(default_factory=dict)  # row label -> model (ours/paper)
    pairs: dict[str, tuple[str, str]] = field(default_factory=dict)  # delta row -> (ours, rep)


@dataclass
class Table:
    name: str  # file stem, e.g. table2_dice
    title: str
    metric: str  # dice | hd95
    columns: list[Column]
    blocks: list[Block]
    footnotes: list[str]

    @property
    def higher_is_better(self) -> bool:
        return self.metric == "dice"


@dataclass
class Context:
    """Everything the builders need: config, per-cell means, paper numbers, provenance."""

    config: Config
    cells: pd.DataFrame  # summarise() rows indexed by (dataset, model, label), POOLED too
    labels: dict[str, list[str]]  # dataset -> label names in label-value order
    n_cases: dict[str, int]  # dataset -> number of evaluated cases
    reported: pd.DataFrame
    provenance: dict[str, str]
    missing: list[tuple[str, str]]  # configured (dataset, model) without a metrics file

    @property
    def datasets(self) -> dict[str, DatasetSpec]:
        return self.config.datasets

    @property
    def models(self) -> dict[str, ModelSpec]:
        return self.config.models

    @property
    def report_cfg(self) -> ReportSpec:
        return self.config.report

    def model_datasets(self, model: str) -> list[str]:
        return self.config.model_datasets(model)

    def cell(self, dataset: str, model: str, label: str, metric: str) -> tuple[float, float]:
        key = (dataset, model, label)
        if key not in self.cells.index:
            return np.nan, np.nan
        row = self.cells.loc[key]
        return float(row[f"{metric}_mean"]), float(row[f"{metric}_std"])

    def protocol(self, dataset: str) -> tuple[str, float]:
        """The dataset's evaluation protocol and its prompt rate."""
        return self.config.protocol(dataset), self.datasets[dataset].prompt_rate

    def in_paper_setting(self, dataset: str) -> bool:
        """Whether the dataset runs in the setting of the paper's reported numbers."""
        return protocols.is_paper_setting(*self.protocol(dataset))

    def row_label(self, model: str) -> str:
        paper = self.models[model].paper_name
        return f"{model} ({paper})" if paper else model


def ablation_rank(spec: ModelSpec) -> int:
    """Position in none/+confidence/+dissimilarity/+resampling, from paper_name or memory."""
    names = list(ABLATION_STEPS)
    if spec.paper_name in names:
        return names.index(spec.paper_name)
    if not isinstance(spec, TrackerSpec) or spec.memory.policy != "self_sorting":
        return 0
    memory = spec.memory
    return sum((memory.confidence, memory.dissimilarity, memory.resampling))


# ----------------------------------------------------------------------------- blocks
def ours_block(ctx: Context, models: list[str], columns: list[Column], metric: str,
               row_label: Callable[[str], str] | None = None) -> Block:
    label_of = row_label or ctx.row_label
    rows = [label_of(m) for m in models]
    names = [c.name for c in columns]
    mean = pd.DataFrame(np.nan, index=rows, columns=names)
    std = pd.DataFrame(np.nan, index=rows, columns=names)
    for model, row in zip(models, rows, strict=True):
        for col in columns:
            if col.dataset is not None:
                mean.loc[row, col.name], std.loc[row, col.name] = ctx.cell(
                    col.dataset, model, col.label, metric
                )
    _fill_mean_column(mean, columns)
    return Block("ours", "Ours (this run)", mean, std, dict(zip(rows, models, strict=True)))


def reported_block(ctx: Context, table_key: str, columns: list[Column],
                   row_label: Callable[[str], str] | None = None) -> Block | None:
    rep = ctx.reported[ctx.reported["table"] == table_key]
    wanted = {(c.paper_dataset, c.paper_structure) for c in columns if c.dataset is not None}
    hits = rep[[(d, s) in wanted for d, s in zip(rep["dataset"], rep["structure"], strict=True)]]
    if hits.empty:
        return None
    models = list(dict.fromkeys(hits["model"]))
    rows = [row_label(m) if row_label else m for m in models]
    mean = pd.DataFrame(np.nan, index=rows, columns=[c.name for c in columns])
    lookup = {(r.model, r.dataset, r.structure): float(r.dice) for r in rep.itertuples()}
    for model, row in zip(models, rows, strict=True):
        for col in columns:
            if col.dataset is not None:
                mean.loc[row, col.name] = lookup.get(
                    (model, col.paper_dataset, col.paper_structure), np.nan
                )
    _fill_mean_column(mean, columns, rep, lookup, models, rows)
    runs = dict(zip(rows, models, strict=True))
    return Block("reported", f"Reported by {PAPER}", mean, None, runs)


def delta_block(ctx: Context, ours: Block, reported: Block,
                columns: list[Column] | None = None) -> Block | None:
    """ours - reported, only in columns run in the paper's setting (protocol and p): a
    difference between two protocols is not a reproduction gap, so it is left out ("–");
    a mean column needs every column it averages in that setting."""
    paper_rows = {paper: row for row, paper in reported.runs.items()}
    foreign = set()
    for col in columns or []:
        if col.dataset is not None and not ctx.in_paper_setting(col.dataset):
            foreign.add(col.name)
    for col in columns or []:
        if col.dataset is None and any(
                c.name in foreign for c in columns
                if c.dataset is not None and col.mean_of in (None, c.dataset)):
            foreign.add(col.name)
    rows, values, pairs = [], [], {}
    for row, model in ours.runs.items():
        paper = ctx.models[model].paper_name
        if paper in paper_rows:
            rows.append(f"{model} − {paper_rows[paper]}")
            values.append(ours.mean.loc[row] - reported.mean.loc[paper_rows[paper]])
            pairs[rows[-1]] = (row, paper_rows[paper])
    if not rows:
        return None
    mean = pd.DataFrame(values, index=rows, columns=ours.mean.columns)
    mean[sorted(foreign)] = np.nan
    return Block("delta", "Δ ours − reported (points)", mean, pairs=pairs)


def _fill_mean_column(mean: pd.DataFrame, columns: list[Column], rep: pd.DataFrame | None = None,
                      lookup: dict | None = None, models: list | None = None,
                      rows: list | None = None) -> None:
    """The mean column: mean of the row's other columns, NaN if any is missing.

    For the paper's rows, its printed mean is used when the table shows every column the
    paper averaged over (otherwise a mean over a different set would be mislabelled).
    """
    mean_cols = [c for c in columns if c.dataset is None]
    for mc in mean_cols:
        scoped = [c for c in columns if c.dataset is not None
                  and mc.mean_of in (None, c.dataset)]
        data_cols = [c.name for c in scoped]
        mean[mc.name] = mean[data_cols].mean(axis=1, skipna=False) if data_cols else np.nan
        if rep is None or lookup is None or mc.paper_dataset is None:
            continue
        shown = {(c.paper_dataset, c.paper_structure) for c in scoped}
        mean_key = (mc.paper_dataset, mc.paper_structure)
        for model, row in zip(models or [], rows or [], strict=True):
            averaged = rep[(rep["model"] == model)][["dataset", "structure"]]
            keys = {tuple(k) for k in averaged.itertuples(index=False)} - {mean_key}
            if keys <= shown and (model, *mean_key) in lookup:
                mean.loc[row, mc.name] = lookup[(model, *mean_key)]


# ----------------------------------------------------------------------------- footnotes
def both_empty_note(policy: str, per_label: pd.DataFrame) -> str | None:
    """The footnote on label-case pairs empty in both masks (None when there are none):
    how many there are and what the policy made of them, since either choice moves means."""
    n_both = int(per_label["n_both_empty"].sum()) if len(per_label) else 0
    if n_both == 0:
        return None
    many = n_both != 1
    pairs = f"{n_both} label-case pair{'s' if many else ''} empty in both ground truth and " \
            "prediction"
    if policy == "one":
        return (f"{pairs} {'count' if many else 'counts'} as Dice 1 (100 %) and HD95 0 mm in "
                "the means (evaluate.both_empty: one).")
    unscored = per_label[(per_label["n_both_empty"] > 0) & (per_label["n"] == 0)]
    tail = (f"; {len(unscored)} structure-model cell(s) with no other pair have no mean "
            f"({MISSING})" if len(unscored) else "")
    return (f"{pairs} {'are' if many else 'is'} left out of the means "
            f"(evaluate.both_empty: exclude){tail}.")


def footnotes(ctx: Context, datasets: list[str], units: str, paper_table: str | None,
              extra: list[str] | None = None) -> list[str]:
    """Protocol and prompt, units, empty-mask convention, cases, seed, commit and config
    hash."""
    penalty = ctx.config.evaluate.hd95_penalty
    prompts = "; ".join(
        f"{d}: {protocols.describe(*ctx.protocol(d), ctx.config.prompt_kind(d))}"
        for d in datasets if d in ctx.datasets)
    cases = ", ".join(f"{d}: {ctx.n_cases.get(d, 0)}" for d in datasets)
    scoped = ctx.cells[ctx.cells.index.get_level_values("dataset").isin(datasets)]
    per_label = scoped[scoped.index.get_level_values("label") != POOLED]
    n_pen = int(per_label["n_hd95_penalised"].sum()) if len(per_label) else 0
    n_err = int(per_label["n_error"].sum()) if len(per_label) else 0
    both = both_empty_note(ctx.config.evaluate.both_empty, per_label)
    pen_text = {"diagonal": "the image diagonal in mm", "nan": "excluded"}.get(
        str(penalty), f"{penalty} mm"
    )
    seeds = [str(ctx.config.seed)]
    notes = [
        f"Protocol and prompt per column: {prompts or MISSING}.",
        units,
        "Empty masks: exactly one empty gives Dice 0 and an undefined HD95, counted as "
        f"{pen_text} in means ({n_pen} case-labels); failed cases are excluded ({n_err}).",
        *([both] if both else []),
        f"Test cases: {cases or MISSING}. Seed(s): {', '.join(seeds)}.",
        f"Git commit {ctx.provenance.get('commit', 'unknown')}; "
        f"config sha256 {ctx.provenance.get('config_hash', 'unknown')}.",
    ]
    if paper_table:
        off = [d for d in datasets if d in ctx.datasets and not ctx.in_paper_setting(d)]
        settings = ", ".join(f"{protocols.PROTOCOLS[k].split(' (')[0]} p = {v:g}"
                             for k, v in protocols.PAPER_SETTINGS.items())
        notes.append(f"Reported: {PAPER}, {paper_table}, measured in the paper's setting "
                     f"({settings}); Δ = ours − reported in points, only where we ran that "
                     "setting" + (f" (not: {', '.join(off)})." if off else "."))
        notes.append("The paper's training collection (64 public datasets besides STARE, "
                     "TDSC-ABUS23 and BTCV) is not named in the paper: our MedSAM-2 trains "
                     "on the training splits of the configured datasets only.")
    gaps = [f"{d}/{m}" for d, m in ctx.missing if d in datasets]
    if gaps:
        notes.append(f"No metrics file (not run): {', '.join(gaps)}.")
    notes.append(f"{MISSING} = not run or not reported; best per column in bold.")
    return notes + list(extra or [])


# ----------------------------------------------------------------------------- builders
def table1_dataset(ctx: Context) -> str | None:
    """report.table1_dataset, else the dataset with the most labels (first in config)."""
    chosen = ctx.report_cfg.table1_dataset
    if chosen:
        if chosen not in ctx.datasets:
            raise ValueError(f"report.table1_dataset: '{chosen}' is not a configured dataset")
        return chosen
    best = None
    for name in ctx.datasets:
        if best is None or len(ctx.labels.get(name, [])) > len(ctx.labels.get(best, [])):
            best = name
    return best


def table2_datasets(ctx: Context) -> list[str]:
    """report.table2_datasets, else the paper's Table 2 tasks we have (paper order), else all."""
    chosen = ctx.report_cfg.table2_datasets
    if chosen:
        unknown = [d for d in chosen if d not in ctx.datasets]
        if unknown:
            raise ValueError(f"report.table2_datasets: not configured datasets {unknown}")
        return list(chosen)
    rep = ctx.reported[ctx.reported["table"] == "table2_zero_shot"]
    # every dataset of a paper task, in the paper's order (two protocols of one task: two
    # columns)
    matched = [n for k in dict.fromkeys(rep["dataset"])
               for n, c in ctx.datasets.items() if c.paper_key == k]
    return matched or list(ctx.datasets)


def models_on(config: Config, datasets: list[str], ablation: bool = False) -> list[str]:
    """Configured models run on any of ``datasets``; ablation variants only in Table 3."""
    main = config.report.main_model
    out = []
    for name, cfg in config.models.items():
        if not set(config.model_datasets(name)) & set(datasets):
            continue
        if ablation == is_ablation(cfg) or (not ablation and name == main):
            out.append(name)
    return out


def paper_tables(ctx: Context, name: str, title: str, columns: list[Column], models: list[str],
                 paper_key: str, paper_table: str, datasets: list[str],
                 row_label: Callable[[str], str] | None = None,
                 reported_label: Callable[[str], str] | None = None,
                 extra: list[str] | None = None) -> list[Table]:
    """A Dice table (ours, reported, delta) and its HD95 companion (ours only)."""
    extra = list(extra or []) + [f"{m}: {ctx.models[m].footnote}" for m in models
                                 if ctx.models[m].footnote]
    blocks = [ours_block(ctx, models, columns, "dice", row_label)] if models else []
    rep = reported_block(ctx, paper_key, columns, reported_label)
    if rep is not None:
        blocks.append(rep)
        delta = delta_block(ctx, blocks[0], rep, columns) if models else None
        blocks += [delta] if delta is not None else []
    dice = Table(f"{name}_dice", f"{title}: Dice (%)", "dice", columns, blocks,
                 footnotes(ctx, datasets, DICE_UNITS, paper_table if rep is not None else None,
                           extra))
    hd_blocks = [ours_block(ctx, models, columns, "hd95", row_label)] if models else []
    hd95 = Table(f"{name}_hd95", f"{title}: HD95 (mm)", "hd95", columns, hd_blocks,
                 footnotes(ctx, datasets, HD95_UNITS, None, extra))
    return [dice, hd95]


def build_table1(ctx: Context) -> list[Table]:
    """Per-structure results on the multi-label dataset (BTCV in the paper)."""
    ds = table1_dataset(ctx)
    if ds is None:
        return paper_tables(ctx, "table1", "Table 1 analogue", [], [], "table1_btcv", "Table 1",
                            [])
    key = ctx.datasets[ds].paper_key
    # every entry of the same paper task (another protocol) gets its own columns
    shown = [ds] + [d for d, c in ctx.datasets.items() if d != ds and key and c.paper_key == key]
    cols = []
    for d in shown:
        smap = ctx.datasets[d].paper_structures
        prefix = f"{d}: " if len(shown) > 1 else ""
        cols += [Column(prefix + (lab if smap.get(lab, lab) == lab else f"{lab} ({smap[lab]})"),
                        d, lab, key, smap.get(lab, lab)) for lab in ctx.labels.get(d, [])]
        cols.append(Column(f"{prefix}mean", None, POOLED, key, "mean", mean_of=d))
    return paper_tables(ctx, "table1", f"Table 1 analogue (per structure, {', '.join(shown)})",
                        cols, models_on(ctx.config, shown), "table1_btcv", "Table 1", shown)


def build_table2(ctx: Context) -> list[Table]:
    """One column per task (pooled over its labels), models as rows, a mean column."""
    datasets = table2_datasets(ctx)
    cols = [Column(d, d, POOLED, ctx.datasets[d].paper_key, "target") for d in datasets]
    cols.append(Column("mean", None, POOLED, "mean", "target"))
    left_out = [d for d in ctx.datasets if d not in datasets]
    extra = [f"Not in the paper's Table 2 (see summary.md): {', '.join(left_out)}."] \
        if left_out else []
    return paper_tables(ctx, "table2", "Table 2 analogue (per task)", cols,
                        models_on(ctx.config, datasets), "table2_zero_shot", "Table 2", datasets,
                        extra=extra)


def build_table3(ctx: Context) -> list[Table]:
    """The memory-bank ablation, rows none / +confidence / +dissimilarity / +resampling.

    The last step is the full MedSAM-2: without a variant of that rank the main model (if
    it is one, on the ablation's datasets) fills the row, so that no config has to
    predict twice with the same weights and settings.
    """
    models = sorted(models_on(ctx.config, list(ctx.datasets), ablation=True),
                    key=lambda m: ablation_rank(ctx.models[m]))
    rep = ctx.reported[ctx.reported["table"] == "table3_ablation"]
    datasets = [d for d, cfg in ctx.datasets.items()
                if any(d in ctx.model_datasets(m) for m in models)
                or (cfg.paper_key and cfg.paper_key in set(rep["dataset"]))]
    main, last = ctx.report_cfg.main_model, len(ABLATION_STEPS) - 1
    if (models and main in ctx.models and main not in models
            and ctx.models[main].kind == "medsam2"
            and ablation_rank(ctx.models[main]) == last
            and all(ablation_rank(ctx.models[m]) < last for m in models)
            and set(ctx.model_datasets(main)) & set(datasets)):
        models.append(main)
    cols = []
    for d in datasets:
        key, smap = ctx.datasets[d].paper_key, ctx.datasets[d].paper_structures
        inverse = {v: k for k, v in smap.items()}
        structures = list(dict.fromkeys(rep.loc[rep["dataset"] == key, "structure"]))
        for s in structures or ["target"]:
            label = POOLED if s == "target" else inverse.get(s, s)
            name = d if s == "target" else f"{d} ({label if label == s else f'{label}: {s}'})"
            cols.append(Column(name, d, label, key, s))
    steps = list(ABLATION_STEPS.values())

    def row_label(model: str) -> str:
        return f"{steps[min(ablation_rank(ctx.models[model]), 3)]} ({model})"

    extra = [] if models else ["No ablation variants configured (models with paper_name "
                               "'MedSAM-2[...]' or ablation: true)."]
    return paper_tables(ctx, "table3", "Table 3 analogue (memory-bank ablation)", cols, models,
                        "table3_ablation", "Table 3", datasets, row_label,
                        lambda p: ABLATION_STEPS.get(p, p), extra)
