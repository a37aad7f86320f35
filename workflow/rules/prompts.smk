# Evaluation prompts: computed once per dataset from its ground truth (seeded) and shared
# by every prompted model, so that all of them see the same clicks, boxes and masks.


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
        kind=lambda w: SPEC.prompt_kind(w.dataset),
        rate=lambda w: SPEC.datasets[w.dataset].prompt_rate,
        seed=SEED,
    shell:
        "medsam2 prompts --dataset-dir {params.dir} --kind {params.kind}"
        " --rate {params.rate} --seed {params.seed} --out {output} > {log} 2>&1"
