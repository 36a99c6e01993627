"""Base (descent) optimizers of the SAM family: SGD, AMSGrad, AdamW and the paper's AMSGrad (spec §1).

:data:`BASES` is the catalogue a perturbation composes with (``optim=vasso optim.base=sgd``): one
:class:`BaseInfo` per base, whose factory takes the YAML keys (``lr``, ``beta1``, ...) as keywords.
``sgd``, ``amsgrad`` and ``adamw`` are torch classes with settings (:func:`make_sgd`,
:func:`make_amsgrad`, :func:`make_adamw`); :class:`AMSGradPaper` is Algorithm 1 of AdaSAM (arXiv
2303.00565) written out, the base of ``adasam form=paper`` (``amsgrad_paper``).

**Signature defaults** (a key not given to a class or a factory): torch's, so that a Python user of
a class gets what ``torch.optim`` would give: lr 1e-3; SGD momentum (``beta1``) 0, no nesterov; Adam
betas (0.9, 0.999), eps 1e-8; weight decay 0 for every base (torch's AdamW would decay by 0.01: no base
decays unless asked). They live in the factories' signatures below and nowhere else. The paper's values
(weight decay 0.1, betas (0.9, 0.98), eps 1e-6) live only in ``conf/optim/*.yaml``, and they are what
``build_optimizer``, ``SAMTrainer`` and the CLI use for a key not given (the registry's "Values"); these
signature defaults fill only what the YAML leaves to the run (lr) or does not set (``nesterov``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType
from typing import Any

import torch
from torch.optim import Optimizer

from .validation import check_beta2_below_one, check_bool, validate

__all__ = [
    "BASES",
    "BASE_CHOICES",
    "AMSGradPaper",
    "BaseInfo",
    "get_base",
    "make_adamw",
    "make_amsgrad",
    "make_amsgrad_paper",
    "make_base",
    "make_sgd",
]


def make_sgd(
    params: Iterable[Any],
    *,
    lr: float = 1e-3,
    beta1: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
) -> torch.optim.SGD:
    """``torch.optim.SGD(momentum=beta1)`` (spec §1.1). Weight decay is torch's (coupled L2)."""
    validate(lr=lr, beta1=beta1, weight_decay=weight_decay, nesterov=nesterov)
    if nesterov and beta1 == 0:
        raise ValueError("nesterov=True needs momentum: beta1 must be > 0, got 0")
    return torch.optim.SGD(params, lr=lr, momentum=beta1, weight_decay=weight_decay, nesterov=nesterov)


def _adam(params, *, amsgrad, where, lr, beta1, beta2, eps, weight_decay) -> torch.optim.AdamW:
    validate(lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay)
    check_beta2_below_one(beta2, where)
    params = list(params)
    return torch.optim.AdamW(
        params,
        lr=lr,
        betas=(beta1, beta2),
        eps=eps,
        weight_decay=weight_decay,
        amsgrad=amsgrad,
        fused=_can_fuse(params) or None,
    )


