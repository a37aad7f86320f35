"""Segment a frame sequence (volume slices or a pseudo-video of 2D images) from prompts.

SAM 2's own ``SAM2VideoPredictor`` only reads JPEG folders or mp4 files; medical volumes
are tensors, so we drive the model directly: image features are computed in chunks of
frames (``ChunkedFeatures``; how many frames per encoder call is chosen per device,
``ENCODER_CHUNK``), the memory loop is sequential. Prompted frames are segmented first
without memory; the sequence is then tracked forward from the earliest prompted frame to
the end and backward to the start, as SAM 2 does. The memory policy is reset for each
direction.

Several objects of one sequence (the labels of a volume, each possibly in both frame
orders) are tracked together (``track_objects``): on each frame the objects that are on
it attend to their own memories in one batch, as SAM 2's video predictor batches its
objects, and their outputs equal those of tracking one object after the other
(tests/test_multi_object.py). The passes sweep the frames in order (all forward passes,
then all backward ones), so a bounded window of encoded frames serves every object.

Two details follow ``SAM2VideoPredictor`` so that, with the ``fifo`` policy, the masks and
logits are exactly SAM 2's (tests/test_sam2_equivalence.py): a prompted frame's memory is
encoded from its low-resolution output mask upsampled to the input size, as an interacted
frame (``is_mask_from_pts=True``: binarised when the model's
``binarize_mask_from_pts_for_mem_enc`` is set), whatever the prompt kind; and memory
features are stored in bfloat16 (half the memory of a long volume's bank).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

from medsam2.model.medsam2_base import MedSAM2Base
from medsam2.model.memory import MemoryPolicy, skip_draws

FrameInputs = tuple[dict | None, torch.Tensor | None]  # (point_inputs, mask_inputs)

#: frames per image-encoder call, by device type, as bench/vs_sam2.py measures it (its
#: ``encoder_chunk`` line; CPU seconds per frame, 1 thread, by frames per call). CPU:
#: hiera-tiny at 256 px 0.34-0.42 (1), 0.35-0.37 (4), 0.36-0.39 (16) over two runs on
#: shared cores; the demo's tiny arch at 224 px 0.026 (1), 0.023 (4), 0.024 (16): 4 is
#: within noise of the best for both and holds few frames. CUDA: 16 keeps the device busy;
#: not measured here yet (no GPU): ``bench/gpu_check.py`` prints the best on one.
ENCODER_CHUNK: dict[str, int] = {"cpu": 4, "cuda": 16}
#: bytes of encoded frames held at most (``ChunkedFeatures``): a 13-label CT at 1024 px
#: would otherwise hold every frame's features (~17 MB each with Hiera-B+) at once
FEATURE_BYTES = 4 * 2**30


def encoder_chunk(device: torch.device | str) -> int:
    """Frames per image-encoder call on ``device`` (``ENCODER_CHUNK``; 16 elsewhere)."""
    return ENCODER_CHUNK.get(torch.device(device).type, 16)


class ChunkedFeatures:
    """Backbone features of frame ``t`` on demand, ``chunk_size`` frames per encoder call
    (None: ``encoder_chunk`` of the model's device).

    Encoded chunks are held, least recently used dropped first, up to ``max_chunks`` or,
    with ``max_bytes``, as many as fit in that many bytes: a sweep over the frames then
    encodes each frame once, and a second sweep over a sequence that fits is free. The
    position encodings are the same for every frame: one copy is kept.
    """

    def __init__(self, model: MedSAM2Base, frames: torch.Tensor, chunk_size: int | None = None,
                 max_chunks: int = 2, max_bytes: int | None = None):
        self.model, self.frames = model, frames
        size = encoder_chunk(model.device) if chunk_size is None else chunk_size
        self.chunk_size, self.max_chunks = max(1, size), max(1, max_chunks)
        self.max_bytes = max_bytes
        self._chunks: OrderedDict[int, tuple] = OrderedDict()
        self.encoder_calls = 0

    def _chunk(self, index: int) -> tuple:
        if index in self._chunks:
            self._chunks.move_to_end(index)
            return self._chunks[index]
        start = index * self.chunk_size
        batch = self.frames[start:start + self.chunk_size].to(self.model.device)
        backbone_out = self.model.forward_image(batch)
        _, feats, pos, sizes = self.model._prepare_backbone_features(backbone_out)
        self.encoder_calls += 1
        self._chunks[index] = (feats, [p[:, :1] for p in pos], sizes)
        if self.max_bytes is not None and len(self._chunks) == 1:
            per_chunk = sum(f.numel() * f.element_size() for f in feats)
            self.max_chunks = max(2, self.max_bytes // max(1, per_chunk))
        while len(self._chunks) > self.max_chunks:
            self._chunks.popitem(last=False)
        return self._chunks[index]

    def __getitem__(self, t: int) -> tuple[list, list, list]:
        if not 0 <= t < len(self):
            raise IndexError(f"frame {t} outside the sequence of {len(self)} frames")
        feats, pos, sizes = self._chunk(t // self.chunk_size)
        i = t % self.chunk_size
        return [f[:, i:i + 1] for f in feats], pos, sizes

    def __len__(self) -> int:
        return self.frames.shape[0]

    @classmethod
    def for_passes(cls, model: MedSAM2Base, frames: torch.Tensor, passes: int,
                   chunk_size: int | None = None, max_bytes: int = FEATURE_BYTES,
                   ) -> ChunkedFeatures:
        """Features for ``passes`` passes over one sequence (every label of a volume, both
        directions). Encoded frames stay held up to ``max_bytes``: all of them for any
        sequence that fits, so each frame is encoded once. Even one pass needs that: it
        goes forward from its prompt to the end, then backward from the prompt, so a
        window of the last chunks would encode the frames round the prompt twice.
        """
        if passes < 1:
            raise ValueError(f"passes must be >= 1, got {passes}")
        return cls(model, frames, chunk_size, max_bytes=max_bytes)


class ReversedFeatures:
    """A sequence's features read back to front (frame t is the base's frame T-1-t), so
    that a reversed pass reuses the forward pass's encoder work."""

    def __init__(self, base: ChunkedFeatures):
        self.base = base

    def __getitem__(self, t: int) -> tuple[list, list, list]:
        return self.base[len(self.base) - 1 - t]

    def __len__(self) -> int:
        return len(self.base)


