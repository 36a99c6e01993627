"""The optimizer registry: one frozen record per ``conf/optim/<name>.yaml`` holding that optimizer's facts.

A record says what the optimizer is (class, factory, one or two passes, the perturbation's own keys,
its base, paper, equation and spec section), how the report draws it (display name, colour, line
style) and how its keys are checked (one range table, :data:`~adasam_glue.optim.validation.RULES`,
plus the record's own choices and ranges). Readers: :func:`build_optimizer`, the trainer
(``two_pass`` and ``needs_per_sample_loss`` only), ``config.validate_config`` (ranges),
``identity`` (the optimizer's name in the run identity), the report (palette, sharpness pairing) and the
registry-parametrised tests (``forms()``).

**Perturbation x base.** A perturbation record (ASAM ... ESAM) takes ``base`` (``optim.base``: ``sgd``,
``amsgrad`` or ``adamw``, :data:`~adasam_glue.optim.descent.BASES`), and then the keys of that base: its
accepted keys and their defaults are ``BASES[base]``'s plus the perturbation's own. The paper's four
are presets: ``sgd`` and ``amsgrad`` (no perturbation, base fixed), ``sam`` (SAM on SGD; ``base=adamw``
puts SAM's perturbation on AdamW, the usual transformers optimizer; on AMSGrad it is ``adasam``) and
``adasam`` (SAM on AMSGrad, base fixed; ``form=paper``: Algorithm 1's AMSGrad). ``sam``'s YAML names no
``base`` (its run identity is the one it always had); ``optim.base=adamw`` adds it. LightSAM replaces the
descent step itself (``own_descent``) and has no base.

**Values.** The values runs use live only in ``conf/optim/*.yaml``, and every builder reads them there:
the CLI (``python -m adasam_glue optim=<name>`` passes the composed keys), :func:`build_optimizer` and
``SAMTrainer`` (a key not given takes the YAML's value: :meth:`OptimInfo.defaults_for`). A YAML value
that needs the run to be known (``lr: ${task.lr}``, ``lr: ???``) is not a default: such a key, and a key
the YAML does not set (``nesterov``), takes the class's signature default (torch-like: lr 1e-3; see
:mod:`adasam_glue.optim.descent`). The classes themselves (``AdaSAM(params)``) keep torch-like signature
defaults (weight decay 0), so that a Python user of a class gets what ``torch.optim`` would give; the
registry repeats no value of either. A record without ``conf/optim/<name>.yaml`` (a variant under
development, a test's throwaway record) takes its signature defaults.

**A new variant** is one class (a :class:`~adasam_glue.optim.perturbation.SAMBase` subclass taking
``base=`` and ``**base_hparams``), one record (:func:`register`, or a line in ``_RECORDS``) and one
YAML; a key no optimizer had before needs its range, in ``RULES`` or the record's ``ranges``. The config
schema (``config.optim_schema``), the run-dir name and ``--help`` derive their keys from the YAML and
the records.
"""

from __future__ import annotations

import copy
import functools
import inspect
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue
from torch.optim import Optimizer

from .descent import BASE_CHOICES, BASES, make_amsgrad, make_sgd
from .lightsam import LIGHTSAM_FORMS, LightSAM, lightsam
from .validation import RULES, OneOf, RangeError, Rule
from .variants import ADASAM_FORMS, ASAM, ESAM, GSAM, RSAM, SAM, USAM, AdaSAM, VaSSO

