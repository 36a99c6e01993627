"""SAMTrainer (adasam_glue.integrations.transformers): a transformers.Trainer running the harness's update.

- N updates of ``SAMTrainer`` equal N updates of the harness (``adasam_glue.run.run``) on the same
  micro-batches (fp32, no dropout, same init), with and without gradient accumulation (spec §2.1, §2.3);
- a run resumed from an HF checkpoint equals an uninterrupted one (optimizer state, ESAM's generator);
- fp16: a skipped update does not advance HF's schedule; two gloo processes end with the same weights,
  and global SAM on two processes equals one process on the whole batch (spec §2.4);
- one set of optimizer values: for every registry entry, ``SAMTrainer(optim=name)`` builds the optimizer
  the CLI builds from ``conf/optim/<name>.yaml``; it says what it built (log, ``args.optim_args``, model
  card); ``total_flos`` counts both passes; ``--optim adasam --optim_args rho=0.01`` through
  ``HfArgumentParser`` and ``SAMTrainingArguments`` in a ``run_glue``-style script;
- the README example runs as written (tiny model, synthetic MRPC, offline).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf

from adasam_glue import run as run_mod
from adasam_glue.optim import OPTIMIZERS, AdaSAM, build_optimizer
from adasam_glue.tasks import get_task

transformers = pytest.importorskip("transformers")
from transformers import TrainingArguments  # noqa: E402

from adasam_glue.integrations.transformers import (  # noqa: E402
    SAMTrainer,
    SAMTrainerOptimizer,
    SAMTrainingArguments,
    format_optim_args,
    parse_optim_args,
)
from tests.conftest import run_two_gloo_processes, training_linear_dtypes  # noqa: E402

README = Path(__file__).resolve().parents[1] / "README.md"
TOL = 1e-6


# ---------------------------------------------------------------------------------- helpers
def _harness_start(cfg) -> tuple[torch.nn.Module, list[dict[str, torch.Tensor]]]:
    """The harness's start point and micro-batch stream, built with its own setup helpers in the order of
    ``run._train`` (seed, then tokenizer and model, then loaders): the same init and the same batches."""
    accelerator = run_mod.setup_accelerator(cfg)
    task = get_task(cfg.task.name)
    tokenizer, model = run_mod.setup_model_and_tokenizer(cfg, task)
    _, _, loaders = run_mod.setup_data(cfg, task, tokenizer, accelerator)
    loader = accelerator.prepare(loaders.train)
    loader.set_epoch(0)  # the harness's first epoch (its sampler's order is a function of seed and epoch)
    n = run_mod.total_updates(cfg) * cfg.trainer.grad_accum
    batches = [{k: v for k, v in b.items() if k != "idx"} for b in itertools.islice(loader, n)]
    assert len(batches) == n
    return model, batches


def _args(cfg, output_dir: Path, **overrides: Any) -> TrainingArguments:
    """HF arguments for the harness config: the same lr, schedule (linear, no warmup), decay, clipping,
    seed, accumulation, precision; one prepared micro-batch per dataset item, in order."""
    kw: dict[str, Any] = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=1,  # one item = one micro-batch of the harness
        gradient_accumulation_steps=cfg.trainer.grad_accum,
        max_steps=run_mod.total_updates(cfg),
        learning_rate=cfg.optim.lr,
        weight_decay=cfg.optim.weight_decay,
        lr_scheduler_type="linear",
        warmup_steps=0,
        max_grad_norm=cfg.trainer.max_grad_norm or 0.0,
        seed=cfg.seed,
        fp16=cfg.trainer.mixed_precision == "fp16",  # CPU: the GradScaler is SAMTrainer's, as the harness's
        bf16=cfg.trainer.mixed_precision == "bf16",
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        train_sampling_strategy="sequential",
        disable_tqdm=True,
        dataloader_pin_memory=False,
    )
    return TrainingArguments(**{**kw, **overrides})


def _first(items: list[Any]) -> Any:
    return items[0]


def _sam_trainer(cfg, model, batches, args: TrainingArguments, **kw: Any) -> SAMTrainer:
    hparams = {k: v for k, v in run_mod.optim_kwargs(cfg).items() if k not in ("lr", "weight_decay")}
    return SAMTrainer(
        model,
        args,
        train_dataset=batches,
        data_collator=_first,
        optim=cfg.optim.name,
        optim_kwargs=hparams,
        **kw,
    )


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _tiny_bert(seed: int = 0, num_labels: int = 2) -> torch.nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=64,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_labels=num_labels,
    )
    return BertForSequenceClassification(config)


def _random_examples(n: int, length: int = 8, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 64, (n, length), generator=g)
    labels = torch.randint(0, 2, (n,), generator=g)
    mask = torch.ones(length, dtype=torch.long)
    return [{"input_ids": ids[i], "attention_mask": mask, "labels": labels[i]} for i in range(n)]


def _plain_args(output_dir: Path, **overrides: Any) -> TrainingArguments:
    kw: dict[str, Any] = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=4,
        max_steps=2,
        learning_rate=1e-3,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        train_sampling_strategy="sequential",
        disable_tqdm=True,
        dataloader_pin_memory=False,
    )
    return TrainingArguments(**{**kw, **overrides})


# ---------------------------------------------------------------------------------- equality
@pytest.mark.parametrize(
    ("optim", "k", "extra"),
    [
        ("adasam", 1, []),
        ("adasam", 2, []),
        ("sam", 1, ["optim.lr=0.05"]),
        # clipping of the descent gradient (with SGD it changes the update, with AMSGrad hardly)
        ("sam", 2, ["optim.lr=0.05", "trainer.max_grad_norm=0.1"]),
        ("esam", 2, []),  # selection over the whole update under accumulation (spec §2.11)
        ("adasam", 2, ["trainer.mixed_precision=fp16"]),  # both passes scaled, unscaled per pass (§2.2)
        ("adasam", 2, ["trainer.mixed_precision=bf16"]),
    ],
    ids=[
        "adasam",
        "adasam-accum2",
        "sam",
        "sam-accum2-clip",
        "esam-accum2",
        "adasam-accum2-fp16",
        "adasam-accum2-bf16",
    ],
)
def test_samtrainer_equals_harness_trainer(tiny_cfg, tmp_path, optim, k, extra):
    from safetensors.torch import load_file

    cfg = tiny_cfg(
        f"optim={optim}",
        "optim.lr=1e-3",
        *extra,
        "model.dropout=0.0",
        f"trainer.grad_accum={k}",
        "trainer.save_model=final",
        "trainer.eval_every=0",
        run_dir=tmp_path / "harness",
    )
    precision = {"fp16": {torch.float16}}.get(cfg.trainer.mixed_precision)  # the training forward's
    with training_linear_dtypes() as dtypes:
        record = run_mod.run(cfg)
    assert precision is None or dtypes == precision  # equal to SAMTrainer below, and in fp16 (§2.2)
    assert record["status"] == "completed" and record["optimizer_updates"] == 4
    harness = load_file(str(tmp_path / "harness" / "model" / "model.safetensors"))

    model, batches = _harness_start(cfg)
    start = _weights(model)
    trainer = _sam_trainer(cfg, model, batches, _args(cfg, tmp_path / "hf"))
    with training_linear_dtypes() as dtypes:
        trainer.train()
    assert precision is None or dtypes == precision

    ours = _weights(trainer.model)
    diff, moved = _max_diff(ours, harness), _max_diff(ours, start)
    print(f"{optim} k={k} {extra}: max |SAMTrainer - harness| = {diff:.3g} (weights moved {moved:.3g})")
    assert diff <= TOL and moved > 1000 * TOL
    assert isinstance(trainer.optimizer, SAMTrainerOptimizer)
    assert type(trainer.optimizer.optimizer) is OPTIMIZERS[optim].cls
    logged = [h for h in trainer.state.log_history if "loss" in h and "learning_rate" in h]
    assert [h["loss"] for h in logged] == pytest.approx([p["loss"] for p in record["train_curve"]], abs=1e-6)
    assert [h["learning_rate"] for h in logged] == pytest.approx([p["lr"] for p in record["train_curve"]])
    assert all(h["grad_norm"] > 0 for h in logged)
    if cfg.trainer.max_grad_norm:
        assert max(h["grad_norm"] for h in logged) > cfg.trainer.max_grad_norm  # clipping did act


# ---------------------------------------------------------------------------------- resume
@pytest.mark.parametrize("optim", ["adasam", "esam"])
def test_resumed_samtrainer_equals_uninterrupted(tiny_cfg, tmp_path, optim):
    cfg = tiny_cfg(f"optim={optim}", "optim.lr=1e-3", "model.dropout=0.0", "trainer.grad_accum=2")
    model, batches = _harness_start(cfg)
    start = _weights(model)
    out = tmp_path / "hf"
    full = _sam_trainer(cfg, model, batches, _args(cfg, out, save_strategy="steps", save_steps=2))
    full.train()  # 4 updates, checkpoints after 2 and 4
    uninterrupted = _weights(full.model)
    saved = torch.load(out / "checkpoint-2" / "optimizer.pt", weights_only=True)  # as HF loads it
    assert saved["base_state"] and "sam_global" in saved  # AMSGrad moments, the SAM generator

    fresh, _ = _harness_start(cfg)  # any weights: the checkpoint's replace them
    resumed = _sam_trainer(cfg, fresh, batches, _args(cfg, tmp_path / "hf2"))
    resumed.train(resume_from_checkpoint=str(out / "checkpoint-2"))
    diff = _max_diff(_weights(resumed.model), uninterrupted)
    print(
        f"{optim}: max |resumed - uninterrupted| = {diff:.3g} (moved {_max_diff(uninterrupted, start):.3g})"
    )
    assert resumed.state.global_step == 4 and diff <= TOL


def test_registry_optimizer_states_load_as_hf_loads_them(tmp_path):
    """HF reloads ``optimizer.pt`` with ``torch.load(weights_only=True)``: every optimizer's state_dict
    must load that way, and a reloaded optimizer continues exactly (RSAM/ESAM generators included)."""

    def update(model, opt, info, x, y):
        from adasam_glue.step import UpdateStep

        def losses(mb):
            return torch.nn.functional.cross_entropy(model(mb["x"]), mb["labels"], reduction="none")

        UpdateStep(opt, info, losses)([{"x": x, "labels": y}])

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)
    for name, info in OPTIMIZERS.items():
        for form in info.forms():
            torch.manual_seed(0)
            a = torch.nn.Linear(4, 3)
            b = torch.nn.Linear(4, 3)
            opt_a = build_optimizer(name, a.parameters(), lr=1e-2, **form)
            update(a, opt_a, info, x, y)
            torch.save(opt_a.state_dict(), tmp_path / "opt.pt")
            b.load_state_dict(a.state_dict())
            opt_b = build_optimizer(name, b.parameters(), lr=1e-2, **form)
            opt_b.load_state_dict(torch.load(tmp_path / "opt.pt", weights_only=True))
            update(a, opt_a, info, x, y)
            update(b, opt_b, info, x, y)
            for pa, pb in zip(a.parameters(), b.parameters()):
                assert torch.equal(pa, pb), (name, form)


# ---------------------------------------------------------------------------------- fp16, errors, instances
def test_fp16_skipped_update_does_not_step_the_schedule(tmp_path):
    """An fp16 overflow skips the whole update (spec §2.2): weights unchanged, HF's lr schedule waits."""
    model = _tiny_bert()
    start = _weights(model)
    args = _plain_args(tmp_path, fp16=True, max_steps=2, lr_scheduler_type="linear")
    trainer = SAMTrainer(model, args, train_dataset=_random_examples(8), optim="adasam")
    trainer.create_optimizer()  # fp16 on CPU: the scaler is SAMTrainer's, set on the accelerator
    trainer.accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**100)  # overflows at once
    trainer.train()
    assert trainer.optimizer.step_was_skipped and trainer.optimizer.last_update.passes == 1
    assert _max_diff(_weights(trainer.model), start) == 0.0
    lrs = [h["learning_rate"] for h in trainer.state.log_history if "learning_rate" in h]
    assert lrs == [1e-3, 1e-3]  # the schedule did not advance for the skipped updates
    assert trainer.accelerator.scaler.get_scale() == 2.0**98  # backed off once per update


