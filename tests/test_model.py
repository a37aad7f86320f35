"""The MedSAM-2 model on Meta's sam2 parts: equivalence, checkpoints, chunked features."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from sam2.modeling.sam2_base import SAM2Base

from medsam2.data.frames import to_model_frames
from medsam2.data.prompts import box_prompt
from medsam2.model.build import CheckpointError, build_model, load_checkpoint, save_checkpoint
from medsam2.model.medsam2_base import MedSAM2Base
from medsam2.model.memory import SelfSortingPolicy
from medsam2.model.predictor import ChunkedFeatures, segment_sequence


class SAM2Reference(MedSAM2Base):
    """Our model class but with SAM 2's own (inline FIFO) memory conditioning."""

    _prepare_memory_conditioned_features = SAM2Base._prepare_memory_conditioned_features


def _sequence(n=10, size=64, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    imgs, masks = [], []
    for t in range(n):
        m = (yy - 30 - t) ** 2 + (xx - 28) ** 2 < (12 - abs(t - 4)) ** 2
        imgs.append(np.clip(0.3 + 0.5 * m + rng.normal(0, 0.05, m.shape), 0, 1))
        masks.append(m)
    return np.stack(imgs), np.stack(masks)


@pytest.fixture(scope="module")
def tiny():
    return build_model("tiny", 64, {"policy": "fifo"}, seed=0).eval()


def test_fifo_policy_matches_sam2_memory_selection_exactly(tiny):
    imgs, masks = _sequence()
    frames = to_model_frames(imgs, 64)
    prompt = box_prompt(masks[4], 4).model_inputs(masks[4].shape, 64)
    ours = segment_sequence(tiny, frames, {4: prompt})
    ref = build_model("tiny", 64, {"policy": "fifo"}, seed=0)
    ref.__class__ = SAM2Reference
    ref.load_state_dict(tiny.state_dict())
    theirs = segment_sequence(ref.eval(), frames, {4: prompt})
    assert ours.shape == (10, 1, 16, 16)
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=0)
    # and the self-sorting bank really changes what the model attends to
    tiny.memory_policy = SelfSortingPolicy(bank_size=2, confidence=False, seed=0)
    try:
        other = segment_sequence(tiny, frames, {4: prompt})
    finally:
        tiny.memory_policy = ref.memory_policy
    assert not torch.allclose(ours[7:], other[7:], atol=1e-5)


def test_chunked_features_equal_one_batch(tiny):
    frames = to_model_frames(_sequence(7)[0], 64)
    whole = ChunkedFeatures(tiny, frames, chunk_size=7)
    chunked = ChunkedFeatures(tiny, frames, chunk_size=3, max_chunks=1)
    with torch.no_grad():
        for t in (0, 4, 6, 2):
            a, b = whole[t][0], chunked[t][0]
            assert all(torch.allclose(x, y, atol=1e-5) for x, y in zip(a, b))
    assert len(chunked._chunks) == 1 and chunked.encoder_calls == 4


def test_checkpoint_round_trip_and_strict_errors(tiny, tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", tiny, {"arch": "tiny"}, step=3)
    other = build_model("tiny", 64, seed=1)
    ckpt = load_checkpoint(other, path)
    assert ckpt["step"] == 3 and ckpt["config"] == {"arch": "tiny"} and "code_version" in ckpt
    assert all(torch.equal(a, b) for a, b in zip(tiny.state_dict().values(),
                                                 other.state_dict().values()))
    sd = dict(tiny.state_dict())
    sd.pop("no_mem_embed")
    sd["extra.weight"] = torch.zeros(1)
    torch.save({"model": sd}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"1 missing keys \['no_mem_embed'\].*extra.weight"):
        load_checkpoint(other, tmp_path / "bad.pt")
    (tmp_path / "corrupt.pt").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="corrupt.pt: not a readable checkpoint"):
        load_checkpoint(other, tmp_path / "corrupt.pt")
    with pytest.raises(CheckpointError, match="nothere.pt: checkpoint not found"):
        load_checkpoint(other, tmp_path / "nothere.pt")


