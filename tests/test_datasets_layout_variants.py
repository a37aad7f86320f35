"""The other documented layouts of a dataset convert too (each cites where it is shown)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from PIL import Image

from medsam2.data.convert import convert_dataset
from medsam2.data.layout import StandardDataset
from medsam2.data.registry import load_spec

REGISTRY = Path(__file__).resolve().parents[1] / "config" / "datasets"


def _png(path: Path, array: np.ndarray, fmt: str = "PNG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format=fmt)


def _nrrd(path: Path, array_zyx: np.ndarray, spacing: tuple[float, float, float]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = sitk.GetImageFromArray(array_zyx)
    img.SetSpacing(spacing)
    sitk.WriteImage(img, str(path))


def _cases(root: Path) -> dict[str, np.ndarray]:
    ds = StandardDataset(root)
    assert ds.verify() == []
    return {c.case_id: ds.read_label(c).array for c in ds.cases("train") + ds.cases("test")}


def test_refuge_kaggle_mirror_with_png_validation_masks(tmp_path: Path):
    """torch-em torch_em/data/datasets/medical/refuge.py: REFUGE2/{train,val}/images/*.jpg
    with mask/*.bmp (train) or mask/*.png (val); 0 cup, 128 rim, 255 background."""
    mask = np.full((10, 12), 255, np.uint8)
    mask[3:7, 3:8] = 128
    mask[4:6, 4:6] = 0
    rgb = np.zeros((10, 12, 3), np.uint8)
    for split, cid, fmt in (("train", "g0001", "BMP"), ("val", "V0001", "PNG")):
        _png(tmp_path / "ex" / "REFUGE2" / split / "images" / f"{cid}.jpg", rgb, "JPEG")
        _png(tmp_path / "ex" / "REFUGE2" / split / "mask" / f"{cid}.{fmt.lower()}", mask, fmt)
    report = convert_dataset(load_spec(REGISTRY / "refuge.yaml"), tmp_path / "ex",
                             tmp_path / "refuge")
    assert sorted(report.converted) == ["V0001", "g0001"] and report.skipped == []
    for label in _cases(tmp_path / "refuge").values():
        assert int(label.sum()) == 4  # the optic cup only


def test_kits_repository_layout_with_imaging_beside_the_segmentation(tmp_path: Path):
    """neheller/kits23 kits23/download.py writes dataset/case_NNNNN/imaging.nii.gz."""
    aff = np.diag([0.8, 0.8, 3.0, 1.0])
    for c in ("case_00000", "case_00400"):
        folder = tmp_path / "ex" / "kits23" / "dataset" / c
        folder.mkdir(parents=True)
        seg = np.zeros((5, 4, 3), np.uint8)
        seg[1:3, 1:3, 1] = 2
        seg[4, 3, 2] = 1
        image = nib.Nifti1Image(np.zeros((5, 4, 3), np.int16), aff)
        nib.save(image, str(folder / "imaging.nii.gz"))
        nib.save(nib.Nifti1Image(seg, aff), str(folder / "segmentation.nii.gz"))
    report = convert_dataset(load_spec(REGISTRY / "kits23.yaml"), tmp_path / "ex",
                             tmp_path / "kits")
    assert sorted(report.converted) == ["case_00000", "case_00400"] and report.skipped == []
    assert all(int(lab.sum()) == 4 for lab in _cases(tmp_path / "kits").values())  # tumour


def test_tdsc_validation_split_is_flat_and_paired_by_case_number(tmp_path: Path):
    """mralinp/tdsc-abus2023-pytorch README: Train/, Validation/, Test/ each with DATA/ and
    MASK/; only Train shards its DATA folder (entrants' code: DATA00_49/)."""
    sp = (0.2, 0.073, 0.475674)
    vol = np.zeros((4, 5, 6), np.uint8)
    mask = np.zeros((4, 5, 6), np.uint8)
    mask[1:3, 2, 2:4] = 1
    _nrrd(tmp_path / "ex" / "Train" / "DATA" / "DATA00_49" / "DATA_007.nrrd", vol, sp)
    _nrrd(tmp_path / "ex" / "Train" / "MASK" / "MASK_007.nrrd", mask, sp)
    _nrrd(tmp_path / "ex" / "Validation" / "DATA" / "DATA_100.nrrd", vol, sp)
    _nrrd(tmp_path / "ex" / "Validation" / "MASK" / "MASK_100.nrrd", mask, sp)
    _nrrd(tmp_path / "ex" / "Validation" / "DATA" / "DATA_7.nrrd", vol, sp)  # unpadded number
    _nrrd(tmp_path / "ex" / "Validation" / "MASK" / "MASK_007.nrrd", mask, sp)
    report = convert_dataset(load_spec(REGISTRY / "tdsc_abus23.yaml"), tmp_path / "ex",
                             tmp_path / "abus")
    assert sorted(report.converted) == ["Train_DATA_007", "Validation_DATA_007",
                                        "Validation_DATA_100"]
    assert report.skipped == [] and report.notes == {}  # true spacing: nothing replaced
    assert all(int(lab.sum()) == 4 for lab in _cases(tmp_path / "abus").values())
