# Helper functions of the nnU-Net rules (kept apart from the rules, as Snakemake's
# linter asks). Every value comes from the models' NnunetSpec (baselines/nnunet/spec.py).


# nnU-Net plans and trains per standard dataset (Config.data_name): entries that differ only
# in their prompting protocol, which nnU-Net does not use, share one plan and one training.


def _nnunet_models_of(data):
    return [m for m in models_of_kind("nnunet")
            if any(SPEC.data_name(d) == data for d in model_datasets(m))]


def _nnunet_datasets():
    return sorted({SPEC.data_name(d) for m in models_of_kind("nnunet")
                   for d in model_datasets(m)})


def _nnunet_trained(model, dataset):
    """The fold records a prediction of ``dataset`` (an entry) ensembles."""
    return [f"{NNUNET_ROOT}/trained/{model}/{SPEC.data_name(dataset)}/fold_{f}.json"
            for f in _nnunet_folds(model)]


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
