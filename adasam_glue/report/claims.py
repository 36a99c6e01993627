"""The paper's qualitative claims (spec §4) checked against the measured results.

Verdict rules (stated in ``claims.md``):

- "X beats Y on k of 8 tasks, average +d": *holds* when X wins on at least the paper's fraction (k/8)
  of the tasks where both have results and, if the paper gives an average, the measured average gain
  is positive; *partly holds* when one of the two is true; else *does not hold*. With fewer than 8
  tasks the verdict says "on the m tasks available".
- "adaptive methods beat SGD-based ones": AMSGrad vs SGD and AdaSAM vs SAM at each beta1, on the tasks
  both have; holds when every available comparison has a positive average and a majority of wins.
- Figure 1, "batch 32 needs about half the updates of batch 16": holds when every measured ratio
  U(32)/U(16) lies in [0.35, 0.65] (0.5 ± 30%).
- A claim without the data it needs is *not testable*, never a pass.
- Like with like (docs/algorithms.md §4.4): a table claim is checked once per comparison (a base row and
  a SAM row of one setting, :class:`adasam_glue.report.tables.Comparison`), never across settings; the
  cross-table claim compares two cells of a task only when their identities differ in optimizer keys
  alone. Every verdict lists the identities (group hashes) it rests on.
- On synthetic data a claim about GLUE is *not testable*; the verdict the numbers alone would give is
  shown in parentheses, as a check of the pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from adasam_glue.report.collect import Run
from adasam_glue.report.figures import SpeedupResult
from adasam_glue.report.grouping import OPTIM, SEED, differs_outside, short_key
from adasam_glue.report.palette import method_name, metric_label, task_name
from adasam_glue.report.setting import SYNTHETIC_BANNER, any_synthetic, data_text, model_text, setting_text
from adasam_glue.report.sharpness import SharpnessReport
from adasam_glue.report.tables import Comparison, Row, TableResult
from adasam_glue.tasks import TASK_ORDER, TASKS

__all__ = ["REFERENCE_DEV", "SPEEDUP_BAND", "Claim", "check_claims", "render_claims"]

SPEEDUP_BAND = (0.35, 0.65)
#: fairseq RoBERTa-large dev results (median of 5), spec §5, on each task's selection metric.
REFERENCE_DEV = {
    "mnli": 90.2,
    "qnli": 94.7,
    "qqp": 92.2,
    "rte": 86.6,
    "sst2": 96.4,
    "mrpc": 90.9,
    "cola": 68.0,
    "stsb": 92.4,
}


@dataclass(frozen=True)
class Claim:
    source: str  #: where the paper makes it (plus the row setting, for a comparison of marked rows)
    claim: str
    measured: str
    verdict: str  #: holds | holds on the m tasks available | partly holds | does not hold | not testable
    setting: str = ""  #: what the runs behind the verdict were trained on
    identities: tuple[str, ...] = ()  #: the identities (group hashes) the verdict rests on, in words


def _names(tasks: Sequence[str]) -> str:
    return ", ".join(task_name(t) for t in tasks) or "none"


def _on_synthetic(verdict: str, synthetic: bool) -> str:
    """Generated data cannot test a claim about GLUE: say so, keep the pipeline's answer visible."""
    if not synthetic or verdict == "not testable":
        return verdict
    return f"not testable on synthetic data (the numbers alone would say: {verdict})"


