# Second stage over frozen codes: unconditional generation, image completion, semantic
# synthesis and text-to-image; each trained per tokenizer x variant and evaluated by FID.

S2DIR = f"{R}/{{dataset}}/stage2/{{s2task}}/{{tokenizer}}/{{variant}}/seed{{seed}}"


rule train_stage2:
    input:
        codes=f"{TOKDIR}/codes/train.npy",
        text=TEXT_CACHE,
    output:
        f"{S2DIR}/model.pt",
    params:
        h=lambda wc: config_hash([tokenizer_hash(wc), config["stage2"], wc.s2task]),
    log:
        f"{R}/logs/train_stage2/{{s2task}}-{{dataset}}-{{tokenizer}}-{{variant}}-{{seed}}.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=600,
        gpus=1,
    shell:
        f"{LGVQ} stage2 train --task {{wildcards.s2task}} {RUN_SELECT} --threads {{threads}} > {{log}} 2>&1"


rule eval_stage2:
    input:
        model=f"{S2DIR}/model.pt",
        tokenizer=f"{TOKDIR}/model.pt",
        extractor=fid_extractor_input,
    output:
        f"{R}/{{dataset}}/eval/stage2-{{s2task}}/{{tokenizer}}/{{variant}}/seed{{seed}}/metrics.json",
    params:
        h=lambda wc: config_hash([tokenizer_hash(wc), config["stage2"], config["eval"], wc.s2task]),
    log:
        f"{R}/logs/eval_stage2/{{s2task}}-{{dataset}}-{{tokenizer}}-{{variant}}-{{seed}}.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    shell:
        f"{LGVQ} stage2 eval --task {{wildcards.s2task}} {RUN_SELECT} --threads {{threads}} > {{log}} 2>&1"
