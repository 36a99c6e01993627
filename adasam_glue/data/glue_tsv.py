"""The original GLUE TSV distribution (``glue_data/<Dir>/*.tsv``) and its parser.

Layout written by the classic ``download_glue_data.py`` script::

    glue_data/CoLA/{train,dev,test}.tsv     train/dev: no header, 4 columns (source, label, mark, sentence)
    glue_data/SST-2/{train,dev,test}.tsv    header ``sentence label``
    glue_data/MRPC/{train,dev,test}.tsv     UTF-8 BOM; header ``Quality #1 ID #2 ID #1 String #2 String``
    glue_data/STS-B/{train,dev,test}.tsv    10 columns, float ``score``
    glue_data/QQP/{train,dev,test}.tsv      ``id qid1 qid2 question1 question2 is_duplicate``
    glue_data/MNLI/{train,dev_matched,dev_mismatched,test_matched,test_mismatched}.tsv  (12-15 columns)
    glue_data/QNLI/{train,dev,test}.tsv     ``index question sentence label`` (string labels)
    glue_data/RTE/{train,dev,test}.tsv      ``index sentence1 sentence2 label`` (string labels)

Test files carry no labels (the Hub stores ``-1``). Sentences contain unbalanced ``"`` so the files
are read with ``csv.QUOTE_NONE``, as the Hub's original loading script did. A row that lacks a needed
field or whose label does not parse is skipped; the skipped rows of one file are reported in ONE
warning. ``idx`` is the row's position among the file's data rows (malformed ones included), as on
the Hub.
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass
from pathlib import Path

from adasam_glue.tasks import TaskInfo

logger = logging.getLogger(__name__)

#: Hub split name -> file name in the task folder.
SPLIT_FILES: dict[str, str] = {
    "train": "train.tsv",
    "validation": "dev.tsv",
    "test": "test.tsv",
    "validation_matched": "dev_matched.tsv",
    "validation_mismatched": "dev_mismatched.tsv",
    "test_matched": "test_matched.tsv",
    "test_mismatched": "test_mismatched.tsv",
}


@dataclass(frozen=True)
class TsvFormat:
    """Where the Hub columns live in one GLUE file: a header name, or a 0-based position (no header)."""

    header: bool
    columns: dict[str, str | int]  #: Hub text column -> TSV header name / position
    label: str | int | None  #: label column; ``None`` for unlabelled test files


# (train/dev format, test format) per task, Hub column names on the left.
_FORMATS: dict[str, tuple[TsvFormat, TsvFormat]] = {
    "cola": (TsvFormat(False, {"sentence": 3}, 1), TsvFormat(True, {"sentence": "sentence"}, None)),
    "sst2": (
        TsvFormat(True, {"sentence": "sentence"}, "label"),
        TsvFormat(True, {"sentence": "sentence"}, None),
    ),
    "mrpc": (
        TsvFormat(True, {"sentence1": "#1 String", "sentence2": "#2 String"}, "Quality"),
        TsvFormat(True, {"sentence1": "#1 String", "sentence2": "#2 String"}, None),
    ),
    "stsb": (
        TsvFormat(True, {"sentence1": "sentence1", "sentence2": "sentence2"}, "score"),
        TsvFormat(True, {"sentence1": "sentence1", "sentence2": "sentence2"}, None),
    ),
    "qqp": (
        TsvFormat(True, {"question1": "question1", "question2": "question2"}, "is_duplicate"),
        TsvFormat(True, {"question1": "question1", "question2": "question2"}, None),
    ),
    "mnli": (
        TsvFormat(True, {"premise": "sentence1", "hypothesis": "sentence2"}, "gold_label"),
        TsvFormat(True, {"premise": "sentence1", "hypothesis": "sentence2"}, None),
    ),
    "qnli": (
        TsvFormat(True, {"question": "question", "sentence": "sentence"}, "label"),
        TsvFormat(True, {"question": "question", "sentence": "sentence"}, None),
    ),
    "rte": (
        TsvFormat(True, {"sentence1": "sentence1", "sentence2": "sentence2"}, "label"),
        TsvFormat(True, {"sentence1": "sentence1", "sentence2": "sentence2"}, None),
    ),
}


class TsvFormatError(ValueError):
    """A GLUE file whose header lacks a needed column (the whole file is wrong, not one row)."""


def tsv_format(task: TaskInfo, split: str) -> TsvFormat:
    labelled, test = _FORMATS[task.name]
    return test if split.startswith("test") else labelled


def _parse_label(value: str, task: TaskInfo) -> int | float | None:
    """Label text -> Hub label (class id or float score); ``None`` if it does not parse."""
    value = value.strip()
    if task.is_regression:
        try:
            score = float(value)
        except ValueError:
            return None
        return score if math.isfinite(score) else None
    if value in task.label_names:
        return task.label_names.index(value)
    try:
        label = int(value)
    except ValueError:
        return None
    return label if 0 <= label < task.num_labels else None


def read_glue_tsv(path: str | Path, task: TaskInfo, split: str) -> dict[str, list]:
    """Parse one GLUE TSV file into Hub columns (text keys, ``label``, ``idx``).

    Rows missing a needed field or with an unparsable label are skipped and counted in one warning.
    """
    path = Path(path)
    fmt = tsv_format(task, split)
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 24))  # MNLI parse columns can be long
    out: dict[str, list] = {key: [] for key in task.text_keys}
    out["label"], out["idx"] = [], []
    bad: list[int] = []  # 1-based line numbers of skipped rows (first few go in the warning)
    # utf-8-sig drops MRPC's BOM; newline=None mirrors the Hub script's line splitting (row counts).
    with open(path, encoding="utf-8-sig") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        if fmt.header:
            header = next(reader, None) or []
            names = [h.strip() for h in header]
            wanted = [*fmt.columns.values(), *([fmt.label] if fmt.label is not None else [])]
            missing = [c for c in wanted if c not in names]
            if missing:
                raise TsvFormatError(
                    f"{path}: header {names} lacks column(s) {missing}; expected the original GLUE "
                    f"{task.glue_dir} format (columns {wanted})"
                )
            pos = {key: names.index(col) for key, col in fmt.columns.items()}
            label_pos = names.index(fmt.label) if fmt.label is not None else None
        else:
            pos = dict(fmt.columns)  # type: ignore[arg-type]
            label_pos = fmt.label  # type: ignore[assignment]
        need = max([*pos.values(), *([label_pos] if label_pos is not None else [])]) + 1
        n = 0
        for row in reader:
            if not row:  # blank line: not a data row
                continue
            idx, n = n, n + 1
            if len(row) < need:
                bad.append(reader.line_num)
                continue
            if label_pos is None:
                label: int | float | None = -1.0 if task.is_regression else -1
            else:
                label = _parse_label(row[label_pos], task)
                if label is None:
                    bad.append(reader.line_num)
                    continue
            for key, p in pos.items():
                out[key].append(row[p])
            out["label"].append(label)
            out["idx"].append(idx)
    if bad:
        logger.warning(
            "%s: skipped %d malformed row(s) of %d (missing fields or unparsable label; lines %s%s)",
            path,
            len(bad),
            n,
            ", ".join(map(str, bad[:5])),
            ", ..." if len(bad) > 5 else "",
        )
    return out
