"""scripts/cpu_scale.py, the CPU-scale driver: it plans each stage with the dry run's Planner and does
not launch a run whose record is finished; its sharpness stage honours --tasks/--seeds. No training:
records are written by hand at the run dirs the plan resolves."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from hydra import initialize_config_dir

from adasam_glue.config import CONF_DIR
from adasam_glue.experiments.plan import Planner
from adasam_glue.sharpness.block import METHOD_VERSION
from tests.conftest import load_script, tiny_mrpc_glue

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "cpu_scale.py"


@pytest.fixture(scope="module")
def driver():
    return load_script("cpu_scale")


def _glue(root: Path) -> Path:
    return tiny_mrpc_glue(root)


def test_grid_point_compares_numbers_as_numbers_and_ignores_other_keys(driver):
    keys = {"optim.lr", "seed", "method"}
    a = driver.grid_point(["method=sgd", "optim.lr=3e-3", "seed=1", "data.data_dir=/x"], keys)
    assert a == driver.grid_point(["seed=1", "optim.lr=0.003", "method=sgd"], keys)
    assert a != driver.grid_point(["method=sgd", "optim.lr=1e-2", "seed=1"], keys)
    assert a != driver.grid_point(["method=sam_rho0.01", "optim.lr=3e-3", "seed=1"], keys)


def test_finished_runs_are_not_launched(driver, tmp_path, monkeypatch, capsys):
    data, results = _glue(tmp_path), tmp_path / "results"
    common = [f"data.data_dir={data}", f"results_dir={results}"]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        planned = Planner().plan("cpu_scale", common)
    mrpc = [r for r in planned if r.task == "mrpc" and r.seed == 1]
    assert len(mrpc) == 4 and len({r.run_dir for r in mrpc}) == 4
    for r, status in zip(mrpc[:2], ("completed", "diverged")):  # run() skips both
        r.run_dir.mkdir(parents=True)
        (r.run_dir / "record.json").write_text(json.dumps({"status": status}), encoding="utf-8")
    mrpc[2].run_dir.mkdir(parents=True)  # preempted: must be launched again (it resumes)
    (mrpc[2].run_dir / "record.json").write_text(json.dumps({"status": "preempted"}), encoding="utf-8")

    done = driver.finished_points("cpu_scale", common)
    assert sorted(done.values()) == ["completed", "diverged"]

    monkeypatch.setattr(signal, "signal", lambda *a: None)
    argv = ["--data-dir", str(data), "--results-dir", str(results), "--tasks", "mrpc", "--seeds", "1"]
    assert driver.main([*argv, "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    skipped = [line for line in out if "(not launched)" in line]
    launched = [line for line in out if line.startswith("run: ")]
    assert len(skipped) == 2 and skipped[0].startswith("[1/4] completed") and "diverged" in skipped[1]
    assert launched == [
        "run: experiment=cpu_scale task=mrpc method=adasam_rho0.005 seed=1",
        "run: experiment=cpu_scale task=mrpc method=adasam_rho0.001 seed=1",
    ]


def test_sharpness_stage_restricted_to_tasks_and_seeds(driver, tmp_path):
    results = tmp_path / "results"
    for task, seed, status, sharp in [
        ("mrpc", 1, "completed", None),
        ("mrpc", 2, "completed", None),
        ("rte", 1, "completed", None),
        ("mrpc", 3, "completed", {"method_version": METHOD_VERSION, "values": {}}),  # measured already
        ("mrpc", 4, "completed", {"values": {"eigenvalue": -3.0}}),  # by an outdated method: again
        ("cola", 1, "preempted", None),  # not finished
    ]:
        run_dir = results / "runs" / "cpu_scale" / task / "x" / f"seed{seed}"
        (run_dir / "model").mkdir(parents=True)
        (run_dir / "model" / "config.json").write_text("{}")
        rec = {"status": status, "task": task, "seed": seed, "sharpness": sharp}
        (run_dir / "record.json").write_text(json.dumps(rec), encoding="utf-8")
    names = lambda dirs: sorted(f"{d.parts[-3]}/{d.name}" for d in dirs)  # noqa: E731
    assert names(driver.unmeasured(results)) == ["mrpc/seed1", "mrpc/seed2", "mrpc/seed4", "rte/seed1"]
    assert names(driver.unmeasured(results, tasks=["mrpc"])) == ["mrpc/seed1", "mrpc/seed2", "mrpc/seed4"]
    assert names(driver.unmeasured(results, seeds=["1"])) == ["mrpc/seed1", "rte/seed1"]
    assert names(driver.unmeasured(results, ["rte"], ["2"])) == []


def test_probe_stage_runs_every_listed_probe_and_each_composes(driver, tmp_path):
    """conf/probes/cpu_scale.yaml is the probe stage: each probe becomes one run line (seed 1), in file
    order, planned without the grid-point shortcut; each one composes (a typo fails here, not after an
    hour of sweep), and the SGD probes stay out of the tables' experiments."""
    from hydra import compose

    lines = driver.plan(["probe"], None, None)
    probes = driver.probe_runs()
    assert lines == [["PROBE", *p] for p in probes] and all(p[-1] == "seed=1" for p in probes)
    assert driver.plan(["probe"], None, ["mrpc"]) == [["PROBE", *p] for p in probes if "task=mrpc" in p]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        for p in probes:
            cfg = compose("config", overrides=[*p, "data.data_dir=/nonexistent"])
            assert cfg.experiment_name in ("cpu_scale", "cpu_scale_probe"), p
            if cfg.optim.name == "sgd":
                assert cfg.experiment_name == "cpu_scale_probe" and cfg.trainer.save_model == "none", p


