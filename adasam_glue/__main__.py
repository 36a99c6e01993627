"""``python -m adasam_glue task=mrpc optim=adasam``: wires Hydra to :func:`adasam_glue.run.run`, nothing else.

``--help`` prints this project's help (groups, the keys set most, their valid values); Hydra's generic
help is ``--hydra-help``.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from adasam_glue.config import CONF_DIR


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> float | None:
    from adasam_glue.run import run

    return run(cfg).get("objective")


if __name__ == "__main__":
    from adasam_glue.cli_help import render_help, wants_help

    if wants_help(sys.argv[1:]):
        sys.stdout.write(render_help())
        sys.exit(0)
    main()
