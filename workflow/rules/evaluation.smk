# First-stage evaluations: the offline FID feature extractor, reconstruction (FID, PSNR, SSIM)
# with codebook statistics, and the text-alignment evaluations (masked-word recall, word-code
# similarity, image-to-text retrieval).



rule train_feature_extractor:
    conda:
        "../../environment.yml"
    input:
        PREPARED,
    output:
        SHAPES_CNN,
    params:
        cfg=job_config,
        h=extractor_hash,
    log:
        str(paths.dataset_log(R, "feature_extractor", "{dataset}")),
    priority: PRIORITY["gate"]
    threads: 1
    resources:
        **resources_of("train_feature_extractor"),
    shell:
        f"{GPU_LGVQ} metrics train-extractor {SELECT} --threads {{threads}} > {{log}} 2>&1"


rule eval_reconstruction:
    conda:
        "../../environment.yml"
    input:
        model=MODEL,
        test=codes("test"),
        extractor=fid_extractor_input,
    output:
        recon=metrics("reconstruction"),
        codebook=metrics("codebook"),
    params:
        cfg=job_config,
        h=reconstruction_hash,
    log:
        str(paths.run_log(R, "eval_reconstruction", *RUN)),
    threads: 1
    resources:
        **resources_of("eval_reconstruction"),
    shell:
        f"{GPU_LGVQ} eval reconstruction {RUN_SELECT} --threads {{threads}} > {{log}} 2>&1"


rule eval_text_alignment:
    conda:
        "../../environment.yml"
    input:
        model=MODEL,
        text=TEXT_CACHE,
    output:
        metrics("text_alignment"),
    params:
        cfg=job_config,
        h=text_alignment_hash,
    log:
        str(paths.run_log(R, "eval_text_alignment", *RUN)),
    threads: 1
    resources:
        **resources_of("eval_text_alignment"),
    shell:
        f"{GPU_LGVQ} eval text-alignment {RUN_SELECT} --threads {{threads}} > {{log}} 2>&1"