def make_amsgrad(
    params: Iterable[Any],
    *,
    lr: float = 1e-3,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> torch.optim.AdamW:
    """Library AMSGrad: ``torch.optim.AdamW(amsgrad=True)`` (spec §1.2).

    Decoupled weight decay as fairseq's Adam; bias-corrected moments, eps added outside the root,
    ``v_hat`` starts at 0 (the max is taken over the uncorrected ``v``).
    """
    return _adam(
        params, amsgrad=True, where="the library (bias-corrected) AMSGrad", lr=lr, beta1=beta1, beta2=beta2,
        eps=eps, weight_decay=weight_decay,
    )  # fmt: skip


def make_adamw(
    params: Iterable[Any],
    *,
    lr: float = 1e-3,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> torch.optim.AdamW:
    """AdamW: ``torch.optim.AdamW`` (spec §1.2 without the max: ``v_hat = v``)."""
    return _adam(
        params, amsgrad=False, where="AdamW (bias-corrected)", lr=lr, beta1=beta1, beta2=beta2, eps=eps,
        weight_decay=weight_decay,
    )  # fmt: skip


def make_amsgrad_paper(
    params: Iterable[Any],
    *,
    lr: float = 1e-3,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> AMSGradPaper:
    """AMSGrad as Algorithm 1 of AdaSAM writes it (:class:`AMSGradPaper`, spec §1.3)."""
    return AMSGradPaper(params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay)


@dataclass(frozen=True)
class BaseInfo:
    """One descent optimizer a perturbation can wrap.

    Attributes:
        name: ``optim.base`` value.
        factory: ``factory(params, **keys) -> Optimizer``; its keyword-only parameters are the YAML
            keys the base takes, their defaults the signature defaults (module docstring).
        display: report spelling.
        spec: section of ``docs/algorithms.md``.
    """

    name: str
    factory: Callable[..., Optimizer]
    display: str
    spec: str

    @cached_property
    def defaults(self) -> Mapping[str, Any]:
        """Key -> signature default, read from the factory's signature (the one place they live)."""
        sig = inspect.signature(self.factory).parameters.values()
        return MappingProxyType({p.name: p.default for p in sig if p.kind is p.KEYWORD_ONLY})

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.defaults)


#: name -> base, the ``optim.base`` choices first
BASES: dict[str, BaseInfo] = {
    b.name: b
    for b in (
        BaseInfo("sgd", make_sgd, "SGD", "§1.1"),
        BaseInfo("amsgrad", make_amsgrad, "AMSGrad", "§1.2"),
        BaseInfo("adamw", make_adamw, "AdamW", "§1.2"),
        BaseInfo("amsgrad_paper", make_amsgrad_paper, "AMSGrad (Algorithm 1)", "§1.3"),
    )
}
#: what ``optim.base`` accepts for a perturbation record (``amsgrad_paper`` is ``adasam form=paper``)
BASE_CHOICES: tuple[str, ...] = ("sgd", "amsgrad", "adamw")


def get_base(name: str) -> BaseInfo:
    try:
        return BASES[name]
    except (KeyError, TypeError):
        raise ValueError(f"base must be one of {', '.join(map(repr, BASES))}, got {name!r}") from None


def make_base(
    base: str | Callable[..., Optimizer], **hparams: Any
) -> Callable[[list[dict[str, Any]]], Optimizer]:
    """What :class:`~adasam_glue.optim.perturbation.SAMBase` takes: ``groups -> base optimizer``.

    ``base`` is a name of :data:`BASES` (``hparams`` are its YAML keys; missing ones take the Python API
    defaults; unknown ones raise ``ValueError`` naming the valid keys) or any optimizer class or
    factory, called as ``base(groups, **hparams)`` with its own argument names (``betas=...``), as
    davda54/sam's ``base_optimizer``.
    """
    if not isinstance(base, str):
        return lambda groups: base(groups, **hparams)
    info = get_base(base)
    unknown = sorted(set(hparams) - set(info.keys))
    if unknown:
        raise ValueError(
            f"base {base!r} takes no {', '.join(map(repr, unknown))}; valid keys: {', '.join(info.keys)}"
        )
    return lambda groups: info.factory(groups, **hparams)


def _can_fuse(params: list[Any]) -> bool:
    """torch's fused Adam kernel: one pass over memory instead of a per-tensor loop.

    Measured 5.7x faster than the default CPU path on MiniLM (results/bench). It needs every
    parameter floating point on CPU or CUDA; anything else falls back to torch's default.
    """
    tensors = [t for p in params for t in (p["params"] if isinstance(p, dict) else [p])]
    tensors = [t for t in tensors if isinstance(t, torch.Tensor)]
    return bool(tensors) and all(t.is_floating_point() and t.device.type in ("cpu", "cuda") for t in tensors)


class AMSGradPaper(Optimizer):
    r"""AMSGrad exactly as Algorithm 1 of AdaSAM (Sun et al. 2023, arXiv 2303.00565) writes it.

    .. math::
        m \leftarrow \beta_1 m + (1-\beta_1) g,\quad v \leftarrow \beta_2 v + (1-\beta_2) g\odot g,\quad
        \hat v \leftarrow \max(\hat v, v),\quad x \leftarrow x - \gamma\, m \odot \hat v^{-1/2}

    with ``m_0 = 0`` and ``v_0 = v_hat_0 = eps**2``. Differences from the library form
    (``torch.optim.AdamW(amsgrad=True)``, :func:`make_amsgrad`):

    * no bias correction (library: ``m / (1 - beta1**t)`` and ``v_hat / (1 - beta2**t)``), so the first
      steps are ``(1 - beta1)`` times smaller for the same ``lr``;
    * eps enters *inside* the root, as the initial value of ``v_hat`` (library: ``sqrt(v_hat) + eps``);
      ``v_hat >= eps**2`` always, so the step is bounded by ``lr * |m| / eps``;
    * ``v_hat`` starts at ``eps**2`` (library: 0).

    ``beta2 = 1`` is allowed (Remark 3.1: ``v`` stays at ``eps**2``, the rate is the constant
    ``lr / eps`` and AdaSAM becomes SAM with momentum ``beta1`` and lr ``lr * (1 - beta1) / eps``).
    ``amsgrad=False`` drops the max (``v_hat = v``): the Adam variant of Remark 3.1.
    Weight decay, when non-zero, is decoupled (``x <- x - lr * wd * x``) as in AdamW.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = True,
    ) -> None:
        validate(lr=lr, beta1=betas[0], beta2=betas[1], weight_decay=weight_decay)
        if not eps > 0:
            raise ValueError(f"eps must be > 0 for the paper form (v_hat starts at eps**2), got {eps!r}")
        check_bool("amsgrad", amsgrad)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            beta1, beta2 = group["betas"]
            eps2 = group["eps"] ** 2
            for p in params:
                st = self.state[p]
                if not st:
                    st["step"] = 0
                    st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    st["exp_avg_sq"] = torch.full_like(p, eps2, memory_format=torch.preserve_format)
                    if group["amsgrad"]:
                        st["max_exp_avg_sq"] = torch.full_like(p, eps2, memory_format=torch.preserve_format)
                st["step"] += 1
            ms = [self.state[p]["exp_avg"] for p in params]
            vs = [self.state[p]["exp_avg_sq"] for p in params]
            torch._foreach_mul_(ms, beta1)
            torch._foreach_add_(ms, grads, alpha=1 - beta1)
            torch._foreach_mul_(vs, beta2)
            torch._foreach_addcmul_(vs, grads, grads, value=1 - beta2)
            if group["amsgrad"]:
                vhats = [self.state[p]["max_exp_avg_sq"] for p in params]
                torch._foreach_maximum_(vhats, vs)
            else:
                vhats = vs
            denom = torch._foreach_sqrt(vhats)
            if group["weight_decay"] != 0:
                torch._foreach_mul_(params, 1 - group["lr"] * group["weight_decay"])
            torch._foreach_addcdiv_(params, ms, denom, value=-group["lr"])
        return loss
