"""Sharpness measures against closed forms (quadratic, least squares), state preservation, batching,
and the post-hoc CLI on a fake run dir."""

from __future__ import annotations

import json
import math
import os
import random
import types

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from adasam_glue.config import CONF_DIR, SharpnessConfig
from adasam_glue.records import RecordError, read_record, write_record
from adasam_glue.sharpness.block import METHOD_VERSION, is_current, largest_eigenvalue, smallest_eigenvalue
from adasam_glue.sharpness.measure import (
    measure_sharpness,
    rho_key,
    select_subset,
    subset_batches,
)
from adasam_glue.sharpness.posthoc import main, measure_run
from tests.conftest import data_config

SHARPNESS_YAML = CONF_DIR / "sharpness" / "default.yaml"


def cfg(**kw):
    """conf/sharpness/default.yaml (the one place the defaults live) with ``kw`` on top."""
    return OmegaConf.merge(OmegaConf.structured(SharpnessConfig), OmegaConf.load(SHARPNESS_YAML), kw)


# --------------------------------------------------------------------------------- closed-form models
class Quadratic(nn.Module):
    """L(w) = 0.5 w^T A w (the batch only sets the sample weight)."""

    def __init__(self, A: torch.Tensor, w: torch.Tensor):
        super().__init__()
        self.register_buffer("A", A)
        self.w = nn.Parameter(w.clone())

    def forward(self) -> torch.Tensor:
        return 0.5 * self.w @ self.A @ self.w


def quad_loss(model, batch):
    return model()


def spd(eigs, seed=0, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigs), len(eigs), generator=g, dtype=dtype))
    return q @ torch.diag(torch.tensor(eigs, dtype=dtype)) @ q.T


EIGS = [10.0, 5.0, 2.5, 1.0, 0.5, 0.2]
ONE_BATCH = [{"x": torch.zeros(4, 1)}]


def make_quadratic(w=None, seed=0):
    A = spd(EIGS, seed)
    w = torch.zeros(len(EIGS), dtype=torch.float64) if w is None else w
    return Quadratic(A, w), A


def least_squares(n=100, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g) * torch.tensor([3.0, 2.0, 1.0, 0.5, 0.3])
    y = X @ torch.randn(d, generator=g) + 0.1 * torch.randn(n, generator=g)
    model = nn.Linear(d, 1)
    Xa = torch.cat([X, torch.ones(n, 1)], 1)
    return model, X, y, Xa.T @ Xa / n  # Hessian of 0.5 mean (x^T w + b - y)^2 in (w, b)


def ls_loss(model, batch):
    return 0.5 * ((model(batch["x"]).squeeze(-1) - batch["labels"]) ** 2).mean()


def ls_batches(X, y, bs):
    return [{"x": X[i : i + bs], "labels": y[i : i + bs]} for i in range(0, len(X), bs)]


def trust_region_max(g: np.ndarray, A: np.ndarray, rho: float) -> float:
    """max_{||d|| <= rho} g^T d + 0.5 d^T A d (A SPD): d = (mu I - A)^-1 g with ||d|| = rho, mu > lmax."""
    lam, Q = np.linalg.eigh(A)
    c = Q.T @ g
    norm = lambda mu: np.sqrt(np.sum((c / (mu - lam)) ** 2))
    lo, hi = lam[-1] + 1e-12, lam[-1] + np.linalg.norm(g) / rho + 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if norm(mid) > rho else (lo, mid)
    d = Q @ (c / (0.5 * (lo + hi) - lam))
    return float(g @ d + 0.5 * d @ A @ d)


