"""Per-dataset rules read from the dataset file: label encoding and geometry fixes.

Datasets encode their labels in different ways, and some ship known geometry quirks. Both
are data (keys of ``config/datasets/<key>.yaml``), not special cases in a converter:

``label_rule`` (how raw label values become the dataset file's ``source_labels``)
  - ``{mode: values}`` (default): the raw values must be exactly ``source_labels`` values
    (a multi-class file such as KiTS23's or SegRap's Task002 file); anything else fails.
  - ``{mode: nearest, tolerance: N}``: a stray value within N of a known value is taken as
    that value (WBC: a few anti-aliased pixels of 2..50 next to 0 / 128 / 255); a value
    farther from every known value still fails the case.
  - ``{mode: threshold, at: T, label: NAME}``: values >= T are NAME, the rest background
    (STARE: "some annotations are not standard", thresholded at 128).
  - ``{mode: nonzero, label: NAME}``: any non-zero value is NAME (PENDAL: the mask is the
    X-ray with everything outside the mandible set to zero).
  Per-structure binary files (SegRap's ``GTVp.nii.gz``) are composed by the converter;
  any non-zero voxel of such a file is that structure.

``resample_label: true``
  A label on a different grid than its image is resampled onto the image grid by nearest
  neighbour in physical space (LNQ2023 ships some such cases); the report lists each.

``placeholder_spacing: {header: [1, 1, 1], spacing: [...]}``
  Files whose header spacing equals ``header`` get ``spacing`` instead (direction and
  origin kept; TDSC-ABUS); the report lists each case so fixed.

Every applied rule is returned as a note, so the conversion report says what was changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from medsam2.data.layout import LayoutError, Volume

MODES = ("values", "nearest", "threshold", "nonzero")


class RuleError(ValueError):
    """A rule in a dataset file is malformed (the message names the file and the key)."""


@dataclass(frozen=True)
class LabelRule:
    """How raw label values are read; see the module docstring for the modes."""

    mode: str = "values"
    tolerance: int = 0
    at: float | None = None
    label: str | None = None

    @classmethod
    def from_dict(cls, raw: dict | None, source_labels: dict[str, int], where: str) -> LabelRule:
        raw = dict(raw or {})
        unknown = sorted(set(raw) - {"mode", "tolerance", "at", "label"})
        if unknown:
            raise RuleError(f"{where}: label_rule has unknown keys {unknown}")
        rule = cls(**raw)
        if rule.mode not in MODES:
            raise RuleError(f"{where}: label_rule.mode must be one of {MODES}, got {rule.mode!r}")
        if rule.mode in ("threshold", "nonzero") and rule.label not in source_labels:
            raise RuleError(
                f"{where}: label_rule.label must name one of source_labels {sorted(source_labels)}"
            )
        if rule.mode == "threshold" and not isinstance(rule.at, (int, float)):
            raise RuleError(f"{where}: label_rule.at (the threshold) must be a number")
        if rule.mode == "nearest" and not (isinstance(rule.tolerance, int) and rule.tolerance > 0):
            raise RuleError(f"{where}: label_rule.tolerance must be a positive integer")
        return rule

    def apply(
        self, array: np.ndarray, source_labels: dict[str, int], path: Path | str
    ) -> tuple[np.ndarray, str | None]:
        """Raw values -> ``source_labels`` values; returns the array and a note or None."""
        if self.mode == "values":
            return array, None
        if self.mode in ("threshold", "nonzero"):
            assert self.label is not None
            fg = array >= self.at if self.mode == "threshold" else array != 0
            out = np.where(fg, source_labels[self.label], 0).astype(np.int32)
            if self.mode == "nonzero":
                return out, None
            odd = np.setdiff1d(np.unique(array), [0, array.max(initial=0)]).size
            note = (f"{Path(path).name}: thresholded at {self.at}, {odd} value(s) other than "
                    "0 and the maximum") if odd else None
            return out, note
        return self._snap(array, source_labels, path)

    def _snap(
        self, array: np.ndarray, source_labels: dict[str, int], path: Path | str
    ) -> tuple[np.ndarray, str | None]:
        allowed = np.array(sorted(set(source_labels.values()) | {0}))
        values = np.unique(array)
        stray = [v for v in values.tolist() if v not in allowed]
        if not stray:
            return array, None
        out = np.array(array, copy=True)
        changed = 0
        for value in stray:
            nearest = allowed[np.argmin(np.abs(allowed - value))]
            if abs(nearest - value) <= self.tolerance:
                hit = array == value
                out[hit] = nearest
                changed += int(hit.sum())
        note = (f"{Path(path).name}: {changed} pixel(s) of stray values {stray[:10]} taken as "
                f"the nearest label value (tolerance {self.tolerance})") if changed else None
        return out, note


@dataclass(frozen=True)
class PlaceholderSpacing:
    """Replace a known placeholder header spacing with the dataset's true spacing."""

    header: tuple[float, ...]
    spacing: tuple[float, ...]

    @classmethod
    def from_dict(cls, raw: dict | None, where: str) -> PlaceholderSpacing | None:
        if raw is None:
            return None
        if not isinstance(raw, dict) or set(raw) != {"header", "spacing"}:
            raise RuleError(f"{where}: placeholder_spacing needs exactly 'header' and 'spacing'")
        try:
            header = tuple(float(v) for v in raw["header"])
            spacing = tuple(float(v) for v in raw["spacing"])
        except (TypeError, ValueError) as exc:
            raise RuleError(f"{where}: placeholder_spacing values must be numbers") from exc
        if len(header) != len(spacing) or not all(s > 0 for s in spacing):
            raise RuleError(f"{where}: placeholder_spacing header/spacing must match in length "
                            "and be positive")
        return cls(header, spacing)

    def apply(self, volume: Volume, path: Path | str) -> tuple[Volume, str | None]:
        """The volume with the true spacing if its header has the placeholder, else as is."""
        n = len(self.header)
        if volume.ndim != n or not np.allclose(volume.spacing, self.header, atol=1e-6):
            return volume, None
        affine = np.array(volume.affine, dtype=np.float64)
        directions = affine[:3, :n] / np.asarray(volume.spacing)
        affine[:3, :n] = directions * np.asarray(self.spacing)
        note = (f"{Path(path).name}: placeholder spacing {list(self.header)} in the header "
                f"replaced by {list(self.spacing)} from the dataset file")
        return replace(volume, affine=affine), note


