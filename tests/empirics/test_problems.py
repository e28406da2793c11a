"""Tests of empirics.problems: constants against independent computations, the engine contract,
seeds, heterogeneity, bad input.

Statistical checks compare a Monte-Carlo mean with an exact value at 5 standard errors (a false
alarm rate of about 6e-7 per check under the normal approximation); every draw is seeded, so the
outcome is also reproducible.
"""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import grad, vmap

from empirics.data import split_shards
from empirics.problems import (
    Constants,
    Estimate,
    LeastSquares,
    LogisticRegression,
    MLPClassifier,
    NoisyQuadratic,
    PiecewiseQuadratic1D,
    seed_for,
)

torch.set_num_threads(1)

FACTORIES = {
    "quadratic": lambda **kw: NoisyQuadratic(d=4, m=3, c=0.7, sigma=0.3, **kw),
    "piecewise": lambda **kw: PiecewiseQuadratic1D(m=3, **kw),
    "lstsq": lambda **kw: LeastSquares(n_samples=301, d=5, m=3, condition_number=20,
                                       heterogeneity=0.5, **kw),
    "logistic": lambda **kw: LogisticRegression(n_samples=300, d=5, m=3, condition_number=4,
                                                heterogeneity=0.5, **kw),
    "mlp": lambda **kw: MLPClassifier(n_samples=300, d_in=4, hidden=(6, 5), n_classes=3, m=3,
                                      heterogeneity=0.5, fstar_iters=40, **kw),
}


def _z_ok(mean: float, exact: float, se: float, z: float = 5.0) -> bool:
    return abs(mean - exact) <= z * se + 1e-12 * max(1.0, abs(exact))


def _random_point(p, seed: int = 3, scale: float = 0.5) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: v + scale * torch.randn(v.shape, generator=g, dtype=v.dtype)
            for k, v in p.init_params().items()}


# ---------------------------------------------------------------------------------------------
# seeds and plain data
# ---------------------------------------------------------------------------------------------
@given(st.integers(0, 2**40), st.integers(0, 1000), st.integers(0, 2**40), st.integers(0, 1000))
@settings(max_examples=50, deadline=None)
def test_seed_for_injective_and_documented(s1, w1, s2, w2):
    assert seed_for(s1, w1) == (s1 * 1_000_003 + w1) % 2**63
    if (s1, w1) != (s2, w2):
        assert seed_for(s1, w1) != seed_for(s2, w2)


def test_seed_for_rejects_bad_input():
    with pytest.raises(ValueError, match=r"seed must be an integer >= 0 \(got -1\)"):
        seed_for(-1, 0)
    with pytest.raises(ValueError, match="worker must be an integer"):
        seed_for(0, -2)


def test_estimate_and_constants_are_plain_data():
    e = Estimate(np.float64(2.5), "closed form")
    assert e.exact and float(e) == 2.5 and "2.5 exact" in repr(e)
    with pytest.raises(ValueError, match="Estimate value must be a finite number"):
        Estimate(float("nan"), "broken")
    with pytest.raises(ValueError, match=r"uncertainty must be a number >= 0 \(got -1.0\)"):
        Estimate(1.0, "x", -1.0)
    c = FACTORIES["lstsq"]().constants
    d = json.loads(json.dumps(c.to_dict()))
    assert d["L"]["value"] == c.L.value and d["beta"] is None
    back = Constants.from_dict(d)
    assert back == c and back.sigma2.detail == c.sigma2.detail
    assert "sigma2" in repr(c) and isinstance(c, Constants)
    assert c.initial_gap == pytest.approx(c.F0.value - c.F_star.value)


# ---------------------------------------------------------------------------------------------
# the contract, for every problem
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=list(FACTORIES))
def problem(request):
    return FACTORIES[request.param]()