@pytest.mark.parametrize("arch", [
    "hiera_t", "sam2_hiera_t",
    pytest.param("hiera_s", marks=pytest.mark.slow),
    pytest.param("hiera_b+", marks=pytest.mark.slow),
    pytest.param("hiera_l", marks=pytest.mark.slow),
])
def test_official_layout_checkpoint_loads(arch, tmp_path):
    """Meta's files are {"model": SAM2Base state dict}: a random-init one must load."""
    meta_model = build_model(arch, 256, seed=0)
    assert isinstance(meta_model, SAM2Base)
    torch.save({"model": meta_model.state_dict()}, tmp_path / f"{arch}.pt")
    ours = build_model(arch, 256, checkpoint=tmp_path / f"{arch}.pt", seed=5)
    key = "image_encoder.trunk.patch_embed.proj.weight"
    assert torch.equal(ours.state_dict()[key], meta_model.state_dict()[key])
    with pytest.raises(CheckpointError, match="does not fit"):
        build_model("tiny", 64, checkpoint=tmp_path / f"{arch}.pt")


def test_six_orientation_fusion_runs_and_votes(tiny, phantom3d):
    from medsam2.data.frames import Intensity
    from medsam2.data.layout import StandardDataset
    from medsam2.data.prompts import volume_prompts
    from medsam2.predict import Orientations, predict_volume

    ds = StandardDataset(phantom3d)
    case = ds.cases("test")[0]
    image, label = ds.read_image(case).array, ds.read_label(case).array
    prompts = {"organ": volume_prompts(label == 1, "mask")}
    six = Orientations((0, 1, 2), reverse=True, fusion="vote")
    one = predict_volume(tiny, image, Intensity("ct", -160, 240), prompts, label, {"organ": 1},
                         64)
    fused = predict_volume(tiny, image, Intensity("ct", -160, 240), prompts, label,
                           {"organ": 1}, 64, six)
    assert one.shape == fused.shape == image.shape
    assert set(np.unique(fused)) <= {0, 1}
    # a mask prompt is the output on its own key slice
    key = prompts["organ"][0].frame
    assert (one[..., key] == (label[..., key] == 1)).mean() > 0.95
    assert six.fuse([np.array([5.0]), np.array([-5.0]), np.array([1.0])])[0] == 2 / 3


def test_volume_frames_are_encoded_once_for_all_labels_and_directions(tiny, phantom3d):
    """Six orientations x two labels = 12 passes per axis; the encoder sees each axis's
    frames once, and the shared (reversed) features give the same masks as encoding the
    reversed frames afresh."""
    from medsam2.data.frames import Intensity, slices
    from medsam2.data.layout import StandardDataset
    from medsam2.data.prompts import volume_prompts
    from medsam2.predict import Orientations, _Sequence, predict_volume

    ds = StandardDataset(phantom3d)
    case = ds.cases("test")[0]
    image, label = ds.read_image(case).array, ds.read_label(case).array
    ct = Intensity("ct", -160, 240)
    prompts = {name: volume_prompts(label == v, "mask") for name, v in ds.labels.items()
               if (label == v).any()}
    assert len(prompts) == 2
    encoded = []
    forward_image = tiny.forward_image
    tiny.forward_image = lambda batch: (encoded.append(len(batch)), forward_image(batch))[1]
    try:
        predict_volume(tiny, image, ct, prompts, label, ds.labels, 64,
                       Orientations((0, 1, 2), reverse=True), chunk_size=8)
    finally:
        del tiny.forward_image
    assert sum(encoded) == sum(image.shape)  # every slice of every axis, once

    stack = slices(ct.apply(image), 2)
    prompt = prompts["lesion"][0]
    gt = np.take(label == ds.labels["lesion"], prompt.frame, axis=2)
    shared = _Sequence(tiny, stack, 64, 8, crop=False, passes=2).logits([prompt], [gt], True)
    fresh = _Sequence(tiny, stack[::-1].copy(), 64, 8, crop=False, passes=1)
    flipped = replace(prompt, frame=len(stack) - 1 - prompt.frame)
    alone = fresh.logits([flipped], [gt])[::-1]
    assert shared.shape == alone.shape == stack.shape
    assert np.array_equal(shared > 0, alone > 0)
    assert np.abs(shared - alone).max() < 1e-3


