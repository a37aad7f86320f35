"""Training: the loss goes down, the schedule is right, a killed run resumes exactly."""

import math

import numpy as np
import pytest
import torch

from medsam2.model.build import build_model, read_checkpoint
from medsam2.spec import TrackerSpec, TrainSpec
from medsam2.train import (
    SINGLE_FRAME_PROMPTS,
    ClipSampler,
    _simulated_prompts,
    augment_clip,
    frame_loss,
    lr_factor,
    param_groups,
    train,
    unmatched_prefixes,
)
from medsam2.typed import SpecError, parse, to_plain


def _spec(steps, policy="self_sorting", **train_keys):
    return parse(TrackerSpec, {
        "kind": "medsam2", "arch": "tiny", "image_size": 64, "memory": {"policy": policy},
        "train": {"steps": steps, "clip_len": 3, "save_every": 2, "lr": 1e-3, **train_keys}})


def test_lr_schedule_warms_up_then_decays_to_zero():
    f = [lr_factor(s, 100, 0.1) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:])) and f[-1] < 0.01
    assert lr_factor(55, 100, 0.1) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))


def test_clip_sampler_starts_on_the_object(phantom3d, phantom2d):
    sampler = ClipSampler([phantom3d, phantom2d], 64)
    rng = np.random.default_rng(0)
    for _ in range(20):
        images, masks = sampler.sample(rng, 4)
        assert images.shape == masks.shape and len(images) >= 2
        assert masks[0].any()  # the prompted first frame always shows the object
        assert 0.0 <= images.min() and images.max() <= 1.0


def test_clip_sampler_objects_share_the_first_frame(phantom3d):
    sampler = ClipSampler([phantom3d], 64)
    rng = np.random.default_rng(0)
    counts = set()
    for _ in range(20):
        images, objects = sampler.sample_objects(rng, 4, 2)
        assert objects.shape[1:] == images.shape and len(objects) in (1, 2)
        assert all(m[0].any() for m in objects)  # every object is visible where prompted
        if len(objects) == 2:  # organ and lesion: different labels, no shared voxel
            assert not (objects[0] & objects[1]).any()
        counts.add(len(objects))
        assert len(sampler.sample_objects(rng, 4, 1)[1]) == 1
    assert counts == {1, 2}


def test_dataset_weights_set_each_datasets_share_of_clips(phantom3d, phantom2d):
    def share_2d(sampler, n=400):
        rng = np.random.default_rng(0)
        # cells2d images are 128 px wide, abdomen3d slices 80-96 px
        return np.mean([sampler.sample(rng, 1)[0].shape[-1] == 128 for _ in range(n)])

    # by default each of the 3 training volumes and the one image set are equally likely
    assert 0.15 < share_2d(ClipSampler([phantom3d, phantom2d], 64)) < 0.35
    assert 0.42 < share_2d(ClipSampler([phantom3d, phantom2d], 64, (1, 1))) < 0.58
    assert share_2d(ClipSampler([phantom3d, phantom2d], 64, (0, 1))) == 1.0
    with pytest.raises(ValueError, match="train.dataset_weights"):
        ClipSampler([phantom3d, phantom2d], 64, (1,))


def test_frames_without_the_object_teach_an_empty_mask_without_a_score_head():
    gt = torch.zeros(1, 1, 16, 16)

    def out(level):
        logits = torch.full((1, 1, 16, 16), float(level), requires_grad=True)
        return logits, {"multistep_pred_multimasks": logits,
                        "multistep_pred_ious": torch.ones(1, 1),
                        "object_score_logits": torch.full((1, 1), -10.0)}

    # with SAM 2's object-score head only the head learns "absent" (it already says so)
    logits, o = out(3.0)
    assert frame_loss(o, gt, object_scores=True).item() < 1e-3
    # without it the mask itself must come out empty: a foreground guess costs, and its
    # gradient pushes the logits down
    logits, o = out(3.0)
    loss = frame_loss(o, gt, object_scores=False)
    loss.backward()
    assert loss.item() > 1.0 and (logits.grad > 0).all()
    assert frame_loss(out(-8.0)[1], gt, object_scores=False).item() < 0.1


def test_single_frame_steps_use_clicks_and_boxes_only():
    cfg = TrainSpec(max_corrections=2)
    masks = np.zeros((1, 32, 32), bool)
    masks[0, 8:20, 10:24] = True
    rng = np.random.default_rng(0)
    for _ in range(20):
        (points, mask_in), fix = _simulated_prompts(masks, 64, SINGLE_FRAME_PROMPTS, cfg, rng,
                                                    torch.device("cpu"))
        assert mask_in is None and points is not None and fix == ()
    clips = [_simulated_prompts(np.repeat(masks, 4, 0), 64, (1.0, 0.0, 0.0), cfg, rng,
                                torch.device("cpu")) for _ in range(20)]
    assert all(inputs[1] is not None and inputs[0] is None for inputs, _ in clips)
    assert any(fix for _, fix in clips)  # corrections are drawn on clips


