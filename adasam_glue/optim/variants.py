"""The SAM family (spec §1-2): one small class per perturbation rule, all on :class:`SAMBase`.

Each class is a perturbation around a base (descent) optimizer, ``base=`` a name of
:data:`~adasam_glue.optim.descent.BASES` (``sgd``, ``amsgrad``, ``adamw``) or any optimizer class, its
keys as keywords (``VaSSO(params, theta=0.9, base="sgd", lr=0.1, beta1=0.9)``). Default base:
SGD for :class:`SAM`, the library AMSGrad (``torch.optim.AdamW(amsgrad=True)``) for the others;
:class:`AdaSAM` is SAM's perturbation on AMSGrad with the paper's form as an option. A key not given
takes the class's signature default (torch's: weight decay 0; see :mod:`adasam_glue.optim.descent`);
``build_optimizer`` takes the values of ``conf/optim`` instead.
Hyperparameters are per param group (``group["rho"]`` ...); norms are global over all groups.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from .descent import make_base
from .perturbation import Groups, Perturbation, SAMBase, global_sq_norm, safe_inverse
from .validation import check_choice, validate

__all__ = ["ASAM", "ESAM", "GSAM", "RSAM", "SAM", "USAM", "AdaSAM", "VaSSO"]

ADASAM_FORMS = ("library", "paper")
#: elements per slice for the passes that read a tensor twice (128k fp32 = 512 KiB, within L2)
_SLICE = 1 << 17

#: ``base=`` of the classes: a name of ``BASES`` or an optimizer class / factory ``f(groups, **kw)``
Base = str | Callable[..., Optimizer]


class _NormalizedSAM(SAMBase):
    """e = rho g / ||g|| with the global norm (SAM's ascent step, shared by several variants)."""

    def _rho(self, group: dict[str, Any]) -> float:
        return group["rho"]

    def _perturbation(self, groups: list[Groups]) -> list[Perturbation]:
        # w + (rho / ||g||) g in one pass from the weight copy: no scaled copy of g, g left untouched
        inv = safe_inverse(self._norm([g for _, _, gs in groups for g in gs]))
        return [(ps, gs, inv * self._rho(group)) for group, ps, gs in groups]


class SAM(_NormalizedSAM):
    r"""SAM (Foret et al. 2021, arXiv 2010.01412): :math:`e = \rho\, g/\|g\|`, then the base step with
    the gradient at :math:`w + e`; by default ``torch.optim.SGD(momentum=beta1)``. Spec §1.4, §2.5.
    """

    def __init__(
        self, params: Iterable[Any], rho: float = 0.05, base: Base = "sgd", **base_hparams: Any
    ) -> None:
        validate(rho=rho)
        super().__init__(params, dict(rho=rho), make_base(base, **base_hparams))


class AdaSAM(_NormalizedSAM):
    r"""AdaSAM (Sun et al. 2023, arXiv 2303.00565, Algorithm 1): SAM's :math:`e = \rho\, s/\|s\|`, then
    AMSGrad with the gradient at :math:`x + e`. Spec §1.5. (SAM's perturbation on another base:
    :class:`SAM` with ``base=``.)

    ``form="library"`` (default): ``torch.optim.AdamW(amsgrad=True)`` (bias correction, eps outside the
    root, ``v_hat_0 = 0``, as fairseq). ``form="paper"``: :class:`~adasam_glue.optim.descent.AMSGradPaper`
    (no bias correction, ``v_hat_0 = eps**2`` inside the root; see its docstring); only this form accepts
    ``beta2 = 1`` (Remark 3.1).
    """

    def __init__(
        self, params: Iterable[Any], rho: float = 0.05, form: str = "library", **base_hparams: Any
    ) -> None:
        check_choice("form", form, ADASAM_FORMS)
        validate(rho=rho)
        self.form = form
        base = "amsgrad" if form == "library" else "amsgrad_paper"
        super().__init__(params, dict(rho=rho), make_base(base, **base_hparams))


class ASAM(SAMBase):
    r"""ASAM (Kwon et al. 2021, arXiv 2102.11600): :math:`e = \rho\, T^2 g / \|T g\|` with
    :math:`T = |w| + \eta` (elementwise). Spec §2.6; base: any (default AMSGrad, library form).

    The official code uses ``T = |w| + eta`` for parameters named ``*weight*`` and ``T = 1`` otherwise.
    Without names we use the shape: ``T = |w| + eta`` for tensors with ``ndim >= 2`` (matrices,
    embeddings) and ``T = 1`` for vectors (biases, and also LayerNorm gains, which the official code
    would scale).
    """

    def __init__(
        self,
        params: Iterable[Any],
        rho: float = 0.5,
        eta: float = 0.01,
        base: Base = "amsgrad",
        **base_hparams: Any,
    ) -> None:
        validate(rho=rho, eta=eta)
        super().__init__(params, dict(rho=rho, eta=eta), make_base(base, **base_hparams))

    def _perturbation(self, groups: list[Groups]) -> list[Perturbation]:
        # Matrices, slice by slice (cache-sized): T = |w| + eta is written into the parameter itself (w
        # stays in the weight copy), T g into the gradient when it is disposable (else into a clone),
        # and the slice's norm is taken while it is in cache; after the global norm, T^2 g and
        # w + s T^2 g (from the copy, over T). No parameter-sized temporary, no separate scaling pass.
        # Vectors (T = 1): w + s g as SAM.
        copies, disposable = self._w_copy, self._grads_disposable
        dt = torch.promote_types(groups[0][2][0].dtype, torch.float32)
        norms: list[Tensor] = []
        parts = []  # per group: ([(p, w slices, T g slices, p slices)], vector params, their grads)
        for group, ps, gs in groups:
            mats, pv, gv = [], [], []
            for p, g in zip(ps, gs):
                if p.ndim < 2:
                    pv.append(p)
                    gv.append(g)
                    continue
                w, x = copies[p], g if disposable else g.clone(memory_format=torch.preserve_format)
                if w.is_contiguous() and x.is_contiguous() and p.is_contiguous():
                    sl = (w.view(-1).split(_SLICE), x.view(-1).split(_SLICE), p.view(-1).split(_SLICE))
                else:
                    sl = ([w], [x], [p])
                for w_s, x_s, p_s in zip(*sl):
                    t = torch.abs(w_s, out=p_s).add_(group["eta"])
                    norms.append(torch.linalg.vector_norm(x_s.mul_(t), dtype=dt))
                mats.append((p, *sl))
            parts.append((mats, pv, gv))
        sq = torch.stack(norms).square().sum() if norms else None
        gv_all = [g for *_, gv in parts for g in gv]
        if gv_all:
            sq = global_sq_norm(gv_all) if sq is None else sq + global_sq_norm(gv_all)
        inv = safe_inverse(self._finish_sq_norm(sq))
        out: list[Perturbation] = []
        for (group, _, _), (mats, pv, gv) in zip(groups, parts):
            scale = inv * group["rho"]
            for _, ws, xs, p_slices in mats:
                for w_s, x_s, p_s in zip(ws, xs, p_slices):
                    torch.addcmul(w_s, x_s.mul_(p_s), scale, out=p_s)  # w + s T^2 g, over T
            if mats:
                out.append(([m[0] for m in mats], None, None))
            if pv:
                out.append((pv, gv, scale))
        return out


class USAM(SAMBase):
    r"""USAM, unnormalised SAM (Andriushchenko & Flammarion 2022, arXiv 2206.06232):
    :math:`e = \rho\, g` (no norm). Spec §2.7; base: any (default AMSGrad, library form).
    """

    def __init__(
        self, params: Iterable[Any], rho: float = 0.05, base: Base = "amsgrad", **base_hparams: Any
    ) -> None:
        validate(rho=rho)
        super().__init__(params, dict(rho=rho), make_base(base, **base_hparams))

    def _perturbation(self, groups: list[Groups]) -> list[Perturbation]:
        return [(ps, gs, group["rho"]) for group, ps, gs in groups]


class VaSSO(SAMBase):
    r"""VaSSO (Li & Giannakis 2023, arXiv 2309.15639): :math:`d \leftarrow (1-\theta) d + \theta g`
    (``d_0 = g_0``), :math:`e = \rho\, d/\|d\|`. Spec §2.8; base: any (default AMSGrad, library form).

    ``d`` is one parameter-sized state per parameter (``state[p]["d"]``, saved). ``theta = 1`` gives SAM's
    ascent step.
    """

    _ascent_state_keys = ("d",)  # first_step updates d: kept for skip_update (fp16 overflow)

    def __init__(
        self,
        params: Iterable[Any],
        rho: float = 0.05,
        theta: float = 0.9,
        base: Base = "amsgrad",
        **base_hparams: Any,
    ) -> None:
        validate(rho=rho, theta=theta)
        super().__init__(params, dict(rho=rho, theta=theta), make_base(base, **base_hparams))

    def _perturbation(self, groups: list[Groups]) -> list[Perturbation]:
        all_d = []
        for group, ps, gs in groups:
            old = [i for i, p in enumerate(ps) if "d" in self.state[p]]
            if old:
                torch._foreach_lerp_(
                    [self.state[ps[i]]["d"] for i in old], [gs[i] for i in old], group["theta"]
                )
            for p, g in zip(ps, gs):
                if "d" not in self.state[p]:
                    self.state[p]["d"] = g.clone(memory_format=torch.preserve_format)  # d_0 = g_0
            all_d.append([self.state[p]["d"] for p in ps])
        inv = safe_inverse(self._norm([d for ds in all_d for d in ds]))
        return [(ps, ds, inv * group["rho"]) for (group, ps, _), ds in zip(groups, all_d)]


class GSAM(_NormalizedSAM):
    r"""GSAM, surrogate-gap guided SAM (Zhuang et al. 2022, arXiv 2203.08065).

    Ascent: :math:`e = \rho_t\, g/\|g\|`. Descent direction :math:`g_p - \alpha g_\perp` with
    :math:`g_p = \nabla L(w+e)` and :math:`g_\perp = g - (\langle g, g_p\rangle / \|g_p\|^2)\, g_p`,
    then the base step (any base; default AMSGrad, library form). Spec §2.10.

    :math:`\rho_t` follows the lr linearly: ``rho_t = rho_min + (rho - rho_min) * lr_t / initial_lr``
    (``rho`` is rho_max, ``initial_lr`` the group's lr at construction, the scheduler's ``initial_lr``;
    the schedules decay to lr_min = 0). The current value is kept in ``group["rho_t"]``.
    The ascent gradient g is kept until the descent step: with ``first_step(zero_grad=True)`` the
    gradient tensor itself (``zero_grad`` only drops ``.grad``'s reference; no copy), else a copy in one
    reused parameter-sized buffer.

    Data parallelism (spec §2.4, §2.10). The direction mixes g and g_p, so both must come from the
    same examples, or the devices take different steps and the replicas drift apart (measured: 4e-2
    after 4 updates on 2 processes when the all-reduced g_p met each device's own g). Two consistent
    forms, chosen by the driver (:class:`adasam_glue.step.UpdateStep`):

    * global ascent (``sync_ascent=true``): g and g_p are both all-reduced; the direction is the one of
      the whole batch on every device (equals the single-device update);
    * per-device ascent (default): as the official GSAM code (``maybe_no_sync`` around both passes,
      ``gradient_decompose`` on each device, then ``_sync_grad``), each device decomposes its *own* g_p
      against its own g and the directions are averaged, through :attr:`grad_mean_hook`, an in-place
      mean over the processes (``reduces_descent_grad``: the driver runs the descent pass without
      DDP's all-reduce and sets the hook). Still one gradient all-reduce per update, and the
      direction is the mean of the per-device GSAM directions, as m-sharpness SAM is the mean of the
      per-device SAM gradients. (All-reducing g as well would cost a second parameter-sized
      all-reduce and is ``sync_ascent=true`` in all but name.) Clipping, when set, acts on each
      device's g_p before the decomposition, as it acts on g_p in the single-device case (§2.1).
    """

    reduces_descent_grad = True

    def __init__(
        self,
        params: Iterable[Any],
        rho: float = 0.05,
        rho_min: float = 0.0,
        alpha: float = 0.4,
        base: Base = "amsgrad",
        **base_hparams: Any,
    ) -> None:
        validate(rho=rho, rho_min=rho_min, alpha=alpha)
        if rho_min > rho:
            raise ValueError(f"rho_min must be <= rho (rho_max = {rho!r}), got {rho_min!r}")
        super().__init__(params, dict(rho=rho, rho_min=rho_min, alpha=alpha), make_base(base, **base_hparams))
        for group in self.param_groups:
            group.setdefault("initial_lr", group["lr"])
            group.setdefault("rho_t", group["rho"])
        self._g_copy: dict[Tensor, Tensor] = {}  # reused copies (zero_grad=False, or view gradients)
        self._g_kept: dict[Tensor, Tensor] = {}  # the ascent gradient of each param, until second_step

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        if "lr" in param_group:
            param_group.setdefault("initial_lr", param_group["lr"])
            param_group.setdefault("rho_t", param_group["rho"])

    def _rho(self, group: dict[str, Any]) -> float:
        lr, lr_max = float(group["lr"]), float(group["initial_lr"])
        frac = lr / lr_max if lr_max > 0 else 1.0
        group["rho_t"] = group["rho_min"] + (group["rho"] - group["rho_min"]) * frac
        return group["rho_t"]

    def _perturbation(self, groups: list[Groups]) -> list[Perturbation]:
        kept: dict[Tensor, Tensor] = {}
        copy_ps, copy_gs = [], []
        for _, ps, gs in groups:
            for p, g in zip(ps, gs):
                # a gradient that is a view (DDP gradient_as_bucket_view) may be refilled in place
                if self._grads_disposable and g._base is None:
                    kept[p] = g
                else:
                    copy_ps.append(p)
                    copy_gs.append(g)
        if copy_ps:
            bufs = []
            for p in copy_ps:
                b = self._g_copy.get(p)
                if b is None or b.shape != p.shape or b.dtype != p.dtype or b.device != p.device:
                    b = self._g_copy[p] = torch.empty_like(p, memory_format=torch.preserve_format)
                bufs.append(b)
                kept[p] = b
            torch._foreach_copy_(bufs, copy_gs)
        self._g_kept = kept
        return super()._perturbation(groups)  # reads g, does not modify it

    def _abandon(self) -> None:
        self._g_kept = {}

    def _descent_grad(self, groups: list[Groups]) -> None:
        self._decompose(groups)
        if self.grad_mean_hook is not None:  # per-device directions -> their mean (class docstring)
            self.grad_mean_hook([g for _, _, gps in groups for g in gps])

    def _decompose(self, groups: list[Groups]) -> None:
        """``g_p <- (1 + alpha c) g_p - alpha g`` in place, ``c = <g, g_p> / ||g_p||^2`` (spec §2.10)."""
        kept, self._g_kept = self._g_kept, {}
        pairs = []  # (alpha, g_p list, g list) per group
        for group, ps, gps in groups:
            keep = [i for i, p in enumerate(ps) if p in kept]
            if keep:
                pairs.append((group["alpha"], [gps[i] for i in keep], [kept[ps[i]] for i in keep]))
        if not pairs:
            return
        dt = torch.promote_types(pairs[0][1][0].dtype, torch.float32)
        # <g, g_p> and ||g_p||^2 (fp32 dot products) over cache-sized slices: g_p is read from memory once
        inner, sq = [], []
        for _, gps, gs in pairs:
            for a, b in zip(gs, gps):
                a, b = a.reshape(-1).to(dt), b.reshape(-1).to(dt)
                for x, y in zip(a.split(_SLICE), b.split(_SLICE)):
                    inner.append(torch.vdot(x, y))
                    sq.append(torch.vdot(y, y))
        sq_norm = torch.stack(sq).sum()
        coef = torch.stack(inner).sum() * safe_inverse(sq_norm)  # <g, g_p> / ||g_p||^2
        for alpha, gps, gs in pairs:
            # g_p - alpha * (g - coef g_p) = (1 + alpha coef) g_p - alpha g
            c = 1 + alpha * coef
            torch._foreach_mul_(gps, c)
            torch._foreach_add_(gps, gs, alpha=-alpha)


class RSAM(_NormalizedSAM):
    r"""RSAM, random-smoothing SAM (Liu et al., NeurIPS 2022, "Random Sharpness-Aware Minimization").

    :meth:`prepare_ascent` moves w to :math:`w + \delta_0`, :math:`\delta_0 \sim N(0, \sigma^2 s^2)` with
    the per-tensor scale :math:`s = \|w\|/\sqrt{n}` (the tensor's RMS: our "per filter/layer" choice;
    zero tensors get no noise). The ascent gradient :math:`\tilde g` is taken there; :meth:`first_step`
    restores w and applies :math:`e = \rho\, \tilde g/\|\tilde g\|`; descent at :math:`w + e`, the base step
    (any base; default AMSGrad, library form). Spec §2.9.

    Noise: one ``torch.randn(total)`` per update from the optimizer's own generator (on the parameters'
    device, seeded by ``seed``; its state is saved in ``state_dict``), split over the trainable
    parameters in param-group order, drawn into one reused buffer (``_noise``; a fresh parameter-sized
    tensor per update costs its page faults on CPU). Without ``prepare_ascent`` the update is SAM's.
    """

    def __init__(
        self,
        params: Iterable[Any],
        rho: float = 0.05,
        sigma: float = 0.01,
        seed: int | None = None,
        base: Base = "amsgrad",
        **base_hparams: Any,
    ) -> None:
        validate(rho=rho, sigma=sigma)
        super().__init__(params, dict(rho=rho, sigma=sigma), make_base(base, **base_hparams), seed=seed)
        self._noise: dict[str, Tensor] = {}  # {"z": the reused randn buffer}

    @torch.no_grad()
    def _prepare_ascent(self) -> None:
        if self._phase is not None:
            raise RuntimeError("prepare_ascent() called again before second_step()")
        params, sigmas = [], []
        for group in self.param_groups:
            for p in group["params"]:
                if p.requires_grad:
                    params.append(p)
                    sigmas.append(group["sigma"])
        self._save_weights(params)
        self._phase = "prepared"
        if not params or not any(sigmas):
            return
        numels = [p.numel() for p in params]
        norms = torch.stack(torch._foreach_norm(params))
        scale = norms * torch.tensor(
            [s / math.sqrt(n) for s, n in zip(sigmas, numels)], dtype=norms.dtype, device=norms.device
        )
        dev, dtype, total = params[0].device, params[0].dtype, sum(numels)
        z = self._noise.get("z")
        if z is None or z.numel() != total or z.dtype != dtype or z.device != dev:
            z = self._noise["z"] = torch.empty(total, device=dev, dtype=dtype)
        torch.randn(total, generator=self._generator(dev), device=dev, dtype=dtype, out=z)
        noise = [c.view_as(p) for c, p in zip(z.split(numels), params)]
        if dev.type == "cpu":  # w + s z in one pass per tensor (no separate scaling of z)
            for p, c, sc in zip(params, noise, scale.unbind()):
                p.addcmul_(c, sc)
        else:
            torch._foreach_mul_(noise, list(scale.unbind()))
            torch._foreach_add_(params, noise)

    # first_step: w + e is written from the weight copy over the noisy weights (SAMBase), which also
    # takes them back to w; parameters without a gradient are restored from the copy.


class ESAM(_NormalizedSAM):
    r"""ESAM (Du et al. 2022, arXiv 2110.03141): stochastic weight perturbation (SWP) and
    sharpness-sensitive data selection (SDS). Spec §2.11; base: any (default AMSGrad, library form).

    Ascent: each parameter tensor is perturbed with probability ``beta``,
    :math:`e_i = m_i\, \rho\, g_i / (\beta \|g\|)`, :math:`m_i \sim \mathrm{Bernoulli}(\beta)`
    (``||g||`` over all gradients; one ``torch.rand(n_tensors)`` per update from the optimizer's CPU
    generator, saved in ``state_dict``). The full ascent gradient is still computed (the official
    code's compute saving from skipping unperturbed tensors' gradients is not reproduced).
    Descent: :meth:`descent_loss` averages the ``round(gamma * B)`` samples (at least 1) with the largest
    loss increase ``L_i(w+e) - L_i(w)``. Under accumulation the selection is over the update's whole
    (per-device) batch, through :meth:`descent_weights` (the driver's no-grad forward over all
    micro-batches, :class:`adasam_glue.step.UpdateStep`), never per micro-batch.
    """

    def __init__(
        self,
        params: Iterable[Any],
        rho: float = 0.05,
        beta: float = 0.6,
        gamma: float = 0.5,
        seed: int | None = None,
        base: Base = "amsgrad",
        **base_hparams: Any,
    ) -> None:
        validate(rho=rho, beta=beta, gamma=gamma)
        super().__init__(
            params, dict(rho=rho, beta=beta, gamma=gamma), make_base(base, **base_hparams), seed=seed
        )

    def _perturbation(self, groups: list[Groups]) -> list[Perturbation]:
        inv = safe_inverse(self._norm([g for _, _, gs in groups for g in gs]))
        u = torch.rand(
            sum(len(ps) for _, ps, _ in groups), generator=self._generator("cpu"), dtype=torch.float32
        ).tolist()
        out, k = [], 0
        for group, ps, gs in groups:
            keep = [i for i in range(len(ps)) if u[k + i] < group["beta"]]
            k += len(ps)
            if keep:
                scale = inv * (group["rho"] / group["beta"])
                out.append(([ps[i] for i in keep], [gs[i] for i in keep], scale))
        return out

    def _selected(self, ascent_losses: Tensor, descent_losses: Tensor) -> Tensor | None:
        """Indices of the ``round(gamma B)`` samples with the largest increase; ``None``: all of them."""
        if descent_losses.ndim != 1 or ascent_losses.shape != descent_losses.shape:
            raise ValueError(
                "ESAM needs per-sample losses of equal shape [B]: got ascent "
                f"{tuple(ascent_losses.shape)} and descent {tuple(descent_losses.shape)}"
            )
        b = descent_losses.numel()
        k = max(1, min(b, int(self.param_groups[0]["gamma"] * b + 0.5)))
        if k == b:
            return None
        increase = descent_losses.detach() - ascent_losses.detach()
        return torch.topk(increase, k).indices

    def descent_loss(self, ascent_losses: Tensor, descent_losses: Tensor) -> Tensor:
        idx = self._selected(ascent_losses, descent_losses)
        return descent_losses.mean() if idx is None else descent_losses[idx].mean()

    def descent_weights(self, ascent_losses: Tensor, descent_losses: Tensor) -> Tensor:
        """``1/k`` on the selected samples, 0 elsewhere: the selection over the update's whole batch.

        Under gradient accumulation the driver calls this once with the losses of all micro-batches
        (the descent losses from a no-grad forward at w + e), so k micro-batches select exactly the
        samples one batch k times the size would (spec §2.3, §2.11).
        """
        idx = self._selected(ascent_losses, descent_losses)
        if idx is None:
            return super().descent_weights(ascent_losses, descent_losses)
        w = torch.zeros_like(descent_losses, dtype=torch.float32)
        return w.index_fill_(0, idx, 1.0 / idx.numel())