# --------------------------------------------------------------------------------------- eigenvalue
def test_top_k_eigenvalues_of_quadratic():
    model, _ = make_quadratic(torch.randn(6, dtype=torch.float64))
    block = measure_sharpness(
        model, ONE_BATCH, quad_loss, cfg(measures=["eigenvalue"], top_k=3, power_iters=500, power_tol=1e-10)
    )
    v = block["values"]
    assert v["eigenvalue"] == pytest.approx(10.0, rel=1e-3)
    assert v["eigenvalues"] == pytest.approx([10.0, 5.0, 2.5], rel=1e-3)
    assert v["eigenvalue_min"] == pytest.approx(0.2, rel=1e-3)
    assert v["eigen_converged"] and v["eigen_iters"] == block["cost"]["hvp_count"] <= 6  # Krylov space = R^6
    assert v["trace"] is None and v["worst_case"] is None
    assert block["method_version"] == METHOD_VERSION and is_current(block)


@pytest.mark.parametrize(
    "eigs",
    [
        [3.0, 1.0, 0.5, -0.5, -2.0, -8.0],  # indefinite, the most negative one dominant (a saddle)
        [9.0, 4.0, 1.0, -0.3, -1.0, -7.0],  # indefinite, the positive one dominant
        [-1.0, -2.0, -3.0, -5.0, -8.0, -10.0],  # negative definite (a maximum)
    ],
)
def test_top_and_smallest_eigenvalues_of_an_indefinite_hessian(eigs):
    """The "top eigenvalue" is lambda_max, not the largest-magnitude one with its sign (which is -8 on the
    first Hessian, -10 on the third): flatter-minima comparisons and means over seeds read it."""
    model = Quadratic(spd(eigs, seed=3), torch.randn(6, dtype=torch.float64))
    c = cfg(measures=["eigenvalue"], top_k=2, power_iters=2000, power_tol=1e-12)
    v = measure_sharpness(model, ONE_BATCH, quad_loss, c)["values"]
    top = sorted(eigs, reverse=True)
    assert v["eigenvalue"] == pytest.approx(top[0], rel=1e-4)
    assert v["eigenvalues"] == pytest.approx(top[:2], rel=1e-4)
    assert v["eigenvalue_min"] == pytest.approx(top[-1], rel=1e-4)
    assert v["eigen_converged"]


def test_lambda_max_beside_a_dominant_negative_eigenvalue_and_a_bulk_near_zero():
    """The spectrum of a fine-tuned model's Hessian on a few dozen examples: one large negative eigenvalue,
    a smaller positive top, and a bulk of near-zero ones. Power iteration shifted by the dominant value
    returns the bulk (method version 2 reported ~0 here); Lanczos finds both ends, each within its
    reported residual bound, also when the step cap stops it before convergence."""
    g = np.random.default_rng(0)
    eigs = [-123.0, 90.0, 40.0, *g.uniform(-1.0, 1.0, 197)]
    model = Quadratic(spd(eigs, seed=5), torch.zeros(200, dtype=torch.float64))
    v = measure_sharpness(
        model, ONE_BATCH, quad_loss, cfg(measures=["eigenvalue"], power_iters=60, power_tol=1e-8)
    )["values"]
    assert v["eigenvalue"] == pytest.approx(90.0, rel=1e-6) and v["eigenvalue_min"] == pytest.approx(
        -123.0, rel=1e-6
    )
    assert v["eigen_converged"] and v["eigen_iters"] < 60
    for steps in (4, 8, 12):  # stopped early: each end is still within its residual bound of an eigenvalue
        c = cfg(measures=["eigenvalue"], power_iters=steps, power_tol=1e-12)
        early = measure_sharpness(model, ONE_BATCH, quad_loss, c)["values"]
        bound = early["eigen_residual"] + 1e-9
        assert min(abs(early["eigenvalue"] - e) for e in eigs) <= bound
        assert min(abs(early["eigenvalue_min"] - e) for e in eigs) <= bound
        assert -123.0 - 1e-9 <= early["eigenvalue_min"] <= early["eigenvalue"] <= 90.0 + 1e-9


