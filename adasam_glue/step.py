"""One optimizer update, for every optimizer of the registry: the only copy of the SAM step.

:class:`UpdateStep` runs one update over the update's micro-batches: the ascent and descent passes of a
two-pass optimizer (one pass otherwise), the data-parallel sync of each pass, the accumulation weights,
fp16 loss scaling with its skip on overflow, clipping and the optimizer step. What it needs from its
caller is passed in as callables (the forward, the backward, the sync context, clipping), so the
harness's :class:`adasam_glue.trainer.Trainer` and a ``transformers.Trainer`` subclass drive the same
code. The lr schedule and the counters stay with the caller (``StepResult`` says what happened).

Spec ``docs/algorithms.md``: §2.1 (the two-pass protocol), §2.2 (numerics, mixed precision), §2.3
(gradient accumulation), §2.4 (data parallelism), §2.10 (GSAM), §2.11 (ESAM), §3 (schedules count
updates).

fp16 (``scaler``, a ``torch.amp.GradScaler``; device-agnostic, so it also runs on CPU):

- both passes backpropagate the scaled loss; each pass's gradient is unscaled (and checked for inf/NaN)
  before it is used: the ascent gradient before the perturbation norm (``first_step``), the descent
  gradient before clipping and the base step;
- a non-finite gradient in either pass skips the whole update: after the ascent pass no perturbation
  is applied (RSAM's noise is undone), after the descent pass w is copied back from the weight copy
  and no base step is taken; the optimizer's state (moments, VaSSO's ``d``, LightSAM's accumulators,
  the RNG of RSAM/ESAM) is as before the update (``SAMBase.undoable``/``skip_update``);
- ``scaler.update()`` runs exactly once per update, skipped or not, so the scale backs off once per
  skipped update and grows after ``growth_interval`` applied ones, as in HF/Accelerate's loop;
- under data parallelism a pass whose gradient was not all-reduced (per-device ascent) has its
  overflow flag averaged over the processes, in place in the scaler's own record, so every process
  skips the same updates and keeps the same scale.

The caller must not scale the loss a second time: ``backward`` is a plain ``loss.backward()`` when a
scaler is given (not ``accelerator.backward``, which scales with Accelerate's own scaler on CUDA).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from adasam_glue.optim import OptimInfo, SAMBase

__all__ = ["StepResult", "UpdateStep", "all_reduce_mean_"]

MicroBatch = Mapping[str, Any]


@dataclass
class StepResult:
    """What one update did.

    Attributes:
        loss_sum: sum of the per-sample losses of the first pass over the update's local examples
            (detached, fp32): at w, or where the registry's ``loss_point`` says (RSAM: w + delta0).
        examples: the update's local examples.
        passes: forward/backward passes over the update's batch that ran (2 for a two-pass update, 1
            for a one-pass one, 1 when a two-pass update stopped after an overflow in its ascent pass).
        skipped: fp16 overflow: nothing was applied (weights and optimizer state as before).
    """

    loss_sum: Tensor
    examples: int
    passes: int
    skipped: bool = False


class _PassGrads:
    """The optimizer's gradients seen as one pass's, for ``GradScaler.unscale_`` (one record per pass).

    ``unscale_`` may run once per "optimizer" between two ``update()`` calls; a SAM update unscales two
    gradients (ascent, descent) before its one ``update()``, so each pass gets its own key.
    """

    def __init__(self, optimizer: Optimizer) -> None:
        self._opt = optimizer

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self._opt.param_groups


def all_reduce_mean_(tensors: list[Tensor], bucket_bytes: int = 25 << 20) -> None:
    """In-place mean of ``tensors`` over the default process group, in flat buckets of ~25 MiB.

    gloo has no ``ReduceOp.AVG``: a sum, then a division by the world size. Every process receives the
    same bytes, so the replicas stay bit-identical (GSAM's per-device directions, spec §2.10).
    """
    import torch.distributed as dist

    world = dist.get_world_size()
    by_kind: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
    for t in tensors:
        by_kind.setdefault((t.device, t.dtype), []).append(t)
    for ts in by_kind.values():
        bucket: list[Tensor] = []
        size = 0
        for t in [*ts, None]:
            if t is not None:
                bucket.append(t)
                size += t.numel() * t.element_size()
            if bucket and (t is None or size >= bucket_bytes):
                flat = torch.cat([b.reshape(-1) for b in bucket])
                dist.all_reduce(flat)
                flat.div_(world)
                parts = flat.split([b.numel() for b in bucket])
                torch._foreach_copy_(bucket, [c.view_as(b) for c, b in zip(parts, bucket)])
                bucket, size = [], 0


def _no_sync_needed(_: bool) -> contextlib.AbstractContextManager:
    return contextlib.nullcontext()


def _default_examples(mb: MicroBatch) -> int:
    return len(mb["labels"])


def _same_randomness(device: torch.device) -> contextlib.AbstractContextManager:
    """RNG states saved on entry and restored on exit (CPU + the losses' device): the forwards inside
    draw exactly the dropout masks that the forwards after it will draw again."""
    if device.type == "cpu":
        return torch.random.fork_rng(devices=[])
    index = device.index
    if index is None:
        index = torch.get_device_module(device.type).current_device()
    return torch.random.fork_rng(devices=[index], device_type=device.type)


class UpdateStep:
    """One optimizer update of any registry optimizer (module docstring; spec §2.1-2.4).

    Args:
        optimizer: the optimizer (a :class:`~adasam_glue.optim.SAMBase` when ``info.two_pass``).
        info: its registry record (``two_pass``, ``needs_per_sample_loss``).
        losses_fn: ``losses_fn(micro_batch) -> per-sample fp32 losses [B]`` with grad (the forward,
            autocast included: the caller owns the precision context).
        backward: ``backward(loss)``; a plain ``loss.backward()`` by default. The loss it receives is
            already scaled when ``scaler`` is given.
        sync: ``sync(all_reduce) -> context manager`` for each micro-batch's backward; ``False`` must
            suppress the data-parallel all-reduce (``accelerator.no_sync(model)`` / DDP ``no_sync``).
        sync_ascent: all-reduce the ascent gradient (global SAM) instead of keeping it per device.
        clip: clips the (unscaled) gradient before the optimizer step; ``None``: no clipping.
        scaler: an fp16 ``torch.amp.GradScaler`` (any device), or ``None`` (fp32/bf16).
        all_reduce_mean: in-place mean of a list of tensors over the processes (e.g.
            :func:`all_reduce_mean_`); ``None`` for a single process. Used for the fp16 overflow flag
            of a pass that was not all-reduced and for GSAM's per-device directions (§2.10).
        examples: ``examples(micro_batch) -> number of examples`` (default ``len(mb["labels"])``).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        info: OptimInfo,
        losses_fn: Callable[[MicroBatch], Tensor],
        *,
        backward: Callable[[Tensor], Any] = Tensor.backward,
        sync: Callable[[bool], contextlib.AbstractContextManager] = _no_sync_needed,
        sync_ascent: bool = False,
        clip: Callable[[], Any] | None = None,
        scaler: torch.amp.GradScaler | None = None,
        all_reduce_mean: Callable[[list[Tensor]], None] | None = None,
        examples: Callable[[MicroBatch], int] = _default_examples,
    ) -> None:
        self.optimizer, self.info, self.losses_fn = optimizer, info, losses_fn
        self.backward, self.sync, self.sync_ascent, self.clip = backward, sync, bool(sync_ascent), clip
        self.scaler = scaler if scaler is not None and scaler.is_enabled() else None
        self.all_reduce_mean, self.examples = all_reduce_mean, examples
        self._ascent_grads, self._descent_grads = _PassGrads(optimizer), _PassGrads(optimizer)
        #: GSAM under per-device ascent: descent pass without all-reduce, directions averaged (§2.10)
        self.local_descent = bool(
            info.two_pass
            and not self.sync_ascent
            and all_reduce_mean is not None
            and getattr(optimizer, "reduces_descent_grad", False)
        )
        if isinstance(optimizer, SAMBase):
            optimizer.grad_mean_hook = all_reduce_mean if self.local_descent else None
            optimizer.undoable = self.scaler is not None  # a skipped update must leave no trace

    # ------------------------------------------------------------------ one update
    def __call__(self, micro_batches: Sequence[MicroBatch]) -> StepResult:
        """One update over ``micro_batches`` (the update's local batch, in order)."""
        opt, last = self.optimizer, len(micro_batches) - 1
        n = sum(self.examples(mb) for mb in micro_batches)  # local examples: weights Σ ℓ_i / n (§2.3)
        loss_at_w: Tensor | float = 0.0

        if not self.info.two_pass:
            # One pass: gradient accumulated over the micro-batches, all-reduced on the last one.
            for i, mb in enumerate(micro_batches):
                with self.sync(i == last):
                    losses = self.losses_fn(mb)
                    self.backward(self._scaled(losses.sum() / n))
                loss_at_w = loss_at_w + losses.detach().sum()
            if self._overflow(self._descent_grads, all_reduced=True):
                opt.zero_grad(set_to_none=True)
                return self._skipped(loss_at_w, n, passes=1)
            self._clip()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return self._done(loss_at_w, n, passes=1)

        # 1. Ascent pass at w: the gradient of every micro-batch is accumulated before the perturbation;
        #    all-reduced (once, on the last micro-batch) only with sync_ascent (§2.4).
        opt.prepare_ascent()
        ascent: list[Tensor] = []
        for i, mb in enumerate(micro_batches):
            with self.sync(self.sync_ascent and i == last):
                losses = self.losses_fn(mb)
                self.backward(self._scaled(losses.sum() / n))
            ascent.append(losses.detach())
            loss_at_w = loss_at_w + ascent[-1].sum()
        if self._overflow(self._ascent_grads, all_reduced=self.sync_ascent):
            opt.skip_update()  # no perturbation applied; RSAM's noise undone
            return self._skipped(loss_at_w, n, passes=1)
        opt.first_step(zero_grad=True)  # e from the unscaled gradient; w <- w + e, a copy of w kept

        # 2. Descent pass at w + e on the same micro-batches, all-reduced once, on the last one (GSAM
        #    under per-device ascent: not at all, it averages its own direction, §2.10).
        shares = self._whole_batch_selection(micro_batches, ascent)  # ESAM under accumulation (§2.11)
        for i, mb in enumerate(micro_batches):
            with self.sync(not self.local_descent and i == last):
                losses = self.losses_fn(mb)
                if shares is None:
                    loss = opt.descent_loss(ascent[i], losses) * (len(losses) / n)
                else:
                    loss = (shares[i] * losses).sum()
                self.backward(self._scaled(loss))
        if self._overflow(self._descent_grads, all_reduced=not self.local_descent):
            opt.skip_update()  # w <- the copy, exactly; no base step
            return self._skipped(loss_at_w, n, passes=2)
        self._clip()  # the descent gradient, before GSAM's recombination (§2.1)
        opt.second_step(zero_grad=True)  # w <- the copy; base step with g(w + e)
        return self._done(loss_at_w, n, passes=2)

    # ------------------------------------------------------------------ pieces
    def _whole_batch_selection(
        self, micro_batches: Sequence[MicroBatch], ascent: list[Tensor]
    ) -> list[Tensor] | None:
        """Per-sample descent weights of each micro-batch, selected over the whole update (ESAM).

        With one micro-batch ``descent_loss`` selects by itself. With k > 1, a no-grad forward at w + e
        over every micro-batch gives the losses the selection needs before any descent backward; the
        RNG is rewound after it, so the backward forwards draw the same dropout masks (the selection
        ranks the very losses that are backpropagated). Cost: one forward without backward per
        micro-batch, only for ``needs_per_sample_loss`` optimizers under accumulation.
        """
        if not (self.info.needs_per_sample_loss and len(micro_batches) > 1):
            return None
        with _same_randomness(ascent[0].device), torch.no_grad():
            descent = [self.losses_fn(mb).detach() for mb in micro_batches]
        weights = self.optimizer.descent_weights(torch.cat(ascent), torch.cat(descent))
        return list(weights.split([len(a) for a in ascent]))

    def _scaled(self, loss: Tensor) -> Tensor:
        return self.scaler.scale(loss) if self.scaler is not None else loss

    def _overflow(self, grads: _PassGrads, all_reduced: bool) -> bool:
        """fp16: unscale this pass's gradient in place; True if it has an inf/NaN on any process."""
        if self.scaler is None:
            return False
        self.scaler.unscale_(grads)
        # GradScaler keeps one found-inf flag per device for each unscale_ key; update() reads them.
        found = list(self.scaler._found_inf_per_device(grads).values())
        if not found:
            return False
        if not all_reduced and self.all_reduce_mean is not None:
            self.all_reduce_mean(found)  # in place: every process backs off and skips alike
        return bool(sum(f.item() for f in found))  # one host sync per pass, as GradScaler.step

    def _clip(self) -> None:
        if self.clip is not None:
            self.clip()

    def _done(self, loss_at_w: Tensor | float, n: int, passes: int) -> StepResult:
        if self.scaler is not None:
            self.scaler.update()  # once per update
        return StepResult(torch.as_tensor(loss_at_w), n, passes, skipped=False)

    def _skipped(self, loss_at_w: Tensor | float, n: int, passes: int) -> StepResult:
        assert self.scaler is not None
        self.scaler.update()  # backs off (found inf recorded)
        return StepResult(torch.as_tensor(loss_at_w), n, passes, skipped=True)
