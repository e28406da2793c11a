"""PlantedReLU (gradient against an independent numpy formula, F(w*) = 0, local constants, init,
bad input) and distributed QSGD without error feedback (identity C = synchronous SGD; the
QSGD update is unbiased).

The Monte-Carlo check compares a mean with its exact value at 5 standard errors (false alarm
about 6e-7 under the normal approximation); every draw is seeded.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.func import grad

import empirics
from empirics.compressors import QSGD, Identity, TopK
from empirics.configs import mdsgd, qsgd, synchronous
from empirics.engine import compressor_seed, simulate
from empirics.problems import PlantedReLU

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def relu() -> PlantedReLU:
    return PlantedReLU(d=6, samples_per_dim=8, m=3, seed=4)


def _np_grad(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Independent formula: (1/n) Σ_j (max(0, x_jᵀw) − y_j) 1{x_jᵀw > 0} x_j."""
    z = x @ w
    return ((np.maximum(z, 0) - y) * (z > 0)) @ x / len(y)


# ---------------------------------------------------------------------------------------------
# the problem
# ---------------------------------------------------------------------------------------------
def test_data_are_a_planted_relu_with_gaussian_inputs(relu):
    x, y = relu.data()
    assert x.shape == (48 - 48 % 3, 6) and relu.n == 48
    ws = relu.w_star
    assert math.isclose(np.linalg.norm(ws), 1.0, rel_tol=1e-12)
    np.testing.assert_array_equal(y.numpy(), np.maximum(x.numpy() @ ws, 0.0))
    big = PlantedReLU(d=5, n_samples=20000, seed=1)
    xb = big.data()[0].numpy()
    assert np.abs(xb.mean(0)).max() < 5 / math.sqrt(20000)   # ~N(0, I): 5 standard errors
    assert np.abs(np.cov(xb.T) - np.eye(5)).max() < 0.06


def test_gradient_matches_numpy_formula(relu):
    g = torch.Generator().manual_seed(0)
    x, y = (t.numpy() for t in relu.data())
    for _ in range(5):
        w = torch.randn(6, generator=g, dtype=torch.float64)
        got = relu.full_grad({"w": w})["w"].numpy()
        np.testing.assert_allclose(got, _np_grad(w.numpy(), x, y), rtol=1e-12, atol=1e-14)
        # and the per-batch loss under torch.func.grad
        b = relu.sample(1, 7, torch.Generator().manual_seed(3))
        gb = grad(relu.loss)({"w": w}, b)["w"].numpy()
        np.testing.assert_allclose(gb, _np_grad(w.numpy(), *(t.numpy() for t in b)),
                                   rtol=1e-12, atol=1e-14)


def test_planted_model_is_a_zero_loss_zero_noise_minimiser(relu):
    ws = relu.x_star  # zero up to rounding (torch and numpy sum ⟨w*, x⟩ in different orders)
    assert 0 <= relu.full_loss(ws) < 1e-28
    assert relu.grad_norm2(ws) < 1e-28
    assert relu.sigma2_at(ws) < 1e-28
    assert relu.distance_to_planted(ws) == 0.0
    assert relu.full_loss(relu.init_params()) > 0


def test_objective_is_the_local_quadratic_inside_the_radius(relu):
    H, r0, ws = relu.hessian_at_planted, relu.local_radius, relu.w_star
    assert r0 > 0
    g = np.random.default_rng(0)
    for scale in (0.3, 0.9):
        e = g.standard_normal(6)
        e *= scale * r0 / np.linalg.norm(e)
        w = torch.from_numpy(ws + e)
        assert math.isclose(relu.full_loss({"w": w}), 0.5 * e @ H @ e, rel_tol=1e-9)
    # far away, F differs from the quadratic (non-convex, kinks): e.g. at w = −w*
    w = torch.from_numpy(-ws)
    e = -2 * ws
    assert not math.isclose(relu.full_loss({"w": w}), 0.5 * e @ H @ e, rel_tol=1e-3)


