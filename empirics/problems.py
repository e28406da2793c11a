"""Problems with known (or estimated) constants L, μ, σ², F*, F(x₀) for the engine (issue 4).

Every problem follows the ``Problem`` contract of ``docs/dev/CONTRACTS.md``: m workers, a pure
mini-batch ``loss(params, batch)`` usable under ``torch.func.grad``/``vmap``, seeded ``sample``,
exact ``full_loss``/``full_grad``/``grad_norm2`` of the global objective, and ``constants``.

Conventions (all problems):

* The global objective is F = (1/m) Σ_i F_i with F_i worker i's objective. Finite-sum problems give
  every worker the same number of samples, so F is also the plain mean over the data in use.
* A stochastic gradient g of worker i on a batch of b samples has E g = ∇F_i(x) and
  E‖g − ∇F_i(x)‖² = σ_i²(x)/b, where σ_i²(x) is the single-sample variance (``sigma2_at``).
  ``constants.sigma2`` is stated for b = 1; divide by b for mini-batches.
* ``sample`` draws with replacement (i.i.d. samples of the worker's distribution), which is what
  makes the σ²/b formula exact.
* Worker i's generator is ``torch.Generator().manual_seed(seed_for(seed, i))``
  (``Problem.generators``).
* Constants are computed lazily (first access of ``.constants``), in float64 on the CPU.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any

import numpy as np
import torch
from torch.func import grad, jvp, vmap

from empirics.data import (
    STREAM_DATA,
    STREAM_INIT,
    STREAM_POINTS,
    STREAM_SHIFT,
    STREAM_SPLIT,
    features_with_spectrum,
    gaussian_mixture,
    geometric_spectrum,
    rng_for,
    split_shards,
)

Params = dict[str, torch.Tensor]
Batch = tuple[torch.Tensor, ...]

__all__ = [
    "Constants",
    "Estimate",
    "LeastSquares",
    "LogisticRegression",
    "MLPClassifier",
    "NoisyQuadratic",
    "PiecewiseQuadratic1D",
    "Problem",
    "seed_for",
]

_SEED_PRIME = 1_000_003
_CPU = torch.device("cpu")


def seed_for(seed: int, worker: int) -> int:
    """Seed of worker ``worker``'s generator in a run with seed ``seed``.

    s_i = (seed · 1 000 003 + i) mod 2⁶³ — injective in (seed, i) for 0 ≤ i < 1 000 003, with no
    hashing, so the simulator and the distributed backend agree by construction.
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer (got {seed!r})")
    if not isinstance(worker, (int, np.integer)) or not 0 <= worker < _SEED_PRIME:
        raise ValueError(f"worker must be an integer in [0, {_SEED_PRIME}) (got {worker!r})")
    return (int(seed) * _SEED_PRIME + int(worker)) % 2**63