def test_largest_eigenvalue_reads_every_block_version():
    """A version-1 block (no method_version) holds the largest-magnitude eigenvalue: lambda_max when
    positive, nothing about it when negative; the report and the driver go by this."""
    assert largest_eigenvalue({"values": {"eigenvalue": 12.5}}) == 12.5
    assert largest_eigenvalue({"values": {"eigenvalue": -123.0}}) is None
    assert largest_eigenvalue({"method_version": METHOD_VERSION, "values": {"eigenvalue": -1.5}}) == -1.5
    # version 2 shifted power iteration by a dominant negative value: its "eigenvalue" was the bulk
    v2 = {"method_version": 2, "values": {"eigenvalue": 0.0, "eigenvalue_min": -123.0}}
    assert largest_eigenvalue(v2) is None
    assert (
        largest_eigenvalue({"method_version": 2, "values": {"eigenvalue": 64.0, "eigenvalue_min": -0.1}})
        == 64.0
    )
    assert largest_eigenvalue({"values": {"eigenvalue": None, "eigenvalues": [4.0]}}) == 4.0
    assert largest_eigenvalue(None) is None and largest_eigenvalue({"values": {}}) is None
    assert smallest_eigenvalue({"values": {"eigenvalue": -123.0}}) == -123.0  # v1: the dominant one
    assert smallest_eigenvalue({"values": {"eigenvalue": 12.0}}) is None
    assert smallest_eigenvalue(v2) == -123.0
    assert (
        smallest_eigenvalue({"method_version": 2, "values": {"eigenvalue": 64.0, "eigenvalue_min": -0.1}})
        is None
    )
    assert not is_current({"values": {"eigenvalue": 1.0}}) and not is_current(None) and not is_current({})
    assert is_current({"method_version": METHOD_VERSION, "values": {}})


def test_eigenvalue_least_squares_several_batches_and_stopping_rule():
    model, X, y, H = least_squares()
    lam = torch.linalg.eigvalsh(H.double()).flip(0)
    c = cfg(measures=["eigenvalue"], top_k=2, power_iters=300, power_tol=1e-9, batch_size=32)
    v = measure_sharpness(model, ls_batches(X, y, 32), ls_loss, c)["values"]  # batches 32, 32, 32, 4
    assert v["eigenvalues"] == pytest.approx(lam[:2].tolist(), rel=1e-3)
    # the cap binds when the tolerance cannot be met; the loose tolerance stops early
    capped = measure_sharpness(
        model, ls_batches(X, y, 32), ls_loss, cfg(measures=["eigenvalue"], power_iters=3, power_tol=1e-9)
    )
    assert capped["values"]["eigen_iters"] == 3 and not capped["values"]["eigen_converged"]
    loose = measure_sharpness(
        model, ls_batches(X, y, 32), ls_loss, cfg(measures=["eigenvalue"], power_iters=300, power_tol=1e-2)
    )
    assert loose["values"]["eigen_converged"] and loose["values"]["eigen_iters"] < v["eigen_iters"]


# -------------------------------------------------------------------------------------------- trace
def test_hutchinson_trace_within_three_standard_errors():
    model, A = make_quadratic(seed=1)
    probes = 200
    v = measure_sharpness(model, ONE_BATCH, quad_loss, cfg(measures=["trace"], trace_probes=probes))["values"]
    truth = float(torch.trace(A))
    assert abs(v["trace"] - truth) <= 3 * v["trace_stderr"]
    # Var(z^T A z) = 2 sum_{i != j} A_ij^2 for Rademacher z: the stderr estimates its root / sqrt(n)
    off = A - torch.diag(torch.diag(A))
    expected_se = math.sqrt(2 * float((off**2).sum()) / probes)
    assert 0.7 * expected_se < v["trace_stderr"] < 1.3 * expected_se
    one = measure_sharpness(model, ONE_BATCH, quad_loss, cfg(measures=["trace"], trace_probes=1))
    assert one["values"]["trace_stderr"] is None


