"""Pretrain a tracker on synthetic moving-shape videos (the demo's SAM 2 weights).

The paper fine-tunes Meta's SAM 2, which already tracks; the CPU demo cannot download it,
so ``medsam2 pretrain`` makes a tiny SAM 2 that tracks: the training loop of
:mod:`medsam2.train` on the clips of :mod:`medsam2.data.videos` instead of a dataset's.
MedSAM-2 and plain SAM 2 are then both trained from this checkpoint (config: a
``pretrain`` entry, named by the models' ``pretrained`` key), as in the paper both start
from the same SAM 2 weights.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from medsam2.data.frames import to_model_frames
from medsam2.data.prompts import make_prompt
from medsam2.data.videos import VIDEOS, VideoSampler
from medsam2.fileio import parse_json, read_json
from medsam2.model.build import build_from_spec
from medsam2.model.predictor import segment_objects
from medsam2.spec import PretrainSpec
from medsam2.train import train
from medsam2.typed import parse

#: own - other Dice below which a pretraining is reported as not tracking
MIN_MARGIN = 0.3


def tracking_scores(model, make_clip: Callable, rng: np.random.Generator, frames: int = 4,
                    clips: int = 20) -> tuple[float, float]:
    """Mean Dice of the unprompted frames of fresh clips with the prompted object (own)
    and with the other one (other), each object prompted in turn with its mask.

    A tracker that follows the prompt scores own >> other; one that ignores its memory
    predicts the same for both prompts, so own == other. Tracked by the predictor's own
    loop (``medsam2.model.predictor.segment_objects``): what is checked is what predicts.
    """
    own, other = [], []
    size = model.image_size
    model.eval()
    with torch.inference_mode():
        for _ in range(clips):
            images, objects = make_clip(rng, frames)
            prompts = []
            for k in (0, 1):
                first = objects[k][0]
                _, mask_in = make_prompt("mask", first, 0, rng, 0.0).model_inputs(
                    first.shape, size, first)
                prompts.append({0: (None, mask_in)})
            # both objects tracked together, as predictions are
            lows = segment_objects(model, to_model_frames(images, size), prompts)
            for k, low in enumerate(lows):
                # the model's own high-resolution masks, then the clip's size
                high = F.interpolate(low, size=(size, size), mode="bilinear",
                                     align_corners=False)
                for t in range(1, frames):
                    pred = F.interpolate(high[t:t + 1], size=objects[k][t].shape)[0, 0]
                    pred = pred.numpy() > 0
                    for scores, gt in ((own, objects[k][t]), (other, objects[1 - k][t])):
                        scores.append(2 * (pred & gt).sum() / max(1, pred.sum() + gt.sum()))
    return float(np.mean(own)), float(np.mean(other))


def pretrain(entry: PretrainSpec, out_dir: Path, seed: int = 0, resume: bool = True) -> Path:
    """Train ``spec`` (a ``pretrain`` entry of the config: architecture keys, ``videos``,
    ``restarts`` and ``train``) on synthetic videos; returns ``out_dir/checkpoint.pt``.

    Then measures whether it tracks (:func:`tracking_scores` per video kind, into
    ``out_dir/tracking.json`` and the log): from random init, learning to use the memory
    is a bifurcation that some seeds miss (experiments/twins.py), and a model that missed it
    gives the fine-tuned trackers nothing to start from. Such a run is started again from
    another initialisation (seed + 1000 x attempt), at most ``restarts`` times.
    """
    spec = entry.tracker()  # SAM 2 with FIFO memory, as Meta trains it
    kinds, restarts = list(entry.videos), entry.restarts
    frames = entry.train.clip_len  # tracking is checked on clips as long as trained
    # The attempt in progress is on disk: a resumed job continues the run it was killed
    # in (last.pt holds that attempt's weights), under that attempt's seed and label.
    state = out_dir / "attempt.json"
    first = (read_json(state, "pretraining attempt record", require=("attempt",))["attempt"]
             if resume and state.is_file() else 0)
    out_dir.mkdir(parents=True, exist_ok=True)
    for attempt in range(first, restarts + 1):
        run_seed = seed + 1000 * attempt
        state.write_text(json.dumps({"attempt": attempt, "seed": run_seed}) + "\n")
        final = train(spec, [], out_dir, seed=run_seed, resume=resume and attempt == first,
                      sampler=VideoSampler(kinds), recipe_extra={"videos": kinds})
        model = build_from_spec(spec, run_seed, final, postprocessing=False)
        rng = np.random.default_rng([run_seed, 1])  # clips the training never drew
        scores = {}
        for kind in kinds:
            own, other = tracking_scores(model, VIDEOS[kind], rng, frames)
            scores[kind] = {"own": round(own, 4), "other": round(other, 4)}
            print(f"tracking {kind}: Dice with the prompted object {own:.3f}, "
                  f"with the other one {other:.3f}")
        failed = [k for k, v in scores.items() if v["own"] - v["other"] < MIN_MARGIN]
        report = {"seed": run_seed, "attempt": attempt, "tracks": not failed, "scores": scores}
        (out_dir / "tracking.json").write_text(json.dumps(report, indent=2) + "\n")
        if not failed:
            break
        print(f"WARNING: {out_dir} (seed {run_seed}): the pretrained tracker does not "
              f"follow the prompted object on {failed} (own - other Dice < {MIN_MARGIN})"
              + ("; starting again from another initialisation" if attempt < restarts
                 else "; models fine-tuned from it will not either"))
    return final


def _cli(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    entry = parse(PretrainSpec, parse_json(args.spec_json, "--spec-json", "pretrain spec"),
                  "--spec-json")
    pretrain(entry, args.out_dir, seed=args.seed,
             resume=not args.no_resume)
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("pretrain", help="pretrain a tracker on synthetic videos")
    p.add_argument("--spec-json", required=True, help="a `pretrain` entry's spec as JSON")
    p.add_argument("--out-dir", required=True, type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1 is fastest for SAM 2 on small CPUs)")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing last.pt")
    p.set_defaults(func=_cli)
