"""One builder for every MedSAM-2 / SAM 2 architecture, and strict checkpoint I/O.

Architectures are Meta's SAM 2 / 2.1 YAML files shipped in the ``sam2`` package (Hiera
tiny, small, base+, large) plus our tiny CPU config; we read them with OmegaConf (no
global hydra state), swap the model class for ``MedSAM2Base`` and set the input size.
Checkpoints: Meta's official ``.pt`` files (``{"model": state_dict}``) and ours (which add
``config``, ``step``, ``optimizer``, ``scheduler``, ``rng`` and ``code_version``) load
with ``torch.load(weights_only=True)``; any missing or unexpected key is an error that
lists the keys.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from medsam2.model.medsam2_base import MedSAM2Base
from medsam2.model.memory import build_policy
from medsam2.provenance import code_version
from medsam2.spec import TrackerSpec

#: arch name -> (package, path of the YAML inside it)
ARCHS: dict[str, tuple[str, str]] = {
    "tiny": ("medsam2.model", "configs/tiny.yaml"),
    "hiera_t": ("sam2", "configs/sam2.1/sam2.1_hiera_t.yaml"),
    "hiera_s": ("sam2", "configs/sam2.1/sam2.1_hiera_s.yaml"),
    "hiera_b+": ("sam2", "configs/sam2.1/sam2.1_hiera_b+.yaml"),
    "hiera_l": ("sam2", "configs/sam2.1/sam2.1_hiera_l.yaml"),
    "sam2_hiera_t": ("sam2", "configs/sam2/sam2_hiera_t.yaml"),
    "sam2_hiera_s": ("sam2", "configs/sam2/sam2_hiera_s.yaml"),
    "sam2_hiera_b+": ("sam2", "configs/sam2/sam2_hiera_b+.yaml"),
    "sam2_hiera_l": ("sam2", "configs/sam2/sam2_hiera_l.yaml"),
}

#: SAM 2's inference-time mask-decoder settings (as its own builder applies them): where
#: the single output mask is unstable, fall back to the best of the three candidate masks.
#: Only for models trained with candidates on tracking frames (``multimask_tracking``):
#: a model trained with one tracking mask has candidates trained on single-frame clicks
#: only, and the fallback then swaps a good mask for a poor one (measured on the demo:
#: synth2d box-prompted Dice 0.156 with it, 0.547 without; One-Prompt 0.066 / 0.515).
POSTPROCESSING = {
    "dynamic_multimask_via_stability": True,
    "dynamic_multimask_stability_delta": 0.05,
    "dynamic_multimask_stability_thresh": 0.98,
}


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, corrupt or does not fit the architecture."""


