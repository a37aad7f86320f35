import numpy as np
import pytest

from medsam2.data.layout import (
    LayoutError,
    StandardDataset,
    Volume,
    affine_from_spacing,
    read_volume,
    seeded_split,
    write_case,
    write_dataset_json,
    write_volume,
)


def test_nifti_round_trip_keeps_affine_and_spacing(tmp_path):
    affine = np.array([[0.0, -0.8, 0, 10.5], [0.9, 0, 0, -3.0], [0, 0, 2.5, 7.0], [0, 0, 0, 1]])
    data = np.random.default_rng(0).normal(size=(6, 5, 4)).astype(np.float32)
    path = write_volume(tmp_path / "x.nii.gz", Volume(data, affine))
    back = read_volume(path)
    assert np.allclose(back.affine, affine)
    assert back.spacing == pytest.approx((0.9, 0.8, 2.5))
    assert np.allclose(back.array, data)


def test_png_round_trip_labels(tmp_path):
    lab = np.zeros((7, 9), np.int16)
    lab[2:4, 3:8] = 2
    back = read_volume(write_volume(tmp_path / "l.png", Volume(lab), is_label=True))
    assert np.array_equal(back.array, lab) and back.spacing == (1.0, 1.0)


def test_dataset_reads_cases_and_rejects_mismatch(tmp_path):
    aff = affine_from_spacing((1.0, 1.0, 3.0))
    img = Volume(np.zeros((4, 4, 3), np.int16), aff)
    write_case(tmp_path, "a", "train", img, Volume(np.ones((4, 4, 3), np.int16), aff))
    write_dataset_json(tmp_path, {"fg": 1}, 1, ".nii.gz")
    ds = StandardDataset(tmp_path)
    assert [c.case_id for c in ds.cases("train")] == ["a"] and ds.labels == {"fg": 1}
    with pytest.raises(LayoutError, match="image shape"):
        write_case(tmp_path, "b", "train", img, Volume(np.ones((4, 4, 2), np.int16), aff))
    # a label with a different affine is found by verify(), naming the file
    write_volume(tmp_path / "labelsTr" / "a.nii.gz",
                 Volume(np.ones((4, 4, 3), np.uint8), affine_from_spacing((2.0, 1.0, 3.0))))
    problems = ds.verify()
    assert len(problems) == 1 and "a_0000.nii.gz" in problems[0] and "affines differ" in problems[0]


def test_missing_and_unreadable_files_name_the_file(tmp_path):
    with pytest.raises(LayoutError, match="missing.nii.gz: file not found"):
        read_volume(tmp_path / "missing.nii.gz")
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not a nifti")
    with pytest.raises(LayoutError, match="bad.nii.gz: unreadable"):
        read_volume(bad)
    with pytest.raises(LayoutError, match="dataset.json: missing"):
        StandardDataset(tmp_path)


def test_seeded_split_is_deterministic_and_disjoint():
    ids = [f"c{i}" for i in range(10)]
    a = seeded_split(ids, 0.3, 1)
    assert a == seeded_split(ids, 0.3, 1) and len(a[1]) == 3
    assert set(a[0]).isdisjoint(a[1]) and set(a[0]) | set(a[1]) == set(ids)
    assert seeded_split(ids, 0.3, 2) != a


def test_nifti_spatial_units_are_read_as_mm(tmp_path):
    """A header in microns or metres is converted; distances are always millimetres."""
    import nibabel as nib

    for unit, zoom, expected in (("micron", 250.0, 0.25), ("meter", 0.002, 2.0),
                                 ("mm", 1.5, 1.5)):
        img = nib.Nifti1Image(np.zeros((3, 3, 2), np.float32), np.diag([zoom] * 3 + [1.0]))
        img.header.set_xyzt_units(unit)
        nib.save(img, str(tmp_path / f"{unit}.nii.gz"))
        assert read_volume(tmp_path / f"{unit}.nii.gz").spacing == pytest.approx((expected,) * 3)


def test_png_refuses_values_it_cannot_hold(tmp_path):
    """Floats in [0, 1] truncated to 0 and negative HU wrapping are refused, not written."""
    for name, array in (("float", np.full((4, 4), 0.5, np.float32)),
                        ("hu", np.full((4, 4), -1000, np.int16))):
        with pytest.raises(LayoutError, match=rf"{name}\.png: .* cannot be stored in a PNG"):
            write_volume(tmp_path / f"{name}.png", Volume(array))
        assert not (tmp_path / f"{name}.png").exists()
    with pytest.raises(LayoutError, match=r"l\.png: .*outside PNG's \[0, 255\]"):
        write_volume(tmp_path / "l.png", Volume(np.full((4, 4), 300, np.int16)), is_label=True)


def test_label_values_not_declared_in_dataset_json_are_an_error(tmp_path):
    """A label file with 255 where dataset.json says cell: 1 would score as an empty cell."""
    img = Volume(np.zeros((4, 4), np.uint8))
    write_case(tmp_path, "a", "train", img, Volume(np.full((4, 4), 255, np.uint8)), ".png")
    write_dataset_json(tmp_path, {"cell": 1}, 1, ".png")
    ds = StandardDataset(tmp_path)
    with pytest.raises(LayoutError, match=r"a\.png: label values \[255\] are not declared in"):
        ds.read_label(ds.cases("train")[0])
    assert "not declared" in ds.verify()[0]


def test_a_modality_string_in_dataset_json_is_refused(tmp_path):
    """nnU-Net v2 reads a top-level 'modality' as v1's channel dict: 'CT' would build a
    2-channel network on 1-channel data. Such a dataset.json fails naming the fix."""
    import json

    from medsam2.data.layout import LayoutError, StandardDataset

    meta = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1},
            "file_ending": ".nii.gz", "modality": "CT"}
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(LayoutError, match="2 input channels.*imaging_modality"):
        StandardDataset(tmp_path)
