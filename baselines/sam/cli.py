"""SAM / MedSAM baseline (segment-anything): predict a dataset's test split from prompts.

`medsam2 sam predict` is the thin command line over baselines.sam.runner; the runner
(torch, segment-anything) is imported only when the sub-command runs, so that
``medsam2 --help`` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from medsam2.config import add_model_config_args, model_spec_from_args
from medsam2.typed import SpecError


def _predict(args: argparse.Namespace) -> int:
    import torch

    from baselines.sam.runner import predict_dataset
    from baselines.sam.spec import SamSpec

    spec = model_spec_from_args(args)
    if not isinstance(spec, SamSpec):
        raise SpecError("kind", f"'{spec.kind}' is not a segment-anything model", "sam")
    torch.set_num_threads(args.threads)
    written = predict_dataset(spec, args.checkpoint, args.dataset_dir, args.prompts,
                              args.out_dir, seed=args.seed)
    print(f"wrote {len(written)} predictions to {args.out_dir}")
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("sam", help="SAM / MedSAM baseline: predict from prompts")
    sub = p.add_subparsers(dest="sam_command", required=True, metavar="<step>")
    q = sub.add_parser("predict", help="predict the test split, image by image or slice "
                                       "by slice")
    add_model_config_args(q)
    q.add_argument("--checkpoint", type=Path, default=None,
                   help="segment-anything state dict (none: random init, for smoke tests)")
    q.add_argument("--dataset-dir", required=True, type=Path, help="standard dataset folder")
    q.add_argument("--prompts", required=True, type=Path,
                   help="the dataset's evaluation prompts (rule prompts)")
    q.add_argument("--out-dir", required=True, type=Path, help="prediction folder to write")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    q.set_defaults(func=_predict)
