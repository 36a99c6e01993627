"""Generic tests every registered optimizer gets (timm style): state_dict round trip, convergence on a
separable problem, zero gradients, shared param_groups, the two-pass protocol, bad input, conf/optim."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

# tests/ as a package (tests/__init__.py) or as a plain folder on sys.path; _fp64 is an autouse fixture
try:
    from tests.test_optim import (  # noqa: F401
        CASES,
        IDS,
        SCHED,
        TWO_PASS,
        TWO_PASS_IDS,
        _fp64,
        batches,
        groups_of,
        hp_for,
        init_weights,
        per_sample_loss,
        run_optimizer,
        update,
    )
except ImportError:  # pragma: no cover
    from test_optim import (  # type: ignore[no-redef]  # noqa: F401
        CASES,
        IDS,
        SCHED,
        TWO_PASS,
        TWO_PASS_IDS,
        _fp64,
        batches,
        groups_of,
        hp_for,
        init_weights,
        per_sample_loss,
        run_optimizer,
        update,
    )

from adasam_glue.optim import OPTIMIZERS, SAMBase, build_optimizer, get_optim_info
from adasam_glue.optim.perturbation import global_sq_norm

CONF = Path(__file__).resolve().parent.parent / "conf" / "optim"


def _fresh(name, form, hp, weights, seed=1234):
    torch.manual_seed(seed)  # a different global stream: the loaded RNG state must be what counts
    params = [torch.nn.Parameter(w.clone()) for w in weights]
    opt = build_optimizer(name, groups_of(params), **hp, **form)
    return params, opt, torch.optim.lr_scheduler.LambdaLR(opt, SCHED)


# ----------------------------------------------------------------------------- state_dict
@pytest.mark.parametrize(("name", "form"), CASES, ids=IDS)
def test_state_dict_round_trip_continues_bit_exactly(name, form):
    hp, data = hp_for(name, form), batches(6, seed=3)
    params, opt, sched = _fresh(name, form, hp, init_weights(), seed=0)
    run_optimizer(name, form, hp, data=data[:3], opt_and_params=(params, opt, sched))
    buf = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "sched": sched.state_dict(), "w": [p.detach() for p in params]}, buf)
    run_optimizer(name, form, hp, data=data[3:], opt_and_params=(params, opt, sched))

    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)  # a checkpoint loads without unpickling code
    params2, opt2, sched2 = _fresh(name, form, hp, ckpt["w"])
    opt2.load_state_dict(ckpt["opt"])
    sched2.load_state_dict(ckpt["sched"])
    if isinstance(opt2, SAMBase) and opt2.base_optimizer is not None:
        assert opt2.param_groups is opt2.base_optimizer.param_groups
    run_optimizer(name, form, hp, data=data[3:], opt_and_params=(params2, opt2, sched2))
    for a, b in zip(params, params2):
        assert torch.equal(a, b)
    # and the state itself matches (moments, VaSSO d, LightSAM accumulators, RNG)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1.keys() == s2.keys()
    flat1 = [t for st in s1["state"].values() for t in st.values() if torch.is_tensor(t)]
    flat2 = [t for st in s2["state"].values() for t in st.values() if torch.is_tensor(t)]
    assert len(flat1) == len(flat2) and all(torch.equal(x, y) for x, y in zip(flat1, flat2))


# ----------------------------------------------------------------------------- behaviour
def separable(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g)
    y = (x @ torch.tensor([1.5, -1.0]) + 0.3 > 0).double()
    return x, y


@pytest.mark.parametrize(("name", "form"), CASES, ids=IDS)
def test_lowers_loss_on_separable_problem(name, form):
    x, y = separable()
    w, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(()))
    hp = dict(hp_for(name, form), lr=0.5 if OPTIMIZERS[name].base_of(form) in ("sgd", None) else 0.1)
    opt = build_optimizer(name, [{"params": [w]}, {"params": [b], "weight_decay": 0.0}], **hp, **form)
    bce = lambda: torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y, reduction="none")
    first = bce().mean().item()
    for _ in range(30):
        opt.zero_grad()
        if isinstance(opt, SAMBase):
            opt.prepare_ascent()
            a = bce()
            a.mean().backward()
            opt.first_step()
            opt.descent_loss(a.detach(), bce()).backward()
            opt.second_step()
        else:
            bce().mean().backward()
            opt.step()
    assert bce().mean().item() < 0.5 * first


@pytest.mark.parametrize(("name", "form"), CASES, ids=IDS)
def test_zero_gradient_gives_no_nan(name, form):
    """||g|| = 0: no perturbation and no NaN; without weight decay the weights do not move at all."""
    params = [torch.nn.Parameter(w.clone()) for w in init_weights()]
    opt = build_optimizer(name, params, **dict(hp_for(name, form), weight_decay=0.0), **form)
    zero_loss = lambda: sum((p * 0).sum() for p in params)
    for _ in range(2):
        opt.zero_grad()
        if isinstance(opt, SAMBase):
            opt.prepare_ascent()
            zero_loss().backward()
            opt.first_step()  # e = 0 (RSAM: its w + delta_0 is undone too)
            for p, w in zip(params, init_weights()):
                assert torch.equal(p.detach(), w)
            zero_loss().backward()
            opt.second_step()
        else:
            zero_loss().backward()
            opt.step()
    for p, w in zip(params, init_weights()):
        assert torch.isfinite(p).all()
        assert torch.equal(p.detach(), w)


@pytest.mark.parametrize(("name", "form"), TWO_PASS, ids=TWO_PASS_IDS)
def test_param_groups_shared_with_base(name, form):
    params = [torch.nn.Parameter(w.clone()) for w in init_weights()]
    opt = build_optimizer(name, groups_of(params), **hp_for(name, form), **form)
    base = opt.base_optimizer or opt  # LightSAM does its own descent with its own groups
    assert opt.param_groups is base.param_groups
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5**t)
    update(opt, params, *batches(1)[0])
    sched.step()
    assert [g["lr"] for g in base.param_groups] == [hp_for(name, form)["lr"] * 0.5] * 2
    assert [g["weight_decay"] for g in base.param_groups] == [hp_for(name, form)["weight_decay"], 0.0]
    opt.load_state_dict(opt.state_dict())
    assert (
        opt.param_groups is base.param_groups
        if opt.base_optimizer is None
        else opt.base_optimizer.param_groups
    )
    extra = torch.nn.Parameter(torch.zeros(2))
    opt.add_param_group({"params": [extra]})
    assert opt.param_groups[-1]["params"] == [extra] and "rho" in opt.param_groups[-1]
    if opt.base_optimizer is not None:
        assert opt.param_groups is opt.base_optimizer.param_groups and "lr" in opt.param_groups[-1]


@pytest.mark.parametrize(("name", "form"), TWO_PASS, ids=TWO_PASS_IDS)
def test_step_closure_equals_explicit_protocol(name, form):
    a = [torch.nn.Parameter(w.clone()) for w in init_weights()]
    b = [torch.nn.Parameter(w.clone()) for w in init_weights()]
    oa = build_optimizer(name, groups_of(a), **hp_for(name, form), **form)
    ob = build_optimizer(name, groups_of(b), **hp_for(name, form), **form)
    for x, y in batches(3):

        def closure(x=x, y=y):  # forward + backward, no zero_grad (step does it), returns the loss
            loss = per_sample_loss(a, x, y).mean()
            loss.backward()
            return loss

        loss = oa.step(closure)
        assert torch.isfinite(loss)
        # step(closure) uses the plain mean in the descent pass (no ESAM selection)
        update(ob, b, x, y, descent_loss=lambda _, d: d.mean())
    for p, q in zip(a, b):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(("name", "form"), TWO_PASS, ids=TWO_PASS_IDS)
def test_two_pass_protocol_misuse_raises(name, form):
    params = [torch.nn.Parameter(w.clone()) for w in init_weights()]
    opt = build_optimizer(name, params, **hp_for(name, form), **form)
    with pytest.raises(RuntimeError, match=r"first_step\(\).*second_step\(\).*closure"):
        opt.step()
    with pytest.raises(RuntimeError, match="without a preceding first_step"):
        opt.second_step()


@pytest.mark.parametrize(("name", "form"), CASES, ids=IDS)
def test_registry_flags_match_classes(name, form):
    from adasam_glue.optim import BASES, optimizer_values

    info = OPTIMIZERS[name]
    opt = build_optimizer(name, [torch.nn.Parameter(torch.zeros(2))], **form)
    assert isinstance(opt, info.cls)
    assert isinstance(opt, SAMBase) == info.two_pass, name
    assert info.needs_per_sample_loss == (name == "esam")
    assert get_optim_info(name) is info
    base = "amsgrad_paper" if form.get("form") == "paper" else info.base_of(form)
    built = opt.base_optimizer if info.two_pass else opt
    if info.own_descent:
        assert built is None
    else:  # the base the record says is the base built (a fresh one of its factory: same class, settings)
        values = optimizer_values(name, **form)  # the YAML's values (build_optimizer's defaults)
        ref = BASES[base].factory(
            [torch.nn.Parameter(torch.zeros(2))], **{k: v for k, v in values.items() if k in BASES[base].keys}
        )
        assert type(built) is type(ref)
        own = {"params", "initial_lr", "rho_t", *info.keys}  # the perturbation's keys, from its record
        keep = lambda g: {k: v for k, v in g.items() if k not in own}
        assert keep(built.param_groups[0]) == keep(ref.param_groups[0])


def test_esam_descent_loss_selects_largest_increase():
    opt = build_optimizer("esam", [torch.nn.Parameter(torch.zeros(2))], gamma=0.5)
    a = torch.tensor([1.0, 1.0, 1.0, 1.0])
    d = torch.tensor([1.5, 0.9, 3.0, 1.1], requires_grad=True)
    loss = opt.descent_loss(a, d)
    assert loss.item() == pytest.approx((1.5 + 3.0) / 2)
    loss.backward()
    assert d.grad.tolist() == [0.5, 0.0, 0.5, 0.0]
    assert SAMBase.descent_loss(opt, a, d).item() == pytest.approx(d.mean().item())
    with pytest.raises(ValueError, match="per-sample"):
        opt.descent_loss(a, d.mean())


def test_norm_is_fp32_for_bf16_and_hook_sees_one_reduction():
    g = [torch.ones(3, dtype=torch.bfloat16), torch.ones(2, 2, dtype=torch.bfloat16)]
    assert global_sq_norm(g).dtype == torch.float32 and global_sq_norm(g).item() == 7.0
    params = [torch.nn.Parameter(w.clone()) for w in init_weights()]
    opt = build_optimizer("sam", params, **hp_for("sam"))
    calls = []
    opt.sq_norm_hook = lambda sq: calls.append(1) or sq * 4  # e.g. an all-reduce over 4 equal ranks
    per_sample_loss(params, *batches(1)[0]).mean().backward()
    grads = [p.grad.clone() for p in params]
    opt.first_step()
    n = sum(float((g * g).sum()) for g in grads) ** 0.5
    for p, w, g in zip(params, init_weights(), grads):
        torch.testing.assert_close(p.detach() - w, hp_for("sam")["rho"] * g / (2 * n))
    assert calls == [1]
    buf = [opt._w_copy[p].data_ptr() for p in params]
    per_sample_loss(params, *batches(1)[0]).mean().backward()
    opt.second_step()
    update(opt, params, *batches(1)[0])
    assert [opt._w_copy[p].data_ptr() for p in params] == buf  # one reused copy, not one per step


def test_bf16_params_two_pass_restore_exact():
    lin = torch.nn.Linear(4, 3).to(torch.bfloat16)
    w0 = [p.detach().clone() for p in lin.parameters()]
    opt = build_optimizer("adasam", lin.parameters(), lr=1e-2)
    x = torch.randn(5, 4, dtype=torch.bfloat16)
    lin(x).float().pow(2).mean().backward()
    opt.first_step()
    assert any(not torch.equal(p, w) for p, w in zip(lin.parameters(), w0))
    lin(x).float().pow(2).mean().backward()
    with torch.no_grad():
        opt._restore_weights()  # what second_step does first: the copy restores bf16 weights bit-exactly
    assert all(torch.equal(p, w) for p, w in zip(lin.parameters(), w0))


# ----------------------------------------------------------------------------- bad input
def _p():
    return [torch.nn.Parameter(torch.zeros(2))]


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="unknown optimizer 'adam'.*adasam.*lightsam"):
        build_optimizer("adam", _p())


def test_unknown_key_names_key_and_valid_keys():
    with pytest.raises(
        ValueError, match="'theta' for optimizer 'adasam'; valid keys: beta1, beta2, eps, form"
    ):
        build_optimizer("adasam", _p(), theta=0.5)
    with pytest.raises(
        ValueError, match="'beta2' for optimizer 'vasso' on base 'sgd'; valid keys: base, beta1, lr, nesterov"
    ):
        build_optimizer("vasso", _p(), base="sgd", beta2=0.98)


@pytest.mark.parametrize(
    ("name", "msg"),
    [
        ("lightsam", "'lightsam' replaces the descent step itself"),
        ("adasam", "'adasam' is a preset with its base fixed"),
        ("sgd", "'sgd' is a base optimizer itself"),
    ],
)
def test_base_is_refused_where_the_record_takes_none(name, msg):
    with pytest.raises(ValueError, match=msg + ".*takes no 'base'.*sam, asam, usam, gsam, vasso, rsam, esam"):
        build_optimizer(name, _p(), base="sgd")


def test_sam_base_is_sgd_or_adamw():
    """SAM's perturbation on AMSGrad is ``adasam``: ``sam`` takes the two other bases."""
    with pytest.raises(ValueError, match=r"optimizer 'sam': .*'sgd', 'adamw'.*'amsgrad'"):
        build_optimizer("sam", _p(), base="amsgrad")
    assert type(build_optimizer("sam", _p(), base="adamw").base_optimizer) is torch.optim.AdamW


