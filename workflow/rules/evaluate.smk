# Dice and HD95 per case and label, for any model that wrote predictions.


rule evaluate:
    input:
        dataset=dataset_json_of,
        predictions=f"{RESULTS}/predictions/{{dataset}}/{{model}}",
    output:
        f"{RESULTS}/metrics/{{dataset}}/{{model}}.csv",
    log:
        f"{LOGS}/evaluate/{{dataset}}/{{model}}.log",
    params:
        dir=lambda w: dataset_dir(w.dataset),
        strict="--strict" if SPEC.evaluate.strict else "",
        both_empty=SPEC.evaluate.both_empty,
    resources:
        mem_mb=lambda w: dataset_resources(w.dataset).mem_mb,
        runtime=lambda w, attempt: dataset_resources(w.dataset).runtime * attempt,
    shell:
        "medsam2 evaluate --dataset-dir {params.dir} --pred-dir {input.predictions}"
        " --dataset {wildcards.dataset} --model {wildcards.model} --out {output}"
        " --both-empty {params.both_empty} {params.strict} > {log} 2>&1"


# One-Prompt template sensitivity (2D one_prompt datasets): the same tracker predicts with
# the template drawn by three seeds; the spread is reported beside the Dice.


rule template_sensitivity:
    input:
        dataset=dataset_json_of,
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
        seeds=" ".join(str(SEED + k) for k in range(SPEC.evaluate.template_seeds)),
        both_empty=SPEC.evaluate.both_empty,
    threads: lambda w: model_resources(w.model, "predict").threads
    resources:
        gpu=lambda w: model_resources(w.model, "predict").gpu,
        mem_mb=lambda w: model_resources(w.model, "predict").mem_mb,
        runtime=lambda w, attempt: model_resources(w.model, "predict").runtime * attempt,
    shell:
        "medsam2 sensitivity --model-json {params.cfg:q} --model {wildcards.model}"
        " --dataset {wildcards.dataset} --both-empty {params.both_empty}"
        " --checkpoint {input.checkpoint} --dataset-dir {params.dir}"
        " --prompts {input.prompts} --seeds {params.seeds} --out {output}"
        " --threads {threads} > {log} 2>&1"
