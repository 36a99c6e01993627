"""CPU-scale reproduction on real GLUE: one process per run, most useful runs first, resumable.

    python scripts/cpu_scale.py --data-dir /path/to/glue_data [--results-dir results/cpu_scale]
        [--stage probe,table1,matched,tune,table2,sharpness] [--seeds 1,2,3] [--tasks rte,mrpc,stsb,cola]
        [--regenerate] [--dry-run]

Order: seed-major (every task and method of seed 1, then seed 2, ...), so a stopped sweep still holds
whole paired comparisons. The ``tune`` stage (one seed) ends with ``python -m adasam_glue.experiments
select-lr cpu_scale_tune``, which writes the lr that ``table2`` reads. Each run is ``python -m
adasam_glue experiment=<exp> task=T method=M seed=S``: a completed run of the same identity is skipped, a preempted one resumes from its checkpoint, so the
sweep can be stopped (Ctrl-C, SIGTERM) and started again at any time. Each run's line says what its
record says when it ends (completed, diverged, preempted, failed), not just its exit status: a
preempted run exits 0. Stopping: the driver forwards Ctrl-C/SIGTERM to the running child as SIGTERM
(the run's preemption signal: it finishes its update, checkpoints and writes a ``preempted`` record),
waits up to ``--grace`` seconds (default 120) for it, and only then kills it; a second Ctrl-C kills it
at once. The child runs in its own session, so a terminal's Ctrl-C reaches it only through the driver
(one signal, not a second one that would interrupt its checkpoint). The exit status is 0 only when
every launched run ended completed or diverged. The driver plans each stage
when it reaches it (``adasam_glue.experiments.plan.Planner``, the dry run's plan: the same identities and
run dirs) and does not launch a run whose record is completed or diverged, so a restart costs seconds,
not one process start per finished run. A failed run is reported and the sweep goes on. The
``sharpness`` stage measures the final model of every completed run that has no sharpness block of the
current method version yet (largest and smallest Hessian eigenvalue and trace, with ``conf/experiment/cpu_scale.yaml``'s ``sharpness`` settings;
``--tasks``/``--seeds`` restrict it) and adds it to the run's record. With ``sharpness`` among the stages,
each training run is also measured as soon as it completes: the weights are not committed, so a machine
that is lost between training and the stage would lose them. ``--regenerate`` lets the stage measure a
table run (``table1``/``matched``/``table2``) whose model is gone: it retrains the run from its record's
overrides in a scratch results dir (one per results dir, kept across launches, so a stopped retraining
resumes from its checkpoint), checks that the retrained record reproduces the committed one exactly
(identity, train curve, every eval; :func:`reproduction_differences`), measures that model and adds the
block, marked ``"model": "regenerated"``, to the committed record; a run that does not reproduce is
reported and left unmeasured. The stages and their grids live
in ``conf/experiment/cpu_scale*.yaml``; this script only orders and launches them. Rebuild the report afterwards with
``python -m adasam_glue.report <results-dir>/runs <results-dir>/report``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: this script's checkout: the driver and every run it launches use its code, not another installed copy
#: (a frozen checkout of the tree can sweep while the working tree changes; the records name its commit)
ROOT = Path(__file__).resolve().parents[1]
if (ROOT / "adasam_glue").is_dir():
    sys.path.insert(0, str(ROOT))

from omegaconf import OmegaConf  # noqa: E402

import adasam_glue.experiments.resolvers  # noqa: E402,F401  the experiments' resolvers, for the planner's compose
from adasam_glue.config import CONF_DIR  # noqa: E402
from adasam_glue.experiments.conf import experiment_sweep  # noqa: E402
from adasam_glue.sharpness.block import is_current  # noqa: E402


def child_env() -> dict[str, str]:
    """The environment of a launched run: this checkout first on PYTHONPATH (see ``ROOT``)."""
    env = os.environ.copy()
    if (ROOT / "adasam_glue").is_dir():
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


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
    whose record has no sharpness block of the current method version yet (so a stopped stage picks up
    where it stopped, and a block of an outdated definition is measured again); only the given tasks and
    seeds when they are given."""
    out = []
    for rec in sorted((results / "runs").glob("cpu_scale*/**/record.json")):
        r = measurable(rec.parent)
        if r and (tasks is None or r.get("task") in tasks) and (seeds is None or str(r.get("seed")) in seeds):
            out.append(rec.parent)
    return out


