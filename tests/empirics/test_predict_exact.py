"""The predictor is exact on quadratic laws: :func:`empirics.moments.propagate` (modal, dense,
separable structures) against an independent implementation written here.

The reference propagates the *raw* second moment P = E[z zᵀ] of the whole stacked state z (n
model rows, m momentum rows, m memory rows, each of dimension d) with dense Kronecker-built
matrices — one (R·d) × (R·d) matrix per step, no structure — and evaluates the compressor's
second-moment law by enumerating every k-subset, and least squares' sampling noise by summing
over the rows. Everything it shares with the code under test is the problem data.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from empirics.compressors import RandomK
from empirics.configs import (
    Config,
    configuration,
    decentralized_periodic,
    easgd,
    hierarchical,
    mdsgd,
    one_shot,
    pasgd,
    qsgd,
    spiridonoff_sgd,
)
from empirics.engine import InverseTime
from empirics.laws import law_for
from empirics.moments import compression_law, propagate
from empirics.problems import LeastSquares, NoisyQuadratic
from empirics.problems.quadratic import Quadratic
from theory.mixing import MixingMatrix, complete, ring, torus
from theory.schedules import FromCallable, Intervals, Periodic

RTOL = 1e-10


# ---------------------------------------------------------------------------------------------
# the reference: raw moments of the full stacked state, dense
# ---------------------------------------------------------------------------------------------
def enumerated_law(k: int, d: int, unbiased: bool) -> tuple[float, float, float]:
    """(q, r_diag, r_off) of random-k by enumerating the k-subsets (d small)."""
    s = d / k if unbiased else 1.0
    subs = list(itertools.combinations(range(d), k))
    D = np.zeros((len(subs), d))
    for i, S in enumerate(subs):
        D[i, list(S)] = s
    q = D[:, 0].mean()
    r_diag = (D[:, 0] ** 2).mean()
    r_off = (D[:, 0] * D[:, 1]).mean() if d > 1 else 0.0
    return float(q), float(r_diag), float(r_off)


class Reference:
    """Raw moments (mean μ, P = E zzᵀ) of the stacked state under the engine's step."""

    def __init__(self, problem, cfg: Config, b: int):
        self.p, self.cfg, self.b = problem, cfg, b
        self.m, self.n = cfg.m, cfg.n
        self.d = d = _dim(problem)
        self.mom = cfg.momentum > 0
        self.comp = cfg.compressor
        self.ef = self.comp is not None and cfg.error_feedback
        self.R = self.n + (self.m if self.mom else 0) + (self.m if self.ef else 0)
        self.N = self.R * d
        mu = np.zeros(self.N)
        x0 = _x0(problem)
        for r in range(self.n):
            mu[self._rows(r)] = x0
        self.mu = mu
        self.P = np.outer(mu, mu)
        if self.comp is not None:
            self.q, self.rd, self.ro = enumerated_law(self.comp.k, d, self.comp.unbiased)

    def _rows(self, r: int) -> slice:
        return slice(r * self.d, (r + 1) * self.d)

    def x(self, i: int) -> int:
        return i

    def bm(self, i: int) -> int:
        return self.n + i

    def e(self, i: int) -> int:
        return self.n + (self.m if self.mom else 0) + i

    def sel(self, r: int) -> np.ndarray:
        E = np.zeros((self.d, self.N))
        E[:, self._rows(r)] = np.eye(self.d)
        return E

    def step(self, eta: float) -> None:
        d, N, m = self.d, self.N, self.m
        beta, nest = self.cfg.momentum, self.cfg.nesterov
        kg, kb = ((1.0, 0.0) if not self.mom else (1 + beta, beta**2) if nest else (1.0, beta))
        A = np.eye(N)
        a = np.zeros(N)
        Bs = []  # noise injections: (matrix N × d, covariance d × d)
        for i in range(m):
            H, c = _grad_law(self.p, i)  # E g = H x + c
            Sx = self.sel(self.x(i))
            Pxx = Sx @ self.P @ Sx.T
            mux = Sx @ self.mu
            Se = _noise(self.p, i, mux, Pxx) / self.b
            G = H @ Sx  # gradient's linear part on z
            # p = kg g + kb b (before the buffer update)
            Pz = kg * G + (kb * self.sel(self.bm(i)) if self.mom else 0.0)
            pc = kg * c
            rows_new: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
            if self.mom:
                Sb = self.sel(self.bm(i))
                rows_new[self.bm(i)] = (beta * Sb + G, c, np.eye(d), np.zeros((d, d)))
            if self.comp is None:
                rows_new[self.x(i)] = (Sx - eta * Pz, -eta * pc, -eta * kg * np.eye(d),
                                       np.zeros((d, d)))
                Snu = np.zeros((d, d))
            else:
                U = eta * Pz + (self.sel(self.e(i)) if self.ef else 0.0)
                ul = eta * pc
                Euu = U @ self.P @ U.T + np.outer(U @ self.mu, ul) + np.outer(ul, U @ self.mu) \
                    + np.outer(ul, ul) + (eta * kg) ** 2 * Se
                Snu = (self.ro - self.q**2) * Euu + (self.rd - self.ro) * np.diag(np.diag(Euu))
                rows_new[self.x(i)] = (Sx - self.q * U, -self.q * ul,
                                       -self.q * eta * kg * np.eye(d), -np.eye(d))
                if self.ef:
                    rows_new[self.e(i)] = ((1 - self.q) * U, (1 - self.q) * ul,
                                           (1 - self.q) * eta * kg * np.eye(d), -np.eye(d))
            Beps = np.zeros((N, d))
            Bnu = np.zeros((N, d))
            for r, (Ar, ar, be, bn) in rows_new.items():
                A[self._rows(r)] = Ar
                a[self._rows(r)] = ar
                Beps[self._rows(r)] = be
                Bnu[self._rows(r)] = bn
            Bs += [(Beps, Se), (Bnu, Snu)]
        mu = A @ self.mu + a
        P = A @ self.P @ A.T + np.outer(A @ self.mu, a) + np.outer(a, A @ self.mu) + np.outer(a, a)
        for B, S in Bs:
            P = P + B @ S @ B.T
        self.mu, self.P = mu, 0.5 * (P + P.T)

    def mix(self, W: np.ndarray) -> None:
        N, d = self.N, self.d
        Mx = np.eye(N)
        blk = np.kron(W.T, np.eye(d))
        Mx[: self.n * d, : self.n * d] = blk
        self.mu = Mx @ self.mu
        self.P = Mx @ self.P @ Mx.T

    def observe(self) -> dict[str, float]:
        d, n = self.d, self.n
        Eu = np.zeros((d, self.N))
        for r in range(n):
            Eu[:, self._rows(r)] = np.eye(d) / n
        mu_u = Eu @ self.mu
        Puu = Eu @ self.P @ Eu.T
        Hb, hb, cb, Fs = _global(self.p)
        F = 0.5 * np.sum(Hb * Puu) - hb @ mu_u + cb - Fs
        g2 = np.sum((Hb @ Hb) * Puu) - 2 * hb @ Hb @ mu_u + hb @ hb
        tr = sum(np.trace(self.sel(r) @ self.P @ self.sel(r).T) for r in range(n))
        cons = tr - n * np.trace(Puu)
        mem = 0.0
        if self.ef:
            mem = sum(np.trace(self.sel(self.e(i)) @ self.P @ self.sel(self.e(i)).T)
                      for i in range(self.m)) / self.m
        return {"suboptimality": F, "grad_norm2": g2, "consensus": cons,
                "memory_norm2_workers": mem}


