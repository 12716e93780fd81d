# Understanding on frozen codes: captioning, VQA and visual grounding heads.

DSDIR = f"{R}/{{dataset}}/downstream/{{dstask}}/{{tokenizer}}/{{variant}}/seed{{seed}}"


rule train_downstream:
    input:
        codes=f"{TOKDIR}/codes/train.npy",
    output:
        f"{DSDIR}/model.pt",
    params:
        h=lambda wc: config_hash([tokenizer_hash(wc), config["downstream"], wc.dstask]),
    log:
        f"{R}/logs/train_downstream/{{dstask}}-{{dataset}}-{{tokenizer}}-{{variant}}-{{seed}}.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=600,
        gpus=1,
    shell:
        f"{LGVQ} downstream train --task {{wildcards.dstask}} {RUN_SELECT} --threads {{threads}} > {{log}} 2>&1"


rule eval_downstream:
    input:
        model=f"{DSDIR}/model.pt",
        codes=f"{TOKDIR}/codes/test.npy",
    output:
        f"{R}/{{dataset}}/eval/{{dstask}}/{{tokenizer}}/{{variant}}/seed{{seed}}/metrics.json",
    params:
        h=lambda wc: config_hash([tokenizer_hash(wc), config["downstream"], wc.dstask]),
    log:
        f"{R}/logs/eval_downstream/{{dstask}}-{{dataset}}-{{tokenizer}}-{{variant}}-{{seed}}.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        f"{LGVQ} downstream eval --task {{wildcards.dstask}} {RUN_SELECT} --threads {{threads}} > {{log}} 2>&1"
