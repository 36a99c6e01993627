"""Hyperparameter checks with uniform messages (``rho must be >= 0, got -1``): the one range table.

:data:`RULES` maps every optimizer key to its valid range. A key means the same thing in every optimizer
(``beta1`` is always a decay rate in [0, 1)), so one table serves all of them; a registry record may add
rules for keys of its own (``OptimInfo.ranges``) and its string choices (``form``, ``base``). Readers:
``build_optimizer`` (through the record), every optimizer class for its own arguments (so a direct
construction, ``AdaSAM(params, rho=-1)``, fails exactly like ``build_optimizer("adasam", rho=-1)``), and
``config.validate_config``, which reports the same rule against the config key (``optim.rho``).
Checks that involve two keys or one class (``rho_min <= rho``, beta2 = 1 under a bias-corrected
AMSGrad, eps > 0 where an accumulator starts at eps**2) stay in the class that needs them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from numbers import Real
from typing import Any

INF = math.inf

__all__ = [
    "RULES",
    "Flag",
    "Interval",
    "OneOf",
    "RangeError",
    "Rule",
    "check_bool",
    "check_choice",
    "check_interval",
    "check_real",
    "validate",
]


class RangeError(ValueError):
    """A value outside its rule (``rho must be >= 0, got -1``), carrying the key, the value and the rule,
    so that ``config.validate_config`` reports the one check the build ran against the config key
    (``invalid optim.rho=-1: must be >= 0``) instead of running the table a second time."""

    def __init__(self, key: str, value: Any, rule: Rule, message: str | None = None) -> None:
        super().__init__(message or f"{key} must be {rule}, got {value!r}")
        self.key, self.value, self.rule = key, value, rule

    def __reduce__(self) -> tuple:  # pickled whole: a worker process's error reaches its parent intact
        return (RangeError, (self.key, self.value, self.rule, str(self)))


def _fmt(x: float) -> str:
    return "inf" if x == INF else f"{x:g}"


def check_real(name: str, value: Any) -> float:
    """``value`` must be a finite-or-infinite real number (not a bool, not a string)."""
    if isinstance(value, bool) or not isinstance(value, Real) or math.isnan(float(value)):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Interval:
    """A real number in ``[lo, hi]`` (either end open): ``Interval(0.0, 1.0, hi_open=True)`` is [0, 1)."""

    lo: float = -INF
    hi: float = INF
    lo_open: bool = False
    hi_open: bool = False

    def __call__(self, name: str, value: Any) -> float:
        try:
            v = check_real(name, value)
        except ValueError as e:
            raise RangeError(name, value, self, str(e)) from None
        ok = (v > self.lo if self.lo_open else v >= self.lo) and (
            v < self.hi if self.hi_open else v <= self.hi
        )
        if not ok:
            raise RangeError(name, value, self)
        return v

    def __str__(self) -> str:
        if self.hi == INF:
            return f"{'>' if self.lo_open else '>='} {_fmt(self.lo)}"
        if self.lo == -INF:
            return f"{'<' if self.hi_open else '<='} {_fmt(self.hi)}"
        lb, rb = "(" if self.lo_open else "[", ")" if self.hi_open else "]"
        return f"in {lb}{_fmt(self.lo)}, {_fmt(self.hi)}{rb}"


@dataclass(frozen=True)
class Flag:
    """A bool (``true``/``false`` in YAML; ``"yes"`` or 1 are refused)."""

    def __call__(self, name: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise RangeError(name, value, self)
        return value

    def __str__(self) -> str:
        return "a bool (true/false)"


@dataclass(frozen=True)
class OneOf:
    """One of a fixed set of strings (``form``, ``base``)."""

    values: tuple[str, ...]

    def __call__(self, name: str, value: Any) -> str:
        if value not in self.values:
            raise RangeError(name, value, self)
        return value

    def __str__(self) -> str:
        return "one of " + ", ".join(map(repr, self.values))


#: what a rule is: ``rule(name, value)`` returns the value or raises ``ValueError``; ``str(rule)`` says
#: what is valid (``in [0, 1)``)
Rule = Interval | Flag | OneOf


def check_interval(
    name: str, value: Any, lo: float = -INF, hi: float = INF, *, lo_open: bool = False, hi_open: bool = False
) -> float:
    """Raise ``ValueError("name must be in [lo, hi), got value")`` unless ``value`` lies in the interval."""
    return Interval(lo, hi, lo_open, hi_open)(name, value)


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    return OneOf(tuple(choices))(name, value)


def check_bool(name: str, value: Any) -> bool:
    return Flag()(name, value)


_UNIT = Interval(0.0, 1.0)
#: key -> rule. ``form`` and ``base`` are checked against the record's own choices. The order is the
#: ``optim`` schema's (``config.optim_schema``), so the order of the keys in run-dir names (``run_dir``).
RULES: dict[str, Rule] = {
    "lr": Interval(0.0, lo_open=True),
    "beta1": Interval(0.0, 1.0, hi_open=True),
    # beta2 = 1 is legal only where it is meaningful (AdaSAM form=paper, Remark 3.1; LightSAM); the bases
    # whose update divides by 1 - beta2**t (library AMSGrad, AdamW) refuse it with a message saying so.
    "beta2": _UNIT,
    "eps": Interval(0.0),
    "weight_decay": Interval(0.0),
    "nesterov": Flag(),
    "rho": Interval(0.0),
    "rho_min": Interval(0.0),
    "eta": Interval(0.0),
    "alpha": Interval(0.0, 1.0, hi_open=True),
    "theta": Interval(0.0, 1.0, lo_open=True),  # theta = 1: d = g, VaSSO's ascent is SAM's (spec §2.8)
    "sigma": Interval(0.0),
    "beta": Interval(0.0, 1.0, lo_open=True),
    "gamma": Interval(0.0, 1.0, lo_open=True),
}


def validate(**values: Any) -> None:
    """Check each ``key=value`` against :data:`RULES` (keys without a rule, e.g. ``form``, are skipped)."""
    for key, value in values.items():
        rule = RULES.get(key)
        if rule is not None:
            rule(key, value)


def check_beta2_below_one(beta2: float, where: str) -> None:
    """The bias-corrected AMSGrad/AdamW divide by ``1 - beta2**t``: beta2 = 1 is a division by 0."""
    if beta2 >= 1.0:
        raise ValueError(
            f"beta2 must be in [0, 1) for {where}, got {beta2!r} "
            "(beta2 = 1 is accepted only by adasam form='paper', Remark 3.1, and by lightsam)"
        )