#: A stand-in for ``python -m adasam_glue ...`` (the driver launches ``sys.executable``): it prints its run
#: dir as a run does and writes the record. FAKE_MODE: ``completed``, ``preempted`` (exit 0 with a
#: preempted record, as trainer.stop_after_updates or a signal gives), ``wait`` (checkpoint on SIGTERM in 1.5 s, longer than
#: the 0.25 s subprocess.run gave a Ctrl-C'd child; completed after 8 s if never signalled), ``ignore``
#: (ignores SIGTERM: only a kill stops it).
_FAKE_RUN = """#!{python}
import json, os, signal, sys, time
from pathlib import Path
name = Path([a for a in sys.argv if a.startswith("hydra.run.dir=")][0].split("=", 1)[1]).name
run_dir = Path(os.environ["FAKE_ROOT"]) / ("run" + name)
run_dir.mkdir(parents=True, exist_ok=True)
print("run dir: " + str(run_dir), flush=True)
def record(status):
    (run_dir / "record.json").write_text(json.dumps({{"status": status}}))
mode = os.environ["FAKE_MODE"]
if mode in ("preempted", "completed"):
    record(mode)
    sys.exit(0)
record("running")
def checkpoint(signum, frame):
    time.sleep(1.5)
    record("preempted")
    sys.exit(0)
signal.signal(signal.SIGTERM, checkpoint if mode == "wait" else signal.SIG_IGN)
(run_dir / "started").write_text("")
time.sleep(8 if mode == "wait" else 60)
record("completed")
"""


@pytest.fixture
def fake_runs(tmp_path, monkeypatch):
    """The driver's children are the fake run above; returns ``(argv, fake root)``."""
    import os
    import sys
    import tempfile

    script = tmp_path / "fake_python"
    script.write_text(_FAKE_RUN.format(python=sys.executable))
    script.chmod(0o755)
    root = tmp_path / "fake_runs"
    (tmp_path / "tmp").mkdir()  # the driver's launch-log folder: inside the test's, not in /tmp
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    monkeypatch.setattr(sys, "executable", str(script))
    monkeypatch.setenv("FAKE_ROOT", str(root))
    data = _glue(tmp_path)
    argv = ["--data-dir", str(data), "--results-dir", str(tmp_path / "results"), "--tasks", "mrpc"]
    assert os.access(script, os.X_OK)
    return [*argv, "--seeds", "1"], root


def test_each_run_is_reported_by_its_record_status_not_its_exit_code(driver, fake_runs, monkeypatch, capsys):
    """Issue 24 H: a preempted run exits 0 and used to be reported "ok"."""
    argv, _ = fake_runs
    monkeypatch.setenv("FAKE_MODE", "preempted")
    assert driver.main(argv) != 0  # preempted runs are not a finished sweep
    out = capsys.readouterr().out.splitlines()
    lines = [line for line in out if line.startswith("[")]
    assert len(lines) == 4 and all("] preempted (resumes from its checkpoint" in line for line in lines), out
    assert not any(" ok " in line for line in lines)
    assert "outcomes: 4 preempted" in out


