"""Integrations of the harness's optimizers with other training frameworks.

- :mod:`adasam_glue.integrations.transformers`: :class:`SAMTrainer`, a ``transformers.Trainer`` whose
  training step runs any optimizer of the registry (two passes for the SAM family).

Nothing here imports a framework eagerly: ``import adasam_glue.integrations`` stays cheap, and
``from adasam_glue.integrations import SAMTrainer`` imports transformers only then.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SAMTrainer"]


def __getattr__(name: str) -> Any:
    if name == "SAMTrainer":
        from adasam_glue.integrations.transformers import SAMTrainer

        return SAMTrainer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
