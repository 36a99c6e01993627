"""The harness's own cost per update at paper-scale update counts: is it small, and is it constant?

One run of the MNLI recipe's structure (``conf/task/mnli.yaml``: 123,873 updates of batch 32, a dev
evaluation of both MNLI dev splits per recipe epoch, the record written at each) on synthetic MNLI,
AdaSAM by default, built by :func:`adasam_glue.run.run`'s own setup steps and run by the real
``Trainer.fit``; only the model is replaced by :class:`StubClassifier`, so 123,873 updates take minutes.

*Overhead per update* = end of an update's (base) optimizer step to the start of the next update's first
forward: zero_grad, the scheduler, the loss all-reduce, logging, progress bar, eval/checkpoint checks,
record writes, fetching and collating the next batch. Reported over the ``window`` updates ending at each
point (gaps holding a dev evaluation left out, reported per evaluation in ``eval_points``), in wall time
and in the main thread's CPU time, which other processes on a shared machine do not inflate; the targets
(``verdict``: mean <= 1 ms, last / first <= 1.2 on the median and the 1%-trimmed mean) are judged on the
CPU figure. A run past its time budget is stopped as a cluster would (SIGUSR1: checkpoint and exit).
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from adasam_glue.bench.harness import compose, environment, write_json
from adasam_glue.bench.measure import TrainClock

PAPER_POINTS = (1000, 10000, 123873)  #: MNLI's recipe is the paper's longest run: 123,873 updates
TARGET_MS, TARGET_RATIO = 1.0, 1.2


class StubClassifier(torch.nn.Module):
    """As cheap as a sequence classifier can be (embedding, masked mean, linear), taking what the trainer
    feeds a Hugging Face model and saving itself like one (the best-model save runs as in a real run)."""

    def __init__(self, vocab_size: int, num_labels: int, width: int = 8) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(vocab_size, width)
        self.head = torch.nn.Linear(width, num_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **_: Any) -> Any:
        h = self.embed(input_ids)
        m = (torch.ones_like(input_ids) if attention_mask is None else attention_mask).unsqueeze(-1)
        m = m.to(h.dtype)
        return SimpleNamespace(logits=self.head((h * m).sum(1) / m.sum(1).clamp(min=1)))

    def save_pretrained(self, path: str | Path) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), Path(path) / "stub.pt")


def _stats_ms(x: np.ndarray) -> dict[str, float]:
    if not len(x):
        return {"n": 0}
    ms = np.sort(x) * 1e3
    trimmed, (p90, p99) = ms[: max(1, int(np.ceil(0.99 * len(ms))))], np.percentile(ms, [90, 99])
    out = {"n": int(len(ms)), "mean_ms": float(ms.mean()), "trimmed_mean_ms": float(trimmed.mean())}
    out |= {"median_ms": float(np.median(ms)), "p90_ms": float(p90), "p99_ms": float(p99)}
    return out | {"max_ms": float(ms[-1])}


def _gaps(clock: TrainClock, cpu: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per update ``(gap after it, its compute)``; gap k (0-based) follows update k + 1."""
    ups = np.array(clock.updates(cpu=cpu)).reshape(-1, 4)
    return ups[1:, 0] - ups[:-1, 1], ups[:, 1] - ups[:, 0]


def analyse(clock: TrainClock, points: Sequence[int], window: int) -> dict[str, Any]:
    """Per-point overhead statistics (wall and thread CPU time) and per-evaluation costs (module doc)."""
    gaps, compute = _gaps(clock, cpu=False)
    gaps_cpu, compute_cpu = _gaps(clock, cpu=True)
    ends = np.array(clock.updates()).reshape(-1, 4)[:, 1]
    evals = np.array(clock.eval_spans).reshape(-1, 2)
    eval_in_gap, eval_points = np.zeros(len(gaps), dtype=bool), []
    if len(evals) and len(gaps):
        which = np.searchsorted(ends, evals[:, 0]) - 1  # the gap each eval starts in (after the last: none)
        for k in np.unique(which[(which >= 0) & (which < len(gaps))]):
            spans = evals[which == k]
            eval_in_gap[k] = True
            forward = float((spans[:, 1] - spans[:, 0]).sum())
            harness = float(gaps[k] - forward)
            eval_points.append({"update": int(k + 1), "harness_s": harness, "eval_forward_s": forward})
    out = []
    for p in points:
        last = min(p, len(gaps))  # gaps 1..last (1-based update numbers)
        if p > len(compute) or last < 1:
            out.append({"update": p, "reached": False})
            continue
        lo = max(0, last - window)
        keep = ~eval_in_gap[lo:last]
        out.append(
            {
                "update": p,
                "reached": True,
                "window": [lo + 1, last],
                "excluded_eval_gaps": int((~keep).sum()),
                "overhead_cpu": _stats_ms(gaps_cpu[lo:last][keep]),
                "overhead": _stats_ms(gaps[lo:last][keep]),
                "compute_median_ms": float(np.median(compute[lo:last]) * 1e3),
                "compute_cpu_median_ms": float(np.median(compute_cpu[lo:last]) * 1e3),
            }
        )
    return {"points": out, "eval_points": eval_points, "updates_timed": len(compute)}


