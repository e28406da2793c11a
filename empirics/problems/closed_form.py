"""Closed-form stochastic problems of the experiments of Spiridonoff, Olshevsky, Paschalidis,
NeurIPS 2021 (arXiv:2106.04759): the §4.1 quadratic and the speed-up experiment's
one-dimensional function (authors' notebooks, github.com/spiridonoff/Local-SGD-re).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from empirics.problems.base import (
    Batch,
    Constants,
    Estimate,
    Params,
    Problem,
    _randn,
    one_generator,
)
from theory import checks


# ---------------------------------------------------------------------------------------------
# closed-form stochastic problems (paper 4's experiments)
# ---------------------------------------------------------------------------------------------
class NoisyQuadratic(Problem):
    """Quadratic with multiplicative and additive noise (Spiridonoff et al., NeurIPS 2021, §4.1).

    f(x, z) = Σ_i (a_i/2) x_i² (1 + z_{1,i}) + xᵀz₂, z₁ ~ N(0, c² I_d), z₂ ~ N(0, σ² I_d); the
    formula is the one in the authors' notebook (``Local-SGD-re/quadratic.ipynb``; defaults there:
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
        self.d = checks.integer("d", d, lo=1)
        a_np = np.arange(1, self.d + 1, dtype=np.float64) if a is None \
            else np.asarray(a, dtype=np.float64).reshape(-1)
        if a_np.shape != (self.d,) or not (np.all(np.isfinite(a_np)) and np.all(a_np > 0)):
            raise ValueError(f"a must be {self.d} finite positive numbers (got {a!r})")
        self.a = a_np
        self.c = checks.real("c", c, 0.0)
        self.sigma = checks.real("sigma", sigma, 0.0)
        x0_np = np.broadcast_to(np.asarray(x0, dtype=np.float64), (self.d,)).copy() \
            if np.ndim(x0) == 0 else np.asarray(x0, dtype=np.float64)
        if x0_np.shape != (self.d,) or not np.all(np.isfinite(x0_np)):
            raise ValueError(f"x0 must be a finite scalar or {self.d} finite numbers (got {x0!r})")
        self.x0 = x0_np
        self.param_shapes = {"x": (self.d,)}
        self._a_t = torch.as_tensor(self.a)  # plain float64 CPU tensor, made outside transforms

    @property
    def x_star(self) -> Params:
        """The minimiser x* = 0 (float64, CPU)."""
        return {"x": torch.zeros(self.d, dtype=torch.float64)}

    def _a(self, like: torch.Tensor) -> torch.Tensor:
        # no caching here: tensors made inside torch.func transforms are transform wrappers
        return self._a_t.to(device=like.device, dtype=like.dtype)

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

    def sample_all(self, batch_size: int, generator: torch.Generator) -> Batch:
        """All m workers' draws at once from one generator: z₁ = c·N(0, I) then
        z₂ = σ·N(0, I), each of shape (m, b, d) (row i: worker i's)."""
        g = one_generator(generator)
        checks.integer("batch_size", batch_size, lo=1)
        shape = (self.m, batch_size, self.d)
        z1 = _randn(g, shape, self.dtype, self.device).mul_(self.c)
        z2 = _randn(g, shape, self.dtype, self.device).mul_(self.sigma)
        return z1, z2

    def objective(self, params: Params) -> torch.Tensor:
        x = params["x"]
        return 0.5 * (self._a(x) * x**2).sum()

    def full_grad(self, params: Params) -> Params:
        """∇F(x) = a ⊙ x, in closed form (no autograd; same value)."""
        x = params["x"].detach()
        return {"x": self._a(x) * x}

    def sigma2_at(self, params: Params, batch_size: int = 1, worker: int | None = None) -> float:
        """(c²‖Ax‖² + dσ²)/b, the same for every worker."""
        checks.integer("batch_size", batch_size, lo=1)
        ax = self.a * params["x"].detach().cpu().double().numpy()
        return float(self.c**2 * ax @ ax + self.d * self.sigma**2) / batch_size

    def _compute_constants(self, progress: bool = False) -> Constants:
        src = "Spiridonoff et al. §4.1 quadratic, derived"
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
            kappa2=Estimate(0.0, "κ² = 0: identical worker objectives (F_i = F), exact"),
        )

    def _repr_args(self) -> dict[str, Any]:
        return {"d": self.d, "m": self.m, "c": self.c, "sigma": self.sigma}


class PiecewiseQuadratic1D(Problem):
    """The non-C² one-dimensional function of Spiridonoff et al.'s speed-up experiment.

    f(x) = μx² for x ≥ 0 and ½μx² for x < 0 (the notebook puts 0 in the first branch) with
    additive gradient noise: f(x, z) = f(x) + x·z, z ~ N(0, σ²); notebook defaults μ = 1, σ = 8,
    x₀ = 2 (authors' notebook ``Local-SGD-re/speedup.ipynb``). A batch is z of shape (b, 1).
    Constants (derived, exact):
    f′ is continuous and piecewise linear with slopes 2μ and μ, so L = 2μ and f is μ-strongly
    convex; x* = 0, F* = 0; E‖g − ∇F‖² = σ² per draw (β = 0). f is not twice differentiable at 0.
    """

    def __init__(self, m: int = 1, mu: float = 1.0, sigma: float = 8.0, x0: float = 2.0,
                 device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float64) -> None:
        super().__init__(m, device, dtype)
        self.mu = checks.real("mu", mu, 0.0, lo_strict=True)
        self.sigma = checks.real("sigma", sigma, 0.0)
        self.x0 = checks.finite("x0", x0)
        self.param_shapes = {"x": (1,)}

    @property
    def x_star(self) -> Params:
        """The minimiser x* = 0 (float64, CPU)."""
        return {"x": torch.zeros(1, dtype=torch.float64)}

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

    def sample_all(self, batch_size: int, generator: torch.Generator) -> Batch:
        """All m workers' noise at once from one generator: z = σ·N(0, 1) of shape
        (m, b, 1) (row i: worker i's)."""
        g = one_generator(generator)
        checks.integer("batch_size", batch_size, lo=1)
        return (_randn(g, (self.m, batch_size, 1), self.dtype, self.device).mul_(self.sigma),)

    def objective(self, params: Params) -> torch.Tensor:
        return self._f(params["x"])

    def full_grad(self, params: Params) -> Params:
        """f′(x) = 2μx for x ≥ 0 and μx below, in closed form (no autograd; same value)."""
        x = params["x"].detach()
        return {"x": torch.where(x >= 0, 2 * self.mu * x, self.mu * x)}

    def sigma2_at(self, params: Params, batch_size: int = 1, worker: int | None = None) -> float:
        """σ²/b at every x."""
        checks.integer("batch_size", batch_size, lo=1)
        return self.sigma**2 / batch_size

    def _compute_constants(self, progress: bool = False) -> Constants:
        src = "Spiridonoff et al. speed-up function, derived"
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
            kappa2=Estimate(0.0, "κ² = 0: identical worker objectives (F_i = F), exact"),
        )

    def _repr_args(self) -> dict[str, Any]:
        return {"m": self.m, "mu": self.mu, "sigma": self.sigma, "x0": self.x0}
