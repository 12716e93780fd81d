# The product: the paper's tables (ours beside the paper's) and the HTML report.
# `results/tables` builds every table; `results/tables/<id>.md` rebuilds one table and only
# the jobs its numbers come from (plan.table_inputs knows which).


rule tables:
    conda:
        "../../environment.yml"
    input:
        plan.all_table_inputs(config),
    output:
        directory(f"{R}/tables"),
    params:
        cfg=job_config,
        h=TABLES_HASH,
    log:
        f"{R}/logs/tables.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        f"{LGVQ} tables build --config {{params.cfg}} --all --out-dir {{output}} > {{log}} 2>&1"


rule table:
    conda:
        "../../environment.yml"
    input:
        lambda wc: plan.table_inputs(config, wc.table),
    output:
        md=f"{R}/tables/{{table}}.md",
        csv=f"{R}/tables/{{table}}.csv",
        tex=f"{R}/tables/{{table}}.tex",
    params:
        cfg=job_config,
        h=TABLES_HASH,
    log:
        f"{R}/logs/table-{{table}}.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        f"{LGVQ} tables build --config {{params.cfg}} --table {{wildcards.table}} --out-dir {R}/tables > {{log}} 2>&1"


rule report:
    conda:
        "../../environment.yml"
    input:
        f"{R}/tables",
    output:
        f"{R}/report.html",
    params:
        cfg=job_config,
        h=TABLES_HASH,
    log:
        f"{R}/logs/report.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        f"{LGVQ} report --config {{params.cfg}} --out {{output}} > {{log}} 2>&1"