def test_plain_hf_trainer_with_adasam_points_to_samtrainer(tmp_path):
    model = _tiny_bert()
    trainer = transformers.Trainer(
        model,
        _plain_args(tmp_path),
        train_dataset=_random_examples(8),
        optimizers=(AdaSAM(model.parameters()), None),
    )
    with pytest.raises(RuntimeError, match=r"two gradient evaluations.*SAMTrainer"):
        trainer.train()


def test_samtrainer_takes_an_optimizer_instance(tmp_path):
    model = _tiny_bert()
    start = _weights(model)
    opt = AdaSAM(model.parameters(), lr=1e-3, rho=0.05)
    trainer = SAMTrainer(
        model, _plain_args(tmp_path), train_dataset=_random_examples(8), optimizers=(opt, None)
    )
    trainer.train()
    assert trainer.optimizer.optimizer is opt and trainer.optimizer.info.name == "adasam"
    assert trainer.optimizer.last_update.passes == 2 and _max_diff(_weights(trainer.model), start) > 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"optim": "adamsam"}, "unknown optimizer 'adamsam'; valid names"),
        ({"optim": "adasam", "optim_kwargs": {"rhoo": 0.1}}, "unknown hyperparameter 'rhoo'"),
        ({"optim": "adasam", "optim_kwargs": {"rho": -1}}, "rho"),
        ({"optim": "adasam", "optim_kwargs": {"lr": 1e-3}}, "TrainingArguments.learning_rate"),
    ],
)
def test_samtrainer_refuses_bad_optimizer_settings_at_construction(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        SAMTrainer(_tiny_bert(), _plain_args(tmp_path), train_dataset=_random_examples(8), **kwargs)


def test_integrations_package_does_not_import_transformers():
    import subprocess
    import sys

    code = "import sys, adasam_glue.integrations; assert 'transformers' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


# ---------------------------------------------------------------------------------- one set of values
CASES = [(name, form) for name, info in OPTIMIZERS.items() for form in info.forms()]
IDS = [name + "".join(f"-{v}" for v in form.values()) for name, form in CASES]
_FROM_RUN = (
    "params",
    "lr",
    "initial_lr",
    "weight_decay",
)  # the run's (task / TrainingArguments), not the optimizer's


def _settings(opt: torch.optim.Optimizer) -> dict[str, Any]:
    """An optimizer's class, defaults and param-group values, its base's too, without the run's lr and
    weight decay (the CLI's come from the task, SAMTrainer's from TrainingArguments)."""
    out: dict[str, Any] = {
        "class": type(opt),
        "defaults": {k: v for k, v in opt.defaults.items() if k not in _FROM_RUN},
        "groups": sorted(
            {repr(sorted((k, v) for k, v in g.items() if k not in _FROM_RUN)) for g in opt.param_groups}
        ),
    }
    base = getattr(opt, "base_optimizer", None)
    if base is not None:
        out["base"] = _settings(base)
    return out


@pytest.mark.parametrize(("name", "form"), CASES, ids=IDS)
def test_samtrainer_and_cli_build_the_same_optimizer(tmp_path, name, form):
    """``SAMTrainer(optim=name)`` (no ``optim_kwargs`` on the default form) and ``python -m adasam_glue
    optim=name`` (the composed config through run.py's own build) build equal optimizers: the values come
    from ``conf/optim/<name>.yaml`` in both."""
    from hydra import compose, initialize_config_dir

    from adasam_glue.config import CONF_DIR

    info = OPTIMIZERS[name]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            config_name="config", overrides=[f"optim={name}", *(f"optim.{k}={v}" for k, v in form.items())]
        )
    plan = type("Plan", (), {"total_updates": run_mod.total_updates(cfg)})()
    cli, _ = run_mod.setup_optimizer_and_schedule(cfg, _tiny_bert(), plan)

    kwargs = {k: v for k, v in form.items() if info.defaults.get(k) != v}  # the default form: none
    trainer = SAMTrainer(
        _tiny_bert(),
        _plain_args(tmp_path),
        train_dataset=_random_examples(8),
        optim=name,
        optim_kwargs=kwargs,
    )
    ours = trainer.create_optimizer().optimizer
    assert _settings(ours) == _settings(cli), f"{name} {form}: SAMTrainer and the CLI differ"
    # and SAMTrainer says so: every value it built with, the CLI's config values
    composed = {k: v for k, v in OmegaConf.to_container(cfg.optim, resolve=True).items() if v is not None}
    assert {k: v for k, v in trainer.optim_values.items() if k not in ("lr", "weight_decay", "nesterov")} == {
        k: v for k, v in composed.items() if k not in ("name", "sync_ascent", "lr", "weight_decay")
    }


