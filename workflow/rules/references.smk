# Baselines and ceilings (lgvq/pipeline/references.py): one rule per declared reference, made by the loop
# below from its declaration (inputs from `needs`, one metrics.json per record kind). A data-only reference
# runs once per dataset (`lgvq reference data`), a per-tokenizer one on each base run (`lgvq reference run`).
# All share one resource model: `resources: {reference: ...}` in the config.

from lgvq.pipeline.references import REFERENCES


BASE_RUN = ("{dataset}", "{tokenizer}", "base", "{seed}")
REFERENCE_NEEDS = {
    "data": lambda wc: [PREPARED.format(dataset=wc.dataset)],
    "extractor": fid_extractor_input,
    "text": lambda wc: [TEXT_CACHE.format(dataset=wc.dataset)],
    "model": lambda wc: [str(paths.tokenizer_model(R, *BASE_RUN)).format(**wc)],
    "codes": lambda wc: [str(paths.codes_file(R, *BASE_RUN, s)).format(**wc) for s in ("train", "test")],
    "codebook": lambda wc: [str(paths.codebook_file(R, *BASE_RUN)).format(**wc)],
}


def reference_input(ref):
    return lambda wc: {need: REFERENCE_NEEDS[need](wc) for need in ref.needs}


def reference_output(ref):
    tok = "{tokenizer}" if ref.per_tokenizer else None
    return [str(paths.reference_metrics_file(R, kind, "{dataset}", ref.name, tok, "{seed}")) for kind in ref.kinds]


def reference_hash(ref):
    return lambda wc: jobs.job_hash(jobs.reference(config, ref.name, wc.dataset, getattr(wc, "tokenizer", None), int(wc.seed)))


def reference_command(ref):
    """The job's `lgvq` command, as params.command (the shell adds the GPU launcher): a rule made in a loop
    evaluates its `shell:` when the job runs, after the loop has moved on, so the command is bound to its
    reference here, when the rule is made."""
    log = reference_log(ref)

    def command(wildcards, threads):
        wc = dict(wildcards.items())
        if ref.per_tokenizer:
            cmd = (f"{LGVQ} reference run --task {ref.name} --config {CONFIG_JSON} --dataset {wc['dataset']}"
                   f" --tokenizer {wc['tokenizer']} --variant base --seed {wc['seed']}")
        elif ref.head_seeds:
            cmd = (f"{LGVQ} reference seeded --task {ref.name} --config {CONFIG_JSON} --dataset {wc['dataset']}"
                   f" --seed {wc['seed']}")
        else:
            cmd = f"{LGVQ} reference data --task {ref.name} --config {CONFIG_JSON} --dataset {wc['dataset']}"
        return f"{cmd} --threads {threads} > {log.format(**wc)} 2>&1"

    return command


def reference_log(ref):
    return str(paths.reference_log(R, ref.rule, "{dataset}", "{tokenizer}" if ref.per_tokenizer else None, "{seed}"))


for _ref in REFERENCES:

    rule:
        name:
            _ref.rule
        conda:
            "../../environment.yml"
        input:
            unpack(reference_input(_ref)),
        output:
            reference_output(_ref),
        params:
            cfg=job_config,
            h=reference_hash(_ref),
            command=reference_command(_ref),
        log:
            reference_log(_ref),
        threads: 1
        resources:
            # a trained baseline (blind / text-only head) runs as long as the heads of its task
            **(resources_of("reference_head", _ref.kinds[0]) if _ref.head_seeds else resources_of("reference")),
        shell:
            f"{GPU_LAUNCH} {{params.command}}"
