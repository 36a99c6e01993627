"""Results you can trust: run identity, skip/resume only for the same identity, crash order, attempts
history, one process per run dir, validation before anything loads (tiny model, CPU, seconds)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

import adasam_glue.modeling as modeling
from adasam_glue.checkpoint import CheckpointError
from adasam_glue.config import ConfigError
from adasam_glue.identity import group_hash, identity_hash, run_identity
from adasam_glue.records import read_record
from adasam_glue.run import run
from adasam_glue.run_dir import RunDirLocked, resolve_run_dir, run_dir_lock
from tests.conftest import compose_cfg

#: every key that was once skipped as "completed" under another value: each must change the run
RESULT_KEYS = [
    "model.dropout=0.3",
    "task.max_length=16",
    "trainer.grad_accum=2",
    "task.warmup_updates=100",
    "trainer.max_grad_norm=1.0",
    "trainer.eval_every=1",
    "trainer.min_lr_ratio=0.1",
    "sharpness.enabled=true",
    "model.hidden_size=64",
    "model.num_layers=3",
    "data.synthetic_seed=7",
    "optim.rho=0.05",
    "trainer.mixed_precision=bf16",
    "optim.sync_ascent=true",
]
#: keys that cannot change a number in the record: the same run
NEUTRAL_KEYS = [
    "trainer.progress_bar=true",
    "trainer.eval_batch_size=7",
    "trainer.log_every=3",
    "trainer.checkpoint_every=2",
    "trainer.save_model=none",
    "data.num_workers=1",
    "logging.wandb_mode=offline",
]


@pytest.mark.parametrize("override", RESULT_KEYS)
def test_a_result_changing_key_gives_a_new_run_dir(tiny_cfg, override):
    a, b = tiny_cfg("optim=adasam"), tiny_cfg("optim=adasam", override)
    assert group_hash(run_identity(a)) != group_hash(run_identity(b))
    assert resolve_run_dir(a) != resolve_run_dir(b)


@pytest.mark.parametrize("override", NEUTRAL_KEYS)
def test_a_neutral_key_keeps_the_identity(tiny_cfg, override):
    assert identity_hash(run_identity(tiny_cfg("optim=adasam"))) == identity_hash(
        run_identity(tiny_cfg("optim=adasam", override))
    )


def test_seed_changes_identity_but_not_group(tiny_cfg):
    a, b = run_identity(tiny_cfg("seed=1")), run_identity(tiny_cfg("seed=2"))
    assert identity_hash(a) != identity_hash(b) and group_hash(a) == group_hash(b)


def _glue_tsv(root, rows: int = 40, extra: str = ""):
    d = root / "MRPC"
    d.mkdir(parents=True, exist_ok=True)
    head = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
    body = "".join(f"{i % 2}\t{i}\t{i + 1000}\tthe cat sat {i}\ta cat sat {i}{extra}\n" for i in range(rows))
    for name in ("train.tsv", "dev.tsv"):
        (d / name).write_text(head + body, encoding="utf-8")
    return root


def test_data_files_enter_the_identity_by_content_not_path(tiny_cfg, tmp_path):
    one, two, three = (
        _glue_tsv(tmp_path / "a"),
        _glue_tsv(tmp_path / "b"),
        _glue_tsv(tmp_path / "c", extra=" x"),
    )
    ids = [run_identity(tiny_cfg("data.source=tsv", f"data.data_dir={d}")) for d in (one, two, three)]
    assert identity_hash(ids[0]) == identity_hash(ids[1])  # same files elsewhere: same run
    assert identity_hash(ids[0]) != identity_hash(ids[2])  # one edited file: another run
    synthetic = run_identity(tiny_cfg())
    assert group_hash(synthetic) != group_hash(ids[0])


def test_local_model_path_enters_the_identity_and_names_the_run(tmp_path):
    folder = tmp_path / "my-bert"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert"}')
    cfg = compose_cfg("task=mrpc", f"model.path={folder}", f"results_dir={tmp_path}")
    assert cfg.task.init_from is None  # never silently roberta-large-mnli for a custom model
    assert resolve_run_dir(cfg).parent.name.startswith("my-bert_")
    before = identity_hash(run_identity(cfg))
    (folder / "config.json").write_text('{"model_type": "bert", "hidden_size": 8}')
    assert identity_hash(run_identity(cfg)) != before
    assert compose_cfg("task=mrpc").task.init_from == "roberta-large-mnli"  # the paper's default stays


def test_completed_run_is_skipped_only_for_the_same_identity(tiny_cfg, tmp_path):
    first = run(tiny_cfg("optim=amsgrad"))
    again = run(tiny_cfg("optim=amsgrad", "trainer.progress_bar=true"))
    assert again.get("skipped") and again["run_id"] == first["run_id"]
    other = run(tiny_cfg("optim=amsgrad", "model.dropout=0.2"))
    assert not other.get("skipped") and other["run_id"] != first["run_id"]
    assert other["identity"]["config"]["model"]["dropout"] == 0.2


def test_pinned_run_dir_refuses_another_identity_naming_the_keys(tiny_cfg, tmp_path):
    d = tmp_path / "pinned"
    run(tiny_cfg("optim=amsgrad", run_dir=d))
    with pytest.raises(ConfigError, match=r"model\.dropout: 0\.0 -> 0\.3") as e:
        run(tiny_cfg("optim=amsgrad", "model.dropout=0.3", run_dir=d))
    assert "run_dir" in str(e.value)
    assert read_record(d / "record.json")["status"] == "completed"


@pytest.mark.parametrize("override", ["data.synthetic_seed=3", "model.dropout=0.2", "task.max_length=16"])
def test_preempted_run_does_not_resume_under_another_identity(tiny_cfg, tmp_path, override):
    d = tmp_path / "r"
    first = run(tiny_cfg("optim=adasam", "trainer.stop_after_updates=2", run_dir=d))
    assert first["status"] == "preempted"
    with pytest.raises(ConfigError, match=override.split("=")[0].replace(".", r"\.")):
        run(tiny_cfg("optim=adasam", override, run_dir=d))
    rec = read_record(d / "record.json")
    assert rec["status"] == "preempted" and rec["optimizer_updates"] == 2
    resumed = run(tiny_cfg("optim=adasam", override, "reuse_run_dir=true", run_dir=d))  # the explicit way
    assert resumed["status"] == "completed" and resumed["attempts"][-1]["identity_changes"]
    from adasam_glue.report.collect import judge  # the report excludes it (issue 24 F1), naming the keys

    status, flags = judge(read_record(d / "record.json"))
    assert status == "excluded" and "resumed under a changed config" in flags[0]


@pytest.mark.parametrize("damage", ["truncate_model", "remove_rank", "corrupt_state"])
def test_failed_resume_keeps_the_history_and_names_the_file(tiny_cfg, tmp_path, damage):
    d = tmp_path / "r"
    run(tiny_cfg("optim=adasam", "trainer.max_updates=6", "trainer.stop_after_updates=3", run_dir=d))
    ckpt = d / "checkpoint"
    target = {"truncate_model": "model.pt", "remove_rank": "rank0.pt", "corrupt_state": "trainer_state.json"}[
        damage
    ]
    if damage == "truncate_model":
        data = (ckpt / target).read_bytes()
        (ckpt / target).write_bytes(data[: len(data) // 3])
    elif damage == "remove_rank":
        (ckpt / target).unlink()
    else:
        (ckpt / target).write_text("{not json")
    with pytest.raises(CheckpointError, match=target.replace(".", r"\.")) as e:
        run(tiny_cfg("optim=adasam", "trainer.max_updates=6", run_dir=d))
    assert "delete" in str(e.value)  # says how to recover
    rec = read_record(d / "record.json")
    assert rec["status"] == "failed" and rec["optimizer_updates"] == 3
    assert [p["update"] for p in rec["train_curve"]] == [1, 2, 3]
    assert [a["status"] for a in rec["attempts"]] == ["preempted", "failed"]
    assert target in rec["attempts"][-1]["error"]


def test_kill_between_last_update_and_record_leaves_a_resumable_run(tiny_cfg, tmp_path, monkeypatch):
    """The completed record is written before the checkpoint goes: a kill in between loses nothing."""
    from adasam_glue import records

    d = tmp_path / "r"
    original = records.RunRecorder.write

    def killed_at_the_end(self, state, status, extra=None):
        if status == "completed":
            raise SystemExit("killed")
        return original(self, state, status, extra)

    monkeypatch.setattr(records.RunRecorder, "write", killed_at_the_end)
    with pytest.raises(SystemExit):
        run(tiny_cfg("optim=amsgrad", "trainer.checkpoint_every=2", run_dir=d))
    assert (d / "checkpoint" / "trainer_state.json").exists()
    monkeypatch.setattr(records.RunRecorder, "write", original)
    rec = run(tiny_cfg("optim=amsgrad", "trainer.checkpoint_every=2", run_dir=d))
    assert rec["status"] == "completed" and rec["resumed"] and rec["optimizer_updates"] == 4
    assert not (d / "checkpoint").exists()


def test_checkpoint_is_removed_only_after_the_completed_record(tiny_cfg, tmp_path, monkeypatch):
    import adasam_glue.trainer as trainer_mod

    d, seen = tmp_path / "r", []
    original = trainer_mod.Trainer.remove_checkpoint

    def check(self):
        seen.append(read_record(d / "record.json")["status"])
        original(self)

    monkeypatch.setattr(trainer_mod.Trainer, "remove_checkpoint", check)
    run(tiny_cfg("optim=amsgrad", "trainer.checkpoint_every=2", run_dir=d))
    assert seen == ["completed"]


def test_second_launch_of_a_run_dir_fails_and_changes_nothing(tiny_cfg, tmp_path):
    d = tmp_path / "r"
    run(tiny_cfg("optim=amsgrad", run_dir=d))
    before = (d / "record.json").read_bytes()
    with run_dir_lock(d):  # a live first launch holds it
        with pytest.raises(RunDirLocked, match=f"pid {os.getpid()}"):
            run(tiny_cfg("optim=amsgrad", run_dir=d))
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
        cli = subprocess.run(
            [sys.executable, "-m", "adasam_glue", *_tiny_cli(tmp_path), f"run_dir={d}", "optim=amsgrad"],
            capture_output=True,
            text=True,
            env=env,
            timeout=180,
        )
        assert cli.returncode != 0 and "in use by another process" in cli.stderr
    assert (d / "record.json").read_bytes() == before


def _tiny_cli(tmp_path) -> list[str]:
    from tests.conftest import TINY

    return [*TINY, f"results_dir={tmp_path}"]


def test_stray_temp_files_are_cleaned_and_a_half_swap_is_repaired(tiny_cfg, tmp_path):
    d = tmp_path / "r"
    run(tiny_cfg("optim=adasam", "trainer.max_updates=6", "trainer.stop_after_updates=3", run_dir=d))
    (d / ".record.json.abc.tmp").write_text("partial")
    (d / ".checkpoint.tmp").mkdir()
    (d / "checkpoint").rename(d / ".checkpoint.old")  # killed inside the swap: only the old copy is left
    rec = run(tiny_cfg("optim=adasam", "trainer.max_updates=6", run_dir=d))
    assert rec["status"] == "completed" and rec["resumed"]
    assert not list(d.glob(".*.tmp*")) and not list(d.glob(".*.old"))


def test_record_and_files_honour_the_umask(tiny_cfg, tmp_path):
    old = os.umask(0o022)
    try:
        run(tiny_cfg("optim=amsgrad", run_dir=tmp_path / "r"))
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "r" / "record.json").stat().st_mode)
    assert mode == 0o644


@pytest.fixture
def no_model(monkeypatch):
    def fail(*a, **k):
        raise AssertionError("a model was loaded before the config was validated")

    monkeypatch.setattr(modeling, "build_model", fail)
    monkeypatch.setattr(modeling, "build_tokenizer", fail)


@pytest.mark.parametrize(
    "override, key",
    [
        ("seed=-1", "seed"),
        ("+optim.rhoo=0.1", "rhoo"),
        ("optim.beta2=1.0", "beta2"),
        ("trainer.grad_accum=3", "task.batch_size"),
        ("optim.form=nosuch", "form"),
    ],
)
def test_bad_values_are_refused_before_any_model_loads(tiny_cfg, tmp_path, no_model, override, key):
    with pytest.raises(ConfigError, match=key):
        run(tiny_cfg("optim=adasam", override, run_dir=tmp_path / "r"))
    assert not (tmp_path / "r" / "record.json").exists()


def test_ctrl_c_gives_a_final_status_and_keeps_the_history(tiny_cfg, tmp_path, monkeypatch):
    import adasam_glue.trainer as trainer_mod

    d = tmp_path / "r"
    run(tiny_cfg("optim=amsgrad", "trainer.max_updates=6", "trainer.stop_after_updates=2", run_dir=d))
    original = trainer_mod.Trainer.train_step

    def interrupted(self, micro_batches):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer_mod.Trainer, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(tiny_cfg("optim=amsgrad", "trainer.max_updates=6", run_dir=d))
    rec = read_record(d / "record.json")
    assert rec["status"] == "failed" and "KeyboardInterrupt" in rec["error"] and rec["optimizer_updates"] == 2
    monkeypatch.setattr(trainer_mod.Trainer, "train_step", original)
    assert run(tiny_cfg("optim=amsgrad", "trainer.max_updates=6", run_dir=d))["status"] == "completed"


@pytest.mark.parametrize(
    "task, files", [("rte", ["RTE.tsv"]), ("stsb", ["STS-B.tsv"]), ("mnli", ["MNLI-m.tsv", "MNLI-mm.tsv"])]
)
def test_predict_test_writes_glue_submission_files(tiny_cfg, tmp_path, task, files):
    from adasam_glue.data import load_glue
    from adasam_glue.tasks import get_task

    rec = run(tiny_cfg(f"task={task}", "optim=amsgrad", "trainer.predict_test=true", run_dir=tmp_path / "r"))
    info = get_task(task)
    raw = load_glue(
        task,
        source="synthetic",
        synthetic_train_size=64,
        synthetic_eval_size=32,
        cache_dir=str(tmp_path / "c"),
    )
    assert rec["predictions"]["model"] == "best"
    for split, name in zip([s.replace("validation", "test") for s in info.eval_splits], files):
        path = tmp_path / "r" / "predictions" / name
        lines = path.read_text().splitlines()
        assert lines[0] == "index\tprediction" and len(lines) - 1 == len(raw[split])
        assert rec["predictions"]["files"][split] == {"file": f"predictions/{name}", "rows": len(raw[split])}
        values = [line.split("\t")[1] for line in lines[1:]]
        if info.is_regression:
            assert all(float(v) == float(v) for v in values)
        else:
            assert set(values) <= set(info.label_names)  # RTE/MNLI spell labels by name


def test_completed_run_asked_for_predictions_writes_them_from_its_saved_model(tiny_cfg, tmp_path, capsys):
    """Issue 24 E: predict_test is outside the identity, so a completed run asked for predictions used to
    print "skipped" and write none. It writes them now from its saved (best) model, the same files a run
    that predicted from the start writes; a third launch finds them and says where they are."""
    common = ["task=rte", "optim=amsgrad", "trainer.save_model=best"]
    d = tmp_path / "r"
    first = run(tiny_cfg(*common, run_dir=d))
    assert first["status"] == "completed" and "predictions" not in first
    capsys.readouterr()
    again = run(tiny_cfg(*common, "trainer.predict_test=true", run_dir=d))
    out = capsys.readouterr().out
    assert again["skipped"] and "test predictions written now from its best model" in out
    assert again["predictions"]["model"] == "best"
    on_disk = read_record(d / "record.json")
    assert on_disk["predictions"]["files"] == again["predictions"]["files"]
    assert on_disk["status"] == "completed" and on_disk["optimizer_updates"] == first["optimizer_updates"]
    fresh = run(tiny_cfg(*common, "trainer.predict_test=true", run_dir=tmp_path / "fresh"))
    assert (d / "predictions" / "RTE.tsv").read_text() == (
        tmp_path / "fresh" / "predictions" / "RTE.tsv"
    ).read_text()
    assert fresh["predictions"]["files"] == on_disk["predictions"]["files"]
    third = run(tiny_cfg(*common, "trainer.predict_test=true", run_dir=d))
    assert third["skipped"] and f"its test predictions are in {d / 'predictions'}" in capsys.readouterr().out


def test_completed_run_without_a_saved_model_says_why_it_cannot_predict(tiny_cfg, tmp_path):
    from adasam_glue.predict import PredictionError

    d = tmp_path / "r"
    run(tiny_cfg("task=rte", "optim=amsgrad", "trainer.save_model=none", run_dir=d))
    with pytest.raises(PredictionError, match=r"saved no model .*trainer.save_model='none'.*save_model=best"):
        run(
            tiny_cfg(
                "task=rte", "optim=amsgrad", "trainer.save_model=none", "trainer.predict_test=true", run_dir=d
            )
        )
    assert "predictions" not in read_record(d / "record.json")


def test_predict_test_without_test_files_fails_before_training(tiny_cfg, tmp_path):
    """A GLUE folder without test.tsv: the error names the file, and nothing is trained or written (it
    used to train, then fail with a raw FileNotFoundError and a failed record)."""
    from adasam_glue.data.sources import DataError
    from tests.conftest import tiny_mrpc_glue

    glue = tiny_mrpc_glue(tmp_path)
    cfg = tiny_cfg("task=mrpc", "optim=amsgrad", "data.source=tsv", f"data.data_dir={glue}",
                   "trainer.predict_test=true", run_dir=tmp_path / "r")  # fmt: skip
    with pytest.raises(DataError, match=r"test file\(s\), missing: .*MRPC/test\.tsv.*nothing was trained"):
        run(cfg)
    assert not (tmp_path / "r" / "record.json").exists()


def test_skip_message_says_when_the_record_ran_on_another_device(tiny_cfg, tmp_path, capsys):
    """trainer.cpu stays out of the identity (identity.py says why); reusing a record trained on another
    device is a warning in the skip message, not a silent reuse and not a rerun."""
    import json

    d = tmp_path / "r"
    run(tiny_cfg("optim=amsgrad", run_dir=d))
    rec = json.loads((d / "record.json").read_text())
    rec["hardware"]["device"] = "cuda:0"  # as if the first launch had run on a GPU
    (d / "record.json").write_text(json.dumps(rec))
    capsys.readouterr()
    again = run(tiny_cfg("optim=amsgrad", run_dir=d))
    out = capsys.readouterr().out
    assert again["skipped"] and "skipped (already completed)" in out
    assert "trained on cuda:0 and this launch would run on cpu" in out
    run(tiny_cfg("optim=amsgrad", run_dir=tmp_path / "same"))
    capsys.readouterr()
    run(tiny_cfg("optim=amsgrad", run_dir=tmp_path / "same"))
    assert "trained on" not in capsys.readouterr().out  # same device: no warning


def _code_at(monkeypatch, commit: str, dirty: bool = False) -> None:
    """Make this process's code look like ``commit`` (what provenance.git_commit reports)."""
    import adasam_glue.provenance as provenance

    monkeypatch.setattr(provenance, "git_commit", lambda: (commit, dirty))


