import json

import numpy as np
import pytest
import torch

from medsam2.data.prompts import (
    box_prompt,
    click_prompt,
    dataset_prompts,
    key_slice,
    load_prompts,
    make_prompt,
)


def _mask():
    m = np.zeros((20, 30), bool)
    m[4:10, 12:25] = True  # rows 4..9, cols 12..24
    return m


def test_box_is_tight_in_xy_order_and_jitter_is_seeded():
    p = box_prompt(_mask(), frame=3)
    assert p.points == [[12.0, 4.0], [24.0, 9.0]] and p.labels == [2, 3] and p.frame == 3
    a = box_prompt(_mask(), 0, np.random.default_rng(1), jitter=0.2)
    b = box_prompt(_mask(), 0, np.random.default_rng(1), jitter=0.2)
    assert a.points == b.points and a.points != p.points


def test_click_is_inside_the_object():
    p = click_prompt(_mask(), 0)
    x, y = p.points[0]
    assert _mask()[int(y), int(x)] and p.labels == [1]
    for seed in range(5):
        x, y = click_prompt(_mask(), 0, np.random.default_rng(seed)).points[0]
        assert _mask()[int(y), int(x)]


def test_key_slice_is_the_largest_area():
    vol = np.zeros((5, 5, 6), bool)
    vol[1:3, 1:3, 1] = True
    vol[0:4, 0:4, 4] = True
    assert key_slice(vol) == 4
    with pytest.raises(ValueError, match="empty mask"):
        key_slice(np.zeros((3, 3, 3), bool))


def test_model_inputs_scale_to_the_model_size():
    p = box_prompt(_mask(), 0)
    points, mask = p.model_inputs((20, 30), 60)
    assert mask is None
    coords = points["point_coords"][0]
    assert torch.allclose(coords[0], torch.tensor([(12 + 0.5) * 2, (4 + 0.5) * 3]))
    _, mask = make_prompt("mask", _mask(), 0).model_inputs((20, 30), 60, _mask())
    assert mask.shape == (1, 1, 60, 60) and mask.sum() > 0


def test_dataset_prompts_round_trip(phantom3d, tmp_path):
    prompts = dataset_prompts(phantom3d, "box", seed=0)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(prompts))
    loaded = load_prompts(path)
    (case, labels), = loaded["cases"].items()
    assert set(labels) == {"organ", "lesion"}
    for plist in labels.values():
        assert [p.axis for p in plist] == [2, 0, 1]  # default axis first, then the others
        assert all(p.kind == "box" and len(p.points) == 2 for p in plist)
    # each axis' prompt sits on that axis' key slice and boxes the object there
    from medsam2.data.layout import StandardDataset
    ds = StandardDataset(phantom3d)
    organ = ds.read_label(ds.case(case)).array == 1
    for p in labels["organ"]:
        sl = np.take(organ, p.frame, axis=p.axis)
        assert p.frame == key_slice(organ, p.axis)
        rows, cols = np.nonzero(sl)
        assert p.points == [[cols.min(), rows.min()], [cols.max(), rows.max()]]
    with pytest.raises(ValueError, match="unknown prompt kind"):
        make_prompt("scribble", _mask(), 0)


def test_interactive_draws_over_all_slices_and_prompts_empty_ones_with_an_empty_mask():
    """The interactive protocol: the key slice, plus each other slice of the volume drawn
    with probability ``rate`` over *all* slices (drawing only among the object's slices
    would leak its extent from the test labels); a drawn slice without the object gets
    an empty-mask prompt, as the authors' code gives a zero mask; reproducible."""
    from medsam2.data.prompts import EMPTY, volume_prompts

    vol = np.zeros((12, 14, 30), bool)
    vol[3:9, 4:10, 5:25] = True  # the object is on slices 5..24 of axis 2
    vol[2:10, 3:11, 15] = True  # largest on slice 15
    assert [p.frame for p in volume_prompts(vol, "box") if p.axis == 2] == [15]
    every = [p for p in volume_prompts(vol, "box", 1.0, np.random.default_rng(0)) if p.axis == 2]
    assert [p.frame for p in every] == [15, *[f for f in range(30) if f != 15]]
    for p in every:
        if 5 <= p.frame < 25:
            assert p.kind == "box" and p.points == box_prompt(vol[:, :, p.frame], p.frame).points
        else:
            assert p.kind == EMPTY and p.points == [] and p.labels == []
    some = [p for p in volume_prompts(vol, "mask", 0.25, np.random.default_rng(3))
            if p.axis == 2]
    again = [p for p in volume_prompts(vol, "mask", 0.25, np.random.default_rng(3))
             if p.axis == 2]
    assert [p.frame for p in some] == [p.frame for p in again] and some[0].frame == 15
    assert 1 < len(some) < 30
    # over many draws, slices without the object are drawn about as often as the others
    outside = [p for seed in range(20) for p in volume_prompts(
        vol, "box", 0.25, np.random.default_rng(seed)) if p.axis == 2 and p.kind == EMPTY]
    assert outside and {p.frame for p in outside} <= set(range(5)) | set(range(25, 30))
    assert 0.15 < len(outside) / (20 * 10) < 0.35
    _, mask_in = outside[0].model_inputs((12, 14), 32)
    assert mask_in.shape == (1, 1, 32, 32) and mask_in.sum() == 0
    with pytest.raises(ValueError, match="needs an rng"):
        volume_prompts(vol, "box", 0.25)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        volume_prompts(vol, "box", 1.5, np.random.default_rng(0))


def test_dataset_prompt_rate_is_per_case_and_label(phantom3d):
    a = dataset_prompts(phantom3d, "mask", seed=0, rate=0.5)
    b = dataset_prompts(phantom3d, "mask", seed=0, rate=0.5)
    c = dataset_prompts(phantom3d, "mask", seed=1, rate=0.5)
    assert a == b and a["rate"] == 0.5
    frames = {lab: [p["frame"] for p in ps if p["axis"] == 2]
              for lab, ps in next(iter(a["cases"].values())).items()}
    assert all(len(f) > 1 for f in frames.values())
    assert a != c  # another seed draws other slices


@pytest.mark.parametrize("text", ['{"cases": {"c0": {"organ": [{"kind": "box"', "[1, 2]",
                                  '{"cases": {"c0": {"organ": [{"colour": 3}]}}}'])
def test_a_broken_prompts_file_names_itself(tmp_path, text):
    from medsam2.data.prompts import load_prompts

    bad = tmp_path / "prompts.json"
    bad.write_text(text)
    with pytest.raises(ValueError, match=r"prompts\.json: not a prompts file"):
        load_prompts(bad)
