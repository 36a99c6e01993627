"""Optimizers: the paper's four (SGD, AMSGrad, SAM, AdaSAM) and the SAM variants, one protocol.

``build_optimizer(name, params, **yaml_keys)`` builds any record of :data:`OPTIMIZERS` (one record per
optimizer, holding its facts: :class:`OptimInfo`); a perturbation record takes ``base=`` (``sgd``,
``amsgrad``, ``adamw``: :data:`BASES`). Two-pass records (``OptimInfo.two_pass``) are :class:`SAMBase`
instances driven by the trainer as::

    opt.prepare_ascent(); ascent forward/backward; opt.first_step()
    descent forward (per-sample losses); opt.descent_loss(ascent, descent).backward(); opt.second_step()

See :mod:`adasam_glue.optim.perturbation` for the protocol, spec ``docs/algorithms.md`` §1-2 for the rules.
Keys not given to ``build_optimizer`` take the values of ``conf/optim/<name>.yaml`` (the one place they
live; the CLI and ``SAMTrainer`` build from the same); the classes (``AdaSAM(params)``) keep torch-like
signature defaults (weight decay 0: :mod:`adasam_glue.optim.descent`).
"""

from typing import Any

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

#: public name -> the submodule that defines it. Imported on first use (PEP 562), so that the torch-free
#: range table (``adasam_glue.optim.validation``, read when a config is composed) imports no torch.
_HOME = {
    **dict.fromkeys(("BASES", "BASE_CHOICES", "AMSGradPaper", "BaseInfo"), "descent"),
    **dict.fromkeys(("LightSAM", "LightSAMAdaGrad", "LightSAMAdaGradNorm", "LightSAMAdam"), "lightsam"),
    **dict.fromkeys(
        (
            "OPTIMIZERS",
            "OptimInfo",
            "baseline_of",
            "build_optimizer",
            "get_optim_info",
            "optimizer_values",
            "register",
        ),
        "registry",
    ),  # fmt: skip
    "SAMBase": "perturbation",
    **dict.fromkeys(("ASAM", "ESAM", "GSAM", "RSAM", "SAM", "USAM", "AdaSAM", "VaSSO"), "variants"),
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    globals()[name] = value
    return value