__all__ = [
    "OPTIMIZERS",
    "OptimInfo",
    "baseline_of",
    "build_optimizer",
    "get_optim_info",
    "if_base_takes",
    "optimizer_values",
    "register",
]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class OptimInfo:
    """Everything the code and the report need to know about one optimizer.

    Attributes:
        name: registry / ``conf/optim`` name (``optim=<name>``).
        cls: the class built (torch's for ``sgd``/``amsgrad``; the family base class for LightSAM).
        factory: ``factory(params, **keys) -> Optimizer`` taking the YAML keys (``base`` included).
        two_pass: needs the ascent + descent protocol (``prepare_ascent`` ... ``second_step``).
        display: the name in reports and figures (``VaSSO``).
        color: its colour in every figure (hex).
        paper: citation (arXiv id) of the update rule.
        equation: the rule in one line (the perturbation ``e``, or the update of a one-pass optimizer).
        spec: section of ``docs/algorithms.md`` with the rule, its keys and ranges.
        keys: the optimizer's own keys beyond its base's (``("rho", "theta")``); LightSAM: all of them.
        base: the descent optimizer by default (a name of ``BASES``); ``None``: it does its own (LightSAM).
        bases: the values ``optim.base`` may take; ``()``: the base is fixed (presets, LightSAM).
        choices: valid values of the record's own string keys (``form``).
        ranges: rules for own keys that :data:`RULES` lacks or that are narrower here.
        linestyle: matplotlib line style (dashed: the one-pass base optimizers).
        needs_per_sample_loss: ``descent_loss`` uses the per-sample losses (ESAM's data selection).
        own_descent: the record replaces the descent step itself (LightSAM); it takes no ``base``.
        loss_point: where the first pass's forward runs, so where the logged training loss is measured
            (the record's ``train_loss_at``): ``w`` for all but RSAM, whose ascent pass is at the noisy
            ``w + delta0`` (a loss at w would cost one more forward per update; docs/algorithms.md §2.9).
    """

    name: str
    cls: type[Optimizer]
    factory: Callable[..., Optimizer]
    two_pass: bool
    display: str
    color: str
    paper: str
    equation: str
    spec: str
    keys: tuple[str, ...] = ()
    base: str | None = None
    bases: tuple[str, ...] = ()
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: _EMPTY)
    ranges: Mapping[str, Rule] = field(default_factory=lambda: _EMPTY)
    linestyle: str = "-"
    needs_per_sample_loss: bool = False
    own_descent: bool = False
    loss_point: str = "w"

    def __post_init__(self) -> None:
        object.__setattr__(self, "choices", MappingProxyType({k: tuple(v) for k, v in self.choices.items()}))
        object.__setattr__(self, "ranges", MappingProxyType(dict(self.ranges)))
        problems = []
        if self.own_descent == (self.base is not None):
            problems.append("exactly one of base and own_descent must be set")
        if self.base is not None and self.base not in BASES:
            problems.append(f"base {self.base!r} is not one of {', '.join(BASES)}")
        if self.bases and (self.base not in self.bases or not set(self.bases) <= set(BASES)):
            problems.append(f"bases {self.bases} must be names of BASES and hold the default {self.base!r}")
        for key in (*self.keys, *self.choices):
            if self._own_default(key) is inspect.Parameter.empty:
                problems.append(
                    f"{key!r} has no default in the signature of {self.factory.__name__}/{self.cls.__name__}"
                )
        for key in self.keys:
            if key not in self.ranges and key not in RULES:
                problems.append(f"{key!r} has no range (RULES or the record's ranges)")
        if problems:
            raise ValueError(f"record {self.name!r}: " + "; ".join(problems))

    # ------------------------------------------------------------------ keys and defaults
    def _own_default(self, key: str) -> Any:
        """The Python API default of an own key: the factory's signature, else the class's."""
        for fn in (self.factory, self.cls.__init__):
            try:
                p = inspect.signature(fn).parameters.get(key)
            except (TypeError, ValueError):
                continue
            if p is not None and p.default is not inspect.Parameter.empty:
                return p.default
        return inspect.Parameter.empty

    def base_of(self, values: Mapping[str, Any] | None = None) -> str | None:
        """The base in effect for ``values`` (a form or the YAML keys): its ``base``, else the default."""
        return (values or {}).get("base") or self.base

    def hparams_for(self, base: str | None = None) -> tuple[str, ...]:
        """The keys accepted on ``base`` (``None``: the default base), in YAML order."""
        base = base or self.base
        base_keys = BASES[base].keys if base is not None else ()
        return (*base_keys, *self.keys, *self.choices, *(("base",) if self.bases else ()))

    @property
    def hparams(self) -> tuple[str, ...]:
        """Every key the optimizer accepts on some base (the union over ``bases``)."""
        bases = (self.base, *self.bases) if self.base is not None else ()
        base_keys = dict.fromkeys(k for b in bases for k in BASES[b].keys)
        return (*base_keys, *self.keys, *self.choices, *(("base",) if self.bases else ()))

    def signature_defaults_for(self, base: str | None = None) -> Mapping[str, Any]:
        """Key -> the classes' signature default on ``base`` (torch-like: what ``AdaSAM(params)`` uses)."""
        base = base or self.base
        out = dict(BASES[base].defaults) if base is not None else {}
        out.update({k: self._own_default(k) for k in (*self.keys, *self.choices)})
        if self.bases:
            out["base"] = base
        return MappingProxyType(out)

    def conf_values(self, base: str | None = None) -> Mapping[str, Any]:
        """Key -> the value ``conf/optim/<name>.yaml`` gives it on ``base``, for the keys whose value the
        file alone determines (literals, and ``${if_base_takes:...}`` on that base); ``{}`` without a file.

        ``${task.lr}`` and ``???`` are left out: they are the run's values (in ``SAMTrainer`` the lr is
        ``TrainingArguments.learning_rate``), not the optimizer's.
        """
        base = base or self.base
        node = _conf_file(self.name)
        if node is None:
            return MappingProxyType({})
        node = copy.deepcopy(node)
        if self.bases:
            node["base"] = base  # sam's YAML names none: its null means the record's base (if_base_takes)
        out: dict[str, Any] = {}
        for key in self.hparams_for(base):
            if key == "base" or key not in node:
                continue
            try:
                value = OmegaConf.select(node, key, throw_on_missing=True)
            except (MissingMandatoryValue, InterpolationResolutionError):
                continue
            if value is not None:
                out[key] = value
        return MappingProxyType(out)

    def defaults_for(self, base: str | None = None) -> Mapping[str, Any]:
        """Key -> the value :func:`build_optimizer` and ``SAMTrainer`` use on ``base`` when the key is not
        given: the YAML's (:meth:`conf_values`), else the signature default (module docstring, "Values")."""
        return MappingProxyType({**self.signature_defaults_for(base), **self.conf_values(base)})

    @property
    def defaults(self) -> Mapping[str, Any]:
        """:meth:`defaults_for` the default base (``build_optimizer(name, params)``)."""
        return self.defaults_for()

    def rule(self, key: str) -> Rule | None:
        """The check of ``key`` (``rule(key, value)``; ``str(rule)`` says what is valid); ``None``: no such key."""
        if key == "base" and self.bases:
            return OneOf(self.bases)
        if key in self.choices:
            return OneOf(self.choices[key])
        if key in self.ranges:
            return self.ranges[key]
        return RULES.get(key) if key in self.hparams else None

    def forms(self, bases: bool = True) -> tuple[dict[str, Any], ...]:
        """One ``{key: value}`` per combination of choices (``({},)`` when none): the variants to test.

        With ``bases`` the ``base`` choices are one of the axes (``{"base": "sgd"}``, ...); without, the
        forms on the default base only (what the costly tests run: one base per perturbation).
        """
        axes = dict(self.choices)
        if bases and self.bases:
            axes["base"] = self.bases
        combos: list[dict[str, Any]] = [{}]
        for key, values in axes.items():
            combos = [{**c, key: v} for c in combos for v in values]
        return tuple(combos)

    # ------------------------------------------------------------------ identity and report
    def identity(self, optim: Mapping[str, Any]) -> dict[str, Any]:
        """What names the optimizer in the run identity: ``{"name": name}``.

        Every other key of the ``optim`` config enters the identity as configured (``None`` dropped, so
        a key the chosen base does not take, null under it, is not in it): :meth:`identity_keys`.
        """
        return {"name": self.name}

    def identity_keys(self, base: str | None = None) -> tuple[str, ...]:
        """The ``optim`` keys in the run identity on ``base``: the name, the accepted keys, the trainer's
        ``sync_ascent`` for a two-pass optimizer."""
        return ("name", *self.hparams_for(base), *(("sync_ascent",) if self.two_pass else ()))

    def label(self, base: str | None = None) -> str:
        """The display name, with the base when it is not the record's own (``VaSSO (SGD)``)."""
        if base is None or base == self.base:
            return self.display
        return f"{self.display} ({BASES[base].display})"

    def no_base_message(self) -> str:
        takes = ", ".join(n for n, r in OPTIMIZERS.items() if r.bases) or "none"
        if self.own_descent:
            why = (
                f"replaces the descent step itself (docs/algorithms.md {self.spec}): it has no base optimizer"
            )
        elif not self.two_pass:
            why = "is a base optimizer itself (no perturbation)"
        else:
            why = (
                f"is a preset with its base fixed ({self.base}; SAM's perturbation on sgd or adamw is sam "
                "with base=..., on amsgrad adasam)"
            )
        return f"optimizer {self.name!r} {why}, so it takes no 'base' (the records that take one: {takes})"


