"""The local model of a smooth finite-sum torch problem by automatic differentiation
(:class:`AutogradLaw`): what :class:`~empirics.laws.GLMLaw` computes from margins for logistic
regression, computed here from any per-sample loss f_j(θ) — the MLP
(:class:`~empirics.problems.MLPClassifier`) and your own smooth model
(:class:`~empirics.problems.ModuleProblem`).

At a re-expansion, for worker i's data set with mean μ and window-averaged covariance C of its
model (the same schedule, anchors and windows as :class:`~empirics.laws.GLMLaw`):

    H_i     = ∇²F_i(μ)                                   (torch.func.hessian, exact)
    Σ_i·b   = mean_j g_j g_jᵀ − ḡ ḡᵀ,  g_j = ∇f_j(μ)      (per-sample gradients, exact)
    E g_i   = ∇F_i(μ) + ½ ∇³F_i(μ)[C]

and for the averaged model u ~ (ū, C_u): E F(u) = F(ū) + ½ tr(∇²F(ū) C_u),
E‖∇F(u)‖² = ‖∇F(ū) + ½∇³F(ū)[C_u]‖² + tr(H C_u H). This is the second-order (Taylor) closure
of the module docstring of :mod:`empirics.laws` with the O(C) terms of the Hessian and of the
noise dropped (they need per-sample Hessians); the drift's term is the one that carries τ on
i.i.d. data. ∇³F[C] = ∇_θ tr(∇²F(θ) C) is computed from third directional derivatives
(nested ``jvp``, then ``grad``) along directions w with Σ w wᵀ = C: C's ``rank`` leading
eigen-directions exactly and, when d > 2·rank, ``rank`` Rademacher probes of the rest
(Hutch++-style: E[z zᵀ] = I, so the probes' sum is C's remainder in expectation; seeded, the
same spec gives the same numbers).

Cost: a re-expansion takes d Hessian-vector products and 2·rank third-order directional
derivatives over all n rows, so the model is limited to d ≤ :data:`MAX_DIM` parameters.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from empirics import laws as _laws
from empirics.laws import REEXPAND_GROWTH, GLMLaw

__all__ = ["MAX_DIM", "AutogradLaw"]

#: the largest number of parameters the autograd local model takes (it forms d × d Hessians
#: and propagates d × d covariance blocks)
MAX_DIM = 512

PerSampleLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class AutogradLaw(GLMLaw):
    """The second-order local model of F_i(θ) = mean_{j ∈ S_i} f_j(θ), θ ∈ ℝ^d flat, sampled
    uniformly with replacement from worker i's rows (see the module docstring).

    loss: ``loss(θ, X, Y)`` the mean loss over the rows X, Y (a batch), θ flat (d,) float64
    on the CPU (where the law computes), differentiable three times by torch.func. sets: the
    distinct data sets [(X_j, Y_j)]; data_of[i]: worker i's set. F is the average of the
    workers' F_i. x_star: a reference minimiser for the distance columns (NaN where none is
    known). rank: directions of the third-derivative contraction (module docstring). chunk:
    rows per vectorised pass."""

    def __init__(self, loss: PerSampleLoss, sets: list[tuple[torch.Tensor, torch.Tensor]],
                 data_of: list[int], x0: np.ndarray, x_star: np.ndarray, F_star: float, *,
                 refresh: int | None = None, rank: int = 16, chunk: int = 512,
                 name: str = "problem", seed: int = 0):
        self.loss_fn = loss
        self.sets = [(X.to("cpu", torch.float64), Y.to("cpu")) for X, Y in sets]  # CPU float64
        self.data_of = list(data_of)
        self.m = len(self.data_of)
        self.x0 = np.asarray(x0, float)
        self.d = self.x0.size
        self.x_star = np.asarray(x_star, float)
        self.F_star = float(F_star)
        self.name = name
        self.rank = int(rank)
        self.chunk = int(chunk)
        self._rng = np.random.default_rng(seed)
        self.kind = "autograd"
        self.l2 = 0.0  # any ridge term is part of the loss
        self.exact = False
        self.approximate = True
        self.windowed = True
        self.rotatable = True
        self.affine_mean = True
        self.closure = "taylor"
        self.tol_margin, self.tol_cov = _laws.TOL_MARGIN, _laws.TOL_COV
        self.refresh = int(refresh or 32)
        self._ref: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._G: np.ndarray | None = None
        self._last: dict[str, int] = {}
        self.shared_data = len(self.sets) == 1
        self.identical_workers = self.shared_data
        self.shared_jacobian = self.shared_data
        self._all = 0 if self.shared_data else -1
        counts = np.bincount(self.data_of, minlength=len(self.sets))
        self._weights = counts / self.m  # F = Σ_j (workers on set j / m) F_j
        sizes = {X.shape[0] for X, _ in self.sets}
        #: distinct shards of one size, one per worker: stacked (m, n_i, …) for batched passes
        #: over all workers, and F is the mean over all their rows
        self._stack_xy = (torch.stack([self.sets[j][0] for j in self.data_of]),
                          torch.stack([self.sets[j][1] for j in self.data_of])) if (
            not self.shared_data and len(sizes) == 1 and sorted(self.data_of) == list(
                range(self.m)) and len(self.sets) == self.m) else None
        self._global = None if self._stack_xy is None else (
            torch.cat([X for X, _ in self.sets]), torch.cat([Y for _, Y in self.sets]))
        self._cache: dict[str, Any] = {}
        self._acc: dict[str, Any] = {}
        self._points: dict[int, dict[str, Any]] = {}
        self._hess: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._stack = False  # GLMLaw's stacked margins: not used here
        self.n_refresh = 0
        self.modal_average = False

    def assumptions(self) -> list[str]:
        out = [f"local model of a smooth finite sum by automatic differentiation, re-expanded "
               f"at the predicted means (every step at first, then at intervals growing as "
               f"k/{REEXPAND_GROWTH} up to {self.refresh} steps, skipped while the per-sample "
               f"losses moved < {self.tol_margin} to first order (root mean square) and the "
               f"covariance < {self.tol_cov:.0%}): exact Hessian and per-sample gradient "
               f"covariance at the mean, drift corrected by ½∇³F[C] (second-order closure; "
               f"the O(C) terms of the Hessian and the noise dropped), ∇³F[C] along C's "
               f"{self.rank} leading eigen-directions"
               + (f" and {self.rank} Rademacher probes of the rest" if self.d > 2 * self.rank
                  else " (all of them: exact)")
               + "; mean gradients to first order between re-expansions"]
        if not self.shared_data:
            out.append("heterogeneous shards: the covariance is propagated with the workers' "
                       "average Hessian and noise where the structure is modal (the per-worker "
                       "means stay exact)")
        return out

    # ---- torch evaluations -------------------------------------------------------------------
    def _rows(self, j: int) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
        """(X chunk, Y chunk, its weight in F_j) over data set j; j = −1: every set with its
        weight in F."""
        if j < 0 and self._global is not None:
            sets = [(self._global, 1.0)]
        elif j < 0:
            sets = [(self.sets[jj], w) for jj, w in enumerate(self._weights) if w > 0]
        else:
            sets = [(self.sets[j], 1.0)]
        out = []
        for (X, Y), w in sets:
            n = X.shape[0]
            for a in range(0, n, self.chunk):
                out.append((X[a:a + self.chunk], Y[a:a + self.chunk],
                            w * min(self.chunk, n - a) / n))
        return out

    def _value_grad(self, j: int, mu: np.ndarray) -> tuple[float, np.ndarray]:
        th = torch.as_tensor(mu, dtype=torch.float64)
        vg = torch.func.grad_and_value(self.loss_fn)
        F, g = 0.0, torch.zeros(self.d, dtype=torch.float64)
        for X, Y, w in self._rows(j):
            gc, fc = vg(th, X, Y)
            F += w * float(fc)
            g += w * gc
        return F, g.numpy()

    def _hessian(self, j: int, mu: np.ndarray) -> np.ndarray:
        """∇²F_j(mu) (j = −1: F), cached for the last point per data set (the workers' step
        and the averaged model re-expand at the same point under i.i.d. sampling)."""
        hit = self._hess.get(j)
        if hit is not None and np.abs(hit[0] - mu).max() <= 1e-12 * max(1.0, float(
                np.abs(mu).max())):
            return hit[1]
        th = torch.as_tensor(mu, dtype=torch.float64)
        hess = torch.func.hessian(self.loss_fn)
        H = torch.zeros(self.d, self.d, dtype=torch.float64)
        for X, Y, w in self._rows(j):
            H += w * hess(th, X, Y)
        H = H.numpy()
        H = 0.5 * (H + H.T)
        self._hess[j] = (mu.copy(), H)
        return H

    def _noise(self, j: int, mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(Σ_j per draw, mean_j g_j g_jᵀ) from the per-sample gradients at mu."""
        th = torch.as_tensor(mu, dtype=torch.float64)
        fn = self.loss_fn

        def one(t: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return fn(t, x[None], y[None])

        per = torch.func.vmap(torch.func.grad(one), in_dims=(None, 0, 0))
        S = torch.zeros(self.d, self.d, dtype=torch.float64)
        g = torch.zeros(self.d, dtype=torch.float64)
        for X, Y, w in self._rows(j):
            G = per(th, X, Y)
            S += (w / G.shape[0]) * (G.T @ G)
            g += w * G.mean(0)
        S, g = S.numpy(), g.numpy()
        Sig = S - np.outer(g, g)
        return 0.5 * (Sig + Sig.T), S

    def _directions(self, C: np.ndarray) -> np.ndarray | None:
        """(r, d) directions w_k with Σ_k w_k w_kᵀ = C in expectation: C's ``rank`` leading
        eigen-directions scaled by √c_k, and (d > 2·rank) ``rank`` Rademacher probes of the
        remainder scaled by 1/√rank. None when C = 0."""
        c, V = np.linalg.eigh(0.5 * (C + C.T))
        c = np.maximum(c, 0.0)[::-1]
        V = V[:, ::-1]
        if c[0] <= 0.0:
            return None
        r = self.d if self.d <= 2 * self.rank else self.rank
        W = (V[:, :r] * np.sqrt(c[:r])).T
        if r < self.d:
            z = self._rng.choice([-1.0, 1.0], size=(self.rank, self.d - r))
            rest = (z * np.sqrt(c[r:])) @ V[:, r:].T / math.sqrt(self.rank)
            W = np.vstack([W, rest])
        return W

    def _third(self, j: int, mu: np.ndarray, C: np.ndarray) -> np.ndarray:
        """∇³F_j(mu)[C] = ∇_θ Σ_k w_kᵀ ∇²F_j(θ) w_k (see :meth:`_directions`)."""
        W = self._directions(C)
        if W is None:
            return np.zeros(self.d)
        th = torch.as_tensor(mu, dtype=torch.float64)
        Wt = torch.as_tensor(W, dtype=torch.float64)
        g3 = torch.zeros(self.d, dtype=torch.float64)
        gfn = torch.func.grad(self._curvature)
        for X, Y, w in self._rows(j):
            g3 += w * gfn(th, X, Y, Wt)
        return g3.numpy()

    def _curvature(self, t: torch.Tensor, X: torch.Tensor, Y: torch.Tensor,
                   Wt: torch.Tensor) -> torch.Tensor:
        """Σ_k w_kᵀ ∇²F(t) w_k over the rows X, Y (nested forward-mode directional
        derivatives; its gradient in t is ∇³F(t)[Σ_k w_k w_kᵀ])."""
        fn = self.loss_fn

        def vhv(w: torch.Tensor) -> torch.Tensor:
            def dir1(s: torch.Tensor) -> torch.Tensor:
                return torch.func.jvp(lambda q: fn(q, X, Y), (s,), (w,))[1]

            return torch.func.jvp(dir1, (t,), (w,))[1]

        return torch.func.vmap(vhv)(Wt).sum()

    # ---- every worker at once (distinct shards of one size) ----------------------------------
    def _batched(self) -> bool:
        return self._stack_xy is not None

    def _stacked_chunks(self) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
        Xs, Ys = self._stack_xy
        n = Xs.shape[1]
        return [(Xs[:, a:a + self.chunk], Ys[:, a:a + self.chunk], min(self.chunk, n - a) / n)
                for a in range(0, n, self.chunk)]

    def _second_stacked(self, mu: np.ndarray, Cw: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`_second` of every worker in vmapped passes over the stacked shards:
        (H_i (m, d, d), Σ_i (m, d, d), correction (m, d)). Cw: (m or 1, d, d)."""
        m, d, fn = self.m, self.d, self.loss_fn
        th = torch.as_tensor(mu, dtype=torch.float64)

        def one(t: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return fn(t, x[None], y[None])

        per = torch.func.vmap(torch.func.vmap(torch.func.grad(one), in_dims=(None, 0, 0)))
        hess = torch.func.vmap(torch.func.hessian(fn))
        dirs = [self._directions(Cw[i if Cw.shape[0] > 1 else 0]) for i in range(m)]
        r = max((0 if w is None else w.shape[0]) for w in dirs)
        Wt = torch.zeros(m, max(r, 1), d, dtype=torch.float64)
        for i, w in enumerate(dirs):
            if w is not None:
                Wt[i, :w.shape[0]] = torch.as_tensor(w)
        third = torch.func.vmap(torch.func.grad(self._curvature))
        H = torch.zeros(m, d, d, dtype=torch.float64)
        S = torch.zeros(m, d, d, dtype=torch.float64)
        g = torch.zeros(m, d, dtype=torch.float64)
        g3 = torch.zeros(m, d, dtype=torch.float64)
        for X, Y, w in self._stacked_chunks():
            G = per(th, X, Y)  # (m, rows, d)
            S += (w / G.shape[1]) * torch.matmul(G.transpose(1, 2), G)
            g += w * G.mean(1)
            H += w * hess(th, X, Y)
            if r:
                g3 += w * third(th, X, Y, Wt)
        S, g, H = S.numpy(), g.numpy(), H.numpy()
        self._G = S.mean(0)
        Sig = S - g[:, :, None] * g[:, None, :]
        return (0.5 * (H + H.transpose(0, 2, 1)), 0.5 * (Sig + Sig.transpose(0, 2, 1)),
                0.5 * g3.numpy())

    def _worker_grads(self, mu: np.ndarray) -> np.ndarray:
        """∇F_i(μ_i) for every worker, (m, d): one vmapped pass over stacked shards, else
        worker by worker (cached points)."""
        if self._stack_xy is None:
            return np.stack([self._point(self.data_of[i], mu[i])["g"] for i in range(self.m)])
        th = torch.as_tensor(mu, dtype=torch.float64)
        gfn = torch.func.vmap(torch.func.grad(self.loss_fn))
        g = torch.zeros(self.m, self.d, dtype=torch.float64)
        for X, Y, w in self._stacked_chunks():
            g += w * gfn(th, X, Y)
        return g.numpy()

    # ---- the hooks of GLMLaw -----------------------------------------------------------------
    def _point(self, j: int, mu: np.ndarray) -> dict[str, Any]:
        """F_j and ∇F_j at mu (j = −1: F), cached for the last point per data set."""
        hit = self._points.get(j)
        if hit is not None and np.abs(hit["mu"] - mu).max() <= hit["tol"]:
            return hit
        F, g = self._value_grad(j, mu)
        out = {"F": F, "g": g, "mu": mu.copy(),
               "tol": 1e-12 * max(1.0, float(np.abs(mu).max()))}
        self._points[j] = out
        return out

    def _second(self, j: int, mu: np.ndarray, C: np.ndarray | None) -> dict[str, np.ndarray]:
        Sig, S = self._noise(j, mu)
        self._G = S  # the staleness test's metric: the per-sample losses' first-order change
        corr = np.zeros(self.d) if C is None else 0.5 * self._third(j, mu, C)
        return {"H": self._hessian(j, mu), "Sigma": Sig, "corr": corr}

    def _gram(self) -> np.ndarray:
        """mean_j g_j g_jᵀ at the last re-expansion: Δμᵀ G Δμ is the mean square first-order
        change of the per-sample losses (the margins' role in :meth:`GLMLaw._stale`)."""
        if self._G is None:
            self._G = self._noise(0 if self.shared_data else self.data_of[0], self.x0)[1]
        return self._G

    def _observe_model(self, pt: dict[str, Any], Cw: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, Any]:
        mu = pt["mu"]
        return self._hessian(self._all, mu), 0.5 * self._third(self._all, mu, Cw), 0.0

    def _observe_loss(self, pt: dict[str, Any], u: np.ndarray, C: np.ndarray,
                      o: dict[str, Any]) -> float:
        return pt["F"] + 0.5 * float(np.vdot(o["Hb"], C))

