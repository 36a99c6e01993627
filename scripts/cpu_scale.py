"""CPU-scale reproduction on real GLUE: one process per run, most useful runs first, resumable.

    python scripts/cpu_scale.py --data-dir /path/to/glue_data [--results-dir results/cpu_scale]
        [--stage probe,table1,matched,tune,table2,sharpness] [--seeds 1,2,3] [--tasks rte,mrpc,stsb,cola] [--dry-run]

Order: seed-major (every task and method of seed 1, then seed 2, ...), so a stopped sweep still holds
whole paired comparisons. The ``tune`` stage (one seed) ends with ``python -m adasam_glue.experiments
select-lr cpu_scale_tune``, which writes the lr that ``table2`` reads. Each run is ``python -m
adasam_glue experiment=<exp> task=T method=M seed=S``: a completed run of the same identity is skipped, a preempted one resumes from its checkpoint, so the
sweep can be stopped (Ctrl-C, SIGTERM) and started again at any time. The driver plans each stage
when it reaches it (``adasam_glue.experiments.Planner``, the dry run's plan: the same identities and
run dirs) and does not launch a run whose record is completed or diverged, so a restart costs seconds,
not one process start per finished run. A failed run is reported and the sweep goes on. The
``sharpness`` stage measures the final model of every completed run that has no sharpness block yet
(top Hessian eigenvalue and trace, with ``conf/experiment/cpu_scale.yaml``'s ``sharpness`` settings;
``--tasks``/``--seeds`` restrict it) and adds it to the run's record. The stages and their grids live
in ``conf/experiment/cpu_scale*.yaml``; this script only orders and launches them. Rebuild the report afterwards with
``python -m adasam_glue.report <results-dir>/runs <results-dir>/report``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from omegaconf import OmegaConf

import adasam_glue.experiment_resolvers  # noqa: F401  the experiments' resolvers, for the planner's compose
from adasam_glue.config import CONF_DIR
from adasam_glue.experiment_conf import experiment_sweep

#: stage -> experiment config (conf/experiment/<name>.yaml); ``sharpness`` measures finished runs.
#: ``probe`` is the recipe's evidence (SGD at several lrs and head lrs, one seed; records under
#: ``<results-dir>/runs/cpu_scale_probe``): run it, read it (results/cpu_scale/probes/README.md), then sweep.
STAGES = {
    "probe": "cpu_scale_probe",
    "table1": "cpu_scale",
    "matched": "cpu_scale_matched",
    "tune": "cpu_scale_tune",
    "table2": "cpu_scale_table2",
    "sharpness": None,
}


def sharpness_overrides() -> list[str]:
    """The post-hoc settings: ``conf/experiment/cpu_scale.yaml``'s ``sharpness`` block (but ``enabled``)."""
    block = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "experiment" / "cpu_scale.yaml").sharpness)
    fmt = lambda v: f"[{','.join(map(str, v))}]" if isinstance(v, list) else str(v)  # noqa: E731
    return [f"{k}={fmt(v)}" for k, v in block.items() if k != "enabled"]


