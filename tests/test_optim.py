"""Every registered optimizer, on every base it takes, against a plain per-tensor re-derivation of its
spec equation.

The references below are written from ``docs/algorithms.md`` (§1 base optimizers and AdaSAM Algorithm 1,
§2 SAM variants) in plain per-tensor python on fp64 tensors, independent of the ``_foreach`` code they
check. Each test is parametrised over the registry (``OptimInfo.forms()``: its forms and its bases): a
new record without a reference here fails, pointing here. Test values come from :func:`hp_for`: every
key explicit, a record without an ``OWN_HP`` entry taking its Python API defaults.
"""

from __future__ import annotations

import math

import pytest
import torch

from adasam_glue.optim import OPTIMIZERS, SAMBase, build_optimizer

CASES = [(name, form) for name, info in OPTIMIZERS.items() for form in info.forms()]
IDS = [name + "".join(f"-{v}" for v in form.values()) for name, form in CASES]
TWO_PASS = [(n, f) for n, f in CASES if OPTIMIZERS[n].two_pass]
TWO_PASS_IDS = [name + "".join(f"-{v}" for v in form.values()) for name, form in TWO_PASS]

ADAPT = dict(lr=0.01, beta1=0.9, beta2=0.98, eps=1e-3, weight_decay=0.1)
#: test values of each base's keys
BASE_HP = {
    "sgd": dict(lr=0.05, beta1=0.9, weight_decay=0.1, nesterov=False),
    "amsgrad": ADAPT,
    "adamw": ADAPT,
}
#: test values of a record's own keys where its Python API defaults would test less (rho_min = 0 ...)
OWN_HP = {
    "sam": dict(rho=0.05),
    "adasam": dict(rho=0.05),
    "gsam": dict(rho=0.05, rho_min=0.01, alpha=0.3),
    "vasso": dict(rho=0.05, theta=0.4),
    "rsam": dict(rho=0.05, sigma=0.1),
    "lightsam": dict(ADAPT, rho=0.05),
}


def hp_for(name: str, form: dict | None = None) -> dict:
    """Every key of ``name`` on the form's base, explicit (the references need no defaults); the choice
    keys (``form``, ``base``) come with the form. A new record needs no entry here."""
    info = OPTIMIZERS[name]
    base = info.base_of(form)
    pool = {**info.defaults_for(base), **BASE_HP.get(base, {}), **OWN_HP.get(name, {})}
    return {k: pool[k] for k in info.hparams_for(base) if k not in info.choices and k != "base"}


STEPS = 4
SCHED = lambda t: 1.0 / (1.0 + 0.3 * t)  # lr factor after t updates (LambdaLR on the wrapper)


@pytest.fixture(autouse=True)
def _fp64():
    """fp64 for tight tolerances, restored afterwards (never set at import: it would leak to other tests)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


# ----------------------------------------------------------------------------- tiny model
def init_weights(seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    w1, b1 = torch.randn(5, 4, generator=g), 0.1 * torch.randn(5, generator=g)
    w2, b2 = torch.randn(3, 5, generator=g), 0.1 * torch.randn(3, generator=g)
    return [w1, b1, w2, b2]


def batches(n: int, seed: int = 1, b: int = 8) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(b, 4, generator=g), torch.randint(0, 3, (b,), generator=g)) for _ in range(n)]


def per_sample_loss(ws, x, y):
    w1, b1, w2, b2 = ws
    out = torch.tanh(x @ w1.T + b1) @ w2.T + b2
    return torch.nn.functional.cross_entropy(out, y, reduction="none")


def groups_of(params):
    """The trainer's two groups: matrices with the default weight decay, biases with weight_decay=0."""
    w1, b1, w2, b2 = params
    return [{"params": [w1, w2]}, {"params": [b1, b2], "weight_decay": 0.0}]


GROUP_ORDER = [0, 2, 1, 3]  # parameter order across the groups (RNG draws follow it)
WD_MASK = [1.0, 0.0, 1.0, 0.0]


