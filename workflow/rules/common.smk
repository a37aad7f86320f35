# Helpers shared by all rule files: config checks, dataset/model selection, paths,
# wildcard constraints and resources. No rules here.

import json
import re

from medsam2.config import (
    TRACKER_KINDS,
    ConfigError,
    check_config,
    is_trained,
    model_datasets,
    prompt_kind,
)

try:
    check_config(config)
except ConfigError as err:
    raise WorkflowError(f"invalid config: {err}") from None

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


def model_json(name):
    """A model's config as JSON for the command line (changes re-run its rules)."""
    return json.dumps(config["models"][name], sort_keys=True)


def model_resources(name, key, default):
    return (config["models"][name].get("resources") or {}).get(key, default)


def model_dataset_pairs():
    return [(d, m) for m in config["models"] for d in model_datasets(config, m)]


def all_metrics_files():
    return [f"{RESULTS}/metrics/{d}/{m}.csv" for d, m in model_dataset_pairs()]


def all_prediction_dirs():
    return [f"{RESULTS}/predictions/{d}/{m}" for d, m in model_dataset_pairs()]


def config_resolved_path():
    return f"{RESULTS}/config.resolved.json"


wildcard_constraints:
    model=names_regex(list(config["models"])),
