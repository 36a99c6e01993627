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


def _record(path: Path, seed: int, commits: list[str], task: str = "mrpc", lr: str | None = None) -> None:
    write_record(
        path,
        {
            "identity": {"config": {"optim": {"lr": 0.03}}},
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
                *([f"optim.lr={lr}"] if lr else []),
            ],
        },
    )


def test_records_give_one_short_run_per_key_with_the_commits_that_trained_it(check, tmp_path):
    _record(tmp_path / "a" / "seed2" / "record.json", 2, ["c1", "c2"])
    _record(tmp_path / "a" / "seed1" / "record.json", 1, ["c3"])
    _record(tmp_path / "b" / "seed1" / "record.json", 1, ["c2"], task="cola")
    _record(tmp_path / "c" / "seed1" / "record.json", 1, ["c1"], task="stsb", lr="1e-3")
    # the lowest seed's overrides, without where it ran (the check supplies its own data dir and outputs),
    # pinned to the lr the identity says it trained at (a tuned lr's file refuses a shortened run), and only
    # the commits of that key's records: a cell's question is whether its own commits agree
    assert [(runs, sorted(commits)) for runs, commits in check.recorded(tmp_path)] == [
        (["task=cola", "seed=1", "optim.lr=0.03"], ["c2"]),
        (["task=mrpc", "seed=1", "optim.lr=0.03"], ["c1", "c2", "c3"]),
        (["task=stsb", "seed=1", "optim.lr=1e-3"], ["c1"]),  # an lr it was given stays as given
    ]


def _git_repo(path: Path) -> dict[str, str]:
    """Commits A; B = A + a README (no code); C = B + a package change; D = C + a config change."""
    commits = {}
    path.mkdir()
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    steps = {
        "A": ("adasam_glue/x.py", "x = 1\n"),
        "B": ("README.md", "docs\n"),
        "C": ("adasam_glue/x.py", "x = 2\n"),
        "D": ("conf/config.yaml", "seed: 1\n"),
    }
    for name, (file, text) in steps.items():
        (path / file).parent.mkdir(parents=True, exist_ok=True)
        (path / file).write_text(text)
        _git(path, "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A")
        _git(path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", name)
        commits[name] = _git(path, "rev-parse", "HEAD")
    return commits


@pytest.fixture
def repo(check, tmp_path, monkeypatch):
    commits = _git_repo(tmp_path / "repo")
    monkeypatch.setattr(check, "ROOT", tmp_path / "repo")
    check.code_tree.cache_clear()
    yield commits
    check.code_tree.cache_clear()


def test_commits_with_the_same_package_and_configs_share_one_run(check, repo):
    a, b, c, d = (repo[k] for k in "ABCD")
    # B changes only the README: A's run stands for it; C (package) and D (configs) run themselves
    assert check.same_code([a, b, c, d]) == {a: a, b: a, c: c, d: d}
    assert check.same_code([b, c]) == {b: b, c: c}
    # a commit git does not know stands alone, so that its checkout fails with its name
    assert check.same_code([a, "f" * 40]) == {a: a, "f" * 40: "f" * 40}


def test_each_key_runs_at_its_own_commits_once_per_code_tree(check, repo, tmp_path, monkeypatch):
    a, b, c, d = (repo[k] for k in "ABCD")
    runs = tmp_path / "runs"
    _record(runs / "mrpc" / "seed1" / "record.json", 1, [a, b, c])  # A and B: one tree; C: another
    _record(runs / "cola" / "seed1" / "record.json", 1, [a, b], task="cola")  # one tree: nothing to compare
    _record(runs / "stsb" / "seed1" / "record.json", 1, [d], task="stsb")  # one commit: nothing to compare
    trained = []

    def short_run(commit, overrides, shorten, data_dir, work):
        trained.append((commit, overrides[0]))
        return {"identity_hash": "h", "weights_sha256": "w", "train_losses": [1.0], "final": {}}

    monkeypatch.setattr(check, "short_run", short_run)
    out = tmp_path / "eq.json"
    assert check.main(["--runs", str(runs), "--data-dir", "/d", "--out", str(out)]) == 0
    assert sorted(trained) == sorted([(a, "task=mrpc"), (c, "task=mrpc")])
    result = json.loads(out.read_text())
    assert result["results"][b] == {"task=mrpc seed=1 optim.lr=0.03": {"same_code_as": a}}
    assert result["results"][d] == {}
    assert result["not_run"] == ["task=cola seed=1 optim.lr=0.03", "task=stsb seed=1 optim.lr=0.03"]
    text = out.with_suffix(".md").read_text()
    assert f"= {a[:10]}" in text and "Not run" in text and "Same numbers" in text


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
    results["E"] = {"run": {"same_code_as": "A"}}  # A's run stands for it: nothing of its own to compare
    results["F"] = {}  # did not train this run's key
    assert check.compare(results) == [
        "C / run: weights_sha256 differs from A's",
        "D / run: exit 1",
    ]
    # the reference is the first commit that ran the run, not the first commit of the check
    assert check.compare({"F": {}, "A": {"run": same}, "C": {"run": {**same, "final": {}}}}) == [
        "C / run: final differs from A's"
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
