"""Malformed GLUE TSV rows and files: a row with more fields than its format (a tab inside a sentence)
is counted and skipped with its line number, never read by position; unusable files (header only, all
rows malformed, bytes that are not UTF-8) are one ``DataError`` naming the file (and line); the
counts reach ``build_dataloaders(...).data_quality`` on every load, cached or not.

Every fixture is written here (tmp_path). ``adasam_glue.data`` is imported as a module so that the
old-API assertions run (and fail) even where the new names do not exist yet.
"""

from __future__ import annotations

import json
import logging

import datasets
import pytest

import adasam_glue.data as data
import adasam_glue.data.sources as load_module
from adasam_glue.data import DataError, load_glue
from adasam_glue.tasks import TASK_ORDER, get_task
from adasam_glue.tokenizer_offline import build_offline_tokenizer
from tests.conftest import data_config
from tests.test_data import write_glue_fixture

datasets.disable_progress_bars()

T = "\t"
MRPC_HEADER = f"Quality{T}#1 ID{T}#2 ID{T}#1 String{T}#2 String"
RTE_HEADER = f"index{T}sentence1{T}sentence2{T}label"


def _write(path, lines, bom=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(("\ufeff" if bom else "") + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def _mrpc(root, train_rows, dev_rows=None):
    """An MRPC folder (BOM + header, as the GLUE script writes it)."""
    dev_rows = dev_rows or [f"1{T}10{T}11{T}The pie business does not fit .{T}It does not fit ."]
    _write(root / "MRPC/train.tsv", [MRPC_HEADER, *train_rows], bom=True)
    _write(root / "MRPC/dev.tsv", [MRPC_HEADER, *dev_rows], bom=True)
    return root


def _counts(q):
    return {k: q[k] for k in ("rows", "skipped", "reasons", "first_lines")}


def test_tab_inside_mrpc_sentence_is_a_counted_malformed_row(tmp_path, caplog):
    root = _mrpc(
        tmp_path / "glue",
        [
            f"1{T}1{T}2{T}Amrozi accused his brother .{T}Referring to him , Amrozi accused his brother .",
            f"0{T}3{T}4{T}Yucaipa owned Dominick 's{T}before selling the chain .{T}Yucaipa bought it in 1995 .",
            f"1{T}5{T}6{T}Shares rose 3 % .{T}The shares rose 3 percent .",
        ],
    )
    with caplog.at_level(logging.WARNING):
        dd = load_glue("mrpc", source="tsv", data_dir=root, cache_dir=tmp_path / "c")
    train = dd["train"]
    assert len(train) == 2  # line 3 (a tab inside "#1 String": 6 fields for 5 columns) is skipped
    assert "before selling the chain ." not in train["sentence2"]  # not read by position
    assert train["sentence2"] == [
        "Referring to him , Amrozi accused his brother .",
        "The shares rose 3 percent .",
    ]
    assert train["idx"] == [0, 2]  # Hub idx: position among the data rows, the malformed one included
    (warn,) = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
    assert "MRPC/train.tsv" in warn and "1 too many fields" in warn and "lines 3" in warn
    assert "expected 5 tab-separated fields (Quality | #1 ID | #2 ID | #1 String | #2 String)" in warn
    _, quality = data.load_glue_with_quality("mrpc", source="tsv", data_dir=root, cache_dir=tmp_path / "c")
    assert _counts(quality["train"]) == {
        "rows": 2,
        "skipped": 1,
        "reasons": {"too_many_fields": 1},
        "first_lines": [3],
    }
    assert quality["train"]["file"] == str(root / "MRPC/train.tsv")
    assert _counts(quality["validation"]) == {"rows": 1, "skipped": 0, "reasons": {}, "first_lines": []}
    json.dumps(quality)  # goes into the run record as is


def test_tab_inside_cola_sentence_is_a_counted_malformed_row(tmp_path):
    root = tmp_path / "glue"
    _write(
        root / "CoLA/train.tsv",
        [
            f"gj04{T}1{T}{T}Our friends won't buy this analysis.",
            f"gj04{T}0{T}*{T}They drank the pub{T}dry.",  # tab inside the sentence: 5 fields
            f"gj04{T}1{T}{T}The sailors rode the breeze.",
            f"gj04{T}1{T}",  # sentence missing: 3 fields
            f"bc01{T}1{T}{T}He said hello to me.",
        ],
    )
    _write(root / "CoLA/dev.tsv", [f"gj04{T}1{T}{T}The more Bill smokes, the more he coughs."])
    dd = load_glue("cola", source="tsv", data_dir=root, cache_dir=tmp_path / "c")
    assert dd["train"]["sentence"] == [
        "Our friends won't buy this analysis.",
        "The sailors rode the breeze.",
        "He said hello to me.",
    ]  # "They drank the pub" (cut) is not there
    _, quality = data.load_glue_with_quality("cola", source="tsv", data_dir=root, cache_dir=tmp_path / "c")
    assert _counts(quality["train"]) == {
        "rows": 3,
        "skipped": 2,
        "reasons": {"too_many_fields": 1, "too_few_fields": 1},
        "first_lines": [2, 4],
    }
    assert (
        "4 tab-separated fields (source | label | original mark | sentence)" in quality["train"]["expected"]
    )


#: The header name of each task's first text field in its train.tsv (CoLA has no header: field 3).
FIRST_TEXT = {
    "sst2": "sentence",
    "mrpc": "#1 String",
    "stsb": "sentence1",
    "qqp": "question1",
    "mnli": "sentence1",
    "qnli": "question",
    "rte": "sentence1",
}


def _with_tab_in_first_text_field(path, task):
    """Turn the first space of the first data row's first text field into a tab; returns its line."""
    lines = path.read_text(encoding="utf-8-sig").split("\n")
    line = 0 if task == "cola" else 1
    col = 3 if task == "cola" else lines[0].split(T).index(FIRST_TEXT[task])
    fields = lines[line].split(T)
    assert " " in fields[col], (task, fields[col])
    fields[col] = fields[col].replace(" ", T, 1)
    lines[line] = T.join(fields)
    path.write_text("\n".join(lines), encoding="utf-8")
    return line + 1


@pytest.mark.parametrize("task", TASK_ORDER)
def test_every_task_counts_a_row_with_an_extra_field(task, tmp_path):
    """Each task's real layout: a tab inside its first text field is one more ``too_many_fields``."""
    clean_root = write_glue_fixture(tmp_path / "clean")
    clean = load_glue(task, source="tsv", data_dir=clean_root, cache_dir=tmp_path)
    root = write_glue_fixture(tmp_path / "tab")
    line = _with_tab_in_first_text_field(root / get_task(task).glue_dir / "train.tsv", task)
    dd = load_glue(task, source="tsv", data_dir=root, cache_dir=tmp_path)
    assert len(dd["train"]) == len(clean["train"]) - 1
    _, clean_q = data.load_glue_with_quality(task, source="tsv", data_dir=clean_root, cache_dir=tmp_path)
    _, quality = data.load_glue_with_quality(task, source="tsv", data_dir=root, cache_dir=tmp_path)
    assert quality["train"]["skipped"] == clean_q["train"]["skipped"] + 1
    assert quality["train"]["reasons"].get("too_many_fields") == 1
    assert line in quality["train"]["first_lines"]
    assert clean_q["train"]["reasons"].get("too_many_fields") is None


def test_mnli_allows_more_annotator_labels_but_not_a_tab_in_a_sentence(tmp_path):
    """GLUE MNLI rows may carry more ``labelN`` columns than the header (the gold label stays last)."""
    base = [
        "index",
        "promptID",
        "pairID",
        "genre",
        "s1_bp",
        "s2_bp",
        "s1_p",
        "s2_p",
        "sentence1",
        "sentence2",
    ]
    head = T.join([*base, "label1", "gold_label"])

    def row(i, p, h, labels):
        return T.join([str(i), "1", "1e", "fiction", p, h, p, h, p, h, *labels])

    root = tmp_path / "glue"
    _write(
        root / "MNLI/train.tsv",
        [
            head,
            row(0, "Cream skimming has two dimensions.", "Product and geography.", ["neutral", "neutral"]),
            # validated pair: five annotator labels, then the gold label (last), 16 fields for 12 columns
            row(
                1,
                "You know during the season.",
                "You lose the things.",
                ["entailment", "neutral"] * 2 + ["entailment", "entailment"],
            ),
            row(2, f"One of our number{T}will carry out.", "A member.", ["contradiction"] * 2),
        ],
    )
    dev_head = T.join([*base, "label1", "label2", "label3", "label4", "label5", "gold_label"])
    for name in ("dev_matched", "dev_mismatched"):
        _write(root / f"MNLI/{name}.tsv", [dev_head, row(0, "a b", "c d", ["neutral"] * 6)])
    train = load_glue("mnli", source="tsv", data_dir=root, cache_dir=tmp_path / "c")["train"]
    assert train["premise"] == ["Cream skimming has two dimensions.", "You know during the season."]
    assert train["label"] == [1, 0]  # the gold label of the 16-field row is its last field (entailment)
    _, quality = data.load_glue_with_quality("mnli", source="tsv", data_dir=root, cache_dir=tmp_path / "c")
    assert _counts(quality["train"]) == {
        "rows": 2,
        "skipped": 1,
        "reasons": {"too_many_fields": 1},
        "first_lines": [4],
    }


def test_header_only_or_all_invalid_file_is_an_error_naming_the_file(tmp_path):
    root = _mrpc(tmp_path / "glue", [f"1{T}1{T}2{T}A b .{T}C d ."])
    _write(root / "MRPC/dev.tsv", [MRPC_HEADER], bom=True)  # header only
    with pytest.raises(DataError) as err:
        load_glue("mrpc", source="tsv", data_dir=root, cache_dir=tmp_path / "c")
    msg = str(err.value)
    assert str(root / "MRPC/dev.tsv") in msg and "has a header but no data rows" in msg
    assert "expected rows of 5 tab-separated fields" in msg and "re-download" in msg
    # every row malformed (string labels RTE does not have; a row with a tab in a sentence)
    rte = tmp_path / "rte"
    _write(
        rte / "RTE/train.tsv",
        [RTE_HEADER, f"0{T}A man.{T}A person.{T}maybe", f"1{T}A dog{T}runs.{T}An animal.{T}entailment"],
    )
    _write(rte / "RTE/dev.tsv", [RTE_HEADER, f"0{T}A man.{T}A person.{T}entailment"])
    with pytest.raises(DataError) as err:
        load_glue("rte", source="tsv", data_dir=rte, cache_dir=tmp_path / "c")
    msg = str(err.value)
    assert str(rte / "RTE/train.tsv") in msg and "all 2 data rows are malformed" in msg
    assert "1 bad label, 1 too many fields; lines 2, 3" in msg
    assert "4 tab-separated fields (index | sentence1 | sentence2 | label) for GLUE RTE train.tsv" in msg
    # an empty file (no header at all)
    _write(rte / "RTE/train.tsv", [RTE_HEADER, f"0{T}A man.{T}A person.{T}entailment"])
    (rte / "RTE/dev.tsv").write_bytes(b"")
    with pytest.raises(DataError, match=r"RTE/dev\.tsv is empty; expected a header line"):
        load_glue("rte", source="tsv", data_dir=rte, cache_dir=tmp_path / "c")


def test_non_utf8_byte_is_an_error_naming_file_line_and_offset(tmp_path):
    root = _mrpc(tmp_path / "glue", [f"1{T}1{T}2{T}A b .{T}C d ."])
    good = "\ufeff" + MRPC_HEADER + "\n" + f"1{T}1{T}2{T}A b .{T}C d .\n"
    prefix = (good + f"0{T}3{T}4{T}Caf").encode("utf-8")
    (root / "MRPC/train.tsv").write_bytes(prefix + b"\xe9 au lait .\tA coffee .\n")  # latin-1 e-acute
    with pytest.raises(DataError) as err:
        load_glue("mrpc", source="tsv", data_dir=root, cache_dir=tmp_path / "c")
    msg = str(err.value)
    assert str(root / "MRPC/train.tsv") in msg and "line 3" in msg
    assert f"byte 0xe9 at byte offset {len(prefix)} of the file" in msg
    assert "not valid UTF-8" in msg and "iconv" in msg


def _tokenizer(texts):
    return build_offline_tokenizer(texts, 200)


def test_cached_load_reports_the_same_counts_through_build_dataloaders(tmp_path, monkeypatch):
    root = _mrpc(
        tmp_path / "glue",
        [
            f"1{T}1{T}2{T}Amrozi accused his brother .{T}Amrozi accused him .",
            f"0{T}3{T}4{T}Yucaipa owned{T}Dominick 's .{T}Yucaipa bought it .",
            f"1{T}5{T}6{T}Shares rose .{T}The shares rose .",
            f"x{T}7{T}8{T}Bad label .{T}Bad .",
        ],
    )
    cfg = data_config(source="tsv", data_dir=str(root), cache_dir=str(tmp_path / "c"))
    tok = _tokenizer(["Amrozi accused his brother", "Shares rose", "The pie business"])

    def build():
        return data.build_dataloaders(
            cfg, "mrpc", tok, max_length=16, micro_batch_size=2, eval_batch_size=2, seed=0
        )

    first = build().data_quality
    assert _counts(first["train"]) == {
        "rows": 2,
        "skipped": 2,
        "reasons": {"too_many_fields": 1, "bad_label": 1},
        "first_lines": [3, 5],
    }
    monkeypatch.setattr(load_module, "parse_glue_tsv", lambda *a: pytest.fail("cached load re-parsed"))
    second = build().data_quality
    assert second == first
    assert json.loads(json.dumps(second)) == second
    # counts lost from the cache folder (removed by hand): recomputed, not reported as clean
    monkeypatch.undo()
    (quality_file,) = (tmp_path / "c/adasam_glue/tsv").glob(f"*/{load_module.QUALITY_FILE}")
    quality_file.unlink()
    assert build().data_quality == first


def test_other_sources_report_zero_skipped(tmp_path):
    syn, quality = data.load_glue_with_quality(
        "rte", source="synthetic", cache_dir=tmp_path, synthetic_train_size=20, synthetic_eval_size=8
    )
    assert {s: (q["rows"], q["skipped"]) for s, q in quality.items()} == {
        s: (len(d), 0) for s, d in syn.items()
    }
    syn.save_to_disk(str(tmp_path / "saved"))
    disk, quality = data.load_glue_with_quality("rte", source="disk", data_dir=tmp_path / "saved")
    assert quality == {
        s: {"file": None, "rows": len(d), "skipped": 0, "reasons": {}, "first_lines": [], "expected": None}
        for s, d in disk.items()
    }


def test_a_same_size_edit_with_the_mtime_kept_is_not_served_from_the_cache(tmp_path):
    """Issue 24 B: the TSV cache was keyed by path, size and mtime, the run identity by content. An edit
    that keeps the size and the mtime (``cp -p``, ``rsync -t``, ``os.utime``) trained on the old cached
    labels while the record fingerprinted the new file. The cache is keyed by the content fingerprint."""
    import os

    from adasam_glue.identity import fingerprint_path

    rows = [
        f"1{T}1{T}2{T}Amrozi accused his brother .{T}Amrozi accused him .",
        f"0{T}3{T}4{T}Yucaipa owned Dominick 's .{T}Yucaipa bought it .",
    ]
    root = _mrpc(tmp_path / "glue", rows)
    train = root / "MRPC/train.tsv"
    first = load_glue("mrpc", source="tsv", data_dir=root, cache_dir=tmp_path / "c")
    assert first["train"]["label"] == [1, 0]
    before, stat = fingerprint_path(root, ("*.tsv",)), train.stat()
    # one label flipped: same size, mtime put back
    train.write_bytes(train.read_bytes().replace(b"\n0\t3\t4\t", b"\n1\t3\t4\t"))
    os.utime(train, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert train.stat().st_size == stat.st_size and train.stat().st_mtime_ns == stat.st_mtime_ns
    assert fingerprint_path(root, ("*.tsv",)) != before  # the identity sees the edit ...
    again = load_glue("mrpc", source="tsv", data_dir=root, cache_dir=tmp_path / "c")
    assert again["train"]["label"] == [1, 1]  # ... and so does the cache
    # the same content at another path is the same cached dataset (content, not path)
    moved = tmp_path / "moved"
    moved.mkdir()
    os.replace(root / "MRPC", moved / "MRPC")
    load_glue("mrpc", source="tsv", data_dir=moved, cache_dir=tmp_path / "c")
    assert len(list((tmp_path / "c/adasam_glue/tsv").glob("mrpc-*"))) == 2
