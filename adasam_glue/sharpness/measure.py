"""Sharpness of the training loss at the current weights: top Hessian eigenvalue(s), Hessian trace and
worst-case sharpness in the rho-ball (plain and ASAM-adaptive geometry).

Every SAM-family paper claims its optimizer finds flatter minima (spec ``algorithms.md`` §2-3); this
module measures it on a run's own weights. Definitions follow PyHessian (Yao et al. 2020) and
pytorch-hessian-eigenthings (Golmant et al.), with the fixes their users ask for:

- **device-agnostic**: vectors live on the parameters' device, drawn from a private
  ``torch.Generator`` seeded by ``sharpness.seed`` (no hard-coded CUDA, global RNG untouched);
- **the whole subset, any number of batches**: the loss is the sample-weighted mean of the per-batch
  mean losses, and every Hessian-vector product / gradient is accumulated batch by batch with weight
  ``n_b / N``, so memory stays at one batch;
- **a stopping rule** for the eigenvalues (Ritz residual below ``power_tol`` relative, capped at
  ``power_iters`` products), the residual bound and the products recorded;
- **error bars**: Hutchinson's trace comes with its standard error over probes;
- **cost** recorded beside the values (seconds, Hessian-vector products, gradients).

Measures (``L`` the mean loss on the fixed subset, ``H`` its Hessian at ``w``):

``eigenvalue`` / ``eigenvalues`` / ``eigenvalue_min`` / ``eigen_residual``
    The largest (algebraic) Hessian eigenvalue ``lambda_max``, the ``top_k`` largest, the smallest
    ``lambda_min``, and the Ritz residual bound of these values, by the Lanczos method on ``v -> H v``
    (double backward: ``g = dL/dw`` with ``create_graph=True``, then ``d<g, v>/dw``;
    :func:`extreme_eigenvalues`). Stops when the residual is at most ``power_tol * max |theta|``, at
    most ``power_iters`` products. Plain power iteration (PyHessian's) finds the eigenvalue of largest
    *magnitude*; away from a minimum that is a negative-curvature direction, so both ends are reported.
    ``lambda_min < 0`` says the point is not a minimum of the subset loss.
``trace``, ``trace_stderr``
    Hutchinson: ``tr H = E[z^T H z]`` for Rademacher ``z``; mean over ``trace_probes`` probes and its
    standard error ``std(ddof=1) / sqrt(probes)`` (``None`` with a single probe).
``worst_case[rho]``
    ``max_{||delta|| <= rho} L(w + delta) - L(w)``, approximated by ``ascent_steps`` points of projected
    normalized gradient ascent: ``delta_1 = rho g/||g||`` (SAM's perturbation; a random direction if
    ``g = 0``), then ``delta_{t+1} = P(delta_t + ascent_step_size * rho * g_t/||g_t||)`` with ``g_t`` the
    gradient at ``w + delta_t`` and ``P`` the projection onto the ball. The default step of ``rho`` keeps
    every step inside the ball's diameter; the KKT points of the ball problem are its fixed points. The
    value is the best point evaluated, so it is always a lower bound of the true maximum, and
    ``ascent_steps = 1`` is exactly the SAM (one-step) sharpness.
``worst_case_adaptive[rho]``
    The same in ASAM's geometry (Kwon et al. 2021, arXiv 2102.11600): ``delta = T eps``,
    ``||eps|| <= rho``, ``T = |w| + adaptive_eta`` elementwise (``T = 1`` for biases, as ASAM's code),
    ascent on ``eps`` (gradient ``T g``), so ``delta_1 = rho T^2 g / ||T g||`` is ASAM's perturbation.
``loss``
    ``L(w)`` on the subset.

The subset is :func:`select_subset` of the training split (``num_samples`` rows keyed by
``subset_seed`` only, never the run's seed): the same rows for every run of a task, so numbers compare
across optimizers, schedules and seeds.

Using it in training (the trainer owns this): call :func:`measure_sharpness` on the **main process
only** (``if accelerator.is_main_process``), with the unwrapped module
(``accelerator.unwrap_model(model)``: DDP's hooks do not support double backward, and Accelerate's
autocast forward wrapper would put the measurement in mixed precision), then
``accelerator.wait_for_everyone()``. It leaves the weights, ``.grad``, train/eval modes and every RNG
state exactly as it found them, so training continues bit-identically.

After the fact: ``python -m adasam_glue.sharpness RUN_DIR [key=value ...]`` measures
``RUN_DIR/model`` (written with ``trainer.save_model=best|final``) and adds the block to
``RUN_DIR/record.json`` under ``"sharpness"``, changing nothing else.

Block format (record key ``sharpness``)::

    {"method_version": 3,
     "values": {"eigenvalue": float, "eigenvalues": [float] * top_k, "eigenvalue_min": float,
                "eigen_residual": float, "eigen_iters": int,
                "eigen_converged": bool, "trace": float, "trace_stderr": float | None,
                "worst_case": {"0.01": float, ...}, "worst_case_adaptive": {"0.01": float, ...},
                "loss": float},
     "settings": {num_samples, batch_size, subset_seed, power_iters, power_tol, top_k, trace_probes,
                  rhos, ascent_steps, ascent_step_size, adaptive_eta, seed, measures,
                  "num_samples_used": int, "num_params": int},
     "cost": {"seconds": float, "hvp_count": int, "grad_count": int, "loss_count": int,
              "num_batches": int, "seconds_by_measure": {measure: float}}}

Values of measures not requested are ``None``. ``method_version`` (:data:`adasam_glue.sharpness.block.METHOD_VERSION`) changes when a
measure's definition does; blocks without it are version 1, whose ``eigenvalue`` was the largest-magnitude
one (:func:`adasam_glue.sharpness.block.largest_eigenvalue` reads any version). ``hvp_count`` / ``grad_count`` / ``loss_count`` count
products / gradients / loss evaluations of the *whole subset* (each is ``num_batches`` batch passes).
The post-hoc CLI adds ``"checkpoint"`` (``best``/``final``), ``"update"`` (when known) and
``"measured_at"``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from adasam_glue.config import SharpnessConfig
from adasam_glue.experiments.conf import rho_grid
from adasam_glue.sharpness.block import METHOD_VERSION

MEASURES = ("eigenvalue", "trace", "worst_case")
#: ``rhos: null``: the worst case at the radii of the paper's AdaSAM grid (docs/algorithms.md §4), read
#: from the experiment that sweeps it (:func:`adasam_glue.experiments.conf.rho_grid`).
PAPER_RHOS_FROM = ("table1", "adasam")

LossFn = Callable[[torch.nn.Module, Mapping[str, torch.Tensor]], torch.Tensor]
Vec = list[torch.Tensor]  # one tensor per trainable parameter


# ----------------------------------------------------------------------------------------- settings
def _settings(cfg: Any) -> SharpnessConfig:
    """The ``sharpness`` config node (DictConfig, dataclass, mapping) as the schema's typed object, its
    ranges checked. Every measurement key is required (``conf/sharpness/default.yaml`` holds the values;
    ``enabled``/``every`` are the trainer's); ``rhos: null`` means the paper's grid."""
    given = cfg if isinstance(cfg, Mapping) else dataclasses.asdict(cfg)
    node = OmegaConf.structured(SharpnessConfig(enabled=False, every=0))
    for f in dataclasses.fields(SharpnessConfig):
        if f.name not in given:
            if f.name in ("enabled", "every"):
                continue
            raise ValueError(f"sharpness settings lack {f.name!r} (see conf/sharpness/default.yaml)")
        value = given[f.name]
        if value is None and f.name != "rhos":
            raise ValueError(
                f"sharpness.{f.name} is null: it needs a value (see conf/sharpness/default.yaml)"
            )
        try:
            node[f.name] = value
        except ValidationError as e:
            raise ValueError(f"sharpness.{f.name} must be of type {f.type}, got {value!r}") from e
    s = OmegaConf.to_object(node)
    s.rhos = list(rho_grid(*PAPER_RHOS_FROM) if s.rhos is None else s.rhos)

    def bad(key: str, value: Any, valid: str) -> ValueError:
        return ValueError(f"sharpness.{key} must be {valid}, got {value!r}")

    for key in ("num_samples", "batch_size", "power_iters", "top_k", "trace_probes", "ascent_steps"):
        if getattr(s, key) < 1:
            raise bad(key, getattr(s, key), ">= 1")
    for key in ("power_tol", "adaptive_eta"):
        if not getattr(s, key) >= 0:
            raise bad(key, getattr(s, key), ">= 0")
    if not s.ascent_step_size > 0:
        raise bad("ascent_step_size", s.ascent_step_size, "> 0")
    if not s.rhos or any(not r > 0 for r in s.rhos):
        raise bad("rhos", list(s.rhos), "a non-empty list of radii > 0 (or null)")
    unknown = [m for m in s.measures if m not in MEASURES]
    if unknown or not s.measures:
        raise bad("measures", list(s.measures), f"a non-empty subset of {', '.join(MEASURES)}")
    return s


def rho_key(rho: float) -> str:
    """Key of a radius in the ``worst_case`` dicts: ``0.01 -> "0.01"``, ``1e-3 -> "0.001"``."""
    return str(float(rho))


# ------------------------------------------------------------------------------------------ subset
def select_subset(dataset_len: int, num_samples: int, subset_seed: int) -> list[int]:
    """The ``num_samples`` training rows used for sharpness, sorted; all rows if there are fewer.

    Rows are ranked by a keyed hash of ``(subset_seed, index)``: the same rows on every machine and
    library version, independent of the run's seed, and nested (a smaller subset is a prefix-by-rank
    of a larger one).
    """
    if dataset_len < 0 or num_samples < 1:
        raise ValueError(f"need dataset_len >= 0 and num_samples >= 1, got {dataset_len}, {num_samples}")
    if num_samples >= dataset_len:
        return list(range(dataset_len))
    key = str(int(subset_seed)).encode()

    def rank(i: int) -> bytes:
        return hashlib.blake2b(i.to_bytes(8, "little"), digest_size=8, key=key).digest()

    return sorted(sorted(range(dataset_len), key=rank)[:num_samples])


def subset_batches(
    train_dataset: Any,
    collate: Callable[[list[Any]], dict[str, torch.Tensor]],
    num_samples: int,
    batch_size: int,
    subset_seed: int,
) -> list[dict[str, torch.Tensor]]:
    """Batches (in index order) of the sharpness subset of a tokenized training split.

    ``train_dataset``: the split the run trained on (anything with ``len`` and integer indexing);
    ``collate``: turns a list of its rows into a padded batch (the training loader's ``collate_fn``).
    Trainer and CLI both build the subset here, so they measure the same rows.
    """
    indices = select_subset(len(train_dataset), num_samples, subset_seed)
    return [
        collate([train_dataset[i] for i in indices[s : s + batch_size]])
        for s in range(0, len(indices), batch_size)
    ]


# ------------------------------------------------------------------------------- state preservation
@contextlib.contextmanager
def _preserved_state(model: torch.nn.Module, params: list[torch.nn.Parameter]) -> Iterator[Vec]:
    """Eval mode + grad enabled inside (yields a copy of the weights); weights (bit-exact), modes and
    all RNG states restored after."""
    modes = [(m, m.training) for m in model.modules()]
    weights = [p.detach().clone() for p in params]
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    py_rng = random.getstate()
    np_rng = np.random.get_state()
    model.eval()
    try:
        with torch.enable_grad(), _math_attention(), _no_autocast(params[0].device):
            yield weights
    finally:
        with torch.no_grad():
            for p, w in zip(params, weights):
                p.copy_(w)
        for m, training in modes:
            m.training = training
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
        random.setstate(py_rng)
        np.random.set_state(np_rng)


def _math_attention() -> contextlib.AbstractContextManager:
    """Force SDPA's math kernel: the flash/efficient kernels (CPU and CUDA) have no double backward."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # pragma: no cover - old torch
        return contextlib.nullcontext()
    return sdpa_kernel([SDPBackend.MATH])


def _no_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    try:
        return torch.autocast(device_type=device.type, enabled=False)
    except RuntimeError:  # pragma: no cover - device type without autocast
        return contextlib.nullcontext()


# ---------------------------------------------------------------------------------- vector algebra
def _dot(a: Vec, b: Vec) -> float:
    return float(sum(torch.sum(x * y, dtype=torch.float64).item() for x, y in zip(a, b)))


def _norm(a: Vec) -> float:
    return math.sqrt(max(_dot(a, a), 0.0))


def _scale(a: Vec, c: float) -> Vec:
    return [x * c for x in a]


def _axpy(c: float, x: Vec, y: Vec) -> Vec:
    """``y + c x``."""
    return [yi + c * xi for xi, yi in zip(x, y)]


def _orthogonalise(v: Vec, basis: list[Vec]) -> Vec:
    for u in basis:  # orthonormal basis; modified Gram-Schmidt
        v = _axpy(-_dot(u, v), u, v)
    return v


# --------------------------------------------------------------------------------- the loss oracle
class _Objective:
    """``L(w)`` = sample-weighted mean of ``loss_fn`` over the batches, with counted oracles."""

    def __init__(self, model, params, batches, loss_fn, device):
        self.model, self.params, self.loss_fn = model, params, loss_fn
        self.batches = [_to_device(b, device) for b in batches]
        sizes = [_batch_len(b) for b in self.batches]
        self.num_samples = sum(sizes)
        if self.num_samples == 0:
            raise ValueError("measure_sharpness needs at least one non-empty batch")
        self.weights = [n / self.num_samples for n in sizes]
        self.hvp_count = self.grad_count = self.loss_count = 0

    def _batch_loss(self, batch) -> torch.Tensor:
        loss = self.loss_fn(self.model, batch)
        if loss.dim() != 0:
            raise ValueError(
                f"loss_fn must return the mean loss of the batch (a scalar), got {tuple(loss.shape)}"
            )
        return loss.float() if loss.dtype in (torch.float16, torch.bfloat16) else loss

    def _grad(self, out, inputs, **kw) -> Vec:
        gs = torch.autograd.grad(out, inputs, allow_unused=True, **kw)
        return [torch.zeros_like(p) if g is None else g for g, p in zip(gs, inputs)]

    def loss(self) -> float:
        self.loss_count += 1
        with torch.no_grad():
            return sum(w * self._batch_loss(b).item() for w, b in zip(self.weights, self.batches))

    def loss_and_grad(self) -> tuple[float, Vec]:
        self.grad_count += 1
        total, grad = 0.0, [torch.zeros_like(p) for p in self.params]
        for w, b in zip(self.weights, self.batches):
            loss = self._batch_loss(b)
            for acc, g in zip(grad, self._grad(loss, self.params)):
                acc.add_(g, alpha=w)
            total += w * loss.item()
        return total, grad

    def hvp(self, v: Vec) -> Vec:
        self.hvp_count += 1
        out = [torch.zeros_like(p) for p in self.params]
        for w, b in zip(self.weights, self.batches):
            grads = self._grad(self._batch_loss(b), self.params, create_graph=True)
            gv = sum(torch.sum(g * x) for g, x in zip(grads, v) if g.requires_grad)
            if not isinstance(gv, torch.Tensor) or not gv.requires_grad:
                continue  # loss linear in w on this batch: zero curvature
            for acc, h in zip(out, self._grad(gv, self.params)):
                acc.add_(h, alpha=w)
        return out


def _batch_len(batch: Mapping[str, Any]) -> int:
    if "labels" in batch and isinstance(batch["labels"], torch.Tensor):
        return int(batch["labels"].shape[0])
    for v in batch.values():
        if isinstance(v, torch.Tensor) and v.dim() > 0:
            return int(v.shape[0])
    raise ValueError("cannot tell a batch's size: it has no 'labels' and no tensor with a batch dim")


def _to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


# ---------------------------------------------------------------------------------------- measures
def _random_like(params: list[torch.Tensor], gen: torch.Generator, kind: str) -> Vec:
    out = []
    for p in params:
        if kind == "rademacher":
            z = torch.randint(0, 2, p.shape, generator=gen, device=gen.device).to(p.dtype).mul_(2).sub_(1)
        else:
            z = torch.randn(p.shape, generator=gen, device=gen.device, dtype=p.dtype)
        out.append(z.to(p.device))
    return out


@dataclasses.dataclass
class Spectrum:
    """The ends of the Hessian's spectrum found by :func:`extreme_eigenvalues`."""

    top: list[float]  #: the ``top_k`` largest eigenvalues, largest first
    smallest: float
    residual: float  #: the largest Ritz residual bound of the values reported (an error bound on each)
    hvps: int
    converged: bool


def extreme_eigenvalues(
    obj: _Objective, gen: torch.Generator, top_k: int, max_steps: int, tol: float
) -> Spectrum:
    """Both ends of the Hessian's spectrum by the Lanczos method (docs/algorithms.md §3.5).

    ``m`` steps of the three-term recurrence ``beta_{j+1} q_{j+1} = H q_j - alpha_j q_j - beta_j q_{j-1}``
    from a random unit ``q_1`` build the tridiagonal ``T_m``; its eigenvalues (Ritz values) approximate
    the extreme eigenvalues of ``H`` at both ends at once, far faster than power iteration, whose
    shifted form cannot separate ``lambda_max`` from the bulk of near-zero eigenvalues when a negative
    one dominates. For a Ritz pair ``(theta, T s = theta s)`` the residual ``||H y - theta y||`` is
    ``beta_{m+1} |s_m|``, and some eigenvalue of ``H`` lies within it of ``theta``. The iteration stops
    when every reported value's residual is at most ``tol * max |theta|``, or after ``max_steps``
    products. Without reorthogonalisation a converged Ritz value can repeat (a "ghost"), but no value
    leaves the spectrum's interval, so the two ends are sound; ``top_k > 1`` keeps the Lanczos vectors
    and reorthogonalises against them (memory: ``max_steps`` copies of the parameters). Fewer than
    ``top_k`` values come back when the Krylov space is exhausted first or ``max_steps < top_k``.
    """
    keep = top_k > 1
    q = _random_like(obj.params, gen, "normal")
    q = _scale(q, 1.0 / _norm(q))
    basis: list[Vec] = [q] if keep else []
    q_prev: Vec | None = None
    alphas: list[float] = []
    betas: list[float] = []  # beta_2 .. beta_m (the off-diagonal)
    steps = 0
    while True:
        w = obj.hvp(q)
        steps += 1
        if q_prev is not None:
            w = _axpy(-betas[-1], q_prev, w)
        alpha = _dot(q, w)
        w = _axpy(-alpha, q, w)
        if keep:
            w = _orthogonalise(_orthogonalise(w, basis), basis)  # twice is enough (Kahan, Parlett)
        alphas.append(alpha)
        beta = _norm(w)
        if not (math.isfinite(alpha) and math.isfinite(beta)):
            raise ValueError(
                f"Hessian-vector product {steps} is not finite (alpha={alpha}, beta={beta}): the loss or its "
                "gradient is NaN/inf at these weights, so their curvature cannot be measured"
            )
        theta, vecs = np.linalg.eigh(np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1))
        k = min(top_k, len(theta))
        ends = [*range(len(theta) - 1, len(theta) - 1 - k, -1), 0]  # the top_k largest, the smallest
        residual = max(beta * abs(vecs[-1, i]) for i in ends)
        scale = float(np.max(np.abs(theta))) or 1.0
        breakdown = beta <= 1e-12 * scale  # the Krylov space is invariant: T's eigenvalues are H's
        converged = breakdown or (k == top_k and residual <= tol * scale)
        if converged or steps >= max_steps:
            top = [float(theta[i]) for i in ends[:-1]]
            return Spectrum(top, float(theta[0]), float(residual), steps, bool(converged))
        q_prev, q = q, _scale(w, 1.0 / beta)
        betas.append(beta)
        if keep:
            basis.append(q)