def _dim(p) -> int:
    return p.d if hasattr(p, "d") else p.dim


def _x0(p) -> np.ndarray:
    if isinstance(p, LeastSquares):
        return np.zeros(p.d)
    return np.asarray(p.x0, float)


def _ls_data(p: LeastSquares, i: int) -> tuple[np.ndarray, np.ndarray]:
    X, y = p.data("cpu")
    X, y = X.numpy(), y.numpy()
    if p.shared:
        return X, y
    s = slice(i * p.n_per, (i + 1) * p.n_per)
    return X[s], y[s]


def _grad_law(p, i: int) -> tuple[np.ndarray, np.ndarray]:
    """E[g | x] = H x + c for worker i."""
    if isinstance(p, Quadratic):
        return p.H[i], -p.H[i] @ p.x_stars[i]
    if isinstance(p, NoisyQuadratic):
        return np.diag(p.a), np.zeros(p.d)
    X, y = _ls_data(p, i)
    n = len(y)
    return X.T @ X / n + p.l2 * np.eye(p.d), -X.T @ y / n


def _noise(p, i: int, mux: np.ndarray, Pxx: np.ndarray) -> np.ndarray:
    """Per-draw covariance of g − E[g|x], averaged over x (raw moments of x given)."""
    if isinstance(p, Quadratic):
        return p.Sigma[i]
    if isinstance(p, NoisyQuadratic):
        return p.sigma**2 * np.eye(p.d) + p.c**2 * np.diag(p.a**2 * np.diag(Pxx))
    X, y = _ls_data(p, i)
    n = len(y)
    H, c = _grad_law(p, i)
    # E_j E_x[(A_j x − c_j)(A_j x − c_j)ᵀ] − E_x[(Hx + c)(Hx + c)ᵀ], A_j = x_jx_jᵀ + l2 I
    tot = np.zeros((p.d, p.d))
    for j in range(n):
        Aj = np.outer(X[j], X[j]) + p.l2 * np.eye(p.d)
        cj = X[j] * y[j]
        tot += Aj @ Pxx @ Aj - np.outer(Aj @ mux, cj) - np.outer(cj, Aj @ mux) + np.outer(cj, cj)
    tot /= n
    return tot - (H @ Pxx @ H + np.outer(H @ mux, c) + np.outer(c, H @ mux) + np.outer(c, c))


