"""Bring your own data: an nnU-Net raw folder, or ``images/`` + ``labels/`` paired by name.

nnU-Net raw: ``imagesTr/<case>_0000.<ext>`` with ``labelsTr/<case>.<ext>`` (and the
``Ts`` pair). Simple: ``images/<case>.<ext>`` with ``labels/<case>.<ext>``.

Labels are declared, not guessed: they come from the folder's ``dataset.json`` or from an
explicit declaration (name -> raw value). Without either, the label values are inferred
only when they form a clean set: every file binary with one foreground value shared by
all files (0/1 or 0/255), or small consecutive integers 1..K. A file whose values are not
clean (a JPEG mask with compression noise has dozens) is rejected with the values found;
files that disagree (0/1 in some, 0/255 in others) fail the import, since 1 and 255 are
then one structure, not two labels. Lossy label files (JPEG) are rejected unless a
threshold is declared: compression noise would otherwise become labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from medsam2.data.convert import PIL_SUFFIXES, RawCase, _suffix, read_any
from medsam2.data.converters._common import pair, rglob
from medsam2.data.converters._rules import CaseRules, LabelRule
from medsam2.data.layout import RGB_CHANNEL_NAMES, LayoutError, check_label
from medsam2.fileio import read_json

ENDINGS = (".nii.gz", ".nii", ".png", ".mha", ".nrrd", ".tif", ".tiff", ".jpg", ".jpeg",
           ".bmp", ".npy")
LOSSY_LABEL_SUFFIXES = (".jpg", ".jpeg")
#: the most foreground values an undeclared folder may have (1..K); more needs a declaration
MAX_INFERRED_LABELS = 20
#: the label name a threshold gives when no name is declared
THRESHOLD_LABEL = "foreground"


class LabelDeclarationError(ValueError):
    """The labels of a local folder are contradictory or cannot be inferred safely."""


@dataclass
class LabelPlan:
    """How a local folder's label files are read: the source values, rules, refusals."""

    source: dict[str, int]
    origin: str
    rules: CaseRules | None = None
    rejected: dict[str, str] = field(default_factory=dict)


def _stem(path: Path) -> str:
    for ending in ENDINGS:
        if path.name.lower().endswith(ending):
            return path.name[: -len(ending)]
    return path.stem


def find_cases(root: Path) -> list[RawCase]:
    """The cases of a local folder (a missing label file is kept as None, then reported)."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: local dataset folder not found")
    cases: list[RawCase] = []
    for img_dir, lab_dir in (("imagesTr", "labelsTr"), ("imagesTs", "labelsTs")):
        for image in rglob(root / img_dir, "*_0000.*") if (root / img_dir).is_dir() else []:
            cid = _stem(image)[: -len("_0000")]
            ending = image.name[len(cid) + len("_0000"):]
            cases += pair([image], lambda p, c=cid, e=ending, d=lab_dir: root / d / f"{c}{e}",
                          lambda p, c=cid: c)
    if not cases and (root / "images").is_dir():
        labels = {_stem(p): p for p in rglob(root / "labels", "*") if p.is_file()}
        images = [p for p in rglob(root / "images", "*") if p.is_file()]
        cases = pair(images, lambda p: labels.get(_stem(p)), _stem)
    if not cases:
        raise FileNotFoundError(
            f"{root}: no cases (expected imagesTr/<case>_0000.* + labelsTr/, "
            "or images/ + labels/ paired by name)"
        )
    return cases


def read_declaration(root: Path) -> dict:
    """The folder's ``dataset.json`` (empty when there is none); errors name the file."""
    meta_path = root / "dataset.json"
    if not meta_path.is_file():
        return {}
    meta = read_json(meta_path, "dataset file", require=(), error=LabelDeclarationError)
    if "labels" in meta:
        labels = meta["labels"]
        if not isinstance(labels, dict) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in labels.values()):
            raise LabelDeclarationError(
                f"{meta_path}: 'labels' must map names to integer values (region-based "
                f"labels are not supported), got {labels}")
    return meta | {"_path": str(meta_path)}


def channel_name(declared: dict, modality: str, root: Path) -> str:
    """The channel name: ``dataset.json``'s ``channel_names`` (nnU-Net v1: ``modality``).

    It decides the intensity normalisation (``CT``: a fixed HU window), so a folder that
    says CT is never stored as "unknown"; a ``modality`` argument that contradicts it fails.
    Three channels R, G, B are nnU-Net's natural-image convention (one RGB file per case,
    ``layout.RGB_CHANNEL_NAMES``): ``RGB``; the conversion keeps the files' colour.
    """
    fallback = "CT" if modality.upper() == "CT" else modality
    channels = declared.get("channel_names", declared.get("modality"))
    if channels is None:
        return fallback
    where = declared.get("_path", str(root / "dataset.json"))
    if not isinstance(channels, dict) or not channels:
        raise LabelDeclarationError(f"{where}: channel_names must be a non-empty object")
    if {str(k): str(v) for k, v in channels.items()} == RGB_CHANNEL_NAMES:
        if modality.upper() == "CT":
            raise LabelDeclarationError(
                f"{where}: channel_names R, G, B (colour pictures) but the modality given "
                "is 'CT'")
        return "RGB"
    if len(channels) > 1:
        raise LabelDeclarationError(
            f"{where}: {len(channels)} channels declared {channels}; only single-channel "
            "datasets and colour ones (R, G, B in one RGB file per case) are supported")
    name = str(next(iter(channels.values())))
    if modality not in ("unknown", "") and modality.upper() != name.upper():
        raise LabelDeclarationError(
            f"{where}: channel_names says '{name}' but the modality given is '{modality}'")
    return name