def measurable(run_dir: Path) -> dict | None:
    """The run's record when it is completed, unmeasured (no block of the current
    :data:`~adasam_glue.sharpness.block.METHOD_VERSION`) and has its final model saved, else ``None``."""
    try:
        r = json.loads((run_dir / "record.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = (
        r.get("status") == "completed"
        and not is_current(r.get("sharpness"))
        and (run_dir / "model" / "config.json").exists()
    )
    return r if ok else None


#: the stages whose runs the report's sharpness verdicts read: ``--regenerate`` retrains these runs' models
REGENERATED_STAGES = ("table1", "matched", "table2")


def regenerable(results: Path, tasks: list[str] | None = None, seeds: list[str] | None = None) -> list[Path]:
    """Run dirs of :data:`REGENERATED_STAGES` whose record is completed and unmeasured (no block of the
    current method version) but whose model is
    gone (not committed; lost with the machine), seed-major then in stage order, so a stopped
    regeneration leaves whole paired comparisons measured."""
    order = {STAGES[s]: k for k, s in enumerate(REGENERATED_STAGES)}
    found = []
    for rec in (results / "runs").glob("cpu_scale*/**/record.json"):
        try:
            r = json.loads(rec.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if (
            r.get("experiment") in order
            and r.get("status") == "completed"
            and not is_current(r.get("sharpness"))
            and not (rec.parent / "model" / "config.json").exists()
            and (tasks is None or r.get("task") in tasks)
            and (seeds is None or str(r.get("seed")) in seeds)
        ):
            found.append((int(r.get("seed", 0)), order[r["experiment"]], str(rec.parent), rec.parent))
    return [d for *_, d in sorted(found)]


#: what a retrained run must reproduce of the committed record to stand for its model
REPRODUCED_KEYS = ("identity_hash", "optimizer_updates", "train_curve", "eval_curve", "best", "final")


def reproduction_differences(committed: dict, retrained: dict) -> list[str]:
    """The :data:`REPRODUCED_KEYS` where the retrained record differs from the committed one (exact
    equality: the same code, data and seed on CPU give bit-identical runs, so any difference means the
    model is not the committed run's). A key that newer code adds inside an entry and the committed record
    predates (an eval entry's ``constant_prediction``) is not compared; every committed value is."""
    return [
        k for k in REPRODUCED_KEYS if committed.get(k) != _as_committed(retrained.get(k), committed.get(k))
    ]


def _as_committed(new: object, old: object) -> object:
    """``new`` without the dict keys ``old`` lacks, recursively (lists element by element)."""
    if isinstance(new, dict) and isinstance(old, dict):
        return {k: _as_committed(v, old[k]) for k, v in new.items() if k in old}
    if isinstance(new, list) and isinstance(old, list) and len(new) == len(old):
        return [_as_committed(n, o) for n, o in zip(new, old)]
    return new


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
    with that status, from the dry run's plan (:class:`adasam_glue.experiments.plan.Planner`: the identities
    and run dirs the runs themselves resolve). A plan that cannot be composed returns ``{}``: every run
    is launched and each skips itself or fails with its own message."""
    from hydra import initialize_config_dir

    from adasam_glue.experiments.plan import Planner

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


#: seconds a child gets to checkpoint after the forwarded signal before it is killed (a checkpoint of
#: RoBERTa-large with its optimizer state takes seconds on a local disk, longer on a busy shared one)
GRACE_S = 120.0


class Stopper:
    """The driver's SIGINT/SIGTERM handling: the first signal stops the sweep after the current run and
    forwards SIGTERM to that run (it checkpoints); a second one kills the run at once."""

    def __init__(self) -> None:
        self.now = False  #: a signal came: launch nothing more
        self.kill_now = False  #: a second signal came: kill the child
        self.child: subprocess.Popen | None = None
        self.forwarded_at: float | None = None
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self.handle)

    def restore(self) -> None:
        for sig, prev in self._previous.items():
            signal.signal(sig, prev)
        self._previous.clear()

    def handle(self, signum: int, frame: object) -> None:
        if self.now:
            self.kill_now = True
            if self.child is not None and self.child.poll() is None:
                print(f"second signal {signum}: killing the run (pid {self.child.pid}) now", flush=True)
                self.child.kill()
            return
        self.now = True
        if self.child is not None and self.child.poll() is None:
            print(
                f"signal {signum}: stopping after the current run; forwarded SIGTERM to it (pid "
                f"{self.child.pid}) so it checkpoints (a second Ctrl-C kills it)",
                flush=True,
            )
            self.child.send_signal(signal.SIGTERM)
            self.forwarded_at = time.monotonic()
        else:
            print(f"signal {signum}: stopping", flush=True)


def launch(cmd: list[str], log_path: Path, stop: Stopper, grace: float = GRACE_S) -> int:
    """Run ``cmd`` with its output in ``log_path`` (a file, not a pipe: a run outlives a killed driver
    without a broken pipe) in its own session; return its exit status. On a stop signal the child gets
    SIGTERM (:class:`Stopper`) and up to ``grace`` seconds to checkpoint before SIGKILL."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=child_env(), start_new_session=True
        )
    stop.child = proc
    try:
        if stop.now:  # the signal came between runs and this one started anyway: stop it the same way
            proc.send_signal(signal.SIGTERM)
            stop.forwarded_at = time.monotonic()
        while True:
            try:
                return proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
            if stop.forwarded_at is not None and time.monotonic() - stop.forwarded_at > grace:
                print(f"the run did not stop within {grace:g} s of SIGTERM (--grace): killing it", flush=True)
                proc.kill()
                return proc.wait()
    finally:
        stop.child, stop.forwarded_at = None, None


