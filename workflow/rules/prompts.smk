# Evaluation prompts: computed once per dataset from its ground truth (seeded) and shared
# by every prompted model, so that all of them see the same clicks, boxes and masks. The
# dataset's protocol (medsam2/protocols.py) says which frames are prompted.


rule prompts:
    input:
        dataset_json_of,
    output:
        f"{RESULTS}/prompts/{{dataset}}.json",
    log:
        f"{LOGS}/prompts/{{dataset}}.log",
    params:
        dir=lambda w: dataset_dir(w.dataset),
        kind=lambda w: SPEC.prompt_kind(w.dataset),
        rate=lambda w: SPEC.datasets[w.dataset].prompt_rate,
        # named where the config names it; else from mode_2d, rate and the data's dims
        protocol=lambda w: SPEC.datasets[w.dataset].protocol or "auto",
        mode=lambda w: SPEC.datasets[w.dataset].mode_2d,
        seed=SEED,
    shell:
        "medsam2 prompts --dataset-dir {params.dir} --kind {params.kind}"
        " --rate {params.rate} --protocol {params.protocol} --mode-2d {params.mode}"
        " --seed {params.seed} --out {output} > {log} 2>&1"