# ---------------------------------------------------------------------------------------------
# plain data: Estimate, Constants
# ---------------------------------------------------------------------------------------------
def _plain(v: Any) -> Any:
    """numpy / torch scalars and arrays → JSON-ready Python objects."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, torch.Tensor):
        return _plain(v.detach().cpu().numpy())
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


@dataclass(frozen=True)
class Estimate:
    """A constant with how it was obtained: ``value``, ``method`` (text), ``uncertainty``.

    ``uncertainty = 0`` means exact (up to float64 rounding) for the definition stated in
    ``method``; otherwise ``method`` says what the number is (standard error, spread over points,
    width of a bracket). ``detail`` holds the raw numbers behind it (per-point values, ...).
    """

    value: float
    method: str
    uncertainty: float = 0.0
    detail: dict[str, Any] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", float(self.value))
        object.__setattr__(self, "uncertainty", float(self.uncertainty))
        if not math.isfinite(self.value):
            raise ValueError(f"Estimate value must be finite (got {self.value}; {self.method})")
        if not self.uncertainty >= 0:
            raise ValueError(f"Estimate uncertainty must be >= 0 (got {self.uncertainty})")

    @property
    def exact(self) -> bool:
        return self.uncertainty == 0.0

    def __float__(self) -> float:
        return self.value

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "method": self.method, "uncertainty": self.uncertainty,
                "detail": _plain(self.detail)}

    def __repr__(self) -> str:
        unc = "exact" if self.exact else f"± {self.uncertainty:.3g}"
        return f"Estimate({self.value:.6g} {unc}: {self.method})"


@dataclass(frozen=True)
class Constants:
    """The constants a bound needs. Each field is an :class:`Estimate` (or None if undefined).

    L: smoothness of F. mu: strong convexity of F (None if non-convex). sigma2: single-sample
    gradient variance bound (E‖g − ∇F_i‖² ≤ beta·‖∇F(x)‖² + sigma2 per sample; divide by b for a
    batch of b). F_star: min F. F0: F(x₀). beta: gradient-dependent part of the noise (None if
    the noise bound is uniform). L_local: max_i smoothness of the worker objectives F_i.
    zeta2_x0, zeta2_star: heterogeneity ζ² = (1/m) Σ_i ‖∇F_i(x) − ∇F(x)‖² at x₀ and at x*.
    """

    L: Estimate
    mu: Estimate | None
    sigma2: Estimate
    F_star: Estimate
    F0: Estimate
    beta: Estimate | None = None
    L_local: Estimate | None = None
    zeta2_x0: Estimate | None = None
    zeta2_star: Estimate | None = None

    @property
    def initial_gap(self) -> float:
        """F(x₀) − F* (a lower bound on it when F* is only an upper estimate)."""
        return self.F0.value - self.F_star.value

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (None if (e := getattr(self, f.name)) is None else e.to_dict())
                for f in fields(self)}

    def __repr__(self) -> str:
        rows = [f"  {f.name:<10} = {getattr(self, f.name)!r}" for f in fields(self)]
        return "Constants(\n" + "\n".join(rows) + "\n)"


# ---------------------------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------------------------
def _int_at_least(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low} (got {value!r})")
    return int(value)


def _real_at_least(name: str, value: Any, low: float, strict: bool = False) -> float:
    v = float(value)
    ok = v > low if strict else v >= low
    if not (ok and math.isfinite(v)):
        raise ValueError(f"{name} must be a finite number {'>' if strict else '>='} {low} "
                         f"(got {value!r})")
    return v


def _dtype(dtype: torch.dtype) -> torch.dtype:
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64 (got {dtype})")
    return dtype


def _flat(tree: Params) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tree.values()])


def _sqnorm(tree: Params) -> torch.Tensor:
    return sum((t**2).sum() for t in tree.values())


# ---------------------------------------------------------------------------------------------
# the contract
# ---------------------------------------------------------------------------------------------
class Problem(ABC):
    """Base class of the engine's problems (see the module docstring for the conventions)."""

    m: int
    device: torch.device
    dtype: torch.dtype
    param_shapes: dict[str, tuple[int, ...]]

    def __init__(self, m: int, device: torch.device | str | None, dtype: torch.dtype) -> None:
        self.m = _int_at_least("m", m, 1)
        self.device = torch.device(device) if device is not None else _CPU
        self.dtype = _dtype(dtype)

    # -- to implement ---------------------------------------------------------------------
    @abstractmethod
    def _init_numpy(self) -> dict[str, np.ndarray]:
        """x₀ as float64 arrays (so float32 and float64 runs start from the same point)."""

    @abstractmethod
    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        """Scalar mini-batch loss; pure in ``params``, usable under torch.func.grad/vmap."""

    @abstractmethod
    def sample(self, worker: int, batch_size: int, generator: torch.Generator) -> Batch:
        """One mini-batch of ``batch_size`` i.i.d. samples of worker ``worker``."""

    @abstractmethod
    def objective(self, params: Params) -> torch.Tensor:
        """F(params) as a differentiable scalar tensor (exact)."""

    @abstractmethod
    def sigma2_at(self, params: Params, batch_size: int = 1, worker: int | None = None) -> float:
        """E‖g − ∇F_i(x)‖² of a batch-``batch_size`` gradient of worker i (None: mean over i)."""

    @abstractmethod
    def _compute_constants(self) -> Constants: ...

    # -- shared ---------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Number of parameters d."""
        return sum(math.prod(s) for s in self.param_shapes.values())

    def init_params(self, device: torch.device | str | None = None,
                    dtype: torch.dtype | None = None) -> Params:
        """x₀ (one worker's parameters) on ``device`` (default: the problem's) in ``dtype``
        (default: the problem's, float64 unless set). Same seed → same x₀."""
        dev = torch.device(device) if device is not None else self.device
        dt = _dtype(dtype) if dtype is not None else self.dtype
        return {k: torch.as_tensor(v, dtype=dt, device=dev) for k, v in self._init_numpy().items()}

    def generators(self, seed: int, device: torch.device | str | None = None
                   ) -> list[torch.Generator]:
        """The m worker generators of a run with seed ``seed`` (seeded with :func:`seed_for`)."""
        dev = torch.device(device) if device is not None else self.device
        return [torch.Generator(device=dev).manual_seed(seed_for(seed, i)) for i in range(self.m)]

    def sample_all(self, batch_size: int, generators: Sequence[torch.Generator]) -> Batch:
        """Stacked batches of all m workers (leading axis m); equals stacking ``sample(i, ...)``."""
        if len(generators) != self.m:
            raise ValueError(f"generators must hold one generator per worker "
                             f"(got {len(generators)}, m = {self.m})")
        per = [self.sample(i, batch_size, g) for i, g in enumerate(generators)]
        return tuple(torch.stack(parts) for parts in zip(*per, strict=True))

    def full_loss(self, params: Params) -> float:
        """F(params), exact."""
        return float(self.objective(params).detach())

    def full_grad(self, params: Params) -> Params:
        """∇F(params), exact, in the dtype/device of ``params``."""
        return {k: v.detach() for k, v in grad(self.objective)(params).items()}

    def grad_norm2(self, params: Params) -> float:
        """‖∇F(params)‖²."""
        return float(_sqnorm(self.full_grad(params)))

    def worker_grad(self, params: Params, worker: int) -> Params:
        """∇F_i(params) (all workers share F unless the problem splits data)."""
        self._check_sample_args(worker, 1)
        return self.full_grad(params)

    def sigma2_mc(self, params: Params, batch_size: int, worker: int, n_draws: int,
                  generator: torch.Generator) -> Estimate:
        """Monte-Carlo estimate of E‖g − ∇F_i(x)‖² from ``n_draws`` batches drawn by ``sample``,
        with the standard error of the mean."""
        _int_at_least("n_draws", n_draws, 2)
        self._check_sample_args(worker, batch_size)
        gi = _flat(self.worker_grad(params, worker))
        batches = [self.sample(worker, batch_size, generator) for _ in range(n_draws)]
        stacked = tuple(torch.stack(parts).to(gi.device) for parts in zip(*batches, strict=True))
        g = vmap(grad(self.loss), in_dims=(None, 0))(params, stacked)
        dev = ((torch.cat([v.reshape(n_draws, -1) for v in g.values()], 1) - gi) ** 2).sum(1)
        dev = dev.double()
        return Estimate(dev.mean(), f"mean of {n_draws} sampled ‖g − ∇F_i‖² (batch "
                        f"{batch_size}); uncertainty = standard error",
                        dev.std() / math.sqrt(n_draws))

    @cached_property
    def constants(self) -> Constants:
        """L, μ, σ², F*, F(x₀) (and β, L_local, ζ² where defined), computed on first access."""
        return self._compute_constants()

    def _check_sample_args(self, worker: int, batch_size: int) -> None:
        if isinstance(worker, bool) or not isinstance(worker, (int, np.integer)) \
                or not 0 <= worker < self.m:
            raise ValueError(f"worker must be an integer in [0, {self.m}) (got {worker!r})")
        _int_at_least("batch_size", batch_size, 1)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._repr_args().items())
        return f"{type(self).__name__}({args})"

    def _repr_args(self) -> dict[str, Any]:
        return {"m": self.m, "dim": self.dim}


def _randn(generator: torch.Generator, shape: tuple[int, ...], dtype: torch.dtype,
           device: torch.device) -> torch.Tensor:
    return torch.randn(shape, generator=generator, device=generator.device, dtype=dtype).to(device)