def test_samtrainer_says_what_it_built(tmp_path, caplog):
    """The optimizer and every value, in the log, in ``args.optim``/``optim_args`` (HF's own form, read
    back by ``parse_optim_args``), in ``training_args.bin``'s dict and in the model card."""
    import logging

    args = _plain_args(tmp_path, weight_decay=0.1)
    trainer = SAMTrainer(
        _tiny_bert(), args, train_dataset=_random_examples(8), optim="adasam", optim_kwargs={"rho": 0.005}
    )
    expected = "beta1=0.9,beta2=0.98,eps=1e-06,rho=0.005,form=library"
    assert args.optim == "adasam" and args.optim_args == expected  # before training: the loggers' hparams
    with caplog.at_level(logging.INFO, logger="adasam_glue.integrations.transformers"):
        trainer.train()
    said = [r.getMessage() for r in caplog.records if "SAMTrainer optimizer: adasam" in r.getMessage()]
    assert len(said) == 1
    for part in (
        "beta1=0.9",
        "beta2=0.98",
        "eps=1e-06",
        "rho=0.005",
        "form='library'",
        "lr 0.001",
        "weight decay 0.1",
    ):
        assert part in said[0], part
    assert trainer.optim_values == {
        "lr": 1e-3, "beta1": 0.9, "beta2": 0.98, "eps": 1e-6, "weight_decay": 0.1, "rho": 0.005, "form": "library"
    }  # fmt: skip
    assert parse_optim_args(args.optim_args, "adasam") == {
        k: v for k, v in trainer.optim_values.items() if k not in ("lr", "weight_decay")
    }
    assert args.to_dict()["optim"] == "adasam" and args.to_dict()["optim_args"] == expected
    trainer.create_model_card()
    card = (tmp_path / "README.md").read_text()
    assert f"optimizer: Use adasam and the args are:\n{expected}" in card


