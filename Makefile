# adasam_glue: set-up `make install && make test`; main command `python -m adasam_glue task=mrpc optim=adasam`
PYTHON ?= python
TORCH ?= torch==2.13.0
OUTPUT_DIR ?= results
RUNS_DIR ?= results/runs
REPORT_DIR ?= results/report
BENCH_OUT ?= results/bench
DRY_RUN ?= 0
LAUNCHER ?= local
export HF_HUB_OFFLINE ?= 0
export WANDB_MODE ?= disabled
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install test test-all lint format demo reproduce-all report bench bench-quick clean

install:  ## install the package with dev extras (keeps an already-installed torch)
	$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install "$(TORCH)"
	$(PYTHON) -m pip install -e ".[dev]"

test:  ## fast suite (< 10 min on 2 cores), offline
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest -m "not slow and not gpu" -q

test-all:  ## everything but GPU tests (slow, distributed)
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest -m "not gpu" -q

lint:
	$(PYTHON) -m ruff check adasam_glue tests scripts
	$(PYTHON) -m ruff format --check adasam_glue tests scripts

format:
	$(PYTHON) -m ruff format adasam_glue tests scripts
	$(PYTHON) -m ruff check --fix adasam_glue tests scripts

demo:  ## offline end-to-end: MiniLM, synthetic MRPC-like data, AMSGrad vs AdaSAM, report (OUTPUT_DIR=results)
	HF_HUB_OFFLINE=1 $(PYTHON) scripts/demo.py --output-dir $(OUTPUT_DIR)

reproduce-all:  ## Tables 1-4 + speedup as Hydra multiruns (DRY_RUN=1 prints the plan; LAUNCHER=slurm)
	$(PYTHON) -m adasam_glue.experiments reproduce-all --launcher $(LAUNCHER) $(if $(filter 1,$(DRY_RUN)),--dry-run,)

report:  ## rebuild tables and figures from run records only
	$(PYTHON) -m adasam_glue.report $(RUNS_DIR) $(REPORT_DIR)

bench:  ## full benchmark (JSON under $(BENCH_OUT))
	HF_HUB_OFFLINE=1 $(PYTHON) -m adasam_glue.bench --out $(BENCH_OUT)

bench-quick:  ## < 5 min on 2 CPU cores
	HF_HUB_OFFLINE=1 $(PYTHON) -m adasam_glue.bench --quick --out $(BENCH_OUT)

clean:
	rm -rf .pytest_cache .ruff_cache results/hydra