# ---------------------------------------------------------------------------------------------
# closed-form stochastic problems (paper 4's experiments)
# ---------------------------------------------------------------------------------------------
class NoisyQuadratic(Problem):
    """Quadratic with multiplicative and additive noise (paper 4 §4.1; digest §4.6 A).

    f(x, z) = Σ_i (a_i/2) x_i² (1 + z_{1,i}) + xᵀz₂, z₁ ~ N(0, c² I_d), z₂ ~ N(0, σ² I_d); the
    formula is the one in the authors' notebook (digest [V:Local-SGD-re notebooks]; defaults there:
    d = 3, a = (1, 2, 3), c = 1, σ = 0.5, x₀ = 𝟙, so F(x₀) = 3). A batch is (z₁, z₂), each (b, d),
    and the loss is the mean of f over the b draws. Constants (derived, exact):
    F(x) = ½ xᵀAx with A = diag(a), L = max a_i, μ = min a_i, x* = 0, F* = 0; the gradient noise
    g − ∇F = A x ⊙ z₁ + z₂ has E‖·‖² = c²‖Ax‖² + dσ² = β‖∇F(x)‖² + σ²_add with β = c² and
    σ²_add = dσ² (equality, since ∇F = Ax); a batch of b draws divides it by b. Every worker
    samples the same distribution (ζ² = 0). The single-draw f(·, z) has curvature a_i(1 + z₁ᵢ),
    which is unbounded: only F is L-smooth.
    """

    def __init__(self, d: int = 3, m: int = 1, a: Sequence[float] | None = None, c: float = 1.0,
                 sigma: float = 0.5, x0: Sequence[float] | float = 1.0,
                 device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float64) -> None:
        super().__init__(m, device, dtype)
        self.d = _int_at_least("d", d, 1)
        a_np = np.arange(1, self.d + 1, dtype=np.float64) if a is None \
            else np.asarray(a, dtype=np.float64).reshape(-1)
        if a_np.shape != (self.d,) or not (np.all(np.isfinite(a_np)) and np.all(a_np > 0)):
            raise ValueError(f"a must be {self.d} finite positive numbers (got {a!r})")
        self.a = a_np
        self.c = _real_at_least("c", c, 0.0)
        self.sigma = _real_at_least("sigma", sigma, 0.0)
        x0_np = np.broadcast_to(np.asarray(x0, dtype=np.float64), (self.d,)).copy() \
            if np.ndim(x0) == 0 else np.asarray(x0, dtype=np.float64)
        if x0_np.shape != (self.d,) or not np.all(np.isfinite(x0_np)):
            raise ValueError(f"x0 must be a finite scalar or {self.d} finite numbers (got {x0!r})")
        self.x0 = x0_np
        self.param_shapes = {"x": (self.d,)}
        self._a_t: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def _a(self, like: torch.Tensor) -> torch.Tensor:
        key = (like.device, like.dtype)
        if key not in self._a_t:
            self._a_t[key] = torch.as_tensor(self.a, dtype=like.dtype, device=like.device)
        return self._a_t[key]

    def _init_numpy(self) -> dict[str, np.ndarray]:
        return {"x": self.x0.copy()}

    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        x = params["x"]
        z1, z2 = (t.to(x.dtype) for t in batch)
        f = 0.5 * (self._a(x) * x**2 * (1 + z1)).sum(-1) + (z2 * x).sum(-1)
        return f.mean()

    def sample(self, worker: int, batch_size: int, generator: torch.Generator) -> Batch:
        self._check_sample_args(worker, batch_size)
        shape = (batch_size, self.d)
        z1 = self.c * _randn(generator, shape, self.dtype, self.device)
        z2 = self.sigma * _randn(generator, shape, self.dtype, self.device)
        return z1, z2

    def objective(self, params: Params) -> torch.Tensor:
        x = params["x"]
        return 0.5 * (self._a(x) * x**2).sum()

    def sigma2_at(self, params: Params, batch_size: int = 1, worker: int | None = None) -> float:
        """(c²‖Ax‖² + dσ²)/b, the same for every worker."""
        _int_at_least("batch_size", batch_size, 1)
        ax = self.a * params["x"].detach().cpu().double().numpy()
        return float(self.c**2 * ax @ ax + self.d * self.sigma**2) / batch_size

    def _compute_constants(self) -> Constants:
        src = "paper 4 §4.1 quadratic (digest §4.6 A), derived"
        f0 = 0.5 * float(self.a @ self.x0**2)
        return Constants(
            L=Estimate(self.a.max(), f"max a_i, exact ({src})"),
            mu=Estimate(self.a.min(), f"min a_i, exact ({src})"),
            sigma2=Estimate(self.d * self.sigma**2,
                            "d·σ²: additive part of E‖g−∇F‖² = c²‖∇F(x)‖² + dσ², exact"),
            beta=Estimate(self.c**2, "c²: multiplicative part, c²‖Ax‖² = c²‖∇F(x)‖², exact"),
            F_star=Estimate(0.0, "F(0) = 0, x* = 0, exact"),
            F0=Estimate(f0, "½ Σ a_i x0_i², exact"),
            L_local=Estimate(self.a.max(), "all workers share F, exact"),
            zeta2_x0=Estimate(0.0, "identical worker distributions, exact"),
            zeta2_star=Estimate(0.0, "identical worker distributions, exact"),
        )

    def _repr_args(self) -> dict[str, Any]:
        return {"d": self.d, "m": self.m, "c": self.c, "sigma": self.sigma}


class PiecewiseQuadratic1D(Problem):
    """The non-C² one-dimensional function of paper 4's speed-up experiment (digest §4.6 B).

    f(x) = μx² for x ≥ 0 and ½μx² for x < 0 (the notebook puts 0 in the first branch) with
    additive gradient noise: f(x, z) = f(x) + x·z, z ~ N(0, σ²); notebook defaults μ = 1, σ = 8,
    x₀ = 2 [V:Local-SGD-re notebooks]. A batch is z of shape (b, 1). Constants (derived, exact):
    f′ is continuous and piecewise linear with slopes 2μ and μ, so L = 2μ and f is μ-strongly
    convex; x* = 0, F* = 0; E‖g − ∇F‖² = σ² per draw (β = 0). f is not twice differentiable at 0.
    """

    def __init__(self, m: int = 1, mu: float = 1.0, sigma: float = 8.0, x0: float = 2.0,
                 device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float64) -> None:
        super().__init__(m, device, dtype)
        self.mu = _real_at_least("mu", mu, 0.0, strict=True)
        self.sigma = _real_at_least("sigma", sigma, 0.0)
        self.x0 = float(x0)
        if not math.isfinite(self.x0):
            raise ValueError(f"x0 must be finite (got {x0!r})")
        self.param_shapes = {"x": (1,)}

    def _f(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x >= 0, self.mu * x**2, 0.5 * self.mu * x**2).sum()

    def _init_numpy(self) -> dict[str, np.ndarray]:
        return {"x": np.array([self.x0])}

    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        x = params["x"]
        z = batch[0].to(x.dtype)
        return self._f(x) + (z * x).sum(-1).mean()

    def sample(self, worker: int, batch_size: int, generator: torch.Generator) -> Batch:
        self._check_sample_args(worker, batch_size)
        return (self.sigma * _randn(generator, (batch_size, 1), self.dtype, self.device),)

    def objective(self, params: Params) -> torch.Tensor:
        return self._f(params["x"])

    def sigma2_at(self, params: Params, batch_size: int = 1, worker: int | None = None) -> float:
        """σ²/b at every x."""
        _int_at_least("batch_size", batch_size, 1)
        return self.sigma**2 / batch_size

    def _compute_constants(self) -> Constants:
        src = "paper 4 speed-up function (digest §4.6 B), derived"
        f0 = (1.0 if self.x0 >= 0 else 0.5) * self.mu * self.x0**2
        return Constants(
            L=Estimate(2 * self.mu, f"2μ: Lipschitz constant of f′, exact ({src})"),
            mu=Estimate(self.mu, f"μ: f′ increasing with slope ≥ μ, exact ({src})"),
            sigma2=Estimate(self.sigma**2, "σ²: additive N(0, σ²) noise, exact"),
            beta=Estimate(0.0, "noise independent of x, exact"),
            F_star=Estimate(0.0, "f(0) = 0, x* = 0, exact"),
            F0=Estimate(f0, "f(x₀), exact"),
            L_local=Estimate(2 * self.mu, "all workers share F, exact"),
            zeta2_x0=Estimate(0.0, "identical worker distributions, exact"),
            zeta2_star=Estimate(0.0, "identical worker distributions, exact"),
        )

    def _repr_args(self) -> dict[str, Any]:
        return {"m": self.m, "mu": self.mu, "sigma": self.sigma, "x0": self.x0}


