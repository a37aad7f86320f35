"""Colour 2D images stay RGB end to end: the layout, the frames the tracker sees (per
image and in One-Prompt pseudo-videos), the preprocessing cache, training clips, the SAM /
MedSAM baseline's input and the overlays.

The colour dataset is ``phantom2d`` with three different channels per pixel
(``conftest.colour_copy``); the networks are the real SAM 2 and segment-anything classes
with small random weights, observed through forward pre-hooks on their image encoders.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medsam2.data.frames import IMAGENET_MEAN, IMAGENET_STD, Intensity, to_model_frames
from medsam2.data.layout import (
    LayoutError,
    StandardDataset,
    Volume,
    read_volume,
    write_case,
    write_dataset_json,
    write_volume,
)
from medsam2.data.preprocess import crop_box, load_cache, preprocess_case, preprocess_dataset
from medsam2.data.prompts import dataset_prompts

RNG = np.random.default_rng(0)
#: nnU-Net's natural-image channel names (nnunetv2/dataset_conversion/
#: Dataset120_RoadSegmentation.py)
RGB_NAMES = {"0": "R", "1": "G", "2": "B"}


def colour(h: int = 12, w: int = 10) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3)).astype(np.uint8)


def one_case_dataset(root: Path, image: Volume, channel_names: dict[str, str]) -> Path:
    label = np.zeros(image.shape, np.uint8)
    label[2:5, 3:6] = 1
    write_case(root, "c0", "train", image, Volume(label), ".png")
    write_dataset_json(root, {"fg": 1}, 1, ".png", channel_names)
    return root


# --------------------------------------------------------------------------- layout
def test_rgb_png_round_trip_is_lossless_and_channel_last(tmp_path):
    img = colour()
    path = write_volume(tmp_path / "c_0000.png", Volume(img, rgb=True))
    with Image.open(path) as im:
        assert im.mode == "RGB"  # a 24-bit PNG: what nnU-Net's NaturalImage2DIO reads
    back = read_volume(path, is_label=False)
    assert back.rgb and np.array_equal(back.array, img)
    assert back.ndim == 2 and back.shape == (12, 10) and back.spacing == (1.0, 1.0)


def test_colour_dataset_has_rgb_images_and_grey_labels(phantom2d_rgb, phantom2d):
    ds, grey = StandardDataset(phantom2d_rgb), StandardDataset(phantom2d)
    assert ds.is_rgb and ds.meta["channel_names"] == RGB_NAMES
    assert ds.verify() == []
    for case in ds.cases("train") + ds.cases("test"):
        assert [p.name for p in case.images] == [f"{case.case_id}_0000.png"]  # one file
        image, label = ds.read_image(case), ds.read_label(case)
        v = grey.read_image(grey.case(case.case_id)).array
        assert image.rgb and image.array.shape == (*v.shape, 3)
        assert np.array_equal(image.array, np.stack([v, 255 - v, v // 2], axis=-1))
        assert label.array.shape == v.shape and not label.rgb


def test_a_colour_label_fails_naming_the_file_equal_channels_pass(tmp_path):
    root = one_case_dataset(tmp_path, Volume(colour(), rgb=True), dict(RGB_NAMES))
    ds = StandardDataset(root)
    case = ds.case("c0")
    lab = ds.read_label(case).array.astype(np.uint8)
    Image.fromarray(np.stack([lab] * 3, axis=-1)).save(case.label)  # saved in colour
    assert np.array_equal(ds.read_label(case).array, lab) and ds.verify() == []
    drawing = np.stack([lab] * 3, axis=-1)
    drawing[0, 0, 1] = 1
    Image.fromarray(drawing).save(case.label)
    with pytest.raises(LayoutError, match=r"labelsTr/c0.png: colour label \(channels differ\)"):
        ds.read_label(case)
    assert "colour label" in ds.verify()[0]


def test_each_image_file_holds_what_dataset_json_declares(tmp_path):
    grey = np.arange(120, dtype=np.uint8).reshape(12, 10)
    rgb_root = one_case_dataset(tmp_path / "rgb", Volume(grey), dict(RGB_NAMES))
    with pytest.raises(LayoutError, match="c0_0000.png: single-channel image in a colour"):
        StandardDataset(rgb_root).read_image(StandardDataset(rgb_root).case("c0"))
    grey_root = one_case_dataset(tmp_path / "grey", Volume(colour(), rgb=True), {"0": "x"})
    ds = StandardDataset(grey_root)
    with pytest.raises(LayoutError, match="c0_0000.png: colour image in a single-channel"):
        ds.read_image(ds.case("c0"))
    # a colour file with equal channels is a grey image: read as one channel, as before
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(ds.case("c0").images[0])
    image = ds.read_image(ds.case("c0"))
    assert not image.rgb and np.array_equal(image.array, grey) and ds.verify() == []


def test_colour_is_stored_as_8_bit_png_only(tmp_path):
    img = Volume(colour(), rgb=True)
    with pytest.raises(LayoutError, match="x.nii.gz: an RGB image cannot be stored"):
        write_volume(tmp_path / "x.nii.gz", img)
    with pytest.raises(LayoutError, match="l.png: an RGB label cannot be stored"):
        write_volume(tmp_path / "l.png", img, is_label=True)
    deep = Volume(img.array.astype(np.uint16) * 256, rgb=True)
    with pytest.raises(LayoutError, match=r"d.png: uint16 values in \[0, .*\], outside PNG's "
                                          r"\[0, 255\]"):
        write_volume(tmp_path / "d.png", deep)
    with pytest.raises(ValueError, match=r"an RGB volume is \(rows, cols, 3\)"):
        Volume(np.zeros((4, 4)), rgb=True)


# --------------------------------------------------------------------------- frames
def test_model_frames_of_a_colour_image_are_its_own_three_channels():
    stack = RNG.random((2, 16, 16, 3)).astype(np.float32)
    frames = to_model_frames(stack, 16)  # same size: the resize is the identity
    assert frames.shape == (2, 3, 16, 16)
    for c in range(3):
        want = (stack[..., c] - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        assert torch.allclose(frames[:, c], torch.from_numpy(want), atol=1e-6)
    assert not torch.allclose(frames[:, 0], frames[:, 1])
    # a grey stack is repeated to R, G and B, each with its own ImageNet mean and std
    grey = to_model_frames(stack[..., 0], 16)
    for c in range(3):
        want = (stack[..., 0] - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        assert torch.allclose(grey[:, c], torch.from_numpy(want), atol=1e-6)


def test_colour_takes_the_grey_path_with_one_window_for_its_three_channels():
    """The 0.5-99.5 percentile window of a grey 2D image, over all three channels: the same
    linear map for R, G and B; a grey image in three copies maps as the grey image does
    (up to the percentiles' interpolation between three times as many values)."""
    img = colour(20, 24)
    img[0, 0], img[0, 1] = (0, 0, 0), (255, 255, 255)
    norm = Intensity.for_channel("R").apply(img)
    lo, hi = np.percentile(img.astype(np.float32), [0.5, 99.5])
    assert np.allclose(norm, np.clip((img - lo) / (hi - lo), 0, 1), atol=1e-6)
    grey = img[..., 0]
    as_grey = Intensity.for_channel("R").apply(grey)
    as_rgb = Intensity.for_channel("R").apply(np.stack([grey] * 3, axis=-1))
    assert all(np.allclose(as_rgb[..., c], as_grey, atol=0.01) for c in range(3))


def test_crop_box_of_a_colour_stack_counts_any_channel():
    stack = np.zeros((2, 10, 12, 3), np.float32)
    stack[0, 2, 3, 0] = 1.0  # red only
    stack[1, 7, 9, 2] = 1.0  # blue only, on another frame
    assert crop_box(stack) == (slice(2, 8), slice(3, 10))
    assert crop_box(stack[..., 1]) == (slice(0, 10), slice(0, 12))  # green: all zero


def test_preprocess_cache_keeps_colour(phantom2d_rgb, tmp_path):
    ds = StandardDataset(phantom2d_rgb)
    case = ds.cases("train")[0]
    image, label = ds.read_image(case), ds.read_label(case)
    intensity = Intensity.for_channel("R")
    frames, labels = preprocess_case(image.array, label.array, image.spacing, intensity, 32,
                                     min_area=0, crop=False)
    assert frames.shape == (1, 32, 32, 3) and labels.shape == (1, 32, 32)
    assert not np.array_equal(frames[..., 0], frames[..., 1])
    # each channel is resized on its own: a channel-equal image gives three equal channels
    grey = image.array[..., 0]
    rep, _ = preprocess_case(np.stack([grey] * 3, -1), label.array, image.spacing, intensity,
                             32, min_area=0)
    assert rep.shape == (1, 32, 32, 3)
    assert np.array_equal(rep[..., 0], rep[..., 1]) and np.array_equal(rep[..., 0], rep[..., 2])
    index = json.loads(preprocess_dataset(phantom2d_rgb, tmp_path / "c", 32).read_text())
    assert index["rgb"] is True
    _, cached = load_cache(tmp_path / "c")
    assert all(f.shape[1:] == (32, 32, 3) for f, _ in cached)


# --------------------------------------------------------------------------- the tracker
class EncoderInputs:
    """What the image encoders of one model family receive (a forward pre-hook on every
    module of that class: the real network runs unchanged)."""

    def __init__(self, module_class: type):
        self.module_class, self.inputs = module_class, []

    def __enter__(self) -> EncoderInputs:
        def hook(module, args):
            if isinstance(module, self.module_class):
                self.inputs.append(args[0].detach().float().cpu())

        self.handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
        return self

    def __exit__(self, *exc) -> None:
        self.handle.remove()


def _tracker(**keys):
    from medsam2.spec import TrackerSpec
    from medsam2.typed import parse

    return parse(TrackerSpec, {"kind": "medsam2", "arch": "tiny", "image_size": 64,
                               "checkpoint": "c.pt", **keys})


def test_the_tracker_sees_the_three_colour_channels(phantom2d_rgb, tmp_path):
    from sam2.modeling.backbones.image_encoder import ImageEncoder

    from medsam2.predict import predict_dataset

    ds = StandardDataset(phantom2d_rgb)
    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps(dataset_prompts(phantom2d_rgb, "box", seed=0)))
    with EncoderInputs(ImageEncoder) as seen:
        written = predict_dataset(_tracker(), None, phantom2d_rgb, prompts, tmp_path / "out")
    tests = ds.cases("test")
    assert len(written) == len(tests) == len(seen.inputs)
    intensity = Intensity.for_channel(ds.meta["channel_names"]["0"])
    for case, frames in zip(tests, seen.inputs):
        image = ds.read_image(case)
        want = to_model_frames(intensity.apply(image.array)[None], 64)
        assert torch.allclose(frames, want, atol=1e-5)
        assert not torch.allclose(frames[:, 0] * IMAGENET_STD[0] + IMAGENET_MEAN[0],
                                  frames[:, 1] * IMAGENET_STD[1] + IMAGENET_MEAN[1])
        pred = read_volume(tmp_path / "out" / f"{case.case_id}.png", is_label=True)
        assert pred.array.shape == image.shape