def hutchinson_trace(obj: _Objective, gen: torch.Generator, probes: int) -> tuple[float, float | None]:
    """Mean of ``z^T H z`` over Rademacher probes and its standard error (None for one probe)."""
    samples = []
    for _ in range(probes):
        z = _random_like(obj.params, gen, "rademacher")
        samples.append(_dot(z, obj.hvp(z)))
    arr = np.asarray(samples, dtype=np.float64)
    stderr = float(arr.std(ddof=1) / math.sqrt(len(arr))) if len(arr) > 1 else None
    return float(arr.mean()), stderr


def _adaptive_scale(model: torch.nn.Module, params: list[torch.nn.Parameter], eta: float) -> Vec:
    """ASAM's ``T = |w| + eta`` per element, ``T = 1`` for biases (as the official ASAM code)."""
    names = {id(p): n for n, p in model.named_parameters()}
    return [
        torch.ones_like(p) if names.get(id(p), "").endswith("bias") else p.detach().abs() + eta
        for p in params
    ]


def worst_case_sharpness(
    obj: _Objective,
    w0: Vec,
    loss0: float,
    grad0: Vec,
    rho: float,
    steps: int,
    step_size: float,
    gen: torch.Generator,
    scale: Vec | None = None,
) -> float:
    """``max_{||eps|| <= rho} L(w0 + T eps) - L(w0)`` by projected normalized gradient ascent on eps.

    ``T`` is ``scale`` (elementwise; identity when None). Returns the best value over the ``steps``
    evaluated points (a lower bound of the maximum). Writes into the parameters: the caller restores.
    """

    def ascent_dir(g: Vec) -> Vec | None:
        d = g if scale is None else [gi * ti for gi, ti in zip(g, scale)]  # gradient w.r.t. eps
        n = _norm(d)
        return None if n == 0.0 or not math.isfinite(n) else _scale(d, 1.0 / n)

    u = ascent_dir(grad0)
    if u is None:  # stationary point: start from a random direction
        r = _random_like(obj.params, gen, "normal")
        u = _scale(r, 1.0 / _norm(r))
    eps = _scale(u, rho)
    best = -math.inf
    for t in range(steps):
        with torch.no_grad():
            for p, w, e, s in zip(obj.params, w0, eps, scale or [None] * len(w0)):
                p.copy_(w + (e if s is None else e * s))
        if t == steps - 1:
            best = max(best, obj.loss() - loss0)
            break
        loss, grad = obj.loss_and_grad()
        best = max(best, loss - loss0)
        u = ascent_dir(grad)
        if u is None:
            break
        eps = _axpy(step_size * rho, u, eps)
        n = _norm(eps)
        if n > rho:
            eps = _scale(eps, rho / n)
    return best


