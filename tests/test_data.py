"""GLUE data layer: TSV parsers on quirk-reproducing fixtures, hub/disk/synthetic sources, errors,
tokenization cache, DataLoaders (determinism, subsampling, length grouping, padding), learnability.

The ``hub`` source is tested through a local copy of the Hub repo layout (``<task>/<split>-*.parquet``
plus the README ``configs`` block), which ``datasets.load_dataset`` reads exactly like ``nyu-mll/glue``;
the offline error path runs ``load_dataset("nyu-mll/glue")`` in offline mode with an empty cache.
Every fixture is built here (tmp_path); no test depends on the sample data shipped beside the repo.
"""

from __future__ import annotations

import logging
import time

import datasets
import numpy as np
import pytest
import torch

from adasam_glue.data import (
    DataError,
    GlueTrainSampler,
    build_dataloaders,
    hub_features,
    load_glue,
    make_synthetic_glue,
    pad_stats,
    tokenize_glue,
    train_order,
)
from adasam_glue.tasks import TASK_ORDER, get_task
from adasam_glue.tokenizer_offline import build_offline_tokenizer
from tests.conftest import data_config

datasets.disable_progress_bars()

T = "\t"
MNLI_BASE = [
    "index",
    "promptID",
    "pairID",
    "genre",
    "sentence1_binary_parse",
    "sentence2_binary_parse",
    "sentence1_parse",
    "sentence2_parse",
    "sentence1",
    "sentence2",
]