def test_trace_of_least_squares():
    model, X, y, H = least_squares(seed=2)
    v = measure_sharpness(model, ls_batches(X, y, 16), ls_loss, cfg(measures=["trace"], trace_probes=100))[
        "values"
    ]
    assert abs(v["trace"] - float(torch.trace(H))) <= 3 * v["trace_stderr"]


# --------------------------------------------------------------------------------------- worst case
def test_worst_case_at_minimum_is_half_rho2_lambda_max():
    model, _ = make_quadratic()  # w = 0: g = 0, random start, ascent converges to the top eigvec
    rhos = [0.1, 0.01]
    v = measure_sharpness(
        model, ONE_BATCH, quad_loss, cfg(measures=["worst_case"], rhos=rhos, ascent_steps=80)
    )["values"]
    for rho in rhos:
        assert v["worst_case"][rho_key(rho)] == pytest.approx(0.5 * rho**2 * EIGS[0], rel=1e-3)
    # adaptive at w = 0: T = eta everywhere, so the ball is eta * rho
    for rho in rhos:
        assert v["worst_case_adaptive"][rho_key(rho)] == pytest.approx(
            0.5 * (0.01 * rho) ** 2 * EIGS[0], rel=1e-3
        )


def test_worst_case_one_step_is_sam_sharpness():
    w = torch.randn(6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    model, A = make_quadratic(w)
    rho = 0.05
    v = measure_sharpness(
        model, ONE_BATCH, quad_loss, cfg(measures=["worst_case"], rhos=[rho], ascent_steps=1)
    )["values"]
    g = A @ w
    u = g / g.norm()
    assert v["worst_case"]["0.05"] == pytest.approx(
        float(rho * g.norm() + 0.5 * rho**2 * u @ A @ u), rel=1e-9
    )
    T = w.abs() + 0.01  # ASAM's perturbation rho T^2 g / ||T g||
    d = rho * T**2 * g / (T * g).norm()
    expected = float(0.5 * (w + d) @ A @ (w + d) - 0.5 * w @ A @ w)
    assert v["worst_case_adaptive"]["0.05"] == pytest.approx(expected, rel=1e-9)


def test_worst_case_matches_trust_region_closed_form():
    w = torch.randn(6, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    model, A = make_quadratic(w)
    rho = 0.2
    v = measure_sharpness(
        model, ONE_BATCH, quad_loss, cfg(measures=["worst_case"], rhos=[rho], ascent_steps=60)
    )["values"]
    An, wn = A.numpy(), w.numpy()
    assert v["worst_case"]["0.2"] == pytest.approx(trust_region_max(An @ wn, An, rho), rel=1e-4)
    T = np.abs(wn) + 0.01  # adaptive: the same problem in eps, gradient T g, Hessian T A T
    expected = trust_region_max(T * (An @ wn), T[:, None] * An * T[None, :], rho)
    assert v["worst_case_adaptive"]["0.2"] == pytest.approx(expected, rel=1e-4)
    # fewer steps: a lower bound, never above the maximum
    few = measure_sharpness(
        model, ONE_BATCH, quad_loss, cfg(measures=["worst_case"], rhos=[rho], ascent_steps=2)
    )
    assert few["values"]["worst_case"]["0.2"] <= v["worst_case"]["0.2"] + 1e-12


# ----------------------------------------------------------------------------------------- batching
def test_several_batches_equal_one_big_batch():
    model, X, y, _ = least_squares(n=50, seed=5)
    c = dict(power_iters=50, power_tol=0.0, top_k=2, trace_probes=5, rhos=[0.1, 0.01], ascent_steps=3)
    big = measure_sharpness(model, ls_batches(X, y, 50), ls_loss, cfg(**c))["values"]
    small = measure_sharpness(model, ls_batches(X, y, 7), ls_loss, cfg(**c))["values"]  # 7 x 7 + 1
    for key in ("eigenvalues", "trace", "loss"):
        assert small[key] == pytest.approx(big[key], rel=1e-5), key
    for key in ("worst_case", "worst_case_adaptive"):
        assert small[key] == pytest.approx(big[key], rel=1e-4), key


# ------------------------------------------------------------------------------------ state / RNG
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Dropout(0.3), nn.Linear(8, 3))

    def forward(self, x):
        return self.body(x)


def net_loss(model, batch):
    return nn.functional.cross_entropy(model(batch["x"]), batch["labels"])


def _train(model, opt, steps, data):
    for i in range(steps):
        opt.zero_grad()
        net_loss(model, {"x": data[0][i], "labels": data[1][i]}).backward()
        opt.step()


def test_measurement_leaves_weights_rng_modes_and_training_unchanged():
    g = torch.Generator().manual_seed(0)
    data = (torch.randn(10, 16, 4, generator=g), torch.randint(0, 3, (10, 16), generator=g))
    batches = [{"x": data[0][i], "labels": data[1][i]} for i in range(3)]
    c = cfg(power_iters=5, trace_probes=3, rhos=[0.05], ascent_steps=3)

    def run(measure: bool):
        torch.manual_seed(1)
        random.seed(1)
        np.random.seed(1)
        model = Net()
        model.body[3].weight.requires_grad_(True)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        model.train()
        _train(model, opt, 5, data)
        if measure:
            before = {k: v.clone() for k, v in model.state_dict().items()}
            grads = [p.grad.clone() for p in model.parameters()]
            rng = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
            model.body[2].eval()  # a mixed mode must come back as it was
            block = measure_sharpness(model, batches, net_loss, c)
            assert model.training and not model.body[2].training and model.body[0].training
            model.body[2].train()
            assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
            assert all(torch.equal(a, p.grad) for a, p in zip(grads, model.parameters()))
            assert torch.equal(rng[0], torch.get_rng_state()) and rng[1] == random.getstate()
            assert np.array_equal(rng[2], np.random.get_state()[1])
            assert block["values"]["worst_case"]["0.05"] >= 0
        _train(model, opt, 5, (data[0][5:], data[1][5:]))
        return [p.detach().clone() for p in model.parameters()], torch.rand(3)

    (w_a, r_a), (w_b, r_b) = run(False), run(True)
    assert all(torch.equal(a, b) for a, b in zip(w_a, w_b)) and torch.equal(r_a, r_b)


def test_measurement_is_deterministic_and_only_uses_trainable_params():
    model = Net()
    model.body[0].requires_grad_(False)
    batches = [{"x": torch.randn(8, 4), "labels": torch.randint(0, 3, (8,))}]
    c = cfg(power_iters=4, trace_probes=2, rhos=[0.01], ascent_steps=2, seed=3)
    a, b = (measure_sharpness(model, batches, net_loss, c) for _ in range(2))
    assert a["values"] == b["values"]
    assert a["settings"]["num_params"] == 8 * 3 + 3
    json.dumps(a)  # the block is plain JSON
    assert set(a["cost"]) >= {"seconds", "hvp_count", "grad_count"}
    # 4 Lanczos steps (the cap) + 2 trace probes; g(w) + 1 per geometry
    assert a["cost"]["hvp_count"] == 4 + 2 and a["cost"]["grad_count"] == 1 + 2 * 1


def test_bad_settings_name_the_key():
    model, _ = make_quadratic()
    with pytest.raises(ValueError, match="sharpness.top_k"):
        measure_sharpness(model, ONE_BATCH, quad_loss, cfg(top_k=0))
    with pytest.raises(ValueError, match="sharpness.measures"):
        measure_sharpness(model, ONE_BATCH, quad_loss, cfg(measures=["hessian"]))
    with pytest.raises(ValueError, match="fp32"):
        measure_sharpness(Net().to(torch.bfloat16), [{"x": torch.zeros(2, 4)}], net_loss, cfg())


# ------------------------------------------------------------------------------------------ subset
def test_select_subset_fixed_nested_and_seeded():
    a = select_subset(1000, 50, 0)
    assert a == select_subset(1000, 50, 0) == sorted(a) and len(set(a)) == 50
    assert set(select_subset(1000, 20, 0)) <= set(a)
    assert a != select_subset(1000, 50, 1)
    assert select_subset(10, 50, 0) == list(range(10))
    rows = [{"v": i} for i in range(30)]
    batches = subset_batches(rows, lambda rs: {"v": torch.tensor([r["v"] for r in rs])}, 10, 4, 0)
    assert [len(b["v"]) for b in batches] == [4, 4, 2]
    assert torch.cat([b["v"] for b in batches]).tolist() == select_subset(30, 10, 0)


# --------------------------------------------------------------------------------------- the CLI
def _per_sample_loss(logits, labels, num_labels):  # stand-in if adasam_glue.modeling lacks it
    if num_labels == 1:
        return nn.functional.mse_loss(logits.float().view(-1), labels.float().view(-1), reduction="none")
    return nn.functional.cross_entropy(logits.float(), labels.long(), reduction="none")


def _install_standins(monkeypatch):
    """Use the project's data/modeling functions when they exist; tiny stand-ins otherwise."""
    import importlib

    modeling = importlib.import_module("adasam_glue.modeling")
    if not hasattr(modeling, "per_sample_loss"):
        monkeypatch.setattr(modeling, "per_sample_loss", _per_sample_loss, raising=False)
    data = importlib.import_module("adasam_glue.data")
    if hasattr(data, "load_glue") and hasattr(data, "tokenize_glue"):
        return
    from datasets import Dataset, DatasetDict

    def load_glue(task, source="hub", data_dir=None, hub_name=None, cache_dir=None, **kw):
        rng = random.Random(0)
        words = ["alpha", "beta", "gamma", "delta", "eps", "zeta"]
        rows = {"sentence1": [], "sentence2": [], "label": [], "idx": []}
        for i in range(kw.get("synthetic_train_size", 40)):
            rows["sentence1"].append(" ".join(rng.choices(words, k=rng.randint(3, 9))))
            rows["sentence2"].append(" ".join(rng.choices(words, k=rng.randint(3, 9))))
            rows["label"].append(rng.randint(0, 1))
            rows["idx"].append(i)
        return DatasetDict(train=Dataset.from_dict(rows))

    def tokenize_glue(ds, task, tokenizer, max_length):
        def enc(b):
            out = tokenizer(b["sentence1"], b["sentence2"], truncation=True, max_length=max_length)
            out["labels"] = b["label"]
            return out

        return ds.map(enc, batched=True, remove_columns=["sentence1", "sentence2", "label"])

    monkeypatch.setattr(data, "load_glue", load_glue, raising=False)
    monkeypatch.setattr(data, "tokenize_glue", tokenize_glue, raising=False)


def _tiny_run_dir(tmp_path, save_model=True):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    if save_model:
        vocab = {
            t: i
            for i, t in enumerate(
                ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(50)]
            )
        }
        tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
        )
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=tok,
            unk_token="[UNK]",
            pad_token="[PAD]",
            cls_token="[CLS]",
            sep_token="[SEP]",
            mask_token="[MASK]",
        )
        torch.manual_seed(0)
        model = BertForSequenceClassification(
            BertConfig(
                vocab_size=len(vocab),
                hidden_size=16,
                num_hidden_layers=1,
                num_attention_heads=2,
                intermediate_size=32,
                max_position_embeddings=64,
                num_labels=2,
            )
        )
        model.save_pretrained(run_dir / "model")
        tokenizer.save_pretrained(run_dir / "model")
    config = {
        "task": {"name": "mrpc", "num_labels": 2, "max_length": 32},
        "data": data_config(  # a real record stores every key of the resolved data node
            source="synthetic",
            data_dir=str(tmp_path / "synth"),
            cache_dir=str(tmp_path / "cache"),
            synthetic_train_size=40,
            synthetic_eval_size=16,
        ),
        "trainer": {"save_model": "best"},
        "sharpness": {
            "enabled": False,
            "num_samples": 12,
            "batch_size": 5,
            "power_iters": 3,
            "trace_probes": 2,
            "rhos": [0.01],
            "ascent_steps": 2,
        },
    }
    record = {
        "run_id": "r1",
        "status": "completed",
        "task": "mrpc",
        "seed": 1,
        "config": config,
        "train_curve": [{"update": 1, "loss": 0.7, "lr": 1e-5}],
        "best": {"update": 4, "metrics": {"accuracy": 0.5}},
        "final": {"update": 4, "metrics": {"accuracy": 0.5}},
        "wall_time_s": 1.5,
        "nan_loss": "nan",
    }
    write_record(run_dir / "record.json", record)
    return run_dir


