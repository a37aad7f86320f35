"""Images as frame sequences: what MedSAM-2 (a video model) sees of a volume or image set.

A 3D volume becomes its slices along one axis; each slice is intensity-normalised to
[0, 1] (CT: a fixed window in HU; other modalities: the volume's 0.5-99.5 percentiles),
repeated to 3 channels, resized to the model's square input and normalised with the
ImageNet statistics that SAM 2's image encoder was trained with. Masks are resized with
nearest neighbours; predicted logits are resized back bilinearly, as SAM 2 does.

A colour 2D image (``layout.Volume.rgb``, channels last) keeps its three channels: SAM 2
is an RGB model (its image encoder takes R, G, B normalised with the ImageNet mean and
std per channel). Its intensities take the path a grey 2D image takes, rather than the
plain 0..255 -> 0..1 of natural images, so that colour and grey datasets are prepared
alike: one 0.5-99.5 percentile window per image, computed over all three channels
together, so the mapping is the same linear one for R, G and B (hue kept; a window per
channel would shift the colours). A stack is (T, H, W) grey or (T, H, W, 3) colour.

torch is imported by the functions that make tensors: the prompts stage and the report
read the slicing axis from here, in processes that need no torch (about 2 s to import).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_CT_WINDOW = (-160.0, 240.0)  # abdominal soft-tissue window


@dataclass(frozen=True)
class Intensity:
    """How raw intensities map to [0, 1]: a CT window or volume percentiles."""

    kind: str = "percentile"  # "ct" | "percentile"
    low: float = 0.5
    high: float = 99.5

    @classmethod
    def for_channel(cls, channel_name: str, window: tuple[float, float] | None = None) -> Intensity:
        if channel_name.upper() == "CT":
            lo, hi = window or DEFAULT_CT_WINDOW
            return cls("ct", lo, hi)
        return cls("percentile", 0.5, 99.5)

    def apply(self, array: np.ndarray) -> np.ndarray:
        """``array`` in [0, 1], same shape; a colour image's channels share one window."""
        a = np.asarray(array, dtype=np.float32)
        if self.kind == "ct":
            lo, hi = self.low, self.high
        else:
            lo, hi = np.percentile(a, [self.low, self.high])
        return np.clip((a - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0)


def sequence_axis(spacing: tuple[float, ...]) -> int:
    """The axis a volume's frames are taken along: the coarsest one (the last on ties,
    spacings equal to float precision counting as ties), so that each frame lies in the
    two finest axes, as the paper slices volumes "along the two highest-resolution axes".

    The one definition for prompts (key slices), training, the preprocessing cache,
    prediction and the report's overlays: a model is prompted, trained and applied on
    the same frames. For the usual thick-slice CT or MR in RAS/LPS order it is NIfTI
    axis 2 (axial slices); an isotropic volume also gets axis 2."""
    sp = np.asarray(spacing[:3], dtype=float)
    return int(np.flatnonzero(np.isclose(sp, sp.max()))[-1])


def slices(array: np.ndarray, axis: int) -> np.ndarray:
    """(T, H, W) stack of slices along ``axis`` (2D input: a single frame). A colour 2D
    image cannot be told from a volume by its array: its callers add the frame axis."""
    if array.ndim == 2:
        return array[None]
    return np.moveaxis(array, axis, 0)


def is_colour_stack(stack: np.ndarray) -> bool:
    """Whether a frame stack is (T, H, W, 3) colour rather than (T, H, W) grey."""
    return stack.ndim == 4 and stack.shape[-1] == 3


def channels_first(stack: np.ndarray) -> torch.Tensor:
    """(T, H, W) grey -> (T, 1, H, W); (T, H, W, 3) colour -> (T, 3, H, W), float32."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(stack, dtype=np.float32))
    if is_colour_stack(stack):
        return x.permute(0, 3, 1, 2)
    if stack.ndim != 3:
        raise ValueError(f"a frame stack is (T, H, W) or (T, H, W, 3), got {stack.shape}")
    return x[:, None]


def unslice(stack: np.ndarray, axis: int, ndim: int) -> np.ndarray:
    """Inverse of ``slices``."""
    if ndim == 2:
        return stack[0]
    return np.moveaxis(stack, 0, axis)


def to_model_frames(stack01: np.ndarray, image_size: int) -> torch.Tensor:
    """(T, H, W) or (T, H, W, 3) in [0, 1] -> (T, 3, S, S) float tensor normalised for the
    image encoder: grey repeated to R, G and B, colour as its own R, G, B."""
    import torch

    x = channels_first(stack01)
    x = torch.nn.functional.interpolate(x, size=(image_size, image_size), mode="bilinear",
                                        align_corners=False)
    x = x.expand(-1, 3, -1, -1)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()


def to_model_masks(stack: np.ndarray, image_size: int) -> torch.Tensor:
    """(T, H, W) binary -> (T, 1, S, S) float {0, 1} (nearest neighbour)."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(stack, dtype=np.float32))[:, None]
    return torch.nn.functional.interpolate(x, size=(image_size, image_size), mode="nearest")


def logits_to_original(logits: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """(T, 1, h, w) logits -> (T, H, W) logits at the original slice size (bilinear)."""
    import torch

    out = torch.nn.functional.interpolate(logits.float(), size=hw, mode="bilinear",
                                          align_corners=False)
    return out[:, 0]