def _variant(name, cls, keys, display, color, paper, equation, spec, **kw) -> OptimInfo:
    """A perturbation on any base (default AMSGrad, library form: what the variants ran on before)."""
    return OptimInfo(
        name, cls, cls, True, display, color, paper, equation, spec, keys=keys, base="amsgrad",
        bases=BASE_CHOICES, **kw,
    )  # fmt: skip


# Colours: colour-blind-safe Okabe-Ito / Tol hues; the paper's four are four distinct hues (SGD sky blue,
# SAM dark blue, AMSGrad green, AdaSAM vermillion), the base optimizers also dashed.
_RECORDS = [
    OptimInfo(
        "sgd", torch.optim.SGD, make_sgd, False, "SGD", "#56B4E9", "torch.optim.SGD",
        "b <- beta1 b + g + wd w; w <- w - lr b", "§1.1", base="sgd", linestyle="--",
    ),
    OptimInfo(
        "amsgrad", torch.optim.AdamW, make_amsgrad, False, "AMSGrad", "#009E73",
        "Reddi et al. 2018, arXiv 1904.09237; torch.optim.AdamW(amsgrad=True)",
        "v_hat <- max(v_hat, v); w <- w - lr m_hat / (sqrt(v_hat_hat) + eps)", "§1.2", base="amsgrad",
        linestyle="--",
    ),
    OptimInfo(
        "sam", SAM, SAM, True, "SAM", "#0072B2", "Foret et al. 2021, arXiv 2010.01412",
        "e = rho s / ||s||; SGD step with g", "§1.4", keys=("rho",), base="sgd", bases=("sgd", "adamw"),
    ),
    OptimInfo(
        "adasam", AdaSAM, AdaSAM, True, "AdaSAM", "#D55E00", "Sun et al. 2023, arXiv 2303.00565 (Algorithm 1)",
        "e = rho s / ||s||; AMSGrad step with g", "§1.5", keys=("rho",), base="amsgrad",
        choices={"form": ADASAM_FORMS},
    ),
    _variant(
        "asam", ASAM, ("rho", "eta"), "ASAM", "#CC79A7", "Kwon et al. 2021, arXiv 2102.11600",
        "e = rho T^2 s / ||T s||, T = |w| + eta (ndim >= 2)", "§2.6",
    ),
    _variant(
        "usam", USAM, ("rho",), "USAM", "#999933", "Andriushchenko & Flammarion 2022, arXiv 2206.06232",
        "e = rho s", "§2.7",
    ),
    _variant(
        "gsam", GSAM, ("rho", "rho_min", "alpha"), "GSAM", "#882255", "Zhuang et al. 2022, arXiv 2203.08065",
        "e = rho_t s / ||s||; descent g - alpha g_perp", "§2.10",
    ),
    _variant(
        "vasso", VaSSO, ("rho", "theta"), "VaSSO", "#7f7f7f", "Li & Giannakis 2023, arXiv 2309.15639",
        "d <- (1 - theta) d + theta s; e = rho d / ||d||", "§2.8",
    ),
    _variant(
        "rsam", RSAM, ("rho", "sigma"), "RSAM", "#8c564b", "Liu et al., NeurIPS 2022 (Random SAM)",
        "s~ = grad at w + N(0, sigma^2 rms(w)^2); e = rho s~ / ||s~||", "§2.9",
        loss_point="w + delta0",
    ),
    _variant(
        "esam", ESAM, ("rho", "beta", "gamma"), "ESAM", "#9467bd", "Du et al. 2022, arXiv 2110.03141",
        "e_i = m_i rho s_i / (beta ||s||), m_i ~ Bernoulli(beta); descent on the top-gamma samples", "§2.11",
        needs_per_sample_loss=True,
    ),
    OptimInfo(
        "lightsam", LightSAM, lightsam, True, "LightSAM", "#000000", "Cheng et al. 2025, arXiv 2505.24399",
        "e = rho s / sqrt(u); w <- w - lr g / sqrt(v) (adaptive ascent and descent)", "§2.12",
        keys=("lr", "rho", "beta1", "beta2", "eps", "weight_decay"), choices={"form": LIGHTSAM_FORMS},
        own_descent=True,
    ),
]  # fmt: skip

