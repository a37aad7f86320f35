"""Each of the 14 paper datasets end to end on a miniature look-alike archive.

Every builder writes a tiny archive with the real dataset's file layout, formats and
quirks (nested zips, shard folders, stray label values, placeholder spacing, labels on
another grid), following the public source named in its comment; then the real registry
entry (its rules, label map and converter, only the file sources swapped for local ones)
is run through download -> extract -> convert, and every case must convert.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import tarfile
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from medsam2.data.convert import convert_dataset
from medsam2.data.download import sha256_of
from medsam2.data.layout import StandardDataset
from medsam2.data.registry import FileSpec, download_dataset, extract_dataset, load_spec

REGISTRY = Path(__file__).resolve().parents[1] / "config" / "datasets"
RNG = np.random.default_rng(0)


# --------------------------------------------------------------------------- file makers
def nii_bytes(array: np.ndarray, affine: np.ndarray) -> bytes:
    return gzip.compress(nib.Nifti1Image(array, affine).to_bytes())


def diag(*spacing: float) -> np.ndarray:
    return np.diag([*spacing, 1.0])


def blob3d(shape: tuple[int, ...], values: list[int]) -> np.ndarray:
    lab = np.zeros(shape, dtype=np.uint8)
    for i, v in enumerate(values):
        lab[i % shape[0], 1 + i % (shape[1] - 1), 1:3] = v
    return lab


def ct(shape: tuple[int, ...]) -> np.ndarray:
    return RNG.integers(-1000, 1000, shape).astype(np.int16)


def pil_bytes(array: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


def rgb() -> np.ndarray:
    return RNG.integers(0, 255, (*S2, 3)).astype(np.uint8)


def mask2d(values: list[int], background: int = 0) -> np.ndarray:
    m = np.full(S2, background, dtype=np.uint8)
    for i, v in enumerate(values):
        m[2 + 2 * i : 4 + 2 * i, 3:7] = v
    return m


def nrrd_bytes(tmp: Path, array_xyz: np.ndarray, spacing: tuple[float, ...],
               origin: tuple[float, ...] = (0.0, 0.0, 0.0)) -> bytes:
    img = sitk.GetImageFromArray(np.transpose(array_xyz, (2, 1, 0)))
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    path = tmp / "_tmp.nrrd"
    sitk.WriteImage(img, str(path))
    data = path.read_bytes()
    path.unlink()
    return data


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def write_tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def source_pixels(info: dict) -> np.ndarray:
    """The decoded pixels of a converted case's source image file (gzipped or not)."""
    path = Path(info["image"])
    data = path.read_bytes()
    data = gzip.decompress(data) if path.name.endswith(".gz") else data
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


# --------------------------------------------------------------------------- builders
# Each returns (files, expectations). Each follows the public source named in its comment;
# where nothing public shows the layout, the dataset file lists it under `unverified`.
# Image sizes: 3D volumes S3, 2D images S2 (the expectations are for these; the paper
# smoke run builds larger ones, which nnU-Net's planner needs to pool at least once).
S3 = (6, 5, 4)
S2 = (12, 10)


def build_wbc(tmp: Path):
    # zxaoyou/segmentation_WBC (the repository's own file listing): "Dataset 1/NNN.bmp" +
    # "NNN.png", likewise "Dataset 2"; figures "Dataset 1.png" at the top; masks 0 / 128 /
    # 255, and Dataset 2's 034 carries stray pixels (2, 7, 25 among others, measured).
    top = "segmentation_WBC-master"
    m = {f"{top}/README.rst": b"WBC", f"{top}/LICENSE": b"GNU GENERAL PUBLIC LICENSE",
         f"{top}/Dataset 1.png": pil_bytes(rgb(), "PNG")}
    for subset, ids in (("Dataset 1", ["001", "002"]), ("Dataset 2", ["001", "034"])):
        for i in ids:
            m[f"{top}/{subset}/{i}.bmp"] = pil_bytes(rgb(), "BMP")
            mask = mask2d([128, 255])
            if i == "034":
                mask[0, 0], mask[0, 1], mask[11, 9] = 2, 7, 25
            m[f"{top}/{subset}/{i}.png"] = pil_bytes(mask, "PNG")
    return [write_zip(tmp / "segmentation_WBC-master.zip", m)], dict(
        n=4, shape=(12, 10), spacing=(1.0, 1.0), values={0, 1}, notes={"d2_034"},
        ids={"d1_001", "d1_002", "d2_001", "d2_034"}, colour=True)