def _write(path, lines, bom=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(("\ufeff" if bom else "") + "\n".join(lines) + "\n", encoding="utf-8")


def _mnli_row(i, p, h, labels):
    return T.join(
        [
            str(i),
            str(100 + i),
            f"{100 + i}e",
            "fiction",
            f"( {p} )",
            f"( {h} )",
            f"(ROOT {p})",
            f"(ROOT {h})",
            p,
            h,
            *labels,
        ]
    )


def write_glue_fixture(root):
    """A glue_data folder with every task in its original format and quirks (a few rows each)."""
    # CoLA: no header, 4 columns (source, label, original mark, sentence); test has a header.
    _write(
        root / "CoLA/train.tsv",
        [
            f"gj04{T}1{T}{T}Our friends won't buy this analysis, let alone the next one we propose.",
            f'gj04{T}0{T}*{T}They drank the pub "dry.',
            f'bc01{T}1{T}{T}He said "hello to me.',
        ],
    )
    _write(
        root / "CoLA/dev.tsv",
        [
            f"gj04{T}1{T}{T}The sailors rode the breeze clear of the rocks.",
            f"gj04{T}0{T}*{T}The more does Bill smoke.",
        ],
    )
    _write(root / "CoLA/test.tsv", [f"index{T}sentence", f"0{T}Bill whistled past the house."])
    # SST-2: header, lowercased tokenized text with trailing space.
    _write(
        root / "SST-2/train.tsv",
        [
            f"sentence{T}label",
            f"hide new secretions from the parental units {T}0",
            f"it 's a \" charming journey . {T}1",
        ],
    )
    _write(
        root / "SST-2/dev.tsv", [f"sentence{T}label", f"it 's a charming and often affecting journey . {T}1"]
    )
    _write(root / "SST-2/test.tsv", [f"index{T}sentence", f"0{T}uneasy mishmash of styles and genres ."])
    # MRPC: UTF-8 BOM, header with spaces and '#', unbalanced quotes.
    h = f"Quality{T}#1 ID{T}#2 ID{T}#1 String{T}#2 String"
    _write(
        root / "MRPC/train.tsv",
        [
            h,
            f'1{T}702876{T}702977{T}Amrozi accused his brother , whom he called " the witness " , of it .{T}'
            f'Referring to him as only " the witness " , Amrozi accused his brother .',
            f"0{T}2108705{T}2108831{T}He said \" no .{T}Yucaipa bought Dominick 's in 1995 .",
            f"1{T}1330381{T}1330521{T}Shares rose 3 %{T}The shares rose 3 percent",
        ],
        bom=True,
    )
    _write(
        root / "MRPC/dev.tsv",
        [
            h,
            f"1{T}1355540{T}1355592{T}He said the pie business doesn 't fit .{T}"
            f'" The pie business does not fit our strategy .',
        ],
        bom=True,
    )
    _write(
        root / "MRPC/test.tsv",
        [
            f"index{T}#1 ID{T}#2 ID{T}#1 String{T}#2 String",
            f"0{T}1089874{T}1089925{T}PCCW 's chief ...{T}Current Chief ...",
        ],
    )
    # STS-B: 10 columns, float score; test has 9.
    sh = ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2"]
    _write(
        root / "STS-B/train.tsv",
        [
            T.join([*sh, "score"]),
            T.join(
                [
                    "0",
                    "main-captions",
                    "MSRvid",
                    "2012test",
                    "0001",
                    "none",
                    "none",
                    "A plane is taking off.",
                    "An air plane is taking off.",
                    "5.000",
                ]
            ),
            T.join(
                [
                    "1",
                    "main-news",
                    "headlines",
                    "2013",
                    "0004",
                    "none",
                    "none",
                    'A "man is playing.',
                    "A man plays.",
                    "3.800",
                ]
            ),
        ],
    )
    _write(
        root / "STS-B/dev.tsv",
        [
            T.join([*sh, "score"]),
            T.join(
                [
                    "0",
                    "main-captions",
                    "MSRvid",
                    "2012test",
                    "0000",
                    "none",
                    "none",
                    "A man with a hard hat is dancing.",
                    "A man is dancing.",
                    "4.750",
                ]
            ),
        ],
    )
    _write(
        root / "STS-B/test.tsv",
        [
            T.join(sh),
            T.join(
                [
                    "0",
                    "main-captions",
                    "MSRvid",
                    "2012test",
                    "0024",
                    "none",
                    "none",
                    "A girl is styling.",
                    "A girl is brushing.",
                ]
            ),
        ],
    )
    # QQP: malformed lines (missing fields; a question broken over two lines; a bad label).
    qh = f"id{T}qid1{T}qid2{T}question1{T}question2{T}is_duplicate"
    _write(
        root / "QQP/train.tsv",
        [
            qh,
            f"133273{T}213221{T}213222{T}How is the life of a math student?{T}Which level of math?{T}0",
            f'402555{T}536040{T}536041{T}How do I control my "horny emotions?{T}How do you control it?{T}1',
            f"360472{T}364011{T}490273{T}What causes stool color to change",  # broken: question continues
            f"to yellow?{T}What can cause stool to come out as yellow?{T}0",  # ... on the next line
            f"150662{T}155721{T}7256{T}What can one do after MBBS?{T}What do i do after my MBBS ?{T}x",
            f'183004{T}279958{T}279959{T}When do you use \u30b7 instead of \u3057?{T}When do you use "&"?{T}0',
        ],
    )
    _write(
        root / "QQP/dev.tsv",
        [
            qh,
            f"201359{T}303345{T}303346{T}Why are African-Americans so beautiful?{T}"
            f"Why are hispanics so beautiful?{T}0",
        ],
    )
    _write(root / "QQP/test.tsv", [f"id{T}question1{T}question2", f"0{T}Why do rockets look white?{T}Why?"])
    # MNLI: 12 columns (train), 16 (dev: label1..label5 + gold_label), 10 (test); string labels.
    _write(
        root / "MNLI/train.tsv",
        [
            T.join([*MNLI_BASE, "label1", "gold_label"]),
            _mnli_row(
                0,
                "Conceptually cream skimming has two dimensions.",
                "Product and geography are what make it work.",
                ["neutral"] * 2,
            ),
            _mnli_row(1, 'you know " during the season', "You lose the things.", ["entailment"] * 2),
            _mnli_row(
                2,
                "One of our number will carry out your instructions.",
                "A member of my team will execute your orders.",
                ["contradiction"] * 2,
            ),
        ],
    )
    dev_h = T.join([*MNLI_BASE, "label1", "label2", "label3", "label4", "label5", "gold_label"])
    _write(
        root / "MNLI/dev_matched.tsv",
        [
            dev_h,
            _mnli_row(
                0,
                "The new rights are nice enough",
                "Everyone really likes the newest benefits",
                ["neutral", "entailment", "neutral", "neutral", "neutral", "neutral"],
            ),
        ],
    )
    _write(
        root / "MNLI/dev_mismatched.tsv",
        [
            dev_h,
            _mnli_row(
                0,
                "Your contribution helped make it possible",
                "Your contributions were of no help",
                ["contradiction"] * 6,
            ),
            _mnli_row(1, "a b", "c d", ["entailment"] * 6),
        ],
    )
    _write(
        root / "MNLI/test_matched.tsv",
        [T.join(MNLI_BASE), _mnli_row(0, "Hierbas, ans seco", "This is a", [])],
    )
    _write(
        root / "MNLI/test_mismatched.tsv", [T.join(MNLI_BASE), _mnli_row(0, "What have you decided", "x", [])]
    )
    # QNLI / RTE: index + pair + string labels.
    _write(
        root / "QNLI/train.tsv",
        [
            f"index{T}question{T}sentence{T}label",
            f"0{T}When did the third Digimon series begin?{T}Unlike the two seasons "
            f"before it.{T}not_entailment",
            f'1{T}Which missile batteries often have "individual launchers?{T}'
            f"The missile batteries are launched.{T}entailment",
        ],
    )
    _write(
        root / "QNLI/dev.tsv",
        [
            f"index{T}question{T}sentence{T}label",
            f"0{T}What came into force after the new constitution?{T}The law.{T}entailment",
        ],
    )
    _write(
        root / "QNLI/test.tsv", [f"index{T}question{T}sentence", f"0{T}What organization is devoted?{T}It."]
    )
    _write(
        root / "RTE/train.tsv",
        [
            f"index{T}sentence1{T}sentence2{T}label",
            f"0{T}No Weapons of Mass Destruction Found in Iraq Yet.{T}"
            f"Weapons of Mass Destruction Found in Iraq.{T}not_entailment",
            f"1{T}A place of sorrow.{T}Pope Benedict XVI is the new leader.{T}entailment",
        ],
    )
    _write(
        root / "RTE/dev.tsv",
        [
            f"index{T}sentence1{T}sentence2{T}label",
            f"0{T}Dana Reeve, the widow, has died.{T}Christopher Reeve had an accident.{T}not_entailment",
        ],
    )
    return root


#: (task, split) -> (rows, first row expected values) after parsing the fixture.
EXPECTED = {
    ("cola", "train"): (3, {"sentence": 'They drank the pub "dry.', "label": 0, "idx": 1}, 1),
    ("cola", "test"): (1, {"sentence": "Bill whistled past the house.", "label": -1, "idx": 0}, 0),
    ("sst2", "train"): (2, {"sentence": "it 's a \" charming journey . ", "label": 1, "idx": 1}, 1),
    ("mrpc", "train"): (
        3,
        {
            "sentence1": 'He said " no .',
            "sentence2": "Yucaipa bought Dominick 's in 1995 .",
            "label": 0,
            "idx": 1,
        },
        1,
    ),
    ("mrpc", "validation"): (
        1,
        {"sentence2": '" The pie business does not fit our strategy .', "label": 1},
        0,
    ),
    ("stsb", "train"): (2, {"sentence1": 'A "man is playing.', "label": 3.8, "idx": 1}, 1),
    ("stsb", "test"): (1, {"sentence2": "A girl is brushing.", "label": -1.0}, 0),
    ("qqp", "train"): (3, {"question1": 'How do I control my "horny emotions?', "label": 1, "idx": 1}, 1),
    ("mnli", "train"): (3, {"premise": "One of our number will carry out your instructions.", "label": 2}, 2),
    ("mnli", "validation_matched"): (
        1,
        {"hypothesis": "Everyone really likes the newest benefits", "label": 1},
        0,
    ),
    ("mnli", "validation_mismatched"): (2, {"label": 2}, 0),
    ("mnli", "test_mismatched"): (1, {"premise": "What have you decided", "label": -1}, 0),
    ("qnli", "train"): (
        2,
        {"question": 'Which missile batteries often have "individual launchers?', "label": 0},
        1,
    ),
    ("rte", "train"): (2, {"sentence2": "Weapons of Mass Destruction Found in Iraq.", "label": 1}, 0),
}


@pytest.fixture(scope="module")
def glue_root(tmp_path_factory):
    return write_glue_fixture(tmp_path_factory.mktemp("glue_data"))


@pytest.mark.parametrize("task", TASK_ORDER)
def test_tsv_parser_reproduces_hub_schema(task, glue_root, tmp_path):
    dd = load_glue(task, source="tsv", data_dir=glue_root, cache_dir=tmp_path)
    info = get_task(task)
    want_splits = ["train", *info.eval_splits] + (
        [] if task == "rte" else [s.replace("validation", "test") for s in info.eval_splits]
    )
    assert list(dd) == want_splits
    for split, ds in dd.items():
        assert ds.features == hub_features(task), split
        assert ds.column_names == [*info.text_keys, "label", "idx"]
        if split.startswith("test"):
            assert set(ds["label"]) == {-1}
    for (t, split), (n, row, pos) in EXPECTED.items():
        if t == task:
            assert len(dd[split]) == n, split
            got = dd[split][pos]
            for key, value in row.items():
                assert got[key] == pytest.approx(value) if isinstance(value, float) else got[key] == value, (
                    key
                )


def test_tsv_accepts_task_folder_and_counts_malformed_rows_on_every_load(
    glue_root, tmp_path, caplog, monkeypatch
):
    import adasam_glue.data as data
    import adasam_glue.data.sources as load_module

    with caplog.at_level(logging.WARNING):
        dd = load_glue("qqp", source="tsv", data_dir=glue_root / "QQP", cache_dir=tmp_path)
    # 6 data lines: the broken question gives 2 short rows, one row has label "x": 3 skipped.
    assert len(dd["train"]) == 3
    assert dd["train"]["idx"] == [0, 1, 5]  # Hub-style idx: position among the file's rows
    warns = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
    assert len(warns) == 1 and "skipped 3 malformed row(s) of 6" in warns[0]
    assert "QQP/train.tsv" in warns[0] and "lines 4, 5, 6" in warns[0]
    assert (
        "expected 6 tab-separated fields (id | qid1 | qid2 | question1 | question2 | is_duplicate)"
        in warns[0]
    )
    _, quality = data.load_glue_with_quality("qqp", source="tsv", data_dir=glue_root, cache_dir=tmp_path)
    assert {k: quality["train"][k] for k in ("rows", "skipped", "reasons", "first_lines")} == {
        "rows": 3,
        "skipped": 3,
        "reasons": {"too_few_fields": 2, "bad_label": 1},
        "first_lines": [4, 5, 6],
    }
    # the parsed Arrow copy is reused (no re-parse), and the counts are reported again from the cache
    monkeypatch.setattr(load_module, "parse_glue_tsv", lambda *a: pytest.fail("cached load re-parsed"))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again, cached = data.load_glue_with_quality(
            "qqp", source="tsv", data_dir=glue_root, cache_dir=tmp_path
        )
    assert [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()] == warns
    assert cached == quality
    assert again["train"]._fingerprint == dd["train"]._fingerprint


def test_errors_name_path_layout_and_alternatives(glue_root, tmp_path):
    with pytest.raises(DataError, match="valid tasks: cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte"):
        load_glue("wnli", source="tsv", data_dir=glue_root)
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=r"nowhere.*MRPC/train\.tsv.*dev\.tsv.*data\.source=synthetic"):
        load_glue("mrpc", source="tsv", data_dir=missing, cache_dir=tmp_path)
    with pytest.raises(DataError, match="needs data.data_dir"):
        load_glue("mrpc", source="tsv", cache_dir=tmp_path)
    # train.tsv present, dev.tsv missing
    (tmp_path / "glue/RTE").mkdir(parents=True)
    (tmp_path / "glue/RTE/train.tsv").write_bytes((glue_root / "RTE/train.tsv").read_bytes())
    with pytest.raises(DataError, match=r"missing .*RTE/dev\.tsv"):
        load_glue("rte", source="tsv", data_dir=tmp_path / "glue", cache_dir=tmp_path)
    # a file in the wrong format (header lacks the label column): the whole file is refused
    _write(tmp_path / "bad/SST-2/train.tsv", [f"text{T}y", f"good{T}1"])
    _write(tmp_path / "bad/SST-2/dev.tsv", [f"sentence{T}label", f"good{T}1"])
    with pytest.raises(DataError, match=r"lacks column\(s\) \['sentence', 'label'\]"):
        load_glue("sst2", source="tsv", data_dir=tmp_path / "bad", cache_dir=tmp_path)
    with pytest.raises(DataError, match="does not exist.*save_to_disk"):
        load_glue("mrpc", source="disk", data_dir=missing)
    with pytest.raises(DataError, match="unknown data source 'ftp'.*hub, tsv, disk, synthetic"):
        load_glue("mrpc", source="ftp")


