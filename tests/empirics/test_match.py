"""Bound ↔ run matching by the bound's setting: hypotheses named, τ | K, the Lemma-2 slack
decomposition against an independent computation, a user's own bound."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import sympy as sp

import theory
from empirics.experiment import ExperimentSpec, run_experiment
from theory.bound import Bound, Setting, Source, Status
from theory.symbols import F_gap, K, L, eta, m, sigma2

LOGREG = {"kind": "logistic_regression", "n_samples": 200, "d": 5, "l2": 0.01,
          "sampling": "shared"}


def _spec(**kw):
    base = dict(name="t", problem=LOGREG, algorithm={"name": "pasgd", "m": 4, "tau": 4},
                lr=0.1, steps=80, batch_size=2, seeds=3, record_every=8)
    base.update(kw)
    return ExperimentSpec(**base)


def test_slack_factors_are_lemma2_eq38_and_multiply_to_the_tightness():
    r = run_experiment(_spec(algorithm={"name": "dpsgd", "m": 4, "topology": "ring"}, lr=0.05),
                       progress=False)
    assert r.verdict.status == "holds", r.verdict
    c = r.constants
    mm, eta_, b = 4, 0.05, 2
    Lc, s2, gap = c["L"]["value"], c["sigma2"]["value"] / b, c["F0"]["value"] - c["F_star"][
        "value"]
    K_ = r.steps[1:].astype(float)
    # eq. 38 by hand: 2ΔF/(ηK) + ηLσ²/m + L²·(1/K)Σ‖X_k(I − J)‖²_F/m, per seed, then the mean
    per_seed = [2 * gap / (eta_ * K_) + eta_ * Lc * s2 / mm
                + Lc**2 * np.asarray(run.consensus_running[1:]) / mm for run in r.runs]
    np.testing.assert_allclose(r.lemma2[1:], np.mean(per_seed, axis=0), rtol=1e-12)
    f = r.final
    assert f["slack_descent"] * f["slack_consensus"] == pytest.approx(f["tightness"],
                                                                      rel=1e-12)
    assert f["slack_descent"] == pytest.approx(f["lemma2"] / f["measured"], rel=1e-12)
    assert r.slack["total"] == f["tightness"] and f["slack_consensus"] >= 1 - 1e-12
    assert r.lemma2_lower[-1] <= r.lemma2[-1] <= r.lemma2_upper[-1]


def test_the_slack_lies_where_the_algebra_puts_it():
    """Quadratic, additive noise, W = J: the averaged model follows synchronous SGD exactly, so
    the measurement does not see τ; Lemma 2's network term L²Ξ is then pure slack (it grows
    with τ while the measurement stays), and at τ = 1 the consensus distance is 0, Lemma 2 equals
    Corollary 2's bound and the consensus factor is exactly 1."""
    quad = {"kind": "noisy_quadratic", "d": 3, "c": 0.0, "sigma": 0.5}
    res = {tau: run_experiment(_spec(problem=quad, algorithm={"name": "pasgd", "m": 4,
                                                              "tau": tau},
                                     lr=0.02, steps=96, record_every=24), progress=False)
           for tau in (1, 8)}
    one, eight = res[1], res[8]
    np.testing.assert_allclose(eight.per_seed, one.per_seed, rtol=1e-10)  # τ is invisible
    assert one.final["slack_consensus"] == pytest.approx(1.0, rel=1e-12)
    assert all(float(np.max(run.consensus_running[1:])) < 1e-25 for run in one.runs)
    # the extra Lemma-2 value at τ = 8 is exactly L²·Ξ of the measured consensus distance
    Lc = one.constants["L"]["value"]
    xi8 = np.mean([np.asarray(run.consensus_running) for run in eight.runs], axis=0) / 4
    np.testing.assert_allclose(eight.lemma2[1:] - one.lemma2[1:], Lc**2 * xi8[1:], rtol=1e-9)
    assert eight.final["slack_descent"] > one.final["slack_descent"]


def test_bound_values_only_where_tau_divides_K():
    r = run_experiment(_spec(algorithm={"name": "pasgd", "m": 4, "tau": 3}, steps=40,
                             record_every=5), progress=False)
    ks = r.steps[np.isfinite(r.bound)]
    assert list(ks) == [15, 30] and r.verdict.status == "holds"
    assert r.final["step"] == 30  # the last step where the theorem speaks
    assert "τ = 3 | K" in r.bound_info["steps_evaluated"]
    with pytest.warns(UserWarning, match="no averaging inside the horizon"):
        big = _spec(algorithm={"name": "pasgd", "m": 4, "tau": 100}, steps=40)
    far = run_experiment(big, progress=False)
    assert far.verdict.status == "not applicable"
    assert "τ = 100 > K = 40: no averaging inside the horizon" in far.verdict.message