def _table_claim(res: TableResult, comp: Comparison | None = None) -> Claim:
    """The table's claim checked on one comparison (the unmarked pair by default)."""
    spec = res.spec
    comp = comp or res.main
    s = comp.sam.label
    not_ = f" (not {', '.join(task_name(t) for t in spec.paper_losses)})" if spec.paper_losses else ""
    avg = f", average +{spec.paper_average:.2f}" if spec.paper_average is not None else ""
    claim = (
        f"{method_name(spec.sam)} beats {method_name(spec.base)} on {spec.paper_wins} of 8 tasks{not_}{avg}"
    )
    marks = [x for x in (comp.base.suffix, comp.sam.suffix) if x]
    source = spec.title + (f" [{' vs '.join(dict.fromkeys(marks))}]" if marks else "")
    setting = setting_text(comp.runs) if comp.runs else ""
    common = comp.common_tasks
    m = len(common)
    if m == 0:
        return Claim(source, claim, "no task has results for both methods", "not testable", setting)
    won, lost, tied = comp.wins()
    d = (comp.average(comp.sam.method) - comp.average(comp.base.method)) * 100
    paper_won = set(TASK_ORDER) - set(spec.paper_losses)
    agree = sum((t in won) == (t in paper_won) for t in common)
    tested = [p for p in comp.paired if p.ci is not None]
    sig_pos = [p.task for p in tested if p.ci[0] > 0]
    sig_neg = [p.task for p in tested if p.ci[1] < 0]
    measured = (
        f"{s} wins on {len(won)} of {m} ({_names(won)}), loses on {_names(lost)}"
        + (f", ties on {_names(tied)}" if tied else "")
        + f"; average {d:+.2f} over {m} task(s); "
        f"per-task direction agrees with the paper on {agree} of {m}; "
        f"bootstrap CI excludes 0 on {len(sig_pos) + len(sig_neg)} of {len(tested)} task(s) with ≥ 2 "
        f"paired seeds ({s} better: {_names(sig_pos)}; worse: {_names(sig_neg)})"
    )
    frac_ok = len(won) / m >= spec.paper_wins / len(TASK_ORDER) - 1e-12
    avg_ok = d > 0 if spec.paper_average is not None else True
    if frac_ok and avg_ok:
        verdict = "holds" if m == len(TASK_ORDER) else f"holds on the {m} task(s) available"
    elif frac_ok or (spec.paper_average is not None and avg_ok):
        verdict = "partly holds"
    else:
        verdict = "does not hold"
    return Claim(
        source, claim, measured, _on_synthetic(verdict, comp.synthetic), setting, tuple(comp.identities())
    )


def _adaptive_claim(tables: Sequence[TableResult]) -> Claim:
    """AMSGrad vs SGD and AdaSAM vs SAM per beta1, over the tasks where the two unmarked cells' runs
    differ only in optimizer keys (a task whose cells differ in model, data, ... is left out, named)."""
    claim = "adaptive methods (AMSGrad, AdaSAM) beat SGD-based ones (SGD, SAM)"
    parts: list[str] = []
    oks: list[bool] = []
    idents: list[str] = []
    runs: list[Run] = []
    by_beta: dict[float, dict[str, TableResult]] = {}
    for res in tables:
        by_beta.setdefault(res.spec.beta1, {})[res.spec.base] = res
    for beta1 in sorted(by_beta, reverse=True):
        got = by_beta[beta1]
        if "amsgrad" not in got or "sgd" not in got:
            continue
        for ada, sgd in (("amsgrad", "sgd"), ("adasam", "sam")):
            ra = got["amsgrad"] if ada in got["amsgrad"].spec.methods else None
            rs = got["sgd"] if sgd in got["sgd"].spec.methods else None
            if ra is None or rs is None:
                continue
            common, unlike = [], []
            for t in TASK_ORDER:
                ca, cs = ra.cell(t, ada), rs.cell(t, sgd)
                if ca.score is None or cs.score is None:
                    continue
                keys = differs_outside(
                    ca.chosen.completed[0].flat, cs.chosen.completed[0].flat, (OPTIM, SEED)
                )
                if keys:
                    more = f", +{len(keys) - 3} more" if len(keys) > 3 else ""
                    unlike.append(f"{task_name(t)} ({', '.join(short_key(k) for k in keys[:3])}{more})")
                    continue
                common.append(t)
                idents.append(
                    f"β1={beta1:g} {task_name(t)}: {method_name(ada)} {ca.chosen.group_hash}, "
                    f"{method_name(sgd)} {cs.chosen.group_hash}"
                )
                runs += [*ca.chosen.completed, *cs.chosen.completed]
            skipped = (
                f" ({len(unlike)} task(s) not compared, settings differ: {'; '.join(unlike)})"
                if unlike
                else ""
            )
            if not common:
                if unlike:
                    parts.append(
                        f"β1={beta1:g}: {method_name(ada)} vs {method_name(sgd)}: none comparable{skipped}"
                    )
                continue
            wins = sum(ra.cell(t, ada).score > rs.cell(t, sgd).score for t in common)
            d = sum(ra.cell(t, ada).score - rs.cell(t, sgd).score for t in common) / len(common) * 100
            oks.append(d > 0 and wins > len(common) / 2)
            parts.append(
                f"β1={beta1:g}: {method_name(ada)} beats {method_name(sgd)} on {wins} of {len(common)}, "
                f"average {d:+.2f}{skipped}"
            )
    if not oks:
        measured = "; ".join(parts) or "no task has both an adaptive and an SGD-based result"
        return Claim("Tables 1-4", claim, measured, "not testable")
    verdict = "holds" if all(oks) else "does not hold" if not any(oks) else "partly holds"
    return Claim(
        "Tables 1-4",
        claim,
        "; ".join(parts),
        _on_synthetic(verdict, any_synthetic(runs)),
        setting_text(runs),
        tuple(idents),
    )


