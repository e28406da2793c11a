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

* :class:`AutogradLaw` — the same local model for any smooth finite-sum torch problem
  (:class:`~empirics.problems.MLPClassifier`, a smooth :class:`~empirics.problems.ModuleProblem`),
  its quantities by ``torch.func`` (the Hessian and the noise at the mean; the drift's ½T̄[C]
  kept; see its docstring).

The second-order quantities (Hessians, noise, corrections) of an approximate law are refreshed
from the window-averaged covariances on a schedule (every step at first, then intervals
growing as k/REEXPAND_GROWTH up to ``refresh``), skipped while the model still holds
(:meth:`GLMLaw._stale`); between re-expansions the mean gradients follow the model's first
order, E g_i(μ) = E g_i(μ_e) + H_i(μ − μ_e). An exact law refreshes every step.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

__all__ = ["AUTOGRAD_BUDGET_S", "CLOSURES", "MAX_DIM", "AutogradLaw", "GLMLaw", "PiecewiseLaw",
           "QuadraticLaw", "REEXPAND_GROWTH", "law_for", "out_of_regime"]

#: the local model's re-expansion interval grows as k/REEXPAND_GROWTH (capped by ``refresh``):
#: each re-expansion costs several n·d² products, so their number, ~g·ln(refresh·g) + K/refresh
#: over K steps, sets the cost of a prediction (``benchmarks/bench_predict.py``)
REEXPAND_GROWTH = 8

#: a scheduled re-expansion of the local model is skipped while the predicted means' margins
#: moved by at most TOL_MARGIN (root mean square) and the covariance by at most TOL_COV
#: (relative) since the last one
TOL_MARGIN = 0.05
TOL_COV = 0.05
#: the autograd local model (:class:`AutogradLaw`) re-expands unscheduled as soon as the means'
#: per-sample losses moved by more than TOL_FORCE (root mean square, first order) since its
#: anchor: between scheduled ones its mean gradients are first order in that move, and a
#: network is far from linear (heterogeneous shards, τ = 8: 3× off without it). GLMLaw's
#: logistic model never moves that far between scheduled re-expansions on the suite, and the
#: per-step check would cost it a third of its time, so it has none (None: only the schedule)
TOL_FORCE: float | None = 0.2

#: closures of the local model: exact Gaussian expectations along the margins, the second-order
#: Taylor correction (its leading term), the linearised model (no correction)
CLOSURES = ("gauss", "taylor", "linear")


class OutOfRegime(ValueError):
    """The predictor has no law for this problem/configuration (the message says why)."""


def out_of_regime(msg: str) -> OutOfRegime:
    return OutOfRegime(msg)