def test_hypotheses_are_named_with_their_values():
    h = run_experiment(_spec(algorithm={"name": "hierarchical", "m": 4, "n_groups": 2,
                                        "tau1": 2, "tau2": 4}, bound="cooperative"),
                       progress=False)
    assert h.verdict.status == "not applicable"  # the group averages do not connect the graph
    assert "a W of this schedule has ζ = 1" in h.verdict.message
    assert "[hypothesis symmetric_W]" in h.verdict.message
    grow = run_experiment(_spec(algorithm={"name": "local_sgd", "m": 4, "schedule": {
        "kind": "intervals", "periods": [2, 4, 8, 16, 50]}}, bound="pasgd"), progress=False)
    assert "the bound needs one period τ for the whole run" in grow.verdict.message
    mom = run_experiment(_spec(algorithm={"name": "pasgd", "m": 4, "tau": 4,
                                          "momentum": 0.9}), progress=False)
    assert "plain SGD local steps (this configuration has momentum) [hypothesis plain_sgd]" \
        in mom.verdict.message
    e = run_experiment(_spec(algorithm={"name": "easgd", "m": 4, "tau": 4, "alpha": 0.1},
                             bound="easgd-paper"), progress=False)
    assert "α* = 2/(m+2) = 0.333333 (the run has α = 0.1)" in e.verdict.message


def test_a_users_own_bound():
    """Ten lines in a REPL: a sympy bound with its setting, checked against a run."""
    src = Source("me", "my conjecture", Status.DERIVED)
    setting = Setting("grad_norm2_running", "K", ("iid", "plain_sgd"), describes=("pasgd",))
    mine = Bound("my PASGD bound", 2 * F_gap / (eta * K) + eta * L * sigma2 / m, src,
                 setting=setting)
    r = run_experiment(_spec(bound=mine), progress=False)
    assert r.verdict.status == "holds" and r.bound_info["key"] == "user"
    assert sp.simplify(theory.synchronous_bound().expr - mine.expr) == 0  # Cor. 2 at τ = 1
    c = r.constants
    gap = c["F0"]["value"] - c["F_star"]["value"]
    expect = 2 * gap / (0.1 * r.steps[1:]) + 0.1 * c["L"]["value"] * c["sigma2"]["value"] / 2 / 4
    np.testing.assert_allclose(r.bound[1:], expect, rtol=1e-12)
    # a symbol the run does not define is named, with what is available; bound_values gives it
    c0 = sp.Symbol("c0", positive=True)
    more = Bound("mine + c0", mine.expr + c0, src, setting=setting)
    na = run_experiment(_spec(bound=more), progress=False)
    assert na.verdict.status == "not applicable"
    assert "the bound needs c0, which this run does not define (it defines" in na.verdict.message
    ok = run_experiment(_spec(bound=more, bound_values={"c0": 1e-3}), progress=False)
    np.testing.assert_allclose(ok.bound[1:], r.bound[1:] + 1e-3, rtol=1e-12)
    # a bound without a setting cannot be matched, and says how to give it one
    bare = run_experiment(_spec(bound=Bound("bare", mine.expr, src)), progress=False)
    assert "declares no setting" in bare.verdict.message and "with_setting" in \
        bare.verdict.message


def test_a_bound_with_a_hypothesis_not_known_is_never_holds_or_violated():
    """Setting.unknown: the same run and bound that "holds" become inconclusive once the
    setting declares a hypothesis nobody can state (the message says where the measurement
    lies and names it); a bound far below the measurement is inconclusive too, not
    "violated"; a malformed declaration is refused naming the argument."""
    src = Source("me", "my conjecture", Status.DERIVED)
    setting = Setting("grad_norm2_running", "K", ("iid", "plain_sgd"), describes=("pasgd",))
    expr = 2 * F_gap / (eta * K) + eta * L * sigma2 / m
    holds = run_experiment(_spec(bound=Bound("b", expr, src, setting=setting)), progress=False)
    assert holds.verdict.status == "holds"
    hidden = dataclasses.replace(setting, unknown=("the condition on c",))
    r = run_experiment(_spec(bound=Bound("b", expr, src, setting=hidden)), progress=False)
    assert r.verdict.status == "inconclusive"
    assert r.verdict.message.startswith("the measurement is below the bound (no significant")
    assert "the condition on c is not known" in r.verdict.message
    assert r.verdict.p_value == holds.verdict.p_value
    np.testing.assert_array_equal(r.bound, holds.bound)
    low = run_experiment(_spec(bound=Bound("b", 1e-9 * expr, src, setting=hidden)),
                         progress=False)
    assert low.verdict.status == "inconclusive"
    assert low.verdict.message.startswith("the measurement is above the bound (mean")
    for bad in ("the condition on c", ("",)):
        with pytest.raises(ValueError, match="unknown must be a tuple of non-empty phrases"):
            Setting("grad_norm2_running", unknown=bad)


def test_the_pl_bound_is_inconclusive_naming_its_unknown_condition():
    """The PL theorem's condition on α_PL is not known: a run inside every known hypothesis
    (PL step size, i.i.d., full averaging, plain SGD) gets "inconclusive" naming it."""
    problem = {"kind": "logistic_regression", "n_samples": 256, "d": 5, "l2": 0.1,
               "sampling": "shared", "seed": 0}
    spec = ExperimentSpec(name="pl", problem=problem, algorithm={"name": "pasgd", "m": 4,
                                                                 "tau": 4},
                          lr={"kind": "pl", "alpha_pl": 10.0}, steps=160, seeds=3,
                          record_every=16, metric="suboptimality", bound="pl")
    r = run_experiment(spec, progress=False)
    assert r.verdict.status == "inconclusive", r.verdict
    assert "condition on α_PL" in r.verdict.message and "not known" in r.verdict.message