FrameFeatures = ChunkedFeatures | ReversedFeatures


def _phases(prompts: dict[int, FrameInputs], num_frames: int) -> tuple[list[int], list[int]]:
    """An object's tracked frames (its own frame order): forward from its earliest
    prompted frame, then backward from it."""
    start = min(prompts)
    return ([t for t in range(start + 1, num_frames) if t not in prompts],
            list(range(start - 1, -1, -1)))


def _unwrap(frames: torch.Tensor | FrameFeatures, model: MedSAM2Base,
            chunk_size: int | None) -> tuple[ChunkedFeatures, bool]:
    """The frames' features in their stored order, and whether ``frames`` reads them
    back to front."""
    if isinstance(frames, torch.Tensor):
        return ChunkedFeatures.for_passes(model, frames, 1, chunk_size), False
    if isinstance(frames, ReversedFeatures):
        return frames.base, True
    return frames, False


def track_objects(
    model: MedSAM2Base,
    features: ChunkedFeatures,
    objects: Sequence[dict[int, FrameInputs]],
    reverse: Sequence[bool],
    policies: Sequence[MemoryPolicy],
) -> Iterator[tuple[int, int, dict]]:
    """Track several objects of one sequence together; yield ``(object, frame, output)``.

    Object ``k`` is prompted with ``objects[k]`` (frame index -> model inputs) on the
    frames read in the order ``reverse[k]`` says (frame t is then stored frame T-1-t; its
    frame indices count in that order) and selects its memories with ``policies[k]``
    (``MemoryPolicy.spawn``; the same instance for two objects would mix their banks).
    Each object's frames come in its own order: prompted, forward, backward, exactly the
    steps of tracking it alone; across objects, all prompted frames come first, then the
    frames are swept up, down and up, and the objects on the same frame are batched
    (``MedSAM2Base.track_objects_step``).
    """
    if not objects:
        return
    if not (len(objects) == len(reverse) == len(policies)):
        raise ValueError(f"{len(objects)} objects, {len(reverse)} directions, "
                         f"{len(policies)} policies")
    if len({id(p) for p in policies}) < len(policies):
        raise ValueError("every object needs its own memory policy (MemoryPolicy.spawn)")
    num_frames = len(features)
    for prompts in objects:
        if not prompts:
            raise ValueError("at least one prompted frame is needed")
        bad = [f for f in prompts if not 0 <= f < num_frames]
        if bad:
            raise ValueError(f"prompted frames {bad} outside the sequence of {num_frames} frames")

    def stored(k: int, t: int) -> int:
        return num_frames - 1 - t if reverse[k] else t

    dicts = [{"cond_frame_outputs": {}, "non_cond_frame_outputs": {}} for _ in objects]
    shared: dict = {}  # one memory position encoding for all frames and objects
    for k, prompts in enumerate(objects):
        for f in sorted(prompts):
            point_inputs, mask_inputs = prompts[f]
            feats, pos, sizes = features[stored(k, f)]
            out = model.track_step(
                f, True, feats, pos, sizes, _to(point_inputs, model.device),
                None if mask_inputs is None else mask_inputs.to(model.device),
                dicts[k], num_frames, run_mem_encoder=False,
            )
            _encode_prompted_memory(model, out, feats, sizes)
            dicts[k]["cond_frame_outputs"][f] = _store(out, f, shared)
            yield k, f, out
    # (sweep, stored frame) -> [(object, its frame, backward?, first of its direction?)]
    events: dict[tuple[int, int], list[tuple[int, int, bool, bool]]] = {}
    for k, prompts in enumerate(objects):
        for backward, frames in enumerate(_phases(prompts, num_frames)):
            # stored frames go up in a forward object's forward pass, down in its backward
            # pass; a reversed object's forward pass goes down: sweeps up (0), down (1), up (2)
            sweep = int(backward) + int(reverse[k])
            for i, t in enumerate(frames):
                events.setdefault((sweep, stored(k, t)), []).append((k, t, bool(backward), i == 0))
    for sweep in range(3):
        order = range(num_frames - 1, -1, -1) if sweep == 1 else range(num_frames)
        for s in order:
            batch = events.get((sweep, s))
            if not batch:
                continue
            for k, _, _, first in batch:
                if first:
                    policies[k].reset()
            feats, pos, sizes = features[s]
            outs = model.track_objects_step(
                [t for _, t, _, _ in batch], feats, pos, sizes, [dicts[k] for k, *_ in batch],
                [policies[k] for k, *_ in batch], num_frames, [b for _, _, b, _ in batch],
            )
            for (k, t, _, _), out in zip(batch, outs):
                dicts[k]["non_cond_frame_outputs"][t] = _store(out, t, shared)
                yield k, t, out


