"""Synthetic videos of moving shapes: the demo's stand-in for SAM 2's video pretraining.

MedSAM-2 is SAM 2 fine-tuned on medical images; SAM 2 learned to *track* (to follow the
prompted object through its memory) on millions of video masks (SA-V). Meta's weights
cannot be downloaded on the demo's machine, and a tracker trained from random
initialisation on a dozen CT phantoms never learns to use its memory: it segments what
looks like a target on every slice, whichever object was prompted (docs/demo.md,
experiments/twins.py). These clips teach exactly what the phantoms cannot: two objects that
only the memory can tell apart.

- ``twins``: two identical discs drifting apart over the clip;
- ``nested``: a small disc of another brightness inside a big one; object 0 is the big
  disc minus the small one (as a phantom's organ label is the organ minus its lesion);
- ``nested-vanish``: ``nested`` where in half the clips the small disc shrinks out of
  view (as a lesion ends before its organ does);
- ``nested-grow``: ``nested`` where the small disc starts tiny and grows;
- ``pairs``: two discs of different brightness at new places in every frame, as the
  unrelated images of a One-Prompt pseudo-video (added to the demo's three kinds in one
  run, the pretraining learned ``nested`` but not ``pairs`` and the fine-tuned demo scored
  lower on both synth3d and synth2d, so the demo leaves it out).

Frames are ``SIZE`` x ``SIZE`` in [0, 1]; :class:`VideoSampler` serves them to
:func:`medsam2.train.train` with the same interface as the dataset clip sampler.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

SIZE = 64


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


def nested_clip(rng: np.random.Generator, frames: int, vanish: bool = False,
                grow: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(T, S, S) images and (2, T, S, S) masks: big disc minus small disc, small disc
    (``vanish``: shrinking out of half the clips; ``grow``: starting tiny and growing)."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    big_c, big_r = rng.uniform(26, 38, 2), rng.uniform(16, 22)
    angle, offset = rng.uniform(0, 2 * np.pi), rng.uniform(0, big_r - 10)
    small_c = big_c + offset * np.array([np.cos(angle), np.sin(angle)])
    small_r = rng.uniform(6, 9)
    drift, small_drift = rng.normal(0, 0.7, 2), rng.normal(0, 0.5, 2)
    contrast = rng.choice([-1, 1]) * rng.uniform(0.2, 0.3)
    shrink = rng.uniform(0, 3.0) * rng.choice([0, 1]) if vanish else 0.0
    if grow:
        shrink, small_r = -rng.uniform(1.5, 3.0), rng.uniform(1.5, 4.0)
    images, masks = [], []
    for t in range(frames):
        cb, cs = big_c + drift * t, small_c + (drift + small_drift) * t
        big = (yy - cb[0]) ** 2 + (xx - cb[1]) ** 2 <= big_r ** 2
        small = big & ((yy - cs[0]) ** 2 + (xx - cs[1]) ** 2 <= max(small_r - shrink * t, 0) ** 2)
        img = 0.3 + 0.3 * big + contrast * small + rng.normal(0, 0.05, (SIZE, SIZE))
        images.append(np.clip(img, 0, 1))
        masks.append(np.stack([big & ~small, small]))
    return np.stack(images).astype(np.float32), np.stack(masks, 1)


def pairs_clip(rng: np.random.Generator, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(T, S, S) images and (2, T, S, S) masks: two discs of different brightness at new
    random places in every frame (a pseudo-video of unrelated images, as in One-Prompt
    segmentation): where the object was says nothing, what it looked like says which."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    levels = rng.permutation([rng.uniform(0.55, 0.7), rng.uniform(0.8, 0.95)])
    radii = rng.uniform(6, 10, 2)
    images, masks = [], []
    for _ in range(frames):
        centres = rng.uniform(12, 52, (2, 2))
        while np.linalg.norm(centres[0] - centres[1]) < radii.sum() + 2:
            centres = rng.uniform(12, 52, (2, 2))
        m = np.stack([(yy - c[0]) ** 2 + (xx - c[1]) ** 2 <= r ** 2
                      for c, r in zip(centres, radii)])
        img = 0.3 + rng.normal(0, 0.05, (SIZE, SIZE))
        for k in (0, 1):
            img[m[k]] = levels[k] + rng.normal(0, 0.05, int(m[k].sum()))
        images.append(np.clip(img, 0, 1))
        masks.append(m)
    return np.stack(images).astype(np.float32), np.stack(masks, 1)


#: video kind -> clip maker (rng, frames) -> (images, masks of both objects)
VIDEOS: dict[str, Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]] = {
    "twins": twins_clip,
    "nested": nested_clip,
    "nested-vanish": lambda rng, frames: nested_clip(rng, frames, vanish=True),
    "nested-grow": lambda rng, frames: nested_clip(rng, frames, grow=True),
    "pairs": pairs_clip,
}


class VideoSampler:
    """Fresh synthetic clips on every draw, as :class:`medsam2.train.ClipSampler` serves
    dataset clips (same ``sample_objects`` interface): no finite set to memorise."""

    def __init__(self, kinds: list[str] | tuple[str, ...]):
        unknown = sorted(set(kinds) - set(VIDEOS))
        if unknown or not kinds:
            raise ValueError(f"videos: unknown or no kinds {unknown or list(kinds)} "
                             f"(known: {sorted(VIDEOS)})")
        self.kinds = list(kinds)

    def sample_objects(self, rng: np.random.Generator, clip_len: int, max_objects: int,
                       ) -> tuple[np.ndarray, np.ndarray]:
        """(T, S, S) images and (K, T, S, S) masks, K = min(2, ``max_objects``)."""
        make = VIDEOS[self.kinds[int(rng.integers(len(self.kinds)))]]
        images, masks = make(rng, clip_len)
        if max_objects < 2:
            masks = masks[[int(rng.integers(2))]]
        return images, masks
