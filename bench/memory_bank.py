"""Benchmark: per-frame cost of MedSAM-2's self-sorting memory bank vs SAM 2's FIFO.

Why: the self-sorting bank (confidence gate, dissimilarity top-K, similarity resampling)
does extra work on every frame: flattening and normalising memory and image features,
similarities to the K bank entries, a top-K, a softmax and a multinomial draw. The target:
this cost stays within 5 % of the FIFO per-frame propagation time.

Same model weights, same volume, same prompt, one process; both policies attend to the
same number of memories (resampling draws ``num_maskmem - 1`` with replacement), so any
difference is the bank's bookkeeping. The confidence threshold is 0 so that every frame
enters the bank (a random-init model's IoU head would otherwise keep the bank empty and
make self-sorting look *cheaper*): the worst case for the bank's cost.

Volume: a synthetic CT phantom (``medsam2.data.phantoms.abdomen3d_case``), axial slices
resampled to ``--frames`` slices; box prompt on the organ's key slice; propagated both
ways with ``medsam2.model.predictor.segment_sequence``. Each ``track_step`` call (memory
selection + attention + decoder + memory encoder + policy update, i.e. everything but
the image encoder) is timed in thread CPU time (``--threads 1``, see ``CLOCK``);
``propagate`` = their sum per frame, ``total`` = the whole
``segment_sequence`` call per frame (image encoder included). One warm-up run per policy,
then ``--repeats`` interleaved runs (fifo, self_sorting, fifo, ...). ``propagate`` is the
sum over frames of each frame's fastest step over the repeats (other processes on a
shared machine only add time; this filters them); the median per-run figure and its range
are shown too. The time spent inside the policy itself (``select`` + ``observe``) is the
bank's bookkeeping alone. Beyond it, self-sorting also attends to ``num_maskmem - 1``
resampled memories from the second frame of each direction on, where FIFO has fewer.

    python bench/memory_bank.py                         # tiny arch, 256 px, 64 frames
    python bench/memory_bank.py --arch hiera_t --repeats 3

Last line: ``RESULT memory_bank_overhead <self_sorting / fifo - 1>`` of the per-frame
``propagate`` time.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from scipy import ndimage

from medsam2.data.frames import Intensity, slices, to_model_frames
from medsam2.data.phantoms import abdomen3d_case
from medsam2.data.prompts import SLICE_AXIS_3D, box_prompt, key_slice
from medsam2.model.build import build_model
from medsam2.model.memory import FifoPolicy, MemoryPolicy, SelfSortingPolicy
from medsam2.model.predictor import segment_sequence

#: CPU time of this thread: with one torch thread it is what the work costs, and unlike
#: wall time it does not grow when other processes share the cores (wall time otherwise)
CLOCK = time.thread_time


def phantom_sequence(frames: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(T, H, W) [0, 1] axial slices of a CT phantom and its organ mask, T = ``frames``."""
    image, label = abdomen3d_case(np.random.default_rng(seed))
    img = slices(Intensity.for_channel("CT").apply(image.array), SLICE_AXIS_3D)
    mask = slices(label.array > 0, SLICE_AXIS_3D)
    zoom = (frames / img.shape[0], 1.0, 1.0)
    img = ndimage.zoom(img, zoom, order=1)
    mask = ndimage.zoom(mask.astype(np.uint8), zoom, order=0).astype(bool)
    return img, mask


def policies(seed: int) -> dict[str, MemoryPolicy]:
    return {
        "fifo": FifoPolicy(),
        "self_sorting": SelfSortingPolicy(confidence=True, dissimilarity=True, resampling=True,
                                          confidence_threshold=0.0, seed=seed),
    }


def _timed(record: list[float], fn):
    def wrapper(*args, **kwargs):
        t0 = CLOCK()
        out = fn(*args, **kwargs)
        record.append(CLOCK() - t0)
        return out
    return wrapper