@pytest.mark.parametrize(
    ("name", "hp", "msg"),
    [
        ("adasam", dict(rho=-1), "rho must be >= 0, got -1"),
        ("sgd", dict(lr=0), "lr must be > 0, got 0"),
        ("amsgrad", dict(beta1=1.0), r"beta1 must be in \[0, 1\), got 1.0"),
        ("amsgrad", dict(beta2=1.0), r"beta2 must be in \[0, 1\) for the library"),
        ("adasam", dict(beta2=1.0), r"beta2 must be in \[0, 1\) for the library"),
        ("adasam", dict(beta2=1.5, form="paper"), r"beta2 must be in \[0, 1\], got 1.5"),
        ("adasam", dict(eps=0.0, form="paper"), "eps must be > 0"),
        ("adasam", dict(form="fairseq"), "form must be one of 'library', 'paper', got 'fairseq'"),
        ("lightsam", dict(form="sgd"), "form must be one of 'adagrad_norm', 'adagrad', 'adam'"),
        ("adasam", dict(rho="0.1"), "rho must be a real number, got '0.1'"),
        ("asam", dict(eta=-0.1), "eta must be >= 0"),
        ("gsam", dict(rho=0.01, rho_min=0.05), r"rho_min must be <= rho \(rho_max = 0.01\), got 0.05"),
        ("gsam", dict(alpha=1.0), r"alpha must be in \[0, 1\)"),
        ("vasso", dict(theta=0.0), r"theta must be in \(0, 1\]"),
        ("rsam", dict(sigma=-1.0), "sigma must be >= 0"),
        ("esam", dict(beta=0.0), r"beta must be in \(0, 1\]"),
        ("esam", dict(gamma=1.5), r"gamma must be in \(0, 1\], got 1.5"),
        ("sgd", dict(nesterov="yes"), "nesterov must be a bool"),
        ("sam", dict(nesterov=True, beta1=0.0), "nesterov=True needs momentum"),
        ("usam", dict(weight_decay=-0.1), "weight_decay must be >= 0"),
        ("lightsam", dict(eps=0.0), "eps must be > 0 for LightSAM"),
        ("vasso", dict(base="lion"), "base must be one of 'sgd', 'amsgrad', 'adamw', got 'lion'"),
        ("vasso", dict(base="amsgrad_paper"), "base must be one of 'sgd', 'amsgrad', 'adamw'"),
        ("gsam", dict(base="adamw", beta2=1.0), r"beta2 must be in \[0, 1\) for AdamW"),
        ("esam", dict(base="sgd", nesterov=True, beta1=0.0), "nesterov=True needs momentum"),
    ],
)
def test_bad_values_name_key_value_and_range(name, hp, msg):
    with pytest.raises(ValueError, match=msg) as err:
        build_optimizer(name, _p(), **hp)
    assert f"optimizer {name!r}" in str(err.value)


