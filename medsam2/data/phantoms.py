"""Synthetic, seeded phantom datasets for the CPU demo and the tests.

They stand in for the paper's datasets where none can be downloaded, so they are made to
need a model that looks: shape, size, position, orientation, intensity and contrast vary
per case, a *distractor* of the same intensity as the target sits beside it (so the
prompt matters), noise and blur vary, and 3D volumes are anisotropic like CT.

- ``abdomen3d``: CT-like volumes in Hounsfield units, an organ (label 1) with a lesion
  inside it (label 2, organ tissue around it on every slice), a second organ of similar
  density (unlabelled distractor), a bright spine, air outside the body. Written as NIfTI
  with the true spacing.
- ``cells2d``: microscopy-like grey images with many pale red-cell rings and one larger
  white blood cell with a dark lobed nucleus (label 1), as in the WBC task. PNG.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage
from tqdm import tqdm

from medsam2.data.layout import (
    Volume,
    affine_from_spacing,
    seeded_split,
    write_case,
    write_dataset_json,
    write_splits,
)


def _ellipsoid(shape, center, radii, rotation: float = 0.0, spacing=None) -> np.ndarray:
    """Boolean ellipsoid (2D or 3D) in voxel space, rotated in the first two axes."""
    spacing = np.ones(len(shape)) if spacing is None else np.asarray(spacing, float)
    grids = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    coords = [(g - c) * s for g, c, s in zip(grids, center, spacing)]
    cos, sin = np.cos(rotation), np.sin(rotation)
    x, y = coords[0] * cos + coords[1] * sin, -coords[0] * sin + coords[1] * cos
    rotated = [x, y, *coords[2:]]
    return sum((r / rad) ** 2 for r, rad in zip(rotated, radii)) <= 1.0


def _deform(mask: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Smooth random boundary deformation so that shapes are not perfect ellipsoids."""
    noise = ndimage.gaussian_filter(rng.standard_normal(mask.shape), sigma=3.0)
    noise /= np.abs(noise).max() + 1e-8
    dist = ndimage.distance_transform_edt(mask) - ndimage.distance_transform_edt(~mask)
    return (dist + strength * noise) > 0


#: in-plane voxels of organ tissue between a lesion and the organ's edge (abdomen3d)
RIM_VOXELS = 2


def abdomen3d_case(rng: np.random.Generator) -> tuple[Volume, Volume]:
    """One CT-like volume (HU, int16) and its label (0 bg, 1 organ, 2 lesion)."""
    shape = (int(rng.integers(80, 97)), int(rng.integers(80, 97)), int(rng.integers(24, 33)))
    spacing = (float(rng.uniform(1.2, 1.8)), float(rng.uniform(1.2, 1.8)), 4.0)
    sx, sy, sz = (n * s for n, s in zip(shape, spacing))
    center = np.array(shape) / 2
    body = _ellipsoid(shape, center, (0.45 * sx, 0.38 * sy, 10 * sz), rng.uniform(-0.2, 0.2),
                      spacing)
    hu = np.where(body, 40.0, -1000.0)
    fat = _ellipsoid(shape, center, (0.40 * sx, 0.33 * sy, 10 * sz), 0.0, spacing)
    hu[body & ~fat] = -90.0  # subcutaneous fat ring
    spine_c = center + np.array([0.0, 0.25 * shape[1], 0.0])
    hu[_ellipsoid(shape, spine_c, (9.0, 9.0, 10 * sz), 0.0, spacing)] = 450.0

    # Target organ: random size, place, orientation, density; left or right of the midline.
    side = rng.choice([-1, 1])
    organ_c = center + np.array([side * rng.uniform(0.08, 0.2) * shape[0],
                                 rng.uniform(-0.12, 0.05) * shape[1],
                                 rng.uniform(-0.1, 0.1) * shape[2]])
    radii = (rng.uniform(18, 32), rng.uniform(14, 26), rng.uniform(25, 45))
    organ = _deform(_ellipsoid(shape, organ_c, radii, rng.uniform(0, np.pi), spacing) & fat,
                    rng, strength=2.5) & fat
    organ_hu = rng.uniform(70, 150)
    # Distractor organ on the other side with a similar density: the prompt decides.
    dis_c = center + np.array([-side * rng.uniform(0.15, 0.25) * shape[0],
                               rng.uniform(-0.15, 0.1) * shape[1], 0.0])
    distractor = _ellipsoid(shape, dis_c, (rng.uniform(12, 22), rng.uniform(10, 18), 40.0),
                            rng.uniform(0, np.pi), spacing) & fat & ~organ
    hu[distractor] = organ_hu + rng.uniform(-25, 25)
    hu[organ] = organ_hu

    # Lesion inside the organ: hypo- or hyper-dense by a varying margin. It is cut to the
    # organ shrunk in-plane by a rim of RIM_VOXELS, so that organ tissue surrounds it on
    # every slice: cut at the organ's own edge, a hypodense lesion (organ - 70..120 HU)
    # met the body's soft tissue (40 HU) with no contrast, a boundary no annotator could
    # draw.
    label = organ.astype(np.int16)
    inside = np.argwhere(ndimage.binary_erosion(organ, iterations=3))
    if len(inside):
        lc = inside[rng.integers(len(inside))]
        in_plane = np.zeros((3, 3, 3), bool)
        in_plane[:, :, 1] = ndimage.generate_binary_structure(2, 1)
        core = ndimage.binary_erosion(organ, in_plane, iterations=RIM_VOXELS)
        lesion = _ellipsoid(shape, lc, (rng.uniform(11, 18),) * 2 + (rng.uniform(12, 20),),
                            0.0, spacing) & core
        # cyst-like (hypodense) or enhancing (hyperdense), always visibly different
        hu[lesion] = organ_hu + rng.choice([-1, 1]) * rng.uniform(70, 120)
        label[lesion] = 2
    hu = ndimage.gaussian_filter(hu, sigma=(0.8, 0.8, 0.3))
    hu += rng.normal(0.0, rng.uniform(8, 22), size=shape)
    affine = affine_from_spacing(spacing)
    return Volume(hu.astype(np.int16), affine), Volume(label, affine.copy())