def guess_dims(cases: list[RawCase]) -> int:
    """2 for picture files and 2D (or one-slice) NIfTI, else 3."""
    first = cases[0].image
    if _suffix(first) in PIL_SUFFIXES:
        return 2
    if _suffix(first) == ".nii":
        try:
            shape = nib.load(str(first)).shape
        except Exception:  # noqa: BLE001 - the case fails, naming the file, at conversion
            return 3
        return 2 if len(shape) == 2 or (len(shape) == 3 and shape[2] == 1) else 3
    return 3


def _lossy(case: RawCase) -> Path | None:
    if isinstance(case.label, Path) and _suffix(case.label) in LOSSY_LABEL_SUFFIXES:
        return case.label
    return None


def plan_labels(
    cases: list[RawCase],
    labels: dict[str, int] | None,
    declared: dict,
    threshold: float | None,
) -> LabelPlan:
    """Decide the label values of a local folder (see the module docstring)."""
    json_labels = declared.get("labels")
    origin = None
    if labels is not None:
        fg = {n: int(v) for n, v in labels.items() if int(v) != 0}
        if json_labels is not None:
            json_fg = {n: int(v) for n, v in json_labels.items() if int(v) != 0}
            if json_fg != fg:
                raise LabelDeclarationError(
                    f"labels declared as {fg} but {declared['_path']} says {json_fg}")
        origin = "declared"
    elif json_labels is not None:
        fg = {n: int(v) for n, v in json_labels.items() if int(v) != 0}
        origin = declared["_path"]
    elif threshold is not None:
        fg = {THRESHOLD_LABEL: 1}
        origin = "declared threshold"
    if origin is not None and not fg:
        raise LabelDeclarationError(f"no foreground label declared ({origin})")
    rejected: dict[str, str] = {}
    rules = None
    if threshold is not None:
        if len(fg) != 1:
            raise LabelDeclarationError(
                f"a label threshold makes binary masks; {len(fg)} foreground labels declared "
                f"{fg}")
        rules = CaseRules(LabelRule("threshold", at=float(threshold), label=next(iter(fg))))
        origin = f"{origin}, thresholded at {threshold:g}"
    else:
        for case in cases:
            lossy = _lossy(case)
            if lossy is not None:
                rejected[case.case_id] = (
                    f"{lossy}: lossy label format (JPEG): compression noise would become "
                    "labels; declare a threshold (--label-threshold)")
    if origin is not None:
        return LabelPlan(fg, origin, rules, rejected)
    return _infer(cases, rejected)


def _infer(cases: list[RawCase], rejected: dict[str, str]) -> LabelPlan:
    """Infer labels from the files' values, only when they form one clean set."""
    found: dict[str, tuple[int, ...]] = {}
    for case in cases:
        if case.case_id in rejected or not isinstance(case.label, Path):
            continue  # a missing label is reported by the conversion itself
        try:
            array = read_any(case.label, is_label=True).array
            check_label(array, case.label)
        except LayoutError as exc:
            rejected[case.case_id] = str(exc)
            continue
        values = tuple(int(v) for v in np.unique(array) if v != 0)
        if len(values) > 1 and values[-1] > MAX_INFERRED_LABELS:
            shown = [0, *values][:12]
            more = f" ... ({len(values) + 1} distinct)" if len(values) + 1 > 12 else ""
            rejected[case.case_id] = (
                f"{case.label}: label values {shown}{more} are not a clean set (binary 0/N, "
                f"or consecutive 1..K with K <= {MAX_INFERRED_LABELS}); declare the labels "
                "(dataset.json or --labels NAME=VALUE,...)")
            continue
        found[case.case_id] = values
    union = sorted({v for values in found.values() for v in values})
    if not union:
        if found:
            raise LabelDeclarationError(
                f"every label file is all zero ({len(found)} files); nothing to segment")
        return LabelPlan({}, "inferred", None, rejected)  # every case fails, each named
    binary = all(len(values) <= 1 for values in found.values())
    if len(union) > 1 and (binary or union != list(range(1, union[-1] + 1))):
        groups: dict[tuple[int, ...], list[str]] = {}
        for cid, values in found.items():
            groups.setdefault(values, []).append(cid)
        listing = "; ".join(
            f"values {[0, *v]}: {', '.join(ids[:5])}" + (f" (+{len(ids) - 5})" if len(ids) > 5
                                                        else "")
            for v, ids in sorted(groups.items()))
        kind = ("binary masks with different foreground values"
                if binary else "not consecutive 1..K")
        raise LabelDeclarationError(
            f"the label files disagree ({kind}: {listing}); a mask in 0/1 and one in 0/255 "
            "are one structure, not two labels; declare the labels (dataset.json or "
            "--labels NAME=VALUE,...)")
    how = (f"inferred: binary 0/{union[0]}" if len(union) == 1
           else f"inferred: consecutive 1..{union[-1]}")
    return LabelPlan({f"label_{v}": v for v in union}, how, None, rejected)