@pytest.mark.parametrize(("two_pass", "one_pass"), [("adasam", "amsgrad"), ("sam", "sgd")])
def test_total_flos_counts_both_passes(tmp_path, two_pass, one_pass):
    """Same steps, same batches: a two-pass optimizer's ``total_flos`` (trainer_state.json) is twice its
    base's, and the one-pass count is HF's own (a plain ``Trainer``), under accumulation too."""
    flos = {}
    for name in (two_pass, one_pass, None):
        args = _plain_args(tmp_path / str(name), gradient_accumulation_steps=2, max_steps=3)
        kind = transformers.Trainer if name is None else SAMTrainer
        extra = {} if name is None else {"optim": name}
        trainer = kind(_tiny_bert(), args, train_dataset=_random_examples(24), **extra)
        trainer.train()
        trainer.save_state()
        assert trainer.state.global_step == 3
        flos[name] = json.loads((tmp_path / str(name) / "trainer_state.json").read_text())["total_flos"]
    assert flos[None] > 0 and flos[one_pass] == flos[None]
    assert flos[two_pass] == 2 * flos[one_pass]


def test_optim_args_round_trip_and_errors():
    values = {"base": "sgd", "beta1": 0.9, "nesterov": True, "rho": 0.01, "theta": 0.5}
    assert parse_optim_args(format_optim_args(values), "vasso") == values
    assert parse_optim_args("rho=0.01, form=paper", "adasam") == {"rho": 0.01, "form": "paper"}
    assert parse_optim_args(None, "adasam") == {} and format_optim_args({"lr": 1.0, "rho": 0.1}) == "rho=0.1"
    for text, match in (
        ("rho", "expected key=value"),
        ("rho=x", r"rho='x': must be a float"),
        ("rho=1,rho=2", "gives 'rho' twice"),
        ("base=sgd,nesterov=maybe", "must be a bool"),
    ):
        with pytest.raises(ValueError, match=match):
            parse_optim_args(text, "vasso")


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        (
            ["--optim", "adamw_torch"],
            r"optim='adamw_torch' is not an optimizer of adasam_glue's registry; valid names: sgd",
        ),
        (
            ["--optim", "adasam", "--optim_args", "rhoo=0.1"],
            "unknown hyperparameter 'rhoo' for optimizer 'adasam'",
        ),
        (["--optim", "adasam", "--optim_args", "rho=-1"], "rho must be >= 0"),
        (["--optim", "sam", "--optim_args", "base=amsgrad"], "base must be one of 'sgd', 'adamw'"),
        (["--optim_args", "lr=1e-3"], "--learning_rate"),
    ],
)
def test_sam_training_arguments_refuse_bad_flags_when_parsed(tmp_path, flags, match):
    parser = transformers.HfArgumentParser(SAMTrainingArguments)
    with pytest.raises(ValueError, match=match):
        parser.parse_args_into_dataclasses(args=["--output_dir", str(tmp_path), "--use_cpu", *flags])


