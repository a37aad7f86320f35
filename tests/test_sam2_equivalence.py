"""With the ``fifo`` policy our volume predictor *is* SAM 2's video predictor.

The reference is Meta's own ``SAM2VideoPredictor``, built by ``sam2``'s own builder
(``build_sam2_video_predictor``: its hydra config, its post-processing overrides) for
sam2.1 hiera-tiny at 64 px with random weights; our ``build_model`` loads those weights.
Both segment the same frames from the same prompt; SAM 2's predictor reads a JPEG folder,
so its decoded frames are replaced by our normalised tensor (and its frame-0 feature
cache, computed from the JPEG, is cleared) before any prompt is added. Compared are the
low-resolution logits (S/4) that SAM 2 keeps per frame; what it yields at video size is
their bilinear upsampling.

Settings of SAM 2's video inference and how we match them:

- dynamic multimask fallback (``sam_mask_decoder_extra_args``): ``build_model`` sets it
  with ``postprocessing=True``;
- ``binarize_mask_from_pts_for_mem_enc=True`` (a prompted frame's memory is encoded from
  the hard mask the user sees): a model attribute that the video builder sets and
  ``build_model`` does not (yet), so the test copies it onto our model (a no-op once
  ``medsam2.model.build.POSTPROCESSING`` sets it too);
- the prompted frame's memory is encoded from its upsampled low-res output mask, and
  memory features are stored in bfloat16: ``medsam2.model.predictor`` does both;
- ``fill_hole_area=8`` needs the optional CUDA extension ``sam2._C``; without it SAM 2
  warns and skips hole filling (as we never fill holes). With the extension installed the
  reference is built with ``fill_hole_area=0``: we do not reproduce hole filling;
- ``non_overlap_masks`` / ``clear_non_cond_mem_around_input`` are off by default and act
  on several objects or corrective clicks only; one object, initial prompts here.
"""

import importlib.util
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from sam2.build_sam import build_sam2_video_predictor
from sam2.sam2_video_predictor import SAM2VideoPredictor

from medsam2.data.frames import to_model_frames
from medsam2.data.prompts import Prompt, make_prompt
from medsam2.model.build import build_model
from medsam2.model.medsam2_base import MedSAM2Base
from medsam2.model.predictor import segment_sequence

SIZE, FRAMES = 64, 8
HAS_C_EXT = importlib.util.find_spec("sam2._C") is not None


def _sequence() -> tuple[np.ndarray, np.ndarray]:
    """A disc that drifts and grows then shrinks, on noise: (T, S, S) images, masks."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    imgs, masks = [], []
    for t in range(FRAMES):
        m = (yy - 28 - 2 * t) ** 2 + (xx - 30 + t) ** 2 < (13 - abs(t - 4)) ** 2
        imgs.append(np.clip(0.3 + 0.5 * m + rng.normal(0, 0.05, m.shape), 0, 1))
        masks.append(m)
    return np.stack(imgs), np.stack(masks)


def _sam2_predictor(postprocessing: bool) -> SAM2VideoPredictor:
    side = SIZE // 16
    overrides = [
        f"++model.image_size={SIZE}",
        f"++model.memory_attention.layer.self_attention.feat_sizes=[{side},{side}]",
        f"++model.memory_attention.layer.cross_attention.feat_sizes=[{side},{side}]",
    ]
    if HAS_C_EXT:
        overrides.append("++model.fill_hole_area=0")
    torch.manual_seed(0)
    return build_sam2_video_predictor(
        "configs/sam2.1/sam2.1_hiera_t.yaml", None, device="cpu",
        hydra_overrides_extra=overrides, apply_postprocessing=postprocessing,
    )


def _sam2_logits(pred: SAM2VideoPredictor, imgs, masks, frames, prompts, tmp_path):
    """Low-res logits (T, 1, S/4, S/4) of SAM 2's own prompt-then-propagate session."""
    for t, img in enumerate(imgs):
        Image.fromarray((img * 255).astype(np.uint8)).convert("RGB").save(
            tmp_path / f"{t:05d}.jpg")
    state = pred.init_state(str(tmp_path))
    assert (state["video_height"], state["video_width"]) == (SIZE, SIZE)
    state["images"] = frames.clone()  # the very same float frames, no JPEG loss
    state["cached_features"] = {}
    for f, p in prompts.items():
        # pixel centres, normalised by the (S x S) video size: our model_inputs coordinates
        coords = np.asarray(p.points, dtype=np.float32) + 0.5
        if p.kind == "box":
            pred.add_new_points_or_box(state, f, 1, box=coords.reshape(-1))
        elif p.kind == "click":
            pred.add_new_points_or_box(state, f, 1, points=coords, labels=np.array(p.labels))
        else:
            pred.add_new_mask(state, f, 1, masks[f])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        forward = [t for t, _, _ in pred.propagate_in_video(state)]
        backward = [t for t, _, _ in pred.propagate_in_video(state, reverse=True)]
    start = min(prompts)
    assert forward == list(range(start, FRAMES)) and backward == list(range(start, -1, -1))
    if pred.fill_hole_area > 0:  # hole filling was attempted and skipped (no sam2._C)
        assert any("_C" in str(w.message) for w in caught)
    outs = state["output_dict_per_obj"][0]
    by_frame = {**outs["non_cond_frame_outputs"], **outs["cond_frame_outputs"]}
    assert sorted(by_frame) == list(range(FRAMES))
    return torch.cat([by_frame[t]["pred_masks"].float() for t in range(FRAMES)])


