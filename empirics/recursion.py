"""Exact first and second moments of Cooperative SGD on quadratic problems.

:func:`exact_moments` is the exact case of the toolkit's one moment propagation,
:func:`empirics.moments.propagate` (derivation in its module docstring and in
``docs/predict.md``), packaged as :class:`Moments` for the problems whose gradient law is exact:

* :class:`~empirics.problems.NoisyQuadratic` — f(x, z) = Σ_i (a_i/2) x_i²(1 + z1_i) + xᵀz2 with
  z1 ~ N(0, c²I), z2 ~ N(0, σ²I) (Spiridonoff et al.'s §4.1 quadratic [quoted from
  the authors' notebook]); a batch of b draws averages f. F(x) = ½ xᵀAx, x* = 0, F* = 0; the
  gradient noise of a draw has covariance c² diag(a² ⊙ x ⊙ x) + σ² I, linear in E[x xᵀ];
* :class:`~empirics.problems.Quadratic` — per-worker Hessians, optima and additive noise;
* :class:`~empirics.problems.LeastSquares` — the sampling noise of uniformly drawn rows.

Every configuration whose local step keeps the second moments closed is covered: plain SGD,
heavy-ball and Nesterov momentum, random-k compression with or without error feedback, any
static mixing schedule (EASGD's auxiliary rows included). Engine convention
X_{k+1} = W_kᵀ(X_k − Δ_k) (:mod:`empirics.engine`), W_k the round's W after its last step.

For the noisy quadratic under plain SGD the original derivation (ours, exact) reads: coordinates
are independent, and worker row j takes x_j ← A_j x_j − η ξ_j with A_j = 1 − ηa(1 + z̄1_j),
ξ_j = z̄2_j, so E A = α := 1 − ηa, E A² = α² + η²a²c²/b, E ξ² = σ²/b; the mean μ and raw second
moment P obey μ_j ← αμ_j, P_jj ← (α² + η²a²c²/b) P_jj + η²σ²/b, P_jl ← α²P_jl (j ≠ l workers),
P_jl ← αP_jl (j worker, l auxiliary), and at mixing μ ← Wᵀμ, P ← WᵀPW — the separable structure
of :mod:`empirics.moments` propagates exactly this, per coordinate. The averaged model
u = (1/n) 1ᵀx has E u² = 1ᵀP1/n², so E F(u) − F* = Σ_i (a_i/2) E u_i², E‖∇F(u)‖² = Σ_i a_i² E u_i².
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from empirics.configs import Config

__all__ = ["Moments", "exact_moments"]


@dataclass
class Moments:
    """Exact expectations of a run on a quadratic problem.

    Arrays over the recorded steps k = 0, s, 2s, …, and T (the engine's record convention; the
    record at k describes the state before step k):

    ``steps`` (K,), ``suboptimality`` E F(u_k) − F*, ``grad_norm2`` E‖∇F(u_k)‖²,
    ``grad_norm2_running`` (1/k) Σ_{j<k} E‖∇F(u_j)‖² (NaN at k = 0), ``dist2_u`` E‖u_k − x*‖²,
    ``dist2_workers`` (1/m) Σ_{j<m} E‖x_j − x*‖², ``consensus`` E Σ_{i<n} ‖x_i − u_k‖² over all
    n rows (the engine's ``consensus`` column), ``memory_norm2_workers`` (1/m) Σ_i E‖e_i‖²
    (error-feedback memory; 0 without), ``mean_u`` (K, d) E u_k.
    ``P_final`` (d, n, n): E[x xᵀ] of each coordinate's row vector at T (coordinates of the
    law's basis: the eigenbasis of a shared Hessian when the propagation rotated to it);
    ``mean_final`` (d, n). ``rounds`` (K,): mixing steps (W ≠ I) taken before the record.
    ``structure``: how the moments were held (:func:`empirics.moments.propagate`).
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
    memory_norm2_workers: np.ndarray | None = None
    structure: str = ""

    def __repr__(self) -> str:
        return (f"Moments(records={len(self.steps)}, T={int(self.steps[-1])}, "
                f"E F(u_T) − F* = {self.suboptimality[-1]:.6g}, "
                f"E‖∇F(u_T)‖² = {self.grad_norm2[-1]:.6g})")


def _check_int(name: str, x: Any, lo: int) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < lo:
        raise ValueError(f"{name} must be an integer >= {lo} (got {x!r})")
    return int(x)


def exact_moments(problem: Any, config: Config, lr: Any, T: int, *, batch_size: int = 1,
                  record_every: int = 1, structure: str = "auto") -> Moments:
    """Exact E F(u_k) − F*, E‖∇F(u_k)‖², … of ``config`` on a quadratic ``problem``.

    problem: :class:`~empirics.problems.NoisyQuadratic`, :class:`~empirics.problems.Quadratic`
    or :class:`~empirics.problems.LeastSquares` (its m must equal config.m). config: any
    non-adaptive :class:`~empirics.configs.Config` whose compressor (if any) has a second
    moment linear in its input's (random-k, the identity). lr: a number or an engine schedule
    (:func:`empirics.engine.as_lr`). T: steps. batch_size: draws averaged per worker and step.
    record_every: stride s of the records. structure: see :func:`empirics.moments.propagate`.
    No sampling: exact in float64.
    """
    from empirics.laws import law_for
    from empirics.moments import node_covariance_x, propagate
    from empirics.problems import LeastSquares, NoisyQuadratic
    from empirics.problems.quadratic import Quadratic

    if not isinstance(problem, (NoisyQuadratic, Quadratic, LeastSquares)):
        raise ValueError(f"problem must be an empirics.problems.NoisyQuadratic, Quadratic or "
                         f"LeastSquares (the recursion is exact only for gradients linear in x); "
                         f"got {type(problem).__name__}")
    if not isinstance(config, Config):
        raise ValueError(f"config must be an empirics.configs.Config (got "
                         f"{type(config).__name__})")
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
    run = propagate(law_for(problem), config, lr, T, batch_size=b, record_every=s_rec,
                    structure=structure)
    eng = run.state
    cov = node_covariance_x(eng)  # (B, n, D, n, D)
    mean = eng.M[:, 0, :]  # (n, d) in the law's basis
    if eng.sep:
        P = cov[:, :, 0, :, 0]
    else:
        P = np.stack([cov[0][:, a, :, a] for a in range(eng.d)])
    P = P + mean.T[:, :, None] * mean.T[:, None, :]
    c = run.columns
    return Moments(
        steps=run.steps, suboptimality=c["suboptimality"], grad_norm2=c["grad_norm2"],
        grad_norm2_running=c["grad_norm2_running"], dist2_u=c["dist2_u"],
        dist2_workers=c["dist2_workers"], consensus=c["consensus"], mean_u=run.mean_u,
        rounds=run.rounds, P_final=P, mean_final=mean.T.copy(),
        memory_norm2_workers=c["memory_norm2_workers"], structure=run.structure)
