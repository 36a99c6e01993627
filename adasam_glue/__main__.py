"""``python -m adasam_glue task=mrpc optim=adasam``: wires Hydra to :func:`adasam_glue.run.run`, nothing else."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from adasam_glue.config import CONF_DIR


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> float | None:
    from adasam_glue.run import run

    return run(cfg).get("objective")


if __name__ == "__main__":
    main()
