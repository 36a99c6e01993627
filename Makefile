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


.PHONY: install test test-all test-slow lint format demo reproduce-all report bench bench-quick clean

install:  ## install the package with dev extras (keeps an already-installed torch)
	$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install "$(TORCH)"
	$(PYTHON) -m pip install -e ".[dev]"

test:  ## fast suite (< 10 min on 2 cores), offline
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest -m "not slow and not gpu" -q

test-all:  ## everything but GPU tests (slow, distributed)
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest -m "not gpu" -q

test-slow:  ## only the slow tests (2-process runs, registry-wide accumulation): they guard correctness, CI runs them
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest -m "slow and not gpu" -q

lint:
	$(PYTHON) -m ruff check adasam_glue tests scripts
	$(PYTHON) -m ruff format --check adasam_glue tests scripts

format:
	$(PYTHON) -m ruff format adasam_glue tests scripts
	$(PYTHON) -m ruff check --fix adasam_glue tests scripts

demo:  ## offline end-to-end: MiniLM, synthetic MRPC-like data, AMSGrad vs AdaSAM, report (into OUTPUT_DIR/demo)
	HF_HUB_OFFLINE=1 $(PYTHON) scripts/demo.py --output-dir $(OUTPUT_DIR)/demo

reproduce-all:  ## lr-tuning stage of Tables 2/4, then Tables 1-4 + speedup as Hydra multiruns (DRY_RUN=1 prints the plan; LAUNCHER=slurm)
	$(PYTHON) -m adasam_glue.experiments reproduce-all --launcher $(LAUNCHER) $(if $(filter 1,$(DRY_RUN)),--dry-run,)

report:  ## rebuild tables and figures from run records only (the demo's: RUNS_DIR=results/demo/runs REPORT_DIR=results/demo/report)
	$(PYTHON) -m adasam_glue.report $(RUNS_DIR) $(REPORT_DIR)

.PHONY: cpu-scale
STAGE ?= table1,matched,tune,table2,sharpness
cpu-scale:  ## CPU-scale reproduction on real GLUE, resumable: DATA_DIR=glue_data [STAGE=probe,table1,matched,tune,table2,sharpness]; then make report on results/cpu_scale
	@test -n "$(DATA_DIR)" || { echo "usage: make cpu-scale DATA_DIR=/path/to/glue_data [STAGE=probe,table1,matched,tune,table2,sharpness]"; exit 2; }
	HF_HUB_OFFLINE=1 $(PYTHON) scripts/cpu_scale.py --data-dir $(DATA_DIR) --stage $(STAGE)
	$(PYTHON) -m adasam_glue.report results/cpu_scale/runs results/cpu_scale/report

.PHONY: bench-parity bench-overhead bench-docs gpu-check
# every bench target is one command of `python -m adasam_glue.bench` (JSON under $(BENCH_OUT), pages under docs/)
bench:  ## full benchmark: step cost of every registry optimizer and form, then the overhead run at 123,873 updates
	HF_HUB_OFFLINE=1 $(PYTHON) -m adasam_glue.bench step-cost --out $(BENCH_OUT)
	HF_HUB_OFFLINE=1 $(PYTHON) -m adasam_glue.bench overhead --out $(BENCH_OUT)

bench-quick:  ## step cost, ratio to base and memory per optimizer, < 5 min on 2 CPU cores (`make bench-docs` renders docs/bench.md)
	HF_HUB_OFFLINE=1 $(PYTHON) -m adasam_glue.bench step-cost --quick --out $(BENCH_OUT)

bench-parity:  ## dev metrics and samples/s vs transformers.Trainer on real GLUE: DATA_DIR=glue_data [JOBS=1] (~1 h on 2 CPU cores)
	@test -n "$(DATA_DIR)" || { echo "usage: make bench-parity DATA_DIR=/path/to/glue_data [JOBS=1]"; exit 2; }
	HF_HUB_OFFLINE=1 $(PYTHON) -m adasam_glue.bench parity --data-dir $(DATA_DIR) --out $(BENCH_OUT) --jobs $(or $(JOBS),1) --md docs/bench_parity.md

bench-overhead:  ## harness overhead per update at 1,000 / 10,000 / 123,873 updates (~10 min on 1 CPU core)
	HF_HUB_OFFLINE=1 $(PYTHON) -m adasam_glue.bench overhead --out $(BENCH_OUT) --md docs/bench_overhead.md

gpu-check:  ## <= 5 min on one GPU: RoBERTa-large (random init) bf16/fp16, every optimizer, fp16-vs-fp32 update (DRY=1: CPU)
	HF_HUB_OFFLINE=1 $(PYTHON) -m adasam_glue.bench gpu-check --out $(BENCH_OUT) $(if $(filter 1,$(DRY)),--dry,--md docs/bench_gpu.md)

bench-docs:  ## render docs/bench*.md from the JSON under $(BENCH_OUT) (whichever exist)
	@for pair in bench_quick:bench overhead:bench_overhead hf_parity:bench_parity gpu_check:bench_gpu; do \
	  json=$(BENCH_OUT)/$${pair%%:*}.json; md=docs/$${pair##*:}.md; \
	  if [ -f $$json ]; then $(PYTHON) -m adasam_glue.bench render $$json --md $$md && echo "$$md <- $$json"; fi; \
	done

clean:
	rm -rf .pytest_cache .ruff_cache results/hydra
