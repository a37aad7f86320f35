"""Simulated prompts (click, box, mask) from ground truth, seeded and shared by all models.

Evaluation prompts are computed once per dataset (``medsam2 prompts``) and stored in
``results/prompts/{dataset}.json``, so every prompted model gets the very same key slice
and the very same click or box. Training prompts are drawn from the same functions with
the training RNG. Coordinates are (x, y) = (column, row) in pixels of the original slice,
SAM's convention; a box is (x0, y0, x1, y1) with inclusive pixel centres.

Which frames are prompted is the dataset's evaluation protocol (``medsam2.protocols``):
the key slice only, or in the interactive protocols also frames drawn with a probability
over all frames, a drawn frame without the object getting an empty-mask prompt.
"""

from __future__ import annotations

import argparse
import json
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from medsam2 import protocols
from medsam2.data.frames import sequence_axis
from medsam2.fileio import FileFormatError, read_json

if TYPE_CHECKING:
    import torch

PROMPT_KINDS = ("click", "box", "mask")
#: the prompt of a drawn frame that does not show the object: an all-zero mask, as the
#: authors' evaluation gives (SuperMedIntel/Medical-SAM2, func_3d/function.py,
#: ``train_add_new_mask(..., mask=torch.zeros(...))`` where the frame has no such object)
EMPTY = "empty"
#: the sequence axis of a volume with no coarser axis (``frames.sequence_axis``): NIfTI
#: voxel axis k, axial for the usual RAS/LPS-ordered CT and MR
SLICE_AXIS_3D = 2


@dataclass
class Prompt:
    """One prompt on one frame. ``mask`` prompts carry no coordinates (the GT slice is used)."""

    kind: str
    frame: int
    points: list[list[float]]  # [[x, y], ...]
    labels: list[int]  # 1 positive click, 0 negative, 2/3 box corners
    axis: int = SLICE_AXIS_3D  # 3D: the axis the frames are taken along

    def model_inputs(
        self, hw: tuple[int, int], image_size: int, gt_slice: np.ndarray | None = None
    ) -> tuple[dict | None, torch.Tensor | None]:
        """(point_inputs, mask_inputs) for ``SAM2Base.track_step`` at the model's size."""
        import torch  # here: computing prompts (the prompts stage) needs no torch

        if self.kind == EMPTY:
            return None, torch.zeros(1, 1, image_size, image_size)
        if self.kind == "mask":
            if gt_slice is None:
                raise ValueError("a mask prompt needs the ground-truth slice")
            m = torch.from_numpy(np.ascontiguousarray(gt_slice, dtype=np.float32))[None, None]
            m = torch.nn.functional.interpolate(m, size=(image_size, image_size), mode="nearest")
            return None, m
        h, w = hw
        pts = torch.tensor(self.points, dtype=torch.float32)
        # pixel centres -> model input coordinates (SAM 2 scales by size / original size)
        scale = torch.tensor([image_size / w, image_size / h])
        coords = ((pts + 0.5) * scale)[None]
        labels = torch.tensor(self.labels, dtype=torch.int32)[None]
        return {"point_coords": coords, "point_labels": labels}, None


def key_slice(mask: np.ndarray, axis: int = SLICE_AXIS_3D) -> int:
    """Index of the slice with the largest foreground area (the paper's prompted frame)."""
    other = tuple(a for a in range(mask.ndim) if a != axis)
    areas = mask.sum(axis=other)
    if areas.max(initial=0) == 0:
        raise ValueError("empty mask: no slice to prompt")
    return int(np.argmax(areas))


