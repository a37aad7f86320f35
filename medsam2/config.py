"""`medsam2 config check|schema|resolve`, and how a stage reads the spec a rule hands it.

The specs themselves (types, defaults, checks) live in :mod:`medsam2.spec`; this module is
the command line over them and the one helper every stage uses to read its
``--model-json`` / ``--model-config`` argument.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from medsam2.fileio import parse_json, read_yaml
from medsam2.spec import (
    REPO_ROOT,
    Config,
    ModelSpec,
    TrackerSpec,
    config_schema,
    load_config,
    parse_model,
)
from medsam2.typed import SpecError


def schema_text(repo_root: Path = REPO_ROOT) -> str:
    """The config schema as the YAML file the repository ships (generated, not edited)."""
    head = ("# GENERATED from medsam2/spec.py by `medsam2 config schema`; do not edit.\n"
            "# For editors (yaml-language-server); the workflow checks configs with the "
            "specs.\n")
    return head + yaml.safe_dump(config_schema(repo_root), sort_keys=False, width=88)


def _cli(args: argparse.Namespace) -> int:
    if args.action == "schema":
        text = schema_text()
        if args.out:
            args.out.write_text(text)
        else:
            sys.stdout.write(text)
        return 0
    if args.action == "resolve":
        cfg = Config.from_dict(parse_json(args.json, "--json", "resolved config"), "--json")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(cfg.to_dict(), indent=2, sort_keys=True) + "\n")
        return 0
    if args.configfile is None:
        print("medsam2 config check: --configfile is required", file=sys.stderr)
        return 2
    try:
        cfg = load_config(args.configfile)
    except SpecError as err:
        print(err, file=sys.stderr)
        return 1
    print(f"{args.configfile}: ok ({len(cfg.datasets)} datasets, {len(cfg.models)} models, "
          f"{len(cfg.model_dataset_pairs())} model-dataset pairs)")
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("config", help="check a config, print its schema, or write "
                                             "the resolved config")
    p.add_argument("action", choices=["check", "schema", "resolve"])
    p.add_argument("--configfile", type=Path, help="check: the YAML to check")
    p.add_argument("--json", help="resolve: the config as JSON (as Snakemake resolved it)")
    p.add_argument("--out", type=Path, help="resolve / schema: where to write it")
    p.set_defaults(func=_cli)


def add_model_config_args(parser: argparse.ArgumentParser) -> None:
    """``--model-json`` (what rules pass) or ``--model-config`` (a YAML/JSON file)."""
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--model-json", help="one model's spec as JSON")
    group.add_argument("--model-config", type=Path, help="one model's spec as YAML/JSON")


def model_spec_from_args(args: argparse.Namespace) -> ModelSpec:
    """The model spec a stage was handed, parsed (SpecError names the key)."""
    if args.model_json is not None:
        return parse_model(parse_json(args.model_json, "--model-json", "model spec"),
                           "--model-json")
    source = str(args.model_config)
    data = read_yaml(args.model_config, "model spec")  # YAML is a superset of JSON
    try:
        return parse_model(data, "model")
    except SpecError as err:
        raise err.in_file(source) from None


def tracker_spec_from_args(args: argparse.Namespace) -> TrackerSpec:
    spec = model_spec_from_args(args)
    if not isinstance(spec, TrackerSpec):
        raise SpecError("kind", f"'{spec.kind}' is not a tracker", "medsam2 or sam2")
    return spec
