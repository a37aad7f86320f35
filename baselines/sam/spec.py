"""The model spec of kind ``sam``: Meta's SAM or MedSAM (ViT-B) via ``segment-anything``.

One kind for both, because they are one network (``Sam`` ViT-B) with different weights
and a different way of feeding it: ``model`` picks the weights' family, and with it the
preprocessing and prompting each family's own code uses (baselines/sam/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from medsam2.spec import Config, JobResources, ModelSpec
from medsam2.typed import SpecError, join, knob

#: the published file of each family (medsam2.model.checkpoints.OFFICIAL)
CHECKPOINT_FILES = {"sam_vit_b": "sam_vit_b_01ec64.pth", "medsam_vit_b": "medsam_vit_b.pth"}

#: (gpu, mem_mb, runtime minutes, threads) of a prediction job by architecture: ViT-B
#: encodes every visited slice at 1024 px (a GPU); the tiny random ViT is for CPU tests
SAM_RESOURCES = {"vit_b": JobResources(1, 16000, 240, 4), "tiny": JobResources(0, 4000, 60, 1)}


@dataclass(frozen=True, kw_only=True)
class SamSpec(ModelSpec):
    """SAM / MedSAM: every image or slice segmented on its own from a prompt."""

    STAGES: ClassVar[tuple[str, ...]] = ("predict",)

    kind: Literal["sam"] = knob(help="sam")
    model: Literal["sam_vit_b", "medsam_vit_b"] = knob(
        "sam_vit_b", help="sam_vit_b (Meta's SAM: SamPredictor, ImageNet-style input) | "
                          "medsam_vit_b (MedSAM: its own 1024 px [0, 1] input, box prompts)")
    arch: Literal["vit_b", "tiny"] = knob(
        "vit_b", help="vit_b (the published weights) | tiny (a small random ViT at 256 px "
                      "for CPU tests; no published weights)")
    checkpoint: str | None = knob(
        None, help="weights file (default: <resources>/checkpoints/ + the model's "
                   "published file, fetched or placed by hand)")
    slices_3d: Literal["propagate", "prompted"] = knob(
        "propagate", help="3D: propagate = every slice, each unprompted one prompted from "
                          "its neighbour's prediction towards the nearest prompted slice; "
                          "prompted = only the slices the trackers get a prompt on")
    multimask_click: bool = knob(
        True, help="SAM, click prompts: take the best of SAM's three masks by predicted IoU "
                   "(SAM's advice for one ambiguous point); false: its single mask")
    device: Literal["auto", "cpu", "cuda"] = knob("auto", help="auto | cpu | cuda")
    resources: JobResources = knob(JobResources(), help="Snakemake resources of the "
                                                        "prediction job (default by arch)")

    def check(self, path: str) -> None:
        if self.arch == "tiny" and self.checkpoint is None:
            raise SpecError(join(path, "checkpoint"), "the tiny arch has no published "
                            "weights", "give a checkpoint file (tests write one)")

    def check_config(self, config: Config, path: str) -> None:
        config.require_datasets(self.datasets, join(path, "datasets"))

    @property
    def checkpoint_file(self) -> str:
        """The published file name of the model's weights."""
        return CHECKPOINT_FILES[self.model]

    def checkpoint_path(self, resources: str) -> str:
        """Where its weights are: ``checkpoint``, else the published file under
        ``<resources>/checkpoints/`` (which rule ``fetch_checkpoint`` makes)."""
        return self.checkpoint or f"{resources}/checkpoints/{self.checkpoint_file}"

    def job_resources(self, stage: str) -> JobResources:
        if stage not in self.STAGES:
            raise KeyError(f"sam jobs are {self.STAGES}, not '{stage}'")
        default = SAM_RESOURCES[self.arch]
        if self.device == "cpu":
            default = JobResources(0, default.mem_mb, default.runtime, default.threads)
        return self.resources.over(default)


SPEC = SamSpec
