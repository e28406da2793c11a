"""A heterogeneous quadratic with additive Gaussian gradient noise: per-worker Hessians H_i,
optima x_i* and noise covariances Σ_i — the problem on which :func:`empirics.predict.predict` is
exact for every configuration of :mod:`empirics.configs` whose local step is linear in the
second moments (plain SGD, heavy-ball and Nesterov momentum, random-k with or without error
feedback, any static mixing schedule, auxiliary variables).
"""

from __future__ import annotations

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


def _is_wrapped(t: torch.Tensor) -> bool:
    try:
        return bool(torch._C._functorch.is_functorch_wrapped_tensor(t))
    except AttributeError:  # pragma: no cover
        return True


def _per_worker(name: str, a: Any, m: int, shape: tuple[int, ...]) -> np.ndarray:
    """``a`` as an (m, *shape) float64 array: one shared value broadcast, or one per worker."""
    arr = np.asarray(a, dtype=np.float64)
    if arr.shape == shape:
        arr = np.broadcast_to(arr, (m, *shape)).copy()
    if arr.shape != (m, *shape) or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite with shape {shape} (shared) or {(m, *shape)} "
                         f"(one per worker); got shape {np.asarray(a).shape}")
    return arr


def _draw(d: int, m: int, seed: int, condition_number: float, heterogeneity: float,
          hessian_heterogeneity: float, noise: float, correlated: bool
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(H (m, d, d), x_star (m, d), Sigma (d, d)) of :meth:`Quadratic.random`."""
    from empirics.data import geometric_spectrum, orthonormal_factor

    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 17]))
    Q = orthonormal_factor(rng.standard_normal((d, d)))
    H = (Q * geometric_spectrum(d, condition_number if d > 1 else 1.0)) @ Q.T
    Hs = np.repeat(H[None], m, 0)
    if hessian_heterogeneity > 0:
        B = rng.standard_normal((m, d, d))
        Hs = Hs + hessian_heterogeneity * np.einsum("iab,icb->iac", B, B) / d
    center = rng.standard_normal(d)
    delta = rng.standard_normal((m, d))
    delta -= delta.mean(0)
    xs = center + heterogeneity * delta
    if correlated:
        R = rng.standard_normal((d, d))
        Sigma = noise**2 * (R @ R.T) / d
    else:
        Sigma = noise**2 * np.eye(d)
    return Hs, xs, Sigma


class Quadratic(Problem):
    """F(x) = (1/m) Σ_i F_i(x), F_i(x) = ½ (x − x_i*)ᵀ H_i (x − x_i*), with additive Gaussian
    noise: worker i's gradient on a batch of b draws is H_i(x − x_i*) + ξ̄, ξ ~ N(0, Σ_i) (the
    mean of b draws: covariance Σ_i/b).

    H (d×d shared, or m×d×d): symmetric positive semi-definite with H̄ = (1/m) Σ H_i positive
    definite. x_star (d, or m×d): the workers' optima (heterogeneity). Sigma (d×d or m×d×d):
    per-draw noise covariances (positive semi-definite). x0: the start (scalar or d).

    A batch is (ξ (b, d) standard normal, worker index (1,) int64); the loss is
    ½(x − x_i*)ᵀH_i(x − x_i*) + xᵀ L_i ξ̄ with Σ_i = L_i L_iᵀ, so its gradient is exactly the law
    above. Constants (exact): L = λ_max(H̄), μ = λ_min(H̄), x* = H̄⁻¹ (1/m) Σ H_i x_i*,
    σ² = max_i tr Σ_i (per draw), β = 0, L_local = max_i λ_max(H_i), κ² = the largest
    (1/m) Σ_i ‖∇F_i(x) − ∇F(x)‖² on the segment x₀ → x* (five points, a lower estimate of the
    supremum, which is infinite when the H_i differ).

    Without ``H`` the instance is drawn (:meth:`random`: ``d``, ``seed``, ``condition_number``,
    ``heterogeneity`` of the optima and ``hessian_heterogeneity`` of the Hessians, ``noise``) —
    what ``problem = {kind = "quadratic", d = 20, heterogeneity = 1.0}`` in a spec builds.
    """

    def __init__(self, H: Any = None, x_star: Any = None, Sigma: Any = None, x0: Any = 1.0,
                 m: int = 1, *, d: int = 10, seed: int = 0, condition_number: float = 10.0,
                 heterogeneity: float = 0.0, hessian_heterogeneity: float = 0.0,
                 noise: float = 1.0, correlated_noise: bool = True,
                 device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float64) -> None:
        super().__init__(m, device, dtype)
        if H is None:  # a seeded random instance (what a spec file describes)
            if x_star is not None or Sigma is not None:
                raise ValueError("x_star and Sigma are given with H; without H the instance "
                                 "is drawn from d, seed, condition_number, heterogeneity, "
                                 "hessian_heterogeneity, noise")
            H, x_star, Sigma = _draw(checks.integer("d", d, lo=1), self.m,
                                     checks.integer("seed", seed, lo=0),
                                     checks.real("condition_number", condition_number, 1.0),
                                     checks.real("heterogeneity", heterogeneity, 0.0),
                                     checks.real("hessian_heterogeneity",
                                                 hessian_heterogeneity, 0.0),
                                     checks.real("noise", noise, 0.0), bool(correlated_noise))
        x_star = 0.0 if x_star is None else x_star
        H_np = np.asarray(H, dtype=np.float64)
        if H_np.ndim not in (2, 3) or H_np.shape[-1] != H_np.shape[-2]:
            raise ValueError(f"H must be d×d or m×d×d (got shape {H_np.shape})")
        d = H_np.shape[-1]
        self.d = d
        self.H = _per_worker("H", H_np, self.m, (d, d))
        if not np.allclose(self.H, self.H.transpose(0, 2, 1), atol=1e-12, rtol=1e-12):
            raise ValueError("H must be symmetric")
        self.H = 0.5 * (self.H + self.H.transpose(0, 2, 1))
        if np.linalg.eigvalsh(self.H).min() < -1e-10 * max(1.0, np.abs(self.H).max()):
            raise ValueError("every H_i must be positive semi-definite")
        xs = np.asarray(x_star, dtype=np.float64)
        self.x_stars = _per_worker("x_star", np.broadcast_to(xs, (d,)) if xs.ndim == 0 else xs,
                                   self.m, (d,))
        S = np.zeros((d, d)) if Sigma is None else np.asarray(Sigma, dtype=np.float64)
        if S.ndim == 0:
            S = float(S) * np.eye(d)
        self.Sigma = _per_worker("Sigma", S, self.m, (d, d))
        self.Sigma = 0.5 * (self.Sigma + self.Sigma.transpose(0, 2, 1))
        lam, vec = np.linalg.eigh(self.Sigma)
        if lam.min() < -1e-10 * max(1.0, np.abs(self.Sigma).max()):
            raise ValueError("every Sigma_i must be positive semi-definite")
        self._L = vec * np.sqrt(np.clip(lam, 0.0, None))[:, None, :]  # Σ_i = L_i L_iᵀ
        x0_np = np.asarray(x0, dtype=np.float64)
        self.x0 = np.broadcast_to(x0_np, (d,)).copy() if x0_np.ndim == 0 else x0_np.copy()
        if self.x0.shape != (d,) or not np.all(np.isfinite(self.x0)):
            raise ValueError(f"x0 must be a finite scalar or {d} numbers (got {x0!r})")
        self.Hbar = self.H.mean(0)
        if np.linalg.eigvalsh(self.Hbar).min() <= 0:
            raise ValueError("the mean Hessian (1/m) Σ H_i must be positive definite")
        self.h = np.einsum("iab,ib->ia", self.H, self.x_stars)  # ∇F_i(x) = H_i x − h_i
        self.c0 = 0.5 * np.einsum("ia,ia->i", self.x_stars, self.h)  # F_i(0)
        self._x_star = np.linalg.solve(self.Hbar, self.h.mean(0))
        self.param_shapes = {"x": (d,)}
        self.shared_hessian = bool(np.all(self.H == self.H[0]))
        self._t: dict[Any, tuple[Any, ...]] = {}
        self._tensors(self.device, self.dtype)

    @classmethod
    def random(cls, d: int = 10, m: int = 4, *, condition_number: float = 10.0,
               heterogeneity: float = 1.0, hessian_heterogeneity: float = 0.0,
               noise: float = 1.0, correlated_noise: bool = True, x0: Any = 0.0, seed: int = 0,
               **kw: Any) -> Quadratic:
        """A seeded instance: H = Q diag(λ) Qᵀ with λ geometric from 1 to 1/κ; worker optima
        x_i* = x* + h·Δ_i (Δ_i ~ N(0, I), centred); ``hessian_heterogeneity`` s makes
        H_i = H + s·(B_i B_iᵀ/d) (B_i Gaussian); Σ = noise²·(R Rᵀ/d) with R Gaussian
        (``correlated_noise``) or noise²·I. The same as ``Quadratic(d=..., seed=..., ...)``."""
        return cls(None, x0=x0, m=m, d=d, seed=seed, condition_number=condition_number,
                   heterogeneity=heterogeneity, hessian_heterogeneity=hessian_heterogeneity,
                   noise=noise, correlated_noise=correlated_noise, **kw)

    def _tensors(self, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        key = (torch.device(device), dtype)
        hit = self._t.get(key)
        if hit is None:
            hit = tuple(torch.as_tensor(a, dtype=dtype, device=device)
                        for a in (self.H, self.x_stars, self._L))
            self._t[key] = hit
        return hit

    @property
    def x_star(self) -> Params:
        """The minimiser of F (float64, CPU)."""
        return {"x": torch.as_tensor(self._x_star.copy(), dtype=torch.float64)}

    def _init_numpy(self) -> dict[str, np.ndarray]:
        return {"x": self.x0.copy()}

    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        x = params["x"]
        xi, idx = batch
        H, xs, L = self._tensors(x.device, x.dtype)
        i = idx.reshape(1)
        Hi = torch.index_select(H, 0, i)[0]
        xsi = torch.index_select(xs, 0, i)[0]
        Li = torch.index_select(L, 0, i)[0]
        r = x - xsi
        noise = Li @ xi.to(x.dtype).mean(0)
        return 0.5 * (r * (Hi @ r)).sum() + (x * noise).sum()

    def sample(self, worker: int, batch_size: int, generator: torch.Generator) -> Batch:
        self._check_sample_args(worker, batch_size)
        xi = _randn(generator, (batch_size, self.d), self.dtype, self.device)
        return xi, torch.full((1,), worker, dtype=torch.int64, device=self.device)

    def sample_all(self, batch_size: int, generator: torch.Generator) -> Batch:
        """All m workers' noise at once: ξ ~ N(0, I) of shape (m, b, d) from the run's one
        generator (one ``randn`` per step; row i: worker i's), and the worker indices (m, 1)."""
        g = one_generator(generator)
        checks.integer("batch_size", batch_size, lo=1)
        xi = _randn(g, (self.m, batch_size, self.d), self.dtype, self.device)
        return xi, torch.arange(self.m, dtype=torch.int64, device=self.device).reshape(self.m, 1)

    def _global(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
        """(H̄, h̄, c̄): F(x) = ½xᵀH̄x − h̄ᵀx + c̄ (the mean of the F_i, exact)."""
        key = ("global", like.device, like.dtype)
        hit = self._t.get(key)  # type: ignore[call-overload]
        if hit is None:
            hit = (torch.as_tensor(self.Hbar, dtype=like.dtype, device=like.device),
                   torch.as_tensor(self.h.mean(0), dtype=like.dtype, device=like.device),
                   float(self.c0.mean()))
            if not _is_wrapped(like):
                self._t[key] = hit  # type: ignore[index]
        return hit

    def objective(self, params: Params) -> torch.Tensor:
        x = params["x"]
        Hb, hb, cb = self._global(x)
        return 0.5 * (x * (Hb @ x)).sum() - (hb * x).sum() + cb

    def worker_grad(self, params: Params, worker: int) -> Params:
        """∇F_i(x) = H_i(x − x_i*)."""
        self._check_sample_args(worker, 1)
        x = params["x"].detach()
        H, xs, _ = self._tensors(x.device, x.dtype)
        return {"x": H[worker] @ (x - xs[worker])}

    def full_grad(self, params: Params) -> Params:
        """∇F(x) = H̄x − h̄ (exact)."""
        x = params["x"].detach()
        Hb, hb, _ = self._global(x)
        return {"x": Hb @ x - hb}

    def sigma2_at(self, params: Params, batch_size: int = 1, worker: int | None = None) -> float:
        """tr Σ_i / b (the same at every x); the mean over workers if ``worker`` is None."""
        checks.integer("batch_size", batch_size, lo=1)
        tr = np.trace(self.Sigma, axis1=1, axis2=2)
        if worker is None:
            return float(tr.mean()) / batch_size
        self._check_sample_args(worker, batch_size)
        return float(tr[worker]) / batch_size

    def zeta2_at(self, params: Params) -> float:
        """(1/m) Σ_i ‖∇F_i(x) − ∇F(x)‖²."""
        x = params["x"].detach().cpu().double().numpy()
        g = np.einsum("iab,b->ia", self.H, x) - self.h
        return float(((g - g.mean(0)) ** 2).sum(1).mean())

    def _compute_constants(self, progress: bool = False) -> Constants:
        lam = np.linalg.eigvalsh(self.Hbar)
        f = lambda x: float(0.5 * x @ self.Hbar @ x - self.h.mean(0) @ x + self.c0.mean())  # noqa: E731
        fs, f0 = f(self._x_star), f(self.x0)
        pts = [(1 - t) * self.x0 + t * self._x_star for t in (0.0, 0.25, 0.5, 0.75, 1.0)]
        z = [self.zeta2_at({"x": torch.as_tensor(p)}) for p in pts]
        same = bool(np.allclose(self.H, self.H[0]) and np.allclose(self.x_stars,
                                                                    self.x_stars[0]))
        k2 = Estimate(0.0, "κ² = 0: identical worker objectives, exact") if same else Estimate(
            max(z), "max of (1/m) Σ_i ‖∇F_i(x) − ∇F(x)‖² on the segment x₀→x* (t = 0, ¼, ½, "
            "¾, 1), exact at those points; a lower estimate of the supremum",
            detail={"values": z})
        return Constants(
            L=Estimate(float(lam[-1]), "λ_max of the mean Hessian, exact"),
            mu=Estimate(float(lam[0]), "λ_min of the mean Hessian, exact"),
            sigma2=Estimate(float(np.trace(self.Sigma, axis1=1, axis2=2).max()),
                            "max_i tr Σ_i: additive noise per draw, exact; divide by b"),
            beta=Estimate(0.0, "additive noise, exact"),
            F_star=Estimate(fs, "F(x*), x* = H̄⁻¹ mean_i H_i x_i*, exact"),
            F0=Estimate(f0, "F(x₀), exact"),
            L_local=Estimate(float(np.linalg.eigvalsh(self.H)[:, -1].max()),
                             "max_i λ_max(H_i), exact"),
            zeta2_x0=Estimate(z[0], "(1/m) Σ_i ‖∇F_i(x₀) − ∇F(x₀)‖², exact"),
            zeta2_star=Estimate(z[-1], "(1/m) Σ_i ‖∇F_i(x*)‖², exact"),
            kappa2=k2,
        )

    def _repr_args(self) -> dict[str, Any]:
        het = float(np.abs(self.x_stars - self.x_stars.mean(0)).max())
        return {"d": self.d, "m": self.m, "optima_spread": het}
