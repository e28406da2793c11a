"""Exact first and second moments of plain (Cooperative) SGD on the noisy quadratic.

Problem: :class:`empirics.problems.NoisyQuadratic`, f(x, z) = Σ_i (a_i/2) x_i²(1 + z1_i) + xᵀz2
with z1 ~ N(0, c²I), z2 ~ N(0, σ²I) (Spiridonoff et al.'s §4.1 quadratic, digest §4.6 A
[quoted from the authors' notebook]); a batch of b draws averages f. F(x) = ½ xᵀAx, A = diag(a),
x* = 0, F* = 0.

Algorithm: the engine's convention X_{k+1} = W_kᵀ(X_k − Δ_k) (:mod:`empirics.engine`), rows
0..m−1 workers, rows m..n−1 auxiliary variables (no gradient), W_k the round's W after its last
step and I otherwise (:meth:`theory.schedules.Schedule.rounds`), Δ_k = η_k G_k (plain SGD).

Derivation (ours, exact; not from a paper): coordinates are independent, and the n row values
x ∈ ℝⁿ of coordinate i (curvature a) evolve linearly. Worker row j takes
x_j ← A_j x_j − η ξ_j with A_j = 1 − ηa(1 + z̄1_j), ξ_j = z̄2_j (means of b draws), so
E A = α := 1 − ηa, E A² = s := α² + η²a²c²/b, E ξ = 0, E ξ² = σ²/b, all independent of x and
across workers and steps. Hence the mean μ = E x and the raw second moment P = E[x xᵀ] obey

    local step:  μ_j ← α μ_j;  P_jj ← s P_jj + η²σ²/b;  P_jl ← α² P_jl (j ≠ l workers);
                 P_jl ← α P_jl (j worker, l auxiliary);  auxiliary rows unchanged;
    mixing:      μ ← Wᵀμ,  P ← Wᵀ P W.

Within a round (no mixing) every block of P is scaled by a common factor, so the recursion only
carries, per coordinate, the running products ∏α, the affine map of the diagonal (S, Q:
P_jj(t) = S_t P_jj(0) + Q_t) and the block sums of P at the round start; the n × n matrices are
formed once per round (O(d n³) per mixing, O(d) per step). The averaged model u = (1/n) 1ᵀx has
E u² = 1ᵀP1/n², so E F(u) − F* = Σ_i (a_i/2) E u_i², E‖∇F(u)‖² = Σ_i a_i² E u_i²,
E‖u − x*‖² = Σ_i E u_i².
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from empirics.configs import Config
from theory.stepsizes import as_lr

__all__ = ["Moments", "exact_moments"]


@dataclass
class Moments:
    """Exact expectations of a plain-SGD run on :class:`~empirics.problems.NoisyQuadratic`.

    Arrays over the recorded steps k = 0, s, 2s, …, and T (the engine's record convention; the
    record at k describes the state before step k):

    ``steps`` (K,), ``suboptimality`` E F(u_k) − F*, ``grad_norm2`` E‖∇F(u_k)‖²,
    ``grad_norm2_running`` (1/k) Σ_{j<k} E‖∇F(u_j)‖² (NaN at k = 0), ``dist2_u`` E‖u_k − x*‖²,
    ``dist2_workers`` (1/m) Σ_{j<m} E‖x_j − x*‖², ``consensus`` E Σ_{i<n} ‖x_i − u_k‖² over all
    n rows (the engine's ``consensus`` column), ``mean_u`` (K, d) E u_k.
    ``P_final`` (d, n, n): E[x xᵀ] of each coordinate's row vector at T; ``mean_final`` (d, n).
    ``rounds`` (K,): mixing steps (W ≠ I) taken before the record.
    """

    steps: np.ndarray
    suboptimality: np.ndarray
    grad_norm2: np.ndarray
    grad_norm2_running: np.ndarray
    dist2_u: np.ndarray
    dist2_workers: np.ndarray
    consensus: np.ndarray
    mean_u: np.ndarray
    rounds: np.ndarray
    P_final: np.ndarray
    mean_final: np.ndarray

    def __repr__(self) -> str:
        return (f"Moments(records={len(self.steps)}, T={int(self.steps[-1])}, "
                f"E F(u_T) − F* = {self.suboptimality[-1]:.6g}, "
                f"E‖∇F(u_T)‖² = {self.grad_norm2[-1]:.6g})")


def _check_int(name: str, x: Any, lo: int) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < lo:
        raise ValueError(f"{name} must be an integer >= {lo} (got {x!r})")
    return int(x)


def _matrix(W: Any, cache: dict[int, tuple[Any, np.ndarray, bool]]) -> tuple[np.ndarray, bool]:
    """W as a float64 array and whether it is exact averaging J (cached per W object)."""
    hit = cache.get(id(W))
    if hit is None or hit[0] is not W:
        Wm = np.asarray(W.matrix, dtype=np.float64)
        hit = cache[id(W)] = (W, Wm, bool(np.all(Wm == Wm.flat[0])))
    return hit[1], hit[2]


def exact_moments(problem: Any, config: Config, lr: Any, T: int, *, batch_size: int = 1,
                  record_every: int = 1) -> Moments:
    """Exact E F(u_k) − F*, E‖∇F(u_k)‖², … of plain SGD with ``config`` on ``problem``.

    problem: a :class:`~empirics.problems.NoisyQuadratic` (its m must equal config.m).
    config: any non-adaptive :class:`~empirics.configs.Config` with momentum 0 and no
    compressor. lr: a number or an engine schedule (:func:`empirics.engine.as_lr`). T: steps.
    batch_size: draws averaged per worker and step. record_every: stride s of the records.
    The recursion is derived in the module docstring (exact, float64; no sampling).
    """
    from empirics.problems import NoisyQuadratic

    if not isinstance(problem, NoisyQuadratic):
        raise ValueError(f"problem must be an empirics.problems.NoisyQuadratic (the recursion is "
                         f"exact only for its linear gradient); got {type(problem).__name__}")
    if not isinstance(config, Config):
        raise ValueError(f"config must be an empirics.configs.Config (got "
                         f"{type(config).__name__})")
    if config.momentum != 0:
        raise ValueError(f"config.momentum must be 0: the recursion covers plain SGD only "
                         f"(got momentum = {config.momentum})")
    if config.compressor is not None:
        raise ValueError("config.compressor must be None: the recursion covers uncompressed SGD "
                         f"only (got {getattr(config.compressor, 'name', config.compressor)!r})")
    if getattr(config.schedule, "adaptive", False):
        raise ValueError(f"config.schedule must not be adaptive: {config.schedule.name!r} picks "
                         f"its rounds from the observed loss, so its moments do not follow a "
                         f"fixed linear recursion")
    if problem.m != config.m:
        raise ValueError(f"problem.m must equal config.m (the schedule has m = {config.m} workers"
                         f" + v = {config.v} auxiliary rows; problem.m = {problem.m})")
    T = _check_int("T", T, 1)
    b = _check_int("batch_size", batch_size, 1)
    s_rec = _check_int("record_every", record_every, 1)
    sched = as_lr(lr)

    a = np.asarray(problem.a, dtype=np.float64)  # (d,)
    d, m, n = a.size, config.m, config.n
    c2, sig2 = float(problem.c) ** 2, float(problem.sigma) ** 2
    x0 = np.asarray(problem.x0, dtype=np.float64)
    mu = np.repeat(x0[:, None], n, axis=1)  # (d, n): E of each row, per coordinate
    P = x0[:, None, None] ** 2 * np.ones((d, n, n))  # E[x xᵀ] per coordinate
    w = np.zeros(n, dtype=bool)
    w[:m] = True

    rec_steps: list[int] = []
    rec_u2: list[np.ndarray] = []
    rec_mu: list[np.ndarray] = []
    rec_dw: list[float] = []
    rec_cons: list[float] = []
    rec_run: list[float] = []
    rec_rounds: list[int] = []
    gn_sum = 0.0
    n_rounds = 0
    cache: dict[int, tuple[Any, np.ndarray, bool]] = {}

    for rnd in config.schedule.rounds(T):
        # block sums at the round start (per coordinate)
        diag = np.einsum("ijj->ij", P)[:, :m].sum(1)        # Σ_j P_jj, workers
        ww = P[:, :m, :m].sum((1, 2)) - diag                 # Σ_{j≠l} P_jl, workers
        wa = 2.0 * P[:, :m, m:].sum((1, 2))                  # worker–aux, both triangles
        aa = P[:, m:, m:].sum((1, 2))                        # aux–aux
        aux_diag = np.einsum("ijj->ij", P)[:, m:].sum(1)     # Σ_l P_ll, aux rows
        mu_w, mu_a = mu[:, :m].sum(1), mu[:, m:].sum(1)
        prod = np.ones(d)  # ∏ α over the round's steps so far
        S = np.ones(d)     # diagonal: P_jj(t) = S P_jj(0) + Q
        Q = np.zeros(d)
        for k in range(rnd.start, rnd.end):
            u2 = (prod**2 * ww + S * diag + m * Q + prod * wa + aa) / n**2  # E u_i², (d,)
            g2 = float(a**2 @ u2)
            if k % s_rec == 0:
                rec_steps.append(k)
                rec_u2.append(u2)
                rec_mu.append((prod * mu_w + mu_a) / n)
                rec_dw.append(float((S * diag + m * Q).sum()) / m)
                rec_cons.append(float((S * diag + m * Q + aux_diag - n * u2).sum()))
                rec_run.append(gn_sum / k if k else math.nan)
                rec_rounds.append(n_rounds)
            gn_sum += g2
            eta = sched(k)
            if not (isinstance(eta, (int, float)) and math.isfinite(eta) and eta > 0):
                raise ValueError(f"lr must be finite and > 0 at every step; lr({k}) = {eta!r}")
            alpha = 1.0 - eta * a
            s2 = alpha**2 + eta**2 * a**2 * c2 / b
            Q = s2 * Q + eta**2 * sig2 / b
            S = s2 * S
            prod = alpha * prod
        # the n × n matrices at the round's end, then mixing
        f = np.where(w, prod[:, None], 1.0)  # (d, n): α-product on worker rows, 1 on aux rows
        diag0 = np.einsum("ijj->ij", P).copy()
        P = P * f[:, :, None] * f[:, None, :]
        idx = np.arange(m)
        P[:, idx, idx] = S[:, None] * diag0[:, :m] + Q[:, None]
        mu = mu * f
        if rnd.W is not None and not rnd.W.is_identity:
            Wm, exact_avg = _matrix(rnd.W, cache)
            if exact_avg:  # W = J: every entry becomes the mean of P (O(d n²))
                P = np.broadcast_to((P.sum((1, 2)) / n**2)[:, None, None], P.shape).copy()
                mu = np.broadcast_to(mu.mean(1, keepdims=True), mu.shape).copy()
            else:
                P = Wm.T @ P @ Wm  # (d, n, n), batched over coordinates
                P = 0.5 * (P + P.transpose(0, 2, 1))
                mu = mu @ Wm
            n_rounds += 1

    # final record at T (the state after the last round's mixing)
    u2 = P.sum((1, 2)) / n**2
    rec_steps.append(T)
    rec_u2.append(u2)
    rec_mu.append(mu.mean(1))
    rec_dw.append(float(np.einsum("ijj->ij", P)[:, :m].sum()) / m)
    rec_cons.append(float(np.einsum("ijj->", P) - n * u2.sum()))
    rec_run.append(gn_sum / T)
    rec_rounds.append(n_rounds)

    U2 = np.asarray(rec_u2)  # (K, d)
    return Moments(
        steps=np.asarray(rec_steps, dtype=np.int64),
        suboptimality=U2 @ (0.5 * a),
        grad_norm2=U2 @ a**2,
        grad_norm2_running=np.asarray(rec_run),
        dist2_u=U2.sum(1),
        dist2_workers=np.asarray(rec_dw),
        consensus=np.asarray(rec_cons),
        mean_u=np.asarray(rec_mu),
        rounds=np.asarray(rec_rounds, dtype=np.int64),
        P_final=P,
        mean_final=mu,
    )
