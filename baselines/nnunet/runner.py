"""nnU-Net v2 as a baseline, through nnunetv2's Python API.

Our standard dataset already is nnU-Net raw format, so nothing is converted: it is linked
into an nnU-Net tree of our own under ``results/nnunet/``::

    results/nnunet/nnUNet_raw/Dataset{ID}_{name} -> ../../datasets/{name}   (relative link)
    results/nnunet/nnUNet_preprocessed/Dataset{ID}_{name}/   plans + preprocessed data, shared
                                                             by every nnU-Net model
    results/nnunet/nnUNet_results/{model}/Dataset{ID}_{name}/nnUNetTrainer__nnUNetPlans__{cfg}/
                                                             one tree per model (its schedule)

``ID`` is ``100 + crc32(name) % 900``: a pure function of the dataset key, so it is the
same on every machine and for every config order (no collision among the benchmark's 16
dataset keys; a collision with another linked dataset fails with both names).

nnU-Net's stock trainers differ only by schedule (``nnUNetTrainer_1epoch`` ...), and
``-tr`` only finds classes inside its own package. We construct ``nnUNetTrainer`` itself
and set ``num_epochs`` / ``num_iterations_per_epoch`` / ``num_val_iterations_per_epoch``
on the instance before training: a schedule is a parameter, nothing is written into
site-packages, and the output folder keeps the stock name, so ``nnUNetPredictor`` (and
nnU-Net's own CLI) load it as any other nnU-Net model.

nnunetv2 reads ``nnUNet_raw`` / ``nnUNet_preprocessed`` / ``nnUNet_results`` from the
environment, and its process pools use *spawn*: every function here sets the variables
first and imports nnunetv2 inside; the ``medsam2`` console script has the
``if __name__ == "__main__"`` guard that spawned children need.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
import zlib
from pathlib import Path

import numpy as np

from baselines.nnunet.spec import PLANS_IDENTIFIER, NnunetSpec, plans_identifier
from medsam2.data.layout import LayoutError, StandardDataset
from medsam2.fileio import read_json
from medsam2.typed import to_plain

CONFIGURATIONS = ("2d", "3d_fullres", "3d_lowres")
TRAINER = "nnUNetTrainer"
CHECKPOINT = "checkpoint_final.pth"
SCHEDULE_KEYS = ("num_epochs", "num_iterations_per_epoch", "num_val_iterations_per_epoch")



class NnunetError(ValueError):
    """A bad nnU-Net model config or an inconsistent nnU-Net tree (message says which)."""


def variant_from_identifier(identifier: str,
                            ) -> tuple[dict[str, int] | None, tuple[float, ...] | None]:
    """Inverse of :func:`plans_identifier`: (network, target spacing) of a plans name
    (the plan rule gets identifiers)."""
    form = f"{PLANS_IDENTIFIER}[_f<base>-<max>][_s<z>x<y>x<x>]"
    if not identifier.startswith(PLANS_IDENTIFIER):
        raise NnunetError(f"plans identifier '{identifier}' is not {form}")
    network, spacing = None, None
    try:
        for part in identifier.removeprefix(PLANS_IDENTIFIER).split("_")[1:]:
            if part.startswith("f") and network is None and spacing is None:
                base, top = part[1:].split("-")
                network = {"base_features": int(base), "max_features": int(top)}
            elif part.startswith("s") and spacing is None:
                spacing = tuple(float(v) for v in part[1:].split("x"))
            else:
                raise ValueError(part)
    except ValueError:
        raise NnunetError(f"plans identifier '{identifier}' is not {form}") from None
    if plans_identifier(network, spacing) != identifier:
        raise NnunetError(f"plans identifier '{identifier}' is not {form}")
    return network, spacing


def dataset_id(name: str) -> int:
    """nnU-Net's three-digit dataset id for one of our dataset keys (see module doc)."""
    return 100 + zlib.crc32(name.encode()) % 900


def nnunet_name(name: str) -> str:
    return f"Dataset{dataset_id(name):03d}_{name}"


def resolve_configuration(configuration: str, dataset_dir: Path | str) -> str:
    """``auto`` -> 3d_fullres for volumes, 2d for image datasets; check the rest."""
    is_3d = StandardDataset(dataset_dir).is_3d
    if configuration == "auto":
        return "3d_fullres" if is_3d else "2d"
    if configuration.startswith("3d") and not is_3d:
        raise NnunetError(f"{dataset_dir}: configuration '{configuration}' needs a 3D dataset")
    return configuration


