"""Dataset-file rules: label encodings, label-to-image resampling, placeholder spacing,
and loud losses (``max_skipped``, the one-line summary)."""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import yaml
from PIL import Image

from medsam2.data.convert import ConversionError, convert_dataset
from medsam2.data.converters._rules import LabelRule, PlaceholderSpacing, resample_to
from medsam2.data.layout import StandardDataset, Volume
from medsam2.data.registry import (
    RegistryError,
    download_dataset,
    extract_dataset,
    load_spec,
    main,
    spec_from_dict,
)

REGISTRY = Path(__file__).resolve().parents[1] / "config" / "datasets"


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _nii(path: Path, array: np.ndarray, affine: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))


# --------------------------------------------------------------------------- label rules
def test_nearest_rule_takes_wbc_stray_pixels_as_the_nearest_value():
    # the stray values of zxaoyou/segmentation_WBC "Dataset 2/034.png", measured
    mask = np.array([[0, 2, 7, 25], [42, 128, 255, 45]], np.uint8)
    rule = LabelRule(mode="nearest", tolerance=50)
    out, note = rule.apply(mask, {"cytoplasm": 128, "nucleus": 255}, "034.png")
    assert out.tolist() == [[0, 0, 0, 0], [0, 128, 255, 0]]
    assert note is not None and "034.png: 5 pixel(s) of stray values [2, 7, 25, 42, 45]" in note


def test_nearest_rule_leaves_far_values_to_fail():
    out, note = LabelRule(mode="nearest", tolerance=50).apply(
        np.array([0, 77, 128], np.uint8), {"cytoplasm": 128}, "x.png")
    assert out.tolist() == [0, 77, 128] and note is None  # 77 then fails in map_labels


def test_threshold_and_nonzero_rules():
    raw = np.array([0, 40, 127, 128, 200, 255], np.uint8)
    out, note = LabelRule(mode="threshold", at=128, label="vessel").apply(
        raw, {"vessel": 255}, "im0002.ah.ppm.gz")
    assert out.tolist() == [0, 0, 0, 255, 255, 255]
    assert note is not None and "thresholded at 128" in note
    out, note = LabelRule(mode="nonzero", label="mandible").apply(raw, {"mandible": 1}, "1.png")
    assert out.tolist() == [0, 1, 1, 1, 1, 1] and note is None


@pytest.mark.parametrize("rule, message", [
    ({"mode": "fuzzy"}, "label_rule.mode must be one of"),
    ({"mode": "threshold", "label": "nucleus"}, "label_rule.at"),
    ({"mode": "nonzero", "label": "membrane"}, "label_rule.label must name one of"),
    ({"mode": "nearest"}, "label_rule.tolerance"),
    ({"mode": "values", "colour": 1}, r"label_rule has unknown keys \['colour'\]"),
])
def test_bad_label_rule_names_file_and_key(rule, message):
    raw = yaml.safe_load((REGISTRY / "wbc.yaml").read_text())
    raw["label_rule"] = rule
    with pytest.raises(RegistryError, match=f"wbc.yaml: {message}"):
        spec_from_dict(raw, "config/datasets/wbc.yaml")


def _pendal_direct_zip(path: Path) -> Path:
    """DentalPanoramicXrays.zip as torch-em's pandental.py reads it: Images/, Segmentation1/
    at the top; a segmentation is the X-ray with everything outside the mandible zeroed."""
    rng = np.random.default_rng(1)
    with zipfile.ZipFile(path, "w") as zf:
        for i in (1, 2):
            xray = rng.integers(1, 255, (10, 12)).astype(np.uint8)
            seg = np.zeros_like(xray)
            seg[5:9, 3:9] = xray[5:9, 3:9]
            for folder, array in (("Images", xray), ("Segmentation1", seg)):
                buf = io.BytesIO()
                Image.fromarray(array).save(buf, format="PNG")
                zf.writestr(f"{folder}/{i}.png", buf.getvalue())
    return path


def test_pendal_direct_zip_masked_xrays_convert(tmp_path: Path):
    """The registry's direct PENDAL file converts: masks are masked X-rays, not 0/255."""
    (tmp_path / "up").mkdir()
    src = _pendal_direct_zip(tmp_path / "up" / "DentalPanoramicXrays.zip")
    spec = load_spec(REGISTRY / "pendal.yaml")
    spec = dataclasses.replace(spec, files=[dataclasses.replace(spec.files[0], url=str(src),
                                                                sha256=None)])
    download_dataset(spec, tmp_path / "dl")
    extract_dataset(spec, tmp_path / "dl", tmp_path / "ex")
    report = convert_dataset(spec, tmp_path / "ex", tmp_path / "pendal")
    assert sorted(report.converted) == ["pano_1", "pano_2"] and report.skipped == []
    ds = StandardDataset(tmp_path / "pendal")
    for case in ds.cases("train") + ds.cases("test"):
        label = ds.read_label(case).array
        assert int(label.sum()) == 24 and label[5:9, 3:9].all()


