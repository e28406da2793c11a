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
    tau_ = rng.integers(1, 64, n).astype(float)
    zeta_ = rng.uniform(0, 0.99, n)
    # JMLR eq. 145 typed in independently: a·η + b·η² ≤ 1 with a = L m/(m+v) = 1 here
    b2 = tau_**2 / (1 - zeta_) * (2 * zeta_**2 / (1 + zeta_) + 2 * zeta_ / (1 - zeta_)
                                  + (tau_ - 1) / tau_)
    eta_max = 2 / (1 + np.sqrt(1 + 4 * b2))
    vals = dict(eta=rng.uniform(0.01, 0.99, n) * eta_max, L=1.0, sigma2=rng.uniform(0, 2, n),
                m=16, v=0, tau=tau_, zeta=zeta_, K=1e4, F_gap=10.0)
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
    assert "network" in s and "[quoted]" in s and "eq. 145" in s and "Theorem 1" in s
    assert b._repr_latex_().startswith("$\\displaystyle")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        repr(b)


# --- bad input at the Bound API ----------------------------------------------------------------
VALS_SIMPLE = dict(eta=0.1, L=1, sigma2=2, K=10, F_gap=3)


@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan"), np.inf, sp.oo])
@pytest.mark.parametrize("arg", ["eta", "K"])
def test_non_finite_values_are_refused_naming_the_argument(bad, arg):
    b = simple()
    vals = {**VALS_SIMPLE, arg: bad}
    for call in (lambda: b.evaluate(**vals), lambda: b.check(**vals),
                 lambda: b.subs(**{arg: bad}), lambda: b.evaluate_terms(**vals)):
        with pytest.raises(ValueError, match=rf"{arg} must be finite"):
            call()
    if not isinstance(bad, sp.Basic):
        with pytest.raises(ValueError, match=rf"{arg} must be finite; 1 value"):
            b.grid(**{**VALS_SIMPLE, arg: np.array([0.5, bad])})


def test_zeta_takes_a_mixing_matrix():
    W = theory.ring(16)
    b = theory.dpsgd_bound()
    vals = dict(eta=0.01, L=1, sigma2=1, m=16, K=1e4, F_gap=10)
    assert b.evaluate(zeta=W, **vals) == b.evaluate(zeta=W.zeta, **vals)
    assert b.check(zeta=W, **vals) == b.check(zeta=W.zeta, **vals) == []
    g = b.grid(zeta=W, **{**vals, "eta": np.array([0.01, 0.02])})
    np.testing.assert_array_equal(g, b.grid(zeta=W.zeta, **{**vals, "eta": [0.01, 0.02]}))
    assert b.subs(zeta=W).expr == b.subs(zeta=W.zeta).expr
    assert float(b.largest_eta(L=1, zeta=W)) == float(b.largest_eta(L=1, zeta=W.zeta))
    with pytest.raises(ValueError, match="L was given a mixing matrix"):
        b.evaluate(**{**vals, "L": W}, zeta=0.5)


