"""Evaluation protocols as named settings: the config names them, the prompts stage draws
the prompted frames by them, prediction follows them and every table footnote says them;
two protocols of one paper task are two columns, never one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_report import metric_rows, write_config, write_metrics

from medsam2 import protocols
from medsam2.data.layout import StandardDataset
from medsam2.data.prompts import EMPTY, dataset_prompts, load_prompts
from medsam2.report import build
from medsam2.spec import Config, SpecError

MODELS = {"medsam2": {"kind": "medsam2", "paper_name": "MedSAM-2", "checkpoint": "m.pt"},
          "sam2": {"kind": "sam2", "paper_name": "SAM2", "checkpoint": "s.pt"}}


def _config(datasets: dict, **extra) -> dict:
    return {"seed": 0, "datasets": datasets, "models": MODELS, **extra}


# ------------------------------------------------------------------------------ config
def test_protocols_are_named_or_implied_and_checked_against_the_data():
    cfg = Config.from_dict(_config({
        "vol": {"source": "synthetic", "generator": "abdomen3d"},
        "vol-i": {"source": "synthetic", "generator": "abdomen3d", "prompt_rate": 0.25},
        "img": {"source": "synthetic", "generator": "cells2d"},
        "img-op": {"source": "synthetic", "generator": "cells2d", "protocol": "one_prompt"},
        "img-iop": {"source": "synthetic", "generator": "cells2d",
                    "protocol": "interactive_one_prompt", "prompt_rate": 0.3},
    }))
    assert {d: cfg.protocol(d) for d in cfg.datasets} == {
        "vol": "key_slice", "vol-i": "interactive", "img": "per_image",
        "img-op": "one_prompt", "img-iop": "interactive_one_prompt"}
    # the One-Prompt protocols are the One-Prompt 2D mode (prediction reads mode_2d)
    assert cfg.datasets["img-iop"].mode_2d == "one_prompt"
    # the registry file's dims decide for registry datasets
    assert Config.from_dict(_config({"wbc": {"source": "registry"}})).protocol("wbc") == \
        "per_image"


@pytest.mark.parametrize("entry, where, words", [
    ({"source": "synthetic", "generator": "abdomen3d", "protocol": "interactive"},
     "datasets.vol.protocol", "prompt_rate > 0"),
    ({"source": "synthetic", "generator": "abdomen3d", "protocol": "key_slice",
      "prompt_rate": 0.25}, "datasets.vol.protocol", "must be 0"),
    ({"source": "synthetic", "generator": "abdomen3d", "protocol": "one_prompt"},
     "datasets.vol.protocol", "2D protocol"),
    ({"source": "registry", "registry": "wbc", "protocol": "interactive",
      "prompt_rate": 0.25}, "datasets.vol.protocol", "3D protocol"),
    ({"source": "synthetic", "generator": "cells2d", "prompt_rate": 0.3},
     "datasets.vol.protocol", "per_image"),
])
def test_a_protocol_that_does_not_fit_fails_naming_the_dataset(entry, where, words):
    with pytest.raises(SpecError, match=words) as err:
        Config.from_dict(_config({"vol": entry}))
    assert where in str(err.value)


# ------------------------------------------------------------------------------ prompts
def test_interactive_one_prompt_draws_test_images_seeded_per_case_and_label(phantom2d):
    a = dataset_prompts(phantom2d, "box", seed=0, rate=0.5, mode_2d="one_prompt")
    b = dataset_prompts(phantom2d, "box", seed=0, rate=0.5, mode_2d="one_prompt")
    assert a == b and a["protocol"] == "interactive_one_prompt"
    cases = [c.case_id for c in StandardDataset(phantom2d).cases("test")]
    assert set(a["drawn"]) <= set(cases)
    every = dataset_prompts(phantom2d, "box", seed=0, rate=1.0, mode_2d="one_prompt")
    assert set(every["drawn"]) == set(cases)  # p = 1: every test image, every label
    pure = dataset_prompts(phantom2d, "box", seed=0, mode_2d="one_prompt")
    assert pure["protocol"] == "one_prompt" and "drawn" not in pure
    # every image keeps its own prompt (per-image models use it), whatever the draw
    assert a["cases"] == pure["cases"]
    with pytest.raises(ValueError, match="3D protocol"):
        dataset_prompts(phantom2d, "box", seed=0, rate=0.25, protocol="interactive")


def test_interactive_3d_prompts_cover_slices_without_the_object(phantom3d, tmp_path):
    data = dataset_prompts(phantom3d, "box", seed=0, rate=0.5)
    assert data["protocol"] == "interactive"
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    ds = StandardDataset(phantom3d)
    for case_id, labels in load_prompts(path)["cases"].items():
        label = ds.read_label(ds.case(case_id)).array
        for name, plist in labels.items():
            mask = label == ds.labels[name]
            for p in plist:
                shows = np.take(mask, p.frame, axis=p.axis).any()
                assert (p.kind == EMPTY) == (not shows), (case_id, name, p.frame, p.axis)
    kinds = [p["kind"] for labels in data["cases"].values() for ps in labels.values()
             for p in ps]
    assert EMPTY in kinds and "box" in kinds


def test_a_drawn_test_image_without_the_label_is_predicted_empty(phantom2d, tmp_path):
    """Interactive One-Prompt through a (random) tiny tracker: a test image drawn for a
    label it lacks gets an empty-mask prompt, so that image comes out without the label;
    a drawn image with a mask prompt comes out as its mask (SAM 2 outputs a mask prompt)."""
    from medsam2.predict import predict_dataset
    from medsam2.spec import TrackerSpec
    from medsam2.typed import parse

    data = dataset_prompts(phantom2d, "mask", seed=0, rate=1.0, mode_2d="one_prompt")
    ds = StandardDataset(phantom2d)
    tests = [c.case_id for c in ds.cases("test")]
    (name,) = ds.labels
    lacking = tests[0]
    data["cases"][lacking].pop(name)  # as if its ground truth had no such label
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    spec = parse(TrackerSpec, {"kind": "medsam2", "arch": "tiny", "image_size": 64,
                               "checkpoint": "c.pt", "multimask_tracking": False})
    out = tmp_path / "pred"
    predict_dataset(spec, None, phantom2d, path, out, seed=0, mode_2d="one_prompt")
    from medsam2.data.layout import read_volume

    value = ds.labels[name]
    pred = read_volume(out / f"{lacking}{ds.file_ending}").array
    assert not (pred == value).any()
    for case_id in tests[1:]:
        pred = read_volume(out / f"{case_id}{ds.file_ending}").array == value
        gt = ds.read_label(ds.case(case_id)).array == value
        dice = 2 * (pred & gt).sum() / (pred.sum() + gt.sum())
        assert dice > 0.8, (case_id, dice)
    # the prompts file decides: a per-image run on interactive One-Prompt prompts fails
    with pytest.raises(ValueError, match="interactive One-Prompt"):
        predict_dataset(spec, None, phantom2d, path, tmp_path / "x", mode_2d="per_image")


# ------------------------------------------------------------------------------ tables
def _two_protocols_of_one_task(tmp_path: Path) -> build.Context:
    datasets = {
        "wbc": {"source": "registry", "paper_key": "wbc",
                "paper_structures": {"white_blood_cell": "target"},
                "protocol": "interactive_one_prompt", "prompt_rate": 0.3},
        "wbc-per-image": {"source": "registry", "registry": "wbc", "paper_key": "wbc",
                          "paper_structures": {"white_blood_cell": "target"}},
        "btcv": {"source": "registry", "paper_key": "btcv", "prompt_rate": 0.25,
                 "paper_structures": {"spleen": "spleen", "aorta": "aorta"}},
        "btcv-key": {"source": "registry", "registry": "btcv", "paper_key": "btcv",
                     "paper_structures": {"spleen": "spleen", "aorta": "aorta"}},
    }
    config = _config(datasets, report={"main_model": "medsam2", "table1_dataset": "btcv"})
    rng = np.random.default_rng(0)
    frames = []
    for model in MODELS:
        for d in datasets:
            labels = ["spleen", "aorta"] if d.startswith("btcv") else ["white_blood_cell"]
            frames.append(metric_rows(d, model, {(f"c{i}", lab): float(rng.uniform(.3, .9))
                                                 for i in range(3) for lab in labels}))
    write_metrics(tmp_path / "metrics", pd.concat(frames))
    ctx, _ = build.prepare(tmp_path / "metrics", write_config(tmp_path / "c.json", config))
    return ctx


def test_two_protocols_of_one_paper_task_are_two_columns_each_named(tmp_path):
    ctx = _two_protocols_of_one_task(tmp_path)
    tables = {t.name: t for t in build.build_tables(ctx)}
    t2 = tables["table2_dice"]
    data_cols = [c.name for c in t2.columns if c.dataset is not None]
    assert data_cols == ["wbc", "wbc-per-image"]  # BTCV is Table 1's task
    notes = " ".join(t2.footnotes)
    assert "wbc: interactive One-Prompt, p = 0.3, click prompts" in notes
    assert "wbc-per-image: per image, click prompts" in notes  # the registry's prompt type
    assert "?" not in notes and "not named" in notes
    ours, reported, delta = t2.blocks
    # the paper's number beside both; the difference only where the paper's setting ran
    assert reported.mean["wbc"].notna().all() and reported.mean["wbc-per-image"].notna().all()
    assert delta.mean["wbc"].notna().all() and delta.mean["wbc-per-image"].isna().all()
    assert delta.mean["mean"].isna().all()  # a mean over mixed protocols is no Δ
    assert "not: wbc-per-image)" in notes

    t1 = tables["table1_dice"]
    names = [c.name for c in t1.columns]
    assert "btcv: spleen" in names and "btcv-key: spleen" in names
    assert names.count("btcv: mean") == 1 and names.count("btcv-key: mean") == 1
    row = t1.blocks[0].mean.loc["medsam2 (MedSAM-2)"]
    own = [c.name for c in t1.columns if c.dataset == "btcv"]
    assert row["btcv: mean"] == pytest.approx(row[own].mean())  # its own columns only
    assert t1.blocks[2].mean["btcv: aorta"].notna().all()
    assert t1.blocks[2].mean["btcv-key: aorta"].isna().all()
    notes1 = " ".join(t1.footnotes)
    assert "btcv: interactive 3D, p = 0.25, mask prompts" in notes1
    assert "btcv-key: key slice, mask prompts" in notes1


def test_every_paper_setting_is_a_protocol_with_its_rate():
    for name, rate in protocols.PAPER_SETTINGS.items():
        assert name in protocols.INTERACTIVE and protocols.is_paper_setting(name, rate)
        assert not protocols.is_paper_setting(name, rate / 5)  # the reduced-prompt run
    assert not protocols.is_paper_setting("key_slice", 0.0)


# ------------------------------------------------------------------- One-Prompt templates
def _two_label_images(root: Path) -> StandardDataset:
    """8 training images: only tr0 and tr1 show label 'b' (2); no image shows 'c' (3)."""
    from medsam2.data.layout import Volume, write_case, write_dataset_json

    rng = np.random.default_rng(0)
    for i in range(8):
        lab = np.zeros((32, 32), np.uint8)
        lab[4:14, 4:14] = 1
        if i < 2:
            lab[18:28, 18:28] = 2
        img = (50 + 100 * (lab > 0) + rng.normal(0, 5, lab.shape)).clip(0, 255)
        write_case(root, f"tr{i}", "train", Volume(img.astype(np.uint8)), Volume(lab), ".png")
    lab = np.zeros((32, 32), np.uint8)
    lab[6:16, 6:16], lab[18:26, 18:26] = 1, 2
    write_case(root, "ts0", "test", Volume((60 + 90 * (lab > 0)).astype(np.uint8)),
               Volume(lab), ".png")
    write_dataset_json(root, {"a": 1, "b": 2, "c": 3}, 8, ".png")
    return StandardDataset(root)


def test_each_label_gets_a_template_that_contains_it_or_is_named_as_having_none(tmp_path,
                                                                                capsys):
    """Before, one template was drawn for every label: a label it lacked was never
    predicted, silently. Now each label's template contains it (seeded), and a label no
    training image shows is printed and recorded."""
    from medsam2.predict import choose_templates

    ds = _two_label_images(tmp_path / "ds")
    seen_b = set()
    for seed in range(12):
        chosen = choose_templates(ds, np.random.default_rng(seed), seed)
        again = choose_templates(ds, np.random.default_rng(seed), seed)
        assert chosen == again
        assert chosen["b"].case_id in ("tr0", "tr1")  # the only images showing 'b'
        assert chosen["c"] is None
        seen_b.add(chosen["b"].case_id)
        # label 'a' (in every image) keeps the first draw, as the single template did
        first = ds.cases("train")[int(np.random.default_rng(seed).integers(8))]
        assert chosen["a"] == first
    assert seen_b == {"tr0", "tr1"}
    assert "no training image contains label 'c'" in capsys.readouterr().out


def test_one_prompt_predicts_a_label_the_first_template_lacks(tmp_path):
    from medsam2.data.layout import read_volume
    from medsam2.predict import predict_dataset
    from medsam2.spec import TrackerSpec
    from medsam2.typed import parse

    ds = _two_label_images(tmp_path / "ds")
    seed = next(s for s in range(50)  # a seed whose first draw lacks label 'b'
                if int(np.random.default_rng(s).integers(8)) >= 2)
    prompts = dataset_prompts(ds.root, "mask", seed=0, mode_2d="one_prompt")
    path = tmp_path / "p.json"
    path.write_text(json.dumps(prompts))
    spec = parse(TrackerSpec, {"kind": "medsam2", "arch": "tiny", "image_size": 64,
                               "checkpoint": "c.pt", "multimask_tracking": False})
    out = tmp_path / "pred"
    predict_dataset(spec, None, ds.root, path, out, seed=seed, mode_2d="one_prompt")
    record = json.loads((out / "one_prompt_template.json").read_text())
    assert record["templates"]["b"] in ("tr0", "tr1") and record["templates"]["a"] not in (
        "tr0", "tr1")
    assert record["no_template"] == ["c"] and record["template"] == record["templates"]["a"]
    assert read_volume(out / "ts0.png").array.shape == (32, 32)


# ------------------------------------------------------------------------- slicing axis
def _thick_along_axis0(root: Path) -> StandardDataset:
    """Volumes (6, 20, 24) with 4 mm along axis 0 and 1 mm in-plane: the sequence axis is
    0, not NIfTI axis 2, so an axis read in two places shows up."""
    from medsam2.data.layout import Volume, affine_from_spacing, write_case, write_dataset_json

    aff = affine_from_spacing((4.0, 1.0, 1.0))
    rng = np.random.default_rng(0)
    for i, split in enumerate(("train", "train", "test")):
        lab = np.zeros((6, 20, 24), np.uint8)
        lab[1:5, 5 + i:14, 6:18] = 1
        img = (100 * lab + rng.normal(0, 5, lab.shape)).astype(np.float32)
        write_case(root, f"v{i}", split, Volume(img, aff), Volume(lab, aff))
    write_dataset_json(root, {"organ": 1}, 2, ".nii.gz")
    return StandardDataset(root)


def test_prompts_training_preprocessing_prediction_and_overlays_share_the_slicing_axis(
        tmp_path):
    """Before, prompts and prediction took NIfTI axis 2 and training its raw volumes too,
    while the preprocessing cache took the coarsest axis: a model trained on one set of
    frames was prompted and applied on another."""
    from medsam2.data.frames import sequence_axis
    from medsam2.data.preprocess import preprocess_dataset
    from medsam2.predict import Orientations
    from medsam2.report.overlays import slice_axis
    from medsam2.spec import TrackerSpec
    from medsam2.train import ClipSampler
    from medsam2.typed import parse

    ds = _thick_along_axis0(tmp_path / "ds")
    spacing = ds.read_image(ds.cases("test")[0]).spacing
    assert sequence_axis(spacing) == 0
    prompts = dataset_prompts(ds.root, "box", seed=0)
    for labels in prompts["cases"].values():
        assert all(plist[0]["axis"] == 0 for plist in labels.values())  # first: the axis
    spec = parse(TrackerSpec, {"kind": "medsam2", "checkpoint": "c.pt"})
    assert Orientations.from_spec(spec).axes_for(spacing) == (0,)
    assert Orientations((1, 2)).axes_for(spacing) == (1, 2)  # set axes stay as set
    sampler = ClipSampler([ds.root], 32)
    assert [c[0].shape for c in sampler.cases] == [(6, 20, 24)] * 2  # T along axis 0
    preprocess_dataset(ds.root, tmp_path / "cache", 32, min_area=0, crop=False)
    cached = np.load(tmp_path / "cache" / "v0.npz")["frames"]
    assert cached.shape == (6, 32, 32)
    assert slice_axis(spacing) == 0


def test_prediction_runs_along_the_sequence_axis(tmp_path):
    from medsam2.data.layout import read_volume
    from medsam2.predict import predict_dataset
    from medsam2.spec import TrackerSpec
    from medsam2.typed import parse

    ds = _thick_along_axis0(tmp_path / "ds")
    path = tmp_path / "p.json"
    path.write_text(json.dumps(dataset_prompts(ds.root, "mask", seed=0)))
    spec = parse(TrackerSpec, {"kind": "medsam2", "arch": "tiny", "image_size": 64,
                               "checkpoint": "c.pt", "multimask_tracking": False})
    predict_dataset(spec, None, ds.root, path, tmp_path / "pred", seed=0)
    pred = read_volume(tmp_path / "pred" / "v2.nii.gz").array
    gt = ds.read_label(ds.case("v2")).array
    # the key slice along axis 0 is mask-prompted: SAM 2 outputs the prompt there
    key = json.loads(path.read_text())["cases"]["v2"]["organ"][0]
    assert key["axis"] == 0
    sl = (pred[key["frame"]] == 1), (gt[key["frame"]] == 1)
    assert 2 * (sl[0] & sl[1]).sum() / (sl[0].sum() + sl[1].sum()) > 0.9


# ------------------------------------------------------------- One-Prompt frames cropped
def _bordered_images(root: Path) -> StandardDataset:
    """Images with a black border (the non-zero region is rows 6..25, cols 4..29)."""
    from medsam2.data.layout import Volume, write_case, write_dataset_json

    rng = np.random.default_rng(1)
    for i, split in enumerate(("train", "train", "test", "test")):
        img = np.zeros((32, 36), np.uint8)
        img[6:26, 4:30] = rng.integers(40, 90, (20, 26))
        lab = np.zeros((32, 36), np.uint8)
        lab[10 + i:18 + i, 8:20] = 1
        img[lab > 0] = 200
        write_case(root, f"im{i}", split, Volume(img), Volume(lab), ".png")
    write_dataset_json(root, {"cell": 1}, 2, ".png")
    return StandardDataset(root)


def test_one_prompt_frames_are_cut_as_the_training_cache_cuts_them(tmp_path):
    """Before, One-Prompt frames were the whole image while a model with a preprocess
    block trained on frames cut to the non-zero region."""
    from medsam2.data.frames import IMAGENET_MEAN, IMAGENET_STD, Intensity
    from medsam2.data.preprocess import preprocess_case
    from medsam2.predict import ImageFrame

    ds = _bordered_images(tmp_path / "ds")
    image = ds.read_image(ds.case("im0"))
    intensity = Intensity.for_channel("image")
    norm = intensity.apply(image.array)
    cached, _ = preprocess_case(image.array, ds.read_label(ds.case("im0")).array,
                                image.spacing, intensity, 32, min_area=0, crop=True)
    cut = ImageFrame.of(norm, crop=True)
    assert cut.cut(norm).shape == (20, 26)
    frame = cut.frame(norm, 32)[0, 0].numpy() * IMAGENET_STD[0] + IMAGENET_MEAN[0]
    assert np.abs(frame - cached[0] / 255.0).max() < 1.5 / 255  # the same up to uint8
    # a prompt moves with the cut; logits come back on the full grid, background outside
    from medsam2.data.prompts import box_prompt

    gt = ds.read_label(ds.case("im0")).array == 1
    points, _ = cut.inputs(box_prompt(gt, 0), 32)
    full, _ = ImageFrame.of(norm, crop=False).inputs(box_prompt(gt, 0), 32)
    assert not np.allclose(points["point_coords"], full["point_coords"])
    import torch

    pasted = cut.paste(torch.zeros(1, 1, 8, 8))
    assert pasted.shape == (32, 36) and (pasted[:6] == -20).all()
    assert (pasted[6:26, 4:30] == 0).all()


def test_one_prompt_prediction_with_a_preprocess_block_crops(tmp_path):
    from medsam2.data.layout import read_volume
    from medsam2.predict import predict_dataset
    from medsam2.spec import TrackerSpec
    from medsam2.typed import parse

    ds = _bordered_images(tmp_path / "ds")
    path = tmp_path / "p.json"
    path.write_text(json.dumps(dataset_prompts(ds.root, "mask", seed=0, rate=1.0,
                                               mode_2d="one_prompt")))
    spec = parse(TrackerSpec, {"kind": "medsam2", "arch": "tiny", "image_size": 64,
                               "checkpoint": "c.pt", "multimask_tracking": False,
                               "preprocess": {"crop": True}})
    predict_dataset(spec, None, ds.root, path, tmp_path / "pred", seed=0, mode_2d="one_prompt")
    for case in ("im2", "im3"):  # mask-prompted (p = 1): SAM 2 outputs the prompt
        pred = read_volume(tmp_path / "pred" / f"{case}.png").array == 1
        gt = ds.read_label(ds.case(case)).array == 1
        assert 2 * (pred & gt).sum() / (pred.sum() + gt.sum()) > 0.9
        assert not pred[:6].any() and not pred[:, :4].any()  # outside the cut: background