def test_cli_adds_block_and_changes_nothing_else(tmp_path, monkeypatch, capsys):
    _install_standins(monkeypatch)
    run_dir = _tiny_run_dir(tmp_path)
    before = json.loads((run_dir / "record.json").read_text())
    assert main([str(run_dir), "sharpness.top_k=2", "trace_probes=3", "--device", "cpu"]) == 0
    after = read_record(run_dir / "record.json")
    block = after.pop("sharpness")
    assert after == before and list(after) == list(before)
    v = block["values"]
    assert len(v["eigenvalues"]) == 2 and all(math.isfinite(x) for x in v["eigenvalues"])
    assert math.isfinite(v["trace"]) and v["trace_stderr"] is not None
    assert set(v["worst_case"]) == set(v["worst_case_adaptive"]) == {"0.01"}
    assert block["settings"]["num_samples_used"] == 12 and block["settings"]["trace_probes"] == 3
    assert block["cost"]["hvp_count"] == v["eigen_iters"] + 3 and block["cost"]["num_batches"] == 3
    assert block["checkpoint"] == "best" and block["update"] == 4
    assert "sharpness of" in capsys.readouterr().out
    # measuring again gives the same values (fixed subset, own generator) and replaces the block
    again = measure_run(run_dir, ["top_k=2", "trace_probes=3"], device="cpu")
    assert again["values"] == v


