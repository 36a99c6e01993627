"""The paper's experiments as Hydra multiruns: plan them, print the plan, launch them in order.

``python -m adasam_glue.experiments reproduce-all [--launcher local|slurm|submitit_local] [--dry-run]
[--only table1,speedup] [--own-mnli] [hydra overrides ...]`` (``make reproduce-all [DRY_RUN=1] [LAUNCHER=slurm]``).

How a grid is written (``conf/experiment/*.yaml``): Hydra's basic sweeper takes the cartesian product
of ``hydra.sweeper.params``. The rho grid belongs to the SAM-family optimizer only, so the tables sweep
``method``, a config group of *grid points* (``conf/method/adasam_rho0.01.yaml`` = ``optim=adasam
optim.rho=0.01``; ``conf/method/amsgrad.yaml`` = ``optim=amsgrad``, no rho): task x method x seed is then
exactly the table. ``python -m adasam_glue -m experiment=table1`` runs the whole table by itself; this
module adds the plan (``run:`` lines, counts, GPU-hours, done / to do), ordering (own MNLI first) and
the launcher choice. Skipping completed runs and resuming preempted ones is :func:`adasam_glue.run.run`'s
job; the plan only reads ``record.json`` to report it.

Each planned run is shown as ``run: <overrides>``: the explicit form ``experiment=X task=T optim=O
[optim.rho=R] optim.beta1=B <other values the experiment changes> <your overrides> seed=S``, which
``python -m adasam_glue`` accepts as is and which composes the same config as the multirun's job
(``experiment=X task=T method=M seed=S``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from adasam_glue.config import CONF_DIR

#: ``make reproduce-all``: the four tables and the speedup study (``--only`` adds the others).
PAPER_EXPERIMENTS = ("table1", "table2", "table3", "table4", "speedup")
#: The experiment that trains this harness's own MNLI start point (``--own-mnli``).
MNLI_EXPERIMENT = "mnli_init"
#: Suffix of ``experiment_name`` for runs started from the own MNLI run (never mixed with Hub-init runs).
OWN_MNLI_SUFFIX = "-own-mnli"
#: Sweep keys that select a grid point; the ``run:`` line writes them out explicitly.
_SWEEP_CHOICES = ("experiment", "task", "method", "optim", "schedule", "seed")

#: GPU-hours model: seconds per training sample per forward+backward pass, RoBERTa-large (355M) on one
#: A100 80GB in fp16/bf16 with dynamic padding (cost ~ the padded length of the task's batches). Assumed,
#: not measured here (no GPU): about 5 ms per 128-token sample, scaled by each task's typical padded
#: length (CoLA ~25 tokens ... RTE ~150). A run costs updates x batch x passes x this (two passes per
#: update for the SAM family), evaluation and checkpointing not counted.
SECONDS_PER_SAMPLE_PASS = {
    "mnli": 0.0030,
    "qnli": 0.0040,
    "qqp": 0.0025,
    "rte": 0.0060,
    "sst2": 0.0020,
    "mrpc": 0.0035,
    "cola": 0.0015,
    "stsb": 0.0025,
}

_LAUNCHERS_NEEDING_SUBMITIT = ("slurm", "submitit_slurm", "submitit_local", "submitit_local_test")


class ExperimentError(ValueError):
    """Bad input to reproduce-all (unknown experiment or launcher, missing plugin); the message says what is valid."""


# --------------------------------------------------------------------------------------------- discovery
def available_experiments() -> list[str]:
    """Names of ``conf/experiment/*.yaml``."""
    return sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


def available_launchers() -> list[str]:
    """``hydra/launcher`` options: the project's files plus the submitit plugin's two."""
    own = sorted(p.stem for p in (CONF_DIR / "hydra" / "launcher").glob("*.yaml"))
    return own + [x for x in ("submitit_local", "submitit_slurm") if x not in own]


def check_experiments(names: Iterable[str]) -> list[str]:
    valid = available_experiments()
    names = [n.strip() for n in names if n.strip()]
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ExperimentError(
            f"unknown experiment {', '.join(map(repr, unknown))}: valid experiments are {', '.join(valid)}"
        )
    return names


def check_launcher(launcher: str) -> None:
    """Unknown launcher -> the valid ones; a submitit launcher without the plugin -> how to install it."""
    if launcher not in available_launchers():
        raise ExperimentError(
            f"unknown launcher {launcher!r}: valid launchers are {', '.join(available_launchers())}"
        )
    if launcher in _LAUNCHERS_NEEDING_SUBMITIT:
        missing = [m for m in ("submitit", "hydra_plugins.hydra_submitit_launcher") if not _importable(m)]
        if missing:
            raise ExperimentError(
                f"--launcher {launcher} needs hydra-submitit-launcher (and submitit), which is not installed "
                f"(missing: {', '.join(missing)}). Install the slurm extra: pip install -e '.[slurm]'"
            )


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


# ------------------------------------------------------------------------------------------------ plan
@dataclass(frozen=True)
class PlannedRun:
    """One job of an experiment's multirun."""

    experiment: str  #: conf/experiment name (the multirun)
    job_overrides: tuple[str, ...]  #: what Hydra's basic sweeper hands the job
    line: tuple[str, ...]  #: the explicit overrides printed after ``run:``
    run_dir: Path
    task: str
    optim: str
    seed: int
    updates: int
    batch_size: int
    passes: int  #: forward/backward passes per sample (2 for the SAM family)
    gpu_hours: float
    status: str | None  #: record.json status, None if there is no record
    depends_on_mnli: bool  #: the task starts from ``model.mnli_checkpoint``

    @property
    def done(self) -> bool:
        return self.status == "completed"

    @property
    def to_do(self) -> bool:
        return self.status not in ("completed", "diverged")  # run() skips both


@dataclass
class Block:
    """One multirun invocation: ``python -m adasam_glue -m experiment=<experiment> <overrides>``."""

    experiment: str
    overrides: list[str]
    runs: list[PlannedRun] = field(default_factory=list)

    def command(self, launcher: str, python: str = sys.executable) -> list[str]:
        return [
            python,
            "-m",
            "adasam_glue",
            "-m",
            f"experiment={self.experiment}",
            f"hydra/launcher={launcher}",
            *self.overrides,
        ]


def _is_hydra_override(o: str) -> bool:
    key = o.lstrip("+~").split("=", 1)[0]
    return key == "hydra" or key.startswith(("hydra.", "hydra/"))


def _is_sweep(o: str) -> bool:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_override(o).is_sweep_override()


def _key(o: str) -> str:
    return o.lstrip("+~").split("=", 1)[0]


def _fmt(value: Any) -> str:
    """A value in Hydra override syntax."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_fmt(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_fmt(v)}" for k, v in value.items()) + "}"
    s = str(value)
    return s if re.fullmatch(r"[\w./:@-]+", s) else "'" + s.replace("'", "\\'") + "'"


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict) and d:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


class Planner:
    """Composes the configs of an experiment's multirun jobs (cached per grid point, seeds aside)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, ...], DictConfig] = {}

    def compose(self, overrides: Sequence[str], hydra_cfg: bool = False) -> DictConfig:
        from hydra import compose

        key = (str(hydra_cfg), *overrides)
        if key not in self._cache:
            self._cache[key] = compose("config", overrides=list(overrides), return_hydra_config=hydra_cfg)
        return self._cache[key]

    def sweep_jobs(self, experiment: str, overrides: Sequence[str]) -> list[list[str]]:
        """The job overrides Hydra's basic sweeper would launch for ``-m experiment=<experiment> <overrides>``."""
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser

        args = [f"experiment={experiment}", *overrides]
        # The master config, as Hydra's multirun builds it: without the sweeps' values.
        cfg = self.compose([a for a in args if not _is_sweep(a)], hydra_cfg=True)
        params = cfg.hydra.sweeper.params or {}
        conf = [f"{k}={v}" for k, v in params.items()] + [a for a in args if not _is_hydra_override(a)]
        parsed = OverridesParser.create().parse_overrides(conf)
        return [list(job) for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]

    def plan(self, experiment: str, overrides: Sequence[str] = ()) -> list[PlannedRun]:
        from adasam_glue.optim.registry import get_optim_info  # the package __init__ re-exports it
        from adasam_glue.run import resolve_run_dir, total_updates

        user = [o for o in overrides if not _is_hydra_override(o)]
        runs = []
        for job in self.sweep_jobs(experiment, overrides):
            seed_ov = [o for o in job if _key(o) == "seed"]
            cfg = self.compose(
                [o for o in job if _key(o) != "seed"] + [o for o in overrides if _is_hydra_override(o)]
            )
            if seed_ov:
                cfg = cfg.copy()
                cfg.seed = int(seed_ov[-1].split("=", 1)[1])
            task, optim = cfg.task.name, cfg.optim.name
            # The baseline: the same task, optimizer and user overrides without the experiment.
            fixed = [o for o in user if _key(o) not in _SWEEP_CHOICES and not _is_sweep(o)]
            base = self.compose([f"task={task}", f"optim={optim}", *fixed])
            line = [f"experiment={experiment}", f"task={task}", f"optim={optim}"]
            shown = {"task.name", "optim.name", "experiment_name", "seed"}
            for key in ("optim.rho", "optim.beta1"):
                value = OmegaConf.select(cfg, key)
                if value is not None:
                    line.append(f"{key}={_fmt(value)}")
                shown.add(key)
            user_keys = {_key(o) for o in fixed}
            now = _flatten(OmegaConf.to_container(cfg, resolve=True))
            before = _flatten(OmegaConf.to_container(base, resolve=True))
            line += [
                f"{k}={_fmt(v)}"
                for k, v in now.items()
                if k not in shown and k not in user_keys and before.get(k, object()) != v
            ]
            line += fixed + [f"seed={cfg.seed}"]

            updates = total_updates(cfg)
            passes = 2 if get_optim_info(optim).two_pass else 1
            samples = updates * cfg.task.batch_size  # a batch schedule keeps the samples (fewer updates)
            hours = samples * passes * SECONDS_PER_SAMPLE_PASS.get(task, 0.003) / 3600
            run_dir = resolve_run_dir(cfg)
            init_raw = OmegaConf.to_container(cfg.task, resolve=False).get("init_from")
            runs.append(
                PlannedRun(
                    experiment=experiment,
                    job_overrides=tuple(job),
                    line=tuple(line),
                    run_dir=run_dir,
                    task=task,
                    optim=optim,
                    seed=int(cfg.seed),
                    updates=updates,
                    batch_size=int(cfg.task.batch_size),
                    passes=passes,
                    gpu_hours=hours,
                    status=_record_status(run_dir),
                    depends_on_mnli=isinstance(init_raw, str) and "model.mnli_checkpoint" in init_raw,
                )
            )
        return runs


def _record_status(run_dir: Path) -> str | None:
    path = run_dir / "record.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text()).get("status")
    except (OSError, ValueError):
        return "unreadable"


def _with_tasks(overrides: Sequence[str], tasks: Sequence[str]) -> list[str]:
    return [o for o in overrides if _key(o) != "task"] + [f"task={','.join(tasks)}"]


def build_blocks(
    experiments: Sequence[str], overrides: Sequence[str] = (), own_mnli: bool = False
) -> list[Block]:
    """The multirun invocations of reproduce-all, in launch order.

    With ``own_mnli``: first ``mnli_init`` (this harness's MNLI run); then, per experiment, the tasks that do
    not start from MNLI as usual, and those that do (RTE, MRPC, STS-B) with ``model.mnli_checkpoint=<the
    MNLI run dir>`` under ``experiment_name=<name>-own-mnli`` (their run dirs never mix with Hub-init runs).
    """
    from hydra import initialize_config_dir

    overrides = list(overrides)
    blocks: list[Block] = []
    with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name="reproduce_all"):
        planner = Planner()
        mnli_dir = None
        if own_mnli:
            mnli_overrides = [o for o in overrides if _key(o) not in ("task", "seed")]
            mnli = Block(MNLI_EXPERIMENT, mnli_overrides, planner.plan(MNLI_EXPERIMENT, mnli_overrides))
            if len(mnli.runs) != 1:
                raise ExperimentError(f"{MNLI_EXPERIMENT} must be a single run, got {len(mnli.runs)}")
            mnli_dir = mnli.runs[0].run_dir
            blocks.append(mnli)
        for name in experiments:
            if name == MNLI_EXPERIMENT and own_mnli:
                continue
            runs = planner.plan(name, overrides)
            dependent = [r for r in runs if r.depends_on_mnli]
            if mnli_dir is None or not dependent:
                blocks.append(Block(name, overrides, runs))
                continue
            rest = sorted({r.task for r in runs if not r.depends_on_mnli}, key=[r.task for r in runs].index)
            if rest:
                ov = _with_tasks(overrides, rest)
                blocks.append(Block(name, ov, planner.plan(name, ov)))
            dep = sorted({r.task for r in dependent}, key=[r.task for r in dependent].index)
            ov = _with_tasks(overrides, dep) + [
                f"model.mnli_checkpoint={mnli_dir}",
                f"experiment_name={name}{OWN_MNLI_SUFFIX}",
            ]
            blocks.append(Block(name, ov, planner.plan(name, ov)))
    return blocks


# ------------------------------------------------------------------------------------------- reporting
def summary_lines(blocks: Sequence[Block]) -> list[str]:
    runs = [r for b in blocks for r in b.runs]
    per_exp: dict[str, list[PlannedRun]] = {}
    for r in runs:
        per_exp.setdefault(r.experiment, []).append(r)

    def stats(rs: list[PlannedRun]) -> str:
        done = sum(r.done for r in rs)
        diverged = sum(r.status == "diverged" for r in rs)
        todo = [r for r in rs if r.to_do]
        resume = sum(r.status in ("preempted", "running", "failed") for r in todo)
        return (
            f"{len(rs)} runs, {done} done, {diverged} diverged, {len(todo)} to do ({resume} with a record), "
            f"{sum(r.gpu_hours for r in todo):.1f} of {sum(r.gpu_hours for r in rs):.1f} GPU-hours to do"
        )

    lines = [f"summary: {stats(runs)}"]
    lines += [f"  {name}: {stats(rs)}" for name, rs in per_exp.items()]
    lines.append(
        "  GPU-hours assume RoBERTa-large on one A100 (fp16/bf16): updates x batch x passes x seconds per sample "
        "pass ("
        + ", ".join(f"{t} {s * 1000:g} ms" for t, s in SECONDS_PER_SAMPLE_PASS.items())
        + "); 2 passes per update for the SAM family; eval not counted"
    )
    lines.append(
        "  done = <run dir>/record.json with status completed; diverged runs are skipped on rerun too; "
        "run dir = <results_dir>/runs/<experiment>/<task>/<optim>/<params>/seed<k>"
    )
    return lines


def print_plan(blocks: Sequence[Block], launcher: str, file: Any = None) -> None:
    file = file or sys.stdout
    for b in blocks:
        for r in b.runs:
            print("run: " + " ".join(r.line), file=file)
    for line in summary_lines(blocks):
        print(line, file=file)
    print("multiruns, in order:", file=file)
    for b in blocks:
        print("  " + " ".join(b.command(launcher, python="python")), file=file)


# ---------------------------------------------------------------------------------------------- launch
def launch(blocks: Sequence[Block], launcher: str, own_mnli: bool = False) -> int:
    """Run the blocks one after another (each a blocking Hydra multirun); return the exit code."""
    env = dict(os.environ)
    if launcher in ("slurm", "submitit_slurm"):
        env.setdefault("SUBMITIT_PREEMPT_SIGNAL", "USR1")  # sbatch --signal: the trainer checkpoints on USR1
    failed = []
    for i, b in enumerate(blocks):
        if b.runs and not any(r.to_do for r in b.runs):
            print(f"skip: experiment={b.experiment} ({len(b.runs)} runs already done)", flush=True)
            continue
        cmd = b.command(launcher)
        print("launch: " + " ".join(cmd[1:]), flush=True)
        rc = subprocess.call(cmd, env=env)
        if rc != 0:
            failed.append(b.experiment)
            if own_mnli and i == 0 and b.experiment == MNLI_EXPERIMENT:
                print(
                    "error: the MNLI run failed; not starting the experiments that depend on it",
                    file=sys.stderr,
                )
                return rc
    if failed:
        print(
            f"error: multiruns failed: {', '.join(failed)} (rerun: completed runs are skipped, "
            "preempted ones resume)",
            file=sys.stderr,
        )
        return 1
    return 0


# ---------------------------------------------------------------------------------------- hydra hook
try:
    from hydra.experimental.callback import Callback as _Callback
except ImportError:  # pragma: no cover - hydra < 1.1
    _Callback = object  # type: ignore[assignment,misc]


class SlurmDistributedEnv(_Callback):  # type: ignore[misc,valid-type]
    """Hydra callback (``hydra/launcher=slurm``): one submitit task per GPU -> torch.distributed env vars.

    submitit starts ``tasks_per_node`` copies of the job per node (``srun``); this sets ``RANK``,
    ``LOCAL_RANK``, ``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT`` from the SLURM
    job before ``run(cfg)`` builds its ``Accelerator``, which is what ``accelerate launch`` would export.
    A no-op outside submitit or with one task (then the run is a single process, as with ``local``).
    """

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if "RANK" in os.environ:
            return
        try:
            import submitit

            env = submitit.JobEnvironment()
            if env.num_tasks <= 1:
                return
            # Keep every GPU visible: Accelerator picks cuda:LOCAL_RANK itself.
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        except Exception:  # not in a submitit job
            return


# ------------------------------------------------------------------------------------------------- CLI
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m adasam_glue.experiments", description=__doc__.split("\n\n")[0]
    )
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("reproduce-all", help="plan and launch the paper's experiments as Hydra multiruns")
    r.add_argument(
        "--launcher", default="local", help="hydra/launcher option: local (default), slurm, submitit_local"
    )
    r.add_argument(
        "--dry-run", action="store_true", help="print the plan (one `run:` line per run + summary) only"
    )
    r.add_argument(
        "--only",
        default=None,
        help=f"comma-separated experiments (default: {','.join(PAPER_EXPERIMENTS)}; "
        "also variants, schedules, mnli_init, smoke)",
    )
    r.add_argument(
        "--own-mnli",
        action="store_true",
        help="train this harness's MNLI run first (experiment mnli_init) and start RTE/MRPC/STS-B from it",
    )
    r.add_argument("overrides", nargs="*", help="Hydra overrides for every run (e.g. seed=1 results_dir=...)")
    sub.add_parser("list", help="list the experiments")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "list":
        print("\n".join(available_experiments()))
        return 0
    try:
        names = check_experiments(args.only.split(",")) if args.only is not None else list(PAPER_EXPERIMENTS)
        if not names:
            raise ExperimentError(
                f"--only is empty: valid experiments are {', '.join(available_experiments())}"
            )
        check_launcher(args.launcher)
        blocks = build_blocks(names, args.overrides, own_mnli=args.own_mnli)
    except ExperimentError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        print_plan(blocks, args.launcher)
        return 0
    print("\n".join(summary_lines(blocks)), flush=True)
    return launch(blocks, args.launcher, own_mnli=args.own_mnli)


if __name__ == "__main__":
    sys.exit(main())
