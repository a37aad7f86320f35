"""Bad input: every failure names the file and the reason; good cases still convert."""

from __future__ import annotations

import dataclasses
import gzip
import http.server
import io
import json
import tarfile
import threading
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medsam2.data import download as dl
from medsam2.data.convert import ConversionError, convert_dataset
from medsam2.data.extract import ExtractError, Limits, extract_archive
from medsam2.data.layout import StandardDataset
from medsam2.data.registry import (
    FileSpec,
    download_dataset,
    extract_dataset,
    load_spec,
    main,
    verify_dataset,
)

REGISTRY = Path(__file__).resolve().parents[1] / "config" / "datasets"


# --------------------------------------------------------------------------- download
def test_wrong_sha256_removes_partial_file(tmp_path: Path):
    src = tmp_path / "data.zip"
    src.write_bytes(b"hello world")
    dest = tmp_path / "dl" / "data.zip"
    with pytest.raises(dl.DownloadError, match=r"data\.zip: sha256 mismatch, expected 0+"):
        dl.download_file(src.as_uri(), dest, sha256="0" * 64)
    assert not dest.exists()
    assert not dest.with_name("data.zip.part").exists()


def test_wrong_sha256_on_a_large_file_keeps_it_aside(tmp_path: Path):
    src = tmp_path / "crossmoda2022_training.zip"
    src.write_bytes(b"x" * 4096)
    dest = tmp_path / "dl" / "crossmoda2022_training.zip"
    with pytest.raises(dl.DownloadError) as info:
        dl.download_file(src.as_uri(), dest, sha256="0" * 64, keep_aside_bytes=1024)
    aside = dest.with_name("crossmoda2022_training.zip.sha256-mismatch")
    assert "sha256 mismatch" in str(info.value)
    assert f"the file is kept aside as {aside}" in str(info.value)
    assert aside.read_bytes() == b"x" * 4096 and not dest.exists()
    assert not dest.with_name(dest.name + ".part").exists()


def test_datasets_verify_rechecks_downloads(tmp_path: Path, capsys):
    spec = load_spec(REGISTRY / "refuge.yaml")
    downloads = tmp_path / "downloads" / "refuge"
    downloads.mkdir(parents=True)
    args = ["datasets", "verify", "refuge", "--registry-dir", str(REGISTRY),
            "--resources", str(tmp_path)]
    assert main(args) == 2
    assert "REFUGE2.zip: missing" in capsys.readouterr().out
    (downloads / "REFUGE2.zip").write_bytes(b"first")
    download_dataset(spec, downloads)  # a manual file: its hash is recorded on first use
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"REFUGE2.zip: ok {dl.sha256_of(downloads / 'REFUGE2.zip')} (lock file)" in out
    assert "refuge: 1 of 1 files verified" in out
    (downloads / "REFUGE2.zip").write_bytes(b"changed on disk")
    assert main(args) == 2
    assert "REFUGE2.zip: WRONG: REFUGE2.zip: sha256 mismatch" in capsys.readouterr().out
    assert (downloads / "REFUGE2.zip").read_bytes() == b"changed on disk"  # only looks
    assert verify_dataset(spec, downloads)[0][1].startswith("WRONG")


def test_wrong_size_is_refused(tmp_path: Path):
    src = tmp_path / "a.bin"
    src.write_bytes(b"12345")
    with pytest.raises(dl.DownloadError, match="size 5 bytes, expected 6"):
        dl.download_file(str(src), tmp_path / "dl" / "a.bin", size=6)


def test_lock_file_records_then_enforces_hash(tmp_path: Path):
    src = tmp_path / "a.bin"
    src.write_bytes(b"version 1")
    dest = tmp_path / "dl" / "a.bin"
    digest = dl.download_file(src.as_uri(), dest)
    assert dl.read_lock(dest.parent) == {"a.bin": digest}
    dest.unlink()
    src.write_bytes(b"version 2")  # upstream changed silently
    with pytest.raises(dl.DownloadError, match="sha256 mismatch"):
        dl.download_file(src.as_uri(), dest)
    assert not dest.exists()


