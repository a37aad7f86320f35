"""Diagnostic: does a trained tracker carry *which object* it follows through its memory?

Why: on a multi-label volume (organ with a lesion inside) the prompt decides the label on
the prompted slice only; on every other slice the memory bank alone must say "the lesion,
not the organ". A model whose memory ignores the prompt segments the same thing for both
labels (typically their union), and no amount of memory-bank sorting can help it. This
script measures that directly, on the same frames with two different prompts:

- ``memory_prompt_dependence``: |mem(organ prompt) - mem(lesion prompt)| / |mem| of the
  prompted frame's memory features (0 = the memory encoder ignores the mask);
- ``fused_prompt_dependence``: the same for the memory-conditioned features of the next
  frames (0 = memory attention passes no identity to the decoder);
- ``ptr_prompt_dependence``: the same for the object pointers;
- ``next_frame_dice_own`` / ``next_frame_dice_union``: each label's Dice on the unprompted
  frames against its own mask and against the union of both labels (union > own = the
  model segments "the organ region" whatever it was asked for).

    python experiments/memory_use.py --checkpoint results/models/medsam2-tiny/checkpoint.pt \\
        --dataset-dir results/datasets/synth3d --labels organ lesion
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from medsam2.data.frames import to_model_frames, to_model_masks
from medsam2.data.prompts import make_prompt
from medsam2.model.build import build_model, read_checkpoint
from medsam2.model.predictor import ChunkedFeatures, track
from medsam2.train import ClipSampler


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / a.norm().clamp_min(1e-12))


def _dice(pred: torch.Tensor, gt: torch.Tensor) -> float:
    inter = (pred & gt).sum().item()
    total = pred.sum().item() + gt.sum().item()
    return 2 * inter / total if total else 1.0


def track_clip(model, features: ChunkedFeatures, mask: np.ndarray, image_size: int):
    """Mask-prompt frame 0 and track (``medsam2.model.predictor.track``); (memory of frame
    0, memory-conditioned features of the next frames, pointers, masks)."""
    fused: list[torch.Tensor] = []
    hook = model.memory_attention.register_forward_hook(
        lambda _module, _args, out: fused.append(out))
    prompt = make_prompt("mask", mask[0], 0, np.random.default_rng(0), 0.0)
    _, mask_in = prompt.model_inputs(mask[0].shape, image_size, mask[0])
    try:
        results = [out for _, out in track(model, features, {0: (None, mask_in)})]
    finally:
        hook.remove()
    return (results[0]["maskmem_features"].float(), fused, [r["obj_ptr"] for r in results],
            [r["pred_masks_high_res"] > 0 for r in results])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, type=Path)
    ap.add_argument("--dataset-dir", required=True, type=Path)
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--clip-len", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = read_checkpoint(args.checkpoint)["config"]
    size = int(cfg.get("image_size", 128))
    model = build_model(cfg.get("arch", "tiny"), size, {"policy": "fifo"},
                        checkpoint=args.checkpoint).eval()
    sampler = ClipSampler([args.dataset_dir], size)
    rng = np.random.default_rng(args.seed)
    stats: dict[str, list[float]] = {k: [] for k in (
        "memory_prompt_dependence", "fused_prompt_dependence", "ptr_prompt_dependence",
        "next_frame_dice_own", "next_frame_dice_union")}
    done = 0
    while done < args.clips:
        images, objects = sampler.sample_objects(rng, args.clip_len, 2)
        if len(objects) < 2:
            continue
        done += 1
        frames = to_model_frames(images, size)
        with torch.inference_mode():
            features = ChunkedFeatures.for_passes(model, frames, passes=len(objects))
            runs = [track_clip(model, features, m, size) for m in objects]
        (mem_a, fused_a, ptr_a, _), (mem_b, fused_b, ptr_b, _) = runs
        stats["memory_prompt_dependence"].append(_rel(mem_a, mem_b))
        stats["fused_prompt_dependence"] += [_rel(a, b) for a, b in zip(fused_a, fused_b)]
        stats["ptr_prompt_dependence"] += [_rel(a, b) for a, b in zip(ptr_a[1:], ptr_b[1:])]
        union = to_model_masks(objects.any(axis=0), size) > 0.5
        for masks, (_, _, _, preds) in zip(objects, runs):
            own = to_model_masks(masks, size) > 0.5
            for t in range(1, len(preds)):
                if own[t].any():
                    stats["next_frame_dice_own"].append(_dice(preds[t][0], own[t]))
                    stats["next_frame_dice_union"].append(_dice(preds[t][0], union[t]))
    for key, values in stats.items():
        print(f"RESULT {key} {np.mean(values):.4f}  (n={len(values)})")


if __name__ == "__main__":
    main()
