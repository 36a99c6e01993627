"""The paper's qualitative claims (spec §4) checked against the measured results (``claims.md``).

Verdicts: a table claim ("X beats Y on k of 8 tasks, average +d") *holds* when X wins on at least the
paper's fraction of the tasks both have and (where the paper states one) the average gain is positive;
*partly holds* when one of the two is true. "Adaptive beats SGD-based" holds when every available
comparison has a positive average and a majority of wins. Figure 1 holds when every U(32)/U(16) lies in
:data:`SPEEDUP_BAND`. Missing data makes a claim *not testable*, never a pass; so does synthetic data
(the numbers' verdict shown in parentheses). Like with like (docs/algorithms.md §4.4): a table claim is
checked per comparison of one setting, the cross-table claim only on cells whose identities differ in
optimizer keys alone; every verdict lists the identities it rests on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from adasam_glue.report.figures import SpeedupResult
from adasam_glue.report.grouping import OPTIM, SEED, differs_outside, short_key
from adasam_glue.report.palette import method_name, metric_label, task_name
from adasam_glue.report.setting import any_synthetic, data_text, heading, model_text, setting_text, verdict_on
from adasam_glue.report.sharpness_table import SharpnessReport
from adasam_glue.report.tables import Comparison, Row, TableResult, md_table
from adasam_glue.tasks import TASK_ORDER, TASKS

SPEEDUP_BAND = (0.35, 0.65)
#: fairseq RoBERTa-large dev results (median of 5), spec §5, on each task's selection metric.
REFERENCE_DEV = {"mnli": 90.2, "qnli": 94.7, "qqp": 92.2, "rte": 86.6, "sst2": 96.4, "mrpc": 90.9, "cola": 68.0, "stsb": 92.4}  # fmt: skip


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


def _three_way(oks: Sequence[bool], partly: str = "partly holds") -> str:
    return "holds" if all(oks) else "does not hold" if not any(oks) else partly


def _table_claim(res: TableResult, comp: Comparison | None = None) -> Claim:
    """The table's claim checked on one comparison (the unmarked pair by default)."""
    spec, comp = res.spec, comp or res.main
    s = comp.sam.label
    not_ = f" (not {', '.join(task_name(t) for t in spec.paper_losses)})" if spec.paper_losses else ""
    avg = f", average +{spec.paper_average:.2f}" if spec.paper_average is not None else ""
    claim = (
        f"{method_name(spec.sam)} beats {method_name(spec.base)} on {spec.paper_wins} of 8 tasks{not_}{avg}"
    )
    marks = [x for x in (comp.base.suffix, comp.sam.suffix) if x]
    source = spec.title + (f" [{' vs '.join(dict.fromkeys(marks))}]" if marks else "")
    runs, common = comp.runs, comp.common_tasks
    setting, m = setting_text(runs) if len(runs) else "", len(common)
    left = f"; left out: {left}" if (left := comp.not_learning()) else ""
    if m == 0:
        what = "no task has results for both methods where both learn" + left
        return Claim(source, claim, what, "not testable", setting)
    won, lost, tied = comp.wins()
    d = (comp.average(comp.sam.method) - comp.average(comp.base.method)) * 100
    agree = sum((t in won) == (t not in spec.paper_losses) for t in common)
    tested = [p for p in comp.paired if p.ci is not None and p.task in common]
    sig_pos, sig_neg = [p.task for p in tested if p.ci[0] > 0], [p.task for p in tested if p.ci[1] < 0]
    measured = (
        f"{s} wins on {len(won)} of {m} ({_names(won)}), loses on {_names(lost)}"
        + (f", ties on {_names(tied)}" if tied else "")
        + f"; average {d:+.2f} over {m} task(s); per-task direction agrees with the paper on {agree} of {m}; "
        f"bootstrap CI excludes 0 on {len(sig_pos) + len(sig_neg)} of {len(tested)} task(s) with ≥ 2 "
        f"paired seeds ({s} better: {_names(sig_pos)}; worse: {_names(sig_neg)}){left}"
    )
    frac_ok = len(won) / m >= spec.paper_wins / len(TASK_ORDER) - 1e-12
    verdict = _three_way([frac_ok] + ([d > 0] if spec.paper_average is not None else []))
    if verdict == "holds" and m < len(TASK_ORDER):
        verdict = f"holds on the {m} task(s) available"
    return Claim(source, claim, measured, verdict_on(verdict, runs), setting, tuple(comp.identities()))