def test_cli_missing_checkpoint_names_the_path(tmp_path, capsys):
    run_dir = _tiny_run_dir(tmp_path, save_model=False)
    with pytest.raises(FileNotFoundError, match="save_model=best") as e:
        measure_run(run_dir)
    assert str(run_dir / "model") in str(e.value)
    assert main([str(run_dir)]) == 2
    assert str(run_dir / "model") in capsys.readouterr().err
    text = (run_dir / "record.json").read_text()
    assert "sharpness" not in json.loads(text)


def test_cli_other_schema_names_the_path(tmp_path, capsys):
    run_dir = _tiny_run_dir(tmp_path, save_model=False)
    path = run_dir / "record.json"
    rec = json.loads(path.read_text())
    path.write_text(json.dumps({**rec, "schema_version": 99}))
    with pytest.raises(RecordError, match=str(path)):
        measure_run(run_dir)
    assert main([str(run_dir)]) == 2 and str(path) in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="record.json"):
        measure_run(tmp_path / "nowhere")


def test_cli_bad_override_names_the_key(tmp_path):
    run_dir = _tiny_run_dir(tmp_path)
    with pytest.raises(ValueError, match="nonsense"):
        measure_run(run_dir, ["nonsense=1"])


# -------------------------------------------------------------------------------------------- GPU
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_definitions():
    model, X, y, H = least_squares()
    batches = ls_batches(X, y, 32)
    c = cfg(measures=["eigenvalue", "trace"], power_iters=300, power_tol=1e-9, trace_probes=50)
    gpu = measure_sharpness(model.cuda(), batches, ls_loss, c)["values"]
    assert gpu["eigenvalue"] == pytest.approx(float(torch.linalg.eigvalsh(H)[-1]), rel=1e-3)
    assert abs(gpu["trace"] - float(torch.trace(H))) <= 3 * gpu["trace_stderr"]


