"""``SAMBase``: the one two-pass protocol of the SAM family (spec §2, "Numerics").

One update evaluates the gradient twice on the same mini-batch. The trainer drives it::

    opt.prepare_ascent()                      # no-op except RSAM (adds the random offset)
    loss_fn(model(x), y).mean().backward()    # ascent pass at w (per-sample losses kept, detached)
    opt.first_step(zero_grad=True)            # e from .grad; copy w; w <- w + e
    losses = loss_fn(model(x), y)             # descent pass at w + e, per-sample, with grad
    opt.descent_loss(ascent_losses, losses).backward()   # mean; ESAM: top-gamma samples
    opt.second_step(zero_grad=True)           # w <- copy (exact); base update with the descent grad

or ``opt.step(closure)``, which runs both passes itself. Subclasses override ``_perturbation`` (the
ascent step e), and optionally ``_prepare_ascent`` (RSAM), ``_descent_grad`` (GSAM) and ``_base_step``
(LightSAM). The trainer's driver of this protocol is :class:`adasam_glue.step.UpdateStep`.

A skipped update (fp16 overflow, spec ``docs/algorithms.md`` §2.2): with ``undoable = True`` every update
keeps what ``prepare_ascent``/``first_step`` change in the optimizer's state, and ``skip_update()`` puts
w, that state and the RNG back exactly as they were before the update.

Invariants: ``self.param_groups is self.base_optimizer.param_groups`` (a scheduler on the wrapper
drives the base lr); w is restored from one reused parameter-sized copy, never by subtracting e;
norms are one fp32 (fp64 for fp64 grads) reduction over all groups, ``||g|| = 0`` gives e = 0.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

__all__ = ["Groups", "Perturbation", "SAMBase", "global_norm", "global_sq_norm", "safe_inverse"]

#: ``(param_group, params with a gradient, their gradients)``
Groups = tuple[dict[str, Any], list[Tensor], list[Tensor]]
#: ``(params, e, scale)``: set ``params <- w + scale * e`` (see :meth:`SAMBase._perturbation`)
Perturbation = tuple[list[Tensor], list[Tensor] | None, Tensor | float | None]

_NO_CLOSURE = (
    "{cls} needs two gradient evaluations per update: call first_step() after the ascent backward and "
    "second_step() after the descent backward, or pass a closure to step(closure). In a transformers.Trainer "
    "script use adasam_glue.integrations.transformers.SAMTrainer, whose training step runs both passes"
)


def _norm_dtype(tensors: list[Tensor]) -> torch.dtype:
    return torch.promote_types(tensors[0].dtype, torch.float32)


def global_sq_norm(tensors: list[Tensor]) -> Tensor:
    """``sum ||t||^2`` over the list, in fp32 (fp64 for fp64 tensors): one ``_foreach_norm`` + one stack."""
    norms = torch._foreach_norm(tensors, 2, dtype=_norm_dtype(tensors))
    return torch.stack(norms).square().sum()


def global_norm(tensors: list[Tensor]) -> Tensor:
    return global_sq_norm(tensors).sqrt()


def safe_inverse(x: Tensor) -> Tensor:
    """``1 / x`` where ``x > 0``, else 0 (``||g|| = 0`` -> no perturbation, no NaN, no host sync)."""
    return torch.where(x > 0, x.reciprocal(), torch.zeros_like(x))


class SAMBase(Optimizer):
    """Wrapper shared by every two-pass optimizer: a perturbation rule around a base optimizer.

    Args:
        params: tensors or param-group dicts (per-group ``weight_decay`` is honoured by the base).
        defaults: the SAM-side group defaults (``rho`` and the variant's keys).
        base: builds the base optimizer from the wrapper's param groups; ``None`` when the subclass
            does its own descent update (LightSAM).

    Attributes:
        base_optimizer: the descent optimizer; shares ``param_groups`` (the same list object).
        sq_norm_hook: optional ``f(squared_norm) -> squared_norm`` applied to every perturbation norm,
            e.g. an all-reduce for a global norm under data parallelism (default: local norm).
        grad_mean_hook: optional ``f(tensors)``, an in-place mean over the data-parallel processes, for
            variants that combine a per-device descent gradient themselves (``reduces_descent_grad``).
        undoable: keep what an update changes in the optimizer's state until it ends, so that
            :meth:`skip_update` can undo it (set by the fp16 driver; costs one copy of that state).
    """

    #: the variant's descent step needs the per-device descent gradient under per-device ascent and
    #: all-reduces its own result through ``grad_mean_hook`` (GSAM, spec §2.10); the driver then runs
    #: the descent pass without all-reduce
    reduces_descent_grad: bool = False
    #: per-parameter state keys that ``prepare_ascent``/``first_step`` modify (saved for ``skip_update``)
    _ascent_state_keys: tuple[str, ...] = ()

    #: the generator's seed offset, so RSAM/ESAM draws differ from the global stream seeded alike
    _SEED_OFFSET = 0x5A3

    def __init__(
        self,
        params: Iterable[Any],
        defaults: dict[str, Any],
        base: Callable[[list[dict[str, Any]]], Optimizer] | None,
        seed: int | None = None,
    ) -> None:
        super().__init__(params, defaults)
        self.base_optimizer: Optimizer | None = base(self.param_groups) if base is not None else None
        if self.base_optimizer is not None:
            self.param_groups = self.base_optimizer.param_groups
        self.sq_norm_hook: Callable[[Tensor], Tensor] | None = None
        self.grad_mean_hook: Callable[[list[Tensor]], None] | None = None
        self.undoable = False
        self._undo: dict[str, Any] | None = None  # the pre-update state while an update is undoable
        self._undo_bufs: dict[tuple[Tensor, str], Tensor] = {}  # reused copies of the ascent state
        #: state not tied to one parameter (LightSAM-I scalars); saved in state_dict
        self.global_state: dict[str, Tensor] = {}
        self._seed = int(seed) if seed is not None else (torch.initial_seed() + self._SEED_OFFSET) % 2**63
        self._gen: torch.Generator | None = None
        self._pending_rng: Tensor | None = None
        self._pending_rng_device: str | None = None
        # transient, not saved: the reused weight copy and the parameters it currently holds
        self._w_copy: dict[Tensor, Tensor] = {}
        self._saved: list[Tensor] | None = None
        self._saved_set: set[Tensor] = set()
        self._phase: str | None = None  # None, "prepared" (RSAM), "perturbed"
        self._grads_disposable = False  # first_step(zero_grad=True): e may be built in .grad's memory

    # ------------------------------------------------------------------ param groups
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        base = getattr(self, "base_optimizer", None)
        if base is None:
            super().add_param_group(param_group)
            return
        for k, v in self.defaults.items():
            param_group.setdefault(k, v)
        base.add_param_group(param_group)  # appends to the shared list

    # ------------------------------------------------------------------ helpers
    def _with_grads(self) -> list[Groups]:
        out = []
        for group in self.param_groups:
            ps = [p for p in group["params"] if p.grad is not None]
            if ps:
                out.append((group, ps, [p.grad for p in ps]))
        return out

    def _norm(self, tensors: list[Tensor]) -> Tensor:
        return self._finish_sq_norm(global_sq_norm(tensors))

    def _finish_sq_norm(self, sq: Tensor) -> Tensor:
        """``sqrt(hook(sq))`` for a squared norm summed locally (the hook: e.g. a data-parallel all-reduce)."""
        if self.sq_norm_hook is not None:
            sq = self.sq_norm_hook(sq)
        return sq.sqrt()

    def _save_weights(self, params: list[Tensor]) -> None:
        bufs = []
        for p in params:
            b = self._w_copy.get(p)
            if b is None or b.shape != p.shape or b.dtype != p.dtype or b.device != p.device:
                b = self._w_copy[p] = torch.empty_like(p, memory_format=torch.preserve_format)
            bufs.append(b)
        if params:
            torch._foreach_copy_(bufs, params)
        self._saved, self._saved_set = params, set(params)

    def _restore_weights(self) -> None:
        if self._saved:
            torch._foreach_copy_(self._saved, [self._w_copy[p] for p in self._saved])

    def _generator(self, device: torch.device | str) -> torch.Generator:
        """The optimizer's own RNG (RSAM noise, ESAM masks), created on first use on ``device``."""
        device = torch.device(device)
        g = self._gen
        if g is None or g.device.type != device.type:
            g = torch.Generator(device=device)
            g.manual_seed(self._seed)
            if self._pending_rng is not None:
                if self._pending_rng_device in (None, device.type):
                    g.set_state(self._pending_rng)
                else:
                    warnings.warn(
                        f"{type(self).__name__}: the saved RNG state is for {self._pending_rng_device}, "
                        f"not {device.type}; the random draws restart from the seed",
                        stacklevel=3,
                    )
                self._pending_rng = None
            self._gen = g
        return g

    # ------------------------------------------------------------------ undo (skipped updates)
    def _keep_undo(self) -> None:
        """Record what this update may change before it changes it (only when ``undoable``).

        Weights are not copied here: the weight copy of ``first_step`` (RSAM: ``prepare_ascent``) already
        holds w. Kept: the RNG (RSAM noise, ESAM masks), ``global_state`` (LightSAM-I), the group
        scalars (GSAM's ``rho_t``) and the per-parameter keys of ``_ascent_state_keys`` (VaSSO's ``d``,
        LightSAM's ``u``/``r``; a parameter without state yet is marked, and emptied again on undo).
        """
        if not self.undoable or self._undo is not None:
            return
        fresh, keep, bufs = [], [], []
        if self._ascent_state_keys:
            for group in self.param_groups:
                for p in group["params"]:
                    st = self.state.get(p)
                    if not st:
                        fresh.append(p)
                        continue
                    for k in self._ascent_state_keys:
                        t = st.get(k)
                        if isinstance(t, Tensor):
                            b = self._undo_bufs.get((p, k))
                            if b is None or b.shape != t.shape or b.dtype != t.dtype or b.device != t.device:
                                b = self._undo_bufs[(p, k)] = torch.empty_like(t)
                            keep.append((p, k, b))
                            bufs.append((b, t))
            if bufs:
                torch._foreach_copy_([b for b, _ in bufs], [t for _, t in bufs])
        gen = self._gen
        self._undo = {
            "gen": gen,
            "gen_state": gen.get_state() if gen is not None else None,
            "pending_rng": (self._pending_rng, self._pending_rng_device),
            "global": {k: v.clone() for k, v in self.global_state.items()},
            "groups": [{k: v for k, v in g.items() if k != "params"} for g in self.param_groups],
            "fresh": fresh,
            "keep": keep,
        }

    @torch.no_grad()
    def skip_update(self) -> None:
        """Abandon the update in progress (after the ascent or the descent pass) without a base step.

        w is copied back from the weight copy (bit-identical; nothing to do when ``first_step`` was not
        reached and ``prepare_ascent`` moved nothing), gradients are dropped, and, with ``undoable``,
        the optimizer's state (RNG included) is as it was before ``prepare_ascent``. Spec §2.2: an fp16
        update whose gradient is not finite in either pass is skipped as a whole.
        """
        self._restore_weights()
        self._saved, self._saved_set, self._phase = None, set(), None
        undo, self._undo = self._undo, None
        if undo is not None:
            gen, gen_state = undo["gen"], undo["gen_state"]
            if gen is not None:
                gen.set_state(gen_state)
            self._gen = gen
            self._pending_rng, self._pending_rng_device = undo["pending_rng"]
            self.global_state = undo["global"]
            for group, saved in zip(self.param_groups, undo["groups"]):
                group.update(saved)
            for p in undo["fresh"]:
                self.state.pop(p, None)
            if undo["keep"]:
                torch._foreach_copy_(
                    [self.state[p][k] for p, k, _ in undo["keep"]], [b for *_, b in undo["keep"]]
                )
        self._abandon()
        self.zero_grad()

    def _abandon(self) -> None:
        """Drop the variant's transient per-update buffers on a skipped update (GSAM's kept gradient)."""

    # ------------------------------------------------------------------ protocol
    def prepare_ascent(self) -> None:
        """Called by the trainer before the ascent forward of every update. No-op except RSAM."""
        self._undo = None  # an update starts here (drops what an update abandoned by an error kept)
        self._keep_undo()
        self._prepare_ascent()

    def _prepare_ascent(self) -> None:
        """Variant hook of :meth:`prepare_ascent` (RSAM's noise)."""

    def descent_weights(self, ascent_losses: Tensor, descent_losses: Tensor) -> Tensor:
        """Per-sample weights ``c`` (summing to 1) with ``descent_loss == (c * descent_losses).sum()``.

        Lets a driver select over an update's whole batch when the descent pass is split into
        micro-batches (ESAM, spec §2.3, §2.11): the weights come from a no-grad forward over all of
        them, then each micro-batch backpropagates its share. Default: the mean (``1/B`` each).
        """
        return torch.full_like(descent_losses, 1.0 / descent_losses.numel())

    def descent_loss(self, ascent_losses: Tensor, descent_losses: Tensor) -> Tensor:
        """Scalar loss to backpropagate in the descent pass.

        Args:
            ascent_losses: per-sample losses at w, detached, shape ``[B]``.
            descent_losses: per-sample losses at w + e, with grad, shape ``[B]``.
        Default: ``descent_losses.mean()`` (ESAM selects samples).
        """
        return descent_losses.mean()

    def _perturbation(self, groups: list[Groups]) -> list[Perturbation]:
        """What to apply at the ascent point; params not listed are not perturbed.

        ``groups`` holds ``(group, params, grads)`` for the parameters that have a gradient. Each entry is
        ``(params, e, scale)``: ``w + scale * e`` (``scale`` a 0-dim tensor or a number; ``None``: ``w + e``),
        written from the weight copy in one pass (:meth:`_apply_perturbation`), so ``e`` may be the
        gradients themselves, unscaled. ``e = None``: the variant already wrote ``w + e`` into these
        params itself (it may use them as scratch: the copy holds w).
        """
        raise NotImplementedError

    def _apply_perturbation(self, ps: list[Tensor], es: list[Tensor], scale: Tensor | float | None) -> None:
        """``p <- w + scale * e`` (``w + e`` without scale), w read from the weight copy.

        On CPU one kernel per tensor: ``p += scale * e`` in place (no temporary, no separate scaling
        pass), or, after RSAM's noise, ``p = copy + scale * e`` (which also replaces the restore).
        Elsewhere torch's multi-tensor kernels (fewer launches), after restoring w if needed (RSAM).
        """
        copies, saved = self._w_copy, self._saved_set
        if ps[0].device.type == "cpu":
            noisy = self._phase == "prepared"
            for p, e in zip(ps, es):
                w = copies[p] if noisy and p in saved else p
                if scale is None:
                    torch.add(w, e, out=p)
                elif isinstance(scale, Tensor):
                    torch.addcmul(w, e, scale, out=p)
                else:
                    torch.add(w, e, alpha=scale, out=p)
            return
        if self._phase == "prepared":
            back = [p for p in ps if p in saved]
            if back:
                torch._foreach_copy_(back, [copies[p] for p in back])
        torch._foreach_add_(ps, es if scale is None else torch._foreach_mul(es, scale))

    def _descent_grad(self, groups: list[Groups]) -> None:
        """Hook to modify the descent gradient in place before the base step (GSAM)."""

    def _base_step(self) -> None:
        assert self.base_optimizer is not None
        self.base_optimizer.step()

    @torch.no_grad()
    def first_step(self, zero_grad: bool = True) -> None:
        """After the ascent backward: compute e from ``.grad``, copy w, set w <- w + e."""
        if self._phase == "perturbed":
            raise RuntimeError("first_step() called twice without second_step() in between")
        groups = self._with_grads()
        self._keep_undo()  # no-op unless undoable and prepare_ascent() was not called this update
        if self._phase is None:
            self._save_weights([p for _, ps, _ in groups for p in ps])
        # With zero_grad the ascent gradients are discarded after this step, so a variant may build
        # e in their memory instead of a new parameter-sized buffer (measured 1.5x faster on MiniLM).
        self._grads_disposable = zero_grad
        perturbed: set[Tensor] = set()
        if groups:
            for ps, es, scale in self._perturbation(groups):
                if ps and es is not None:
                    self._apply_perturbation(ps, es, scale)
                perturbed.update(ps)
        if self._phase == "prepared" and self._saved:  # RSAM: back to w where nothing was written
            rest = [p for p in self._saved if p not in perturbed]
            if rest:
                torch._foreach_copy_(rest, [self._w_copy[p] for p in rest])
        self._phase = "perturbed"
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def second_step(self, zero_grad: bool = True) -> None:
        """After the descent backward: restore w from the copy, then the base update."""
        if self._phase != "perturbed":
            raise RuntimeError("second_step() called without a preceding first_step()")
        self._restore_weights()
        self._saved, self._saved_set = None, set()
        self._phase = None
        self._undo = None  # the update is no longer undoable: the base step follows
        self._descent_grad(self._with_grads())
        self._base_step()
        self._opt_called = True  # tells torch LR schedulers an update happened (no spurious warning)
        if zero_grad:
            self.zero_grad()

    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor:  # type: ignore[override]
        """One full update with ``closure`` (forward + backward, no zero_grad, returns the loss).

        Unlike the davda54/pytorch_optimizer convention, the closure is called twice (ascent at w, descent
        at w + e) and gradients present before the call are discarded, so RSAM's ``prepare_ascent`` fits.
        Uses the plain mean loss (no ESAM sample selection: use the explicit protocol for that).
        Returns the ascent loss (the loss at w, as torch optimizers return the pre-update loss).
        """
        if closure is None:
            raise RuntimeError(_NO_CLOSURE.format(cls=type(self).__name__))
        self.zero_grad()
        self.prepare_ascent()
        with torch.enable_grad():
            loss = closure()
        self.first_step(zero_grad=True)
        with torch.enable_grad():
            closure()
        self.second_step(zero_grad=False)
        return loss

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Base state + SAM per-parameter state + global state (RNG included); one copy of param_groups.

        The weight copy is transient (valid only between first_step and second_step) and not saved:
        checkpoint between updates.
        """
        sd = super().state_dict()
        if self.base_optimizer is not None:
            sd["base_state"] = self.base_optimizer.state_dict()["state"]
        glob: dict[str, Any] = {"tensors": dict(self.global_state), "seed": self._seed}
        if self._gen is not None:
            glob["rng_state"], glob["rng_device"] = self._gen.get_state(), self._gen.device.type
        elif self._pending_rng is not None:
            glob["rng_state"], glob["rng_device"] = self._pending_rng, self._pending_rng_device
        sd["sam_global"] = glob
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        sd = dict(state_dict)
        base_state = sd.pop("base_state", None)
        glob = sd.pop("sam_global", {})
        if self.base_optimizer is not None:
            self.base_optimizer.load_state_dict(
                {"state": base_state or {}, "param_groups": sd["param_groups"]}
            )
        super().load_state_dict(sd)
        if self.base_optimizer is not None:
            self.base_optimizer.param_groups = self.param_groups  # keep the two sharing one list
        self.global_state = {k: v.clone() for k, v in glob.get("tensors", {}).items()}
        self._seed = glob.get("seed", self._seed)
        rng = glob.get("rng_state")
        # CPU copy: a device-placement round trip (accelerate's prepare) may have moved it to the GPU
        self._gen = None
        self._pending_rng = rng.detach().to("cpu", copy=True) if rng is not None else None
        self._pending_rng_device = glob.get("rng_device")
        self._w_copy, self._saved, self._saved_set, self._phase = {}, None, set(), None
        self._undo, self._undo_bufs = None, {}
