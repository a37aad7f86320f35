"""The standard dataset layout: nnU-Net v2 raw format, one folder per dataset key.

Every stage after conversion reads data through this module, so that nnU-Net (which reads
the folder as is) and MedSAM-2 see exactly the same cases, spacing and labels::

    results/datasets/{dataset}/
        imagesTr/{case}_0000.nii.gz   labelsTr/{case}.nii.gz
        imagesTs/{case}_0000.nii.gz   labelsTs/{case}.nii.gz
        dataset.json                  # channel_names, labels, numTraining, file_ending
        splits.json                   # {"seed": int, "train": [...], "test": [...]}

3D images are NIfTI with their true affine (array axes = voxel axes i, j, k as nibabel
returns them; spacing = voxel sizes in mm, a header in microns or metres converted). 2D
images are PNG (array axes = rows, columns; spacing 1 x 1 unless ``dataset.json`` says
otherwise under ``spacing_2d``), or one-slice NIfTI (``is_2d: true``) where a PNG would
lose values (float, signed) or spacing. Label files hold only the values ``dataset.json``
declares.

Colour 2D images follow nnU-Net's natural-image convention: one 8-bit RGB PNG per case
(``{case}_0000.png``) and ``channel_names`` ``{"0": "R", "1": "G", "2": "B"}``
(MIC-DKFZ/nnUNet nnunetv2/dataset_conversion/Dataset120_RoadSegmentation.py writes
exactly these names; nnunetv2/imageio/natural_image_reader_writer.py reads an RGB PNG as
three channels). Such an image is read channel-last, (rows, cols, 3), as a ``Volume``
with ``rgb=True``; its label stays (rows, cols).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image as PILImage

from medsam2.fileio import read_json

SPLIT_FOLDERS = {"train": ("imagesTr", "labelsTr"), "test": ("imagesTs", "labelsTs")}
SUPPORTED_ENDINGS = (".nii.gz", ".png")
#: ``channel_names`` of a colour dataset: nnU-Net's natural-image convention (module doc)
RGB_CHANNEL_NAMES = {"0": "R", "1": "G", "2": "B"}


class LayoutError(ValueError):
    """A dataset folder or file violates the standard layout (message names the file)."""


@dataclass
class Volume:
    """An image or label array with its geometry.

    ``array`` is (i, j, k) for 3D and (rows, cols) for 2D; a colour image (``rgb``) has
    the channels last, (rows, cols, 3). ``affine`` maps voxel indices to millimetres (RAS
    for NIfTI), so spacing is the column norms of its 3x3 block. ``ndim``, ``shape`` and
    ``spacing`` are spatial: a colour 2D image is 2D, since an (H, W, 3) array alone cannot
    be told from a volume of three slices.
    """

    array: np.ndarray
    affine: np.ndarray = field(default_factory=lambda: np.eye(4))
    rgb: bool = False

    def __post_init__(self) -> None:
        if self.rgb and (self.array.ndim != 3 or self.array.shape[-1] != 3):
            raise ValueError(f"an RGB volume is (rows, cols, 3), got shape {self.array.shape}")

    @property
    def spacing(self) -> tuple[float, ...]:
        zooms = np.linalg.norm(self.affine[:3, :3], axis=0)
        return tuple(float(z) for z in zooms[: self.ndim])

    @property
    def ndim(self) -> int:
        """Spatial dimensions (the colour axis of an RGB image not counted)."""
        return self.array.ndim - 1 if self.rgb else self.array.ndim

    @property
    def shape(self) -> tuple[int, ...]:
        """Spatial shape: the label grid of this image."""
        return tuple(self.array.shape[: self.ndim])


def affine_from_spacing(spacing: Sequence[float]) -> np.ndarray:
    """A diagonal affine for the given voxel sizes (2D spacing gets a unit third axis)."""
    sp = list(spacing) + [1.0] * (3 - len(spacing))
    return np.diag([*sp, 1.0]).astype(np.float64)


#: NIfTI ``xyzt_units`` spatial codes -> millimetres per unit; unknown (0) is taken as mm,
#: as nnU-Net and ITK do
NIFTI_UNITS_TO_MM = {"unknown": 1.0, "mm": 1.0, "micron": 1e-3, "meter": 1e3}


def nifti_affine_mm(img: nib.Nifti1Image, path: Path | str) -> tuple[np.ndarray, str]:
    """The image's affine in millimetres, and the spatial unit its header declares.

    A microscopy NIfTI in microns read as millimetres makes every distance (HD95) a
    thousand times too large, so the header's unit is applied, never assumed.
    """
    affine = np.asarray(img.affine, dtype=np.float64)
    unit = img.header.get_xyzt_units()[0] if hasattr(img.header, "get_xyzt_units") else "mm"
    unit = unit or "unknown"
    if unit not in NIFTI_UNITS_TO_MM:
        raise LayoutError(f"{path}: unsupported NIfTI spatial unit '{unit}'")
    if NIFTI_UNITS_TO_MM[unit] != 1.0:
        affine = affine.copy()
        affine[:3, :] *= NIFTI_UNITS_TO_MM[unit]
    return affine, unit


def png_loss(array: np.ndarray, is_label: bool = False, rgb: bool = False) -> str | None:
    """Why ``array`` cannot be stored in a PNG as is (None: it can, losslessly).

    PNG holds non-negative integers (uint8 labels, uint8/uint16 grey images, uint8 RGB
    images: Pillow writes no 16-bit RGB PNG); a float image in [0, 1] or HU would
    otherwise be truncated or wrap around without a word.
    """
    if array.size == 0:
        return None
    if not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.isfinite(array)) or not np.all(np.equal(np.mod(array, 1), 0)):
            return f"non-integer {array.dtype} values"
    low, high = float(array.min()), float(array.max())
    top = 255 if is_label or rgb else 65535
    if low < 0 or high > top:
        return f"{array.dtype} values in [{low:g}, {high:g}], outside PNG's [0, {top}]"
    return None


def file_ending(path: Path | str) -> str:
    name = str(path)
    for ending in SUPPORTED_ENDINGS:
        if name.endswith(ending):
            return ending
    raise LayoutError(f"{path}: unsupported file type (expected one of {SUPPORTED_ENDINGS})")


def read_volume(path: Path | str, spacing_2d: Sequence[float] = (1.0, 1.0),
                is_label: bool | None = None) -> Volume:
    """Read a NIfTI or PNG file; raise LayoutError naming the file on any problem.

    A colour PNG (RGB or RGBA; alpha dropped) is read as an ``rgb`` image when
    ``is_label`` is False, as one channel when it is True (a label map saved in colour
    has equal channels; one whose channels differ is a drawing, not a label: an error).
    ``None`` (a file of unknown role, e.g. a prediction): equal channels are read as one,
    differing ones as an RGB image.
    """
    path = Path(path)
    if not path.is_file():
        raise LayoutError(f"{path}: file not found")
    ending = file_ending(path)
    try:
        if ending == ".nii.gz":
            img = nib.load(str(path))
            array = np.asanyarray(img.dataobj)
            affine = nifti_affine_mm(img, path)[0]
        else:
            with PILImage.open(path) as im:
                if im.mode in ("P", "PA") and is_label is False:  # palette image: its colours
                    im = im.convert("RGBA")
                array = np.asarray(im)
            affine = affine_from_spacing(spacing_2d)
            array, rgb = split_colour(array, path, is_label)
            return Volume(array, affine, rgb)
    except LayoutError:
        raise
    except Exception as exc:  # nibabel/PIL raise many types; the user needs the file name
        raise LayoutError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from exc
    return Volume(np.asarray(array), affine)


def equal_channels(rgb: np.ndarray) -> bool:
    """Whether an (..., 3) colour array is grey (R == G == B everywhere)."""
    return bool(np.array_equal(rgb[..., 0], rgb[..., 1])
                and np.array_equal(rgb[..., 0], rgb[..., 2]))


def split_colour(array: np.ndarray, path: Path | str,
                 is_label: bool | None) -> tuple[np.ndarray, bool]:
    """(array, is RGB) of a decoded 2D picture: grey as is, grey + alpha as grey, colour
    (alpha dropped) as RGB for images, as one channel for labels (see ``read_volume``)."""
    if array.ndim != 3:
        return array, False
    if array.shape[-1] == 2:  # grey + alpha
        return array[..., 0], False
    if array.shape[-1] not in (3, 4):
        raise LayoutError(f"{path}: {array.shape[-1]} colour channels (expected grey, RGB or "
                          "RGBA)")
    colour = np.ascontiguousarray(array[..., :3])
    if is_label is False:
        return colour, True
    if equal_channels(colour):
        return colour[..., 0], False
    if is_label:
        raise LayoutError(f"{path}: colour label (channels differ), not a label map")
    return colour, True


def write_volume(path: Path | str, volume: Volume, is_label: bool = False) -> Path:
    """Write NIfTI (keeps the affine) or PNG (uint8 labels, uint8/uint16 grey images,
    uint8 RGB images: a lossless 24-bit PNG). Colour is written as PNG only: nnU-Net's
    NIfTI reader takes one file per channel, which the layout does not use."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ending = file_ending(path)
    array = volume.array
    if volume.rgb and (is_label or ending != ".png"):
        raise LayoutError(f"{path}: an RGB {'label' if is_label else 'image'} cannot be "
                          "stored (colour images are PNG, labels one channel)")
    if ending == ".nii.gz":
        dtype = np.uint8 if is_label and array.max(initial=0) < 256 else None
        data = array.astype(dtype) if dtype is not None else array
        if not is_label and data.dtype == np.float64:
            data = data.astype(np.float32)
        img = nib.Nifti1Image(data, volume.affine)
        img.header.set_xyzt_units("mm")
        if dtype is not None:
            img.header.set_data_dtype(dtype)
        nib.save(img, str(path))
    else:
        if volume.ndim != 2:
            raise LayoutError(f"{path}: PNG needs a 2D array, got shape {array.shape}")
        loss = png_loss(array, is_label, volume.rgb)
        if loss is not None:
            raise LayoutError(f"{path}: {loss} cannot be stored in a PNG without loss")
        if is_label or volume.rgb or array.max(initial=0) < 256:
            data = array.astype(np.uint8)
        else:
            data = array.astype(np.uint16)
        PILImage.fromarray(data).save(path)
    return path