def _global(p) -> tuple[np.ndarray, np.ndarray, float, float]:
    """F(x) = ½xᵀH̄x − h̄ᵀx + c̄ and F*."""
    if isinstance(p, Quadratic):
        Hb = p.H.mean(0)
        hb = np.einsum("iab,ib->a", p.H, p.x_stars) / p.m
        cb = float(np.mean([0.5 * xs @ H @ xs for H, xs in zip(p.H, p.x_stars, strict=True)]))
        xs = np.linalg.solve(Hb, hb)
        return Hb, hb, cb, 0.5 * xs @ Hb @ xs - hb @ xs + cb
    if isinstance(p, NoisyQuadratic):
        return np.diag(p.a), np.zeros(p.d), 0.0, 0.0
    X, y = p.data("cpu")
    X, y = X.numpy(), y.numpy()
    n = len(y)
    Hb = X.T @ X / n + p.l2 * np.eye(p.d)
    hb = X.T @ y / n
    cb = 0.5 * y @ y / n
    xs = np.linalg.solve(Hb, hb)
    return Hb, hb, cb, 0.5 * xs @ Hb @ xs - hb @ xs + cb


def reference(problem, cfg: Config, lr, T: int, b: int = 1) -> dict[str, np.ndarray]:
    """Per step k = 0..T (state before step k; T after the last mixing)."""
    from theory.stepsizes import as_lr

    ref = Reference(problem, cfg, b)
    sched = as_lr(lr)
    out: dict[str, list[float]] = {}
    gsum = 0.0
    run: list[float] = []
    for rnd in cfg.schedule.rounds(T):
        for k in range(rnd.start, rnd.end):
            o = ref.observe()
            for key, v in o.items():
                out.setdefault(key, []).append(v)
            run.append(gsum / k if k else math.nan)
            gsum += o["grad_norm2"]
            ref.step(sched(k))
        if rnd.W is not None and not rnd.W.is_identity:
            ref.mix(np.asarray(rnd.W.matrix, float))
    o = ref.observe()
    for key, v in o.items():
        out.setdefault(key, []).append(v)
    run.append(gsum / T)
    res = {k: np.asarray(v) for k, v in out.items()}
    res["grad_norm2_running"] = np.asarray(run)
    return res


