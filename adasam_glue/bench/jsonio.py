"""Writing benchmark JSON: atomically, with the run records' conventions (NaN/inf as strings).

A benchmark interrupted half-way keeps what it measured (:func:`write_partial`); a reader never sees a
torn file. Schema of every file: ``docs/bench_schema.md``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: bumped when a key changes meaning or disappears (adding keys keeps the version)
SCHEMA_VERSION = 2


def write_json(path: str | Path, obj: dict[str, Any]) -> None:
    """Atomically write ``obj`` (``schema_version`` added when absent) as indented JSON."""
    from adasam_glue.records import atomic_write_text, dumps_record

    atomic_write_text(Path(path), dumps_record({"schema_version": SCHEMA_VERSION, **obj}))


def write_partial(path: str | Path, obj: dict[str, Any]) -> None:
    """What is measured so far, marked ``"partial": true``, so an interrupted run keeps its figures."""
    write_json(path, {**obj, "partial": True})


def read_json(path: str | Path) -> dict[str, Any]:
    """A benchmark JSON back as a dict (for rendering and tests)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))