def set_environment(root: Path | str, model: str | None, threads: int, da_workers: int) -> None:
    """nnU-Net's path and process variables; must run before nnunetv2 is imported.

    ``da_workers`` = nnU-Net's augmentation processes (``nnUNet_n_proc_DA``): 0 trains
    with in-process augmentation, which is what a CPU run wants (workers would only
    compete with the network for the cores). The planner also sets torch's thread count
    from it, so planning needs it >= 1.
    """
    root = Path(root).resolve()
    os.environ["nnUNet_raw"] = str(root / "nnUNet_raw")
    os.environ["nnUNet_preprocessed"] = str(root / "nnUNet_preprocessed")
    os.environ["nnUNet_results"] = str(root / "nnUNet_results" / (model or "_none"))
    os.environ["nnUNet_def_n_proc"] = str(max(1, threads))
    os.environ["nnUNet_n_proc_DA"] = str(max(0, da_workers))


def pick_device(device: str):
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise NnunetError("device: 'cuda' requested but torch sees no GPU")
    return torch.device(device)


def link_raw(dataset_dir: Path | str, root: Path | str) -> str:
    """Link the standard dataset into ``nnUNet_raw``; returns nnU-Net's dataset name."""
    ds = StandardDataset(dataset_dir)  # fails early, naming the file, on a broken dataset
    problems = ds.verify()
    if problems:
        raise LayoutError(f"{ds.root}: not usable by nnU-Net: " + "; ".join(problems[:5]))
    n_train = len(ds.cases("train"))
    if ds.meta.get("numTraining") != n_train:
        raise LayoutError(f"{ds.root / 'dataset.json'}: numTraining {ds.meta.get('numTraining')}"
                          f" != {n_train} cases in imagesTr")
    name = nnunet_name(ds.name)
    raw = Path(root) / "nnUNet_raw"
    raw.mkdir(parents=True, exist_ok=True)
    prefix = name.split("_")[0] + "_"
    clash = [p.name for p in raw.iterdir() if p.name.startswith(prefix) and p.name != name]
    if clash:
        raise NnunetError(f"{raw}: dataset id of '{ds.name}' ({name}) is already used by "
                          f"{clash}; rename one of the dataset keys")
    link = raw / name
    target = Path(os.path.relpath(ds.root.resolve(), raw.resolve()))
    if link.is_symlink() or link.exists():
        if link.is_symlink() and Path(os.readlink(link)) == target:
            return name
        if link.is_symlink():
            link.unlink()
        else:
            raise NnunetError(f"{link}: exists and is not our link to {ds.root}")
    link.symlink_to(target, target_is_directory=True)
    return name


def _planner_class(network: dict[str, int] | None,
                   target_spacing: tuple[float, ...] | None = None):
    """nnU-Net's ExperimentPlanner, or a subclass with narrower stages and/or a coarser
    3d_fullres target spacing.

    Width is the knob nnU-Net's own planners turn (the ResEnc presets subclass the
    planner the same way), the target spacing is its planner's ``overwrite_target_spacing``
    (nnUNetv2_plan_experiment ``-overwrite_target_spacing``); patch size, pooling and
    batch size are still planned by nnU-Net from the dataset fingerprint. On the demo's
    synth3d an 8-to-64-feature 3d_fullres U-Net took 0.78 s per iteration on 2 cores,
    about 10x less CPU than the stock one; predictions are resampled back to each case's
    own spacing by nnU-Net.
    """
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import (
        ExperimentPlanner,
    )

    if not network and not target_spacing:
        return ExperimentPlanner

    class VariantPlanner(ExperimentPlanner):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if network:
                self.UNet_base_num_features = network["base_features"]
                self.UNet_max_features_2d = network["max_features"]
                self.UNet_max_features_3d = network["max_features"]
            if target_spacing:
                self.overwrite_target_spacing = list(target_spacing)

    return VariantPlanner


