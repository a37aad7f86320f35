"""Experiment: compare a tracker's *prediction* options (the ``predict`` block of its
config: input size, mirrored views, prompt-connected components) on the validation draw
of the phantoms, with weights that are already trained, never on the demo's test cases.

Why: prediction options cost no training, but like a recipe they must be chosen on
another draw than the one the demo reports (see ``experiments/recipe.py``), and over several
trained models, since one model's Dice moves with its training seed by more than these
options do. Give the checkpoints of models fine-tuned on the validation draw's training
cases (``experiments/recipe.py`` leaves them in
``results/experiments/recipe/<key>=<value>/seed<N>/``) and the variants as ``NAME=JSON``
(the whole ``predict`` block; ``{}`` = as trained).
Each variant runs the pipeline's own ``medsam2 predict`` / ``evaluate`` on every
checkpoint. Last lines: ``RESULT synth3d_dice[NAME] <mean over checkpoints>`` and
``RESULT predict_seconds[NAME] <mean seconds to predict and score synth3d>``.

    python experiments/predict_options.py \\
        --checkpoints results/experiments/recipe/steps=750/seed*/checkpoint.pt \\
        --variant plain='{}' --variant 224='{"image_size": 224}' \\
        --variant 224m='{"image_size": 224, "mirror": [[0, 1]]}'

The measurements that chose the demo's prediction options are in docs/demo.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recipe import make_data, score  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, default=Path("config/config.yaml"))
    ap.add_argument("--model", default="medsam2-tiny")
    ap.add_argument("--checkpoints", type=Path, nargs="+", required=True,
                    help="models trained on the validation draw (not the demo's)")
    ap.add_argument("--variant", action="append", required=True,
                    help="NAME=JSON: the predict block to try, e.g. 224='{\"image_size\": 224}'")
    ap.add_argument("--data-seed", type=int, default=1, help="validation draw (demo: 0)")
    ap.add_argument("--out", type=Path, default=Path("results/experiments/predict_options"))
    args = ap.parse_args()
    if args.data_seed == 0:
        ap.error("--data-seed 0 is the demo's own test set: choose on another draw")
    variants = {}
    for item in args.variant:
        name, _, block = item.partition("=")
        try:
            variants[name] = json.loads(block)
        except json.JSONDecodeError as exc:
            ap.error(f"--variant {item!r}: not NAME=JSON ({exc})")
    for ckpt in args.checkpoints:
        if not ckpt.is_file():
            ap.error(f"--checkpoints: {ckpt} is not a file")

    config = yaml.safe_load(args.config.read_text())
    data = {"synth3d": make_data(config, args.out, args.data_seed)["synth3d"]}
    rows = []
    for name, block in variants.items():
        spec = {**config["models"][args.model], "predict": block}
        spec.pop("pretrained", None)
        for n, ckpt in enumerate(args.checkpoints):
            start = time.perf_counter()
            dice = score(spec, ckpt, data, args.out / name / f"model{n}")["synth3d"]
            rows.append({"variant": name, "model": n, "synth3d": dice,
                         "seconds": time.perf_counter() - start})
            print(f"{name} model {n} ({ckpt}): synth3d {dice:.3f}", flush=True)
    table = pd.DataFrame(rows)
    print(table.pivot(index="variant", columns="model", values="synth3d").round(3).to_string())
    means = table.groupby("variant", sort=False)[["synth3d", "seconds"]].mean()
    for name, row in means.iterrows():
        print(f"RESULT synth3d_dice[{name}] {row['synth3d']:.4f}")
        print(f"RESULT predict_seconds[{name}] {row['seconds']:.1f}")


if __name__ == "__main__":
    main()
