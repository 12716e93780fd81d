# First stage: train each tokenizer (base, +LG, ablation variants) and encode every split.

TEXT_CACHE = f"{R}/{{dataset}}/text/{config['text_encoder']['name']}.npz"
TOKDIR = f"{R}/{{dataset}}/tokenizers/{{tokenizer}}/{{variant}}/seed{{seed}}"


def text_cache_if_needed(wc):
    """Only runs that read text (LG variants, VQCT's word-embedding codebook) wait for the text cache."""
    from lgvq.config import tokenizer_needs_text

    if tokenizer_needs_text(config, wc.dataset, wc.tokenizer, wc.variant):
        return [TEXT_CACHE.format(dataset=wc.dataset)]
    return []


rule train_tokenizer:
    conda:
        "../../environment.yml"
    input:
        data=f"{R}/{{dataset}}/data/prepared.json",
        text=text_cache_if_needed,
    output:
        f"{TOKDIR}/model.pt",
    params:
        cfg=job_config,
        h=tokenizer_hash,
    log:
        f"{R}/logs/train_tokenizer/{{dataset}}-{{tokenizer}}-{{variant}}-{{seed}}.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=600,
        gpus=config["train"]["gpus"],
    shell:
        f"{TRAIN_LAUNCH} tokenizer train {RUN_SELECT} --threads {{threads}} > {{log}} 2>&1"


rule encode_codes:
    conda:
        "../../environment.yml"
    input:
        f"{TOKDIR}/model.pt",
    output:
        train=f"{TOKDIR}/codes/train.npy",
        val=f"{TOKDIR}/codes/val.npy",
        test=f"{TOKDIR}/codes/test.npy",
        codebook=f"{TOKDIR}/codes/codebook.npy",
    params:
        cfg=job_config,
        h=tokenizer_hash,
    log:
        f"{R}/logs/encode_codes/{{dataset}}-{{tokenizer}}-{{variant}}-{{seed}}.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        f"{LGVQ} tokenizer encode {RUN_SELECT} --threads {{threads}} > {{log}} 2>&1"
