# Understanding heads on frozen codes (Tables 8, 9, 11): captioning, VQA, grounding. Each job
# trains one head on a tokenizer run's train-split codes and evaluates it on the test split.


rule downstream:
    conda:
        "../../environment.yml"
    input:
        train=codes("train"),
        test=codes("test"),
        codebook=CODEBOOK,
    output:
        metrics("{dstask}"),
    params:
        cfg=job_config,
        h=downstream_hash,
    log:
        str(paths.task_log(R, "downstream", "{dstask}", *RUN)),
    priority: PRIORITY["long"]
    threads: 1
    resources:
        **resources_of("downstream"),
    shell:
        f"{launcher(config['downstream']['gpus'])} downstream run --task {{wildcards.dstask}} {RUN_SELECT} --threads {{threads}} > {{log}} 2>&1"