def test_a_record_of_another_commit_is_skipped_with_a_warning_or_rerun_on_request(
    tiny_cfg, tmp_path, monkeypatch, capsys
):
    """Issue 24 C: the code version was stored, never compared: after a fix, completed runs were skipped
    without a word. Default: a warning naming both commits, then the skip. rerun_on_new_commit=true (not
    in the identity): trained again, the old record and model kept as record.<commit>.json, model.<commit>."""
    old, new = "a" * 40, "b" * 40
    d, common = tmp_path / "r", ["optim=amsgrad", "trainer.save_model=final"]
    _code_at(monkeypatch, old, dirty=True)
    first = run(tiny_cfg(*common, run_dir=d))
    assert first["git_commit"] == old and first["status"] == "completed"
    _code_at(monkeypatch, new)
    capsys.readouterr()
    again = run(tiny_cfg(*common, run_dir=d))
    out = capsys.readouterr().out
    assert again["skipped"] and again["git_commit"] == old
    assert (
        f"warning: code changed: {d / 'record.json'} (completed) was written by commit {old[:12]} (from a "
        "tree with uncommitted changes); this code is commit " + new[:12] in out
    )
    assert "set rerun_on_new_commit=true" in out.lower()

    cfg = tiny_cfg(*common, "rerun_on_new_commit=true", run_dir=d)
    assert identity_hash(run_identity(cfg)) == first["identity_hash"]  # the key is not the run's identity
    rerun = run(cfg)
    assert not rerun.get("skipped") and rerun["status"] == "completed" and rerun["git_commit"] == new
    tag = old[:12] + "-dirty"
    assert rerun["supersedes"] == f"record.{tag}.json" and len(rerun["attempts"]) == 1
    assert read_record(d / f"record.{tag}.json")["git_commit"] == old  # nothing written is lost
    assert (d / f"model.{tag}" / "config.json").exists() and (d / "model" / "config.json").exists()
    capsys.readouterr()
    assert run(tiny_cfg(*common, "rerun_on_new_commit=true", run_dir=d))["skipped"]  # same commit now
    assert "code changed" not in capsys.readouterr().out


