"""The files ``medsam2 report`` writes: one list, read by the report and by its rule.

Kept apart from the report's code so that the Snakefile reads it without importing
pandas and matplotlib at every plan. A figure with nothing to show is not written (the
report says why in one line), so the list depends on the config.
"""

from __future__ import annotations

from medsam2.spec import Config, ModelSpec, TrackerSpec

TABLES = ("table1", "table2", "table3")
METRICS = ("dice", "hd95")
#: every figure is written as a PNG (the HTML report) and a PDF (papers)
EXTENSIONS = ("png", "pdf")
#: figures drawn for each dataset entry
DATASET_FIGURES = ("per_case", "overlays")


def is_ablation(spec: ModelSpec) -> bool:
    """A row of the memory-bank ablation (Table 3)."""
    return ((isinstance(spec, TrackerSpec) and spec.ablation)
            or str(spec.paper_name or "").startswith("MedSAM-2["))


def figures_left_out(config: Config) -> dict[str, str]:
    """Figure stem -> why the config gives it nothing to show."""
    out = {}
    if not any(is_ablation(m) for m in config.models.values()):
        out["ablation"] = ("no ablation variants configured (models with ablation: true or "
                           "paper_name 'MedSAM-2[...]')")
    if not (any(d.paper_key for d in config.datasets.values())
            and any(m.paper_name for m in config.models.values())):
        out["reported_vs_ours"] = ("no dataset with a paper_key next to a model with a "
                                   "paper_name: nothing to set beside the paper's numbers")
    return out


def dataset_figure_files(dataset: str) -> list[str]:
    """One dataset's figures (per-case boxes, overlays), relative to the output folder."""
    return [f"figures/{dataset}_{kind}.{ext}" for kind in DATASET_FIGURES for ext in EXTENSIONS]


def report_files(config: Config, dataset_figures: bool = True) -> list[str]:
    """Every file ``build_report`` writes, relative to the output folder; without the
    per-dataset figures when those are drawn by jobs of their own (``dataset_figures``
    False: the workflow's report rule)."""
    names = ["summary.csv", "summary.md", "summary.html", "stats.csv", "report.md"]
    names += [f"{t}_{m}.{ext}" for t in TABLES for m in METRICS
              for ext in ("csv", "md", "tex", "html")]
    if dataset_figures:
        names += [n for d in config.datasets for n in dataset_figure_files(d)]
    stems = [s for s in ("ablation", "reported_vs_ours") if s not in figures_left_out(config)]
    names += [f"figures/{s}.{ext}" for s in stems for ext in EXTENSIONS]
    return names
