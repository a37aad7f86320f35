import json

import numpy as np
import pytest
from scipy import ndimage

from medsam2.data.layout import StandardDataset
from medsam2.data.phantoms import (
    RIM_VOXELS,
    abdomen3d_case,
    cells2d_case,
    make_phantom_dataset,
)


def test_same_seed_same_case_different_seed_different_case():
    a_img, a_lab = abdomen3d_case(np.random.default_rng(3))
    b_img, b_lab = abdomen3d_case(np.random.default_rng(3))
    c_img, _ = abdomen3d_case(np.random.default_rng(4))
    assert np.array_equal(a_img.array, b_img.array) and np.array_equal(a_lab.array, b_lab.array)
    assert a_img.array.shape != c_img.array.shape or not np.array_equal(a_img.array, c_img.array)


def test_abdomen_labels_spacing_and_intensity():
    img, lab = abdomen3d_case(np.random.default_rng(0))
    assert img.array.shape == lab.array.shape
    assert set(np.unique(lab.array)) == {0, 1, 2}
    sx, sy, sz = img.spacing
    assert 1.2 <= sx <= 1.8 and 1.2 <= sy <= 1.8 and sz == pytest.approx(4.0)  # anisotropic
    assert img.array.min() < -900 and img.array.max() > 300  # air and bone, in HU
    lesion = lab.array == 2
    organ = lab.array == 1
    # the lesion sits inside the organ and differs from it in density
    assert lesion.sum() > 50
    assert abs(img.array[lesion].mean() - img.array[organ].mean()) > 20


@pytest.mark.parametrize("seed", range(6))
def test_lesion_boundary_is_organ_on_every_slice(seed):
    """Every lesion boundary has contrast in the image: organ tissue, never the body's."""
    img, lab = abdomen3d_case(np.random.default_rng(seed))
    lesion = lab.array == 2
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[:, :, 1] = ndimage.generate_binary_structure(2, 1)
    ring = ndimage.binary_dilation(lesion, in_plane, iterations=RIM_VOXELS) & ~lesion
    assert lesion.any() and np.all(lab.array[ring] == 1)
    contrast = abs(np.median(img.array[lesion]) - np.median(img.array[ring]))
    assert contrast > 50  # the lesion margin is 70-120 HU; blur and noise take some


def test_cases_vary_in_size_and_position():
    centres, sizes = [], []
    for seed in range(6):
        _, lab = abdomen3d_case(np.random.default_rng(seed))
        organ = np.argwhere(lab.array >= 1)
        centres.append(organ.mean(axis=0)[0])
        sizes.append(len(organ))
    assert np.std(centres) > 3 and np.std(sizes) / np.mean(sizes) > 0.1


def test_cells_one_target_cell():
    img, lab = cells2d_case(np.random.default_rng(1))
    assert img.array.dtype == np.uint8 and img.array.shape == (128, 128)
    assert set(np.unique(lab.array)) == {0, 1}
    # the white blood cell (with its dark nucleus) is darker than the background
    assert img.array[lab.array == 1].mean() < img.array[lab.array == 0].mean() - 20


def test_dataset_layout_split_and_determinism(phantom3d, tmp_path):
    ds = StandardDataset(phantom3d)
    assert ds.verify() == []
    meta = json.loads((phantom3d / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "organ": 1, "lesion": 2}
    assert meta["channel_names"] == {"0": "CT"} and meta["numTraining"] == 3
    splits = json.loads((phantom3d / "splits.json").read_text())
    assert len(splits["test"]) == 1 and len(splits["train"]) == 3
    assert [c.case_id for c in ds.cases("test")] == splits["test"]
    again = tmp_path / "again"
    make_phantom_dataset(again, "abdomen3d", n_cases=4, test_fraction=0.25, seed=0)
    case = ds.cases("train")[0]
    first = ds.read_image(case).array
    second = StandardDataset(again).read_image(StandardDataset(again).case(case.case_id)).array
    assert np.array_equal(first, second)


def test_unknown_generator_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown phantom generator 'liver'"):
        make_phantom_dataset(tmp_path, "liver", 4, 0.25, 0)
