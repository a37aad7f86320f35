"""The registry files, their validation, `medsam2 datasets list`, bring-your-own data and
the Snakemake data rules."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml
from PIL import Image

from medsam2.data.convert import import_local
from medsam2.data.layout import StandardDataset
from medsam2.data.registry import (
    RegistryError,
    load_registry,
    load_spec,
    main,
    spec_from_dict,
)

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = ROOT / "config" / "datasets"
PAPER_KEYS = ["wbc", "refuge", "stare", "pendal", "cadvidset", "kits23", "atlas23", "tdsc_abus23",
              "segrap23", "crossmoda23", "lnq23", "cas23", "toothfairy23", "btcv"]
PROMPTS = {"wbc": "click", "refuge": "box", "stare": "mask", "pendal": "box", "cadvidset": "mask",
           "kits23": "click", "atlas23": "click", "tdsc_abus23": "click", "segrap23": "box",
           "crossmoda23": "box", "lnq23": "box", "cas23": "box", "toothfairy23": "mask",
           "btcv": "mask"}


def test_registry_has_the_14_paper_datasets_with_paper_prompts():
    specs = load_registry(REGISTRY)
    assert sorted(specs) == sorted(PAPER_KEYS)
    for key, spec in specs.items():
        assert spec.prompt == PROMPTS[key], key
        assert spec.files, key
        assert spec.citation and spec.license and spec.page, key
        assert spec.dims == (2 if key in {"wbc", "refuge", "stare", "pendal", "cadvidset"} else 3)
        if spec.access == "registration":
            assert all(f.url is None for f in spec.files), key


def test_btcv_has_13_source_organs_and_the_12_reported_structures():
    spec = load_spec(REGISTRY / "btcv.yaml")
    assert sorted(spec.source_labels.values()) == list(range(1, 14))
    assert len(spec.labels) == 12 and spec.target_labels == list(spec.labels)
    assert spec.labels["adrenal_gland"] == ["right_adrenal_gland", "left_adrenal_gland"]


def test_paper_structures_exist_in_reported_dice():
    reported = Path(__file__).resolve().parents[1] / "medsam2" / "report" / "reported_dice.csv"
    rows = list(csv.DictReader(reported.open()))
    known = {(r["dataset"], r["structure"]) for r in rows}
    for key, spec in load_registry(REGISTRY).items():
        if spec.paper_key is None:
            continue
        assert set(spec.paper_structures) == set(spec.target_labels), key
        for structure in spec.paper_structures.values():
            assert (spec.paper_key, structure) in known, (key, structure)


def _raw(**over):
    raw = yaml.safe_load((REGISTRY / "wbc.yaml").read_text())
    raw.update(over)
    return raw


@pytest.mark.parametrize("over, message", [
    ({"prompt": "scribble"}, "prompt must be one of"),
    ({"access": "paid"}, "access must be one of"),
    ({"colour": 1}, r"unknown keys \['colour'\]"),
    ({"labels": {"cell": ["membrane"]}}, "labels.cell must list names from source_labels"),
    ({"target_labels": ["nucleus_only"]}, r"target_labels \['nucleus_only'\] are not in labels"),
    ({"converter": "nope"}, "converter 'nope' unknown"),
    ({"split": {"test_fraction": 0}}, "split.test_fraction"),
    ({"files": [{"name": "x.zip", "url": None}]}, "needs 'instructions'"),
])
def test_invalid_dataset_file_names_file_and_reason(over, message):
    with pytest.raises(RegistryError, match=f"wbc.yaml: .*{message}"):
        spec_from_dict(_raw(**over), "config/datasets/wbc.yaml")


def test_kits_files_are_the_hugging_face_images_and_pinned_segmentations():
    """neheller/kits23 kits23/download.py fetches images from the Hugging Face dataset
    neheller/KiTS-Challenge-Imaging (images/case_NNNNN.nii.gz) for 489 training cases."""
    spec = load_spec(REGISTRY / "kits23.yaml")
    images = [f for f in spec.files if f.place and f.place.startswith("images/")]
    segs = [f for f in spec.files if f.place and f.place.endswith("segmentation.nii.gz")]
    assert len(images) == len(segs) == 489 == len(spec.files) // 2
    assert images[0].url == ("https://huggingface.co/datasets/neheller/KiTS-Challenge-Imaging/"
                             "resolve/main/images/case_00000.nii.gz")
    assert images[-1].place == "images/case_00588.nii.gz"
    assert all("/c1088353084c17b8882a11db71429e7c022b7785/dataset/case_" in f.url for f in segs)
    assert not any("digitaloceanspaces" in (f.url or "") for f in spec.files)
    assert not any(f.name.endswith("main.zip") for f in spec.files)  # no 6 GB repository zip


def test_registry_facts_with_sources():
    specs = load_registry(REGISTRY)
    assert specs["wbc"].license.startswith("GPL-3.0")
    assert specs["cas23"].page == "https://codalab.lisn.upsaclay.fr/competitions/9804"
    pendal = specs["pendal"]
    assert pendal.access_mode == "direct" and pendal.files[0].name == "DentalPanoramicXrays.zip"
    assert pendal.files[0].sha256 == (
        "4ab6f670428df8052ae04aef82011050cd5ad4805f4d28d32fea523880752cf3")
    assert pendal.rules.label_rule.mode == "nonzero"
    assert specs["stare"].rules.label_rule.at == 128
    assert specs["lnq23"].rules.resample_label is True
    assert specs["tdsc_abus23"].rules.placeholder_spacing.spacing == (0.2, 0.073, 0.475674)
    assert {s.max_skipped for s in specs.values()} == {0}
    assert specs["cadvidset"].access_mode == "on request"


def test_datasets_list_shows_status(tmp_path: Path, capsys):
    reg = tmp_path / "reg"
    reg.mkdir()
    for key in ("btcv", "wbc", "stare"):
        shutil.copy(REGISTRY / f"{key}.yaml", reg)
    (tmp_path / "res" / "downloads" / "btcv").mkdir(parents=True)
    (tmp_path / "res" / "downloads" / "btcv" / "RawData.zip").write_bytes(b"x")
    (tmp_path / "out" / "datasets" / "wbc").mkdir(parents=True)
    (tmp_path / "out" / "datasets" / "wbc" / "dataset.json").write_text("{}")
    rc = main(["datasets", "list", "--registry-dir", str(reg), "--resources",
               str(tmp_path / "res"), "--results", str(tmp_path / "out")])
    assert rc == 0
    lines = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines()}
    assert lines["btcv"].endswith("downloaded") and " registration " in lines["btcv"]
    assert lines["wbc"].endswith("converted") and " direct " in lines["wbc"]
    assert lines["stare"].endswith("missing")
    assert "unverified" in lines["btcv"] and "unverified" in lines["wbc"]
    (reg / "wbc.yaml").write_text((reg / "wbc.yaml").read_text().split("unverified:")[0])
    main(["datasets", "list", "--registry-dir", str(reg), "--resources",
          str(tmp_path / "res"), "--results", str(tmp_path / "out")])
    lines = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines()}
    assert "unverified" not in lines["wbc"] and "checked" in lines["wbc"]


def test_cli_download_of_registration_dataset_prints_guidance(tmp_path: Path, capsys):
    rc = main(["datasets", "download", "refuge", "--registry-dir", str(REGISTRY),
               "--resources", str(tmp_path)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "refuge.grand-challenge.org" in err
    assert str((tmp_path / "downloads" / "refuge" / "REFUGE2.zip").resolve()) in err


# --------------------------------------------------------------------------- bring your own
def test_import_local_nnunet_raw_folder(tmp_path: Path):
    src = tmp_path / "Dataset001_Mine"
    aff = np.diag([1.2, 1.2, 4.0, 1.0])
    for split, cid in (("Tr", "mine_001"), ("Tr", "mine_002"), ("Ts", "mine_003")):
        for folder, name, arr in (
            (f"images{split}", f"{cid}_0000.nii.gz", np.random.rand(5, 4, 3).astype(np.float32)),
            (f"labels{split}", f"{cid}.nii.gz", np.eye(5, 4, dtype=np.uint8)[..., None]
             .repeat(3, -1) * 2),
        ):
            (src / folder).mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(arr, aff), str(src / folder / name))
    (src / "dataset.json").write_text(
        '{"labels": {"background": 0, "lesion": 2}, "channel_names": {"0": "CT"},'
        ' "file_ending": ".nii.gz", "numTraining": 2}')
    out = tmp_path / "results" / "datasets" / "mine"
    report = import_local(src, out, seed=1, test_fraction=0.34, modality="CT")
    assert sorted(report.converted) == ["mine_001", "mine_002", "mine_003"]
    ds = StandardDataset(out)
    assert ds.labels == {"lesion": 1} and ds.meta["channel_names"] == {"0": "CT"}
    case = ds.cases("test")[0]
    assert np.allclose(ds.read_image(case).spacing, (1.2, 1.2, 4.0))
    assert set(np.unique(ds.read_label(case).array)) == {0, 1}
    assert ds.verify() == []


def test_import_local_images_labels_png(tmp_path: Path):
    src = tmp_path / "cells"
    (src / "images").mkdir(parents=True)
    (src / "labels").mkdir()
    for i in range(3):
        image = np.random.randint(0, 255, (9, 7), np.uint8)
        Image.fromarray(image).save(src / "images" / f"c{i}.png")
        lab = np.zeros((9, 7), np.uint8)
        lab[2:5, 2:5] = 255
        Image.fromarray(lab).save(src / "labels" / f"c{i}.png")
    out = tmp_path / "results" / "datasets" / "cells"
    import_local(src, out)
    ds = StandardDataset(out)
    assert ds.labels == {"label_255": 1} and ds.file_ending == ".png"
    assert len(ds.cases("train")) + len(ds.cases("test")) == 3


# --------------------------------------------------------------------------- snakemake
def _snakefile(tmp_path: Path, datasets: dict) -> Path:
    cfg = {"seed": 3, "results": "results", "resources": "resources", "datasets": datasets,
           "models": {"m": {"kind": "sam2", "checkpoint": "m.pt"}}}  # common.smk checks it
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    targets = ", ".join(f'"results/datasets/{n}/dataset.json"' for n in datasets)
    (tmp_path / "Snakefile").write_text(textwrap.dedent(f"""
        configfile: "config.yaml"
        include: "{ROOT / 'workflow' / 'rules' / 'common.smk'}"
        include: "{ROOT / 'workflow' / 'rules' / 'data.smk'}"
        rule all:
            input: {targets}
    """))
    return tmp_path / "Snakefile"


def _snakemake(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("snakemake")
    return subprocess.run([str(exe), "-s", str(tmp_path / "Snakefile"), "-d", str(tmp_path),
                           "-j1", *args], capture_output=True, text=True, timeout=120)


def test_snakemake_dry_run_plans_data_rules(tmp_path: Path):
    (tmp_path / "mine").mkdir()
    _snakefile(tmp_path, {
        "wbc": {"source": "registry", "prompt": "click"},
        "abdomen": {"source": "registry", "registry": "btcv", "test_fraction": 0.5},
        "mine": {"source": "local", "path": str(tmp_path / "mine"), "prompt": "box",
                 "labels": {"cell": 255}, "label_threshold": 128},
    })
    proc = _snakemake(tmp_path, "-n", "-p")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    text = proc.stdout + proc.stderr
    for rule in ("datasets_download", "datasets_extract", "datasets_convert",
                 "datasets_import_local"):
        assert rule in text, rule
    assert "medsam2 datasets download btcv" in text
    assert "medsam2 datasets convert btcv" in text and "--out results/datasets/abdomen" in text
    assert "--test-fraction 0.5" in text and "--seed 3" in text
    assert "medsam2 datasets import-local --path" in text
    assert "--label-threshold 128.0" in text and "--labels cell=255" in text


def test_main_snakefile_plans_a_registry_dataset(tmp_path: Path):
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg["datasets"] = {"wbc": {"source": "registry", "prompt": "click"}}
    cfg["models"] = {"sam2-zero-shot": {"kind": "sam2", "checkpoint": "sam2.1_hiera_tiny.pt"}}
    cfg.pop("report", None)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    exe = Path(sys.executable).with_name("snakemake")
    proc = subprocess.run(
        [str(exe), "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path), "--configfile",
         str(tmp_path / "c.yaml"), "-n", "-j1", "results/datasets/wbc/dataset.json"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "datasets_convert" in proc.stdout


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("medsam2", path=str(Path(sys.executable).parent)) is None,
                    reason="the medsam2 console script is not installed")
def test_snakemake_real_run_converts_and_stops_at_registration(tmp_path: Path):
    """A real run: a registration file put in place by hand converts, a local folder is
    imported, and a registration dataset with no file stops with the guidance message."""
    from test_datasets_fourteen import build_atlas23

    downloads = tmp_path / "resources" / "downloads" / "atlas23"
    downloads.mkdir(parents=True)
    build_atlas23(downloads)
    mine = tmp_path / "mine"
    (mine / "images").mkdir(parents=True)
    (mine / "labels").mkdir()
    for i in range(2):
        Image.fromarray(np.full((6, 5), 40 * i, np.uint8)).save(mine / "images" / f"m{i}.png")
        Image.fromarray(np.eye(6, 5, dtype=np.uint8)).save(mine / "labels" / f"m{i}.png")
    _snakefile(tmp_path, {
        "atlas23": {"source": "registry", "prompt": "click"},
        "mine": {"source": "local", "path": str(mine), "prompt": "box"},
        "btcv": {"source": "registry", "prompt": "mask"},
    })
    env_path = f"{Path(sys.executable).parent}:{__import__('os').environ['PATH']}"
    exe = Path(sys.executable).with_name("snakemake")
    proc = subprocess.run(
        [str(exe), "-s", str(tmp_path / "Snakefile"), "-d", str(tmp_path), "-j1",
         "--keep-going"], capture_output=True, text=True, timeout=300,
        env={**__import__("os").environ, "PATH": env_path})
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "needs a registration" in text and "'RawData.zip'" in text
    assert str((tmp_path / "resources/downloads/btcv/RawData.zip").resolve()) in text
    assert StandardDataset(tmp_path / "results/datasets/atlas23").verify() == []
    assert StandardDataset(tmp_path / "results/datasets/mine").verify() == []
    assert (tmp_path / "results/logs/datasets/convert_atlas23.log").is_file()


def test_an_edited_local_folder_is_imported_again(tmp_path: Path):
    """The import depends on what the folder holds: a new case or an edited label re-runs
    it; an untouched folder does not. The path has a space in it."""
    from PIL import Image

    mine = tmp_path / "my data"
    for sub in ("images", "labels"):
        (mine / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(4):
        label = np.zeros((24, 24), np.uint8)
        label[4 + i:12 + i, 5:15] = 1
        Image.fromarray((rng.random((24, 24)) * 200).astype(np.uint8)).save(
            mine / "images" / f"c{i}.png")
        Image.fromarray(label).save(mine / "labels" / f"c{i}.png")
    _snakefile(tmp_path, {"mine": {"source": "local", "path": str(mine), "prompt": "box"}})
    assert _snakemake(tmp_path).returncode == 0
    assert "Nothing to be done" in _snakemake(tmp_path, "-n").stdout
    label = np.array(Image.open(mine / "labels" / "c0.png"))
    label[0:2, 0:2] = 1
    Image.fromarray(label).save(mine / "labels" / "c0.png")
    planned = _snakemake(tmp_path, "-n")
    assert "datasets_import_local" in planned.stdout, planned.stdout