#: name -> record, in the order above (the report's order)
OPTIMIZERS: dict[str, OptimInfo] = {r.name: r for r in _RECORDS}


def register(info: OptimInfo, replace: bool = False) -> OptimInfo:
    """Add a record (a new variant: its class, this record and ``conf/optim/<name>.yaml``)."""
    if info.name in OPTIMIZERS and not replace:
        raise ValueError(f"optimizer {info.name!r} is already registered")
    OPTIMIZERS[info.name] = info
    config = sys.modules.get("adasam_glue.config")  # loaded: its optim schema gains the record's keys
    if config is not None:
        config.register_configs()
    return info


def get_optim_info(name: str) -> OptimInfo:
    """The record of ``name``; ``ValueError`` listing the valid names otherwise."""
    try:
        return OPTIMIZERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown optimizer {name!r}; valid names: {', '.join(OPTIMIZERS)}") from None


def baseline_of(name: str, base: str | None = None) -> str | None:
    """The one-pass optimizer a two-pass one is compared with: the record of its base (``base``: the run's
    ``optim.base``, ``None`` for the record's default). ``vasso`` -> ``amsgrad``; ``vasso`` on ``sgd``
    -> ``sgd``; ``None`` for one-pass optimizers, LightSAM and bases without a record (``adamw``)."""
    info = OPTIMIZERS.get(name)
    if info is None or not info.two_pass or info.own_descent:
        return None
    base = base or info.base
    if base == "amsgrad_paper":  # adasam form=paper is compared with AMSGrad, as the paper does
        base = "amsgrad"
    return next((n for n, r in OPTIMIZERS.items() if not r.two_pass and r.base == base), None)


