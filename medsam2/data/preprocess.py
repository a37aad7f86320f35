"""MedSAM-2's training preprocessing (paper Sec. 4), computed once and cached per model.

The paper converts every volume to frames that are cropped to the non-zero region,
resized to a fixed size, intensity-normalised (CT: a window in HU; MR and others:
percentiles) and drops masks under 100 pixels. 3D volumes are "sliced along the two
highest-resolution axes": we read this as frames whose plane is spanned by the two finest
axes, i.e. the sequence runs along the coarsest axis (axial slices of a thick-slice CT).

The cache holds one ``{case}.npz`` per training case (``frames`` uint8 (T, S, S), or
(T, S, S, 3) for a colour dataset, ``labels`` uint8 (T, S, S)) and ``index.json``;
``medsam2 train`` reads such a folder instead of the standard dataset. ``crop_box`` is
shared with prediction, so a model trained on cropped frames is also applied to cropped
frames.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch.nn.functional as F
from tqdm import tqdm

from medsam2.data.frames import Intensity, channels_first, is_colour_stack, sequence_axis, slices
from medsam2.data.layout import StandardDataset
from medsam2.fileio import read_json

CACHE_VERSION = 1


def crop_box(stack01: np.ndarray) -> tuple[slice, slice]:
    """In-plane bounding box of the non-zero region over all frames of a (T, H, W) stack,
    or a (T, H, W, 3) colour one (a pixel is non-zero where any channel is)."""
    nonzero = stack01 > 0
    if is_colour_stack(stack01):
        nonzero = nonzero.any(axis=-1)
    any_frame = nonzero.any(axis=0)
    rows, cols = np.nonzero(any_frame.any(axis=1))[0], np.nonzero(any_frame.any(axis=0))[0]
    if rows.size == 0:
        return slice(0, stack01.shape[1]), slice(0, stack01.shape[2])
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def drop_small(labels: np.ndarray, min_area: int) -> np.ndarray:
    """Zero every per-frame mask of a label with fewer than ``min_area`` pixels."""
    out = labels.copy()
    for value in np.unique(labels):
        if value == 0:
            continue
        mask = labels == value
        small = mask.reshape(len(mask), -1).sum(axis=1) < min_area
        out[mask & small[:, None, None]] = 0
    return out


def _resize(stack: np.ndarray, size: int, mode: str) -> np.ndarray:
    """(T, H, W) or (T, H, W, 3) -> the same at (size, size), each channel on its own."""
    x = channels_first(stack)
    kw = {"align_corners": False} if mode == "bilinear" else {}
    out = F.interpolate(x, size=(size, size), mode=mode, **kw)
    return out.permute(0, 2, 3, 1).numpy() if is_colour_stack(stack) else out[:, 0].numpy()


def preprocess_case(image: np.ndarray, label: np.ndarray, spacing: tuple[float, ...],
                    intensity: Intensity, image_size: int, min_area: int = 100,
                    crop: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(frames uint8 (T, S, S) or (T, S, S, 3), labels uint8 (T, S, S)) of one case.

    ``spacing`` has one entry per spatial axis, so it also says whether ``image`` is a
    volume or a 2D image (a colour 2D image is (H, W, 3), three axes like a volume).
    """
    norm = intensity.apply(image)
    if len(spacing) == 3:
        axis = sequence_axis(spacing)
        stack, labs = slices(norm, axis), slices(label, axis)
    else:
        stack, labs = norm[None], label[None]
    if crop:
        rows, cols = crop_box(stack)
        stack, labs = stack[:, rows, cols], labs[:, rows, cols]
    labs = drop_small(labs.astype(np.uint8), min_area)  # in original pixels, as the paper
    frames = np.clip(_resize(stack, image_size, "bilinear") * 255 + 0.5, 0, 255)
    return frames.astype(np.uint8), _resize(labs, image_size, "nearest").astype(np.uint8)


def preprocess_dataset(dataset_dir: Path, out_dir: Path, image_size: int,
                       min_area: int = 100, crop: bool = True) -> Path:
    """Cache the training split of a standard dataset; returns ``index.json``."""
    ds = StandardDataset(dataset_dir)
    intensity = Intensity.for_channel(next(iter(ds.meta["channel_names"].values())))
    out_dir.mkdir(parents=True, exist_ok=True)
    cases = []
    for case, image, label in tqdm(list(ds.iter_cases("train")), desc=f"preprocess {ds.name}",
                                   unit="case"):
        frames, labels = preprocess_case(image.array, label.array, image.spacing, intensity,
                                         image_size, min_area, crop)
        np.savez_compressed(out_dir / f"{case.case_id}.npz", frames=frames, labels=labels)
        cases.append(case.case_id)
    index = {"version": CACHE_VERSION, "preprocessed": True, "dataset": ds.name,
             "is_3d": ds.is_3d, "rgb": ds.is_rgb, "labels": ds.labels, "image_size": image_size,
             "min_area": min_area, "crop": crop, "cases": cases}
    path = out_dir / "index.json"
    path.write_text(json.dumps(index, indent=1) + "\n")
    return path


def is_cache(folder: Path) -> bool:
    index = Path(folder) / "index.json"
    return index.is_file() and read_json(index, "preprocessing cache index",
                                         require=()).get("preprocessed", False)


def load_cache(folder: Path) -> tuple[dict, list[tuple[np.ndarray, np.ndarray]]]:
    """The index and the (frames in [0, 1], labels) of every cached case."""
    folder = Path(folder)
    index = read_json(folder / "index.json", "preprocessing cache index", require=())
    if index.get("version") != CACHE_VERSION:
        raise ValueError(f"{folder}/index.json: cache version {index.get('version')}, "
                         f"expected {CACHE_VERSION}: delete the folder to rebuild it")
    cases = []
    for cid in index["cases"]:
        with np.load(folder / f"{cid}.npz") as data:
            cases.append((data["frames"].astype(np.float32) / 255.0, data["labels"]))
    return index, cases


def _cli(args: argparse.Namespace) -> int:
    preprocess_dataset(args.dataset_dir, args.out, args.image_size, args.min_area,
                       not args.no_crop)
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("preprocess", help="cache MedSAM-2's training preprocessing")
    p.add_argument("--dataset-dir", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--image-size", type=int, required=True)
    p.add_argument("--min-area", type=int, default=100, help="drop smaller per-frame masks")
    p.add_argument("--no-crop", action="store_true", help="keep the full frame")
    p.set_defaults(func=_cli)