CASES = {
    "box": {4: "box"},
    "click": {4: "click"},
    "mask": {4: "mask"},
    "box_and_mask": {2: "box", 6: "mask"},
}


def _pair(postprocessing: bool) -> tuple[SAM2VideoPredictor, MedSAM2Base]:
    """SAM 2's predictor and our model with the same random weights."""
    pred = _sam2_predictor(postprocessing)
    ours = build_model("hiera_t", SIZE, {"policy": "fifo"}, postprocessing=postprocessing)
    ours.load_state_dict(pred.state_dict())  # strict: every weight is the same
    assert (ours.sam_mask_decoder.dynamic_multimask_via_stability
            == pred.sam_mask_decoder.dynamic_multimask_via_stability == postprocessing)
    assert pred.binarize_mask_from_pts_for_mem_enc == postprocessing
    ours.binarize_mask_from_pts_for_mem_enc = pred.binarize_mask_from_pts_for_mem_enc
    return pred, ours.eval()


@pytest.fixture(scope="module")
def models():
    """``models(postprocessing)``: built once per module and setting."""
    cache: dict[bool, tuple[SAM2VideoPredictor, MedSAM2Base]] = {}

    def get(postprocessing: bool) -> tuple[SAM2VideoPredictor, MedSAM2Base]:
        if postprocessing not in cache:
            cache[postprocessing] = _pair(postprocessing)
        return cache[postprocessing]

    yield get
    cache.clear()


@pytest.mark.filterwarnings("ignore:cannot import name '_C'")
@pytest.mark.parametrize(
    ("case", "postprocessing"),
    [*[(c, True) for c in CASES], ("box", False), ("box_and_mask", False)],
)
def test_fifo_predictor_equals_sam2_video_predictor(case, postprocessing, models, tmp_path):
    pred, ours_model = models(postprocessing)
    imgs, masks = _sequence()
    frames = to_model_frames(imgs, SIZE)
    prompts: dict[int, Prompt] = {f: make_prompt(k, masks[f], f) for f, k in CASES[case].items()}
    inputs = {f: p.model_inputs((SIZE, SIZE), SIZE, masks[f]) for f, p in prompts.items()}
    ours = segment_sequence(ours_model, frames, inputs)
    theirs = _sam2_logits(pred, imgs, masks, frames, prompts, tmp_path)

    assert ours.shape == theirs.shape == (FRAMES, 1, SIZE // 4, SIZE // 4)
    assert torch.equal(ours > 0, theirs > 0)
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=0), (ours - theirs).abs().amax()
    # a meaningful comparison: tracked frames have foreground and background pixels
    tracked = [t for t in range(FRAMES) if t not in prompts]
    assert (ours[tracked] > 0).any() and (ours[tracked] <= 0).any()


@pytest.mark.filterwarnings("ignore:cannot import name '_C'")
def test_memory_encoding_of_the_prompted_frame_matters(models, tmp_path):
    """Sanity check of the test: with SAM 2's post-processing, a prompted-frame memory
    encoded from the soft instead of the binarised mask changes the tracked frames, so the
    equality above is not vacuous."""
    pred, ours_model = models(True)
    imgs, masks = _sequence()
    frames = to_model_frames(imgs, SIZE)
    prompts = {4: make_prompt("box", masks[4], 4)}
    ours_model.binarize_mask_from_pts_for_mem_enc = False
    try:
        ours = segment_sequence(ours_model, frames,
                                {4: prompts[4].model_inputs((SIZE, SIZE), SIZE)})
    finally:
        ours_model.binarize_mask_from_pts_for_mem_enc = True
    theirs = _sam2_logits(pred, imgs, masks, frames, prompts, tmp_path)
    assert torch.equal(ours[4], theirs[4])  # the prompted frame itself needs no memory
    assert not torch.allclose(ours[5:], theirs[5:], atol=1e-5, rtol=0)
