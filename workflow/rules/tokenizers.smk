# First stage: train each tokenizer (base, +LG, ablation variants) and encode every split.


rule train_tokenizer:
    conda:
        "../../environment.yml"
    input:
        data=PREPARED,
        text=text_cache_if_needed,
    output:
        MODEL,
    params:
        cfg=job_config,
        h=tokenizer_hash,
    log:
        str(paths.run_log(R, "train_tokenizer", *RUN)),
    # The longest jobs, and every later stage waits on one: started first, so a long tokenizer run is not
    # the lone job at the end of the DAG while the other cores idle (the medium run at 1140ef5, without
    # this: its third LG tokenizer, ~21 min, started at minute 83 of 2 h; a head or generator takes ~6).
    # Not yet timed on a whole profile (benchmarks/bench_default_dag.py).
    priority: 10
    threads: 1
    resources:
        **resources_of("train_tokenizer"),
    shell:
        f"{TRAIN_LAUNCH} tokenizer train {RUN_SELECT} --threads {{threads}} > {{log}} 2>&1"


rule encode_codes:
    conda:
        "../../environment.yml"
    input:
        MODEL,
    output:
        train=codes("train"),
        val=codes("val"),
        test=codes("test"),
        codebook=CODEBOOK,
    params:
        cfg=job_config,
        h=tokenizer_hash,
    log:
        str(paths.run_log(R, "encode_codes", *RUN)),
    threads: 1
    resources:
        **resources_of("encode_codes"),
    shell:
        f"{GPU_LGVQ} tokenizer encode {RUN_SELECT} --threads {{threads}} > {{log}} 2>&1"