def build_refuge(tmp: Path):
    # open-mmlab/mmsegmentation tools/dataset_converters/refuge.py: REFUGE2 holds one zip per
    # subset, masks 0 cup / 128 rim / 255 background, and "*Illustration*" folders (skipped
    # there) with files of the same names as the cases.
    imgs, anns = {}, {}
    for grp, cid in (("Glaucoma", "g0001"), ("Non-Glaucoma", "n0001"), ("Non-Glaucoma", "n0002")):
        imgs[f"Training400/{grp}/{cid}.jpg"] = pil_bytes(rgb(), "JPEG")
        anns[f"Annotation-Training400/Disc_Cup_Masks/{grp}/{cid}.bmp"] = pil_bytes(
            mask2d([128, 0], background=255), "BMP")
        anns[f"Annotation-Training400/Disc_Cup_Fovea_Illustration/{cid}.jpg"] = pil_bytes(
            rgb(), "JPEG")
    inner = {"REFUGE2/REFUGE-Training400.zip": _zip_bytes(imgs),
             "REFUGE2/Annotation-Training400.zip": _zip_bytes(anns)}
    return [write_zip(tmp / "REFUGE2.zip", inner)], dict(
        n=3, shape=(12, 10), spacing=(1.0, 1.0), values={0, 1}, ids={"g0001", "n0001", "n0002"},
        colour=True)


def build_stare(tmp: Path):
    # open-mmlab/mmsegmentation tools/dataset_converters/stare.py: stare-images.tar of
    # imNNNN.ppm.gz, labels-ah.tar of imNNNN.ah.ppm.gz; "some of the annotation imgs are not
    # standard" (thresholded at 128 there): im0002 has values 40 and 200 besides 0 / 255.
    images, labels = {}, {}
    for i in (1, 2, 3):
        images[f"im{i:04d}.ppm.gz"] = gzip.compress(pil_bytes(rgb(), "PPM"))
        lab = mask2d([255]) if i != 2 else mask2d([255, 200, 40])
        labels[f"im{i:04d}.ah.ppm.gz"] = gzip.compress(pil_bytes(np.stack([lab] * 3, -1), "PPM"))
    return [write_tar(tmp / "stare-images.tar", images),
            write_tar(tmp / "labels-ah.tar", labels)], dict(
        n=3, shape=(12, 10), spacing=(1.0, 1.0), values={0, 1}, notes={"im0002"},
        ids={"im0001", "im0002", "im0003"}, colour=True)


def build_pendal(tmp: Path):
    # constantinpape/torch-em torch_em/data/datasets/medical/pandental.py: the file is
    # DentalPanoramicXrays.zip with Images/, Segmentation1/, Segmentation2/ at its top, and a
    # segmentation is the X-ray with everything outside the mandible zeroed ("non-zero pixels
    # correspond to the mandible"). Mendeley's "Download All" zip wraps it in another zip.
    inner = {}
    for i in (1, 2):
        xray = RNG.integers(1, 255, S2).astype(np.uint8)
        inner[f"Images/{i}.png"] = pil_bytes(xray, "PNG")
        for folder, rows in (("Segmentation1", slice(6, 10)), ("Segmentation2", slice(5, 10))):
            seg = np.zeros_like(xray)
            seg[rows, 2:8] = xray[rows, 2:8]
            inner[f"{folder}/{i}.png"] = pil_bytes(seg, "PNG")
    outer = {"DentalPanoramicXrays.zip": _zip_bytes(inner)}
    return [write_zip(tmp / "hxt48yk462-2.zip", outer)], dict(
        n=2, shape=(12, 10), spacing=(1.0, 1.0), values={0, 1}, ids={"pano_1", "pano_2"},
        voxels=24)