def test_one_stream_sampling_and_seeds_reproduce(problem):
    """One generator per run (seed_for(seed, 0)); sample_all draws every worker's batch at once,
    sample_rows is the same draw restricted to some rows (what a distributed rank keeps)."""
    g = problem.generator(11)
    assert g.initial_seed() == seed_for(11, 0)
    stacked = problem.sample_all(7, g)
    for t in stacked:
        assert t.shape[:2] == (problem.m, 7)
    nxt = problem.sample_all(7, g)
    for rows in ([0], [2], [1, 2]):
        g2 = problem.generator(11)
        got = problem.sample_rows(rows, 7, g2)
        for a, b in zip(got, stacked, strict=True):
            assert torch.equal(a, b[rows])
        # the generator advanced exactly as sample_all's: the next draws agree
        for a, b in zip(problem.sample_rows(rows, 7, g2), nxt, strict=True):
            assert torch.equal(a, b[rows])
    again = problem.sample_all(7, problem.generator(11))
    legacy = problem.sample_all(7, problem.generators(11))  # the old spelling: a 1-element list
    other = problem.sample_all(7, problem.generator(12))
    assert all(torch.equal(a, b) for a, b in zip(stacked, again, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(stacked, legacy, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(stacked, other, strict=True))


@pytest.mark.parametrize("name", ["lstsq", "logistic", "mlp"])
def test_finite_sum_draw_is_one_randint_of_shard_indices(name):
    """Row i of sample_all is worker i's batch: indices uniform in its shard from one (m, b)
    randint (checked against an independent gather); on the CPU the same numbers as calling
    sample(i, b, g) for i = 0..m−1 in turn from one generator; out= reuses the buffer."""
    p = FACTORIES[name]()
    b = 9
    got = p.sample_all(b, p.generator(4))
    g = torch.Generator().manual_seed(seed_for(4, 0))
    j = torch.randint(p.n_per, (p.m, b), generator=g)
    x, y = p.data()
    for i in range(p.m):
        assert torch.equal(got[0][i], x[i * p.n_per + j[i]])
        assert torch.equal(got[1][i], y[i * p.n_per + j[i]])
    g = p.generator(4)
    per = [p.sample(i, b, g) for i in range(p.m)]
    for k, t in enumerate(got):
        assert torch.equal(t, torch.stack([q[k] for q in per]))
    g = p.generator(4)
    first = p.sample_all(b, g)
    ptrs = [t.data_ptr() for t in first]
    second = p.sample_all(b, g, out=first)
    assert [t.data_ptr() for t in second] == ptrs
    g2 = p.generator(4)
    p.sample_all(b, g2)
    for a, c in zip(second, p.sample_all(b, g2), strict=True):  # the second step's draw
        assert torch.equal(a, c)
    assert not torch.equal(second[0], got[0])


def test_vmap_grad_equals_per_worker_autograd(problem):
    x0 = problem.init_params()
    params = {k: torch.stack([v + 0.1 * i for i in range(problem.m)]) for k, v in x0.items()}
    batch = problem.sample_all(5, problem.generator(0))
    g = vmap(grad(problem.loss))(params, batch)
    for i in range(problem.m):
        p_i = {k: v[i].clone().requires_grad_(True) for k, v in params.items()}
        loss = problem.loss(p_i, tuple(t[i] for t in batch))
        auto = torch.autograd.grad(loss, list(p_i.values()))
        for k, a in zip(p_i, auto, strict=True):
            torch.testing.assert_close(g[k][i], a, rtol=1e-12, atol=1e-12)


def test_full_grad_and_norm_are_autograd_of_full_loss(problem):
    x = _random_point(problem)
    p = {k: v.clone().requires_grad_(True) for k, v in x.items()}
    auto = torch.autograd.grad(problem.objective(p), list(p.values()))
    fg = problem.full_grad(x)
    for k, a in zip(p, auto, strict=True):
        torch.testing.assert_close(fg[k], a, rtol=1e-12, atol=1e-14)
    assert problem.grad_norm2(x) == pytest.approx(sum(float((a**2).sum()) for a in auto),
                                                  rel=1e-12)
    assert problem.dim == sum(v.numel() for v in x.values())


@pytest.mark.parametrize("name", ["lstsq", "logistic", "mlp"])
def test_global_objective_is_mean_of_worker_objectives(name):
    problem = FACTORIES[name]()
    x = _random_point(problem)
    per = [problem.worker_objective(x, i) for i in range(problem.m)]
    assert problem.full_loss(x) == pytest.approx(np.mean(per), rel=1e-12)
    wg = problem.worker_grads(x)
    for k, v in problem.full_grad(x).items():
        torch.testing.assert_close(wg[k].mean(0), v, rtol=1e-10, atol=1e-12)


def test_minibatch_gradient_is_unbiased_with_variance_sigma2_over_b(problem):
    """E g = ∇F_i and E‖g − ∇F_i‖² = sigma2_at(x, b, i), by Monte Carlo with ``sample``."""
    x, b, worker, n = _random_point(problem), 4, problem.m - 1, 3000
    gi = torch.cat([v.reshape(-1) for v in problem.worker_grad(x, worker).values()])
    est = problem.sigma2_mc(x, b, worker, n, torch.Generator().manual_seed(5))
    assert _z_ok(est.value, problem.sigma2_at(x, b, worker), est.uncertainty)
    gen = torch.Generator().manual_seed(6)
    batches = [problem.sample(worker, b, gen) for _ in range(n)]
    stacked = tuple(torch.stack(parts) for parts in zip(*batches, strict=True))
    g = vmap(grad(problem.loss), in_dims=(None, 0))(x, stacked)
    flat = torch.cat([v.reshape(n, -1) for v in g.values()], 1)
    se = flat.std(0) / math.sqrt(n)
    assert torch.all((flat.mean(0) - gi).abs() <= 5 * se + 1e-12)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_float32_and_same_x0_across_dtypes(name):
    p32, p64 = FACTORIES[name](dtype=torch.float32), FACTORIES[name]()
    x32, x64 = p32.init_params(), p64.init_params()
    for k in x64:
        assert x32[k].dtype == torch.float32
        torch.testing.assert_close(x32[k].double(), x64[k], rtol=1e-6, atol=1e-7)
    batch = p32.sample(0, 3, torch.Generator().manual_seed(0))
    assert all(t.dtype in (torch.float32, torch.int64) for t in batch)
    loss = p32.loss(x32, batch)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert p32.full_loss(x32) == pytest.approx(p64.full_loss(x64), rel=1e-5)
    assert p32.init_params(dtype=torch.float64)[next(iter(x64))].dtype == torch.float64


def test_device_argument_and_minimiser(problem):
    x = problem.init_params(device="cpu")
    assert all(v.device == torch.device("cpu") for v in x.values())
    batch = problem.sample(0, 2, torch.Generator(device="cpu").manual_seed(0))
    assert all(t.device == problem.device for t in batch)
    if hasattr(problem, "x_star"):  # convex problems: ∇F(x*) = 0
        assert problem.grad_norm2(problem.x_star) <= 1e-20


def test_pickle_round_trip(problem):
    """Spawned worker processes (distributed backend) receive the problem by pickling."""
    twin = pickle.loads(pickle.dumps(problem))
    x = _random_point(problem)
    assert twin.full_loss(x) == problem.full_loss(x)
    a = twin.sample_all(3, twin.generator(2))
    b = problem.sample_all(3, problem.generator(2))
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))


