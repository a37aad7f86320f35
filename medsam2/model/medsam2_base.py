"""MedSAM-2 = Meta's ``SAM2Base`` with a pluggable memory-selection policy.

We subclass instead of forking: only the memory selection of
``_prepare_memory_conditioned_features`` changes (it asks ``self.memory_policy`` which
non-conditioning frames to attend to), and ``track_step`` also returns what training and
the self-sorting bank need (predicted IoUs, multimask logits, object scores). With
``FifoPolicy`` the model computes exactly what ``SAM2Base`` computes.
"""

from __future__ import annotations

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
        batch = current_vision_feats[-1].size(1)
        height, width = feat_sizes[-1]
        device = current_vision_feats[-1].device
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
            current_feats=current_vision_feats[-1],
        )
        entries = [(0, out) for out in selected_cond.values()]
        entries += self.memory_policy.select(query)

        memory, memory_pos = [], []
        for t_pos, out in entries:
            memory.append(out["maskmem_features"].to(device).flatten(2).permute(2, 0, 1))
            pos = out["maskmem_pos_enc"][-1].to(device).flatten(2).permute(2, 0, 1)
            memory_pos.append(pos + self.maskmem_tpos_enc[self.num_maskmem - t_pos - 1])

        num_ptr_tokens = 0
        if self.use_obj_ptrs_in_encoder:
            ptrs, ptr_pos = self._object_pointers(
                frame_idx, selected_cond, unselected_cond, output_dict, num_frames,
                track_in_reverse, batch, device,
            )
            if ptrs is not None:
                memory.append(ptrs)
                memory_pos.append(ptr_pos)
                num_ptr_tokens = ptrs.shape[0]

        fused = self.memory_attention(
            curr=current_vision_feats,
            curr_pos=current_vision_pos_embeds,
            memory=torch.cat(memory, dim=0),
            memory_pos=torch.cat(memory_pos, dim=0),
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
        current_out, sam_outputs, _, _ = self._track_step(
            frame_idx, is_init_cond_frame, current_vision_feats, current_vision_pos_embeds,
            feat_sizes, point_inputs, mask_inputs, output_dict, num_frames, track_in_reverse,
            prev_sam_mask_logits,
        )
        (multi_low, multi_high, ious, low_res, high_res, obj_ptr, obj_score) = sam_outputs
        current_out["pred_masks"] = low_res
        current_out["pred_masks_high_res"] = high_res
        current_out["obj_ptr"] = obj_ptr
        current_out["multistep_pred_multimasks"] = multi_low
        current_out["multistep_pred_ious"] = ious
        current_out["object_score_logits"] = obj_score
        # IoU of the mask that was kept (the best of the multimask outputs when there are 3)
        current_out["iou_score"] = ious.max(dim=1).values if ious.shape[1] > 1 else ious[:, 0]
        self._encode_memory_in_output(
            current_vision_feats, feat_sizes, point_inputs, run_mem_encoder, high_res,
            obj_score, current_out,
        )
        is_cond = point_inputs is not None or mask_inputs is not None
        if not is_cond and run_mem_encoder:
            self.memory_policy.observe(frame_idx, current_out, current_vision_feats[-1])
        return current_out
