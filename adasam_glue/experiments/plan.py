"""The paper's experiments as Hydra multiruns: plan them, print the plan, launch them in order.

``python -m adasam_glue.experiments reproduce-all [--launcher local|slurm|submitit_local] [--dry-run]
[--print-sbatch] [--only table1,speedup] [--own-mnli] [hydra overrides ...]`` (``make reproduce-all [DRY_RUN=1] [LAUNCHER=slurm]``);
``python -m adasam_glue.experiments select-lr <tuning experiment> [hydra overrides ...]``.

How a grid is written (``conf/experiment/*.yaml``): Hydra's basic sweeper takes the cartesian product
of ``hydra.sweeper.params``. The rho grid belongs to the SAM-family optimizer only, so the tables sweep
``method``, a config group of *grid points* (``conf/method/adasam_rho0.01.yaml`` = ``optim=adasam
optim.rho=0.01``; ``conf/method/amsgrad.yaml`` = ``optim=amsgrad``, no rho): task x method x seed is then
exactly the table. ``python -m adasam_glue -m experiment=table1`` runs the whole table by itself; this
module adds the plan (``run:`` lines, counts, GPU-hours, done / to do), ordering (own MNLI first) and
the launcher choice. Skipping completed runs and resuming preempted ones is :func:`adasam_glue.run.run`'s
job; the plan only reads ``record.json`` to report it.

The lr-tuning stage: SGD and SAM have no recipe lr, so Tables 2/4 (and ``cpu_scale_table2``) set
``optim.lr: ${tuned_lr:<tuning experiment>}`` (:mod:`adasam_glue.experiments.tuned_lr`). reproduce-all puts every
tuning experiment the chosen experiments depend on first (``table2_tune``, ``table4_tune``), runs it,
then ``select-lr`` writes ``<results_dir>/runs/<tuning>/<task>/<optim>/tuned_lr.json``, which the tables'
jobs read. The dry run prints the tuning runs first, a ``select:`` line, then the dependent runs marked
``# optim.lr: tuned by <tuning>``.

Each planned run is shown as ``run: <overrides>``: the explicit form ``experiment=X task=T optim=O
[optim.rho=R] optim.beta1=B <other values the experiment changes> <your overrides> seed=S``, which
``python -m adasam_glue`` accepts as is and which composes the same config as the multirun's job
(``experiment=X task=T method=M seed=S``).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

import adasam_glue.experiments.resolvers  # noqa: F401  ${sqrt_scale}, ${task_recipe}, ${tuned_lr}
from adasam_glue.config import CONF_DIR, ConfigError, check_override_keys
from adasam_glue.experiments import tuned_lr as tl
from adasam_glue.experiments.launchers import (
    SLURM_LAUNCHERS,
    ExperimentError,
    available_experiments,
    check_experiments,
    check_launcher,
    sbatch_scripts,
)
from adasam_glue.experiments.plan_text import (
    SECONDS_PER_SAMPLE_PASS,
    print_plan,
    summary_lines,
)

#: ``make reproduce-all``: the four tables and the speedup study (``--only`` adds the others); the
#: lr-tuning stages Tables 2/4 depend on (``table2_tune``, ``table4_tune``) are added in front of them.
PAPER_EXPERIMENTS = ("table1", "table2", "table3", "table4", "speedup")
#: The experiment that trains this harness's own MNLI start point (``--own-mnli``).
MNLI_EXPERIMENT = "mnli_init"
#: Suffix of ``experiment_name`` for runs started from the own MNLI run (never mixed with Hub-init runs).
OWN_MNLI_SUFFIX = tl.OWN_MNLI_SUFFIX

#: Parameters of each model config (``model.name``), for the disk estimate of ``save_model``: weights
#: are saved as fp32 safetensors (4 bytes per parameter). Hub configs as published; ``tiny`` is computed.
MODEL_PARAMS = {
    "roberta-large": 355e6,
    "roberta-large-mnli": 355e6,
    "roberta-large-random": 355e6,
    "bert-base-uncased": 110e6,
    "deberta-v3-large": 435e6,
    "minilm": 22.7e6,
}
#: Sweep keys that select a grid point; the ``run:`` line writes them out explicitly.
_SWEEP_CHOICES = ("experiment", "task", "method", "optim", "schedule", "seed")


# ------------------------------------------------------------------------------------------------ plan
@dataclass(frozen=True)
class PlannedRun:
    """One job of an experiment's multirun."""

    experiment: str  #: conf/experiment name (the multirun)
    job_overrides: tuple[str, ...]  #: what Hydra's basic sweeper hands the job
    line: tuple[str, ...]  #: the explicit overrides printed after ``run:``
    run_dir: Path | None  #: None while its lr waits for the tuning stage (the dir depends on the lr)
    task: str
    optim: str
    seed: int
    updates: int
    batch_size: int
    passes: int  #: forward/backward passes per sample (2 for the SAM family)
    gpu_hours: float
    status: str | None  #: record.json status, None if there is no record
    depends_on_mnli: bool  #: the task starts from ``model.mnli_checkpoint``
    lr: float | None = None  #: optim.lr (None: not selected yet by the tuning stage)
    #: where optim.lr comes from: recipe (an interpolation such as ``${task.lr}``), tuned (the tuning
    #: stage's file), grid (swept by the experiment), override (given on the command line), experiment
    #: (a literal in the experiment's YAML) or placeholder (a literal from conf/untuned_lr for an
    #: optimizer without a recipe lr: untuned)
    lr_source: str = "recipe"
    tuned_by: str | None = None  #: the tuning experiment of ``${tuned_lr:...}``
    tuned_lr_file: Path | None = None  #: the selection file it reads
    lr_problem: str | None = None  #: why there is no tuned lr yet
    experiment_name: str = ""  #: the runs' folder under runs/ (differs from ``experiment`` with --own-mnli)
    results_dir: Path | None = None
    model_name: str = ""
    model_params: float | None = None  #: parameters of the model (disk estimate), None if unknown
    save_model: str = "best"
    mixed_precision: str = "no"
    tuning_recipe: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    tuned_at: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def done(self) -> bool:
        return self.status == "completed"

    @property
    def to_do(self) -> bool:
        return self.status not in ("completed", "diverged")  # run() skips both

    @property
    def pending_lr(self) -> bool:
        return self.tuned_by is not None and self.lr is None


