"""``python -m adasam_glue --help``: the groups and the keys a user sets most, each with one line.

Nothing here is a second copy of a fact. The one-line descriptions are the schema's own ``#:``
comments in ``adasam_glue/config.py`` (read with ``ast``, as Sphinx reads them), the valid values come
from ``config.valid_choices()``, the group options from the files under ``conf/``, the optimizer names and
hyperparameters from the registry. Hydra's own help stays available as ``--hydra-help``.
"""

from __future__ import annotations

import ast
import inspect

from adasam_glue import config as schema
from adasam_glue.config import CONF_DIR

#: (section title, dotted keys) shown in this order: the keys a user sets most
KEYS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "run",
        (
            "seed",
            "results_dir",
            "run_dir",
            "reuse_run_dir",
            "rerun_on_new_commit",
            "experiment_name",
            "dry_run",
        ),
    ),
    ("task", ("task.lr", "task.batch_size", "task.total_updates", "task.max_length", "task.init_from")),
    ("optim", ("optim.lr", "optim.rho", "optim.beta1", "optim.sync_ascent")),
    ("model", ("model.path", "model.revision", "model.cache_dir", "model.dropout", "model.mnli_checkpoint")),
    ("data", ("data.source", "data.data_dir", "data.max_train_samples", "data.group_by_length")),
    (
        "trainer",
        (
            "trainer.mixed_precision",
            "trainer.grad_accum",
            "trainer.max_updates",
            "trainer.eval_every",
            "trainer.max_grad_norm",
            "trainer.schedule",
            "trainer.save_model",
            "trainer.checkpoint_every",
            "trainer.predict_test",
        ),
    ),
    ("logging", ("logging.wandb_mode",)),
)

#: section of the root config -> its dataclass in the schema
_SECTIONS = {
    "task": schema.TaskConfig,
    "optim": schema.OptimKeys,  # the documented keys (OptimConfig is derived from it and the registry)
    "model": schema.ModelConfig,
    "data": schema.DataConfig,
    "trainer": schema.TrainerConfig,
    "logging": schema.LoggingConfig,
    "sharpness": schema.SharpnessConfig,
    "": schema.Config,
}


def field_docs(cls: type) -> dict[str, str]:
    """``{field: its #: comment}`` of one schema dataclass (the comment on the field's own line)."""
    source = inspect.getsource(cls)
    lines = source.splitlines()
    out: dict[str, str] = {}
    for node in ast.parse(source).body[0].body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            line = lines[node.lineno - 1]
            if "#:" in line:
                out[node.target.id] = line.split("#:", 1)[1].strip()
    return out


def _describe(key: str) -> str:
    section, _, name = key.rpartition(".")
    doc = field_docs(_SECTIONS[section]).get(name, "")
    valid = schema.valid_choices().get(key)
    if valid:
        doc += ("; " if doc else "") + "one of " + " | ".join(valid)
    return doc.replace("``", "")


def _group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def render_help() -> str:
    """The help text (also the test's subject)."""
    from adasam_glue.optim import OPTIMIZERS

    lines = [
        "adasam_glue: fine-tune on GLUE with SGD, AMSGrad, SAM, AdaSAM and SAM variants.",
        "",
        "usage: python -m adasam_glue [group=option ...] [key=value ...]",
        "       python -m adasam_glue -m experiment=table1          (a whole table as a multirun)",
        "       python -m adasam_glue task=mrpc optim=adasam --cfg job   (print the composed config)",
        "",
        "groups (group=option):",
    ]
    for group in ("task", "optim", "model", "experiment", "schedule", "data", "trainer"):
        lines.append(f"  {group:<11} {' | '.join(_group_options(group))}")
    lines += ["", "optimizer hyperparameters (optim.<key>=value; registry: adasam_glue.optim):"]
    for name, info in OPTIMIZERS.items():
        keys = ", ".join(k for k in info.hparams if k != "lr")
        lines.append(f"  {name:<9} {keys}")
    for title, keys in KEYS:
        lines += ["", f"{title}:"]
        for key in keys:
            lines.append(f"  {key:<26} {_describe(key)}")
    lines += [
        "",
        "Every key and its default: --cfg job. Where the results go: results_dir (printed at the start).",
        "Rebuild tables from records: python -m adasam_glue.report <results_dir>/runs <report dir>",
        "Hydra's own options: --hydra-help. Docs: README.md, docs/algorithms.md, docs/experiments.md",
    ]
    return "\n".join(lines) + "\n"


def wants_help(argv: list[str]) -> bool:
    return any(a in ("--help", "-h") for a in argv)


__all__ = ["KEYS", "field_docs", "render_help", "wants_help"]