def box_prompt(mask2d: np.ndarray, frame: int, rng: np.random.Generator | None = None,
               jitter: float = 0.0) -> Prompt:
    """Tight bounding box, each side moved by up to ``jitter`` x box size (training noise)."""
    rows, cols = np.nonzero(mask2d)
    if rows.size == 0:
        raise ValueError("empty mask: no box")
    x0, x1, y0, y1 = float(cols.min()), float(cols.max()), float(rows.min()), float(rows.max())
    if rng is not None and jitter > 0:
        dw, dh = jitter * (x1 - x0 + 1), jitter * (y1 - y0 + 1)
        x0, x1 = x0 + rng.uniform(-dw, dw), x1 + rng.uniform(-dw, dw)
        y0, y1 = y0 + rng.uniform(-dh, dh), y1 + rng.uniform(-dh, dh)
        h, w = mask2d.shape
        x0, x1 = np.clip(sorted((x0, x1)), 0, w - 1)
        y0, y1 = np.clip(sorted((y0, y1)), 0, h - 1)
    return Prompt("box", frame, [[x0, y0], [x1, y1]], [2, 3])


def click_prompt(mask2d: np.ndarray, frame: int, rng: np.random.Generator | None = None) -> Prompt:
    """A positive click: the most interior pixel (eval) or a random interior pixel (rng)."""
    if not mask2d.any():
        raise ValueError("empty mask: no click")
    if rng is None:
        dist = ndimage.distance_transform_edt(np.pad(mask2d, 1))[1:-1, 1:-1]
        r, c = np.unravel_index(int(np.argmax(dist)), dist.shape)
    else:
        rows, cols = np.nonzero(mask2d)
        i = int(rng.integers(rows.size))
        r, c = rows[i], cols[i]
    return Prompt("click", frame, [[float(c), float(r)]], [1])


def make_prompt(kind: str, mask2d: np.ndarray, frame: int,
                rng: np.random.Generator | None = None, jitter: float = 0.0) -> Prompt:
    if kind == "box":
        return box_prompt(mask2d, frame, rng, jitter)
    if kind == "click":
        return click_prompt(mask2d, frame, rng)
    if kind == "mask":
        if not mask2d.any():
            raise ValueError("empty mask: no mask prompt")
        return Prompt("mask", frame, [], [])
    raise ValueError(f"unknown prompt kind '{kind}' (expected one of {PROMPT_KINDS})")


def empty_prompt(frame: int, axis: int = SLICE_AXIS_3D) -> Prompt:
    """The empty-mask prompt of a drawn frame that does not show the object."""
    return Prompt(EMPTY, frame, [], [], axis)


def volume_prompts(mask: np.ndarray, kind: str, rate: float = 0.0,
                   rng: np.random.Generator | None = None,
                   first_axis: int = SLICE_AXIS_3D) -> list[Prompt]:
    """Prompts per slicing axis (3D): the key slice's, and with ``rate`` > 0 (the
    interactive protocol) each other slice of the volume drawn with probability ``rate``;
    one prompt for 2D.

    All three axes are stored so that a model fusing the paper's 6 orientations gets the
    same key slices and prompts as every other model; ``first_axis`` (the volume's
    sequence axis, along which models predict by default) comes first.
    The draw runs over *all* slices, not only those that show the object: drawing among
    the object's slices would tell the model where the object ends, from the test labels.
    A drawn slice without the object gets an empty-mask prompt, as the authors' code
    gives a zero mask there (``EMPTY``). ``rng`` draws the slices only; every slice
    showing the object is prompted as the key slice is (most interior click, tight box).
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"prompt rate must be in [0, 1], got {rate}")
    if rate > 0 and rng is None:
        raise ValueError("a prompt rate > 0 needs an rng (the drawn slices must be seeded)")
    if mask.ndim == 2:
        return [make_prompt(kind, mask, 0)]
    out = []
    for axis in (first_axis, *(a for a in range(3) if a != first_axis)):
        key = key_slice(mask, axis)
        frames = [key]
        if rate > 0:
            drawn = rng.random(mask.shape[axis]) < rate  # one draw per slice, all slices
            frames += [int(f) for f in np.nonzero(drawn)[0] if f != key]
        for frame in frames:
            sl = np.take(mask, frame, axis=axis)
            p = make_prompt(kind, sl, frame) if sl.any() else empty_prompt(frame)
            p.axis = axis
            out.append(p)
    return out


def _label_rng(seed: int, case_id: str, name: str) -> np.random.Generator:
    """The draws of one case and label: independent of the dataset's other cases."""
    return np.random.default_rng([seed, zlib.crc32(f"{case_id}/{name}".encode())])


