# Shared helpers for the workflow (config checks, dataset and model selection, paths,
# wildcard constraints, resources). No rules here.

import hashlib
import json
import re
import shlex

from pathlib import Path

from medsam2.model.checkpoints import OFFICIAL as OFFICIAL_CHECKPOINTS
from medsam2.report.files import dataset_figure_files, report_files
from medsam2.spec import Config, JobResources, SpecError
from medsam2.typed import to_plain

# The one reading of the config: typed, defaults filled in, every key checked (a typo
# fails here naming its key path). Rules read SPEC, never `config` itself.
try:
    SPEC = Config.from_dict(
        config,
        source=workflow.configfiles[-1] if workflow.configfiles else "config",
        repo_root=Path(workflow.current_basedir).parents[1],  # this checkout
    )
except SpecError as err:
    raise WorkflowError(str(err)) from None

DATASET_REGISTRY = str(SPEC.registry_path())
RESULTS = SPEC.results
RESOURCES = SPEC.resources
SEED = SPEC.seed
LOGS = f"{RESULTS}/logs"


def names_regex(names):
    """A wildcard constraint matching exactly these names (never matching when empty)."""
    return "|".join(re.escape(n) for n in names) if names else "(?!)"


def datasets_with_source(source):
    return sorted(n for n, s in SPEC.datasets.items() if s.source == source)


def models_of_kind(*kinds):
    return SPEC.models_of_kind(*kinds)


def tracker_models():
    """Models run by this package's own train/predict code (MedSAM-2 and plain SAM 2)."""
    return SPEC.trackers()


def trained_tracker_models():
    return SPEC.trained_trackers()


def dataset_dir(name):
    """The standard dataset a config dataset reads: entries that differ only in their
    evaluation protocol share one conversion (Config.data_name)."""
    if name not in SPEC.datasets:
        raise WorkflowError(
            f"dataset_dir/dataset_json: '{name}' is no dataset of the config; a rule's input "
            "for its {dataset} wildcard is the input function dataset_json_of")
    return f"{RESULTS}/datasets/{SPEC.data_name(name)}"


def dataset_json(name):
    return f"{dataset_dir(name)}/dataset.json"


def dataset_json_of(wildcards):
    """Input function: the standard dataset of the job's `dataset` wildcard."""
    return dataset_json(wildcards.dataset)


#: what the data rules (synthesize, convert, import_local) write, one per standard dataset
STANDARD_DATASET = f"{RESULTS}/datasets/{{dataset}}/dataset.json"


def spec_json(spec):
    """A spec as the JSON handed to a command (a param: a change re-runs the job)."""
    return json.dumps(to_plain(spec), sort_keys=True)


def model_json(name, dataset=None):
    """A model's normalised spec as JSON, what its jobs' outputs depend on only (names,
    evaluation datasets and resources left out); with a dataset, as it predicts that
    dataset (its `predict` options where they apply, so other datasets' options never
    re-run it)."""
    spec = SPEC.models[name]
    return spec_json((spec if dataset is None else spec.for_dataset(dataset)).job_spec())


def training_json(name):
    """Only what decides a tracker's weights: evaluation datasets, `predict`, names and
    resources can change without re-running its training."""
    return spec_json(SPEC.training_spec(name))


def model_resources(name, stage):
    """The resources of a model's `stage` job (its spec: size defaults, config overrides)."""
    return SPEC.models[name].job_resources(stage)


def model_datasets(name):
    return SPEC.model_datasets(name)


def model_dataset_pairs():
    return SPEC.model_dataset_pairs()


def all_metrics_files():
    return [f"{RESULTS}/metrics/{d}/{m}.csv" for d, m in model_dataset_pairs()]


def dataset_metrics_files(wildcards):
    """The metrics files of one dataset entry, every model configured on it."""
    return [f"{RESULTS}/metrics/{d}/{m}.csv" for d, m in model_dataset_pairs()
            if d == wildcards.dataset]


def sensitivity_files():
    """One-Prompt template sensitivity: tracker models x 2D one_prompt datasets."""
    if SPEC.evaluate.template_seeds == 0:
        return []
    return [f"{RESULTS}/sensitivity/{d}/{m}.csv" for d, m in model_dataset_pairs()
            if m in tracker_models() and SPEC.datasets[d].mode_2d == "one_prompt"]


#: the normalised config as the report reads it
RESOLVED_CONFIG = SPEC.to_json()


def config_resolved_path():
    """Named after its content: any change of the config is a new file, so the report is
    rebuilt from the config as it is now, whatever `--rerun-triggers` says."""
    digest = hashlib.sha256(RESOLVED_CONFIG.encode()).hexdigest()[:12]
    return f"{RESULTS}/config/resolved-{digest}.json"


