"""MedSAM-2 = Meta's ``SAM2Base`` with a pluggable memory-selection policy.

We subclass instead of forking: only the memory selection of
``_prepare_memory_conditioned_features`` changes (it asks ``self.memory_policy`` which
non-conditioning frames to attend to), and ``track_step`` also returns what training and
the self-sorting bank need (predicted IoUs, multimask logits, object scores). With
``FifoPolicy`` the model computes exactly what ``SAM2Base`` computes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from sam2.modeling.sam2_base import SAM2Base
from sam2.modeling.sam2_utils import get_1d_sine_pe, select_closest_cond_frames

from medsam2.model.memory import FifoPolicy, MemoryPolicy, MemoryQuery


class MedSAM2Base(SAM2Base):
    """SAM 2 whose memory bank is chosen by a ``MemoryPolicy`` (default: SAM 2's FIFO)."""

    def __init__(self, *args: Any, memory_policy: MemoryPolicy | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.memory_policy: MemoryPolicy = memory_policy or FifoPolicy()

    # -- memory conditioning -------------------------------------------------------------
    def _prepare_memory_conditioned_features(
        self,
        frame_idx,
        is_init_cond_frame,
        current_vision_feats,
        current_vision_pos_embeds,
        feat_sizes,
        output_dict,
        num_frames,
        track_in_reverse=False,
    ):
        if self.num_maskmem == 0 or is_init_cond_frame:
            # no memory to choose from: SAM 2's own path (no-memory embedding)
            return super()._prepare_memory_conditioned_features(
                frame_idx, is_init_cond_frame, current_vision_feats,
                current_vision_pos_embeds, feat_sizes, output_dict, num_frames,
                track_in_reverse,
            )
        memory, memory_pos, num_ptr_tokens, _ = self._select_memories(
            frame_idx, current_vision_feats[-1], output_dict, num_frames, track_in_reverse,
            self.memory_policy,
        )
        return self._attend_to_memories(current_vision_feats, current_vision_pos_embeds,
                                        feat_sizes, memory, memory_pos, num_ptr_tokens)

    def _select_memories(
        self,
        frame_idx: int,
        current_feats: torch.Tensor,
        output_dict: dict,
        num_frames: int,
        track_in_reverse: bool,
        policy: MemoryPolicy,
    ) -> tuple[torch.Tensor, torch.Tensor, int, list]:
        """The memory tokens for ``frame_idx``: (M, B, C) features, their (M, B, C) positions,
        how many of the M are object pointers (the last ones) and the ``frame_idx`` entries
        of the outputs ``policy`` chose; B is the batch of ``current_feats`` (HW, B, C),
        whose outputs share one ``output_dict``.

        The prompted frames come first, then what ``policy`` chooses, then the pointers.
        Separate from the attention so that several objects, each with its own bank and
        policy, can attend in one batch (``track_objects_step``).
        """
        device = current_feats.device
        cond_outputs = output_dict["cond_frame_outputs"]
        if not cond_outputs:
            raise RuntimeError(f"frame {frame_idx}: no prompted frame to track from")
        selected_cond, unselected_cond = select_closest_cond_frames(
            frame_idx, cond_outputs, self.max_cond_frames_in_attn
        )
        query = MemoryQuery(
            frame_idx=frame_idx,
            output_dict=output_dict,
            unselected_cond_outputs=unselected_cond,
            track_in_reverse=track_in_reverse,
            num_maskmem=self.num_maskmem,
            stride=1 if self.training else self.memory_temporal_stride_for_eval,
            current_feats=current_feats,
        )
        chosen = policy.select(query)
        entries = [(0, out) for out in selected_cond.values()] + chosen

        memory, memory_pos = [], []
        for t_pos, out in entries:
            memory.append(out["maskmem_features"].to(device).flatten(2).permute(2, 0, 1))
            pos = out["maskmem_pos_enc"][-1].to(device).flatten(2).permute(2, 0, 1)
            memory_pos.append(pos + self.maskmem_tpos_enc[self.num_maskmem - t_pos - 1])

        num_ptr_tokens = 0
        if self.use_obj_ptrs_in_encoder:
            ptrs, ptr_pos = self._object_pointers(
                frame_idx, selected_cond, unselected_cond, output_dict, num_frames,
                track_in_reverse, current_feats.size(1), device,
            )
            if ptrs is not None:
                memory.append(ptrs)
                memory_pos.append(ptr_pos)
                num_ptr_tokens = ptrs.shape[0]
        return (torch.cat(memory, dim=0), torch.cat(memory_pos, dim=0), num_ptr_tokens,
                [out.get("frame_idx") for _, out in chosen])

    def _attend_to_memories(self, current_vision_feats, current_vision_pos_embeds, feat_sizes,
                            memory, memory_pos, num_ptr_tokens):
        """Memory attention of the current frame's top-level features: (B, C, H, W)."""
        batch = current_vision_feats[-1].size(1)
        height, width = feat_sizes[-1]
        fused = self.memory_attention(
            curr=current_vision_feats[-1:],
            curr_pos=current_vision_pos_embeds[-1:],
            memory=memory,
            memory_pos=memory_pos,
            num_obj_ptr_tokens=num_ptr_tokens,
        )
        return fused.permute(1, 2, 0).view(batch, self.hidden_dim, height, width)

    def _object_pointers(
        self, frame_idx, selected_cond, unselected_cond, output_dict, num_frames,
        track_in_reverse, batch, device,
    ):
        """SAM 2's object-pointer tokens: prompted frames plus the nearest past frames."""
        max_ptrs = min(num_frames, self.max_obj_ptrs_in_encoder)
        sign = -1 if track_in_reverse else 1
        if not self.training and self.only_obj_ptrs_in_the_past_for_eval:
            cond_for_ptrs = {
                t: o for t, o in selected_cond.items()
                if (t >= frame_idx if track_in_reverse else t <= frame_idx)
            }
        else:
            cond_for_ptrs = selected_cond
        items = [
            ((frame_idx - t) * sign if self.use_signed_tpos_enc_to_obj_ptrs
             else abs(frame_idx - t), o["obj_ptr"])
            for t, o in cond_for_ptrs.items()
        ]
        non_cond = output_dict["non_cond_frame_outputs"]
        for t_diff in range(1, max_ptrs):
            t = frame_idx + t_diff if track_in_reverse else frame_idx - t_diff
            if t < 0 or (num_frames is not None and t >= num_frames):
                break
            out = non_cond.get(t, unselected_cond.get(t))
            if out is not None:
                items.append((t_diff, out["obj_ptr"]))
        if not items:
            return None, None
        positions, pointers = zip(*items)
        ptrs = torch.stack(pointers, dim=0)
        if self.add_tpos_enc_to_obj_ptrs:
            dim = self.hidden_dim if self.proj_tpos_enc_in_obj_ptrs else self.mem_dim
            rel = torch.tensor(positions, device=device) / (max_ptrs - 1)
            ptr_pos = self.obj_ptr_tpos_proj(get_1d_sine_pe(rel, dim=dim))
            ptr_pos = ptr_pos.unsqueeze(1).expand(-1, batch, self.mem_dim)
        else:
            ptr_pos = ptrs.new_zeros(len(positions), batch, self.mem_dim)
        if self.mem_dim < self.hidden_dim:
            split = self.hidden_dim // self.mem_dim
            ptrs = ptrs.reshape(-1, batch, split, self.mem_dim).permute(0, 2, 1, 3).flatten(0, 1)
            ptr_pos = ptr_pos.repeat_interleave(split, dim=0)
        return ptrs, ptr_pos

    # -- one tracking step ---------------------------------------------------------------
    def track_step(
        self,
        frame_idx,
        is_init_cond_frame,
        current_vision_feats,
        current_vision_pos_embeds,
        feat_sizes,
        point_inputs,
        mask_inputs,
        output_dict,
        num_frames,
        track_in_reverse=False,
        run_mem_encoder=True,
        prev_sam_mask_logits=None,
    ):
        """SAM 2's ``track_step`` plus ``iou_score`` / multimask outputs in the result.

        After the memory is encoded the policy observes the frame (non-conditioning frames
        only: the prompted frames are always in memory anyway).
        """
        _, sam_outputs, _, _ = self._track_step(
            frame_idx, is_init_cond_frame, current_vision_feats, current_vision_pos_embeds,
            feat_sizes, point_inputs, mask_inputs, output_dict, num_frames, track_in_reverse,
            prev_sam_mask_logits,
        )
        current_out = self._outputs(sam_outputs, current_vision_feats, feat_sizes, point_inputs,
                                    run_mem_encoder)
        current_out["mask_inputs"] = mask_inputs
        is_cond = point_inputs is not None or mask_inputs is not None
        if not is_cond and run_mem_encoder:
            self.memory_policy.observe(frame_idx, current_out, current_vision_feats[-1])
        return current_out

    # -- several objects, one frame ------------------------------------------------------
    def track_objects_step(
        self,
        frame_idx: Sequence[int],
        current_vision_feats: list[torch.Tensor],
        current_vision_pos_embeds: list[torch.Tensor],
        feat_sizes: list[tuple[int, int]],
        output_dicts: Sequence[dict],
        policies: Sequence[MemoryPolicy],
        num_frames: int,
        track_in_reverse: Sequence[bool],
    ) -> list[dict]:
        """``track_step`` of an unprompted frame for several objects at once, as SAM 2's
        video predictor batches objects: one memory attention, mask decoder and memory
        encoder call per group of objects instead of one per object.

        Object ``k`` has its own outputs ``output_dicts[k]``, memory policy ``policies[k]``
        and frame index ``frame_idx[k]`` (its own frame order: a reversed pass counts from
        the other end); all are on the same image, whose features (batch 1) are given.
        Each object selects its own memories (their ``frame_idx`` entries, where the
        outputs carry one, are returned as ``memory_frames``); objects whose memories
        have the same number of tokens share one batch (memory attention takes no padding
        mask), the others run in further batches. Returns each object's output, as
        ``track_step`` does.
        """
        selected = [
            self._select_memories(f, current_vision_feats[-1], out, num_frames, rev, policy)
            for f, out, policy, rev in zip(frame_idx, output_dicts, policies, track_in_reverse)
        ]
        groups: dict[tuple, list[int]] = {}
        for k, (memory, _, num_ptr, _) in enumerate(selected):
            # SAM 2's optional non-overlap constraint acts across the batch: keep objects apart
            key = (memory.shape[0], num_ptr, k if self.non_overlap_masks_for_mem_enc else -1)
            groups.setdefault(key, []).append(k)
        outputs: list[dict | None] = [None] * len(selected)
        for members in groups.values():
            batch = len(members)
            feats = [f.expand(-1, batch, -1) for f in current_vision_feats]
            pos = [p.expand(-1, batch, -1) for p in current_vision_pos_embeds]
            memory = torch.cat([selected[k][0] for k in members], dim=1)
            memory_pos = torch.cat([selected[k][1] for k in members], dim=1)
            pix_feat = self._attend_to_memories(feats, pos, feat_sizes, memory, memory_pos,
                                                selected[members[0]][2])
            high_res = [x.permute(1, 2, 0).view(x.size(1), x.size(2), *size)
                        for x, size in zip(feats[:-1], feat_sizes[:-1])] or None
            sam_outputs = self._forward_sam_heads(
                backbone_features=pix_feat, point_inputs=None, mask_inputs=None,
                high_res_features=high_res, multimask_output=self._use_multimask(False, None),
            )
            batched = self._outputs(sam_outputs, feats, feat_sizes, None, True)
            for j, k in enumerate(members):
                out = {key: _batch_item(value, j) for key, value in batched.items()}
                out["memory_frames"] = selected[k][3]  # what the policy chose, for diagnostics
                policies[k].observe(frame_idx[k], out, current_vision_feats[-1])
                outputs[k] = out
        return outputs  # type: ignore[return-value]

    def _outputs(self, sam_outputs, feats, feat_sizes, point_inputs, run_mem_encoder) -> dict:
        """``track_step``'s output dict from the SAM heads' outputs (memory encoded)."""
        (multi_low, _, ious, low_res, high_res, obj_ptr, obj_score) = sam_outputs
        out = {"point_inputs": point_inputs, "mask_inputs": None, "pred_masks": low_res,
               "pred_masks_high_res": high_res, "obj_ptr": obj_ptr,
               "multistep_pred_multimasks": multi_low, "multistep_pred_ious": ious,
               "object_score_logits": obj_score,
               # IoU of the mask kept (the best of the multimask outputs when there are 3)
               "iou_score": ious.max(dim=1).values if ious.shape[1] > 1 else ious[:, 0]}
        self._encode_memory_in_output(feats, feat_sizes, point_inputs, run_mem_encoder,
                                      high_res, obj_score, out)
        return out


def _batch_item(value: Any, j: int) -> Any:
    """Item ``j`` (batch 1) of a batched output value (a tensor, a list of them, or None)."""
    if isinstance(value, torch.Tensor):
        return value[j:j + 1]
    if isinstance(value, list):
        return [v[j:j + 1] for v in value]
    return value
