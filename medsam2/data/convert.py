"""The one converter framework: raw dataset files -> the standard layout (layout.py).

A dataset's converter (``medsam2/data/converters/<key>.py``) only says where its cases
are: it returns ``RawCase`` records (an image file, a label file or a set of binary mask
files, an optional spacing). Everything else is common and lives here: reading any of
the formats the 14 datasets use (NIfTI; MHA/MHD/NRRD/DICOM via SimpleITK; PNG/JPG/BMP/
PPM/TIF, optionally gzipped, via PIL; NumPy .npy), keeping the true geometry (RAS affine
in mm whatever unit a NIfTI header declares, 3D volumes reoriented to the closest
canonical orientation) and the intensities (a 2D dataset that a PNG cannot hold exactly
is stored as one-slice NIfTI), checking that image and label agree, mapping raw label
values to the dataset file's output labels, a seeded split, writing, ``dataset.json``
and a conversion report (how each case was read and stored, which cases lack a label).
A case that fails is reported with its file and the reason and skipped; the other cases
are converted. The dataset file's rules (``converters/_rules.py``: label encoding, label
resampling, placeholder spacing) are applied here, and each applied rule is a note in
the report. Losses are loud: a one-line summary (converted / skipped, reasons, cases
with an empty label) is printed, and more skipped cases than the dataset file's
``max_skipped`` fail the conversion.

Colour pictures stay colour: a dataset with a colour image (channels that differ) is
stored as 8-bit RGB PNGs with nnU-Net's natural-image ``channel_names`` R, G, B
(``layout.RGB_CHANNEL_NAMES``), its grey images repeated to three equal channels; a
colour file whose channels are all equal holds a grey image and is stored as grey in a
dataset with no colour image (the report says so). Labels are one channel.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from PIL import Image as PILImage

from medsam2.data.layout import (
    RGB_CHANNEL_NAMES,
    LayoutError,
    Volume,
    affine_from_spacing,
    check_label,
    check_pair,
    equal_channels,
    grouped_split,
    label_values,
    nifti_affine_mm,
    png_loss,
    read_volume,
    seeded_split,
    split_colour,
    write_case,
    write_dataset_json,
    write_splits,
    write_volume,
)
from medsam2.fileio import read_json

PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".gif")
SITK_SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr", ".dcm")
if TYPE_CHECKING:  # pragma: no cover
    from medsam2.data.converters._rules import CaseRules
    from medsam2.data.registry import DatasetSpec

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


class ConversionError(RuntimeError):
    """No case of a dataset could be converted (the message lists each file's reason)."""


@dataclass(frozen=True)
class RawCase:
    """One case as a dataset ships it.

    ``label`` is one label file, or ``((path, value), ...)`` binary masks composed into
    one label (later masks win where they overlap); None when no label was found.
    ``spacing`` overrides the files' own geometry (NumPy arrays carry none). ``groups``
    names what the case belongs to (``(("video", "v03"),)``): a split by group keeps each
    group on one side (a converter lists the keys it gives in ``GROUP_KEYS``).
    """

    case_id: str
    image: Path
    label: Path | tuple[tuple[Path, int], ...] | None
    spacing: tuple[float, ...] | None = None
    groups: tuple[tuple[str, str], ...] = ()


# --------------------------------------------------------------------------- reading
def _suffix(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return "." + name.rsplit(".", 1)[-1] if "." in name else ""


def read_any(path: Path | str, is_label: bool = False) -> Volume:
    """Read an image or label file in any supported format (LayoutError names the file)."""
    path = Path(path)
    if not path.exists():
        raise LayoutError(f"{path}: file not found")
    suffix = _suffix(path)
    try:
        if suffix == ".nii":
            img = nib.load(str(path))
            array = np.asanyarray(img.dataobj)
            while array.ndim > 3 and array.shape[-1] == 1:
                array = array[..., 0]
            return Volume(np.asarray(array), nifti_affine_mm(img, path)[0])
        if path.is_dir() or suffix in SITK_SUFFIXES:
            return _read_sitk(path)
        if suffix in PIL_SUFFIXES:
            data = gzip.open(path).read() if path.name.lower().endswith(".gz") else None
            with PILImage.open(io.BytesIO(data) if data is not None else path) as im:
                array = np.asarray(_decoded(im, is_label))
            array, rgb = split_colour(array, path, is_label)
            return Volume(array, np.eye(4), rgb)
        if suffix == ".npy":
            return Volume(np.load(path, allow_pickle=False), np.eye(4))
    except LayoutError:
        raise
    except Exception as exc:  # readers raise many types; the user needs the file name
        raise LayoutError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from exc
    raise LayoutError(f"{path}: unsupported file type '{suffix}'")


def _read_sitk(path: Path) -> Volume:
    if path.is_dir():  # a DICOM series
        reader = sitk.ImageSeriesReader()
        names = reader.GetGDCMSeriesFileNames(str(path))
        if not names:
            raise LayoutError(f"{path}: no DICOM series in folder")
        reader.SetFileNames(names)
        image = reader.Execute()
    else:
        image = sitk.ReadImage(str(path))
    array = sitk.GetArrayFromImage(image)
    if image.GetNumberOfComponentsPerPixel() > 1:
        raise LayoutError(f"{path}: multi-component image not supported")
    if array.ndim == 2:  # a 2D image: (rows, cols) as the layout wants it
        return Volume(array, affine_from_spacing(image.GetSpacing()[::-1]))
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = direction * np.asarray(image.GetSpacing())
    affine[:3, 3] = image.GetOrigin()
    return Volume(np.transpose(array, (2, 1, 0)), LPS_TO_RAS @ affine)  # (z,y,x)->(x,y,z)


#: PIL modes whose pixels are not the picture's grey or RGB values
_PALETTE_MODES = ("P", "PA")
_OTHER_COLOUR_MODES = ("CMYK", "YCbCr", "LAB", "HSV")


def _decoded(im: PILImage.Image, is_label: bool) -> PILImage.Image:
    """An image file's pixels as grey or RGB(A) values.

    A palette image's array holds palette indices and a CMYK JPEG's four inks: an image
    is converted to the colours it shows. A label keeps its palette indices, which are
    the label values in palette-coded masks.
    """
    if is_label:
        return im
    if im.mode in _PALETTE_MODES:
        return im.convert("RGBA")
    if im.mode in _OTHER_COLOUR_MODES:
        return im.convert("RGB")
    return im


def to_canonical(volume: Volume) -> Volume:
    """Reorder/flip voxel axes to the closest RAS orientation (geometry is unchanged)."""
    ornt = nib.orientations.io_orientation(volume.affine)
    target = nib.orientations.axcodes2ornt(("R", "A", "S"))
    transform = nib.orientations.ornt_transform(ornt, target)
    if np.array_equal(transform, [[0, 1], [1, 1], [2, 1]]):
        return volume
    array = nib.orientations.apply_orientation(volume.array, transform)
    affine = volume.affine @ nib.orientations.inv_ornt_aff(transform, volume.array.shape)
    return Volume(np.ascontiguousarray(array), affine)


# --------------------------------------------------------------------------- labels
def map_labels(
    array: np.ndarray,
    source_labels: dict[str, int],
    labels: dict[str, list[str]],
    path: Path | str,
) -> np.ndarray:
    """Raw label values -> output values 1..N; unknown raw values fail the case.

    A raw value not claimed by any output label becomes background (0). Raw 0 is
    background unless ``source_labels`` gives 0 a meaning (REFUGE: 0 is the optic cup).
    """
    check_label(array, path)
    values = np.unique(array).astype(np.int64)
    allowed = set(source_labels.values())
    if 0 not in allowed:
        allowed.add(0)
    unexpected = sorted(set(values.tolist()) - allowed)
    if unexpected:
        raise LayoutError(
            f"{path}: unexpected label values {unexpected[:10]} (the declared labels allow "
            f"{sorted(allowed)})"
        )
    out = np.zeros(array.shape, dtype=np.uint8)
    for value, parts in enumerate(labels.values(), start=1):
        for part in parts:
            out[array == source_labels[part]] = value
    return out


def _read_label(case: RawCase) -> tuple[Volume, Path]:
    if isinstance(case.label, Path):
        return read_any(case.label, is_label=True), case.label
    assert case.label is not None
    first = None
    for mask_path, value in case.label:
        mask = read_any(mask_path, is_label=True)
        check_label(mask.array, mask_path)
        if first is None:
            first = Volume(np.zeros(mask.array.shape, dtype=np.int16), mask.affine)
        else:
            check_pair(first, mask, mask_path)
        first.array[mask.array > 0] = value
    assert first is not None
    return first, case.label[0][0]


def load_case(
    case: RawCase, spec_labels: tuple[dict, dict], dims: int, rules: CaseRules | None = None
) -> tuple[Volume, Volume, list[str]]:
    """Read, check and map one case; raise LayoutError naming the file and the reason.

    Returns the image, the mapped label and the notes of the rules that changed something.
    """
    if case.label is None or (not isinstance(case.label, Path) and not case.label):
        raise LayoutError(f"{case.image}: no label file found for case '{case.case_id}'")
    image = read_any(case.image)
    label, label_path = _read_label(case)
    if dims == 2:
        image, label = _as_2d(image), _as_2d(label)
    if image.ndim != dims:
        raise LayoutError(f"{case.image}: {image.ndim}D image, the dataset is {dims}D")
    if case.spacing is not None:
        affine = affine_from_spacing(case.spacing)
        image, label = replace(image, affine=affine), Volume(label.array, affine)
    notes: list[str] = []
    if rules is not None:
        image, label = _apply_geometry_rules(rules, image, label, case.image, label_path, notes)
    check_pair(image, label, f"{case.image} (label {label_path})")
    raw = label.array
    if rules is not None:
        check_label(raw, label_path)
        raw, note = rules.label_rule.apply(raw, spec_labels[0], label_path)
        notes += [note] if note else []
    mapped = Volume(map_labels(raw, *spec_labels, label_path), label.affine)
    if dims == 3:
        image, mapped = to_canonical(image), to_canonical(mapped)
    return image, mapped, notes


def _as_2d(volume: Volume) -> Volume:
    """A one-slice 3D volume (a 2D NIfTI saved as x, y, 1) as a 2D image, spacing kept."""
    if volume.ndim == 3 and volume.array.shape[2] == 1:
        return Volume(volume.array[:, :, 0], volume.affine)
    return volume


def source_units(path: Path) -> str | None:
    """The spatial unit a NIfTI header declares when it is not mm (None otherwise)."""
    if _suffix(path) != ".nii":
        return None
    try:
        unit = nifti_affine_mm(nib.load(str(path)), path)[1]
    except Exception:  # noqa: BLE001 - unreadable files fail (and are named) in read_any
        return None
    return unit if unit not in ("mm", "unknown") else None


def _apply_geometry_rules(
    rules: CaseRules, image: Volume, label: Volume, image_path: Path, label_path: Path,
    notes: list[str],
) -> tuple[Volume, Volume]:
    """Placeholder spacing first (it changes the grid), then label resampling if allowed."""
    from medsam2.data.converters._rules import resample_to, same_grid

    if rules.placeholder_spacing is not None:
        image, note = rules.placeholder_spacing.apply(image, image_path)
        notes += [note] if note else []
        label, note = rules.placeholder_spacing.apply(label, label_path)
        notes += [note] if note else []
    if rules.resample_label and not same_grid(image, label):
        label, note = resample_to(label, image, label_path)
        notes.append(note)
    return image, label


# --------------------------------------------------------------------------- driver
@dataclass
class ConversionReport:
    """What a conversion did: converted ids, skipped ids with reasons, notes of rules applied.

    ``cases`` says how each converted case was read and stored (source files, dtype,
    spacing in mm, stored format); ``empty_labels`` lists the labels a converted case does
    not contain, since a label absent from a case is a policy question at evaluation.
    """

    dataset: str
    converted: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    notes: dict[str, list[str]] = field(default_factory=dict)
    empty_labels: dict[str, list[str]] = field(default_factory=dict)
    cases: dict[str, dict] = field(default_factory=dict)
    dataset_info: dict = field(default_factory=dict)

    def one_line(self) -> str:
        """``name: N converted, M skipped (reason: count, ...)[, K cases ...]``."""
        line = f"{self.dataset}: {len(self.converted)} converted, {len(self.skipped)} skipped"
        if self.skipped:
            kinds = Counter(reason_kind(s["reason"]) for s in self.skipped)
            line += " (" + ", ".join(f"{k}: {n}" for k, n in kinds.most_common()) + ")"
        if self.empty_labels:
            line += (f"; {len(self.empty_labels)} case(s) with an empty label ("
                     + "; ".join(self.without_label()) + ")")
        if self.notes:
            line += f"; {len(self.notes)} case(s) changed by dataset-file rules (see the report)"
        return line

    def without_label(self, shown: int = 5) -> list[str]:
        """``2 without 'lesion': c03, c07`` per label (the first ``shown`` ids): the case ids
        in the one line a console reader sees, since each is a pair the evaluation's
        ``both_empty`` policy may leave out of the means."""
        by_label: dict[str, list[str]] = {}
        for cid, names in self.empty_labels.items():
            for name in names:
                by_label.setdefault(name, []).append(cid)
        out = []
        for name, ids in sorted(by_label.items()):
            more = f", ... (+{len(ids) - shown})" if len(ids) > shown else ""
            out.append(f"{len(ids)} without '{name}': {', '.join(ids[:shown])}{more}")
        return out

    def summary(self) -> str:
        lines = [self.one_line()]
        lines += [f"  skipped {s['case']}: {s['reason']}" for s in self.skipped]
        lines += [f"  empty label(s) in {cid}: {', '.join(names)}"
                  for cid, names in self.empty_labels.items()]
        lines += [f"  note {cid}: {n}" for cid, notes in self.notes.items() for n in notes]
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"summary": self.one_line(), "converted": self.converted,
                "skipped": self.skipped, "notes": self.notes,
                "empty_labels": self.empty_labels, "dataset": self.dataset_info,
                "cases": self.cases}


def reason_kind(reason: str) -> str:
    """The kind of a skip reason, without the file and the values (for the summary)."""
    text = reason.split(": ", 1)[-1] if ": " in reason else reason
    text = re.split(r"[\[\(']| \d", text, maxsplit=1)[0]
    return text.strip(" ,:") or "error"


def safe_case_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")


def _describe(case: RawCase, image: Volume, label: Volume) -> dict:
    """How one case was read (for the conversion report)."""
    label_src = case.label if isinstance(case.label, Path) else [
        str(p) for p, _ in (case.label or ())]
    info = {"image": str(case.image), "label": str(label_src) if isinstance(label_src, Path)
            else label_src, "shape": list(image.array.shape),
            "colour": "RGB" if image.rgb else "grey",
            "dtype": str(image.array.dtype),
            "spacing_mm": [round(s, 6) for s in image.spacing]}
    unit = source_units(case.image)
    if unit is not None:
        info["units"] = f"{unit} in the header, converted to mm"
    return info


def _empty_labels(label: Volume, labels: dict[str, list[str]]) -> list[str]:
    present = set(label_values(label.array))
    return [name for value, name in enumerate(labels, start=1) if value not in present]


def _png_to_nifti(root: Path) -> None:
    """Rewrite every PNG of ``root`` as a one-slice NIfTI (PNG files hold what they held)."""
    for png in sorted(root.glob("*/*.png")):
        nifti = png.with_name(png.name[: -len(".png")] + ".nii.gz")
        write_volume(nifti, _one_slice(read_volume(png)),
                     is_label=png.parent.name.startswith("labels"))
        png.unlink()


def _grey_to_rgb(root: Path, name: str) -> None:
    """Rewrite every grey image PNG of ``root`` as RGB with three equal channels: a dataset
    has one channel layout, and nnU-Net reads each case with the channels declared."""
    for png in sorted(root.glob("images*/*.png")):
        grey = read_volume(png, is_label=False)
        if grey.rgb:
            continue
        try:
            write_volume(png, as_rgb(grey))
        except LayoutError as exc:
            shutil.rmtree(root, ignore_errors=True)
            raise ConversionError(f"{name}: a grey image cannot join the colour images as "
                                  f"RGB: {exc}") from exc


def as_rgb(volume: Volume) -> Volume:
    """A grey 2D image as RGB with three equal channels (an RGB image as it is)."""
    if volume.rgb:
        return volume
    return Volume(np.repeat(volume.array[..., None], 3, axis=-1), volume.affine, rgb=True)


def _stored_colour(image: Volume, info: dict) -> Volume:
    """A colour image whose channels are all equal is grey: stored as one channel."""
    if image.rgb and equal_channels(image.array):
        info["colour"] = "R = G = B in the file: stored as grey"
        return Volume(image.array[..., 0], image.affine)
    return image


def _colour_conflict(tmp: Path, name: str, colour_case: str, why_nifti: str) -> ConversionError:
    shutil.rmtree(tmp, ignore_errors=True)
    return ConversionError(
        f"{name}: colour images (first: {colour_case}) are stored as RGB PNG, but "
        f"{why_nifti} needs NIfTI, which the layout keeps single-channel (nothing written)")


def _one_slice(volume: Volume) -> Volume:
    """A 2D image as the (x, y, 1) NIfTI that nnU-Net reads as a 2D case."""
    return Volume(volume.array[:, :, None], volume.affine)


def run_conversion(
    name: str,
    cases: Sequence[RawCase],
    out: Path,
    dims: int,
    source_labels: dict[str, int],
    labels: dict[str, list[str]],
    seed: int,
    test_fraction: float,
    channel_name: str = "image",
    extra_meta: dict | None = None,
    rules: CaseRules | None = None,
    max_skipped: int | None = None,
    rejected: dict[str, str] | None = None,
    label_origin: str = "the dataset file",
    group_by: str | None = None,
) -> ConversionReport:
    """Convert ``cases`` into ``out`` atomically (a temp folder renamed at the end).

    The seeded split is drawn over the cases that converted (sorted ids), so it depends
    only on the data and the seed. More than ``max_skipped`` skipped cases (None: no
    limit) raise ConversionError listing every reason, and ``out`` is not written: a
    broken converter stops the run instead of shrinking the test set. ``rejected`` holds
    cases already refused (id -> reason) before conversion; they are reported as skipped.

    2D cases are PNG while PNG holds them exactly; one float, signed or non-unit-spacing
    2D image makes the whole dataset one-slice (x, y, 1) NIfTI (``is_2d``), so that
    neither values nor spacing are lost (dataset.json has one file ending). A colour image
    makes the whole dataset RGB PNG (module doc); colour and NIfTI together fail the
    conversion (ConversionError). With ``group_by``
    the split keeps each group (e.g. a video's frames) on one side; a case without that
    group key fails the conversion naming the dataset and the case.
    """
    if not cases:
        raise ConversionError(f"{name}: no cases found (is the layout what the converter expects?)")
    ids = [c.case_id for c in cases]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ConversionError(f"{name}: duplicate case ids {dupes[:5]}")
    rejected = rejected or {}
    group_of = {}
    if group_by is not None:
        ungrouped = [c.case_id for c in cases if group_by not in dict(c.groups)]
        if ungrouped:
            raise ConversionError(f"{name}: split.group_by '{group_by}': no such group for "
                                  f"cases {ungrouped[:5]} (the converter gives "
                                  f"{sorted({k for c in cases for k, _ in c.groups}) or 'none'})")
        group_of = {c.case_id: dict(c.groups)[group_by] for c in cases}
    ending = ".png" if dims == 2 else ".nii.gz"
    why_nifti: str | None = None
    colour_case: str | None = None  # the first colour image: the dataset is RGB
    tmp = out.parent / f".{out.name}.converting"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    report = ConversionReport(name)
    for case in cases:
        if case.case_id in rejected:
            report.skipped.append({"case": case.case_id, "reason": rejected[case.case_id]})
            continue
        try:
            image, label, notes = load_case(case, (source_labels, labels), dims, rules)
            info = _describe(case, image, label)
            image = _stored_colour(image, info)
            if dims == 2 and why_nifti is None:
                loss = png_loss(image.array, rgb=image.rgb) or (
                    None if np.allclose(image.spacing, 1.0)
                    else f"spacing {list(info['spacing_mm'])} mm")
                if loss is not None:
                    why_nifti = f"{case.case_id}: {loss}"
                    if colour_case is not None:
                        raise _colour_conflict(tmp, name, colour_case, why_nifti)
                    _png_to_nifti(tmp)
                    ending = ".nii.gz"
            if image.rgb and colour_case is None:
                if why_nifti is not None:
                    raise _colour_conflict(tmp, name, case.case_id, why_nifti)
                colour_case = case.case_id
                _grey_to_rgb(tmp, name)
            if colour_case is not None and not image.rgb:
                image = as_rgb(image)
                info["colour"] = "grey: stored as RGB with equal channels (a colour dataset)"
            if dims == 2 and ending == ".nii.gz":
                write_case(tmp, case.case_id, "train", _one_slice(image), _one_slice(label),
                           ending)
            else:
                write_case(tmp, case.case_id, "train", image, label, ending)
            report.converted.append(case.case_id)
            report.cases[case.case_id] = info
            empty = _empty_labels(label, labels)
            if empty:
                report.empty_labels[case.case_id] = empty
            if notes:
                report.notes[case.case_id] = notes
        except LayoutError as exc:
            report.skipped.append({"case": case.case_id, "reason": str(exc)})
    if not report.converted:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ConversionError(f"{name}: no case could be converted\n{report.summary()}")
    if max_skipped is not None and len(report.skipped) > max_skipped:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ConversionError(
            f"{name}: {len(report.skipped)} cases skipped, more than max_skipped={max_skipped} "
            f"allowed by the dataset file (nothing written)\n{report.summary()}"
        )
    for info in report.cases.values():
        info["stored_as"] = ending
    # Split over the cases that converted, so a bad case never empties a split.
    done = report.converted
    if len(done) <= 1:
        train, test = [], done
    elif group_by is not None:
        train, test = grouped_split({c: group_of[c] for c in done}, test_fraction, seed)
    else:
        train, test = seeded_split(done, test_fraction, seed)
    for cid in test:
        for folder, name in (("imagesTr", f"{cid}_0000{ending}"), ("labelsTr", f"{cid}{ending}")):
            dest = tmp / folder.replace("Tr", "Ts") / name
            dest.parent.mkdir(exist_ok=True)
            (tmp / folder / name).replace(dest)
    out_labels = {"background": 0, **{n: i + 1 for i, n in enumerate(labels)}}
    channel_names = dict(RGB_CHANNEL_NAMES) if colour_case else {"0": channel_name}
    report.dataset_info = {
        "labels_from": label_origin,
        "labels": {n: {"value": i + 1, "source_values": [source_labels[p] for p in parts]}
                   for i, (n, parts) in enumerate(labels.items())},
        "channel_names": channel_names, "file_ending": ending,
    }
    if colour_case is not None:
        report.dataset_info["colour"] = (
            f"RGB PNG, nnU-Net's natural-image channel_names (first colour image: "
            f"{colour_case})")
    meta = dict(extra_meta or {})
    if why_nifti is not None:
        report.dataset_info["stored_as_nifti_because"] = why_nifti
        meta["is_2d"] = True
    write_splits(tmp, train, test, seed)
    if group_by is not None:  # the groups beside the split, so a reader can check it
        splits = read_json(tmp / "splits.json", "splits file", require=())
        splits.update(group_by=group_by, groups={c: group_of[c] for c in done})
        (tmp / "splits.json").write_text(json.dumps(splits, indent=2) + "\n")
    (tmp / "conversion_report.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
    write_dataset_json(tmp, out_labels, len(train), ending, channel_names,
                       numTest=len(test), **meta)
    if out.exists():
        shutil.rmtree(out)
    tmp.replace(out)
    return report


def convert_dataset(spec: DatasetSpec, src: Path, out: Path, seed: int = 0,
                    test_fraction: float | None = None,
                    group_by: str | None = None) -> ConversionReport:
    """Convert one registry dataset from its extracted folder into ``out``."""
    from medsam2.data.converters import CONVERTERS

    if not Path(src).is_dir():
        raise ConversionError(f"{src}: extracted data folder not found (run extract first)")
    cases = CONVERTERS[spec.converter](Path(src), spec.options)
    meta = {"source": spec.key, "imaging_modality": spec.modality, "prompt": spec.prompt,
            "target_labels": spec.target_labels, "paper_key": spec.paper_key,
            "paper_structures": spec.paper_structures}
    return run_conversion(
        out.name, cases, Path(out), spec.dims, spec.source_labels, spec.labels, seed,
        test_fraction if test_fraction is not None else spec.split["test_fraction"],
        spec.channel_name, meta, rules=spec.rules, max_skipped=spec.max_skipped,
        label_origin=f"config/datasets/{spec.key}.yaml",
        group_by=group_by,
    )


def import_local(path: Path, out: Path, seed: int = 0, test_fraction: float = 0.2,
                 dims: int | None = None, modality: str = "unknown",
                 prompt: str = "box", labels: dict[str, int] | None = None,
                 label_threshold: float | None = None) -> ConversionReport:
    """Bring your own data: nnU-Net raw layout or ``images/`` + ``labels/`` paired by name.

    Labels are declared (``labels``: name -> raw value, or the folder's ``dataset.json``)
    or, for a folder without a declaration, inferred only from a clean set of values
    (``converters/local.py``). ``label_threshold`` binarises every label file (raw >= the
    threshold is the one foreground label); lossy label files (JPEG) need it. The channel
    name comes from ``dataset.json``'s ``channel_names`` when there is one.
    """
    from medsam2.data.converters import local

    root = Path(path)
    try:
        cases = local.find_cases(root)
        declared = local.read_declaration(root)
        plan = local.plan_labels(cases, labels, declared, label_threshold)
        channel = local.channel_name(declared, modality, root)
    except (local.LabelDeclarationError, FileNotFoundError) as exc:
        raise ConversionError(f"{Path(out).name}: {exc}") from exc
    if modality == "unknown":
        modality = channel
    if dims is None:
        dims = local.guess_dims(cases)
    names = {n: [n] for n in plan.source}
    return run_conversion(
        out.name, cases, Path(out), dims, plan.source, names, seed, test_fraction,
        channel,
        {"source": f"local:{path}", "imaging_modality": modality, "prompt": prompt,
         "target_labels": list(names)},
        rules=plan.rules, rejected=plan.rejected, label_origin=plan.origin,
    )
