"""The command line: composition, --cfg job, and errors for bad names/values before any model loads."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from adasam_glue.config import ConfigError
from adasam_glue.run import resolve_run_dir, run, run_params_tag
from tests.conftest import compose_cfg

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "adasam_glue", *args], capture_output=True, text=True, env=ENV, timeout=120
    )


def test_main_command_composes_paper_settings():
    out = _cli("task=mrpc", "optim=adasam", "--cfg", "job")
    assert out.returncode == 0, out.stderr
    assert "name: adasam" in out.stdout and "name: roberta-large" in out.stdout
    cfg = compose_cfg("task=mrpc", "optim=adasam")
    assert cfg.optim.lr == 1e-5 and cfg.task.batch_size == 16 and cfg.task.total_updates == 2296
    assert cfg.task.init_from == "roberta-large-mnli"  # MRPC starts from the MNLI-tuned model (spec §4)
    assert cfg.optim.rho == 0.01 and cfg.optim.beta1 == 0.9
    assert compose_cfg("task=cola", "optim=adasam").task.init_from is None


@pytest.mark.parametrize(
    "override, expected",
    [("task=nosuch", "mrpc"), ("optim=nosuch", "adasam"), ("model=nosuch", "roberta-large")],
)
def test_unknown_group_option_lists_valid_names(override, expected):
    out = _cli(override, "--cfg", "job")
    assert out.returncode != 0
    assert "nosuch" in out.stderr and expected in out.stderr


@pytest.mark.parametrize(
    "override", ["optim.rhoo=0.1", "trainer.grad_acum=2", "optim.rho=abc", "task.batch_size=1.5"]
)
def test_misspelt_key_or_wrong_type_fails_at_compose_time(override):
    with pytest.raises(Exception) as e:
        compose_cfg(override)
    assert (
        override.split("=")[0].split(".")[-1] in str(e.value)
        or "abc" in str(e.value)
        or "1.5" in str(e.value)
    )


@pytest.mark.parametrize(
    "override, use",
    [
        ("trainer.max_steps=100", "trainer.max_updates"),
        ("max_steps=100", "trainer.max_updates"),
        ("learning_rate=2e-5", "optim.lr"),
        ("+learning_rate=2e-5", "task.lr"),
        ("per_device_train_batch_size=8", "task.batch_size"),
        ("num_train_epochs=3", "task.total_updates"),
        ("warmup_steps=10", "task.warmup_updates"),
        ("max_grad_norm=1.0", "trainer.max_grad_norm"),
        ("optim.max_grad_norm=1.0", "trainer.max_grad_norm"),
        ("gradient_accumulation_steps=2", "trainer.grad_accum"),
        ("trainer.lr=1e-5,2e-5", "optim.lr"),
        ("rho=0.05", "optim.rho"),  # a harness key in the wrong section
    ],
)
def test_hugging_face_names_fail_with_the_harness_key(override, use):
    from adasam_glue.config import check_override_keys

    key = override.split("=")[0].lstrip("+")
    with pytest.raises(ConfigError, match=rf"unknown key '{re.escape(key)}'.* calls it .*{re.escape(use)}"):
        check_override_keys(["task=mrpc", override, "--cfg", "job"])


def test_the_cli_and_reproduce_all_print_the_hint_not_hydras_append_advice():
    out = _cli("trainer.max_steps=100", "--cfg", "job")
    assert out.returncode == 2 and "+trainer.max_steps" not in out.stderr
    assert (
        out.stderr.startswith("error: unknown key 'trainer.max_steps'")
        and "trainer.max_updates" in out.stderr
    )
    out = subprocess.run(
        [sys.executable, "-m", "adasam_glue.experiments", "reproduce-all", "--dry-run", "learning_rate=1e-5"],
        capture_output=True, text=True, env=ENV, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2 and "optim.lr" in out.stderr and "run:" not in out.stdout


def test_no_hint_for_valid_keys_groups_flags_or_plain_typos():
    from adasam_glue.config import CONF_DIR, HF_KEYS, check_override_keys, misnamed_key_hint, schema_keys

    keys = schema_keys()
    assert {"trainer.max_updates", "optim.lr", "task.batch_size", "seed"} <= keys
    assert all(misnamed_key_hint(k) is None for k in keys)
    groups = [f"{p.name}=x" for p in CONF_DIR.iterdir() if p.is_dir()]
    check_override_keys([*groups, "hydra/launcher=slurm", "hydra.run.dir=/x", "-cd", "/a=b", "--cfg", "job"])
    assert misnamed_key_hint("optim.rhoo") is None  # Hydra's own error names a plain typo
    for name, hint in HF_KEYS.items():  # every key a hint names exists
        named = set(re.findall(r"\b(?:task|optim|model|data|trainer|logging)\.\w+", hint))
        assert named <= keys, (name, named - keys)


@pytest.mark.parametrize(
    "override, key",
    [
        ("optim.rho=-0.1", "optim.rho"),
        ("optim.lr=0", "optim.lr"),
        ("optim.beta1=1.0", "optim.beta1"),
        ("optim.beta2=-0.5", "optim.beta2"),
        ("task.batch_size=0", "task.batch_size"),
        ("trainer.mixed_precision=fp8", "trainer.mixed_precision"),
        ("trainer.head_lr_scale=0", "trainer.head_lr_scale"),
        ("task.target_scale=5", "task.target_scale"),  # the default task (mrpc) is a classification task
        ("task=stsb task.target_scale=-1", "task.target_scale"),
    ],
)
def test_invalid_values_fail_before_any_model_loads(override, key, monkeypatch):
    import adasam_glue.modeling as modeling

    def boom(*a, **k):
        raise AssertionError("a model was loaded before the config was validated")

    monkeypatch.setattr(modeling, "build_model", boom)
    monkeypatch.setattr(modeling, "build_tokenizer", boom)
    cfg = compose_cfg(*override.split())
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        run(cfg)


def test_run_dirs_of_grid_points_differ():
    a = compose_cfg("optim=adasam", "optim.rho=0.01")
    b = compose_cfg("optim=adasam", "optim.rho=0.005")
    c = compose_cfg("optim=amsgrad")
    assert len({run_params_tag(a), run_params_tag(b), run_params_tag(c)}) == 3
    assert resolve_run_dir(a).parent.name.startswith(run_params_tag(a) + "-")
    assert str(resolve_run_dir(a).parent.parent).endswith("runs/default/mrpc/adasam")
    assert resolve_run_dir(a).name == "seed1" and resolve_run_dir(a).is_absolute()


def test_dry_run_prints_plan_line_and_loads_nothing(capsys, tiny_cfg):
    rec = run(
        tiny_cfg("optim=adasam", "dry_run=true"), overrides=["task=rte", "optim=adasam", "optim.rho=0.01"]
    )
    assert rec["dry_run"] is True
    assert capsys.readouterr().out.strip() == "run: task=rte optim=adasam optim.rho=0.01"


def test_help_lists_groups_and_the_keys_users_set_with_descriptions():
    out = _cli("--help")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for needle in (
        "task ",
        "optim ",
        "adasam",
        "model.path",
        "data.source",
        "data.data_dir",
        "trainer.mixed_precision",
        "results_dir",
        "optim.rho",
        "hub | tsv | disk | synthetic",
        "no | bf16 | fp16",
    ):
        assert needle in text, needle
    line = next(x for x in text.splitlines() if x.strip().startswith("model.path"))
    assert len(line.split(None, 1)[1]) > 10  # a description, taken from the schema's own #: comment
    assert "hidden_size" not in text  # the tiny model's keys are not shown under roberta-large


def test_custom_model_path_is_not_started_from_another_models_mnli_checkpoint(tmp_path):
    cfg = compose_cfg("task=rte", "model.path=/models/my-bert")
    assert cfg.task.init_from is None and cfg.model.mnli_checkpoint is None
    assert run_params_tag(cfg).startswith("my-bert_")
    given = compose_cfg(
        "task=rte", "model.path=/models/my-bert", "model.mnli_checkpoint=/models/my-bert-mnli"
    )
    assert given.task.init_from == "/models/my-bert-mnli"
    for name, mnli in [
        ("bert-base-uncased", "textattack/bert-base-uncased-MNLI"),
        ("deberta-v3-large", None),
    ]:
        assert compose_cfg("task=rte", f"model={name}").task.init_from == mnli
