"""The training loop: SAM double pass, accumulation, resume, records (tiny model, CPU, seconds)."""

from __future__ import annotations

import json

import pytest
import torch

from adasam_glue import records
from adasam_glue.records import read_record
from adasam_glue.run import run


def _weights(run_dir) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run_dir / "model" / "model.safetensors"))


def _assert_same_weights(a, b, atol=0.0):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=0 if atol == 0 else 1e-5, msg=k)


@pytest.mark.parametrize("optim, passes_per_update", [("amsgrad", 1), ("adasam", 2), ("sgd", 1), ("sam", 2)])
def test_run_writes_a_complete_record(tiny_cfg, tmp_path, optim, passes_per_update):
    rec = run(tiny_cfg(f"optim={optim}", "trainer.eval_every=2", run_dir=tmp_path / "r"))
    on_disk = read_record(tmp_path / "r" / "record.json")
    assert on_disk["status"] == rec["status"] == "completed"
    assert on_disk["optimizer_updates"] == 4
    assert on_disk["forward_backward_passes"] == passes_per_update * 4
    assert [e["update"] for e in on_disk["eval_curve"]] == [2, 4]
    assert [p["update"] for p in on_disk["train_curve"]] == [1, 2, 3, 4]
    assert on_disk["best"]["metrics"].keys() == {"accuracy", "f1"}
    assert on_disk["final"]["update"] == 4
    assert on_disk["config"]["optim"]["name"] == optim
    for key in (
        "git_commit",
        "versions",
        "hardware",
        "wall_time_s",
        "samples_seen",
        "schema_version",
        "seed",
    ):
        assert key in on_disk
    assert on_disk["samples_seen"] == 4 * 8
    assert on_disk["train_loss_at"] == "w"
    assert not (tmp_path / "r" / "checkpoint").exists()  # removed after a completed run


@pytest.mark.parametrize("constant", [False, True])
def test_each_eval_records_whether_every_dev_prediction_was_the_same(
    tiny_cfg, tmp_path, monkeypatch, constant
):
    """``constant_prediction`` in each eval entry (and so in ``best``/``final``) is what the dev outputs
    show: it lets the report judge a majority-class predictor where accuracy cannot (docs/algorithms.md
    §4.4 item 5). Evaluation logits are forced to one class (``constant``) or to alternate classes."""
    import numpy as np

    import adasam_glue.trainer as trainer_mod

    seen = []
    real = trainer_mod.compute_metrics
    monkeypatch.setattr(
        trainer_mod,
        "compute_metrics",
        lambda task, pred, ref, **k: seen.append(pred) or real(task, pred, ref, **k),
    )

    def force(module, args, output):
        if not module.training and hasattr(output, "logits") and output.logits.dim() == 2:
            logits = torch.zeros_like(output.logits)
            rows = torch.arange(len(logits))
            logits[rows, 1 if constant else rows % 2] = 1.0
            output.logits = logits
        return output

    handle = torch.nn.modules.module.register_module_forward_hook(force)
    try:
        run(tiny_cfg("trainer.eval_every=2", run_dir=tmp_path / "r"))
    finally:
        handle.remove()
    rec = read_record(tmp_path / "r" / "record.json")
    flags = [e["constant_prediction"] for e in rec["eval_curve"]]
    assert flags == [constant, constant]
    assert flags == [len(np.unique(p.argmax(-1))) == 1 for p in seen]
    assert rec["best"]["constant_prediction"] is constant and rec["final"]["constant_prediction"] is constant


def test_rsam_record_says_its_train_loss_is_at_the_noisy_point(tiny_cfg, tmp_path):
    """RSAM's first pass runs at w + delta0: its record must not call that loss the loss at w."""
    rec = run(tiny_cfg("optim=rsam", run_dir=tmp_path / "r"))
    assert rec["status"] == "completed"
    assert read_record(tmp_path / "r" / "record.json")["train_loss_at"] == "w + delta0"


def test_lr_schedule_counts_updates_not_passes(tiny_cfg, tmp_path):
    rec = run(
        tiny_cfg("optim=adasam", "trainer.max_updates=4", "task.warmup_updates=1148", run_dir=tmp_path / "r")
    )
    # mrpc: 2296 updates, 137 warmup -> capped at 4 updates, warmup scales to round(137*4/2296)=0... here 1148/2296*4=2
    lrs = [p["lr"] for p in rec["train_curve"]]
    peak = rec["config"]["optim"]["lr"]
    assert lrs == pytest.approx([peak * 0.5, peak * 1.0, peak * 1.0, peak * 0.5])