def test_hub_offline_without_cache_is_one_clear_error(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    start = time.time()
    with pytest.raises(DataError) as err:
        load_glue("mrpc", source="hub", cache_dir=tmp_path / "empty_cache")
    msg = str(err.value)
    assert "'mrpc'" in msg and "unreachable/offline" in msg
    assert "data.source=tsv data.data_dir=" in msg and "data.source=synthetic" in msg
    assert time.time() - start < 10  # no retry loop


def _hub_repo_copy(root, task, dd):
    """The layout of the nyu-mll/glue repo: <config>/<split>-00000-of-00001.parquet + README configs."""
    lines = ["---", "configs:", f"- config_name: {task}", "  data_files:"]
    for split, ds in dd.items():
        (root / task).mkdir(parents=True, exist_ok=True)
        ds.to_parquet(str(root / task / f"{split}-00000-of-00001.parquet"))
        lines += [f"  - split: {split}", f"    path: {task}/{split}-*"]
    (root / "README.md").write_text("\n".join([*lines, "---", ""]))
    return root


def test_hub_disk_and_parquet_sources_match_tsv(glue_root, tmp_path):
    ref = load_glue("mnli", source="tsv", data_dir=glue_root, cache_dir=tmp_path / "c")
    # hub: a local copy of the Hub repo read through datasets.load_dataset(hub_name, task)
    hub = load_glue(
        "mnli",
        source="hub",
        hub_name=str(_hub_repo_copy(tmp_path / "hub", "mnli", ref)),
        cache_dir=tmp_path / "c",
    )
    # disk: save_to_disk folder; parquet <split>.parquet; Hub-style <split>-*.parquet in a task subfolder
    ref.save_to_disk(str(tmp_path / "saved"))
    for split, ds in ref.items():
        ds.to_parquet(str(tmp_path / "pq" / f"{split}.parquet"))
    saved = load_glue("mnli", source="disk", data_dir=tmp_path / "saved")
    pq = load_glue("mnli", source="disk", data_dir=tmp_path / "pq", cache_dir=tmp_path / "c")
    pq_hub_layout = load_glue("mnli", source="disk", data_dir=tmp_path / "hub", cache_dir=tmp_path / "c")
    for other in (hub, saved, pq, pq_hub_layout):
        assert list(other) == list(ref)
        for split in ref:
            assert other[split].features == ref[split].features
            assert other[split].to_dict() == ref[split].to_dict()
    # parquet written without HF metadata (plain int labels, extra column): cast to the Hub schema

    plain = tmp_path / "plain"
    plain.mkdir()
    for split in ("train", "validation"):
        df = ref["train" if split == "train" else "validation_matched"].to_pandas()
        df = df.rename(columns={"premise": "sentence1", "hypothesis": "sentence2"})
        df["label"] = (df["label"] > 0).astype("int64")
        df["extra"] = 1
        df.to_parquet(plain / f"{split}.parquet")
    rte_like = load_glue("rte", source="disk", data_dir=plain, cache_dir=tmp_path / "c")
    assert rte_like["train"].features == hub_features("rte")
    with pytest.raises(DataError, match="lacks split"):
        load_glue("mnli", source="disk", data_dir=plain, cache_dir=tmp_path / "c")


@pytest.mark.parametrize("task", TASK_ORDER)
def test_synthetic_uses_original_format_and_is_balanced(task, tmp_path):
    info = get_task(task)
    folder = make_synthetic_glue(task, tmp_path / "syn", num_train=60, num_eval=30, seed=3)
    assert folder.name == info.glue_dir
    if task == "mrpc":
        assert (folder / "train.tsv").read_bytes().startswith(b"\xef\xbb\xbfQuality\t#1 ID")
    if task == "cola":
        assert len((folder / "train.tsv").read_text().splitlines()[0].split("\t")) == 4
    dd = load_glue(
        task,
        source="synthetic",
        data_dir=tmp_path / "gen",
        cache_dir=tmp_path,
        synthetic_train_size=60,
        synthetic_eval_size=30,
        synthetic_seed=3,
    )
    assert len(dd["train"]) == 60 and all(len(dd[s]) == 30 for s in info.eval_splits)
    assert dd["train"].features == hub_features(task)
    if info.is_regression:
        scores = np.array(dd["train"]["label"])
        assert scores.min() >= 0 and scores.max() <= 5 and scores.std() > 1
    else:
        counts = np.bincount(dd["train"]["label"], minlength=info.num_labels)
        assert counts.min() == counts.max() == 60 // info.num_labels
    again = make_synthetic_glue(task, tmp_path / "syn2", num_train=60, num_eval=30, seed=3)
    assert (again / "train.tsv").read_bytes() == (folder / "train.tsv").read_bytes()


# ------------------------------------------------------------------------------- tokenize + loaders
@pytest.fixture(scope="module")
def syn_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def _tokenizer(dd, task):
    return build_offline_tokenizer([t for k in get_task(task).text_keys for t in dd["train"][k]], 300)


class CountingTokenizer:
    """Delegates to a tokenizer and counts calls (to see whether map re-tokenizes)."""

    def __init__(self, tok):
        self.__dict__["_tok"], self.__dict__["calls"] = tok, 0

    def __call__(self, *args, **kwargs):
        self.__dict__["calls"] += 1
        return self._tok(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._tok, name)


def test_tokenize_columns_dtypes_and_cache_reuse(syn_cache):
    dd = load_glue(
        "stsb", source="synthetic", cache_dir=syn_cache, synthetic_train_size=64, synthetic_eval_size=16
    )
    tok = CountingTokenizer(_tokenizer(dd, "stsb"))
    first = tokenize_glue(dd, "stsb", tok, max_length=24)
    assert tok.calls > 0
    train = first["train"]
    assert set(train.column_names) == {"input_ids", "attention_mask", "token_type_ids", "labels", "idx"}
    assert train.features["labels"].dtype == "float32"
    assert max(len(x) for x in train["input_ids"]) <= 24  # truncated, not padded
    assert len(set(len(x) for x in train["input_ids"])) > 1
    row = train[0]
    assert tok._tok.convert_ids_to_tokens(row["input_ids"]).count("[SEP]") == 2 and 1 in row["token_type_ids"]
    calls = tok.calls
    second = tokenize_glue(
        load_glue(
            "stsb", source="synthetic", cache_dir=syn_cache, synthetic_train_size=64, synthetic_eval_size=16
        ),
        "stsb",
        tok,
        max_length=24,
    )
    assert tok.calls == calls  # nothing re-tokenized: loaded from the cache files
    assert second["train"].cache_files == train.cache_files
    assert second["train"]["input_ids"] == train["input_ids"]
    third = tokenize_glue(dd, "stsb", tok, max_length=16)  # another max_length: a new cache entry
    assert tok.calls > calls and third["train"]._fingerprint != train._fingerprint
    mrpc = load_glue(
        "mrpc", source="synthetic", cache_dir=syn_cache, synthetic_train_size=32, synthetic_eval_size=8
    )
    assert (
        tokenize_glue(mrpc, "mrpc", _tokenizer(mrpc, "mrpc"), 32)["train"].features["labels"].dtype == "int64"
    )


def _loaders(syn_cache, **over):
    cfg = data_config(
        **{
            "source": "synthetic",
            "cache_dir": str(syn_cache),
            "synthetic_train_size": 200,
            "synthetic_eval_size": 40,
            **over,
        }
    )
    dd = load_glue(
        "mrpc", source="synthetic", cache_dir=syn_cache, synthetic_train_size=200, synthetic_eval_size=40
    )
    tok = _tokenizer(dd, "mrpc")
    kw = {k: over.pop(k) for k in ("seed", "mixed_precision", "accelerator") if k in over}
    return build_dataloaders(
        cfg, "mrpc", tok, max_length=64, micro_batch_size=16, eval_batch_size=32, **{"seed": 0, **kw}
    )


def _order(loader, epoch):
    loader.set_epoch(epoch)
    return torch.cat([b["idx"] for b in loader]).tolist()


def test_train_order_deterministic_by_seed_and_epoch(syn_cache):
    a, b = _loaders(syn_cache), _loaders(syn_cache)
    assert _order(a.train, 0) == _order(b.train, 0)
    assert _order(a.train, 1) == _order(b.train, 1) != _order(a.train, 0)
    assert sorted(_order(a.train, 1)) == sorted(a.train_dataset["idx"])
    c = _loaders(syn_cache, seed=1)
    assert _order(c.train, 0) != _order(a.train, 0)
    batch = next(iter(a.train))
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels", "idx"}
    assert batch["labels"].dtype == torch.long and batch["input_ids"].shape[0] == 16
    assert list(a.evals) == ["validation"]
    assert torch.cat([b["idx"] for b in a.evals["validation"]]).tolist() == list(range(40))


def test_set_epoch_reaches_sampler_through_accelerate(syn_cache):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    loaders = _loaders(syn_cache)
    want = [_order(loaders.train, e) for e in (0, 1, 2)]
    try:
        accelerator = Accelerator(cpu=True)
        fresh = _loaders(syn_cache, accelerator=accelerator)  # tokenizes under main_process_first()
        prepared = accelerator.prepare(fresh.train)
        assert _order(prepared, 2) == want[2]  # explicit set_epoch
        prepared.set_epoch(0)
        assert [torch.cat([b["idx"] for b in prepared]).tolist() for _ in range(2)] == want[:2]  # auto
    finally:
        AcceleratorState._reset_state(True)


def test_max_samples_and_padding(syn_cache):
    full = _loaders(syn_cache)
    small = _loaders(syn_cache, max_train_samples=50, max_eval_samples=10)
    assert len(small.train_dataset) == 50 and len(small.eval_datasets["validation"]) == 10
    assert small.eval_datasets["validation"]["idx"] == list(range(10))  # eval: the first N rows
    picked = set(small.train_dataset["idx"])
    assert picked == set(_loaders(syn_cache, max_train_samples=50).train_dataset["idx"])  # deterministic
    assert picked != set(range(50))  # a seeded shuffle, not the head of the file
    assert picked != set(_loaders(syn_cache, max_train_samples=50, seed=1).train_dataset["idx"])
    # dynamic padding: no rounding in fp32, multiples of 8 under bf16 (or when configured)
    widths = {b["input_ids"].shape[1] for b in full.train}
    assert any(w % 8 for w in widths)
    for loaders in (_loaders(syn_cache, mixed_precision="bf16"), _loaders(syn_cache, pad_to_multiple_of=8)):
        for b in loaders.train:
            assert b["input_ids"].shape[1] % 8 == 0
            real = b["attention_mask"].sum(1)
            assert (b["input_ids"][torch.arange(len(real)), real - 1] != 0).all()  # right padding
            assert (b["input_ids"][b["attention_mask"] == 0] == 0).all()
    assert 0 < full.padding_stats["saved_fraction"] < 1


def test_group_by_length_reduces_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 120, size=1000)
    plain = pad_stats(lengths, 16, 128, group_by_length=False)
    grouped = pad_stats(lengths, 16, 128, group_by_length=True)
    assert grouped["dynamic_tokens"] < 0.8 * plain["dynamic_tokens"]
    assert grouped["saved_fraction"] > plain["saved_fraction"] > 0
    assert grouped["real_tokens"] == plain["real_tokens"] == lengths.sum()
    order0 = train_order(lengths, 16, seed=0, epoch=0, group_by_length=True)
    assert sorted(order0) == list(range(1000))
    assert (order0 == train_order(lengths, 16, 0, 0, True)).all()
    assert not (order0 == train_order(lengths, 16, 0, 1, True)).all()
    first = lengths[order0[:16]]
    assert first.max() == lengths.max()  # longest batch first (OOM surfaces at step 1)
    sampler = GlueTrainSampler(lengths, 16, seed=0, group_by_length=True)
    sampler.set_epoch(1)
    assert list(sampler) == train_order(lengths, 16, 0, 1, True).tolist() and len(sampler) == 1000


