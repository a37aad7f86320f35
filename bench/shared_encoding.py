"""Benchmark: a multi-label volume predicted with its frames encoded once vs per label.

Why: the paper's BTCV protocol tracks 13 organs of each volume, each in 6 orientations
(3 axes x forward/reversed). The image encoder's output of a frame does not depend on the
label or the direction, yet the first version encoded every frame once per label and
direction: 13 x 2 encodings per frame and axis. ``medsam2.predict`` now encodes each
axis's frames once (``ChunkedFeatures.for_passes``; reversed passes read them back to front)
and tracks every label and direction in one pass, the objects on a frame batched
(``medsam2.model.predictor.segment_objects``).

Same model (random init), same volume, same prompts, one process. ``shared`` is
``predict_volume`` as the pipeline runs it; ``per_label`` reproduces the first version's
cost by giving every (label, direction) pass its own freshly encoded frames, one pass
after the other. Both are timed as
the fastest of ``--repeats`` runs (other processes on a shared machine only add time).
The masks of both are compared as well (same up to float rounding in batched encoding).

    python bench/shared_encoding.py                       # tiny arch, 128 px, 4 labels
    python bench/shared_encoding.py --arch hiera_t --image-size 512 --labels 13

Last line: ``RESULT shared_encoding_speedup <per_label / shared>`` of the wall time.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from medsam2.data.frames import Intensity, slices, unslice
from medsam2.data.prompts import volume_prompts
from medsam2.model.build import build_model
from medsam2.predict import Orientations, _Sequence, labels_from_scores, predict_volume


def phantom(labels: int, shape: tuple[int, int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A volume with ``labels`` ellipsoids of distinct intensities (values 1..labels)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    label = np.zeros(shape, np.uint8)
    for v in range(1, labels + 1):
        centre = rng.uniform(0.25, 0.75, 3) * shape
        radii = rng.uniform(0.08, 0.18, 3) * shape
        label[(((grid - centre) / radii) ** 2).sum(-1) <= 1] = v
    image = label * (400.0 / labels) - 100 + rng.normal(0, 10, shape)
    return image.astype(np.float32), label


def per_label(model, image, intensity, prompts, label, labels, image_size, orientations):
    """The old cost: every (label, direction) pass encodes its frames afresh."""
    norm = intensity.apply(image)
    logits: dict[str, list[np.ndarray]] = {name: [] for name in prompts}
    for axis in orientations.axes:
        stack = slices(norm, axis)
        for name, plist in prompts.items():
            prompt = next(p for p in plist if p.axis == axis)
            gt = np.take(label == labels[name], prompt.frame, axis=axis)
            for reverse in (False, True) if orientations.reverse else (False,):
                seq = _Sequence(model, stack, image_size, 16, crop=False, passes=1)
                logits[name].append(unslice(seq.logits([prompt], [gt], reverse), axis, 3))
    scores = {labels[n]: orientations.fuse(lg) for n, lg in logits.items()}
    return labels_from_scores(scores, image.shape)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="tiny")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--labels", type=int, default=4)
    ap.add_argument("--shape", type=int, nargs=3, default=(48, 48, 32))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = build_model(args.arch, args.image_size, {"policy": "fifo"}, seed=0).eval()
    image, label = phantom(args.labels, tuple(args.shape), seed=0)
    labels = {f"l{v}": v for v in range(1, args.labels + 1) if (label == v).any()}
    prompts = {n: volume_prompts(label == v, "mask") for n, v in labels.items()}
    six = Orientations((0, 1, 2), reverse=True)
    intensity = Intensity("ct", -160, 240)
    call = (model, image, intensity, prompts, label, labels, args.image_size, six)
    times: dict[str, float] = {}
    preds = {}
    with torch.inference_mode():
        for name, fn in (("shared", predict_volume), ("per_label", per_label)):
            best = float("inf")
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                preds[name] = fn(*call)
                best = min(best, time.perf_counter() - t0)
            times[name] = best
            print(f"{name:10s} {best:7.2f} s  ({len(labels)} labels x 6 orientations, "
                  f"volume {tuple(args.shape)}, {args.arch} at {args.image_size} px)")
    agree = float((preds["shared"] == preds["per_label"]).mean())
    print(f"voxels with the same label: {agree:.5f}")
    print(f"RESULT shared_encoding_speedup {times['per_label'] / times['shared']:.2f}")


if __name__ == "__main__":
    main()