def test_a_preempted_run_of_another_commit_resumes_with_a_warning(tiny_cfg, tmp_path, monkeypatch, capsys):
    d = tmp_path / "r"
    _code_at(monkeypatch, "c" * 40)
    run(tiny_cfg("optim=amsgrad", "trainer.stop_after_updates=2", run_dir=d))
    _code_at(monkeypatch, "e" * 40)
    capsys.readouterr()
    rec = run(tiny_cfg("optim=amsgrad", run_dir=d))
    assert "resumed: each attempt's commit stays in its attempts" in capsys.readouterr().out
    assert rec["resumed"] and [a["git_commit"][0] for a in rec["attempts"]] == ["c", "e"]


def test_the_plan_counts_a_run_of_another_commit_as_to_do_only_with_rerun_on_new_commit(
    tmp_path, monkeypatch
):
    import json

    from adasam_glue.experiments import plan as experiments

    d = tmp_path / "r"
    d.mkdir()
    (d / "record.json").write_text(json.dumps({"status": "completed", "git_commit": "a" * 40}))
    monkeypatch.setattr(experiments, "_current_commit", lambda: "b" * 40)
    assert experiments._record_status(d) == "completed"
    assert experiments._record_status(d, rerun_on_new_commit=True) == experiments.STALE_COMMIT