def plan_and_preprocess(dataset_dir: Path | str, root: Path | str, configurations: list[str],
                        threads: int = 2, plans: list[str] | tuple[str, ...] = (PLANS_IDENTIFIER,),
                        ) -> dict:
    """Fingerprint once, then plan and preprocess the configurations for each plans
    identifier (see :func:`plans_identifier`); returns the plan record."""
    t0 = time.time()
    configs = sorted({resolve_configuration(c, dataset_dir) for c in configurations})
    variants = {p: variant_from_identifier(p) for p in sorted(set(plans))}
    set_environment(root, None, threads, max(1, threads))
    name = link_raw(dataset_dir, root)
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprint_dataset,
        plan_experiment_dataset,
        preprocess_dataset,
    )

    did = dataset_id(Path(dataset_dir).name)
    extract_fingerprint_dataset(did, num_processes=threads, check_dataset_integrity=True,
                                clean=True, verbose=False, show_progress_bar=False)
    pre = Path(os.environ["nnUNet_preprocessed"]) / name
    files = {}
    for identifier, (network, spacing) in variants.items():
        planned, _ = plan_experiment_dataset(did, _planner_class(network, spacing),
                                             overwrite_plans_name=identifier)
        missing = [c for c in configs if c not in planned["configurations"]]
        if missing:
            raise NnunetError(f"{name}: nnU-Net planned no {missing} configuration "
                              f"(planned: {sorted(planned['configurations'])})")
        for c in configs:
            _check_pools(name, c, planned["configurations"][c])
        preprocess_dataset(did, identifier, configs, [threads] * len(configs), verbose=False,
                           show_progress_bar=False)
        files[identifier] = str(pre / f"{identifier}.json")
    _write_splits(pre, [c.case_id for c in StandardDataset(dataset_dir).cases("train")])
    return {"dataset": Path(dataset_dir).name, "nnunet_dataset": name, "dataset_id": did,
            "plans": files, "configurations": configs, "seconds": round(time.time() - t0, 1)}


def _check_pools(name: str, configuration: str, planned: dict) -> None:
    """A network that cannot pool has one stage, and nnU-Net's trainer then fails deep
    inside its loss (an empty deep-supervision weight list): say why at planning."""
    arch = planned.get("architecture", {}).get("arch_kwargs", {})
    if arch.get("n_stages", 2) < 2:
        raise NnunetError(
            f"{name}: the {configuration} network has {arch.get('n_stages')} stage: images of "
            f"{planned.get('median_image_size_in_voxels')} voxels (spacing "
            f"{planned.get('spacing')}) are too small for nnU-Net to pool once")


def _write_splits(preprocessed: Path, train_ids: list[str]) -> None:
    """nnU-Net's own seeded 5-fold split, written once here rather than by the first of
    several trainers that may start at the same time (same content, no race). Fewer than
    five training cases allow no five folds (``folds: all`` only): nothing to write."""
    if len(train_ids) >= 5:
        from nnunetv2.utilities.crossval_split import generate_crossval_split  # sklearn, 1 s

        splits = generate_crossval_split(sorted(train_ids), seed=12345, n_splits=5)
        (preprocessed / "splits_final.json").write_text(json.dumps(splits, indent=2) + "\n")