# --------------------------------------------------------------------------- geometry
def test_resample_to_is_nearest_neighbour_in_physical_space():
    image_aff = np.diag([0.5, 0.5, 2.0, 1.0])
    image_aff[:2, 3] = 0.25  # voxel centres x = 0.5 i + 0.25: no ties between label voxels
    image = Volume(np.zeros((8, 6, 4), np.int16), image_aff)
    aff = np.diag([1.0, 1.0, 2.0, 1.0])
    aff[0, 3] = 1.0  # 1 mm voxels starting 1 mm along x
    label = np.zeros((4, 3, 4), np.uint8)
    label[2, 1, 1] = 1  # covers x in [2.5, 3.5), y in [0.5, 1.5), z = 2
    out, note = resample_to(Volume(label, aff), image, "seg.nrrd")
    assert out.array.shape == (8, 6, 4) and np.allclose(out.affine, image.affine)
    # the image voxels whose centres fall inside that label voxel: x 2.75, 3.25; y 0.75, 1.25
    assert sorted(map(tuple, np.argwhere(out.array == 1).tolist())) == [
        (5, 1, 1), (5, 2, 1), (6, 1, 1), (6, 2, 1)]
    assert "seg.nrrd: label grid (4, 3, 4) resampled onto the image grid (8, 6, 4)" in note


def test_placeholder_spacing_replaced_only_when_header_has_it():
    rule = PlaceholderSpacing((1.0, 1.0, 1.0), (0.2, 0.073, 0.475674))
    flipped = np.diag([-1.0, -1.0, 1.0, 1.0])
    flipped[:3, 3] = (5.0, 6.0, 7.0)
    fixed, note = rule.apply(Volume(np.zeros((3, 3, 3)), flipped), "DATA_050.nrrd")
    assert np.allclose(fixed.spacing, (0.2, 0.073, 0.475674))
    assert np.allclose(np.sign(np.diag(fixed.affine)[:3]), (-1, -1, 1))  # direction kept
    assert np.allclose(fixed.affine[:3, 3], (5.0, 6.0, 7.0))  # origin kept
    assert note is not None and "DATA_050.nrrd: placeholder spacing [1.0, 1.0, 1.0]" in note
    real = Volume(np.zeros((3, 3, 3)), np.diag([0.2, 0.073, 0.475674, 1.0]))
    same, note = rule.apply(real, "DATA_000.nrrd")
    assert same is real and note is None


