"""``python -m adasam_glue task=mrpc optim=adasam``: wires Hydra to :func:`adasam_glue.run.run`, nothing else.

``--help`` prints this project's help (groups, the keys set most, their valid values); Hydra's generic
help is ``--hydra-help``.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

import adasam_glue.experiments.resolvers  # noqa: F401  ${sqrt_scale}, ${task_recipe}, ${tuned_lr}
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
    from adasam_glue.config import ConfigError, check_override_keys

    if wants_help(sys.argv[1:]):
        sys.stdout.write(render_help())
        sys.exit(0)
    try:  # a Hugging Face name (trainer.max_steps=...): say the harness's key, not Hydra's "use +key"
        check_override_keys(sys.argv[1:])
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    main()
