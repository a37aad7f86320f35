# Report stage: tables (the paper's Tables 1-3 with its reported numbers beside ours),
# statistics and figures from every metrics CSV, by `medsam2 report`. The HTML tables, the
# statistics and the PNG figures are marked for `snakemake --report results/report.html`
# with captions from workflow/report/*.rst. The outputs are the files that
# medsam2.report.build.report_files() says `medsam2 report` writes.

from medsam2.report.files import report_files

_REPORT_DIR = f"{RESULTS}/report"
_REPORT_TABLES = {
    "table1": "Table 1 (per structure)",
    "table2": "Table 2 (per task)",
    "table3": "Table 3 (ablation)",
}
_REPORT_METRICS = {"dice": "Dice", "hd95": "HD95"}
_REPORT_FIGURES = {
    "per_case": "Per case",
    "overlays": "Overlays",
    "ablation": "Ablation",
    "reported_vs_ours": "Reported vs ours",
}
# An alias: `report(` must not start a line, the Snakefile parser takes it for the directive.
_report_flag = report


def _report_output(name):
    """One file of the report, marked for the HTML report where it is a table or figure."""
    path = f"{_REPORT_DIR}/{name}"
    stem, ext = Path(name).stem, Path(name).suffix
    if name == "summary.html":
        return _report_flag(path, caption="../report/summary.rst", category="Tables",
                            subcategory="Summary",
                            labels={"table": "Summary", "metric": "Dice and HD95"})
    if name == "stats.csv":
        return _report_flag(path, caption="../report/stats.rst",
                            category="Statistical tests",
                            labels={"table": "bootstrap CI and Wilcoxon tests"})
    table, _, metric = stem.partition("_")
    if ext == ".html" and table in _REPORT_TABLES:
        title = _REPORT_TABLES[table]
        return _report_flag(path, caption=f"../report/{table}.rst", category="Tables",
                            subcategory=title,
                            labels={"table": title, "metric": _REPORT_METRICS[metric]})
    if name.startswith("figures/") and ext == ".png":
        kind = next(k for k in _REPORT_FIGURES if stem == k or stem.endswith(f"_{k}"))
        dataset = stem[: -len(kind) - 1] if stem != kind else "all"
        title = _REPORT_FIGURES[kind]
        return _report_flag(path, caption=f"../report/{kind}.rst", category="Figures",
                            subcategory=title, labels={"dataset": dataset, "figure": title})
    return path


rule resolved_config:
    output:
        config_resolved_path(),
    log:
        f"{LOGS}/resolved_config.log",
    params:
        cfg=RESOLVED_CONFIG,
    shell:
        "medsam2 config resolve --json {params.cfg:q} --out {output} > {log} 2>&1"


rule report:
    conda:
        "../envs/medsam2.yaml"
    input:
        metrics=all_metrics_files(),
        config=config_resolved_path(),
    output:
        [_report_output(name) for name in report_files(list(SPEC.datasets))],
    log:
        f"{LOGS}/report.log",
    params:
        results=RESULTS,
        out_dir=_REPORT_DIR,
    resources:
        mem_mb=report_resources().mem_mb,
        runtime=lambda w, attempt: report_resources().runtime * attempt,
    shell:
        "medsam2 report --metrics-dir {params.results}/metrics --config {input.config}"
        " --datasets-dir {params.results}/datasets"
        " --predictions-dir {params.results}/predictions"
        " --out-dir {params.out_dir} > {log} 2>&1"