@pytest.mark.parametrize("name", list(FACTORIES))
def test_no_transform_wrapped_tensor_is_kept(name):
    """A tensor made inside torch.func.grad is a dead wrapper once grad returns; the first use of
    a new dtype inside a transform must not cache one (it broke pickling and later calls)."""
    p = FACTORIES[name](dtype=torch.float32)
    x64 = p.init_params(dtype=torch.float64)
    g1 = p.full_grad(x64)  # float64 data made inside grad(objective)
    g2 = p.full_grad(x64)
    for k in g1:
        assert torch.equal(g1[k], g2[k]) and g1[k].dtype == torch.float64
    wrapped = torch._C._functorch.is_functorch_wrapped_tensor
    assert not any(wrapped(t) for v in vars(p).values() if isinstance(v, dict)
                   for b in v.values() for t in (b if isinstance(b, tuple) else (b,))
                   if isinstance(t, torch.Tensor))
    twin = pickle.loads(pickle.dumps(p))
    assert twin.full_loss(x64) == p.full_loss(x64)


def test_bad_sample_arguments_are_named(problem):
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        problem.sample(0, 0, g)
    with pytest.raises(ValueError, match=r"worker must be an integer in \[0, 3\)"):
        problem.sample(3, 2, g)
    with pytest.raises(ValueError, match=r"must be one torch\.Generator.*sequence of 2"):
        problem.sample_all(2, problem.generators(0) * 2)
    with pytest.raises(ValueError, match="batch_size"):
        problem.sigma2_at(problem.init_params(), 0)


# ---------------------------------------------------------------------------------------------
# closed-form stochastic problems
# ---------------------------------------------------------------------------------------------
def test_noisy_quadratic_constants_are_the_papers():
    p = NoisyQuadratic()  # d = 3, a = (1, 2, 3), c = 1, σ = 0.5, x₀ = 1 (digest §4.6 A)
    c = p.constants
    assert (c.L.value, c.mu.value, c.F_star.value, c.F0.value) == (3.0, 1.0, 0.0, 3.0)
    assert c.sigma2.value == pytest.approx(3 * 0.25) and c.beta.value == 1.0
    x = {"x": torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)}
    np.testing.assert_allclose(p.full_grad(x)["x"].numpy(), [0.3, -2.4, 6.0], rtol=1e-15)
    # gradient-dependent noise: c²‖Ax‖² + dσ² = β‖∇F‖² + σ²
    assert p.sigma2_at(x, 2) == pytest.approx((p.grad_norm2(x) + 0.75) / 2, rel=1e-14)