# -- real datasets (data.smk) ----------------------------------------------------------


def registry_datasets():
    """Config dataset names read from the registry (config/datasets/<key>.yaml)."""
    return datasets_with_source("registry")


def registry_key(name):
    """The registry key of a config dataset (`registry:` overrides the name)."""
    return SPEC.registry_key(name)


def local_manifest(name):
    """What a `source: local` folder holds (every file's path, size and modification time),
    hashed: a param of the import, so an edited label or a new case re-imports it."""
    root = Path(SPEC.datasets[name].path)
    if not root.is_dir():
        return "missing"
    entries = sorted(
        (str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    )
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()[:16]


def local_import_args(name):
    """`medsam2 datasets import-local` flags of a `source: local` dataset."""
    return " ".join(shlex.quote(f) for f in SPEC.datasets[name].import_flags())


#: memory and minutes of a per-dataset job (convert, evaluate, report) by data size: the
#: demo's phantoms need little, real CT volumes (512 x 512 x 300) a few GB per case
_DATASET_JOBS = {
    "synthetic": JobResources(gpu=0, mem_mb=2000, runtime=30, threads=1),
    "real": JobResources(gpu=0, mem_mb=16000, runtime=120, threads=1),
}


def dataset_resources(name):
    return _DATASET_JOBS["synthetic" if SPEC.datasets[name].source == "synthetic" else "real"]


def report_resources():
    """The report reads every metrics file; its per-dataset figure jobs read three cases'
    images and every model's predictions of them (sized as data jobs)."""
    real = any(s.source != "synthetic" for s in SPEC.datasets.values())
    return _DATASET_JOBS["real" if real else "synthetic"]


def registry_keys():
    return sorted({registry_key(n) for n in registry_datasets()})


def _split_args(name):
    fraction = SPEC.datasets[name].split_fraction()
    args = f"--seed {SEED}"
    if fraction is not None:
        args += f" --test-fraction {float(fraction)}"
    group_by = getattr(SPEC.datasets[name], "group_by", None)
    if group_by is not None:  # registry datasets: whole groups (videos) on one side
        args += f" --group-by {group_by}"
    return args


# -- MedSAM-2 / SAM 2 (medsam2.smk) ---------------------------------------------------


def train_datasets(model):
    return SPEC.train_datasets(model)


def train_sources(model):
    """What a model trains on: the standard datasets, or their preprocessing caches when
    the model has a `preprocess` block (medsam2 preprocess: crop, resize, small masks)."""
    if SPEC.tracker(model).preprocess is None:
        return [dataset_dir(d) for d in train_datasets(model)]
    return [f"{RESULTS}/preprocessed/{model}/{d}" for d in train_datasets(model)]


def train_inputs(model):
    if SPEC.tracker(model).preprocess is None:
        return [dataset_json(d) for d in train_datasets(model)]
    return [f"{src}/index.json" for src in train_sources(model)]


def pretrained_checkpoint(name):
    return f"{RESULTS}/pretrained/{name}/checkpoint.pt"


def train_init(model):
    """The weights a tracker's training starts from: a `pretrain` entry's checkpoint, an
    official / own file (`checkpoint`), or none (random initialisation)."""
    spec = SPEC.tracker(model)
    if spec.pretrained:
        return [pretrained_checkpoint(spec.pretrained)]
    return [spec.checkpoint] if spec.checkpoint else []


def pretrain_resources(name):
    return SPEC.pretrain[name].job_resources()


#: priority of the seconds-long jobs that make a dataset: above every training job's
#: (Snakemake's priorities do not reach a job's inputs; without this, the demo ran
#: nnU-Net's 2D chain before it had even made the 3D volumes its 3D training needs)
DATA_FIRST = 10_000


def long_first(runtime_minutes):
    """Scheduling priority of a training job: its runtime estimate (the ``runtime``
    resource, minutes), so that among ready jobs the longest starts first (the classic
    makespan heuristic). On the demo's 2 cores nnU-Net's half-minute 2D jobs then wait
    for its 3D training and the tracker fine-tunes instead of delaying them (before, the
    second fine-tune started 1 min 18 s after the first). On SLURM it only orders the
    submissions."""
    return int(runtime_minutes)


def tracker_checkpoint(model):
    """Trained here, borrowed from another model (ablations), or an official file."""
    spec = SPEC.tracker(model)
    if spec.is_trained:
        return f"{RESULTS}/models/{model}/checkpoint.pt"
    if spec.weights_from:
        return f"{RESULTS}/models/{spec.weights_from}/checkpoint.pt"
    return spec.checkpoint


# -- report (report.smk) ------------------------------------------------------------

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


def report_output(name):
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
