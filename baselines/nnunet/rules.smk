# nnU-Net v2 baseline (kind: nnunet), through nnunetv2's Python API (baselines/nnunet).
# plan (per dataset, shared by all nnU-Net models) -> train (per model, dataset, fold)
# -> predict (per model, dataset; folds ensembled) into the prediction contract, which
# workflow/rules/evaluate.smk scores like any other model.

NNUNET_ROOT = f"{RESULTS}/nnunet"


include: "common.smk"


rule nnunet_plan:
    input:
        dataset_json_of,
    output:
        f"{NNUNET_ROOT}/plans/{{dataset}}.json",
    log:
        f"{LOGS}/nnunet/plan/{{dataset}}.log",
    wildcard_constraints:
        dataset=names_regex(_nnunet_datasets()),
    params:
        dir=lambda w: dataset_dir(w.dataset),
        root=lambda w, output: Path(output[0]).parents[1],  # {root}/plans/{dataset}.json
        configurations=lambda w: _nnunet_configurations(w.dataset),
        plans=lambda w: _nnunet_plans(w.dataset),
    threads: lambda w: _nnunet_plan_resources(w.dataset).threads
    priority: lambda w: long_first(_nnunet_runtime(w.dataset))
    resources:
        mem_mb=lambda w: _nnunet_plan_resources(w.dataset).mem_mb,
        runtime=lambda w, attempt: _nnunet_plan_resources(w.dataset).runtime * attempt,
    shell:
        "medsam2 nnunet plan --dataset-dir {params.dir} --root {params.root}"
        " --configurations {params.configurations} --plans {params.plans}"
        " --threads {threads} --out {output}"
        " > {log} 2>&1"


rule nnunet_train:
    input:
        dataset=dataset_json_of,
        plan=f"{NNUNET_ROOT}/plans/{{dataset}}.json",
    output:
        f"{NNUNET_ROOT}/trained/{{model}}/{{dataset}}/fold_{{fold}}.json",
    log:
        f"{LOGS}/nnunet/train/{{dataset}}/{{model}}_fold_{{fold}}.log",
    wildcard_constraints:
        model=names_regex(models_of_kind("nnunet")),
        fold=r"\d+|all",
    params:
        cfg=lambda w: model_json(w.model),
        dir=lambda w: dataset_dir(w.dataset),
        root=lambda w, input: Path(input.plan).parents[1],
        seed=SEED,
    threads: lambda w: model_resources(w.model, "train").threads
    priority: lambda w: long_first(model_resources(w.model, "train").runtime)
    resources:
        gpu=lambda w: model_resources(w.model, "train").gpu,
        mem_mb=lambda w: model_resources(w.model, "train").mem_mb,
        runtime=lambda w, attempt: model_resources(w.model, "train").runtime * attempt,
    shell:
        "medsam2 nnunet train --model-json {params.cfg:q} --model {wildcards.model}"
        " --dataset-dir {params.dir} --root {params.root} --plan {input.plan}"
        " --fold {wildcards.fold} --seed {params.seed} --threads {threads} --out {output}"
        " > {log} 2>&1"


rule nnunet_predict:
    input:
        dataset=dataset_json_of,
        trained=lambda w: _nnunet_trained(w.model, w.dataset),
    output:
        directory(f"{RESULTS}/predictions/{{dataset}}/{{model}}"),
    log:
        f"{LOGS}/nnunet/predict/{{dataset}}/{{model}}.log",
    wildcard_constraints:
        model=names_regex(models_of_kind("nnunet")),
    params:
        cfg=lambda w: model_json(w.model),
        dir=lambda w: dataset_dir(w.dataset),
        root=lambda w, input: Path(input.trained[0]).parents[3],
    threads: lambda w: model_resources(w.model, "predict").threads
    resources:
        gpu=lambda w: model_resources(w.model, "predict").gpu,
        mem_mb=lambda w: model_resources(w.model, "predict").mem_mb,
        runtime=lambda w, attempt: model_resources(w.model, "predict").runtime * attempt,
    shell:
        "medsam2 nnunet predict --model-json {params.cfg:q} --dataset-dir {params.dir}"
        " --root {params.root} --trained {input.trained} --out-dir {output}"
        " --threads {threads} > {log} 2>&1"