def test_noisy_quadratic_noise_variance_by_monte_carlo():
    p = NoisyQuadratic(d=5, a=[0.5, 1, 2, 4, 8], c=1.3, sigma=0.7, m=2)
    x = {"x": torch.linspace(-1, 1, 5, dtype=torch.float64)}
    n, b = 20000, 3
    z1, z2 = p.sample(1, n * b, torch.Generator().manual_seed(1))
    batches = (z1.reshape(n, b, 5), z2.reshape(n, b, 5))
    g = vmap(grad(p.loss), in_dims=(None, 0))(x, batches)["x"]
    dev2 = ((g - p.full_grad(x)["x"]) ** 2).sum(1)
    ax = np.array([0.5, 1, 2, 4, 8]) * x["x"].numpy()
    exact = (1.3**2 * ax @ ax + 5 * 0.7**2) / b  # independent of the class's code
    assert _z_ok(float(dev2.mean()), exact, float(dev2.std()) / math.sqrt(n))


def test_piecewise_quadratic_branches_and_constants():
    p = PiecewiseQuadratic1D(mu=1.5, sigma=8.0, x0=2.0)
    for xv, gv in [(2.0, 6.0), (-2.0, -3.0), (0.0, 0.0)]:
        x = {"x": torch.tensor([xv], dtype=torch.float64)}
        assert p.full_grad(x)["x"].item() == pytest.approx(gv)
    c = p.constants
    assert (c.L.value, c.mu.value, c.sigma2.value, c.F0.value) == (3.0, 1.5, 64.0, 6.0)
    # L-smooth and μ-strongly monotone gradient on random pairs
    xs = np.random.default_rng(0).uniform(-5, 5, size=(200, 2))
    gr = lambda v: p.full_grad({"x": torch.tensor([v], dtype=torch.float64)})["x"].item()  # noqa: E731
    for a, b in xs:
        dg = gr(a) - gr(b)
        assert abs(dg) <= 3.0 * abs(a - b) + 1e-12 and dg * (a - b) >= 1.5 * (a - b) ** 2 - 1e-12


def test_closed_form_problems_reject_bad_input():
    with pytest.raises(ValueError, match="d must be an integer >= 1"):
        NoisyQuadratic(d=0)
    with pytest.raises(ValueError, match="a must be 3 finite positive numbers"):
        NoisyQuadratic(a=[1, -2, 3])
    with pytest.raises(ValueError, match="c must be a finite number >= 0"):
        NoisyQuadratic(c=-1)
    with pytest.raises(ValueError, match="m must be an integer >= 1"):
        PiecewiseQuadratic1D(m=0)
    with pytest.raises(ValueError, match="mu must be a finite number > 0"):
        PiecewiseQuadratic1D(mu=0)
    with pytest.raises(ValueError, match=r"dtype must be torch\.float32 or torch\.float64"):
        NoisyQuadratic(dtype=torch.float16)


# ---------------------------------------------------------------------------------------------
# least squares and logistic regression
# ---------------------------------------------------------------------------------------------
@given(st.integers(1, 12), st.floats(1.0, 1e4), st.floats(0.0, 0.5), st.integers(1, 4))
@settings(max_examples=25, deadline=None)
def test_least_squares_constants_match_numpy(d, kappa, l2, m):
    kappa = 1.0 if d == 1 else kappa
    p = LeastSquares(n_samples=40 + 3 * d, d=d, m=m, condition_number=kappa, l2=l2, seed=d)
    x, y = (t.numpy() for t in p.data())
    n = x.shape[0]
    ev = np.linalg.eigvalsh(x.T @ x / n)
    c = p.constants
    assert c.L.value == pytest.approx(ev[-1] + l2, rel=1e-10)
    assert c.mu.value == pytest.approx(ev[0] + l2, rel=1e-10)
    assert c.L.value == pytest.approx(1 + l2, rel=1e-9)  # the requested spectrum, exactly
    assert c.mu.value == pytest.approx(1 / kappa + l2, rel=1e-9)
    w = np.linalg.solve(x.T @ x / n + l2 * np.eye(d), x.T @ y / n)
    f_star = 0.5 * np.mean((x @ w - y) ** 2) + 0.5 * l2 * w @ w
    assert c.F_star.value == pytest.approx(f_star, rel=1e-9, abs=1e-13)
    assert c.F0.value == pytest.approx(0.5 * np.mean(y**2), rel=1e-12)


