"""The ``sharpness`` block of a run record: which definition of the measures produced it, and reading
``lambda_max`` from a block of any definition. Torch-free, so the report and the sweep driver read blocks
without loading the measuring code (:mod:`adasam_glue.sharpness.measure`; spec: docs/algorithms.md
§3.5)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

#: The definition of the block's measures. 1 (a block without ``method_version``): ``eigenvalue`` was
#: power iteration's largest-*magnitude* eigenvalue, with its sign. 2: power iteration shifted by that
#: value for the other end of the spectrum; when the dominant value was negative the shifted iteration
#: stopped on the bulk of near-zero eigenvalues, so its ``eigenvalue`` is sound only when it is the
#: dominant one. 3: both ends by the Lanczos method with a residual bound
#: (:func:`adasam_glue.sharpness.measure.extreme_eigenvalues`; docs/algorithms.md §3.5).
METHOD_VERSION = 3


def method_version(block: Mapping[str, Any]) -> int:
    """The block's ``method_version`` (1 when it has none: blocks written before the key existed)."""
    return int(block.get("method_version") or 1)


def is_current(block: Mapping[str, Any] | None) -> bool:
    """Whether a record's ``sharpness`` block was measured with this :data:`METHOD_VERSION` (a block of an
    older definition is to be measured again)."""
    return isinstance(block, Mapping) and bool(block) and method_version(block) == METHOD_VERSION


def largest_eigenvalue(block: Mapping[str, Any] | None) -> float | None:
    """``lambda_max`` of a ``sharpness`` block of any version, ``None`` when the block does not give it.

    Older versions held the largest-*magnitude* eigenvalue ``lambda_dom`` where they held a sound one:
    it is ``lambda_max`` when positive. Version 1 always reported ``lambda_dom``; version 2 reported
    ``lambda_dom`` when positive and at least ``|eigenvalue_min|``, and otherwise a value of the bulk."""
    if not isinstance(block, Mapping):
        return None
    values = block.get("values") or {}
    eig = values.get("eigenvalue")
    if isinstance(eig, list):
        eig = eig[0] if eig else None
    if eig is None and isinstance(values.get("eigenvalues"), list) and values["eigenvalues"]:
        eig = values["eigenvalues"][0]
    if not isinstance(eig, (int, float)) or isinstance(eig, bool):
        return None
    version = method_version(block)
    if version < METHOD_VERSION and eig <= 0:
        return None
    if version == 2 and eig < -float(values.get("eigenvalue_min") or 0.0):
        return None
    return float(eig)


def smallest_eigenvalue(block: Mapping[str, Any] | None) -> float | None:
    """``lambda_min`` of a ``sharpness`` block of any version, ``None`` when the block does not give it:
    version 1 only when its largest-magnitude value was negative; version 2 only when its
    ``eigenvalue_min`` was that dominant value (otherwise a value of the bulk)."""
    if not isinstance(block, Mapping):
        return None
    values = block.get("values") or {}
    version, eig, low = method_version(block), values.get("eigenvalue"), values.get("eigenvalue_min")
    if version == 1:
        return float(eig) if isinstance(eig, (int, float)) and not isinstance(eig, bool) and eig < 0 else None
    if not isinstance(low, (int, float)) or isinstance(low, bool):
        return None
    if version == 2 and not (isinstance(eig, (int, float)) and low < -abs(eig)):
        return None
    return float(low)


def lanczos_cap_bound(block: Mapping[str, Any] | None) -> float | None:
    """The relative error bound of the eigenvalues of a block whose Lanczos iteration stopped at its
    ``power_iters`` cap before meeting its tolerance: ``eigen_residual`` over the largest reported
    ``|θ|``, the scale the tolerance is relative to (docs/algorithms.md §3.5); ``inf`` when it stopped
    without a usable bound. ``None`` when the iteration converged or the block is of an older version."""
    if not is_current(block):
        return None
    values = block.get("values") or {}
    if values.get("eigen_converged") is not False:
        return None
    ends = [largest_eigenvalue(block), smallest_eigenvalue(block)]
    scale = max((abs(v) for v in ends if v is not None), default=0.0)
    residual = values.get("eigen_residual")
    if not isinstance(residual, (int, float)) or isinstance(residual, bool) or scale == 0.0:
        return math.inf
    return float(residual) / scale
