"""scripts/commit_equivalence.py: a refactor commit trains the same bits, a numeric change does not.

The promise: records pooled across commits can be vouched for by a short check. So the check must pass a
commit that changes no numbers and fail one that does (a planted change of the SAM ascent's norm), and it
must run each commit's own code, not the installed one.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from adasam_glue.records import write_record
from tests.conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
TINY_RUN = (
    "model=tiny data.source=synthetic data.synthetic_train_size=32 data.synthetic_eval_size=16 "
    "task=mrpc optim=adasam task.max_length=16 task.batch_size=8 trainer.cpu=true trainer.eval_batch_size=16"
)
SHORT = "task.total_updates=3 task.warmup_updates=1 task.epochs=1 trainer.save_model=final trainer.progress_bar=false"


@pytest.fixture(scope="module")
def check():
    return load_script("commit_equivalence")


def _record(path: Path, seed: int, commits: list[str], task: str = "mrpc") -> None:
    write_record(
        path,
        {
            "schema_version": 2,
            "experiment": "cpu_scale",
            "task": task,
            "optimizer": "adasam",
            "seed": seed,
            "git_commit": commits[-1],
            "attempts": [{"git_commit": c} for c in commits],
            "overrides": [
                f"task={task}",
                f"seed={seed}",
                "data.data_dir=/x/glue",
                "results_dir=/y",
                "hydra.run.dir=/z",
            ],
        },
    )


def test_records_give_their_commits_and_one_short_run_per_task_and_optimizer(check, tmp_path):
    _record(tmp_path / "a" / "seed2" / "record.json", 2, ["c1", "c2"])
    _record(tmp_path / "a" / "seed1" / "record.json", 1, ["c3"])
    _record(tmp_path / "b" / "seed1" / "record.json", 1, ["c2"], task="cola")
    commits, runs = check.recorded(tmp_path)
    assert sorted(commits) == ["c1", "c2", "c3"]
    # the lowest seed's overrides, without where it ran (the check supplies its own data dir and outputs)
    assert runs == [["task=cola", "seed=1"], ["task=mrpc", "seed=1"]]


def test_any_difference_from_the_first_commit_is_reported(check):
    same = {
        "identity_hash": "h",
        "weights_sha256": "w",
        "train_losses": [0.5],
        "final": {"metrics": {"f1": 1}},
    }
    results = {"A": {"run": same}, "B": {"run": dict(same)}}
    assert check.compare(results) == []
    results["C"] = {"run": {**same, "weights_sha256": "v"}}
    results["D"] = {"run": {"error": "exit 1"}}
    assert check.compare(results) == [
        "C / run: weights_sha256 differs from A's",
        "D / run: exit 1",
    ]


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.mark.slow
def test_a_refactor_passes_and_a_numeric_change_fails_each_commit_running_its_own_code(tmp_path):
    """A throwaway repository with the package: commit A, A plus a comment (a refactor), A with the SAM
    ascent's norm scaled by 1.001 (a numeric change). The check runs from that repository's checkout."""
    repo = tmp_path / "repo"
    for name in [
        *_git(ROOT, "ls-files", "adasam_glue", "conf").splitlines(),
        "scripts/commit_equivalence.py",
    ]:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, repo / name)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "A")
    first = _git(repo, "rev-parse", "HEAD")
    init = repo / "adasam_glue" / "__init__.py"
    init.write_text(init.read_text() + "\n# a refactor: no number changes\n")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "refactor")
    refactor = _git(repo, "rev-parse", "HEAD")
    norm = repo / "adasam_glue" / "optim" / "perturbation.py"
    line = "    return torch.stack(norms).square().sum()\n"
    assert line in norm.read_text(), "the planted change's target line moved: update this test"
    norm.write_text(
        norm.read_text().replace(line, "    return torch.stack(norms).square().sum() * 1.001\n", 1)
    )
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "numeric change")
    changed = _git(repo, "rev-parse", "HEAD")

    out = tmp_path / "eq.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(repo / "scripts" / "commit_equivalence.py"),
            "--data-dir",
            str(tmp_path),
            "--commits",
            f"{first},{refactor},{changed}",
            "--run",
            TINY_RUN,
            "--shorten",
            SHORT,
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    by_commit = {c: next(iter(runs.values())) for c, runs in result["results"].items()}
    assert all("error" not in r for r in by_commit.values()), by_commit
    assert by_commit[first]["weights_sha256"] == by_commit[refactor]["weights_sha256"]
    assert by_commit[first]["train_losses"] == by_commit[refactor]["train_losses"]
    assert by_commit[changed]["weights_sha256"] != by_commit[first]["weights_sha256"]
    assert [d.split(" / ")[0] for d in result["differences"]] == [changed[:10]] * len(result["differences"])
    assert "weights_sha256" in " ".join(result["differences"])
    assert "Differences" in out.with_suffix(".md").read_text()
