"""Do the git commits behind a set of records train the same numbers? Short identical runs at each commit.

    python scripts/commit_equivalence.py --runs results/cpu_scale/runs --data-dir /path/to/glue_data
        [--commits A,B,...] [--run "experiment=cpu_scale task=cola method=adasam_rho0.01" ...]
        [--shorten "task.total_updates=6 ..."] [--out results/cpu_scale/code_versions.json]

A long sweep outlives commits: the report flags every table cell whose seeds were trained by more than
one commit ("Code versions"), because the identity says what ran, not which code. Retraining those
seeds (``rerun_on_new_commit=true``) costs the sweep again; this check costs a few minutes. From
``--runs`` it plans one short run per (experiment, task, optimizer) of the records, replaying the
overrides of its lowest seed, cut to ``--shorten`` (a few updates on a few rows, the final weights
saved), and runs it at each commit that trained that key's records (a cell's question is whether *its*
commits agree; running every key at every commit of a sweep would cost keys × commits). Commits whose
code is the same tree (``CODE_PATHS``: what ``python -m adasam_glue`` runs from a checkout) train the
same bits by construction, so one of them runs and the others are listed beside it; a key whose commits
share one tree has nothing to compare and is not run. With ``--commits`` and ``--run`` every run is
trained at every commit. Each commit's short run runs from a temporary worktree of that commit; the
check compares, per run against its oldest commit, the final weights tensor by tensor (bitwise), the
training losses, the final dev metrics and the identity, and writes a JSON and a Markdown page. Exit
status 0 only when every compared commit trained every short run to the same bits.

What it shows and what it does not: equal bits on the first updates of every (task, optimizer) means
the commits compute the same model, data order, optimizer step and metric on those inputs; code paths a
short run does not reach (resuming from a checkpoint, the later evaluations, best-checkpoint selection)
are not compared.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if (ROOT / "adasam_glue").is_dir():
    sys.path.insert(0, str(ROOT))

from adasam_glue.records import find_records, read_record, record_commits  # noqa: E402

#: a few updates on a few rows, the final weights kept: enough to exercise the model, the data order, both
#: passes of a SAM-family update, the schedule's first steps and the metric
SHORTEN = (
    "task.total_updates=6 task.warmup_updates=1 task.epochs=1 data.max_train_samples=256 "
    "data.max_eval_samples=128 trainer.save_model=final trainer.progress_bar=false"
)
#: overrides of a record that name where it ran, not what: replaced by this check's own
_WHERE = ("data.data_dir=", "results_dir=", "run_dir=", "hydra.")


#: the paths of a checkout that a short run executes or reads (the package and its Hydra configs) and those
#: that say how it is installed: two commits with the same trees here run the same code
CODE_PATHS = ("adasam_glue", "conf", "pyproject.toml", "setup.py")


def recorded(runs: Path) -> list[tuple[list[str], list[str]]]:
    """One short run per (experiment, task, optimizer) of the records under ``runs``: the overrides of its
    lowest seed, without where it ran, and the commits that trained that key's records (first seen first)."""
    chosen: dict[tuple[str, str, str], tuple[int, list[str]]] = {}
    commits: dict[tuple[str, str, str], list[str]] = {}
    for path in find_records(runs):
        record = read_record(path)
        key = (str(record.get("experiment")), str(record.get("task")), str(record.get("optimizer")))
        seen = commits.setdefault(key, [])
        seen += [c for c in record_commits(record)[0] if c not in seen]
        seed = int(record.get("seed") or 0)
        overrides = [o for o in record.get("overrides") or [] if not o.startswith(_WHERE)]
        if not any(o.startswith(("optim.lr=", "+optim.lr=")) for o in overrides):
            overrides.append(f"optim.lr={_trained_lr(record, path)!r}")
        if key not in chosen or seed < chosen[key][0]:
            chosen[key] = (seed, overrides)
    return [(chosen[k][1], commits[k]) for k in sorted(chosen)]


def _trained_lr(record: dict[str, Any], path: Path) -> float:
    """The lr the record's run trained at (its identity). A short run is pinned to it whatever resolved it:
    a tuned lr's selection file (``${tuned_lr:...}``) belongs to the full recipe and refuses a shortened
    run, and the identity already says that a cell's seeds trained at one lr."""
    lr = (((record.get("identity") or {}).get("config") or {}).get("optim") or {}).get("lr")
    if not isinstance(lr, (int, float)) or isinstance(lr, bool):
        raise SystemExit(f"{path}: its identity names no optim.lr ({lr!r}); a short run cannot replay it")
    return float(lr)