def optimizer_values(name: str, **hparams: Any) -> dict[str, Any]:
    """Every key :func:`build_optimizer` builds ``name`` with: ``hparams`` (``None``: not given) over the
    defaults on their base (:meth:`OptimInfo.defaults_for`: the YAML's values), each checked against its
    range. What ``SAMTrainer`` logs and records, so that the values reported are the values run.

    Raises ``ValueError`` for an unknown name, a key the optimizer does not take on its base (naming the
    valid keys), a ``base`` where the record takes none, or a value out of range (``rho must be >= 0,
    got -1``).
    """
    info = get_optim_info(name)
    given = {k: v for k, v in hparams.items() if v is not None}
    base = info.base_of(given)
    valid = info.hparams_for(base) if base in BASES or base is None else info.hparams
    unknown = sorted(k for k in hparams if k not in valid and (k in given or k not in info.hparams))
    if unknown and not ("base" in given and not info.bases):
        on = f" on base {base!r}" if info.bases else ""
        raise ValueError(
            f"unknown hyperparameter{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} for "
            f"optimizer {name!r}{on}; valid keys: {', '.join(sorted(valid))}"
        )
    try:
        if "base" in given and not info.bases:
            raise ValueError(info.no_base_message())
        values = {**info.defaults_for(base if base in BASES else None), **given}
        for key, value in values.items():
            info.rule(key)(key, value)
        return values
    except ValueError as e:
        raise _named(name, e) from None


