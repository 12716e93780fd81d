# Data: generate the embedded dataset (or check a real root), its statistics, and the frozen
# text features (once per dataset x text encoder).


rule prepare_data:
    conda:
        "../../environment.yml"
    output:
        f"{R}/{{dataset}}/data/prepared.json",
    params:
        cfg=job_config,
        h=data_hash,
    log:
        f"{R}/logs/prepare_data/{{dataset}}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        f"{LGVQ} data prepare {SELECT} > {{log}} 2>&1"


rule dataset_stats:
    conda:
        "../../environment.yml"
    input:
        f"{R}/{{dataset}}/data/prepared.json",
    output:
        f"{R}/{{dataset}}/data/stats.json",
    params:
        cfg=job_config,
        h=data_hash,
    log:
        f"{R}/logs/dataset_stats/{{dataset}}.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        f"{LGVQ} data stats {SELECT} --out {{output}} > {{log}} 2>&1"


rule text_cache:
    conda:
        "../../environment.yml"
    input:
        f"{R}/{{dataset}}/data/prepared.json",
    output:
        f"{R}/{{dataset}}/text/{{encoder}}.npz",
    params:
        cfg=job_config,
        h=text_cache_hash,
    log:
        f"{R}/logs/text_cache/{{dataset}}-{{encoder}}.log",
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        f"{LGVQ} text cache {SELECT} --out {{output}} > {{log}} 2>&1"
