"""The original GLUE TSV distribution (``glue_data/<Dir>/*.tsv``) and its parser.

Layout written by the classic ``download_glue_data.py`` script (fields per row in brackets)::

    glue_data/CoLA/{train,dev}.tsv          no header [4]: source, label, original mark, sentence
    glue_data/CoLA/test.tsv                 header ``index sentence`` [2]
    glue_data/SST-2/{train,dev,test}.tsv    header ``sentence label`` [2] (test: ``index sentence``)
    glue_data/MRPC/{train,dev,test}.tsv     UTF-8 BOM; header ``Quality #1 ID #2 ID #1 String #2 String`` [5]
    glue_data/STS-B/{train,dev,test}.tsv    [10] ``index genre filename year old_index source1 source2
                                            sentence1 sentence2 score`` (test [9]: no score)
    glue_data/QQP/{train,dev,test}.tsv      ``id qid1 qid2 question1 question2 is_duplicate`` [6] (test [3])
    glue_data/MNLI/{train,dev_matched,dev_mismatched,test_matched,test_mismatched}.tsv  10 columns, then
                                            on labelled files annotator labels ``label1`` (..``label5``)
                                            and ``gold_label`` last (train [12], dev [16], test [10])
    glue_data/QNLI/{train,dev,test}.tsv     ``index question sentence label`` [4] (string labels; test [3])
    glue_data/RTE/{train,dev,test}.tsv      ``index sentence1 sentence2 label`` [4] (string labels; test [3])

Test files carry no labels (the Hub stores ``-1``). Sentences contain unbalanced ``"`` so the files
are read with ``csv.QUOTE_NONE``, as the Hub's original loading script did; a tab or line break inside
a sentence therefore splits its row. Such a row is *malformed*: one with fewer fields than the
header (CoLA: 4), one with MORE (a tab inside a sentence: taking fields by position would silently put
the tail of sentence1 in sentence2 or cut the sentence), or one whose label does not parse. Malformed
rows are skipped and counted with their 1-based line numbers (``quality`` of ``parse_glue_tsv``), so a
run can record them. The only extra fields allowed are MNLI's annotator labels: the number of
``labelN`` columns varies between rows of the GLUE MNLI/SNLI files (the gold label stays last), so an
MNLI row may be longer than its header when every extra field is a label. A file that cannot be used
as a whole (no header, a header without the needed columns, no usable row, bytes that are not UTF-8)
raises ``TsvFormatError`` naming the file (and the line and byte). ``idx`` is the row's position among
the file's data rows (malformed ones included), as on the Hub.
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

#: Why a row was skipped (keys of ``quality["reasons"]``).
TOO_FEW_FIELDS = "too_few_fields"
TOO_MANY_FIELDS = "too_many_fields"
BAD_LABEL = "bad_label"
FIRST_LINES = 10  #: how many line numbers of skipped rows ``quality["first_lines"]`` keeps


@dataclass(frozen=True)
class TsvFormat:
    """Where the Hub columns live in one GLUE file: a header name, or a 0-based position (no header).

    A headered file's rows have exactly as many fields as its header; a header-less one's as many
    as ``fields`` names.
    ``label_run`` names the first of a run of annotator-label columns ending with the label, whose
    length varies between rows (MNLI): only such rows may be longer than the header.
    """

    header: bool
    columns: dict[str, str | int]  #: Hub text column -> TSV header name / position
    label: str | int | None  #: label column; ``None`` for unlabelled test files
    fields: tuple[str, ...] = ()  #: the field names of a header-less file (what a row must hold)
    label_run: str | None = None  #: first annotator-label column (MNLI ``label1``), else None


# (train/dev format, test format) per task, Hub column names on the left.
_FORMATS: dict[str, tuple[TsvFormat, TsvFormat]] = {
    "cola": (
        TsvFormat(False, {"sentence": 3}, 1, fields=("source", "label", "original mark", "sentence")),
        TsvFormat(True, {"sentence": "sentence"}, None),
    ),
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
        TsvFormat(
            True, {"premise": "sentence1", "hypothesis": "sentence2"}, "gold_label", label_run="label1"
        ),
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
    """A GLUE file that cannot be used as a whole: empty, a header without the needed columns, no
    usable row, or not UTF-8. The message names the file (and line) and says what was expected."""


def tsv_format(task: TaskInfo, split: str) -> TsvFormat:
    """The file format of one split of a task (test files have their own, unlabelled one)."""
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


def _refetch_hint(task: TaskInfo, path: Path) -> str:
    optional = " (test files are optional: deleting it is fine too)" if path.name.startswith("test") else ""
    return f"re-download the GLUE {task.glue_dir} data (download_glue_data.py) or repair the file{optional}"


def _not_utf8(path: Path, task: TaskInfo, err: UnicodeDecodeError) -> TsvFormatError:
    """Locate the first byte that is not UTF-8 (line, byte offset) with a binary pass over the file:
    the text reader decodes in chunks, so its error's position is relative to a chunk, not the file."""
    offset, where = 0, ""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            body = raw[3:] if lineno == 1 and raw.startswith(b"\xef\xbb\xbf") else raw
            try:
                body.decode("utf-8")
            except UnicodeDecodeError as bad:
                col = bad.start + len(raw) - len(body)
                where = (
                    f", line {lineno}: byte 0x{raw[col]:02x} at byte offset {offset + col} of the file "
                    f"(byte {col + 1} of the line)"
                )
                break
            offset += len(raw)
    return TsvFormatError(
        f"{path}{where} is not valid UTF-8 ({err.reason}); the GLUE files are UTF-8. "
        f"Fix: {_refetch_hint(task, path)}, or convert it to UTF-8 "
        f"(e.g. iconv -f latin1 -t utf-8 {path.name} > fixed.tsv)"
    )


