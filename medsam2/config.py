"""Config checks the JSON schema cannot express, and the resolved-config file.

The schema (workflow/schemas/config.schema.yaml) checks types and required keys; here we
check what relates keys to each other and to the repository: a model's kind must have an
implementation, its datasets and ``weights_from`` must exist, plain SAM 2 must use FIFO
memory, a tracker model needs weights from somewhere. Every message names the key.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

#: kinds served by this package's own train/predict rules (workflow/rules/medsam2.smk)
TRACKER_KINDS = ("medsam2", "sam2")
REPO_ROOT = Path(__file__).resolve().parents[1]


class ConfigError(ValueError):
    """The config is inconsistent; the message names the offending key."""


def baseline_kinds(repo_root: Path = REPO_ROOT) -> list[str]:
    """Kinds implemented as a baseline folder with a rules.smk."""
    return sorted(p.parent.name for p in (repo_root / "baselines").glob("*/rules.smk"))


def known_kinds(repo_root: Path = REPO_ROOT) -> list[str]:
    return sorted(set(TRACKER_KINDS) | set(baseline_kinds(repo_root)))


def model_datasets(config: dict, model: str) -> list[str]:
    """The datasets a model is evaluated on (default: all datasets of the config)."""
    return list(config["models"][model].get("datasets") or config["datasets"])


def predict_spec(spec: dict, dataset: str) -> dict:
    """A model spec as it predicts ``dataset``: its ``predict`` block only where that block
    applies (``predict.datasets``, default all), without the ``datasets`` key.

    Why: prediction options are tuned on data, like nnU-Net's postprocessing, and one model
    is evaluated on several datasets; the demo's trackers predict 3D volumes larger than
    they trained, which helps there and not on the 2D image sets.
    """
    block = dict(spec.get("predict") or {})
    listed = block.pop("datasets", None)
    out = {k: v for k, v in spec.items() if k != "predict"}
    if block and (listed is None or dataset in listed):
        out["predict"] = block
    return out


def is_trained(spec: dict) -> bool:
    return spec.get("kind") in TRACKER_KINDS and "train" in spec


def check_config(config: dict, repo_root: Path = REPO_ROOT) -> None:
    """Raise ConfigError on the first inconsistency (after the schema has passed)."""
    datasets, models = config["datasets"], config["models"]
    kinds = known_kinds(repo_root)
    registry_dir = Path(config.get("registry_dir", repo_root / "config" / "datasets"))
    for name, spec in datasets.items():
        key = f"datasets.{name}"
        if spec["source"] == "synthetic" and "generator" not in spec:
            raise ConfigError(f"{key}.generator: required for source 'synthetic'")
        if spec["source"] == "local" and "path" not in spec:
            raise ConfigError(f"{key}.path: required for source 'local'")
        if spec["source"] == "registry":
            reg = registry_dir / f"{spec.get('registry', name)}.yaml"
            if not reg.is_file():
                raise ConfigError(f"{key}.registry: no registry file {reg}")
    for name, spec in models.items():
        key = f"models.{name}"
        if spec["kind"] not in kinds:
            raise ConfigError(f"{key}.kind: unknown kind '{spec['kind']}' (known: {kinds}; "
                              f"a new kind needs baselines/<kind>/rules.smk)")
        for ds in spec.get("datasets") or []:
            if ds not in datasets:
                raise ConfigError(f"{key}.datasets: '{ds}' is not a dataset of this config")
        for ds in (spec.get("train") or {}).get("datasets") or []:
            if ds not in datasets:
                raise ConfigError(f"{key}.train.datasets: '{ds}' is not a dataset of this config")
        if spec["kind"] in TRACKER_KINDS:
            src = spec.get("weights_from")
            if src is not None and (src not in models or not is_trained(models[src])):
                raise ConfigError(f"{key}.weights_from: '{src}' is not a trained model")
            if src is not None:
                _require_same(spec, key, models[src], f"models.{src}",
                              ("preprocess", "multimask_tracking"))
            if not (is_trained(spec) or src or spec.get("checkpoint")):
                raise ConfigError(f"{key}: needs 'train', 'weights_from' or 'checkpoint'")
            _check_pretrained(config, name)
        if spec.get("predict") and spec["kind"] not in TRACKER_KINDS:
            raise ConfigError(f"{key}.predict: only trackers {sorted(TRACKER_KINDS)} read it")
        for ds in (spec.get("predict") or {}).get("datasets") or []:
            if ds not in datasets:
                raise ConfigError(f"{key}.predict.datasets: '{ds}' is not a dataset of this "
                                  f"config")
        if spec["kind"] == "sam2" and (spec.get("memory") or {}).get("policy", "fifo") != "fifo":
            raise ConfigError(f"{key}.memory.policy: plain SAM 2 uses 'fifo' memory")
    main = (config.get("report") or {}).get("main_model")
    if main is not None and main not in models:
        raise ConfigError(f"report.main_model: '{main}' is not a model of this config")


#: model keys that decide the shape or behaviour of a tracker's weights. Not
#: ``image_size``: SAM 2's parameters do not depend on it (Hiera's window position
#: embedding is interpolated, the RoPE tables of the memory attention are rebuilt), so a
#: tracker pretrained small may be fine-tuned larger, as Meta's 1024 px weights are
#: fine-tuned at other sizes.
ARCH_KEYS = ("arch", "multimask_tracking")


def _check_pretrained(config: dict, name: str) -> None:
    """A model's ``pretrained`` entry exists, is trained from, and built the same way."""
    spec, key = config["models"][name], f"models.{name}.pretrained"
    src = spec.get("pretrained")
    if src is None:
        return
    entries = config.get("pretrain") or {}
    if src not in entries:
        raise ConfigError(f"{key}: '{src}' is not an entry of 'pretrain' "
                          f"(known: {sorted(entries)})")
    if not is_trained(spec):
        raise ConfigError(f"{key}: only a model with 'train' starts from pretrained weights")
    if spec.get("checkpoint"):
        raise ConfigError(f"{key}: give 'pretrained' or 'checkpoint', not both")
    _require_same(spec, f"models.{name}", entries[src], f"pretrain.{src}", ARCH_KEYS)