@pytest.mark.parametrize(
    "overrides, pinned",
    [
        (["task=mrpc", "optim=adasam"], "27faaf1811"),
        (["experiment=table1", "task=rte", "method=adasam_rho0.005"], "c8cf5cd4ae"),
        (["experiment=table2", "task=cola", "method=sgd", "optim.lr=0.003"], "c2f55996d5"),
        (
            ["model=tiny", "task=sst2", "optim=gsam", "optim.base=sgd", "optim.lr=0.01"]
            + ["trainer.mixed_precision=fp16", "sharpness.enabled=true"],
            "0f4c26bcd2",
        ),
    ],
)
def test_identities_of_existing_configs_never_move(overrides, pinned):
    """The group hash names every run dir and report cell: if a refactor of the schema or the YAML
    changes it for an unchanged config, every existing run is orphaned (rerun from zero, pooled apart).
    These hashes were computed before values moved from the schema's defaults into ``conf/``; a change
    that is meant to alter identities bumps ``IDENTITY_VERSION`` and updates them on purpose."""
    from hydra import compose, initialize_config_dir

    from adasam_glue.config import CONF_DIR

    with initialize_config_dir(str(CONF_DIR), version_base=None):
        cfg = compose("config", overrides=overrides)
    assert group_hash(run_identity(cfg, world_size=1)) == pinned