def test_samtrainer_reads_sam_training_arguments(tmp_path):
    """``optim``/``optim_kwargs`` and the arguments' ``optim``/``optim_args`` combine; disagreeing is an error."""

    def args(**kw):
        return SAMTrainingArguments(str(tmp_path), use_cpu=True, report_to="none", **kw)

    t = SAMTrainer(_tiny_bert(), args(optim="sam", optim_args="base=adamw"), optim_kwargs={"rho": 0.02})
    assert t.optim == "sam" and t.optim_kwargs == {"base": "adamw", "rho": 0.02}
    assert t.optim_values["beta2"] == 0.98 and t.args.optim_args.startswith("beta1=0.9,beta2=0.98,eps=1e-06")
    assert SAMTrainer(_tiny_bert(), args()).optim == "adasam"  # neither names one
    assert SAMTrainer(_tiny_bert(), args(), optim="usam").optim == "usam"
    with pytest.raises(
        ValueError, match=r"SAMTrainer\(optim='sam'\) and SAMTrainingArguments.optim='adasam'"
    ):
        SAMTrainer(_tiny_bert(), args(optim="adasam"), optim="sam")
    with pytest.raises(ValueError, match="give 'rho' different values"):
        SAMTrainer(_tiny_bert(), args(optim_args="rho=0.01"), optim_kwargs={"rho": 0.02})