@dataclass(frozen=True)
class Case:
    """One case of a standard dataset: where its image channels and label live."""

    case_id: str
    split: str
    images: tuple[Path, ...]
    label: Path | None


class StandardDataset:
    """Read access to one dataset in the standard layout.

    The folder is checked up front (``verify``) so that a missing label or a case whose
    image and label disagree fails before any model is trained.
    """

    def __init__(self, root: Path | str):
        self.root = Path(root)
        meta_path = self.root / "dataset.json"
        if not meta_path.is_file():
            raise LayoutError(f"{meta_path}: missing (not a standard dataset folder)")
        self.meta = read_json(meta_path, "dataset file",
                              require=("channel_names", "labels", "file_ending"),
                              error=LayoutError)
        # nnU-Net v2 still reads a top-level "modality" as v1's channel dict and takes its
        # length as the number of input channels (nnunetv2 label_handling.py,
        # determine_num_input_channels): "CT" would build a 2-channel network
        if "modality" in self.meta and not isinstance(self.meta["modality"], dict):
            raise LayoutError(
                f"{meta_path}: 'modality' is {self.meta['modality']!r}, which nnU-Net reads as "
                f"{len(self.meta['modality'])} input channels; the modality belongs in "
                "'imaging_modality' (convert or import the dataset again)")
        splits_path = self.root / "splits.json"
        self.splits = read_json(splits_path, "splits file", require=("train", "test"),
                                error=LayoutError) if splits_path.is_file() else None

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def file_ending(self) -> str:
        return self.meta["file_ending"]

    @property
    def labels(self) -> dict[str, int]:
        """Foreground labels, name -> value (background excluded)."""
        return {k: int(v) for k, v in self.meta["labels"].items() if int(v) != 0}

    @property
    def num_channels(self) -> int:
        return len(self.meta["channel_names"])

    @property
    def is_rgb(self) -> bool:
        """A colour dataset: ``channel_names`` R, G, B in one RGB PNG per case (module doc)."""
        names = {str(k): v for k, v in self.meta["channel_names"].items()}
        return self.file_ending == ".png" and names == RGB_CHANNEL_NAMES

    @property
    def is_3d(self) -> bool:
        return self.file_ending == ".nii.gz" and not self.meta.get("is_2d", False)

    @property
    def spacing_2d(self) -> tuple[float, float]:
        return tuple(self.meta.get("spacing_2d", (1.0, 1.0)))  # type: ignore[return-value]

    def cases(self, split: str = "test") -> list[Case]:
        if split not in SPLIT_FOLDERS:
            raise LayoutError(f"unknown split '{split}' (expected one of {list(SPLIT_FOLDERS)})")
        img_dir, lab_dir = (self.root / d for d in SPLIT_FOLDERS[split])
        if not img_dir.is_dir():
            return []
        ending = self.file_ending
        suffix = f"_0000{ending}"
        ids = sorted(p.name[: -len(suffix)] for p in img_dir.glob(f"*{suffix}"))
        out = []
        files = 1 if self.is_rgb else self.num_channels  # RGB: three channels in one file
        for cid in ids:
            images = tuple(img_dir / f"{cid}_{c:04d}{ending}" for c in range(files))
            label = lab_dir / f"{cid}{ending}"
            out.append(Case(cid, split, images, label if label.is_file() else None))
        return out

    def case(self, case_id: str) -> Case:
        for split in SPLIT_FOLDERS:
            for c in self.cases(split):
                if c.case_id == case_id:
                    return c
        raise LayoutError(f"{self.root}: no case '{case_id}'")

    def _read(self, path: Path, is_label: bool) -> Volume:
        """A file of this dataset; a 2D dataset's one-slice NIfTI (x, y, 1) comes as 2D."""
        vol = read_volume(path, self.spacing_2d, is_label)
        if not self.is_3d and not vol.rgb and vol.ndim == 3 and vol.array.shape[2] == 1:
            return Volume(vol.array[:, :, 0], vol.affine)
        return vol

    def read_image(self, case: Case) -> Volume:
        """The case's image: (H, W, 3) ``rgb`` in a colour dataset, else its first channel.

        The file must hold what ``dataset.json`` declares, as nnU-Net reads it: an RGB PNG
        in a colour dataset; one channel elsewhere (a colour PNG whose channels are equal
        is accepted as grey, as before colour was kept).
        """
        path = case.images[0]
        vol = self._read(path, is_label=False)
        if self.is_rgb and not vol.rgb:
            raise LayoutError(f"{path}: single-channel image in a colour dataset "
                              f"({self.root / 'dataset.json'}: channel_names R, G, B wants an "
                              "RGB PNG)")
        if not self.is_rgb and vol.rgb:
            if not equal_channels(vol.array):
                raise LayoutError(
                    f"{path}: colour image in a single-channel dataset "
                    f"({self.root / 'dataset.json'}: channel_names "
                    f"{self.meta['channel_names']}; a colour dataset declares R, G, B)")
            return Volume(vol.array[..., 0], vol.affine)
        return vol

    def read_label(self, case: Case) -> Volume:
        if case.label is None:
            raise LayoutError(f"{self.root}: case '{case.case_id}' has no label file")
        vol = self._read(case.label, is_label=True)
        check_label(vol.array, case.label)
        undeclared = sorted(set(label_values(vol.array)) - {0, *self.labels.values()})
        if undeclared:  # an undeclared value would be scored as no label at all
            raise LayoutError(
                f"{case.label}: label values {undeclared[:10]} are not declared in "
                f"{self.root / 'dataset.json'} (labels {self.meta['labels']})"
            )
        return Volume(np.asarray(vol.array).astype(np.int16), vol.affine)

    def iter_cases(self, split: str = "test") -> Iterator[tuple[Case, Volume, Volume]]:
        for case in self.cases(split):
            yield case, self.read_image(case), self.read_label(case)

    def verify(self) -> list[str]:
        """Return a list of problems (empty when the dataset is sound)."""
        problems = []
        for split in SPLIT_FOLDERS:
            for case in self.cases(split):
                try:
                    image, label = self.read_image(case), self.read_label(case)
                    check_pair(image, label, case.images[0])
                except LayoutError as exc:
                    problems.append(str(exc))
        if not self.cases("train") and not self.cases("test"):
            problems.append(f"{self.root}: no cases in imagesTr or imagesTs")
        return problems