def verdict(points: list[dict[str, Any]], key: str = "overhead_cpu") -> dict[str, Any]:
    """Targets on ``key``: the worst reached point's mean <= 1 ms; last / first <= 1.2 on the median and
    the trimmed mean."""
    reached = [p for p in points if p.get("reached") and p[key].get("n")]
    if len(reached) < 2:
        return {"evaluated": False, "why": "fewer than two points reached", "basis": key}
    first, last = reached[0][key], reached[-1][key]
    ratios = {k: last[k] / first[k] for k in ("median_ms", "trimmed_mean_ms", "mean_ms")}
    worst = max(p[key]["mean_ms"] for p in reached)
    return {
        "evaluated": True,
        "basis": key,
        "all_points_reached": len(reached) == len(points),
        "max_mean_ms": worst,
        "ratio_last_to_first": ratios,
        "within_1ms": worst <= TARGET_MS,
        "flat": ratios["median_ms"] <= TARGET_RATIO and ratios["trimmed_mean_ms"] <= TARGET_RATIO,
    }


def _fetch_ms(loader: Any, batches: int = 300) -> float:
    """Median time to fetch one training batch from ``loader`` iterated alone (epochs as the trainer)."""
    times, epoch = [], 0
    while len(times) < batches:
        loader.set_epoch(epoch)
        it = iter(loader)
        while len(times) < batches:
            t0 = time.perf_counter()
            if next(it, None) is None:
                break
            times.append(time.perf_counter() - t0)
        epoch += 1
    return float(np.median(times[1:]) * 1e3)


def stub_run(cfg: Any, overrides: list[str]) -> tuple[dict[str, Any], float]:
    """The run's setup steps and loop with the stub model; ``(record, data_fetch_ms)``."""
    from adasam_glue import run as run_mod
    from adasam_glue.identity import run_identity
    from adasam_glue.records import RECORD_NAME, RunRecorder
    from adasam_glue.tasks import get_task

    task, run_dir = get_task(cfg.task.name), Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    accelerator, identity = run_mod.setup_accelerator(cfg), run_identity(cfg)
    provenance = run_mod.record_provenance(cfg, overrides, identity, task.name, accelerator)
    recorder = RunRecorder(run_dir / RECORD_NAME, provenance, None)
    tokenizer, _ = run_mod.setup_model_and_tokenizer(cfg, task)
    model = StubClassifier(len(tokenizer), task.num_labels)
    trainer, loaders = run_mod.setup_training(
        cfg, accelerator, task, tokenizer, model, run_dir, recorder, identity
    )
    fetch = _fetch_ms(accelerator.prepare(loaders.train))
    trainer.load_checkpoint()
    state = trainer.fit()
    record = recorder.write(state, state.status, {"padding": run_mod.padding_summary(loaders)})
    if state.status == "completed":
        trainer.remove_checkpoint()
    return record, fetch


def bench_overhead(
    points: Sequence[int] = PAPER_POINTS,
    window: int = 1000,
    optim: str = "adasam",
    task: str = "mnli",
    progress_bar: bool = True,
    budget_s: float = 1500,
    work_dir: str | None = None,
    out: str | Path | None = None,
) -> dict[str, Any]:
    """One run of ``max(points)`` updates of the stub, timed from outside (module doc); with ``out``,
    written to ``out/overhead.json`` with the environment block. Without ``work_dir`` the run's files go
    to a temporary folder that is removed afterwards."""
    if work_dir is None:
        with tempfile.TemporaryDirectory(prefix="adasam_bench_overhead_") as scratch:
            return bench_overhead(points, window, optim, task, progress_bar, budget_s, scratch, out)
    env, t_start = environment("cpu"), time.perf_counter()
    tmp = Path(work_dir)
    overrides = [
        "logging.wandb_mode=disabled",
        "experiment_name=bench_overhead",
        "model=tiny",  # its offline tokenizer; the model itself is replaced by the stub
        *f"task={task} task.total_updates={max(points)} optim={optim} data.source=synthetic".split(),
        *"data.synthetic_train_size=1024 data.synthetic_eval_size=64".split(),
        f"data.cache_dir={tmp / 'cache'}",
        *f"trainer.cpu=true trainer.progress_bar={str(progress_bar).lower()}".split(),
        *(f"run_dir={tmp / 'run'}", f"results_dir={tmp}"),
    ]
    cfg = compose(overrides)
    timer = threading.Timer(budget_s, lambda: os.kill(os.getpid(), signal.SIGUSR1))  # a cluster's preemption
    t0 = time.perf_counter()
    # the progress bar and logs go to the null device, as a batch job's go to a log file: their cost stays in
    # the measurement, the terminal's does not
    with TrainClock() as clock, open(os.devnull, "w") as null, contextlib.redirect_stderr(null):
        timer.start()
        try:
            record, fetch = stub_run(cfg, overrides)
        finally:
            timer.cancel()
    wall = time.perf_counter() - t0
    timed = analyse(clock, points, window)
    last_step = clock.step_ends[-1] if clock.step_ends else t0
    final_eval = sum(e - s for s, e in clock.eval_spans if s > last_step)
    settings = {"points": list(points), "window": window, "optimizer": optim, "task": task}
    settings |= {"progress_bar": progress_bar, "budget_s": budget_s, "overrides": overrides}
    res = {
        "env": env,
        "settings": settings,
        "status": record.get("status"),
        "optimizer_updates": record.get("optimizer_updates"),
        "run_wall_s": wall,
        "data_fetch_ms": fetch,
        **timed,
        "finalize_s": max(0.0, t0 + wall - last_step - final_eval),
        "targets": {"max_mean_ms": TARGET_MS, "max_ratio": TARGET_RATIO},
        "verdict": verdict(timed["points"]),
        "verdict_wall": verdict(timed["points"], "overhead"),
        "wall_s": time.perf_counter() - t_start,
    }
    if out is not None:
        write_json(Path(out) / "overhead.json", res)
    return res
