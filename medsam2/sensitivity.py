"""How much One-Prompt results depend on the template: the same 2D test set, several seeds.

One-Prompt Segmentation (paper Sec. 3) segments an unordered 2D image set from a single
prompted template image. Which image is the template (and the order of the others) is
chosen by the seed; this stage repeats the prediction for several seeds and scores each
run with the evaluate stage, so the spread of Dice over seeds is the sensitivity.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd
import torch

from medsam2.config import add_model_config_args, tracker_spec_from_args
from medsam2.evaluate import evaluate_dataset
from medsam2.fileio import read_json
from medsam2.predict import predict_dataset
from medsam2.spec import TrackerSpec


def template_sensitivity(spec: TrackerSpec, checkpoint: Path | None, dataset_dir: Path,
                         prompts: Path, seeds: list[int], model: str,
                         out_csv: Path, dataset: str | None = None,
                         both_empty: str = "exclude") -> pd.DataFrame:
    """Dice/HD95 per (seed, case, label) of One-Prompt runs with different templates,
    scored as the evaluate stage scores (``both_empty`` its policy); ``dataset`` names the
    config entry (default the folder's name; entries may share one standard dataset)."""
    frames = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            pred_dir = Path(tmp) / f"seed{seed}"
            predict_dataset(spec, checkpoint, dataset_dir, prompts, pred_dir, seed=seed,
                            mode_2d="one_prompt")
            template = read_json(pred_dir / "one_prompt_template.json",
                                 "One-Prompt template record", require=("template",))
            df = evaluate_dataset(dataset_dir, pred_dir, dataset or dataset_dir.name, model,
                                  pred_dir / "metrics.csv", both_empty=both_empty)
            frames.append(df.assign(seed=seed, template=template["template"]))
    out = pd.concat(frames, ignore_index=True)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(out_csv, index=False)
    per_seed = out.groupby("seed")["dice"].mean()
    print(f"mean Dice per template seed: {per_seed.round(4).to_dict()}; "
          f"spread (max - min) {per_seed.max() - per_seed.min():.4f}, std {per_seed.std():.4f}")
    return out


def _cli(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    template_sensitivity(tracker_spec_from_args(args), args.checkpoint, args.dataset_dir,
                         args.prompts, args.seeds, args.model, args.out, args.dataset,
                         args.both_empty)
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("sensitivity", help="One-Prompt template sensitivity (2D)")
    add_model_config_args(p)
    p.add_argument("--model", required=True, help="model name for the CSV")
    p.add_argument("--dataset", default=None, help="dataset name for the CSV (default: the "
                                                   "dataset folder's name)")
    p.add_argument("--both-empty", choices=("exclude", "one"), default="exclude",
                   help="evaluate.both_empty: a label absent from both masks")
    p.add_argument("--checkpoint", type=Path, default=None)
    p.add_argument("--dataset-dir", required=True, type=Path)
    p.add_argument("--prompts", required=True, type=Path)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=_cli)