def label_values(array: np.ndarray) -> list[int]:
    """The distinct values of a checked label array (a counting pass, not a sort).

    Every stage reads labels, and sorting a 512 x 512 x 300 volume per read costs seconds.
    """
    if np.issubdtype(array.dtype, np.integer) and array.size and 0 <= array.min() \
            and array.max() < 1 << 16:
        return np.flatnonzero(np.bincount(array.ravel())).tolist()
    return [int(v) for v in np.unique(array)]


def check_label(array: np.ndarray, path: Path | str) -> None:
    if not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.isfinite(array)) or not np.all(np.equal(np.mod(array, 1), 0)):
            raise LayoutError(f"{path}: label has non-integer values")
    if array.min(initial=0) < 0:
        raise LayoutError(f"{path}: label has negative values")


def check_pair(image: Volume, label: Volume, path: Path | str, atol: float = 1e-3) -> None:
    """Image and label must share the grid: same spatial shape (an RGB image's colour axis
    aside) and (for NIfTI) the same affine; a label has one channel."""
    if label.rgb:
        raise LayoutError(f"{path}: the label is a colour image, not a label map")
    if image.shape != label.array.shape:
        shown = image.array.shape if not image.rgb else f"{image.shape} (x 3 colours)"
        raise LayoutError(f"{path}: image shape {shown} != label shape {label.array.shape}")
    if not np.allclose(image.affine, label.affine, atol=atol):
        raise LayoutError(f"{path}: image and label affines differ")
    if np.issubdtype(image.array.dtype, np.floating) and not np.all(np.isfinite(image.array)):
        raise LayoutError(f"{path}: image contains NaN or inf")


