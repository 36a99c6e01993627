"""Optimizers: the paper's four (SGD, AMSGrad, SAM, AdaSAM) and the SAM variants, one protocol.

``build_optimizer(name, params, **yaml_keys)`` builds any record of :data:`OPTIMIZERS`; two-pass
records (``OptimInfo.two_pass``) are :class:`SAMBase` instances driven by the trainer as::

    opt.prepare_ascent(); ascent forward/backward; opt.first_step()
    descent forward (per-sample losses); opt.descent_loss(ascent, descent).backward(); opt.second_step()

See :mod:`adasam_glue.optim.sam` for the protocol, spec ``docs/algorithms.md`` §1-2 for the rules.
"""

from .base import AMSGradPaper
from .lightsam import LightSAM, LightSAMAdaGrad, LightSAMAdaGradNorm, LightSAMAdam
from .registry import OPTIMIZERS, OptimInfo, build_optimizer, get_optim_info
from .sam import SAMBase
from .variants import ASAM, ESAM, GSAM, RSAM, SAM, USAM, AdaSAM, VaSSO

__all__ = [
    "ASAM",
    "ESAM",
    "GSAM",
    "OPTIMIZERS",
    "RSAM",
    "SAM",
    "USAM",
    "AMSGradPaper",
    "AdaSAM",
    "LightSAM",
    "LightSAMAdaGrad",
    "LightSAMAdaGradNorm",
    "LightSAMAdam",
    "OptimInfo",
    "SAMBase",
    "VaSSO",
    "build_optimizer",
    "get_optim_info",
]
