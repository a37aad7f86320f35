# SAM and MedSAM (kind: sam) through Meta's segment-anything package (baselines/sam).
# No training: the published weights (rule fetch_checkpoint, workflow/rules/data.smk:
# Meta's file downloaded, MedSAM's placed by hand) and the dataset's shared evaluation
# prompts (rule prompts) -> the prediction contract, scored by workflow/rules/evaluate.smk.


rule sam_predict:
    input:
        dataset=dataset_json_of,
        prompts=f"{RESULTS}/prompts/{{dataset}}.json",
        checkpoint=lambda w: SPEC.models[w.model].checkpoint_path(RESOURCES),
    output:
        directory(f"{RESULTS}/predictions/{{dataset}}/{{model}}"),
    log:
        f"{LOGS}/sam/predict/{{dataset}}/{{model}}.log",
    wildcard_constraints:
        model=names_regex(models_of_kind("sam")),
    params:
        cfg=lambda w: model_json(w.model),
        dir=lambda w: dataset_dir(w.dataset),
        seed=SEED,
    threads: lambda w: model_resources(w.model, "predict").threads
    resources:
        gpu=lambda w: model_resources(w.model, "predict").gpu,
        mem_mb=lambda w: model_resources(w.model, "predict").mem_mb,
        runtime=lambda w, attempt: model_resources(w.model, "predict").runtime * attempt,
    shell:
        "medsam2 sam predict --model-json {params.cfg:q} --checkpoint {input.checkpoint}"
        " --dataset-dir {params.dir} --prompts {input.prompts} --out-dir {output}"
        " --seed {params.seed} --threads {threads} > {log} 2>&1"