def test_constants(relu):
    c = relu.constants
    lam = np.linalg.eigvalsh(relu.hessian_at_planted)
    assert c.L.value == pytest.approx(lam[-1]) and c.mu.value == pytest.approx(lam[0])
    assert 0 < c.mu.value < c.L.value
    assert c.F_star.value == 0.0 and c.F_star.exact
    assert c.F0.value == pytest.approx(relu.full_loss(relu.init_params()))
    assert c.sigma2.detail["at_x_star"] < 1e-28 and c.sigma2.value > 0
    assert c.zeta2_star.value == 0.0
    assert "local" in c.L.method and "non-convex" in c.mu.method


def test_initialisations():
    p = PlantedReLU(d=20, samples_per_dim=50, seed=2)
    w0 = p.init_params()["w"].numpy()
    x, y = (t.numpy() for t in p.data())
    np.testing.assert_allclose(w0, 2 * y @ x / p.n, rtol=1e-12)
    # E[relu(<w*,x>) x] = w*/2: the moment start is close to w* (error ~ √(2d/n) = 0.2)
    assert p.distance_to_planted(w0) < 0.4 and w0 @ p.w_star > 0
    b = PlantedReLU(d=20, samples_per_dim=8, seed=2, init="ball", init_radius=0.3)
    assert b.distance_to_planted(b.init_params()) == pytest.approx(0.3, rel=1e-12)
    b2 = PlantedReLU(d=20, samples_per_dim=8, seed=2, init="ball", init_radius=0.3)
    assert torch.equal(b.init_params()["w"], b2.init_params()["w"])


def test_distance_to_planted_inputs(relu):
    w = relu.w_star + np.array([3.0, 4.0, 0, 0, 0, 0])
    assert relu.distance_to_planted(w) == pytest.approx(5.0)
    assert relu.distance_to_planted(torch.from_numpy(w)) == pytest.approx(5.0)
    assert relu.distance_to_planted({"w": torch.from_numpy(w)}) == pytest.approx(5.0)
    with pytest.raises(ValueError, match=r"w must have shape \(6,\)"):
        relu.distance_to_planted(np.zeros(5))
    with pytest.raises(ValueError, match="params must be"):
        relu.distance_to_planted({"v": torch.zeros(6)})


@pytest.mark.parametrize("kw, match", [
    ({"d": 0}, "d must be an integer >= 1"),
    ({"samples_per_dim": 0}, "samples_per_dim must be a finite number > 0"),
    ({"n_samples": 0}, "n_samples must be an integer >= 1"),
    ({"n_samples": 2, "m": 3}, "n_samples must be >= m"),
    ({"init": "zero"}, "init must be one of"),
    ({"init_radius": -1}, "init_radius must be a finite number >= 0"),
    ({"w_star_norm": 0}, "w_star_norm must be a finite number > 0"),
    ({"seed": -1}, "seed must be an integer >= 0"),
])
def test_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        PlantedReLU(**{"d": 4, **kw})


def test_samples_scale_with_d_and_seeds():
    assert PlantedReLU(d=10, samples_per_dim=8).n == 80
    assert PlantedReLU(d=10, samples_per_dim=8, m=3).n == 78   # equal shards: 3·⌊80/3⌋
    assert PlantedReLU(d=10, n_samples=33).n == 33
    a, b = PlantedReLU(d=5, seed=1), PlantedReLU(d=5, seed=2)
    assert not np.allclose(a.w_star, b.w_star)
    assert np.array_equal(a.w_star, PlantedReLU(d=5, seed=1).w_star)
    assert "PlantedReLU" in empirics.__all__


# ---------------------------------------------------------------------------------------------
# QSGD without error feedback
# ---------------------------------------------------------------------------------------------
def test_config_option_and_named_configuration():
    c = qsgd(4, 2)
    assert c.error_feedback is False and isinstance(c.compressor, QSGD) and c.compressor.s == 2
    assert c.to_dict()["error_feedback"] is False and "no error feedback" in repr(c)
    assert mdsgd(4, QSGD(2)).error_feedback is True
    assert synchronous(4).with_options(compressor=Identity(),
                                       error_feedback=False).error_feedback is False
    with pytest.raises(ValueError, match="error_feedback must be True or False"):
        synchronous(4).with_options(error_feedback=0)
    with pytest.raises(ValueError, match="qsgd needs an unbiased compressor"):
        qsgd(4, compressor=TopK(2))
    with pytest.raises(ValueError, match="s must be an integer >= 1"):
        qsgd(4, 0)
    assert empirics.qsgd is qsgd