class _FlakyRangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD; the first request breaks off halfway, later ones honour Range."""

    payload = bytes(range(256)) * 40
    requests: list[str | None] = []

    def do_GET(self):  # noqa: N802 - http.server API
        rng = self.headers.get("Range")
        type(self).requests.append(rng)
        data = self.payload
        if len(type(self).requests) == 1:
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])

    def log_message(self, *args):
        pass


def test_http_download_resumes_with_range_after_a_broken_transfer(tmp_path: Path):
    _FlakyRangeHandler.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FlakyRangeHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/file.bin"
        payload = _FlakyRangeHandler.payload
        import hashlib

        dest = tmp_path / "file.bin"
        dl.download_file(url, dest, sha256=hashlib.sha256(payload).hexdigest(),
                         size=len(payload), retries=2, backoff_s=0.01, timeout=5)
    finally:
        server.shutdown()
    assert dest.read_bytes() == payload
    assert _FlakyRangeHandler.requests[0] is None
    assert _FlakyRangeHandler.requests[1] == f"bytes={len(payload) // 2}-"


def test_registration_dataset_names_page_file_and_path(tmp_path: Path):
    spec = load_spec(REGISTRY / "btcv.yaml")
    downloads = tmp_path / "resources" / "downloads" / "btcv"
    with pytest.raises(dl.ManualDownloadRequired) as info:
        download_dataset(spec, downloads)
    msg = str(info.value)
    assert "registration" in msg and spec.page in msg and "'RawData.zip'" in msg
    assert str((downloads / "RawData.zip").resolve()) in msg
    assert not (downloads / ".complete").exists()


def test_manual_file_in_place_is_accepted_and_hash_recorded(tmp_path: Path):
    spec = load_spec(REGISTRY / "atlas23.yaml")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    (downloads / "atlas-train-dataset-1.0.1.zip").write_bytes(b"zip bytes")
    download_dataset(spec, downloads)
    assert "atlas-train-dataset-1.0.1.zip" in dl.read_lock(downloads)
    assert (downloads / ".complete").is_file()


# --------------------------------------------------------------------------- extract
def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_truncated_zip_is_a_clear_error(tmp_path: Path):
    arc = _zip(tmp_path / "RawData.zip", {f"f{i}.bin": np.random.bytes(2000) for i in range(5)})
    arc.write_bytes(arc.read_bytes()[: arc.stat().st_size // 2])
    target = tmp_path / "out"
    with pytest.raises(ExtractError, match=r"RawData\.zip: unreadable archive, truncated"):
        extract_archive(arc, target)
    assert not any(target.iterdir())


def test_truncated_tar_gz_is_a_clear_error(tmp_path: Path):
    arc = tmp_path / "data.tar.gz"
    with tarfile.open(arc, "w:gz") as tf:
        data = np.random.bytes(50_000)
        info = tarfile.TarInfo("big.bin")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    arc.write_bytes(arc.read_bytes()[:20_000])
    with pytest.raises(ExtractError, match=r"data\.tar\.gz: unreadable archive"):
        extract_archive(arc, tmp_path / "out")


def test_zip_path_traversal_is_refused(tmp_path: Path):
    arc = _zip(tmp_path / "evil.zip", {"ok.txt": b"ok", "../escape.txt": b"x"})
    target = tmp_path / "sub" / "out"
    with pytest.raises(ExtractError, match=r"evil\.zip: member '\.\./escape\.txt' contains '\.\.'"):
        extract_archive(arc, target)
    assert not (tmp_path / "sub" / "escape.txt").exists()
    assert not (target / "ok.txt").exists()


def _tar(path: Path, add) -> Path:
    with tarfile.open(path, "w") as tf:
        add(tf)
    return path


def test_tar_absolute_path_and_links_outside_are_refused(tmp_path: Path):
    def absolute(tf):
        info = tarfile.TarInfo("/tmp/abs.txt")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"x"))

    def symlink(tf):
        info = tarfile.TarInfo("data/link")
        info.type, info.linkname = tarfile.SYMTYPE, "../../../etc/passwd"
        tf.addfile(info)

    def hardlink(tf):
        info = tarfile.TarInfo("data/hard")
        info.type, info.linkname = tarfile.LNKTYPE, "/etc/passwd"
        tf.addfile(info)

    for name, add, reason in (("abs.tar", absolute, "absolute path"),
                              ("sym.tar", symlink, "symlink to '../../../etc/passwd' outside"),
                              ("hard.tar", hardlink, "absolute path")):
        with pytest.raises(ExtractError, match=rf"{name}: member .*{reason}"):
            extract_archive(_tar(tmp_path / name, add), tmp_path / "out")
    assert not any((tmp_path / "out").iterdir())


def _symlink_chain(tf: tarfile.TarFile) -> None:
    """``d/l1 -> ..`` stays inside; ``d/l2 -> l1/..`` looks inside but climbs out of it."""
    folder = tarfile.TarInfo("d")
    folder.type = tarfile.DIRTYPE
    tf.addfile(folder)
    for name, text in (("d/l1", ".."), ("d/l2", "l1/..")):
        link = tarfile.TarInfo(name)
        link.type, link.linkname = tarfile.SYMTYPE, text
        tf.addfile(link)
    escape = tarfile.TarInfo("d/l2/escaped.txt")
    escape.size = 1
    tf.addfile(escape, io.BytesIO(b"x"))


def test_symlink_chain_leaving_the_folder_is_refused_without_the_data_filter(
    tmp_path: Path, monkeypatch
):
    """The project's own check follows link chains; Python's filter is not needed."""
    monkeypatch.delattr(tarfile, "data_filter", raising=False)
    arc = _tar(tmp_path / "chain.tar", _symlink_chain)
    target = tmp_path / "sub" / "out"
    with pytest.raises(ExtractError, match=r"chain\.tar: member 'd/l2' is a symlink to 'l1/\.\.'"):
        extract_archive(arc, target)
    assert not (tmp_path / "sub" / "escaped.txt").exists()
    assert not (target / "d").exists()


def test_file_written_through_a_chained_symlink_is_refused(tmp_path: Path):
    """A regular file whose name is an earlier link is written where the link points."""
    def add(tf):
        for name, text in (("d/l1", ".."), ("d/out", "l1/../x.txt")):
            link = tarfile.TarInfo(name)
            link.type, link.linkname = tarfile.SYMTYPE, text
            tf.addfile(link)

    from medsam2.data.extract import _check_tar

    with tarfile.open(_tar(tmp_path / "c.tar", add)) as tf:
        with pytest.raises(ExtractError, match=r"'d/out' is a symlink to 'l1/\.\./x\.txt'"):
            _check_tar(tmp_path / "c.tar", tf, tmp_path / "t")


def test_symlink_inside_target_is_allowed(tmp_path: Path):
    def add(tf):
        info = tarfile.TarInfo("data/a.txt")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"a"))
        link = tarfile.TarInfo("data/b.txt")
        link.type, link.linkname = tarfile.SYMTYPE, "a.txt"
        tf.addfile(link)

    out = extract_archive(_tar(tmp_path / "ok.tar", add), tmp_path / "out")
    assert (out / "data" / "b.txt").read_bytes() == b"a"


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_nested_archives_are_unpacked_in_place(tmp_path: Path):
    """Mendeley's "Download All": a zip holding the dataset's zip (and a tar inside that)."""
    inner_tar = io.BytesIO()
    with tarfile.open(fileobj=inner_tar, mode="w") as tf:
        info = tarfile.TarInfo("deep/c.txt")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"c"))
    inner = _zip_bytes({"Images/1.png": b"png", "more/extra.tar": inner_tar.getvalue()})
    arc = _zip(tmp_path / "hxt48yk462-2.zip", {"DentalPanoramicXrays.zip": inner,
                                               "README.txt": b"r"})
    out = extract_archive(arc, tmp_path / "out")
    assert (out / "Images" / "1.png").read_bytes() == b"png"
    assert (out / "more" / "deep" / "c.txt").read_bytes() == b"c"
    assert not (out / "DentalPanoramicXrays.zip").exists()  # unpacked, then removed
    assert not (out / "more" / "extra.tar").exists()


def test_malicious_inner_archive_is_refused_and_nothing_written(tmp_path: Path):
    inner = _zip_bytes({"ok.txt": b"ok", "../../escape.txt": b"x"})
    arc = _zip(tmp_path / "outer.zip", {"good.txt": b"g", "data/inner.zip": inner})
    target = tmp_path / "a" / "b" / "out"
    with pytest.raises(ExtractError, match=r"outer\.zip: inner archive 'data/inner\.zip': .*"
                       r"member '\.\./\.\./escape\.txt' contains '\.\.'"):
        extract_archive(arc, target)
    assert not any(target.iterdir())
    assert not list(tmp_path.rglob("escape.txt"))


def test_inner_tar_with_link_outside_is_refused(tmp_path: Path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("link")
        info.type, info.linkname = tarfile.SYMTYPE, "../../../../etc/passwd"
        tf.addfile(info)
    arc = _zip(tmp_path / "outer.zip", {"inner.tar": buf.getvalue()})
    with pytest.raises(ExtractError, match=r"inner archive 'inner\.tar': .*symlink"):
        extract_archive(arc, tmp_path / "out")
    assert not any((tmp_path / "out").iterdir())


def test_zip_bombs_are_refused_by_the_limits(tmp_path: Path):
    zeros = _zip_bytes({"zeros.bin": bytes(2_000_000)})  # ~2 MB of zeros in ~2 kB
    bomb = tmp_path / "bomb.zip"
    bomb.write_bytes(zeros)
    small = Limits(ratio_applies_above=1_000_000)  # the default starts at 1 GiB
    with pytest.raises(ExtractError, match=r"bomb\.zip: unpacks to 2000000 bytes .*ratio"):
        extract_archive(bomb, tmp_path / "out", small)
    arc = _zip(tmp_path / "many.zip", {f"f{i}.txt": b"x" for i in range(5)})
    with pytest.raises(ExtractError, match=r"many\.zip: 5 members, more than the limit of 4"):
        extract_archive(arc, tmp_path / "out", Limits(max_members=4))
    with pytest.raises(ExtractError, match=r"unpacks to 5 bytes, more than the limit of 4"):
        extract_archive(arc, tmp_path / "out", Limits(max_total_bytes=4))
    nested = _zip(tmp_path / "nest.zip", {"a.zip": _zip_bytes({"b.zip": _zip_bytes({"c": b"c"})})})
    with pytest.raises(ExtractError, match=r"nested deeper than 1 levels"):
        extract_archive(nested, tmp_path / "out", Limits(max_depth=1))
    # the bomb refused even when it is inside an innocent-looking outer archive
    outer = _zip(tmp_path / "outer.zip", {"inner.zip": zeros})
    with pytest.raises(ExtractError, match=r"inner archive 'inner\.zip': .*possible zip bomb"):
        extract_archive(outer, tmp_path / "out", small)
    assert not any((tmp_path / "out").iterdir())


# --------------------------------------------------------------------------- convert
def _nii(path: Path, array: np.ndarray, affine: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))


def test_bad_cases_are_reported_and_others_converted(tmp_path: Path):
    """BTCV layout with one good case and one case per failure kind."""
    root = tmp_path / "extracted" / "RawData" / "Training"
    aff = np.diag([0.8, 0.8, 2.5, 1.0])
    shape = (6, 5, 4)
    img = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    lab = np.zeros(shape, np.uint8)
    lab[1:3, 1:3, 1:3] = 6
    cases = {
        "img0001": (img, aff, lab, aff),                                      # good
        "img0002": (img, aff, lab[:5], aff),                                  # shape mismatch
        "img0003": (img, aff, lab, np.diag([0.8, 0.8, 5.0, 1.0])),            # affine mismatch
        "img0004": (np.where(lab > 0, np.nan, img).astype(np.float32), aff, lab, aff),  # NaN
        "img0005": (img, aff, lab.astype(np.float32) + 0.5, aff),             # non-integer
        "img0006": (img, aff, np.where(lab > 0, 14, 0).astype(np.uint8), aff),  # unknown value
    }
    for cid, (im, ia, lb, la) in cases.items():
        _nii(root / "img" / f"{cid}.nii.gz", im, ia)
        _nii(root / "label" / f"{cid.replace('img', 'label')}.nii.gz", lb, la)
    spec = dataclasses.replace(load_spec(REGISTRY / "btcv.yaml"), max_skipped=5)
    out = tmp_path / "results" / "datasets" / "btcv"
    report = convert_dataset(spec, tmp_path / "extracted", out, seed=0)

    assert report.converted == ["img0001"]
    reasons = {s["case"]: s["reason"] for s in report.skipped}
    assert "img0002.nii.gz" in reasons["img0002"] and "shape (6, 5, 4) != label shape (5, 5, 4)" \
        in reasons["img0002"]
    assert "label0003.nii.gz" in reasons["img0003"] and "affines differ" in reasons["img0003"]
    assert "img0004.nii.gz" in reasons["img0004"] and "NaN" in reasons["img0004"]
    assert "label0005.nii.gz" in reasons["img0005"] and "non-integer" in reasons["img0005"]
    assert "label0006.nii.gz" in reasons["img0006"] and "unexpected label values [14]" \
        in reasons["img0006"]
    saved = json.loads((out / "conversion_report.json").read_text())
    assert saved["converted"] == ["img0001"] and len(saved["skipped"]) == 5
    assert saved["summary"].startswith("btcv: 1 converted, 5 skipped (")
    assert "unexpected label values: 1" in saved["summary"]
    ds = StandardDataset(out)
    assert [c.case_id for c in ds.cases("test")] == ["img0001"]
    assert set(np.unique(ds.read_label(ds.cases("test")[0]).array)) == {0, 6}  # liver -> 6


def test_no_convertible_case_fails_with_every_reason(tmp_path: Path):
    spec = load_spec(REGISTRY / "wbc.yaml")
    folder = tmp_path / "x" / "Dataset 1"
    folder.mkdir(parents=True)
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "001.bmp")
    Image.fromarray(np.full((8, 8), 77, np.uint8)).save(folder / "001.png")
    with pytest.raises(ConversionError, match=r"001\.png: unexpected label values \[77\]"):
        convert_dataset(spec, tmp_path / "x", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_empty_extracted_folder_is_a_clear_error(tmp_path: Path):
    spec = load_spec(REGISTRY / "kits23.yaml")
    (tmp_path / "ex").mkdir()
    with pytest.raises(ConversionError, match="kits: no cases found"):
        convert_dataset(spec, tmp_path / "ex", tmp_path / "kits")


def test_colour_label_is_refused(tmp_path: Path):
    from PIL import Image

    spec = dataclasses.replace(load_spec(REGISTRY / "stare.yaml"), max_skipped=1)
    rgb = np.zeros((8, 8, 3), np.uint8)
    for i, name in enumerate(("im0001", "im0002")):
        (tmp_path / "ex").mkdir(exist_ok=True)
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="PPM")
        (tmp_path / "ex" / f"{name}.ppm.gz").write_bytes(gzip.compress(buf.getvalue()))
        lab = rgb.copy()
        lab[2:4, 2:4, :] = 255
        if i == 1:
            lab[2:4, 2:4, 1] = 0  # a colour drawing, not a label map
        buf = io.BytesIO()
        Image.fromarray(lab).save(buf, format="PPM")
        (tmp_path / "ex" / f"{name}.ah.ppm.gz").write_bytes(gzip.compress(buf.getvalue()))
    report = convert_dataset(spec, tmp_path / "ex", tmp_path / "stare")
    assert report.converted == ["im0001"]
    assert "im0002.ah.ppm.gz: colour label" in report.skipped[0]["reason"]


def test_extract_requires_downloads(tmp_path: Path):
    spec = dataclasses.replace(load_spec(REGISTRY / "btcv.yaml"),
                               files=[FileSpec("RawData.zip", None)])
    with pytest.raises(ExtractError, match=r"RawData\.zip: not downloaded"):
        extract_dataset(spec, tmp_path / "dl", tmp_path / "ex")
