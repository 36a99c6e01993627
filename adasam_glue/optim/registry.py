"""The optimizer registry: one frozen record per ``conf/optim/<name>.yaml`` (timm ``OptimInfo`` style).

The trainer branches only on ``OptimInfo.two_pass`` (and ``needs_per_sample_loss`` for ESAM's data
selection). Records map the YAML keys onto the class arguments; variants of a class (``form``) are
settings, not new records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch.optim import Optimizer

from .base import make_amsgrad, make_sgd
from .lightsam import LIGHTSAM_FORMS, LightSAM, lightsam
from .validation import check_choice, validate
from .variants import ADASAM_FORMS, ASAM, ESAM, GSAM, RSAM, SAM, USAM, AdaSAM, VaSSO

__all__ = ["OPTIMIZERS", "OptimInfo", "build_optimizer", "get_optim_info"]


@dataclass(frozen=True)
class OptimInfo:
    """What the trainer and the tests need to know about one optimizer.

    Attributes:
        name: registry / ``conf/optim`` name.
        cls: the class built (torch's for ``sgd``/``amsgrad``; the family base class for LightSAM).
        factory: ``factory(params, **hparams) -> Optimizer`` taking the YAML keys.
        two_pass: needs the ascent + descent protocol (``prepare_ascent`` ... ``second_step``).
        hparams: accepted YAML keys.
        defaults: value of every key when not given (``lr`` included).
        choices: the valid values of string keys (``form``).
        paper: citation (arXiv id) of the update rule.
        needs_per_sample_loss: ``descent_loss`` uses the per-sample losses (ESAM's data selection).
    """

    name: str
    cls: type[Optimizer]
    factory: Callable[..., Optimizer]
    two_pass: bool
    hparams: tuple[str, ...]
    defaults: Mapping[str, Any]
    paper: str
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    needs_per_sample_loss: bool = False

    def __post_init__(self) -> None:
        missing = set(self.hparams) ^ set(self.defaults)
        if missing:
            raise ValueError(f"record {self.name!r}: hparams and defaults differ on {sorted(missing)}")
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))
        object.__setattr__(self, "choices", MappingProxyType(dict(self.choices)))

    def forms(self) -> tuple[dict[str, Any], ...]:
        """One ``{key: value}`` per combination of choices (``({},)`` when none): the variants to test."""
        combos: list[dict[str, Any]] = [{}]
        for key, values in self.choices.items():
            combos = [{**c, key: v} for c in combos for v in values]
        return tuple(combos)


# fairseq RoBERTa GLUE settings (spec §4); lr is the task's (conf/task/*.yaml), these are fallbacks
_ADAPTIVE = dict(lr=1e-5, beta1=0.9, beta2=0.98, eps=1e-6, weight_decay=0.1)
_SGD = dict(lr=1e-3, beta1=0.9, weight_decay=0.1)


def _record(name, cls, factory, two_pass, defaults, paper, **kw) -> OptimInfo:
    return OptimInfo(name, cls, factory, two_pass, tuple(defaults), defaults, paper, **kw)


_RECORDS = [
    _record(
        "sgd", torch.optim.SGD, make_sgd, False, {**_SGD, "nesterov": False}, "torch.optim.SGD (spec §1)"
    ),
    _record(
        "amsgrad",
        torch.optim.AdamW,
        make_amsgrad,
        False,
        _ADAPTIVE,
        "Reddi et al. 2018 (arXiv 1904.09237); torch.optim.AdamW(amsgrad=True) (spec §1)",
    ),
    _record(
        "sam", SAM, SAM, True, {**_SGD, "nesterov": False, "rho": 0.01}, "Foret et al. 2021, arXiv 2010.01412"
    ),
    _record(
        "adasam",
        AdaSAM,
        AdaSAM,
        True,
        {**_ADAPTIVE, "rho": 0.01, "form": "library"},
        "Sun et al. 2023, arXiv 2303.00565 (Algorithm 1)",
        choices={"form": ADASAM_FORMS},
    ),
    _record(
        "asam", ASAM, ASAM, True, {**_ADAPTIVE, "rho": 0.5, "eta": 0.01}, "Kwon et al. 2021, arXiv 2102.11600"
    ),
    _record(
        "usam",
        USAM,
        USAM,
        True,
        {**_ADAPTIVE, "rho": 0.01},
        "Andriushchenko & Flammarion 2022, arXiv 2206.06232",
    ),
    _record(
        "gsam",
        GSAM,
        GSAM,
        True,
        {**_ADAPTIVE, "rho": 0.01, "rho_min": 0.001, "alpha": 0.1},
        "Zhuang et al. 2022, arXiv 2203.08065",
    ),
    _record(
        "vasso",
        VaSSO,
        VaSSO,
        True,
        {**_ADAPTIVE, "rho": 0.01, "theta": 0.9},
        "Li & Giannakis 2023, arXiv 2309.15639",
    ),
    _record(
        "rsam",
        RSAM,
        RSAM,
        True,
        {**_ADAPTIVE, "rho": 0.01, "sigma": 0.001},
        "Liu et al., NeurIPS 2022 (Random SAM)",
    ),
    _record(
        "esam",
        ESAM,
        ESAM,
        True,
        {**_ADAPTIVE, "rho": 0.01, "beta": 0.6, "gamma": 0.5},
        "Du et al. 2022, arXiv 2110.03141",
        needs_per_sample_loss=True,
    ),
    _record(
        "lightsam",
        LightSAM,
        lightsam,
        True,
        {**_ADAPTIVE, "weight_decay": 0.0, "rho": 0.01, "form": "adam"},
        "Cheng et al. 2025, arXiv 2505.24399",
        choices={"form": LIGHTSAM_FORMS},
    ),
]

#: name -> record, in the order above
OPTIMIZERS: dict[str, OptimInfo] = {r.name: r for r in _RECORDS}


def get_optim_info(name: str) -> OptimInfo:
    """The record of ``name``; ``ValueError`` listing the valid names otherwise."""
    try:
        return OPTIMIZERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown optimizer {name!r}; valid names: {', '.join(OPTIMIZERS)}") from None


def build_optimizer(name: str, params: Iterable[Any], **hparams: Any) -> Optimizer:
    """Build optimizer ``name`` on ``params`` (tensors or param-group dicts) from YAML keys.

    Missing keys (and keys given as ``None``) take the record's defaults. Raises ``ValueError`` for an
    unknown name, a key the optimizer does not take (naming its valid keys) or a value out of range
    (``rho must be >= 0, got -1``).
    """
    info = get_optim_info(name)
    unknown = sorted(k for k in hparams if k not in info.hparams)
    if unknown:
        raise ValueError(
            f"unknown hyperparameter{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} for "
            f"optimizer {name!r}; valid keys: {', '.join(sorted(info.hparams))}"
        )
    values = {**info.defaults, **{k: v for k, v in hparams.items() if v is not None}}
    try:
        for key, choices in info.choices.items():
            check_choice(key, values[key], choices)
        validate(**values)
        return info.factory(params, **values)
    except ValueError as e:
        raise ValueError(f"optimizer {name!r}: {e}") from None
