"""The ``sharpness`` block of a run record: which definition of the measures produced it, and reading
``lambda_max`` from a block of any definition. Torch-free, so the report and the sweep driver read blocks
without loading the measuring code (:mod:`adasam_glue.sharpness.measure`; spec: docs/algorithms.md
§3.5)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: The definition of the block's measures. 1 (a block without ``method_version``): ``eigenvalue`` was
#: power iteration's largest-*magnitude* eigenvalue, with its sign. 2: ``eigenvalue`` is the largest
#: (algebraic) eigenvalue and ``eigenvalue_min`` the smallest
#: (:func:`adasam_glue.sharpness.measure.extreme_eigenvalues`).
METHOD_VERSION = 2


def method_version(block: Mapping[str, Any]) -> int:
    """The block's ``method_version`` (1 when it has none: blocks written before the key existed)."""
    return int(block.get("method_version", 1))


def is_current(block: Mapping[str, Any] | None) -> bool:
    """Whether a record's ``sharpness`` block was measured with this :data:`METHOD_VERSION` (a block of an
    older definition is to be measured again)."""
    return isinstance(block, Mapping) and bool(block) and method_version(block) == METHOD_VERSION


def largest_eigenvalue(block: Mapping[str, Any] | None) -> float | None:
    """``lambda_max`` of a ``sharpness`` block of any version, ``None`` when the block does not give it.

    A version-1 value is the largest-*magnitude* eigenvalue: ``lambda_max`` when positive; a negative one
    is the most negative eigenvalue and says nothing of ``lambda_max``."""
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
    if method_version(block) < 2 and eig < 0:
        return None
    return float(eig)
