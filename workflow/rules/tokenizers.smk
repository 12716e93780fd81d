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
    # the medium run at 1140ef5, without a priority: its third LG tokenizer (~21 min) started at minute 83 of 2 h
    priority: PRIORITY["tokenizer"]
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
    priority: PRIORITY["gate"]
    threads: 1
    resources:
        **resources_of("encode_codes"),
    shell:
        f"{GPU_LGVQ} tokenizer encode {RUN_SELECT} --threads {{threads}} > {{log}} 2>&1"