def timed_run(model, frames: torch.Tensor, prompts: dict) -> dict:
    """Seconds per frame: ``total`` (segment_sequence), ``prop`` (inside track_step) and
    ``policy`` (inside the policy's select + observe, part of ``prop``); ``steps``: the
    seconds of each track_step call, in call order (the same order in every run)."""
    steps: list[float] = []
    policy_calls: list[float] = []
    # the tracker spawns one policy per object: time the policy class's methods, and the
    # model's two step methods (prompted frames one by one, tracked frames batched)
    cls = type(model.memory_policy)
    originals = {name: getattr(cls, name) for name in ("select", "observe")}
    for name, fn in originals.items():
        setattr(cls, name, _timed(policy_calls, fn))
    model.track_step = _timed(steps, model.track_step)
    model.track_objects_step = _timed(steps, model.track_objects_step)
    try:
        t0 = CLOCK()
        segment_sequence(model, frames, prompts)
        total = CLOCK() - t0
    finally:
        del model.track_step, model.track_objects_step
        for name, fn in originals.items():
            setattr(cls, name, fn)
    n = frames.shape[0]
    if len(steps) != n:
        raise RuntimeError(f"{len(steps)} track steps for {n} frames")
    return {"total": total / n, "prop": sum(steps) / n, "policy": sum(policy_calls) / n,
            "steps": steps}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="tiny", help="model architecture (tiny, hiera_t, ...)")
    ap.add_argument("--size", type=int, default=256, help="model input size (px)")
    ap.add_argument("--frames", type=int, default=64, help="slices of the volume")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; CPU-time figures are only meaningful with 1")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.threads != 1:  # other threads' work is not on this thread's CPU clock
        global CLOCK
        CLOCK = time.perf_counter

    img, mask = phantom_sequence(args.frames, args.seed)
    key = key_slice(mask, axis=0)
    prompt = box_prompt(mask[key], key).model_inputs(mask.shape[1:], args.size)
    frames = to_model_frames(img, args.size)
    model = build_model(args.arch, args.size, {"policy": "fifo"}, seed=args.seed).eval()
    pols = policies(args.seed)
    print(f"# {args.arch} at {args.size} px, {args.frames} frames (key slice {key}), "
          f"num_maskmem {model.num_maskmem}, bank_size {pols['self_sorting'].bank_size}, "
          f"{args.threads} thread(s), {args.repeats} repeats after 1 warm-up")

    runs: dict[str, list[dict[str, float]]] = {n: [] for n in pols}
    for rep in range(args.repeats + 1):
        for name, policy in pols.items():
            model.memory_policy = policy
            run = timed_run(model, frames, {key: prompt})
            if rep > 0:  # the first round is the warm-up
                runs[name].append(run)

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name])

    def floor(name: str) -> float:
        """Per-frame propagate time, each frame's step at its fastest over the repeats:
        other processes only ever add time, so this filters their interference."""
        per_step = zip(*(r["steps"] for r in runs[name]))
        return sum(min(times) for times in per_step) / args.frames

    print(f"{'policy':<14}{'propagate ms/frame':>20}{'median (min-max)':>22}"
          f"{'policy ms/frame':>17}{'total ms/frame':>16}")
    for name in pols:
        props = [1e3 * r["prop"] for r in runs[name]]
        spread = f"{1e3 * med(name, 'prop'):.2f} ({min(props):.1f}-{max(props):.1f})"
        print(f"{name:<14}{1e3 * floor(name):>20.2f}{spread:>22}"
              f"{1e3 * med(name, 'policy'):>17.3f}{1e3 * med(name, 'total'):>16.2f}")
    overhead = floor("self_sorting") / floor("fifo") - 1
    paired = statistics.median(s["prop"] / f["prop"] - 1
                               for s, f in zip(runs["self_sorting"], runs["fifo"]))
    bank = med("self_sorting", "policy") - med("fifo", "policy")
    print(f"self_sorting vs fifo propagate: {overhead:+.4f} (per-frame floors), {paired:+.4f} "
          f"(median of paired run ratios); the policy's own extra time {1e3 * bank:.3f} "
          f"ms/frame = {bank / floor('fifo'):+.4f} of fifo propagate")
    print(f"RESULT memory_bank_overhead {overhead:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
