# MedSAM-2 and plain SAM 2 (kinds medsam2 and sam2): one code path, they differ only in
# the memory policy, so the comparison is fair by construction. Evaluation prompts are
# computed once per dataset and shared by every prompted model.


rule prompts:
    conda:
        "../envs/medsam2.yaml"
    input:
        dataset_json("{dataset}"),
    output:
        f"{RESULTS}/prompts/{{dataset}}.json",
    log:
        f"{LOGS}/prompts/{{dataset}}.log",
    params:
        dir=lambda w: dataset_dir(w.dataset),
        kind=lambda w: prompt_kind(config, w.dataset),
        rate=lambda w: config["datasets"][w.dataset].get("prompt_rate", 0),
        seed=SEED,
    shell:
        "medsam2 prompts --dataset-dir {params.dir} --kind {params.kind}"
        " --rate {params.rate} --seed {params.seed} --out {output} > {log} 2>&1"


rule preprocess:
    conda:
        "../envs/medsam2.yaml"
    input:
        dataset_json("{dataset}"),
    output:
        f"{RESULTS}/preprocessed/{{model}}/{{dataset}}/index.json",
    log:
        f"{LOGS}/preprocess/{{model}}/{{dataset}}.log",
    params:
        dir=lambda w: dataset_dir(w.dataset),
        out=lambda w, output: str(Path(output[0]).parent),
        size=lambda w: config["models"][w.model].get("image_size", 128),
        min_area=lambda w: config["models"][w.model]["preprocess"].get("min_area", 100),
        crop=lambda w: (
            "" if config["models"][w.model]["preprocess"].get("crop", True) else "--no-crop"
        ),
    shell:
        "medsam2 preprocess --dataset-dir {params.dir} --out {params.out}"
        " --image-size {params.size} --min-area {params.min_area} {params.crop} > {log} 2>&1"


rule fetch_checkpoint:
    conda:
        "../envs/medsam2.yaml"
    output:
        f"{RESOURCES}/checkpoints/{{name}}",
    log:
        f"{LOGS}/checkpoints/{{name}}.log",
    wildcard_constraints:
        name=names_regex(list(OFFICIAL_CHECKPOINTS)),
    params:
        out=lambda w, output: str(Path(output[0]).parent),
    shell:
        "medsam2 checkpoint {wildcards.name} --out-dir {params.out} > {log} 2>&1"


rule pretrain_tracker:
    conda:
        "../envs/medsam2.yaml"
    output:
        pretrained_checkpoint("{name}"),
    log:
        f"{LOGS}/pretrain/{{name}}.log",
    wildcard_constraints:
        name=names_regex(list(config.get("pretrain") or {})),
    params:
        cfg=lambda w: json.dumps(config["pretrain"][w.name], sort_keys=True),
        out=lambda w, output: str(Path(output[0]).parent),
        seed=SEED,
    threads: 1
    priority: lambda w: long_first(pretrain_resources(w.name, "runtime", 60))
    resources:
        gpu=lambda w: pretrain_resources(w.name, "gpu", 0),
        mem_mb=lambda w: pretrain_resources(w.name, "mem_mb", 4000),
        runtime=lambda w: pretrain_resources(w.name, "runtime", 60),
    shell:
        "medsam2 pretrain --model-json {params.cfg:q} --out-dir {params.out}"
        " --seed {params.seed} --threads {threads} > {log} 2>&1"


rule train_tracker:
    conda:
        "../envs/medsam2.yaml"
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
        cfg=lambda w: model_json(w.model),
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
    threads: 1
    priority: lambda w: long_first(model_resources(w.model, "runtime", 60))
    resources:
        gpu=lambda w: model_resources(w.model, "gpu", 0),
        mem_mb=lambda w: model_resources(w.model, "mem_mb", 4000),
        runtime=lambda w: model_resources(w.model, "runtime", 60),
    shell:
        "{params.launcher} train --model-json {params.cfg:q} --dataset-dir {params.dirs}"
        " --out-dir {params.out} --seed {params.seed} {params.init} --threads {threads}"
        " > {log} 2>&1"


rule predict_tracker:
    conda:
        "../envs/medsam2.yaml"
    input:
        dataset=dataset_json("{dataset}"),
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
        mode=lambda w: config["datasets"][w.dataset].get("mode_2d", "per_image"),
        seed=SEED,
    threads: 1
    resources:
        gpu=lambda w: model_resources(w.model, "gpu", 0),
        mem_mb=lambda w: model_resources(w.model, "mem_mb", 4000),
        runtime=lambda w: model_resources(w.model, "runtime", 60),
    shell:
        "medsam2 predict --model-json {params.cfg:q} --checkpoint {input.checkpoint}"
        " --dataset-dir {params.dir} --prompts {input.prompts} --out-dir {output}"
        " --mode-2d {params.mode} --seed {params.seed} --threads {threads} > {log} 2>&1"


rule template_sensitivity:
    conda:
        "../envs/medsam2.yaml"
    input:
        dataset=dataset_json("{dataset}"),
        prompts=f"{RESULTS}/prompts/{{dataset}}.json",
        checkpoint=lambda w: tracker_checkpoint(w.model),
    output:
        f"{RESULTS}/sensitivity/{{dataset}}/{{model}}.csv",
    log:
        f"{LOGS}/sensitivity/{{dataset}}/{{model}}.log",
    wildcard_constraints:
        model=names_regex(tracker_models()),
    params:
        cfg=lambda w: model_json(w.model, w.dataset),
        dir=lambda w: dataset_dir(w.dataset),
        seeds=lambda w: " ".join(str(SEED + k) for k in range(3)),
    threads: 1
    resources:
        gpu=lambda w: model_resources(w.model, "gpu", 0),
        mem_mb=lambda w: model_resources(w.model, "mem_mb", 4000),
        runtime=lambda w: model_resources(w.model, "runtime", 60),
    shell:
        "medsam2 sensitivity --model-json {params.cfg:q} --model {wildcards.model}"
        " --checkpoint {input.checkpoint} --dataset-dir {params.dir}"
        " --prompts {input.prompts} --seeds {params.seeds} --out {output}"
        " --threads {threads} > {log} 2>&1"