def _adaptive_claim(tables: Sequence[TableResult]) -> Claim:
    """AMSGrad vs SGD and AdaSAM vs SAM per beta1, over the tasks where the two unmarked cells' runs
    differ only in optimizer keys (a task whose cells differ in model, data, ... is left out, named)."""
    claim = "adaptive methods (AMSGrad, AdaSAM) beat SGD-based ones (SGD, SAM)"
    parts, oks, idents, runs = [], [], [], []
    by_beta: dict[float, dict[str, TableResult]] = {}
    for res in tables:
        by_beta.setdefault(res.spec.beta1, {})[res.spec.base] = res
    for beta1, got in sorted(by_beta.items(), reverse=True):
        if "amsgrad" not in got or "sgd" not in got:
            continue
        ra, rs = got["amsgrad"], got["sgd"]
        for ada, sgd in (("amsgrad", "sgd"), ("adasam", "sam")):
            if ada not in ra.spec.methods or sgd not in rs.spec.methods:
                continue
            common, unlike, dead = [], [], []
            for t, ca, cs in ((t, ra.cell(t, ada), rs.cell(t, sgd)) for t in TASK_ORDER):
                if ca.score is None or cs.score is None:
                    continue
                if not (ca.learns and cs.learns):  # docs/algorithms.md §4.4 item 5
                    who = " and ".join(method_name(c.optimizer) for c in (ca, cs) if not c.learns)
                    dead.append(f"{task_name(t)} ({who} {'does' if ' and ' not in who else 'do'} not learn)")
                    continue
                a, b = ca.chosen.completed, cs.chosen.completed
                if keys := differs_outside(a.flat.iloc[0], b.flat.iloc[0], (OPTIM, SEED)):
                    more = f", +{len(keys) - 3} more" if len(keys) > 3 else ""
                    unlike.append(f"{task_name(t)} ({', '.join(short_key(k) for k in keys[:3])}{more})")
                    continue
                common.append((ca, cs))
                idents.append(
                    f"β1={beta1:g} {task_name(t)}: {method_name(ada)} {ca.chosen.group_hash}, "
                    f"{method_name(sgd)} {cs.chosen.group_hash}"
                )
                runs += [a, b]
            skipped = "; ".join(unlike)
            skipped = f" ({len(unlike)} task(s) not compared, settings differ: {skipped})" if unlike else ""
            skipped += f" (left out: {', '.join(dead)})" if dead else ""
            if not common:
                names = f"{method_name(ada)} vs {method_name(sgd)}"
                parts += [f"β1={beta1:g}: {names}: none comparable{skipped}"] if unlike or dead else []
                continue
            wins = sum(ca.score > cs.score for ca, cs in common)
            d = sum(ca.score - cs.score for ca, cs in common) / len(common) * 100
            oks.append(d > 0 and wins > len(common) / 2)
            parts.append(
                f"β1={beta1:g}: {method_name(ada)} beats {method_name(sgd)} on {wins} of {len(common)}, "
                f"average {d:+.2f}{skipped}"
            )
    if not oks:
        measured = "; ".join(parts) or "no task has both an adaptive and an SGD-based result"
        return Claim("Tables 1-4", claim, measured, "not testable")
    runs = pd.concat(runs)
    verdict = verdict_on(_three_way(oks), runs)
    return Claim("Tables 1-4", claim, "; ".join(parts), verdict, setting_text(runs), tuple(idents))


def _speedup_claim(sp: SpeedupResult) -> Claim:
    claim = "batch 32 needs about half the updates of batch 16 to reach the same training loss"
    ratios = {t: r for t in sp.runs if (r := sp.ratio(t)) is not None}
    runs = pd.concat(sp.all_runs) if sp.all_runs else pd.DataFrame()
    setting = setting_text(runs) if len(runs) else ""
    idents = tuple(
        f"{task_name(t)} batch {b}: " + ", ".join(sorted(set(rs.group_hash)))
        for t, by_b in sp.runs.items()
        for b, rs in by_b.items()
    )
    if not ratios:
        return Claim("Figure 1", claim, sp.statement(), "not testable", setting, idents)
    lo, hi = SPEEDUP_BAND
    verdict = _three_way([lo <= r <= hi for r in ratios.values()])
    if verdict == "holds" and len(ratios) < len(sp.runs):
        verdict = f"holds on the {len(ratios)} task(s) available"
    measured = "; ".join(f"{task_name(t)}: U(32)/U(16) = {r:.2f}" for t, r in ratios.items())
    measured += f" (ideal 0.50; band {lo}–{hi})"
    return Claim("Figure 1", claim, measured, verdict_on(verdict, runs), setting, idents)


def _matched_claim(res: TableResult) -> Claim:
    """The unmarked SAM row against the compute-matched base row (equal forward/backward passes): not a
    claim of the paper, the check a reader needs beside it (issue 21 §2.2)."""
    spec = res.spec
    sam, base = method_name(spec.sam), method_name(spec.base)
    sig = {"yes": " (CI excludes 0)", "no": " (CI includes 0)"}
    per = [
        f"{task_name(m.task)}: {m.outcome} {m.paired.mean:+.2f}{sig.get(m.paired.excludes_zero, '')}"
        if not m.not_learning
        else f"{task_name(m.task)}: left out ({m.not_learning} does not learn)"
        for m in res.matched
    ]
    counted = [m for m in res.matched if not m.not_learning]
    by = {o: [m.task for m in counted if m.outcome == o] for o in ("win", "loss", "tie")}
    verdict = f"{sam} wins {len(by['win'])}, loses {len(by['loss'])}, ties {len(by['tie'])} of {len(counted)} at equal compute"
    verdict = verdict if counted else "not testable"
    runs = pd.concat([res.cells[(row, m.task)].runs for m in res.matched for row in (m.base, Row(spec.sam))])
    idents = tuple(
        f"{task_name(m.task)}: {sam} {m.paired.sam_identity}"
        + ("" if m.rho is None else f" (ρ={m.rho:g})")
        + f" vs {base} compute-matched {m.paired.base_identity} ({m.paired.n} seed(s) paired)"
        for m in res.matched
        if not m.not_learning
    )
    claim = (
        f"not a claim of the paper: {sam} vs {base} given the same forward/backward passes (equal compute; "
        f"the table's headline compares equal updates)"
    )
    tally = f"wins on {_names(by['win'])}, loses on {_names(by['loss'])}, ties on {_names(by['tie'])}"
    measured = "; ".join([*per, tally])
    verdict = verdict_on(verdict, runs)
    return Claim(f"{spec.title} (compute-matched)", claim, measured, verdict, setting_text(runs), idents)