@pytest.mark.parametrize("rate", [0.0, 1.0], ids=["one_prompt", "interactive_one_prompt"])
def test_one_prompt_pseudo_videos_of_colour_images(phantom2d_rgb, tmp_path, rate):
    """The template and the test images, cut to their non-zero region (``preprocess``),
    go through the tracker in colour; every prediction is a label map of its image."""
    from sam2.modeling.backbones.image_encoder import ImageEncoder

    from medsam2.predict import predict_dataset

    ds = StandardDataset(phantom2d_rgb)
    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps(dataset_prompts(phantom2d_rgb, "box", seed=0, rate=rate,
                                                  mode_2d="one_prompt")))
    spec = _tracker(preprocess={"crop": True, "min_area": 0})
    with EncoderInputs(ImageEncoder) as seen:
        predict_dataset(spec, None, phantom2d_rgb, prompts, tmp_path / "out", seed=0,
                        mode_2d="one_prompt")
    frames = torch.cat(seen.inputs)
    assert len(frames) == 1 + len(ds.cases("test"))  # the template, then the test images
    rgb = frames * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) + torch.tensor(
        IMAGENET_MEAN).view(1, 3, 1, 1)
    assert all(not torch.allclose(f[0], f[1]) for f in rgb)
    order = json.loads((tmp_path / "out" / "one_prompt_template.json").read_text())["order"]
    for case_id in order:
        pred = read_volume(tmp_path / "out" / f"{case_id}.png", is_label=True).array
        assert pred.shape == ds.read_label(ds.case(case_id)).array.shape
        assert set(np.unique(pred)) <= {0, *ds.labels.values()}


