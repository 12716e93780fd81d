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
        str(paths.dataset_log(R, "prepare_data", "{dataset}")),
    threads: 1
    resources:
        **resources_of("prepare_data"),
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
        str(paths.dataset_log(R, "dataset_stats", "{dataset}")),
    threads: 1
    resources:
        **resources_of("dataset_stats"),
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
        str(paths.text_cache_log(R, "{dataset}", "{encoder}")),
    priority: PRIORITY["first"]
    threads: 2
    resources:
        **resources_of("text_cache"),
    shell:
        f"{GPU_LGVQ} text cache {SELECT} --out {{output}} > {{log}} 2>&1"
