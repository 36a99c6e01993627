"""Tokens processed per epoch: dynamic padding, dynamic padding with length grouping, padding to max_length.

The cost of an update is roughly proportional to the padded tokens it processes, so the ratio of
padded tokens is the ratio of training cost. Rows come from three sources:

- ``glue_like``: log-normal stand-ins for the real GLUE train splits' token lengths (:data:`GLUE_LIKE`,
  approximate public statistics of RoBERTa BPE lengths), at the tasks' real sizes;
- ``synthetic[<tokenizer>]``: the synthetic tasks, tokenized by the run's own data step;
- ``glue_tsv[<tokenizer>]``: the real GLUE TSVs under ``--glue-dir``, when given.

Batch sizes are each task's recipe (``conf/task/<task>.yaml``); lengths and batches come from
:func:`adasam_glue.data.pad_stats` (the loader's own sampler order).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from adasam_glue.bench.harness import BENCH_OVERRIDES, Setup, compose

#: token lengths of the GLUE train splits (RoBERTa BPE, pairs joined): (mean, 95th percentile, max)
GLUE_LIKE: dict[str, tuple[int, int, int]] = {
    "cola": (11, 20, 47),
    "sst2": (13, 32, 66),
    "mrpc": (53, 76, 103),
    "stsb": (31, 56, 125),
    "qqp": (30, 60, 330),
    "mnli": (40, 74, 444),
    "qnli": (51, 97, 512),
    "rte": (70, 155, 289),
}


def glue_like_lengths(task: str, n: int, max_length: int, seed: int = 0) -> np.ndarray:
    """``n`` log-normal lengths with :data:`GLUE_LIKE`'s mean and 95th percentile, clipped to [4, max]."""
    mean, p95, mx = GLUE_LIKE[task]
    # mu + 1.645 s = ln p95 and mu + s^2 / 2 = ln mean: the smaller root of s^2/2 - 1.645 s + ln(p95/mean)
    a, c = 0.5, 1.645
    disc = c * c - 4 * a * (math.log(p95) - math.log(mean))
    s = (c - math.sqrt(disc)) / (2 * a) if disc >= 0 else 0.5
    mu = math.log(mean) - s * s / 2
    x = np.exp(np.random.default_rng(seed).normal(mu, s, n))
    return np.clip(np.round(x), 4, min(mx, max_length)).astype(np.int64)


def _row(source: str, task: str, lengths: np.ndarray, batch: int, max_length: int) -> dict[str, Any]:
    from adasam_glue.data import pad_stats

    ls = np.minimum(lengths, max_length)
    plain = pad_stats(ls, batch, max_length, group_by_length=False)
    grouped = pad_stats(ls, batch, max_length, group_by_length=True)
    return {
        "source": source,
        "task": task,
        "n": int(len(ls)),
        "batch_size": batch,
        "max_length": max_length,
        "mean_len": float(ls.mean()),
        "real_tokens": plain["real_tokens"],
        "max_length_tokens": plain["max_length_tokens"],
        "dynamic_tokens": plain["dynamic_tokens"],
        "grouped_tokens": grouped["dynamic_tokens"],
        "dynamic_vs_max": plain["dynamic_tokens"] / plain["max_length_tokens"],
        "grouped_vs_max": grouped["dynamic_tokens"] / plain["max_length_tokens"],
        "grouped_vs_dynamic": grouped["dynamic_tokens"] / plain["dynamic_tokens"],
        "pad_fraction_dynamic": plain["pad_fraction"],
        "pad_fraction_grouped": grouped["pad_fraction"],
    }


def _token_lengths(setup: Setup, task: str, data: list[str], max_length: int) -> np.ndarray:
    """Lengths of a task's training rows as the run's data step tokenizes them with ``setup``'s tokenizer."""
    from adasam_glue import run as run_mod
    from adasam_glue.data import sequence_lengths
    from adasam_glue.tasks import get_task

    cfg = compose(
        [
            *BENCH_OVERRIDES,
            f"model={setup.name}",
            f"task={task}",
            f"task.max_length={max_length}",
            "trainer.cpu=true",
            "task.batch_size=1",
            *data,
        ]
    )
    _, _, loaders = run_mod.setup_data(cfg, get_task(task), setup.tokenizer, setup.accelerator)
    return sequence_lengths(loaders.train_dataset)


def bench_padding(
    setup: Setup,
    tasks: Sequence[str] = ("mrpc", "rte", "sst2", "qnli"),
    max_lengths: Sequence[int] = (128, 512),
    glue_dir: str | None = None,
    cache_dir: str | None = None,
    glue_like_n: int = 20000,
    synthetic_n: int = 512,
) -> list[dict[str, Any]]:
    """One row per (source, task, max_length); a source that cannot be read gives an ``error`` row."""
    from adasam_glue.tasks import get_task

    cache = [f"data.cache_dir={cache_dir}"] if cache_dir else []
    rows: list[dict[str, Any]] = []
    for task in tasks:
        batch = int(compose([f"task={task}"]).task.batch_size)
        lengths = glue_like_lengths(task, min(glue_like_n, get_task(task).train_size), max(max_lengths))
        rows += [_row("glue_like", task, lengths, batch, ml) for ml in max_lengths]
        sources = [
            (
                f"synthetic[{setup.name}]",
                ["data.source=synthetic", f"data.synthetic_train_size={synthetic_n}"],
            )
        ]
        if glue_dir:
            sources.append((f"glue_tsv[{setup.name}]", ["data.source=tsv", f"data.data_dir={glue_dir}"]))
        for source, data in sources:
            try:
                lengths = _token_lengths(setup, task, [*data, *cache], max(max_lengths))
            except Exception as e:  # informative section: a missing task folder must not stop the others
                rows.append({"source": source, "task": task, "error": f"{type(e).__name__}: {e}"})
                continue
            rows += [_row(source, task, lengths, batch, ml) for ml in max_lengths]
    return rows