def dataset_prompts(dataset_dir: Path | str, kind: str, seed: int, split: str = "test",
                    rate: float = 0.0, protocol: str | None = None,
                    mode_2d: str = "per_image") -> dict:
    """The evaluation prompts of a dataset under its protocol (``medsam2.protocols``):
    case -> label -> prompts (3D: per axis the key slice first, then the drawn slices in
    increasing order; 2D: the image's own prompt). ``protocol`` None: the one ``mode_2d``
    and ``rate`` imply for the data's dimensionality.

    In ``interactive_one_prompt`` the draws are stored apart, ``drawn``: case -> the
    labels whose prompt the image gets in the pseudo-video (a drawn label the image lacks
    gets an empty mask). The draws of a case and label depend only on the seed, the case
    id and the label, not on which other cases the dataset holds."""
    from medsam2.data.layout import StandardDataset  # local: keeps this module light

    ds = StandardDataset(dataset_dir)
    dims = 3 if ds.is_3d else 2
    try:
        protocol = protocols.resolve(protocol, dims, mode_2d, rate)
    except ValueError as err:
        raise ValueError(f"{ds.root}: {err}") from None
    out: dict = {"kind": kind, "seed": seed, "rate": rate, "protocol": protocol, "cases": {}}
    if protocol == "interactive_one_prompt":
        out["drawn"] = {}
    for case in ds.cases(split):
        volume = ds.read_label(case)
        label = volume.array
        first = sequence_axis(volume.spacing) if label.ndim == 3 else SLICE_AXIS_3D
        per_label = {}
        for name, value in ds.labels.items():
            mask = label == value
            if protocol == "interactive_one_prompt" and \
                    _label_rng(seed, case.case_id, name).random() < rate:
                out["drawn"].setdefault(case.case_id, []).append(name)
            if mask.any():  # else nothing to prompt: the model is scored on an empty GT
                interactive = protocol == "interactive"
                rng = _label_rng(seed, case.case_id, name) if interactive else None
                per_label[name] = [asdict(p) for p in volume_prompts(
                    mask, kind, rate if interactive else 0.0, rng, first)]
        out["cases"][case.case_id] = per_label
    return out


def load_prompts(path: Path | str) -> dict:
    """The stored prompts: case -> label -> list of Prompt (3D: one per axis). A file that
    is not one (truncated, edited by hand) fails naming the file and the reason."""
    data = read_json(path, "prompts file", require=("cases",))
    try:
        for case, labels in data["cases"].items():
            data["cases"][case] = {k: [Prompt(**p) for p in v] for k, v in labels.items()}
    except (ValueError, TypeError, AttributeError) as exc:
        raise FileFormatError(
            f"{path}: not a prompts file ({type(exc).__name__}: {exc})") from None
    return data


def _cli(args: argparse.Namespace) -> int:
    protocol = None if args.protocol == "auto" else args.protocol
    prompts = dataset_prompts(args.dataset_dir, args.kind, args.seed, rate=args.rate,
                              protocol=protocol, mode_2d=args.mode_2d)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(prompts, indent=1) + "\n")
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("prompts", help="compute the evaluation prompts of a dataset")
    p.add_argument("--dataset-dir", required=True, type=Path)
    p.add_argument("--kind", required=True, choices=PROMPT_KINDS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rate", type=float, default=0.0,
                   help="interactive protocols: each frame (3D) or test image (One-Prompt) "
                        "is prompted with this probability (the paper: 0.25 / 0.3)")
    p.add_argument("--protocol", choices=("auto", *protocols.PROTOCOLS), default="auto",
                   help="evaluation protocol (auto: from --mode-2d, --rate and the data)")
    p.add_argument("--mode-2d", choices=("per_image", "one_prompt"), default="per_image",
                   help="2D: per-image prompts or One-Prompt")
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=_cli)