def _lnq_case(root: Path, cid: str, seg: np.ndarray, origin: tuple[float, float, float]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for suffix, array, org in (("ct", np.zeros((4, 5, 6), np.int16), (0.0, 0.0, 0.0)),
                               ("seg", seg, origin)):
        img = sitk.GetImageFromArray(array)
        img.SetSpacing((0.7, 0.7, 2.0))
        img.SetOrigin(org)
        sitk.WriteImage(img, str(root / f"lnq2023-train-{cid}-{suffix}.nrrd"))


def test_label_on_another_grid_is_resampled_when_allowed_and_reported(tmp_path: Path):
    seg = np.zeros((4, 3, 4), np.uint8)  # (z, y, x): a crop of the CT grid, one voxel in
    seg[1:3, 1:2, 1:3] = 1
    _lnq_case(tmp_path / "ex" / "train", "0001", seg, (0.7, 0.7, 0.0))
    full = np.zeros((4, 5, 6), np.uint8)
    full[1:3, 2:3, 2:4] = 1
    _lnq_case(tmp_path / "ex" / "train", "0002", full, (0.0, 0.0, 0.0))
    spec = load_spec(REGISTRY / "lnq23.yaml")
    report = convert_dataset(spec, tmp_path / "ex", tmp_path / "lnq", seed=0)
    assert report.skipped == [] and list(report.notes) == ["lnq2023-train-0001"]
    assert "resampled onto the image grid" in report.notes["lnq2023-train-0001"][0]
    saved = json.loads((tmp_path / "lnq" / "conversion_report.json").read_text())
    assert saved["notes"] == report.notes and "1 case(s) changed" in saved["summary"]
    ds = StandardDataset(tmp_path / "lnq")
    labels = {c.case_id: ds.read_label(c).array for c in ds.cases("train") + ds.cases("test")}
    assert np.array_equal(labels["lnq2023-train-0001"], labels["lnq2023-train-0002"])
    assert labels["lnq2023-train-0001"].sum() == 4
    # without the rule, the same case is refused with the shapes named
    strict = dataclasses.replace(spec, rules=dataclasses.replace(spec.rules, resample_label=False),
                                 max_skipped=1)
    report = convert_dataset(strict, tmp_path / "ex", tmp_path / "lnq_strict", seed=0)
    assert [s["case"] for s in report.skipped] == ["lnq2023-train-0001"]
    assert "image shape (6, 5, 4) != label shape (4, 3, 4)" in report.skipped[0]["reason"]


# --------------------------------------------------------------------------- losses
def _wbc_folder(root: Path, bad: int) -> None:
    folder = root / "Dataset 1"
    for i in range(3):
        _png(folder / f"{i:03d}.bmp", np.zeros((8, 8, 3), np.uint8))
        mask = np.zeros((8, 8), np.uint8)
        mask[2:5, 2:5] = 128 if i >= bad else 64  # 64 from 0 and 128: beyond tolerance 50
        _png(folder / f"{i:03d}.png", mask)


def test_max_skipped_exceeded_fails_and_writes_nothing(tmp_path: Path):
    _wbc_folder(tmp_path / "ex", bad=1)
    spec = load_spec(REGISTRY / "wbc.yaml")
    assert spec.max_skipped == 0
    with pytest.raises(ConversionError) as info:
        convert_dataset(spec, tmp_path / "ex", tmp_path / "out" / "wbc")
    msg = str(info.value)
    assert "1 cases skipped, more than max_skipped=0" in msg
    assert "wbc: 2 converted, 1 skipped (unexpected label values: 1)" in msg
    assert "000.png: unexpected label values [64]" in msg
    assert not (tmp_path / "out" / "wbc").exists()
    report = convert_dataset(dataclasses.replace(spec, max_skipped=1), tmp_path / "ex",
                             tmp_path / "out" / "wbc")
    assert sorted(report.converted) == ["d1_001", "d1_002"]


def test_cli_convert_prints_the_one_line_summary_and_fails_past_max_skipped(
        tmp_path: Path, capsys):
    _wbc_folder(tmp_path / "ex", bad=1)
    args = ["datasets", "convert", "wbc", "--registry-dir", str(REGISTRY), "--src",
            str(tmp_path / "ex"), "--out", str(tmp_path / "wbc")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "ERROR: wbc: 1 cases skipped" in err and "wbc: 2 converted, 1 skipped" in err
    reg = tmp_path / "reg"
    reg.mkdir()
    (reg / "wbc.yaml").write_text((REGISTRY / "wbc.yaml").read_text() + "max_skipped: 1\n")
    assert main([*args[:3], "--registry-dir", str(reg), *args[5:]]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == "wbc: 2 converted, 1 skipped (unexpected label values: 1)"
    assert err.strip() == "WARNING: wbc: 2 converted, 1 skipped (unexpected label values: 1)"


# --------------------------------------------------------------------------- SegRap variants
def test_segrap_binary_files_beside_the_images_when_no_multi_class_file(tmp_path: Path):
    """HiLab-git/SegRap2023: each case folder also holds GTVp.nii.gz / GTVnd.nii.gz."""
    aff = np.diag([0.6, 0.6, 3.0, 1.0])
    case = tmp_path / "ex" / "SegRap2023_Training_Set_120cases" / "segrap_0007"
    _nii(case / "image_contrast.nii.gz", np.zeros((5, 4, 3), np.int16), aff)
    gtvp = np.zeros((5, 4, 3), np.uint8)
    gtvp[1:3, 1:3, 1] = 1
    gtvnd = np.zeros((5, 4, 3), np.uint8)
    gtvnd[4, 3, 2] = 1
    _nii(case / "GTVp.nii.gz", gtvp, aff)
    _nii(case / "GTVnd.nii.gz", gtvnd, aff)
    multi = tmp_path / "ex" / "SegRap2023_Training_Set_120cases_OneHot_Labels" / "Task002_GTVs"
    _nii(multi / "segrap_0008.nii.gz", gtvp + 2 * gtvnd, aff)
    _nii(case.parent / "segrap_0008" / "image_contrast.nii.gz", np.zeros((5, 4, 3), np.int16),
         aff)
    report = convert_dataset(load_spec(REGISTRY / "segrap23.yaml"), tmp_path / "ex",
                             tmp_path / "segrap")
    assert sorted(report.converted) == ["segrap_0007", "segrap_0008"] and not report.skipped
    ds = StandardDataset(tmp_path / "segrap")
    for c in ds.cases("train") + ds.cases("test"):
        assert int(ds.read_label(c).array.sum()) == 4  # GTVp only: the target label


def test_rule_keys_reach_the_spec_and_bad_ones_name_the_file():
    raw = yaml.safe_load((REGISTRY / "tdsc_abus23.yaml").read_text())
    raw.update(resample_label=True, label_rule={"mode": "nonzero", "label": "tumor"})
    spec = spec_from_dict(raw, "tdsc_abus23.yaml")
    assert spec.rules.resample_label and spec.rules.label_rule.mode == "nonzero"
    with pytest.raises(RegistryError, match="placeholder_spacing needs exactly"):
        spec_from_dict({**raw, "placeholder_spacing": {"spacing": [1, 1, 1]}}, "tdsc_abus23.yaml")
    with pytest.raises(RegistryError, match="max_skipped must be a whole number"):
        spec_from_dict({**raw, "max_skipped": -1}, "tdsc_abus23.yaml")
