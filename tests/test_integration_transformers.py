"""SAMTrainer (adasam_glue.integrations.transformers): a transformers.Trainer running the harness's update.

- N updates of ``SAMTrainer`` equal N updates of the harness (``adasam_glue.run.run``) on the same
  micro-batches (fp32, no dropout, same init), with and without gradient accumulation (spec §2.1, §2.3);
- a run resumed from an HF checkpoint equals an uninterrupted one (optimizer state, ESAM's generator);
- fp16: a skipped update does not advance HF's schedule; two gloo processes end with the same weights,
  and global SAM on two processes equals one process on the whole batch (spec §2.4);
- the README example runs as written (tiny model, synthetic MRPC, offline).
"""

from __future__ import annotations

import datetime
import gc
import itertools
import os
import re
import socket
from pathlib import Path
from typing import Any

import pytest
import torch

from adasam_glue import run as run_mod
from adasam_glue.optim import OPTIMIZERS, AdaSAM, build_optimizer
from adasam_glue.tasks import get_task

transformers = pytest.importorskip("transformers")
from transformers import TrainingArguments  # noqa: E402

from adasam_glue.integrations.transformers import SAMTrainer, SAMTrainerOptimizer  # noqa: E402

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
    record = run_mod.run(cfg)
    assert record["status"] == "completed" and record["optimizer_updates"] == 4
    harness = load_file(str(tmp_path / "harness" / "model" / "model.safetensors"))

    model, batches = _harness_start(cfg)
    start = _weights(model)
    trainer = _sam_trainer(cfg, model, batches, _args(cfg, tmp_path / "hf"))
    trainer.train()

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


# ---------------------------------------------------------------------------------- two processes
def _ddp_worker(rank: int, port: int, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2"
    )
    torch.set_num_threads(1)
    import torch.distributed as dist

    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=datetime.timedelta(seconds=120))
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
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.distributed
def test_two_process_samtrainer(tmp_path):
    """Two gloo processes under HF's DDP: per-device ascent leaves both ranks with the same weights;
    global SAM (``sync_ascent=True``) equals one process on the whole batch (spec §2.4)."""
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
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