# ----------------------------------------------------------------------------- locks without flock (issue 24 G)
def _no_flock(monkeypatch) -> None:
    """The run dir's file system has no locks: NFS without lockd, Lustre without -o flock."""
    import errno

    import adasam_glue.run_dir as run_dir_module

    def flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(run_dir_module.fcntl, "flock", flock)


def test_a_file_system_without_flock_is_a_clear_error_with_an_opt_in_lock_file(tmp_path, monkeypatch):
    import json
    import socket

    from adasam_glue.run_dir import EXCL_LOCK_NAME, LOCK_FALLBACK_ENV, RunDirLockUnsupported

    _no_flock(monkeypatch)
    monkeypatch.delenv(LOCK_FALLBACK_ENV, raising=False)
    d = tmp_path / "r"
    with pytest.raises(RunDirLockUnsupported) as e:  # was a raw OSError traceback
        with run_dir_lock(d):
            pytest.fail("locked without a lock")
    msg = str(e.value)
    assert str(d / ".lock") in msg and "ENOLCK" in msg and f"{LOCK_FALLBACK_ENV}=1" in msg
    assert isinstance(e.value, ConfigError)  # a user error: the CLI prints one line, no traceback

    monkeypatch.setenv(LOCK_FALLBACK_ENV, "1")
    lock = d / EXCL_LOCK_NAME
    with run_dir_lock(d):
        holder = json.loads(lock.read_text())
        assert holder["host"] == socket.gethostname() and holder["pid"] == os.getpid()
        with pytest.raises(RunDirLocked, match=f"pid {os.getpid()}, since .*; on this host"):
            with run_dir_lock(d):
                pytest.fail("two holders")
        assert lock.exists()  # the refused launch left the holder's file alone
    assert not lock.exists()

    # a lock file left by a killed run of this host: its pid is dead, so it is taken over
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout), "since": "earlier"}))
    with run_dir_lock(d):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()

    # one of another host cannot be checked from here: refused, naming host and pid, and kept
    lock.write_text(json.dumps({"host": "node-17", "pid": 4242, "since": "2025-01-01T00:00:00"}))
    with pytest.raises(
        RunDirLocked, match="host node-17, pid 4242, since 2025-01-01T00:00:00; on another host"
    ) as e:
        with run_dir_lock(d):
            pytest.fail("took another host's lock")
    assert f"delete {lock}" in str(e.value) and lock.exists()

    monkeypatch.setenv(LOCK_FALLBACK_ENV, "maybe")
    lock.unlink()
    with pytest.raises(ConfigError, match=f"invalid {LOCK_FALLBACK_ENV}='maybe'"):
        with run_dir_lock(d):
            pass


