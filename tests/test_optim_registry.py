"""The registry as the one place an optimizer's facts live: perturbation x base, the presets' run identity,
one range table, the YAML's values as build_optimizer's defaults (torch-like signature defaults for the
classes), and a throwaway variant that every reader picks up."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import math
import pickle
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from adasam_glue.cli_help import render_help
from adasam_glue.config import ConfigError, validate_config
from adasam_glue.identity import group_hash, run_identity
from adasam_glue.optim import (
    BASE_CHOICES,
    BASES,
    OPTIMIZERS,
    OptimInfo,
    SAMBase,
    baseline_of,
    build_optimizer,
    register,
)
from adasam_glue.optim.descent import make_base
from adasam_glue.optim.validation import Interval, RangeError, check_interval
from adasam_glue.run_dir import run_params_tag
from tests.conftest import compose_cfg

ROOT = Path(__file__).resolve().parent.parent
PRESETS = ("sgd", "amsgrad", "sam", "adasam")


def _p():
    return [torch.nn.Parameter(torch.zeros(2))]


# ----------------------------------------------------------------------------- the presets are unchanged
#: ``OmegaConf.to_container(compose(optim=<name>).optim)`` before the registry took the base (task=mrpc):
#: the paper's commands and tables depend on these values staying exactly so
PRESET_VALUES = {
    "sgd": {"name": "sgd", "lr": 0.001, "beta1": 0.9, "weight_decay": 0.1, "sync_ascent": False},
    "amsgrad": {
        "name": "amsgrad", "lr": "${task.lr}", "beta1": 0.9, "beta2": 0.98, "eps": 1e-06, "weight_decay": 0.1,
        "sync_ascent": False,
    },
    "sam": {"name": "sam", "lr": 0.001, "beta1": 0.9, "weight_decay": 0.1, "rho": 0.01, "sync_ascent": False},
    "adasam": {
        "name": "adasam", "lr": "${task.lr}", "beta1": 0.9, "beta2": 0.98, "eps": 1e-06, "weight_decay": 0.1,
        "rho": 0.01, "form": "library", "sync_ascent": False,
    },
}  # fmt: skip
#: ``run_identity(cfg)["config"]["optim"]`` of the same configs (resolved, None dropped)
PRESET_IDENTITY = {
    "sgd": {"name": "sgd", "lr": 0.001, "beta1": 0.9, "weight_decay": 0.1, "sync_ascent": False},
    "amsgrad": {
        "name": "amsgrad", "lr": 1e-05, "beta1": 0.9, "beta2": 0.98, "eps": 1e-06, "weight_decay": 0.1,
        "sync_ascent": False,
    },
    "sam": {"name": "sam", "lr": 0.001, "beta1": 0.9, "weight_decay": 0.1, "rho": 0.01, "sync_ascent": False},
    "adasam": {
        "name": "adasam", "lr": 1e-05, "beta1": 0.9, "beta2": 0.98, "eps": 1e-06, "weight_decay": 0.1, "rho": 0.01,
        "form": "library", "sync_ascent": False,
    },
}  # fmt: skip


@pytest.mark.parametrize("name", PRESETS)
def test_presets_compose_to_the_values_they_had(name):
    cfg = compose_cfg(f"optim={name}")
    raw, resolved = OmegaConf.to_container(cfg.optim), OmegaConf.to_container(cfg.optim, resolve=True)
    # as written where set (lr: ${task.lr}); a key the preset's base does not take (sam's beta2 on SGD,
    # ${if_base_takes:...}) resolves to null, as the keys it never had
    got = {k: raw[k] if resolved[k] is not None else None for k in raw}
    assert got.pop("base") is None  # the schema's new key, unset: dropped from the identity
    assert {k: v for k, v in got.items() if v is not None} == PRESET_VALUES[name]
    assert all(v is None for k, v in got.items() if k not in PRESET_VALUES[name])
    assert run_identity(cfg, world_size=1)["config"]["optim"] == PRESET_IDENTITY[name]
    assert "base" not in OmegaConf.load(ROOT / "conf" / "optim" / f"{name}.yaml")


# ----------------------------------------------------------------------------- perturbation x base
@pytest.mark.parametrize("name", [n for n, i in OPTIMIZERS.items() if i.bases])
def test_a_perturbation_composes_on_every_base(name):
    hashes = set()
    for base in OPTIMIZERS[name].bases:
        cfg = compose_cfg(f"optim={name}", f"optim.base={base}")
        validate_config(cfg)
        optim = {k: v for k, v in OmegaConf.to_container(cfg.optim, resolve=True).items() if v is not None}
        assert optim["base"] == base
        # the YAML's keys the base has no use for are null: SGD drops AMSGrad's beta2/eps
        assert set(optim) - {"name", "sync_ascent"} == set(OPTIMIZERS[name].hparams_for(base)) - {"nesterov"}
        kwargs = {k: v for k, v in optim.items() if k not in ("name", "sync_ascent")}
        assert type(build_optimizer(name, _p(), **kwargs).base_optimizer) is type(BASES[base].factory(_p()))
        ident = run_identity(cfg, world_size=1)
        assert ident["config"]["optim"]["base"] == base
        hashes.add(group_hash(ident))
    assert len(hashes) == len(OPTIMIZERS[name].bases), "each base is its own run"
    default = compose_cfg(f"optim={name}").optim.base  # the YAML's default (sam's: none, i.e. SGD)
    assert default == (None if name == "sam" else OPTIMIZERS[name].base)
    assert OPTIMIZERS[name].base_of({"base": default}) == OPTIMIZERS[name].base


@pytest.mark.parametrize("name", ["vasso", "gsam"])
def test_tiny_run_on_the_sgd_base(tiny_cfg, tmp_path, monkeypatch, name):
    """``python -m adasam_glue optim=<name> optim.base=sgd ...`` trains, and SGD does the descent."""
    from adasam_glue.run import run

    steps = {"n": 0}
    original = torch.optim.SGD.step

    def counted(self, *a, **k):
        steps["n"] += 1
        return original(self, *a, **k)

    monkeypatch.setattr(torch.optim.SGD, "step", counted)
    rec = run(tiny_cfg(f"optim={name}", "optim.base=sgd", "optim.lr=0.05", run_dir=tmp_path / "r"))
    assert rec["status"] == "completed" and rec["optimizer_updates"] == 4
    assert rec["forward_backward_passes"] == 8 and steps["n"] == 4
    assert rec["config"]["optim"]["base"] == "sgd" and rec["config"]["optim"].get("beta2") is None


def test_base_is_refused_by_the_config_where_the_record_takes_none():
    for name, msg in (
        ("lightsam", "replaces the descent step itself"),
        ("adasam", "is a preset with its base fixed"),
    ):
        with pytest.raises(ConfigError, match=rf"invalid optim\.base='sgd': optimizer '{name}' {msg}"):
            validate_config(compose_cfg(f"optim={name}", "optim.base=sgd"))
    with pytest.raises(ConfigError, match=r"optim\.base='lion': must be one of 'sgd', 'amsgrad', 'adamw'"):
        validate_config(compose_cfg("optim=vasso", "optim.base=lion"))
    with pytest.raises(ConfigError, match="'beta2' for optimizer 'vasso' on base 'sgd'"):
        validate_config(compose_cfg("optim=vasso", "optim.base=sgd", "optim.beta2=0.9"))
    with pytest.raises(ConfigError, match=r"optim\.base='amsgrad': must be one of 'sgd', 'adamw'"):
        validate_config(compose_cfg("optim=sam", "optim.base=amsgrad"))  # that is adasam


def test_sam_takes_sgd_or_adamw():
    """``sam`` is SAM on SGD (its identity unchanged, above); ``optim.base=adamw`` puts the perturbation
    on AdamW with the YAML's beta2/eps, as the variants'; the same from ``build_optimizer``."""
    cfg = compose_cfg("optim=sam", "optim.base=adamw")
    validate_config(cfg)
    optim = {k: v for k, v in OmegaConf.to_container(cfg.optim, resolve=True).items() if v is not None}
    assert optim["beta2"] == 0.98 and optim["eps"] == 1e-6 and optim["base"] == "adamw"
    kwargs = {k: v for k, v in optim.items() if k not in ("name", "sync_ascent")}
    built = build_optimizer("sam", _p(), **kwargs)
    assert type(built.base_optimizer) is torch.optim.AdamW and not built.base_optimizer.defaults["amsgrad"]
    assert built.base_optimizer.defaults["betas"] == (0.9, 0.98)
    default = build_optimizer("sam", _p(), base="adamw").base_optimizer.defaults
    assert default["betas"] == (0.9, 0.98) and default["eps"] == 1e-6
    assert type(build_optimizer("sam", _p()).base_optimizer) is torch.optim.SGD
    assert OPTIMIZERS["sam"].label("adamw") == "SAM (AdamW)" and baseline_of("sam", "adamw") is None


# ----------------------------------------------------------------------------- one range table
def _probes(rule):
    if not isinstance(rule, Interval):
        return []
    pts = [x for x in (rule.lo, rule.hi) if math.isfinite(x)]
    return sorted({v for x in pts for v in (x - 0.5, x, x + 0.5)} | {0.5})


CHECKED = [
    (name, key)
    for name, info in OPTIMIZERS.items()
    for key in info.hparams_for()
    if _probes(info.rule(key)) and key != "lr"
]


@functools.cache
def _composed(name):
    return compose_cfg(f"optim={name}")


@pytest.mark.parametrize(("name", "key"), CHECKED, ids=[f"{n}-{k}" for n, k in CHECKED])
def test_config_and_optimizer_agree_on_every_range(name, key):
    """``validate_config`` and ``build_optimizer`` read the one table: at and around every bound of
    every key, the config refuses exactly what the optimizer refuses (beta2 = 1 by the base: both)."""
    info = OPTIMIZERS[name]
    cfg = _composed(name)
    yaml = {k: v for k, v in OmegaConf.to_container(cfg.optim, resolve=True).items() if v is not None}
    kwargs = {k: v for k, v in yaml.items() if k not in ("name", "sync_ascent")}
    for value in _probes(info.rule(key)):
        kw = dict(kwargs, **{key: value})
        if key == "rho" and "rho_min" in kw:
            kw["rho_min"] = min(kw["rho_min"], max(value, 0.0))
        try:
            build_optimizer(name, _p(), **kw)
            built = True
        except ValueError:
            built = False
        cfg2 = copy.deepcopy(cfg)
        for k, v in kw.items():
            cfg2.optim[k] = v
        try:
            validate_config(cfg2)
            valid = True
        except ConfigError as e:
            valid = False
            if not _within(info.rule(key), value):  # out of range: said against the config key
                assert f"invalid optim.{key}={value!r}: must be {info.rule(key)}" in str(e)
        assert valid == built, (
            f"{name}.{key}={value}: config {'accepts' if valid else 'refuses'}, optimizer not"
        )


def test_a_range_error_keeps_its_key_value_and_rule_through_the_build_and_a_pickle():
    """The config names the failing key from the build's error (no second pass over the table), and an
    error raised in a worker process (bench parity's pool, a submitit job) reaches the parent whole."""
    with pytest.raises(RangeError) as caught:
        build_optimizer("adasam", _p(), rho=-1)
    err = caught.value
    assert (err.key, err.value, str(err.rule)) == ("rho", -1, ">= 0")
    assert str(err) == "optimizer 'adasam': rho must be >= 0, got -1"
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is RangeError and (back.key, back.value, back.rule, str(back)) == (
        err.key,
        err.value,
        err.rule,
        str(err),
    )
    with pytest.raises(ConfigError, match=r"invalid optim\.rho=-1\.0: must be >= 0"):
        validate_config(compose_cfg("optim=adasam", "optim.rho=-1"))


def _within(rule, value) -> bool:
    try:
        rule("x", value)
    except ValueError:
        return False
    return True


def test_vasso_theta_one_passes_the_config():
    """VaSSO's documented theta = 1 (= SAM's ascent, spec §2.8) is accepted; theta = 0 refused, same text."""
    validate_config(compose_cfg("optim=vasso", "optim.theta=1.0"))
    with pytest.raises(ConfigError, match=r"invalid optim\.theta=0\.0: must be in \(0, 1\]"):
        validate_config(compose_cfg("optim=vasso", "optim.theta=0"))
    with pytest.raises(ValueError, match=r"theta must be in \(0, 1\], got 0"):
        build_optimizer("vasso", _p(), theta=0)


# ----------------------------------------------------------------------------- defaults: the YAML's
def test_build_optimizer_defaults_are_the_yaml_values():
    """A key not given to ``build_optimizer`` takes ``conf/optim/<name>.yaml``'s value on the same base,
    the value ``python -m adasam_glue optim=<name>`` composes; the lr (``${task.lr}``/``???``: the run's)
    and keys the YAML does not set take the signature defaults."""
    for name, info in OPTIMIZERS.items():
        for base in info.bases or (info.base,):
            overrides = [f"optim={name}", *([f"optim.base={base}"] if info.bases else [])]
            composed = OmegaConf.to_container(compose_cfg(*overrides).optim, resolve=True)
            d = info.defaults_for(base)
            assert tuple(d) == info.hparams_for(base), name
            for key in info.hparams_for(base):
                if key == "lr" or composed.get(key) is None:
                    assert d[key] == info.signature_defaults_for(base)[key], (name, base, key)
                else:
                    assert d[key] == composed[key], (name, base, key)
    sam = build_optimizer("sam", _p(), lr=0.1)
    assert sam.param_groups[0]["momentum"] == 0.9 and sam.param_groups[0]["rho"] == 0.01
    ada = build_optimizer("adasam", _p(), lr=0.1)
    assert ada.base_optimizer.defaults["betas"] == (0.9, 0.98) and ada.base_optimizer.defaults["eps"] == 1e-6
    assert ada.param_groups[0]["rho"] == 0.01 and ada.param_groups[0]["weight_decay"] == 0.1
    assert build_optimizer("adasam", _p()).param_groups[0]["lr"] == 1e-3  # no YAML lr: the signature's


def test_classes_are_torch_like_and_decay_nothing():
    """The classes (``SAM(params, lr=...)``) are what torch would build: no weight decay 0.1 from the
    paper, SGD without momentum, Adam's betas and eps; the record's signature defaults are theirs."""
    import inspect

    from adasam_glue.optim import SAM, AdaSAM

    sam = SAM(_p(), lr=0.1)
    sgd = torch.optim.SGD(_p(), lr=0.1)
    for key in ("lr", "momentum", "weight_decay", "nesterov", "dampening"):
        assert sam.param_groups[0][key] == sgd.defaults[key], key
    ada = AdaSAM(_p(), lr=0.1)
    adam = torch.optim.Adam(_p(), lr=0.1, amsgrad=True)
    for key in ("betas", "eps", "weight_decay", "amsgrad"):
        assert ada.base_optimizer.param_groups[0][key] == adam.defaults[key], key
    for name, info in OPTIMIZERS.items():
        for base in info.bases or (info.base,):
            d = info.signature_defaults_for(base)
            assert d.get("weight_decay", 0.0) == 0.0, name
            params = {
                **inspect.signature(info.cls.__init__).parameters,
                **inspect.signature(info.factory).parameters,
            }
            for key in info.keys:
                assert d[key] == params[key].default, (name, key)
            if base is not None:
                for key, value in BASES[base].defaults.items():
                    assert d[key] == value


def test_a_record_without_yaml_takes_its_signature_defaults(toysam):
    """The throwaway record's YAML is on a search path, not in conf/optim: ``build_optimizer`` falls
    back to the class's signature (rho 0.05), as the registry's docstring says."""
    info, _ = toysam
    assert info.conf_values() == {} and dict(info.defaults_for()) == dict(info.signature_defaults_for())
    assert build_optimizer("toysam", _p()).param_groups[0]["rho"] == 0.05


# ----------------------------------------------------------------------------- the record's facts
def test_every_record_holds_its_facts():
    spec = (ROOT / "docs" / "algorithms.md").read_text()
    colours = [i.color for i in OPTIMIZERS.values()]
    assert len(set(colours)) == len(colours)
    for name, info in OPTIMIZERS.items():
        assert info.display and info.paper and info.equation
        assert f"### {info.spec[1:]} " in spec, f"{name}: spec section {info.spec} not in docs/algorithms.md"
        assert info.color.startswith("#") and len(info.color) == 7
        assert info.linestyle == ("-" if info.two_pass else "--")
        assert info.own_descent == (name == "lightsam") and (info.base is None) == info.own_descent
        assert set(info.bases) <= set(BASE_CHOICES)
        assert info.identity_keys()[0] == "name" and set(info.hparams_for()) <= set(info.identity_keys())


def test_report_reads_the_registry():
    from adasam_glue.report.grouping import baseline
    from adasam_glue.report.palette import METHOD_NAMES, PALETTE, color, linestyle, method_name
    from adasam_glue.report.sharpness_table import SAM_BASE

    # every optimizer is told apart in a figure (its own colour) and a table (its own name)
    assert len({color(n) for n in OPTIMIZERS}) == len(OPTIMIZERS) == len(set(PALETTE.values()))
    assert len({method_name(n) for n in OPTIMIZERS}) == len(OPTIMIZERS) == len(set(METHOD_NAMES.values()))
    assert method_name("adasam") == "AdaSAM" and color("adasam") != color("amsgrad")
    assert [linestyle(n) for n in ("sgd", "amsgrad", "adasam")] == ["--", "--", "-"]
    assert color("nosuch") == color("nosuch") and method_name("nosuch") == "nosuch"
    assert method_name("vasso", "sgd") == "VaSSO (SGD)" and method_name("vasso", "amsgrad") == "VaSSO"
    # the pairing of the sharpness claims: the paper's (SAM < SGD, AdaSAM < AMSGrad); every other
    # SAM-family optimizer with its default base's one-pass optimizer; LightSAM and the bases unpaired
    assert SAM_BASE["sam"] == "sgd" and SAM_BASE["adasam"] == "amsgrad"
    for name, info in OPTIMIZERS.items():
        if not info.two_pass or info.own_descent:
            assert name not in SAM_BASE
            continue
        paired, base = OPTIMIZERS[SAM_BASE[name]], "amsgrad" if info.base == "amsgrad_paper" else info.base
        assert not paired.two_pass and paired.base == base
    row = lambda opt, base: SimpleNamespace(
        optimizer=opt, flat={} if base is None else {"config.optim.base": base}
    )
    assert [baseline(row("vasso", b)) for b in (None, "sgd", "adamw")] == ["amsgrad", "sgd", None]
    assert baseline_of("lightsam") is None and baseline_of("sgd") is None


# ----------------------------------------------------------------------------- a throwaway variant
class ToySAM(SAMBase):
    """e = rho s / (kappa + ||s||): a perturbation no paper proposes, with a key no optimizer had (kappa),
    for this test only."""

    def __init__(self, params, rho: float = 0.05, kappa: float = 1.0, base="amsgrad", **base_hparams) -> None:
        check_interval("kappa", kappa, 0.0, lo_open=True)
        super().__init__(params, dict(rho=rho, kappa=kappa), make_base(base, **base_hparams))

    def _perturbation(self, groups):
        norm = self._norm([g for _, _, gs in groups for g in gs])
        return [(ps, gs, group["rho"] / (group["kappa"] + norm)) for group, ps, gs in groups]


TOY_YAML = """\
name: toysam
base: amsgrad
lr: ${task.lr}
beta1: 0.9
beta2: ${if_base_takes:${.base},0.98}
eps: ${if_base_takes:${.base},1.0e-6}
weight_decay: 0.1
rho: 0.02
kappa: 1.0
sync_ascent: false
"""


@pytest.fixture
def toysam(tmp_path):
    """One class (above), one record (registered here, removed after), one YAML (on a search path)."""
    info = register(
        OptimInfo(
            "toysam", ToySAM, ToySAM, True, "ToySAM", "#123456", "none (a test)", "e = rho s / (1 + ||s||)",
            "§2.5", keys=("rho", "kappa"), base="amsgrad", bases=BASE_CHOICES,
            ranges={"rho": Interval(0.0, 1.0), "kappa": Interval(0.0, lo_open=True)},
        )
    )  # fmt: skip
    (tmp_path / "conf" / "optim").mkdir(parents=True)
    (tmp_path / "conf" / "optim" / "toysam.yaml").write_text(TOY_YAML)
    try:
        yield info, f"hydra.searchpath=[file://{tmp_path / 'conf'}]"
    finally:
        OPTIMIZERS.pop("toysam", None)


@contextlib.contextmanager
def _default_dtype(dtype):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def test_a_throwaway_variant_is_picked_up_everywhere(toysam, tiny_cfg, tmp_path):
    import tests.test_accumulation as accumulation
    import tests.test_fp16 as fp16
    import tests.test_optim as optim_tests
    import tests.test_optim_protocol as protocol
    from adasam_glue.report.palette import METHOD_NAMES, color, linestyle, method_name
    from adasam_glue.report.sharpness_table import SAM_BASE
    from adasam_glue.run import run

    info, searchpath = toysam
    name = info.name
    # the registry-parametrised tests: their cases come from OPTIMIZERS and forms() (at collection, for a
    # record in _RECORDS); their helpers and bodies run on the new record with no edit
    forms = info.forms()
    assert forms == tuple({"base": b} for b in BASE_CHOICES)
    assert [(n, f) for n, i in OPTIMIZERS.items() for f in i.forms()][-len(forms) :] == [
        (name, f) for f in forms
    ]
    for form in forms:
        with _default_dtype(torch.float64):
            assert set(optim_tests.hp_for(name, form)) == set(info.hparams_for(form["base"])) - {"base"}
            protocol.test_state_dict_round_trip_continues_bit_exactly(name, form)
            protocol.test_lowers_loss_on_separable_problem(name, form)
            protocol.test_zero_gradient_gives_no_nan(name, form)
            protocol.test_param_groups_shared_with_base(name, form)
            protocol.test_step_closure_equals_explicit_protocol(name, form)
            protocol.test_two_pass_protocol_misuse_raises(name, form)
            protocol.test_registry_flags_match_classes(name, form)
            # the spec reference asks for the new rule's equation, naming the file to add it to
            with pytest.raises(AssertionError, match="no reference for optimizer 'toysam'"):
                optim_tests.test_matches_spec_reference(name, form)
        fp16.test_one_fp16_update_equals_the_fp32_update(name, form)
        fp16.test_inf_in_either_pass_skips_the_whole_update(name, form, "descent", True)
        fp16.test_skip_then_update_equals_the_update_alone(name, form)
        accumulation.test_update_step_accumulation_equals_one_batch(name, form, 4)

    # config validation: the record's names, keys and (narrower) ranges
    cfg = tiny_cfg("optim=toysam", searchpath)
    validate_config(cfg)
    with pytest.raises(ConfigError, match=r"invalid optim\.rho=2\.0: must be in \[0, 1\]"):
        validate_config(tiny_cfg("optim=toysam", "optim.rho=2.0", searchpath))
    validate_config(tiny_cfg("optim=sam", "optim.rho=2.0"))  # the shared table still allows it elsewhere
    with pytest.raises(ConfigError, match="'beta2' for optimizer 'toysam' on base 'sgd'"):
        validate_config(tiny_cfg("optim=toysam", "optim.base=sgd", "optim.beta2=0.9", searchpath))

    # its new key: in the schema (typed: an int becomes a float), the identity, the run-dir name, --help
    with pytest.raises(ConfigError, match=r"invalid optim\.kappa=0\.0: must be > 0"):
        validate_config(tiny_cfg("optim=toysam", "optim.kappa=0", searchpath))
    with pytest.raises(ConfigError, match="'kappa' for optimizer 'adasam'"):
        validate_config(tiny_cfg("optim=adasam", "optim.kappa=2"))
    k2 = tiny_cfg("optim=toysam", "optim.kappa=2", searchpath)
    assert k2.optim.kappa == 2.0 and isinstance(k2.optim.kappa, float)
    assert run_identity(k2, 1)["config"]["optim"]["kappa"] == 2.0
    assert group_hash(run_identity(k2, 1)) != group_hash(run_identity(cfg, 1))
    assert "_rho0.02_kappa2_wd0.1_" in run_params_tag(k2) and "_kappa1_" in run_params_tag(cfg)
    assert re.search(
        r"^  toysam +beta1, beta2, eps, weight_decay, nesterov, rho, kappa, base$", render_help(), re.M
    )

    # run identity: the record names it; its keys and its base enter
    ident = run_identity(cfg, world_size=1)["config"]["optim"]
    assert ident["name"] == "toysam" and ident["rho"] == 0.02 and ident["base"] == "amsgrad"
    usam = tiny_cfg("optim=usam", "optim.rho=0.02")
    assert group_hash(run_identity(cfg, 1)) != group_hash(run_identity(usam, 1))
    on_sgd = tiny_cfg("optim=toysam", "optim.base=sgd", searchpath)
    assert group_hash(run_identity(cfg, 1)) != group_hash(run_identity(on_sgd, 1))

    # the report: name, colour, line style, and the sharpness pairing by base
    assert METHOD_NAMES["toysam"] == method_name("toysam") == "ToySAM" and list(METHOD_NAMES)[-1] == "toysam"
    assert color("toysam") == "#123456" and linestyle("toysam") == "-"
    assert method_name("toysam", "sgd") == "ToySAM (SGD)"
    assert SAM_BASE["toysam"] == "amsgrad" and baseline_of("toysam", "sgd") == "sgd"

    # and the trainer runs it (two passes per update), on a base of the command line's choosing
    rec = run(tiny_cfg("optim=toysam", "optim.base=sgd", "optim.lr=0.05", searchpath, run_dir=tmp_path / "r"))
    assert rec["status"] == "completed" and rec["forward_backward_passes"] == 2 * rec["optimizer_updates"]


def test_head_lr_scale_gives_the_head_its_own_lr_and_none_keeps_the_two_groups():
    """trainer.head_lr_scale: classifier + pooler at lr x scale (decay rule kept); without it the
    groups are exactly the two of every earlier run (decayed weights, then biases/LayerNorm)."""
    from transformers import BertConfig, BertForSequenceClassification

    from adasam_glue.modeling import is_head_param, param_groups

    model = BertForSequenceClassification(
        BertConfig(
            vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16
        )
    )
    names = {id(p): n for n, p in model.named_parameters()}
    plain = param_groups(model, 0.1)
    assert [(g["weight_decay"], "lr" in g) for g in plain] == [(0.1, False), (0.0, False)]
    split = param_groups(model, 0.1, lr=0.2, head_lr_scale=0.01)
    head = [g for g in split if "lr" in g]
    assert {names[id(p)] for g in head for p in g["params"]} == {
        "bert.pooler.dense.weight",
        "bert.pooler.dense.bias",
        "classifier.weight",
        "classifier.bias",
    }
    assert all(g["lr"] == pytest.approx(0.002) for g in head)
    assert sorted(g["weight_decay"] for g in head) == [0.0, 0.1]  # head biases are not decayed either
    body = [p for g in split if "lr" not in g for p in g["params"]]
    assert not any(is_head_param(names[id(p)]) for p in body)
    assert sum(len(g["params"]) for g in split) == sum(len(g["params"]) for g in plain)
    with pytest.raises(ValueError, match="head_lr_scale needs the base lr"):
        param_groups(model, 0.1, head_lr_scale=0.5)


def test_a_derived_optim_key_takes_the_type_of_its_rule_else_of_its_yaml_values():
    """The optim schema types a key no field names (config.optim_schema): by its range rule, else by the
    literals its YAML files give it (ints stay ints, a float among them makes it float), else Any."""
    from typing import Any

    from adasam_glue.config import OptimConfig, _key_type

    types = {f.name: f.type for f in dataclasses.fields(OptimConfig)}
    assert types["theta"] == float | None and types["nesterov"] == bool | None and types["form"] == str | None
    assert _key_type("k", [3, 4], None) == int | None and _key_type("k", [3, 0.5], None) == float | None
    assert _key_type("k", ["x"], None) == str | None and _key_type("k", [], None) is Any
    assert _key_type("k", [3], Interval(0.0)) == float | None  # the rule wins