@dataclass
class Block:
    """One multirun invocation: ``python -m adasam_glue -m experiment=<experiment> <overrides>``."""

    experiment: str
    overrides: list[str]
    runs: list[PlannedRun] = field(default_factory=list)

    @property
    def tuning(self) -> bool:
        """An lr-tuning stage: its multirun is followed by ``select-lr`` (writes the tuned_lr files)."""
        return tl.is_tuning_experiment(self.experiment)

    def select_command(self, python: str = sys.executable) -> list[str]:
        return [python, "-m", "adasam_glue.experiments", "select-lr", self.experiment, *self.overrides]

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
        self._swept: dict[str, set[str]] = {}  #: experiment -> keys its sweep sets (always shown)

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
        self._swept[experiment] = {str(k) for k in params}
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
            fixed = [o for o in user if _key(o) not in _SWEEP_CHOICES and not _is_sweep(o)]
            user_keys = {_key(o) for o in fixed}
            lr_source = _lr_source(cfg, experiment, job, user_keys)
            tuning = tl.tuned_by(cfg)
            found = tl.lookup(cfg, tuning) if tuning else None
            if found is not None:  # the tuned lr as a literal (or NaN while pending): resolvable below
                cfg = cfg.copy()
                cfg.optim.lr = found.lr if found.lr is not None else math.nan
            # The baseline: the same task, optimizer and user overrides without the experiment.
            base = self.compose([f"task={task}", f"optim={optim}", *fixed])
            line = [f"experiment={experiment}", f"task={task}", f"optim={optim}"]
            shown = {"task.name", "optim.name", "experiment_name", "seed"}
            if tuning:
                shown.add("optim.lr")  # comes from the tuning stage's file (annotated by print_plan)
            for key in ("optim.rho", "optim.beta1"):
                value = OmegaConf.select(cfg, key)
                if value is not None:
                    line.append(f"{key}={_fmt(value)}")
                shown.add(key)
            swept = {k for k in self._swept.get(experiment, ()) if "." in k}  # e.g. optim.lr of a tuning grid
            now = _flatten(OmegaConf.to_container(cfg, resolve=True))
            before = _flatten(OmegaConf.to_container(base, resolve=True))
            line += [
                f"{k}={_fmt(v)}"
                for k, v in now.items()
                if k not in shown and k not in user_keys and (k in swept or before.get(k, object()) != v)
            ]
            line += fixed + [f"seed={cfg.seed}"]

            updates = total_updates(cfg)
            passes = 2 if get_optim_info(optim).two_pass else 1
            samples = updates * cfg.task.batch_size  # a batch schedule keeps the samples (fewer updates)
            hours = samples * passes * SECONDS_PER_SAMPLE_PASS.get(task, 0.003) / 3600
            pending = found is not None and found.lr is None
            run_dir = None if pending else resolve_run_dir(cfg)
            init_raw = OmegaConf.to_container(cfg.task, resolve=False).get("init_from")
            lr = None if pending else float(cfg.optim.lr)
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
                    status=(
                        _record_status(run_dir, bool(cfg.get("rerun_on_new_commit")))
                        if run_dir is not None
                        else None
                    ),
                    depends_on_mnli=isinstance(init_raw, str) and "model.mnli_checkpoint" in init_raw,
                    lr=lr,
                    lr_source=lr_source,
                    tuned_by=tuning,
                    tuned_lr_file=found.path if found is not None else None,
                    lr_problem=found.problem if found is not None else None,
                    experiment_name=str(cfg.experiment_name),
                    results_dir=Path(str(cfg.results_dir)).expanduser().absolute(),
                    model_name=str(cfg.model.name),
                    model_params=_model_params(cfg),
                    save_model=str(cfg.trainer.save_model),
                    mixed_precision=str(cfg.trainer.mixed_precision),
                    tuning_recipe=tl.recipe(cfg) if tl.is_tuning_experiment(experiment) else None,
                    tuned_at={
                        k: OmegaConf.select(cfg, f"optim.{k}") for k in ("beta1", "rho", "weight_decay")
                    },
                )
            )
        return runs