def track(
    model: MedSAM2Base,
    frames: torch.Tensor | FrameFeatures,
    prompts: dict[int, FrameInputs],
    chunk_size: int | None = None,
) -> Iterator[tuple[int, dict]]:
    """Yield ``(frame_idx, output)`` for every frame of one object; outputs hold
    ``pred_masks`` logits.

    ``frames`` is (T, 3, S, S) normalised, or their features (``ChunkedFeatures.for_passes`` to
    share the encoder's work between several objects); ``prompts`` maps frame index ->
    model inputs. Prompted frames are yielded first, then forward, then backward frames.
    The model's own memory policy selects the memories (its random stream moves on).
    """
    features, reverse = _unwrap(frames, model, chunk_size)
    model.memory_policy.reset()
    for _, t, out in track_objects(model, features, [prompts], [reverse], [model.memory_policy]):
        yield t, out


@torch.inference_mode()
def segment_objects(
    model: MedSAM2Base,
    frames: torch.Tensor | FrameFeatures,
    objects: Sequence[dict[int, FrameInputs]],
    reverse: Sequence[bool] | None = None,
    chunk_size: int | None = None,
    bf16: bool = False,
) -> list[torch.Tensor]:
    """Low-resolution mask logits (T, 1, S/4, S/4) of each object (eval mode), tracked
    together (``track_objects``) with what ``segment_sequence`` gives for each object
    called one after the other, in the order of ``objects``.

    Random draws included: a resampling policy draws from one stream that each object
    continues where the one before it stopped. How far an object moves it depends on its
    masks (the confidence gate decides when its bank stops being empty), so each object
    starts from a guess (``MemoryPolicy.expected_draws``, exact when every frame enters
    the bank); an object whose guessed start turns out not to be where the object before
    it ended is tracked again from there, with the objects after it. The model's stream
    ends where the last object's ends.

    ``bf16``: run under bfloat16 autocast (a GPU's speed; the logits then differ from
    float32 ones, by ~1e-2). With ``compile_model`` the same call runs compiled parts.
    """
    model.eval()
    features, flipped = _unwrap(frames, model, chunk_size)
    reverse = [flipped != bool(r) for r in (reverse or [False] * len(objects))]
    root = model.memory_policy
    if len(objects) == 1:  # the model's own policy: its stream simply moves on
        root.reset()
        with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16):
            return _logits(track_objects(model, features, objects, reverse, [root]), 1,
                           len(features))
    logits: list[torch.Tensor | None] = [None] * len(objects)
    first = 0
    start = root.random_state()
    guesses = [root.expected_draws([len(p) for p in _phases(o, len(features))],
                                   model.num_maskmem) for o in objects]
    while first < len(objects):
        policies = []
        state = start
        for k in range(first, len(objects)):
            policy = root.spawn()
            if state is not None:
                policy.set_random_state(state)
                state = skip_draws(state, guesses[k])
            policies.append(policy)
        starts = [p.random_state() for p in policies]
        with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16):
            run = _logits(track_objects(model, features, objects[first:], reverse[first:],
                                        policies), len(policies), len(features))
        done = first
        for i, policy in enumerate(policies):
            # valid while each start is where the (valid) object before it ended
            if i > 0 and start is not None and not torch.equal(starts[i], start):
                break
            logits[first + i] = run[i]
            start = policy.random_state()
            done = first + i + 1
        for i, policy in enumerate(policies):
            guesses[first + i] = list(getattr(policy, "draws", []))
        first = done
    if start is not None:
        root.set_random_state(start)
    return logits  # type: ignore[return-value]