def build_optimizer(name: str, params: Iterable[Any], **hparams: Any) -> Optimizer:
    """Build optimizer ``name`` on ``params`` (tensors or param-group dicts) from YAML keys.

    Missing keys (and keys given as ``None``) take the values of ``conf/optim/<name>.yaml`` (module
    docstring, "Values"), so ``build_optimizer("adasam", params)`` is the optimizer of
    ``python -m adasam_glue optim=adasam`` (lr: 1e-3 unless given; the YAML's is the task's). ``base``
    picks the descent optimizer of a record that takes one. Raises ``ValueError`` as
    :func:`optimizer_values`, and for keys that do not fit together (``nesterov`` without momentum, GSAM's
    ``rho_min > rho``).
    """
    info = get_optim_info(name)
    values = optimizer_values(name, **hparams)
    try:
        return info.factory(params, **values)
    except ValueError as e:
        raise _named(name, e) from None


def _named(name: str, error: ValueError) -> ValueError:
    """The error with the optimizer's name in front (once)."""
    msg = str(error)
    msg = msg if msg.startswith(f"optimizer {name!r}") else f"optimizer {name!r}: {msg}"
    if isinstance(error, RangeError):  # keeps the key, the value and the rule for validate_config
        return RangeError(error.key, error.value, error.rule, msg)
    return ValueError(msg)


def _conf_file(name: str) -> DictConfig | None:
    """``conf/optim/<name>.yaml`` as written (interpolations unresolved), read through ``CONF_DIR``;
    ``None`` when there is none. Parsed once per file version (path and modification time)."""
    from adasam_glue.conf_location import CONF_DIR

    path = Path(CONF_DIR) / "optim" / f"{name}.yaml"
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        return None
    return _load_conf(str(path), stamp)


@functools.lru_cache(maxsize=64)
def _load_conf(path: str, stamp: int) -> DictConfig:
    return OmegaConf.load(path)


def if_base_takes(base: Any, value: Any, *, _node_: Any, _parent_: Any) -> Any:
    """``beta2: ${if_base_takes:${.base},0.98}`` in ``conf/optim``: ``value`` when the base optimizer
    ``base`` takes this key (the node's own name), else ``None`` (not passed, not in the run identity).

    So one YAML serves a perturbation on every base: ``optim=vasso optim.base=sgd`` drops AMSGrad's
    ``beta2``/``eps``, which SGD does not have. A null ``base`` is the record's own (``sam``'s YAML names
    none, so that its run identity stays the one it had: SGD, no ``beta2``; ``optim.base=adamw`` brings
    it in). An unknown base keeps ``value``; ``validate_config`` then reports ``optim.base`` itself."""
    if base is None:
        info = OPTIMIZERS.get(str(_parent_.get("name"))) if _parent_ is not None else None
        base = info.base if info is not None else None
    spec = BASES.get(str(base))
    return value if spec is None or _node_._key() in spec.keys else None


#: the YAML of conf/optim resolves through the registry (composition registers a forwarder in config.py)
OmegaConf.register_new_resolver("if_base_takes", if_base_takes, replace=True)
