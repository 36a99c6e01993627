"""fp16 for every optimizer (spec ``docs/algorithms.md`` §2.2): autocast + ``torch.amp.GradScaler`` on CPU.

One update under fp16 equals the fp32 update within fp16 tolerance (an unscaled gradient makes SGD's
update 65,536x too large, and divides AMSGrad's eps by 65,536: both caught here); an inf injected in the
ascent or the descent pass skips the whole update (weights and optimizer state bit-identical, scale
halved); the scale is updated once per update; and the trainer drives it end to end.
"""

from __future__ import annotations

import pytest
import torch

from adasam_glue.optim import OPTIMIZERS, build_optimizer
from adasam_glue.step import UpdateStep

CASES = [(name, form) for name, info in OPTIMIZERS.items() for form in info.forms()]
IDS = [name + "".join(f"-{v}" for v in form.values()) for name, form in CASES]
TWO_PASS = [(n, f) for n, f in CASES if OPTIMIZERS[n].two_pass]
TWO_PASS_IDS = [i for i, (n, _) in zip(IDS, CASES) if OPTIMIZERS[n].two_pass]


def _other_bases_slow(cases, ids):
    """The skip/undo tests on the default base in the fast suite, on the other bases with ``slow``: what
    a skipped update undoes is the perturbation's (SAMBase), the base's state is never touched by it."""
    default = lambda n, f: OPTIMIZERS[n].base_of(f) == OPTIMIZERS[n].base
    return [
        pytest.param(n, f, id=i, marks=() if default(n, f) else pytest.mark.slow)
        for (n, f), i in zip(cases, ids)
    ]


SKIP_CASES, SKIP_TWO_PASS = _other_bases_slow(CASES, IDS), _other_bases_slow(TWO_PASS, TWO_PASS_IDS)
SCALE = 2.0**16  # GradScaler's initial scale


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(16, 32), torch.nn.LayerNorm(32), torch.nn.Tanh(), torch.nn.Linear(32, 3)
    )


def _batches(k: int = 2, b: int = 8, seed: int = 1) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [
        {"x": torch.randn(b, 16, generator=g), "labels": torch.randint(0, 3, (b,), generator=g)}
        for _ in range(k)
    ]


def _hp(name: str, form: dict) -> dict:
    # eps large next to the gradients (~1e-2): an eps divided by the scale would change the step
    hp = {"lr": 1e-2, **form}
    info = OPTIMIZERS[name]
    if "eps" in info.hparams_for(info.base_of(form)):
        hp["eps"] = 1e-2
    return hp


def _stepper(model, name, form, fp16: bool, scaler=None, backward=None):
    opt = build_optimizer(name, model.parameters(), **_hp(name, form))

    def losses_fn(mb):
        with torch.autocast("cpu", dtype=torch.float16, enabled=fp16):
            logits = model(mb["x"])
        return torch.nn.functional.cross_entropy(logits.float(), mb["labels"], reduction="none")

    if fp16 and scaler is None:
        scaler = torch.amp.GradScaler("cpu")
    kw = {"backward": backward} if backward is not None else {}
    return opt, scaler, UpdateStep(opt, OPTIMIZERS[name], losses_fn, scaler=scaler if fp16 else None, **kw)


