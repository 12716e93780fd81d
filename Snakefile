# lgvq-bench: config (datasets x tokenizers x variants x seeds) -> trained tokenizers ->
# evaluations -> the paper's tables. Thin on purpose: the jobs are `lgvq <verb>` calls and
# the experiment matrix lives in lgvq.pipeline.plan (shared with `lgvq tables build`).
#
#   snakemake --cores all results/tables                       all tables
#   snakemake --cores all results/tables/ablation.md           one table, and only what it needs
#   snakemake --cores all --configfile config/smoke.yaml       another config: all its tables (its default target)
#
# (--configfile takes several files: put targets before it, or use the default target.)
# profiles/default (rerun-incomplete, show-failed-logs) is loaded by Snakemake automatically.

from lgvq.config import validate_config
from lgvq.io import atomic_write_json
from lgvq.manifest import config_hash
from lgvq.pipeline import jobs, paths, plan  # noqa: F401  (the rules use them)
from lgvq.pipeline.preflight import preflight, refuse_to_start


# The default experiment only when no config names its datasets: `--configfile` replaces it
# instead of being deep-merged over it (a merge would add the default's embedded dataset and
# keys to every other profile). `--config key=value` overrides apply either way.
if "datasets" not in config:

    configfile: "config/config.yaml"



# One source of truth for validation and defaults: the schema in config/schema.yaml, applied
# by lgvq.config (also used by every `lgvq` verb), so errors name the bad key the same way.
config = validate_config(dict(config), source="snakemake config")
R = config["results_dir"]
# Everything a job will look up (data roots, weight files, registry names) is checked now: a problem
# is printed at once, and `onstart` (a real run, before its first job, so before Snakemake deletes any
# output it would rebuild) stops the run on it. A dry run only warns: planning and pricing a paper
# run before its data are in place is a use.
PROBLEMS = preflight(config)

# The `lgvq` verbs read the validated config from a file named by its hash: parsing another config
# (a dry run, a second run) writes another file and never changes what a planned or running job
# reads. The path is filled into the commands when they run, not declared as an input or param
# (editing one tokenizer's params must not retrain the others); each rule carries the hash of its
# own config slice in `params.h` (lgvq.pipeline.jobs), which is what makes Snakemake rerun exactly
# the affected jobs.
CONFIG_JSON = f"{R}/.config/{config_hash(config)}.json"
atomic_write_json(CONFIG_JSON, config)


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/tokenizers.smk"
include: "workflow/rules/evaluation.smk"
include: "workflow/rules/stage2.smk"
include: "workflow/rules/downstream.smk"
include: "workflow/rules/references.smk"
include: "workflow/rules/tables.smk"


onstart:
    refuse_to_start(PROBLEMS)


rule all:
    default_target: True
    input:
        TABLES,
        REPORT,
