"""M-DSGD: transformation equation (symbolic and numeric), EF memory bound, compressor constants."""

import math

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from theory.bound import Status
from theory.bounds import memory as mem


@pytest.mark.parametrize("momentum", [False, True])
def test_transformation_holds_symbolically(momentum):
    te = mem.transformation_equation(3, 3, d=2, momentum=momentum)
    assert te.holds()
    assert len(te.virtual) == len(te.dsgd) == 4 and te.virtual[0].shape == (2, 1)
    # non-vacuous: the real iterate w_t (without the memory correction) is NOT the DSGD iterate
    w = [v + sum(ms, sp.zeros(2, 1)) / 3 for v, ms in zip(te.virtual, te.memory, strict=True)]
    assert any(sp.expand(a - b) != sp.zeros(2, 1) for a, b in zip(w, te.dsgd, strict=True))


def test_transformation_rejects_bad_sizes():
    with pytest.raises(ValueError, match="p must be an integer >= 1"):
        mem.transformation_equation(0, 3)
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        mem.transformation_equation(2, 1.5)


def _topk(u, k):
    out = np.zeros_like(u)
    idx = np.argsort(-np.abs(u))[:k]
    out[idx] = u[idx]
    return out


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31), p=st.integers(1, 6), k=st.integers(1, 5),
       beta=st.floats(0.0, 0.95))
def test_transformation_numerically_with_topk_and_momentum(seed, p, k, beta):
    """Run M-DSGD with top-k and local momentum on a logistic-type gradient; the virtual sequence
    equals momentum DSGD driven by the same gradients (to rounding)."""
    rng = np.random.default_rng(seed)
    d, n = 6, 40
    A = rng.standard_normal((p, d))
    w = rng.standard_normal(d)
    m = np.zeros((p, d))
    vel = np.zeros((p, d))
    wt, vbar = w.copy(), np.zeros(d)
    for t in range(n):
        eta_t = 0.1 / (1 + t)
        g = A * (1 / (1 + np.exp(A @ w)))[:, None] + 0.1 * rng.standard_normal((p, d))
        vel = beta * vel + g
        u = m + eta_t * vel
        c = np.stack([_topk(u[i], min(k, d)) for i in range(p)])
        m = u - c
        w = w - c.mean(0)
        vbar = beta * vbar + g.mean(0)
        wt = wt - eta_t * vbar
        assert np.allclose(w - m.mean(0), wt, atol=1e-12)


def test_memory_bound_values_and_status():
    b = mem.memory_bound()
    assert b.source.status is Status.DERIVED
    assert "Stich" in b.source.paper and "Karimireddy" in b.source.paper
    assert "not a statement of Zhao" in b.source.note
    d_, e_, G = 0.1, 0.05, 3.0
    assert math.isclose(b.evaluate(delta=d_, eta=e_, G2=G**2),
                        2 * (1 - d_) * (2 - d_) * e_**2 * G**2 / d_**2, rel_tol=1e-12)
    assert b.evaluate(delta=1.0, eta=e_, G2=G**2) == 0.0  # no compression, no memory
    u = mem.memory_bound("unbiased")
    w_ = 3.0  # random-k with d/k = 4
    assert math.isclose(u.evaluate(omega=w_, eta=e_, G2=G**2),
                        b.evaluate(delta=1 / (1 + w_), eta=e_, G2=G**2), rel_tol=1e-12)
    with pytest.raises(ValueError, match="compressor must be"):
        mem.memory_bound("sign")
    with pytest.raises(ValueError, match="delta must be"):
        b.evaluate(delta=0.0, eta=e_, G2=1.0)


def test_delta_from_omega():
    assert mem.delta_from_omega(3) == sp.Rational(1, 4)
    assert mem.delta_from_omega(0) == 1


def test_ef_step_is_young():
    from theory.symbols import delta

    q, r = mem.ef_step()
    assert sp.simplify(q.subs(mem.rho, mem.RHO_STAR) - (1 - delta / 2)) == 0
    assert sp.simplify(r.subs(mem.rho, 1) / q.subs(mem.rho, 1)) != 0
    # the bound holds along a worst-case-aligned EF run with top-1 in d = 2 (δ = 1/2)
    b = mem.memory_bound().evaluate(delta=0.5, eta=1.0, G2=1.0)
    m = np.zeros(2)
    for _ in range(200):
        u = m + np.array([0.0, 1.0]) if abs(m[1]) <= abs(m[0]) else m + np.array([1.0, 0.0])
        m = u - _topk(u, 1)
        assert m @ m <= b


def test_docs_page_snippets_run():
    import doctest
    from pathlib import Path

    page = Path(__file__).resolve().parents[2] / "docs" / "memory_sgd.md"
    r = doctest.testfile(str(page), module_relative=False, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert r.attempted > 5 and r.failed == 0