def build_cadvidset(tmp: Path):
    # Nothing public shows this layout: the dataset file's assumed layout (unverified).
    m = {}
    for vid, frames in (("video01", ["000", "001"]), ("video02", ["000"])):
        for f in frames:
            m[f"CadVidSet/{vid}/images/{f}.png"] = pil_bytes(
                RNG.integers(0, 255, S2).astype(np.uint8), "PNG")
            m[f"CadVidSet/{vid}/masks/{f}.png"] = pil_bytes(mask2d([255]), "PNG")
    return [write_zip(tmp / "cadvidset.zip", m)], dict(
        n=3, shape=(12, 10), spacing=(1.0, 1.0), values={0, 1},
        ids={"video01_000", "video01_001", "video02_000"})


KITS_AFFINE = np.array([[0, 0, -0.8, 0], [0, -0.8, 0, 0], [-3.0, 0, 0, 0], [0, 0, 0, 1.0]])


def build_kits23(tmp: Path):
    # neheller/kits23 kits23/download.py: images from the Hugging Face dataset
    # neheller/KiTS-Challenge-Imaging as images/case_NNNNN.nii.gz; labels from the repository's
    # dataset/case_NNNNN/segmentation.nii.gz (1 kidney, 2 tumor, 3 cyst); placed as the
    # dataset file places them. Axes (S-I, A-P, R-L) as in the KiTS files.
    files = []
    for c in (0, 1):
        img = tmp / f"case_{c:05d}.nii.gz"
        img.write_bytes(nii_bytes(ct(S3), KITS_AFFINE))
        files.append(dict(path=img, place=f"images/case_{c:05d}.nii.gz"))
        seg = tmp / f"segmentation_{c:05d}.nii.gz"
        seg.write_bytes(nii_bytes(blob3d(S3, [1, 2, 3]), KITS_AFFINE))
        files.append(dict(path=seg, place=f"dataset/case_{c:05d}/segmentation.nii.gz"))
    # canonical RAS reverses the stored axes
    return files, dict(n=2, shape=S3[::-1], spacing=(0.8, 0.8, 3.0), values={0, 1},
                       ids={"case_00000", "case_00001"})


def build_atlas23(tmp: Path):
    # constantinpape/torch-em torch_em/data/datasets/medical/atlas_liver.py: the registered
    # download atlas-train-dataset-1.0.1.zip nests imagesTr/ and labelsTr/; labels 1 liver,
    # 2 tumour, disjoint. File names imN / lbN: the dataset authors' README (unverified).
    top = "atlas-train-dataset-1.0.1/train"
    m = {}
    for i in (0, 1):
        m[f"{top}/imagesTr/im{i}.nii.gz"] = nii_bytes(RNG.random(S3).astype(np.float32),
                                                      diag(1.4, 1.4, 3.0))
        m[f"{top}/labelsTr/lb{i}.nii.gz"] = nii_bytes(blob3d(S3, [1, 2]), diag(1.4, 1.4, 3.0))
    return [write_zip(tmp / "atlas-train-dataset-1.0.1.zip", m)], dict(
        n=2, shape=S3, spacing=(1.4, 1.4, 3.0), values={0, 1}, ids={"atlas_im0", "atlas_im1"})


ABUS_SPACING = (0.2, 0.073, 0.475674)  # mralinp/tdsc-abus2023-pytorch README.md


