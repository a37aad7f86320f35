"""The model spec of kind ``nnunet``: nnU-Net v2 through its Python API (runner.py).

Keys beyond those every model has: the nnU-Net configuration, folds, a schedule (epochs
and iterations; absent = nnU-Net's own), narrower stages and a target spacing (plans
variants, for CPU runs), device and test-time mirroring, and resources per job stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from medsam2.spec import JobResources, ModelSpec, resolve_resources
from medsam2.typed import SpecError, join, knob, to_plain

PLANS_IDENTIFIER = "nnUNetPlans"


@dataclass(frozen=True)
class NnunetSchedule:
    """A shorter schedule set on the stock nnUNetTrainer (absent keys: nnU-Net's)."""

    num_epochs: int | None = knob(None, minimum=1, help="epochs (nnU-Net: 1000)")
    num_iterations_per_epoch: int | None = knob(None, minimum=1,
                                                help="training iterations per epoch (250)")
    num_val_iterations_per_epoch: int | None = knob(None, minimum=1,
                                                    help="validation iterations per epoch (50)")

    def overrides(self) -> dict[str, int]:
        """The trainer attributes to set."""
        return {k: v for k, v in to_plain(self).items() if v is not None}


@dataclass(frozen=True)
class NnunetNetwork:
    """Features per stage: ``base_features`` doubling up to ``max_features``."""

    base_features: int = knob(minimum=4, help="features of the first stage (nnU-Net: 32)")
    max_features: int = knob(minimum=4, help="cap (nnU-Net: 320 in 3D, 512 in 2D)")

    def check(self, path: str) -> None:
        if self.max_features < self.base_features:
            raise SpecError(join(path, "max_features"), "must be >= base_features")


@dataclass(frozen=True)
class NnunetResources(JobResources):
    """Flat keys apply to every nnU-Net job of the model; stage blocks override them."""

    plan: JobResources = knob(JobResources(), help="planning and preprocessing (CPU)")
    train: JobResources = knob(JobResources(), help="each fold's training")
    predict: JobResources = knob(JobResources(), help="prediction (folds ensembled)")


#: (gpu, mem_mb, runtime minutes, threads) of a full nnU-Net run; device cpu: no GPU
NNUNET_RESOURCES = {
    "plan": JobResources(0, 32000, 240, 8),
    "train": JobResources(1, 32000, 2880, 8),
    "predict": JobResources(1, 16000, 240, 4),
}


@dataclass(frozen=True, kw_only=True)
class NnunetSpec(ModelSpec):
    """nnU-Net v2 (plan, preprocess, train, predict)."""

    STAGES: ClassVar[tuple[str, ...]] = ("plan", "train", "predict")

    kind: Literal["nnunet"] = knob(help="nnunet")
    configuration: Literal["auto", "2d", "3d_fullres", "3d_lowres"] = knob(
        "auto", help="auto = 3d_fullres for volumes, 2d for image datasets")
    folds: int | Literal["all"] | tuple[int | Literal["all"], ...] = knob(
        0, help="a fold (0-4), all, or a list (one training job per fold, ensembled)")
    schedule: NnunetSchedule | None = knob(None, help="absent = nnU-Net's own (1000 epochs "
                                                      "x 250 iterations, 50 validation)")
    device: Literal["auto", "cpu", "cuda"] = knob("auto", help="auto | cpu | cuda")
    tta: bool = knob(True, help="nnU-Net's mirroring test-time augmentation")
    network: NnunetNetwork | None = knob(None, help="narrower stages (plans "
                                                    "nnUNetPlans_f<base>-<max>)")
    target_spacing: tuple[float, float, float] | None = knob(
        None, help="3d_fullres target spacing in mm, nnU-Net's axis order (plans "
                   "..._s<z>x<y>x<x>); absent = nnU-Net's (median)")
    resources: NnunetResources = knob(NnunetResources(), help="Snakemake resources")

    def check(self, path: str) -> None:
        for i, fold in enumerate(self.fold_list):
            if fold != "all" and fold < 0:
                raise SpecError(join(join(path, "folds"), i), f"{fold} is not a fold number")
        if self.target_spacing is not None and min(self.target_spacing) <= 0:
            raise SpecError(join(path, "target_spacing"), "spacings must be > 0 (mm)")

    @property
    def fold_list(self) -> tuple[int | str, ...]:
        return self.folds if isinstance(self.folds, tuple) else (self.folds,)

    @property
    def plans(self) -> str:
        """nnU-Net plans identifier: the stock one, or one named after widths / spacing."""
        network = to_plain(self.network) if self.network else None
        return plans_identifier(network, self.target_spacing)

    def schedule_overrides(self) -> dict[str, int]:
        return self.schedule.overrides() if self.schedule else {}

    def job_resources(self, stage: str) -> JobResources:
        if stage not in self.STAGES:
            raise KeyError(f"nnU-Net jobs are {self.STAGES}, not '{stage}'")
        default = NNUNET_RESOURCES[stage]
        if self.device == "cpu":
            default = JobResources(0, default.mem_mb, default.runtime, default.threads)
        return resolve_resources(self.resources, getattr(self.resources, stage), default)


def plans_identifier(network: dict[str, int] | None,
                     target_spacing: tuple[float, ...] | None = None) -> str:
    """``nnUNetPlans``, or with ``_f<base>-<max>`` (features per stage) and/or
    ``_s<z>x<y>x<x>`` (3d_fullres target spacing, mm), e.g. ``nnUNetPlans_f8-64_s4x3x3``."""
    name = PLANS_IDENTIFIER
    if network:
        name += f"_f{network['base_features']}-{network['max_features']}"
    if target_spacing:
        name += "_s" + "x".join(f"{v:g}" for v in target_spacing)
    return name


SPEC = NnunetSpec