def test_beta2_one_accepted_for_paper_form_and_none_means_default():
    opt = build_optimizer("adasam", _p(), beta2=1.0, form="paper", rho=None)
    assert opt.param_groups[0]["betas"] == (0.9, 1.0)
    assert opt.param_groups[0]["rho"] == get_optim_info("adasam").defaults["rho"]


def test_theta_one_is_accepted():
    """VaSSO's documented theta = 1 (d = s: SAM's ascent, spec §2.8) is in range."""
    assert build_optimizer("vasso", _p(), theta=1.0).param_groups[0]["theta"] == 1.0


def test_direct_construction_validates_too():
    from adasam_glue.optim import AdaSAM, VaSSO

    with pytest.raises(ValueError, match="rho must be >= 0, got -1"):
        AdaSAM(_p(), rho=-1)
    with pytest.raises(ValueError, match="base 'sgd' takes no 'beta2'; valid keys: lr, beta1, weight_decay"):
        VaSSO(_p(), base="sgd", beta2=0.9)


def test_direct_construction_takes_any_optimizer_class_as_base():
    """``base=`` may be an optimizer class with its own argument names, as davda54/sam's base_optimizer."""
    from adasam_glue.optim import VaSSO

    opt = VaSSO(_p(), theta=0.5, base=torch.optim.Adam, lr=0.1, betas=(0.8, 0.9))
    assert type(opt.base_optimizer) is torch.optim.Adam and opt.param_groups[0]["betas"] == (0.8, 0.9)