def test_synthetic_mrpc_learnable_by_tiny_bert(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: threads only add overhead (and the CI box has 2 cores)
    try:
        acc = _train_tiny_mrpc(tmp_path)
    finally:
        torch.set_num_threads(threads)
    assert acc > 0.62, acc  # balanced classes: chance is 0.5


def _train_tiny_mrpc(tmp_path) -> float:
    from transformers import BertConfig, BertForSequenceClassification

    from adasam_glue.metrics import compute_metrics

    torch.manual_seed(1)
    cfg = data_config(
        **{
            "source": "synthetic",
            "cache_dir": str(tmp_path),
            "synthetic_train_size": 1024,
            "synthetic_eval_size": 256,
        }
    )
    dd = load_glue(
        "mrpc", source="synthetic", cache_dir=tmp_path, synthetic_train_size=1024, synthetic_eval_size=256
    )
    tok = build_offline_tokenizer([t for k in ("sentence1", "sentence2") for t in dd["train"][k]], 1000)
    model = BertForSequenceClassification(
        BertConfig(
            vocab_size=len(tok),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
            num_labels=2,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
    )
    loaders = build_dataloaders(
        cfg, "mrpc", tok, max_length=64, micro_batch_size=32, eval_batch_size=256, seed=0
    )
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    step, epoch = 0, 0
    while step < 300:
        loaders.train.set_epoch(epoch)
        for batch in loaders.train:
            batch.pop("idx")
            model(**batch).loss.backward()
            opt.step()
            opt.zero_grad()
            step += 1
            if step == 300:
                break
        epoch += 1
    model.eval()
    with torch.no_grad():
        batch = next(iter(loaders.evals["validation"]))
        batch.pop("idx")
        logits = model(**batch).logits
    acc = compute_metrics("mrpc", logits.numpy(), batch["labels"].numpy())["accuracy"]
    print(f"tiny BERT on synthetic MRPC after 300 updates: dev accuracy {acc:.3f}")
    return acc


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("multiple", [None, 8])
@pytest.mark.parametrize("kind", ["list", "tensor"])
def test_collator_matches_row_by_row_padding(side, multiple, kind):
    """The vectorised collator equals padding each row on its own (the obvious reference), for lists
    (Arrow rows) and tensors, both padding sides, with and without a pad multiple."""
    from adasam_glue.data import GlueCollator

    rng = np.random.default_rng(3)
    rows = []
    for i, n in enumerate(rng.integers(1, 40, size=13)):
        ids = rng.integers(2, 500, size=n).tolist()
        row = {"input_ids": ids, "attention_mask": [1] * n, "token_type_ids": [i % 2] * n}
        if kind == "tensor":
            row = {k: torch.tensor(v) for k, v in row.items()}
        rows.append({**row, "labels": int(i % 3), "idx": i})
    out = GlueCollator(pad_token_id=1, pad_to_multiple_of=multiple, padding_side=side)(rows)
    width = max(len(r["input_ids"]) for r in rows)
    width = width if not multiple else -(-width // multiple) * multiple
    for key, pad in (("input_ids", 1), ("attention_mask", 0), ("token_type_ids", 0)):
        want = torch.full((len(rows), width), pad, dtype=torch.long)
        for i, r in enumerate(rows):
            v = torch.as_tensor(r[key], dtype=torch.long)
            if side == "left":
                want[i, width - len(v) :] = v
            else:
                want[i, : len(v)] = v
        assert torch.equal(out[key], want), key
        assert out[key].dtype == torch.long
    assert out["labels"].tolist() == [i % 3 for i in range(13)] and out["idx"].tolist() == list(range(13))


def test_target_scale_divides_regression_labels_and_keys_the_cache(syn_cache):
    """task.target_scale (STS-B: 5, fairseq's recipe) reaches every batch as label / scale; a cached
    unscaled tokenization is never served for a scaled request; classification refuses it."""
    dd = load_glue(
        "stsb", source="synthetic", cache_dir=syn_cache, synthetic_train_size=48, synthetic_eval_size=8
    )
    tok = _tokenizer(dd, "stsb")
    raw = np.asarray(tokenize_glue(dd, "stsb", tok, max_length=24)["train"]["labels"])
    scaled = np.asarray(tokenize_glue(dd, "stsb", tok, max_length=24, target_scale=5.0)["train"]["labels"])
    assert raw.max() > 1.0  # scores on 0..5
    np.testing.assert_allclose(scaled, raw / 5.0, rtol=1e-6)
    mrpc = load_glue(
        "mrpc", source="synthetic", cache_dir=syn_cache, synthetic_train_size=16, synthetic_eval_size=8
    )
    with pytest.raises(ValueError, match="target_scale=5.0 is for regression tasks only, not mrpc"):
        tokenize_glue(mrpc, "mrpc", _tokenizer(mrpc, "mrpc"), 24, target_scale=5.0)
