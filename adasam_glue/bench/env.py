"""Where a benchmark figure came from: code, versions, machine, load and the command that ran.

Every benchmark JSON carries this block (``env``) so a number can be traced and a re-run compared; it
uses the same provenance helpers as the run records.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch


def environment(
    device: str, module: str = "adasam_glue.bench", argv: Sequence[str] | None = None
) -> dict[str, Any]:
    """Versions, CPU count and threads, device, git commit, load average, date and the command line."""
    from adasam_glue.provenance import git_commit, versions

    commit, dirty = git_commit()
    try:
        load = list(os.getloadavg())
    except OSError:  # not available on this platform
        load = None
    v = versions()
    return {
        "python": v.get("python"),
        "torch": v.get("torch"),
        "transformers": v.get("transformers"),
        "accelerate": v.get("accelerate"),
        "datasets": v.get("datasets"),
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "git_commit": commit,
        "git_dirty": dirty,
        "load_avg_at_start": load,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(
            [Path(sys.executable).name, "-m", module, *(sys.argv[1:] if argv is None else argv)]
        ),
    }