def test_training_clips_of_a_colour_dataset_are_colour(phantom2d_rgb, tmp_path):
    from medsam2.train import ClipSampler, augment_clip, train

    sampler = ClipSampler([phantom2d_rgb], 64)
    images, masks = sampler.sample_objects(np.random.default_rng(0), 3, 1)
    assert images.ndim == 4 and images.shape[-1] == 3 and masks.shape[1:] == images.shape[:3]
    # a flip / turn moves every channel with the masks: the object stays bright in R and
    # dark in G wherever it went
    masks = np.zeros((1, 3, 16, 20), bool)
    masks[:, :, 2:6, 3:9] = True
    clip = np.stack([np.where(masks[0], 0.7, 0.3), np.where(masks[0], 0.3, 0.7),
                     np.full(masks[0].shape, 0.5)], axis=-1).astype(np.float32)
    rng, seen = np.random.default_rng(1), set()
    for _ in range(20):
        turned, moved = augment_clip(clip, masks, rng)
        assert turned.shape[-1] == 3 and moved.shape[1:] == turned.shape[:3]
        inside = moved[0]
        assert turned[..., 0][inside].min() > turned[..., 0][~inside].max()
        assert turned[..., 1][inside].max() < turned[..., 1][~inside].min()
        seen.add(inside.tobytes())
    assert len(seen) >= 4
    spec = _tracker(checkpoint=None, train={"steps": 2, "clip_len": 2, "save_every": 2})
    assert train(spec, [phantom2d_rgb], tmp_path / "run", seed=0).is_file()
    preprocess_dataset(phantom2d_rgb, tmp_path / "cache", 64, min_area=0)
    assert train(spec, [tmp_path / "cache"], tmp_path / "cached", seed=0).is_file()


# --------------------------------------------------------------------------- SAM / MedSAM
@pytest.fixture(scope="module")
def tiny_sam_weights(tmp_path_factory) -> Path:
    from baselines.sam.model import build_sam

    path = tmp_path_factory.mktemp("sam") / "tiny_sam.pth"
    torch.save(build_sam("tiny", seed=0).state_dict(), path)
    return path


@pytest.mark.parametrize("model", ["sam_vit_b", "medsam_vit_b"])
def test_sam_and_medsam_get_the_colour_image(phantom2d_rgb, tiny_sam_weights, tmp_path, model):
    from segment_anything.modeling import ImageEncoderViT
    from segment_anything.utils.transforms import ResizeLongestSide

    from baselines.sam.model import PIXEL_MEAN, PIXEL_STD
    from baselines.sam.runner import SamSegmenter, predict_dataset
    from medsam2.spec import parse_model

    ds = StandardDataset(phantom2d_rgb)
    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps(dataset_prompts(phantom2d_rgb, "box", seed=0)))
    spec = parse_model({"kind": "sam", "model": model, "arch": "tiny",
                        "checkpoint": str(tiny_sam_weights), "device": "cpu"}, "model")
    with EncoderInputs(ImageEncoderViT) as seen:
        written = predict_dataset(spec, tiny_sam_weights, phantom2d_rgb, prompts,
                                  tmp_path / "out")
    tests = ds.cases("test")
    assert len(written) == len(tests) == len(seen.inputs)
    for case, x in zip(tests, seen.inputs):
        image = ds.read_image(case)
        assert x.shape[1] == 3 and not torch.allclose(x[0, 0], x[0, 1])
        assert read_volume(written[tests.index(case)], is_label=True).array.shape == image.shape
        if model != "sam_vit_b":
            continue
        # SAM: the 8-bit image the trackers' frames come from, resized by SAM's transform
        u8 = SamSegmenter.to_uint8(Intensity.for_channel("R").apply(image.array))
        resized = ResizeLongestSide(256).apply_image(u8)
        h, w = resized.shape[:2]
        mean, std = (torch.tensor(v).view(3, 1, 1) for v in (PIXEL_MEAN, PIXEL_STD))
        back = x[0, :, :h, :w] * std + mean
        assert torch.allclose(back, torch.from_numpy(resized).permute(2, 0, 1).float(),
                              atol=1e-3)


# --------------------------------------------------------------------------- overlays
def test_overlays_show_a_colour_image_in_colour():
    from medsam2.report.overlays import image_view

    img = colour()
    shown, kwargs = image_view(Volume(img, rgb=True))
    assert shown.shape == (12, 10, 3) and np.allclose(shown, img / 255.0)
    assert kwargs["cmap"] is None
    grey, kwargs = image_view(Volume(img[..., 0]))
    assert grey.shape == (12, 10) and kwargs["cmap"] == "gray"