def _flat(model) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def _assert_same(a, b, path="state"):
    """Deep, bitwise equality of nested state dicts (tensors, lists, dicts, scalars)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


def _snapshot(opt) -> dict:
    import copy

    return copy.deepcopy(opt.state_dict())


# ----------------------------------------------------------------------------- fp16 == fp32
@pytest.mark.parametrize(("name", "form"), CASES, ids=IDS)
def test_one_fp16_update_equals_the_fp32_update(name, form):
    """Δw under autocast fp16 + GradScaler == Δw in fp32, to fp16 precision (relative 1e-2)."""
    deltas = {}
    for fp16 in (False, True):
        model = _model()
        w0 = _flat(model)
        _, scaler, step = _stepper(model, name, form, fp16)
        out = step(_batches())
        assert not out.skipped
        deltas[fp16] = _flat(model) - w0
        if fp16:
            assert scaler.get_scale() == SCALE  # no overflow, no growth yet (interval 2000)
    ref, got = deltas[False], deltas[True]
    assert ref.abs().max() > 0
    rel = ((got - ref).norm() / ref.norm()).item()
    assert rel < 1e-2, f"{name}: |dw16 - dw32| / |dw32| = {rel:.3g}"


def test_unscaled_gradient_would_be_caught():
    """The harness's old failure: backward of the scaled loss, no unscale: SGD's gradient is 65,536x too
    big (the step ~5e4x with weight decay), far outside the 1e-2 of the test above."""
    model = _model()
    w0 = _flat(model)
    scaler = torch.amp.GradScaler("cpu")
    opt, _, step = _stepper(model, "sgd", {}, fp16=False)  # plain step ...
    step.backward = lambda loss: scaler.scale(loss).backward()  # ... on a scaled loss
    step(_batches())
    bad = _flat(model) - w0
    model = _model()
    _, _, good_step = _stepper(model, "sgd", {}, fp16=False)
    good_step(_batches())
    good = _flat(model) - w0
    ratio = (bad.norm() / good.norm()).item()
    assert ratio > 1e4


# ----------------------------------------------------------------------------- skipped updates
def _inject_inf_at(call: int):
    """A backward that puts an inf into one gradient after its ``call``-th invocation (0-based)."""
    calls = {"n": 0}

    def backward(loss):
        loss.backward()
        if calls["n"] == call:
            p = next(p for p in backward.params if p.grad is not None)
            p.grad.view(-1)[0] = float("inf")
        calls["n"] += 1

    return backward


@pytest.mark.parametrize("warm", [False, True], ids=["first-update", "after-one-update"])
@pytest.mark.parametrize(("name", "form"), SKIP_CASES)
@pytest.mark.parametrize("pass_", ["ascent", "descent"])
def test_inf_in_either_pass_skips_the_whole_update(name, form, pass_, warm):
    """Weights, optimizer state (moments, SAM state, RNG) bit-identical; scale halved; one update()."""
    two_pass = OPTIMIZERS[name].two_pass
    if pass_ == "descent" and not two_pass:
        pytest.skip("one pass only")
    k = 2  # micro-batches: the inf lands in the pass's last backward
    call = (k - 1) if pass_ == "ascent" else (2 * k - 1)
    model = _model()
    backward = _inject_inf_at(call + (2 * k if two_pass else k) * warm)
    backward.params = list(model.parameters())
    opt, scaler, step = _stepper(model, name, form, fp16=True, backward=backward)
    if warm:
        assert not step(_batches(k, seed=7)).skipped  # state exists (moments, VaSSO d, ...)
    scale = scaler.get_scale()
    w_before, state_before = _flat(model).clone(), _snapshot(opt)
    out = step(_batches(k))
    assert out.skipped and out.passes == (1 if pass_ == "ascent" else 2)
    assert torch.equal(_flat(model), w_before)
    _assert_same(state_before, opt.state_dict())
    assert scaler.get_scale() == scale / 2
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())
    # the optimizer goes on as if the skipped update had never been tried
    out = step(_batches(k, seed=9))
    assert not out.skipped and not torch.equal(_flat(model), w_before)


@pytest.mark.parametrize(("name", "form"), SKIP_TWO_PASS)
def test_skip_then_update_equals_the_update_alone(name, form):
    """A skipped update leaves no trace: skip + update == update (weights bitwise, RNG of RSAM/ESAM too)."""
    results = []
    for skip_first in (False, True):
        model = _model()
        backward = _inject_inf_at(3 if skip_first else -1)  # inf in the first update's descent pass
        backward.params = list(model.parameters())
        opt, scaler, step = _stepper(model, name, form, fp16=True, backward=backward)
        if skip_first:
            assert step(_batches()).skipped
            scaler.update(SCALE)  # same scale for the comparison
        assert not step(_batches(seed=5)).skipped
        results.append((_flat(model), opt.state_dict()))
    assert torch.equal(results[0][0], results[1][0])
    _assert_same(results[0][1], results[1][1])


@pytest.mark.parametrize("name", ["sgd", "adasam", "esam"])
def test_scale_is_updated_once_per_update(name):
    """growth_interval=1: the scale doubles exactly once per applied update (two unscales, one update)."""
    model = _model()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8, growth_interval=1)
    _, _, step = _stepper(model, name, {}, fp16=True, scaler=scaler)
    for i in range(3):
        step(_batches(seed=i))
    assert scaler.get_scale() == 2.0**11


# ----------------------------------------------------------------------------- through the trainer
def _weights(run_dir):
    from safetensors.torch import load_file

    return load_file(str(run_dir / "model" / "model.safetensors"))


@pytest.fixture
def cuda_like_accelerator(monkeypatch):
    """Accelerate as on CUDA: a GradScaler that ``accelerator.backward`` applies (on CPU it makes none).

    The trainer must use this one scaler and never scale twice (the old 65,536x too large SGD step).
    """
    import accelerate

    original = accelerate.Accelerator.__init__

    def init(self, *a, **kw):
        original(self, *a, **kw)
        if self.state.mixed_precision == "fp16":
            self.scaler = torch.amp.GradScaler("cpu")

    monkeypatch.setattr(accelerate.Accelerator, "__init__", init)


@pytest.mark.parametrize("optim", ["sgd", "adasam"])
def test_trainer_fp16_update_equals_fp32(tiny_cfg, tmp_path, optim, cuda_like_accelerator):
    """One update through ``run()`` (autocast, the scaler, unscale before the step) == the fp32 one, and
    its training forward ran in fp16 (every ``nn.Linear`` output half precision; spec §2.2)."""
    # eps large next to the gradients, so that AMSGrad's step is about linear in g (no sign(g) of
    # gradients at fp16 noise level) and an eps divided by the scale would show
    hp = ["optim.eps=0.01", "optim.lr=0.01"] if optim == "adasam" else ["optim.lr=0.5"]
    common = [
        *hp,
        f"optim={optim}",
        "trainer.max_updates=1",
        "trainer.schedule=constant",
        "task.warmup_updates=0",
        "trainer.save_model=final",
    ]
    from adasam_glue.run import run
    from tests.conftest import training_linear_dtypes

    with training_linear_dtypes() as fp32_dtypes:
        a = run(tiny_cfg(*common, run_dir=tmp_path / "fp32"))
    with training_linear_dtypes() as fp16_dtypes:
        b = run(tiny_cfg(*common, "trainer.mixed_precision=fp16", run_dir=tmp_path / "fp16"))
    # the forward ran in half precision (without the autocast fp16 == fp32 below holds trivially)
    assert fp16_dtypes == {torch.float16} and fp32_dtypes == {torch.float32}
    assert a["status"] == b["status"] == "completed"
    assert b["hardware"]["mixed_precision"] == "fp16"
    assert b["skipped_updates"] == 0  # a loss scaled twice overflows: the update would be skipped
    wa, wb = _weights(tmp_path / "fp32"), _weights(tmp_path / "fp16")
    for k in wa:
        # the update moves weights by up to ~1e-2; fp16 agrees to ~1e-3 of that
        torch.testing.assert_close(wb[k], wa[k], atol=2e-4, rtol=1e-3, msg=k)


def test_trainer_fp16_resume_keeps_the_scaler(tiny_cfg, tmp_path):
    """The GradScaler's state is in the resume checkpoint (``grad_scaler``); resumed == uninterrupted."""
    from adasam_glue.records import read_record
    from adasam_glue.run import run

    common = [
        "optim=adasam",
        "trainer.mixed_precision=fp16",
        "trainer.save_model=final",
        "trainer.max_updates=4",
    ]
    run(tiny_cfg(*common, run_dir=tmp_path / "straight"))
    pre = run(tiny_cfg(*common, "trainer.stop_after_updates=2", run_dir=tmp_path / "resumed"))
    assert pre["status"] == "preempted"
    rank0 = torch.load(tmp_path / "resumed" / "checkpoint" / "rank0.pt", weights_only=False)
    assert rank0["grad_scaler"]["scale"] == SCALE
    assert "skipped_updates" in (tmp_path / "resumed" / "checkpoint" / "trainer_state.json").read_text()
    done = run(tiny_cfg(*common, run_dir=tmp_path / "resumed"))
    assert done["status"] == "completed"
    straight = read_record(tmp_path / "straight" / "record.json")
    assert done["train_curve"] == straight["train_curve"]
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_no_scaler_means_the_plain_path():
    """Without a scaler (fp32/bf16) UpdateStep is the old trainer step: no unscale, no skip."""
    model = _model()
    _, _, step = _stepper(model, "adasam", {}, fp16=False)
    assert step.scaler is None
    out = step(_batches())
    assert not out.skipped and out.passes == 2 and out.examples == 16


