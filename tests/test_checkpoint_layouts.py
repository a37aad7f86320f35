"""Each published checkpoint layout loads strictly through the code path the workflow uses.

Files are written the way their publishers write them, from the publishers' own classes:
``{"model": SAM2Base state dict}`` built by Meta's ``sam2.build_sam.build_sam2`` (the
MedSAM-2 release: SAM 2.0 hiera-small; MedSAM2: SAM 2.1 hiera-tiny at 512 px), and a
plain ``Sam`` state dict for segment-anything (SAM, MedSAM; a small random ViT on CPU).
Wrong or corrupted files must fail naming the file and the missing / unexpected keys.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml
from sam2.build_sam import build_sam2

from baselines.sam.model import build_sam, load_sam_checkpoint
from baselines.sam.spec import SamSpec
from medsam2.cli import main as cli_main
from medsam2.data.download import LOCK_NAME, ManualDownloadRequired
from medsam2.model.build import ARCHS, CheckpointError, build_from_spec
from medsam2.model.checkpoints import OFFICIAL, fetch_checkpoint
from medsam2.spec import REPO_ROOT, TrackerSpec, load_config

PAPER = REPO_ROOT / "config" / "paper.yaml"
#: Meta's YAML of each published tracker file, as its publisher builds it
PUBLISHED_CONFIG = {
    "MedSAM2_pretrain.pth": ("configs/sam2/sam2_hiera_s.yaml", []),
    "MedSAM2_latest.pt": ("configs/sam2.1/sam2.1_hiera_t.yaml", ["++model.image_size=512"]),
}


@pytest.fixture(scope="module")
def paper_models():
    return load_config(PAPER).models


def _published_tracker_file(name: str, folder: Path) -> Path:
    config, overrides = PUBLISHED_CONFIG[name]
    torch.manual_seed(1)
    meta = build_sam2(config, ckpt_path=None, device="cpu", hydra_overrides_extra=overrides)
    path = folder / name
    torch.save({"model": meta.state_dict()}, path)
    return path


@pytest.mark.parametrize("model, name", [("medsam2-release", "MedSAM2_pretrain.pth"),
                                         ("medsam2-ma", "MedSAM2_latest.pt")])
def test_published_tracker_layout_loads_through_the_paper_entry(paper_models, model, name,
                                                                tmp_path):
    spec = paper_models[model]
    assert isinstance(spec, TrackerSpec)
    assert Path(spec.checkpoint).name == name and OFFICIAL[name].arch == spec.arch
    path = _published_tracker_file(name, tmp_path)
    ours = build_from_spec(spec, checkpoint=path, seed=7)
    key = "image_encoder.trunk.patch_embed.proj.weight"
    assert torch.equal(ours.state_dict()[key],
                       torch.load(path, weights_only=True)["model"][key])


def test_sam20_file_into_sam21_arch_names_the_file_and_keys(paper_models, tmp_path):
    path = _published_tracker_file("MedSAM2_pretrain.pth", tmp_path)
    wrong = TrackerSpec(**{**vars(paper_models["medsam2-release"]), "arch": "hiera_s"})
    with pytest.raises(CheckpointError) as info:
        build_from_spec(wrong, checkpoint=path)
    text = str(info.value)
    assert str(path) in text and "missing keys" in text
    assert "obj_ptr_tpos_proj" in text or "no_obj_embed_spatial" in text  # SAM 2.1 only


def test_tracker_file_without_model_key_or_truncated_fails(paper_models, tmp_path):
    spec = paper_models["medsam2-ma"]
    bare = tmp_path / "bare.pt"
    torch.save(build_sam2(*PUBLISHED_CONFIG["MedSAM2_latest.pt"][:1], ckpt_path=None,
                          device="cpu").state_dict(), bare)
    with pytest.raises(CheckpointError, match=re.escape(f"{bare}: no 'model' state dict")):
        build_from_spec(spec, checkpoint=bare)
    cut = tmp_path / "MedSAM2_latest.pt"
    cut.write_bytes(bare.read_bytes()[: 1 << 16])
    with pytest.raises(CheckpointError, match=re.escape(f"{cut}: not a readable checkpoint")):
        build_from_spec(spec, checkpoint=cut)


# -- segment-anything: plain Sam state dict -------------------------------------------------


def _wildcard(keys) -> set[str]:
    return {re.sub(r"\.\d+\.", ".N.", k) for k in keys}


def test_tiny_sam_has_the_published_vit_b_key_names():
    """The tiny test network has ViT-B's key names (fewer blocks): what it proves about
    loading holds for the published files."""
    vit_b = build_sam("vit_b")
    tiny = build_sam("tiny")
    assert _wildcard(tiny.state_dict()) == _wildcard(vit_b.state_dict())


def test_plain_state_dict_loads_strictly(tmp_path):
    published = build_sam("tiny", seed=3)
    path = tmp_path / "sam_vit_b_01ec64.pth"
    torch.save(published.state_dict(), path)  # segment-anything's files: the bare dict
    ours = build_sam("tiny", checkpoint=path, seed=9)
    for key, value in published.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key


def test_wrong_or_corrupt_sam_files_name_file_and_keys(tmp_path):
    model = build_sam("tiny")
    state = model.state_dict()
    extra = dict(state)
    dropped = extra.pop("mask_decoder.iou_token.weight")
    extra["mask_decoder.extra_head.weight"] = dropped
    wrong = tmp_path / "medsam_vit_b.pth"
    torch.save(extra, wrong)
    with pytest.raises(CheckpointError) as info:
        load_sam_checkpoint(build_sam("tiny"), wrong)
    text = str(info.value)
    assert str(wrong) in text
    assert "1 missing keys ['mask_decoder.iou_token.weight']" in text
    assert "1 unexpected keys ['mask_decoder.extra_head.weight']" in text

    wrapped = tmp_path / "wrapped.pth"
    torch.save({"model": state}, wrapped)  # a SAM 2 style file handed to SAM
    with pytest.raises(CheckpointError, match="not a plain segment-anything state dict"):
        load_sam_checkpoint(model, wrapped)

    cut = tmp_path / "cut.pth"
    torch.save(state, tmp_path / "full.pth")
    cut.write_bytes((tmp_path / "full.pth").read_bytes()[:4096])
    with pytest.raises(CheckpointError, match=re.escape(f"{cut}: not a readable checkpoint")):
        load_sam_checkpoint(model, cut)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_sam_checkpoint(model, tmp_path / "absent.pth")


def test_a_vit_b_file_does_not_fit_the_tiny_arch(tmp_path):
    path = tmp_path / "sam.pth"
    torch.save(build_sam("tiny").state_dict(), path)
    big = build_sam("vit_b")
    with pytest.raises(CheckpointError, match=re.escape(f"{path}: does not fit")):
        load_sam_checkpoint(big, path)


# -- the checkpoint table -------------------------------------------------------------------


def test_table_entries_fit_the_loaders(paper_models):
    for name, entry in OFFICIAL.items():
        if entry.layout == "sam2":
            assert entry.arch in ARCHS, name
        else:
            assert entry.arch == "vit_b", name
        assert entry.url is None or entry.url.endswith("/" + name), name
    sams = {m: s for m, s in paper_models.items() if isinstance(s, SamSpec)}
    assert {s.model for s in sams.values()} == {"sam_vit_b", "medsam_vit_b"}
    for spec in sams.values():
        assert OFFICIAL[spec.checkpoint_file].layout == "segment_anything"


def test_medsam_file_is_placed_by_hand_then_verified(tmp_path, capsys):
    with pytest.raises(ManualDownloadRequired) as info:
        fetch_checkpoint("medsam_vit_b.pth", tmp_path)
    text = str(info.value)
    assert "medsam_vit_b.pth" in text and "drive.google.com" in text
    assert str((tmp_path / "medsam_vit_b.pth").resolve()) in text
    assert cli_main(["checkpoint", "medsam_vit_b.pth", "--out-dir", str(tmp_path)]) == 1
    assert "has no stable direct download" in capsys.readouterr().err

    torch.save(build_sam("tiny").state_dict(), tmp_path / "medsam_vit_b.pth")
    assert fetch_checkpoint("medsam_vit_b.pth", tmp_path) == tmp_path / "medsam_vit_b.pth"
    lock = yaml.safe_load((tmp_path / LOCK_NAME).read_text())
    assert set(lock) == {"medsam_vit_b.pth"}