def write_case(
    root: Path | str,
    case_id: str,
    split: str,
    image: Volume,
    label: Volume | None,
    file_ending: str = ".nii.gz",
) -> Case:
    """Write one case into the standard layout (one image file: grey, or RGB PNG)."""
    root = Path(root)
    img_dir, lab_dir = (root / d for d in SPLIT_FOLDERS[split])
    img_path = img_dir / f"{case_id}_0000{file_ending}"
    if label is not None:  # check before writing anything: no half-written case
        check_pair(image, label, img_path)
    write_volume(img_path, image)
    lab_path = None
    if label is not None:
        lab_path = write_volume(lab_dir / f"{case_id}{file_ending}", label, is_label=True)
    return Case(case_id, split, (img_path,), lab_path)


def write_dataset_json(
    root: Path | str,
    labels: dict[str, int],
    num_training: int,
    file_ending: str,
    channel_names: dict[str, str] | None = None,
    **extra: object,
) -> Path:
    """Write nnU-Net's dataset.json; ``labels`` must include ``background: 0``."""
    if labels.get("background") != 0:
        labels = {"background": 0, **labels}
    meta = {
        "channel_names": channel_names or {"0": "image"},
        "labels": labels,
        "numTraining": int(num_training),
        "file_ending": file_ending,
        **extra,
    }
    path = Path(root) / "dataset.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(meta, indent=2) + "\n")
    return path


