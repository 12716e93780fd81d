# Second stage on frozen codes (Tables 5, 6, 7, 10): each job trains one generator on a tokenizer
# run's train-split codes, samples one image per test condition, decodes and scores them.


rule stage2:
    conda:
        "../../environment.yml"
    input:
        model=MODEL,
        train=codes("train"),
        test=codes("test"),
        codebook=CODEBOOK,
        text=TEXT_CACHE,
        extractor=fid_extractor_input,
        labelmap=labelmap_vq_input,
    output:
        metrics(paths.stage2_kind("{s2task}")),
    params:
        cfg=job_config,
        h=stage2_hash,
    log:
        str(paths.task_log(R, "stage2", "{s2task}", *RUN)),
    priority: PRIORITY["long"]
    threads: 1
    resources:
        **resources_of("stage2"),
    shell:
        f"{launcher(config['stage2']['gpus'])} stage2 run --task {{wildcards.s2task}} {RUN_SELECT} --threads {{threads}} > {{log}} 2>&1"


rule labelmap_vq:
    conda:
        "../../environment.yml"
    input:
        PREPARED,
    output:
        LABELMAP_VQ,
    params:
        cfg=job_config,
        h=labelmap_vq_hash,
    log:
        str(paths.dataset_log(R, "labelmap_vq", "{dataset}")),
    priority: PRIORITY["long"]
    threads: 1
    resources:
        **resources_of("labelmap_vq"),
    shell:
        f"{GPU_LGVQ} stage2 labelmap-vq {SELECT} --threads {{threads}} > {{log}} 2>&1"
