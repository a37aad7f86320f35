# Helper functions of the nnU-Net rules (kept apart from the rules, as Snakemake's
# linter asks). Every value comes from the models' NnunetSpec (baselines/nnunet/spec.py).


def _nnunet_models_of(dataset):
    return [m for m in models_of_kind("nnunet") if dataset in model_datasets(m)]


def _nnunet_datasets():
    return sorted({d for m in models_of_kind("nnunet") for d in model_datasets(m)})


def _nnunet_configurations(dataset):
    """Configurations to preprocess: those of every nnU-Net model on the dataset."""
    return ",".join(sorted({SPEC.models[m].configuration for m in _nnunet_models_of(dataset)}))


def _nnunet_plans(dataset):
    """Plans identifiers to make: one per distinct plan variant (widths, target spacing)."""
    return ",".join(sorted({SPEC.models[m].plans for m in _nnunet_models_of(dataset)}))


def _nnunet_folds(model):
    return [str(f) for f in SPEC.models[model].fold_list]


def _nnunet_plan_resources(dataset):
    """The shared plan job asks for the most any of its models asks for."""
    jobs = [model_resources(m, "plan") for m in _nnunet_models_of(dataset)]
    return JobResources(
        gpu=0,
        mem_mb=max(j.mem_mb for j in jobs),
        runtime=max(j.runtime for j in jobs),
        threads=max(j.threads for j in jobs),
    )


def _nnunet_runtime(dataset):
    """Minutes of the longest nnU-Net training on ``dataset`` (its plan's priority)."""
    return max(model_resources(m, "train").runtime for m in _nnunet_models_of(dataset))