def test_sharpness_for_training_uses_the_loader_and_bypasses_autocast_wrapper(monkeypatch):
    from torch.utils.data import DataLoader

    from adasam_glue.sharpness.measure import sharpness_for_training

    _install_standins(monkeypatch)

    class Clf(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 2)

        def forward(self, input_ids, attention_mask=None):
            return types.SimpleNamespace(logits=self.lin(input_ids.float()))

    rows = [
        {"input_ids": [i % 3, 1, 2], "attention_mask": [1, 1, 1], "labels": i % 2, "idx": i}
        for i in range(20)
    ]

    def collate(rs):
        return {k: torch.tensor([r[k] for r in rs]) for k in rs[0]}

    loaders = types.SimpleNamespace(train=DataLoader(rows, batch_size=4, collate_fn=collate))
    fn = sharpness_for_training(
        cfg(num_samples=8, batch_size=3, power_iters=3, trace_probes=2, rhos=[0.01]),
        loaders,
        types.SimpleNamespace(num_labels=2),
    )
    model = Clf()
    calls = []
    original = model.forward
    model.__dict__["_original_forward"] = lambda **kw: (calls.append(1), original(**kw))[1]  # as Accelerate
    block = fn(model)
    assert calls and block["settings"]["num_samples_used"] == 8 and block["cost"]["num_batches"] == 3


