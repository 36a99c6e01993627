"""Where a result came from: the code's commit, the package versions and the hardware.

Written into every run record and benchmark JSON so a number can be traced to what produced it.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

_PACKAGES = ("adasam_glue", "torch", "transformers", "datasets", "accelerate", "hydra-core", "numpy")


def git_commit() -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of the source tree this package runs from; ``(None, None)`` outside git.

    Only a checkout counts: a wheel installed into a venv that sits inside some other repository (a
    user's project with its ``.venv``) would otherwise report that repository's commit as the harness's.
    """
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--show-toplevel", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None, None
    if commit.returncode != 0:
        return None, None
    toplevel, head = commit.stdout.strip().splitlines()
    if Path(toplevel).resolve() != root:  # installed (site-packages), not the source tree's own package
        return None, None
    return head, bool(dirty.stdout.strip())


def versions() -> dict[str, str]:
    """Python and the versions of the packages that can change a number."""
    out = {"python": platform.python_version()}
    for pkg in _PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def hardware(accelerator: Any) -> dict[str, Any]:
    """Device, process count, precision, GPU names, CPU count, platform (and torch's CPU threads)."""
    import torch

    gpus = (
        [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if torch.cuda.is_available()
        else []
    )
    return {
        "device": str(accelerator.device),
        "num_processes": accelerator.num_processes,
        "mixed_precision": str(accelerator.mixed_precision),
        "gpus": gpus,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }
