# Data stage for real datasets: download -> extract -> convert (`source: registry`, one
# config/datasets/<key>.yaml each) and import_local (`source: local`, your own folder).
# Every rule calls `medsam2 datasets <sub>`; each writes the standard dataset's
# dataset.json, the file the rest of the workflow asks for. Synthetic datasets have their
# own rule (synthetic.smk); the wildcard constraints below keep the rules apart.

from pathlib import Path as _DataPath

_DATA_REPO = _DataPath(workflow.current_basedir).parents[1]
DATASET_REGISTRY = config.get("registry_dir", str(_DATA_REPO / "config" / "datasets"))
_DATA_RESULTS = RESULTS
_DATA_RESOURCES = RESOURCES


def registry_datasets():
    """Config dataset names read from the registry (config/datasets/<key>.yaml)."""
    return datasets_with_source("registry")


def local_datasets():
    """Config dataset names that point at a local folder (bring your own data)."""
    return datasets_with_source("local")


def registry_key(name):
    """The registry key of a config dataset (`registry:` overrides the name)."""
    return config["datasets"][name].get("registry", name)


def registry_keys():
    return sorted({registry_key(n) for n in registry_datasets()})


def _split_args(name):
    spec = config["datasets"][name]
    args = f"--seed {int(config.get('seed', 0))}"
    if spec.get("test_fraction") is not None:
        args += f" --test-fraction {float(spec['test_fraction'])}"
    return args


rule datasets_download:
    output:
        f"{_DATA_RESOURCES}/downloads/{{key}}/.complete",
    log:
        f"{_DATA_RESULTS}/logs/datasets/download_{{key}}.log",
    wildcard_constraints:
        key=names_regex(registry_keys()),
    params:
        registry=DATASET_REGISTRY,
        resources=_DATA_RESOURCES,
    shell:
        "medsam2 datasets download {wildcards.key} --registry-dir {params.registry}"
        " --resources {params.resources} 2>&1 | tee {log}"


rule datasets_extract:
    input:
        f"{_DATA_RESOURCES}/downloads/{{key}}/.complete",
    output:
        f"{_DATA_RESOURCES}/extracted/{{key}}/.complete",
    log:
        f"{_DATA_RESULTS}/logs/datasets/extract_{{key}}.log",
    wildcard_constraints:
        key=names_regex(registry_keys()),
    params:
        registry=DATASET_REGISTRY,
        resources=_DATA_RESOURCES,
    shell:
        "medsam2 datasets extract {wildcards.key} --registry-dir {params.registry}"
        " --resources {params.resources} > {log} 2>&1"


rule datasets_convert:
    input:
        lambda w: f"{_DATA_RESOURCES}/extracted/{registry_key(w.dataset)}/.complete",
    output:
        f"{_DATA_RESULTS}/datasets/{{dataset}}/dataset.json",
    log:
        f"{_DATA_RESULTS}/logs/datasets/convert_{{dataset}}.log",
    wildcard_constraints:
        dataset=names_regex(registry_datasets()),
    params:
        registry=DATASET_REGISTRY,
        resources=_DATA_RESOURCES,
        key=lambda w: registry_key(w.dataset),
        out=lambda w: f"{_DATA_RESULTS}/datasets/{w.dataset}",
        split=lambda w: _split_args(w.dataset),
    shell:
        "medsam2 datasets convert {params.key} --registry-dir {params.registry}"
        " --resources {params.resources} --out {params.out} {params.split} > {log} 2>&1"


rule datasets_import_local:
    output:
        f"{_DATA_RESULTS}/datasets/{{dataset}}/dataset.json",
    log:
        f"{_DATA_RESULTS}/logs/datasets/import_{{dataset}}.log",
    wildcard_constraints:
        dataset=names_regex(local_datasets()),
    params:
        path=lambda w: config["datasets"][w.dataset]["path"],
        out=lambda w: f"{_DATA_RESULTS}/datasets/{w.dataset}",
        split=lambda w: _split_args(w.dataset),
        extra=lambda w: " ".join(
            f"--{k} {config['datasets'][w.dataset][k]}"
            for k in ("dims", "modality", "prompt")
            if config["datasets"][w.dataset].get(k) is not None
        ),
    shell:
        "medsam2 datasets import-local --path {params.path} --out {params.out}"
        " {params.split} {params.extra} > {log} 2>&1"