def build_tdsc_abus23(tmp: Path):
    # Entrants' public training code (search "DATA00_49"): Train/DATA/DATA00_49/DATA_NNN.nrrd
    # and DATA50_99/ shards, masks flat in Train/MASK/MASK_NNN.nrrd; case 050's headers carry
    # the 1 mm placeholder spacing.
    m = {}
    for i, shard in ((0, "DATA00_49"), (50, "DATA50_99")):
        sp = (1.0, 1.0, 1.0) if i == 50 else ABUS_SPACING
        m[f"Train/DATA/{shard}/DATA_{i:03d}.nrrd"] = nrrd_bytes(
            tmp, RNG.integers(0, 255, S3).astype(np.uint8), sp)
        m[f"Train/MASK/MASK_{i:03d}.nrrd"] = nrrd_bytes(tmp, blob3d(S3, [1]), sp)
    m["Train/labels.csv"] = b"case_id,label\n0,M\n50,B\n"
    return [write_zip(tmp / "TDSC-ABUS2023_Train.zip", m)], dict(
        n=2, shape=S3, spacing=ABUS_SPACING, values={0, 1}, notes={"Train_DATA_050"},
        ids={"Train_DATA_000", "Train_DATA_050"})


def build_segrap23(tmp: Path):
    # HiLab-git/SegRap2023 Tutorial/preprocessing.py and torch-em segrap.py: images and one
    # binary file per structure in SegRap2023_Training_Set_120cases/segrap_XXXX/; one
    # multi-class file per case in ..._OneHot_Labels/Task001 (organs) and Task002
    # (GTVp 1, GTVnd 2).
    imgs, labs = {}, {}
    aff = diag(0.6, 0.6, 3.0)
    for c in ("segrap_0000", "segrap_0001"):
        case = f"SegRap2023_Training_Set_120cases/{c}"
        gtvp = np.zeros(S3, np.uint8)
        gtvp[1:3, 1:3, 1:3] = 1
        gtvnd = np.zeros(S3, np.uint8)
        gtvnd[4, 3, 2] = 1
        imgs[f"{case}/image.nii.gz"] = nii_bytes(ct(S3), aff)
        imgs[f"{case}/image_contrast.nii.gz"] = nii_bytes(ct(S3), aff)
        imgs[f"{case}/GTVp.nii.gz"] = nii_bytes(gtvp, aff)
        imgs[f"{case}/GTVnd.nii.gz"] = nii_bytes(gtvnd, aff)
        imgs[f"{case}/Brain.nii.gz"] = nii_bytes(gtvnd, aff)
        base = "SegRap2023_Training_Set_120cases_OneHot_Labels"
        labs[f"{base}/Task002/{c}.nii.gz"] = nii_bytes(gtvp + 2 * gtvnd, aff)
        labs[f"{base}/Task001/{c}.nii.gz"] = nii_bytes(blob3d(S3, [1, 2, 3, 54]), aff)
    return [write_zip(tmp / "SegRap2023_Training_Set_120cases.zip", imgs),
            write_zip(tmp / "SegRap2023_Training_Set_120cases_OneHot_Labels.zip", labs)], dict(
        n=2, shape=S3, spacing=(0.6, 0.6, 3.0), values={0, 1}, ids={"segrap_0000", "segrap_0001"},
        voxels=8)


def build_crossmoda23(tmp: Path):
    # constantinpape/torch-em torch_em/data/datasets/medical/crossmoda.py:
    # training_source/crossmoda2022_{etz,ldn}_N_ceT1.nii.gz + _Label.nii.gz (1 VS, 2 cochlea);
    # training_target/..._hrT2.nii.gz unlabelled.
    m = {}
    aff = diag(0.4, 0.4, 1.5)
    for c in ("crossmoda2022_etz_1", "crossmoda2022_ldn_2"):
        m[f"training_source/{c}_ceT1.nii.gz"] = nii_bytes(RNG.random(S3).astype(np.float32), aff)
        m[f"training_source/{c}_Label.nii.gz"] = nii_bytes(blob3d(S3, [1, 2]), aff)
    m["training_target/crossmoda2022_etz_100_hrT2.nii.gz"] = nii_bytes(
        RNG.random(S3).astype(np.float32), aff)
    return [write_zip(tmp / "crossmoda2022_training.zip", m)], dict(
        n=2, shape=S3, spacing=(0.4, 0.4, 1.5), values={0, 1},
        ids={"crossmoda2022_etz_1", "crossmoda2022_ldn_2"})


