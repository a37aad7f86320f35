"""Predict a standard dataset's test split with SAM or MedSAM, image by image, slice by slice.

SAM and MedSAM have no memory: each 2D image (or slice) is segmented on its own from one
prompt. The prompts are those every other model gets (``results/prompts/{dataset}.json``,
``medsam2.data.prompts``): a box, a click, or for ``mask`` tasks the tight box of the
ground-truth mask (neither network takes a mask alone as a prompt).

- 2D: every test image gets its own stored prompt (also on One-Prompt datasets: SAM
  cannot carry a template's prompt to other images).
- 3D, slices along the trackers' default axis (``SLICE_AXIS_3D``): the slices that carry
  a stored prompt (the key slice; in the interactive setting also the drawn extra
  slices) are segmented from it. With ``slices_3d: propagate`` every other slice is then
  segmented from a prompt derived from its neighbour's prediction, walking outwards from
  the nearest prompted slice (ties: the lower one) until a prediction is empty: a box is
  the tight box of the neighbour's mask, a click its most interior pixel (the functions
  that made the stored prompts). This uses no more ground truth than the trackers get;
  it is how the MedSAM authors' 3D inference carries a box across slices
  (bowang-lab/MedSAM, branch LiteMedSAM, CVPR24_LiteMedSAM_infer.py: middle slice from
  the given box, then the box of the previous slice's segmentation). With
  ``slices_3d: prompted`` only the prompted slices are segmented.

Input per family, as its own code does it:

- SAM (``sam_vit_b``): the [0, 1] frames the trackers see (``medsam2.data.frames``: CT
  window or volume percentiles) as 8-bit RGB into ``SamPredictor`` (resize of the longest
  side to 1024, SAM's pixel mean / std, padding); a click takes the best of SAM's three
  masks by predicted IoU (``multimask_click``), a box one mask.
- MedSAM (``medsam_vit_b``): bowang-lab/MedSAM pre_CT_MR.py for volumes (CT: window level
  40 / width 400; other: 0.5-99.5 percentiles of the non-zero voxels, zeros kept), scaled
  to 0-255; a 2D image min-max scaled to 0-255; then MedSAM_Inference.py per slice:
  3 channels, resized to 1024 x 1024 (skimage, cubic, anti-aliased), min-max to [0, 1],
  the image encoder directly, the box scaled to 1024, one mask, sigmoid, bilinear back
  to the slice size, > 0.5. MedSAM was trained on boxes only; a click goes through SAM's
  prompt encoder as a point.

Colour 2D images (``layout.Volume.rgb``) go in as their own R, G, B, as each family's
code takes a colour picture: SAM's ``set_image(image, "RGB")``, and MedSAM_Inference.py
repeats only a grey image to three channels (``if len(img_np.shape) == 2``). Their 8-bit
values come the way a grey image's do, with one window shared by the three channels.

Labels: each label is segmented on its own; a pixel takes the label with the highest
probability above 0.5 (as the trackers' label maps). ``slices.json`` beside the
predictions lists, per case and label, the slices prompted from the stored prompts and
how many were propagated.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything import SamPredictor
from skimage import transform
from tqdm import tqdm

from baselines.sam.model import build_sam
from baselines.sam.spec import SamSpec
from medsam2.data.frames import DEFAULT_CT_WINDOW, Intensity, slices, unslice
from medsam2.data.layout import StandardDataset, Volume, write_volume
from medsam2.data.prompts import SLICE_AXIS_3D, Prompt, box_prompt, click_prompt, load_prompts
from medsam2.predict import labels_from_scores


def as_sam_prompt(prompt: Prompt, gt_slice: np.ndarray | None) -> Prompt:
    """A stored prompt as SAM takes it: a box or clicks; a mask prompt becomes the tight
    box of its ground-truth slice."""
    if prompt.kind != "mask":
        return prompt
    if gt_slice is None:
        raise ValueError("a mask prompt needs the ground-truth slice")
    return box_prompt(gt_slice, prompt.frame)


def derived_prompt(kind: str, previous: np.ndarray, frame: int) -> Prompt:
    """The prompt of an unprompted slice from its neighbour's predicted mask."""
    if kind == "click":
        return click_prompt(previous, frame)
    return box_prompt(previous, frame)  # box, and mask tasks (prompted by boxes here)


def _coords(prompt: Prompt) -> np.ndarray:
    """Pixel indices -> continuous (x, y) at pixel centres, as the trackers feed SAM 2."""
    return np.asarray(prompt.points, dtype=np.float32).reshape(-1, 2) + 0.5


