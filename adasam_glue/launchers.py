"""Which experiments and launchers exist, what a launcher needs on this machine, and the SLURM job hook.

``reproduce-all`` (:mod:`adasam_glue.experiments`) checks its ``--only`` and ``--launcher`` here before it
plans anything; :class:`SlurmDistributedEnv` is the Hydra callback ``conf/hydra/launcher/slurm.yaml``
names, which turns submitit's one-task-per-GPU jobs into a torch.distributed environment.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Iterable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from adasam_glue.config import CONF_DIR

__all__ = [
    "ExperimentError",
    "SlurmDistributedEnv",
    "available_experiments",
    "available_launchers",
    "check_experiments",
    "check_launcher",
    "slurm_commands_problem",
]

_LAUNCHERS_NEEDING_SUBMITIT = ("slurm", "submitit_slurm", "submitit_local", "submitit_local_test")
#: Launchers that submit to SLURM: they need its ``sbatch`` (submit) and ``srun`` (submitit checks it).
_LAUNCHERS_NEEDING_SLURM = ("slurm", "submitit_slurm")
_SLURM_COMMANDS = ("sbatch", "srun")


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
    if launcher not in _LAUNCHERS_NEEDING_SLURM:
        return None
    missing = [c for c in _SLURM_COMMANDS if shutil.which(c) is None]
    if not missing:
        return None
    return (
        f"--launcher {launcher} submits SLURM jobs, but {' and '.join(missing)} "
        f"{'is' if len(missing) == 1 else 'are'} not on PATH: run it on a SLURM login node "
        "(or load the slurm module), or use --launcher local / submitit_local on this machine"
    )


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
