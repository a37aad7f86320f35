# Report stage: tables (the paper's Tables 1-3 with its reported numbers beside ours),
# statistics and figures from every metrics CSV, by `medsam2 report`. Each dataset's
# figures (per-case boxes, overlays) are a job of their own, started when that dataset is
# evaluated; the report job then writes the tables, statistics and summary figures. The
# HTML tables, the statistics and the PNG figures are marked for
# `snakemake --report results/report.html` with captions from workflow/report/*.rst. The
# outputs are the files that medsam2.report.files.report_files() says `medsam2 report`
# writes (report_output() in common.smk marks them).

rule resolved_config:
    output:
        config_resolved_path(),
    log:
        f"{LOGS}/resolved_config.log",
    params:
        cfg=RESOLVED_CONFIG,
    shell:
        "medsam2 config resolve --json {params.cfg:q} --out {output} > {log} 2>&1"


rule report_figures:
    input:
        metrics=dataset_metrics_files,
        config=config_resolved_path(),
    output:
        [report_output(name) for name in dataset_figure_files("{dataset}")],
    log:
        f"{LOGS}/report/figures/{{dataset}}.log",
    wildcard_constraints:
        dataset=names_regex(SPEC.datasets),
    params:
        results=lambda w, input: str(Path(input.config).parents[1]),
        out_dir=lambda w, output: str(Path(output[0]).parents[1]),
    resources:
        mem_mb=report_resources().mem_mb,
        runtime=lambda w, attempt: report_resources().runtime * attempt,
    shell:
        "medsam2 report --figures-of {wildcards.dataset} --metrics-dir {params.results}/metrics"
        " --config {input.config} --datasets-dir {params.results}/datasets"
        " --predictions-dir {params.results}/predictions"
        " --out-dir {params.out_dir} > {log} 2>&1"


rule report:
    input:
        metrics=all_metrics_files(),
        config=config_resolved_path(),
        figures=[f"{_REPORT_DIR}/{n}" for d in SPEC.datasets for n in dataset_figure_files(d)],
    output:
        [report_output(name) for name in report_files(SPEC, dataset_figures=False)],
    log:
        f"{LOGS}/report.log",
    params:
        results=lambda w, input: str(Path(input.config).parents[1]),
        out_dir=lambda w, output: str(Path(output[0]).parent),
    resources:
        mem_mb=report_resources().mem_mb,
        runtime=lambda w, attempt: report_resources().runtime * attempt,
    shell:
        "medsam2 report --metrics-dir {params.results}/metrics --config {input.config}"
        " --datasets-dir {params.results}/datasets"
        " --predictions-dir {params.results}/predictions"
        " --out-dir {params.out_dir} --without-dataset-figures > {log} 2>&1"
