"""Bring your own data: labels declared or cleanly inferred, geometry and intensity kept.

Each test builds a small folder with the real file formats (PIL, nibabel) and imports it
the way ``medsam2 datasets import-local`` does.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medsam2.data.convert import ConversionError, ConversionReport, import_local
from medsam2.data.layout import StandardDataset
from medsam2.data.registry import main


def _cells(root: Path, labels: dict[str, np.ndarray], ending: str = ".png") -> Path:
    """images/<case>.png (random uint8) + labels/<case><ending> from the given arrays."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for cid, lab in labels.items():
        Image.fromarray(rng.integers(0, 255, lab.shape, dtype=np.uint8)).save(
            root / "images" / f"{cid}.png")
        if ending in (".jpg", ".jpeg"):
            Image.fromarray(lab.astype(np.uint8)).save(root / "labels" / f"{cid}{ending}",
                                                       quality=75)
        else:
            Image.fromarray(lab.astype(np.uint8)).save(root / "labels" / f"{cid}{ending}")
    return root


def _disc(value: int, shape=(32, 32), centre=(16, 16), r=8) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return np.where((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= r * r, value, 0)


def _report(out: Path) -> dict:
    return json.loads((out / "conversion_report.json").read_text())


def _all_cases(ds: StandardDataset):
    return ds.cases("train") + ds.cases("test")


# --------------------------------------------------------------------------- labels
def test_jpeg_labels_are_refused_without_a_threshold(tmp_path: Path):
    """JPEG noise around 0/255 once became dozens of labels, all but one empty."""
    src = _cells(tmp_path / "src", {f"c{i}": _disc(255) for i in range(3)}, ".jpg")
    with pytest.raises(ConversionError) as info:
        import_local(src, tmp_path / "out" / "cells")
    text = str(info.value)
    assert "c0.jpg: lossy label format (JPEG)" in text and "--label-threshold" in text
    assert not (tmp_path / "out" / "cells").exists()


def test_jpeg_labels_with_a_declared_threshold_are_one_label(tmp_path: Path):
    src = _cells(tmp_path / "src", {f"c{i}": _disc(255) for i in range(3)}, ".jpg")
    out = tmp_path / "out" / "cells"
    import_local(src, out, label_threshold=128)
    ds = StandardDataset(out)
    assert ds.labels == {"foreground": 1}
    for case in _all_cases(ds):
        label = ds.read_label(case).array
        assert set(np.unique(label).tolist()) == {0, 1}
        assert abs(int(label.sum()) - int((_disc(1)).sum())) < 10
    assert "thresholded at 128" in _report(out)["dataset"]["labels_from"]


def test_unclean_case_is_rejected_with_its_values_and_the_others_convert(tmp_path: Path):
    noisy = _disc(255)
    noisy[0, :5] = [3, 7, 90, 140, 200]
    src = _cells(tmp_path / "src", {"a": _disc(255), "b": _disc(255), "noisy": noisy})
    out = tmp_path / "out" / "cells"
    report = import_local(src, out)
    assert sorted(report.converted) == ["a", "b"]
    (skip,) = report.skipped
    assert skip["case"] == "noisy"
    assert "noisy.png: label values [0, 3, 7, 90, 140, 200, 255] are not a clean set" in (
        skip["reason"])
    assert StandardDataset(out).labels == {"label_255": 1}


def test_masks_mixing_0_1_and_0_255_are_an_error_not_two_labels(tmp_path: Path):
    src = _cells(tmp_path / "src", {"a": _disc(1), "b": _disc(1), "c": _disc(255)})
    with pytest.raises(ConversionError) as info:
        import_local(src, tmp_path / "out" / "cells")
    text = str(info.value)
    assert "binary masks with different foreground values" in text
    assert "values [0, 1]: a, b" in text and "values [0, 255]: c" in text


def test_consecutive_small_integers_are_inferred(tmp_path: Path):
    two = _disc(1) + _disc(1, r=3)  # 1 outside, 2 in the core
    src = _cells(tmp_path / "src", {"a": two, "b": two, "c": _disc(1)})
    out = tmp_path / "out" / "cells"
    import_local(src, out)
    assert StandardDataset(out).labels == {"label_1": 1, "label_2": 2}
    assert _report(out)["dataset"]["labels_from"] == "inferred: consecutive 1..2"


def test_rgb_and_truncated_labels_are_reported_per_case(tmp_path: Path):
    """One bad label file never aborts the import of the others."""
    src = _cells(tmp_path / "src", {f"c{i}": _disc(255) for i in range(4)})
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[..., 0] = _disc(255)
    Image.fromarray(rgb).save(src / "labels" / "c1.png")
    data = (src / "labels" / "c2.png").read_bytes()
    (src / "labels" / "c2.png").write_bytes(data[: len(data) // 2])
    out = tmp_path / "out" / "cells"
    report = import_local(src, out)
    assert sorted(report.converted) == ["c0", "c3"]
    reasons = {s["case"]: s["reason"] for s in report.skipped}
    assert "c1.png: colour label" in reasons["c1"]
    assert "c2.png: unreadable" in reasons["c2"]
    assert _report(out)["skipped"] == report.skipped


def test_declared_labels_on_the_command_line(tmp_path: Path, capsys):
    src = _cells(tmp_path / "src", {"a": _disc(255), "b": _disc(255)})
    out = tmp_path / "out" / "cells"
    rc = main(["datasets", "import-local", "--path", str(src), "--out", str(out),
               "--labels", "cell=255"])
    assert rc == 0
    assert StandardDataset(out).labels == {"cell": 1}
    assert _report(out)["dataset"]["labels_from"] == "declared"
    # a value the declaration does not name fails that case, naming the values
    src2 = _cells(tmp_path / "src2", {"a": _disc(255), "b": _disc(255), "c": _disc(1)})
    rc = main(["datasets", "import-local", "--path", str(src2), "--out", str(tmp_path / "o2"),
               "--labels", "cell=255"])
    assert rc == 0
    assert "c.png: unexpected label values [1]" in capsys.readouterr().out


def test_declaration_contradicting_dataset_json_is_an_error(tmp_path: Path):
    src = _cells(tmp_path / "src", {"a": _disc(255), "b": _disc(255)})
    (src / "dataset.json").write_text('{"labels": {"background": 0, "wbc": 255}}')
    with pytest.raises(ConversionError, match=r"labels declared as \{'cell': 255\} but .*"
                                              r"dataset\.json says \{'wbc': 255\}"):
        import_local(src, tmp_path / "out" / "cells", labels={"cell": 255})


def test_an_empty_label_is_reported_at_conversion(tmp_path: Path, capsys):
    src = _cells(tmp_path / "src", {"a": _disc(1), "b": _disc(1), "empty": _disc(0)})
    out = tmp_path / "out" / "cells"
    rc = main(["datasets", "import-local", "--path", str(src), "--out", str(out)])
    assert rc == 0
    report = _report(out)
    assert report["empty_labels"] == {"empty": ["label_1"]}
    assert "1 case(s) with an empty label (1 without 'label_1': empty)" in report["summary"]
    assert "1 case(s) with an empty label (1 without 'label_1': empty)" in \
        capsys.readouterr().err


def test_the_conversion_line_names_the_cases_without_a_label():
    report = ConversionReport("d", converted=[f"c{i:02d}" for i in range(9)],
                              empty_labels={"c03": ["lesion"], "c07": ["organ", "lesion"]})
    assert report.one_line() == ("d: 9 converted, 0 skipped; 2 case(s) with an empty label "
                                 "(2 without 'lesion': c03, c07; 1 without 'organ': c07)")
    many = ConversionReport("d", empty_labels={f"c{i}": ["lesion"] for i in range(7)})
    assert many.without_label() == ["7 without 'lesion': c0, c1, c2, c3, c4, ... (+2)"]


# --------------------------------------------------------------------------- geometry
def _nnunet(root: Path, image: np.ndarray, label: np.ndarray, affine: np.ndarray,
            meta: dict, units: str | None = None, n: int = 3) -> Path:
    for folder in ("imagesTr", "labelsTr"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        for path, arr in ((root / "imagesTr" / f"c{i}_0000.nii.gz", image),
                          (root / "labelsTr" / f"c{i}.nii.gz", label)):
            img = nib.Nifti1Image(arr, affine)
            if units is not None:
                img.header.set_xyzt_units(units)
            nib.save(img, str(path))
    (root / "dataset.json").write_text(json.dumps(
        {"file_ending": ".nii.gz", "numTraining": n, **meta}))
    return root


def test_nifti_in_microns_is_converted_to_mm(tmp_path: Path):
    label = np.zeros((6, 5, 4), np.uint8)
    label[1:4, 1:4, 1:3] = 1
    src = _nnunet(tmp_path / "src", np.ones((6, 5, 4), np.float32), label,
                  np.diag([500.0, 500.0, 2000.0, 1.0]),
                  {"labels": {"background": 0, "nucleus": 1}, "channel_names": {"0": "EM"}},
                  units="micron")
    out = tmp_path / "out" / "em"
    import_local(src, out)
    ds = StandardDataset(out)
    case = _all_cases(ds)[0]
    assert ds.read_image(case).spacing == pytest.approx((0.5, 0.5, 2.0))
    info = _report(out)["cases"][case.case_id]
    assert info["units"] == "micron in the header, converted to mm"
    assert info["spacing_mm"] == pytest.approx([0.5, 0.5, 2.0])


def test_channel_names_of_a_local_dataset_json_are_kept(tmp_path: Path):
    """{"0": "CT"} chooses CT normalisation downstream; it was stored as "unknown"."""
    label = np.zeros((6, 5, 4), np.uint8)
    label[1:4, 1:4, 1:3] = 1
    src = _nnunet(tmp_path / "src", np.full((6, 5, 4), -100, np.int16), label, np.eye(4),
                  {"labels": {"background": 0, "liver": 1}, "channel_names": {"0": "CT"}})
    out = tmp_path / "out" / "ct"
    import_local(src, out)
    ds = StandardDataset(out)
    assert ds.meta["channel_names"] == {"0": "CT"} and ds.meta["imaging_modality"] == "CT"
    with pytest.raises(ConversionError, match=r"channel_names says 'CT' but the modality "
                                              r"given is 'MR'"):
        import_local(src, tmp_path / "out" / "ct2", modality="MR")


def test_float_tiff_in_0_1_is_stored_without_loss(tmp_path: Path):
    """A float32 TIFF in [0, 1] once became an all-zero uint8 PNG."""
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    (src / "labels").mkdir()
    rng = np.random.default_rng(1)
    images = {}
    for i in range(3):
        images[f"c{i}"] = rng.random((24, 20)).astype(np.float32)
        Image.fromarray(images[f"c{i}"], mode="F").save(src / "images" / f"c{i}.tif")
        Image.fromarray(_disc(1, (24, 20), (12, 10), 6).astype(np.uint8)).save(
            src / "labels" / f"c{i}.png")
    out = tmp_path / "out" / "float"
    import_local(src, out, dims=2)
    ds = StandardDataset(out)
    assert ds.file_ending == ".nii.gz" and not ds.is_3d
    for case in _all_cases(ds):
        image = ds.read_image(case).array
        assert image.dtype == np.float32
        assert np.array_equal(image, images[case.case_id])
        assert set(np.unique(ds.read_label(case).array).tolist()) == {0, 1}
    assert "non-integer float32 values" in _report(out)["dataset"]["stored_as_nifti_because"]


def test_hu_in_a_2d_nifti_keeps_sign_and_spacing(tmp_path: Path):
    """HU once wrapped to uint16 in a PNG, and the 0.7 mm pixels became 1 mm."""
    hu = np.linspace(-1000, 400, 30 * 20).reshape(30, 20).astype(np.int16)
    label = _disc(1, (30, 20), (15, 10), 5).astype(np.uint8)
    src = _nnunet(tmp_path / "src", hu, label, np.diag([0.7, 0.7, 1.0, 1.0]),
                  {"labels": {"background": 0, "nodule": 1}, "channel_names": {"0": "CT"}})
    out = tmp_path / "out" / "hu2d"
    import_local(src, out)
    ds = StandardDataset(out)
    assert ds.file_ending == ".nii.gz" and not ds.is_3d
    for case in _all_cases(ds):
        image = ds.read_image(case)
        assert np.array_equal(image.array, hu) and image.spacing == pytest.approx((0.7, 0.7))
        assert ds.read_label(case).spacing == pytest.approx((0.7, 0.7))
    stored = nib.load(str(_all_cases(ds)[0].images[0]))
    assert stored.shape == (30, 20, 1) and stored.get_data_dtype() == np.int16  # nnU-Net 2D
    report = _report(out)
    assert report["dataset"]["file_ending"] == ".nii.gz"
    assert report["cases"]["c0"]["dtype"] == "int16"
    assert report["cases"]["c0"]["stored_as"] == ".nii.gz"


def test_plain_uint8_pngs_stay_png(tmp_path: Path):
    src = _cells(tmp_path / "src", {f"c{i}": _disc(255) for i in range(3)})
    out = tmp_path / "out" / "cells"
    import_local(src, out)
    ds = StandardDataset(out)
    assert ds.file_ending == ".png" and "is_2d" not in ds.meta
    assert _report(out)["cases"]["c0"]["stored_as"] == ".png"


def test_command_line_refusal_names_the_file_and_exits_2(tmp_path: Path, capsys):
    src = _cells(tmp_path / "src", {f"c{i}": _disc(255) for i in range(2)}, ".jpg")
    rc = main(["datasets", "import-local", "--path", str(src), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("ERROR: o: no case could be converted")
    assert "c1.jpg: lossy label format (JPEG)" in err
    with pytest.raises(SystemExit):
        main(["datasets", "import-local", "--path", str(src), "--out", "o", "--labels", "cell"])
    assert "expected NAME=VALUE" in capsys.readouterr().err


def test_a_later_float_image_turns_earlier_png_cases_into_nifti(tmp_path: Path):
    """dataset.json has one file ending: cases already written as PNG are rewritten."""
    src = _cells(tmp_path / "src", {"c0": _disc(1), "c1": _disc(1), "c2": _disc(1)})
    first = np.asarray(Image.open(src / "images" / "c0.png"))
    (src / "images" / "c2.png").unlink()
    floats = np.random.default_rng(2).random((32, 32)).astype(np.float32)
    Image.fromarray(floats, mode="F").save(src / "images" / "c2.tif")
    out = tmp_path / "out" / "mixed"
    report = import_local(src, out, dims=2, test_fraction=0.34)
    assert sorted(report.converted) == ["c0", "c1", "c2"]
    ds = StandardDataset(out)
    assert ds.file_ending == ".nii.gz" and not list(out.rglob("*.png"))
    c0 = ds.case("c0")
    assert np.array_equal(ds.read_image(c0).array, first)
    assert np.array_equal(ds.read_label(c0).array, _disc(1))
    assert np.array_equal(ds.read_image(ds.case("c2")).array, floats)
    assert _report(out)["dataset"]["stored_as_nifti_because"].startswith("c2: non-integer")


# --------------------------------------------------------------------------- colour
def _colour_folder(root: Path, images: dict[str, np.ndarray], suffix: str = ".png") -> Path:
    """images/<case><suffix> from the given arrays + labels/<case>.png (a disc)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(exist_ok=True)
    for cid, img in images.items():
        Image.fromarray(img).save(root / "images" / f"{cid}{suffix}")
        Image.fromarray(_disc(1).astype(np.uint8)).save(root / "labels" / f"{cid}.png")
    return root


def test_colour_images_stay_rgb_and_grey_ones_join_them(tmp_path: Path):
    """images/ + labels/: colour pictures are stored as RGB PNG with nnU-Net's
    natural-image channel names; a grey image among them is repeated to three channels."""
    rng = np.random.default_rng(2)
    colour = {f"c{i}": rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for i in range(3)}
    grey = rng.integers(0, 256, (32, 32), dtype=np.uint8)
    src = _colour_folder(tmp_path / "src", {**colour, "g0": grey}, ".bmp")
    out = tmp_path / "out" / "smear"
    report = import_local(src, out)
    assert report.skipped == []
    ds = StandardDataset(out)
    assert ds.is_rgb and ds.meta["channel_names"] == {"0": "R", "1": "G", "2": "B"}
    assert ds.verify() == []
    for case in _all_cases(ds):
        image = ds.read_image(case)
        want = colour.get(case.case_id, np.stack([grey] * 3, axis=-1))
        assert image.rgb and np.array_equal(image.array, want)
        with Image.open(case.images[0]) as im:
            assert im.mode == "RGB"
    info = _report(out)
    assert info["dataset"]["channel_names"] == {"0": "R", "1": "G", "2": "B"}
    assert info["cases"]["g0"]["colour"].startswith("grey: stored as RGB")


def test_colour_files_with_equal_channels_are_stored_as_grey(tmp_path: Path):
    rng = np.random.default_rng(3)
    greys = {f"c{i}": rng.integers(0, 256, (32, 32), dtype=np.uint8) for i in range(3)}
    src = _colour_folder(tmp_path / "src", {c: np.stack([g] * 3, -1) for c, g in greys.items()})
    out = tmp_path / "out" / "grey"
    import_local(src, out, modality="microscopy")
    ds = StandardDataset(out)
    assert not ds.is_rgb and ds.meta["channel_names"] == {"0": "microscopy"}
    for case in _all_cases(ds):
        image = ds.read_image(case)
        assert not image.rgb and np.array_equal(image.array, greys[case.case_id])
    assert _report(out)["cases"]["c0"]["colour"] == "R = G = B in the file: stored as grey"


def test_colour_with_a_case_that_needs_nifti_fails_naming_it(tmp_path: Path):
    rng = np.random.default_rng(4)
    src = _colour_folder(tmp_path / "src", {
        f"c{i}": rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for i in range(2)})
    np.save(src / "images" / "f0.npy", rng.random((32, 32)).astype(np.float32))
    Image.fromarray(_disc(1).astype(np.uint8)).save(src / "labels" / "f0.png")
    with pytest.raises(ConversionError, match=r"colour images \(first: c0\) are stored as RGB "
                                              r"PNG, but f0: non-integer float32 values"):
        import_local(src, tmp_path / "out" / "mixed")
    assert not (tmp_path / "out" / "mixed").exists()


def test_nnunet_folder_with_r_g_b_channel_names_keeps_colour(tmp_path: Path):
    """nnU-Net's natural-image convention (one RGB PNG per case, channel_names R, G, B:
    MIC-DKFZ/nnUNet nnunetv2/dataset_conversion/Dataset120_RoadSegmentation.py) imports."""
    src = tmp_path / "src"
    (src / "imagesTr").mkdir(parents=True)
    (src / "labelsTr").mkdir()
    rng = np.random.default_rng(5)
    images = {f"road{i}": rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for i in range(3)}
    for cid, img in images.items():
        Image.fromarray(img).save(src / "imagesTr" / f"{cid}_0000.png")
        Image.fromarray(_disc(1).astype(np.uint8)).save(src / "labelsTr" / f"{cid}.png")
    (src / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "R", "1": "G", "2": "B"}, "labels": {"background": 0, "road": 1},
        "numTraining": 3, "file_ending": ".png"}))
    out = tmp_path / "out" / "roads"
    import_local(src, out)
    ds = StandardDataset(out)
    assert ds.is_rgb and ds.labels == {"road": 1}
    assert all(np.array_equal(ds.read_image(c).array, images[c.case_id]) for c in _all_cases(ds))
    with pytest.raises(ConversionError, match="channel_names R, G, B .* modality given is 'CT'"):
        import_local(src, tmp_path / "out" / "ct", modality="CT")