def _expected(fmt: TsvFormat, names: list[str], task: TaskInfo, path: Path) -> str:
    """What a good row of this file looks like, for messages."""
    extra = " or more (extra annotator labels)" if fmt.label_run else ""
    return (
        f"{len(names)}{extra} tab-separated fields ({' | '.join(names)}) for GLUE {task.glue_dir} {path.name}"
    )


def parse_glue_tsv(path: str | Path, task: TaskInfo, split: str) -> tuple[dict[str, list], dict[str, Any]]:
    """Parse one GLUE TSV file into Hub columns (text keys, ``label``, ``idx``) and its data quality.

    ``quality`` (JSON-serialisable): ``file``, ``rows`` (rows kept), ``skipped`` (malformed rows
    skipped; ``rows + skipped`` = the file's data rows), ``reasons`` (``too_few_fields`` /
    ``too_many_fields`` / ``bad_label`` -> count), ``first_lines`` (1-based line numbers in the file
    of the first ``FIRST_LINES`` skipped rows) and ``expected`` (what a good row looks like). Nothing
    is logged: the caller reports (``describe_skipped``), on every load, cached or not.
    Raises ``TsvFormatError`` (naming the file) for an empty file, a header lacking a needed column,
    a file with no usable row, or bytes that are not UTF-8 (naming the line and byte offset too).
    """
    path = Path(path)
    fmt = tsv_format(task, split)
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 24))  # MNLI parse columns can be long
    out: dict[str, list] = {key: [] for key in task.text_keys}
    out["label"], out["idx"] = [], []
    reasons: dict[str, int] = {}
    first_lines: list[int] = []
    names = list(fmt.fields)
    n = 0

    def skip(reason: str, line: int) -> None:
        reasons[reason] = reasons.get(reason, 0) + 1
        if len(first_lines) < FIRST_LINES:
            first_lines.append(line)

    try:
        # utf-8-sig drops MRPC's BOM; newline=None mirrors the Hub script's line splitting (row counts).
        with open(path, encoding="utf-8-sig") as f:
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            run_start: int | None = None
            if fmt.header:
                header = next(reader, None)
                wanted = [*fmt.columns.values(), *([fmt.label] if fmt.label is not None else [])]
                if header is None:
                    raise TsvFormatError(
                        f"{path} is empty; expected a header line with the columns {wanted} and data rows "
                        f"of the original GLUE {task.glue_dir} format. Fix: {_refetch_hint(task, path)}"
                    )
                names = [h.strip() for h in header]
                missing = [c for c in wanted if c not in names]
                if missing:
                    raise TsvFormatError(
                        f"{path}: header {names} lacks column(s) {missing}; expected the original GLUE "
                        f"{task.glue_dir} format (columns {wanted})"
                    )
                pos = {key: names.index(col) for key, col in fmt.columns.items()}
                label_pos = names.index(fmt.label) if fmt.label is not None else None
                width = len(names)
                if fmt.label_run is not None and fmt.label_run in names:
                    run_start = names.index(fmt.label_run)
            else:
                pos = dict(fmt.columns)  # type: ignore[arg-type]
                label_pos = fmt.label  # type: ignore[assignment]
                width = len(names)
            for row in reader:
                if not row:  # blank line: not a data row
                    continue
                idx, n = n, n + 1
                if len(row) < width:
                    skip(TOO_FEW_FIELDS, reader.line_num)
                    continue
                value = None if label_pos is None else row[label_pos]
                if len(row) > width:
                    # Only a longer run of annotator labels (all labels, or empty) may add fields.
                    if run_start is None or any(
                        v.strip() and _parse_label(v, task) is None for v in row[run_start:-1]
                    ):
                        skip(TOO_MANY_FIELDS, reader.line_num)
                        continue
                    value = row[-1]  # the gold label stays the last column
                if value is None:
                    label: int | float | None = -1.0 if task.is_regression else -1
                else:
                    label = _parse_label(value, task)
                    if label is None:
                        skip(BAD_LABEL, reader.line_num)
                        continue
                for key, p in pos.items():
                    out[key].append(row[p])
                out["label"].append(label)
                out["idx"].append(idx)
    except UnicodeDecodeError as err:
        raise _not_utf8(path, task, err) from None
    expected = _expected(fmt, names, task, path)
    quality: dict[str, Any] = {
        "file": str(path),
        "rows": len(out["idx"]),
        "skipped": n - len(out["idx"]),
        "reasons": reasons,
        "first_lines": first_lines,
        "expected": expected,
    }
    if not out["idx"]:
        what = (
            "has a header but no data rows"
            if n == 0 and fmt.header
            else "has no data rows"
            if n == 0
            else f"has no usable row: all {n} data rows are malformed ({_reasons_text(reasons)}; "
            f"lines {_lines_text(quality)})"
        )
        raise TsvFormatError(f"{path} {what}; expected rows of {expected}. Fix: {_refetch_hint(task, path)}")
    return out, quality