def run_optimizer(name, form, hp, n_steps=STEPS, weights=None, data=None, opt_and_params=None):
    """Drive the real optimizer with the trainer protocol; returns (params, optimizer, scheduler)."""
    if opt_and_params is None:
        params = [torch.nn.Parameter(w.clone()) for w in (weights or init_weights())]
        opt = build_optimizer(name, groups_of(params), **hp, **form)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, SCHED)
    else:
        params, opt, sched = opt_and_params
    for x, y in data or batches(n_steps):
        update(opt, params, x, y)
        sched.step()
    return params, opt, sched


def update(opt, params, x, y, descent_loss=None):
    opt.zero_grad()
    if isinstance(opt, SAMBase):
        opt.prepare_ascent()
        a = per_sample_loss(params, x, y)
        a.mean().backward()
        opt.first_step(zero_grad=True)
        d = per_sample_loss(params, x, y)
        (descent_loss or opt.descent_loss)(a.detach(), d).backward()
        opt.second_step(zero_grad=True)
    else:
        per_sample_loss(params, x, y).mean().backward()
        opt.step()


# ----------------------------------------------------------------------------- references
def grads_at(ws, x, y, select=None):
    ws = [w.detach().clone().requires_grad_(True) for w in ws]
    losses = per_sample_loss(ws, x, y)
    loss = losses.mean() if select is None else select(losses)
    return losses.detach(), list(torch.autograd.grad(loss, ws))


def norm(ts):
    return math.sqrt(sum(float((t * t).sum()) for t in ts))


def ref_sgd(ws, gs, st, hp, lr):
    for i, (w, g) in enumerate(zip(ws, gs)):
        d = g + hp["weight_decay"] * WD_MASK[i] * w
        st[i] = d.clone() if i not in st else hp["beta1"] * st[i] + d
        ws[i] = w - lr * st[i]


def ref_amsgrad(ws, gs, st, hp, lr, amsgrad=True):
    """torch AdamW(amsgrad=True): bias correction, eps outside the root, v_hat_0 = 0 (False: AdamW)."""
    b1, b2, eps = hp["beta1"], hp["beta2"], hp["eps"]
    st["t"] = t = st.get("t", 0) + 1
    for i, (w, g) in enumerate(zip(ws, gs)):
        m, v, vh = st.get(i, (torch.zeros_like(w),) * 3)
        w = w * (1 - lr * hp["weight_decay"] * WD_MASK[i])
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vh = torch.maximum(vh, v) if amsgrad else v
        ws[i] = w - lr / (1 - b1**t) * m / (vh.sqrt() / math.sqrt(1 - b2**t) + eps)
        st[i] = (m, v, vh)


def ref_amsgrad_paper(ws, gs, st, hp, lr, amsgrad=True):
    """Algorithm 1: no bias correction, v_0 = v_hat_0 = eps^2, x -= lr m / sqrt(v_hat)."""
    b1, b2, eps = hp["beta1"], hp["beta2"], hp["eps"]
    for i, (w, g) in enumerate(zip(ws, gs)):
        m, v, vh = st.get(i, (torch.zeros_like(w), torch.full_like(w, eps**2), torch.full_like(w, eps**2)))
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vh = torch.maximum(vh, v) if amsgrad else v
        ws[i] = w * (1 - lr * hp["weight_decay"] * WD_MASK[i]) - lr * m / vh.sqrt()
        st[i] = (m, v, vh)


def sam_e(gs, rho):
    n = norm(gs)
    return [rho * g / n for g in gs]