def measure_sharpness(
    model: torch.nn.Module,
    batches: Sequence[Mapping[str, torch.Tensor]],
    loss_fn: LossFn,
    cfg: Any,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """Measure the sharpness of the subset loss at the model's current weights; return the block.

    ``batches``: the subset's batches (see :func:`subset_batches`); ``loss_fn(model, batch)`` returns
    the batch's *mean* loss (scalar). ``cfg``: ``sharpness`` config (DictConfig, dataclass or mapping).
    ``device``: where batches are moved (default: the first trainable parameter's device). Call on the
    main process only, with the unwrapped module (module docstring). Weights, ``.grad``, train/eval
    modes and RNG states are left exactly as found. Block format: module docstring.
    """
    s = _settings(cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("measure_sharpness: the model has no parameter with requires_grad")
    for n, p in model.named_parameters():
        if p.requires_grad and p.dtype in (torch.float16, torch.bfloat16):
            raise ValueError(
                f"measure_sharpness needs fp32 weights, got {p.dtype} for {n!r}: measure an "
                "fp32 copy (mixed precision keeps fp32 weights; pass the unwrapped model)"
            )
    device = torch.device(device) if device is not None else params[0].device
    start = time.perf_counter()
    timings: dict[str, float] = {}
    values: dict[str, Any] = dict.fromkeys(
        (
            "eigenvalue",
            "eigenvalues",
            "eigenvalue_min",
            "eigen_residual",
            "eigen_iters",
            "eigen_converged",
            "trace",
            "trace_stderr",
            "worst_case",
            "worst_case_adaptive",
            "loss",
        )
    )
    with _preserved_state(model, params) as w0:
        obj = _Objective(model, params, batches, loss_fn, device)
        gen = torch.Generator(device=params[0].device).manual_seed(s.seed)
        t0 = time.perf_counter()
        values["loss"] = obj.loss()
        timings["loss"] = time.perf_counter() - t0
        if "eigenvalue" in s.measures:
            t0 = time.perf_counter()
            sp = extreme_eigenvalues(obj, gen, s.top_k, s.power_iters, s.power_tol)
            values.update(
                eigenvalue=sp.top[0],
                eigenvalues=sp.top,
                eigenvalue_min=sp.smallest,
                eigen_residual=sp.residual,
                eigen_iters=sp.hvps,
                eigen_converged=sp.converged,
            )
            timings["eigenvalue"] = time.perf_counter() - t0
        if "trace" in s.measures:
            t0 = time.perf_counter()
            values["trace"], values["trace_stderr"] = hutchinson_trace(obj, gen, s.trace_probes)
            timings["trace"] = time.perf_counter() - t0
        if "worst_case" in s.measures:
            t0 = time.perf_counter()
            loss0, grad0 = obj.loss_and_grad()
            scale = _adaptive_scale(model, params, s.adaptive_eta)
            plain, adaptive = {}, {}
            for rho in s.rhos:
                plain[rho_key(rho)] = worst_case_sharpness(
                    obj, w0, loss0, grad0, rho, s.ascent_steps, s.ascent_step_size, gen
                )
                adaptive[rho_key(rho)] = worst_case_sharpness(
                    obj, w0, loss0, grad0, rho, s.ascent_steps, s.ascent_step_size, gen, scale=scale
                )
            values.update(worst_case=plain, worst_case_adaptive=adaptive)
            timings["worst_case"] = time.perf_counter() - t0
    settings = dataclasses.asdict(s)
    settings.update(
        rhos=list(s.rhos),
        measures=list(s.measures),
        num_samples_used=obj.num_samples,
        num_params=sum(p.numel() for p in params),
    )
    cost = {
        "seconds": time.perf_counter() - start,
        "hvp_count": obj.hvp_count,
        "grad_count": obj.grad_count,
        "loss_count": obj.loss_count,
        "num_batches": len(obj.batches),
        "seconds_by_measure": timings,
    }
    return {"method_version": METHOD_VERSION, "values": values, "settings": settings, "cost": cost}


# ------------------------------------------------------------------------------- in training
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def build_loss_fn(num_labels: int) -> LossFn:
    """``loss_fn(model, batch)``: mean of :func:`adasam_glue.modeling.per_sample_loss` (the training loss).

    Only the model inputs of the batch reach the model. A module prepared by Accelerate under mixed
    precision carries an autocast forward wrapper (kept by ``unwrap_model``); it is bypassed so the
    measurement runs in fp32.
    """
    from adasam_glue.modeling import per_sample_loss

    def loss_fn(model: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        forward = model.__dict__.get("_original_forward") or model
        logits = forward(**{k: batch[k] for k in MODEL_INPUTS if k in batch}).logits
        return per_sample_loss(logits, batch["labels"], num_labels).mean()

    return loss_fn


def sharpness_for_training(
    cfg: Any, loaders: Any, task: Any, device: torch.device | str | None = None
) -> Callable[[torch.nn.Module], dict[str, Any]]:
    """``fn(model) -> block`` for the trainer: the subset is built once from the training loader.

    ``loaders.train`` (or ``loaders`` itself) is the training ``DataLoader`` *before*
    ``accelerator.prepare`` (its ``dataset`` is the tokenized training split, its ``collate_fn`` pads);
    ``task`` has ``num_labels``. Call ``fn`` on the main process only, with the unwrapped model.
    """
    loader = getattr(loaders, "train", loaders)
    dataset = getattr(loaders, "train_dataset", None) or loader.dataset
    collate = getattr(loaders, "collator", None) or loader.collate_fn
    s = _settings(cfg)
    batches = subset_batches(dataset, collate, s.num_samples, s.batch_size, s.subset_seed)
    loss_fn = build_loss_fn(task.num_labels)
    return lambda model: measure_sharpness(model, batches, loss_fn, cfg, device=device)