def _seed_everything(seed: int) -> None:
    """Best effort: with no augmentation workers (CPU) the sampling is reproducible."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(plan_record: dict, spec: NnunetSpec, root: Path | str, model: str, fold: int | str,
          dataset_dir: Path | str, threads: int = 2, seed: int = 0) -> dict:
    """Train one fold with the stock nnUNetTrainer and the spec's schedule."""
    t0 = time.time()
    configuration = resolve_configuration(spec.configuration, dataset_dir)
    if configuration not in plan_record["configurations"]:
        raise NnunetError(f"{plan_record['nnunet_dataset']}: '{configuration}' was not "
                          f"preprocessed (plan record has {plan_record['configurations']})")
    n_train = len(StandardDataset(dataset_dir).cases("train"))
    if fold != "all" and n_train < 5:
        raise NnunetError(f"{dataset_dir}: fold {fold} needs >= 5 training cases for nnU-Net's "
                          f"5-fold split, found {n_train}; use folds: all")
    if spec.plans not in plan_record.get("plans", {}):
        raise NnunetError(f"{plan_record['nnunet_dataset']}: plans '{spec.plans}' were not "
                          f"made (plan record has {sorted(plan_record.get('plans', {}))})")
    import torch

    device = pick_device(spec.device)
    set_environment(root, model, threads, 0 if device.type == "cpu" else threads)
    torch.set_num_threads(max(1, threads))
    _seed_everything(seed)
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    pre = Path(os.environ["nnUNet_preprocessed"]) / plan_record["nnunet_dataset"]
    plans = read_json(pre / f"{spec.plans}.json", "nnU-Net plans file", require=(),
                      error=NnunetError)
    plans["continue_training"] = False  # nnunetv2 2.8 passes this flag inside the plans
    dataset_json = read_json(pre / "dataset.json", "nnU-Net dataset file", require=(),
                             error=NnunetError)
    fold_dir = (Path(os.environ["nnUNet_results"]) / plan_record["nnunet_dataset"]
                / f"{TRAINER}__{spec.plans}__{configuration}" / f"fold_{fold}")
    if fold_dir.exists():  # a re-run (changed schedule) must not mix logs or checkpoints
        shutil.rmtree(fold_dir)
    trainer = nnUNetTrainer(plans, configuration, fold, dataset_json, device=device)
    for key, value in spec.schedule_overrides().items():
        setattr(trainer, key, value)  # read by initialize() (LR schedule) and run_training()
    trainer.run_training()
    checkpoint = Path(trainer.output_folder) / CHECKPOINT
    if not checkpoint.is_file():
        raise NnunetError(f"{checkpoint}: nnU-Net training ended without a final checkpoint")
    ema = trainer.logger.get_value("ema_fg_dice", None) or [float("nan")]
    return {"model": model, "dataset": plan_record["dataset"],
            "nnunet_dataset": plan_record["nnunet_dataset"], "configuration": configuration,
            "plans": spec.plans, "fold": fold,
            "trainer_dir": str(Path(trainer.output_folder_base)),
            "checkpoint": str(checkpoint), "device": device.type,
            "schedule": {k: getattr(trainer, k) for k in SCHEDULE_KEYS},
            "ema_pseudo_dice_last": float(ema[-1]), "spec": to_plain(spec), "seed": seed,
            "seconds": round(time.time() - t0, 1)}


def predict(train_records: list[dict], dataset_dir: Path | str, out_dir: Path | str,
            spec: NnunetSpec, root: Path | str, threads: int = 2) -> list[Path]:
    """Predict the test split into ``{out_dir}/{case}{file_ending}`` (all folds ensembled)."""
    # Rebuilt from the root, not read from the records, so a moved results/ still works.
    dirs = {Path(root).resolve() / "nnUNet_results" / r["model"] / r["nnunet_dataset"]
            / f"{TRAINER}__{r['plans']}__{r['configuration']}" for r in train_records}
    if len(dirs) != 1:
        raise NnunetError(f"train records point at different model folders: {sorted(dirs)}")
    ds = StandardDataset(dataset_dir)
    cases = ds.cases("test")
    if not cases:
        raise LayoutError(f"{ds.root}: no test cases in imagesTs to predict")
    import torch

    device = pick_device(spec.device)
    torch.set_num_threads(max(1, threads))
    trainer_dir = dirs.pop()
    set_environment(root, train_records[0]["model"], threads, threads)
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(use_mirroring=spec.tta, device=device, allow_tqdm=False,
                                perform_everything_on_device=device.type == "cuda")
    predictor.initialize_from_trained_model_folder(
        str(trainer_dir), use_folds=tuple(r["fold"] for r in train_records),
        checkpoint_name=CHECKPOINT)
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    inputs = [[str(p) for p in c.images] for c in cases]
    outputs = [str(out_dir / c.case_id) for c in cases]
    if threads > 1 and device.type == "cuda":  # worker pools pay off beside a GPU
        predictor.predict_from_files(inputs, outputs, num_processes_preprocessing=threads,
                                     num_processes_segmentation_export=threads)
    else:
        predictor.predict_from_files_sequential(inputs, outputs)
    # nnU-Net stores its arguments, plans and dataset.json beside the predictions; keep
    # them with the model instead, so the folder holds exactly the contract's files.
    provenance = trainer_dir / f"predict_{ds.name}"
    provenance.mkdir(exist_ok=True)
    for extra in ("predict_from_raw_data_args.json", "dataset.json", "plans.json"):
        if (out_dir / extra).is_file():
            shutil.move(out_dir / extra, provenance / extra)
    written = [out_dir / f"{c.case_id}{ds.file_ending}" for c in cases]
    missing = [p.name for p in written if not p.is_file()]
    if missing:
        raise NnunetError(f"{out_dir}: nnU-Net wrote no prediction for {missing}")
    return written