# ---------------------------------------------------------------------------------- run_glue-style script
@dataclasses.dataclass
class _ModelArguments:  # run_glue.py's, cut to what the script below reads
    model_name_or_path: str = dataclasses.field(metadata={"help": "here: tiny (a random BERT)"})


@dataclasses.dataclass
class _DataTrainingArguments:
    task_name: str | None = dataclasses.field(default=None)
    max_train_samples: int | None = dataclasses.field(default=None)


def _run_glue(argv: list[str]) -> SAMTrainer:
    """transformers' ``examples/pytorch/text-classification/run_glue.py`` in outline, with the two lines
    the README says to change: ``SAMTrainingArguments`` in the parser, ``SAMTrainer`` for ``Trainer``.
    Downloads are replaced by a tiny BERT and random examples."""
    parser = transformers.HfArgumentParser((_ModelArguments, _DataTrainingArguments, SAMTrainingArguments))
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    transformers.set_seed(training_args.seed)
    model = _tiny_bert()
    train_dataset = _random_examples(data_args.max_train_samples or 16)
    eval_dataset = _random_examples(8, seed=1)
    trainer = SAMTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset if training_args.do_train else None,
        eval_dataset=eval_dataset if training_args.do_eval else None,
    )
    if training_args.do_train:
        metrics = trainer.train().metrics
        trainer.save_model()
        trainer.log_metrics("train", metrics)
        trainer.save_metrics("train", metrics)
        trainer.save_state()
    if training_args.do_eval:
        metrics = trainer.evaluate(eval_dataset=eval_dataset)
        trainer.save_metrics("eval", metrics)
    trainer.create_model_card(finetuned_from=model_args.model_name_or_path, tasks="text-classification")
    return trainer