def _eq(a: np.ndarray) -> bool:
    """Whether every a[i] equals a[0] (to 1e-13 relative): worker by worker, exact equality
    first, stopping at the first worker that differs (a is often (m, d, d))."""
    a = np.asarray(a)
    if a.shape[0] <= 1:
        return True
    a0 = a[0]
    s0 = float(np.abs(a0).max(initial=0.0))
    for ai in a[1:]:
        if np.array_equal(ai, a0):
            continue
        tol = 1e-14 * max(1.0, s0, float(np.abs(ai).max(initial=0.0)))
        if not np.allclose(ai, a0, rtol=1e-13, atol=tol):
            return False
    return True


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
        self._shared_noise = _eq(self.Sigma)
        self.identical_workers = self.shared_jacobian and _eq(self.h) and self._shared_noise \
            and (self.mult is None or _eq(self.mult))
        # diagonal iff every nonzero of H lies on a diagonal (no (m, d, d) temporary)
        self.diagonal = bool(np.count_nonzero(self.H)
                             == np.count_nonzero(np.einsum("iaa->ia", self.H)))
        self.sep = False

    def uniform_noise(self, rule: Any) -> bool:
        return self.mult is None and rule.comp is None and self._shared_noise

    def separable(self, rule: Any) -> bool:
        if self.diagonal:
            return True
        return self.shared_jacobian and self.mult is None and rule.comp is None

    def prepare(self, sep: bool, T: int | None = None) -> None:
        """Before a propagation of T steps (sep: the engine runs separable)."""
        self.sep = sep
        if sep and not self.diagonal:  # rotate to the eigenbasis of the shared Hessian
            lam, Q = np.linalg.eigh(self.H[0])
            self.Q = Q
            self.Hd = np.broadcast_to(lam, (self.m, self.d)).copy()
            self.hd = self.h @ Q
            if self._shared_noise:  # diag(QᵀΣQ) once (a d³ product per distinct Σ_i)
                s0 = np.einsum("ab,ab->b", self.Sigma[0] @ Q, Q)
                self.Sd = np.broadcast_to(s0, (self.m, self.d)).copy()
            else:
                self.Sd = np.einsum("iab,ab->ib", self.Sigma @ Q, Q)  # diag(QᵀΣ_iQ)
            self.Hbar_d = lam
        elif sep:
            self.Hd = np.einsum("iaa->ia", self.H)
            self.hd = self.h
            self.Sd = np.einsum("iaa->ia", self.Sigma)
            self.Hbar_d = self.Hd.mean(0)

    def moments(self, mu: np.ndarray, cov: Any, sep: bool, b: int, k: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """E g per worker, the Jacobians and the noise covariances (``cov()``: the workers'
        x-marginals, read only by state-dependent noise). Leading axis m, or 1 when shared."""
        if self.mult is not None:
            Cx = cov()
            shared = Cx.shape[0] == 1
        else:
            Cx, shared = None, bool(self._shared_noise)
        if sep:
            gbar = self.Hd * mu - self.hd
            H = (self.Hd[:1] if self.shared_jacobian else self.Hd)[:, :, None, None]
            S = (self.Sd[:1] if shared else self.Sd).copy()
            if self.mult is not None:
                var = Cx[:, :, 0, 0]  # (m or 1, d)
                sq = (mu**2).mean(0, keepdims=True) if shared else mu**2
                mult = self.mult[:1] if shared else self.mult
                S = S + mult * (var + sq)
            return gbar, H, (S / b)[:, :, None, None]
        gbar = np.einsum("iab,ib->ia", self.H, mu) - self.h
        H = (self.H[:1] if self.shared_jacobian else self.H)[:, None]
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
@functools.lru_cache(maxsize=256)
def _prime_below(x: int) -> int:
    """The largest prime ≤ x (1 for x < 2)."""
    for p in range(int(x), 1, -1):
        if all(p % q for q in range(2, int(p**0.5) + 1)):
            return p
    return 1


#: the local models' assumption with distinct shards per worker
_SHARDS_NOTE = ("distinct shards per worker: the covariance is propagated with the workers' "
                "average Hessian and noise where the structure is modal (the per-worker means "
                "stay exact)")


def _same_point(a: np.ndarray, b: np.ndarray) -> bool:
    """b within 1e-12 (relative to the larger of 1 and a's largest entry) of a cached point a:
    the averaged model and the workers' common mean coincide to rounding."""
    return bool(np.abs(a - b).max() <= 1e-12 * max(1.0, float(np.abs(a).max())))


def _margin_var(X: np.ndarray, C: np.ndarray) -> np.ndarray:
    """q_j = x_jᵀ C x_j (clipped at 0) for every row x_j of X: the variance of each margin."""
    return np.maximum(np.einsum("ij,ij->i", X @ C, X), 0.0)


def _rotate(X: np.ndarray, Q1: np.ndarray | None, Q2: np.ndarray | None) -> np.ndarray:
    """A symmetric d × d matrix given in the orthonormal basis Q1, expressed in the basis Q2
    (None: the original coordinates): Q2ᵀ Q1 X Q1ᵀ Q2."""
    if Q1 is Q2:
        return X
    R = Q2 if Q1 is None else (Q1.T if Q2 is None else Q1.T @ Q2)
    return R.T @ X @ R


def _log1p_exp_neg(z: np.ndarray) -> np.ndarray:
    """log(1 + e^{−z}) = log1p(e^{−|z|}) + max(−z, 0), without overflow (np.logaddexp(0, −z)
    to rounding, in half its time)."""
    return np.log1p(np.exp(-np.abs(z))) + np.maximum(-z, 0.0)


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
                 refresh: int | None = None, closure: str = "gauss", nodes: int = 12,
                 affine_mean: bool = True):
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
        self.windowed = self.approximate  # the engine keeps a window sum of the covariances
        #: the engine may hold the covariances in the eigenbasis of the (rarely re-expanded)
        #: Jacobian and pass that basis to :meth:`observe`
        self.rotatable = self.approximate
        #: between re-expansions the mean gradients come from the local model,
        #: E g_i(μ) = E g_i(μ_e) + H_i(μ − μ_e) (no pass over the rows); False: exact at every
        #: step (a pass over all rows per worker and step)
        self.affine_mean = self.approximate and bool(affine_mean)
        if closure not in CLOSURES:
            raise ValueError(f"closure must be one of {CLOSURES} (got {closure!r})")
        self.closure = "exact" if self.exact else closure
        self._init_schedule(1 if self.exact else refresh, None)
        t, w = np.polynomial.hermite_e.hermegauss(int(nodes))
        self._nodes = (t, w / w.sum())
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
        self._share(len(self.data) == 1)
        #: s_j x_j per data set (s = ±1, so (s ⊙ X)μ = s ⊙ (Xμ) exactly) and the distinct
        #: shards stacked for one batched gradient of all workers (built on first use)
        self._signed: dict[int, np.ndarray] = {}
        self._stack: Any = None

    def _share(self, shared: bool) -> None:
        """The structure that follows from whether every worker samples one data set: then
        the workers are identical and share one Jacobian, and the global objective is that
        set's (index 0; −1: the mean over the workers' sets)."""
        self.shared_data = shared
        self.identical_workers = shared
        self.shared_jacobian = shared  # per-worker Hessians differ otherwise
        self._all = 0 if shared else -1

    def _init_schedule(self, refresh: int | None, tol_force: float | None) -> None:
        """The re-expansion schedule's state: ``refresh`` the largest number of steps between
        two re-expansions (they start every step and the interval grows as
        k/REEXPAND_GROWTH: a fixed fraction of the elapsed run); the skip rule's tolerances
        (:meth:`_stale`) and the unscheduled one's (:meth:`_moved`, None: none); the anchors,
        windows and caches."""
        self.refresh = int(refresh or 32)
        self.tol_margin, self.tol_cov, self.tol_force = TOL_MARGIN, TOL_COV, tol_force
        self._G: np.ndarray | None = None
        self.modal_average = False
        self._fresh(None)

    def _fresh(self, T: int | None) -> None:
        """The state a propagation of T steps starts from: no anchors, windows, cached points
        or schedule, no re-expansion counted."""
        self._ref: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._last: dict[str, int] = {}
        self._cache: dict[str, Any] = {}
        self._acc: dict[str, Any] = {}
        self._points: dict[int, dict[str, Any]] = {}
        #: re-expansions so far: of the workers' model (:meth:`moments`) and of the averaged
        #: model (:meth:`observe`), and the seconds spent in them (each costs a few n·d²
        #: products: most of a prediction's cost)
        self.n_refresh = 0
        self.n_observe = 0
        self.reexpand_seconds = 0.0
        #: the propagation's length (:meth:`prepare`); with :data:`AUTOGRAD_BUDGET_S` the
        #: autograd model's second re-expansion projects the prediction's cost over it
        self.horizon = T

    def assumptions(self) -> list[str]:
        if self.exact:
            return ["least squares: the sampling law is exact (quadratic per-sample losses)"]
        how = {"gauss": "Gaussian closure: the fluctuations of every worker are taken Gaussian "
                        "and the expectations along each sample's margin are exact "
                        "(Gauss–Hermite); its leading term is the second-order correction",
               "taylor": "second-order closure: E∇F(μ+ξ) = ∇F(μ) + ½∇³F[C], noise to first "
                         "order in C (third and higher cumulants and derivatives dropped)",
               "linear": "linearised model: Hessian, drift and noise at the mean, no "
                         "fluctuation corrections (blind to the workers' spread)"}[self.closure]
        out = [f"local model re-expanded at the predicted means (considered every step at "
               f"first, then at intervals growing as k/{REEXPAND_GROWTH} up to {self.refresh} "
               f"steps, from the window-averaged covariances, and skipped while the margins "
               f"moved < {self.tol_margin} and the covariance < {self.tol_cov:.0%}); mean "
               f"gradients to first order between re-expansions; {how}"]
        if not self.shared_data:
            out.append(_SHARDS_NOTE)
        return out

    # ---- derivatives ------------------------------------------------------------------------
    def _derivs(self, z: np.ndarray, y: np.ndarray | None) -> tuple[np.ndarray, ...]:
        if self.kind == "logistic":
            sp_ = _sigmoid(z)
            sm = 1.0 - sp_
            l2_ = sp_ * sm
            return -sm, l2_, l2_ * (sm - sp_)
        return z - y, np.ones_like(z), np.zeros_like(z)

    def _first(self, z: np.ndarray, y: np.ndarray | None) -> np.ndarray:
        """The first derivative of ℓ at z alone (what the gradient at a mean needs)."""
        if self.kind == "logistic":
            return -(1.0 - _sigmoid(z))
        return z - y

    def _higher(self, pt: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """The second and third derivatives of ℓ at a point of :meth:`_point` (computed on
        first use: the gradient at a mean needs only the first)."""
        if "l2" not in pt:
            _, pt["l2"], pt["l3"] = self._derivs(pt["z"], pt["y"])
        return pt["l2"], pt["l3"]

    def _point(self, j: int, mu: np.ndarray) -> dict[str, Any]:
        """Margins, the loss derivatives and the gradient of data set j (−1: all rows) at mu,
        cached per data set for its last point: a point within 1e-12 (relative) of it reuses
        it (the averaged model and the workers' common mean coincide to rounding)."""
        hit = self._points.get(j)
        if hit is not None and _same_point(hit["mu"], mu):
            return hit
        y = self.y if j < 0 else self.data[j][2]
        XS = self._signed_rows(j)
        z = XS @ mu
        l1 = self._first(z, y)
        out = {"z": z, "y": y, "l1": l1, "mu": mu.copy(),
               "g": XS.T @ l1 / XS.shape[0] + self.l2 * mu}
        self._points[j] = out
        return out

    def _signed_rows(self, j: int) -> np.ndarray:
        """s ⊙ X of data set j (−1: all rows), cached (X itself when every s_j = 1)."""
        XS = self._signed.get(j)
        if XS is None:
            X, s, _ = (self.X, self.s, self.y) if j < 0 else self.data[j]
            XS = X if np.all(s == 1.0) else s[:, None] * X
            self._signed[j] = XS
        return XS

    def _stacked(self) -> Any:
        """(s ⊙ X_i stacked (m, n_i, d), y_i stacked or None) when the workers hold distinct
        shards of one size (one batched product serves them all), else False (built once)."""
        if self._stack is None:
            sizes = {self.data[j][0].shape[0] for j in self.data_of}
            ok = not self.shared_data and len(set(self.data_of)) == self.m and len(sizes) == 1
            self._stack = (np.stack([self._signed_rows(j) for j in self.data_of]),
                           None if self.y is None else
                           np.stack([self.data[j][2] for j in self.data_of])) if ok else False
        return self._stack

    def _second_stacked(self, mu: np.ndarray, Cw: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`_second` (Gaussian closure) of every worker's shard at once, in batched
        products over the stacked shards (s_j² = 1, so s ⊙ X serves the quadratic forms):
        (H_i (m, d, d), Σ_i (m, d, d), correction (m, d)). Cw: (m or 1, d, d)."""
        XS, Y = self._stack
        n = XS.shape[1]
        z = np.matmul(XS, mu[:, :, None])[:, :, 0]  # (m, n)
        gd = np.matmul(self._first(z, Y)[:, None, :], XS)[:, 0, :] / n
        q = np.maximum(np.einsum("inb,inb->in", np.matmul(XS, Cw), XS), 0.0)
        E1, E2, E11 = self._gauss(z, q, Y)
        gE = np.matmul(E1[:, None, :], XS)[:, 0, :] / n
        XT = XS.transpose(0, 2, 1)
        Hd = np.matmul(XT, XS * E2[:, :, None]) / n
        Sig = np.matmul(XT, XS * E11[:, :, None]) / n - gE[:, :, None] * gE[:, None, :] \
            - np.matmul(np.matmul(Hd, Cw), Hd)
        idx = np.arange(self.d)
        Hd[:, idx, idx] += self.l2
        return Hd, 0.5 * (Sig + Sig.transpose(0, 2, 1)), gE - gd

    def _worker_grads(self, mu: np.ndarray) -> np.ndarray:
        """∇F_i(μ_i) for every worker i, (m, d): g_i = (1/n_i) Σ_j ℓ'(z_j) s_j x_j + l2·μ_i,
        z_j = s_j x_jᵀμ_i over worker i's rows. Distinct shards of one size: two batched
        products for all workers; otherwise worker by worker (cached points)."""
        if self._stacked() is False:
            return np.stack([self._point(self.data_of[i], mu[i])["g"] for i in range(self.m)])
        XS, Y = self._stack
        z = np.matmul(XS, mu[:, :, None])[:, :, 0]  # (m, n_i)
        l1 = self._first(z, Y)
        return np.matmul(l1[:, None, :], XS)[:, 0, :] / XS.shape[1] + self.l2 * mu

    def _second(self, j: int, mu: np.ndarray, C: np.ndarray | None) -> dict[str, np.ndarray]:
        """Jacobian, noise covariance (per draw) and the mean correction E∇F_j(μ+ξ) − ∇F_j(μ)
        of data set j at mu, with ξ ~ N(0, C) (see the module docstring)."""
        X, s, y = self.data[j]
        n = X.shape[0]
        pt = self._point(j, mu)
        l1 = pt["l1"]
        gd = pt["g"] - self.l2 * mu
        corr = np.zeros(self.d)
        if C is None or self.closure == "linear":
            l2_ = self._higher(pt)[0]
            Hd = X.T @ (X * l2_[:, None]) / n
            Sig = X.T @ (X * (l1**2)[:, None]) / n - np.outer(gd, gd)
            return {"H": self._ridge(Hd), "Sigma": 0.5 * (Sig + Sig.T), "corr": corr}
        q = _margin_var(X, C)
        if self.closure == "taylor" or self.exact:
            l2_, l3 = self._higher(pt)
            Hd = X.T @ (X * l2_[:, None]) / n
            Sig = X.T @ (X * (l1**2 + l2_**2 * q)[:, None]) / n - np.outer(gd, gd) \
                - Hd @ C @ Hd
            if not self.exact:
                T = X.T @ (s * l3 * q) / n
                Sig = Sig + X.T @ (X * (l1 * l3 * q)[:, None]) / n \
                    - 0.5 * (np.outer(gd, T) + np.outer(T, gd))
                corr = 0.5 * T
        else:  # Gaussian expectations along every margin (Gauss–Hermite)
            E1, E2, E11 = self._gauss(pt["z"], q, y)
            gE = X.T @ (s * E1) / n
            Hd = X.T @ (X * E2[:, None]) / n
            Sig = X.T @ (X * E11[:, None]) / n - np.outer(gE, gE) - Hd @ C @ Hd
            corr = gE - gd
        return {"H": self._ridge(Hd), "Sigma": 0.5 * (Sig + Sig.T), "corr": corr}

    def _ridge(self, Hd: np.ndarray) -> np.ndarray:
        """Hd + l2·I, in place (Hd is a fresh array)."""
        Hd.flat[:: self.d + 1] += self.l2
        return Hd

    def _gauss(self, z: np.ndarray, q: np.ndarray, y: np.ndarray | None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """E ℓ'(Z), E ℓ''(Z), E ℓ'(Z)² for Z ~ N(z, q), per sample (Gauss–Hermite, exact for
        polynomials of degree < 2·nodes; ℓ is smooth and its derivatives bounded)."""
        t, w = self._nodes
        Z = z[..., None] + np.sqrt(q)[..., None] * t
        if self.kind == "logistic":  # ℓ' = −σ(−Z), ℓ'' = σ(Z)σ(−Z) (no third derivative)
            sp_ = _sigmoid(Z)
            sm = 1.0 - sp_
            return -(sm @ w), (sp_ * sm) @ w, (sm * sm) @ w
        l1, l2_, _ = self._derivs(Z, None if y is None else y[..., None])
        return l1 @ w, l2_ @ w, (l1**2) @ w

    def _gauss_loss(self, z: np.ndarray, q: np.ndarray, y: np.ndarray | None) -> np.ndarray:
        t, w = self._nodes
        Z = z[:, None] + np.sqrt(q)[:, None] * t[None, :]
        if self.kind == "logistic":
            return _log1p_exp_neg(Z) @ w
        return (0.5 * (Z - y[:, None]) ** 2) @ w

    def uniform_noise(self, rule: Any) -> bool:
        return False

    def separable(self, rule: Any) -> bool:
        return False

    def reset_window(self) -> None:
        """Re-expand at the next step (the state jumped: stationary solve)."""
        self._cache.clear()
        self._acc.clear()
        self._last.clear()
        self._ref.clear()

    def prepare(self, sep: bool, T: int | None = None) -> None:
        """A fresh schedule for a propagation of T steps (:data:`AUTOGRAD_BUDGET_S` reads
        ``horizon``), its counts from zero: a law propagated twice gives the same numbers."""
        self._fresh(T)

    def moments(self, mu: np.ndarray, cov: Any, sep: bool, b: int, k: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """E g per worker, the Jacobians and noise covariances. At a re-expansion (on the
        :meth:`_due` schedule, unless :meth:`_stale` says the model still holds; every step for
        an exact law): the gradients at the means plus the fluctuation correction, the second
        order from the window-averaged marginals ``cov(True)``. In between: E g_i(μ) =
        E g_i(μ_e) + H_i(μ − μ_e), worker i's own Jacobian H_i at the expansion point μ_e."""
        due = "H" not in self._cache or self._due("moments", k) or self._moved("moments", mu, k)
        if due:
            Cw = cov(not self.exact)[:, 0]
            if "H" in self._cache and not self._stale("moments", mu, Cw):
                due = False  # the model still holds: keep it (and its anchor)
            else:
                t0 = time.perf_counter()
                self._refresh(mu, Cw, Cw.shape[0] == 1)
                self.reexpand_seconds += time.perf_counter() - t0
                self._ref["moments"] = (mu.copy(), Cw.copy())
        c = self._cache
        if c.get("b") != b:
            c["b"], c["Sb"] = b, c["Sigma"] / b
        if self.affine_mean and not due:  # E g_i(μ) = E g_i(μ_e) + H_i(μ − μ_e)
            mu_e, g_e, Hm = c["anchor"]
            dm = mu - mu_e
            if Hm.shape[0] > 1:
                return g_e + np.einsum("iab,ib->ia", Hm, dm), c["H"], c["Sb"]
            if self.m * self.d > 4096 and self._same(mu):  # one displacement (H symmetric)
                return g_e + Hm[0] @ dm[0], c["H"], c["Sb"]
            return g_e + dm @ Hm[0], c["H"], c["Sb"]
        if self._same(mu):
            gbar = self._point(self.data_of[0], mu[0])["g"]  # (d,): broadcast against corr
        else:
            gbar = self._worker_grads(mu)
        g = gbar + c["corr"]
        if self.affine_mean:
            c["anchor"] = (mu.copy(), g, c["Hm"])
        return g, c["H"], c["Sb"]

    def _due(self, what: str, k: int) -> bool:
        """Whether to re-expand at step k: always for an exact law; else when k − (the last
        re-expansion) reaches the largest prime ≤ min(refresh, ⌊k/g⌋) (1 for k < 2g;
        g = REEXPAND_GROWTH), so the model is never older than about 1/g of the elapsed run.
        Prime intervals are not multiples of a communication period, so successive
        re-expansions sample every phase of a round (heterogeneous workers drift within it)."""
        if self.exact:
            return True
        last = self._last.get(what)
        if last is None or k - last >= self._interval(k) or k < last:
            self._last[what] = k
            return True
        return False

    def _moved(self, what: str, mu: np.ndarray, k: int) -> bool:
        """Whether the means moved by more than ``tol_force`` (:data:`TOL_FORCE` for
        :class:`AutogradLaw`, None for this class; the margins' root mean square, as in
        :meth:`_stale`) since the anchor of the model last expanded for ``what``: an
        unscheduled re-expansion (the schedule restarts at k)."""
        ref = self._ref.get(what)
        if self.tol_force is None or ref is None or self.tol_margin is None:
            return False
        if self._margin_move(mu, ref[0]) <= self.tol_force**2:
            return False
        self._last[what] = k
        return True

    def scheduled_reexpansions(self, T: int) -> int:
        """How many re-expansions :meth:`_due` schedules over T steps (an upper bound: the
        skip rule keeps some)."""
        count, last = 0, None
        for k in range(int(T)):
            if last is None or k - last >= self._interval(k):
                count, last = count + 1, k
        return count

    def _interval(self, k: int) -> int:
        """The schedule's interval at step k: the largest prime ≤ min(refresh, ⌊k/g⌋)."""
        return _prime_below(min(self.refresh, max(1, k // REEXPAND_GROWTH)))

    def _stale(self, what: str, mu: np.ndarray, C: np.ndarray) -> bool:
        """Whether the model last expanded for ``what`` (the workers' step or the averaged
        model) no longer holds at means ``mu`` and window-averaged covariance ``C``: the
        means' margins moved by more than ``tol_margin`` (root mean square over the rows and
        the workers, Δμᵀ G Δμ with G = XᵀX/n) or C by more than ``tol_cov`` of its norm
        (Frobenius; not read by the linearised closure). An exact law is never kept."""
        ref = self._ref.get(what)
        if self.exact or ref is None or self.tol_margin is None:
            return True
        mu0, C0 = ref
        if self._margin_move(mu, mu0) > self.tol_margin**2:
            return True
        if self.closure == "linear":  # the linearised model does not read C
            return False
        n0 = float(np.linalg.norm(C0))
        return float(np.linalg.norm(C - C0)) > self.tol_cov * n0 or n0 == 0.0

    def _margin_move(self, mu: np.ndarray, mu0: np.ndarray) -> float:
        """The mean square over the workers of Δμᵀ G Δμ (:meth:`_gram`): how far the margins
        moved from mu0 to mu (one row when every worker moved alike)."""
        dm = np.atleast_2d(mu - mu0)
        if dm.shape[0] > 1 and not np.any(dm[1:] != dm[0]):
            dm = dm[:1]
        return float(np.mean(np.einsum("ia,ab,ib->i", dm, self._gram(), dm)))

    def _gram(self) -> np.ndarray:
        """G = XᵀX/n over all rows (once)."""
        if self._G is None:
            self._G = self.X.T @ self.X / self.X.shape[0]
        return self._G

    def _same(self, mu: np.ndarray) -> bool:
        """Every worker samples the same rows and sits at the same mean (to rounding)."""
        if not self.shared_data:
            return False
        scale = 1e-12 * max(1.0, float(np.abs(mu).max()))
        return bool(np.abs(mu - mu[0]).max() <= scale)

    def _batched(self) -> bool:
        """Whether :meth:`_second_stacked` serves all workers at once (distinct shards of one
        size, Gaussian closure)."""
        return self.closure == "gauss" and self._stacked() is not False

    def _refresh(self, mu: np.ndarray, Cw: np.ndarray, shared: bool) -> None:
        self.n_refresh += 1
        m = self.m
        if self._same(mu):
            r = self._second(0, mu[0], Cw[0])
            Hs, Ss = r["H"][None], r["Sigma"][None]
            corr = np.broadcast_to(r["corr"], (m, self.d)).copy()
        elif self._batched():
            Hs, Ss, corr = self._second_stacked(mu, Cw)
        else:
            outs = [self._second(self.data_of[i], mu[i], Cw[0] if shared else Cw[i])
                    for i in range(m)]
            Hs = np.stack([o["H"] for o in outs])
            Ss = np.stack([o["Sigma"] for o in outs])
            corr = np.stack([o["corr"] for o in outs])
        Hm = Hs  # every worker's own Jacobian: its mean's first-order model
        if shared and Hs.shape[0] > 1:  # modal structure: the workers' averages
            self.modal_average = True
            Hs, Ss = Hs.mean(0, keepdims=True), Ss.mean(0, keepdims=True)
        self._cache.update({"H": Hs[:, None], "Sigma": Ss[:, None], "corr": corr, "b": None,
                            "Hm": Hm})

    # ---- the averaged model --------------------------------------------------------------
    def observe(self, u: np.ndarray, Cu: np.ndarray, k: int, need_F: bool = True,
                basis: np.ndarray | None = None) -> tuple[float, float]:
        """(E F(u) − F*, E‖∇F(u)‖²) with u ~ N(ū, C_u): at a re-expansion the gradient at ū
        plus the correction E∇F(u) − ∇F(ū), in between that to first order in ū − ū_e (the
        loss at ū of a record exactly); Cov ∇F(u) = H̃C_uH̃ with H̃ the expected Hessian
        (statistical linearisation). ``basis``: Q (d × d, orthogonal) when C_u is given in it
        (QᵀCov(u)Q); None for the original coordinates."""
        C = Cu[0]
        c, acc = self._cache, self._acc
        if "u_sum" in acc and acc.get("Q") is not basis:  # the window in the new basis
            acc["u_sum"] = _rotate(acc["u_sum"], acc.get("Q"), basis)
        acc["Q"] = basis
        acc["u_sum"] = acc.get("u_sum", 0.0) + C
        acc["u_cnt"] = acc.get("u_cnt", 0) + 1
        due = "obs" not in c or self._due("observe", k) or self._moved("observe", u, k)
        if due:
            Cw = _rotate(acc.pop("u_sum") / acc.pop("u_cnt"), basis, None)
            if "obs" in c and not self._stale("observe", u, Cw):
                due = False
            else:
                self._ref["observe"] = (u.copy(), Cw.copy())
        pt = self._point(self._all, u) if due or need_F or not self.affine_mean else None
        if due:
            self.n_observe += 1
            t0 = time.perf_counter()
            H, corr, dF = self._observe_model(pt, Cw)
            self.reexpand_seconds += time.perf_counter() - t0
            H2 = H @ H
            c["obs"] = {"H": H, "H2": H2, "Hb": H, "H2b": H2, "corr": corr, "dF": dF,
                        "Q": None, "anchor": (u.copy(), pt["g"] + corr)}
        o = c["obs"]
        if o["Q"] is not basis:  # H and H² in the covariance's basis (traces are invariant)
            o["Hb"], o["H2b"], o["Q"] = (_rotate(o["H"], None, basis),
                                         _rotate(o["H2"], None, basis), basis)
        F = self._observe_loss(pt, u, C, o) if need_F else math.nan
        if self.affine_mean and not due:  # E∇F(u) to first order about the re-expansion
            u_e, g_e = o["anchor"]
            gm = g_e + o["H"] @ (u - u_e)
        else:
            gm = pt["g"] + o["corr"]
        return F - self.F_star, float(gm @ gm) + float(np.vdot(o["H2b"], C))

    def _observe_model(self, pt: dict[str, Any], Cw: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, Any]:
        """The averaged model's local model at a re-expansion, from its point ``pt``
        (:meth:`_point` of the global objective) and window-averaged covariance Cw: (the
        expected Hessian, the correction E∇F(u) − ∇F(ū), what :meth:`_observe_loss` needs for
        the loss correction)."""
        X, s, y = (self.X, self.s, self.y) if self._all < 0 else self.data[0]
        n = X.shape[0]
        z = pt["z"]
        corr = np.zeros(self.d)
        dF: Any = 0.0
        w2, l3 = self._higher(pt) if self.closure != "gauss" else (None, None)
        q = _margin_var(X, Cw) if self.closure != "linear" else None
        if self.closure in ("taylor", "exact"):
            corr = 0.5 * X.T @ (s * l3 * q) / n
        elif self.closure == "gauss":
            E1, w2, _ = self._gauss(z, q, y)
            corr = X.T @ (s * (E1 - pt["l1"])) / n
            dF = (z, q)  # the loss correction, evaluated when a record needs it
        return self._ridge(X.T @ (X * w2[:, None]) / n), corr, dF

    def _observe_loss(self, pt: dict[str, Any], u: np.ndarray, C: np.ndarray,
                      o: dict[str, Any]) -> float:
        """E F(u) (before subtracting F*) at the point ``pt`` of ū with Cov(u) = C (in the
        basis of ``o["Hb"]``), from the averaged model's local model ``o``."""
        y = self.y if self._all < 0 else self.data[0][2]
        F = float(self._loss(pt["z"], y).mean()) + 0.5 * self.l2 * float(u @ u)
        if self.closure == "gauss":  # E ℓ over the margins' spread, and ½ l2 tr C
            if isinstance(o["dF"], tuple):
                z0, q0 = o["dF"]
                o["dF"] = float((self._gauss_loss(z0, q0, y) - self._loss(z0, y)).mean())
            return F + o["dF"] + 0.5 * self.l2 * float(np.trace(C))
        return F + 0.5 * float(np.vdot(o["Hb"], C))

    def _loss(self, z: np.ndarray, y: np.ndarray | None) -> np.ndarray:
        if self.kind == "logistic":
            return _log1p_exp_neg(z)
        return 0.5 * (z - y) ** 2


# ---------------------------------------------------------------------------------------------
# a one-dimensional piecewise quadratic (not twice differentiable at its minimum)
# ---------------------------------------------------------------------------------------------
class PiecewiseLaw(_Law):
    """f(x) = μx² (x ≥ 0), ½μx² (x < 0) with additive N(0, σ²) gradient noise per draw
    (:class:`~empirics.problems.PiecewiseQuadratic1D`). No Hessian exists at x* = 0, so no
    model linearised at x* applies; the Gaussian closure does: for x ~ N(m, v), with
    r = m/√v, Φ and φ the standard normal cdf and density,

        E f'(x)  = μ(m + mΦ(r) + √v φ(r)),   E f''(x) = μ(1 + Φ(r))   (Stein's lemma),
        E f(x)   = ½μ(m² + v)(1 + Φ(r)) + ½μ m √v φ(r),
        E f'(x)² = μ²[(m² + v)(1 + 3Φ(r)) + 3 m √v φ(r)],

    exact when the iterates are Gaussian (derived here). Approximate: a worker's iterate is
    skewed by the kink."""

    approximate = True
    windowed = False
    shared_jacobian = True
    identical_workers = True

    def __init__(self, m: int, mu: float, sigma: float, x0: float):
        self.m, self.d = int(m), 1
        self.mu_, self.sigma2 = float(mu), float(sigma) ** 2
        self.x0 = np.array([float(x0)])
        self.x_star = np.zeros(1)
        self.F_star = 0.0

    def assumptions(self) -> list[str]:
        return ["Gaussian closure of a non-C² objective: every worker's iterate taken "
                "Gaussian (its skew from the kink at x* is dropped); expectations of the "
                "piecewise-linear gradient exact under that assumption"]

    @staticmethod
    def _phi(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from scipy.special import ndtr

        return ndtr(r), np.exp(-0.5 * r * r) / math.sqrt(2 * math.pi)

    def _moments(self, m: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, ...]:
        sd = np.sqrt(np.maximum(v, 0.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(v > 0, m / np.where(v > 0, sd, 1.0), np.sign(m) * np.inf)
        r = np.nan_to_num(r, nan=0.0)
        Phi, phi = self._phi(r)
        phi = np.where(np.isfinite(r), phi, 0.0)
        mu = self.mu_
        g = mu * (m + m * Phi + sd * phi)
        h = mu * (1 + Phi)
        F = 0.5 * mu * (m * m + v) * (1 + Phi) + 0.5 * mu * m * sd * phi
        g2 = mu * mu * ((m * m + v) * (1 + 3 * Phi) + 3 * m * sd * phi)
        return g, h, F, g2

    def uniform_noise(self, rule: Any) -> bool:
        return rule.comp is None

    def separable(self, rule: Any) -> bool:
        return False

    def prepare(self, sep: bool, T: int | None = None) -> None:
        pass

    def moments(self, mu: np.ndarray, cov: Any, sep: bool, b: int, k: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        v = cov()[:, 0, 0, 0]  # (m or 1,)
        vv = np.broadcast_to(v, (mu.shape[0],))
        g, h, _, _ = self._moments(mu[:, 0], vv)
        H = np.array([[[[float(h.mean())]]]])  # the workers' average Jacobian
        return g[:, None], H, np.full((1, 1, 1, 1), self.sigma2 / b)

    def observe(self, u: np.ndarray, Cu: np.ndarray, k: int, need_F: bool = True
                ) -> tuple[float, float]:
        _, _, F, g2 = self._moments(u, np.array([Cu[0, 0, 0]]))
        return float(F[0]), float(g2[0])


# ---------------------------------------------------------------------------------------------
# any smooth finite sum in torch: the local model by automatic differentiation
# ---------------------------------------------------------------------------------------------
#: the largest number of parameters the autograd local model takes (it forms d × d Hessians
#: and propagates d × d covariance blocks)
MAX_DIM = 512
#: seconds a prediction with the autograd local model may take, projected from its second
#: re-expansion (the first with a spread; :meth:`AutogradLaw._refresh`); beyond it the
#: prediction is refused with the estimate (``coopsgd run`` would otherwise wait minutes for a
#: predicted column). None: no cap
AUTOGRAD_BUDGET_S: float | None = 300.0

PerSampleLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class AutogradLaw(GLMLaw):
    """The second-order local model of a smooth finite sum F_i(θ) = mean_{j ∈ S_i} f_j(θ),
    θ ∈ ℝ^d flat, sampled uniformly with replacement from worker i's rows, by automatic
    differentiation: what :class:`GLMLaw` computes from margins, computed from any per-sample
    loss (the MLP, your own smooth model). At a re-expansion, for worker i's data set with mean
    μ and window-averaged covariance C (the same schedule, anchors and windows as GLMLaw):

        H_i   = ∇²F_i(μ)                                 (torch.func.hessian, exact)
        Σ_i·b = mean_j g_j g_jᵀ − ḡ ḡᵀ,  g_j = ∇f_j(μ)    (per-sample gradients, exact)
        E g_i = ∇F_i(μ) + ½ ∇³F_i(μ)[C]

    and for the averaged model E F(u) = F(ū) + ½ tr(∇²F(ū) C_u), E‖∇F(u)‖² = ‖∇F(ū) +
    ½∇³F(ū)[C_u]‖² + tr(H C_u H): the module docstring's second-order closure with the O(C)
    terms of the Hessian and the noise dropped (they need per-sample Hessians); the drift, the
    term that carries τ on i.i.d. data, is kept. ∇³F[C] = ∇_θ tr(∇²F(θ) C) comes from nested
    forward-mode directional derivatives, then ``grad``, along directions w with Σ w wᵀ = C:
    C's ``rank`` leading eigen-directions exactly and, when d > 2·rank, ``rank`` Rademacher
    probes of the rest (Hutch++-style, unbiased; seeded). A re-expansion costs d
    Hessian-vector products and up to 2·rank third-order derivatives over all rows, so the
    model takes d ≤ :data:`MAX_DIM` parameters.

    loss: ``loss(θ, X, Y)`` the mean loss over the rows X, Y (a batch), θ flat (d,) float64
    on the CPU (where the law computes), differentiable three times by torch.func. sets: the
    distinct data sets [(X_j, Y_j)]; data_of[i]: worker i's set. F is the average of the
    workers' F_i. x_star: a reference minimiser for the distance columns (NaN where none is
    known). rank: directions of the third-derivative contraction. chunk: rows per vectorised
    pass."""

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
        self.seed = int(seed)
        self._rng = np.random.default_rng(self.seed)
        self.kind = "autograd"
        self.l2 = 0.0  # any ridge term is part of the loss
        self.exact = False
        self.approximate = True
        self.windowed = True
        self.rotatable = True
        self.affine_mean = True
        self.closure = "taylor"
        self._init_schedule(refresh, TOL_FORCE)
        self._share(len(self.sets) == 1)
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
        self._hess: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._stack = False  # GLMLaw's stacked margins: not used here
        #: the smallest eigenvalue of the Hessian met at a re-expansion, and the last one
        self.lambda_min = self.lambda_last = math.inf

    def prepare(self, sep: bool, T: int | None = None) -> None:
        """:meth:`GLMLaw.prepare`, the probes' generator from ``seed`` and no eigenvalue met
        yet: the same law propagated twice gives the same numbers."""
        super().prepare(sep, T)
        self._rng = np.random.default_rng(self.seed)
        self.lambda_min = self.lambda_last = math.inf

    def assumptions(self) -> list[str]:
        out = [f"local model of a smooth finite sum by automatic differentiation, re-expanded "
               f"at the predicted means (every step at first, then at intervals growing as "
               f"k/{REEXPAND_GROWTH} up to {self.refresh} steps, skipped while the per-sample "
               f"losses moved < {self.tol_margin} to first order (root mean square) and the "
               f"covariance < {self.tol_cov:.0%}, and forced once they moved > "
               f"{self.tol_force}): exact Hessian and per-sample gradient "
               f"covariance at the mean, drift corrected by ½∇³F[C] (second-order closure; "
               f"the O(C) terms of the Hessian and the noise dropped), ∇³F[C] along C's "
               f"{self.rank} leading eigen-directions"
               + (f" and {self.rank} Rademacher probes of the rest" if self.d > 2 * self.rank
                  else " (all of them: exact)")
               + "; mean gradients to first order between re-expansions"]
        if self.lambda_min < 0:
            out.append(f"non-convex: the Hessian at the predicted mean had a negative "
                       f"eigenvalue (smallest {self.lambda_min:.3g}, {self.lambda_last:.3g} at "
                       f"the last re-expansion); along it the linearised spread grows as "
                       f"(1 + η|λ|)^(2k), which SGD's escape need not follow, so the "
                       f"prediction drifts from the runs as K grows while that persists")
        if not self.shared_data:
            out.append(_SHARDS_NOTE)
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
        if hit is not None and _same_point(hit[0], mu):
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
        per = torch.func.vmap(torch.func.grad(self._sample_loss), in_dims=(None, 0, 0))
        S = torch.zeros(self.d, self.d, dtype=torch.float64)
        g = torch.zeros(self.d, dtype=torch.float64)
        for X, Y, w in self._rows(j):
            G = per(th, X, Y)
            S += (w / G.shape[0]) * (G.T @ G)
            g += w * G.mean(0)
        S, g = S.numpy(), g.numpy()
        Sig = S - np.outer(g, g)
        return 0.5 * (Sig + Sig.T), S

    def _sample_loss(self, t: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """f_j(t): the loss of one row (x, y) (what per-sample gradients differentiate)."""
        return self.loss_fn(t, x[None], y[None])

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
        m, d = self.m, self.d
        th = torch.as_tensor(mu, dtype=torch.float64)
        per = torch.func.vmap(torch.func.vmap(torch.func.grad(self._sample_loss),
                                              in_dims=(None, 0, 0)))
        hess = torch.func.vmap(torch.func.hessian(self.loss_fn))
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
    def _refresh(self, mu: np.ndarray, Cw: np.ndarray, shared: bool) -> None:
        """:meth:`GLMLaw._refresh`, then the smallest eigenvalue of the (workers' average)
        Hessian: a negative one marks a non-convex region, where the linearised spread along
        it grows as (1 + η|λ|)^{2k} and SGD's need not (reported in :meth:`assumptions`)."""
        second = self.n_refresh == 1  # the first with a spread (the drift's derivatives)
        t0 = time.perf_counter()
        super()._refresh(mu, Cw, shared)
        if second and self.horizon and AUTOGRAD_BUDGET_S is not None:
            n = self.scheduled_reexpansions(self.horizon)
            est = 2 * n * (time.perf_counter() - t0)  # the workers' and the averaged model's
            if est > AUTOGRAD_BUDGET_S:
                raise out_of_regime(
                    f"the autograd local model would take ≈ {est:.0f} s (up to {n} "
                    f"re-expansions of the workers' and the averaged model, "
                    f"{time.perf_counter() - t0:.2g} s each at d = {self.d}), over the "
                    f"{AUTOGRAD_BUDGET_S:g} s budget (empirics.laws.AUTOGRAD_BUDGET_S; None "
                    f"lifts it)")
        lam = float(np.linalg.eigvalsh(self._cache["H"][0, 0])[0])
        self.lambda_min = min(self.lambda_min, lam)
        self.lambda_last = lam

    def _point(self, j: int, mu: np.ndarray) -> dict[str, Any]:
        """F_j and ∇F_j at mu (j = −1: F), cached for the last point per data set."""
        hit = self._points.get(j)
        if hit is not None and _same_point(hit["mu"], mu):
            return hit
        F, g = self._value_grad(j, mu)
        out = {"F": F, "g": g, "mu": mu.copy()}
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


# ---------------------------------------------------------------------------------------------
# the law of a problem
# ---------------------------------------------------------------------------------------------
def law_for(problem: Any, *, refresh: int | None = None, closure: str = "gauss") -> _Law:
    """The gradient law of ``problem`` (exact for quadratics and least squares, the local
    second-order model for logistic regression); :class:`OutOfRegime` naming why otherwise."""
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
                      refresh=refresh, closure=closure)
    from empirics.problems import MLPClassifier, ModuleProblem, PiecewiseQuadratic1D

    if isinstance(problem, PiecewiseQuadratic1D):
        return PiecewiseLaw(problem.m, problem.mu, problem.sigma, problem.x0)
    if isinstance(problem, (MLPClassifier, ModuleProblem)):
        return _autograd_law(problem, refresh)
    raise out_of_regime(
        f"no gradient law for {type(problem).__name__}: the predictor knows quadratics "
        f"(Quadratic, NoisyQuadratic), least squares (exact), logistic regression, the MLP "
        f"and smooth ModuleProblems (local models); a problem needs per-worker gradients, "
        f"Hessians and noise covariances at a point (docs/predict.md, 'Adding a problem')")


#: modules whose function is not three times differentiable, or not a per-sample function
#: (the autograd local model refuses them, naming the module)
_NOT_SMOOTH = ("ReLU", "ReLU6", "LeakyReLU", "PReLU", "RReLU", "Hardtanh", "Hardswish",
               "Hardsigmoid", "Hardshrink", "Softshrink", "Threshold", "MaxPool1d", "MaxPool2d",
               "MaxPool3d", "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "AdaptiveMaxPool3d",
               "ELU", "CELU")


def _autograd_law(problem: Any, refresh: int | None) -> _Law:
    """:class:`AutogradLaw` of an MLP or a ModuleProblem, or
    :class:`OutOfRegime` naming what it lacks (too many parameters, a non-smooth module,
    batch statistics, dropout, full-shard steps)."""

    from empirics.problems import ModuleProblem
    from empirics.problems.base import _flat, _unflatten

    name = type(problem).__name__
    d = int(problem.dim)
    if d > MAX_DIM:
        raise out_of_regime(
            f"{name} has d = {d:,} parameters: the autograd local model forms d × d Hessians "
            f"and covariance blocks, up to d = {MAX_DIM} (empirics.laws.MAX_DIM)")
    if isinstance(problem, ModuleProblem):
        kinds = {type(mod).__name__ for mod in problem.module.modules()}
        bad = sorted(kinds & set(_NOT_SMOOTH))
        if bad:
            raise out_of_regime(
                f"{name}: the model contains {', '.join(bad)}, not three times "
                f"differentiable: the local model needs a smooth loss (tanh, sigmoid, GELU, "
                f"softplus, average pooling …)")
        drop = sorted(k for k in kinds if "Dropout" in k)
        if drop or problem.buffer_names:
            why = (f"{', '.join(drop)} (a random loss)" if drop else
                   f"buffers {', '.join(problem.buffer_names)} (batch statistics)")
            raise out_of_regime(f"{name}: the model has {why}, so a mini-batch loss is not a "
                                f"mean of per-sample losses")
        if problem._frozen:
            raise out_of_regime(f"{name}: frozen parameters ({', '.join(problem._frozen)}): "
                                f"the local model differentiates every parameter in float64")
        if problem.sampling == "full_shard":
            raise out_of_regime(f"{name}: sampling='full_shard' takes whole shards in order; "
                                f"the local model samples rows with replacement")
        X, Y = problem._x.to(torch.float64), problem._y
        sets = [(X[a:a + n], Y[a:a + n]) for a, n, _ in problem._ranges]
        data_of = [0] * problem.m if problem.shared else list(range(problem.m))
    else:  # MLPClassifier
        X, Y = problem.data("cpu", torch.float64)
        if problem.shared:
            sets, data_of = [(X, Y)], [0] * problem.m
        else:
            npw = problem.n_per
            sets = [(X[i * npw:(i + 1) * npw], Y[i * npw:(i + 1) * npw])
                    for i in range(problem.m)]
            data_of = list(range(problem.m))
    x0 = problem.init_params("cpu", torch.float64)
    shapes = {k: tuple(v.shape) for k, v in x0.items()}

    def loss(theta: torch.Tensor, Xb: torch.Tensor, Yb: torch.Tensor) -> torch.Tensor:
        return problem.loss(_unflatten(theta, shapes), (Xb, Yb))

    return AutogradLaw(loss, sets, data_of, _flat(x0).numpy().astype(float),
                       np.full(d, np.nan), problem.constants.F_star.value, refresh=refresh,
                       name=name, seed=int(getattr(problem, "seed", 0)))