# ----------------------------------------------------------------------------- conf/optim
@pytest.mark.parametrize(("name", "form"), CASES, ids=IDS)
def test_conf_optim_yaml_matches_registry(name, form):
    """One ``conf/optim/<name>.yaml`` per record: its keys are the record's on every base it takes, its
    values build (the YAML is the only place they live: no equality with Python defaults to keep)."""
    from tests.conftest import compose_cfg

    assert {f.stem for f in CONF.glob("*.yaml")} == set(OPTIMIZERS), "one conf/optim/<name>.yaml per record"
    info = OPTIMIZERS[name]
    raw = OmegaConf.to_container(OmegaConf.load(CONF / f"{name}.yaml"))
    assert raw["name"] == name and info.two_pass == ("sync_ascent" in raw)
    # a perturbation's YAML names its base (and only theirs; sam's does not: null is SGD, its old identity)
    assert ("base" in raw) == (bool(info.bases) and name != "sam")
    if "base" in raw:
        assert raw["base"] == info.base
    cfg = OmegaConf.to_container(
        compose_cfg(f"optim={name}", *(f"optim.{k}={v}" for k, v in form.items())).optim, resolve=True
    )
    values = {k: v for k, v in cfg.items() if v is not None and k not in ("name", "sync_ascent")}
    base = info.base_of(values)
    assert set(values) == set(info.hparams_for(base)) - {"nesterov"}, "every key the base takes is set"
    build_optimizer(name, _p(), **values)
