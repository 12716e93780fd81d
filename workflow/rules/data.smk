# Data: generate the embedded dataset (or check a real root), its statistics, and the frozen
# text features (once per dataset x text encoder).


rule prepare_data:
    conda:
        "../../environment.yml"
    output:
        PREPARED,
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
        PREPARED,
    output:
        STATS,
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
        PREPARED,
    output:
        str(paths.text_cache(R, "{dataset}", "{encoder}")),
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