#: what a run's record status means for the sweep (a status not listed: the run never ended cleanly)
OUTCOMES = {
    "completed": "completed",
    "diverged": "diverged",
    "preempted": "preempted (resumes from its checkpoint at the next launch)",
    "failed": "FAILED",
    "running": "KILLED (its record still says running)",
}


def run_status(log_text: str) -> tuple[str | None, Path | None]:
    """``(record status, run dir)`` of a run from its output: the run prints ``run dir: <dir>`` when it
    starts training and ``skipped (already <status>): <dir>/record.json`` when it is finished already;
    the status is read from that dir's record.json (``(None, dir)`` when there is none or it is
    unreadable, ``(None, None)`` when the run never got as far as its run dir)."""
    run_dir = None
    for line in log_text.splitlines():
        if line.startswith("run dir: "):
            run_dir = Path(line[len("run dir: ") :].strip())
        elif line.startswith("skipped (already ") and "): " in line:
            run_dir = Path(line.split("): ", 1)[1].strip()).parent
    if run_dir is None:
        return None, None
    try:
        status = json.loads((run_dir / "record.json").read_text(encoding="utf-8")).get("status")
    except (OSError, ValueError, AttributeError):
        return None, run_dir
    return (str(status) if status is not None else None), run_dir


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
    p.add_argument(
        "--regenerate",
        action="store_true",
        help="sharpness stage: retrain (and check) the table runs whose saved model is gone, then measure them",
    )
    p.add_argument(
        "--grace",
        type=float,
        default=GRACE_S,
        help=f"seconds a run gets to checkpoint after Ctrl-C/SIGTERM before it is killed (default {GRACE_S:g})",
    )
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
    stop = Stopper()
    if not a.dry_run:
        stop.install()
    try:
        code = _sweep(a, runs, results, common, hydra_root, tasks, seeds, stop)
    finally:
        stop.restore()
    if code == 0:  # every run finished: its record is the result, its log is not needed
        shutil.rmtree(hydra_root, ignore_errors=True)
    else:  # the lines above point into these logs
        print(f"logs kept in {hydra_root}", flush=True)
    return code


