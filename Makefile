# Two commands on a fresh machine:  `make demo`  (set up + whole pipeline)  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Every package, torch included, comes from requirements.lock (exact versions and hashes; README
# "Locked environment"); `make lock` refreshes it from pyproject.toml.
LOCK := requirements.lock
PIP_VERSION := 26.3
CONFIG ?= config/default.yaml
CORES ?= 2
STAMP := $(VENV)/.installed
# Snakemake lints that `make lint` accepts, each by design: every rule runs the workflow's own
# interpreter, $VCQ_PYTHON, not a conda env (README "Install on a cluster"); the long steps append
# to a log named in params, since Snakemake deletes a `log:` before each attempt; every job reads
# the run's config snapshot RESOLVED_CONFIG, not a param, so that editing `resources` reruns
# nothing; "Mixed rules and functions": data.smk and report.smk keep a helper beside the one rule
# that uses it, and the lint's pattern matches comment text in common.smk ("per-rule ... onstart:").
LINT_ACCEPTED := Specify a conda environment or container|No log directive defined|uses variable RESOLVED_CONFIG from outside|Mixed rules and functions in same snakefile

.PHONY: setup lock check-lock doctor demo claims test test-all test-workflow test-slurm lint bench dryrun-imagenet report unlock clean

setup: $(STAMP)

# The lock is installed with hashes checked; the project itself then goes in as an editable
# install without dependencies (a local folder has no hash) and without build isolation (its
# build backend, setuptools, is a locked package too).
$(STAMP): $(LOCK) pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install pip==$(PIP_VERSION)
	$(BIN)/pip install --require-hashes -r $(LOCK)
	$(BIN)/pip install --no-deps --no-build-isolation -e .
	touch $(STAMP)

lock: $(STAMP)  ## re-resolve requirements.lock from pyproject.toml (reads package metadata only)
	$(BIN)/uv pip compile pyproject.toml --all-extras --universal --python-version 3.11 \
	  --generate-hashes --custom-compile-command 'make lock' --quiet -o $(LOCK)
	$(BIN)/python -m vcq.lock stamp
	@echo "requirements.lock rewritten: run make setup to install it"

check-lock: $(STAMP)  ## the lock was made from pyproject.toml and satisfies it (no network)
	$(BIN)/python -m vcq.lock check

doctor: $(STAMP)  ## torch, CUDA, GPUs, threads and versions against the lock
	$(BIN)/python -m vcq.doctor

demo: $(STAMP)  ## run the whole DAG on the embedded default data set
	@test -f $(CONFIG) || { echo "error: CONFIG=$(CONFIG): no such file" >&2; exit 1; }
	$(BIN)/snakemake --profile workflow/profiles/local --configfile $(CONFIG) --cores $(CORES)

claims: $(STAMP)  ## a finished run's key figures; fails when a README demo claim does not hold
	$(BIN)/python -m vcq.report.claims --config $(CONFIG)

test: $(STAMP)  ## the default (fast) test suite
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q

test-all: $(STAMP)  ## including tests marked slow
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -m ''

lint: $(STAMP)  ## ruff, ruff format, snakefmt and snakemake --lint (versions pinned in the dev extra)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check workflow
	@# snakemake --lint less the lints this workflow answers by design (LINT_ACCEPTED)
	@$(BIN)/snakemake --lint --profile workflow/profiles/local --configfile $(CONFIG) \
	  > $(VENV)/lint.log 2>&1 && exit 0; grep -q '^Lints for' $(VENV)/lint.log \
	  && ! grep '^    \* ' $(VENV)/lint.log | grep -v -E '$(LINT_ACCEPTED)' \
	  || { cat $(VENV)/lint.log; exit 1; }

test-workflow: $(STAMP)  ## the whole DAG on .test/config/config.yaml (a few seconds per job; CI runs it)
	$(BIN)/snakemake --profile workflow/profiles/local --configfile .test/config/config.yaml --cores $(CORES)

test-slurm: $(STAMP)  ## the workflow on a real one-node SLURM cluster started here (root + apt-get; skips otherwise)
	PYTHON=$(BIN)/python tests/slurm/run_cluster_test.sh

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

dryrun-imagenet: $(STAMP)  ## print the paper-scale DAG (no data needed)
	$(BIN)/snakemake -n --profile workflow/profiles/slurm --configfile config/imagenet/base.yaml

unlock: $(STAMP)  ## remove the lock a killed run leaves (then `make demo` resumes)
	$(BIN)/snakemake --profile workflow/profiles/local --configfile $(CONFIG) --unlock

report: $(STAMP)
	$(BIN)/snakemake --profile workflow/profiles/local --configfile $(CONFIG) --report results/report.html

clean:
	rm -rf work/demo results/demo data/synthetic .snakemake
