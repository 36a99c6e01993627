"""Gradient accumulation equals one big batch, for every optimizer and form (spec ``docs/algorithms.md`` §2.3).

k micro-batches per update must give the update of one batch k times the size: the ascent gradient
is accumulated over all micro-batches before the perturbation, each loss is weighted by its share of
the update's examples, and ESAM selects its samples over the update's whole batch (§2.11), not per
micro-batch. Checked through ``run()`` on the tiny model and through :class:`adasam_glue.step.UpdateStep`
on a small MLP (down to micro-batches of one example, where per-micro-batch selection selects nothing).
"""

from __future__ import annotations

import pytest
import torch

from adasam_glue.optim import OPTIMIZERS, build_optimizer
from adasam_glue.step import UpdateStep

CASES = [(name, form) for name, info in OPTIMIZERS.items() for form in info.forms()]
IDS = [name + "".join(f"-{v}" for v in form.values()) for name, form in CASES]


# ----------------------------------------------------------------------------- through run()
def _weights(run_dir) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run_dir / "model" / "model.safetensors"))


#: run() is ~2 s a pair here: ESAM (the one whose selection needed the whole batch) in the fast suite,
#: the rest with ``slow``, each on its default base only (UpdateStep covers every form and base fast,
#: below; tests/test_trainer.py adasam/amsgrad)
_DEFAULT_BASE = [(name, form) for name, info in OPTIMIZERS.items() for form in info.forms(bases=False)]
RUN_CASES = [
    pytest.param(
        n, f, id=n + "".join(f"-{v}" for v in f.values()), marks=() if n == "esam" else pytest.mark.slow
    )
    for n, f in _DEFAULT_BASE
]


@pytest.mark.parametrize(("name", "form"), RUN_CASES)
def test_accumulation_equals_one_big_batch_every_optimizer(tiny_cfg, tmp_path, name, form):
    """3 updates of 4 micro-batches x 2 == 3 updates of 1 x 8 (fp32, dropout off), to a few ulp."""
    from adasam_glue.records import read_record
    from adasam_glue.run import run

    forms = [f"optim.{k}={v}" for k, v in form.items()]
    common = [
        f"optim={name}",
        *forms,
        "trainer.save_model=final",
        "trainer.max_updates=3",
        "task.batch_size=8",
    ]
    run(tiny_cfg(*common, "trainer.grad_accum=1", run_dir=tmp_path / "one"))
    run(tiny_cfg(*common, "trainer.grad_accum=4", run_dir=tmp_path / "four"))
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "four")
    assert a.keys() == b.keys()
    for k in a:
        # measured: <= 1.2e-7 (one ulp of a weight near 1) for every optimizer; per-micro-batch ESAM: 3e-5
        torch.testing.assert_close(b[k], a[k], atol=3e-7, rtol=0, msg=k)
    ra, rb = read_record(tmp_path / "one" / "record.json"), read_record(tmp_path / "four" / "record.json")
    assert ra["forward_backward_passes"] == rb["forward_backward_passes"]
    assert rb["micro_batch_passes"] == 4 * ra["micro_batch_passes"]


# ----------------------------------------------------------------------------- UpdateStep
def _model(dropout: float = 0.0, dtype: torch.dtype = torch.float64) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(16, 32),
        torch.nn.LayerNorm(32),
        torch.nn.Tanh(),
        torch.nn.Dropout(dropout),
        torch.nn.Linear(32, 3),
    ).to(dtype)


def _data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 16, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


def _split(x, y, k):
    return [{"x": a, "labels": b} for a, b in zip(x.chunk(k), y.chunk(k))]


def _run_updates(name, form, k, batch=8, updates=3, dropout=0.0, calls=None):
    model = _model(dropout)
    w0 = torch.cat([p.detach().reshape(-1).clone() for p in model.parameters()])
    opt = build_optimizer(name, model.parameters(), lr=1e-2, **form)

    def losses_fn(mb):
        losses = torch.nn.functional.cross_entropy(model(mb["x"]), mb["labels"], reduction="none")
        if calls is not None:
            calls.append((torch.is_grad_enabled(), losses.detach().clone()))
        return losses

    step = UpdateStep(opt, OPTIMIZERS[name], losses_fn)
    for u in range(updates):
        step(_split(*_data(batch, seed=u), k))
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]) - w0


#: UpdateStep's accumulation is the perturbation's and the driver's: every form on its default base in the
#: fast suite, the other bases with ``slow``
STEP_CASES = [
    pytest.param(n, f, id=i, marks=() if OPTIMIZERS[n].base_of(f) == OPTIMIZERS[n].base else pytest.mark.slow)
    for (n, f), i in zip(CASES, IDS)
]


@pytest.mark.parametrize("k", [4, 8], ids=["4x2", "8x1"])
@pytest.mark.parametrize(("name", "form"), STEP_CASES)
def test_update_step_accumulation_equals_one_batch(name, form, k):
    """UpdateStep in fp64: k micro-batches == one batch of 8 to rounding (measured <= 1e-14 relative;
    ESAM selecting per micro-batch: 0.43 for 4x8 vs 1x32, 0.72 for 32x1)."""
    ref, got = _run_updates(name, form, 1), _run_updates(name, form, k)
    rel = ((got - ref).norm() / ref.norm()).item()
    assert rel < 1e-10, f"{name} {form} {k} micro-batches: |dw_k - dw_1| / |dw_1| = {rel:.3g}"


def test_esam_selection_forward_replays_the_dropout_masks():
    """ESAM under accumulation: the no-grad forward that ranks the samples draws the very dropout masks
    of the forwards that are backpropagated, and leaves the global RNG where SAM's update leaves it."""
    calls: list = []
    torch.manual_seed(123)
    _run_updates("esam", {}, k=2, updates=1, dropout=0.5, calls=calls)
    after_esam = torch.get_rng_state()
    grad = [loss for enabled, loss in calls if enabled]
    nograd = [loss for enabled, loss in calls if not enabled]
    assert len(grad) == 4 and len(nograd) == 2  # 2 ascent, 2 selection (no grad), 2 descent
    for sel, desc in zip(nograd, grad[2:]):
        assert torch.equal(sel, desc)
    torch.manual_seed(123)
    _run_updates("sam", {}, k=2, updates=1, dropout=0.5)
    assert torch.equal(after_esam, torch.get_rng_state())