def cells2d_case(rng: np.random.Generator) -> tuple[Volume, Volume]:
    """One microscopy-like grey image (uint8) and its white-blood-cell mask (label 1)."""
    size = 128
    shape = (size, size)
    img = np.full(shape, rng.uniform(190, 225))
    for _ in range(int(rng.integers(8, 18))):  # red cells: pale rings, some touching
        c = rng.uniform(0, size, 2)
        r = rng.uniform(7, 11)
        disc = _ellipsoid(shape, c, (r, r * rng.uniform(0.85, 1.0)), rng.uniform(0, np.pi))
        core = _ellipsoid(shape, c, (0.55 * r, 0.5 * r), 0.0)
        img[disc] = rng.uniform(140, 170)
        img[core] = rng.uniform(165, 190)
    c = rng.uniform(0.3 * size, 0.7 * size, 2)
    r = rng.uniform(13, 22)
    cell = _deform(_ellipsoid(shape, c, (r, r * rng.uniform(0.75, 1.0)), rng.uniform(0, np.pi)),
                   rng, strength=1.5)
    img[cell] = rng.uniform(150, 185)
    nucleus = np.zeros(shape, bool)
    for _ in range(int(rng.integers(2, 5))):  # lobed nucleus
        lc = c + rng.normal(0, 0.3 * r, 2)
        nucleus |= _ellipsoid(shape, lc, (rng.uniform(0.25, 0.45) * r,) * 2, 0.0)
    img[nucleus & cell] = rng.uniform(60, 110)
    img = ndimage.gaussian_filter(img, rng.uniform(0.6, 1.4))
    img += rng.normal(0, rng.uniform(3, 9), shape)
    affine = affine_from_spacing((1.0, 1.0))
    return (Volume(np.clip(img, 0, 255).astype(np.uint8), affine),
            Volume(cell.astype(np.int16), affine.copy()))


#: generator name -> (case maker, labels, channel name, file ending)
GENERATORS: dict[str, tuple[Callable, dict[str, int], str, str]] = {
    "abdomen3d": (abdomen3d_case, {"organ": 1, "lesion": 2}, "CT", ".nii.gz"),
    "cells2d": (cells2d_case, {"wbc": 1}, "microscopy", ".png"),
}


def make_phantom_dataset(
    out_dir: Path | str, generator: str, n_cases: int, test_fraction: float, seed: int
) -> Path:
    """Write a seeded synthetic dataset in the standard layout; returns dataset.json."""
    if generator not in GENERATORS:
        raise ValueError(f"unknown phantom generator '{generator}' (known: {list(GENERATORS)})")
    if n_cases < 2:
        raise ValueError(f"n_cases must be >= 2 to have train and test cases, got {n_cases}")
    make_case, labels, channel, ending = GENERATORS[generator]
    out_dir = Path(out_dir)
    ids = [f"{generator}_{i:03d}" for i in range(n_cases)]
    train, test = seeded_split(ids, test_fraction, seed)
    test_set = set(test)
    # One child seed per case: a case does not change when n_cases changes.
    children = np.random.SeedSequence(seed).spawn(n_cases)
    for cid, child in tqdm(list(zip(ids, children)), desc=f"phantoms {generator}", unit="case"):
        image, label = make_case(np.random.default_rng(child))
        write_case(out_dir, cid, "test" if cid in test_set else "train", image, label, ending)
    write_splits(out_dir, train, test, seed)
    return write_dataset_json(out_dir, labels, len(train), ending, {"0": channel},
                              is_2d=ending == ".png", synthetic=generator)


def _cli(args: argparse.Namespace) -> int:
    make_phantom_dataset(args.out, args.generator, args.n_cases, args.test_fraction, args.seed)
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("synth", help="generate a synthetic phantom dataset")
    p.add_argument("--generator", required=True, choices=sorted(GENERATORS))
    p.add_argument("--out", required=True, type=Path, help="dataset folder to write")
    p.add_argument("--n-cases", type=int, default=16)
    p.add_argument("--test-fraction", type=float, default=0.25)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cli)