def _sweep(
    a: argparse.Namespace,
    runs: list[list[str]],
    results: Path,
    common: list[str],
    hydra_root: Path,
    tasks: list[str] | None,
    seeds: list[str] | None,
    stop: Stopper,
) -> int:
    """Launch ``runs`` in order; print each one's outcome as its record says; the exit status."""
    failed = 0
    measure_now = any(r[0] == "SHARPNESS" for r in runs)  # measure each run while its model exists
    counts: dict[str, int] = {}
    finished: dict[str, dict[Point, str]] = {}  # experiment -> its finished grid points, planned when reached
    for i, overrides in enumerate(runs, 1):
        line = " ".join(overrides)
        if overrides[0] == "SHARPNESS":
            if a.dry_run:
                n, extra = len(unmeasured(results, tasks, seeds)), " ".join(sharpness_overrides())
                print(
                    f"run: python -m adasam_glue.sharpness RUN_DIR {extra}  # {n} completed runs unmeasured now"
                )
                gone = len(regenerable(results, tasks, seeds))
                if gone:
                    todo = "retrained and measured" if a.regenerate else "skipped (no --regenerate)"
                    print(f"# {gone} completed table runs have no saved model: {todo}")
            elif not stop.now:
                regen = (Path(a.data_dir).expanduser().absolute(), a.overrides) if a.regenerate else None
                failed += measure_all(results, hydra_root, stop, tasks, seeds, a.grace, regen)
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
        if stop.now:
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
        log_path = hydra_root / f"{i}.log"
        code = launch(cmd, log_path, stop, a.grace)
        text = log_path.read_text(errors="replace")
        if overrides[0] == "SELECT":
            status, shown = (
                ("ok" if code == 0 else "failed"),
                ("ok" if code == 0 else f"FAILED (exit {code})"),
            )
        else:
            status, run_dir = run_status(text)
            if status is None:
                shown = (
                    "FAILED ("
                    + ("no run dir in its output" if run_dir is None else "no readable record")
                    + ")"
                )
            else:
                shown = OUTCOMES.get(status, f"status {status!r}")
            if code != 0 and status != "failed":
                shown += f", exit {code}"
            if run_dir is not None and status not in ("completed", "diverged"):
                shown += f"  [{run_dir}]"
            status = status if status in OUTCOMES else "failed"
        counts[status] = counts.get(status, 0) + 1
        bad = status not in ("ok", "completed", "diverged", "preempted")
        failed += bad
        print(f"[{i}/{len(runs)}] {shown} {time.time() - t0:7.1f}s  {line}", flush=True)
        if bad or code != 0:
            tail = text.strip().splitlines()[-3:]
            print("    " + "\n    ".join(tail) + f"\n    (log: {log_path})", flush=True)
        if status == "completed" and measure_now and run_dir is not None and measurable(run_dir):
            failed += measure_one(run_dir, hydra_root / f"sharpness_after_{i}.log", stop, a.grace) != 0
    if counts:
        print("outcomes: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())), flush=True)
    if counts.get("preempted"):
        print("preempted runs resume from their checkpoints: launch the same command again", flush=True)
    return 1 if failed or counts.get("preempted") else 0


def measure_one(run_dir: Path, log_path: Path, stop: Stopper, grace: float = GRACE_S) -> int:
    """``python -m adasam_glue.sharpness RUN_DIR <settings>``; print its outcome; its exit status."""
    t0 = time.time()
    cmd = [sys.executable, "-m", "adasam_glue.sharpness", str(run_dir), *sharpness_overrides()]
    code = launch(cmd, log_path, stop, grace)
    status = "ok" if code == 0 else f"FAILED (exit {code}, log {log_path})"
    print(f"  sharpness {status} {time.time() - t0:7.1f}s  {run_dir}", flush=True)
    return code


def regenerate_one(
    run_dir: Path,
    results: Path,
    data_dir: Path,
    extra: list[str],
    scratch: Path,
    logs: Path,
    stop: Stopper,
    grace: float = GRACE_S,
) -> str | None:
    """Retrain the committed run in ``run_dir`` under ``scratch`` (its record's own overrides, this data
    dir), check it reproduces the record (:func:`reproduction_differences`), measure the retrained
    model and add the block, marked regenerated, to the committed record. ``None`` on success, else why not."""
    from adasam_glue.records import read_record, write_record
    from adasam_glue.run_dir import run_dir_lock

    committed = read_record(run_dir / "record.json")
    own = [
        o
        for o in committed.get("overrides", [])
        if o.split("=", 1)[0] not in ("data.data_dir", "results_dir") and not o.startswith("hydra.")
    ]
    for sel in (results / "runs").rglob("tuned_lr.json"):  # table2's lr: the committed selection
        dest = scratch / sel.relative_to(results)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sel, dest)
    name = run_dir.relative_to(results / "runs")
    cmd = [
        sys.executable, "-m", "adasam_glue", *own, *extra,
        f"data.data_dir={data_dir}", f"results_dir={scratch}", f"hydra.run.dir={logs / 'regen_hydra'}",
    ]  # fmt: skip
    log_path = logs / f"regen_{str(name).replace('/', '_')}.log"
    code = launch(cmd, log_path, stop, grace)
    status, new_dir = run_status(log_path.read_text(errors="replace"))
    if status != "completed" or new_dir is None:
        return f"the retraining ended {status or 'without a record'} (exit {code}, log {log_path})"
    retrained = read_record(new_dir / "record.json")
    diff = reproduction_differences(committed, retrained)
    if diff:
        return f"the retrained run differs from the record in {', '.join(diff)} (kept: {new_dir})"
    code = measure_one(new_dir, logs / f"sharpness_{str(name).replace('/', '_')}.log", stop, grace)
    if code != 0:
        return f"measuring the retrained model failed (exit {code})"
    block = dict(read_record(new_dir / "record.json")["sharpness"])
    block["model"] = "regenerated"  # retrained from the record, reproduced exactly (REPRODUCED_KEYS)
    block["regenerated"] = {"git_commit": retrained.get("git_commit"), "reproduced": list(REPRODUCED_KEYS)}
    with run_dir_lock(run_dir):
        record = read_record(run_dir / "record.json")
        record["sharpness"] = block
        write_record(run_dir / "record.json", record)
    shutil.rmtree(new_dir, ignore_errors=True)  # 90 MB of weights per MiniLM run
    return None