def ref_lightsam(form, ws, x, y, st, hp, lr):
    rho, eps, b1, b2 = hp["rho"], hp["eps"], hp["beta1"], hp["beta2"]
    _, s = grads_at(ws, x, y)
    if form == "adagrad_norm":
        st["u"] = st.get("u", eps**2) + norm(s) ** 2
        e = [rho * si / math.sqrt(st["u"]) for si in s]
    elif form == "adagrad":
        st["u"] = [ui + si * si for ui, si in zip(st.get("u", [torch.full_like(w, eps**2) for w in ws]), s)]
        e = [rho * si / ui.sqrt() for si, ui in zip(s, st["u"])]
    else:
        st["r"] = [
            b1 * ri + (1 - b1) * si for ri, si in zip(st.get("r", [torch.zeros_like(w) for w in ws]), s)
        ]
        st["u"] = [
            b2 * ui + (1 - b2) * si * si
            for ui, si in zip(st.get("u", [torch.full_like(w, eps**2) for w in ws]), s)
        ]
        e = [rho * ri / ui.sqrt() for ri, ui in zip(st["r"], st["u"])]
    _, g = grads_at([w + ei for w, ei in zip(ws, e)], x, y)
    ws[:] = [w * (1 - lr * hp["weight_decay"] * WD_MASK[i]) for i, w in enumerate(ws)]
    if form == "adagrad_norm":
        st["v"] = st.get("v", eps**2) + norm(g) ** 2
        ws[:] = [w - lr * gi / math.sqrt(st["v"]) for w, gi in zip(ws, g)]
    elif form == "adagrad":
        st["v"] = [vi + gi * gi for vi, gi in zip(st.get("v", [torch.full_like(w, eps**2) for w in ws]), g)]
        ws[:] = [w - lr * gi / vi.sqrt() for w, gi, vi in zip(ws, g, st["v"])]
    else:
        st["m"] = [
            b1 * mi + (1 - b1) * gi for mi, gi in zip(st.get("m", [torch.zeros_like(w) for w in ws]), g)
        ]
        st["v"] = [
            b2 * vi + (1 - b2) * gi * gi
            for vi, gi in zip(st.get("v", [torch.full_like(w, eps**2) for w in ws]), g)
        ]
        ws[:] = [w - lr * mi / vi.sqrt() for w, mi, vi in zip(ws, st["m"], st["v"])]


#: the descent step of each base (spec §1.1-1.3)
BASE_REF = {
    "sgd": ref_sgd,
    "amsgrad": ref_amsgrad,
    "adamw": lambda *a: ref_amsgrad(*a, amsgrad=False),
    "amsgrad_paper": ref_amsgrad_paper,
}


def reference(name, form, hp, seed=None):
    """The spec's update, per tensor, for STEPS updates under the SCHED learning rate."""
    ws, st, base = init_weights(), {}, {}
    info = OPTIMIZERS[name]
    descent = BASE_REF.get("amsgrad_paper" if form.get("form") == "paper" else info.base_of(form))
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    for t, (x, y) in enumerate(batches(STEPS)):
        lr = hp["lr"] * SCHED(t)
        if name == "lightsam":
            ref_lightsam(form["form"], ws, x, y, st, hp, lr)
            continue
        if not info.two_pass:
            _, g = grads_at(ws, x, y)
            descent(ws, g, base, hp, lr)
            continue
        rho, select, asc = hp["rho"], None, ws
        if name == "rsam":  # delta_0 ~ N(0, sigma^2 rms(w)^2), one randn over the group-ordered params
            z = torch.randn(sum(ws[i].numel() for i in GROUP_ORDER), generator=gen)
            asc, k = list(ws), 0
            for i in GROUP_ORDER:
                n = ws[i].numel()
                asc[i] = ws[i] + hp["sigma"] * norm([ws[i]]) / math.sqrt(n) * z[k : k + n].view_as(ws[i])
                k += n
        a_losses, s = grads_at(asc, x, y)
        if name in ("sam", "adasam", "rsam", "gsam"):
            if name == "gsam":
                rho = hp["rho_min"] + (hp["rho"] - hp["rho_min"]) * lr / hp["lr"]
            e = sam_e(s, rho)
        elif name == "usam":
            e = [rho * si for si in s]
        elif name == "asam":
            tt = [w.abs() + hp["eta"] if w.ndim >= 2 else torch.ones_like(w) for w in ws]
            n = norm([ti * si for ti, si in zip(tt, s)])
            e = [rho * ti * ti * si / n for ti, si in zip(tt, s)]
        elif name == "vasso":
            th = hp["theta"]
            st["d"] = (
                [si.clone() for si in s]
                if "d" not in st
                else [(1 - th) * d + th * si for d, si in zip(st["d"], s)]
            )
            e = sam_e(st["d"], rho)
        elif name == "esam":
            u = torch.rand(4, generator=gen, dtype=torch.float32)
            keep = {GROUP_ORDER[j] for j in range(4) if u[j] < hp["beta"]}
            e = [ei / hp["beta"] if i in keep else torch.zeros_like(ei) for i, ei in enumerate(sam_e(s, rho))]
            k = int(hp["gamma"] * len(y) + 0.5)

            def select(losses, a=a_losses, k=k):
                return losses[torch.topk(losses.detach() - a, k).indices].mean()
        else:
            raise AssertionError(f"no reference for optimizer {name!r}: add one to tests/test_optim.py")
        _, g = grads_at([w + ei for w, ei in zip(ws, e)], x, y, select)
        if name == "gsam":
            coef = sum(float((si * gi).sum()) for si, gi in zip(s, g)) / norm(g) ** 2
            g = [gi - hp["alpha"] * (si - coef * gi) for si, gi in zip(s, g)]
        descent(ws, g, base, hp, lr)
    return ws