#: what a tracker spec without the key is built with (read by build_from_config too)
BUILD_DEFAULTS = {"arch": "tiny", "image_size": 128}


def _require_same(spec: dict, key: str, source: dict, source_key: str,
                  names: tuple[str, ...]) -> None:
    """Weights from ``source`` need a model built as ``source`` was: these keys equal."""
    for name in names:
        mine, theirs = (s.get(name, BUILD_DEFAULTS.get(name)) for s in (spec, source))
        if mine != theirs:
            raise ConfigError(f"{key}.{name}: must equal {source_key}.{name} "
                              f"({theirs!r}; the weights were trained with it)")


def prompt_kind(config: dict, dataset: str, repo_root: Path = REPO_ROOT) -> str:
    """Evaluation prompt of a dataset: config, else its registry file, else box."""
    spec = config["datasets"][dataset]
    if spec.get("prompt"):
        return spec["prompt"]
    if spec["source"] == "registry":
        registry_dir = Path(config.get("registry_dir", repo_root / "config" / "datasets"))
        reg = yaml.safe_load((registry_dir / f"{spec.get('registry', dataset)}.yaml").read_text())
        return reg.get("prompt", "box")
    return "box"


def _cli(args: argparse.Namespace) -> int:
    if args.action == "resolve":
        cfg = json.loads(args.json)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        return 0
    cfg = yaml.safe_load(args.configfile.read_text())
    check_config(cfg)
    print(f"{args.configfile}: ok")
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("config", help="check a config, or write the resolved config")
    p.add_argument("action", choices=["check", "resolve"])
    p.add_argument("--configfile", type=Path, help="check: the YAML to check")
    p.add_argument("--json", help="resolve: the config as JSON (as Snakemake resolved it)")
    p.add_argument("--out", type=Path, help="resolve: where to write it")
    p.set_defaults(func=_cli)


def add_model_config_args(parser: argparse.ArgumentParser) -> None:
    """``--model-json`` (what rules pass) or ``--model-config`` (a YAML/JSON file)."""
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--model-json", help="one model's config entry as JSON")
    group.add_argument("--model-config", type=Path, help="one model's config entry as YAML/JSON")


def model_config_from_args(args: argparse.Namespace) -> dict:
    if args.model_json is not None:
        return json.loads(args.model_json)
    return yaml.safe_load(args.model_config.read_text())  # YAML is a superset of JSON
