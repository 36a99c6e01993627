"""The sbatch script that ``hydra/launcher=slurm`` submits, built by submitit's own code.

Hydra instantiates the launcher from ``conf/hydra/launcher/slurm.yaml`` exactly as a multirun does, the
plugin converts its parameters and submitit writes the sbatch file; a fake ``sbatch`` on PATH captures
it (no SLURM here). Checked: ``--signal`` names a signal the trainer checkpoints on and the same signal
submitit's handler listens to inside the job (the ``setup`` export), whatever the submitting shell
exports; one task per GPU; requeue on preemption and the timeout requeue budget.
"""

from __future__ import annotations

import os
import pickle
import re
import signal
import stat
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from adasam_glue.config import CONF_DIR
from adasam_glue.experiments.launchers import MAIN_JOB_NAME

pytest.importorskip("submitit")
pytest.importorskip("hydra_plugins.hydra_submitit_launcher")


def task_function(cfg):  # the job's callable (pickled with the launcher, never run here)
    return None


def _fake_slurm(tmp_path: Path, monkeypatch) -> Path:
    """``sbatch`` that copies the script it is given and prints a job id; ``srun`` that exists."""
    bin_dir, captured = tmp_path / "bin", tmp_path / "captured"
    bin_dir.mkdir()
    captured.mkdir()
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\ncp "$1" "{captured}/"\necho "Submitted batch job 4242"\n')
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    for f in bin_dir.iterdir():
        f.chmod(f.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return captured


def _submit(tmp_path, monkeypatch, overrides=(), jobs=(("task=rte",), ("task=stsb",))):
    """Launch a 2-job multirun through the real SlurmLauncher; return (sbatch text, submitted pickles)."""
    import submitit
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.plugins import Plugins
    from hydra.core.utils import setup_globals
    from hydra.types import HydraContext

    captured = _fake_slurm(tmp_path, monkeypatch)
    # The multirun waits for its jobs; here they were never run.
    monkeypatch.setattr(submitit.SlurmJob, "results", lambda self: [None])
    setup_globals()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name=MAIN_JOB_NAME):
        cfg = compose(
            "config",
            overrides=[
                "experiment=smoke",
                "hydra/launcher=slurm",
                f"hydra.sweep.dir={tmp_path / 'sweep'}",
                *overrides,
            ],
            return_hydra_config=True,
        )
        from hydra._internal.callbacks import Callbacks
        from hydra.core.hydra_config import HydraConfig

        HydraConfig.instance().set_config(cfg)
        context = HydraContext(config_loader=GlobalHydra.instance().config_loader(), callbacks=Callbacks(cfg))
        launcher = Plugins.instance().instantiate_launcher(
            hydra_context=context, task_function=task_function, config=cfg
        )
        launcher.launch([list(j) for j in jobs], initial_job_idx=0)
    scripts = sorted(captured.glob("*"))
    assert len(scripts) == 1, scripts  # one array job for the multirun
    pickles = sorted((tmp_path / "sweep" / ".submitit").rglob("*_submitted.pkl"))
    return scripts[0].read_text(), pickles


def _flags(sbatch: str) -> dict[str, str | bool]:
    out: dict[str, str | bool] = {}
    for line in sbatch.splitlines():
        m = re.fullmatch(r"#SBATCH --([\w-]+)(?:=(.*))?", line.strip())
        if m:
            out[m.group(1)] = m.group(2).strip("'\"") if m.group(2) is not None else True
    return out


def test_sbatch_signal_tasks_and_requeue(tmp_path, monkeypatch):
    from submitit.slurm.slurm import SlurmJobEnvironment

    from adasam_glue.trainer import PREEMPT_SIGNALS

    # The submitting shell exports another signal: the YAML's must win (this is what used to miss).
    monkeypatch.setattr(SlurmJobEnvironment, "USR_SIG", "USR1")
    sbatch, pickles = _submit(
        tmp_path, monkeypatch, ["hydra.launcher.gpus_per_node=4", "hydra.launcher.nodes=2"]
    )
    flags = _flags(sbatch)

    name, _, delay = str(flags["signal"]).partition("@")
    sig = getattr(signal, f"SIG{name}", None)
    assert sig in PREEMPT_SIGNALS, f"sbatch --signal={flags['signal']} is not one the trainer handles"
    assert int(delay) == 180  # signal_delay_s: time for one update + checkpoint before the kill
    exports = re.findall(r"^export SUBMITIT_PREEMPT_SIGNAL=(\w+)$", sbatch, flags=re.M)
    assert exports == [name], "submitit's handler in the job must listen to the signal sbatch sends"

    assert flags["ntasks-per-node"] == flags["gpus-per-node"] == "4"  # one process per GPU
    assert flags["nodes"] == "2"
    assert flags.get("requeue") is True  # SLURM may requeue a preempted job itself
    assert flags["array"].startswith("0-1%")  # one array element per run

    # Timeouts are requeued max_num_timeout times (submitit counts them down in the pickled job).
    assert pickles, "no submitted job pickle"
    with pickles[0].open("rb") as f:
        delayed = pickle.load(f)
    assert delayed._timeout_countdown == 20


def test_sbatch_signal_follows_signal_delay(tmp_path, monkeypatch):
    sbatch, _ = _submit(tmp_path, monkeypatch, ["hydra.launcher.signal_delay_s=300"], jobs=(("task=rte",),))
    assert _flags(sbatch)["signal"] == "USR2@300"


@pytest.mark.parametrize(
    "overrides, jobs",
    [
        (
            (),
            tuple(
                (f"task={t}", f"method={m}") for t in ("rte", "stsb") for m in ("amsgrad", "adasam_rho0.01")
            ),
        ),
        (("task=rte", "method=amsgrad"), (("task=rte", "method=amsgrad"),)),  # one run: no --array
    ],
)
def test_print_sbatch_shows_what_a_launch_submits_and_submits_nothing(
    overrides, jobs, tmp_path, monkeypatch, capsys
):
    """``reproduce-all --launcher slurm --print-sbatch`` on a machine without SLURM prints, per multirun, the
    script that the real launcher (through the fake ``sbatch``) hands SLURM for the same sweep."""
    from adasam_glue.experiments import plan as experiments

    sweep = f"hydra.sweep.dir={tmp_path / 'sweep'}"
    common = [f"results_dir={tmp_path / 'results'}", *overrides]
    rc = experiments.main(
        ["reproduce-all", "--launcher", "slurm", "--print-sbatch", "--only", "smoke", sweep, *common]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert not (tmp_path / "sweep").exists(), "printing wrote (or submitted) something"
    head, _, printed = out.partition("#!/bin/bash")
    assert "python -m adasam_glue -m experiment=smoke hydra/launcher=slurm" in head
    assert f"# {len(jobs)} runs" in head and "run:" not in out

    submitted, _ = _submit(tmp_path, monkeypatch, common, jobs=jobs)
    assert ("#!/bin/bash" + printed).strip() == submitted.strip()
    assert ("#SBATCH --array=" in submitted) == (len(jobs) > 1)


def test_print_sbatch_needs_a_slurm_launcher(capsys):
    from adasam_glue.experiments import plan as experiments

    assert (
        experiments.main(["reproduce-all", "--launcher", "local", "--print-sbatch", "--only", "smoke"]) == 2
    )
    err = capsys.readouterr().err
    assert "--print-sbatch" in err and "--launcher slurm" in err