class SamSegmenter:
    """Meta's SAM through ``SamPredictor``: 8-bit RGB in, one probability map out.

    ``encode`` keeps what ``SamPredictor.set_image`` computes (features, input and
    original size) so that a slice visited by several labels is encoded once;
    ``probabilities`` puts it back on the predictor before asking it.
    """

    def __init__(self, model, multimask_click: bool = True):
        self.predictor = SamPredictor(model)
        self.multimask_click = multimask_click

    @staticmethod
    def to_uint8(frames01: np.ndarray) -> np.ndarray:
        return np.round(np.clip(frames01, 0, 1) * 255).astype(np.uint8)

    def encode(self, slice_u8: np.ndarray) -> tuple:
        """Encode one (H, W) grey slice (repeated to R, G, B) or (H, W, 3) colour image."""
        self.predictor.set_image(as_rgb_u8(slice_u8), "RGB")
        p = self.predictor
        return p.features, p.original_size, p.input_size

    @torch.no_grad()
    def probabilities(self, encoded: tuple, prompt: Prompt) -> np.ndarray:
        p = self.predictor
        p.features, p.original_size, p.input_size = encoded
        p.is_image_set = True
        coords = _coords(prompt)
        if prompt.labels == [2, 3]:
            logits, _, _ = p.predict(box=coords.reshape(4), multimask_output=False,
                                     return_logits=True)
            best = 0
        else:
            multi = self.multimask_click and len(prompt.points) == 1
            logits, scores, _ = p.predict(point_coords=coords,
                                          point_labels=np.asarray(prompt.labels),
                                          multimask_output=multi, return_logits=True)
            best = int(np.argmax(scores))
        return 1.0 / (1.0 + np.exp(-np.clip(logits[best], -50, 50)))


class MedSamSegmenter:
    """MedSAM as bowang-lab/MedSAM MedSAM_Inference.py feeds it (module docstring)."""

    def __init__(self, model):
        self.model = model
        self.size = int(model.image_encoder.img_size)  # 1024 for ViT-B
        self.device = next(model.parameters()).device

    @staticmethod
    def to_uint8(volume: np.ndarray, ct: bool, is_3d: bool) -> np.ndarray:
        """bowang-lab/MedSAM pre_CT_MR.py (3D) or a min-max scaled 2D image, 0-255."""
        a = np.asarray(volume, dtype=np.float32)
        zero = None
        if is_3d and ct:
            a = np.clip(a, *DEFAULT_CT_WINDOW)  # level 40, width 400
        elif is_3d and (a > 0).any():
            zero = a == 0
            lo, hi = np.percentile(a[a > 0], [0.5, 99.5])
            a = np.clip(a, lo, hi)
        lo, hi = float(a.min()), float(a.max())
        out = (a - lo) / max(hi - lo, 1e-8) * 255.0
        if zero is not None:
            out[zero] = 0
        return out.astype(np.uint8)

    @torch.no_grad()
    def encode(self, slice_u8: np.ndarray) -> tuple:
        img = as_rgb_u8(slice_u8)
        resized = transform.resize(img, (self.size, self.size), order=3, preserve_range=True,
                                   anti_aliasing=True).astype(np.uint8)
        resized = (resized - resized.min()) / np.clip(resized.max() - resized.min(), 1e-8, None)
        x = torch.tensor(resized, dtype=torch.float32).permute(2, 0, 1)[None].to(self.device)
        return self.model.image_encoder(x), slice_u8.shape[:2]

    @torch.no_grad()
    def probabilities(self, encoded: tuple, prompt: Prompt) -> np.ndarray:
        embedding, (h, w) = encoded
        coords = _coords(prompt) / np.array([w, h], dtype=np.float32) * self.size
        pts = torch.as_tensor(coords, dtype=torch.float32, device=self.device)
        if prompt.labels == [2, 3]:
            points, boxes = None, pts.reshape(1, 1, 4)
        else:
            labels = torch.as_tensor(prompt.labels, dtype=torch.int64, device=self.device)
            points, boxes = (pts[None], labels[None]), None
        sparse, dense = self.model.prompt_encoder(points=points, boxes=boxes, masks=None)
        low_res, _ = self.model.mask_decoder(
            image_embeddings=embedding, image_pe=self.model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
            multimask_output=False)
        prob = F.interpolate(torch.sigmoid(low_res), size=(h, w), mode="bilinear",
                             align_corners=False)
        return prob[0, 0].float().cpu().numpy()


def as_rgb_u8(slice_u8: np.ndarray) -> np.ndarray:
    """(H, W, 3) 8-bit RGB of an (H, W) grey slice (repeated) or a colour image (as is)."""
    if slice_u8.ndim == 3 and slice_u8.shape[-1] == 3:
        return slice_u8
    return np.repeat(slice_u8[..., None], 3, axis=-1)


class _Slices:
    """A case's 8-bit slices, each encoded on first use and kept for the other labels:
    (T, H, W), or (1, H, W, 3) for a colour image."""

    def __init__(self, segmenter, stack_u8: np.ndarray):
        self.segmenter, self.stack, self.cache = segmenter, stack_u8, {}

    def __len__(self) -> int:
        return len(self.stack)

    def probabilities(self, frame: int, prompt: Prompt) -> np.ndarray:
        if frame not in self.cache:
            self.cache[frame] = self.segmenter.encode(self.stack[frame])
        return self.segmenter.probabilities(self.cache[frame], prompt)


