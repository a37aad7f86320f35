# Data stage for real datasets: download -> extract -> convert (`source: registry`, one
# config/datasets/<key>.yaml each) and import_local (`source: local`, your own folder).
# Every rule calls `medsam2 datasets <sub>`; each writes the standard dataset's
# dataset.json, the file the rest of the workflow asks for. Conversion prints a one-line
# summary (converted / skipped, reasons) to its log and the console, and fails when more
# cases are lost than the dataset file's max_skipped (strict shell mode: pipefail).
# Synthetic datasets have their own rule (synthetic.smk); the wildcard constraints below
# keep the rules apart.

rule datasets_download:
    output:
        f"{RESOURCES}/downloads/{{key}}/.complete",
    log:
        f"{RESULTS}/logs/datasets/download_{{key}}.log",
    wildcard_constraints:
        key=names_regex(registry_keys()),
    params:
        registry=DATASET_REGISTRY,
        resources=lambda w, output: str(Path(output[0]).parents[2]),
    resources:
        mem_mb=4000,
        runtime=lambda w, attempt: 240 * attempt,
    shell:
        "medsam2 datasets download {wildcards.key} --registry-dir {params.registry}"
        " --resources {params.resources} 2>&1 | tee {log}"


rule datasets_extract:
    input:
        f"{RESOURCES}/downloads/{{key}}/.complete",
    output:
        f"{RESOURCES}/extracted/{{key}}/.complete",
    log:
        f"{RESULTS}/logs/datasets/extract_{{key}}.log",
    wildcard_constraints:
        key=names_regex(registry_keys()),
    params:
        registry=DATASET_REGISTRY,
        resources=lambda w, output: str(Path(output[0]).parents[2]),
    shell:
        "medsam2 datasets extract {wildcards.key} --registry-dir {params.registry}"
        " --resources {params.resources} > {log} 2>&1"


rule datasets_convert:
    input:
        lambda w: f"{RESOURCES}/extracted/{registry_key(w.dataset)}/.complete",
    output:
        STANDARD_DATASET,
    log:
        f"{RESULTS}/logs/datasets/convert_{{dataset}}.log",
    wildcard_constraints:
        dataset=names_regex(SPEC.data_names("registry")),
    params:
        registry=DATASET_REGISTRY,
        resources=lambda w, input: str(Path(input[0]).parents[2]),
        key=lambda w: registry_key(w.dataset),
        out=lambda w: f"{RESULTS}/datasets/{w.dataset}",
        split=lambda w: _split_args(w.dataset),
    resources:
        mem_mb=lambda w: dataset_resources(w.dataset).mem_mb,
        runtime=lambda w, attempt: dataset_resources(w.dataset).runtime * attempt,
    shell:
        "medsam2 datasets convert {params.key} --registry-dir {params.registry}"
        " --resources {params.resources} --out {params.out} {params.split} 2>&1 | tee {log}"


rule datasets_import_local:
    output:
        STANDARD_DATASET,
    log:
        f"{RESULTS}/logs/datasets/import_{{dataset}}.log",
    wildcard_constraints:
        dataset=names_regex(SPEC.data_names("local")),
    params:
        path=lambda w: SPEC.datasets[w.dataset].path,
        out=lambda w: f"{RESULTS}/datasets/{w.dataset}",
        split=lambda w: _split_args(w.dataset),
        extra=lambda w: local_import_args(w.dataset),
        manifest=lambda w: local_manifest(w.dataset),
    resources:
        mem_mb=lambda w: dataset_resources(w.dataset).mem_mb,
        runtime=lambda w, attempt: dataset_resources(w.dataset).runtime * attempt,
    shell:
        "medsam2 datasets import-local --path {params.path:q} --out {params.out}"
        " {params.split} {params.extra} > {log} 2>&1"


# Official SAM 2 / 2.1 checkpoints that trackers start from or use (`checkpoint:`).


rule fetch_checkpoint:
    output:
        f"{RESOURCES}/checkpoints/{{name}}",
    log:
        f"{LOGS}/checkpoints/{{name}}.log",
    wildcard_constraints:
        name=names_regex(list(OFFICIAL_CHECKPOINTS)),
    params:
        out=lambda w, output: str(Path(output[0]).parent),
    shell:
        "medsam2 checkpoint {wildcards.name} --out-dir {params.out} > {log} 2>&1"
