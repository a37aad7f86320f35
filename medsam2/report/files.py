"""The files ``medsam2 report`` writes: one list, read by the report and by its rule.

Kept apart from the report's code so that the Snakefile reads it without importing
pandas and matplotlib at every plan.
"""

from __future__ import annotations

TABLES = ("table1", "table2", "table3")
METRICS = ("dice", "hd95")
#: every figure is written as a PNG (the HTML report) and a PDF (papers)
EXTENSIONS = ("png", "pdf")


def report_files(datasets: list[str]) -> list[str]:
    """Every file ``build_report`` writes, relative to the output folder."""
    names = ["summary.csv", "summary.md", "summary.html", "stats.csv", "report.md"]
    names += [f"{t}_{m}.{ext}" for t in TABLES for m in METRICS
              for ext in ("csv", "md", "tex", "html")]
    stems = [f"{d}_{kind}" for d in datasets for kind in ("per_case", "overlays")]
    stems += ["ablation", "reported_vs_ours"]
    names += [f"figures/{s}.{ext}" for s in stems for ext in EXTENSIONS]
    return names
