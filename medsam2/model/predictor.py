"""Segment a frame sequence (volume slices or a pseudo-video of 2D images) from prompts.

SAM 2's own ``SAM2VideoPredictor`` only reads JPEG folders or mp4 files; medical volumes
are tensors, so we drive the model directly: image features are computed in chunks (the
image encoder is batched, and at most ``max_chunks`` chunks of features are held), the
memory loop is sequential. Prompted frames are segmented first without memory; the
sequence is then tracked forward from the earliest prompted frame to the end and backward
to the start, as SAM 2 does. The memory policy is reset for each direction.

Two details follow ``SAM2VideoPredictor`` so that, with the ``fifo`` policy, the masks and
logits are exactly SAM 2's (tests/test_sam2_equivalence.py): a prompted frame's memory is
encoded from its low-resolution output mask upsampled to the input size, as an interacted
frame (``is_mask_from_pts=True``: binarised when the model's
``binarize_mask_from_pts_for_mem_enc`` is set), whatever the prompt kind; and memory
features are stored in bfloat16 (half the memory of a long volume's bank).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from medsam2.model.medsam2_base import MedSAM2Base

FrameInputs = tuple[dict | None, torch.Tensor | None]  # (point_inputs, mask_inputs)


class ChunkedFeatures:
    """Backbone features of frame ``t`` on demand, ``chunk_size`` frames per encoder call."""

    def __init__(self, model: MedSAM2Base, frames: torch.Tensor, chunk_size: int = 16,
                 max_chunks: int = 2):
        self.model, self.frames = model, frames
        self.chunk_size, self.max_chunks = max(1, chunk_size), max(1, max_chunks)
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
        self._chunks[index] = (feats, pos, sizes)
        while len(self._chunks) > self.max_chunks:
            self._chunks.popitem(last=False)
        return self._chunks[index]

    def __getitem__(self, t: int) -> tuple[list, list, list]:
        feats, pos, sizes = self._chunk(t // self.chunk_size)
        i = t % self.chunk_size
        return [f[:, i:i + 1] for f in feats], [p[:, i:i + 1] for p in pos], sizes

    def __len__(self) -> int:
        return self.frames.shape[0]

    @classmethod
    def for_passes(cls, model: MedSAM2Base, frames: torch.Tensor, passes: int,
                   chunk_size: int = 16) -> ChunkedFeatures:
        """Features for ``passes`` passes over one sequence (every label of a volume, both
        directions). With more than one pass they stay held once computed, so each frame
        is encoded once; memory: all frames' features (at 1024 px with Hiera-B+, ~17 MB
        per frame in float32), for the life of the object. One pass keeps the default
        bound of ``max_chunks`` chunks.
        """
        if passes <= 1:
            return cls(model, frames, chunk_size)
        return cls(model, frames, chunk_size, max_chunks=-(-frames.shape[0] // max(1, chunk_size)))


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


def track(
    model: MedSAM2Base,
    frames: torch.Tensor | FrameFeatures,
    prompts: dict[int, FrameInputs],
    chunk_size: int = 16,
) -> Iterator[tuple[int, dict]]:
    """Yield ``(frame_idx, output)`` for every frame; outputs hold ``pred_masks`` logits.

    ``frames`` is (T, 3, S, S) normalised, or their features (``ChunkedFeatures.for_passes`` to
    share the encoder's work between several objects); ``prompts`` maps frame index ->
    model inputs. Prompted frames are yielded first, then forward, then backward frames.
    """
    if not prompts:
        raise ValueError("at least one prompted frame is needed")
    if isinstance(frames, torch.Tensor):
        features: FrameFeatures = ChunkedFeatures(model, frames, chunk_size)
    else:
        features = frames
    num_frames = len(features)
    bad = [f for f in prompts if not 0 <= f < num_frames]
    if bad:
        raise ValueError(f"prompted frames {bad} outside the sequence of {num_frames} frames")
    output_dict: dict[str, dict[int, dict]] = {"cond_frame_outputs": {},
                                                "non_cond_frame_outputs": {}}
    model.memory_policy.reset()
    for f in sorted(prompts):
        point_inputs, mask_inputs = prompts[f]
        feats, pos, sizes = features[f]
        out = model.track_step(
            f, True, feats, pos, sizes, _to(point_inputs, model.device),
            None if mask_inputs is None else mask_inputs.to(model.device),
            output_dict, num_frames, run_mem_encoder=False,
        )
        _encode_prompted_memory(model, out, feats, sizes)
        output_dict["cond_frame_outputs"][f] = _store(out)
        yield f, out
    start = min(prompts)
    for reverse, order in ((False, range(start + 1, num_frames)),
                           (True, range(start - 1, -1, -1))):
        model.memory_policy.reset()
        for t in order:
            if t in output_dict["cond_frame_outputs"] or t in output_dict["non_cond_frame_outputs"]:
                continue
            feats, pos, sizes = features[t]
            out = model.track_step(t, False, feats, pos, sizes, None, None, output_dict,
                                   num_frames, track_in_reverse=reverse)
            output_dict["non_cond_frame_outputs"][t] = _store(out)
            yield t, out


@torch.inference_mode()
def segment_sequence(
    model: MedSAM2Base,
    frames: torch.Tensor | FrameFeatures,
    prompts: dict[int, FrameInputs],
    chunk_size: int = 16,
) -> torch.Tensor:
    """Low-resolution mask logits (T, 1, S/4, S/4) for the whole sequence (eval mode)."""
    model.eval()
    logits: dict[int, torch.Tensor] = {}
    for t, out in track(model, frames, prompts, chunk_size):
        logits[t] = out["pred_masks"].float().cpu()
        # what later frames need is in the output dict; free the high-res copy now
        out.pop("pred_masks_high_res", None)
        out.pop("multistep_pred_multimasks", None)
    return torch.cat([logits[t] for t in range(len(logits))], dim=0)


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


def _store(out: dict) -> dict:
    """Keep memory features in bfloat16, as ``SAM2VideoPredictor`` stores them."""
    if out.get("maskmem_features") is not None:
        out["maskmem_features"] = out["maskmem_features"].to(torch.bfloat16)
    return out