@pytest.mark.parametrize(("name", "form"), CASES, ids=IDS)
def test_matches_spec_reference(name, form):
    hp = hp_for(name, form)
    params, opt, _ = run_optimizer(name, form, hp)
    expected = reference(name, form, hp, seed=getattr(opt, "_seed", None))
    for p, w in zip(params, expected):
        torch.testing.assert_close(p.detach(), w, rtol=1e-10, atol=1e-12)
    # the updates are not trivially zero: every tensor moved
    for p, w0 in zip(params, init_weights()):
        assert not torch.equal(p.detach(), w0)


@pytest.mark.parametrize(("name", "form"), CASES, ids=IDS)
def test_test_hparams_cover_every_key(name, form):
    info = OPTIMIZERS[name]
    assert set(hp_for(name, form)) | set(info.choices) | {"base"} >= set(info.hparams_for(info.base_of(form)))
    assert set(OWN_HP) <= set(OPTIMIZERS) and set(BASE_HP) >= set(info.bases)


# ----------------------------------------------------------------------------- pytorch_optimizer
def _drive_pair(ours, theirs, params_a, params_b, n=STEPS, rtol=1e-10, atol=1e-12):
    for x, y in batches(n):
        for opt, ps in ((ours, params_a), (theirs, params_b)):
            opt.zero_grad()
            per_sample_loss(ps, x, y).mean().backward()
            opt.first_step(zero_grad=True)
            per_sample_loss(ps, x, y).mean().backward()
            opt.second_step(zero_grad=True)
    for a, b in zip(params_a, params_b):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=rtol, atol=atol)


