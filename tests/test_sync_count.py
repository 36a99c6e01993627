"""All-reduces per update, counted through stubs, in one process (spec ``docs/algorithms.md`` §2.4, §2.10).

The promise: per-device ascent by default, so one gradient all-reduce per update (the descent pass's,
on its last micro-batch), as for a one-pass optimizer; ``optim.sync_ascent=true`` (global SAM) two. The
two-process runs (tests/test_replicas.py, tests/test_distributed.py, slow) check the numbers; this fast
test checks the communication pattern, so that all-reducing the ascent pass by default (twice the
communication, and no longer the paper's m-sharpness SAM) fails ``make test``.

The stubs model DDP: a backward that runs outside ``no_sync`` all-reduces the gradient; GSAM's per-device
directions are averaged through ``all_reduce_mean`` (§2.10), one explicit all-reduce.
"""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import pytest
import torch

from adasam_glue.optim import OPTIMIZERS, build_optimizer
from adasam_glue.step import UpdateStep

MICRO = 2  #: micro-batches per update: the all-reduce must come on each pass's last one only


class FakeDDP:
    """Records, for each backward, whether DDP would all-reduce it (outside ``no_sync``), and each
    explicit ``all_reduce_mean`` (an identity here: one process stands for all)."""

    def __init__(self) -> None:
        self.backwards: list[bool] = []  #: per backward: all-reduced?
        self.explicit = 0
        self._in_no_sync = False

    @contextlib.contextmanager
    def no_sync(self, model: object = None):
        self._in_no_sync = True
        try:
            yield
        finally:
            self._in_no_sync = False

    def sync(self, all_reduce: bool) -> contextlib.AbstractContextManager:
        """``UpdateStep``'s ``sync`` seam, wired as the trainer wires it."""
        return contextlib.nullcontext() if all_reduce else self.no_sync()

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()
        self.backwards.append(not self._in_no_sync)

    def all_reduce_mean(self, tensors: list[torch.Tensor]) -> None:
        self.explicit += 1

    @property
    def all_reduces(self) -> int:
        return sum(self.backwards) + self.explicit


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))


def _micro_batches(seed: int = 1) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [
        {"x": torch.randn(4, 8, generator=g), "labels": torch.randint(0, 3, (4,), generator=g)}
        for _ in range(MICRO)
    ]


def expected_pattern(two_pass: bool, sync_ascent: bool, own_mean: bool) -> list[bool]:
    """Per backward, all-reduced or not: each pass's last micro-batch only, the ascent pass only with
    ``sync_ascent``; GSAM under per-device ascent averages its direction instead (``own_mean``)."""
    last = [False] * (MICRO - 1) + [True]
    if not two_pass:
        return last
    ascent = last if sync_ascent else [False] * MICRO
    return ascent + ([False] * MICRO if own_mean else last)


@pytest.mark.parametrize("sync_ascent", [False, True], ids=["per-device", "sync-ascent"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_all_reduces_per_update(name, sync_ascent):
    """Per device: 1 per update (two-pass or not); sync_ascent: 2 for a two-pass optimizer, 1 otherwise."""
    info, ddp, model = OPTIMIZERS[name], FakeDDP(), _model()
    opt = build_optimizer(name, model.parameters(), lr=1e-2)

    def losses_fn(mb):
        return torch.nn.functional.cross_entropy(model(mb["x"]), mb["labels"], reduction="none")

    step = UpdateStep(
        opt,
        info,
        losses_fn,
        backward=ddp.backward,
        sync=ddp.sync,
        sync_ascent=sync_ascent,
        all_reduce_mean=ddp.all_reduce_mean,  # as with two processes
    )
    for update in range(2):
        ddp.backwards, ddp.explicit = [], 0
        out = step(_micro_batches(seed=update))
        assert out.passes == (2 if info.two_pass else 1)
        assert ddp.all_reduces == (2 if info.two_pass and sync_ascent else 1), ddp.backwards
        own_mean = step.local_descent
        assert own_mean == (name == "gsam" and not sync_ascent)  # only GSAM averages its own direction
        assert ddp.backwards == expected_pattern(info.two_pass, sync_ascent, own_mean)


# ----------------------------------------------------------------------------- through the trainer
class _Logits(torch.nn.Module):
    """``model(**inputs).logits``, as a Hugging Face classifier answers."""

    def __init__(self) -> None:
        super().__init__()
        self.net = _model()

    def forward(self, x: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(logits=self.net(x))


def stub_trainer(overrides: list[str], ddp: FakeDDP, **accelerator: object):
    """The harness's :class:`~adasam_glue.trainer.Trainer`, its settings from the composed ``conf/``, on a
    stub accelerator whose ``backward``/``no_sync`` are ``ddp``'s (only what ``train_step`` touches)."""
    from adasam_glue.optim import get_optim_info
    from adasam_glue.trainer import Trainer, TrainerSettings
    from tests.conftest import compose_cfg

    cfg = compose_cfg("task=rte", *overrides)
    model = _Logits()
    acc = SimpleNamespace(
        device=torch.device("cpu"),
        num_processes=1,
        backward=ddp.backward,
        no_sync=ddp.no_sync,
        clip_grad_norm_=lambda params, max_norm: None,
        **accelerator,
    )
    name = cfg.optim.name
    opt = build_optimizer(name, model.parameters(), lr=1e-2)
    return Trainer(
        TrainerSettings.from_config(cfg),
        acc,
        model,
        opt,
        get_optim_info(name),
        scheduler=SimpleNamespace(step=lambda: None),
        train_loader=None,
        eval_loaders={},
        task=SimpleNamespace(num_labels=3),
        run_dir=".",
        batch_plan=None,
        micro_batch_size=4,
    )


@pytest.mark.parametrize(
    ("overrides", "all_reduces"),
    [(["optim=sgd"], 1), (["optim=adasam"], 1), (["optim=adasam", "optim.sync_ascent=true"], 2)],
    ids=["sgd", "adasam-default", "adasam-sync-ascent"],
)
def test_the_trainer_all_reduces_as_the_config_says(overrides, all_reduces):
    """The default config and the trainer's wiring (``optim.sync_ascent`` -> ``TrainerSettings`` ->
    ``UpdateStep``; ``sync(False)`` -> ``accelerator.no_sync``) keep the ascent pass per device."""
    ddp = FakeDDP()
    trainer = stub_trainer(overrides, ddp)
    trainer.train_step(_micro_batches())
    assert ddp.all_reduces == all_reduces, ddp.backwards
    assert ddp.backwards[-1]  # the descent (or only) pass's last micro-batch
