# The product: the paper's tables (ours beside the paper's) and the HTML report.
# `results/tables` builds every table; `results/tables/<id>.md` rebuilds one table and only
# the jobs its numbers come from (plan.table_inputs knows which).


rule tables:
    conda:
        "../../environment.yml"
    input:
        plan.all_table_inputs(config),
    output:
        directory(TABLES),
    params:
        cfg=job_config,
        h=TABLES_HASH,
    log:
        str(paths.tables_log(R)),
    threads: 1
    resources:
        **resources_of("tables"),
    shell:
        f"{LGVQ} tables build --config {{params.cfg}} --all --out-dir {{output}} > {{log}} 2>&1"


rule table:
    conda:
        "../../environment.yml"
    input:
        lambda wc: plan.table_inputs(config, wc.table),
    output:
        md=str(paths.table_file(R, "{table}", "md")),
        csv=str(paths.table_file(R, "{table}", "csv")),
        tex=str(paths.table_file(R, "{table}", "tex")),
    params:
        cfg=job_config,
        h=TABLES_HASH,
    log:
        str(paths.table_log(R, "{table}")),
    threads: 1
    resources:
        **resources_of("table"),
    shell:
        f"{LGVQ} tables build --config {{params.cfg}} --table {{wildcards.table}} --out-dir {TABLES} > {{log}} 2>&1"


# The dose-response table also draws its plot: the same job as `table`, with the PNG among its outputs.
ruleorder: dose_response_table > table


rule dose_response_table:
    conda:
        "../../environment.yml"
    input:
        lambda wc: plan.table_inputs(config, plan.DOSE_RESPONSE_TABLE),
    output:
        **{ext: str(paths.table_file(R, plan.DOSE_RESPONSE_TABLE, ext)) for ext in ("md", "csv", "tex", "png")},
    params:
        cfg=job_config,
        h=TABLES_HASH,
    log:
        str(paths.table_log(R, plan.DOSE_RESPONSE_TABLE)),
    threads: 1
    resources:
        **resources_of("table"),
    shell:
        f"{LGVQ} tables build --config {{params.cfg}} --table dose_response --out-dir {TABLES} > {{log}} 2>&1"


rule report:
    conda:
        "../../environment.yml"
    input:
        TABLES,
    output:
        REPORT,
    params:
        cfg=job_config,
        h=TABLES_HASH,
    log:
        str(paths.report_log(R)),
    threads: 1
    resources:
        **resources_of("report"),
    shell:
        f"{LGVQ} report --config {{params.cfg}} --out {{output}} > {{log}} 2>&1"
