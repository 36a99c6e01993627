r"""LightSAM (Cheng et al. 2025, arXiv 2505.24399): parameter-agnostic SAM, spec §2.12.

Both the ascent radius and the descent step are adaptive, with their own accumulators (``u`` for the
ascent gradient s, ``v`` for the descent gradient g, both starting at ``eps**2``), so LightSAM has no
base optimizer: each form is a :class:`SAMBase` with its own descent update.

=============  =====================================================  ===============================
form           ascent  e                                              descent
=============  =====================================================  ===============================
adagrad_norm   ``u += ||s||^2``; ``e = rho s / sqrt(u)`` (I)           ``v += ||g||^2``; ``w -= lr g / sqrt(v)``
adagrad        ``u += s*s``; ``e = rho s / sqrt(u)`` (II)              ``v += g*g``; ``w -= lr g / sqrt(v)``
adam           ``r, u`` moments of s; ``e = rho r / sqrt(u)`` (III)    ``m, v`` of g; ``w -= lr m / sqrt(v)``
=============  =====================================================  ===============================

Form III uses ``beta1`` for ``r, m`` and ``beta2`` for ``u, v``, without bias correction; forms I/II
ignore the betas. Weight decay, if non-zero, is decoupled (``w <- w - lr * wd * w`` before the step).
Note: in forms II/III e is elementwise-normalised (about ``rho * sign(s)`` early on), so its norm is
about ``rho * sqrt(#params)``, unlike SAM's ``rho``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from .perturbation import Groups, Perturbation, SAMBase, global_sq_norm
from .validation import check_choice, validate

__all__ = ["LIGHTSAM_FORMS", "LightSAM", "LightSAMAdaGrad", "LightSAMAdaGradNorm", "LightSAMAdam", "lightsam"]

LIGHTSAM_FORMS = ("adagrad_norm", "adagrad", "adam")


class LightSAM(SAMBase):
    """Common constructor and decoupled weight decay of the three LightSAM forms (module docstring)."""

    form: str = ""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        rho: float = 0.05,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        validate(lr=lr, rho=rho, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay)
        if not eps > 0:
            raise ValueError(f"eps must be > 0 for LightSAM (accumulators start at eps**2), got {eps!r}")
        defaults = dict(lr=lr, rho=rho, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay)
        super().__init__(params, defaults, base=None)

    def _state(self, p: Tensor, group: dict[str, Any], *keys_at_eps2: str, zeros: tuple[str, ...] = ()):
        st = self.state[p]
        if not st:
            for k in keys_at_eps2:
                st[k] = torch.full_like(p, group["eps"] ** 2, memory_format=torch.preserve_format)
            for k in zeros:
                st[k] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return st

    def _scalar(self, key: str, like: Tensor, eps: float) -> Tensor:
        s = self.global_state.get(key)
        if s is None:
            s = torch.full((), eps**2, dtype=like.dtype, device=like.device)
        s = self.global_state[key] = s.to(like)
        return s

    def _base_step(self) -> None:
        for group, ps, gs in self._with_grads():
            if group["weight_decay"] != 0 and not self._fuses_decay(group, ps):
                torch._foreach_mul_(ps, 1 - group["lr"] * group["weight_decay"])
            self._descent(group, ps, gs)

    def _fuses_decay(self, group: dict[str, Any], ps: list[Tensor]) -> bool:
        """True when :meth:`_descent` applies the decoupled weight decay itself (fused kernel)."""
        return False

    def _descent(self, group: dict[str, Any], ps: list[Tensor], gs: list[Tensor]) -> None:
        raise NotImplementedError

    # torch's fused Adam / AdaGrad kernels compute one form's whole update in one pass over memory. They
    # are exact here: with eps = 0 and a step of +inf Adam's bias corrections are 1 - beta**inf = 1
    # (beta < 1); AdaGrad with lr_decay = 0 uses lr as is. So they compute the LightSAM equations (up
    # to rounding order). A negative lr gives the ascent ``w + rho * ...`` in the parameters themselves.
    # The kernels read the step, they do not increment it.
    @staticmethod
    def _steps(ps: list[Tensor], value: float = float("inf")) -> list[Tensor]:
        return [torch.full((), value, dtype=torch.float32, device=ps[0].device)] * len(ps)

    @staticmethod
    def _can_fuse(ps: list[Tensor], *betas: float) -> bool:
        p0 = ps[0]
        return (
            p0.device.type in ("cpu", "cuda")
            and p0.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64)
            and all(p.device == p0.device and p.dtype == p0.dtype and p.grad is not None for p in ps)
            and all(b < 1 for b in betas)
        )


class LightSAMAdaGradNorm(LightSAM):
    r"""LightSAM-I (arXiv 2505.24399; spec §2.12, LightSAM-I): AdaGrad-Norm in both steps,
    :math:`u \mathrel{+}= \|s\|^2,\ e = \rho s/\sqrt u`; :math:`v \mathrel{+}= \|g\|^2,\ w \leftarrow w - \eta g/\sqrt v`.
    ``u``, ``v`` are global scalars (``global_state``), the norms over all groups.
    """

    form = "adagrad_norm"

    def _perturbation(self, groups: list[Groups]) -> list[tuple[list[Tensor], list[Tensor]]]:
        grads = [g for _, _, gs in groups for g in gs]
        sq = global_sq_norm(grads)
        if self.sq_norm_hook is not None:
            sq = self.sq_norm_hook(sq)
        u = self._scalar("u", sq, self.param_groups[0]["eps"])
        u.add_(sq)
        inv = u.rsqrt()
        return [(ps, gs, inv * group["rho"]) for group, ps, gs in groups]

    def _base_step(self) -> None:
        groups = self._with_grads()
        if not groups:
            return
        sq = global_sq_norm([g for _, _, gs in groups for g in gs])
        v = self._scalar("v", sq, self.param_groups[0]["eps"])
        v.add_(sq)
        self._inv_v = v.rsqrt()
        super()._base_step()

    def _descent(self, group: dict[str, Any], ps: list[Tensor], gs: list[Tensor]) -> None:
        scale = self._inv_v * -group["lr"]
        if ps[0].device.type == "cpu":  # one pass per tensor, no scaled copy of g
            for p, g in zip(ps, gs):
                p.addcmul_(g, scale)
        else:
            torch._foreach_add_(ps, torch._foreach_mul(gs, scale))


class LightSAMAdaGrad(LightSAM):
    r"""LightSAM-II (arXiv 2505.24399; spec §2.12, LightSAM-II): coordinate-wise AdaGrad in both steps,
    :math:`u \mathrel{+}= s\odot s,\ e = \rho s/\sqrt u`; :math:`v \mathrel{+}= g\odot g,\ w \leftarrow w - \eta g/\sqrt v`.
    """

    form = "adagrad"
    _ascent_state_keys = ("u",)  # first_step accumulates u: kept for skip_update (fp16 overflow)

    def _perturbation(self, groups: list[Groups]) -> list[Perturbation]:
        out: list[Perturbation] = []
        for group, ps, gs in groups:
            us = [self._state(p, group, "u", "v")["u"] for p in ps]
            if self._phase is None and self._can_fuse(ps):  # p = w: w + rho s / sqrt(u) in one pass
                torch._fused_adagrad_(
                    ps, gs, us, self._steps(ps, 1.0), lr=-group["rho"], lr_decay=0.0, weight_decay=0.0,
                    eps=0.0, maximize=False,
                )  # fmt: skip
                out.append((ps, None, None))
                continue
            torch._foreach_addcmul_(us, gs, gs)
            e = torch._foreach_div(gs, torch._foreach_sqrt(us))
            torch._foreach_mul_(e, group["rho"])
            out.append((ps, e, None))
        return out

    def _descent(self, group: dict[str, Any], ps: list[Tensor], gs: list[Tensor]) -> None:
        vs = [self._state(p, group, "u", "v")["v"] for p in ps]
        if self._can_fuse(ps):
            torch._fused_adagrad_(
                ps, gs, vs, self._steps(ps, 1.0), lr=group["lr"], lr_decay=0.0, weight_decay=0.0, eps=0.0,
                maximize=False,
            )  # fmt: skip
            return
        torch._foreach_addcmul_(vs, gs, gs)
        torch._foreach_addcdiv_(ps, gs, torch._foreach_sqrt(vs), value=-group["lr"])


class LightSAMAdam(LightSAM):
    r"""LightSAM-III (arXiv 2505.24399; spec §2.12, LightSAM-III): Adam-style, no bias correction,
    :math:`r = \beta_1 r + (1-\beta_1) s,\ u = \beta_2 u + (1-\beta_2) s\odot s,\ e = \rho r/\sqrt u`;
    :math:`m = \beta_1 m + (1-\beta_1) g,\ v = \beta_2 v + (1-\beta_2) g\odot g,\ w \leftarrow w - \eta m/\sqrt v`
    (``r, m`` start at 0, ``u, v`` at ``eps**2``).
    """

    form = "adam"
    _ascent_state_keys = ("r", "u")  # first_step updates r, u: kept for skip_update (fp16 overflow)

    def _st(self, p: Tensor, group: dict[str, Any]) -> dict[str, Tensor]:
        return self._state(p, group, "u", "v", zeros=("r", "m"))

    def _perturbation(self, groups: list[Groups]) -> list[Perturbation]:
        out: list[Perturbation] = []
        for group, ps, gs in groups:
            b1, b2 = group["betas"]
            rs = [self._st(p, group)["r"] for p in ps]
            us = [self._st(p, group)["u"] for p in ps]
            if self._phase is None and self._can_fuse(ps, b1, b2):  # p = w: one pass for r, u, w + e
                torch._fused_adam_(
                    ps, gs, rs, us, [], self._steps(ps), lr=-group["rho"], beta1=b1, beta2=b2,
                    weight_decay=0.0, eps=0.0, amsgrad=False, maximize=False,
                )  # fmt: skip
                out.append((ps, None, None))
                continue
            torch._foreach_mul_(rs, b1)
            torch._foreach_add_(rs, gs, alpha=1 - b1)
            torch._foreach_mul_(us, b2)
            torch._foreach_addcmul_(us, gs, gs, value=1 - b2)
            e = torch._foreach_div(rs, torch._foreach_sqrt(us))
            torch._foreach_mul_(e, group["rho"])
            out.append((ps, e, None))
        return out

    def _fuses_decay(self, group: dict[str, Any], ps: list[Tensor]) -> bool:
        return self._can_fuse(ps, *group["betas"])

    def _descent(self, group: dict[str, Any], ps: list[Tensor], gs: list[Tensor]) -> None:
        b1, b2 = group["betas"]
        ms = [self._st(p, group)["m"] for p in ps]
        vs = [self._st(p, group)["v"] for p in ps]
        if self._fuses_decay(group, ps):  # decoupled decay, m, v and w - lr m / sqrt(v): one pass
            torch._fused_adamw_(
                ps, gs, ms, vs, [], self._steps(ps), lr=group["lr"], beta1=b1, beta2=b2,
                weight_decay=group["weight_decay"], eps=0.0, amsgrad=False, maximize=False,
            )  # fmt: skip
            return
        torch._foreach_mul_(ms, b1)
        torch._foreach_add_(ms, gs, alpha=1 - b1)
        torch._foreach_mul_(vs, b2)
        torch._foreach_addcmul_(vs, gs, gs, value=1 - b2)
        torch._foreach_addcdiv_(ps, ms, torch._foreach_sqrt(vs), value=-group["lr"])


_FORMS: dict[str, type[LightSAM]] = {
    "adagrad_norm": LightSAMAdaGradNorm,
    "adagrad": LightSAMAdaGrad,
    "adam": LightSAMAdam,
}


def lightsam(params: Iterable[Any], form: str = "adam", **kwargs: Any) -> LightSAM:
    """Build the LightSAM class of ``form`` (``adagrad_norm``, ``adagrad`` or ``adam``)."""
    check_choice("form", form, LIGHTSAM_FORMS)
    return _FORMS[form](params, **kwargs)