def test_a_flock_held_on_another_host_is_reported_as_such(tmp_path, monkeypatch):
    """NFS with lockd: the holder may be a process of another node; its pid means nothing here."""
    import json

    import adasam_glue.run_dir as run_dir_module

    d = tmp_path / "r"
    d.mkdir()
    (d / ".lock").write_text(json.dumps({"host": "node-3", "pid": 99, "since": "2025-01-01T00:00:00"}))

    def flock(fd, op):
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(run_dir_module.fcntl, "flock", flock)
    with pytest.raises(RunDirLocked, match="host node-3, pid 99, since 2025-01-01T00:00:00; on another host"):
        with run_dir_lock(d):
            pytest.fail("locked")


def test_run_without_flock_stops_before_anything_or_trains_with_the_lock_file(
    tiny_cfg, tmp_path, monkeypatch
):
    from adasam_glue.run_dir import EXCL_LOCK_NAME, LOCK_FALLBACK_ENV, RunDirLockUnsupported

    _no_flock(monkeypatch)
    monkeypatch.delenv(LOCK_FALLBACK_ENV, raising=False)
    d = tmp_path / "r"
    with pytest.raises(RunDirLockUnsupported):
        run(tiny_cfg("optim=amsgrad", run_dir=d))
    assert not (d / "record.json").exists()
    monkeypatch.setenv(LOCK_FALLBACK_ENV, "1")
    assert run(tiny_cfg("optim=amsgrad", run_dir=d))["status"] == "completed"
    assert not (d / EXCL_LOCK_NAME).exists()


