"""Synthetic pretraining videos and `medsam2 pretrain`: the demo's stand-in for SAM 2."""

import json

import numpy as np
import pytest
import torch
from scipy import ndimage

from medsam2.data.videos import SIZE, VIDEOS, VideoSampler
from medsam2.model.build import read_checkpoint
from medsam2.pretrain import pretrain
from medsam2.spec import PretrainSpec, TrackerSpec
from medsam2.train import train
from medsam2.typed import parse


@pytest.mark.parametrize("kind", sorted(VIDEOS))
def test_videos_are_seeded_with_two_disjoint_objects_on_frame_zero(kind):
    images, masks = VIDEOS[kind](np.random.default_rng(3), 5)
    again, masks_again = VIDEOS[kind](np.random.default_rng(3), 5)
    assert np.array_equal(images, again) and np.array_equal(masks, masks_again)
    assert images.shape == (5, SIZE, SIZE) and masks.shape == (2, 5, SIZE, SIZE)
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert masks[0, 0].any() and masks[1, 0].any()  # both objects can be prompted
    assert not (masks[0] & masks[1]).any()  # one label per pixel, as in a label map


def test_nested_objects_are_the_ring_and_the_core():
    for seed in range(10):
        _, masks = VIDEOS["nested"](np.random.default_rng(seed), 2)
        ring, core = masks[:, 0]
        # the core is a hole of the ring (a lesion inside its organ), not beside it
        assert np.array_equal(ndimage.binary_fill_holes(ring) & ~ring, core)


def test_vanishing_core_leaves_some_clips():
    rng = np.random.default_rng(0)
    gone = [not VIDEOS["nested-vanish"](rng, 12)[1][1, -1].any() for _ in range(20)]
    assert 0 < sum(gone) < 20  # half the clips shrink the core, by a random speed


def test_pairs_move_anywhere_but_keep_their_look():
    images, masks = VIDEOS["pairs"](np.random.default_rng(1), 4)
    for k in (0, 1):
        assert not np.array_equal(masks[k, 0], masks[k, 1])  # a new place every frame
        means = [images[t][masks[k, t]].mean() for t in range(4)]
        assert np.ptp(means) < 0.03  # the same brightness (noise sd 0.05 over ~100 px)
    bright = [images[0][masks[k, 0]].mean() for k in (0, 1)]
    assert abs(bright[0] - bright[1]) > 0.08  # the look tells the two apart


def test_video_sampler_serves_the_clip_sampler_interface():
    sampler = VideoSampler(["twins", "nested"])
    rng = np.random.default_rng(0)
    images, objects = sampler.sample_objects(rng, 4, 2)
    assert images.shape == (4, SIZE, SIZE) and objects.shape == (2, 4, SIZE, SIZE)
    assert sampler.sample_objects(rng, 4, 1)[1].shape == (1, 4, SIZE, SIZE)
    with pytest.raises(ValueError, match="unknown or no kinds .*'spirals'"):
        VideoSampler(["twins", "spirals"])


def test_training_starts_from_the_pretrained_weights(phantom3d, tmp_path):
    entry = parse(PretrainSpec, {"arch": "tiny", "image_size": 64, "multimask_tracking": False,
                                 "videos": ["twins"], "restarts": 0,
                                 "train": {"steps": 2, "clip_len": 3, "objects": 2}})
    first = pretrain(entry, tmp_path / "pre", seed=0)
    pre = read_checkpoint(first)
    assert pre["config"]["memory"]["policy"] == "fifo" and pre["step"] == 2
    # the tracking check ran on the pretraining's video kinds
    report = json.loads((tmp_path / "pre" / "tracking.json").read_text())
    scores = report["scores"]["twins"]
    assert 0 <= scores["other"] <= 1 and 0 <= scores["own"] <= 1
    assert report["tracks"] == (scores["own"] - scores["other"] >= 0.3)
    # the pretraining moved the weights away from the random initialisation ...
    scratch = train(parse(TrackerSpec, {
        "kind": "sam2", "arch": "tiny", "image_size": 64, "multimask_tracking": False,
        "train": {"steps": 1, "clip_len": 3, "lr": 0.0}}), [phantom3d], tmp_path / "scratch")
    # ... and a run with lr 0 (AdamW then leaves weights alone) ends where it started,
    # also at another input size (no parameter depends on it)
    tuned = train(parse(TrackerSpec, {
        "kind": "medsam2", "arch": "tiny", "image_size": 96, "multimask_tracking": False,
        "memory": {"policy": "self_sorting"}, "train": {"steps": 1, "clip_len": 3, "lr": 0.0}}),
        [phantom3d], tmp_path / "tuned", init=first)
    w_pre, w_scratch = pre["model"], read_checkpoint(scratch)["model"]
    w_tuned = read_checkpoint(tuned)["model"]
    assert any(not torch.equal(w_pre[k], w_scratch[k]) for k in w_pre)
    assert all(torch.equal(w_pre[k], w_tuned[k]) for k in w_pre)


def test_a_pretraining_that_does_not_track_starts_again(tmp_path, capsys):
    spec = parse(PretrainSpec, {"arch": "tiny", "image_size": 64, "multimask_tracking": False,
                                "videos": ["twins"], "restarts": 1,
                                "train": {"steps": 1, "clip_len": 2}})
    pretrain(spec, tmp_path, seed=3)
    report = json.loads((tmp_path / "tracking.json").read_text())
    # one step cannot learn to follow the prompted disc: a second initialisation was tried
    assert report["tracks"] is False
    assert report["attempt"] == 1 and report["seed"] == 1003
    log = capsys.readouterr().out
    assert "starting again from another initialisation" in log
    assert "models fine-tuned from it will not either" in log
    # a rerun resumes the attempt it was in: attempt 1's last.pt is not taken for attempt
    # 0's weights (which would be labelled seed 3, or rejected and trained again)
    pretrain(spec, tmp_path, seed=3)
    again = json.loads((tmp_path / "tracking.json").read_text())
    assert (again["attempt"], again["seed"]) == (1, 1003)
    assert again["scores"] == report["scores"]
    assert "starting again" not in capsys.readouterr().out