@functools.cache
def _yaml_select(path: Path, key: str) -> Any:
    """A value of a YAML file as written (``"???"`` for a missing one), None if absent."""
    if not path.exists():
        return None
    node: Any = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _lr_source(cfg: DictConfig, experiment: str, job: Sequence[str], user_keys: set[str]) -> str:
    """Where ``optim.lr`` of a composed job comes from (see :attr:`PlannedRun.lr_source`)."""
    if tl.tuned_by(cfg):
        return "tuned"
    if "optim.lr" in user_keys:
        return "override"
    if any(_key(o) == "optim.lr" for o in job):
        return "grid"
    raw = OmegaConf.to_container(cfg.optim, resolve=False).get("lr")
    if isinstance(raw, str) and "${" in raw:
        return "recipe"
    if _yaml_select(CONF_DIR / "optim" / f"{cfg.optim.name}.yaml", "lr") not in (None, "???"):
        return "recipe"  # the optimizer's own YAML gives it
    if _yaml_select(CONF_DIR / "experiment" / f"{experiment}.yaml", "optim.lr") is not None:
        return "experiment"
    return "placeholder"


def _model_params(cfg: DictConfig) -> float | None:
    name = str(cfg.model.name)
    if name in MODEL_PARAMS:
        return MODEL_PARAMS[name]
    m = cfg.model
    if m.get("source") == "tiny":  # embeddings + layers (attention 4h^2, MLP 2 h i), biases ignored
        h, i, n, v = m.hidden_size, m.intermediate_size, m.num_layers, m.vocab_size
        return float(v * h + n * (4 * h * h + 2 * h * i))
    return None


#: the plan's status of a finished record that ``rerun_on_new_commit=true`` will train again
STALE_COMMIT = "other-commit"


def _record_status(run_dir: Path, rerun_on_new_commit: bool = False) -> str | None:
    """The record's status; :data:`STALE_COMMIT` for a finished one of another git commit when
    ``rerun_on_new_commit`` (``run()`` trains it again, so the plan must not count it as done)."""
    path = run_dir / "record.json"
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
        status = record.get("status")
    except (OSError, ValueError, AttributeError):
        return "unreadable"
    if rerun_on_new_commit and status in ("completed", "diverged"):
        from adasam_glue.records import record_commits

        commit = _current_commit()
        if commit is not None and any(c != commit for c in record_commits(record)[0]):
            return STALE_COMMIT
    return status


@functools.cache
def _current_commit() -> str | None:
    from adasam_glue.provenance import git_commit

    return git_commit()[0]


def _with_tasks(overrides: Sequence[str], tasks: Sequence[str]) -> list[str]:
    return [o for o in overrides if _key(o) != "task"] + [f"task={','.join(tasks)}"]


