"""The Bound object: substitution, evaluation with conditions, grids, minimisation."""

import time
import warnings

import numpy as np
import pytest
import sympy as sp

import theory
from theory.bound import Bound, Condition, ConditionError, Source
from theory.symbols import D, F_gap, K, L, eta, sigma2, tau

SRC = Source("test", "eq. 1", "derived")


def simple() -> Bound:
    terms = {"opt": 2 * F_gap / (eta * K), "var": eta * L * sigma2}
    return Bound("simple", sp.Add(*terms.values()), SRC, terms=terms,
                 conditions=(Condition("eta L <= 1", sp.Le(eta * L, 1)),))


def test_source_status_is_validated():
    with pytest.raises(ValueError):
        Source("p", "w", "made-up")
    assert str(Source("p", "Thm 1", "recalled", confidence="med")).startswith("p, Thm 1 [recalled")


def test_terms_must_sum_to_expr():
    with pytest.raises(ValueError, match="do not sum"):
        Bound("bad", eta, SRC, terms={"a": eta, "b": L})


def test_evaluate_and_subs():
    b = simple()
    assert b.evaluate(eta=0.1, L=1, sigma2=2, K=10, F_gap=3) == pytest.approx(6 + 0.2)
    b2 = b.subs(L=1, sigma2=2)
    assert b2.free_symbols == {eta, K, F_gap}
    assert b2.evaluate(eta=0.1, K=10, F_gap=3) == pytest.approx(6.2)
    assert b.evaluate_terms(eta=0.1, L=1, sigma2=2, K=10, F_gap=3)["var"] == pytest.approx(0.2)


def test_evaluate_errors_name_argument_and_condition():
    b = simple()
    with pytest.raises(ValueError, match="missing values for F_gap"):
        b.evaluate(eta=0.1, L=1, sigma2=2, K=10)
    with pytest.raises(ValueError, match=r"eta must be a real number > 0"):
        b.evaluate(eta=-0.1, L=1, sigma2=2, K=10, F_gap=1)
    with pytest.raises(ValueError, match=r"tau must be an integer >= 1"):
        theory.pasgd_bound().evaluate(eta=0.01, L=1, sigma2=1, m=4, K=10, F_gap=1, tau=0)
    with pytest.raises(ConditionError, match=r"eta L <= 1 violated.*left side 2"):
        b.evaluate(eta=2, L=1, sigma2=2, K=10, F_gap=1)
    with pytest.warns(UserWarning, match="check=False"):
        val = b.evaluate(eta=2, L=1, sigma2=2, K=10, F_gap=1, check=False)
    assert val == pytest.approx(0.1 + 4)
    with pytest.raises(ConditionError, match="fails after substitution"):
        b.subs(eta=2, L=1)


def test_grid_matches_pointwise_and_is_fast():
    b = theory.cooperative_bound()
    rng = np.random.default_rng(0)
    n = 1_000_000
    vals = dict(eta=rng.uniform(1e-3, 1e-1, n), L=1.0, sigma2=rng.uniform(0, 2, n), m=16, v=0,
                tau=rng.integers(1, 64, n).astype(float), zeta=rng.uniform(0, 0.99, n),
                K=1e4, F_gap=10.0)
    t0 = time.perf_counter()
    out = b.grid(**vals)
    elapsed = time.perf_counter() - t0
    assert out.shape == (n,)
    for i in (0, 17, n - 1):
        pt = {k: (v[i] if isinstance(v, np.ndarray) else v) for k, v in vals.items()}
        assert out[i] == pytest.approx(b.evaluate(**pt), rel=1e-12)
    # generous: the requirement is "well under a second"; the CI machine may be loaded
    assert elapsed < 5


def test_grid_conditions():
    b = theory.pasgd_bound()
    kw = dict(L=1, sigma2=1, m=4, K=1e3, F_gap=1, tau=np.array([1.0, 50.0]))
    with pytest.raises(ConditionError, match="1 of 2 grid points"):
        b.grid(eta=0.1, **kw)
    masked = b.grid(eta=0.1, check="mask", **kw)
    assert masked.mask.tolist() == [False, True]
    with pytest.raises(ValueError, match="tau must be an integer"):
        b.grid(eta=0.1, L=1, sigma2=1, m=4, K=1e3, F_gap=1, tau=np.array([1.5]))


def test_minimize_closed_form_and_numeric():
    b = simple()
    opt = b.minimize("eta")
    assert opt.method == "closed-form"
    assert sp.simplify(opt.argmin - sp.sqrt(2 * F_gap / (K * L * sigma2))) == 0
    num = b.minimize("eta", L=1, sigma2=2, K=100, F_gap=1)
    assert num.argmin == pytest.approx(np.sqrt(2 / 200))
    # η* = 0.1 satisfies ηL ≤ 1; with a tighter condition the optimum moves to its boundary
    num2 = b.minimize("eta", L=20, sigma2=0.001, K=100, F_gap=1)
    assert num2.argmin <= 1 / 20 + 1e-12
    assert num2.argmin == pytest.approx(1 / 20, rel=1e-6)


def test_minimize_integer_symbol_compares_floor_and_ceil():
    b = theory.runtime_bound()
    vals = dict(eta=0.01, L=1, sigma2=1, m=16, T_wall=1e5, Y=0.1, D=1, F_gap=10)
    opt = b.minimize("tau", **vals)
    assert isinstance(opt.argmin, int) and opt.method == "closed-form"
    cont = float(theory.optimal_tau_runtime().subs({theory.symbol(k): v for k, v in vals.items()}))
    assert cont == pytest.approx(np.sqrt(200))
    assert opt.argmin in (int(np.floor(cont)), int(np.ceil(cont)))
    ev = {t: b.evaluate(tau=t, **vals) for t in range(opt.argmin - 3, opt.argmin + 4)}
    assert min(ev, key=ev.get) == opt.argmin


def test_minimize_respects_learning_rate_condition():
    b = theory.runtime_bound()
    vals = dict(eta=0.001, L=1, sigma2=1, m=16, T_wall=1000, Y=0.1, D=1, F_gap=10)
    opt = b.minimize("tau", **vals)  # unconstrained τ* ≈ 4472 violates ηL + η²L²τ(τ−1) ≤ 1
    assert opt.argmin == 1000 and opt.method.startswith("numeric")
    assert not b.check(tau=1000, **vals) and b.check(tau=1001, **vals)


def test_minimize_reports_unbounded():
    b = Bound("dec", 1 / tau, SRC)
    with pytest.raises(ValueError, match="no finite minimiser"):
        b.minimize("tau")  # symbolic: derivative has no root
    with pytest.raises(ValueError, match="decreases"):
        Bound("dec", D / tau, SRC).minimize("tau", D=1)


def test_str_and_latex():
    b = theory.cooperative_bound()
    s = str(b)
    assert "network" in s and "recalled" in s and "NOT encoded" in s
    assert b._repr_latex_().startswith("$\\displaystyle")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        repr(b)
