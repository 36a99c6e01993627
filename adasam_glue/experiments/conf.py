"""``conf/experiment/*.yaml`` and ``conf/method/*.yaml`` read as data: an experiment's sweep lists and the
rho grid its methods span.

The paper's rho grids (Tables 1/3: AdaSAM over 0.01, 0.005, 0.001; Tables 2/4: SAM over 0.01, 0.005;
docs/algorithms.md §4) are written once, as the experiment's swept ``method`` grid points
(``conf/method/adasam_rho0.01.yaml`` = ``optim=adasam optim.rho=0.01``). The report's tables, the
sharpness measure's default radii and the CPU-scale driver read them from there.
"""

from __future__ import annotations

import functools
from pathlib import Path

from omegaconf import OmegaConf

from adasam_glue.config import CONF_DIR, ConfigError

__all__ = ["experiment_sweep", "method_point", "rho_grid"]


def _load(path: Path, what: str):
    if not path.exists():
        choices = ", ".join(sorted(p.stem for p in path.parent.glob("*.yaml")))
        raise ConfigError(f"{path} does not exist: no {what} {path.stem!r} (valid: {choices})")
    return OmegaConf.load(path)


@functools.cache
def experiment_sweep(experiment: str) -> dict[str, tuple[str, ...]]:
    """The experiment's ``hydra.sweeper.params`` as tuples (``{"task": ("rte", ...), "seed": ("1", ...)}``)."""
    cfg = _load(CONF_DIR / "experiment" / f"{experiment}.yaml", "experiment")
    params = OmegaConf.select(cfg, "hydra.sweeper.params") or {}
    return {k: tuple(v.strip() for v in str(vals).split(",")) for k, vals in params.items()}


@functools.cache
def method_point(method: str) -> tuple[str, float | None]:
    """``(optimizer, rho)`` of the grid point ``conf/method/<method>.yaml`` (rho ``None``: not set there)."""
    path = CONF_DIR / "method" / f"{method}.yaml"
    cfg = _load(path, "method")
    optim = None
    for entry in cfg.get("defaults", []):
        if isinstance(entry, str):
            continue
        for key, value in entry.items():
            if key.split()[-1].lstrip("/") == "optim":
                optim = str(value)
    if optim is None:
        raise ConfigError(
            f"{path}: its defaults list sets no optimizer (expected '- override /optim: <name>')"
        )
    rho = OmegaConf.select(cfg, "optim.rho")
    return optim, None if rho is None else float(rho)


def rho_grid(experiment: str, optimizer: str) -> tuple[float, ...]:
    """The rhos ``experiment`` sweeps for ``optimizer``, largest first (``table1``, ``adasam`` ->
    ``(0.01, 0.005, 0.001)``); empty when it sweeps none."""
    points = (method_point(m) for m in experiment_sweep(experiment).get("method", ()))
    return tuple(sorted({rho for name, rho in points if name == optimizer and rho is not None}, reverse=True))