def arch_config(arch: str, image_size: int | None = None, postprocessing: bool = True,
                multimask_tracking: bool | None = None) -> dict:
    """The resolved model config (a plain dict) of an architecture; ``multimask_tracking``
    None keeps the architecture's own."""
    if arch not in ARCHS:
        raise ValueError(f"unknown arch '{arch}' (known: {sorted(ARCHS)})")
    package, rel = ARCHS[arch]
    text = resources.files(package).joinpath(rel).read_text()
    cfg = OmegaConf.create(text.replace("# @package _global_", ""))
    cfg.model._target_ = f"{MedSAM2Base.__module__}.{MedSAM2Base.__qualname__}"
    if image_size is not None:
        if image_size % 32:
            raise ValueError(f"image_size must be a multiple of 32, got {image_size}")
        cfg.model.image_size = image_size
        side = image_size // 16  # RoPE tables of the memory attention match the top level
        for att in ("self_attention", "cross_attention"):
            cfg.model.memory_attention.layer[att].feat_sizes = [side, side]
    if multimask_tracking is not None:
        cfg.model.multimask_output_for_tracking = bool(multimask_tracking)
    if postprocessing:
        if cfg.model.get("multimask_output_for_tracking", False):
            cfg.model.sam_mask_decoder_extra_args = dict(POSTPROCESSING)
        # as SAM 2's video predictor: a prompted frame's memory is encoded from its
        # binarised mask (inference only; SAM 2 trains without it)
        cfg.model.binarize_mask_from_pts_for_mem_enc = True
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def build_model(
    arch: str = "tiny",
    image_size: int | None = None,
    memory: dict | None = None,
    seed: int = 0,
    checkpoint: Path | str | None = None,
    device: str | torch.device = "cpu",
    postprocessing: bool = True,
    multimask_tracking: bool | None = None,
) -> MedSAM2Base:
    """Build a (MedSAM-2 or SAM 2) model; optionally load a checkpoint strictly.

    ``multimask_tracking`` (None: the architecture's own, SAM 2's ``true``): whether
    unprompted (tracking) frames output SAM 2's three candidate masks, trained on the best
    one, or a single mask. From random init the best-of-three loss can be met without the
    memory (one candidate per object), so whether a run learns to follow the prompted
    object becomes a matter of the seed; with one mask the toy of experiments/twins.py learned
    on every seed tried (not so with objects of one or two memory tokens).
    """
    cfg = arch_config(arch, image_size, postprocessing, multimask_tracking)
    num_maskmem = (memory or {}).get("num_maskmem")
    if num_maskmem is not None:
        cfg["model"]["num_maskmem"] = int(num_maskmem)
    torch.manual_seed(seed)  # random init is part of the experiment: make it repeatable
    model = instantiate(cfg["model"], _recursive_=True, _convert_="all")
    # set after instantiation: hydra would turn a dataclass policy into a config node
    model.memory_policy = build_policy(memory, seed)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    return model.to(device)


def build_from_spec(spec: TrackerSpec, seed: int = 0, checkpoint: Path | str | None = None,
                    device: str | torch.device = "cpu", postprocessing: bool = True,
                    ) -> MedSAM2Base:
    """The model a tracker spec describes (``arch``, ``image_size``, ``memory``,
    ``multimask_tracking``): one reading of those keys for training and prediction."""
    return build_model(spec.arch, spec.image_size, spec.memory.policy_args(), seed=seed,
                       checkpoint=checkpoint, device=device, postprocessing=postprocessing,
                       multimask_tracking=spec.multimask_tracking)


def load_file(path: Path | str) -> Any:
    """What a torch file holds, read safely (weights_only), with a clear error naming it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle/zip/runtime errors for corrupt files
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})"
        ) from exc


def load_state_strictly(model: torch.nn.Module, state: dict, path: Path | str) -> None:
    """``model.load_state_dict``; missing or unexpected keys raise, listed, naming ``path``."""
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches raise even when strict=False
        raise CheckpointError(f"{path}: does not fit the architecture: {exc}") from exc
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{path}: does not fit the architecture: "
            f"{len(result.missing_keys)} missing keys {result.missing_keys[:8]}, "
            f"{len(result.unexpected_keys)} unexpected keys {result.unexpected_keys[:8]}"
        )


def read_checkpoint(path: Path | str) -> dict[str, Any]:
    """Load a checkpoint dict safely (weights_only) with a clear error naming the file."""
    ckpt = load_file(path)
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise CheckpointError(f"{path}: no 'model' state dict (keys: {list(ckpt)[:5]})")
    return ckpt


def load_checkpoint(model: torch.nn.Module, path: Path | str) -> dict[str, Any]:
    """Load weights strictly; missing or unexpected keys raise, listing them."""
    ckpt = read_checkpoint(path)
    load_state_strictly(model, ckpt["model"], path)
    return ckpt


def save_checkpoint(path: Path | str, model: torch.nn.Module, config: dict, **state: Any) -> Path:
    """Write ``{"model", "config", "code_version", **state}`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"model": model.state_dict(), "config": config, "code_version": code_version(),
                **state}, tmp)
    tmp.replace(path)
    return path
