"""Benchmarks: what an update costs per optimizer, the harness's own overhead, parity with
``transformers.Trainer`` on real GLUE, and the GPU check. One entry point, ``python -m adasam_glue.bench
<command>`` (:mod:`~.cli`); every figure is a median over repeats, written as JSON under
``results/bench/`` (schema: ``docs/bench_schema.md``) and rendered to ``docs/bench*.md``.

Modules: :mod:`~.harness` (config, set-up and trainer built by the run's own steps; JSON and its
environment block), :mod:`~.measure` (statistics, the training clock, allocation tracking),
:mod:`~.step_cost` (per-optimizer rows over the registry), :mod:`~.overhead`, :mod:`~.parity`,
:mod:`~.gpu_check`, :mod:`~.render` (the pages) and :mod:`~.cli`.
"""