def test_least_squares_sigma2_and_zeta2_match_closed_forms():
    p = LeastSquares(n_samples=400, d=6, m=4, condition_number=30, noise=0.5, l2=0.1,
                     heterogeneity=0.7)
    x, y = (t.numpy() for t in p.data())
    w = np.random.default_rng(1).standard_normal(6)
    per = x * (x @ w - y)[:, None] + 0.1 * w  # ∇f_j(w), rows
    shards = per.reshape(4, 100, 6)
    gi = shards.mean(1)
    s2 = ((shards - gi[:, None]) ** 2).sum(2).mean(1)
    wt = {"w": torch.from_numpy(w)}
    for i in range(4):
        assert p.sigma2_at(wt, 3, worker=i) == pytest.approx(s2[i] / 3, rel=1e-11)
    assert p.sigma2_at(wt) == pytest.approx(s2.mean(), rel=1e-11)
    assert p.zeta2_at(wt) == pytest.approx(((gi - gi.mean(0)) ** 2).sum(1).mean(), rel=1e-10)
    c = p.constants
    assert c.zeta2_star.value == pytest.approx(p.zeta2_at(p.x_star), rel=1e-12)
    assert c.sigma2.value == pytest.approx(max(c.sigma2.detail["max_over_workers"]))
    assert c.sigma2.detail["at_x_star"] == pytest.approx(
        max(p.sigma2_at(p.x_star, worker=i) for i in range(4)), rel=1e-12)
    l_loc = max(np.linalg.eigvalsh(s.T @ s / 100)[-1] for s in x.reshape(4, 100, 6)) + 0.1
    assert c.L_local.value == pytest.approx(l_loc, rel=1e-10)


def test_logistic_solution_is_stationary_and_constants_bound_the_hessian():
    p = LogisticRegression(n_samples=500, d=8, m=2, condition_number=10, l2=1e-2)
    c = p.constants
    assert p.grad_norm2(p.x_star) <= 1e-18  # torch autograd, independent of the numpy Newton
    x, s = (t.numpy() for t in p.data())
    f_star = np.mean(np.logaddexp(0, -s * (x @ p.x_star["w"].numpy()))) \
        + 0.5e-2 * p.x_star["w"].numpy() @ p.x_star["w"].numpy()
    assert c.F_star.value == pytest.approx(f_star, rel=1e-12)
    assert c.L.value == pytest.approx(np.linalg.eigvalsh(x.T @ x)[-1] / (4 * 500) + 1e-2,
                                      rel=1e-10)
    assert c.mu.value == 1e-2
    for pt in (p.x_star, p.init_params(), _random_point(p, scale=3.0)):
        h = torch.func.hessian(lambda w: p.objective({"w": w}))(pt["w"])
        ev = torch.linalg.eigvalsh(h)
        assert c.mu.value - 1e-12 <= ev[0] and ev[-1] <= c.L.value + 1e-12
    w = np.random.default_rng(2).standard_normal(8)
    sig = 1 / (1 + np.exp(s * (x @ w)))
    per = (-(s * sig))[:, None] * x + 1e-2 * w
    sh = per.reshape(2, 250, 8)
    s2 = ((sh - sh.mean(1, keepdims=True)) ** 2).sum(2).mean(1)
    assert p.sigma2_at({"w": torch.from_numpy(w)}, worker=1) == pytest.approx(s2[1], rel=1e-11)


def test_logistic_without_regularisation_on_separable_data_fails_loudly():
    p = LogisticRegression(n_samples=20, d=10, m=1, l2=0.0, signal=50.0)
    with pytest.raises(ValueError, match="l2 = 0 with linearly separable data"):
        _ = p.constants
    q = LogisticRegression(n_samples=400, d=3, m=1, l2=0.0, signal=1.0)  # overlapping classes
    assert q.constants.mu.value == 0.0 and q.grad_norm2(q.x_star) <= 1e-18


