"""The lr-tuning stage's result: one generated ``tuned_lr.json`` per (tuning experiment, task, optimizer).

SGD and SAM have no recipe lr. A *tuning experiment* (``conf/experiment/*_tune.yaml``) trains a grid of
lrs on one seed; :func:`select` picks, per (task, optimizer), the lr with the best dev metric (the
record's ``best.metrics[selection_metric]``; a diverged run never wins) and writes it next to the grid's
runs::

    <results_dir>/runs/<tuning experiment>/<task>/<optimizer>/tuned_lr.json

A table that depends on it sets ``optim.lr: ${tuned_lr:<tuning experiment>}`` (``table2.yaml``,
``table4.yaml``, ``cpu_scale_table2.yaml``). The resolver reads that file for the run's task and
optimizer and returns its ``lr``; a missing file, or one tuned under another recipe (model, data, updates,
schedule, beta1, weight decay, ...), is an error naming the command that writes it. No placeholder lr is
ever substituted.

File format (``schema_version`` 1), written by :func:`select`, read by the resolver and the report::

    {
      "schema_version": 1,
      "kind": "tuned_lr",
      "tuning_experiment": "table2_tune",      # the runs' experiment_name (also the folder)
      "task": "rte", "optimizer": "sgd",
      "selection_metric": "accuracy",          # the task's selection metric (higher is better)
      "seeds": [1],                            # a grid point's metric is the mean over these seeds
      "tuned_at": {"beta1": 0.9, "rho": null, "weight_decay": 0.1},
      "grid": [0.001, 0.003, 0.01, 0.03],      # the lrs swept, ascending
      "points": [                              # one per grid lr, ascending
        {"lr": 0.001, "metric": 0.70,          # mean dev metric at the best checkpoint; null if not usable
         "status": "completed",                # completed | diverged | mixed (seeds differ)
         "seeds": [{"seed": 1, "status": "completed", "metric": 0.70, "best_update": 1800,
                    "run_dir": "<config dir>/seed1"}]},   # relative to this file's folder
        ...
      ],
      "lr": 0.01,                              # the selected lr (what the tables train with)
      "metric": 0.74,                          # its dev metric
      "at_edge": false,                        # the smallest or largest grid value, strictly best
      "edge": null,                            # "low" | "high" | "both" (one-point grid) | null
      "tied": [],                              # the lrs with the selected lr's metric, when several
      "flat": false,                           # true when every lr ties: no effect of lr on the metric
      "recipe": {...},                         # RECIPE_KEYS of the tuning runs (checked on use)
      "written_at": "2025-01-01T00:00:00Z"
    }

Selection rule: among grid points whose every seed completed with a finite metric, the highest mean
metric; ties go to the smaller lr. A point with a diverged seed is never selected; a record that says
``completed`` but breaks the divergence rule (:func:`adasam_glue.records.skip_rule_verdict`: fp16 updates
nearly all skipped, or a non-finite last train loss) counts as diverged, its seed entry saying why
(``"note"``). A group with a grid
point that has not finished (no record, or running/preempted/failed) is not selected at all: finish the
tuning runs first (rerunning skips completed ones).
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

SCHEMA_VERSION = 1
FILE_NAME = "tuned_lr.json"
#: Tuning experiments are named ``<something>_tune`` (the report leaves their runs out of the tables).
TUNING_SUFFIX = "_tune"
#: ``experiment_name`` suffix of runs started from this harness's own MNLI run (reproduce-all --own-mnli).
OWN_MNLI_SUFFIX = "-own-mnli"
#: ``optim.lr: ${tuned_lr:<tuning experiment>}``, as the table YAMLs write it.
INTERPOLATION_RE = re.compile(r"\$\{tuned_lr:\s*([\w.-]+)\s*\}")

#: Config keys that must be equal between the tuning runs and a run that uses their lr (the recipe).
#: Left out on purpose: optim.lr (what is tuned), optim.rho (SAM is tuned at one rho and the lr is used
#: at every rho of the table), seed, and keys that never change a result (paths, logging, sharpness).
RECIPE_KEYS = (
    "model.name",
    "model.path",
    "model.revision",
    "model.source",
    "model.dropout",
    "task.name",
    "task.num_labels",
    "task.batch_size",
    "task.total_updates",
    "task.warmup_updates",
    "task.epochs",
    "task.max_length",
    "task.metric",
    "task.init_from",
    "optim.name",
    "optim.beta1",
    "optim.beta2",
    "optim.weight_decay",
    "optim.nesterov",
    "optim.sync_ascent",
    "data.source",
    "data.max_train_samples",
    "data.max_eval_samples",
    "trainer.max_updates",
    "trainer.eval_every",
    "trainer.schedule",
    "trainer.min_lr_ratio",
    "trainer.batch_schedule",
    "trainer.mixed_precision",
    "trainer.max_grad_norm",
)
_SYNTHETIC_KEYS = ("data.synthetic_train_size", "data.synthetic_eval_size", "data.synthetic_seed")


class TunedLrError(ValueError):
    """No usable tuned lr for a run (file missing, unreadable, or tuned under another recipe)."""


# ------------------------------------------------------------------------------------------ locations
def tuning_dir_name(experiment_name: str, tuning: str) -> str:
    """The tuning runs' ``experiment_name`` for a run of ``experiment_name``: the own-MNLI variant of a
    table (``table2-own-mnli``) reads the own-MNLI variant of its tuning (``table2_tune-own-mnli``)."""
    if str(experiment_name).endswith(OWN_MNLI_SUFFIX) and not tuning.endswith(OWN_MNLI_SUFFIX):
        return tuning + OWN_MNLI_SUFFIX
    return tuning


def selection_path(results_dir: str | Path, tuning_name: str, task: str, optim: str) -> Path:
    """``<results_dir>/runs/<tuning_name>/<task>/<optim>/tuned_lr.json`` (absolute)."""
    return Path(results_dir).expanduser().absolute() / "runs" / tuning_name / task / optim / FILE_NAME


def is_tuning_experiment(name: str | None) -> bool:
    """True for a tuning experiment's runs (``*_tune``, also ``*_tune-own-mnli``)."""
    name = str(name or "")
    if name.endswith(OWN_MNLI_SUFFIX):
        name = name[: -len(OWN_MNLI_SUFFIX)]
    return name.endswith(TUNING_SUFFIX)