@pytest.mark.parametrize("mode", ["completed", "preempted"])
def test_the_launch_logs_are_removed_only_when_every_run_finished(
    driver, fake_runs, tmp_path, monkeypatch, capsys, mode
):
    """Each launch wrote its children's logs into a fresh ``cpu_scale_hydra_*`` folder that was never
    removed (hundreds in /tmp after the test suite); a finished sweep's records are its result, so the
    folder goes, while an unfinished one keeps the logs its output points into."""
    tmp = tmp_path / "tmp"  # fake_runs makes it tempfile's folder
    argv, _ = fake_runs
    monkeypatch.setenv("FAKE_MODE", mode)
    code = driver.main(argv)
    left = sorted(tmp.glob("cpu_scale_hydra_*"))
    out = capsys.readouterr().out
    if mode == "completed":
        assert code == 0 and left == [], out
    else:
        assert code != 0 and len(left) == 1 and f"logs kept in {left[0]}" in out
        assert len(list(left[0].glob("*.log"))) == 4


def _signal_when_started(root, signum, n=1):
    """Send ``signum`` to this process (the driver) ``n`` times once the first fake run has started."""
    import os
    import threading
    import time

    def send():
        deadline = time.monotonic() + 30
        while not list(root.glob("*/started")) and time.monotonic() < deadline:
            time.sleep(0.05)
        for _ in range(n):
            os.kill(os.getpid(), signum)
            time.sleep(0.3)

    threading.Thread(target=send, daemon=True).start()


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_a_stop_signal_reaches_the_run_and_it_gets_time_to_checkpoint(
    driver, fake_runs, monkeypatch, capsys, signame
):
    """Issue 24 H: Ctrl-C gave the child 0.25 s before SIGKILL (subprocess.run), and SIGTERM was not
    forwarded at all; now the run gets SIGTERM and --grace seconds, and writes its preempted record."""
    argv, root = fake_runs
    monkeypatch.setenv("FAKE_MODE", "wait")
    before = signal.getsignal(getattr(signal, signame))
    _signal_when_started(root, getattr(signal, signame))
    try:
        code = driver.main([*argv, "--grace", "30"])
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped the driver: the run was killed after 0.25 s, without its checkpoint")
    out = capsys.readouterr().out
    assert code != 0
    assert json.loads((root / "run1" / "record.json").read_text())["status"] == "preempted"
    assert "[1/4] preempted" in out and "forwarded SIGTERM" in out and "stopping: signal received" in out
    assert not (root / "run2").exists()  # nothing launched after the signal
    assert signal.getsignal(getattr(signal, signame)) == before  # the driver's handlers are gone again


def test_a_run_that_ignores_the_signal_is_killed_after_the_grace_period(
    driver, fake_runs, monkeypatch, capsys
):
    argv, root = fake_runs
    monkeypatch.setenv("FAKE_MODE", "ignore")
    _signal_when_started(root, signal.SIGTERM)
    assert driver.main([*argv, "--grace", "1"]) != 0
    out = capsys.readouterr().out
    assert "did not stop within 1 s of SIGTERM (--grace): killing it" in out
    assert "[1/4] KILLED (its record still says running)" in out


def test_driver_and_runs_use_the_scripts_own_checkout(driver, monkeypatch):
    """A frozen copy of the tree sweeps while the working tree changes: the driver plans with its own
    checkout's package and the runs it launches import it first (PYTHONPATH), whatever is installed."""
    import sys

    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    root = SCRIPT.parents[1]
    assert driver.ROOT == root and str(root) in sys.path
    assert driver.child_env()["PYTHONPATH"].split(":") == [str(root), "/elsewhere"]


def _table_run(results: Path, exp: str, task: str, seed: int, model: bool, **extra) -> Path:
    run_dir = results / "runs" / exp / task / "m" / f"seed{seed}"
    run_dir.mkdir(parents=True)
    if model:
        (run_dir / "model").mkdir()
        (run_dir / "model" / "config.json").write_text("{}")
    rec = {"status": "completed", "experiment": exp, "task": task, "seed": seed, **extra}
    (run_dir / "record.json").write_text(json.dumps(rec), encoding="utf-8")
    return run_dir


