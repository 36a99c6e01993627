"""The experiment layer's OmegaConf resolvers: ``${sqrt_scale:...}``, ``${task_recipe:...}``, ``${tuned_lr:...}``.

They appear only in ``conf/experiment/*.yaml`` (the speedup study's lr scaling, docs/algorithms.md §4.6;
the lr-tuning stage's selected lr, docs/experiments.md and ``adasam_glue.experiments.tuned_lr``), so they belong to the experiment
layer, not to :mod:`adasam_glue.config`: the config schema imported ``tuned_lr`` to register them, and
``tuned_lr`` reads the run identity, which reads the model and the registry, which read ``config``
(issue 23: ``config ⟲ modeling ⟲ identity ⟲ tuned_lr``; ``tests/test_import_graph.py`` keeps the package
free of import cycles).

Importing this module registers all three. Every entry point that composes configs imports it: the CLI
(``adasam_glue.__main__``), :mod:`adasam_glue.experiments.plan` (plans, ``reproduce-all``, ``select-lr``),
``scripts/cpu_scale.py``, ``scripts/demo.py`` and the tests' ``conftest.py``; a Hydra multirun job also
gets ``${tuned_lr:...}`` from the tables' ``hydra.callbacks`` (:class:`adasam_glue.experiments.tuned_lr.RegisterTunedLr`).
Code of its own that composes an experiment config (``hydra.compose``) imports it first.
"""

from __future__ import annotations

import math
from typing import Any

from omegaconf import OmegaConf

import adasam_glue.experiments.tuned_lr  # noqa: F401  registers ${tuned_lr:<tuning experiment>} (its own module)
from adasam_glue.config import CONF_DIR, ConfigError

__all__ = ["sqrt_scale", "task_recipe"]


def sqrt_scale(lr: float, batch: int, base: int) -> float:
    """``${sqrt_scale:lr,batch,base}`` = lr * sqrt(batch / base): the speedup study's lr scaling."""
    return float(lr) * math.sqrt(float(batch) / float(base))


def task_recipe(task: str, key: str) -> Any:
    """``${task_recipe:rte,batch_size}``: a value of ``conf/task/<task>.yaml`` as written (the recipe),
    whatever overrides the composed config carries (e.g. a swept ``task.batch_size``)."""
    path = CONF_DIR / "task" / f"{task}.yaml"
    if not path.exists():
        raise ConfigError(f"task_recipe: no recipe file {path} for task {task!r}")
    return OmegaConf.select(OmegaConf.load(path), str(key), throw_on_missing=True)


OmegaConf.register_new_resolver("sqrt_scale", sqrt_scale, replace=True)
OmegaConf.register_new_resolver("task_recipe", task_recipe, replace=True)
