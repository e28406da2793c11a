"""Gradient laws for :func:`empirics.moments.propagate`: what a worker's stochastic gradient does
to the first two moments, per problem.

A law answers, at every step, for each worker i with mean μ_i and marginal covariance C_i of its
model: E g_i, the Jacobian H_i of E g_i in x, and the covariance Σ_i of g_i − E[g_i | x]
(averaged over x). Two kinds:

* :class:`QuadraticLaw` — **exact**: ∇F_i(x) = H_i x − h_i and noise covariance
  Σ_i + diag(c_i ⊙ E[x ⊙ x]) per draw (additive, and the noisy quadratic's multiplicative part),
  divided by the batch size: :class:`~empirics.problems.Quadratic`,
  :class:`~empirics.problems.NoisyQuadratic`.
* :class:`GLMLaw` — finite sums of f_j(w) = ℓ_j(s_j x_jᵀw) + (l2/2)‖w‖² sampled uniformly with
  replacement from the worker's rows (:class:`~empirics.problems.LeastSquares`: **exact**, since
  ℓ is quadratic; :class:`~empirics.problems.LogisticRegression`: the **second-order local
  model**, re-expanded at the predicted means). With w = μ + ξ, Cov ξ = C, and
  r_j = ∇f_j(μ) − ∇F_i(μ), Δ_j = ∇²f_j(μ) − ∇²F_i(μ), T_j[C] = ∇³f_j(μ)[C]:

      E g_i   = ∇F_i(μ) + ½ T̄_i[C]                              (T̄ = mean_j T_j)
      Σ_i·b   = mean_j r_j r_jᵀ + mean_j Δ_j C Δ_j + ½ mean_j (r_j T_j[C]ᵀ + T_j[C] r_jᵀ)
      E F(u)  = F(ū) + ½ tr(∇²F(ū) C_u),   E‖∇F(u)‖² = ‖∇F(ū) + ½T(ū)[C_u]‖² + tr(H C_u H)

  dropping the third and higher cumulants of ξ (exact for least squares, where T = 0 and the
  expansion stops; derivation and its assumptions in ``docs/predict.md``, algebra checked in
  ``proofs/predict.py``). For the GLM, with a_j = ℓ''(z_j): Δ_j = a_j x_jx_jᵀ − mean, so
  mean_j Δ_j C Δ_j = mean_j a_j² (x_jᵀCx_j) x_jx_jᵀ − H_d C H_d and
  T_j[C] = ℓ'''(z_j) s_j (x_jᵀCx_j) x_j.

The second-order quantities (Hessians, noise, corrections) of an approximate law are refreshed
every ``refresh`` steps from the window-averaged covariances (the gradients at the means every
step); an exact law refreshes every step.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["GLMLaw", "QuadraticLaw", "law_for", "out_of_regime"]


class OutOfRegime(ValueError):
    """The predictor has no law for this problem/configuration (the message says why)."""


def out_of_regime(msg: str) -> OutOfRegime:
    return OutOfRegime(msg)


def _eq(a: np.ndarray) -> bool:
    return bool(np.allclose(a, a[0], rtol=1e-13, atol=1e-14 * max(1.0, float(np.abs(a).max()))))


class _Law:
    """Shared plumbing: basis (identity unless rotated), refresh bookkeeping."""

    approximate = False
    Q: np.ndarray | None = None
    m: int
    d: int
    x0: np.ndarray
    x_star: np.ndarray
    F_star: float

    def x0_basis(self) -> np.ndarray:
        return self.x0 if self.Q is None else self.Q.T @ self.x0

    def x_star_basis(self) -> np.ndarray:
        return self.x_star if self.Q is None else self.Q.T @ self.x_star

    def to_original(self, u: np.ndarray) -> np.ndarray:
        return u if self.Q is None else self.Q @ u

    def assumptions(self) -> list[str]:
        return []


# ---------------------------------------------------------------------------------------------
# exact: quadratic objectives
# ---------------------------------------------------------------------------------------------
class QuadraticLaw(_Law):
    """∇F_i(x) = H_i x − h_i, F_i(x) = ½xᵀH_ix − h_iᵀx + c_i; per-draw noise covariance
    Σ_i + diag(mult_i ⊙ E[x ⊙ x]). Shapes: H (m, d, d), h (m, d), c (m,), Sigma (m, d, d),
    mult (m, d) or None. Exact."""

    def __init__(self, H: np.ndarray, h: np.ndarray, c: np.ndarray, Sigma: np.ndarray,
                 x0: np.ndarray, mult: np.ndarray | None = None, name: str = "quadratic"):
        self.H = np.asarray(H, float)
        self.m, self.d = self.H.shape[0], self.H.shape[1]
        self.h = np.asarray(h, float)
        self.c = np.asarray(c, float)
        self.Sigma = np.asarray(Sigma, float)
        self.mult = None if mult is None else np.asarray(mult, float)
        self.x0 = np.asarray(x0, float)
        self.name = name
        self.Hbar = self.H.mean(0)
        self.hbar = self.h.mean(0)
        self.x_star = np.linalg.solve(self.Hbar, self.hbar)
        xs = self.x_star
        self.F_star = float(0.5 * xs @ self.Hbar @ xs - self.hbar @ xs + self.c.mean())
        self.shared_jacobian = _eq(self.H)
        self.identical_workers = self.shared_jacobian and _eq(self.h) and _eq(self.Sigma) and (
            self.mult is None or _eq(self.mult))
        off = self.H - np.einsum("iaa->ia", self.H)[:, :, None] * np.eye(self.d)
        self.diagonal = bool(np.abs(off).max(initial=0.0) == 0.0)
        self.sep = False

    def uniform_noise(self, rule: Any) -> bool:
        return self.mult is None and rule.comp is None and _eq(self.Sigma)

    def separable(self, rule: Any) -> bool:
        if self.diagonal:
            return True
        return self.shared_jacobian and self.mult is None and rule.comp is None

    def prepare(self, sep: bool) -> None:
        self.sep = sep
        if sep and not self.diagonal:  # rotate to the eigenbasis of the shared Hessian
            lam, Q = np.linalg.eigh(self.H[0])
            self.Q = Q
            self.Hd = np.broadcast_to(lam, (self.m, self.d)).copy()
            self.hd = self.h @ Q
            self.Sd = np.einsum("ab,iac,cb->ib", Q, self.Sigma, Q)
            self.Hbar_d = lam
        elif sep:
            self.Hd = np.einsum("iaa->ia", self.H)
            self.hd = self.h
            self.Sd = np.einsum("iaa->ia", self.Sigma)
            self.Hbar_d = self.Hd.mean(0)

    def moments(self, mu: np.ndarray, Cx: np.ndarray, sep: bool, b: int, k: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        shared = Cx.shape[0] == 1
        if sep:
            gbar = self.Hd * mu - self.hd
            H = (self.Hd[:1] if self.shared_jacobian else self.Hd)[:, :, None, None]
            if shared:
                H = self.Hd[:1, :, None, None]
            S = (self.Sd[:1] if shared else self.Sd).copy()
            if self.mult is not None:
                var = Cx[:, :, 0, 0]  # (m or 1, d)
                sq = (mu**2).mean(0, keepdims=True) if shared else mu**2
                mult = self.mult[:1] if shared else self.mult
                S = S + mult * (var + sq)
            return gbar, H, (S / b)[:, :, None, None]
        gbar = np.einsum("iab,ib->ia", self.H, mu) - self.h
        H = (self.H[:1] if (shared or self.shared_jacobian) else self.H)[:, None]
        S = (self.Sigma[:1] if shared else self.Sigma).copy()
        if self.mult is not None:
            var = np.einsum("nkaa->nka", Cx)[:, 0]
            sq = (mu**2).mean(0, keepdims=True) if shared else mu**2
            mult = self.mult[:1] if shared else self.mult
            idx = np.arange(self.d)
            S[:, idx, idx] += mult * (var + sq)
        return gbar, H, (S / b)[:, None]

    def observe(self, u: np.ndarray, Cu: np.ndarray, k: int, need_F: bool = True
                ) -> tuple[float, float]:
        if self.sep:
            Hd = self.Hbar_d
            hd = self.hd.mean(0)
            var = Cu[:, 0, 0]
            g = Hd * u - hd
            F = 0.5 * float(u @ (Hd * u)) - float(hd @ u) + float(self.c.mean())
            return (F - self.F_star + 0.5 * float(Hd @ var),
                    float(g @ g) + float((Hd**2) @ var))
        C = Cu[0]
        g = self.Hbar @ u - self.hbar
        F = 0.5 * float(u @ self.Hbar @ u) - float(self.hbar @ u) + float(self.c.mean())
        return (F - self.F_star + 0.5 * float(np.sum(self.Hbar * C)),
                float(g @ g) + float(np.sum((self.Hbar @ self.Hbar) * C)))


# ---------------------------------------------------------------------------------------------
# finite sums of generalised linear models: least squares (exact), logistic (local model)
# ---------------------------------------------------------------------------------------------
def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


class GLMLaw(_Law):
    """Worker i samples rows of X_i uniformly with replacement; per-sample loss
    ℓ(s_j x_jᵀw) + (l2/2)‖w‖² (logistic: ℓ(z) = log(1 + e^{−z}), s_j = ±1; least squares:
    ℓ_j(z) = ½(z − y_j)², s_j = 1). ``shards``: list of row-index arrays (one per worker; all
    the same array when every worker samples all rows). Exact for least squares; the
    second-order local model otherwise (see the module docstring)."""

    def __init__(self, X: np.ndarray, s: np.ndarray, y: np.ndarray | None, shards: list,
                 l2: float, kind: str, x0: np.ndarray, x_star: np.ndarray, F_star: float,
                 refresh: int | None = None, second_order: bool = True):
        self.X = np.asarray(X, float)
        self.s = np.asarray(s, float)
        self.y = None if y is None else np.asarray(y, float)
        self.kind = kind
        self.l2 = float(l2)
        self.m = len(shards)
        self.d = self.X.shape[1]
        self.x0 = np.asarray(x0, float)
        self.x_star = np.asarray(x_star, float)
        self.F_star = float(F_star)
        self.exact = kind == "least_squares"
        self.approximate = not self.exact
        self.second_order = bool(second_order) and not self.exact
        self.refresh = 1 if self.exact else int(refresh or 8)
        # distinct data sets (shared sampling: one)
        self.data_of: list[int] = []
        self.data: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = []
        seen: dict[bytes, int] = {}
        for idx in shards:
            idx = np.asarray(idx)
            key = idx.tobytes()
            if key not in seen:
                seen[key] = len(self.data)
                self.data.append((self.X[idx], self.s[idx],
                                  None if self.y is None else self.y[idx]))
            self.data_of.append(seen[key])
        self.shared_data = len(self.data) == 1
        self.identical_workers = self.shared_data
        self.shared_jacobian = self.shared_data  # per-worker Hessians differ otherwise
        self._all = 0 if self.shared_data else -1  # data set of the global objective
        self._cache: dict[str, Any] = {}
        self._acc: dict[str, Any] = {}
        self._points: dict[Any, dict[str, Any]] = {}
        self.n_refresh = 0
        self.modal_average = False

    def assumptions(self) -> list[str]:
        if self.exact:
            return ["least squares: the sampling law is exact (quadratic per-sample losses)"]
        out = ["local second-order model re-expanded at the predicted means (Hessians, noise "
               f"and corrections refreshed every {self.refresh} steps from the window-averaged "
               "covariances; Gaussian closure: third and higher cumulants of the fluctuations "
               "dropped)"]
        if not self.second_order:
            out.append("second-order corrections switched off (linearised model)")
        if not self.shared_data:
            out.append("heterogeneous shards: the covariance is propagated with the workers' "
                       "average Hessian and noise where the structure is modal (the per-worker "
                       "means stay exact)")
        return out

    # ---- derivatives ------------------------------------------------------------------------
    def _derivs(self, z: np.ndarray, y: np.ndarray | None) -> tuple[np.ndarray, ...]:
        if self.kind == "logistic":
            sp_ = _sigmoid(z)
            sm = 1.0 - sp_
            l2_ = sp_ * sm
            return -sm, l2_, l2_ * (sm - sp_)
        return z - y, np.ones_like(z), np.zeros_like(z)

    def _point(self, j: int, mu: np.ndarray) -> dict[str, Any]:
        """Margins, the loss derivatives and the gradient of data set j (−1: all rows) at mu,
        cached for the last few points (the averaged model and a worker often coincide)."""
        pc = self._points
        tol = 1e-12 * max(1.0, float(np.abs(mu).max()))
        for (jj, _), hit in pc.items():  # the same point up to rounding
            if jj == j and np.abs(hit["mu"] - mu).max() <= tol:
                return hit
        key = (j, mu.tobytes())
        X, s, y = (self.X, self.s, self.y) if j < 0 else self.data[j]
        z = s * (X @ mu)
        l1, l2_, l3 = self._derivs(z, y)
        out = {"z": z, "l1": l1, "l2": l2_, "l3": l3, "mu": mu.copy(),
               "g": X.T @ (s * l1) / X.shape[0] + self.l2 * mu}
        if len(pc) >= 4:
            pc.pop(next(iter(pc)))
        pc[key] = out
        return out

    def _second(self, j: int, mu: np.ndarray, C: np.ndarray | None) -> dict[str, np.ndarray]:
        """Hessian, noise covariance (per draw) and the mean correction ½T̄[C] of data set j at
        mu with fluctuation covariance C."""
        X, s, _ = self.data[j]
        n = X.shape[0]
        pt = self._point(j, mu)
        l1, l2_, l3 = pt["l1"], pt["l2"], pt["l3"]
        gd = pt["g"] - self.l2 * mu
        Hd = X.T @ (X * l2_[:, None]) / n
        Sig = X.T @ (X * (l1**2)[:, None]) / n - np.outer(gd, gd)
        corr = np.zeros(self.d)
        if C is not None:
            q = ((X @ C) * X).sum(1)
            Sig = Sig + X.T @ (X * (l2_**2 * q)[:, None]) / n - Hd @ C @ Hd
            if self.second_order:
                T = X.T @ (s * l3 * q) / n
                R = X.T @ (X * (l1 * l3 * q)[:, None]) / n - np.outer(gd, T)
                Sig = Sig + 0.5 * (R + R.T)
                corr = 0.5 * T
        return {"H": Hd + self.l2 * np.eye(self.d), "Sigma": 0.5 * (Sig + Sig.T),
                "corr": corr}

    def uniform_noise(self, rule: Any) -> bool:
        return False

    def separable(self, rule: Any) -> bool:
        return False

    def reset_window(self) -> None:
        """Re-expand at the next step (the state jumped: stationary solve)."""
        self._cache.clear()
        self._acc.clear()

    def prepare(self, sep: bool) -> None:
        self._cache.clear()
        self._acc.clear()
        self._points.clear()

    def moments(self, mu: np.ndarray, Cx: np.ndarray, sep: bool, b: int, k: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        shared = Cx.shape[0] == 1
        m = self.m
        acc = self._acc  # window sum of the covariances since the last refresh
        acc["sum"] = acc.get("sum", 0.0) + Cx[:, 0]
        acc["cnt"] = acc.get("cnt", 0) + 1
        if "H" not in self._cache or self.exact or k % self.refresh == 0:
            Cw = acc.pop("sum") / acc.pop("cnt")
            self._refresh(mu, Cw, shared)
        c = self._cache
        if self._same(mu):
            gbar = np.broadcast_to(self._point(self.data_of[0], mu[0])["g"], (m, self.d))
        else:
            gbar = np.stack([self._point(self.data_of[i], mu[i])["g"] for i in range(m)])
        if c.get("b") != b:
            c["b"], c["Sb"] = b, c["Sigma"] / b
        return gbar + c["corr"], c["H"], c["Sb"]

    def _same(self, mu: np.ndarray) -> bool:
        """Every worker samples the same rows and sits at the same mean (to rounding)."""
        if not self.shared_data:
            return False
        scale = 1e-12 * max(1.0, float(np.abs(mu).max()))
        return bool(np.abs(mu - mu[0]).max() <= scale)

    def _refresh(self, mu: np.ndarray, Cw: np.ndarray, shared: bool) -> None:
        self.n_refresh += 1
        m = self.m
        if self._same(mu):
            r = self._second(0, mu[0], Cw[0])
            Hs, Ss = r["H"][None], r["Sigma"][None]
            corr = np.broadcast_to(r["corr"], (m, self.d)).copy()
        else:
            outs = [self._second(self.data_of[i], mu[i], Cw[0] if shared else Cw[i])
                    for i in range(m)]
            Hs = np.stack([o["H"] for o in outs])
            Ss = np.stack([o["Sigma"] for o in outs])
            corr = np.stack([o["corr"] for o in outs])
        if shared and Hs.shape[0] > 1:  # modal structure: the workers' averages
            self.modal_average = True
            Hs, Ss = Hs.mean(0, keepdims=True), Ss.mean(0, keepdims=True)
        self._cache.update({"H": Hs[:, None], "Sigma": Ss[:, None], "corr": corr, "b": None})

    # ---- the averaged model --------------------------------------------------------------
    def observe(self, u: np.ndarray, Cu: np.ndarray, k: int, need_F: bool = True
                ) -> tuple[float, float]:
        C = Cu[0]
        pt = self._point(self._all, u)
        z = pt["z"]
        F = math.nan
        if need_F:
            if self.kind == "logistic":
                F = float(np.logaddexp(0.0, -z).mean())
            else:
                yy = self.y if self._all < 0 else self.data[0][2]
                F = float(0.5 * ((z - yy) ** 2).mean())
            F += 0.5 * self.l2 * float(u @ u)
        c, acc = self._cache, self._acc
        acc["u_sum"] = acc.get("u_sum", 0.0) + C
        acc["u_cnt"] = acc.get("u_cnt", 0) + 1
        if "obs" not in c or self.exact or k % self.refresh == 0:
            X, s = (self.X, self.s) if self._all < 0 else self.data[0][:2]
            n = X.shape[0]
            H = X.T @ (X * pt["l2"][:, None]) / n + self.l2 * np.eye(self.d)
            Cw = acc.pop("u_sum") / acc.pop("u_cnt")
            corr = np.zeros(self.d)
            if self.second_order:
                q = ((X @ Cw) * X).sum(1)
                corr = 0.5 * X.T @ (s * pt["l3"] * q) / n
            c["obs"] = {"H": H, "H2": H @ H, "corr": corr}
        o = c["obs"]
        gm = pt["g"] + o["corr"]
        return (F - self.F_star + 0.5 * float(np.sum(o["H"] * C)),
                float(gm @ gm) + float(np.sum(o["H2"] * C)))


# ---------------------------------------------------------------------------------------------
# the law of a problem
# ---------------------------------------------------------------------------------------------
def law_for(problem: Any, *, refresh: int | None = None, second_order: bool = True) -> _Law:
    """The gradient law of ``problem`` (exact for quadratics and least squares, the local
    second-order model for logistic regression); :class:`OutOfRegime` naming why otherwise."""
    import torch

    from empirics.problems import LeastSquares, LogisticRegression, NoisyQuadratic
    from empirics.problems.quadratic import Quadratic

    if isinstance(problem, Quadratic):
        return QuadraticLaw(problem.H, problem.h, problem.c0, problem.Sigma, problem.x0,
                            name="quadratic")
    if isinstance(problem, NoisyQuadratic):
        m, d = problem.m, problem.d
        a = np.asarray(problem.a, float)
        H = np.broadcast_to(np.diag(a), (m, d, d)).copy()
        S = np.broadcast_to(problem.sigma**2 * np.eye(d), (m, d, d)).copy()
        mult = np.broadcast_to(problem.c**2 * a**2, (m, d)).copy() if problem.c else None
        return QuadraticLaw(H, np.zeros((m, d)), np.zeros(m), S, problem.x0, mult,
                            name="noisy_quadratic")
    if isinstance(problem, (LeastSquares, LogisticRegression)):
        X, y = problem.data("cpu", torch.float64)
        X = X.numpy().astype(float)
        y = y.numpy().astype(float)
        m = problem.m
        n = X.shape[0]
        if getattr(problem, "shared", False):
            shards = [np.arange(n)] * m
        else:
            npw = problem.n_per
            shards = [np.arange(i * npw, (i + 1) * npw) for i in range(m)]
        x0 = problem.init_params("cpu", torch.float64)["w"].numpy().astype(float)
        xs = problem.x_star["w"].numpy().astype(float)
        Fs = problem.constants.F_star.value
        if isinstance(problem, LeastSquares):
            return GLMLaw(X, np.ones(n), y, shards, problem.l2, "least_squares", x0, xs, Fs)
        return GLMLaw(X, y, None, shards, problem.l2, "logistic", x0, xs, Fs,
                      refresh=refresh, second_order=second_order)
    raise out_of_regime(
        f"no gradient law for {type(problem).__name__}: the predictor knows quadratics "
        f"(Quadratic, NoisyQuadratic), least squares (exact) and logistic regression (local "
        f"model); a problem needs x_star and per-worker gradients, Hessians and noise "
        f"covariances at a point (docs/predict.md, 'Adding a problem')")


_ = math
