# Shared helpers for the workflow (config checks, dataset and model selection, paths,
# wildcard constraints, resources). No rules here.

import json
import re

from pathlib import Path

from medsam2.model.checkpoints import OFFICIAL as OFFICIAL_CHECKPOINTS
from medsam2.config import (
    TRACKER_KINDS,
    ConfigError,
    check_config,
    is_trained,
    model_datasets,
    predict_spec,
    prompt_kind,
)

try:
    check_config(config)
except ConfigError as err:
    raise WorkflowError(f"invalid config: {err}") from None

# the registry files beside this workflow (a config may point elsewhere)
DATASET_REGISTRY = config.get(
    "registry_dir", str(Path(workflow.current_basedir).parents[1] / "config" / "datasets")
)
RESULTS = config["results"]
RESOURCES = config["resources"]
SEED = int(config["seed"])
LOGS = f"{RESULTS}/logs"


def names_regex(names):
    """A wildcard constraint matching exactly these names (never matching when empty)."""
    return "|".join(re.escape(n) for n in names) if names else "(?!)"


def datasets_with_source(source):
    return sorted(n for n, s in config["datasets"].items() if s["source"] == source)


def models_of_kind(*kinds):
    return sorted(n for n, s in config["models"].items() if s["kind"] in kinds)


def tracker_models():
    """Models run by this package's own train/predict code (MedSAM-2 and plain SAM 2)."""
    return models_of_kind(*TRACKER_KINDS)


def trained_tracker_models():
    return sorted(n for n in tracker_models() if is_trained(config["models"][n]))


def dataset_dir(name):
    return f"{RESULTS}/datasets/{name}"


def dataset_json(name):
    return f"{RESULTS}/datasets/{name}/dataset.json"


def model_json(name, dataset=None):
    """A model's config as JSON for the command line (changes re-run its rules); with a
    dataset, as it predicts that dataset (its `predict` options where they apply)."""
    spec = config["models"][name]
    return json.dumps(spec if dataset is None else predict_spec(spec, dataset), sort_keys=True)


def model_resources(name, key, default):
    return (config["models"][name].get("resources") or {}).get(key, default)


def model_dataset_pairs():
    return [(d, m) for m in config["models"] for d in model_datasets(config, m)]


def all_metrics_files():
    return [f"{RESULTS}/metrics/{d}/{m}.csv" for d, m in model_dataset_pairs()]


def sensitivity_files():
    """One-Prompt template sensitivity: tracker models x 2D one_prompt datasets."""
    return [f"{RESULTS}/sensitivity/{d}/{m}.csv" for d, m in model_dataset_pairs()
            if m in tracker_models()
            and config["datasets"][d].get("mode_2d") == "one_prompt"]


def config_resolved_path():
    return f"{RESULTS}/config.resolved.json"


# -- real datasets (data.smk) ----------------------------------------------------------


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
    args = f"--seed {SEED}"
    if spec.get("test_fraction") is not None:
        args += f" --test-fraction {float(spec['test_fraction'])}"
    return args


# -- MedSAM-2 / SAM 2 (medsam2.smk) ---------------------------------------------------


def train_datasets(model):
    spec = config["models"][model]
    return spec["train"].get("datasets") or model_datasets(config, model)


def train_sources(model):
    """What a model trains on: the standard datasets, or their preprocessing caches when
    the model has a `preprocess` block (medsam2 preprocess: crop, resize, small masks)."""
    if config["models"][model].get("preprocess") is None:
        return [dataset_dir(d) for d in train_datasets(model)]
    return [f"{RESULTS}/preprocessed/{model}/{d}" for d in train_datasets(model)]


def train_inputs(model):
    if config["models"][model].get("preprocess") is None:
        return [dataset_json(d) for d in train_datasets(model)]
    return [f"{src}/index.json" for src in train_sources(model)]


def pretrained_checkpoint(name):
    return f"{RESULTS}/pretrained/{name}/checkpoint.pt"


def train_init(model):
    """The weights a tracker's training starts from: a `pretrain` entry's checkpoint, an
    official / own file (`checkpoint`), or none (random initialisation)."""
    spec = config["models"][model]
    if spec.get("pretrained"):
        return [pretrained_checkpoint(spec["pretrained"])]
    return [spec["checkpoint"]] if spec.get("checkpoint") else []


def pretrain_resources(name, key, default):
    return (config["pretrain"][name].get("resources") or {}).get(key, default)


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
    spec = config["models"][model]
    if is_trained(spec):
        return f"{RESULTS}/models/{model}/checkpoint.pt"
    if spec.get("weights_from"):
        return f"{RESULTS}/models/{spec['weights_from']}/checkpoint.pt"
    return spec["checkpoint"]
