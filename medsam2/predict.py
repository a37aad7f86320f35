"""Predict the test split of a standard dataset with a MedSAM-2 / SAM 2 model.

3D: every foreground label is an object, prompted on its key slice (the interactive
protocol: also on the drawn slices) with the stored evaluation prompt
(``results/prompts/{dataset}.json``) and propagated through the volume in both
directions; the label map takes, per voxel, the label with the highest positive logit.
The image encoder runs once per frame, axis and view; only the memory loop runs per label
and direction. 2D: ``per_image`` prompts every test image on its own (a one-frame sequence);
``one_prompt`` is the paper's One-Prompt Segmentation: one prompted training image (the
template: per label one that contains it, chosen by the seed) followed by all test images
in a seeded order, segmented through memory alone (the interactive One-Prompt protocol
also prompts the test images its prompts file drew). A model's ``predict`` block may set
another input size than its training one, add mirrored views (averaged like the
orientations) and, in 3D, keep only the label pieces that connect to a prompted slice.
Predictions land in ``{out_dir}/{case}{file_ending}`` on the ground truth's grid.
"""

from __future__ import annotations

import argparse
import json
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from tqdm import tqdm

from medsam2.config import add_model_config_args, tracker_spec_from_args
from medsam2.data.frames import (
    Intensity,
    logits_to_original,
    sequence_axis,
    slices,
    to_model_frames,
    unslice,
)
from medsam2.data.layout import StandardDataset, Volume, write_volume
from medsam2.data.preprocess import crop_box
from medsam2.data.prompts import (
    EMPTY,
    SLICE_AXIS_3D,
    Prompt,
    empty_prompt,
    load_prompts,
    make_prompt,
)
from medsam2.model.build import build_from_spec
from medsam2.model.predictor import ChunkedFeatures, compile_model, segment_objects
from medsam2.spec import TrackerSpec

MODES_2D = ("per_image", "one_prompt")


def _intensity(ds: StandardDataset) -> Intensity:
    return Intensity.for_channel(next(iter(ds.meta["channel_names"].values())))


@dataclass(frozen=True)
class Orientations:
    """Which frame orders a 3D volume is segmented in, and how the results are fused.

    The paper segments 6 orientations (3 axes x forward/reversed) and aggregates them by
    averaging or voting: ``Orientations((0, 1, 2), reverse=True)``. Default: one axis.
    ``mirror`` adds views of every orientation (and of a 2D image) with the frames flipped
    along frame axes (0 rows, 1 columns), as nnU-Net mirrors its test inputs: SAM 2 is
    not equivariant to flips, and averaging the views evens out where a small tracker
    loses or overshoots an object (``predict.mirror`` of a model's config).
    """

    axes: tuple[int, ...] | None = None  # None: the volume's sequence axis
    reverse: bool = False
    fusion: str = "mean"  # mean of probabilities | vote (majority of binary masks)
    mirror: tuple[tuple[int, ...], ...] = ()  # extra views, e.g. ((0, 1),): turned 180 deg

    @property
    def views(self) -> tuple[tuple[int, ...], ...]:
        """Frame flips segmented per orientation: the frames as they are, then ``mirror``."""
        return ((), *self.mirror)

    @classmethod
    def from_spec(cls, spec: TrackerSpec) -> Orientations:
        """A tracker's ``orientations`` block with its ``predict.mirror`` views."""
        block = spec.orientations
        axes = None if block.axes is None else tuple(block.axes)
        return cls(axes, block.reverse, block.fusion, spec.predict.views)

    def axes_for(self, spacing: tuple[float, ...] | None) -> tuple[int, ...]:
        """The axes segmented for a volume of this spacing: those set, else its sequence
        axis (``frames.sequence_axis``, the axis its prompts and training slice along)."""
        if self.axes is not None:
            return self.axes
        return (SLICE_AXIS_3D if spacing is None else sequence_axis(spacing),)

    def fuse(self, logits: list[np.ndarray]) -> np.ndarray:
        """Foreground score in [0, 1] from per-orientation logits."""
        if self.fusion == "vote":
            return np.mean([lg > 0 for lg in logits], axis=0)
        return np.mean([1.0 / (1.0 + np.exp(-np.clip(lg, -50, 50))) for lg in logits], axis=0)


