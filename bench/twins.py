"""Experiment: can the tiny tracker learn, from scratch, to follow the prompted one of two
identical discs? Only its memory can tell them apart after the prompted frame.

Why: on the demo's organ + lesion volumes every training recipe tried ended with a memory
that ignores the prompt (``bench/memory_use.py``: memory_prompt_dependence 0.2 at init,
0.0003-0.007 after training). This isolates the memory from everything else: two discs
of the same size and brightness drift over T frames; a prediction that follows the wrong
disc, or both, scores ``other`` > 0.

Measured (2 CPU cores, 800 steps of 4-frame clips, both discs trained per clip, no
corrective clicks, ~3.5 min each):

    --recipe mask    clips prompted with the true mask         own 0.965  other 0.003
    --recipe mixed   mask 50 % / click 25 % / box 25 %          own 0.649  other 0.649
    --recipe single  mask-prompted clips + 50 % single frames   own 0.972  other 0.000
                     prompted with a click or a box

So the architecture and the training loop can learn memory-based identity; prompting
clips with clicks or boxes from scratch (whose early masks are wrong, so the memory lies)
teaches the model to ignore its memory (``train.single_frame_fraction`` exists for this).
The organ + lesion phantom still collapses with the ``single`` recipe: see issue 2's note.

    python bench/twins.py --recipe single --steps 800
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from medsam2.data.frames import to_model_frames, to_model_masks
from medsam2.data.prompts import make_prompt
from medsam2.model.build import build_model
from medsam2.train import (
    SINGLE_FRAME_PROMPTS,
    TrainConfig,
    _simulated_prompts,
    clip_loss,
    encode_clip,
    lr_factor,
    param_groups,
)

SIZE = 64
RECIPES = {"mask": ((1.0, 0.0, 0.0), 0.0), "mixed": ((0.5, 0.25, 0.25), 0.0),
           "single": ((1.0, 0.0, 0.0), 0.5)}


def twins_clip(rng: np.random.Generator, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(T, S, S) images in [0, 1] and (2, T, S, S) masks of two identical drifting discs."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    centres = rng.uniform(14, 50, (2, 2))
    while np.linalg.norm(centres[0] - centres[1]) < 22:
        centres = rng.uniform(14, 50, (2, 2))
    drift, radius = rng.normal(0, 1.0, (2, 2)), rng.uniform(6, 9)
    images, masks = [], []
    for t in range(frames):
        c = centres + drift * t
        m = np.stack([(yy - c[k, 0]) ** 2 + (xx - c[k, 1]) ** 2 <= radius ** 2 for k in (0, 1)])
        m[1] &= ~m[0]
        img = 0.3 + 0.4 * (m[0] | m[1]) + rng.normal(0, 0.05, (SIZE, SIZE))
        images.append(np.clip(img, 0, 1))
        masks.append(m)
    return np.stack(images).astype(np.float32), np.stack(masks, 1)


def evaluate(model, rng: np.random.Generator, frames: int, clips: int = 20) -> tuple[float, float]:
    """Mean Dice of the unprompted frames with the prompted disc and with the other one."""
    own, other = [], []
    model.eval()
    with torch.inference_mode():
        for _ in range(clips):
            images, objects = twins_clip(rng, frames)
            feats, pos, sizes = encode_clip(model, to_model_frames(images, 128))
            for k in (0, 1):
                prompt = make_prompt("mask", objects[k][0], 0, rng, 0.0)
                _, mask_in = prompt.model_inputs(objects[k][0].shape, 128, objects[k][0])
                out_dict = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
                model.memory_policy.reset()
                for t in range(frames):
                    out = model.track_step(t, t == 0, [f[:, t:t + 1] for f in feats],
                                           [p[:, t:t + 1] for p in pos], sizes, None,
                                           mask_in if t == 0 else None, out_dict, frames)
                    out_dict["cond_frame_outputs" if t == 0 else "non_cond_frame_outputs"][t] = out
                    if t == 0:
                        continue
                    pred = F.interpolate(out["pred_masks_high_res"].float(),
                                         size=(SIZE, SIZE))[0, 0].numpy() > 0
                    for scores, gt in ((own, objects[k][t]), (other, objects[1 - k][t])):
                        scores.append(2 * (pred & gt).sum() / max(1, pred.sum() + gt.sum()))
    return float(np.mean(own)), float(np.mean(other))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", choices=sorted(RECIPES), default="single")
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    probs, single = RECIPES[args.recipe]
    cfg = TrainConfig(steps=args.steps, lr=1e-3, prompt_probs=probs, max_corrections=0)
    model = build_model("tiny", 128, {"policy": "fifo"}, seed=args.seed, postprocessing=False)
    model.train()
    optimizer = torch.optim.AdamW(param_groups(model, cfg), weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, cfg.steps, cfg.warmup_fraction))
    rng, cpu, t0 = np.random.default_rng(args.seed), torch.device("cpu"), time.time()
    for step in range(args.steps):
        images, objects = twins_clip(rng, args.frames)
        kinds = probs
        if rng.random() < single:
            images, objects, kinds = images[:1], objects[:, :1], SINGLE_FRAME_PROMPTS
        frames = to_model_frames(images, 128)
        encoded = encode_clip(model, frames)
        loss = torch.stack([
            clip_loss(model, frames, to_model_masks(m, 128),
                      *_simulated_prompts(m, 128, kinds, cfg, rng, cpu), rng, encoded)
            for m in objects]).mean()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        if step % 100 == 0:
            print(f"step {step} loss {loss.item():.3f} {time.time() - t0:.0f} s", flush=True)
    own, other = evaluate(model, np.random.default_rng(args.seed + 123), args.frames)
    print(f"RESULT twins_{args.recipe}_own {own:.3f}")
    print(f"RESULT twins_{args.recipe}_other {other:.3f}")


if __name__ == "__main__":
    main()
