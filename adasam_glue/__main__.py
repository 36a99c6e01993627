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
    from adasam_glue.run import USER_ERRORS, run

    try:
        return run(cfg).get("objective")
    except USER_ERRORS as e:  # bad input: one clear message, no traceback (a multirun job re-raises)
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.get().mode != RunMode.RUN:
            raise
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)


if __name__ == "__main__":
    from adasam_glue.cli_help import render_help, wants_help

    if wants_help(sys.argv[1:]):
        sys.stdout.write(render_help())
        sys.exit(0)
    main()