def regeneration_scratch(results: Path) -> Path:
    """Where :func:`regenerate_one` retrains: one folder per results dir that outlives the launch, so a
    retraining stopped by a signal (checkpointed, ``preempted``) resumes at the next launch instead of
    starting over; a finished one is removed once measured."""
    key = hashlib.sha1(str(results.resolve()).encode()).hexdigest()[:10]
    scratch = Path(tempfile.gettempdir()) / f"cpu_scale_regen_{key}"
    scratch.mkdir(parents=True, exist_ok=True)
    return scratch


def measure_all(
    results: Path,
    logs: Path,
    stop: Stopper,
    tasks: list[str] | None = None,
    seeds: list[str] | None = None,
    grace: float = GRACE_S,
    regenerate: tuple[Path, list[str]] | None = None,
) -> int:
    """Measure every unmeasured run with its model; with ``regenerate=(data_dir, extra overrides)`` also
    retrain and measure the table runs whose model is gone (:func:`regenerate_one`). The failures."""
    todo, failed = unmeasured(results, tasks, seeds), 0
    print(f"sharpness: {len(todo)} runs to measure ({' '.join(sharpness_overrides())})", flush=True)
    for k, run_dir in enumerate(todo, 1):
        if stop.now:
            return failed
        print(f"  [{k}/{len(todo)}]", end="", flush=True)
        failed += measure_one(run_dir, logs / f"sharpness_{k}.log", stop, grace) != 0
    if regenerate is None:
        gone = len(regenerable(results, tasks, seeds))
        if gone:
            print(
                f"sharpness: {gone} table runs have no saved model (--regenerate retrains them)", flush=True
            )
        return failed
    data_dir, extra = regenerate
    gone = regenerable(results, tasks, seeds)
    print(f"sharpness: {len(gone)} table runs to retrain and measure (their models are gone)", flush=True)
    scratch = regeneration_scratch(results)
    for k, run_dir in enumerate(gone, 1):
        if stop.now:
            break
        t0 = time.time()
        why = regenerate_one(run_dir, results, data_dir, extra, scratch, logs, stop, grace)
        failed += why is not None
        shown = "regenerated and measured" if why is None else f"NOT MEASURED: {why}"
        print(
            f"  [{k}/{len(gone)}] {shown} {time.time() - t0:7.1f}s  {run_dir.relative_to(results)}",
            flush=True,
        )
    return failed


if __name__ == "__main__":
    sys.exit(main())
