# Dice and HD95 per case and label, for any model that wrote predictions.


rule evaluate:
    conda:
        "../envs/medsam2.yaml"
    input:
        dataset=dataset_json("{dataset}"),
        predictions=f"{RESULTS}/predictions/{{dataset}}/{{model}}",
    output:
        f"{RESULTS}/metrics/{{dataset}}/{{model}}.csv",
    log:
        f"{LOGS}/evaluate/{{dataset}}/{{model}}.log",
    params:
        dir=lambda w: dataset_dir(w.dataset),
        strict="--strict" if (config.get("evaluate") or {}).get("strict") else "",
    shell:
        "medsam2 evaluate --dataset-dir {params.dir} --pred-dir {input.predictions}"
        " --dataset {wildcards.dataset} --model {wildcards.model} --out {output}"
        " {params.strict} > {log} 2>&1"


rule resolved_config:
    conda:
        "../envs/medsam2.yaml"
    output:
        config_resolved_path(),
    log:
        f"{LOGS}/resolved_config.log",
    params:
        cfg=json.dumps(config, sort_keys=True),
    shell:
        "medsam2 config resolve --json {params.cfg:q} --out {output} > {log} 2>&1"
