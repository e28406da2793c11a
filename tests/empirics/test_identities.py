"""Exact identities of Cooperative SGD on real engine trajectories (float64, machine precision).

* averaged model: u_{k+1} = u_k − η_eff·(1/m)Σ_i g_i whenever W1 = 1, η_eff = mη/(m+v)
  (digest §1.3);
* error feedback: ũ = u − (1/n)Σ_i e_i follows uncompressed (momentum) SGD exactly (digest §2.3);
* M-DSGD with the identity compressor equals DSGD; PASGD with τ = 1 equals synchronous SGD,
  checked against an independent hand-written mini-batch SGD loop.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from empirics.compressors import QSGD, Identity, RandomK, TopK
from empirics.configs import (
    decentralized_periodic,
    dpsgd,
    easgd,
    hierarchical,
    mdsgd,
    pasgd,
    synchronous,
)
from empirics.engine import InverseTime, simulate
from empirics.problems import LogisticRegression, seed_for
from theory.mixing import ring

M = 4
ATOL = 1e-13


@pytest.fixture(scope="module")
def logreg() -> LogisticRegression:
    return LogisticRegression(n_samples=240, d=6, m=M, seed=3, heterogeneity=0.5)


def _worker_grads(problem, X: np.ndarray, batches) -> np.ndarray:
    """g_i = ∇ loss(x_i; batch_i) by plain autograd, one worker at a time (independent path)."""
    out = []
    for i, b in enumerate(batches):
        w = torch.tensor(X[i], dtype=torch.float64, requires_grad=True)
        (g,) = torch.autograd.grad(problem.loss({"w": w}, b), [w])
        out.append(g.numpy())
    return np.stack(out)


def _batches(problem, seed: int, batch_size: int, T: int):
    """The batches every worker draws, regenerated independently of the problem's samplers:
    each step one ``randint`` of shape (m, b) from the run's generator seeded
    ``seed_for(seed, 0)``; row i indexes worker i's shard (rows i·n_per … (i+1)·n_per − 1)."""
    g = torch.Generator().manual_seed(seed_for(seed, 0))
    x, y = problem.data()
    out = []
    for _ in range(T):
        j = torch.randint(problem.n_per, (problem.m, batch_size), generator=g)
        rows = [i * problem.n_per + j[i] for i in range(problem.m)]
        out.append([(x[r], y[r]) for r in rows])
    return out


@pytest.mark.parametrize("make", [
    lambda: pasgd(M, 3),
    lambda: dpsgd(ring(M)),
    lambda: decentralized_periodic(ring(M), 2),
    lambda: easgd(M, 2, 0.2),
    lambda: easgd(M, 1, 2 / (M + 2)),  # α* > 1/m: negative centre weight, W still has W1 = 1
    lambda: hierarchical(M, 2, 2, 4),
], ids=["pasgd", "dpsgd", "decentralized", "easgd", "easgd-alpha*", "hierarchical"])
def test_averaged_model_follows_effective_sgd(logreg, make):
    cfg = make()
    T, eta = 12, InverseTime(2.0, 4.0)
    res, tr = simulate(logreg, cfg, lr=eta, T=T, batch_size=5, seed=11, trace=True,
                       grad_every=0, record_every=T)
    n = cfg.n
    assert tr.X.shape == (T + 1, n, logreg.dim)
    # the traced gradients are the real ones: recompute them independently
    batches = _batches(logreg, 11, 5, T)
    for k in (0, T // 2, T - 1):
        np.testing.assert_allclose(tr.grads[k], _worker_grads(logreg, tr.X[k], batches[k]),
                                   rtol=0, atol=1e-15)
    u = tr.u
    for k in range(T):
        eta_eff = M * eta(k) / n
        np.testing.assert_allclose(u[k + 1], u[k] - eta_eff * tr.grads[k].mean(0),
                                   rtol=0, atol=ATOL)
    assert tr.mixed.sum() == len(res.comm_steps) > 0
    # and the identity is not vacuous: the workers really disagree at some steps
    assert np.abs(tr.X - u[:, None, :]).max() > 1e-3


@pytest.mark.parametrize("compressor", [TopK(2), RandomK(3), QSGD(2)],
                         ids=["topk", "randk", "qsgd"])
@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.8, True)],
                         ids=["plain", "heavy-ball", "nesterov"])
