"""nnU-Net v2 baseline: plan, train, predict.

`medsam2 nnunet plan|train|predict` is the thin command line over baselines.nnunet.runner.
Each sub-command does one Snakemake rule's work and writes a small JSON record (what was
done, where nnU-Net put it, how long it took) that the next rule reads. The runner is
imported only when a sub-command runs, so ``medsam2 --help`` does not import torch.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from medsam2.config import add_model_config_args, model_spec_from_args
from medsam2.fileio import read_json


def _write_record(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")


def _read_record(path: Path) -> dict:
    return read_json(path, "nnU-Net record", require=(), error=SystemExit)


def _plan(args: argparse.Namespace) -> int:
    from baselines.nnunet.runner import plan_and_preprocess

    record = plan_and_preprocess(args.dataset_dir, args.root, args.configurations.split(","),
                                 args.threads, args.plans.split(","))
    _write_record(args.out, record)
    print(json.dumps(record, indent=2))
    return 0


def _train(args: argparse.Namespace) -> int:
    from baselines.nnunet.runner import train

    spec = model_spec_from_args(args)
    fold = args.fold if args.fold == "all" else int(args.fold)
    record = train(_read_record(args.plan), spec, args.root, args.model, fold,
                   args.dataset_dir, args.threads, args.seed)
    _write_record(args.out, record)
    print(json.dumps(record, indent=2))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from baselines.nnunet.runner import predict

    spec = model_spec_from_args(args)
    records = [_read_record(p) for p in args.trained]
    written = predict(records, args.dataset_dir, args.out_dir, spec, args.root, args.threads)
    print(f"wrote {len(written)} predictions to {args.out_dir}")
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("nnunet", help="nnU-Net v2 baseline: plan, train, predict")
    sub = p.add_subparsers(dest="nnunet_command", required=True, metavar="<step>")

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--dataset-dir", required=True, type=Path, help="standard dataset folder")
        q.add_argument("--root", required=True, type=Path,
                       help="our nnU-Net tree (nnUNet_raw, _preprocessed, _results)")
        q.add_argument("--threads", type=int, default=2, help="CPU threads / worker processes")

    q = sub.add_parser("plan", help="fingerprint, plan and preprocess one dataset")
    common(q)
    q.add_argument("--configurations", default="auto",
                   help="comma list of auto / 2d / 3d_fullres / 3d_lowres to preprocess")
    q.add_argument("--plans", default="nnUNetPlans",
                   help="comma list of plans identifiers: nnUNetPlans (stock) and/or variants "
                        "nnUNetPlans[_f<base>-<max>][_s<z>x<y>x<x>] (a model's network widths "
                        "and target_spacing)")
    q.add_argument("--out", required=True, type=Path, help="plan record (JSON) to write")
    q.set_defaults(func=_plan)

    q = sub.add_parser("train", help="train one fold of one nnU-Net model")
    common(q)
    add_model_config_args(q)
    q.add_argument("--model", required=True, help="model name (its own nnUNet_results tree)")
    q.add_argument("--plan", required=True, type=Path, help="record written by `plan`")
    q.add_argument("--fold", default="0", help="fold number or 'all'")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--out", required=True, type=Path, help="train record (JSON) to write")
    q.set_defaults(func=_train)

    q = sub.add_parser("predict", help="predict the test split (ensemble of the given folds)")
    common(q)
    add_model_config_args(q)
    q.add_argument("--trained", required=True, type=Path, nargs="+",
                   help="train records, one per fold")
    q.add_argument("--out-dir", required=True, type=Path, help="prediction folder to write")
    q.set_defaults(func=_predict)