def test_posthoc_takes_the_run_dir_lock_and_refuses_an_unfinished_run(tmp_path, capsys):
    """Issue 24 G: the post-hoc measurement wrote record.json without the lock or a status check, so it
    could race a training launch of the same run dir, or add a block that the run's resume would drop."""
    from adasam_glue.run_dir import RunDirLocked, run_dir_lock
    from adasam_glue.sharpness.posthoc import RunNotFinished

    run_dir = _tiny_run_dir(tmp_path)
    path = run_dir / "record.json"
    before = path.read_bytes()
    with run_dir_lock(run_dir):  # a training launch holds it
        with pytest.raises(RunDirLocked, match=f"pid {os.getpid()}"):
            measure_run(run_dir, device="cpu")
        assert main([str(run_dir), "--device", "cpu"]) == 2
        assert "in use by another process" in capsys.readouterr().err
    assert path.read_bytes() == before
    for status in ("running", "preempted", "failed"):
        write_record(path, {**json.loads(before), "status": status})
        with pytest.raises(RunNotFinished, match=f"the run is '{status}'"):
            measure_run(run_dir, device="cpu")
        assert "sharpness" not in json.loads(path.read_text())


def test_lanczos_stops_at_an_exhausted_krylov_space_and_refuses_non_finite_curvature():
    """A 6-dim Hessian has at most 6 Ritz values: asking for 10 returns the 6 eigenvalues, not values
    made up from rounding noise after the breakdown; a NaN Hessian-vector product is a clear error."""
    model, _ = make_quadratic(torch.randn(6, dtype=torch.float64))
    c = cfg(measures=["eigenvalue"], top_k=10, power_iters=50, power_tol=1e-10)
    v = measure_sharpness(model, ONE_BATCH, quad_loss, c)["values"]
    assert v["eigen_iters"] <= 7 and v["eigenvalue_min"] == pytest.approx(min(EIGS), rel=1e-6)
    assert all(min(abs(x - e) for e in EIGS) < 1e-6 for x in v["eigenvalues"])

    def nan_loss(model, batch):
        return model() * float("nan")

    with pytest.raises(ValueError, match="not finite"):
        measure_sharpness(model, ONE_BATCH, nan_loss, cfg(measures=["eigenvalue"]))