def test_completed_run_is_skipped_and_never_overwritten(tiny_cfg, tmp_path):
    cfg = tiny_cfg("optim=amsgrad", run_dir=tmp_path / "r")
    run(cfg)
    before = (tmp_path / "r" / "record.json").read_bytes()
    again = run(cfg)
    assert again["skipped"] is True
    assert (tmp_path / "r" / "record.json").read_bytes() == before


def test_one_sam_update_through_the_trainer_equals_the_equations(tiny_cfg, tmp_path):
    """One SAM update (SGD base, no momentum/decay): w1 = w0 - lr * grad L(w0 + rho g/|g|)."""
    from adasam_glue.modeling import per_sample_loss

    cfg = tiny_cfg(
        "optim=sam",
        "optim.beta1=0",
        "optim.weight_decay=0",
        "optim.lr=0.5",
        "optim.rho=0.05",
        "trainer.max_updates=1",
        "trainer.schedule=constant",
        "task.warmup_updates=0",
        "trainer.save_model=final",
        "trainer.keep_checkpoint=true",
        run_dir=tmp_path / "r",
    )
    captured = {}
    import adasam_glue.trainer as trainer_mod

    original = trainer_mod.Trainer.train_step

    def spy(self, micro_batches):
        captured["batches"] = [{k: v.clone() for k, v in mb.items()} for mb in micro_batches]
        captured["w0"] = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        captured["model"] = self.model
        return original(self, micro_batches)

    trainer_mod.Trainer.train_step = spy
    try:
        run(cfg)
    finally:
        trainer_mod.Trainer.train_step = original
    model = captured["model"]
    model.load_state_dict(captured["w0"])
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]

    def grads():
        model.zero_grad()
        b = captured["batches"][0]
        inputs = {k: v for k, v in b.items() if k not in ("labels", "idx")}
        per_sample_loss(model(**inputs).logits, b["labels"], 2).mean().backward()
        return [p.grad.detach().clone() for p in params]

    g = grads()
    norm = torch.sqrt(sum((x.double() ** 2).sum() for x in g)).float()
    with torch.no_grad():
        for p, x in zip(params, g):
            p.add_(0.05 * x / norm)
    g_adv = grads()
    with torch.no_grad():
        for p, x in zip(params, g):
            p.sub_(0.05 * x / norm)
        expected = {
            n: (p - 0.5 * ga)
            for (n, p), ga in zip([(n, p) for n, p in model.named_parameters() if p.requires_grad], g_adv)
        }
    got = _weights(tmp_path / "r")
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, atol=1e-6, rtol=1e-5, msg=name)


@pytest.mark.parametrize("optim", ["amsgrad", "adasam"])
def test_accumulation_equals_one_big_batch(tiny_cfg, tmp_path, optim):
    common = [f"optim={optim}", "trainer.save_model=final", "trainer.max_updates=3", "task.batch_size=8"]
    run(tiny_cfg(*common, "trainer.grad_accum=1", run_dir=tmp_path / "one"))
    run(tiny_cfg(*common, "trainer.grad_accum=4", run_dir=tmp_path / "four"))
    _assert_same_weights(_weights(tmp_path / "one"), _weights(tmp_path / "four"), atol=2e-6)
    a = read_record(tmp_path / "one" / "record.json")
    b = read_record(tmp_path / "four" / "record.json")
    assert a["forward_backward_passes"] == b["forward_backward_passes"]
    assert b["micro_batch_passes"] == 4 * a["micro_batch_passes"]


