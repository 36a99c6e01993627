"""Content fingerprints of local files and folders: ``{relative name: digest}``.

The run identity (:mod:`adasam_glue.identity`) replaces data and model *paths* by the fingerprint of
what they hold, so a moved copy of the same files is the same run and an edited file under the same path
is not; the data loader keys its cache of TSV-built datasets by the same fingerprints. Its own module,
below both, so that neither imports the other for it (issue 23: no import cycle,
``tests/test_import_graph.py``); :mod:`adasam_glue.identity` re-exports ``fingerprint_path``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["fingerprint_path"]

#: Files larger than this are fingerprinted by size plus their first and last MiB (weights of GBs).
_FULL_HASH_LIMIT = 64 * 2**20
_CHUNK = 2**20


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    size = path.stat().st_size
    with path.open("rb") as f:
        if size <= _FULL_HASH_LIMIT:
            for chunk in iter(lambda: f.read(_CHUNK), b""):
                h.update(chunk)
        else:
            h.update(f.read(_CHUNK))
            f.seek(size - _CHUNK)
            h.update(f.read(_CHUNK))
            h.update(str(size).encode())
    return h.hexdigest()[:16]


def fingerprint_path(path: str | os.PathLike, patterns: Iterable[str] = ("*",)) -> dict[str, Any]:
    """Content fingerprint of a local file or folder: ``{relative name: digest}`` (hidden files skipped).

    A folder of model weights (GBs) is fingerprinted from sizes and the first/last MiB of large files:
    enough to tell two checkpoints apart, cheap enough to run before every launch.
    """
    p = Path(path)
    if p.is_file():
        return {p.name: _file_digest(p)}
    files = sorted(
        f
        for pattern in patterns
        for f in p.rglob(pattern)
        if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts)
    )
    return {str(f.relative_to(p)): _file_digest(f) for f in dict.fromkeys(files)}
