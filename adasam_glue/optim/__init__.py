"""Optimizers: the paper's four (SGD, AMSGrad, SAM, AdaSAM) and the SAM variants, one protocol.

``build_optimizer(name, params, **yaml_keys)`` builds any record of :data:`OPTIMIZERS` (one record per
optimizer, holding its facts: :class:`OptimInfo`); a perturbation record takes ``base=`` (``sgd``,
``amsgrad``, ``adamw``: :data:`BASES`). Two-pass records (``OptimInfo.two_pass``) are :class:`SAMBase`
instances driven by the trainer as::

    opt.prepare_ascent(); ascent forward/backward; opt.first_step()
    descent forward (per-sample losses); opt.descent_loss(ascent, descent).backward(); opt.second_step()

See :mod:`adasam_glue.optim.sam` for the protocol, spec ``docs/algorithms.md`` §1-2 for the rules.
Keys not given to ``build_optimizer`` take the values of ``conf/optim/<name>.yaml`` (the one place they
live; the CLI and ``SAMTrainer`` build from the same); the classes (``AdaSAM(params)``) keep torch-like
signature defaults (weight decay 0: :mod:`adasam_glue.optim.base`).
"""

from .base import BASE_CHOICES, BASES, AMSGradPaper, BaseInfo
from .lightsam import LightSAM, LightSAMAdaGrad, LightSAMAdaGradNorm, LightSAMAdam
from .registry import (
    OPTIMIZERS,
    OptimInfo,
    baseline_of,
    build_optimizer,
    get_optim_info,
    optimizer_values,
    register,
)
from .sam import SAMBase
from .variants import ASAM, ESAM, GSAM, RSAM, SAM, USAM, AdaSAM, VaSSO

__all__ = [
    "ASAM",
    "BASES",
    "BASE_CHOICES",
    "ESAM",
    "GSAM",
    "OPTIMIZERS",
    "RSAM",
    "SAM",
    "USAM",
    "AMSGradPaper",
    "AdaSAM",
    "BaseInfo",
    "LightSAM",
    "LightSAMAdaGrad",
    "LightSAMAdaGradNorm",
    "LightSAMAdam",
    "OptimInfo",
    "SAMBase",
    "VaSSO",
    "baseline_of",
    "build_optimizer",
    "get_optim_info",
    "optimizer_values",
    "register",
]
