"""The paper's preprocessing: crop to non-zero, resize, drop small masks, cached."""

import json

import numpy as np
import pytest

from medsam2.data.frames import Intensity
from medsam2.data.layout import StandardDataset
from medsam2.data.preprocess import (
    crop_box,
    drop_small,
    is_cache,
    load_cache,
    preprocess_case,
    preprocess_dataset,
    sequence_axis,
)


def test_sequence_axis_is_the_coarsest():
    assert sequence_axis((0.8, 0.8, 2.5)) == 2
    assert sequence_axis((3.0, 0.7, 0.7)) == 0
    assert sequence_axis((1.0, 1.0, 1.0)) == 2  # ties: the last axis


def test_crop_box_and_drop_small():
    stack = np.zeros((3, 10, 12))
    stack[1, 2:5, 3:9] = 0.5
    assert crop_box(stack) == (slice(2, 5), slice(3, 9))
    assert crop_box(np.zeros((2, 4, 4))) == (slice(0, 4), slice(0, 4))
    labels = np.zeros((2, 20, 20), np.uint8)
    labels[0, :10, :10] = 1  # 100 px: kept
    labels[1, :5, :5] = 1  # 25 px: dropped
    labels[1, 10:, 10:] = 2  # 100 px of another label: kept
    out = drop_small(labels, 100)
    assert (out[0] == labels[0]).all() and (out[1] == 1).sum() == 0 and (out[1] == 2).sum() == 100


def test_preprocess_case_crops_resizes_and_normalises(phantom3d):
    ds = StandardDataset(phantom3d)
    case = ds.cases("train")[0]
    image, label = ds.read_image(case), ds.read_label(case)
    frames, labels = preprocess_case(image.array, label.array, image.spacing,
                                     Intensity("ct", -160, 240), 64, min_area=100)
    assert frames.shape == labels.shape == (image.array.shape[2], 64, 64)
    assert frames.dtype == np.uint8 and frames.max() > 200
    # cropping removed the air around the body: every border row holds some body
    assert (frames[:, 0, :] > 0).any() and (frames[:, :, 0] > 0).any()
    assert set(np.unique(labels)) <= {0, 1, 2}
    full, _ = preprocess_case(image.array, label.array, image.spacing,
                              Intensity("ct", -160, 240), 64, crop=False)
    # the same organ fills more of a cropped frame
    assert (labels == 1).sum() > (preprocess_case(
        image.array, label.array, image.spacing, Intensity("ct", -160, 240), 64,
        crop=False)[1] == 1).sum()
    assert full.shape == frames.shape


def test_dataset_cache_round_trip_and_training_from_it(phantom3d, tmp_path):
    from medsam2.model.build import read_checkpoint
    from medsam2.train import ClipSampler, train

    index = preprocess_dataset(phantom3d, tmp_path / "cache", 64, min_area=100)
    meta = json.loads(index.read_text())
    assert meta["labels"] == {"organ": 1, "lesion": 2} and len(meta["cases"]) == 3
    assert is_cache(tmp_path / "cache") and not is_cache(phantom3d)
    _, cases = load_cache(tmp_path / "cache")
    assert cases[0][0].max() <= 1.0 and cases[0][0].shape[1:] == (64, 64)
    sampler = ClipSampler([tmp_path / "cache"], 64)
    images, masks = sampler.sample(np.random.default_rng(0), 4)
    assert images.shape == (4, 64, 64) and masks[0].any()
    from medsam2.spec import TrackerSpec
    from medsam2.typed import parse

    cfg = parse(TrackerSpec, {"kind": "sam2", "arch": "tiny", "image_size": 64,
                              "train": {"steps": 2, "clip_len": 3}})
    ckpt = read_checkpoint(train(cfg, [tmp_path / "cache"], tmp_path / "run", seed=0))
    assert ckpt["step"] == 2
    bad = tmp_path / "cache" / "index.json"
    bad.write_text(json.dumps({**meta, "version": 99}))
    with pytest.raises(ValueError, match="cache version 99"):
        load_cache(tmp_path / "cache")


def test_cropped_prediction_keeps_the_grid_and_prompt(phantom3d):
    from medsam2.data.prompts import volume_prompts
    from medsam2.model.build import build_model
    from medsam2.predict import predict_volume

    model = build_model("tiny", 64, {"policy": "fifo"}, seed=0).eval()
    ds = StandardDataset(phantom3d)
    case = ds.cases("test")[0]
    image, label = ds.read_image(case).array, ds.read_label(case).array
    prompts = {"organ": volume_prompts(label == 1, "mask")}
    pred = predict_volume(model, image, Intensity("ct", -160, 240), prompts, label,
                          {"organ": 1}, 64, crop=True)
    assert pred.shape == image.shape
    key = prompts["organ"][0].frame
    # the mask prompt comes back on its key slice, at the right place after cropping
    assert (pred[..., key] == (label[..., key] == 1)).mean() > 0.95
    from medsam2.data.frames import slices
    rows, cols = crop_box(slices(Intensity("ct", -160, 240).apply(image), 2))
    outside = np.ones(image.shape[:2], bool)
    outside[rows, cols] = False
    assert outside.any() and not pred[outside].any()  # nothing outside the cropped region