@pytest.mark.parametrize("cls", [LeastSquares, LogisticRegression])
def test_concept_shift_heterogeneity(cls):
    kw = dict(n_samples=1600, d=5, m=8, seed=4)
    ps = {h: cls(heterogeneity=h, **kw) for h in (0.0, 0.5, 1.0)}
    z = {h: p.constants.zeta2_star.value for h, p in ps.items()}
    assert z[1.0] > 10 * z[0.0] and z[0.5] > 3 * z[0.0] and z[1.0] > 2 * z[0.5]
    # the features (hence L, μ) do not depend on h; at h = 0 the data do not depend on m
    assert ps[1.0].constants.L.value == pytest.approx(ps[0.0].constants.L.value, rel=1e-12)
    one = cls(heterogeneity=0.0, **{**kw, "m": 1})
    assert one.constants.F_star.value == pytest.approx(ps[0.0].constants.F_star.value, rel=1e-9)
    # h = 0 shards are i.i.d.: ζ²(x*) is the sampling noise of a shard mean, ≈ mean σ_i²/n_per
    s2 = ps[0.0].sigma2_at(ps[0.0].x_star)
    assert 0.2 * s2 / 200 < z[0.0] < 5 * s2 / 200


def _np_kappa2_segment(per_grad, x0: np.ndarray, xs: np.ndarray, m: int) -> tuple[float, list]:
    """κ² = max over x₀ + t(x* − x₀), t = 0, ¼, ½, ¾, 1 of (1/m) Σ_i ‖∇F_i(x) − ∇F(x)‖², from
    per-row gradients ``per_grad(w)`` (numpy, shards of equal size, independent of the code)."""
    vals = []
    for t in (0.0, 0.25, 0.5, 0.75, 1.0):
        gi = per_grad((1 - t) * x0 + t * xs).reshape(m, -1, x0.size).mean(1)
        vals.append(float(((gi - gi.mean(0)) ** 2).sum(1).mean()))
    return max(vals), vals


def test_kappa2_of_least_squares_and_logistic_against_numpy():
    """κ² of Cooperative SGD's Theorem 2: the maximum of (1/m) Σ_i ‖∇F_i − ∇F‖² over the points σ²
    is a maximum over (the segment x₀ → x*), typed in with numpy."""
    ls = LeastSquares(n_samples=400, d=6, m=4, condition_number=30, noise=0.5, l2=0.1,
                      heterogeneity=0.7)
    x, y = (t.numpy() for t in ls.data())
    k2, vals = _np_kappa2_segment(lambda w: x * (x @ w - y)[:, None] + 0.1 * w,
                                  np.zeros(6), ls.x_star["w"].numpy(), 4)
    c = ls.constants
    assert c.kappa2.value == pytest.approx(k2, rel=1e-10)
    assert c.kappa2.detail["values"] == pytest.approx(vals, rel=1e-10)
    assert c.kappa2.value >= c.zeta2_x0.value and c.kappa2.value >= c.zeta2_star.value
    assert "segment x₀→x*" in c.kappa2.method and "Theorem 2" in c.kappa2.method
    lr = LogisticRegression(n_samples=600, d=5, m=3, l2=1e-2, heterogeneity=1.0, seed=2)
    x, s = (t.numpy() for t in lr.data())

    def per(w):
        sig = 1 / (1 + np.exp(s * (x @ w)))
        return (-(s * sig))[:, None] * x + 1e-2 * w

    k2, _ = _np_kappa2_segment(per, np.zeros(5), lr.x_star["w"].numpy(), 3)
    assert lr.constants.kappa2.value == pytest.approx(k2, rel=1e-10)
    assert k2 > 1e-3  # a heterogeneous split
    # i.i.d. by construction: κ² = 0 exactly
    shared = LogisticRegression(n_samples=600, d=5, m=3, l2=1e-2, sampling="shared")
    assert shared.constants.kappa2.value == 0.0 and shared.constants.kappa2.exact
    for p in (NoisyQuadratic(d=3, m=4), PiecewiseQuadratic1D(m=2)):
        assert p.constants.kappa2.value == 0.0 and p.constants.kappa2.exact
    # plain data: survives the JSON round trip
    d = json.loads(json.dumps(c.to_dict()))
    assert Constants.from_dict(d).kappa2.value == c.kappa2.value


def test_mlp_kappa2_is_the_max_over_its_sigma2_points(mlp):
    c = mlp.constants
    assert c.kappa2.detail["points"] == c.sigma2.detail["points"]
    assert c.kappa2.value == max(c.kappa2.detail["values"])
    assert c.kappa2.detail["values"][0] == pytest.approx(c.zeta2_x0.value, rel=1e-12)