def check_claims(tables: Sequence[TableResult], speedup: SpeedupResult) -> list[Claim]:
    """One claim per table comparison with results (the unmarked pair always), then the compute-matched
    line of a table that has one, then the cross-table and the speedup claims."""
    out = []
    for res in tables:
        out += [_table_claim(res, c) for c in res.comparisons if c.main or c.common_tasks]
        out += [_matched_claim(res)] if res.matched else []
    return [*out, _adaptive_claim(tables), _speedup_claim(speedup)]


def _comparable(runs: pd.DataFrame) -> str:
    """Whether a fairseq RoBERTa-large reference number applies to these runs, and if not, why."""
    why = []
    models = sorted({model_text(r) for r in runs.itertuples()})
    if any(not m.startswith("roberta-large") for m in models):
        why.append(f"model {', '.join(models)}")
    data = sorted({data_text(r) for r in runs.itertuples()})
    if any(not d.startswith(("GLUE TSV", "Hub dataset")) or "first" in d for d in data):
        why.append("; ".join(data))
    return "yes" if not why else "no: " + "; ".join(why)


def _reference_rows(tables: Sequence[TableResult]) -> list[list[str]]:
    t1 = next((r for r in tables if r.spec.name == "table1"), None)
    rows = []
    for t in TASK_ORDER if t1 else []:
        c, metric = t1.cell(t, "amsgrad"), TASKS[t].selection_metric
        s = c.metrics.get(metric) if c.present else None
        if s is not None:
            done = c.chosen.completed
            models = ", ".join(sorted({model_text(r) for r in done.itertuples()}))
            rows.append(
                [f"{task_name(t)} {metric_label(metric)}", f"{s.mean * 100:.2f}", f"{REFERENCE_DEV[t]:.1f}",
                 f"{s.mean * 100 - REFERENCE_DEV[t]:+.2f}", models, c.chosen.group_hash, _comparable(done)]
            )  # fmt: skip
    return rows


def render_claims(claims: Sequence[Claim], tables: Sequence[TableResult], sharpness: SharpnessReport) -> str:
    synthetic = any(t.synthetic for t in tables) or any_synthetic(sharpness.frame)
    out = heading("The paper's claims checked against these runs", synthetic)
    out += [
        "Paper: AdaSAM (arXiv 2303.00565), spec §4. Each claim with what these run records measure and "
        "a verdict. Rules: a table claim holds when the SAM method wins on at least the paper's fraction "
        "of the tasks that have results for both methods and (where the paper states one) the average "
        "gain is positive; one of the two: partly holds. The speedup claim holds when U(32)/U(16) lies in "
        f"[{SPEEDUP_BAND[0]}, {SPEEDUP_BAND[1]}]. Missing data makes a claim not testable, never a pass. "
        "A verdict rests only on runs of one setting that differ in optimizer keys alone (one line per "
        "comparison; its identities are listed below); on synthetic data no claim is testable.",
        "",
    ]
    body = [[c.source, c.setting or "—", c.claim, c.measured, f"**{c.verdict}**"] for c in claims]
    out += md_table(["Source", "Setting", "Paper's claim", "Measured here", "Verdict"], body)
    out += ["", "## Identities behind each verdict", ""]
    out += [f"- {c.source}: " + ("; ".join(c.identities) if c.identities else "none") for c in claims]
    out += ["", "## Flatter minima (sharpness)", ""] + [f"- {line}" for line in sharpness.claims]
    out += ["", "## Sanity check: AMSGrad (β1 = 0.9) vs fairseq RoBERTa-large dev results (spec §5)", ""]
    ref = _reference_rows(tables)
    if ref:
        out += [
            "Reference: median of 5 runs, RoBERTa-large, fairseq README. Only comparable when the model is "
            "roberta-large and the data is the full real GLUE (column comparable).",
            "",
        ]
        head = ["Task metric", "measured ×100", "reference", "difference", "model", "identity", "comparable"]
        out += md_table(head, ref, "lrrr")
    else:
        out.append("No AMSGrad β1 = 0.9 result to compare.")
    return "\n".join(out) + "\n"
