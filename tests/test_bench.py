"""Smoke tests of the benchmark package at tiny sizes: JSON structure and accounting, not timings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from adasam_glue.bench import cli, gpu_check, harness, measure, overhead, parity, render, step_cost
from adasam_glue.bench.harness import read_json, write_json
from adasam_glue.bench.measure import TrainClock
from adasam_glue.optim import BASE_CHOICES, OPTIMIZERS, USAM, OptimInfo, register

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.set_num_threads(1)
    cache = str(tmp_path_factory.mktemp("bench_cache"))
    return harness.build_setup("tiny", "cpu", batch_size=4, num_batches=2, max_length=32, cache_dir=cache)


@pytest.fixture(scope="module")
def rows(setup):
    return step_cost.bench_optimizers(setup, rounds=1, warmup=1)


def test_setup_is_built_from_the_composed_config(setup):
    assert setup.cfg.model.name == "tiny" and setup.cfg.model.hidden_size == 32  # conf/model/tiny.yaml
    assert setup.cfg.task.batch_size == 4 and setup.cfg.trainer.cpu
    assert len(setup.batches) == 2 and setup.batches[0]["input_ids"].shape[0] == 4
    assert setup.info["num_params"] == sum(p.numel() for p in setup.params)


def test_optimizer_rows_cover_the_registry(rows):
    assert [r["optimizer"] for r in rows] == list(OPTIMIZERS)
    keys = {"optimizer", "base", "ratio_reference", "ratio_to_base", "step_time_median_s", "step_time_iqr_s",
            "peak_mem_mb", "state_mb", "excess_state_over_base_mb", "param_mb", "updates_per_s", "samples_per_s",
            "optim_fraction"}  # fmt: skip
    for r in rows:
        assert keys <= r.keys()
        assert r["step_time_median_s"] > 0 and r["state_mb"] >= 0 and r["step_cpu_time_median_s"] > 0
        assert (r["ratio_to_base"] is None) == (r["optimizer"] in ("sgd", "amsgrad"))
        assert (r["ratio_to_base_cpu"] is None) == (r["ratio_to_base"] is None)
    by = {r["optimizer"]: r for r in rows}
    # the reference is the registry's baseline_of; LightSAM has none and is compared with AMSGrad
    assert by["sam"]["ratio_reference"] == "sgd" and by["adasam"]["ratio_reference"] == "amsgrad"
    assert by["sam"]["base"] == "sgd" and by["adasam"]["base"] == "amsgrad"
    assert by["lightsam"]["base"] is None and by["lightsam"]["ratio_reference"] == "amsgrad"
    # the SAM weight copy is exactly one parameter-sized buffer over the base's state
    assert by["sam"]["excess_state_in_params"] == pytest.approx(1.0)
    assert by["adasam"]["excess_state_in_params"] == pytest.approx(1.0)
    # AdamW(amsgrad): exp_avg, exp_avg_sq, max_exp_avg_sq (+ scalar steps), found by allocation tracking
    assert 3 * by["amsgrad"]["param_mb"] <= by["amsgrad"]["state_mb"] < 3 * by["amsgrad"]["param_mb"] + 0.01


@pytest.fixture
def throwaway_variant(tmp_path):
    """A new variant as the registry describes one: a record (here on USAM's class) and its YAML (on a
    search path); removed after the test."""
    info = register(
        OptimInfo("benchtoy", USAM, USAM, True, "BenchToy", "#123456", "none (a test)", "e = rho s", "§2.7",
                  keys=("rho",), base="amsgrad", bases=BASE_CHOICES)
    )  # fmt: skip
    conf = tmp_path / "conf" / "optim"
    conf.mkdir(parents=True)
    yaml = (ROOT / "conf" / "optim" / "usam.yaml").read_text().replace("name: usam", "name: benchtoy")
    (conf / "benchtoy.yaml").write_text(yaml)
    try:
        yield info, f"hydra.searchpath=[file://{tmp_path / 'conf'}]"
    finally:
        OPTIMIZERS.pop("benchtoy", None)


@pytest.fixture
def own_tmp(tmp_path, monkeypatch):
    """``tempfile``'s folder, private to the test: each benchmark's scratch (its data cache, its runs) must
    be gone when it returns; they used to pile up in /tmp at every suite run."""
    import tempfile

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    yield tmp
    assert not sorted(tmp.glob("adasam_*")), "a benchmark left its scratch folder behind"


def test_a_newly_registered_variant_gets_its_row_with_no_bench_change(throwaway_variant, tmp_path, own_tmp):
    _, searchpath = throwaway_variant
    out, md = tmp_path / "out", tmp_path / "bench.md"
    argv = ["step-cost", "--quick", "--model", "tiny", "--rounds", "1", "--out", str(out), "--md", str(md)]
    assert cli.main([*argv, searchpath]) == 0
    res = read_json(out / "bench_quick.json")
    assert [r["optimizer"] for r in res["rows"]][-1] == "benchtoy" and not res.get("errors")
    row = next(r for r in res["rows"] if r["optimizer"] == "benchtoy")
    assert row["ratio_reference"] == "amsgrad" and row["ratio_to_base"] > 0  # baseline_of("benchtoy")
    assert row["excess_state_in_params"] == pytest.approx(1.0)  # USAM's weight copy
    assert "| tiny | benchtoy | amsgrad |" in md.read_text()


def test_the_optimizer_class_is_left_untouched(setup):
    from adasam_glue.optim import SAMBase

    before = {k: v for k, v in vars(SAMBase).items() if callable(v)}
    step_cost.bench_optimizers(setup, names=["adasam"], rounds=1, warmup=0)
    assert {k: v for k, v in vars(SAMBase).items() if callable(v)} == before


def test_alloc_tracker_sees_fresh_tensors_not_inplace_and_keeps_views_alive():
    x = torch.zeros(1000)
    tracker = measure.AllocTracker()
    with tracker.active():
        x.add_(1)  # in place: not an allocation
        y = x * 2  # fresh: 4000 bytes
        del y
        z = (x * 3).detach()  # the clone dies, its view lives on: still allocated
    assert tracker.peak == 4000 and tracker.current == 4000
    del z
    assert tracker.current == 0


def test_train_clock_times_updates_from_outside():
    net = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Flatten(), torch.nn.Linear(12, 2))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with TrainClock() as clock:
        for _ in range(4):
            net(torch.randint(0, 10, (5, 3))).sum().backward()
            opt.step()
            opt.zero_grad()
        net.eval()
        with torch.no_grad():
            net(torch.randint(0, 10, (5, 3)))
    assert len(clock.updates()) == 4 and len(clock.eval_spans) == 1
    tp = clock.throughput(skip=1)
    assert tp["updates"] == 3 and tp["samples"] == 15 and tp["padded_tokens_per_sample"] == 3


def test_summary_flags_rows_over_the_limit_and_json_is_written(tmp_path):
    rows = [
        {"model": "m", "optimizer": "sam", "two_pass": True, "ratio_to_base": 2.3, "optim_fraction": 0.1},
        {"model": "m", "optimizer": "adasam", "two_pass": True, "ratio_to_base": 1.9, "optim_fraction": 0.05},
    ]
    s = step_cost.summarize(rows)
    assert [o["optimizer"] for o in s["sam_rows_over_limit"]] == ["sam"]
    assert s["optim_fraction_adasam"] == {"m": 0.05}
    write_json(tmp_path / "b.json", {"rows": rows, "summary": s, "x": float("nan")}, partial=True)
    loaded = read_json(tmp_path / "b.json")
    assert loaded["summary"]["max_ratio_to_base"] == 2.3 and loaded["x"] == "nan" and loaded["partial"]
    assert loaded["schema_version"] == harness.SCHEMA_VERSION


def test_peak_flops_by_device_name():
    assert gpu_check.peak_flops("NVIDIA H200", "bf16") == 989e12
    assert gpu_check.peak_flops("NVIDIA A100-SXM4-80GB", "fp16") == 312e12
    assert gpu_check.peak_flops("Tesla T4") is None and gpu_check.peak_flops("NVIDIA H200", "no") is None


def test_roberta_large_random_is_the_architecture_without_download():
    from adasam_glue.modeling import ModelError, build_model, build_tokenizer
    from adasam_glue.tasks import get_task

    cfg = harness.compose(["model=roberta-large-random", "task=rte"])
    with torch.device("meta"):
        net = build_model(cfg.model, get_task("rte"), None)
    assert type(net).__name__ == "RobertaForSequenceClassification"
    assert sum(p.numel() for p in net.parameters()) == pytest.approx(355.36e6, rel=1e-3)
    with pytest.raises(ModelError, match="no tokenizer"):
        build_tokenizer(cfg.model)


def test_render_step_cost_page_from_json(rows, setup, tmp_path):
    rows = [dict(r) for r in rows]
    rows[2]["ratio_to_base_cpu"] = 9.99  # force one row over the limit: the summary and its section name it
    res = {"rows": rows, "env": harness.environment("cpu"), "setups": {"tiny": setup.info},
           "summary": step_cost.summarize(rows)}  # fmt: skip
    write_json(tmp_path / "bench_quick.json", res)
    out = tmp_path / "bench.md"
    assert cli.main(["render", str(tmp_path / "bench_quick.json"), "--md", str(out)]) == 0
    md = out.read_text()
    lines = md.splitlines()
    assert lines[0] == "# Benchmarks: what a SAM update costs"
    table = [line for line in lines if line.startswith("| tiny |")]
    assert [line.split(" | ")[1] for line in table] == [r["optimizer"] for r in rows]
    over = rows[2]["optimizer"]
    assert f"| tiny | {over} | {rows[2]['ratio_reference']} | **9.99** |" in md
    summary = next(line for line in lines if line.startswith("**Summary:"))
    assert f"tiny {over} 9.99" in summary and "over 2.15" in summary
    assert "## Rows over the limit" in md and f"**tiny {over} (9.99)**" in md and render.NOTES in md


@pytest.mark.parametrize(
    "json_name, page",
    [("bench_quick", "bench"), ("overhead", "bench_overhead"), ("hf_parity", "bench_parity")],
)
def test_the_committed_pages_are_rendered_from_the_committed_json(json_name, page):
    """``make bench-docs`` regenerates the committed pages byte for byte (schema 2 files included)."""
    source = f"results/bench/{json_name}.json"
    page_text = render.render(ROOT / source).replace(str(ROOT / source), source)
    assert page_text == (ROOT / f"docs/{page}.md").read_text()


def test_overhead_analysis_of_a_clock():
    clock = TrainClock()
    t = 0.0
    for k in range(1, 301):  # compute 2 ms, gap 0.5 ms, growing by 1 us per update; an eval after 150
        clock.train_starts.append(t)
        clock.train_starts_cpu.append(t)
        clock.step_ends_cpu.append(t + 0.002)
        clock.rows.append(4)
        clock.padded_tokens.append(40)
        clock.step_ends.append(t + 0.002)
        t += 0.002 + 0.0005 + k * 1e-6
        if k == 150:
            clock.eval_spans.append((t - 0.0001, t - 0.00005))
            t += 0.01
    res = overhead.analyse(clock, (100, 200, 300), window=50)
    assert [p["reached"] for p in res["points"]] == [True, True, True]
    assert res["points"][2]["window"] == [250, 299]  # the last update has no gap after it
    assert res["points"][0]["overhead"] == res["points"][0]["overhead_cpu"]
    p100 = res["points"][0]["overhead_cpu"]
    assert p100["n"] == 50 and p100["median_ms"] == pytest.approx(0.5 + 0.075, abs=0.002)
    assert [e["update"] for e in res["eval_points"]] == [150]
    v = overhead.verdict(res["points"][:2])
    assert v["evaluated"] and v["within_1ms"] and v["flat"]


def test_overhead_benchmark_runs_the_real_loop(own_tmp):
    res = overhead.bench_overhead(points=(40, 80), window=20, optim="amsgrad", task="mrpc", budget_s=300)
    assert res["status"] == "completed" and res["optimizer_updates"] == 80
    assert [p["reached"] for p in res["points"]] == [True, True]
    assert res["points"][0]["overhead_cpu"]["n"] > 0 and res["data_fetch_ms"] > 0
    assert res["verdict"]["evaluated"]
    assert "## Harness overhead per update" in render.render_overhead(res)


def test_gpu_check_dry_run_on_cpu(tmp_path, own_tmp):
    argv = ["gpu-check", "--dry", "--out", str(tmp_path), "--optimizers", "sgd", "sam", "adasam"]
    assert cli.main([*argv, "--md", str(tmp_path / "gpu.md")]) == 0
    res = read_json(tmp_path / "gpu_check_dry.json")
    assert res["mode"] == "dry" and set(res["summary"]) == {"bf16", "fp16"}
    for precision in ("bf16", "fp16"):
        entry = res["agreement"]["precisions"][precision]
        assert "supported" in entry  # agrees, or says why not: never a crash
        if entry["supported"]:
            assert set(entry["optimizers"]) == set(gpu_check.AGREEMENT_OPTIMIZERS)
    ok = [r for r in res["rows"] if "error" not in r]
    assert {r["optimizer"] for r in ok} <= {"sgd", "sam", "adasam"} and all("tokens_per_s" in r for r in ok)
    assert (tmp_path / "gpu.md").read_text().startswith("# GPU check")


def test_parity_plan_and_summary_without_training(tmp_path):
    recipe = parity.Recipe(train_rows=1000, epochs=3, batch_size=32)
    specs = parity.plan(recipe, ("mrpc",), (1, 2), "/data/glue", tmp_path, rounds=1, padmax_steps=5)
    assert [(s["framework"], s["variant"], s["seed"]) for s in specs] == [
        ("ours", "dynamic", 1), ("hf", "dynamic", 1), ("hf", "dynamic", 2), ("ours", "dynamic", 2),
        ("ours", "grouped", 1), ("hf", "grouped", 1), ("hf", "pad_to_max", 1),
    ]  # fmt: skip
    ov = specs[0]["overrides"]
    assert {"task.total_updates=96", "task.warmup_updates=6", "data.data_dir=/data/glue"} <= set(ov)
    cfg = harness.compose(ov)  # a valid composed config
    assert cfg.optim.name == "amsgrad" and cfg.data.max_train_samples == 1000
    assert cfg.trainer.max_grad_norm is None

    def run(fw, variant, seed, acc, sps, tokens=50.0):
        return {"framework": fw, "variant": variant, "task": "mrpc", "seed": seed, "metrics": {"accuracy": acc, "f1": acc},
                "throughput": {"samples_per_s": sps, "padded_tokens_per_sample": tokens}}  # fmt: skip

    runs = [run("ours", "dynamic", 1, 0.70, 10), run("hf", "dynamic", 1, 0.72, 9), run("ours", "dynamic", 2, 0.74, 11),
            run("hf", "dynamic", 2, 0.70, 10), run("ours", "grouped", 1, 0, 30, 20), run("hf", "grouped", 1, 0, 25, 22),
            run("hf", "pad_to_max", 1, 0, 10, 128)]  # fmt: skip
    s = parity.summarize(runs, ("mrpc",))
    p = s["parity"]["mrpc"]
    assert p["ours"]["mean"]["accuracy"] == pytest.approx(0.72)
    assert p["per_metric"]["accuracy"]["parity"] is True
    eq = s["throughput"]["equal_padding"]["mrpc"]
    assert eq["ratio_ours_to_hf"] == pytest.approx(10.5 / 9.5) and eq["met"]
    g = s["throughput"]["grouping"]["mrpc"]
    assert g["ratio_vs_hf_pad_to_max"] == pytest.approx(3.0) and g["met"]
    md = render.render_parity({**s, "recipe": {}, "seeds": [1, 2], "runs": runs})
    assert "| mrpc | accuracy | 0.7200 ± 0.0283 | 0.7100 ± 0.0141 |" in md and "**parity**" in md


@pytest.mark.slow
def test_parity_benchmark_end_to_end_on_generated_tsvs(tmp_path, own_tmp):
    from adasam_glue.data import make_synthetic_glue

    make_synthetic_glue("mrpc", tmp_path / "glue", num_train=96, num_eval=32)
    assert cli.main(["parity", "--data-dir", str(tmp_path / "glue"), "--out", str(tmp_path), "--quick", "--tasks", "mrpc",
                     "--md", str(tmp_path / "p.md")]) == 0  # fmt: skip
    res = read_json(tmp_path / "hf_parity.json")
    assert not [r for r in res["runs"] if "error" in r] and res["no_decay_rule_equal"] is True
    assert {r["framework"] for r in res["runs"]} == {"ours", "hf"}
    assert set(res["parity"]["mrpc"]["ours"]["mean"]) == {"accuracy", "f1"}