def build_blocks(
    experiments: Sequence[str], overrides: Sequence[str] = (), own_mnli: bool = False
) -> list[Block]:
    """The multirun invocations of reproduce-all, in launch order.

    The lr-tuning stages the chosen experiments depend on (``optim.lr: ${tuned_lr:<tuning>}``) come
    first, with the same overrides (so ``task=rte`` tunes RTE only), each followed by its selection.
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
            mnli_overrides = [o for o in overrides if _key(o) not in ("task", "seed", "method")]
            mnli = Block(MNLI_EXPERIMENT, mnli_overrides, planner.plan(MNLI_EXPERIMENT, mnli_overrides))
            if len(mnli.runs) != 1:
                raise ExperimentError(f"{MNLI_EXPERIMENT} must be a single run, got {len(mnli.runs)}")
            mnli_dir = mnli.runs[0].run_dir
            blocks.append(mnli)
        names = [n for n in experiments if not (n == MNLI_EXPERIMENT and own_mnli)]
        planned = {n: planner.plan(n, overrides) for n in names}
        tunings = [n for n in names if tl.is_tuning_experiment(n)]
        for n in names:
            for r in planned[n]:
                if r.tuned_by and r.tuned_by not in tunings:
                    tunings.append(check_experiments([r.tuned_by])[0])
        for name in tunings + [n for n in names if n not in tunings]:
            runs = planned[name] if name in planned else planner.plan(name, overrides)
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


def select_lr(experiment: str, overrides: Sequence[str] = (), write: bool = True) -> tuple[list[str], bool]:
    """Plan the tuning experiment's runs (as its multirun would) and write its selections.

    Returns the lines to print and whether every (task, optimizer) got a selection."""
    from hydra import initialize_config_dir

    if not tl.is_tuning_experiment(experiment):
        raise ExperimentError(
            f"{experiment!r} is not an lr-tuning experiment (conf/experiment/*{tl.TUNING_SUFFIX}.yaml): "
            f"tuning experiments are {', '.join(n for n in available_experiments() if tl.is_tuning_experiment(n))}"
        )
    with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name="select_lr"):
        runs = Planner().plan(experiment, list(overrides))
    return _select_block(Block(experiment, list(overrides), runs), write=write)


def _select_block(block: Block, write: bool = True) -> tuple[list[str], bool]:
    lines: list[str] = []
    ok = True
    by_name: dict[tuple[str, Path | None], list[PlannedRun]] = {}
    for r in block.runs:
        by_name.setdefault((r.experiment_name, r.results_dir), []).append(r)
    for (name, results_dir), runs in by_name.items():
        missing = [r for r in runs if r.lr is None or r.run_dir is None or r.tuning_recipe is None]
        if missing:
            raise ExperimentError(f"{block.experiment}: {len(missing)} tuning runs have no lr of their own")
        tuning_runs = [
            tl.TuningRun(r.task, r.optim, float(r.lr), r.seed, r.run_dir, r.tuning_recipe, r.tuned_at or {})
            for r in runs
        ]
        out = tl.select(tuning_runs, name, results_dir or "results", write=write)
        ok = ok and all(line.startswith("selected") for line in out)
        lines += out
    return lines, ok


# ---------------------------------------------------------------------------------------------- launch
def launch(blocks: Sequence[Block], launcher: str, own_mnli: bool = False) -> int:
    """Run the blocks one after another (each a blocking Hydra multirun); return the exit code.

    A tuning block is followed by its selection (written even when some of its runs failed: the
    (task, optimizer) pairs whose grid finished are selected); a block whose runs need a tuned lr that
    was not written is not launched."""
    env = dict(os.environ)  # the SLURM signal is fixed by conf/hydra/launcher/slurm.yaml, not by the env
    failed = []
    for i, b in enumerate(blocks):
        missing = sorted(
            {str(r.tuned_lr_file) for r in b.runs if r.tuned_by and not Path(r.tuned_lr_file).exists()}
        )
        if missing:
            stages = ", ".join(sorted({r.tuned_by for r in b.runs if r.tuned_by}))
            print(
                f"error: not launching experiment={b.experiment}: no tuned lr in {len(missing)} file(s) "
                f"({missing[0]}{', ...' if len(missing) > 1 else ''}); finish the tuning stage ({stages}) first",
                file=sys.stderr,
                flush=True,
            )
            failed.append(b.experiment)
            continue
        if b.runs and not any(r.to_do for r in b.runs):
            print(f"skip: experiment={b.experiment} ({len(b.runs)} runs already done)", flush=True)
            rc = 0
        else:
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
        if b.tuning:
            lines, ok = _select_block(b)
            for line in lines:
                print(("" if line.startswith("selected") else "error: ") + line, flush=True)
            if not ok and b.experiment not in failed:
                failed.append(f"{b.experiment} (selection)")
    if failed:
        print(
            f"error: multiruns failed: {', '.join(failed)} (rerun: completed runs are skipped, "
            "preempted ones resume)",
            file=sys.stderr,
        )
        return 1
    return 0


def print_sbatch(blocks: Sequence[Block], launcher: str, file: Any = None) -> None:
    """``reproduce-all --print-sbatch``: per multirun, in launch order, the sbatch script(s) it would hand
    SLURM (:func:`adasam_glue.experiments.launchers.sbatch_scripts`), headed by the multirun's command; nothing is
    submitted. A multirun whose runs are all done is not launched, so it prints no script."""
    file = file or sys.stdout
    for i, b in enumerate(blocks, 1):
        head = f"# multirun {i} of {len(blocks)}: {' '.join(b.command(launcher, python='python'))}"
        if b.runs and not any(r.to_do for r in b.runs):
            print(
                f"{head}\n# skip: its {len(b.runs)} runs are already done; nothing is submitted\n", file=file
            )
            continue
        tuned_by = sorted({r.tuned_by for r in b.runs if r.pending_lr})
        scripts = sbatch_scripts(
            launcher,
            [f"experiment={b.experiment}", *(o for o in b.overrides if not _is_sweep(o))],
            len(b.runs),
        )
        for k, script in enumerate(scripts, 1):
            part = f" (sbatch {k} of {len(scripts)})" if len(scripts) > 1 else ""
            print(f"{head}{part}\n# {len(b.runs)} runs", file=file, end="")
            if tuned_by:
                print(
                    f"; submitted once select-lr {', '.join(tuned_by)} has written the tuned lr",
                    file=file,
                    end="",
                )
            print(f"\n{script.rstrip()}\n", file=file)
        if b.tuning:
            print(
                f"# then, on the submitting machine: {' '.join(b.select_command(python='python'))}\n",
                file=file,
            )


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
        "--print-sbatch",
        action="store_true",
        help="with --launcher slurm: print the sbatch script(s) each multirun would submit, submit nothing",
    )
    r.add_argument(
        "--only",
        default=None,
        help=f"comma-separated experiments (default: {','.join(PAPER_EXPERIMENTS)}; "
        "also variants, schedules, mnli_init, smoke, cpu_scale, cpu_scale_table2, the *_tune stages). "
        "The lr-tuning stages the chosen experiments need are added in front of them",
    )
    r.add_argument(
        "--own-mnli",
        action="store_true",
        help="train this harness's MNLI run first (experiment mnli_init) and start RTE/MRPC/STS-B from it",
    )
    r.add_argument("overrides", nargs="*", help="Hydra overrides for every run (e.g. seed=1 results_dir=...)")
    sel = sub.add_parser(
        "select-lr",
        help="write the tuned_lr.json files of an lr-tuning experiment from its finished runs' records",
    )
    sel.add_argument(
        "experiment", help="the tuning experiment (e.g. table2_tune, table4_tune, cpu_scale_tune)"
    )
    sel.add_argument("--dry-run", action="store_true", help="print what would be selected, write nothing")
    sel.add_argument("overrides", nargs="*", help="the Hydra overrides its multirun was given")
    sub.add_parser("list", help="list the experiments")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "list":
        print("\n".join(available_experiments()))
        return 0
    if args.command == "select-lr":
        try:
            check_override_keys(args.overrides)
            check_experiments([args.experiment])
            lines, ok = select_lr(args.experiment, args.overrides, write=not args.dry_run)
        except (ExperimentError, ConfigError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        for line in lines:
            if line.startswith("selected"):
                print(line)
            else:
                print(f"error: {line}", file=sys.stderr)
        return 0 if ok else 1
    try:
        check_override_keys(args.overrides)
        names = check_experiments(args.only.split(",")) if args.only is not None else list(PAPER_EXPERIMENTS)
        if not names:
            raise ExperimentError(
                f"--only is empty: valid experiments are {', '.join(available_experiments())}"
            )
        warnings = check_launcher(args.launcher, dry_run=args.dry_run or args.print_sbatch)
        if args.print_sbatch and args.launcher not in SLURM_LAUNCHERS:
            raise ExperimentError(
                f"--print-sbatch prints what a SLURM launcher submits, not --launcher {args.launcher}: "
                f"use --launcher {' or '.join(SLURM_LAUNCHERS)}"
            )
        blocks = build_blocks(names, args.overrides, own_mnli=args.own_mnli)
        if args.print_sbatch:
            for w in warnings:
                print(w, file=sys.stderr)
            print_sbatch(blocks, args.launcher)
            return 0
    except (ExperimentError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # a bad override: Hydra's or OmegaConf's own message, without the traceback
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException

        if not isinstance(e, (HydraException, OmegaConfBaseException)):
            raise
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        for w in warnings:
            print(w, file=sys.stderr)
        print_plan(blocks, args.launcher)
        return 0
    print("\n".join(summary_lines(blocks)), flush=True)
    return launch(blocks, args.launcher, own_mnli=args.own_mnli)


if __name__ == "__main__":
    sys.exit(main())
