"""Benchmarks: what an update costs, against the two-pass limit, against ``transformers.Trainer``, at
paper scale and on a GPU. Every figure is a median over repeats; compared variants run interleaved in
one process, so load from other processes on a shared machine spreads over all of them alike.

Commands (each writes JSON under ``results/bench/``; schema: ``docs/bench_schema.md``; pages under
``docs/bench*.md`` are rendered from the JSON by :mod:`~adasam_glue.bench.render`):

- ``python -m adasam_glue.bench [--quick]`` (``make bench-quick``, ``make bench``): the sections below;
- ``python -m adasam_glue.bench.hf_parity --data-dir DIR`` (``make bench-parity DATA_DIR=...``): dev
  metrics and training throughput of this harness vs ``transformers.Trainer`` on real GLUE;
- ``python -m adasam_glue.bench.overhead`` (``make bench-overhead``): the harness's own cost per update
  at 1,000, 10,000 and 123,873 updates;
- ``python -m adasam_glue.bench.gpu_check [--dry]`` (``make gpu-check``): RoBERTa-large on one GPU.

Modules, one concern each: :mod:`~.harness` (the shared set-up: the real composed config and the run's
own setup steps), :mod:`~.timing`, :mod:`~.memory`, :mod:`~.step_cost` (per-optimizer rows),
:mod:`~.optimizer_math`, :mod:`~.hf_compare` (one step vs HF), :mod:`~.hf_parity` /
:mod:`~.hf_runs` (end-to-end parity), :mod:`~.padding`, :mod:`~.ddp`, :mod:`~.gpu` /
:mod:`~.gpu_check`, :mod:`~.sharpness_cost`, :mod:`~.overhead`, :mod:`~.env`, :mod:`~.jsonio`,
:mod:`~.render` / :mod:`~.render_parity`, :mod:`~.runner` and :mod:`~.cli`.
"""
