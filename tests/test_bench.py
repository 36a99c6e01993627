"""Smoke tests of the benchmark functions at tiny sizes: JSON structure, not timings."""

from __future__ import annotations

import json

import pytest
import torch

from adasam_glue import bench
from adasam_glue.optim import OPTIMIZERS


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.set_num_threads(1)
    return bench.build_setup(
        "tiny",
        "cpu",
        batch_size=4,
        num_batches=2,
        max_length=32,
        cache_dir=str(tmp_path_factory.mktemp("bench_cache")),
    )


@pytest.fixture(scope="module")
def rows(setup):
    return bench.bench_optimizers(setup, rounds=1, warmup=1)


def test_optimizer_rows_cover_the_registry(rows):
    assert [r["optimizer"] for r in rows] == list(OPTIMIZERS)
    keys = {
        "optimizer",
        "base",
        "ratio_to_base",
        "step_time_median_s",
        "step_time_iqr_s",
        "peak_mem_mb",
        "state_mb",
        "excess_state_over_base_mb",
        "param_mb",
        "updates_per_s",
        "samples_per_s",
        "optim_fraction",
    }
    for r in rows:
        assert keys <= r.keys()
        assert r["step_time_median_s"] > 0 and r["state_mb"] >= 0
        assert (r["ratio_to_base"] is None) == (r["optimizer"] in ("sgd", "amsgrad"))
    by = {r["optimizer"]: r for r in rows}
    assert by["sam"]["base"] == "sgd" and by["adasam"]["base"] == "amsgrad"
    # the SAM weight copy is exactly one parameter-sized buffer over the base's state
    assert by["sam"]["excess_state_in_params"] == pytest.approx(1.0)
    assert by["adasam"]["excess_state_in_params"] == pytest.approx(1.0)


def test_optimizer_buffers_count_state_and_the_weight_copy(setup):
    opt = bench._build(setup, "adasam")
    trainer = bench._trainer_for(setup, opt, "adasam")
    setup.reset()
    trainer.train_step([setup.batches[0]])
    n_state = bench._tensor_bytes(bench.optimizer_buffers(opt))
    # AdamW(amsgrad): exp_avg, exp_avg_sq, max_exp_avg_sq (+ scalar steps) + the weight copy
    assert n_state >= 4 * setup.param_bytes
    assert n_state < 4 * setup.param_bytes + 4096


def test_alloc_tracker_sees_fresh_tensors_not_inplace():
    x = torch.zeros(1000)
    tracker = bench.AllocTracker()
    with tracker.active():
        x.add_(1)  # in place: not an allocation
        y = x * 2  # fresh: 4000 bytes
        del y
    assert tracker.peak == 4000
    assert tracker.current == 0


def test_hf_trainer_comparison_structure(setup, tmp_path):
    out = bench.bench_hf_trainer(
        setup, rounds=1, steps=1, warmup=1, out_dir=str(tmp_path), include_default=False
    )
    assert set(out["variants"]) == {"ours_adamw", "hf_adamw_torch", "ours_amsgrad", "hf_amsgrad"}
    assert out["variants"]["hf_amsgrad"]["n_timed"] == 1
    assert set(out["samples_per_s_ratio"]) == {"adamw", "amsgrad"}


def test_optimizer_math_and_padding(setup):
    math_row = bench.bench_optimizer_math(setup, repeats=1)
    assert {"perturbation_foreach_s", "perturbation_per_tensor_s", "foreach_speedup"} <= math_row.keys()
    assert "amsgrad_step_foreach_false" in math_row["median_s"]
    pad = bench.bench_padding("tiny", tasks=("mrpc",), max_lengths=(128,), glue_like_n=500, synthetic_n=64)
    sources = {r["source"] for r in pad}
    assert "glue_like" in sources
    for r in pad:
        if "error" not in r:
            assert r["grouped_tokens"] <= r["dynamic_tokens"] <= r["max_length_tokens"]


def test_summary_flags_rows_over_the_limit_and_json_is_written(tmp_path):
    res = {
        "rows": [
            {"model": "m", "optimizer": "sam", "two_pass": True, "ratio_to_base": 2.3, "optim_fraction": 0.1},
            {
                "model": "m",
                "optimizer": "adasam",
                "two_pass": True,
                "ratio_to_base": 1.9,
                "optim_fraction": 0.05,
            },
        ]
    }
    s = bench.summarize(res)
    assert [o["optimizer"] for o in s["sam_rows_over_limit"]] == ["sam"]
    bench.write_json(tmp_path / "b.json", {**res, "summary": s, "x": float("nan")})
    loaded = json.loads((tmp_path / "b.json").read_text())
    assert loaded["summary"]["max_ratio_to_base"] == 2.3 and loaded["x"] == "nan"


def test_peak_flops_by_device_name():
    assert bench.peak_bf16_flops("NVIDIA H200") == 989e12
    assert bench.peak_bf16_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert bench.peak_bf16_flops("Tesla T4") is None


def test_render_markdown_from_json(rows, setup, tmp_path):
    rows = [dict(r) for r in rows]
    res = {
        "rows": rows,
        "env": bench.environment("cpu"),
        "setups": {"tiny": {"num_params": setup.num_params, "batch_size": 4, "mean_padded_len": 10.0}},
        "padding": bench.bench_padding("tiny", tasks=("mrpc",), max_lengths=(128,), glue_like_n=200),
        "gpu": {"skipped": "--device cpu"},
    }
    rows[2]["ratio_to_base"] = 9.99  # force one row over the limit: the summary and "Why" name it
    res["summary"] = bench.summarize(res)
    path = tmp_path / "bench_quick.json"
    bench.write_json(path, res)
    out = tmp_path / "bench.md"
    assert bench.main(["--render", str(path), "--md", str(out)]) == 0
    md = out.read_text()
    lines = md.splitlines()
    assert lines[0] == "# Benchmarks: what a SAM update costs"
    header = next(i for i, line in enumerate(lines) if line.startswith("| model | optimizer | base |"))
    table = [line for line in lines[header + 2 :] if line.startswith("| tiny |")][: len(rows)]
    assert [line.split(" | ")[1] for line in table] == [r["optimizer"] for r in rows]
    over = rows[2]["optimizer"]
    assert f"| tiny | {over} | {rows[2]['base']} | **9.99** |" in md
    summary = next(line for line in lines if line.startswith("**Summary:"))
    assert f"tiny {over} 9.99" in summary and "over 2.15" in summary
    assert "## Why rows over the limit" in md and f"**tiny {over} (9.99)**" in md
    assert "## Padding" in md and "| glue_like | mrpc |" in md
    assert "Not measured in this run (--device cpu)" in md