def test_run_glue_style_script_with_optim_flags(tmp_path):
    out = tmp_path / "mrpc-adasam"
    argv = [
        "--model_name_or_path", "tiny", "--task_name", "mrpc", "--do_train", "--do_eval",
        "--output_dir", str(out), "--max_steps", "2", "--per_device_train_batch_size", "4",
        "--learning_rate", "1e-3", "--weight_decay", "0.1", "--max_grad_norm", "0",
        "--optim", "adasam", "--optim_args", "rho=0.01",
        "--use_cpu", "--report_to", "none", "--save_strategy", "no", "--disable_tqdm", "true",
        "--dataloader_pin_memory", "false",
    ]  # fmt: skip
    trainer = _run_glue(argv)
    opt = trainer.optimizer.optimizer
    assert (
        trainer.state.global_step == 2 and type(opt) is AdaSAM and trainer.optimizer.last_update.passes == 2
    )
    assert opt.param_groups[0]["rho"] == 0.01 and opt.base_optimizer.defaults["betas"] == (0.9, 0.98)
    assert opt.base_optimizer.defaults["eps"] == 1e-6 and opt.param_groups[0]["weight_decay"] == 0.1
    assert trainer.args.optim_args == "beta1=0.9,beta2=0.98,eps=1e-06,rho=0.01,form=library"
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["total_flos"] > 0 and (out / "eval_results.json").exists()
    assert "Use adasam and the args are:\nbeta1=0.9,beta2=0.98" in (out / "README.md").read_text()
    saved = torch.load(out / "training_args.bin", weights_only=False)
    assert type(saved) is SAMTrainingArguments and saved.optim == "adasam" and "rho=0.01" in saved.optim_args


# ---------------------------------------------------------------------------------- two processes
def _ddp_worker(rank: int, out: str) -> None:
    for sync_ascent in (False, True):
        args = _plain_args(
            Path(out) / f"hf{int(sync_ascent)}",
            per_device_train_batch_size=2,
            gradient_accumulation_steps=2,
            max_steps=3,
            max_grad_norm=1.0,
        )
        trainer = SAMTrainer(
            _tiny_bert(), args, train_dataset=_random_examples(24), optim="adasam", sync_ascent=sync_ascent
        )
        trainer.train()
        torch.save(_weights(trainer.model), Path(out) / f"w{int(sync_ascent)}_rank{rank}.pt")
        del trainer


@pytest.mark.slow
@pytest.mark.distributed
def test_two_process_samtrainer(tmp_path):
    """Two gloo processes under HF's DDP: per-device ascent leaves both ranks with the same weights;
    global SAM (``sync_ascent=True``) equals one process on the whole batch (spec §2.4)."""
    run_two_gloo_processes(_ddp_worker, str(tmp_path), timeout_s=120)
    w = {(s, r): torch.load(tmp_path / f"w{s}_rank{r}.pt") for s in (0, 1) for r in (0, 1)}
    start = _weights(_tiny_bert())
    for s in (0, 1):
        assert _max_diff(w[s, 0], w[s, 1]) == 0.0 and _max_diff(w[s, 0], start) > 1000 * TOL
    # one process, twice the micro-batch: the same examples per update as ranks 0 and 1 together
    one = SAMTrainer(
        _tiny_bert(),
        _plain_args(
            tmp_path / "one",
            per_device_train_batch_size=4,
            gradient_accumulation_steps=2,
            max_steps=3,
            max_grad_norm=1.0,
        ),
        train_dataset=_random_examples(24),
        optim="adasam",
        sync_ascent=True,
    )
    one.train()
    diff = _max_diff(_weights(one.model), w[1, 0])
    print(f"global SAM, 2 processes vs 1: max diff {diff:.3g}")
    assert diff <= 1e-5