def labels_from_scores(scores: dict[int, np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """Label map: the label value with the largest score > 0.5 per voxel, else 0."""
    out = np.zeros(shape, np.uint8)
    if not scores:
        return out
    values = np.array(list(scores), dtype=np.uint8)
    stack = np.stack([scores[v] for v in scores])
    best = stack.argmax(axis=0)
    return np.where(stack.max(axis=0) > 0.5, values[best], 0).astype(np.uint8)


class _Sequence:
    """One frame sequence (a volume's slices along one axis, or one 2D image), prepared
    once for every label and direction that is segmented on it.

    With ``crop`` the frames are cut to their non-zero region first (as in training with
    ``medsam2 preprocess``) and the logits pasted back; outside the region is background.
    With ``passes`` > 1 the image features stay held, so the encoder runs once per frame
    instead of once per label and direction (a 13-organ BTCV volume in the paper's 6
    orientations: 78 passes over each axis's frames, 1 encoding).
    """

    def __init__(self, model, stack01: np.ndarray, image_size: int, chunk_size: int | None,
                 crop: bool, passes: int, mirror: tuple[int, ...] = ()):
        # (T, H, W), or (T, H, W, 3) for a colour image
        self.model, self.image_size, self.full_hw = model, image_size, stack01.shape[1:3]
        self.view = tuple(mirror)  # frame axes flipped: 0 rows, 1 columns
        self.stack_axes = tuple(1 + a for a in self.view)  # the same in the (T, H, W) stack
        if self.view:
            stack01 = np.ascontiguousarray(np.flip(stack01, self.stack_axes))
        self.box = crop_box(stack01) if crop else None
        if self.box is not None:
            rows, cols = self.box
            stack01 = stack01[:, rows, cols]
        self.hw = stack01.shape[1:3]
        frames = to_model_frames(stack01, image_size)
        self.features = ChunkedFeatures.for_passes(model, frames, passes, chunk_size)

    def logits(self, prompts: list[Prompt], gt_slices: list[np.ndarray | None],
               reverse: bool = False) -> np.ndarray:
        """(T, H, W) logits prompted on the prompts' frames (usually one, the key slice;
        more in the interactive setting), the frames taken in reverse if asked.
        ``gt_slices[i]`` is the ground-truth slice of a mask prompt, else None."""
        return self.logits_of([(prompts, gt_slices, reverse)])[0]

    def logits_of(self, objects: list[tuple[list[Prompt], list[np.ndarray | None], bool]],
                  ) -> list[np.ndarray]:
        """``logits`` of several objects (prompts, ground-truth slices, reverse), tracked
        together; the same as one ``logits`` call per object in this order."""
        inputs = [self._inputs(prompts, gt_slices, reverse)
                  for prompts, gt_slices, reverse in objects]
        lows = segment_objects(self.model, self.features, inputs, [r for *_, r in objects])
        return [self._to_frames(low, reverse) for low, (*_, reverse) in zip(lows, objects)]

    def _inputs(self, prompts: list[Prompt], gt_slices: list[np.ndarray | None],
                reverse: bool) -> dict:
        """Model inputs per frame (counted in reverse if asked) of one object's prompts."""
        if len(prompts) != len(gt_slices):
            raise ValueError(f"{len(prompts)} prompts but {len(gt_slices)} ground-truth slices")
        n = len(self.features)
        inputs = {}
        for prompt, gt_slice in zip(prompts, gt_slices):
            if self.view:
                prompt = mirror_prompt(prompt, self.view, self.full_hw)
                gt_slice = None if gt_slice is None else np.ascontiguousarray(
                    np.flip(gt_slice, self.view))
            if self.box is not None:
                rows, cols = self.box
                gt_slice = None if gt_slice is None else gt_slice[rows, cols]
                prompt = replace(prompt, points=[[x - cols.start, y - rows.start]
                                                 for x, y in prompt.points])
            frame = n - 1 - prompt.frame if reverse else prompt.frame
            inputs[frame] = prompt.model_inputs(self.hw, self.image_size, gt_slice)
        return inputs

    def _to_frames(self, low: torch.Tensor, reverse: bool) -> np.ndarray:
        """(T, H, W) logits on the sequence's frames from the low-resolution ones."""
        logits = logits_to_original(low, self.hw).numpy()
        logits = logits[::-1] if reverse else logits
        if self.box is not None:
            rows, cols = self.box
            out = np.full((len(logits), *self.full_hw), -20.0, dtype=np.float32)
            out[:, rows, cols] = logits
            logits = out
        if not self.view:
            return logits
        return np.ascontiguousarray(np.flip(logits, self.stack_axes))


def mirror_prompt(prompt: Prompt, axes: tuple[int, ...], hw: tuple[int, int]) -> Prompt:
    """``prompt`` on its (H, W) frame flipped along ``axes`` (0 rows, 1 columns): points
    move to the mirrored pixels, a box keeps its top-left corner first."""
    pts = np.array(prompt.points, dtype=float).reshape(-1, 2)  # (x, y) pixel indices
    h, w = hw
    if 1 in axes:
        pts[:, 0] = w - 1 - pts[:, 0]
    if 0 in axes:
        pts[:, 1] = h - 1 - pts[:, 1]
    if prompt.labels == [2, 3]:  # box corners
        pts = np.stack([pts.min(axis=0), pts.max(axis=0)])
    return replace(prompt, points=pts.tolist())


def predict_volume(model, image: np.ndarray, intensity: Intensity, prompts: dict,
                   label: np.ndarray | None, labels: dict[str, int], image_size: int,
                   orientations: Orientations = Orientations(), chunk_size: int | None = None,
                   crop: bool = False, connected_to_prompt: bool = False,
                   spacing: tuple[float, ...] | None = None) -> np.ndarray:
    """Label map of one 3D image from per-label prompts: per axis the key slice's, and in
    the interactive setting those of further slices; with ``connected_to_prompt`` each
    label then keeps only what connects to its prompted slices
    (:func:`keep_prompted_components`). ``chunk_size``: frames per encoder call (None:
    the device's, ``medsam2.model.predictor.ENCODER_CHUNK``)."""
    norm = intensity.apply(image)
    logits: dict[str, list[np.ndarray]] = {name: [] for name in prompts}
    directions = (False, True) if orientations.reverse else (False,)
    axes = orientations.axes_for(spacing)
    for axis in axes:
        inputs = {}  # label -> (its prompts on this axis, GT slices of its mask prompts)
        for name, plist in prompts.items():
            on_axis = [p for p in plist if p.axis == axis]
            if not on_axis:
                raise ValueError(f"label '{name}': no prompt stored for axis {axis}")
            needs_gt = any(p.kind == "mask" for p in on_axis)
            if needs_gt and label is None:
                raise ValueError("a mask prompt needs the ground-truth label")
            target = label == labels[name] if needs_gt else None
            inputs[name] = (on_axis, [np.take(target, p.frame, axis=axis)
                                      if p.kind == "mask" else None for p in on_axis])
        # encoded once per axis and view, shared by every label and direction
        for view in orientations.views:
            seq = _Sequence(model, slices(norm, axis), image_size, chunk_size, crop,
                            passes=len(prompts) * len(directions), mirror=view)
            objects = [(name, (on_axis, gt_slices, reverse))
                       for name, (on_axis, gt_slices) in inputs.items() for reverse in directions]
            for (name, _), lg in zip(objects, seq.logits_of([o for _, o in objects])):
                logits[name].append(unslice(lg, axis, 3))
    scores = {labels[name]: orientations.fuse(lgs) for name, lgs in logits.items()}
    pred = labels_from_scores(scores, image.shape)
    if connected_to_prompt:
        used = {name: [p for p in plist if p.axis in axes and p.kind != EMPTY]
                for name, plist in prompts.items()}
        pred = keep_prompted_components(pred, used, labels)
    return pred


def keep_prompted_components(pred: np.ndarray, prompts: dict[str, list[Prompt]],
                             labels: dict[str, int]) -> np.ndarray:
    """Each prompted label keeps only its connected components (face-connected) that
    reach one of its prompted slices; the rest becomes background.

    Why: a tracker follows the one object it was prompted on, so label voxels that
    connect to no prompted slice are stray detections (specks on far slices, a look-alike
    picked up after the object was lost). nnU-Net's postprocessing keeps the largest
    component where validation says it helps; anchoring on the prompt needs no such
    choice. A label that kept none of its prompted slices (another label won them in the
    fusion) is left as it is.
    """
    out = pred.copy()
    for name, plist in prompts.items():
        value = labels[name]
        components, n = ndimage.label(pred == value)
        if n <= 1:
            continue
        reached = {int(c) for p in plist
                   for c in np.unique(np.take(components, p.frame, axis=p.axis))} - {0}
        if reached:
            out[(components > 0) & ~np.isin(components, sorted(reached))] = 0
    return out


def predict_dataset(
    spec: TrackerSpec,
    checkpoint: Path | None,
    dataset_dir: Path,
    prompts_path: Path,
    out_dir: Path,
    seed: int = 0,
    mode_2d: str = "per_image",
) -> list[Path]:
    """Write one prediction per test case; returns their paths.

    ``spec`` is the tracker as it predicts this dataset (``TrackerSpec.for_dataset``, as
    the workflow hands it): its ``predict`` options apply as they are.
    """
    if spec.predict.datasets is not None:
        raise ValueError("predict.datasets: choose the dataset's options first "
                         "(TrackerSpec.for_dataset; the workflow does)")
    if mode_2d not in MODES_2D:
        raise ValueError(f"mode_2d must be one of {MODES_2D}, got '{mode_2d}'")
    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"  # the GPU SLURM gave the job
    model = build_from_spec(spec.prediction_spec(), seed, checkpoint, device)
    image_size = model.image_size
    print(f"predict {dataset_dir} on {device} at {image_size} px"
          + (" (bf16)" if spec.predict.bf16 else "")
          + (" (compiled)" if spec.predict.compile else ""))
    model.eval()
    if spec.predict.compile:
        compile_model(model)
    with torch.autocast(device, dtype=torch.bfloat16, enabled=spec.predict.bf16):
        return _predict_cases(spec, model, dataset_dir, prompts_path, out_dir, seed, mode_2d)


def _predict_cases(spec: TrackerSpec, model, dataset_dir: Path, prompts_path: Path,
                   out_dir: Path, seed: int, mode_2d: str) -> list[Path]:
    """The per-case loop of :func:`predict_dataset` (one model, one autocast setting)."""
    image_size = model.image_size
    ds = StandardDataset(dataset_dir)
    stored = load_prompts(prompts_path)
    prompts = stored["cases"]
    intensity = _intensity(ds)
    orientations = Orientations.from_spec(spec)
    crop = spec.preprocess is not None and spec.preprocess.crop  # as in training
    out_dir.mkdir(parents=True, exist_ok=True)
    cases = ds.cases("test")
    written = []
    if not ds.is_3d and mode_2d == "one_prompt":
        return _one_prompt_2d(model, ds, prompts, intensity, image_size, out_dir, seed,
                              stored.get("drawn"), crop)
    if stored.get("protocol") == "interactive_one_prompt":
        raise ValueError(f"{prompts_path}: interactive One-Prompt prompts, but mode_2d is "
                         f"'{mode_2d}' on {'3D' if ds.is_3d else '2D'} data")
    for case in tqdm(cases, desc=f"predict {ds.name}", unit="case"):
        image = ds.read_image(case)
        label = ds.read_label(case).array if case.label is not None else None
        if case.case_id not in prompts:  # a stale prompts file: no prediction, and the
            # evaluation reports the case as an error (a blank map would score as a miss)
            print(f"WARNING: {prompts_path}: no prompts for case {case.case_id}; "
                  "not predicted")
            continue
        case_prompts = prompts[case.case_id]
        if image.ndim == 3:
            pred = predict_volume(model, image.array, intensity, case_prompts, label,
                                  ds.labels, image_size, orientations, crop=crop,
                                  connected_to_prompt=spec.predict.connected_to_prompt,
                                  spacing=image.spacing)
        else:
            pred = _predict_image(model, image.array, intensity, case_prompts, label,
                                  ds.labels, image_size, crop, orientations)
        written.append(write_volume(out_dir / f"{case.case_id}{ds.file_ending}",
                                    Volume(pred, image.affine), is_label=True))
    return written


def _predict_image(model, image, intensity, prompts, label, labels, image_size,
                   crop: bool = False, orientations: Orientations = Orientations(),
                   ) -> np.ndarray:
    """One 2D image ((H, W) grey or (H, W, 3) colour), each label prompted on the image
    itself (in each mirrored view)."""
    frame = intensity.apply(image)[None]
    gts = {name: None if label is None else label == labels[name] for name in prompts}
    logits: dict[str, list[np.ndarray]] = {name: [] for name in prompts}
    for view in orientations.views:
        seq = _Sequence(model, frame, image_size, 1, crop, len(prompts), mirror=view)
        names = list(prompts)
        for name, lg in zip(names, seq.logits_of([([prompts[n][0]], [gts[n]], False)
                                                  for n in names])):
            logits[name].append(lg[0])
    scores = {labels[name]: orientations.fuse(lgs) for name, lgs in logits.items()}
    return labels_from_scores(scores, image.shape[:2])


def _one_prompt_2d(model, ds, prompts, intensity, image_size, out_dir, seed,
                   drawn: dict[str, list[str]] | None = None, crop: bool = False) -> list[Path]:
    """One prompted training template, then every test image through memory only (in the
    interactive One-Prompt protocol, the ``drawn`` test images prompted too); with
    ``crop`` each image cut as the training cache cuts it (:class:`ImageFrame`)."""
    rng = np.random.default_rng(seed)
    templates = choose_templates(ds, rng, seed)
    tests = [ds.cases("test")[i] for i in rng.permutation(len(ds.cases("test")))]
    images = [ds.read_image(c) for c in tests]
    norms = [intensity.apply(im.array) for im in images]
    cuts = [ImageFrame.of(n, crop) for n in norms]
    test_frames = [c.frame(n, image_size) for c, n in zip(cuts, norms)]
    kind = next((ps[0].kind for c in prompts.values() for ps in c.values()), "box")
    per_label = {}
    for template, names in _by_template(templates).items():
        t_img = ds.read_image(template).array
        t_lab = ds.read_label(template).array
        t_norm = intensity.apply(t_img)
        t_cut = ImageFrame.of(t_norm, crop)
        frames = torch.cat([t_cut.frame(t_norm, image_size), *test_frames])
        # the labels sharing a template run through one pseudo-video, tracked together
        features = ChunkedFeatures.for_passes(model, frames, passes=len(names))
        values, inputs = [], []
        for name in names:
            value = ds.labels[name]
            mask = t_lab == value
            prompt = make_prompt(kind, mask, 0)
            values.append(value)
            inputs.append({0: t_cut.inputs(prompt, image_size, mask),
                           **drawn_inputs(ds, tests, prompts, drawn, value, image_size, cuts)})
        per_label.update(zip(values, segment_objects(model, features, inputs), strict=True))
    written = []
    for i, (case, image) in enumerate(zip(tests, images), start=1):
        scores = {v: Orientations().fuse([cuts[i - 1].paste(lo[i:i + 1])])
                  for v, lo in per_label.items()}
        pred = labels_from_scores(scores, image.shape)
        written.append(write_volume(out_dir / f"{case.case_id}{ds.file_ending}",
                                    Volume(pred, image.affine), is_label=True))
    chosen = {name: None if case is None else case.case_id for name, case in templates.items()}
    (out_dir / "one_prompt_template.json").write_text(json.dumps({
        "template": next((c for c in chosen.values() if c is not None), None),
        "templates": chosen, "no_template": [n for n, c in chosen.items() if c is None],
        "order": [c.case_id for c in tests]}) + "\n")
    return written


def choose_templates(ds: StandardDataset, rng: np.random.Generator, seed: int) -> dict:
    """Label name -> the training case that is its One-Prompt template, drawn (seeded)
    among the training images that contain the label; None where none does.

    A template without the label would leave that label unpredicted on every test image.
    One draw among all training images comes first, and a label it contains keeps it
    (so a single-label set draws as it always did); a label it lacks draws again among
    the images that contain it, from its own seeded stream. Either way each label's
    template is uniform over the training images that contain it. A label with none is
    printed and recorded (``no_template`` in one_prompt_template.json), never hidden."""
    train = ds.cases("train")
    if not train:
        raise ValueError(f"{ds.root}: one_prompt mode needs a training image as template")
    first = train[int(rng.integers(len(train)))]
    present = {}  # case id -> label values it shows (read only when needed)

    def shows(case, value: int) -> bool:
        if case.case_id not in present:
            present[case.case_id] = set(np.unique(ds.read_label(case).array).tolist())
        return value in present[case.case_id]

    out = {}
    for name, value in ds.labels.items():
        if shows(first, value):
            out[name] = first
            continue
        having = [c for c in train if shows(c, value)]
        if not having:
            print(f"{ds.root}: no training image contains label '{name}': it has no "
                  "One-Prompt template and is not predicted")
            out[name] = None
            continue
        own = np.random.default_rng([seed, zlib.crc32(name.encode())])
        out[name] = having[int(own.integers(len(having)))]
    return out


def _by_template(templates: dict) -> dict:
    """Template case -> the label names it serves (labels without one left out)."""
    groups: dict = {}
    for name, case in templates.items():
        if case is not None:
            groups.setdefault(case, []).append(name)
    return groups


def drawn_inputs(ds: StandardDataset, tests: list, prompts: dict, drawn: dict | None,
                 value: int, image_size: int, cuts: list | None = None) -> dict[int, tuple]:
    """Interactive One-Prompt: frame (1 + position in ``tests``) -> model inputs of the
    test images drawn for the label of ``value`` (``drawn``: case -> label names, from
    the prompts file). A drawn image that shows the label gets its stored prompt; one
    that lacks it an empty mask, as a drawn 3D slice without the object. No ``drawn``
    (pure One-Prompt): none. ``cuts``: each test image's :class:`ImageFrame`."""
    if not drawn:
        return {}
    name = next(n for n, v in ds.labels.items() if v == value)
    out = {}
    for i, case in enumerate(tests, start=1):
        if name not in drawn.get(case.case_id, ()):
            continue
        stored = prompts.get(case.case_id, {}).get(name)
        if not stored:
            out[i] = empty_prompt(0).model_inputs((1, 1), image_size)
            continue
        prompt = stored[0]
        gt = ds.read_label(case).array == value if prompt.kind == "mask" else None
        if cuts is not None:
            out[i] = cuts[i - 1].inputs(prompt, image_size, gt)
            continue
        hw = gt.shape if gt is not None else ds.read_image(case).array.shape[:2]
        out[i] = prompt.model_inputs(hw, image_size, gt)
    return out


@dataclass(frozen=True)
class ImageFrame:
    """A 2D image as a One-Prompt frame: with ``box`` cut to its non-zero region, as
    ``medsam2 preprocess`` cuts each training image (``crop_box``), so a model trained on
    cropped frames sees cropped frames; prompts move with the cut and logits are pasted
    back (background outside), as :class:`_Sequence` does for volumes and per-image runs.
    A colour image ((H, W, 3)) is cut where any channel is non-zero."""

    hw: tuple[int, int]  # the full image
    box: tuple[slice, slice] | None = None

    @classmethod
    def of(cls, norm: np.ndarray, crop: bool) -> ImageFrame:
        return cls(norm.shape[:2], crop_box(norm[None]) if crop else None)

    def cut(self, array: np.ndarray) -> np.ndarray:
        return array if self.box is None else array[self.box[0], self.box[1]]

    def frame(self, norm: np.ndarray, image_size: int) -> torch.Tensor:
        """(1, 3, S, S) model input of the (cut) image."""
        return to_model_frames(self.cut(norm)[None], image_size)

    def inputs(self, prompt: Prompt, image_size: int, gt: np.ndarray | None = None) -> tuple:
        """``prompt`` (full-image pixels) as model inputs on the cut frame."""
        hw = self.cut(np.empty(self.hw, bool)).shape
        if self.box is not None:
            rows, cols = self.box
            prompt = replace(prompt, points=[[x - cols.start, y - rows.start]
                                             for x, y in prompt.points])
        return prompt.model_inputs(hw, image_size, None if gt is None else self.cut(gt))

    def paste(self, logits: torch.Tensor) -> np.ndarray:
        """(1, 1, h, w) logits of the cut frame -> (H, W) logits of the full image."""
        hw = self.cut(np.empty(self.hw, bool)).shape
        out = logits_to_original(logits, hw).numpy()[0]
        if self.box is None:
            return out
        full = np.full(self.hw, -20.0, dtype=np.float32)
        full[self.box[0], self.box[1]] = out
        return full


def _cli(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    predict_dataset(tracker_spec_from_args(args), args.checkpoint, args.dataset_dir,
                    args.prompts, args.out_dir, seed=args.seed, mode_2d=args.mode_2d)
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("predict", help="predict a dataset's test split with MedSAM-2/SAM 2")
    add_model_config_args(p)
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="trained or official checkpoint (none: random init, for smoke tests)")
    p.add_argument("--dataset-dir", required=True, type=Path)
    p.add_argument("--prompts", required=True, type=Path)
    p.add_argument("--out-dir", required=True, type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mode-2d", choices=MODES_2D, default="per_image")
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=_cli)
