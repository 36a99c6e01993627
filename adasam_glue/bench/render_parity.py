"""The parity page (``docs/bench_parity.md``) from ``hf_parity.json``: every figure from the file.

Why a figure is what it is goes in the hand-written ``docs/bench_notes.md``, which the page links.
"""

from __future__ import annotations

from typing import Any

from adasam_glue.bench.render import NOTES, env_line, f, table


def _ms(v: dict[str, Any], m: str) -> str:
    return f"{f(v['mean'].get(m), '{:.4f}')} ± {f(v['std'].get(m), '{:.4f}')}"


def render_parity(res: dict[str, Any], source: str = "results/bench/hf_parity.json") -> str:
    """The page of ``hf_parity.json``: recipe, dev metrics per seed and mean ± std, throughput."""
    r = res.get("recipe", {})
    L = ["# Parity with Hugging Face `transformers.Trainer` on real GLUE", ""]
    L += [
        f"Generated from `{source}` (`{res.get('env', {}).get('command', '')}`); do not edit by hand. "
        f"Explanations: [{NOTES}]({NOTES}); schema: [bench_schema.md](bench_schema.md).",
        "",
        f"Recipe, identical on both sides: model {r.get('model')}, {r.get('train_rows')} training rows (a subset "
        f"seeded by the run's seed, the same for both), {r.get('epochs')} epochs at batch {r.get('batch_size')}, "
        f"max_length {r.get('max_length')}, AdamW with amsgrad=True (betas, eps and weight decay of "
        f"`conf/optim/amsgrad.yaml`; no decay for biases and LayerNorm on both sides: "
        f"{'checked equal' if res.get('no_decay_rule_equal') else 'NOT equal'}), lr {r.get('lr')}, "
        f"{r.get('warmup_ratio', 0):.0%} linear warmup then linear decay, no clipping, dynamic padding, the full dev "
        f"set once after training. Seeds {', '.join(map(str, res.get('seeds', [])))}; data `{res.get('data_dir')}`; "
        f"{res.get('jobs')} run(s) at a time, one thread each.",
        "",
        env_line(res.get("env", {})) + f" {f(res.get('wall_s'), '{:.0f}')} s in all.",
        "",
        "## Dev metrics (final), mean ± std over seeds",
        "",
    ]
    body = []
    for task, v in (res.get("parity") or {}).items():
        for m in v["metrics"]:
            pm = v["per_metric"][m]
            verdict = {True: "**parity**", False: "**differ**", None: "one seed: not evaluated"}[pm["parity"]]
            body.append(
                [
                    task,
                    m,
                    _ms(v["ours"], m),
                    _ms(v["hf"], m),
                    f(pm["mean_difference"], "{:.4f}"),
                    f(pm["larger_std"], "{:.4f}"),
                    verdict,
                ]
            )
    L += table(
        ["task", "metric", "adasam_glue", "transformers.Trainer", "|difference|", "larger std", "verdict"],
        body,
    )
    L += [
        "",
        "Parity: the means differ by less than the larger of the two standard deviations.",
        "",
        "Per seed:",
        "",
    ]
    body = []
    for task, v in (res.get("parity") or {}).items():
        for seed in v["ours"]["per_seed"].keys() | v["hf"]["per_seed"].keys():
            for m in v["metrics"]:
                body.append(
                    [
                        task,
                        seed,
                        m,
                        f(v["ours"]["per_seed"].get(seed, {}).get(m), "{:.4f}"),
                        f(v["hf"]["per_seed"].get(seed, {}).get(m), "{:.4f}"),
                    ]
                )
    L += table(["task", "seed", "metric", "adasam_glue", "transformers.Trainer"], sorted(body)) + [""]
    L += _throughput(res)
    errors = [x for x in res.get("runs", []) if "error" in x]
    if errors:
        L += (
            ["## Failed runs", ""]
            + [
                f"- {e['framework']} {e['variant']} {e['task']} seed {e['seed']}: {e['error'][:300]}"
                for e in errors
            ]
            + [""]
        )
    return "\n".join(L)


def _throughput(res: dict[str, Any]) -> list[str]:
    tp = res.get("throughput") or {}
    L = [
        "## Training throughput at equal padding (the parity runs)",
        "",
        "Samples/s from the second update to the last optimizer step, evaluations excluded, measured the same way "
        "on both sides (global forward and optimizer-step hooks); median over seeds.",
        "",
    ]
    body = []
    for task, v in (tp.get("equal_padding") or {}).items():
        body.append(
            [
                task,
                f(v["ours"]["median_samples_per_s"]),
                f(v["hf"]["median_samples_per_s"]),
                f"{f(v['ours']['padded_tokens_per_sample'], '{:.1f}')} / {f(v['hf']['padded_tokens_per_sample'], '{:.1f}')}",
                f"**{f(v['ratio_ours_to_hf'])}x**",
                "met" if v.get("met") else "not met",
            ]
        )
    L += table(
        [
            "task",
            "adasam_glue samples/s",
            "HF samples/s",
            "padded tokens per sample (ours / HF)",
            "ours / HF",
            f"target >= {TARGET_TEXT[0]}",
        ],
        body,
    ) + [""]
    L += [
        "## Length grouping vs HF's group_by_length and vs run_glue's default (pad to max_length)",
        "",
        f"One epoch each (HF pad-to-max: {res.get('padmax_steps')} updates, its batches all of one shape), "
        f"{res.get('rounds')} round(s) interleaved, medians.",
        "",
    ]
    body = []
    for task, v in (tp.get("grouping") or {}).items():
        body.append(
            [
                task,
                *(
                    f"{f(v[k]['samples_per_s'])} ({f(v[k]['padded_tokens_per_sample'], '{:.1f}')})"
                    for k in ("ours_grouped", "hf_grouped", "hf_pad_to_max")
                ),
                f(v["ratio_vs_hf_grouped"]),
                f"**{f(v['ratio_vs_hf_pad_to_max'])}x**",
                "met" if v.get("met") else "not met",
            ]
        )
    L += table(
        [
            "task",
            "ours grouped: samples/s (padded tokens / sample)",
            "HF group_by_length",
            "HF pad to max_length",
            "ours / HF grouped",
            "ours grouped / HF pad-to-max",
            f"target >= {TARGET_TEXT[1]}",
        ],
        body,
    )
    return L + [""]


TARGET_TEXT = ("1.0x", "2.9x")