def same_grid(image: Volume, label: Volume, atol: float = 1e-3) -> bool:
    return image.shape == label.shape and np.allclose(
        image.affine, label.affine, atol=atol)


def resample_to(label: Volume, image: Volume, path: Path | str) -> tuple[Volume, str]:
    """Nearest-neighbour resampling of ``label`` onto ``image``'s grid, in physical space.

    Voxels of the image grid that fall outside the label's grid become background.
    """
    if label.ndim != image.ndim:
        raise LayoutError(f"{path}: {label.ndim}D label for a {image.ndim}D image")
    n = image.ndim
    index_map = np.linalg.inv(label.affine) @ image.affine  # image voxel -> label voxel
    matrix, offset = index_map[:n, :n], index_map[:n, 3]
    array = ndimage.affine_transform(
        label.array, matrix, offset=offset, output_shape=image.shape, order=0,
        mode="constant", cval=0, prefilter=False,
    ).astype(label.array.dtype)
    note = (f"{Path(path).name}: label grid {label.array.shape} resampled onto the image grid "
            f"{image.shape} (nearest neighbour)")
    return Volume(array, np.array(image.affine)), note


@dataclass(frozen=True)
class CaseRules:
    """All per-dataset rules one conversion applies to every case."""

    label_rule: LabelRule = field(default_factory=LabelRule)
    resample_label: bool = False
    placeholder_spacing: PlaceholderSpacing | None = None


def parse_rules(raw: dict, source_labels: dict[str, int], where: str) -> CaseRules:
    """Read ``label_rule``, ``resample_label`` and ``placeholder_spacing`` of a dataset file."""
    resample = raw.get("resample_label", False)
    if not isinstance(resample, bool):
        raise RuleError(f"{where}: resample_label must be true or false")
    return CaseRules(
        LabelRule.from_dict(raw.get("label_rule"), source_labels, where),
        resample,
        PlaceholderSpacing.from_dict(raw.get("placeholder_spacing"), where),
    )