def test_regenerable_is_the_table_runs_whose_model_is_gone_seed_major(driver, tmp_path):
    """The report's sharpness verdicts read Tables 1/2 and the matched row; a machine that is lost takes
    their uncommitted weights with it. Those runs, and only those, are retrained: seed by seed."""
    results = tmp_path / "results"
    _table_run(results, "cpu_scale_table2", "mrpc", 1, model=False)
    _table_run(results, "cpu_scale", "mrpc", 2, model=False)
    _table_run(results, "cpu_scale_matched", "cola", 1, model=False)
    _table_run(results, "cpu_scale", "stsb", 1, model=False)
    _table_run(results, "cpu_scale", "cola", 3, model=True)  # its model is here: measured, not retrained
    current = {"method_version": METHOD_VERSION, "values": {}}
    _table_run(results, "cpu_scale", "rte", 1, model=False, sharpness=current)  # measured already
    _table_run(results, "cpu_scale", "rte", 2, model=False, sharpness={"values": {}})  # outdated method
    _table_run(results, "cpu_scale_tune", "mrpc", 1, model=False)  # not a table
    _table_run(results, "cpu_scale_probe", "mrpc", 1, model=False)
    names = lambda dirs: [f"{d.parts[-4]}/{d.parts[-3]}/{d.name}" for d in dirs]  # noqa: E731
    assert names(driver.regenerable(results)) == [
        "cpu_scale/stsb/seed1",
        "cpu_scale_matched/cola/seed1",
        "cpu_scale_table2/mrpc/seed1",
        "cpu_scale/mrpc/seed2",
        "cpu_scale/rte/seed2",
    ]
    assert names(driver.regenerable(results, tasks=["mrpc"], seeds=["2"])) == ["cpu_scale/mrpc/seed2"]
    assert names(driver.unmeasured(results)) == ["cpu_scale/cola/seed3"]


#: A stand-in for both children of a regeneration: ``-m adasam_glue OVERRIDES`` writes the run's record
#: under its results_dir (the committed record's content, or a different train curve with FAKE_DIFFER) and
#: a model; ``-m adasam_glue.sharpness RUN_DIR`` adds a sharpness block to RUN_DIR's record.
_FAKE_REGEN = """#!{python}
import json, os, sys
from pathlib import Path
args = sys.argv[1:]
if args[1] == "adasam_glue.sharpness":
    rec = Path(args[2]) / "record.json"
    r = json.loads(rec.read_text())
    r["sharpness"] = {{"method_version": {version}, "values": {{"eigenvalue": 7.0, "trace": 70.0}},
                       "update": r["final"]["update"]}}
    rec.write_text(json.dumps(r))
    sys.exit(0)
kv = dict(a.split("=", 1) for a in args[2:])
Path(os.environ["FAKE_ARGS"]).write_text(json.dumps(args[2:]))
run_dir = Path(kv["results_dir"]) / "runs" / os.environ["FAKE_RUN"]
(run_dir / "model").mkdir(parents=True)
(run_dir / "model" / "config.json").write_text("{{}}")
r = json.loads(Path(os.environ["FAKE_COMMITTED"]).read_text())
r["git_commit"], r["started_at"] = "retrained", "later"  # not part of what must reproduce
if os.environ.get("FAKE_DIFFER"):
    r["train_curve"][-1]["loss"] += 1e-7
(run_dir / "record.json").write_text(json.dumps(r))
print("run dir: " + str(run_dir), flush=True)
"""