# ---------------------------------------------------------------------------------------------
# the cases
# ---------------------------------------------------------------------------------------------
def quad(m: int, *, hess: float = 0.0, d: int = 3, seed: int = 0) -> Quadratic:
    return Quadratic.random(d=d, m=m, condition_number=4.0, heterogeneity=1.0,
                            hessian_heterogeneity=hess, noise=0.6, x0=0.5, seed=seed)


def gossip_pairs(m: int, seed: int = 0):
    """A random pairwise gossip W_k (a different W each round; a function of k)."""

    def fn(k: int):
        i, j = np.random.default_rng([seed, k]).choice(m, 2, replace=False)
        W = np.eye(m)
        W[[i, i, j, j], [i, j, i, j]] = 0.5
        return MixingMatrix(W, rule="custom", name=f"pair {i}-{j}")

    return FromCallable(fn, m)


CASES = {
    "ring, heterogeneous optima": (lambda: quad(6), lambda: configuration(Periodic(ring(6), 2))),
    "torus, heterogeneous optima": (lambda: quad(4), lambda: configuration(
        Periodic(torus(2, 2), 1))),
    "complete (PASGD), per-worker Hessians": (lambda: quad(4, hess=0.5), lambda: pasgd(4, 3)),
    "ring, per-worker Hessians": (lambda: quad(5, hess=0.5), lambda: configuration(
        Periodic(ring(5), 1))),
    "EASGD": (lambda: quad(4), lambda: easgd(4, 3, 0.2)),
    "heavy-ball momentum, ring": (lambda: quad(4), lambda: configuration(
        Periodic(ring(4), 2), momentum=0.6)),
    "Nesterov momentum, PASGD": (lambda: quad(4), lambda: pasgd(4, 2, momentum=0.5,
                                                                  nesterov=True)),
    "random-k EF (biased)": (lambda: quad(4), lambda: mdsgd(4, RandomK(2))),
    "random-k EF (unbiased) + momentum, ring": (lambda: quad(4), lambda: mdsgd(
        4, RandomK(2, unbiased=True), 0.5, W=ring(4))),
    "random-k without EF (QSGD-style)": (lambda: quad(4), lambda: qsgd(
        4, compressor=RandomK(2, unbiased=True))),
    "hierarchical": (lambda: quad(4), lambda: hierarchical(4, 2, 2, 4)),
    "one-shot": (lambda: quad(4), lambda: one_shot(4)),
    "growing intervals": (lambda: quad(4), lambda: spiridonoff_sgd(4, 14, 3)),
    "intervals, decentralized": (lambda: quad(4), lambda: configuration(
        Intervals(ring(4), [1, 3, 2, 4]))),
    "random pairwise gossip W_k": (lambda: quad(5), lambda: configuration(gossip_pairs(5))),
    "noisy quadratic, multiplicative noise, EF + momentum": (
        lambda: NoisyQuadratic(d=3, m=4, c=0.8, sigma=0.4, x0=1.0),
        lambda: mdsgd(4, RandomK(2), 0.5)),
    "noisy quadratic, ring, decaying η": (
        lambda: NoisyQuadratic(d=3, m=5, c=0.5, sigma=0.4, x0=1.0),
        lambda: decentralized_periodic(ring(5), 2)),
    "least squares shards (sampling noise), ring": (
        lambda: LeastSquares(n_samples=24, d=3, m=4, heterogeneity=1.0, noise=0.3, seed=1),
        lambda: configuration(Periodic(ring(4), 2))),
    "least squares shared sampling, EF": (
        lambda: LeastSquares(n_samples=24, d=3, m=4, noise=0.3, seed=2, sampling="shared",
                             l2=0.05),
        lambda: mdsgd(4, RandomK(2))),
}