def compile_model(model: MedSAM2Base, mode: str | None = None) -> MedSAM2Base:
    """Compile the image encoder and the memory attention with ``torch.compile`` (their
    ``forward``, so checkpoints still load), as SAM 2's VOS-optimised predictor does; the
    memory attention with dynamic shapes (how many memories and objects varies). For a
    GPU: the first calls compile (minutes with ``mode="max-autotune"``); on a CPU this
    seldom pays."""
    model.image_encoder.forward = torch.compile(model.image_encoder.forward, mode=mode,
                                                fullgraph=True, dynamic=False)
    model.memory_attention.forward = torch.compile(model.memory_attention.forward, mode=mode,
                                                   fullgraph=True, dynamic=True)
    return model


def _logits(events: Iterator[tuple[int, int, dict]], num_objects: int, num_frames: int,
            ) -> list[torch.Tensor]:
    """Each object's (T, 1, S/4, S/4) logits from ``track_objects``' outputs."""
    per_object: list[dict[int, torch.Tensor]] = [{} for _ in range(num_objects)]
    for k, t, out in events:
        per_object[k][t] = out.pop("pred_masks").float().cpu()
        # later frames need the memory, pointer and scores only: free the masks now (13
        # labels x 300 slices of 256 x 256 logits at 1024 px: 1 GB of device memory)
        out.pop("pred_masks_high_res", None)
        out.pop("multistep_pred_multimasks", None)
    return [torch.cat([d[t] for t in range(num_frames)], dim=0) for d in per_object]


def segment_sequence(
    model: MedSAM2Base,
    frames: torch.Tensor | FrameFeatures,
    prompts: dict[int, FrameInputs],
    chunk_size: int | None = None,
    bf16: bool = False,
) -> torch.Tensor:
    """Low-resolution mask logits (T, 1, S/4, S/4) of one object (eval mode)."""
    return segment_objects(model, frames, [prompts], chunk_size=chunk_size, bf16=bf16)[0]


def _to(inputs: dict | None, device: torch.device) -> dict | None:
    if inputs is None:
        return None
    return {k: v.to(device) for k, v in inputs.items()}


def _encode_prompted_memory(model: MedSAM2Base, out: dict, feats: list, sizes: list) -> None:
    """A prompted frame's memory as ``SAM2VideoPredictor.propagate_in_video_preflight``
    encodes it: from the output mask the user sees, as an interacted frame."""
    if model.num_maskmem == 0:
        return
    high_res = F.interpolate(out["pred_masks"], size=(model.image_size, model.image_size),
                             mode="bilinear", align_corners=False)
    out["maskmem_features"], out["maskmem_pos_enc"] = model._encode_new_memory(
        current_vision_feats=feats, feat_sizes=sizes, pred_masks_high_res=high_res,
        object_score_logits=out["object_score_logits"], is_mask_from_pts=True,
    )


def _store(out: dict, frame_idx: int, shared: dict) -> dict:
    """Keep memory features in bfloat16, as ``SAM2VideoPredictor`` stores them, and one
    copy of the memory's position encoding (``shared``: it depends on the memory's shape
    only, and SAM 2's predictor keeps one too); note the frame (``memory_frames`` of later
    outputs name it)."""
    out["frame_idx"] = frame_idx
    if out.get("maskmem_features") is not None:
        out["maskmem_features"] = out["maskmem_features"].to(torch.bfloat16)
        pos = out["maskmem_pos_enc"]
        key = tuple((tuple(p.shape), p.dtype) for p in pos)
        out["maskmem_pos_enc"] = shared.setdefault(key, [p.clone() for p in pos])
    return out
