# lgvq-bench: config (datasets x tokenizers x variants x seeds) -> trained tokenizers ->
# evaluations -> the paper's tables. Thin on purpose: the jobs are `lgvq <verb>` calls and
# the experiment matrix lives in lgvq.pipeline.plan (shared with `lgvq tables build`).
#
#   snakemake --cores all results/tables                 all tables
#   snakemake --cores all results/tables/ablation.md     one table, and only what it needs
#   snakemake --cores all --configfile config/smoke.yaml results/tables

from lgvq.config import head_settings, validate_config  # noqa: F401  (head_settings: the rules' params)
from lgvq.io import atomic_write_json
from lgvq.manifest import config_hash  # noqa: F401  (used by the rules' params)
from lgvq.pipeline import paths, plan


# The default experiment only when no config names its datasets: `--configfile` replaces it
# instead of being deep-merged over it (a merge would add the default's embedded dataset and
# keys to every other profile). `--config key=value` overrides apply either way.
if "datasets" not in config:

    configfile: "config/config.yaml"



# One source of truth for validation and defaults: the schema in config/schema.yaml, applied
# by lgvq.config (also used by every `lgvq` verb), so errors name the bad key the same way.
config = validate_config(dict(config), source="snakemake config")
R = config["results_dir"]

# The `lgvq` verbs read the validated config from this file. It is not declared as an input
# (editing one tokenizer's params must not retrain the others); each rule carries the hash
# of its own config slice in `params`, which is what makes Snakemake rerun exactly the
# affected jobs.
CONFIG_JSON = f"{R}/.config/config.json"  # a stable path: as a param it must not change with the config
atomic_write_json(CONFIG_JSON, config)


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/tokenizers.smk"
include: "workflow/rules/evaluation.smk"
include: "workflow/rules/stage2.smk"
include: "workflow/rules/downstream.smk"
include: "workflow/rules/tables.smk"


rule all:
    default_target: True
    input:
        f"{R}/tables",
        f"{R}/report.html",
