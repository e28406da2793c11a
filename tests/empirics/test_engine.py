"""The engine: mixing strategies, records, bits, seeds, schedules, fast path, bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from empirics.compressors import TopK
from empirics.configs import (
    Config,
    configuration,
    dpsgd,
    easgd,
    hierarchical,
    lupa,
    mdsgd,
    one_shot,
    pasgd,
    spiridonoff_sgd,
    synchronous,
)
from empirics.engine import (
    Constant,
    DivergenceError,
    InverseTime,
    RunSpec,
    Simulator,
    Stagewise,
    as_lr,
    run,
    simulate,
    vmap_grad,
)
from empirics.fastgrads import linear_grad_factory, mlp_grad_factory
from empirics.mixers import Mixer
from empirics.problems import LeastSquares, LogisticRegression, MLPClassifier
from empirics.records import load_result
from theory.mixing import (
    MixingMatrix,
    average,
    contiguous_groups,
    easgd_matrix,
    erdos_renyi_graph,
    group_average,
    identity,
    metropolis_hastings,
    ring,
    torus,
)
from theory.schedules import FromCallable, Periodic

M = 4


@pytest.fixture(scope="module")
def logreg() -> LogisticRegression:
    return LogisticRegression(n_samples=200, d=5, m=M, seed=1)


@pytest.fixture(scope="module")
def mlp() -> MLPClassifier:
    return MLPClassifier(n_samples=120, d_in=6, hidden=(7, 5), n_classes=3, m=3, seed=2,
                         l2=1e-2, fstar_iters=5, n_random_points=0)


# ---------------------------------------------------------------------------------------------
# mixing
# ---------------------------------------------------------------------------------------------
def _dense_W(n: int, seed: int = 0) -> MixingMatrix:
    rng = np.random.default_rng(seed)
    A = rng.random((n, n))
    A = (A + A.T) / 2
    for _ in range(200):  # Sinkhorn on a symmetric matrix → symmetric doubly stochastic
        A = A / A.sum(1, keepdims=True)
        A = (A + A.T) / 2
    return MixingMatrix(A)


MIXERS = {
    "J": (lambda: average(8), "groups", 8),
    "groups": (lambda: group_average(contiguous_groups(8, 2)), "groups", 8),
    "ragged-groups": (lambda: group_average([[0, 5], [1, 2, 3], [4], [6, 7]]), "groups", 7),
    "ring": (lambda: ring(12), "sparse", 24),
    "torus": (lambda: torus(4, 5), None, None),
    "easgd": (lambda: easgd_matrix(15, 0.1), "sparse", 30),
    "easgd-small": (lambda: easgd_matrix(3, 0.2), "dense", 6),
    "erdos-renyi": (lambda: metropolis_hastings(erdos_renyi_graph(10, 0.3, seed=1)), None, None),
    "dense": (lambda: _dense_W(8), "dense", 56),
    "I": (lambda: identity(5), "identity", 0),
}


@pytest.mark.parametrize("name", list(MIXERS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_mixer_matches_WT_X_for_every_strategy(name, dtype):
    make, kind, messages = MIXERS[name]
    W = make()
    n = W.n
    X = torch.randn(n, 37, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    expect = W.matrix.T @ X.numpy()
    tol = 1e-14 if dtype == torch.float64 else 2e-6
    auto = Mixer(W, torch.device("cpu"), dtype)
    if kind is not None:
        assert auto.kind == kind
        assert auto.messages == messages
    modes = ["auto", "dense", "sparse", "csr", "gather", "gather-chunked", "csr-panels"]
    modes += ["groups"] if auto.kind == "groups" else []
    modes += ["block"] if Mixer(W, torch.device("cpu"), dtype, "sparse").blocks is not None \
        else []
    for mode in modes:
        mx = Mixer(W, torch.device("cpu"), dtype, mode.split("-")[0])
        if mode == "gather-chunked":
            mx.GATHER_LIMIT = 0  # one output row per chunk
        Xd = X.to(dtype).clone()
        if mode == "csr-panels":  # a width whose X exceeds PANEL_BYTES: column panels
            Xd = torch.cat([Xd] * 3000, dim=1)
        out = mx(Xd, torch.empty_like(Xd))
        if mode == "csr-panels":
            ref = Mixer(W, torch.device("cpu"), dtype, "dense")(Xd, torch.empty_like(Xd))
            np.testing.assert_allclose(out.double().numpy(), ref.double().numpy(), rtol=0,
                                       atol=tol * 10, err_msg=f"{name} {mode}")
            continue
        np.testing.assert_allclose(out.double().numpy(), expect, rtol=0, atol=tol,
                                   err_msg=f"{name} {mode}")


def test_blocked_plan_only_with_index_locality():
    kw = dict(device=torch.device("cpu"), dtype=torch.float64, mode="sparse")
    assert Mixer(ring(64), **kw).blocks is not None
    assert Mixer(torus(8, 8), **kw).blocks is not None
    er = metropolis_hastings(erdos_renyi_graph(64, 0.05, seed=0))
    assert Mixer(er, **kw).blocks is None  # scattered neighbours: csr or gather instead
    with pytest.raises(ValueError, match="index locality"):
        Mixer(er, torch.device("cpu"), torch.float64, "block")


def test_automatic_kernel_is_a_deterministic_function_of_structure_and_width():
    """The choice depends on (W's structure, n, d, dtype, device) only: two mixers built alike
    choose alike at every width, and the choice is the least modelled cost."""
    from empirics.mixers import mixing_cost

    for W in (ring(64), torus(8, 8), metropolis_hastings(erdos_renyi_graph(64, 0.1, seed=0))):
        for d in (10, 1000, 100_000, 1_000_000):
            a = Mixer(W, torch.device("cpu"), torch.float32).strategy_for(d)
            b = Mixer(W, torch.device("cpu"), torch.float32).strategy_for(d)
            assert a == b and a in ("csr", "block", "dense")
            mx = Mixer(W, torch.device("cpu"), torch.float32)
            cost = {k: mixing_cost(k, mx.n, d, mx.nnz, 4) for k in ("csr", "dense")}
            if a != "block":
                assert cost[a] == min(cost.values())
    # large X with index locality: the block GEMMs; no locality: the CSR kernel
    assert Mixer(ring(512), torch.device("cpu"), torch.float32).strategy_for(100_000) == "block"
    from theory.topologies import build_mixing

    hc = build_mixing("hypercube", 512)
    assert Mixer(hc, torch.device("cpu"), torch.float32).strategy_for(10_000) == "csr"


def test_mixer_rejects_bad_mode():
    with pytest.raises(ValueError, match="mixing must be"):
        Mixer(ring(5), torch.device("cpu"), torch.float64, "fast")
    with pytest.raises(ValueError, match="groups"):
        Mixer(ring(5), torch.device("cpu"), torch.float64, "groups")


def test_forced_mixing_modes_give_the_same_run(logreg):
    kw = dict(lr=0.5, T=12, batch_size=3, seed=1, record_every=4, grad_every=0)
    for cfg in (dpsgd(ring(M)), easgd(M, 2, 0.25), pasgd(M, 3)):
        ref = simulate(logreg, cfg, **kw)
        for mode in ("dense", "sparse", "csr", "gather"):
            other = simulate(logreg, cfg, mixing=mode, **kw)
            np.testing.assert_allclose(other.u_final, ref.u_final, rtol=0, atol=1e-14)
            np.testing.assert_allclose(other.consensus, ref.consensus, rtol=1e-10, atol=1e-28)


# ---------------------------------------------------------------------------------------------
# records, bits, running average
# ---------------------------------------------------------------------------------------------
def test_records_stride_and_values(logreg):
    T, s = 23, 5
    res = simulate(logreg, pasgd(M, 4), lr=0.5, T=T, batch_size=2, record_every=s)
    np.testing.assert_array_equal(res.step, [0, 5, 10, 15, 20, 23])
    x0 = logreg.init_params()
    assert res.loss[0] == pytest.approx(logreg.full_loss(x0), abs=1e-15)
    assert res.grad_norm2[0] == pytest.approx(logreg.grad_norm2(x0), rel=1e-13)
    assert res.consensus[0] == 0
    # u_T is the recorded final model, and its loss is the last record
    u = {"w": torch.from_numpy(res.u_final)}
    assert res.loss[-1] == pytest.approx(logreg.full_loss(u), abs=1e-15)
    # comm steps of τ = 4 over T = 23 (last round truncated and still mixing)
    np.testing.assert_array_equal(res.comm_steps, [3, 7, 11, 15, 19, 22])
    np.testing.assert_array_equal(res.rounds, [0, 1, 2, 3, 5, 6])
    assert res.consensus[-1] < 1e-28  # after the final average
    assert np.all(np.diff(res.wall) >= 0)
    assert res.status == "completed" and res.steps_done == T
    assert res.lr[0] == 0.5 and math.isnan(res.lr[-1])


def test_consensus_is_frobenius_distance_to_the_average(logreg):
    T = 7
    res, tr = simulate(logreg, dpsgd(ring(M)), lr=0.5, T=T, batch_size=2, trace=True,
                       record_every=1, grad_every=1)
    for k in range(T + 1):
        X = tr.X[k]
        P = np.eye(M) - np.full((M, M), 1 / M)
        assert res.consensus[k] == pytest.approx(np.linalg.norm(P @ X) ** 2, rel=1e-10, abs=1e-30)
    # the running average (1/K) Σ_{k<K} ‖X_k(I − J)‖²_F, Lemma 2's network term (× L²/m)
    per_step = [np.linalg.norm((np.eye(M) - 1 / M) @ tr.X[k]) ** 2 for k in range(T)]
    for K in range(1, T + 1):
        assert res.consensus_running[K] == pytest.approx(np.mean(per_step[:K]), rel=1e-10)
    # grad_every = q: the same stratified subsample as the gradient norm (unbiased)
    sub = simulate(logreg, dpsgd(ring(M)), lr=0.5, T=T, batch_size=2, grad_every=3)
    assert np.isfinite(sub.consensus_running[-1]) and sub.consensus_running[-1] > 0


def test_bits_per_structure(logreg):
    d, T = logreg.dim, 12
    r = simulate(logreg, pasgd(M, 3), lr=0.3, T=T, grad_every=0)
    assert r.bits[-1] == (T // 3) * M * 32 * d  # all-reduce: m messages of 32·d bits
    r = simulate(logreg, dpsgd(ring(M)), lr=0.3, T=T, grad_every=0)
    assert r.bits[-1] == T * 2 * M * 32 * d  # ring: 2m directed edges
    r = simulate(logreg, easgd(M, 4, 0.2), lr=0.3, T=T, grad_every=0)
    assert r.bits[-1] == (T // 4) * 2 * M * 32 * d  # star with the centre: 2m directed edges
    C = TopK(2)
    r = simulate(logreg, mdsgd(M, C), lr=0.3, T=T, grad_every=0)
    assert r.bits[-1] == T * M * C.bits(d)  # M-DSGD sends C(u) only
    r = simulate(logreg, mdsgd(M, TopK(1), tau=2), lr=0.3, T=T, grad_every=0)
    assert r.bits[-1] == (T // 2) * M * min(2 * TopK(1).bits(d), 32 * d)
    r = simulate(logreg, mdsgd(M, C, W=ring(M)), lr=0.3, T=T, grad_every=0)
    assert r.bits[-1] == T * 2 * M * 32 * d  # decentralized: neighbours need full models


def test_grad_norm_running_average_exact_and_subsampled(logreg):
    T = 20
    full = simulate(logreg, pasgd(M, 2), lr=0.5, T=T, batch_size=2, seed=3, record_every=1,
                    grad_every=1)
    assert full.grad_norm2_avg == pytest.approx(full.grad_norm2[:-1].mean(), rel=1e-13)
    assert full.grad_norm2_avg_steps == T and "exact" in full.grad_norm2_avg_method
    np.testing.assert_allclose(full.grad_norm2_running[1:],
                               np.cumsum(full.grad_norm2[:-1]) / np.arange(1, T + 1), rtol=1e-13)
    q = 6
    sub = simulate(logreg, pasgd(M, 2), lr=0.5, T=T, batch_size=2, seed=3, record_every=T,
                   grad_every=q)
    np.testing.assert_array_equal(sub.u_final, full.u_final)  # subsampling leaves training alone
    at = sub.grad_norm2_at
    assert len(at) == sub.grad_norm2_avg_steps == math.ceil(T / q)
    assert all(j * q <= a < min((j + 1) * q, T) for j, a in enumerate(at))
    weights = np.array([min(q, T - j * q) for j in range(len(at))])
    est = (weights * full.grad_norm2[at]).sum() / T
    assert sub.grad_norm2_avg == pytest.approx(est, rel=1e-13)
    assert "unbiased" in sub.grad_norm2_avg_method
    off = simulate(logreg, pasgd(M, 2), lr=0.5, T=T, grad_every=0, record_every=5)
    assert math.isnan(off.grad_norm2_avg) and off.grad_norm2_avg_steps == 0


@pytest.mark.slow
def test_grad_subsample_is_unbiased_for_a_fixed_trajectory(logreg):
    """Average the stratified estimate over many subsample draws (training is unaffected by
    them): it converges to the exact mean; 6 standard errors is a ~1e-9 false-alarm rate."""
    T, q = 12, 4
    full = simulate(logreg, pasgd(M, 3), lr=0.5, T=T, seed=0, record_every=1)
    g = full.grad_norm2[:-1]
    exact = g.mean()
    spec = RunSpec(logreg, pasgd(M, 3), 0.5, T, seed=0, record_every=T, grad_every=q)
    ests = []
    for r in range(150):
        eng = Simulator(spec)
        eng.rng = np.random.default_rng(r)
        ests.append(eng.run().grad_norm2_avg)
    block_var = sum(np.var(g[j:j + q]) for j in range(0, T, q)) * q**2 / T**2
    se = math.sqrt(block_var / len(ests))
    assert abs(np.mean(ests) - exact) < 6 * se + 1e-15


# ---------------------------------------------------------------------------------------------
# seeds, dtypes, devices, schedules
# ---------------------------------------------------------------------------------------------
def test_same_seed_same_numbers_different_seed_different(logreg):
    kw = dict(lr=0.4, T=10, batch_size=3, record_every=2)
    a = simulate(logreg, mdsgd(M, TopK(2), momentum=0.5), seed=7, **kw)
    b = simulate(logreg, mdsgd(M, TopK(2), momentum=0.5), seed=7, **kw)
    c = simulate(logreg, mdsgd(M, TopK(2), momentum=0.5), seed=8, **kw)
    np.testing.assert_array_equal(a.u_final, b.u_final)
    np.testing.assert_array_equal(a.loss, b.loss)
    assert not np.array_equal(a.u_final, c.u_final)


def test_float32_run_tracks_float64(logreg):
    p32 = LogisticRegression(n_samples=200, d=5, m=M, seed=1, dtype=torch.float32)
    kw = dict(lr=0.4, T=15, batch_size=3, seed=2, record_every=5, device="cpu")
    r64 = simulate(logreg, dpsgd(ring(M)), **kw)
    r32 = simulate(p32, dpsgd(ring(M)), **kw)
    assert r32.spec["dtype"] == "float32" and r64.spec["dtype"] == "float64"
    np.testing.assert_allclose(r32.u_final, r64.u_final, rtol=0, atol=1e-5)
    np.testing.assert_allclose(r32.loss, r64.loss, rtol=1e-5)


def test_adaptive_schedule_reads_the_loss_of_the_averaged_model(logreg):
    T = 40
    cfg = lupa(M, T, 3, 2, adaptive=True)
    res, tr = simulate(logreg, cfg, lr=0.8, T=T, batch_size=2, seed=1, trace=True)
    # replay the schedule with F(u_k) computed from the trace at each round start
    state = {"k": 0}

    def loss() -> float:
        return logreg.full_loss({"w": torch.from_numpy(tr.u[state["k"]])})

    ends = []
    for r in cfg.schedule.rounds(T, loss=loss):
        ends.append(r.end - 1)
        state["k"] = r.end
    np.testing.assert_array_equal(res.comm_steps, ends)
    assert len(set(np.diff([-1, *ends]))) > 1  # the periods really changed


def test_callable_and_library_schedules(logreg):
    T = 30
    sched = FromCallable(lambda k: ring(M) if k in (4, 9, 20) else None, M)
    res = simulate(logreg, configuration(sched), lr=0.3, T=T, grad_every=0)
    np.testing.assert_array_equal(res.comm_steps, [4, 9, 20])
    sp = simulate(logreg, spiridonoff_sgd(M, T), lr=0.3, T=T, grad_every=0)
    np.testing.assert_array_equal(sp.comm_steps + 1,
                                  spiridonoff_sgd(M, T).schedule.comm_times(T))
    os_ = simulate(logreg, one_shot(M), lr=0.3, T=T, grad_every=0, record_every=10)
    np.testing.assert_array_equal(os_.comm_steps, [T - 1])
    assert os_.consensus[-2] > 0 and os_.consensus[-1] < 1e-28
    h = simulate(logreg, hierarchical(M, 2, 2, 6), lr=0.3, T=12, grad_every=0, record_every=6)
    np.testing.assert_array_equal(h.comm_steps, [1, 3, 5, 7, 9, 11])
    assert h.consensus[1] < 1e-28  # step 6: right after the global average


def test_learning_rate_schedules():
    s = Stagewise((1.0, 0.5, 0.1), (10, 20))
    assert [s(t) for t in (0, 9, 10, 19, 20, 99)] == [1.0, 1.0, 0.5, 0.5, 0.1, 0.1]
    it = InverseTime(3.0, 1.0, max_lr=0.5)
    assert it(0) == 0.5 and it(5) == pytest.approx(0.5) and it(11) == pytest.approx(0.25)
    assert as_lr(0.1) == Constant(0.1)
    json.dumps([s.to_dict(), it.to_dict(), Constant(1).to_dict()])
    with pytest.raises(ValueError, match="len\\(etas\\) == len\\(boundaries\\) \\+ 1"):
        Stagewise((1.0,), (3,))
    with pytest.raises(ValueError, match="strictly increasing"):
        Stagewise((1.0, 0.5, 0.2), (5, 5))
    with pytest.raises(ValueError, match="beta must be > 0"):
        InverseTime(1.0, 0.0)


def test_lr_schedule_used_per_step(logreg):
    s = Stagewise((0.5, 0.1), (4,))
    res, tr = simulate(logreg, pasgd(M, 2), lr=s, T=8, trace=True, record_every=1)
    np.testing.assert_array_equal(tr.lr, [0.5] * 4 + [0.1] * 4)
    np.testing.assert_array_equal(res.lr[:-1], tr.lr)


def test_momentum_directions(logreg):
    for nesterov in (False, True):
        cfg = pasgd(M, 2, momentum=0.7, nesterov=nesterov)
        _, tr = simulate(logreg, cfg, lr=0.2, T=6, trace=True)
        b = np.zeros_like(tr.grads[0])
        for k in range(6):
            b = 0.7 * b + tr.grads[k]
            expect = tr.grads[k] + 0.7 * b if nesterov else b
            np.testing.assert_allclose(tr.direction[k], expect, rtol=0, atol=1e-14)
            np.testing.assert_allclose(tr.delta[k], 0.2 * expect, rtol=0, atol=1e-14)


# ---------------------------------------------------------------------------------------------
# the MLP fast path
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("l2", [0.0, 1e-2])
def test_mlp_fast_path_equals_vmap(mlp, l2):
    p = MLPClassifier(n_samples=120, d_in=6, hidden=(7, 5), n_classes=3, m=3, seed=2, l2=l2)
    x0 = p.init_params()
    g = torch.Generator().manual_seed(0)
    params = {k: v + 0.3 * torch.randn((3, *v.shape), generator=g, dtype=v.dtype)
              for k, v in x0.items()}
    batch = p.sample_all(6, p.generator(1))
    gv, lv = vmap_grad(p)(params, batch)
    fast = mlp_grad_factory(p)
    gf, lf = fast(params, batch)
    np.testing.assert_allclose(lf.numpy(), lv.numpy(), rtol=0, atol=1e-14)
    for k in gv:
        np.testing.assert_allclose(gf[k].numpy(), gv[k].numpy(), rtol=0, atol=1e-14)
    out = {k: torch.empty_like(v) for k, v in params.items()}
    gf2, _ = fast(params, batch, out=out)
    assert all(gf2[k] is out[k] for k in out)
    # fused SGD: θ ← θ − η∇loss in place
    eta = 0.3
    upd = {k: v.clone() for k, v in params.items()}
    fast(upd, batch, sgd_lr=eta)
    for k in params:
        np.testing.assert_allclose(upd[k].numpy(), (params[k] - eta * gv[k]).numpy(),
                                   rtol=0, atol=1e-14)


def test_generic_path_folds_the_ridge_exactly():
    """A problem with data_loss and l2 (loss = data_loss + ½l2‖θ‖²): the generic path's
    gradients, losses and fused SGD update equal vmap(grad_and_value(loss)) on the whole loss
    (torch.func directly, the ridge inside autograd)."""
    from torch.func import grad_and_value, vmap

    p = MLPClassifier(n_samples=120, d_in=6, hidden=(7, 5), n_classes=3, m=3, seed=2, l2=0.2)
    g = torch.Generator().manual_seed(0)
    params = {k: v + 0.3 * torch.randn((3, *v.shape), generator=g, dtype=v.dtype)
              for k, v in p.init_params().items()}
    batch = p.sample_all(6, p.generator(1))
    ref_g, ref_l = vmap(grad_and_value(p.loss))(params, batch)
    gv, lv = vmap_grad(p)(params, batch)
    np.testing.assert_allclose(lv.numpy(), ref_l.numpy(), rtol=1e-14, atol=0)
    for k in params:
        np.testing.assert_allclose(gv[k].numpy(), ref_g[k].numpy(), rtol=0, atol=1e-14)
    eta = 0.3
    upd = {k: v.clone() for k, v in params.items()}
    assert vmap_grad(p)(upd, batch, sgd_lr=eta)[0] is None
    for k in params:
        np.testing.assert_allclose(upd[k].numpy(), (params[k] - eta * ref_g[k]).numpy(),
                                   rtol=0, atol=1e-14)


@pytest.mark.parametrize("cls", [LogisticRegression, LeastSquares])
@pytest.mark.parametrize("l2", [0.0, 0.05])
def test_linear_fast_path_equals_vmap(cls, l2):
    p = cls(n_samples=90, d=4, m=3, seed=5, l2=l2)
    ref = p.sample_all(6, p.generator(2))
    params = {"w": torch.randn(3, 4, dtype=torch.float64,
                               generator=torch.Generator().manual_seed(1))}
    gv, lv = vmap_grad(p)(params, ref)
    fn = linear_grad_factory(p)
    gf, lf = fn(params, ref)
    np.testing.assert_allclose(gf["w"].numpy(), gv["w"].numpy(), rtol=0, atol=1e-15)
    np.testing.assert_allclose(lf.numpy(), lv.numpy(), rtol=0, atol=1e-15)
    w = params["w"].clone()
    fn({"w": w}, ref, sgd_lr=0.4)
    np.testing.assert_allclose(w.numpy(), (params["w"] - 0.4 * gv["w"]).numpy(), rtol=0,
                               atol=1e-15)


def test_linear_engine_fast_and_vmap_paths_agree(logreg):
    for cfg in (pasgd(M, 3), dpsgd(ring(M), momentum=0.5), synchronous(M)):
        spec = RunSpec(logreg, cfg, 0.5, 15, batch_size=3, seed=1, record_every=5)
        eng = Simulator(spec)
        fast, slow = eng.run(), run(spec, fast_path=False)
        assert eng.n_sync_steps == (15 if cfg.name == "synchronous" else 0)
        np.testing.assert_allclose(fast.u_final, slow.u_final, rtol=0, atol=1e-14)
        np.testing.assert_allclose(fast.grad_norm2, slow.grad_norm2, rtol=1e-12)


def test_mlp_engine_fast_and_vmap_paths_agree(mlp):
    kw = dict(lr=0.5, T=10, batch_size=4, seed=3, record_every=5, grad_every=0)
    for cfg in (pasgd(3, 2), pasgd(3, 2, momentum=0.5), synchronous(3), easgd(3, 1, 0.3)):
        spec = RunSpec(mlp, cfg, **kw)
        eng = Simulator(spec, fast_path=True)
        assert eng.grad_path.startswith("mlp_bmm")
        assert eng.fused == (cfg.momentum == 0)
        fast = eng.run()
        # τ = 1 with W = J runs as one model on the m·B batch (all 10 steps)
        assert eng.n_sync_steps == (10 if cfg.name == "synchronous" else 0)
        slow = run(spec, fast_path=False)
        np.testing.assert_allclose(fast.u_final, slow.u_final, rtol=0, atol=1e-13)
        np.testing.assert_allclose(fast.loss, slow.loss, rtol=1e-13)


# ---------------------------------------------------------------------------------------------
# the generic path (vmap of the loss + one reverse pass; optional torch.compile)
# ---------------------------------------------------------------------------------------------
def _old_vmap_grad(problem):
    """The generic path as it was: vmap(grad_and_value(loss)), no out/fused options."""
    from torch.func import grad_and_value, vmap

    return vmap(grad_and_value(lambda p, b: problem.loss(p, b)), in_dims=(0, 0))


@pytest.mark.parametrize("make", [
    lambda: LogisticRegression(n_samples=90, d=4, m=3, seed=5, l2=0.05),
    lambda: MLPClassifier(n_samples=120, d_in=6, hidden=(7, 5), n_classes=3, m=3, seed=2,
                          l2=1e-2),
], ids=["logistic", "mlp"])
def test_generic_gradient_equals_vmap_grad_and_value(make):
    p = make()
    g = torch.Generator().manual_seed(0)
    params = {k: v + 0.3 * torch.randn((p.m, *v.shape), generator=g, dtype=v.dtype)
              for k, v in p.init_params().items()}
    batch = p.sample_all(6, p.generator(1))
    ref, lref = _old_vmap_grad(p)(params, batch)
    fn = vmap_grad(p)
    got, lgot = fn(params, batch)
    np.testing.assert_allclose(lgot.numpy(), lref.numpy(), rtol=0, atol=1e-15)
    for k in ref:
        np.testing.assert_allclose(got[k].numpy(), ref[k].numpy(), rtol=0, atol=1e-15)
    out = {k: torch.empty_like(v) for k, v in params.items()}
    got2, _ = fn(params, batch, out=out)
    assert all(got2[k] is out[k] for k in out)
    upd = {k: v.clone() for k, v in params.items()}
    assert fn(upd, batch, sgd_lr=0.3)[0] is None  # fused SGD: in place, no gradient returned
    for k in params:
        np.testing.assert_allclose(upd[k].numpy(), (params[k] - 0.3 * ref[k]).numpy(),
                                   rtol=0, atol=1e-15)


def test_generic_path_trajectories_equal_the_previous_generic_path(mlp, monkeypatch):
    """Today's generic path (vmap forward + one backward, fused SGD update) against the
    previous one (vmap(grad_and_value), gradient buffer, unfused update): equal to rounding."""
    import empirics.algorithm as alg

    kw = dict(lr=0.5, T=12, batch_size=4, seed=3, record_every=4, grad_every=2)
    for cfg in (pasgd(3, 2), pasgd(3, 2, momentum=0.5), easgd(3, 1, 0.3),
                mdsgd(3, TopK(5), momentum=0.5)):
        spec = RunSpec(mlp, cfg, **kw)
        sim = Simulator(spec, fast_path=False)
        assert sim.grad_path == ("vmap+fused-sgd" if cfg.momentum == 0 and cfg.compressor is None
                                 else "vmap")
        new = sim.run()
        with monkeypatch.context() as mp:
            mp.setattr(alg, "vmap_grad", _old_vmap_grad)
            old = run(spec, fast_path=False)
        np.testing.assert_allclose(new.u_final, old.u_final, rtol=0, atol=1e-14)
        np.testing.assert_allclose(new.loss, old.loss, rtol=1e-14)
        np.testing.assert_allclose(new.grad_norm2_avg, old.grad_norm2_avg, rtol=1e-13)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.compile's imports
def test_compile_falls_back_cleanly_without_a_compiler(logreg, monkeypatch):
    import empirics.algorithm as alg

    spec = RunSpec(logreg, pasgd(M, 2), 0.5, 8, batch_size=3, seed=1, record_every=4)
    eager = run(spec, fast_path=False)
    monkeypatch.setattr(alg, "_COMPILED", {})
    monkeypatch.setattr(alg, "_cpp_compiler", lambda: None)
    with pytest.warns(UserWarning, match="no C.. compiler found"):
        sim = Simulator(spec, fast_path=False, compile=True)
    assert sim.grad_path == "vmap+fused-sgd"
    np.testing.assert_array_equal(sim.run().u_final, eager.u_final)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.compile's imports
def test_compile_failure_falls_back_to_the_eager_path(logreg, monkeypatch):
    import empirics.algorithm as alg

    def broken_compile(fn, **kw):
        def raise_(*a, **k):
            raise RuntimeError("no backend here\nsecond line")
        return raise_

    spec = RunSpec(logreg, pasgd(M, 2), 0.5, 8, batch_size=3, seed=1, record_every=4)
    eager = run(spec, fast_path=False)
    monkeypatch.setattr(alg, "_COMPILED", {})
    monkeypatch.setattr(alg, "_cpp_compiler", lambda: "c++")
    monkeypatch.setattr(torch, "compile", broken_compile)
    sim = Simulator(spec, fast_path=False, compile=True)
    assert sim.grad_path == "vmap+compiled+fused-sgd"
    with pytest.warns(UserWarning, match="torch.compile failed .RuntimeError: no backend here."):
        res = sim.run()
    np.testing.assert_array_equal(res.u_final, eager.u_final)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.compile's imports
@pytest.mark.slow
def test_compiled_generic_path_equals_the_eager_one():
    """A real torch.compile (inductor, when a C++ compiler is present): same trajectory up to
    float rounding. Compiling takes tens of seconds."""
    import empirics.algorithm as alg

    if alg._cpp_compiler() is None:
        pytest.skip("no C++ compiler")
    p = LogisticRegression(n_samples=120, d=5, m=3, seed=4, l2=0.01)
    spec = RunSpec(p, dpsgd(ring(3), momentum=0.5), 0.5, 20, batch_size=4, seed=2,
                   record_every=5)
    eager = run(spec, fast_path=False)
    sim = Simulator(spec, fast_path=False, compile=True)
    assert sim.grad_path == "vmap+compiled"
    res = sim.run()
    np.testing.assert_allclose(res.u_final, eager.u_final, rtol=0, atol=1e-13)
    np.testing.assert_allclose(res.loss, eager.loss, rtol=1e-13)


# ---------------------------------------------------------------------------------------------
# default record and gradient-norm strides
# ---------------------------------------------------------------------------------------------
def test_default_strides_follow_the_cost_model_and_cover_whole_blocks(logreg):
    from empirics.spec import RECORD_BUDGET, default_strides

    big = LogisticRegression(n_samples=4000, d=50, m=8, seed=0)
    s, q = default_strides(big, 8, 4, 10_000)
    rho = (20_000 + big.n * big.dim) / (50_000 + 8 * 4 * big.dim)
    assert q == math.ceil(rho / RECORD_BUDGET - 1e-9) > 1  # dear ∇F: the stratified subsample
    assert s % q == 0 and s >= 10_000 // 100
    # a run takes them when left out; explicit values are kept; short runs keep samples
    spec = RunSpec(big, pasgd(8, 4), 0.1, 10_000, batch_size=4)
    assert (spec.record_every, spec.grad_every) == (s, q)
    assert default_strides(big, 8, 4, 10_000, record_every=7, grad_every=3) == (7, 3)
    s7, q7 = default_strides(big, 8, 4, 10_000, record_every=60)
    assert s7 == 60 and 60 % q7 == 0 and q7 <= q
    assert default_strides(big, 8, 4, 10_000, grad_every=5)[0] % 5 == 0
    assert default_strides(big, 8, 4, 20)[1] == 20  # at least one sample per run
    # a run with the defaults: every record's running average is finite after step 0
    res = simulate(logreg, pasgd(M, 2), lr=0.5, T=300, batch_size=2, seed=1)
    assert np.all(np.isfinite(res.grad_norm2_running[1:]))
    assert res.spec["record_every"] % res.spec["grad_every"] == 0


# ---------------------------------------------------------------------------------------------
# divergence, errors with partial results, saving
# ---------------------------------------------------------------------------------------------
def test_divergence_stops_with_step_and_partial_result(tmp_path):
    p = LeastSquares(n_samples=100, d=4, m=2, seed=0, condition_number=5)
    path = tmp_path / "run.json"
    # the divergence rule stops the run long before inf: ‖∇F(u_k)‖² > 10⁶·max(‖∇F(x₀)‖², 1)
    with pytest.raises(DivergenceError, match=r"diverged at step 2: ‖∇F\(u_k\)‖² = \S+ exceeds "
                       r"the divergence limit 1e\+06·max\(‖∇F\(x₀\)‖², 1\)"):
        simulate(p, pasgd(2, 2), lr=50.0, T=2000, batch_size=4, record_every=10, grad_every=1)
    # with the rule off (D = inf) the run goes on until NaN/inf, still stopped and named
    spec = RunSpec(p, pasgd(2, 2), 50.0, 2000, batch_size=4, record_every=10,
                   divergence=math.inf)
    with pytest.raises(DivergenceError, match=r"diverged at step \d+: .*(inf|nan)") as ei:
        run(spec, save=path)
    err = ei.value
    assert isinstance(err, RuntimeError)
    part = err.partial
    assert part.status == "diverged" and part.steps_done == err.step
    assert 0 < len(part) and part.step[-1] <= err.step
    assert np.all(np.isfinite(part.loss))
    saved = load_result(path)
    assert saved.status == "diverged"
    np.testing.assert_array_equal(saved.loss, part.loss)


def test_other_errors_carry_the_partial_record(logreg, tmp_path):
    def bad_lr(t: int) -> float:
        return 0.1 if t < 5 else -0.1

    with pytest.raises(ValueError, match=r"lr must be finite and > 0.*lr\(5\) = -0.1") as ei:
        simulate(logreg, pasgd(M, 2), lr=bad_lr, T=10, record_every=2,
                 save=tmp_path / "r.json")
    part = ei.value.partial
    assert part.status == "error" and list(part.step) == [0, 2, 4]
    assert load_result(tmp_path / "r.json").status == "error"


def test_checkpoints_during_the_run_keep_finished_records(logreg, tmp_path):
    """With save_every = 0 every record is flushed to disk while the run goes on: what a killed
    process leaves is the records so far, status "running", equal to the final ones."""
    path = tmp_path / "r.json"
    seen = {}

    def lr(t: int) -> float:
        if t == 7 and path.exists():  # mid-run, as a reader (or a crash) would find the file
            seen["mid"] = load_result(path)
        return 0.1

    res = simulate(logreg, pasgd(M, 2), lr=lr, T=12, record_every=3, save=path, save_every=0.0)
    mid = seen["mid"]
    assert mid.status == "running" and "steps 0..5 done" in mid.message
    assert list(mid.step) == [0, 3, 6]
    np.testing.assert_array_equal(mid.loss, res.loss[:3])
    assert load_result(path).status == "completed" and list(load_result(path).step)[-1] == 12


def test_result_json_round_trip(logreg, tmp_path):
    res = simulate(logreg, easgd(M, 2, 0.2), lr=0.3, T=6, record_every=2, grad_every=3,
                   progress=True)
    d = json.loads(res.to_json())
    assert d["spec"]["config"]["name"] == "easgd" and d["spec"]["v"] == 1
    assert d["spec"]["lr"] == {"kind": "constant", "eta": 0.3}
    assert d["spec"]["engine"]["grad_path"] == "linear_bmm+fused-sgd"
    assert d["spec"]["engine"]["mixing"] == ["dense"]  # W_α of EASGD, n = 5: dense is cheaper
    path = res.save(tmp_path / "sub" / "res.json")
    assert [q.name for q in path.parent.iterdir()] == ["res.json"]  # no temp file left
    back = load_result(path)
    for f in ("step", "loss", "grad_norm2", "consensus", "bits", "wall", "u_final",
              "comm_steps", "grad_norm2_at"):
        np.testing.assert_array_equal(getattr(back, f), getattr(res, f))
    assert np.isnan(back.grad_norm2_running[0]) and np.isnan(back.lr[-1])
    assert back.grad_norm2_avg == res.grad_norm2_avg
    assert "easgd" in repr(res) and "completed" in repr(res)


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------
def test_bad_input_messages(logreg):
    with pytest.raises(ValueError, match=r"W size does not match.*5×5.*problem.m = 4"):
        RunSpec(logreg, pasgd(5, 2), 0.1, 10)
    with pytest.raises(ValueError, match=r"W size does not match.*v = 1.*problem.m = 4"):
        RunSpec(logreg, easgd(3, 2, 0.1), 0.1, 10)
    with pytest.raises(ValueError, match=r"lr \(eta\) must be a finite number > 0"):
        RunSpec(logreg, pasgd(M, 2), 0.0, 10)
    with pytest.raises(ValueError, match="lr \\(eta\\) must be a finite number > 0"):
        RunSpec(logreg, pasgd(M, 2), -1.0, 10)
    with pytest.raises(ValueError, match="T must be an integer >= 1"):
        RunSpec(logreg, pasgd(M, 2), 0.1, 0)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        RunSpec(logreg, pasgd(M, 2), 0.1, 10, batch_size=0)
    with pytest.raises(ValueError, match="record_every must be an integer >= 1"):
        RunSpec(logreg, pasgd(M, 2), 0.1, 10, record_every=0)
    with pytest.raises(ValueError, match="dtype float32 differs from the problem's"):
        RunSpec(logreg, pasgd(M, 2), 0.1, 10, dtype="float32")
    with pytest.raises(ValueError, match="device meta differs from the problem's device cpu"):
        RunSpec(logreg, pasgd(M, 2), 0.1, 10, device="meta")
    with pytest.raises(ValueError, match=r"config must be an empirics\.configs\.Config"):
        RunSpec(logreg, Periodic(average(M), 2), 0.1, 10)
    with pytest.raises(ValueError, match="lr must be a number > 0 or a callable"):
        RunSpec(logreg, pasgd(M, 2), "fast", 10)


def test_bad_configurations():
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\)"):
        pasgd(M, 2, momentum=1.0)
    with pytest.raises(ValueError, match="nesterov=True needs momentum > 0"):
        pasgd(M, 2, nesterov=True)
    with pytest.raises(ValueError, match="tau must be an integer >= 1"):
        pasgd(M, 0)
    with pytest.raises(ValueError, match="v = 4 auxiliary variables leave no worker"):
        Config("x", Periodic(average(4), 1), v=4)
    with pytest.raises(ValueError, match="compressor must be"):
        pasgd(M, 2, compressor=lambda x: x)
    with pytest.raises(ValueError, match="mdsgd needs a compressor"):
        mdsgd(M, None)
    with pytest.raises(ValueError, match=r"W is 5×5 but m = 4"):
        mdsgd(M, TopK(1), W=ring(5))


def test_schedules_that_do_not_communicate_when_needed(logreg):
    with pytest.raises(ValueError, match=r"mixes only once, after the last step \(T = 10\)"):
        simulate(logreg, easgd(M, 10, 0.2), lr=0.1, T=10)
    with pytest.raises(ValueError, match="mixes only once"):
        simulate(logreg, dpsgd(ring(M)).with_options(
            schedule=Periodic(ring(M), 50)), lr=0.1, T=10)
    with pytest.raises(ValueError, match="never communicates within T = 10"):
        simulate(logreg, configuration(FromCallable(lambda k: None, M)), lr=0.1, T=10)
    # the check streams the schedule: a 10⁹-step run is checked without listing its rounds
    Simulator(RunSpec(logreg, dpsgd(ring(M)), 0.1, 10**9)).check_schedule()
    # exact averaging once at the end is one-shot averaging: allowed
    assert simulate(logreg, pasgd(M, 100), lr=0.1, T=10).comm_steps.tolist() == [9]
    # a callable schedule handing the engine a W of the wrong size
    bad = configuration(FromCallable(lambda k: ring(M), M)).with_options(
        schedule=_WrongSize(M))
    with pytest.raises(ValueError, match=r"W size must equal m \+ v = 4 \+ 0 = 4"):
        simulate(logreg, bad, lr=0.1, T=5)


class _WrongSize(Periodic):
    """A schedule claiming size n but yielding a 5×5 W (a buggy user schedule)."""

    def __init__(self, n: int):
        super().__init__(ring(5), 1)
        self._claimed = n

    @property
    def n(self) -> int:
        return self._claimed


def test_compressor_that_cannot_act_on_d(logreg):
    with pytest.raises(ValueError, match="k must be ≤ d"):
        simulate(logreg, mdsgd(M, TopK(50)), lr=0.1, T=3)


def test_trace_refuses_huge_runs(logreg):
    with pytest.raises(ValueError, match="trace=True would store"):
        simulate(logreg, pasgd(M, 2), lr=0.1, T=10**7, trace=True)


def test_sync_config_is_a_configuration(logreg):
    cfg = synchronous(M)
    assert cfg.m == M and cfg.v == 0 and cfg.to_dict()["schedule"]["type"] == "Periodic"
    assert easgd(M, 2, 0.2).to_dict()["v"] == 1
    json.dumps(RunSpec(logreg, easgd(M, 2, 0.2), InverseTime(1.0, 2.0), 5).to_dict())