def build_lnq23(tmp: Path):
    # Public LNQ2023 nnU-Net conversion code (convert_LNQ_dataset): train/lnq2023-train-NNNN-
    # ct.nrrd + -seg.nrrd, and "some samples whose img and seg have different size"
    # (trans_seg_size_as_img): case 0002's seg is a crop of the CT grid, one voxel in.
    sp = (0.7, 0.7, 2.0)
    m = {}
    for i in (1, 2):
        lab = np.zeros(S3, np.uint8)
        lab[2:4, 2:4, 1:3] = 1
        m[f"train/lnq2023-train-{i:04d}-ct.nrrd"] = nrrd_bytes(tmp, ct(S3), sp)
        if i == 2:
            m[f"train/lnq2023-train-{i:04d}-seg.nrrd"] = nrrd_bytes(
                tmp, lab[1:5, 1:4, :], sp, origin=(sp[0], sp[1], 0.0))
        else:
            m[f"train/lnq2023-train-{i:04d}-seg.nrrd"] = nrrd_bytes(tmp, lab, sp)
    return [write_zip(tmp / "lnq2023-train.zip", m)], dict(
        n=2, shape=S3, spacing=sp, values={0, 1}, voxels=8, notes={"lnq2023-train-0002"},
        ids={"lnq2023-train-0001", "lnq2023-train-0002"})


def build_cas23(tmp: Path):
    # codalab.lisn.upsaclay.fr/competitions/9804: top folder CAS2023_trainingdataset; the
    # layout inside it is not public (the dataset file's assumption, unverified).
    aff = diag(0.3, 0.3, 0.6)
    m = {}
    for i in ("001", "002"):
        m[f"CAS2023_trainingdataset/data/{i}.nii.gz"] = nii_bytes(ct(S3), aff)
        m[f"CAS2023_trainingdataset/label/{i}.nii.gz"] = nii_bytes(blob3d(S3, [1]), aff)
    return [write_zip(tmp / "cas2023_train.zip", m)], dict(
        n=2, shape=S3, spacing=(0.3, 0.3, 0.6), values={0, 1}, ids={"cas_001", "cas_002"})


def build_toothfairy23(tmp: Path):
    # constantinpape/torch-em torch_em/data/datasets/medical/toothfairy.py:
    # ToothFairy_Dataset/Dataset/P*/data.npy + gt_alpha.npy (dense); patients with only
    # gt_sparse.npy are not cases.
    m = {}
    for p in ("P1", "P2", "P3"):
        m[f"ToothFairy_Dataset/Dataset/{p}/data.npy"] = npy_bytes(ct(S3))
        m[f"ToothFairy_Dataset/Dataset/{p}/gt_sparse.npy"] = npy_bytes(blob3d(S3, [1]))
        if p != "P3":
            m[f"ToothFairy_Dataset/Dataset/{p}/gt_alpha.npy"] = npy_bytes(blob3d(S3, [1]))
    return [write_zip(tmp / "ToothFairy_Dataset.zip", m)], dict(
        n=2, shape=S3, spacing=(0.3, 0.3, 0.3), values={0, 1}, ids={"P1", "P2"})