@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_identity_without_error_feedback_is_synchronous_sgd(relu, momentum):
    kw = dict(lr=0.3, T=25, batch_size=3, seed=5, trace=True)
    _, ta = simulate(relu, synchronous(3, momentum=momentum), **kw)
    b, tb = simulate(relu, qsgd(3, compressor=Identity(), momentum=momentum), **kw)
    np.testing.assert_allclose(tb.X, ta.X, rtol=0, atol=1e-14)
    assert np.all(tb.memory == 0)
    np.testing.assert_array_equal(b.memory_norm2, 0.0)
    # with error feedback and a biased C the run differs (the option does something)
    _, tc = simulate(relu, mdsgd(3, TopK(2)), **kw)
    _, td = simulate(relu, synchronous(3).with_options(compressor=TopK(2),
                                                        error_feedback=False), **kw)
    assert not np.allclose(tc.X, td.X) and np.all(td.memory == 0) and np.any(tc.memory != 0)


def test_update_is_compressed_eta_times_direction(relu):
    """Trace identity on a real trajectory: δ_i = C(η g_i) with the worker's compressor
    generator, x_{k+1} = x_k − mean_i δ_i."""
    s, eta, T = 2, 0.4, 6
    res, tr = simulate(relu, qsgd(3, s), lr=eta, T=T, batch_size=2, seed=7, trace=True)
    gens = [torch.Generator().manual_seed(compressor_seed(7, i)) for i in range(3)]
    for k in range(T):
        exp = QSGD(s)(torch.from_numpy(eta * tr.grads[k]), generator=gens).numpy()
        np.testing.assert_allclose(tr.delta[k], exp, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(tr.X[k + 1][0], tr.X[k][0] - exp.mean(0), atol=1e-14)
    assert res.bits[-1] == T * 3 * QSGD(s).bits(6)


def test_qsgd_update_is_unbiased(relu):
    """E[(1/m) Σ_i Q(η g_i)] = (η/m) Σ_i g_i for fixed gradients: Monte Carlo over the
    quantiser's randomness, every coordinate within 5 standard errors."""
    w = relu.init_params()
    batch = relu.sample_all(4, relu.generator(0))
    from torch.func import vmap
    g = vmap(grad(relu.loss), in_dims=(None, 0))(w, batch)["w"]  # (m, d)
    eta, n = 0.5, 20000
    q = QSGD(1)
    gen = torch.Generator().manual_seed(11)
    draws = q((eta * g).expand(n, *g.shape).contiguous(), generator=gen).mean(1)  # (n, d)
    mean, se = draws.mean(0), draws.std(0) / math.sqrt(n)
    exact = eta * g.mean(0)
    assert torch.all((mean - exact).abs() <= 5 * se + 1e-15)
    assert float(se.max()) > 0  # the quantiser is random here
    # and a biased compressor without error feedback is visibly biased (the test can fail)
    tk = TopK(1)(eta * g).mean(0)
    assert float((tk - exact).abs().max()) > 10 * float(se.max())


def test_qsgd_converges_geometrically_on_planted_relu():
    p = PlantedReLU(d=8, samples_per_dim=8, m=4, seed=0)
    _, tr = simulate(p, qsgd(4, 4), lr=0.9, T=150, batch_size=8, seed=0, record_every=150,
                     grad_every=0, trace=True)
    dist = np.linalg.norm(tr.X[:, :4].mean(1) - p.w_star, axis=1)
    assert dist[-1] < 1e-4 * dist[0]
    half = np.log(dist[75] / dist[0]), np.log(dist[150] / dist[75])
    assert half[0] < -2 and half[1] < -2  # both halves shrink the error by e² or more
