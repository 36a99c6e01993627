"""Benchmarks: what an update costs per optimizer, the harness's own overhead, parity with
``transformers.Trainer`` on real GLUE, and the GPU check; one entry point, ``python -m adasam_glue.bench
<command>`` (:mod:`~.cli`). Every figure is a median over repeats, written as JSON under ``results/bench/``
(schema: ``docs/bench_schema.md``) and rendered to ``docs/bench*.md`` by :mod:`~.render`."""