def test_split_shards_rejects_nothing_and_partitions():
    rng = np.random.default_rng(0)
    for n, m, h in [(10, 10, 0.3), (103, 4, 0.0), (103, 4, 1.0), (57, 5, 0.5)]:
        s = split_shards(rng.standard_normal(n), m, h, rng)
        assert s.shape == (m, n // m) and len(np.unique(s)) == s.size and s.max() < n


@given(st.integers(1, 200), st.integers(1, 20), st.floats(0, 1), st.integers(0, 5))
@settings(max_examples=40, deadline=None)
def test_split_shards_property(n, m, h, n_keys):
    if n < m:
        return
    rng = np.random.default_rng(n * 7 + m)
    keys = rng.integers(0, n_keys + 1, n)
    s = split_shards(keys, m, h, rng)
    assert s.shape == (m, n // m) and len(np.unique(s)) == s.size
    if h == 1.0:
        k = keys[s]
        assert np.all(k[:-1].max(1) <= k[1:].min(1))


def test_finite_sum_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="condition_number must be a finite number >= 1"):
        LeastSquares(condition_number=0.5)
    with pytest.raises(ValueError, match=r"heterogeneity must be in \[0, 1\]"):
        LogisticRegression(heterogeneity=1.5)
    with pytest.raises(ValueError, match="n_samples must be >= m"):
        LeastSquares(n_samples=10, d=2, m=16)
    with pytest.raises(ValueError, match="n_samples must be >= d"):
        LeastSquares(n_samples=8, d=9)
    with pytest.raises(ValueError, match="condition_number must be 1 when d = 1"):
        LeastSquares(d=1, condition_number=3)
    with pytest.raises(ValueError, match="l2 must be a finite number >= 0"):
        LogisticRegression(l2=-1)
    with pytest.raises(ValueError, match="d must be an integer >= 1"):
        LogisticRegression(d=0)
    with pytest.raises(ValueError, match=r"dataset must be one of \['synthetic'\] \(got 'mnist'\)"):
        MLPClassifier(dataset="mnist")
    with pytest.raises(ValueError, match="hidden must be an integer >= 1"):
        MLPClassifier(hidden=(8, 0))
    with pytest.raises(ValueError, match="n_classes must be an integer >= 2"):
        MLPClassifier(n_classes=1)


def test_samples_come_from_the_workers_shard():
    p = FACTORIES["lstsq"]()
    x, y = p.data()
    for i in range(p.m):
        xb, yb = p.sample(i, 50, torch.Generator().manual_seed(i))
        rows = p.shards[i]
        # every sampled row is a row of shard i, and of no other shard
        hit = (xb[:, None, :] == x[rows][None]).all(-1)
        assert torch.all(hit.any(1))
        assert torch.equal(yb, y[rows][hit.float().argmax(1)])
    assert sorted(p.shard_indices.ravel().tolist()) == sorted(set(p.shard_indices.ravel()))


def test_uneven_sample_count_drops_the_remainder_and_keeps_the_spectrum():
    p = LeastSquares(n_samples=1003, d=4, m=4, condition_number=8)
    assert (p.n, p.n_per) == (1000, 250)
    assert p.constants.mu.value == pytest.approx(1 / 8, rel=1e-10)


# ---------------------------------------------------------------------------------------------
# MLP: estimated constants
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mlp():
    return MLPClassifier(n_samples=240, d_in=3, hidden=8, n_classes=3, m=2, fstar_iters=60,
                         n_random_points=1, seed=1)


def test_mlp_L_matches_dense_hessian(mlp):
    c = mlp.constants
    assert c.mu is None and c.L.detail["points"][0] == "x0"
    theta = torch.cat([v.reshape(-1) for v in mlp.init_params().values()])
    h = torch.func.hessian(mlp._flat_objective)(theta)
    assert c.L.detail["values"][0] == pytest.approx(float(torch.linalg.eigvalsh(h).abs().max()),
                                                    rel=1e-4)
    vals = c.L.detail["values"]
    assert c.L.value == max(vals) and c.L.uncertainty == pytest.approx(max(vals) - min(vals))


def test_mlp_fstar_sigma2_and_reproducibility(mlp):
    c = mlp.constants
    assert 0 <= c.F_star.value < c.F0.value and c.F_star.uncertainty == c.F_star.value
    assert c.F0.value == pytest.approx(mlp.full_loss(mlp.init_params()), rel=1e-15)
    x0 = mlp.init_params()
    s2 = max(mlp.sigma2_at(x0, worker=i) for i in range(2))
    assert c.sigma2.detail["max_over_workers"][0] == pytest.approx(s2, rel=1e-12)
    assert c.sigma2.value == max(c.sigma2.detail["max_over_workers"])
    twin = MLPClassifier(n_samples=240, d_in=3, hidden=8, n_classes=3, m=2, fstar_iters=60,
                         n_random_points=1, seed=1)
    assert twin.constants.to_dict() == c.to_dict()
    other = MLPClassifier(n_samples=240, d_in=3, hidden=8, n_classes=3, m=2, seed=2)
    assert not torch.equal(other.data()[0], mlp.data()[0])


def test_mlp_one_pass_sigma2_equals_per_sample_vmap():
    from empirics.problems import FiniteSumProblem

    p = MLPClassifier(n_samples=300, d_in=4, hidden=(6, 5), n_classes=3, m=3, l2=0.1,
                      heterogeneity=0.5)
    for x in (p.init_params(), _random_point(p, scale=1.0)):
        fast = p._sigma2_workers(x)
        slow = FiniteSumProblem._sigma2_workers(p, x)  # generic: vmap(grad) per sample
        torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-14)


