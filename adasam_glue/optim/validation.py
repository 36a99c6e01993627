"""Hyperparameter checks with uniform messages (``rho must be >= 0, got -1``).

One table, :data:`RULES`, maps every YAML key to its valid range; the registry checks the keys it is
given and every optimizer class checks its own arguments with the same table, so a direct
construction (``AdaSAM(params, rho=-1)``) fails exactly like ``build_optimizer("adasam", rho=-1)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from numbers import Real
from typing import Any

INF = math.inf


def _fmt(x: float) -> str:
    return "inf" if x == INF else f"{x:g}"


def check_real(name: str, value: Any) -> float:
    """``value`` must be a finite-or-infinite real number (not a bool, not a string)."""
    if isinstance(value, bool) or not isinstance(value, Real) or math.isnan(float(value)):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    return float(value)


def check_interval(
    name: str, value: Any, lo: float = -INF, hi: float = INF, *, lo_open: bool = False, hi_open: bool = False
) -> float:
    """Raise ``ValueError("name must be in [lo, hi), got value")`` unless ``value`` lies in the interval."""
    v = check_real(name, value)
    ok = (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if not ok:
        if hi == INF:
            rng = f"{'>' if lo_open else '>='} {_fmt(lo)}"
        elif lo == -INF:
            rng = f"{'<' if hi_open else '<='} {_fmt(hi)}"
        else:
            rng = f"in {'(' if lo_open else '['}{_fmt(lo)}, {_fmt(hi)}{')' if hi_open else ']'}"
        raise ValueError(f"{name} must be {rng}, got {value!r}")
    return v


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be a bool (true/false), got {value!r}")
    return value


def _interval(lo: float = -INF, hi: float = INF, lo_open: bool = False, hi_open: bool = False):
    return lambda name, v: check_interval(name, v, lo, hi, lo_open=lo_open, hi_open=hi_open)


#: key -> check(name, value). ``form`` is checked against the record's own choices.
RULES: dict[str, Callable[[str, Any], Any]] = {
    "lr": _interval(0.0, lo_open=True),
    "beta1": _interval(0.0, 1.0, hi_open=True),
    # beta2 = 1 is legal only where it is meaningful (AdaSAM form=paper, Remark 3.1); the classes
    # whose update divides by 1 - beta2**t reject it with a message saying so.
    "beta2": _interval(0.0, 1.0),
    "eps": _interval(0.0),
    "weight_decay": _interval(0.0),
    "rho": _interval(0.0),
    "eta": _interval(0.0),
    "alpha": _interval(0.0, 1.0, hi_open=True),
    "rho_min": _interval(0.0),
    "theta": _interval(0.0, 1.0, lo_open=True),  # theta = 1: d = g, VaSSO reduces to SAM
    "sigma": _interval(0.0),
    "beta": _interval(0.0, 1.0, lo_open=True),
    "gamma": _interval(0.0, 1.0, lo_open=True),
    "nesterov": check_bool,
}


def validate(**values: Any) -> None:
    """Check each ``key=value`` against :data:`RULES` (keys without a rule, e.g. ``form``, are skipped)."""
    for key, value in values.items():
        rule = RULES.get(key)
        if rule is not None:
            rule(key, value)


def check_beta2_below_one(beta2: float, where: str) -> None:
    """The bias-corrected (library) AMSGrad divides by ``1 - beta2**t``: beta2 = 1 is a division by 0."""
    if beta2 >= 1.0:
        raise ValueError(
            f"beta2 must be in [0, 1) for {where}, got {beta2!r} "
            "(beta2 = 1 is accepted only by adasam form='paper', Remark 3.1)"
        )