def test_interactive_prompts_are_all_conditioning_frames(tiny, phantom3d):
    """With a mask prompt on every slice that shows the organ (rate 1), each of those slices
    outputs its prompt, whatever the (untrained) weights; key slice only, they do not."""
    from medsam2.data.frames import Intensity
    from medsam2.data.layout import StandardDataset
    from medsam2.data.prompts import volume_prompts
    from medsam2.predict import predict_volume

    ds = StandardDataset(phantom3d)
    case = ds.cases("test")[0]
    image, label = ds.read_image(case).array, ds.read_label(case).array
    # the organ with its lesion, one solid object: the organ label alone is a ring of
    # 2 voxels round the lesion in places, which a 64 px model input does not keep
    organ = label >= 1
    shown = np.nonzero(organ.any(axis=(0, 1)))[0]
    ct = Intensity("ct", -160, 240)

    def dice_on_shown(rate):
        prompts = {"organ": volume_prompts(organ, "mask", rate, np.random.default_rng(0))}
        pred = predict_volume(tiny, image, ct, prompts, organ.astype(np.int16), {"organ": 1},
                              64) == 1
        p, g = pred[..., shown], organ[..., shown]
        return list(2 * (p & g).sum((0, 1)) / (p.sum((0, 1)) + g.sum((0, 1))))

    every, key_only = dice_on_shown(1.0), dice_on_shown(0.0)
    print(f"mean Dice on the organ's slices: prompted {np.mean(every):.3f}, "
          f"key slice only {np.mean(key_only):.3f}")
    assert np.mean(every) > 0.8  # (64 px model input: a few-voxel cross-section is lost)
    assert np.mean(key_only) < np.mean(every) - 0.2


@pytest.mark.parametrize("multimask, masks", [(None, 3), (True, 3), (False, 1)])
def test_multimask_tracking_sets_the_masks_of_unprompted_frames(multimask, masks):
    """SAM 2 gives three candidates on tracking frames; ``multimask_tracking: false`` one.
    (The prompted frame keeps SAM 2's rule: several candidates for one click or box.)"""
    from medsam2.train import encode_clip

    model = build_model("tiny", 64, {"policy": "fifo"}, seed=0, multimask_tracking=multimask)
    model.eval()
    frames = torch.randn(2, 3, 64, 64)
    feats, pos, sizes = encode_clip(model, frames)
    click = {"point_coords": torch.tensor([[[32.0, 32.0]]]),
             "point_labels": torch.tensor([[1]], dtype=torch.int32)}
    out_dict = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    with torch.inference_mode():
        for t in range(2):
            out = model.track_step(t, t == 0, [f[:, t:t + 1] for f in feats],
                                   [p[:, t:t + 1] for p in pos], sizes,
                                   click if t == 0 else None, None, out_dict, 2)
            out_dict["cond_frame_outputs" if t == 0 else "non_cond_frame_outputs"][t] = out
            assert out["multistep_pred_multimasks"].shape[1] == (3 if t == 0 else masks)


@pytest.mark.parametrize("multimask, falls_back", [(None, True), (True, True), (False, False)])
def test_stability_fallback_only_for_models_trained_with_candidates(multimask, falls_back):
    """SAM 2's post-processing swaps an unstable single mask (a box prompt) for the best of
    its three candidates; a model trained with one tracking mask keeps its own mask."""
    from medsam2.train import encode_clip

    box = {"point_coords": torch.tensor([[[12.0, 12.0], [50.0, 44.0]]]),
           "point_labels": torch.tensor([[2, 3]], dtype=torch.int32)}
    masks = {}
    for post in (False, True):
        model = build_model("tiny", 64, {"policy": "fifo"}, seed=0, postprocessing=post,
                            multimask_tracking=multimask).eval()
        torch.manual_seed(1)
        feats, pos, sizes = encode_clip(model, torch.randn(1, 3, 64, 64))
        out_dict = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
        with torch.inference_mode():
            out = model.track_step(0, True, feats, pos, sizes, box, None, out_dict, 1)
        masks[post] = out["pred_masks"]
    # untrained, the single mask is never stable: the fallback always picks a candidate
    assert torch.equal(masks[False], masks[True]) != falls_back