def test_mlp_constants_progress_bar_and_cache(capsys):
    kw = dict(n_samples=90, d_in=3, hidden=4, n_classes=3, m=3, fstar_iters=10,
              n_random_points=0, power_iters=20)
    p = MLPClassifier(**kw)
    c = p.compute_constants(progress=True)
    assert "MLP constants" in capsys.readouterr().err
    assert p.constants is c  # cached
    assert MLPClassifier(**kw).constants == c  # the bar does not change the numbers


def test_mlp_label_skew_increases_dissimilarity():
    kw = dict(n_samples=400, d_in=5, hidden=8, n_classes=4, m=4, seed=3)
    iid, skew = MLPClassifier(heterogeneity=0.0, **kw), MLPClassifier(heterogeneity=1.0, **kw)
    x0 = iid.init_params()
    assert skew.zeta2_at(x0) > 10 * iid.zeta2_at(x0)
    labels = skew.data()[1].reshape(4, 100)
    assert all(len(torch.unique(row)) == 1 for row in labels)  # 4 classes on 4 workers
    assert sorted(torch.unique(iid.data()[1].reshape(4, 100)[0]).tolist()) == [0, 1, 2, 3]


# --- sampling="shared": every worker draws from all rows (the i.i.d. setting) ----------------
def test_shared_sampling_is_iid_with_exact_constants():
    import numpy as np
    import torch

    from empirics.problems import LeastSquares, LogisticRegression

    for cls in (LogisticRegression, LeastSquares):
        p = cls(n_samples=300, d=5, m=3, l2=1e-2, sampling="shared")
        c = p.constants
        assert c.zeta2_x0.value == 0.0 and c.zeta2_star.value == 0.0
        # σ² at x₀ = 0: variance of the per-sample gradients over all n rows (numpy, by hand)
        x, y = p._x_np, p._y_np
        if cls is LogisticRegression:
            g = -(y * 0.5)[:, None] * x  # ∇f_j(0) = −s_j σ(0) x_j
        else:
            g = -y[:, None] * x          # ∇f_j(0) = x_j(x_jᵀ0 − y_j)
        var0 = float(((g - g.mean(0)) ** 2).sum(1).mean())
        assert c.sigma2.detail["at_x0"] == pytest.approx(var0, rel=1e-10)
        # batches come from the whole data set, for every worker
        gen = torch.Generator().manual_seed(0)
        xb, _ = p.sample(2, 4000, gen)
        rows = {tuple(r) for r in np.round(xb.numpy(), 12)}
        owners = {i // p.n_per for i, r in enumerate(np.round(p._x_np, 12)) if tuple(r) in rows}
        assert owners == {0, 1, 2}


def test_shared_sampling_rejects_heterogeneity_and_unknown_modes():
    from empirics.problems import LogisticRegression

    with pytest.raises(ValueError, match="heterogeneity must be 0"):
        LogisticRegression(n_samples=100, d=3, m=2, heterogeneity=0.5, sampling="shared")
    with pytest.raises(ValueError, match="sampling must be 'shards' or 'shared'"):
        LogisticRegression(n_samples=100, d=3, m=2, sampling="iid")