def test_fp16_overflow_in_the_forward_is_a_skipped_update_not_a_divergence(tiny_cfg, tmp_path, monkeypatch):
    """An inf loss from an fp16 forward skips that update (weights kept); the run goes on and completes."""
    import adasam_glue.trainer as trainer_mod
    from adasam_glue.run import run

    original, calls = trainer_mod.Trainer._losses, {"n": 0}

    def overflow_once(self, batch):
        calls["n"] += 1
        losses = original(self, batch)
        return losses * float("inf") if calls["n"] == 3 else losses  # update 2's ascent pass

    monkeypatch.setattr(trainer_mod.Trainer, "_losses", overflow_once)
    rec = run(tiny_cfg("optim=adasam", "trainer.mixed_precision=fp16", run_dir=tmp_path / "r"))
    assert rec["status"] == "completed" and rec["skipped_updates"] == 1 and rec["optimizer_updates"] == 4


# ----------------------------------------------------------------------------- the fp16 skip rule
@pytest.mark.parametrize(
    ("overrides", "updates", "why"),
    [
        # the streak part: 1 applied update (weights blown up), then skipped in a row; stopped after 3 + 1
        (["trainer.fp16_max_skip_streak=3", "trainer.max_updates=8"], 5, "4 updates in a row skipped"),
        # 4 updates, 3 skipped (under the default streak of 20): the last train loss is NaN
        ([], 4, "train loss nan at the last update (4)"),
    ],
    ids=["streak", "final-loss"],
)
def test_an_fp16_run_that_skips_nearly_every_update_is_diverged(tiny_cfg, tmp_path, overrides, updates, why):
    """Issue 24 A: lr=100 under fp16 makes the weights NaN after one update; every later update overflows
    and is skipped, and the loss is NaN only on skipped updates. The run used to end ``completed`` (the
    old rule looked at applied updates only); the skip rule makes it ``diverged`` with its reason."""
    from adasam_glue.records import read_record
    from adasam_glue.run import run

    rec = run(tiny_cfg("trainer.mixed_precision=fp16", "task.lr=100", *overrides, run_dir=tmp_path / "r"))
    assert rec["status"] == "diverged", rec["status"]
    assert rec["optimizer_updates"] == updates and rec["skipped_updates"] == updates - 1
    assert why in rec["diverged_reason"]
    on_disk = read_record(tmp_path / "r" / "record.json")
    assert on_disk["status"] == "diverged" and on_disk["diverged_reason"] == rec["diverged_reason"]
    assert on_disk["attempts"][-1]["status"] == "diverged"