# ---------------------------------------------------------------------------------------------
# finite sums over seeded synthetic data
# ---------------------------------------------------------------------------------------------
def _unflatten(theta: torch.Tensor, shapes: dict[str, tuple[int, ...]]) -> Params:
    sizes = [math.prod(s) for s in shapes.values()]
    return {k: t.reshape(s) for (k, s), t in zip(shapes.items(), torch.split(theta, sizes),
                                                 strict=True)}


class _FiniteSum(Problem):
    """Data (X, y) dealt into m equal shards by :func:`empirics.data.split_shards`.

    Worker i owns rows i·n_per … (i+1)·n_per − 1 of the stored data (``shard_indices`` gives their
    positions in the generated data); F_i is the mean loss over them and F = (1/m) Σ_i F_i is the
    mean over all n = m·n_per rows. σ_i²(x) = (1/n_per) Σ_{j∈S_i} ‖∇f_j(x) − ∇F_i(x)‖² is computed
    exactly from per-sample gradients (torch.func.vmap over grad), so the variance of a batch of b
    indices drawn uniformly with replacement from S_i is exactly σ_i²(x)/b.
    """

    def _setup(self, x: np.ndarray, y: np.ndarray, keys: np.ndarray, heterogeneity: float,
               seed: int) -> None:
        self.heterogeneity = float(heterogeneity)
        shards = split_shards(keys, self.m, self.heterogeneity, rng_for(seed, STREAM_SPLIT))
        self.shard_indices = shards
        self.n_per = shards.shape[1]
        self.n = self.m * self.n_per
        order = shards.reshape(-1)
        self._x_np, self._y_np = x[order], y[order]
        self._data: dict[tuple[torch.device, torch.dtype], Batch] = {}

    @staticmethod
    def _validate_common(n_samples: int, m: int, seed: int, heterogeneity: float) -> int:
        n = _int_at_least("n_samples", n_samples, 1)
        m = _int_at_least("m", m, 1)
        _int_at_least("seed", seed, 0)
        h = float(heterogeneity)
        if not 0.0 <= h <= 1.0:
            raise ValueError(f"heterogeneity must be in [0, 1] (got {heterogeneity!r})")
        if n < m:
            raise ValueError(f"n_samples must be >= m: each worker needs a sample "
                             f"(got n_samples={n}, m={m})")
        return m * (n // m)

    def data(self, device: torch.device | str | None = None,
             dtype: torch.dtype | None = None) -> Batch:
        """(X, y) of all n rows, worker-major, as tensors on ``device`` in ``dtype``."""
        dev = torch.device(device) if device is not None else self.device
        dt = _dtype(dtype) if dtype is not None else self.dtype
        if (dev, dt) not in self._data:
            y_dt = torch.int64 if self._y_np.dtype.kind == "i" else dt
            self._data[(dev, dt)] = (torch.as_tensor(self._x_np, dtype=dt, device=dev),
                                     torch.as_tensor(self._y_np, dtype=y_dt, device=dev))
        return self._data[(dev, dt)]

    def _data_like(self, params: Params) -> Batch:
        t = next(iter(params.values()))
        return self.data(t.device, t.dtype)

    def _by_worker(self, data: Batch) -> Batch:
        return tuple(t.reshape(self.m, self.n_per, *t.shape[1:]) for t in data)

    def sample(self, worker: int, batch_size: int, generator: torch.Generator) -> Batch:
        """b row indices uniform with replacement from worker's shard → (X[j], y[j])."""
        self._check_sample_args(worker, batch_size)
        j = torch.randint(self.n_per, (batch_size,), generator=generator,
                          device=generator.device).to(self.device) + worker * self.n_per
        return tuple(t[j] for t in self.data())

    def objective(self, params: Params) -> torch.Tensor:
        return self.loss(params, self._data_like(params))

    def worker_objective(self, params: Params, worker: int) -> float:
        """F_i(params)."""
        self._check_sample_args(worker, 1)
        rows = slice(worker * self.n_per, (worker + 1) * self.n_per)
        return float(self.loss(params, tuple(t[rows] for t in self._data_like(params))))

    def worker_grad(self, params: Params, worker: int) -> Params:
        self._check_sample_args(worker, 1)
        rows = slice(worker * self.n_per, (worker + 1) * self.n_per)
        data = tuple(t[rows] for t in self._data_like(params))
        return {k: v.detach() for k, v in grad(self.loss)(params, data).items()}

    def worker_grads(self, params: Params) -> Params:
        """∇F_i(params) for all i, stacked along a leading axis m."""
        per_worker = self._by_worker(self._data_like(params))
        return vmap(grad(self.loss), in_dims=(None, 0))(params, per_worker)

    def zeta2_at(self, params: Params) -> float:
        """ζ²(x) = (1/m) Σ_i ‖∇F_i(x) − ∇F(x)‖² (∇F = mean of the ∇F_i, equal shard sizes)."""
        g = self.worker_grads(params)
        return float(sum(((v - v.mean(0)) ** 2).sum() for v in g.values()) / self.m)

    def _sigma2_workers(self, params: Params) -> torch.Tensor:
        """σ_i²(x) for every worker i (single sample), shape (m,)."""
        x, y = self._data_like(params)
        gbar = torch.cat([v.reshape(self.m, -1) for v in self.worker_grads(params).values()], 1)
        chunk = max(1, 2**22 // gbar.shape[1])
        per_sample = vmap(grad(self.loss), in_dims=(None, 0))
        acc = torch.zeros(self.m, dtype=gbar.dtype, device=gbar.device)
        for s in range(0, self.n, chunk):
            xb, yb = x[s:s + chunk], y[s:s + chunk]
            g = per_sample(params, (xb.unsqueeze(1), yb.unsqueeze(1)))
            flat = torch.cat([v.reshape(xb.shape[0], -1) for v in g.values()], 1)
            wid = torch.arange(s, s + xb.shape[0], device=gbar.device) // self.n_per
            acc.index_add_(0, wid, ((flat - gbar[wid]) ** 2).sum(1))
        return acc / self.n_per

    def sigma2_at(self, params: Params, batch_size: int = 1, worker: int | None = None) -> float:
        """Exact σ_i²(x)/b for worker i, or (1/m) Σ_i σ_i²(x)/b if ``worker`` is None."""
        _int_at_least("batch_size", batch_size, 1)
        params = {k: v.detach() for k, v in params.items()}
        s2 = self._sigma2_workers(params)
        if worker is None:
            return float(s2.mean()) / batch_size
        self._check_sample_args(worker, batch_size)
        return float(s2[worker]) / batch_size

    def _sigma2_over(self, points: list[tuple[str, Params]]) -> tuple[list[float], list[float]]:
        maxes, means = [], []
        for _, p in points:
            s2 = self._sigma2_workers(p)
            maxes.append(float(s2.max()))
            means.append(float(s2.mean()))
        return maxes, means

    def _params64(self, theta: np.ndarray | torch.Tensor) -> Params:
        t = torch.as_tensor(theta, dtype=torch.float64, device=_CPU)
        return _unflatten(t, self.param_shapes)

    def _repr_args(self) -> dict[str, Any]:
        return {"n_samples": self.n, "m": self.m, "dim": self.dim,
                "heterogeneity": self.heterogeneity, "seed": self.seed}


class _ConvexFiniteSum(_FiniteSum):
    """Linear model w ∈ ℝ^d with x₀ = 0 and a unique minimiser x* found by a float64 solve."""

    l2: float

    def _init_numpy(self) -> dict[str, np.ndarray]:
        return {"w": np.zeros(self.d)}

    @abstractmethod
    def _solve(self) -> np.ndarray: ...

    @abstractmethod
    def _curvature(self) -> tuple[Estimate, Estimate, Estimate]:
        """(L, μ, L_local) of the objectives."""

    @cached_property
    def x_star(self) -> Params:
        """The minimiser x* (float64, CPU)."""
        return {"w": torch.from_numpy(self._solve())}

    def _compute_constants(self) -> Constants:
        x0 = self.init_params(_CPU, torch.float64)
        xs = self.x_star
        ts = [0.0, 0.25, 0.5, 0.75, 1.0]
        points = [(f"t={t}", {"w": (1 - t) * x0["w"] + t * xs["w"]}) for t in ts]
        maxes, means = self._sigma2_over(points)
        L, mu, L_local = self._curvature()
        gs = self.grad_norm2(xs)
        return Constants(
            L=L, mu=mu, L_local=L_local,
            sigma2=Estimate(
                max(maxes),
                "max over workers i and x on the segment x₀→x* (t = 0, ¼, ½, ¾, 1) of the exact "
                "single-sample variance σ_i²(x) = mean_j‖∇f_j(x) − ∇F_i(x)‖²; divide by b",
                detail={"t": ts, "max_over_workers": maxes, "mean_over_workers": means,
                        "at_x0": maxes[0], "at_x_star": maxes[-1]}),
            F_star=Estimate(self.full_loss(xs), f"F(x*), x* by {self._solve_method} in float64 "
                            f"(‖∇F(x*)‖² = {gs:.2e})", detail={"grad_norm2": gs}),
            F0=Estimate(self.full_loss(x0), "F(x₀), x₀ = 0, exact"),
            zeta2_x0=Estimate(self.zeta2_at(x0), "(1/m) Σ_i ‖∇F_i(x₀) − ∇F(x₀)‖², exact"),
            zeta2_star=Estimate(self.zeta2_at(xs), "(1/m) Σ_i ‖∇F_i(x*)‖², exact"),
        )

    def _hessian_data(self) -> tuple[np.ndarray, list[np.ndarray]]:
        """λ(XᵀX/n) and λ(X_iᵀX_i/n_per) for every worker i (ascending)."""
        x = self._x_np
        full = np.linalg.eigvalsh(x.T @ x / self.n)
        # X_iᵀX_i and X_iX_iᵀ share their non-zero eigenvalues: use the smaller Gram matrix
        per = [np.linalg.eigvalsh(xi.T @ xi if self.d <= self.n_per else xi @ xi.T) / self.n_per
               for xi in x.reshape(self.m, self.n_per, -1)]
        return full, per


class LeastSquares(_ConvexFiniteSum):
    """Least squares F(w) = (1/2n) ‖Xw − y‖² + (l2/2) ‖w‖² on seeded synthetic data.

    X (n × d) has XᵀX/n = Q diag(λ) Qᵀ exactly with λ geometric from 1 to 1/κ
    (κ = ``condition_number``, needs n ≥ d) and Q a random rotation; y = X w_true + noise·ε with
    w_true, ε ~ N(0, I). n = m⌊n_samples/m⌋ rows are generated (equal shards). Constants (exact):
    L = λ_max(XᵀX/n) + l2, μ = λ_min(XᵀX/n) + l2 (= 1 + l2 and 1/κ + l2 up to rounding),
    x* by numpy lstsq, F* = F(x*).

    Heterogeneity h (concept shift): rows are dealt to workers uniformly at random and worker i's
    targets are y = xᵀ(w_true + h·Δ_i) + noise·ε, with Δ_i ~ N(0, I_d) centred over workers, so
    the workers' minimisers differ and ζ²(x*) grows like h². (Sorting rows by y would not do: with
    a well-specified linear model every shard keeps the minimiser w_true.) h = 0: i.i.d. shards;
    the data then do not depend on m beyond n.
    """

    _solve_method = "numpy.linalg.lstsq"

    def __init__(self, n_samples: int = 1000, d: int = 10, m: int = 1,
                 condition_number: float = 10.0, noise: float = 0.1, seed: int = 0,
                 heterogeneity: float = 0.0, l2: float = 0.0,
                 device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float64) -> None:
        super().__init__(m, device, dtype)
        n = self._validate_common(n_samples, m, seed, heterogeneity)
        self.d = _int_at_least("d", d, 1)
        self.condition_number = _real_at_least("condition_number", condition_number, 1.0)
        self.noise = _real_at_least("noise", noise, 0.0)
        self.l2 = _real_at_least("l2", l2, 0.0)
        self.seed = int(seed)
        rng = rng_for(seed, STREAM_DATA)
        x = features_with_spectrum(n, geometric_spectrum(self.d, self.condition_number), rng)
        y = x @ rng.standard_normal(self.d) + self.noise * rng.standard_normal(n)
        self.param_shapes = {"w": (self.d,)}
        self._setup(x, y, y, 0.0, seed)
        self.heterogeneity = float(heterogeneity)
        if self.heterogeneity > 0:
            delta = rng_for(seed, STREAM_SHIFT).standard_normal((self.m, self.d))
            delta -= delta.mean(0)
            rows = np.repeat(self.heterogeneity * delta, self.n_per, axis=0)
            self._y_np = self._y_np + np.einsum("ij,ij->i", self._x_np, rows)

    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        w = params["w"]
        x, y = (t.to(w.dtype) for t in batch)
        return 0.5 * ((x @ w - y) ** 2).mean() + 0.5 * self.l2 * (w**2).sum()

    def _solve(self) -> np.ndarray:
        a, b = self._x_np / math.sqrt(self.n), self._y_np / math.sqrt(self.n)
        if self.l2 > 0:
            a = np.vstack([a, math.sqrt(self.l2) * np.eye(self.d)])
            b = np.concatenate([b, np.zeros(self.d)])
        return np.linalg.lstsq(a, b, rcond=None)[0]

    def _curvature(self) -> tuple[Estimate, Estimate, Estimate]:
        full, per = self._hessian_data()
        how = "numpy eigvalsh of XᵀX/n (+ l2), float64, exact"
        return (Estimate(full[-1] + self.l2, "λ_max: " + how),
                Estimate(full[0] + self.l2, "λ_min: " + how),
                Estimate(max(p[-1] for p in per) + self.l2,
                         "max_i λ_max(X_iᵀX_i/n_per) + l2, exact"))


def _separable(x: np.ndarray, s: np.ndarray) -> bool:
    """Whether some w has s_j x_jᵀw ≥ 1 for all j (an LP feasibility problem, HiGHS)."""
    from scipy.optimize import linprog

    res = linprog(np.zeros(x.shape[1]), A_ub=-(s[:, None] * x), b_ub=-np.ones(x.shape[0]),
                  bounds=(None, None), method="highs")
    return res.status == 0


class LogisticRegression(_ConvexFiniteSum):
    """ℓ2-regularised logistic regression F(w) = (1/n) Σ_j log(1 + e^{−s_j x_jᵀw}) + (l2/2)‖w‖².

    Features as in :class:`LeastSquares` (XᵀX/n with eigenvalues from 1 to 1/κ); labels
    s_j ∈ {−1, +1} drawn from a logistic teacher, P(s = 1) = σ(x_jᵀw_true), with w_true scaled so
    the teacher logits have mean square ``signal``². Constants: L = λ_max(XᵀX)/(4n) + l2 (global
    bound, since σ′ ≤ ¼; exact as a bound), μ = l2 (global; the data term's curvature vanishes as
    ‖w‖ → ∞), x* by damped Newton in float64 to ‖∇F‖ ≤ 1e-10, F* = F(x*); l2 = 0 is refused
    when the data are linearly separable (no minimiser).

    Heterogeneity h (concept shift, as in :class:`LeastSquares`): rows are dealt at random and
    worker i's labels come from the teacher w_true + h·Δ_i (Δ_i ~ N(0, I) centred over workers, in
    the units of w_true). Label-sorted shards would not do here: without an intercept and with
    symmetric features, (x, −1) has the loss of (−x, +1), so an all-negative shard has the same
    minimiser as the whole data. h = 0: i.i.d. shards, data independent of m beyond n.
    """

    _solve_method = "damped Newton to ‖∇F‖ ≤ 1e-10"

    def __init__(self, n_samples: int = 1000, d: int = 10, m: int = 1,
                 condition_number: float = 1.0, l2: float = 1e-3, seed: int = 0,
                 heterogeneity: float = 0.0, signal: float = 2.0,
                 device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float64) -> None:
        super().__init__(m, device, dtype)
        n = self._validate_common(n_samples, m, seed, heterogeneity)
        self.d = _int_at_least("d", d, 1)
        self.condition_number = _real_at_least("condition_number", condition_number, 1.0)
        self.l2 = _real_at_least("l2", l2, 0.0)
        self.signal = _real_at_least("signal", signal, 0.0)
        self.seed = int(seed)
        rng = rng_for(seed, STREAM_DATA)
        x = features_with_spectrum(n, geometric_spectrum(self.d, self.condition_number), rng)
        w = rng.standard_normal(self.d)
        scale = self.signal / max(np.sqrt(np.mean((x @ w) ** 2)), 1e-300)
        u = rng.random(n)
        self.param_shapes = {"w": (self.d,)}
        self._setup(x, u, u, 0.0, seed)  # i.i.d. split; labels drawn below, per worker
        self.heterogeneity = float(heterogeneity)
        logits = self._x_np @ (scale * w)
        if self.heterogeneity > 0:
            delta = rng_for(seed, STREAM_SHIFT).standard_normal((self.m, self.d))
            delta -= delta.mean(0)
            rows = np.repeat(self.heterogeneity * scale * delta, self.n_per, axis=0)
            logits = logits + np.einsum("ij,ij->i", self._x_np, rows)
        self._y_np = np.where(self._y_np < 0.5 * (1 + np.tanh(0.5 * logits)), 1.0, -1.0)

    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        w = params["w"]
        x, s = (t.to(w.dtype) for t in batch)
        return torch.nn.functional.softplus(-s * (x @ w)).mean() + 0.5 * self.l2 * (w**2).sum()

    def _solve(self, tol: float = 1e-10, max_iter: int = 200) -> np.ndarray:
        x, s, n, l2 = self._x_np, self._y_np, self.n, self.l2
        if l2 == 0 and _separable(x, s):
            raise ValueError("l2 = 0 with linearly separable data: F has no minimiser "
                             "(inf F = 0 is not attained), so F* and x* are undefined; "
                             "use l2 > 0")

        def f(w: np.ndarray) -> float:
            return float(np.logaddexp(0.0, -s * (x @ w)).mean() + 0.5 * l2 * w @ w)

        w = np.zeros(self.d)
        for _ in range(max_iter):
            p = 0.5 * (1 - np.tanh(0.5 * s * (x @ w)))  # σ(−s xᵀw), overflow-free
            g = -(x.T @ (s * p)) / n + l2 * w
            gn = np.linalg.norm(g)
            if gn <= tol:
                return w
            h = (x.T * (p * (1 - p))) @ x / n + l2 * np.eye(self.d)
            step = np.linalg.solve(h, g)
            t, f0 = 1.0, f(w)
            while gn > 1e-6 and f(w - t * step) > f0 - 1e-4 * t * (g @ step) and t > 1e-10:
                t /= 2
            w = w - t * step
        raise RuntimeError(f"logistic regression: Newton did not reach ‖∇F‖ <= {tol} in "
                           f"{max_iter} iterations (‖∇F‖ = {gn:.2e}, l2 = {l2})")

    def _curvature(self) -> tuple[Estimate, Estimate, Estimate]:
        full, per = self._hessian_data()
        return (Estimate(full[-1] / 4 + self.l2,
                         "λ_max(XᵀX)/(4n) + l2: global bound on ‖∇²F‖ (σ′ ≤ ¼), exact"),
                Estimate(self.l2, "l2: global strong-convexity modulus, exact "
                         "(0 = merely convex)"),
                Estimate(max(p[-1] for p in per) / 4 + self.l2,
                         "max_i λ_max(X_iᵀX_i)/(4 n_per) + l2, exact"))


def _power_iteration(f: Any, theta: torch.Tensor, generator: torch.Generator,
                     max_iter: int = 200, rtol: float = 1e-6) -> tuple[float, int]:
    """‖∇²f(θ)‖₂ by power iteration on Hessian-vector products (forward-over-reverse,
    torch.func.jvp of grad). Every iterate ‖Hv‖ (‖v‖ = 1) is a lower bound on ‖∇²f(θ)‖₂."""
    g = grad(f)
    v = torch.randn(theta.shape, generator=generator, dtype=theta.dtype)
    v = v / v.norm()
    lam_prev, lam = 0.0, 0.0
    for it in range(1, max_iter + 1):
        hv = jvp(g, (theta,), (v,))[1]
        lam = float(hv.norm())
        if lam == 0.0 or abs(lam - lam_prev) <= rtol * lam:
            return lam, it
        v, lam_prev = hv / lam, lam
    return lam, max_iter


class MLPClassifier(_FiniteSum):
    """A tanh MLP d_in → hidden… → n_classes with mean cross-entropy (+ (l2/2)‖θ‖²), non-convex.

    Data (``dataset="synthetic"``, the only option: no data set ships with the dependencies): a
    balanced Gaussian mixture, x = separation·u_y + N(0, I), u_c random unit vectors. Parameters
    ``W0, b0, W1, b1, …`` (W_k of shape fan_in × fan_out), x₀ ~ U(±1/√fan_in) seeded. tanh keeps F
    twice differentiable, so Hessian-vector products and L are meaningful. Estimated constants
    (float64, at a set P of points: x₀, L-BFGS iterates at 10 %, 50 % and 100 % of the F* run, and
    ``n_random_points`` further random initialisations):

    * F*: best full-batch loss of ``fstar_iters`` L-BFGS iterations (strong-Wolfe) from x₀ — an
      upper bound, F* ∈ [0, value] (uncertainty = the width of that bracket).
    * L: max over P of ‖∇²F(x)‖₂ by power iteration on HVPs (each a lower bound at its point; the
      sup over the region may be larger); uncertainty = spread (max − min) over P.
    * σ²: max over P and workers of the exact single-sample variance σ_i²(x) (finite data: no
      sampling error at a point, computed from per-sample gradient norms in one pass;
      :meth:`sigma2_mc` gives a Monte-Carlo estimate with its standard error); uncertainty =
      spread over P. μ: None. ζ² at x₀ and at the F* point.

    Cost: a few hundred full-batch passes (L-BFGS, ``power_iters`` HVPs per point) — seconds for
    the defaults, minutes for a 784-256-10 network on 10⁴ samples; computed on first access.
    """

    def __init__(self, n_samples: int = 2000, d_in: int = 10, hidden: int | Sequence[int] = 16,
                 n_classes: int = 4, m: int = 1, seed: int = 0, heterogeneity: float = 0.0,
                 dataset: str = "synthetic", separation: float = 1.5, l2: float = 1e-4,
                 fstar_iters: int = 300, n_random_points: int = 2, power_iters: int = 100,
                 device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float64) -> None:
        super().__init__(m, device, dtype)
        n = self._validate_common(n_samples, m, seed, heterogeneity)
        if dataset != "synthetic":
            raise ValueError(f"dataset must be 'synthetic' (got {dataset!r})")
        self.d_in = _int_at_least("d_in", d_in, 1)
        hid = [hidden] if isinstance(hidden, (int, np.integer)) else list(hidden)
        self.hidden = tuple(_int_at_least("hidden", h, 1) for h in hid)
        self.n_classes = _int_at_least("n_classes", n_classes, 2)
        self.separation = _real_at_least("separation", separation, 0.0)
        self.l2 = _real_at_least("l2", l2, 0.0)
        self.fstar_iters = _int_at_least("fstar_iters", fstar_iters, 1)
        self.n_random_points = _int_at_least("n_random_points", n_random_points, 0)
        self.power_iters = _int_at_least("power_iters", power_iters, 1)
        self.seed = int(seed)
        self.dataset = dataset
        widths = [self.d_in, *self.hidden, self.n_classes]
        self.param_shapes = {}
        for k, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            self.param_shapes[f"W{k}"] = (a, b)
            self.param_shapes[f"b{k}"] = (b,)
        self._n_layers = len(widths) - 1
        x, y = gaussian_mixture(n, self.d_in, self.n_classes, self.separation,
                                rng_for(seed, STREAM_DATA))
        self._setup(x, y, y, heterogeneity, seed)

    def _random_init(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        out = {}
        for k, s in self.param_shapes.items():
            bound = 1 / math.sqrt(self.param_shapes[f"W{k[1:]}"][0])
            out[k] = rng.uniform(-bound, bound, size=s)
        return out

    def _init_numpy(self) -> dict[str, np.ndarray]:
        return self._random_init(rng_for(self.seed, STREAM_INIT))

    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        x, y = batch
        h = x.to(params["W0"].dtype)
        for k in range(self._n_layers):
            h = h @ params[f"W{k}"] + params[f"b{k}"]
            if k < self._n_layers - 1:
                h = torch.tanh(h)
        picked = torch.gather(h, -1, y.unsqueeze(-1)).squeeze(-1)
        ce = (torch.logsumexp(h, -1) - picked).mean()
        return ce + 0.5 * self.l2 * _sqnorm(params) if self.l2 else ce

    def _sigma2_workers(self, params: Params) -> torch.Tensor:
        """σ_i²(x) for every worker, exactly, without materialising per-sample gradients.

        For a dense layer z = aW + b, sample j's gradient is (a_j δ_jᵀ, δ_j) with δ_j = ∂ℓ_j/∂z_j
        (the rows of ∂(Σ_j ℓ_j)/∂z), so ‖g_j‖² = Σ_layers (‖a_j‖² + 1)‖δ_j‖² and the worker mean is
        (A_iᵀΔ_i, Σ_j δ_j)/n_per; then σ_i² = mean_j ‖g_j‖² − ‖ḡ_i‖² (the l2 term is the same for
        every sample and cancels). Same value as the generic vmap path, at the cost of one
        forward/backward pass over the data.
        """
        x_all, y_all = self._data_like(params)
        p = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        dt, dev = p["W0"].dtype, p["W0"].device
        sq = torch.zeros(self.m, dtype=dt, device=dev)
        mean_sq = torch.zeros(self.m, dtype=dt, device=dev)
        per_chunk = max(1, 8192 // self.n_per)
        for w0 in range(0, self.m, per_chunk):
            w1 = min(self.m, w0 + per_chunk)
            rows = slice(w0 * self.n_per, w1 * self.n_per)
            with torch.enable_grad():
                h, acts, pre = x_all[rows].to(dt), [], []
                for k in range(self._n_layers):
                    acts.append(h)
                    z = h @ p[f"W{k}"] + p[f"b{k}"]
                    pre.append(z)
                    h = torch.tanh(z) if k < self._n_layers - 1 else z
                y = y_all[rows]
                total = (torch.logsumexp(h, -1) - h.gather(-1, y.unsqueeze(-1)).squeeze(-1)).sum()
                deltas = torch.autograd.grad(total, pre)
            nw = w1 - w0
            for a, dl in zip(acts, deltas, strict=True):
                a, dl = a.detach(), dl.detach()
                wid = torch.arange(w0, w1, device=dev).repeat_interleave(self.n_per)
                sq.index_add_(0, wid, ((a**2).sum(1) + 1) * (dl**2).sum(1))
                a3, d3 = a.reshape(nw, self.n_per, -1), dl.reshape(nw, self.n_per, -1)
                gw = torch.bmm(a3.transpose(1, 2), d3) / self.n_per
                gb = d3.mean(1)
                mean_sq[w0:w1] += (gw**2).sum((1, 2)) + (gb**2).sum(1)
        return sq / self.n_per - mean_sq

    def _flat_objective(self, theta: torch.Tensor) -> torch.Tensor:
        return self.objective(_unflatten(theta, self.param_shapes))

    def _fstar_run(self) -> tuple[list[tuple[str, torch.Tensor]], float, torch.Tensor]:
        theta = _flat(self.init_params(_CPU, torch.float64)).clone().requires_grad_(True)
        opt = torch.optim.LBFGS([theta], lr=1.0, max_iter=1, history_size=20,
                                tolerance_grad=1e-12, tolerance_change=1e-15,
                                line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            val = self._flat_objective(theta)
            val.backward()
            return val

        marks = sorted({max(1, self.fstar_iters // 10), max(1, self.fstar_iters // 2),
                        self.fstar_iters})
        ckpts: list[tuple[str, torch.Tensor]] = []
        best, best_theta, done = math.inf, theta.detach().clone(), 0
        for mark in marks:
            opt.param_groups[0]["max_iter"] = mark - done
            opt.param_groups[0]["max_eval"] = 2 * (mark - done) + 5
            opt.step(closure)
            done = mark
            with torch.no_grad():
                val = float(self._flat_objective(theta))
            ckpts.append((f"lbfgs@{mark}", theta.detach().clone()))
            if val < best:
                best, best_theta = val, theta.detach().clone()
        return ckpts, best, best_theta

    def _compute_constants(self) -> Constants:
        x0 = self.init_params(_CPU, torch.float64)
        ckpts, best, best_theta = self._fstar_run()
        rng = rng_for(self.seed, STREAM_POINTS)
        points = [("x0", _flat(x0)), *ckpts]
        points += [(f"init#{i + 1}", _flat({k: torch.from_numpy(v) for k, v in
                                           self._random_init(rng).items()}))
                   for i in range(self.n_random_points)]
        gen = torch.Generator().manual_seed(seed_for(self.seed, 0))
        ls, its = [], []
        for _, th in points:
            lam, it = _power_iteration(self._flat_objective, th, gen, self.power_iters)
            ls.append(lam)
            its.append(it)
        named = [(name, self._params64(th)) for name, th in points]
        maxes, means = self._sigma2_over(named)
        names = [name for name, _ in points]
        x_best = self._params64(best_theta)
        gbest = self.grad_norm2(x_best)
        return Constants(
            L=Estimate(max(ls), f"max over {len(points)} points of ‖∇²F(x)‖₂ by power "
                       "iteration on HVPs (lower bound at each point); uncertainty = spread",
                       max(ls) - min(ls), detail={"points": names, "values": ls,
                                                  "iterations": its}),
            mu=None,
            sigma2=Estimate(max(maxes), f"max over {len(points)} points and workers of the "
                            "exact single-sample variance σ_i²(x); divide by b; "
                            "uncertainty = spread over points", max(maxes) - min(maxes),
                            detail={"points": names, "max_over_workers": maxes,
                                    "mean_over_workers": means}),
            F_star=Estimate(best, f"upper bound: best full-batch loss of {self.fstar_iters} "
                            "L-BFGS iterations from x₀ (float64); F* ∈ [0, value], "
                            "uncertainty = width", best,
                            detail={"lower_bound": 0.0, "grad_norm2_at_best": gbest}),
            F0=Estimate(self.full_loss(x0), "F(x₀), exact"),
            zeta2_x0=Estimate(self.zeta2_at(x0), "(1/m) Σ_i ‖∇F_i(x₀) − ∇F(x₀)‖², exact"),
            zeta2_star=Estimate(self.zeta2_at(x_best), "ζ² at the F* estimate's point, exact"),
        )

    def _repr_args(self) -> dict[str, Any]:
        return {**super()._repr_args(), "d_in": self.d_in, "hidden": self.hidden,
                "n_classes": self.n_classes}