def _speedup_claim(sp: SpeedupResult) -> Claim:
    claim = "batch 32 needs about half the updates of batch 16 to reach the same training loss"
    ratios = {t: r for t in sp.runs if (r := sp.ratio(t)) is not None}
    runs = [r for by_b in sp.runs.values() for rs in by_b.values() for r in rs]
    setting = setting_text(runs) if runs else ""
    idents = tuple(
        f"{task_name(t)} batch {b}: " + ", ".join(sorted({r.group_hash for r in rs}))
        for t, by_b in sp.runs.items()
        for b, rs in by_b.items()
    )
    if not ratios:
        return Claim("Figure 1", claim, sp.statement(), "not testable", setting, idents)
    lo, hi = SPEEDUP_BAND
    inside = [lo <= r <= hi for r in ratios.values()]
    measured = "; ".join(f"{task_name(t)}: U(32)/U(16) = {r:.2f}" for t, r in ratios.items())
    verdict = "holds" if all(inside) else "does not hold" if not any(inside) else "partly holds"
    if verdict == "holds" and len(ratios) < len(sp.runs):
        verdict = f"holds on the {len(ratios)} task(s) available"
    return Claim(
        "Figure 1",
        claim,
        measured + f" (ideal 0.50; band {lo}–{hi})",
        _on_synthetic(verdict, any_synthetic(runs)),
        setting,
        idents,
    )


def _matched_claim(res: TableResult) -> Claim:
    """The unmarked SAM row against the compute-matched base row (equal forward/backward passes): not a
    claim of the paper, the check a reader needs beside it (issue 21 §2.2). Wins, losses and ties per
    task on the mean task score, and where the paired bootstrap CI excludes 0."""
    spec = res.spec
    sam, base = method_name(spec.sam), method_name(spec.base)
    per = []
    for m in res.matched:
        p = m.paired
        sig = (
            "" if p.ci is None else (" (CI excludes 0)" if p.ci[0] > 0 or p.ci[1] < 0 else " (CI includes 0)")
        )
        per.append(f"{task_name(m.task)}: {m.outcome} {p.mean:+.2f}{sig}")
    won = [m.task for m in res.matched if m.outcome == "win"]
    lost = [m.task for m in res.matched if m.outcome == "loss"]
    tied = [m.task for m in res.matched if m.outcome == "tie"]
    n = len(res.matched)
    verdict = f"{sam} wins {len(won)}, loses {len(lost)}, ties {len(tied)} of {n} at equal compute"
    runs = [r for m in res.matched for row in (m.base, Row(spec.sam)) for r in res.row_cell(row, m.task).runs]
    idents = tuple(
        f"{task_name(m.task)}: {sam} {m.paired.sam_identity}"
        + ("" if m.rho is None else f" (ρ={m.rho:g})")
        + f" vs {base} compute-matched {m.paired.base_identity} ({m.paired.n} seed(s) paired)"
        for m in res.matched
    )
    return Claim(
        f"{spec.title} (compute-matched)",
        f"not a claim of the paper: {sam} vs {base} given the same forward/backward passes (equal compute; "
        f"the table's headline compares equal updates)",
        "; ".join(per) + f"; wins on {_names(won)}, loses on {_names(lost)}, ties on {_names(tied)}",
        _on_synthetic(verdict, any_synthetic(runs)),
        setting_text(runs),
        idents,
    )


