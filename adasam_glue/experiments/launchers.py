"""Which experiments and launchers exist, what a launcher needs on this machine, and the SLURM job hook.

``reproduce-all`` (:mod:`adasam_glue.experiments.plan`) checks its ``--only`` and ``--launcher`` here before it
plans anything; :class:`SlurmDistributedEnv` is the Hydra callback ``conf/hydra/launcher/slurm.yaml``
names, which turns submitit's one-task-per-GPU jobs into a torch.distributed environment.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

from adasam_glue.config import CONF_DIR

__all__ = [
    "SLURM_LAUNCHERS",
    "ExperimentError",
    "SlurmDistributedEnv",
    "available_experiments",
    "available_launchers",
    "check_experiments",
    "check_launcher",
    "sbatch_scripts",
    "slurm_commands_problem",
]

_LAUNCHERS_NEEDING_SUBMITIT = ("slurm", "submitit_slurm", "submitit_local", "submitit_local_test")
#: Launchers that submit to SLURM: they need its ``sbatch`` (submit) and ``srun`` (submitit checks it).
SLURM_LAUNCHERS = ("slurm", "submitit_slurm")
_SLURM_COMMANDS = ("sbatch", "srun")
#: ``hydra.job.name`` of ``python -m adasam_glue`` (Hydra names the job after the calling module): the
#: submitit launcher's ``name`` (sbatch ``--job-name``) interpolates it
MAIN_JOB_NAME = "__main__"


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


def check_launcher(launcher: str, dry_run: bool = False) -> list[str]:
    """Unknown launcher -> the valid ones; a submitit launcher without the plugin -> how to install it;
    a SLURM launcher without ``sbatch``/``srun`` on PATH -> one line saying so (an error, or a warning
    returned for a dry run, which only prints the plan)."""
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
    problem = slurm_commands_problem(launcher)
    if problem is None:
        return []
    if dry_run:
        return [f"warning: {problem} (the plan is printed anyway)"]
    raise ExperimentError(problem)


def slurm_commands_problem(launcher: str) -> str | None:
    """Why ``launcher`` cannot submit from this machine (no ``sbatch``/``srun`` on PATH), or None."""
    if launcher not in SLURM_LAUNCHERS:
        return None
    missing = [c for c in _SLURM_COMMANDS if shutil.which(c) is None]
    if not missing:
        return None
    return (
        f"--launcher {launcher} submits SLURM jobs, but {' and '.join(missing)} "
        f"{'is' if len(missing) == 1 else 'are'} not on PATH: run it on a SLURM login node "
        "(or load the slurm module), or use --launcher local / submitit_local on this machine"
    )


def sbatch_scripts(launcher: str, overrides: Sequence[str], num_jobs: int) -> list[str]:
    """The sbatch script(s) ``python -m adasam_glue -m hydra/launcher=<launcher> <overrides>`` submits for a
    sweep of ``num_jobs`` jobs, without submitting or writing anything (``reproduce-all --print-sbatch``).

    The launcher's parameters are composed as the multirun composes them (the same config, sweep
    values aside: they do not reach the launcher), converted as hydra-submitit-launcher's
    ``SlurmLauncher.launch`` converts them, and rendered by submitit's own ``SlurmExecutor``: one array
    job per batch of Hydra's sweeper (one batch unless ``hydra.sweeper.max_batch_size`` is set), a single
    job without ``--array``. Paths under ``hydra.sweep.dir`` carry the time of printing, as a launch carries
    its own. ``tests/test_slurm_sbatch.py`` checks the text equals what a real launch hands ``sbatch``."""
    from hydra import compose, initialize_config_dir
    from hydra.core.utils import setup_globals
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from submitit.slurm.slurm import SlurmExecutor

    if launcher not in SLURM_LAUNCHERS:
        raise ExperimentError(
            f"--print-sbatch needs a SLURM launcher, got {launcher!r}: use --launcher "
            + " or ".join(SLURM_LAUNCHERS)
        )
    setup_globals()  # the ${now:...} of hydra.sweep.dir, as a Hydra app registers it
    with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name=MAIN_JOB_NAME):
        cfg = compose(
            "config", overrides=[f"hydra/launcher={launcher}", *overrides], return_hydra_config=True
        )
        params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
        batch = OmegaConf.select(cfg, "hydra.sweeper.max_batch_size") or num_jobs
    params.pop("_target_", None)

    class RenderOnly(SlurmExecutor):
        """submitit's SlurmExecutor, built where ``srun`` may be missing: it renders text, submits nothing."""

        @classmethod
        def affinity(cls) -> int:
            return 1

    # What SlurmLauncher.launch hands submitit (its folder and timeout budget to the executor; the
    # shared keys of BaseQueueConf as AutoExecutor's generic ones; the rest as slurm_<key>), then what
    # AutoExecutor.update_parameters makes of that (None means unset; generic keys renamed for SLURM).
    executor = RenderOnly(params.pop("submitit_folder"), max_num_timeout=params.pop("max_num_timeout"))
    params = {k: v for k, v in params.items() if v is not None}
    generic = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(
        **executor._convert_parameters({k: v for k, v in params.items() if k in generic}),
        **{k: v for k, v in params.items() if k not in generic},
    )
    scripts = []
    for start in range(0, num_jobs, batch):
        n = min(batch, num_jobs - start)
        ex = executor
        if n > 1:  # SlurmExecutor._internal_process_submissions: an array job, on a copy of the executor
            ex = RenderOnly(executor.folder, executor.max_num_timeout)
            ex.update_parameters(**executor.parameters)
            ex.parameters["map_count"] = n
        scripts.append(ex._make_submission_file_text(ex._submitit_command_str, uid=""))
    return scripts


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


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

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Before submitting: a SLURM launcher on a machine without ``sbatch``/``srun`` stops here with one
        line (instead of submitit's traceback)."""
        target = str(OmegaConf.select(config, "hydra.launcher._target_") or "")
        if target.endswith("SlurmLauncher"):
            problem = slurm_commands_problem("slurm")
            if problem is not None:
                print(
                    f"error: {problem.replace('--launcher slurm', 'hydra/launcher=slurm')}", file=sys.stderr
                )
                raise SystemExit(2)

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