def test_error_feedback_virtual_sequence_is_sgd(logreg, compressor, momentum, nesterov):
    T = 15
    cfg = mdsgd(M, compressor, momentum=momentum, nesterov=nesterov)
    res, tr = simulate(logreg, cfg, lr=0.7, T=T, batch_size=4, seed=5, trace=True,
                       grad_every=0, record_every=5)
    # the momentum direction, recomputed from the traced gradients
    b = np.zeros_like(tr.grads[0])
    dirs = []
    for k in range(T):
        b = momentum * b + tr.grads[k]
        dirs.append(tr.grads[k] + momentum * b if nesterov else b)
    np.testing.assert_allclose(np.stack(dirs), tr.direction, rtol=0, atol=1e-13)
    w_virtual = tr.u - tr.memory.mean(axis=1)
    for k in range(T):
        np.testing.assert_allclose(w_virtual[k + 1], w_virtual[k] - 0.7 * dirs[k].mean(0),
                                   rtol=0, atol=ATOL)
    # compression really happened: memory is non-zero, the update is sparse/quantised
    assert np.abs(tr.memory[1:]).max() > 1e-3
    # M-DSGD with W = J: all workers hold the same model after every step
    assert np.abs(tr.X[1:] - tr.X[1:, :1]).max() < 1e-15
    assert res.memory_norm2[-1] > 0


def test_error_feedback_identity_with_decentralized_mixing(logreg):
    """X_{k+1} = Wᵀ(X_k − C-updates), W1 = 1: the averaged virtual sequence is still SGD."""
    T = 12
    cfg = mdsgd(M, TopK(2), momentum=0.5, W=ring(M), tau=2)
    _, tr = simulate(logreg, cfg, lr=0.5, T=T, batch_size=4, seed=2, trace=True, grad_every=0)
    wv = tr.u - tr.memory.mean(axis=1)
    for k in range(T):
        np.testing.assert_allclose(wv[k + 1], wv[k] - 0.5 * tr.direction[k].mean(0),
                                   rtol=0, atol=ATOL)
    assert np.abs(tr.X[T] - tr.u[T]).max() > 1e-4  # the ring leaves disagreement


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_identity_compressor_mdsgd_equals_dsgd(logreg, momentum):
    kw = dict(lr=0.5, T=20, batch_size=4, seed=9, record_every=4)
    a = simulate(logreg, mdsgd(M, Identity(), momentum=momentum), **kw)
    b = simulate(logreg, synchronous(M, momentum=momentum), **kw)
    np.testing.assert_allclose(a.u_final, b.u_final, rtol=0, atol=1e-15)
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-14, atol=0)
    assert np.all(a.memory_norm2 == 0)
    # decentralized too
    c = simulate(logreg, mdsgd(M, Identity(), W=ring(M)), **kw)
    d = simulate(logreg, dpsgd(ring(M)), **kw)
    np.testing.assert_allclose(c.u_final, d.u_final, rtol=0, atol=1e-15)
    np.testing.assert_allclose(c.consensus, d.consensus, rtol=1e-12, atol=1e-30)


def test_pasgd_tau1_equals_synchronous_minibatch_sgd(logreg):
    T, eta, B = 15, 0.6, 5
    res, tr = simulate(logreg, pasgd(M, 1), lr=eta, T=T, batch_size=B, seed=4, trace=True,
                       grad_every=0)
    sync = simulate(logreg, synchronous(M), lr=eta, T=T, batch_size=B, seed=4, grad_every=0)
    # (the traced run takes the unfused gradient path: equal up to rounding)
    np.testing.assert_allclose(res.u_final, sync.u_final, rtol=0, atol=1e-15)
    # independent reference: one model, w ← w − η (1/m) Σ_i ∇loss(w; batch_i), plain autograd
    w = logreg.init_params()["w"].numpy().copy()
    for k, bs in enumerate(_batches(logreg, 4, B, T)):
        np.testing.assert_allclose(tr.X[k], np.broadcast_to(w, tr.X[k].shape), rtol=0,
                                   atol=1e-14)
        w = w - eta * _worker_grads(logreg, np.broadcast_to(w, (M, w.size)), bs).mean(0)
    np.testing.assert_allclose(res.u_final, w, rtol=0, atol=1e-14)
    assert np.all(res.consensus == 0)


def test_identities_on_the_vmap_path_with_multiplicative_noise():
    """NoisyQuadratic (digest §4.6 A noise model) has no hand-batched path: vmap(grad) is used."""
    from empirics.problems import NoisyQuadratic

    p = NoisyQuadratic(d=3, m=M, c=1.0, sigma=0.5)
    T = 10
    res, tr = simulate(p, easgd(M, 2, 0.2), lr=0.2, T=T, batch_size=2, seed=1, trace=True)
    assert res.spec["problem"]["repr"].startswith("NoisyQuadratic")
    u = tr.u
    for k in range(T):
        np.testing.assert_allclose(u[k + 1], u[k] - (M * 0.2 / (M + 1)) * tr.grads[k].mean(0),
                                   rtol=0, atol=ATOL)
    _, tr2 = simulate(p, mdsgd(M, TopK(1), momentum=0.9), lr=0.2, T=T, batch_size=2, seed=1,
                      trace=True)
    wv = tr2.u - tr2.memory.mean(axis=1)
    for k in range(T):
        np.testing.assert_allclose(wv[k + 1], wv[k] - 0.2 * tr2.direction[k].mean(0),
                                   rtol=0, atol=ATOL)