#: pytorch_optimizer computes the SAM norm in fp32 even for fp64 gradients (``.float()``), so e agrees to
#: fp32 precision (~1e-7 relative) and the weights to ~1e-9: the tolerance reflects that, not our fp64.
PTO_TOL = dict(rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("beta1", [0.0, 0.9])
def test_sam_equals_pytorch_optimizer_sam_sgd(beta1):
    pytorch_optimizer = pytest.importorskip("pytorch_optimizer")
    a = [torch.nn.Parameter(w) for w in init_weights()]
    b = [torch.nn.Parameter(w) for w in init_weights()]
    ours = build_optimizer("sam", groups_of(a), lr=0.05, beta1=beta1, weight_decay=0.1, rho=0.05)
    theirs = pytorch_optimizer.SAM(
        groups_of(b), torch.optim.SGD, rho=0.05, perturb_eps=0.0, lr=0.05, momentum=beta1, weight_decay=0.1
    )
    _drive_pair(ours, theirs, a, b, **PTO_TOL)


@pytest.mark.parametrize("beta1", [0.0, 0.9])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adasam_equals_pytorch_optimizer_sam_amsgrad(beta1, weight_decay):
    """Library-form AdaSAM == pytorch_optimizer.SAM around torch Adam(amsgrad=True) (AdamW when decayed)."""
    pytorch_optimizer = pytest.importorskip("pytorch_optimizer")
    a = [torch.nn.Parameter(w) for w in init_weights()]
    b = [torch.nn.Parameter(w) for w in init_weights()]
    hp = dict(lr=0.01, eps=1e-3, weight_decay=weight_decay)
    ours = build_optimizer("adasam", groups_of(a), beta1=beta1, beta2=0.98, rho=0.05, form="library", **hp)
    base = torch.optim.AdamW if weight_decay else torch.optim.Adam
    theirs = pytorch_optimizer.SAM(
        groups_of(b), base, rho=0.05, perturb_eps=0.0, betas=(beta1, 0.98), amsgrad=True, **hp
    )
    _drive_pair(ours, theirs, a, b, **PTO_TOL)


# ----------------------------------------------------------------------------- Remark 3.1
@pytest.mark.parametrize("beta1", [0.0, 0.9])
def test_remark31_beta2_one_is_sam_with_constant_preconditioner(beta1):
    """beta2 = 1: v stays at eps^2, so v_hat = eps^2 and x -= lr m / eps with m = (1 - beta1) * SGD's
    momentum buffer: paper-form AdaSAM == SAM(momentum beta1, lr * (1 - beta1) / eps)."""
    lr, eps = 0.01, 0.5
    a = [torch.nn.Parameter(w) for w in init_weights()]
    b = [torch.nn.Parameter(w) for w in init_weights()]
    ada = build_optimizer(
        "adasam", a, lr=lr, beta1=beta1, beta2=1.0, eps=eps, weight_decay=0.0, rho=0.05, form="paper"
    )
    sam = build_optimizer("sam", b, lr=lr * (1 - beta1) / eps, beta1=beta1, weight_decay=0.0, rho=0.05)
    _drive_pair(ada, sam, a, b)
    for p in a:
        assert torch.equal(ada.base_optimizer.state[p]["max_exp_avg_sq"], torch.full_like(p, eps**2))


def test_remark31_dropping_the_max_gives_the_adam_variant():
    """AMSGradPaper(amsgrad=False) is Adam without bias correction (v_hat = v); with the max it differs
    exactly where v decreases, and the max form's v_hat dominates v."""
    from adasam_glue.optim import AMSGradPaper

    hp = dict(beta1=0.9, beta2=0.9, eps=1e-3, weight_decay=0.0)
    runs = {}
    for ams in (True, False):
        ps = [torch.nn.Parameter(w) for w in init_weights()]
        opt = AMSGradPaper(ps, lr=0.01, betas=(0.9, 0.9), eps=1e-3, amsgrad=ams)
        ws, st = init_weights(), {}
        for x, y in batches(6):
            opt.zero_grad()
            per_sample_loss(ps, x, y).mean().backward()
            opt.step()
            _, g = grads_at(ws, x, y)
            ref_amsgrad_paper(ws, g, st, hp, 0.01, amsgrad=ams)
        for p, w in zip(ps, ws):
            torch.testing.assert_close(p.detach(), w, rtol=1e-10, atol=1e-12)
        runs[ams] = (ps, opt)
    assert any(not torch.equal(p, q) for p, q in zip(runs[True][0], runs[False][0]))
    ps, opt = runs[True]
    for p in ps:
        assert (opt.state[p]["max_exp_avg_sq"] >= opt.state[p]["exp_avg_sq"]).all()


def test_remark31_max_inactive_when_v_nondecreasing():
    """Constant gradient (linear loss, |c| >= eps): v_t increases, the max is inactive, both forms agree."""
    from adasam_glue.optim import AMSGradPaper

    c = torch.tensor([0.5, -2.0, 1.0])
    out = []
    for ams in (True, False):
        w = torch.nn.Parameter(torch.zeros(3))
        opt = AMSGradPaper([w], lr=0.1, betas=(0.9, 0.99), eps=1e-3, amsgrad=ams)
        for _ in range(10):
            opt.zero_grad()
            (c * w).sum().backward()
            opt.step()
        out.append(w.detach().clone())
    assert torch.equal(out[0], out[1])


def test_vasso_theta_one_is_sam_ascent():
    """theta = 1: d = g, VaSSO's ascent is SAM's; with the same base it equals library AdaSAM."""
    a = [torch.nn.Parameter(w) for w in init_weights()]
    b = [torch.nn.Parameter(w) for w in init_weights()]
    vasso = build_optimizer("vasso", groups_of(a), **dict(hp_for("vasso"), theta=1.0))
    adasam = build_optimizer("adasam", groups_of(b), **hp_for("adasam"))
    _drive_pair(vasso, adasam, a, b)