def unmeasured(results: Path, tasks: list[str] | None = None, seeds: list[str] | None = None) -> list[Path]:
    """Run dirs of the CPU-scale experiments whose record is completed, whose final model is saved and
    whose record has no sharpness block yet (so a stopped stage picks up where it stopped); only the
    given tasks and seeds when they are given."""
    out = []
    for rec in sorted((results / "runs").glob("cpu_scale*/**/record.json")):
        try:
            r = json.loads(rec.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if (
            r.get("status") == "completed"
            and not r.get("sharpness")
            and (rec.parent / "model" / "config.json").exists()
            and (tasks is None or r.get("task") in tasks)
            and (seeds is None or str(r.get("seed")) in seeds)
        ):
            out.append(rec.parent)
    return out


#: a grid point: the run's sweep overrides as ``{(key, value)}``, numbers normalised (3e-3 == 0.003)
Point = frozenset[tuple[str, str]]


def grid_point(overrides: list[str] | tuple[str, ...], keys: set[str]) -> Point:
    """The ``key=value`` overrides of the swept ``keys``, values that parse as numbers compared as floats."""
    out = set()
    for o in overrides:
        key, _, value = o.partition("=")
        if key in keys:
            try:
                value = repr(float(value))
            except ValueError:
                pass
            out.add((key, value))
    return frozenset(out)


def finished_points(experiment: str, common: list[str]) -> dict[Point, str]:
    """The grid points of ``experiment`` whose record says completed or diverged (``run()`` skips both),
    with that status, from the dry run's plan (:class:`adasam_glue.experiments.Planner`: the identities
    and run dirs the runs themselves resolve). A plan that cannot be composed returns ``{}``: every run
    is launched and each skips itself or fails with its own message."""
    from hydra import initialize_config_dir

    from adasam_glue.experiments import Planner

    keys = set(experiment_sweep(experiment))
    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name="cpu_scale"):
            planned = Planner().plan(experiment, common)
    except Exception as e:  # noqa: BLE001 - the runs report the problem themselves
        print(f"cannot plan {experiment} ({type(e).__name__}: {e}); launching every run", flush=True)
        return {}
    return {grid_point(r.job_overrides, keys): str(r.status) for r in planned if not r.to_do}


#: the probe stage's runs: conf/probes/cpu_scale.yaml (each ``{name, checks, overrides}``)
PROBES = CONF_DIR / "probes" / "cpu_scale.yaml"


def probe_runs(tasks: list[str] | None = None) -> list[list[str]]:
    """The probes in file order, seed 1, as run lines (``--tasks`` restricts them)."""
    runs = []
    for probe in OmegaConf.load(PROBES).probes:
        overrides = [str(o) for o in probe.overrides]
        task = next((o.split("=", 1)[1] for o in overrides if o.startswith("task=")), None)
        if tasks is None or task in tasks:
            runs.append([*overrides, "seed=1"])
    return runs