def write_splits(root: Path | str, train: Sequence[str], test: Sequence[str], seed: int) -> Path:
    path = Path(root) / "splits.json"
    path.write_text(
        json.dumps({"seed": seed, "train": sorted(train), "test": sorted(test)}, indent=2) + "\n"
    )
    return path


def grouped_split(groups: dict[str, str], test_fraction: float, seed: int) -> tuple[list, list]:
    """Train/test split of case ids (``groups``: case id -> group) by whole groups: the
    frames of one video never land on both sides. ``test_fraction`` of the groups (at
    least one on each side) are drawn as ``seeded_split`` draws cases."""
    train_groups, test_groups = seeded_split(sorted(set(groups.values())), test_fraction, seed)
    test_set = set(test_groups)
    test = sorted(c for c, g in groups.items() if g in test_set)
    train = sorted(c for c, g in groups.items() if g not in test_set)
    return train, test


def seeded_split(case_ids: Sequence[str], test_fraction: float, seed: int) -> tuple[list, list]:
    """Deterministic train/test split of case ids (at least one case on each side)."""
    ids = sorted(case_ids)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ids))
    n_test = min(max(1, round(test_fraction * len(ids))), max(len(ids) - 1, 1))
    test = sorted(ids[i] for i in order[:n_test])
    train = sorted(ids[i] for i in order[n_test:])
    return train, test