@functools.cache
def code_tree(commit: str) -> str | None:
    """The git object ids of ``commit``'s ``CODE_PATHS`` (None when git does not know the commit, so that it
    stands alone and its checkout fails with its name)."""

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)

    if git("cat-file", "-e", f"{commit}^{{commit}}").returncode:
        return None
    # a path the commit lacks is part of its tree too ("-")
    return " ".join(
        git("rev-parse", "--verify", "-q", f"{commit}:{p}").stdout.strip() or "-" for p in CODE_PATHS
    )


def same_code(commits: list[str]) -> dict[str, str]:
    """Each of ``commits`` (oldest first) mapped to the oldest of them with the same ``code_tree``: the one
    that runs for all (itself when it is the first of its tree or git does not know it)."""
    first: dict[str, str] = {}
    mapping = {}
    for commit in commits:
        tree = code_tree(commit)
        mapping[commit] = commit if tree is None else first.setdefault(tree, commit)
    return mapping


def weights_digest(run_dir: Path) -> str | None:
    """SHA-256 over the final model's tensors (names, dtypes, shapes and bytes), not the file's metadata."""
    import torch
    from safetensors.torch import load_file

    files = sorted(run_dir.rglob("model.safetensors"))
    if not files:
        return None
    digest = hashlib.sha256()
    for name, tensor in sorted(load_file(str(files[0])).items()):
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def oldest_first(commits: list[str]) -> list[str]:
    """``commits`` by commit time (the first is the reference the others are compared with); a commit git
    does not know goes last, where its checkout fails with its name."""

    def when(commit: str) -> float:
        shown = subprocess.run(
            ["git", "-C", str(ROOT), "show", "-s", "--format=%ct", commit], capture_output=True, text=True
        )
        return float(shown.stdout.strip()) if shown.returncode == 0 and shown.stdout.strip() else float("inf")

    return sorted(commits, key=when)


def checkout(commit: str, work: Path) -> Path:
    """A worktree of ``commit`` under ``work`` (made once); a clear error for a commit git does not know."""
    tree = work / f"tree_{commit[:12]}"
    if not tree.is_dir():
        made = subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), commit],
            capture_output=True,
            text=True,
        )
        if made.returncode:
            raise SystemExit(f"cannot check out commit {commit!r} of {ROOT}: {made.stderr.strip()}")
    return tree


def short_run(commit: str, overrides: list[str], shorten: str, data_dir: str, work: Path) -> dict[str, Any]:
    """Train one short run with ``commit``'s code (its worktree under ``work``); what it produced."""
    tree = checkout(commit, work)
    out = work / f"run_{commit[:12]}_{hashlib.sha1(' '.join(overrides).encode()).hexdigest()[:8]}"
    cmd = [
        sys.executable,
        "-m",
        "adasam_glue",
        *overrides,
        *shlex.split(shorten),
        f"data.data_dir={data_dir}",
        f"results_dir={out}",
        f"hydra.run.dir={out / 'hydra'}",
    ]
    env = {**os.environ, "PYTHONPATH": str(tree), "WANDB_MODE": "disabled"}
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    records = sorted(out.rglob("record.json"))
    if proc.returncode or not records:
        tail = (proc.stdout + proc.stderr)[-1500:]
        return {"error": f"exit {proc.returncode}, {len(records)} record(s):\n{tail}"}
    record = read_record(records[0])
    ran = record.get("git_commit") or ""
    if not ran.startswith(commit[:7]):  # the worktree's code must be what ran, or the check proves nothing
        return {"error": f"the run's record names commit {ran or 'none'}, not {commit}"}
    return {
        "identity_hash": record.get("identity_hash"),
        "weights_sha256": weights_digest(records[0].parent),
        "train_losses": [p.get("loss") for p in record.get("train_curve") or []],
        "final": record.get("final"),
    }


