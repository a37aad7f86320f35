"""nnU-Net v2 baseline: config checks, the raw-folder link, and real nnunetv2 runs.

The slow tests run the real plan / preprocess / train (a 1-epoch, 2-iteration schedule
set on the stock nnUNetTrainer) / predict through ``medsam2 nnunet`` in a subprocess (as
the rules do: nnU-Net's spawn pools need a guarded entry point, and its path variables
must not leak into this process), then score the predictions with our evaluator.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from baselines.nnunet.runner import (
    NnunetError,
    dataset_id,
    link_raw,
    nnunet_name,
    resolve_configuration,
    train,
    variant_from_identifier,
)
from baselines.nnunet.spec import NnunetSpec
from medsam2.data.layout import (
    LayoutError,
    StandardDataset,
    Volume,
    affine_from_spacing,
    read_volume,
    write_case,
    write_dataset_json,
    write_splits,
)
from medsam2.data.phantoms import make_phantom_dataset
from medsam2.evaluate import evaluate_dataset
from medsam2.typed import SpecError, parse

BENCHMARK_KEYS = ("atlas23 btcv cadvidset cas23 crossmoda23 kits23 lnq23 pendal refuge segrap23 "
                  "stare tdsc_abus23 toothfairy23 wbc synth3d synth2d").split()
SCHEDULE = {"num_epochs": 1, "num_iterations_per_epoch": 2, "num_val_iterations_per_epoch": 1}


def tiny_volumes(root: Path, n_cases: int = 6, n_test: int = 2, seed: int = 0) -> Path:
    """A miniature anisotropic 3D dataset (40 x 40 x 12): a bright blob with a core."""
    rng = np.random.default_rng(seed)
    affine = affine_from_spacing((1.5, 1.5, 3.0))
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in (40, 40, 12)], indexing="ij"), -1)
    ids = [f"tiny_{i:03d}" for i in range(n_cases)]
    for i, cid in enumerate(ids):
        center = np.array([rng.uniform(14, 26), rng.uniform(14, 26), rng.uniform(4, 8)])
        dist = np.linalg.norm((grid - center) * [1.5, 1.5, 3.0], axis=-1)
        radius = rng.uniform(7, 11)
        label = (dist < radius).astype(np.int16) + (dist < radius / 2)
        image = rng.normal(0, 10, label.shape) + 80 * (label > 0) + 40 * (label == 2)
        split = "test" if i >= n_cases - n_test else "train"
        write_case(root, cid, split, Volume(image.astype(np.float32), affine),
                   Volume(label, affine.copy()))
    write_splits(root, ids[: n_cases - n_test], ids[n_cases - n_test:], seed)
    write_dataset_json(root, {"blob": 1, "core": 2}, n_cases - n_test, ".nii.gz", {"0": "CT"})
    return root


# -- config and naming (fast) ---------------------------------------------------------


def spec_from_config(model: dict) -> NnunetSpec:
    return parse(NnunetSpec, model, "models.m")


def test_spec_defaults_are_nnunets_own() -> None:
    spec = spec_from_config({"kind": "nnunet", "paper_name": "nnUNet"})
    assert spec.configuration == "auto" and spec.fold_list == (0,) and spec.schedule is None
    assert spec.tta and spec.device == "auto"


@pytest.mark.parametrize("bad, key", [
    ({"configuration": "3d_cascade"}, "configuration"),
    ({"folds": [0, "one"]}, "folds"),
    ({"folds": -1}, "folds"),
    ({"schedule": {"epochs": 2}}, "schedule"),
    ({"schedule": {"num_epochs": 0}}, "schedule"),
    ({"device": "tpu"}, "device"),
    ({"network": {"base_features": 8}}, "network"),
    ({"network": {"base_features": 64, "max_features": 32}}, "network"),
    ({"network": {"base_features": 2, "max_features": 32}}, "network"),
    ({"target_spacing": [4.0, 3.0]}, "target_spacing"),
    ({"target_spacing": [4.0, 0, 3.0]}, "target_spacing"),
    ({"trainer": "nnUNetTrainer_5epochs"}, "unknown key"),
])
def test_spec_rejects_bad_keys(bad: dict, key: str) -> None:
    with pytest.raises(SpecError, match=key) as err:
        spec_from_config({"kind": "nnunet", **bad})
    assert str(err.value).startswith("models.m.") and len(str(err.value).splitlines()) <= 2


def test_spec_folds_forms() -> None:
    assert spec_from_config({"kind": "nnunet", "folds": "all"}).fold_list == ("all",)
    assert spec_from_config({"kind": "nnunet", "folds": [0, 1, 2, 3, 4]}).fold_list == (
        0, 1, 2, 3, 4)


def test_plans_identifier_round_trip() -> None:
    assert spec_from_config({"kind": "nnunet"}).plans == "nnUNetPlans"
    narrow = {"base_features": 8, "max_features": 64}
    spec = spec_from_config({"kind": "nnunet", "network": narrow})
    assert spec.plans == "nnUNetPlans_f8-64"
    assert variant_from_identifier(spec.plans) == (narrow, None)
    coarse = spec_from_config({"kind": "nnunet", "network": narrow,
                               "target_spacing": [4, 2.5, 2.5]})
    assert coarse.plans == "nnUNetPlans_f8-64_s4x2.5x2.5"
    assert variant_from_identifier(coarse.plans) == (narrow, (4.0, 2.5, 2.5))
    only = spec_from_config({"kind": "nnunet", "target_spacing": [3, 3, 3]}).plans
    assert variant_from_identifier(only) == (None, (3.0, 3.0, 3.0))
    assert variant_from_identifier("nnUNetPlans") == (None, None)
    for bad in ("nnUNetPlans_f8", "nnUNetPlans_fa-b", "myPlans_f8-64", "nnUNetPlans_f08-64",
                "nnUNetPlans_s3x3x3_f8-64", "nnUNetPlans_sx", "nnUNetPlans_s1x2x3.0"):
        with pytest.raises(NnunetError, match="plans identifier"):
            variant_from_identifier(bad)


def test_dataset_ids_deterministic_unique_three_digits() -> None:
    ids = [dataset_id(k) for k in BENCHMARK_KEYS]
    assert len(set(ids)) == len(ids), "benchmark dataset keys must not collide"
    assert all(100 <= i <= 999 for i in ids)
    assert dataset_id("synth3d") == dataset_id("synth3d") == 523
    assert nnunet_name("synth3d") == "Dataset523_synth3d"


def test_resolve_configuration(tmp_path: Path) -> None:
    vol = tiny_volumes(tmp_path / "vol", n_cases=3, n_test=1)
    img = make_phantom_dataset(tmp_path / "img", "cells2d", 3, 0.34, 0).parent
    assert resolve_configuration("auto", vol) == "3d_fullres"
    assert resolve_configuration("2d", vol) == "2d"
    assert resolve_configuration("auto", img) == "2d"
    with pytest.raises(NnunetError, match="needs a 3D dataset"):
        resolve_configuration("3d_fullres", img)


def test_link_raw_relative_idempotent_and_clash(tmp_path: Path) -> None:
    ds = tiny_volumes(tmp_path / "datasets" / "synth3d", n_cases=3, n_test=1)
    root = tmp_path / "nnunet"
    name = link_raw(ds, root)
    link = root / "nnUNet_raw" / name
    assert link.is_symlink() and not os.readlink(link).startswith("/")
    assert (link / "dataset.json").is_file()
    assert link_raw(ds, root) == name  # a second run keeps the link
    (root / "nnUNet_raw" / f"Dataset{dataset_id('synth3d'):03d}_other").mkdir()
    with pytest.raises(NnunetError, match="already used"):
        link_raw(ds, root)


def test_train_refuses_a_fold_without_five_training_cases(tmp_path: Path) -> None:
    ds = tiny_volumes(tmp_path / "few", n_cases=5, n_test=1)
    record = {"configurations": ["3d_fullres"], "nnunet_dataset": nnunet_name("few")}
    with pytest.raises(NnunetError, match="folds: all"):
        train(record, spec_from_config({"kind": "nnunet"}), tmp_path / "nnunet", "m", 0, ds)


def test_link_raw_rejects_inconsistent_dataset(tmp_path: Path) -> None:
    ds = tiny_volumes(tmp_path / "bad", n_cases=3, n_test=1)
    meta = json.loads((ds / "dataset.json").read_text())
    (ds / "dataset.json").write_text(json.dumps({**meta, "numTraining": 7}))
    with pytest.raises(LayoutError, match="numTraining"):
        link_raw(ds, tmp_path / "nnunet")


def test_colour_dataset_is_read_by_nnunet_as_three_channels(phantom2d_rgb, tmp_path: Path
                                                            ) -> None:
    """The linked colour dataset as nnU-Net's own code sees it: one RGB PNG per case, read
    by NaturalImage2DIO as the three channels ``channel_names`` declares (R, G, B, as
    nnunetv2/dataset_conversion/Dataset120_RoadSegmentation.py writes them), and passing
    nnU-Net's per-case integrity check."""
    from nnunetv2.experiment_planning.verify_dataset_integrity import check_cases
    from nnunetv2.imageio.natural_image_reader_writer import NaturalImage2DIO
    from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json
    from nnunetv2.utilities.utils import (
        create_paths_fn,
        get_identifiers_from_splitted_dataset_folder,
    )

    ds = StandardDataset(phantom2d_rgb)
    raw = tmp_path / "nnunet" / "nnUNet_raw" / link_raw(phantom2d_rgb, tmp_path / "nnunet")
    meta = json.loads((raw / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "R", "1": "G", "2": "B"}
    for split, folder in (("train", "imagesTr"), ("test", "imagesTs")):
        ids = get_identifiers_from_splitted_dataset_folder(str(raw / folder), ".png")
        files = sorted(p.name for p in (raw / folder).iterdir())
        assert sorted(ids) == sorted(c.case_id for c in ds.cases(split))
        for case in ds.cases(split):
            images = create_paths_fn(str(raw / folder), files, ".png", case.case_id)
            assert [Path(p).name for p in images] == [c.name for c in case.images]
            reader = determine_reader_writer_from_dataset_json(meta, images[0], verbose=False)
            assert reader is NaturalImage2DIO
            data, _ = reader().read_images(images)
            assert data.shape[0] == len(meta["channel_names"]) == 3
            image = ds.read_image(case).array
            assert np.array_equal(data[:, 0], np.moveaxis(image, -1, 0))
            assert not np.array_equal(data[0], data[1])
            label = raw / folder.replace("images", "labels") / f"{case.case_id}.png"
            assert check_cases(images, str(label), 3, reader)


# -- real nnunetv2 runs (slow) ---------------------------------------------------------


def medsam2(*args: str | Path, cwd: Path) -> str:
    """Run ``medsam2`` as the rules do (console script if installed, else the module)."""
    script = Path(sys.executable).with_name("medsam2")
    cmd = [str(script)] if script.is_file() else [sys.executable, "-m", "medsam2.cli"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([*cmd, *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def run_pipeline(tmp_path: Path, ds: Path, model: dict, fold: str) -> tuple[dict, Path]:
    root, rec = tmp_path / "nnunet", tmp_path / "records"
    cfg = json.dumps(model)
    medsam2("nnunet", "plan", "--dataset-dir", ds, "--root", root, "--configurations",
            model.get("configuration", "auto"), "--plans", spec_from_config(model).plans,
            "--threads", "2", "--out", rec / "plan.json", cwd=tmp_path)
    medsam2("nnunet", "train", "--dataset-dir", ds, "--root", root, "--model-json", cfg,
            "--model", "nnunet-test", "--plan", rec / "plan.json", "--fold", fold,
            "--threads", "2", "--out", rec / "train.json", cwd=tmp_path)
    out = tmp_path / "predictions" / ds.name / "nnunet-test"
    medsam2("nnunet", "predict", "--dataset-dir", ds, "--root", root, "--model-json", cfg,
            "--trained", rec / "train.json", "--out-dir", out, "--threads", "2", cwd=tmp_path)
    return json.loads((rec / "train.json").read_text()), out


def check_predictions(ds_dir: Path, out: Path, tmp_path: Path) -> None:
    ds = StandardDataset(ds_dir)
    cases = ds.cases("test")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{c.case_id}{ds.file_ending}" for c in cases), "exactly the contract's files"
    for case in cases:
        gt, pred = ds.read_label(case), read_volume(out / f"{case.case_id}{ds.file_ending}")
        assert pred.array.shape == gt.array.shape
        assert np.allclose(pred.affine, gt.affine, atol=1e-4)
        assert set(np.unique(pred.array)) <= {0, *ds.labels.values()}
    df = evaluate_dataset(ds_dir, out, ds.name, "nnunet-test", tmp_path / "metrics.csv")
    assert len(df) == len(cases) * len(ds.labels)
    assert not df["status"].str.startswith("error").any(), df["status"].tolist()


@pytest.mark.slow
def test_nnunet_3d_fullres_plan_train_predict(tmp_path: Path) -> None:
    """3d_fullres with narrow stages and a coarser target spacing (the demo's CPU plan)
    planned by nnU-Net; predictions come back on each case's own grid."""
    ds = tiny_volumes(tmp_path / "datasets" / "tiny3d", n_cases=7)
    model = {"kind": "nnunet", "configuration": "auto", "schedule": SCHEDULE, "tta": False,
             "device": "cpu", "network": {"base_features": 8, "max_features": 32},
             "target_spacing": [3.0, 3.0, 3.0]}
    record, out = run_pipeline(tmp_path, ds, model, "0")
    assert record["configuration"] == "3d_fullres" and record["fold"] == 0
    trainer_dir = Path(record["trainer_dir"])
    # the stock trainer's folder name: nnU-Net's own predictor and CLI find the model
    assert trainer_dir.name == "nnUNetTrainer__nnUNetPlans_f8-32_s3x3x3__3d_fullres"
    plans = json.loads((trainer_dir / "plans.json").read_text())
    fullres = plans["configurations"]["3d_fullres"]
    widths = fullres["architecture"]["arch_kwargs"]["features_per_stage"]
    assert widths[0] == 8 and max(widths) == 32, widths
    assert fullres["spacing"] == [3.0, 3.0, 3.0]  # nnU-Net's median would be (3, 1.5, 1.5)
    assert fullres["median_image_size_in_voxels"] == [12, 20, 20]
    assert trainer_dir.parent.name == nnunet_name("tiny3d")
    assert trainer_dir.is_relative_to(tmp_path / "nnunet" / "nnUNet_results" / "nnunet-test")
    ckpt = torch.load(record["checkpoint"], map_location="cpu", weights_only=False)
    assert ckpt["trainer_name"] == "nnUNetTrainer"
    assert ckpt["current_epoch"] == SCHEDULE["num_epochs"]  # the schedule took effect
    assert record["schedule"] == SCHEDULE
    check_predictions(ds, out, tmp_path)


@pytest.mark.slow
def test_nnunet_plans_a_colour_dataset_with_three_input_channels(phantom2d_rgb,
                                                                 tmp_path: Path) -> None:
    """nnU-Net's own fingerprint and plans of the colour dataset: three channels."""
    root, rec = tmp_path / "nnunet", tmp_path / "records"
    medsam2("nnunet", "plan", "--dataset-dir", phantom2d_rgb, "--root", root,
            "--configurations", "auto", "--threads", "1", "--out", rec / "plan.json",
            cwd=tmp_path)
    record = json.loads((rec / "plan.json").read_text())
    pre = root / "nnUNet_preprocessed" / record["nnunet_dataset"]
    fingerprint = json.loads((pre / "dataset_fingerprint.json").read_text())
    assert sorted(fingerprint["foreground_intensity_properties_per_channel"]) == ["0", "1", "2"]
    plans = json.loads(Path(record["plans"]["nnUNetPlans"]).read_text())
    assert plans["configurations"]["2d"]["normalization_schemes"] == ["ZScoreNormalization"] * 3


@pytest.mark.slow
def test_nnunet_2d_images_fold_all(tmp_path: Path) -> None:
    ds = make_phantom_dataset(tmp_path / "datasets" / "cells", "cells2d", 6, 0.34, 0).parent
    model = {"kind": "nnunet", "schedule": SCHEDULE, "tta": True, "folds": "all"}
    record, out = run_pipeline(tmp_path, ds, model, "all")
    assert record["configuration"] == "2d" and record["fold"] == "all"
    assert Path(record["checkpoint"]).parent.name == "fold_all"
    check_predictions(ds, out, tmp_path)


@pytest.mark.slow
def test_images_too_small_to_pool_fail_at_planning_naming_why(tmp_path: Path) -> None:
    """nnU-Net plans a one-stage network for images it cannot pool, and its trainer then
    fails in the loss with an IndexError; the plan step says why instead."""
    from baselines.nnunet.runner import plan_and_preprocess

    root = tmp_path / "datasets" / "speck"
    affine = affine_from_spacing((0.5, 0.5, 3.0))
    rng = np.random.default_rng(0)
    ids = [f"speck_{i}" for i in range(3)]
    for i, cid in enumerate(ids):
        label = np.zeros((6, 5, 4), np.int16)
        label[2:4, 2:4, 1:3] = 1
        write_case(root, cid, "test" if i == 2 else "train",
                   Volume(rng.normal(0, 1, label.shape).astype(np.float32), affine),
                   Volume(label, affine.copy()))
    write_splits(root, ids[:2], ids[2:], 0)
    write_dataset_json(root, {"speck": 1}, 2, ".nii.gz", {"0": "CT"})
    with pytest.raises(NnunetError, match="too small for nnU-Net to pool once"):
        plan_and_preprocess(root, tmp_path / "nnunet", ["3d_fullres"], threads=1)
