# The two commands of the README: `make tables` and `make test`. Both set up .venv first.
# `make setup` is idempotent: it reinstalls only when pyproject.toml changed (stamp file).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-$(shell cat pyproject.toml Makefile scripts/install_wordnet.sh 2>/dev/null | sha1sum | cut -c1-12)
CONFIG  ?= config/config.yaml
CORES   ?= all
export NLTK_DATA ?= $(CURDIR)/.nltk_data
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup tables table test test-fast test-slurm lint clean-results

setup: $(STAMP)

$(STAMP): pyproject.toml
	@command -v java >/dev/null 2>&1 || { echo "Java not found: installing default-jre-headless (METEOR/PTB tokenizer need it)"; \
		(apt-get update -qq && apt-get install -y -qq --no-install-recommends default-jre-headless) >/dev/null; }
	@test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch/torchvision pinned: this pair installs from local disk; others pull GBs or break torchvision.
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[test]'
	# Test-only references for the pretrained adapters (tests/test_pretrained_tokenizers.py): their model code
	# needs only torch + einops; --no-deps because their pins (lightning, transformers==4.37.2) would replace ours.
	$(BIN)/pip install -q --no-deps taming-transformers-rom1504==0.0.6 open-magvit2==1.1
	bash scripts/install_wordnet.sh "$(NLTK_DATA)"
	@rm -f $(VENV)/.installed-*
	@touch $@

# results_dir of $(CONFIG) (results/smoke for config/smoke.yaml): expanded when a recipe runs, after setup
RESULTS = $(shell $(BIN)/python -c 'import sys; from lgvq.config import load_config; print(load_config(sys.argv[1])["results_dir"])' $(CONFIG))

tables: setup
	@start=$$(date +%s); \
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake $(RESULTS)/tables $(RESULTS)/report.html --cores $(CORES) --configfile $(CONFIG) \
	&& echo "make tables: $(CONFIG) done in $$(( ($$(date +%s) - start) / 60 )) min $$(( ($$(date +%s) - start) % 60 )) s (wall time, set-up not counted)"

# One table: make table T=ablation [CONFIG=config/smoke.yaml]
table: setup
	@test -n "$(T)" || { echo "make table: name the table, e.g. make table T=ablation (ids: README.md, Tables)"; exit 2; }
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake $(RESULTS)/tables/$(T).md --cores $(CORES) --configfile $(CONFIG)

test: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest -q -n 2 --durations=15

test-fast: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest -q -n 2 -m "not slow"

# The SLURM profile for real (root: installs slurm-wlm + munge, starts a one-node cluster here):
# one table of the smoke DAG, every job through sbatch. The whole DAG: bash scripts/local_slurm.sh
test-slurm: setup
	bash scripts/local_slurm.sh $(CURDIR)/results/slurm_test.log results/tables/reconstruction.md

lint: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --lint --configfile config/smoke.yaml