def tuned_by(cfg: DictConfig) -> str | None:
    """The tuning experiment named by ``optim.lr`` (``${tuned_lr:X}`` -> ``X``), else None."""
    raw = OmegaConf.to_container(cfg.optim, resolve=False).get("lr") if "optim" in cfg else None
    m = INTERPOLATION_RE.fullmatch(raw.strip()) if isinstance(raw, str) else None
    return m.group(1) if m else None


def tune_command(tuning: str, results_dir: str | Path | None = None) -> str:
    extra = f" results_dir={results_dir}" if results_dir is not None else ""
    return f"python -m adasam_glue.experiments reproduce-all --only {tuning}{extra}"


# --------------------------------------------------------------------------------------------- recipe
def _select(cfg: Any, key: str) -> Any:
    if isinstance(cfg, DictConfig):
        return OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _plain(value: Any) -> Any:
    if OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True)
    return value


def recipe(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The values of :data:`RECIPE_KEYS` (plus the synthetic data keys when ``data.source=synthetic``).

    Never reads ``optim.lr`` (so it is safe inside the resolver that computes it)."""
    from adasam_glue.identity import add_task_facts

    keys = list(RECIPE_KEYS)
    if _select(cfg, "data.source") == "synthetic":
        keys += _SYNTHETIC_KEYS
    out = {k: _plain(_select(cfg, k)) for k in keys}
    if out.get("task.num_labels") is None:  # a fact of the task, as the identity states it (not in conf/)
        facts: dict[str, Any] = {"task": {"name": out.get("task.name")}}
        add_task_facts(facts)
        out["task.num_labels"] = facts["task"].get("num_labels")
    return out


def recipe_diff(stored: Mapping[str, Any], now: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    keys = list(dict.fromkeys([*stored, *now]))
    return [(k, stored.get(k), now.get(k)) for k in keys if stored.get(k) != now.get(k)]


# --------------------------------------------------------------------------------------------- lookup
@dataclass(frozen=True)
class Lookup:
    tuning: str  #: the tuning experiment as the config names it
    path: Path  #: where its selection for this run's task and optimizer lives
    lr: float | None  #: the selected lr, None when unusable (see ``problem``)
    problem: str | None  #: why there is no lr (a sentence naming the command that fixes it)
    selection: dict[str, Any] | None  #: the file's content when readable


def lookup(cfg: DictConfig, tuning: str) -> Lookup:
    """The tuned lr for the run ``cfg`` describes, or the reason there is none."""
    results_dir = _select(cfg, "results_dir") or "results"
    task, optim = _select(cfg, "task.name"), _select(cfg, "optim.name")
    name = tuning_dir_name(_select(cfg, "experiment_name") or "", tuning)
    path = selection_path(results_dir, name, task, optim)
    command = tune_command(tuning)
    where = f"task={task} optim={optim}"
    if not path.exists():
        return Lookup(
            tuning,
            path,
            None,
            f"no tuned lr for {where}: {path} does not exist. The lr-tuning stage writes it: run "
            f"`{command} <the same overrides as this run>` first (make reproduce-all runs it before the "
            f"tables that need it; `python -m adasam_glue.experiments select-lr {tuning} ...` re-selects from "
            "finished tuning runs).",
            None,
        )
    try:
        sel = json.loads(path.read_text(encoding="utf-8"))
        lr = float(sel["lr"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        return Lookup(tuning, path, None, f"unreadable tuned lr file {path} ({e}): rerun `{command}`", None)
    if sel.get("schema_version") != SCHEMA_VERSION or not math.isfinite(lr) or lr <= 0:
        return Lookup(tuning, path, None, f"{path} is not a valid tuned lr file: rerun `{command}`", sel)
    diff = recipe_diff(sel.get("recipe") or {}, recipe(cfg))
    if diff:
        shown = "; ".join(f"{k}: tuned {a!r}, this run {b!r}" for k, a, b in diff[:6])
        more = f" (+{len(diff) - 6} more)" if len(diff) > 6 else ""
        return Lookup(
            tuning,
            path,
            None,
            f"the tuned lr in {path} was selected under another recipe ({shown}{more}): rerun the tuning "
            f"stage with this run's overrides (`{command} <the same overrides as this run>`), or use another "
            "results_dir",
            sel,
        )
    return Lookup(tuning, path, lr, None, sel)


def _resolve_tuned_lr(tuning: str, *, _root_: DictConfig) -> float:
    """``${tuned_lr:<tuning experiment>}``: the selected lr for this run's task and optimizer."""
    found = lookup(_root_, str(tuning))
    if found.lr is None:
        raise TunedLrError(found.problem)
    return found.lr


OmegaConf.register_new_resolver("tuned_lr", _resolve_tuned_lr, replace=True)


try:  # registered through hydra.callbacks of the tables that read a tuned lr (imports this module)
    from hydra.experimental.callback import Callback as _Callback
except ImportError:  # pragma: no cover - hydra < 1.1
    _Callback = object  # type: ignore[assignment,misc]


class RegisterTunedLr(_Callback):  # type: ignore[misc,valid-type]
    """Hydra callback whose only job is importing this module, which registers ``${tuned_lr:...}``
    before any job config is resolved (``hydra.callbacks.tuned_lr`` in the tables' YAML). Also works
    inside a submitit job: the pickled callback imports this module when it is unpickled."""


# ------------------------------------------------------------------------------------------ selection
@dataclass(frozen=True)
class TuningRun:
    """One finished-or-not run of the tuning grid, as :func:`select` needs it."""

    task: str
    optim: str
    lr: float
    seed: int
    run_dir: Path
    recipe: dict[str, Any]
    tuned_at: dict[str, Any]  #: beta1, rho, weight_decay of the run


def _metric(record: Mapping[str, Any]) -> float | None:
    best = record.get("best") or {}
    key = record.get("selection_metric")
    value = (best.get("metrics") or {}).get(key) if key else None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _relative_to(run_dir: Path, folder: Path) -> str:
    """``run_dir`` as a path relative to ``folder`` (the selection file's), POSIX-style, so that a committed
    ``tuned_lr.json`` names its runs the same on every clone; absolute only where no relative path exists
    (another drive)."""
    try:
        return Path(os.path.relpath(run_dir, folder)).as_posix()
    except ValueError:
        return str(run_dir)


def _read(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / "record.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def choose(points: Sequence[Mapping[str, Any]]) -> tuple[float | None, str | None]:
    """``(lr, edge)`` from grid points ``{"lr", "metric", "status"}`` (ascending lr): the best metric among
    completed points (ties: the smaller lr), never a diverged or unfinished one; ``edge`` is ``"low"`` /
    ``"high"`` when it is the grid's smallest / largest lr and strictly better than every other point. A
    smallest lr that ties a larger one is no edge: the best values reach into the grid (when every lr
    ties, :func:`tied_lrs` says so), and extending the grid downward would chase the tie rule."""
    usable = [p for p in points if p["status"] == "completed" and p["metric"] is not None]
    if not usable:
        return None, None
    best = max(usable, key=lambda p: (p["metric"], -p["lr"]))
    grid = sorted(p["lr"] for p in points)
    if len(grid) == 1:
        return best["lr"], "both"  # a one-point grid tunes nothing
    if len(tied_lrs(points, best["lr"])) > 1:
        return best["lr"], None
    edge = "low" if best["lr"] == grid[0] else "high" if best["lr"] == grid[-1] else None
    return best["lr"], edge


def tied_lrs(points: Sequence[Mapping[str, Any]], lr: float) -> list[float]:
    """The completed grid points whose dev metric equals that of ``lr`` (``lr`` included), ascending. Equal
    means equal: runs that make the same predictions (every one the majority class) give the same float."""
    usable = [p for p in points if p["status"] == "completed" and p["metric"] is not None]
    target = next((p["metric"] for p in usable if p["lr"] == lr), None)
    return sorted(p["lr"] for p in usable if target is not None and p["metric"] == target)


def select(
    runs: Iterable[TuningRun], tuning_name: str, results_dir: str | Path, write: bool = True
) -> list[str]:
    """Select per (task, optimizer) and write the files; return one line per group saying what happened."""
    from adasam_glue.records import atomic_write_text, skip_rule_verdict
    from adasam_glue.tasks import TASKS

    groups: dict[tuple[str, str], list[TuningRun]] = {}
    for r in runs:
        groups.setdefault((r.task, r.optim), []).append(r)
    lines = []
    for (task, optim), group in groups.items():
        path = selection_path(results_dir, tuning_name, task, optim)
        recipes = {json.dumps(r.recipe, sort_keys=True, default=str) for r in group}
        if len(recipes) != 1:
            lines.append(f"not selected {task}/{optim}: the grid's runs differ in more than lr and seed")
            continue
        by_lr: dict[float, list[TuningRun]] = {}
        for r in group:
            by_lr.setdefault(float(r.lr), []).append(r)
        points, unfinished = [], []
        for lr in sorted(by_lr):
            seeds = []
            for r in sorted(by_lr[lr], key=lambda r: r.seed):
                rec = _read(r.run_dir)
                status = (rec or {}).get("status")
                verdict = skip_rule_verdict(rec) if rec else None
                if verdict:  # an old record's "completed" for a run that did not train
                    status = "diverged"
                seeds.append(
                    {
                        "seed": r.seed,
                        "status": status,
                        "metric": _metric(rec) if rec and status == "completed" else None,
                        "best_update": ((rec or {}).get("best") or {}).get("update"),
                        "run_dir": _relative_to(r.run_dir, path.parent),
                    }
                    | ({"note": verdict} if verdict else {})
                )
                if status not in ("completed", "diverged"):
                    unfinished.append(f"lr {lr:g} seed {r.seed}: {status or 'not run'}")
            statuses = {s["status"] for s in seeds}
            ok = statuses == {"completed"} and all(s["metric"] is not None for s in seeds)
            points.append(
                {
                    "lr": lr,
                    "metric": sum(s["metric"] for s in seeds) / len(seeds) if ok else None,
                    "status": statuses.pop() if len(statuses) == 1 else "mixed",
                    "seeds": seeds,
                }
            )
        if unfinished:
            lines.append(f"not selected {task}/{optim}: unfinished grid points ({'; '.join(unfinished)})")
            continue
        lr, edge = choose(points)
        if lr is None:
            lines.append(
                f"not selected {task}/{optim}: no grid point completed with a finite dev metric "
                "(every lr diverged?): extend the grid downward"
            )
            continue
        chosen = next(p for p in points if p["lr"] == lr)
        tied = tied_lrs(points, lr)
        flat = len(tied) == len(points) > 1  # every lr gives the same dev metric: no effect of lr shown
        selection = {
            "schema_version": SCHEMA_VERSION,
            "kind": "tuned_lr",
            "tuning_experiment": tuning_name,
            "task": task,
            "optimizer": optim,
            "selection_metric": TASKS[task].selection_metric if task in TASKS else None,
            "seeds": sorted({r.seed for r in group}),
            "tuned_at": group[0].tuned_at,
            "grid": [p["lr"] for p in points],
            "points": points,
            "lr": lr,
            "metric": chosen["metric"],
            "at_edge": edge is not None,
            "edge": edge,
            "tied": tied if len(tied) > 1 else [],
            "flat": flat,
            "recipe": group[0].recipe,
            "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        if write and not _same_selection(path, selection):
            atomic_write_text(path, json.dumps(selection, indent=2) + "\n")
        flag = f"  AT THE {edge.upper()} EDGE of the grid: extend it and rerun" if edge else ""
        if flat:
            flag = "  EVERY lr TIES on the dev metric: the grid shows no effect of lr (the tie rule took the smallest)"
        lines.append(
            f"selected {task}/{optim}: lr={lr:g} ({selection['selection_metric']} {chosen['metric']:.4f}; grid "
            + ", ".join(
                f"{p['lr']:g}:{'diverged' if p['status'] == 'diverged' else _fmt_metric(p['metric'])}"
                for p in points
            )
            + f") -> {path}{flag}"
        )
    return lines


def _same_selection(path: Path, selection: Mapping[str, Any]) -> bool:
    """Whether ``path`` already holds ``selection`` (but its ``written_at``): a rerun of the selection on
    the same finished grid leaves the committed file as it is."""
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    drop = lambda d: {k: v for k, v in d.items() if k != "written_at"}  # noqa: E731
    return isinstance(old, dict) and drop(old) == drop(json.loads(json.dumps(selection)))


def _fmt_metric(m: float | None) -> str:
    return "-" if m is None else f"{m:.4f}"


def read_selections(runs_dir: str | Path) -> list[dict[str, Any]]:
    """Every ``tuned_lr.json`` under a runs tree (``<results_dir>/runs``), sorted by (tuning, task, optim),
    each with ``path`` added: what the report shows (selected lr, grid, edge flag)."""
    out = []
    for p in sorted(Path(runs_dir).rglob(FILE_NAME)):
        try:
            sel = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(sel, dict) and sel.get("kind") == "tuned_lr":
            out.append({**sel, "path": str(p)})
    return sorted(
        out, key=lambda s: (s.get("tuning_experiment", ""), s.get("task", ""), s.get("optimizer", ""))
    )
