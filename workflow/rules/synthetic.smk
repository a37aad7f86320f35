# Synthetic phantom datasets (the CPU demo): one rule, seeded, standard layout.


rule synthesize:
    output:
        STANDARD_DATASET,
    log:
        f"{LOGS}/synthesize/{{dataset}}.log",
    wildcard_constraints:
        dataset=names_regex(SPEC.data_names("synthetic")),
    params:
        out=lambda w: dataset_dir(w.dataset),
        generator=lambda w: SPEC.datasets[w.dataset].generator,
        n_cases=lambda w: SPEC.datasets[w.dataset].n_cases,
        test_fraction=lambda w: SPEC.datasets[w.dataset].test_fraction,
        seed=SEED,
    # seconds long, and every training job waits for it: before them all (see long_first)
    priority: DATA_FIRST
    shell:
        "medsam2 synth --generator {params.generator} --out {params.out}"
        " --n-cases {params.n_cases} --test-fraction {params.test_fraction}"
        " --seed {params.seed} > {log} 2>&1"