def plan(stages: list[str], seeds: list[str] | None, tasks: list[str] | None) -> list[list[str]]:
    runs = []
    for stage in stages:
        if stage == "probe":  # heterogeneous single runs: each launch skips itself if already completed
            runs.extend(["PROBE", *r] for r in probe_runs(tasks))
            continue
        if stage == "sharpness":  # expanded when reached: the runs before it must have finished
            runs.append(["SHARPNESS"])
            continue
        exp = STAGES[stage]
        grid = {k: list(v) for k, v in experiment_sweep(exp).items()}  # the experiment's own grid
        # the tuning and probe stages keep their own seed (one): --seeds applies to the tables
        grid_seeds = (seeds if stage not in ("tune", "probe") else None) or grid.pop("seed", ["1"])
        grid.pop("seed", None)
        grid_tasks = tasks or grid.pop("task", [])
        grid.pop("task", None)
        others = [[]]
        for key, values in grid.items():
            others = [[*o, f"{key}={v}"] for o in others for v in values]
        for seed in grid_seeds:
            for task in grid_tasks:
                for o in others:
                    runs.append([f"experiment={exp}", f"task={task}", *o, f"seed={seed}"])
        if stage == "tune":  # pick the lr per (task, optimizer) from the finished grid: Table 2 reads it
            runs.append(["SELECT", exp])
    return runs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--data-dir", required=True, help="GLUE TSV root (glue_data/ with RTE/ MRPC/ CoLA/ STS-B/)"
    )
    p.add_argument("--results-dir", default="results/cpu_scale")
    p.add_argument("--stage", default="table1", help=f"comma list of {', '.join(STAGES)} (in that order)")
    p.add_argument("--seeds", default=None, help="override the experiment's seeds, e.g. 1")
    p.add_argument("--tasks", default=None, help="override the experiment's tasks, e.g. rte,mrpc")
    p.add_argument("--dry-run", action="store_true", help="print the run lines and exit")
    p.add_argument("overrides", nargs="*", help="extra overrides for every run")
    a = p.parse_args(argv)

    data_dir = Path(a.data_dir).expanduser().absolute()
    if not data_dir.is_dir():
        raise SystemExit(f"--data-dir {data_dir}: not a folder (expected glue_data/ with RTE/, MRPC/, ...)")
    results = Path(a.results_dir).expanduser().absolute()
    stages = [s.strip() for s in a.stage.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise SystemExit(f"unknown --stage {', '.join(unknown)}; valid: {', '.join(STAGES)}")
    seeds = a.seeds.split(",") if a.seeds else None
    tasks = a.tasks.split(",") if a.tasks else None
    runs = plan(stages, seeds, tasks)
    hydra_root = Path(tempfile.mkdtemp(prefix="cpu_scale_hydra_"))
    common = [f"data.data_dir={data_dir}", f"results_dir={results}", *a.overrides]
    print(f"{len(runs)} runs -> {results}", flush=True)
    stop = {"now": False}

    def on_signal(signum, frame):  # let the current run checkpoint (it gets the signal too), then stop
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    failed = 0
    finished: dict[str, dict[Point, str]] = {}  # experiment -> its finished grid points, planned when reached
    for i, overrides in enumerate(runs, 1):
        line = " ".join(overrides)
        if overrides[0] == "SHARPNESS":
            if a.dry_run:
                n, extra = len(unmeasured(results, tasks, seeds)), " ".join(sharpness_overrides())
                print(
                    f"run: python -m adasam_glue.sharpness RUN_DIR {extra}  # {n} completed runs unmeasured now"
                )
            elif not stop["now"]:
                failed += measure_all(results, hydra_root, stop, tasks, seeds)
            continue
        is_probe = overrides[0] == "PROBE"  # not planned by grid point: a probe's keys are not the grid's
        if is_probe:
            overrides = overrides[1:]
            line = " ".join(overrides)
        if overrides[0] != "SELECT" and not is_probe:
            exp = overrides[0].split("=", 1)[1]
            if exp not in finished:
                finished[exp] = finished_points(exp, common)
            status = finished[exp].get(grid_point(overrides[1:], set(experiment_sweep(exp))))
            if status is not None:
                print(f"[{i}/{len(runs)}] {status} (not launched)  {line}", flush=True)
                continue
        if a.dry_run:
            print(f"run: {line}")
            continue
        if stop["now"]:
            print("stopping: signal received", flush=True)
            break
        t0 = time.time()
        if overrides[0] == "SELECT":
            cmd = [sys.executable, "-m", "adasam_glue.experiments", "select-lr", overrides[1], *common]
        else:
            cmd = [
                sys.executable,
                "-m",
                "adasam_glue",
                *overrides,
                *common,
                f"hydra.run.dir={hydra_root / str(i)}",
            ]
        # the run's output goes to a file, not a pipe: a run outlives a killed driver without a broken pipe
        log_path = hydra_root / f"{i}.log"
        with open(log_path, "w") as log:
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
        tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
        status = "ok" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
        failed += proc.returncode != 0
        print(f"[{i}/{len(runs)}] {status} {time.time() - t0:7.1f}s  {line}", flush=True)
        if proc.returncode != 0:
            print("    " + "\n    ".join(tail), flush=True)
    return 1 if failed else 0


def measure_all(
    results: Path,
    logs: Path,
    stop: dict[str, bool],
    tasks: list[str] | None = None,
    seeds: list[str] | None = None,
) -> int:
    """``python -m adasam_glue.sharpness RUN_DIR <settings>`` for every unmeasured run; the failures."""
    todo, extra, failed = unmeasured(results, tasks, seeds), sharpness_overrides(), 0
    print(f"sharpness: {len(todo)} runs to measure ({' '.join(extra)})", flush=True)
    for k, run_dir in enumerate(todo, 1):
        if stop["now"]:
            break
        t0, log_path = time.time(), logs / f"sharpness_{k}.log"
        with open(log_path, "w") as log:
            cmd = [sys.executable, "-m", "adasam_glue.sharpness", str(run_dir), *extra]
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
        failed += proc.returncode != 0
        status = "ok" if proc.returncode == 0 else f"FAILED (exit {proc.returncode}, log {log_path})"
        print(
            f"  [{k}/{len(todo)}] {status} {time.time() - t0:7.1f}s  {run_dir.relative_to(results)}",
            flush=True,
        )
    return failed


if __name__ == "__main__":
    sys.exit(main())
