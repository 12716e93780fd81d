# First-stage evaluations: the offline FID feature extractor, reconstruction (FID, PSNR, SSIM)
# with codebook statistics, and the text-alignment evaluations (masked-word recall, word-code
# similarity, image-to-text retrieval).

EVALDIR = f"{R}/{{dataset}}/eval/{{kind}}/{{tokenizer}}/{{variant}}/seed{{seed}}"


rule train_feature_extractor:
    conda:
        "../../environment.yml"
    input:
        f"{R}/{{dataset}}/data/prepared.json",
    output:
        f"{R}/{{dataset}}/shapes_cnn/model.pt",
    params:
        cfg=job_config,
        h=extractor_hash,
    log:
        f"{R}/logs/feature_extractor/{{dataset}}.log",
    threads: 1
    resources:
        mem_mb=3000,
        runtime=60,
    shell:
        f"{LGVQ} metrics train-extractor {SELECT} --threads {{threads}} > {{log}} 2>&1"


rule eval_reconstruction:
    conda:
        "../../environment.yml"
    input:
        model=f"{TOKDIR}/model.pt",
        test=f"{TOKDIR}/codes/test.npy",
        extractor=fid_extractor_input,
    output:
        recon=f"{R}/{{dataset}}/eval/reconstruction/{{tokenizer}}/{{variant}}/seed{{seed}}/metrics.json",
        codebook=f"{R}/{{dataset}}/eval/codebook/{{tokenizer}}/{{variant}}/seed{{seed}}/metrics.json",
    params:
        cfg=job_config,
        h=reconstruction_hash,
    log:
        f"{R}/logs/eval_reconstruction/{{dataset}}-{{tokenizer}}-{{variant}}-{{seed}}.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        f"{LGVQ} eval reconstruction {RUN_SELECT} --threads {{threads}} > {{log}} 2>&1"


rule eval_text_alignment:
    conda:
        "../../environment.yml"
    input:
        model=f"{TOKDIR}/model.pt",
        text=TEXT_CACHE,
    output:
        f"{R}/{{dataset}}/eval/text_alignment/{{tokenizer}}/{{variant}}/seed{{seed}}/metrics.json",
    params:
        cfg=job_config,
        h=text_alignment_hash,
    log:
        f"{R}/logs/eval_text_alignment/{{dataset}}-{{tokenizer}}-{{variant}}-{{seed}}.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        f"{LGVQ} eval text-alignment {RUN_SELECT} --threads {{threads}} > {{log}} 2>&1"