def check_claims(tables: Sequence[TableResult], speedup: SpeedupResult) -> list[Claim]:
    """One claim per table comparison with results (the unmarked pair always), then the compute-matched
    line of a table that has one, then the cross-table and the speedup claims."""
    out = []
    for res in tables:
        out += [_table_claim(res, c) for c in res.comparisons if c.main or c.common_tasks]
        if res.matched:
            out.append(_matched_claim(res))
    return [*out, _adaptive_claim(tables), _speedup_claim(speedup)]


def _comparable(runs: Sequence[Run]) -> str:
    """Whether a fairseq RoBERTa-large reference number applies to these runs, and if not, why."""
    why = []
    models = sorted({model_text(r) for r in runs})
    if any(not m.startswith("roberta-large") for m in models):
        why.append(f"model {', '.join(models)}")
    data = sorted({data_text(r) for r in runs})
    if any(not d.startswith(("GLUE TSV", "Hub dataset")) or "first" in d for d in data):
        why.append("; ".join(data))
    return "yes" if not why else "no: " + "; ".join(why)


def _reference_lines(tables: Sequence[TableResult]) -> list[str]:
    t1 = next((r for r in tables if r.spec.name == "table1"), None)
    if t1 is None:
        return []
    lines = []
    for t in TASK_ORDER:
        c = t1.cell(t, "amsgrad")
        metric = TASKS[t].selection_metric
        s = c.metrics.get(metric) if c.present else None
        if s is None:
            continue
        models = sorted({model_text(r) for r in c.chosen.completed})
        lines.append(
            f"| {task_name(t)} {metric_label(metric)} | {s.mean * 100:.2f} | {REFERENCE_DEV[t]:.1f} | "
            f"{s.mean * 100 - REFERENCE_DEV[t]:+.2f} | {', '.join(models)} | {c.chosen.group_hash} | "
            f"{_comparable(c.chosen.completed)} |"
        )
    return lines


def render_claims(claims: Sequence[Claim], tables: Sequence[TableResult], sharpness: SharpnessReport) -> str:
    synthetic = any(t.synthetic for t in tables) or any_synthetic([p.run for p in sharpness.points])
    out = ["# The paper's claims checked against these runs" + (" — SYNTHETIC DATA" if synthetic else ""), ""]
    if synthetic:
        out += [f"> **{SYNTHETIC_BANNER}**", ""]
    out += [
        "Paper: AdaSAM (arXiv 2303.00565), spec §4. Each claim with what these run records measure and "
        "a verdict. Rules: a table claim holds when the SAM method wins on at least the paper's fraction "
        "of the tasks that have results for both methods and (where the paper states one) the average "
        "gain is positive; one of the two: partly holds. The speedup claim holds when U(32)/U(16) lies in "
        f"[{SPEEDUP_BAND[0]}, {SPEEDUP_BAND[1]}]. Missing data makes a claim not testable, never a pass. "
        "A verdict rests only on runs of one setting that differ in optimizer keys alone (one line per "
        "comparison; its identities are listed below); on synthetic data no claim is testable.",
        "",
        "| Source | Setting | Paper's claim | Measured here | Verdict |",
        "|---|---|---|---|---|",
    ]
    for c in claims:
        out.append(f"| {c.source} | {c.setting or '—'} | {c.claim} | {c.measured} | **{c.verdict}** |")
    out += ["", "## Identities behind each verdict", ""]
    out += [f"- {c.source}: " + ("; ".join(c.identities) if c.identities else "none") for c in claims]
    out += ["", "## Flatter minima (sharpness)", ""]
    out += [f"- {line}" for line in sharpness.claims]
    ref = _reference_lines(tables)
    out += ["", "## Sanity check: AMSGrad (β1 = 0.9) vs fairseq RoBERTa-large dev results (spec §5)", ""]
    if ref:
        out += [
            "Reference: median of 5 runs, RoBERTa-large, fairseq README. Only comparable when the model is "
            "roberta-large and the data is the full real GLUE (column comparable).",
            "",
            "| Task metric | measured ×100 | reference | difference | model | identity | comparable |",
            "|---|---:|---:|---:|---|---|---|",
        ]
        out += ref
    else:
        out.append("No AMSGrad β1 = 0.9 result to compare.")
    return "\n".join(out) + "\n"
