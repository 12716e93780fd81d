# Second stage on frozen codes (Tables 5, 6, 7, 10): each job trains one generator on a tokenizer
# run's train-split codes, samples one image per test condition, decodes and scores them.


rule stage2:
    conda:
        "../../environment.yml"
    input:
        model=f"{TOKDIR}/model.pt",
        train=f"{TOKDIR}/codes/train.npy",
        test=f"{TOKDIR}/codes/test.npy",
        codebook=f"{TOKDIR}/codes/codebook.npy",
        text=TEXT_CACHE,
        extractor=fid_extractor_input,
        labelmap=labelmap_vq_input,
    output:
        f"{R}/{{dataset}}/eval/stage2-{{s2task}}/{{tokenizer}}/{{variant}}/seed{{seed}}/metrics.json",
    params:
        cfg=job_config,
        h=stage2_hash,
    log:
        f"{R}/logs/stage2/{{s2task}}-{{dataset}}-{{tokenizer}}-{{variant}}-{{seed}}.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=1440,
        gpus=config["stage2"]["gpus"],
    shell:
        f"{launcher(config['stage2']['gpus'])} stage2 run --task {{wildcards.s2task}} {RUN_SELECT} --threads {{threads}} > {{log}} 2>&1"


rule labelmap_vq:
    conda:
        "../../environment.yml"
    input:
        f"{R}/{{dataset}}/data/prepared.json",
    output:
        f"{R}/{{dataset}}/labelmap_vq/model.pt",
    params:
        cfg=job_config,
        h=labelmap_vq_hash,
    log:
        f"{R}/logs/labelmap_vq/{{dataset}}.log",
    threads: 1
    resources:
        mem_mb=3000,
        runtime=600,
    shell:
        f"{LGVQ} stage2 labelmap-vq {SELECT} --threads {{threads}} > {{log}} 2>&1"
