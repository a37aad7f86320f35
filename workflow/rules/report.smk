# Report stage: tables (the paper's Tables 1-3 with its reported numbers beside ours),
# statistics and figures from every metrics CSV, by `medsam2 report`. The HTML tables, the
# statistics and the PNG figures are marked for `snakemake --report results/report.html`
# with captions from workflow/report/*.rst. all_metrics_files() and
# config_resolved_path() come from common.smk. File names match
# medsam2.report.build.report_files().

_REPORT_RESULTS = config.get("results", "results")
_REPORT_DIR = f"{_REPORT_RESULTS}/report"
_REPORT_DATASETS = list(config.get("datasets") or {})
_REPORT_TABLES = {
    "table1": "Table 1 (per structure)",
    "table2": "Table 2 (per task)",
    "table3": "Table 3 (ablation)",
}
_REPORT_METRICS = {"dice": "Dice", "hd95": "HD95"}
# An alias: `report(` must not start a line, the Snakefile parser takes it for the directive.
_report_flag = report

_REPORT_TABLE_HTML = [
    _report_flag(
        f"{_REPORT_DIR}/{table}_{metric}.html",
        caption=f"../report/{table}.rst",
        category="Tables",
        subcategory=title,
        labels={"table": title, "metric": name},
    )
    for table, title in _REPORT_TABLES.items()
    for metric, name in _REPORT_METRICS.items()
]
_REPORT_DATASET_FIGURES = {
    kind: [
        _report_flag(
            f"{_REPORT_DIR}/figures/{dataset}_{kind}.png",
            caption=f"../report/{kind}.rst",
            category="Figures",
            subcategory=title,
            labels={"dataset": dataset, "figure": title},
        )
        for dataset in _REPORT_DATASETS
    ]
    for kind, title in (("per_case", "Per case"), ("overlays", "Overlays"))
}


rule report:
    conda:
        "../envs/medsam2.yaml"
    input:
        metrics=all_metrics_files(),
        config=config_resolved_path(),
    output:
        summary_csv=f"{_REPORT_DIR}/summary.csv",
        summary_md=f"{_REPORT_DIR}/summary.md",
        summary_html=report(
            f"{_REPORT_DIR}/summary.html",
            caption="../report/summary.rst",
            category="Tables",
            subcategory="Summary",
            labels={"table": "Summary", "metric": "Dice and HD95"},
        ),
        report_md=f"{_REPORT_DIR}/report.md",
        stats=report(
            f"{_REPORT_DIR}/stats.csv",
            caption="../report/stats.rst",
            category="Statistical tests",
            labels={"table": "bootstrap CI and Wilcoxon tests"},
        ),
        table_html=_REPORT_TABLE_HTML,
        table_files=expand(
            f"{_REPORT_DIR}/{{table}}_{{metric}}.{{ext}}",
            table=list(_REPORT_TABLES),
            metric=list(_REPORT_METRICS),
            ext=["csv", "md", "tex"],
        ),
        per_case=_REPORT_DATASET_FIGURES["per_case"],
        overlays=_REPORT_DATASET_FIGURES["overlays"],
        ablation=report(
            f"{_REPORT_DIR}/figures/ablation.png",
            caption="../report/ablation.rst",
            category="Figures",
            subcategory="Ablation",
            labels={"dataset": "ablation tasks", "figure": "Ablation"},
        ),
        scatter=report(
            f"{_REPORT_DIR}/figures/reported_vs_ours.png",
            caption="../report/reported_vs_ours.rst",
            category="Figures",
            subcategory="Reported vs ours",
            labels={"dataset": "all", "figure": "Reported vs ours"},
        ),
        pdfs=expand(
            f"{_REPORT_DIR}/figures/{{stem}}.pdf",
            stem=[f"{d}_{k}" for d in _REPORT_DATASETS for k in ("per_case", "overlays")]
            + ["ablation", "reported_vs_ours"],
        ),
    log:
        f"{_REPORT_RESULTS}/logs/report.log",
    params:
        results=lambda w, input: str(Path(input.config).parent),
        out_dir=lambda w, output: str(Path(output.summary_csv).parent),
    shell:
        "medsam2 report --metrics-dir {params.results}/metrics --config {input.config}"
        " --datasets-dir {params.results}/datasets"
        " --predictions-dir {params.results}/predictions"
        " --out-dir {params.out_dir} > {log} 2>&1"
