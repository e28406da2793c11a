"""SQuARM-SGD as an engine configuration (issue 8): reductions on real trajectories, an
independent numpy recursion, bits and fire accounting, errors, the composed compressor's
contraction (hypothesis), and the distributed backend (real gloo processes) against the simulator.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import sympy
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import theory
from empirics.compressors import QSGD, Compose, Identity, RandomK, ScaledSign, TopK
from empirics.configs import (
    Config,
    Gossip,
    PowerThreshold,
    choco_sgd,
    decentralized_periodic,
    squarm,
)
from empirics.engine import RunSpec, run, simulate
from empirics.launch import launch
from empirics.problems import LeastSquares, LogisticRegression, seed_for
from empirics.records import COLUMNS, Result
from theory.bounds import squarm_compressor_condition, squarm_rate
from theory.mixing import path, ring
from theory.schedules import Periodic

M = 6


def _lsq(m: int = M, **kw) -> LeastSquares:
    return LeastSquares(n_samples=360, d=8, m=m, seed=2, heterogeneity=1.0, **kw)


def _sq_comp() -> Compose:
    """Sparsify then quantise, rescaled to a contraction (δ = (k/d)/(1 + ω_QSGD(k)))."""
    return Compose(TopK(3), QSGD(4).as_contraction())


# --------------------------------------------------------------------------- reductions
@pytest.mark.parametrize("nesterov", [True, False])
def test_threshold0_identity_gamma1_is_decentralized_periodic_with_momentum(nesterov):
    p = LogisticRegression(n_samples=600, d=10, m=M, seed=0, heterogeneity=1.0)
    W = ring(M)
    kw = dict(lr=0.2, T=45, batch_size=4, seed=5)
    a = simulate(p, squarm(W, 3, compressor=Identity(), gamma=1.0, threshold=0.0,
                           momentum=0.9, nesterov=nesterov), **kw)
    b = simulate(p, decentralized_periodic(W, 3, momentum=0.9, nesterov=nesterov), **kw)
    for c in ("loss", "grad_norm2", "consensus", "grad_norm2_running"):
        np.testing.assert_allclose(getattr(a, c), getattr(b, c), rtol=1e-12, atol=1e-13,
                                   equal_nan=True, err_msg=c)
    np.testing.assert_allclose(a.u_final, b.u_final, rtol=0, atol=1e-13)
    np.testing.assert_array_equal(a.comm_steps, b.comm_steps)
    # every node fires every round; identity payload = 32·d per directed edge, as the engine
    # counts an uncompressed decentralized message
    np.testing.assert_array_equal(a.fires, [15] * M)
    np.testing.assert_array_equal(a.bits, b.bits)
    assert b.fires is None
    assert a.consensus.max() > 1e-3  # the nodes do disagree between rounds


def _np_squarm(problem, W: np.ndarray, *, T: int, tau: int, lr: float, beta: float,
               nesterov: bool, gamma: float, c: float, k: int | None, B: int, seed: int):
    """SQuARM-SGD written independently in numpy (digest §5(b) transcription): least-squares
    gradients from the problem's own batches, top-k then scaled sign (deterministic) or the
    identity (k = None). Returns (X (T+1, m, d), fires (m,))."""
    m = problem.m
    g = torch.Generator().manual_seed(seed_for(seed, 0))  # the run's one batch stream
    xs, ys = (a.double().numpy() for a in problem.data())
    x0 = problem.init_params()["w"].double().numpy()
    X = np.tile(x0, (m, 1))
    Xh = X.copy()
    V = np.zeros_like(X)
    fires = np.zeros(m, dtype=int)
    out = [X.copy()]
    for t in range(T):
        G = np.empty_like(X)
        J = torch.randint(problem.n_per, (m, B), generator=g).numpy()  # row i: worker i's
        for i in range(m):
            xb, yb = xs[i * problem.n_per + J[i]], ys[i * problem.n_per + J[i]]
            G[i] = xb.T @ (xb @ X[i] - yb) / B + problem.l2 * X[i]
        V = beta * V + G
        P = G + beta * V if nesterov else V
        X = X - lr * P
        if (t + 1) % tau == 0:
            for j in range(m):
                dlt = X[j] - Xh[j]
                if dlt @ dlt > c * lr**2:
                    fires[j] += 1
                    if k is None:
                        q = dlt.copy()
                    else:
                        keep = np.argsort(-np.abs(dlt), kind="stable")[:k]
                        q = np.zeros_like(dlt)
                        q[keep] = np.where(dlt[keep] < 0, -1.0, 1.0) * np.abs(dlt[keep]).mean()
                    Xh[j] = Xh[j] + q
            X = X + gamma * (W.T @ Xh - Xh)
        out.append(X.copy())
    return np.stack(out), fires


def test_tau1_no_momentum_is_choco_sgd_written_in_numpy():
    """τ = 1, β = 0, threshold 0 ⇒ CHOCO-SGD: x ← x − ηg; x̂ += C(x − x̂); x += γ(Wᵀx̂ − x̂)."""
    p = _lsq()
    W = ring(M)
    comp = Compose(TopK(3), ScaledSign())
    cfg = choco_sgd(W, compressor=comp, gamma=0.4)
    assert cfg.momentum == 0 and cfg.gossip.threshold == 0.0
    res, tr = run(RunSpec(p, cfg, 0.05, 40, batch_size=5, seed=1), trace=True)
    X, fires = _np_squarm(p, np.asarray(W.matrix), T=40, tau=1, lr=0.05, beta=0.0,
                          nesterov=False, gamma=0.4, c=0.0, k=3, B=5, seed=1)
    np.testing.assert_allclose(tr.X, X, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(res.fires, fires)
    assert np.all(fires == 40)
    d = p.dim
    assert res.bits[-1] == 40 * M * 2 * comp.bits(d)
    assert np.abs(np.diff(X, axis=0)).max() > 1e-3


def test_triggered_squarm_with_momentum_matches_numpy_and_some_triggers_stay_silent():
    p = _lsq()
    W = path(M)  # degrees 1 and 2: per-node message counts differ
    comp = Compose(TopK(4), ScaledSign())
    c = 3.0
    cfg = squarm(W, 2, compressor=comp, gamma=0.5, threshold=c, momentum=0.8, nesterov=True)
    res, tr = run(RunSpec(p, cfg, 0.05, 40, batch_size=5, seed=4), trace=True)
    X, fires = _np_squarm(p, np.asarray(W.matrix), T=40, tau=2, lr=0.05, beta=0.8,
                          nesterov=True, gamma=0.5, c=c, k=4, B=5, seed=4)
    np.testing.assert_allclose(tr.X, X, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(res.fires, fires)
    assert 0 < fires.sum() < 20 * M  # the trigger both fired and stayed silent
    deg = np.array([1, 2, 2, 2, 2, 1])
    assert res.bits[-1] == int((fires * deg).sum()) * comp.bits(p.dim)


def test_threshold_infinity_sends_no_bits_and_leaves_nodes_fully_local():
    p = _lsq()
    cfg = squarm(ring(M), 2, compressor=_sq_comp(), gamma=0.7, threshold=math.inf,
                 momentum=0.9)
    res, tr = run(RunSpec(p, cfg, 0.05, 30, batch_size=5, seed=2), trace=True)
    X, fires = _np_squarm(p, np.asarray(ring(M).matrix), T=30, tau=2, lr=0.05, beta=0.9,
                          nesterov=True, gamma=0.7, c=math.inf, k=None, B=5, seed=2)
    assert not fires.any()
    np.testing.assert_array_equal(res.fires, np.zeros(M))
    assert np.all(res.bits == 0)
    np.testing.assert_allclose(tr.X, X, rtol=0, atol=1e-13)
    # ... and that is exactly local (momentum) SGD on every node: no mixing term at all
    assert res.consensus[-1] > 1e-2


def test_average_follows_the_local_steps_exactly_under_triggered_compressed_gossip():
    """Σ_i of the consensus term is 0 for doubly stochastic W: u_{k+1} = u_k − mean_i δ_k^(i)
    (float64, machine precision) although x̂ ≠ x and the trigger is active."""
    p = LogisticRegression(n_samples=600, d=12, m=M, seed=1, heterogeneity=1.0)
    cfg = squarm(ring(M), 3, compressor=_sq_comp(), gamma=0.3, threshold=PowerThreshold(0.5),
                 momentum=0.9)
    res, tr = run(RunSpec(p, cfg, 0.1, 36, batch_size=4, seed=7), trace=True)
    u = tr.u
    np.testing.assert_allclose(u[1:], u[:-1] - tr.delta.mean(axis=1), rtol=0, atol=1e-13)
    assert res.fires.sum() > 0
    assert np.abs(tr.X[-1] - u[-1]).max() > 1e-3


def test_bits_fires_and_records_round_trip(tmp_path):
    p = _lsq()
    cfg = squarm(ring(M), 2, compressor=_sq_comp(), gamma=0.5, threshold=0.5, momentum=0.5)
    res = simulate(p, cfg, lr=0.05, T=20, batch_size=5, seed=3, record_every=5)
    d = p.dim
    assert res.bits[-1] == int(res.fires.sum()) * 2 * _sq_comp().bits(d)
    assert np.all(np.diff(res.bits) >= 0) and res.rounds[-1] == 10
    assert res.spec["config"]["gossip"]["gamma"] == 0.5
    back = Result.from_dict(res.to_dict())
    np.testing.assert_array_equal(back.fires, res.fires)
    assert back.fires.dtype == np.int64


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("bad", [-1.0, math.nan, "x"])
def test_bad_threshold_is_named(bad):
    with pytest.raises(ValueError, match="threshold"):
        squarm(ring(4), 2, compressor=Identity(), gamma=0.5, threshold=bad)


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, math.nan])
def test_gamma_outside_unit_interval_is_named(bad):
    with pytest.raises(ValueError, match=r"gamma .*\(0, 1\]"):
        squarm(ring(4), 2, compressor=Identity(), gamma=bad)


def test_threshold_schedule_returning_negative_is_named_at_its_step():
    p = _lsq(m=4)
    cfg = squarm(ring(4), 2, compressor=Identity(), gamma=0.5,
                 threshold=lambda t: 1.0 if t < 4 else -1.0)
    with pytest.raises(ValueError, match=r"threshold c_t at t = 4"):
        simulate(p, cfg, lr=0.05, T=10, batch_size=2, seed=0)


@pytest.mark.parametrize("comp", [QSGD(1), Compose(TopK(5), QSGD(1))])
def test_non_contractive_compressor_is_refused_with_the_rule(comp):
    p = _lsq(m=4)
    assert comp.delta(p.dim) is None
    cfg = squarm(ring(4), 2, compressor=comp, gamma=0.5)
    with pytest.raises(ValueError, match=r"not a contraction .*E‖x − C\(x\)‖² ≤ \(1 − δ\)‖x‖²"):
        simulate(p, cfg, lr=0.05, T=4, batch_size=2, seed=0)
    # the suggested fix works
    ok = squarm(ring(4), 2, compressor=Compose(TopK(5), QSGD(1).as_contraction()), gamma=0.5)
    simulate(p, ok, lr=0.05, T=4, batch_size=2, seed=0)


def test_other_bad_arguments_are_named():
    with pytest.raises(ValueError, match="compressor"):
        squarm(ring(4), 2, compressor=None, gamma=0.5)
    with pytest.raises(ValueError, match="eps"):
        PowerThreshold(1.0, eps=0.0)
    with pytest.raises(ValueError, match="v = 0"):
        Config("x", Periodic(theory.easgd_matrix(3, 0.2), 2), v=1,
               gossip=Gossip(Identity(), 0.5, 0.0))
    with pytest.raises(ValueError, match="tau"):
        squarm(ring(4), 0, compressor=Identity(), gamma=0.5)


# --------------------------------------------------------------------------- theory side
def test_rates_are_scaling_statements_with_their_status():
    sc, nc = squarm_rate("strongly_convex"), squarm_rate("nonconvex")
    m, T = theory.symbols.m, theory.symbols.T
    assert sc.expr == 1 / (m * T) and sympy.simplify(nc.expr - 1 / sympy.sqrt(m * T)) == 0
    assert str(sc.source.status) == "quoted" and "not known" in sc.source.note
    assert float(nc.expr.subs({m: 4, T: 25})) == pytest.approx(0.1)
    assert float(sc.expr.subs({m: 4, T: 25})) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="kind"):
        squarm_rate("convex")
    rel = squarm_compressor_condition(1.0)
    assert bool(rel.subs({theory.symbols.delta: 0.25, rel.lhs: 0.75}))
    assert not bool(rel.subs({theory.symbols.delta: 0.25, rel.lhs: 0.76}))


def _exact_topk_qsgd_error(x: np.ndarray, k: int, s: int) -> float:
    """E‖x − C(x)‖² for C = Compose(TopK(k), QSGD(s)/(1 + ω)), computed in closed form from the
    QSGD level distribution (independent of the implementation)."""
    keep = np.argsort(-np.abs(x), kind="stable")[:k]
    y = x[keep]
    off = float(x @ x - y @ y)
    ny = float(np.linalg.norm(y))
    if ny == 0:
        return off
    w = min(k / s**2, math.sqrt(k) / s)
    f = 1 / (1 + w)
    r = np.abs(y) / ny
    low = np.minimum(np.floor(r * s), s - 1)
    var = ny**2 * float(np.sum((r - low / s) * ((low + 1) / s - r)))
    return off + (1 - f) ** 2 * ny**2 + f**2 * var


@settings(max_examples=40, deadline=None)
@given(d=st.integers(2, 40), kfrac=st.floats(0.05, 1.0), s=st.integers(1, 8),
       seed=st.integers(0, 2**31 - 1), sparse=st.sampled_from(["topk", "randk"]))
def test_composed_compressor_satisfies_the_squarm_condition(d, kfrac, s, seed, sparse):
    """E‖x − C(x)‖² ≤ (1 − ω)‖x‖² with ω = C.delta(d) for sparsify-then-quantise rescaled to a
    contraction: exactly (closed form, top-k) and on the implementation's own draws (Monte Carlo
    mean, one-sided, 6 standard errors: false-alarm rate < 1e-9)."""
    k = max(1, min(d, round(kfrac * d)))
    first = TopK(k) if sparse == "topk" else RandomK(k, unbiased=False)
    comp = Compose(first, QSGD(s).as_contraction())
    omega = comp.delta(d)
    assert omega is not None and 0 < omega <= 1
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(d, generator=g, dtype=torch.float64) * torch.exp(
        2 * torch.randn(d, generator=g, dtype=torch.float64))
    x2 = float(x @ x)
    if sparse == "topk":
        exact = _exact_topk_qsgd_error(x.numpy(), k, s)
        assert exact <= (1 - omega) * x2 * (1 + 1e-12)
    n = 4000
    C = comp(x.expand(n, d).clone(), generator=g)
    err = ((C - x) ** 2).sum(1).numpy()
    mean, se = err.mean(), err.std(ddof=1) / math.sqrt(n)
    assert mean <= (1 - omega) * x2 + 6 * se + 1e-12 * x2
    if sparse == "topk":
        assert abs(mean - exact) <= 6 * se + 1e-12 * x2


# --------------------------------------------------------------------------- distributed
MD = 4


def _dist_cases() -> dict[str, RunSpec]:
    p = LeastSquares(n_samples=400, d=10, m=MD, seed=0, heterogeneity=0.5)
    mk = dict(batch_size=4, seed=3)
    return {
        # top-k then rescaled QSGD, Nesterov, a trigger that sometimes stays silent
        "squarm_topk_qsgd": RunSpec(p, squarm(ring(MD), 3, compressor=_sq_comp(), gamma=0.4,
                                              threshold=80.0, momentum=0.9), 0.05, 30, **mk),
        # CHOCO with a randomised sparsifier and a growing threshold schedule
        "choco_randk": RunSpec(p, squarm(path(MD), 1, compressor=Compose(
            RandomK(4, unbiased=False), QSGD(3).as_contraction()), gamma=0.3,
            threshold=PowerThreshold(3.0, 0.5)), 0.05, 24, record_every=5, **mk),
        "never_fires": RunSpec(p, squarm(ring(MD), 2, compressor=_sq_comp(), gamma=0.5,
                                         threshold=math.inf, momentum=0.5), 0.05, 12, **mk),
    }


def _dist_job(ctx, cases: dict[str, RunSpec]) -> dict:
    import dataclasses

    from empirics.distributed import run_rank

    quiet = dataclasses.replace(ctx, out_dir=None)
    return {name: run_rank(quiet, spec) for name, spec in cases.items()}


@pytest.fixture(scope="module")
def djob():
    cases = _dist_cases()
    t = time.monotonic()
    rets = launch(f"{__file__}:_dist_job", MD, (cases,), backend="gloo", timeout=300)
    print(f"4-rank squarm job: {time.monotonic() - t:.1f} s")
    return rets, cases


@pytest.mark.parametrize("name", list(_dist_cases()))
def test_distributed_gossip_equals_simulator(djob, name):
    rets, cases = djob
    spec = cases[name]
    dres = rets[0][name]
    assert all(r[name] is None for r in rets[1:])
    sim = run(spec)
    got = dres.result
    assert got.status == "completed" and len(got) == len(sim)
    for c in COLUMNS:
        if c == "wall":
            continue
        np.testing.assert_allclose(getattr(got, c), getattr(sim, c), rtol=1e-10, atol=1e-10,
                                   equal_nan=True, err_msg=c)
    np.testing.assert_allclose(got.u_final, sim.u_final, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(got.fires, sim.fires)
    np.testing.assert_array_equal(got.comm_steps, sim.comm_steps)
    # wire: one flag byte per out-neighbour per round, payload bytes only for fired nodes
    comp = spec.config.gossip.compressor
    d = spec.problem.dim
    nbytes = math.ceil(comp.bits(d, 64) / 8)
    A = np.asarray(spec.config.schedule.W.matrix)
    deg = ((np.abs(A) > 1e-12) & ~np.eye(MD, dtype=bool)).sum(1)
    rounds = len(sim.comm_steps)
    np.testing.assert_array_equal(dres.timing.wire_bytes, deg * (rounds + sim.fires * nbytes))
    if name == "never_fires":
        assert got.bits[-1] == 0 and not got.fires.any()
    else:
        assert 0 < sim.fires.sum()
        assert got.bits[-1] == int((sim.fires * deg).sum()) * comp.bits(d)
    if name != "never_fires":
        assert sim.fires.sum() < MD * rounds  # some triggers stayed silent
