"""The ``Sam`` network of Meta's ``segment-anything`` package, and strict weight loading.

``vit_b`` is the package's own builder (``sam_model_registry["vit_b"]``, the network of
``sam_vit_b_01ec64.pth`` and ``medsam_vit_b.pth``), built without weights so that the
file is read here: ``torch.load(weights_only=True)`` and a strict load whose error names
the file and the missing / unexpected keys (the package's own loader unpickles freely
and reports neither). ``tiny`` assembles the package's parts (``ImageEncoderViT``,
``PromptEncoder``, ``MaskDecoder``, ``TwoWayTransformer``) at 256 px with narrow layers,
for tests on CPU: the same classes and key names as ViT-B, fewer and smaller blocks.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
from segment_anything import sam_model_registry
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)

from medsam2.model.build import CheckpointError, load_file, load_state_strictly

#: SAM's pixel statistics (segment_anything/build_sam.py), for the tiny arch too
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)
ARCHS = ("vit_b", "tiny")


def _tiny_sam() -> Sam:
    size, dim = 256, 32
    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=size, patch_size=16, embed_dim=48, depth=2, num_heads=2, mlp_ratio=2,
            out_chans=dim, qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True, window_size=8, global_attn_indexes=(1,)),
        prompt_encoder=PromptEncoder(embed_dim=dim, image_embedding_size=(size // 16,) * 2,
                                     input_image_size=(size, size), mask_in_chans=4),
        mask_decoder=MaskDecoder(
            transformer_dim=dim, num_multimask_outputs=3, iou_head_depth=2,
            iou_head_hidden_dim=32,
            transformer=TwoWayTransformer(depth=1, embedding_dim=dim, num_heads=2,
                                          mlp_dim=64)),
        pixel_mean=list(PIXEL_MEAN), pixel_std=list(PIXEL_STD),
    )


def build_sam(arch: str = "vit_b", checkpoint: Path | str | None = None, seed: int = 0,
              device: str | torch.device = "cpu") -> Sam:
    """The network of ``arch``, random-init (seeded) or with ``checkpoint`` loaded strictly."""
    if arch not in ARCHS:
        raise ValueError(f"unknown segment-anything arch '{arch}' (known: {ARCHS})")
    torch.manual_seed(seed)
    model = sam_model_registry["vit_b"](checkpoint=None) if arch == "vit_b" else _tiny_sam()
    if checkpoint is not None:
        load_sam_checkpoint(model, checkpoint)
    return model.eval().to(device)


def read_sam_state_dict(path: Path | str) -> dict[str, torch.Tensor]:
    """The plain state dict a segment-anything file holds, read safely (weights_only)."""
    state = load_file(path)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        keys = list(state)[:5] if isinstance(state, dict) else type(state).__name__
        hint = (" (a {'model': ...} file is a SAM 2 / MedSAM-2 checkpoint: use kind "
                "medsam2 or sam2)" if isinstance(state, dict) and "model" in state else "")
        raise CheckpointError(f"{path}: not a plain segment-anything state dict "
                              f"(top level: {keys}){hint}")
    return state


def load_sam_checkpoint(model: Sam, path: Path | str) -> None:
    """Load a plain ``Sam`` state dict strictly; missing or unexpected keys raise, listed."""
    load_state_strictly(model, read_sam_state_dict(path), path)