def test_the_skip_rule_total_part_and_its_defaults():
    """More than streak + fraction x updates skipped is divergence; the constants are the YAML's."""
    from omegaconf import OmegaConf

    from adasam_glue.config import CONF_DIR
    from adasam_glue.records import (
        FP16_MAX_SKIP_STREAK,
        FP16_MAX_SKIPPED_FRACTION,
        skip_rule_verdict,
        too_many_skips,
    )

    yaml = OmegaConf.load(CONF_DIR / "trainer" / "default.yaml")
    assert yaml.fp16_max_skip_streak == FP16_MAX_SKIP_STREAK == 20
    assert yaml.fp16_max_skipped_fraction == FP16_MAX_SKIPPED_FRACTION == 0.05
    # a healthy run: calibration at the start plus one per growth interval
    assert too_many_skips(16 + 5, 10_000, 20, 0.05) is None
    assert too_many_skips(70, 1000, 20, 0.05) is None  # 70 = 20 + 50: at the limit
    assert "71 of 1000 updates skipped" in too_many_skips(71, 1000, 20, 0.05)
    assert too_many_skips(999, 1000, 20, None) is None  # null: off
    curve = [{"update": 40, "loss": 0.5, "lr": 1e-5}]
    old = {"status": "completed", "skipped_updates": 39, "optimizer_updates": 40, "train_curve": curve}
    assert "39 of 40 updates skipped" in skip_rule_verdict(old)
    assert skip_rule_verdict({**old, "config": {"trainer": {"fp16_max_skipped_fraction": None}}}) is None
    assert skip_rule_verdict({**old, "skipped_updates": 2}) is None
    assert "train loss nan" in skip_rule_verdict(
        {**old, "skipped_updates": 2, "train_curve": [{"update": 40, "loss": "nan", "lr": 1e-5}]}
    )
    assert skip_rule_verdict({**old, "status": "diverged"}) is None  # only a completed record is re-judged