def test_mirrored_view_segments_the_mirrored_frames(tiny, phantom3d):
    """A mirrored view (``predict.mirror``) is the same model on the flipped frames with the
    flipped prompt, its logits flipped back: boxes keep their corner order, crops still fit."""
    from medsam2.data.frames import Intensity, slices
    from medsam2.data.layout import StandardDataset
    from medsam2.data.prompts import click_prompt, volume_prompts
    from medsam2.predict import Orientations, _Sequence, mirror_prompt, predict_volume

    ds = StandardDataset(phantom3d)
    case = ds.cases("test")[0]
    image, label = ds.read_image(case).array, ds.read_label(case).array
    organ = label == 1
    frame = volume_prompts(organ, "box")[0].frame
    stack = slices(Intensity("ct", -160, 240).apply(image), 2)
    mask = np.take(organ, frame, axis=2)
    for axes in [(0,), (1,), (0, 1)]:
        flipped = np.flip(mask, axes)
        assert mirror_prompt(box_prompt(mask, frame), axes, mask.shape) == box_prompt(flipped,
                                                                                       frame)
        assert mirror_prompt(click_prompt(mask, frame), axes, mask.shape).points[0] != \
            click_prompt(mask, frame).points[0]  # moved (the organ is not symmetric)
        view = _Sequence(tiny, stack, 64, 8, crop=True, passes=1, mirror=axes)
        direct = _Sequence(tiny, np.flip(stack, [1 + a for a in axes]).copy(), 64, 8,
                           crop=True, passes=1)
        got = view.logits([box_prompt(mask, frame)], [None])
        want = np.flip(direct.logits([box_prompt(flipped, frame)], [None]),
                       [1 + a for a in axes])
        assert got.shape == stack.shape
        assert np.abs(got - want).max() < 1e-4
    # each view is one more pass over the frames, fused with the others
    prompts = {"organ": volume_prompts(organ, "mask")}
    encoded = []
    forward_image = tiny.forward_image
    tiny.forward_image = lambda batch: (encoded.append(len(batch)), forward_image(batch))[1]
    try:
        pred = predict_volume(tiny, image, Intensity("ct", -160, 240), prompts, label,
                              {"organ": 1}, 64, Orientations(mirror=((0, 1), (1,))))
    finally:
        del tiny.forward_image
    assert sum(encoded) == 3 * image.shape[2]
    assert pred.shape == image.shape and set(np.unique(pred)) <= {0, 1}


def test_predict_options_apply_to_their_datasets_only(phantom3d, tmp_path):
    from medsam2.predict import Orientations, predict_dataset
    from medsam2.spec import PredictSpec, TrackerSpec
    from medsam2.typed import parse

    spec = parse(TrackerSpec, {"kind": "medsam2", "image_size": 160, "checkpoint": "c.pt",
                               "predict": {"image_size": 224, "mirror": [[1, 0]],
                                           "datasets": ["vol"]}})
    vol, img = spec.for_dataset("vol"), spec.for_dataset("img")
    assert vol.prediction_spec().image_size == 224 and vol.predict.datasets is None
    assert Orientations.from_spec(vol).views == ((), (0, 1))
    assert img.prediction_spec().image_size == 160 and img.predict == PredictSpec()
    assert Orientations.from_spec(img).views == ((),)
    assert spec.predict.datasets == ("vol",)  # the spec itself is left as it was
    with pytest.raises(ValueError, match="predict.datasets"):  # which dataset is this?
        predict_dataset(spec, None, phantom3d, tmp_path / "p.json", tmp_path / "out")


@pytest.mark.parametrize("mirror, ok", [([[0, 1]], True), ([[1], [0], [1, 0]], True),
                                        ([[]], False), ([[2]], False), ([[0], [0]], False)])