COLS = ("suboptimality", "grad_norm2", "grad_norm2_running", "consensus",
        "memory_norm2_workers")


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("structure", ["auto", "dense"])
def test_equals_independent_implementation(name: str, structure: str) -> None:
    make_p, make_cfg = CASES[name]
    p, cfg = make_p(), make_cfg()
    T, b = 14, 2
    lr = InverseTime(a=0.9, beta=4.0) if "decaying" in name else 0.15
    ref = reference(p, cfg, lr, T, b)
    run = propagate(law_for(p), cfg, lr, T, batch_size=b, structure=structure)
    assert run.steps.tolist() == list(range(T + 1))
    for col in COLS:
        got, want = run.columns[col], ref[col]
        scale = max(np.nanmax(np.abs(want)), np.nanmax(ref["grad_norm2"]))  # 0-columns too
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL * scale,
                                   err_msg=f"{name} [{structure}, {run.structure}]: {col}")


def test_structures_are_what_they_claim() -> None:
    """Shared Hessians → modal (PASGD: 2 blocks, ring(16): 9), per-worker Hessians → dense,
    EASGD → a (workers' mean, centre) block; the noisy quadratic is separable."""
    r = propagate(law_for(quad(4)), pasgd(4, 2), 0.1, 4)
    assert r.info["structure"] == "modal" and r.info["multiplicities"] == [1, 3]
    assert r.info["separable"]  # shared Hessian, no compressor: its eigenbasis
    r = propagate(law_for(quad(16, d=2)), configuration(Periodic(ring(16), 1)), 0.1, 4)
    assert len(r.info["blocks"]) == 9
    r = propagate(law_for(quad(4, hess=0.3)), pasgd(4, 2), 0.1, 4)
    assert r.info["structure"] == "dense" and not r.info["separable"]
    r = propagate(law_for(quad(4)), easgd(4, 2, 0.2), 0.1, 4)
    assert r.info["structure"] == "modal" and sorted(r.info["blocks"])[-1] == 2
    r = propagate(law_for(quad(4)), mdsgd(4, RandomK(2)), 0.1, 4)
    assert not r.info["separable"]  # random-k acts on the coordinates, not the eigenbasis


@pytest.mark.parametrize("k,d,unbiased", [(1, 4, False), (2, 5, True), (3, 3, True),
                                          (2, 6, False)])
def test_compression_law_by_enumeration(k: int, d: int, unbiased: bool) -> None:
    law = compression_law(RandomK(k, unbiased=unbiased), d)
    q, rd, ro = enumerated_law(k, d, unbiased)
    assert (law.q, law.r_diag, law.r_off) == pytest.approx((q, rd, ro), rel=1e-14)


def test_complete_graph_equals_pasgd_tau1() -> None:
    p = quad(4)
    a = propagate(law_for(p), configuration(Periodic(complete(4), 1)), 0.1, 10)
    b = propagate(law_for(p), pasgd(4, 1), 0.1, 10)
    np.testing.assert_allclose(a.columns["grad_norm2"], b.columns["grad_norm2"], rtol=1e-12)


def test_quadratic_law_structure_flags_are_exact():
    """The structure checks behind the exact predictor's fast paths: shared Hessian and noise
    (worker by worker, to 1e-13 relative), diagonal Hessians (one off-diagonal entry of one
    worker is enough to leave the diagonal path)."""
    from empirics.laws import QuadraticLaw, _eq

    rng = np.random.default_rng(0)
    m, d = 4, 5
    H = np.broadcast_to(np.diag(rng.uniform(1, 2, d)), (m, d, d)).copy()
    S = np.broadcast_to(np.eye(d), (m, d, d)).copy()
    h = rng.normal(size=(m, d))
    law = QuadraticLaw(H, h, np.zeros(m), S, np.zeros(d))
    assert law.diagonal and law.shared_jacobian and law._shared_noise
    assert not law.identical_workers  # the optima differ
    H2 = H.copy()
    H2[2, 0, 1] = H2[2, 1, 0] = 1e-3
    law2 = QuadraticLaw(H2, h, np.zeros(m), S, np.zeros(d))
    assert not law2.diagonal and not law2.shared_jacobian
    near = H.copy()
    near[3] *= 1 + 1e-15  # a rounding-level difference counts as equal
    assert _eq(near) and not _eq(H2)