def build_btcv(tmp: Path):
    # constantinpape/torch-em torch_em/data/datasets/medical/btcv.py: RawData.zip with
    # RawData/Training/{img,label}/imgNNNN / labelNNNN.nii.gz (13 organs); Testing/img has no
    # labels and is not a source of cases.
    aff = diag(0.76, 0.76, 3.0)
    shape = (S3[0] + 8, *S3[1:])  # more slices than the others: 13 organs, one per slice
    m = {}
    for i in (1, 2):
        m[f"RawData/Training/img/img{i:04d}.nii.gz"] = nii_bytes(ct(shape), aff)
        m[f"RawData/Training/label/label{i:04d}.nii.gz"] = nii_bytes(
            blob3d(shape, list(range(1, 14))), aff)
    m["RawData/Testing/img/img0061.nii.gz"] = nii_bytes(ct(shape), aff)
    return [write_zip(tmp / "RawData.zip", m)], dict(
        n=2, shape=shape, spacing=(0.76, 0.76, 3.0), values=set(range(13)),
        ids={"img0001", "img0002"})


BUILDERS = {name[len("build_"):]: fn for name, fn in globals().items() if name.startswith("build_")}


def test_every_registry_key_has_a_builder():
    assert sorted(BUILDERS) == sorted(p.stem for p in REGISTRY.glob("*.yaml"))
    assert len(BUILDERS) == 14


@pytest.mark.parametrize("key", sorted(BUILDERS))
def test_download_extract_convert(key: str, tmp_path: Path):
    src = tmp_path / "upstream"
    src.mkdir()
    built, expect = BUILDERS[key](src)
    files = []
    for i, item in enumerate(built):
        item = item if isinstance(item, dict) else {"path": item}
        path = item["path"]
        # alternate file:// URLs with plain paths, and known hashes with lock-file hashes
        url = path.as_uri() if i % 2 == 0 else str(path)
        sha = sha256_of(path) if i % 2 == 0 else None
        files.append(FileSpec(path.name, url, sha, path.stat().st_size, item.get("place")))
    spec = dataclasses.replace(load_spec(REGISTRY / f"{key}.yaml"), files=files)

    downloads = tmp_path / "resources" / "downloads" / key
    extracted = tmp_path / "resources" / "extracted" / key
    download_dataset(spec, downloads)
    assert all((downloads / f.name).is_file() for f in files)
    extract_dataset(spec, downloads, extracted)
    out = tmp_path / "results" / "datasets" / key
    report = convert_dataset(spec, extracted, out, seed=0)

    assert report.skipped == [], report.summary()
    assert set(report.notes) == expect.get("notes", set()), report.summary()
    ds = StandardDataset(out)
    assert ds.verify() == []
    # nnU-Net would take a top-level "modality" string's length as its channel count
    assert "modality" not in ds.meta and ds.meta["imaging_modality"] == spec.modality
    cases = ds.cases("train") + ds.cases("test")
    assert {c.case_id for c in cases} == expect["ids"]
    assert len(cases) == expect["n"]
    assert ds.meta["numTraining"] == len(ds.cases("train")) >= 1
    assert len(ds.cases("test")) >= 1
    assert ds.labels == spec.output_labels
    assert ds.file_ending == (".png" if spec.dims == 2 else ".nii.gz")
    colour = expect.get("colour", False)
    # colour datasets: nnU-Net's natural-image channel names (Dataset120_RoadSegmentation.py)
    assert ds.is_rgb == colour
    assert ds.meta["channel_names"] == ({"0": "R", "1": "G", "2": "B"} if colour
                                        else {"0": spec.channel_name})
    seen: set[int] = set()
    for case in cases:
        image, label = ds.read_image(case), ds.read_label(case)
        assert label.array.shape == expect["shape"]
        assert image.array.shape == expect["shape"] + ((3,) if colour else ())
        assert image.rgb == colour and image.shape == expect["shape"]
        if colour:  # the source's own pixels, decoded as the converter reads them
            assert np.array_equal(image.array, source_pixels(report.cases[case.case_id]))
        assert np.allclose(image.spacing, expect["spacing"], atol=1e-4)
        assert np.allclose(image.affine, label.affine)
        seen |= set(np.unique(label.array).tolist())
        if "voxels" in expect:
            assert int((label.array > 0).sum()) == expect["voxels"]
    assert seen == expect["values"]