# ---------------------------------------------------------------------------------- README
def _readme_example() -> str:
    section = README.read_text().split("## Use inside an existing transformers.Trainer script", 1)[1]
    section = section.split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1
    return blocks[0]


def test_readme_example_runs_as_written(tiny_cfg, tmp_path, monkeypatch):
    """The README block, executed verbatim; only what it downloads is replaced by offline stand-ins
    (the tiny model and its tokenizer, synthetic MRPC) and the run is cut to 3 updates on CPU."""
    import importlib

    import datasets

    from adasam_glue.data import load_glue
    from adasam_glue.modeling import build_model, build_tokenizer

    code = _readme_example()
    assert len(code.strip().splitlines()) < 15
    cfg = tiny_cfg("task=mrpc")
    glue = load_glue("mrpc", source="synthetic", synthetic_train_size=64, synthetic_eval_size=32)
    tokenizer = build_tokenizer(cfg.model, texts=[*glue["train"]["sentence1"], *glue["train"]["sentence2"]])
    model = build_model(cfg.model, get_task("mrpc"), tokenizer)
    real_args = transformers.TrainingArguments

    def offline_args(output_dir: str, **kw: Any) -> TrainingArguments:
        offline = dict(max_steps=3, use_cpu=True, report_to="none", save_strategy="no", disable_tqdm=True)
        kw.update(offline, dataloader_pin_memory=False)
        return real_args(str(tmp_path / output_dir), **kw)

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: tokenizer)
    monkeypatch.setattr(
        transformers.AutoModelForSequenceClassification, "from_pretrained", lambda *a, **k: model
    )
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: glue)
    # the module object itself: importing transformers.Trainer re-registers sys.modules["transformers"]
    monkeypatch.setattr(importlib.import_module("transformers"), "TrainingArguments", offline_args)
    start = _weights(model)
    namespace: dict[str, Any] = {}
    exec(compile(code, str(README), "exec"), namespace)
    trainer = namespace["trainer"]
    assert isinstance(trainer, SAMTrainer) and trainer.state.global_step == 3
    assert type(trainer.optimizer.optimizer) is AdaSAM and trainer.optimizer.last_update.passes == 2
    assert trainer.args.max_grad_norm == 0.0 and trainer.optimizer.param_groups[0]["weight_decay"] == 0.1
    assert _max_diff(_weights(trainer.model), start) > 0


def test_samtrainer_optimizer_line_follows_hf_log_level(tmp_path, capsys):
    """run_glue.py leaves the root logger at WARNING and sets only HF's loggers from --log_level: the
    optimizer line must follow HF's level (found running the real run_glue.py: it never appeared)."""
    import logging as pylogging

    import transformers

    package_log = pylogging.getLogger("adasam_glue")
    root = pylogging.getLogger()
    handler = pylogging.StreamHandler()
    old = (package_log.level, root.level, transformers.logging.get_verbosity())
    try:
        package_log.setLevel(pylogging.NOTSET)
        root.setLevel(pylogging.WARNING)
        root.addHandler(handler)
        transformers.logging.set_verbosity_info()
        args = _plain_args(tmp_path, max_steps=1)
        SAMTrainer(_tiny_bert(), args, train_dataset=_random_examples(4), optim="adasam").train()
        assert "SAMTrainer optimizer: adasam" in capsys.readouterr().err
    finally:
        root.removeHandler(handler)
        package_log.setLevel(old[0])
        root.setLevel(old[1])
        transformers.logging.set_verbosity(old[2])