@pytest.mark.parametrize("optim", ["adasam", "amsgrad"])
def test_kill_and_resume_equals_uninterrupted(tiny_cfg, tmp_path, optim, monkeypatch):
    common = [
        f"optim={optim}",
        "trainer.save_model=final",
        "trainer.max_updates=6",
        "trainer.eval_every=2",
        "model.dropout=0.1",
    ]  # dropout on: the RNG state must be restored too
    run(tiny_cfg(*common, run_dir=tmp_path / "straight"))
    preempted = run(tiny_cfg(*common, "trainer.stop_after_updates=3", run_dir=tmp_path / "resumed"))
    assert preempted["status"] == "preempted" and preempted["optimizer_updates"] == 3
    assert (tmp_path / "resumed" / "checkpoint" / "trainer_state.json").exists()
    written = []  # every write of the resumed attempt says so, the evals' too (not the first attempt's value)
    real_write = records.write_record
    monkeypatch.setattr(records, "write_record", lambda p, r: written.append(dict(r)) or real_write(p, r))
    resumed = run(tiny_cfg(*common, run_dir=tmp_path / "resumed"))
    assert resumed["status"] == "completed" and resumed["resumed"] is True
    assert len(written) >= 2 and all(r["resumed"] is True for r in written)
    assert [a.get("resumed") for a in resumed["attempts"]] == [False, True]
    straight = read_record(tmp_path / "straight" / "record.json")
    assert resumed["train_curve"] == straight["train_curve"]
    assert json.dumps(resumed["eval_curve"]) == json.dumps(straight["eval_curve"])
    _assert_same_weights(_weights(tmp_path / "straight"), _weights(tmp_path / "resumed"))


def test_diverged_run_is_kept_as_data(tiny_cfg, tmp_path):
    rec = run(
        tiny_cfg(
            "optim=sgd",
            "optim.lr=1e12",
            "trainer.max_updates=8",
            "task.warmup_updates=0",
            run_dir=tmp_path / "r",
        )
    )
    assert rec["status"] == "diverged"
    assert read_record(tmp_path / "r" / "record.json")["status"] == "diverged"
    assert rec["optimizer_updates"] < 8


def test_failed_run_writes_a_failed_record(tiny_cfg, tmp_path, monkeypatch):
    import adasam_glue.trainer as trainer_mod

    def boom(self, micro_batches):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(trainer_mod.Trainer, "train_step", boom)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(tiny_cfg("optim=amsgrad", run_dir=tmp_path / "r"))
    rec = read_record(tmp_path / "r" / "record.json")
    assert rec["status"] == "failed" and "simulated crash" in rec["error"]


def test_increasing_batch_schedule(tiny_cfg, tmp_path):
    rec = run(
        tiny_cfg(
            "optim=amsgrad",
            "trainer.max_updates=4",
            "task.batch_size=8",
            "trainer.batch_schedule=[8,16]",
            run_dir=tmp_path / "r",
        )
    )
    # 4 updates x 8 samples = 32 samples, half at batch 8 (2 updates) and half at batch 16 (1 update)
    assert rec["optimizer_updates"] == 3 and rec["samples_seen"] == 32


def test_init_from_a_run_dir_gets_a_fresh_head(tiny_cfg, tmp_path):
    run(
        tiny_cfg(
            "task=mnli",
            "task.batch_size=8",
            "optim=amsgrad",
            "trainer.save_model=final",
            run_dir=tmp_path / "mnli",
        )
    )
    rec = run(
        tiny_cfg(
            "task=rte",
            "optim=adasam",
            f"task.init_from={tmp_path / 'mnli'}",
            "trainer.save_model=final",
            run_dir=tmp_path / "rte",
        )
    )
    assert rec["status"] == "completed"
    w = _weights(tmp_path / "rte")
    assert w["classifier.weight"].shape[0] == 2


@pytest.mark.parametrize("signame", ["SIGUSR1", "SIGTERM"])
def test_preemption_signal_checkpoints_and_exits_cleanly(tiny_cfg, tmp_path, monkeypatch, signame):
    """SLURM preemption: the signal ends the current update, writes a checkpoint and a preempted record."""
    import os
    import signal

    import adasam_glue.trainer as trainer_mod

    original = trainer_mod.Trainer.train_step

    def send_at_update_2(self, micro_batches):
        out = original(self, micro_batches)
        if self.state.updates == 2:
            os.kill(os.getpid(), getattr(signal, signame))
        return out

    monkeypatch.setattr(trainer_mod.Trainer, "train_step", send_at_update_2)
    rec = run(tiny_cfg("optim=adasam", "trainer.max_updates=5", run_dir=tmp_path / "r"))
    assert rec["status"] == "preempted" and rec["optimizer_updates"] == 2
    assert read_record(tmp_path / "r" / "record.json")["status"] == "preempted"
    assert signal.getsignal(getattr(signal, signame)) is not None  # the previous handler is back
    monkeypatch.setattr(trainer_mod.Trainer, "train_step", original)
    resumed = run(tiny_cfg("optim=adasam", "trainer.max_updates=5", run_dir=tmp_path / "r"))
    assert resumed["status"] == "completed" and resumed["optimizer_updates"] == 5 and resumed["resumed"]