def test_unused_parameters_warn_naming_them():
    b = theory.pasgd_bound()  # no ζ, v, α
    vals = dict(eta=0.01, L=1, sigma2=1, m=16, K=1e4, F_gap=10, tau=4)
    for call in (lambda: b.evaluate(**vals, zeta=0.3), lambda: b.check(**vals, zeta=0.3),
                 lambda: b.grid(**vals, zeta=0.3), lambda: b.subs(zeta=0.3),
                 lambda: b.evaluate_terms(**vals, zeta=0.3)):
        with pytest.warns(theory.UnusedParameterWarning, match=r"does not use zeta"):
            call()
    with pytest.warns(theory.UnusedParameterWarning, match=r"does not use alpha, v"):
        b.evaluate(**vals, v=0, alpha=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        b.evaluate(**vals)  # every value used: no warning


def test_largest_and_messages():
    b = simple()
    assert b.largest_eta(L=4) == sp.Rational(1, 4)
    assert b.largest("eta") == 1 / L
    with pytest.raises(ConditionError, match=r"largest admissible η = 0\.5 at L=2"):
        b.evaluate(eta=0.6, L=2, sigma2=1, K=1, F_gap=1)
    assert Bound("free", eta, SRC).largest_eta() == sp.oo


# --- what a user sees --------------------------------------------------------------------------
def test_latex_has_no_math_inside_text_and_shows_terms_conditions_source():
    import re

    b = theory.cooperative_bound()
    tex = b._repr_latex_()
    for body in re.findall(r"\\text\{((?:[^{}]|\{[^{}]*\})*)\}", tex):
        assert "\\sum" not in body and "\\nabla" not in body and "\\|" not in body, body
    assert r"\sum_{k=1}^{K}" in tex and r"\nabla F(u_k)" in tex
    assert r"\underbrace" in tex and r"\text{optimization}" in tex
    assert "eq. 145" in tex and "quoted" in tex and "Theorem 1, eqs. 16–17" in tex
    md = b._repr_markdown_()
    assert md.startswith("**Cooperative SGD") and "$$" in md and "| network |" in md
    assert "Conditions:" in md and "eq. 145" in md and "(**quoted**" in md
    assert "Theorem 1, eqs. 16–17" in md
    # every bound of the toolkit gets a LaTeX left side without \text around math
    for fn in (theory.runtime_bound, theory.pl_bound, theory.memory_bound,
               theory.decentralized_runtime_bound):
        lhs = fn().latex_lhs()
        assert "\\text{E" not in lhs and "‖" not in lhs and "Σ" not in lhs, lhs


def test_digest_is_never_shown_to_users():
    src = theory.cooperative_bound().source
    assert src.digest  # kept for maintainers
    for text in (str(src), repr(src), str(theory.cooperative_bound()),
                 theory.cooperative_bound()._repr_markdown_(), str(src.to_dict())):
        assert "digest" not in text and "§1.0" not in text


def test_grid_reuses_its_numpy_functions(monkeypatch):
    b = theory.cooperative_bound("relaxed")  # a Bound of its own (cache per Bound)
    vals = dict(eta=np.array([1e-4, 2e-4]), L=1.0, sigma2=1.0, m=16, v=0, tau=4.0, zeta=0.5,
                K=1e4, F_gap=1.0)
    first = b.grid(**vals)
    calls = []
    real = sp.lambdify
    monkeypatch.setattr(sp, "lambdify", lambda *a, **k: calls.append(a) or real(*a, **k))
    second = b.grid(**vals)
    np.testing.assert_array_equal(first, second)
    assert calls == []  # nothing re-lambdified
    assert b.subs(L=1.0) is not b  # a derived Bound starts with its own (empty) cache
    import pickle

    b2 = pickle.loads(pickle.dumps(b))  # the cached functions are not pickled, rebuilt on use
    assert b2 == b and b2._cache == {}
    np.testing.assert_array_equal(b2.grid(**vals), first)


def _factories():
    import inspect

    import theory.bounds as tb

    mods = [tb.cooperative, tb.local_pl, tb.memory, tb.runtime]
    out = []
    for mod in mods:
        for name, fn in vars(mod).items():
            if name.startswith("_") or not callable(fn) or getattr(fn, "__module__", "") != \
                    mod.__name__:
                continue
            try:
                ret = inspect.signature(fn).return_annotation
            except (TypeError, ValueError):
                continue
            if ret in ("Bound", Bound):
                out.append(fn)
    return out


@pytest.mark.parametrize("fn", _factories(), ids=lambda f: f.__name__)
def test_every_bound_factory_docstring_cites_its_source(fn):
    args = {"pl_bound_intervals": ([2, 3],)}.get(fn.__name__, ())
    b = fn(*args)
    doc = " ".join((fn.__doc__ or "").split())
    assert " ".join(b.source.where.split()) in doc, (fn.__name__, b.source.where)
    assert str(b.source.status) in doc, fn.__name__