@pytest.mark.parametrize("differ", [False, True])
def test_a_regenerated_model_is_measured_only_when_it_reproduces_the_record(
    driver, tmp_path, monkeypatch, capsys, differ
):
    """--regenerate retrains a run whose model is gone from its record's own overrides (the table2 lr
    from the committed tuned_lr.json), and adds the sharpness block, marked regenerated, only when the
    retrained record equals the committed one in identity, curves and evals: a model that does not
    reproduce the run is not that run's model. Nothing else in the committed record changes."""
    import sys
    import tempfile

    results, data = tmp_path / "results", _glue(tmp_path)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # the scratch stays in this test
    rel = "cpu_scale_table2/mrpc/m/seed1"
    committed = {
        "schema_version": 2,
        "identity_hash": "abc",
        "optimizer_updates": 4,
        "train_curve": [{"update": 4, "loss": 0.5}],
        "eval_curve": [{"update": 4, "metrics": {"accuracy": 0.75}}],
        "best": {"update": 4, "metrics": {"accuracy": 0.75}},
        "final": {"update": 4, "metrics": {"accuracy": 0.75}},
        "git_commit": "old",
        "overrides": [
            "experiment=cpu_scale_table2", "task=mrpc", "method=sgd", "seed=1",
            "data.data_dir=/gone/glue", f"results_dir={results}",
        ],
    }  # fmt: skip
    run_dir = _table_run(results, "cpu_scale_table2", "mrpc", 1, model=False, **committed)
    before = json.loads((run_dir / "record.json").read_text())
    sel = results / "runs" / "cpu_scale_tune" / "mrpc" / "sgd" / "tuned_lr.json"
    sel.parent.mkdir(parents=True)
    sel.write_text('{"lr": 0.01}')
    script = tmp_path / "fake_python"
    script.write_text(_FAKE_REGEN.format(python=sys.executable, version=METHOD_VERSION))
    script.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(script))
    monkeypatch.setattr(signal, "signal", lambda *a: None)
    monkeypatch.setenv("FAKE_RUN", rel)
    monkeypatch.setenv("FAKE_ARGS", str(tmp_path / "args.json"))
    monkeypatch.setenv("FAKE_COMMITTED", str(run_dir / "record.json"))
    if differ:
        monkeypatch.setenv("FAKE_DIFFER", "1")

    argv = ["--data-dir", str(data), "--results-dir", str(results), "--stage", "sharpness"]
    assert driver.main([*argv, "--dry-run"]) == 0
    assert "1 completed table runs have no saved model: skipped (no --regenerate)" in capsys.readouterr().out
    code = driver.main([*argv, "--regenerate"])
    out = capsys.readouterr().out
    args = json.loads((tmp_path / "args.json").read_text())
    assert args[:4] == committed["overrides"][:4] and f"data.data_dir={data}" in args
    assert not any(a.startswith("results_dir=") and a.endswith(str(results)) for a in args)  # a scratch dir
    # ... the same one at every launch for these results (a stopped retraining resumes from its
    # checkpoint there), another for other results
    scratch = driver.regeneration_scratch(results)
    assert f"results_dir={scratch}" in args and driver.regeneration_scratch(results) == scratch
    assert scratch.parent == tmp_path / "tmp"
    assert driver.regeneration_scratch(tmp_path / "other") != scratch
    after = json.loads((run_dir / "record.json").read_text())
    if differ:
        assert code != 0 and "NOT MEASURED: the retrained run differs from the record in train_curve" in out
        assert after == before
    else:
        assert code == 0 and "[1/1] regenerated and measured" in out, out
        block = after.pop("sharpness")
        assert after == before  # only the block was added
        assert block["values"] == {"eigenvalue": 7.0, "trace": 70.0} and block["model"] == "regenerated"
        assert block["regenerated"]["git_commit"] == "retrained"


def test_reproduction_ignores_only_keys_the_committed_record_predates(driver):
    """Newer code writes ``constant_prediction`` in each eval entry; a record committed before it must
    still count as reproduced by a retraining that adds it, while any committed value that changes, or
    goes missing, is still a difference."""
    entry = {"update": 4, "eval_loss": 0.5, "metrics": {"accuracy": 0.75}}
    committed = {"identity_hash": "abc", "eval_curve": [entry], "best": entry, "final": entry}
    newer = {**entry, "constant_prediction": False}
    retrained = {"identity_hash": "abc", "eval_curve": [newer], "best": newer, "final": newer}
    assert driver.reproduction_differences(committed, retrained) == []
    changed = {**newer, "metrics": {"accuracy": 0.7500001}}
    assert driver.reproduction_differences(committed, {**retrained, "best": changed}) == ["best"]
    dropped = {k: v for k, v in newer.items() if k != "eval_loss"}
    assert driver.reproduction_differences(committed, {**retrained, "eval_curve": [dropped]}) == [
        "eval_curve"
    ]
    longer = {**retrained, "eval_curve": [newer, newer]}
    assert driver.reproduction_differences(committed, longer) == ["eval_curve"]


def test_with_the_sharpness_stage_each_run_is_measured_as_soon_as_it_completes(
    driver, fake_runs, monkeypatch, capsys
):
    """The weights are not committed: a run is measured right after it trains (while its model is
    surely there), not only in the stage at the end of a sweep that a lost machine may never reach."""
    argv, root = fake_runs
    monkeypatch.setenv("FAKE_MODE", "completed")
    measured = []  # (run measured, how many runs had been launched then)

    def measure_one(run_dir, *a, **k):
        measured.append((run_dir.name, len(list(root.glob("run*")))))
        return 0

    monkeypatch.setattr(driver, "measurable", lambda d: {"status": "completed"})
    monkeypatch.setattr(driver, "measure_one", measure_one)
    monkeypatch.setattr(driver, "unmeasured", lambda *a, **k: [])
    monkeypatch.setattr(signal, "signal", lambda *a: None)
    assert driver.main([*argv, "--stage", "table1,sharpness"]) == 0
    assert measured == [("run1", 1), ("run2", 2), ("run3", 3), ("run4", 4)], capsys.readouterr().out
    measured.clear()
    assert driver.main([*argv, "--stage", "table1"]) == 0  # no sharpness stage: nothing measured
    assert measured == []
