# Helper functions of the nnU-Net rules (kept apart from the rules, as Snakemake's
# linter asks).

def _nnunet_models_of(dataset):
    return [m for m in models_of_kind("nnunet") if dataset in model_datasets(config, m)]


def _nnunet_datasets():
    return sorted({d for m in models_of_kind("nnunet") for d in model_datasets(config, m)})


def _nnunet_configurations(dataset):
    """Configurations to preprocess: those of every nnU-Net model on the dataset."""
    cfgs = {config["models"][m].get("configuration", "auto") for m in _nnunet_models_of(dataset)}
    return ",".join(sorted(cfgs))


def _nnunet_plans(dataset):
    """Plans identifiers to make: one per distinct plan variant (widths, target spacing)."""
    return ",".join(sorted({spec_from_config(config["models"][m]).plans
                            for m in _nnunet_models_of(dataset)}))


def _nnunet_folds(model):
    folds = config["models"][model].get("folds", 0)
    return [str(f) for f in (folds if isinstance(folds, list) else [folds])]


def _nnunet_threads(model):
    return model_resources(model, "threads", 2)


def _nnunet_runtime(dataset):
    """Minutes of the longest nnU-Net training on ``dataset`` (its plan's priority)."""
    return max(model_resources(m, "runtime", 60) for m in _nnunet_models_of(dataset))