def segment_label(seq: _Slices, prompts: list[Prompt], target: np.ndarray | None,
                  propagate: bool) -> tuple[np.ndarray, dict]:
    """(T, H, W) probabilities of one label from its prompts on one axis (module
    docstring); ``target`` is the label's (T, H, W) ground truth for mask prompts."""
    n, (h, w) = len(seq), seq.stack.shape[1:3]
    probs = np.zeros((n, h, w), np.float32)
    prompted = {p.frame: p for p in prompts}
    for frame, prompt in prompted.items():
        gt = None if target is None else target[frame]
        probs[frame] = seq.probabilities(frame, as_sam_prompt(prompt, gt))
    propagated = 0
    if propagate and prompted:
        kind = prompts[0].kind
        frames = sorted(prompted)
        for i, f in enumerate(frames):
            # unprompted slices belong to their nearest prompted slice (ties: the lower)
            low = (frames[i - 1] + f) // 2 + 1 if i > 0 else 0
            high = (f + frames[i + 1]) // 2 if i + 1 < len(frames) else n - 1
            for step, stop in ((1, high), (-1, low)):
                previous = probs[f] > 0.5
                for z in range(f + step, stop + step, step):
                    if not previous.any():
                        break
                    probs[z] = seq.probabilities(z, derived_prompt(kind, previous, z))
                    previous = probs[z] > 0.5
                    propagated += 1
    return probs, {"prompted": sorted(prompted), "propagated": propagated}


def predict_case(segmenter, stack_u8: np.ndarray, case_prompts: dict[str, list[Prompt]],
                 label: np.ndarray | None, labels: dict[str, int], is_3d: bool,
                 propagate: bool) -> tuple[np.ndarray, dict]:
    """The label map of one image (``stack_u8`` (H, W), or (H, W, 3) colour) or volume
    (the volume's 8-bit array), and what was prompted per label."""
    shape = stack_u8.shape if is_3d else stack_u8.shape[:2]
    seq = _Slices(segmenter, slices(stack_u8, SLICE_AXIS_3D) if is_3d else stack_u8[None])
    scores, record = {}, {}
    for name, plist in case_prompts.items():
        on_axis = [p for p in plist if not is_3d or p.axis == SLICE_AXIS_3D]
        if not on_axis:
            raise ValueError(f"label '{name}': no prompt stored for axis {SLICE_AXIS_3D}")
        if not is_3d:
            on_axis = [replace(on_axis[0], frame=0)]
        target = None
        if any(p.kind == "mask" for p in on_axis):
            if label is None:
                raise ValueError("a mask prompt needs the ground-truth label")
            mask = label == labels[name]
            target = slices(mask, SLICE_AXIS_3D) if is_3d else mask[None]
        probs, record[name] = segment_label(seq, on_axis, target, propagate and is_3d)
        scores[labels[name]] = unslice(probs, SLICE_AXIS_3D, len(shape))
    return labels_from_scores(scores, shape), record


def make_segmenter(spec: SamSpec, checkpoint: Path | str | None, seed: int = 0):
    """The model of a spec on its device, wrapped for its family."""
    device = spec.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"  # the GPU SLURM gave the job
    model = build_sam(spec.arch, checkpoint, seed=seed, device=device)
    print(f"{spec.model} ({spec.arch}) on {device}, weights {checkpoint or 'random'}")
    if spec.model == "medsam_vit_b":
        return MedSamSegmenter(model)
    return SamSegmenter(model, spec.multimask_click)


def predict_dataset(spec: SamSpec, checkpoint: Path | str | None, dataset_dir: Path | str,
                    prompts_path: Path | str, out_dir: Path | str, seed: int = 0
                    ) -> list[Path]:
    """Write one prediction per test case (the prediction contract); returns their paths."""
    torch.manual_seed(seed)
    segmenter = make_segmenter(spec, checkpoint, seed)
    ds = StandardDataset(dataset_dir)
    prompts = load_prompts(prompts_path)["cases"]
    channel = next(iter(ds.meta["channel_names"].values()))
    intensity = Intensity.for_channel(channel)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, record = [], {}
    for case in tqdm(ds.cases("test"), desc=f"{spec.model} {ds.name}", unit="case"):
        image = ds.read_image(case)
        label = ds.read_label(case).array if case.label is not None else None
        is_3d = image.ndim == 3
        if isinstance(segmenter, MedSamSegmenter):
            u8 = segmenter.to_uint8(image.array, channel.upper() == "CT", is_3d)
        else:
            u8 = segmenter.to_uint8(intensity.apply(image.array))
        pred, record[case.case_id] = predict_case(
            segmenter, u8, prompts.get(case.case_id, {}), label, ds.labels, is_3d,
            spec.slices_3d == "propagate")
        written.append(write_volume(out_dir / f"{case.case_id}{ds.file_ending}",
                                    Volume(pred, image.affine), is_label=True))
    (out_dir / "slices.json").write_text(json.dumps(record, indent=1) + "\n")
    return written