def _reasons_text(reasons: dict[str, int]) -> str:
    return ", ".join(f"{count} {reason.replace('_', ' ')}" for reason, count in sorted(reasons.items()))


def _lines_text(quality: dict[str, Any]) -> str:
    lines = ", ".join(map(str, quality["first_lines"]))
    return lines + (", ..." if quality["skipped"] > len(quality["first_lines"]) else "")


def describe_skipped(quality: dict[str, Any]) -> str | None:
    """One warning line for a file's skipped rows (None when none was skipped): how many, why, where,
    what a good row looks like and how to fix it."""
    skipped = quality.get("skipped", 0)
    if not skipped:
        return None
    return (
        f"{quality.get('file')}: skipped {skipped} malformed row(s) of {quality['rows'] + skipped} "
        f"({_reasons_text(quality['reasons'])}; lines {_lines_text(quality)}); expected "
        f"{quality.get('expected', 'the original GLUE format')}. A tab or line break inside a sentence "
        f"splits its row: fix those lines to keep them"
    )


def read_glue_tsv(path: str | Path, task: TaskInfo, split: str) -> dict[str, list]:
    """Parse one GLUE TSV file into Hub columns (text keys, ``label``, ``idx``).

    Malformed rows (fewer or more fields than the format has, unparsable label) are skipped and
    reported in ONE warning; ``parse_glue_tsv`` also returns the counts.
    """
    out, quality = parse_glue_tsv(path, task, split)
    message = describe_skipped(quality)
    if message:
        logger.warning("%s", message)
    return out
