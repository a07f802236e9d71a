# Two commands on a fresh machine:  `make demo`  (set up + whole pipeline)  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torchvision must match torch; override for your CUDA, e.g. TORCH="torch==2.14.1 torchvision==0.29.1 --index-url ..."
TORCH ?= torch==2.14.1 torchvision==0.29.1
CONFIG ?= config/default.yaml
CORES ?= 2
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-all test-slurm lint bench dryrun-imagenet report unlock clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install $(TORCH)
	$(BIN)/pip install -e '.[workflow,test,dev]'
	touch $(STAMP)

demo: $(STAMP)  ## run the whole DAG on the embedded default data set
	@test -f $(CONFIG) || { echo "error: CONFIG=$(CONFIG): no such file" >&2; exit 1; }
	$(BIN)/snakemake --profile workflow/profiles/local --configfile $(CONFIG) --cores $(CORES)

test: $(STAMP)  ## the default (fast) test suite
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q

test-all: $(STAMP)  ## including tests marked slow
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -m ''

lint: $(STAMP)  ## ruff, ruff format, snakefmt and snakemake --lint (versions pinned in the dev extra)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check workflow
	$(BIN)/snakemake --lint --profile workflow/profiles/local --configfile $(CONFIG)

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