def test_moved_local_weights_are_the_same_run_and_edited_ones_are_not(tmp_path):
    """identity.py's promise: a local model.path / task.init_from enters as the fingerprint of what it
    holds, so the same folder moved elsewhere keeps the identity; a Hub id stays as it is written."""
    import shutil

    first = tmp_path / "a" / "my-bert"
    first.mkdir(parents=True)
    (first / "config.json").write_text('{"model_type": "bert"}')
    (first / "model.safetensors").write_bytes(b"\\x00" * 64)
    moved = tmp_path / "b" / "elsewhere" / "my-bert"
    shutil.copytree(first, moved)
    for key in ("model.path", "task.init_from"):
        here = run_identity(compose_cfg("task=mrpc", "model=minilm", f"{key}={first}"))
        there = run_identity(compose_cfg("task=mrpc", "model=minilm", f"{key}={moved}"))
        assert identity_hash(here) == identity_hash(there), key
        (moved / "config.json").write_text('{"model_type": "bert", "hidden_size": 8}')
        edited = run_identity(compose_cfg("task=mrpc", "model=minilm", f"{key}={moved}"))
        assert identity_hash(edited) != identity_hash(here), key
        (moved / "config.json").write_text('{"model_type": "bert"}')
    hub = run_identity(compose_cfg("task=mrpc"))
    assert hub["config"]["model"]["path"] == "roberta-large"  # a Hub id is not a local folder: kept


def test_an_attempt_starts_at_the_checkpoints_update_and_says_so_without_a_record(tiny_cfg, tmp_path, caplog):
    """A record moved away with its checkpoint left behind: the run resumes from the checkpoint (warning
    that the checkpoint must go too to start over) and the attempt's updates_at_start is the checkpoint's
    update, not 0 (issue 24: the earlier record's count was shown, not the checkpoint's)."""
    import logging

    d = tmp_path / "r"
    first = run(tiny_cfg("optim=amsgrad", "trainer.stop_after_updates=2", run_dir=d))
    assert first["status"] == "preempted" and (d / "checkpoint").exists()
    (d / "record.json").rename(tmp_path / "moved-away.json")
    with caplog.at_level(logging.WARNING, logger="adasam_glue.run"):
        again = run(tiny_cfg("optim=amsgrad", run_dir=d))
    assert again["status"] == "completed" and again["resumed"]
    assert again["attempts"][-1]["updates_at_start"] == 2
    assert any("move the checkpoint/ folder away too" in r.getMessage() for r in caplog.records)
