"""Qualitative overlays: image + ground-truth contour + each model's contour.

For one dataset, the best, median and worst test case of the main model (by its per-case
Dice) are shown. A 3D case shows three slices across the slice axis (the axis with the
coarsest spacing): the key slice, where the main label (lowest label value) has its
largest area, as in the evaluation prompt, and one slice halfway towards each end of the
ground truth's extent; a 2D case is one image, a colour one (RGB PNG, 8-bit) shown in its
own colours. Images come from the standard layout, predictions from
``{predictions_dir}/{dataset}/{model}/{case}{file_ending}``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from medsam2.data.frames import sequence_axis
from medsam2.data.layout import LayoutError, StandardDataset, Volume, read_volume
from medsam2.report.figures import note_figure, save

GT_COLOUR = "#ffffff"


def pick_cases(per_case: pd.DataFrame, dataset: str, model: str) -> list[tuple[str, str, float]]:
    """(role, case, dice) for best, median and worst case of ``model`` (distinct cases)."""
    d = per_case[(per_case["dataset"] == dataset) & (per_case["model"] == model)]
    d = d[np.isfinite(d["dice"].astype(float))].sort_values(["dice", "case"],
                                                            ascending=[False, True])
    if d.empty:
        return []
    picks = {"best": 0, "median": (len(d) - 1) // 2, "worst": len(d) - 1}
    out, seen = [], set()
    for role, i in picks.items():
        case = str(d.iloc[i]["case"])
        if case not in seen:
            seen.add(case)
            out.append((role, case, float(d.iloc[i]["dice"])))
    return out


def slice_axis(spacing: tuple[float, ...]) -> int:
    """The axis the models' frames are taken along (``frames.sequence_axis``): overlays
    show the slices the models saw."""
    return sequence_axis(spacing)


def key_slices(label: np.ndarray, main_value: int, axis: int) -> tuple[list[int], int]:
    """(slices, key): the key slice (largest main-label area) and one halfway to each end
    of the ground truth's extent along ``axis``."""
    fg = label == main_value
    if not fg.any():
        fg = label > 0
    other = tuple(a for a in range(label.ndim) if a != axis)
    area = fg.sum(axis=other)
    n = label.shape[axis]
    if not area.any():
        return [n // 2], n // 2
    key = int(np.argmax(area))
    present = np.flatnonzero(area)
    lo, hi = int(present[0]), int(present[-1])
    below, above = (lo + key) // 2, (key + hi + 1) // 2
    if below == key:
        below = max(key - 1, 0)
    if above == key:
        above = min(key + 1, n - 1)
    return sorted({below, key, above}), key


def _window(image: np.ndarray) -> tuple[float, float]:
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(finite, [1, 99])
    return float(lo), float(hi if hi > lo else lo + 1)


def image_view(image: Volume) -> tuple[np.ndarray, dict]:
    """The array to draw and ``imshow``'s colour arguments: a colour image (8-bit RGB in the
    layout) in its own colours, a grey one in grey windowed at its 1-99 percentiles."""
    arr = np.asarray(image.array, dtype=float)
    if image.rgb:
        return np.clip(arr / 255.0, 0.0, 1.0), {"cmap": None, "vmin": None, "vmax": None}
    vmin, vmax = _window(arr)
    return arr, {"cmap": "gray", "vmin": vmin, "vmax": vmax}


def _plane(array: np.ndarray, axis: int, index: int) -> np.ndarray:
    return np.take(array, index, axis=axis).T  # rows = second in-plane axis (origin lower)


def _contour(ax: Axes, mask: np.ndarray, values: list[int], colour: tuple | str, style: str,
             width: float) -> None:
    for v in values:
        m = (mask == v).astype(float)
        if m.any() and m.shape[0] > 1 and m.shape[1] > 1:
            ax.contour(m, levels=[0.5], colors=[colour], linestyles=style, linewidths=width)


def overlay_figure(dataset_root: Path, predictions_dir: Path, dataset: str, models: list[str],
                   main_model: str, per_case: pd.DataFrame, out_base: Path) -> list[Path]:
    """Rows = best/median/worst case of ``main_model``; columns = slices (3D) or one image."""
    title = f"{dataset}: overlays (best / median / worst case of {main_model})"
    try:
        ds = StandardDataset(dataset_root)
    except LayoutError as exc:
        return note_figure(title, f"dataset not readable: {exc}", out_base)
    picks = pick_cases(per_case, dataset, main_model)
    if not picks:
        return note_figure(title, f"no per-case results of {main_model} on {dataset}", out_base)
    values = sorted(ds.labels.values())
    colours = dict(zip(models, sns.color_palette("tab10", len(models)), strict=True))
    loaded = []
    try:
        for role, case_id, dice in picks:
            case = ds.case(case_id)
            image, gt = ds.read_image(case), ds.read_label(case)
            preds = {}
            for m in models:  # a missing or misshapen prediction is left out, not drawn wrong
                path = predictions_dir / dataset / m / f"{case_id}{ds.file_ending}"
                pred = read_volume(path, ds.spacing_2d).array if path.is_file() else None
                preds[m] = pred if pred is not None and pred.shape == gt.array.shape else None
            loaded.append((role, case_id, dice, image, gt.array, preds))
    except LayoutError as exc:
        return note_figure(title, f"cannot draw: {exc}", out_base)
    ncols = 3 if any(item[3].ndim == 3 for item in loaded) else 1  # spatial dims
    fig = Figure(figsize=(3.6 * ncols + 1.8, 3.6 * len(loaded)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(loaded), ncols, squeeze=False))
    for r, (role, case_id, dice, image, gt, preds) in enumerate(loaded):
        arr, colours_of = image_view(image)
        if image.ndim == 3:
            axis = slice_axis(image.spacing)
            slices, key = key_slices(gt, values[0] if values else 1, axis)
            in_plane = [s for a, s in enumerate(image.spacing) if a != axis]
            views = [(f"slice {s} of axis {axis}{' (key slice)' if s == key else ''}",
                      _plane(arr, axis, s), _plane(gt, axis, s),
                      {m: None if p is None else _plane(p, axis, s) for m, p in preds.items()},
                      in_plane[1] / in_plane[0], "lower") for s in slices]
        else:
            views = [("image", arr, gt, preds, 1.0, "upper")]
        for c in range(ncols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(views):
                ax.set_axis_off()
                continue
            name, img, lab, pr, aspect, origin = views[c]
            ax.imshow(img, aspect=aspect, origin=origin, interpolation="nearest", **colours_of)
            _contour(ax, lab, values, GT_COLOUR, "solid", 2.2)
            for m, p in pr.items():
                if p is not None:
                    _contour(ax, p, values, colours[m], "dashed", 1.4)
            ax.set_title(f"{role}: {case_id} ({main_model} Dice {dice:.2f})\n{name}", fontsize=8)
    handles = [Line2D([], [], color=GT_COLOUR, lw=2.2, label="ground truth")]
    handles += [Line2D([], [], color=colours[m], lw=1.4, ls="--", label=m) for m in models]
    fig.suptitle(title)
    legend = fig.legend(handles=handles, loc="outside lower center", ncols=len(handles),
                        title="contours (solid: ground truth, dashed: predictions)",
                        facecolor="#555555", labelcolor="white")
    legend.get_title().set_color("white")
    return save(fig, out_base)