def compare(results: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """Every way a commit's short run differs from that of the first commit that ran it (empty: the same
    numbers). A run a commit did not train (not one of its key's commits, or its code is another commit's:
    ``same_code_as``) is not compared."""
    differences = []
    runs = list(dict.fromkeys(r for by_run in results.values() for r in by_run))
    for run in runs:
        ran = [c for c in results if run in results[c] and "same_code_as" not in results[c][run]]
        ref = results[ran[0]][run]
        for commit in ran[1:]:
            got = results[commit][run]
            if "error" in got or "error" in ref:
                differences.append(f"{commit[:10]} / {run}: {got.get('error') or ref.get('error')}")
                continue
            differences += [
                f"{commit[:10]} / {run}: {field} differs from {ran[0][:10]}'s"
                for field in ("identity_hash", "weights_sha256", "train_losses", "final")
                if got[field] != ref[field]
            ]
    return differences


def _cell(got: dict[str, Any] | None) -> str:
    if got is None:
        return "—"
    if "error" in got:
        return "error"
    digest = (got.get("weights_sha256") or "no weights")[:12]
    return f"= {got['same_code_as'][:10]}" if "same_code_as" in got else digest


def page(
    results: dict[str, dict[str, dict[str, Any]]], differences: list[str], shorten: str, alone: list[str]
) -> str:
    """The Markdown page: one row per commit, one column per short run, then the verdict."""
    commits = list(results)
    runs = list(dict.fromkeys(r for by_run in results.values() for r in by_run))
    lines = [
        "# Do the commits behind these records train the same numbers?",
        "",
        f"`python scripts/commit_equivalence.py` (short runs: `{shorten}`). Each cell: the first 12 hex",
        "digits of the SHA-256 of the final weights' tensors (an error if the run failed); `= C`: this",
        f"commit's code ({', '.join(CODE_PATHS)}) is commit C's tree, so C's run stands for it; —: no record",
        "of this run's key was trained by this commit.",
        "",
        "| commit | " + " | ".join(f"`{r}`" for r in runs) + " |",
        "|---|" + "---|" * len(runs),
    ]
    for c in commits:
        lines.append(f"| {c[:10]} | " + " | ".join(_cell(results[c].get(r)) for r in runs) + " |")
    if alone:
        lines += [
            "",
            "Not run (every commit behind the key's records has the same code, so there is nothing to compare): "
            + "; ".join(f"`{r}`" for r in alone)
            + ".",
        ]
    verdict = (
        (
            "**Same numbers**: every commit trained every short run to bitwise-identical weights, "
            "losses, dev metrics and identity."
        )
        if not differences
        else "**Differences**:\n\n" + "\n".join(f"- {d}" for d in differences)
    )
    return "\n".join([*lines, "", verdict, ""])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=Path, help="a records folder: its commits and its (task, optimizer) runs")
    p.add_argument("--data-dir", required=True, help="data.data_dir of the short runs (GLUE TSV root)")
    p.add_argument("--commits", help="comma list of commits (default: those the records name)")
    p.add_argument(
        "--run", action="append", help="one short run's overrides (repeatable; default: from --runs)"
    )
    p.add_argument("--shorten", default=SHORTEN, help="overrides that make each run short")
    p.add_argument("--out", type=Path, help="write <out> (JSON) and <out>.md (the page)")
    a = p.parse_args(argv)
    plan = recorded(a.runs) if a.runs else []
    if a.run:  # given runs: each at every given commit, or at every commit of the records
        every = a.commits.split(",") if a.commits else list(dict.fromkeys(c for _, cs in plan for c in cs))
        plan = [(shlex.split(r), every) for r in a.run]
    elif a.commits:
        plan = [(overrides, a.commits.split(",")) for overrides, _ in plan]
    if not plan or not any(commits for _, commits in plan):
        raise SystemExit("nothing to compare: give --runs with records, or --commits and --run")
    order = oldest_first(list(dict.fromkeys(c for _, cs in plan for c in cs)))
    results: dict[str, dict[str, dict[str, Any]]] = {c: {} for c in order}
    alone: list[str] = []  # keys of the records whose commits all have one code tree
    try:
        with tempfile.TemporaryDirectory(prefix="commit_equivalence_") as tmp:
            for overrides, commits in plan:
                name = " ".join(overrides)
                mine = [c for c in order if c in commits]
                stands_for = same_code(mine)
                if not (a.run or a.commits) and len(set(stands_for.values())) == 1:
                    alone.append(name)
                    continue
                for commit in mine:
                    if stands_for[commit] != commit:
                        results[commit][name] = {"same_code_as": stands_for[commit]}
                        continue
                    got = results[commit][name] = short_run(
                        commit, overrides, a.shorten, a.data_dir, Path(tmp)
                    )
                    print(f"{commit[:10]}  {name}: {(got.get('weights_sha256') or 'error')[:12]}", flush=True)
    finally:  # the temporary worktrees are gone: forget them
        subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"], capture_output=True)
    differences = compare(results)
    text = page(results, differences, a.shorten, alone)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(
            json.dumps(
                {"shorten": a.shorten, "results": results, "differences": differences, "not_run": alone},
                indent=1,
            )
            + "\n"
        )
        a.out.with_suffix(".md").write_text(text)
    print(text)
    return 1 if differences else 0


if __name__ == "__main__":
    raise SystemExit(main())
