"""The eight GLUE tasks as records: schema, label space, eval splits and metrics.

Single source of truth for *what a task is* (spec ``docs/algorithms.md`` §4.7 "Metrics" and
§5.2 "GLUE sizes"). Hyperparameters (lr, batch, updates) are not here: they live in ``conf/task/*.yaml``.

Metric keys used everywhere (records, report): ``matthews_correlation``, ``accuracy``, ``f1``, ``pearson``, ``spearmanr`` (the names of HF
``evaluate``'s GLUE metric);
MNLI's are suffixed by split: ``accuracy_matched``, ``accuracy_mismatched``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskInfo:
    """What the harness needs to know about one GLUE task."""

    name: str  #: lowercase key, also the ``conf/task`` file name and the Hub config name
    glue_dir: str  #: folder name in the original GLUE distribution (``glue_data/<glue_dir>``)
    text_keys: tuple[str, ...]  #: one column (single sentence) or two (a pair), Hub spelling
    num_labels: int  #: 1 means regression (STS-B)
    label_names: tuple[str, ...]  #: label id -> name, Hub order; empty for regression
    eval_splits: tuple[str, ...]  #: dev split(s), Hub split names
    selection_metric: str  #: picks the best checkpoint and the tuned rho (higher is better)
    paper_metrics: tuple[str, ...]  #: the numbers the paper's tables show, in column order
    train_size: int  #: Hub row count of ``train``
    eval_sizes: tuple[int, ...]  #: Hub row counts of ``eval_splits``

    @property
    def is_regression(self) -> bool:
        return self.num_labels == 1

    @property
    def is_pair(self) -> bool:
        return len(self.text_keys) == 2


TASKS: dict[str, TaskInfo] = {
    t.name: t
    for t in [
        TaskInfo(
            "cola",
            "CoLA",
            ("sentence",),
            2,
            ("unacceptable", "acceptable"),
            ("validation",),
            "matthews_correlation",
            ("matthews_correlation",),
            8551,
            (1043,),
        ),
        TaskInfo(
            "sst2",
            "SST-2",
            ("sentence",),
            2,
            ("negative", "positive"),
            ("validation",),
            "accuracy",
            ("accuracy",),
            67349,
            (872,),
        ),
        TaskInfo(
            "mrpc",
            "MRPC",
            ("sentence1", "sentence2"),
            2,
            ("not_equivalent", "equivalent"),
            ("validation",),
            "accuracy",
            ("accuracy", "f1"),
            3668,
            (408,),
        ),
        TaskInfo(
            "stsb",
            "STS-B",
            ("sentence1", "sentence2"),
            1,
            (),
            ("validation",),
            "pearson",
            ("pearson", "spearmanr"),
            5749,
            (1500,),
        ),
        TaskInfo(
            "qqp",
            "QQP",
            ("question1", "question2"),
            2,
            ("not_duplicate", "duplicate"),
            ("validation",),
            "accuracy",
            ("accuracy", "f1"),
            363846,
            (40430,),
        ),
        TaskInfo(
            "mnli",
            "MNLI",
            ("premise", "hypothesis"),
            3,
            ("entailment", "neutral", "contradiction"),
            ("validation_matched", "validation_mismatched"),
            "accuracy_matched",
            ("accuracy_matched", "accuracy_mismatched"),
            392702,
            (9815, 9832),
        ),
        TaskInfo(
            "qnli",
            "QNLI",
            ("question", "sentence"),
            2,
            ("entailment", "not_entailment"),
            ("validation",),
            "accuracy",
            ("accuracy",),
            104743,
            (5463,),
        ),
        TaskInfo(
            "rte",
            "RTE",
            ("sentence1", "sentence2"),
            2,
            ("entailment", "not_entailment"),
            ("validation",),
            "accuracy",
            ("accuracy",),
            2490,
            (277,),
        ),
    ]
}

#: Column order of the paper's tables.
TASK_ORDER: tuple[str, ...] = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte")


def get_task(name: str) -> TaskInfo:
    """Look a task up by name; an unknown name lists the valid ones."""
    key = name.lower().replace("-", "")
    if key not in TASKS:
        raise ValueError(f"unknown GLUE task {name!r}; valid tasks: {', '.join(TASK_ORDER)}")
    return TASKS[key]


def split_suffix(split: str) -> str:
    """``validation_matched`` -> ``matched``; ``validation`` -> ``''`` (metric-key suffix)."""
    return split.split("_", 1)[1] if "_" in split else ""