def test_augmentation_moves_image_and_mask_together():
    rng = np.random.default_rng(0)
    masks = np.zeros((3, 16, 20), bool)
    masks[:, 2:6, 3:9] = True  # off-centre, so flips and turns show
    images = np.where(masks, 0.7, 0.3).astype(np.float32)
    seen = set()
    for _ in range(30):
        img, msk = augment_clip(images, masks, rng)
        assert img.shape[0] == 3 and img.shape[1:] in ((16, 20), (20, 16))
        assert img.shape == msk.shape and msk.sum() == masks.sum()
        # intensity changes are monotonic: the object stays the brighter region
        assert img[msk].min() > img[~msk].max()
        assert 0.0 <= img.min() and img.max() <= 1.0
        seen.add(msk.tobytes())
    assert len(seen) >= 6  # several of the 8 flips/turns were drawn
    a = augment_clip(images, masks, np.random.default_rng(5))
    b = augment_clip(images, masks, np.random.default_rng(5))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_param_groups_scale_the_learning_rate_by_prefix():
    model = build_model("tiny", 64, {"policy": "fifo"}, seed=0)
    cfg = TrainSpec(lr=1e-3, lr_scale={"memory_attention": 0.1})
    groups = param_groups(model, cfg)
    by_lr = {g["lr"]: {id(p) for p in g["params"]} for g in groups}
    assert sorted(by_lr) == pytest.approx([1e-4, 1e-3])
    slow = {id(p) for n, p in model.named_parameters() if n.startswith("memory_attention")}
    assert by_lr[min(by_lr)] == slow
    n_all = sum(1 for p in model.parameters() if p.requires_grad)
    assert sum(len(g["params"]) for g in groups) == n_all


def test_freeze_and_lr_scale_prefixes_that_name_nothing_are_reported():
    model = build_model("tiny", 64, {"policy": "fifo"}, seed=0)
    cfg = TrainSpec(freeze=("image_encoder", "imag_encoder"),
                    lr_scale={"memory_attention": 0.1, "memory_atention": 0.1})
    assert unmatched_prefixes(model, cfg) == ["train.freeze: 'imag_encoder'",
                                              "train.lr_scale: 'memory_atention'"]


def test_unknown_train_key_is_rejected():
    with pytest.raises(SpecError, match=r"train.epochs: unknown key"):
        parse(TrainSpec, {"epochs": 3}, "train")


def test_killed_run_resumes_to_the_same_weights(phantom3d, phantom2d, tmp_path):
    full = train(_spec(4), [phantom3d, phantom2d], tmp_path / "full", seed=3)
    part = train(_spec(4), [phantom3d, phantom2d], tmp_path / "part", seed=3, stop_after=2)
    assert part.name == "last.pt" and read_checkpoint(part)["step"] == 2
    resumed = train(_spec(4), [phantom3d, phantom2d], tmp_path / "part", seed=3)
    a, b = read_checkpoint(full)["model"], read_checkpoint(resumed)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = read_checkpoint(train(_spec(4), [phantom3d, phantom2d], tmp_path / "o", seed=4))
    assert not all(torch.equal(a[k], other["model"][k]) for k in a)
    ckpt = read_checkpoint(full)
    assert ckpt["config"]["memory"]["policy"] == "self_sorting" and ckpt["step"] == 4
    assert (tmp_path / "full" / "config.yaml").is_file()
    log = (tmp_path / "full" / "train_log.csv").read_text().splitlines()
    assert log[0] == "step,loss,lr,seconds" and len(log) == 5
    # the resumed run logged each step once (step 3 was not saved before the "kill")
    steps = [r.split(",")[0] for r in
             (tmp_path / "part" / "train_log.csv").read_text().splitlines()[1:]]
    assert steps == ["1", "2", "3", "4"]


def test_a_changed_recipe_never_resumes_old_weights(phantom3d, tmp_path):
    """A last.pt of another learning rate is moved aside, not resumed into new labels."""
    old = train(_spec(4), [phantom3d], tmp_path / "run", seed=3, stop_after=2)
    assert old.name == "last.pt"
    new = train(_spec(4, lr=5e-4), [phantom3d], tmp_path / "run", seed=3)
    fresh = train(_spec(4, lr=5e-4), [phantom3d], tmp_path / "fresh", seed=3)
    a, b = read_checkpoint(new)["model"], read_checkpoint(fresh)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)  # as if the old run had never been
    stale = list((tmp_path / "run").glob("stale-*"))
    assert len(stale) == 1 and (stale[0] / "last.pt").is_file()
    assert read_checkpoint(new)["config"]["train"]["lr"] == 5e-4
    log = (tmp_path / "run" / "train_log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in log[1:]] == ["1", "2", "3", "4"]


def test_training_reduces_the_loss(phantom3d, tmp_path):
    cfg = _spec(40, policy="fifo", lr=2e-3, save_every=100)
    train(cfg, [phantom3d], tmp_path / "run", seed=0)
    losses = np.loadtxt(tmp_path / "run" / "train_log.csv", delimiter=",", skiprows=1)[:, 1]
    first, last = np.median(losses[:10]), np.median(losses[-10:])
    assert last < first, (first, last)


@pytest.mark.slow
def test_data_parallel_training_with_torchrun_on_cpu(phantom3d, tmp_path):
    """2 processes, gloo backend: both train, gradients averaged, weights stay identical."""
    import json
    import subprocess
    import sys

    cfg = _spec(3, policy="fifo")
    out = tmp_path / "ddp"
    res = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "medsam2.cli", "train", "--model-json", json.dumps(to_plain(cfg)),
         "--dataset-dir", str(phantom3d), "--out-dir", str(out), "--seed", "0"],
        capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    ckpt = read_checkpoint(out / "checkpoint.pt")
    assert ckpt["config"]["world_size"] == 2 and ckpt["step"] == 3
    single = read_checkpoint(train(cfg, [phantom3d], tmp_path / "single", seed=0))
    # two ranks saw twice the clips: the weights differ from a single-process run
    assert not all(torch.equal(ckpt["model"][k], single["model"][k]) for k in single["model"])
