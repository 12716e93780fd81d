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
        f"{R}/logs/tables.log",
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
        md=f"{TABLES}/{{table}}.md",
        csv=f"{TABLES}/{{table}}.csv",
        tex=f"{TABLES}/{{table}}.tex",
    params:
        cfg=job_config,
        h=TABLES_HASH,
    log:
        f"{R}/logs/table-{{table}}.log",
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
        md=f"{TABLES}/dose_response.md",
        csv=f"{TABLES}/dose_response.csv",
        tex=f"{TABLES}/dose_response.tex",
        png=f"{TABLES}/dose_response.png",
    params:
        cfg=job_config,
        h=TABLES_HASH,
    log:
        f"{R}/logs/table-dose_response.log",
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
        f"{R}/logs/report.log",
    threads: 1
    resources:
        **resources_of("report"),
    shell:
        f"{LGVQ} report --config {{params.cfg}} --out {{output}} > {{log}} 2>&1"