def test_mirror_views_are_checked(mirror, ok):
    from medsam2.spec import PredictSpec
    from medsam2.typed import SpecError, parse

    if ok:
        assert len(parse(PredictSpec, {"mirror": mirror}, "predict").views) == len(mirror)
    else:
        with pytest.raises(SpecError, match=r"predict.mirror"):
            parse(PredictSpec, {"mirror": mirror}, "predict")
    assert parse(PredictSpec, {}).views == ()


def test_each_label_keeps_what_connects_to_its_prompted_slices():
    """Stray label voxels away from the tracked object go; a label whose prompted slice
    another label won keeps everything (there is nothing to anchor on)."""
    from medsam2.data.prompts import Prompt
    from medsam2.predict import keep_prompted_components

    pred = np.zeros((12, 12, 10), np.uint8)
    pred[2:6, 2:6, 2:7] = 1   # the organ, prompted on slice 4 ...
    pred[8:10, 8:10, 8] = 1   # ... and a speck far from it
    pred[3:5, 7:9, 1:4] = 2   # the lesion: two pieces, neither on its prompted slice 6
    pred[7:9, 2:4, 8:10] = 2
    prompts = {"organ": [Prompt("mask", 4, [], [])], "lesion": [Prompt("mask", 6, [], [])]}
    out = keep_prompted_components(pred, prompts, {"organ": 1, "lesion": 2})
    assert (out == 1).sum() == 4 * 4 * 5 and not out[8:10, 8:10, 8].any()
    assert np.array_equal(out == 2, pred == 2)
    # a second prompted slice (the interactive setting) anchors a second piece
    prompts["organ"].append(Prompt("mask", 8, [], []))
    assert np.array_equal(keep_prompted_components(pred, prompts, {"organ": 1, "lesion": 2}),
                          pred)
    # prompts on another axis anchor through that axis's slices
    prompts = {"organ": [Prompt("mask", 9, [], [], axis=0)]}
    out = keep_prompted_components(pred, prompts, {"organ": 1})
    assert (out == 1).sum() == 4 and (out == 2).sum() == (pred == 2).sum()


def test_a_case_without_prompts_is_reported_not_scored_as_a_miss(phantom3d, tmp_path):
    """A stale prompts file that lacks a test case: no blank prediction (Dice 0 that looks
    real), and the evaluation names the case as an error."""
    import json

    from medsam2.data.prompts import dataset_prompts
    from medsam2.evaluate import evaluate_dataset
    from medsam2.predict import predict_dataset
    from medsam2.spec import TrackerSpec
    from medsam2.typed import parse

    prompts = dataset_prompts(phantom3d, "box", seed=0)
    dropped = sorted(prompts["cases"])[0]
    del prompts["cases"][dropped]
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps(prompts))
    spec = parse(TrackerSpec, {"kind": "sam2", "image_size": 64, "checkpoint": "none"})
    written = predict_dataset(spec, None, phantom3d, path, tmp_path / "pred")
    assert dropped not in {p.name.split(".")[0] for p in written}
    df = evaluate_dataset(phantom3d, tmp_path / "pred", "d", "m", tmp_path / "m.csv")
    bad = df[df["case"] == dropped]
    assert len(bad) and bad["status"].str.startswith("error").all()


def test_bf16_prediction_runs_and_writes_label_values(phantom3d, tmp_path):
    """predict.bf16 (a GPU setting) runs under autocast and writes the contract."""
    import json

    from medsam2.data.layout import StandardDataset, read_volume
    from medsam2.data.prompts import dataset_prompts
    from medsam2.predict import predict_dataset
    from medsam2.spec import TrackerSpec
    from medsam2.typed import parse

    path = tmp_path / "prompts.json"
    path.write_text(json.dumps(dataset_prompts(phantom3d, "mask", seed=0)))
    spec = parse(TrackerSpec, {"kind": "sam2", "image_size": 64, "checkpoint": "none",
                               "predict": {"bf16": True}})
    written = predict_dataset(spec, None, phantom3d, path, tmp_path / "pred")
    ds = StandardDataset(phantom3d)
    assert len(written) == len(ds.cases("test"))
    pred = read_volume(written[0]).array
    assert set(np.unique(pred)) <= {0, *ds.labels.values()}
