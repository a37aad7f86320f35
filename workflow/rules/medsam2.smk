# MedSAM-2 and plain SAM 2 (kinds medsam2 and sam2): one code path, they differ only in
# the memory policy, so the comparison is fair by construction. Each rule hands its
# command the part of the model's spec it needs: training only what decides the weights
# (training_json), prediction the spec as it predicts that dataset.


rule preprocess:
    input:
        dataset_json_of,
    output:
        f"{RESULTS}/preprocessed/{{model}}/{{dataset}}/index.json",
    log:
        f"{LOGS}/preprocess/{{model}}/{{dataset}}.log",
    params:
        dir=lambda w: dataset_dir(w.dataset),
        out=lambda w, output: str(Path(output[0]).parent),
        size=lambda w: SPEC.tracker(w.model).image_size,
        min_area=lambda w: SPEC.tracker(w.model).preprocess.min_area,
        crop=lambda w: "" if SPEC.tracker(w.model).preprocess.crop else "--no-crop",
    shell:
        "medsam2 preprocess --dataset-dir {params.dir} --out {params.out}"
        " --image-size {params.size} --min-area {params.min_area} {params.crop} > {log} 2>&1"


rule pretrain_tracker:
    output:
        pretrained_checkpoint("{name}"),
    log:
        f"{LOGS}/pretrain/{{name}}.log",
    wildcard_constraints:
        name=names_regex(list(SPEC.pretrain)),
    params:
        cfg=lambda w: spec_json(SPEC.pretrain[w.name]),
        out=lambda w, output: str(Path(output[0]).parent),
        seed=SEED,
    threads: lambda w: pretrain_resources(w.name).threads
    priority: lambda w: long_first(pretrain_resources(w.name).runtime)
    resources:
        gpu=lambda w: pretrain_resources(w.name).gpu,
        mem_mb=lambda w: pretrain_resources(w.name).mem_mb,
        runtime=lambda w, attempt: pretrain_resources(w.name).runtime * attempt,
    shell:
        "medsam2 pretrain --spec-json {params.cfg:q} --out-dir {params.out}"
        " --seed {params.seed} --threads {threads} > {log} 2>&1"


rule train_tracker:
    input:
        datasets=lambda w: train_inputs(w.model),
        init=lambda w: train_init(w.model),
    output:
        f"{RESULTS}/models/{{model}}/checkpoint.pt",
    log:
        f"{LOGS}/train/{{model}}.log",
    wildcard_constraints:
        model=names_regex(trained_tracker_models()),
    params:
        cfg=lambda w: training_json(w.model),
        dirs=lambda w: " ".join(train_sources(w.model)),
        out=lambda w: f"{RESULTS}/models/{w.model}",
        seed=SEED,
        init=lambda w, input: f"--init {input.init}" if input.init else "",
        # several GPUs in one job (SLURM profile): one data-parallel process per GPU
        launcher=lambda w, resources: (
            f"torchrun --standalone --nproc-per-node={resources.gpu} -m medsam2.cli"
            if int(resources.gpu) > 1
            else "medsam2"
        ),
    threads: lambda w: model_resources(w.model, "train").threads
    priority: lambda w: long_first(model_resources(w.model, "train").runtime)
    resources:
        gpu=lambda w: model_resources(w.model, "train").gpu,
        mem_mb=lambda w: model_resources(w.model, "train").mem_mb,
        runtime=lambda w, attempt: model_resources(w.model, "train").runtime * attempt,
    shell:
        "{params.launcher} train --model-json {params.cfg:q} --dataset-dir {params.dirs}"
        " --out-dir {params.out} --seed {params.seed} {params.init} --threads {threads}"
        " > {log} 2>&1"


rule predict_tracker:
    input:
        dataset=dataset_json_of,
        prompts=f"{RESULTS}/prompts/{{dataset}}.json",
        checkpoint=lambda w: tracker_checkpoint(w.model),
    output:
        directory(f"{RESULTS}/predictions/{{dataset}}/{{model}}"),
    log:
        f"{LOGS}/predict/{{dataset}}/{{model}}.log",
    wildcard_constraints:
        model=names_regex(tracker_models()),
    params:
        cfg=lambda w: model_json(w.model, w.dataset),
        dir=lambda w: dataset_dir(w.dataset),
        mode=lambda w: SPEC.datasets[w.dataset].mode_2d,
        seed=SEED,
    threads: lambda w: model_resources(w.model, "predict").threads
    resources:
        gpu=lambda w: model_resources(w.model, "predict").gpu,
        mem_mb=lambda w: model_resources(w.model, "predict").mem_mb,
        runtime=lambda w, attempt: model_resources(w.model, "predict").runtime * attempt,
    shell:
        "medsam2 predict --model-json {params.cfg:q} --checkpoint {input.checkpoint}"
        " --dataset-dir {params.dir} --prompts {input.prompts} --out-dir {output}"
        " --mode-2d {params.mode} --seed {params.seed} --threads {threads} > {log} 2>&1"