def test_bf16_autocast_run(tiny_cfg, tmp_path):
    rec = run(tiny_cfg("optim=adasam", "trainer.mixed_precision=bf16", run_dir=tmp_path / "r"))
    assert rec["status"] == "completed"
    assert all(p["loss"] == p["loss"] for p in rec["train_curve"])  # finite, not NaN
    assert rec["hardware"]["mixed_precision"] == "bf16"


#: a final sharpness measurement that takes a moment on the tiny model
_SHARP = [
    "sharpness.enabled=true",
    "sharpness.num_samples=16",
    "sharpness.batch_size=16",
    "sharpness.measures=[eigenvalue]",
    "sharpness.power_iters=3",
]


def _signal_inside(monkeypatch, owner, name, calls):
    """Replace ``owner.name`` by a version that sends SIGUSR2 to this process first (as SLURM does while
    the step runs) and records the call; the replaced function runs after the handler returns."""
    import os
    import signal

    original = getattr(owner, name)

    def wrapped(*args, **kwargs):
        calls.append(name)
        if name != "_measure_sharpness" or kwargs.get("final", args[-1] if len(args) > 1 else None):
            os.kill(os.getpid(), signal.SIGUSR2)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapped)


@pytest.mark.parametrize(
    "step, patched",
    [
        ("evaluate", "evaluate_and_track"),
        ("sharpness", "_measure_sharpness"),
        ("save_model", "save_model"),
        ("predict", "predict_test"),
    ],
)
def test_signal_in_the_final_phase_checkpoints_and_the_requeue_finishes_it(
    tiny_cfg, tmp_path, monkeypatch, step, patched
):
    """Issue 24 D: SIGUSR2 during the final evaluation, the final sharpness, the final model save or the
    test predictions used to be swallowed (the run went on; killed there, its record said running and
    the requeue started at update 0). Now the step stops, a checkpoint at the last update is written,
    the record says preempted and which steps are left; the requeue trains no update, does only those
    steps, and ends with the numbers of an uninterrupted run."""
    import adasam_glue.predict as predict_mod
    import adasam_glue.trainer as trainer_mod

    common = [
        "optim=adasam",
        "task=rte",
        "trainer.max_updates=4",
        "trainer.eval_every=0",
        "trainer.save_model=final",
        "trainer.predict_test=true",
        *_SHARP,
    ]
    straight = run(tiny_cfg(*common, run_dir=tmp_path / "straight"))
    d, calls = tmp_path / "r", []
    _signal_inside(
        monkeypatch, predict_mod if patched == "predict_test" else trainer_mod.Trainer, patched, calls
    )
    first = run(tiny_cfg(*common, run_dir=d))
    assert calls, "the seam never ran"
    assert first["status"] == "preempted" and first["optimizer_updates"] == 4
    assert first["final_phase_pending"][0] == step
    on_disk = read_record(d / "record.json")
    assert on_disk["status"] == "preempted" and on_disk["final_phase_pending"] == first["final_phase_pending"]
    assert json.loads((d / "checkpoint" / "meta.json").read_text())["updates"] == 4

    monkeypatch.undo()
    trained = []
    original_step = trainer_mod.Trainer.train_step
    monkeypatch.setattr(
        trainer_mod.Trainer, "train_step", lambda self, mb: trained.append(1) or original_step(self, mb)
    )
    resumed = run(tiny_cfg(*common, run_dir=d))
    assert resumed["status"] == "completed" and resumed["resumed"] is True and not trained
    assert "final_phase_pending" not in resumed and not (d / "checkpoint").exists()
    assert [a["status"] for a in resumed["attempts"]] == ["preempted", "completed"]
    assert json.dumps(resumed["eval_curve"]) == json.dumps(straight["eval_curve"])  # one final eval
    for key in ("eigenvalue", "loss"):  # measured at the same final weights
        assert resumed["sharpness"]["values"][key] == pytest.approx(
            straight["sharpness"]["values"][key], rel=1e-6
        )
    assert resumed["predictions"]["files"] == straight["predictions"]["files"]
    assert (d / "predictions" / "RTE.tsv").read_text() == (
        tmp_path / "straight" / "predictions" / "RTE.tsv"
    ).read_text()
    _assert_same_weights(_weights(tmp_path / "straight"), _weights(d))
