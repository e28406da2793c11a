"""Matched experiments: spec (de)serialisation, the bound evaluated with the run's parameters,
the band and the verdict (a deliberately wrong bound must be reported as violated)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import theory
from empirics.experiment import ExperimentResult, ExperimentSpec, run_experiment, sweep
from empirics.reproductions.base import RunCache

LOGREG = {"kind": "logistic_regression", "n_samples": 800, "d": 10, "seed": 0, "l2": 1e-2,
          "sampling": "shared"}


def _spec(**kw) -> ExperimentSpec:
    base = dict(name="pasgd", problem=dict(LOGREG), algorithm={"name": "pasgd", "m": 4, "tau": 4},
                lr=0.1, steps=120, batch_size=2, seeds=4, record_every=20)
    base.update(kw)
    return ExperimentSpec(**base)


@pytest.fixture(scope="module")
def pasgd_result() -> ExperimentResult:
    return run_experiment(_spec())


def test_spec_round_trips_through_toml_yaml_and_files(tmp_path):
    s = _spec(lr={"kind": "inverse_time", "a": 1.0, "beta": 5.0}, seeds=[3, 7])
    assert ExperimentSpec.from_toml(s.to_toml()) == s
    assert ExperimentSpec.from_yaml(s.to_yaml()) == s
    s.to_toml(tmp_path / "a.toml")
    s.to_yaml(tmp_path / "a.yaml")
    assert ExperimentSpec.load(tmp_path / "a.toml") == s == ExperimentSpec.load(tmp_path / "a.yaml")
    assert s.replace("algorithm.tau", 8).algorithm["tau"] == 8 and s.algorithm["tau"] == 4


@pytest.mark.parametrize("kw, match", [
    ({"bound": "nope"}, "bound must be"),
    ({"seeds": 0}, "seeds must be"),
    ({"seeds": [1, 1]}, "distinct"),
    ({"steps": 0}, "steps must be an integer >= 1"),
    ({"level": 0.7}, "level must be in"),
    ({"problem": {"n_samples": 10}}, "problem must be a dict with a 'kind'"),
])
def test_spec_rejects_bad_fields(kw, match):
    with pytest.raises(ValueError, match=match):
        _spec(**kw)


def test_spec_rejects_unknown_field_and_m_in_problem():
    with pytest.raises(ValueError, match="unknown experiment field"):
        ExperimentSpec.from_dict({**_spec().to_dict(), "tau": 3})
    with pytest.raises(ValueError, match=r"problem\.m is set by the spec"):
        _spec(problem={**LOGREG, "m": 4})  # refused at construction, before any run
    with pytest.raises(ValueError, match=r"unknown key 'zeta' for 'pasgd'.*valid: \['compre"):
        _spec(algorithm={"name": "pasgd", "m": 4, "tau": 4, "zeta": 0.5})


def test_bound_is_the_theory_bound_at_the_runs_parameters(pasgd_result):
    import empirics

    r = pasgd_result
    c = empirics.LogisticRegression(m=4, **{k: v for k, v in LOGREG.items() if k != "kind"}
                                    ).constants
    expected = theory.pasgd_bound().evaluate(
        eta=0.1, L=c.L.value, sigma2=c.sigma2.value / 2, m=4, tau=4, K=120,
        F_gap=c.F0.value - c.F_star.value)
    assert r.final["bound"] == pytest.approx(expected, rel=1e-12)
    assert r.bound_info["values"]["sigma2"] == pytest.approx(c.sigma2.value / 2)
    # the per-step bound is the same function of K
    k = r.steps[3]
    at_k = theory.pasgd_bound().evaluate(
        eta=0.1, L=c.L.value, sigma2=c.sigma2.value / 2, m=4, tau=4, K=int(k),
        F_gap=c.F0.value - c.F_star.value)
    assert r.bound[3] == pytest.approx(at_k, rel=1e-12)


def test_measured_metric_is_the_engines_running_average_per_seed(pasgd_result):
    import empirics

    r = pasgd_result
    prob = empirics.LogisticRegression(m=4, **{k: v for k, v in LOGREG.items() if k != "kind"})
    one = empirics.simulate(prob, empirics.pasgd(4, 4), lr=0.1, T=120, batch_size=2, seed=2,
                            record_every=20)
    np.testing.assert_array_equal(r.per_seed[2], one.grad_norm2_running)
    # the band is the Student-t interval over the 4 seeds
    x = r.per_seed[:, -1]
    h = stats.t.ppf(0.975, 3) * x.std(ddof=1) / 2
    assert r.final["lower"] == pytest.approx(x.mean() - h)
    assert r.final["upper"] == pytest.approx(x.mean() + h)


def test_true_bound_holds_and_a_wrong_bound_is_violated(pasgd_result):
    r = pasgd_result
    assert r.verdict.status == "holds", r.verdict
    # tightness = bound ÷ sample mean, at every recorded step, from the raw per-seed values
    np.testing.assert_allclose(r.tightness[1:], r.bound[1:] / r.per_seed[:, 1:].mean(axis=0),
                               rtol=1e-12)
    assert r.final["tightness"] == pytest.approx(r.bound[-1] / r.per_seed[:, -1].mean())
    assert r.final["tightness"] > 1
    wrong = run_experiment(_spec(bound_scale=0.01))
    assert wrong.verdict.status == "violated", wrong.verdict
    assert wrong.verdict.p_value < 0.05 and "exceeds the conservative bound" in \
        wrong.verdict.message
    np.testing.assert_array_equal(wrong.per_seed, r.per_seed)  # same seeds, same numbers


def test_not_applicable_names_the_broken_assumption_or_condition():
    het = run_experiment(_spec(problem={**LOGREG, "sampling": "shards"}, seeds=2, steps=40))
    assert het.verdict.status == "not applicable" and "i.i.d." in het.verdict.message
    big = run_experiment(_spec(lr=3.0, algorithm={"name": "pasgd", "m": 4, "tau": 8}, seeds=2,
                               steps=40))
    assert big.verdict.status == "not applicable"
    assert "learning-rate condition of Corollary 2" in big.verdict.message
    assert "largest admissible η" in big.verdict.message
    sched = run_experiment(_spec(lr={"kind": "inverse_time", "a": 1.0, "beta": 10.0}, seeds=2,
                                 steps=40))
    assert "constant learning rate" in sched.verdict.message
    # one-shot averaging at a constant η: only the PL theorem describes local SGD on a schedule,
    # and its step size is prescribed
    one = run_experiment(_spec(algorithm={"name": "local_sgd", "m": 4,
                                          "schedule": {"kind": "one_shot"}}, seeds=2, steps=40))
    assert one.verdict.status == "not applicable" and one.bound is None
    assert "the PL theorem's step size is η_t = 4/(μ(t + a))" in one.verdict.message
    none = run_experiment(_spec(algorithm={"name": "mdsgd", "m": 4, "compressor": "topk:k=2"},
                                seeds=2, steps=40))
    assert none.verdict.status == "no bound" and none.bound is None


def test_dpsgd_uses_zeta_of_the_topology():
    r = run_experiment(_spec(name="dpsgd", algorithm={"name": "dpsgd", "m": 8,
                                                      "topology": "ring"}, seeds=2, steps=40))
    assert r.bound_info["values"]["zeta"] == pytest.approx(theory.zeta(theory.ring(8)))
    assert r.verdict.status in ("holds", "violated")


def test_pl_bound_with_its_own_step_size():
    r = run_experiment(_spec(name="pl", lr={"kind": "pl", "alpha_pl": 1.0}, seeds=3, steps=100))
    assert r.metric == "suboptimality" and r.bound_info["key"] == "pl"
    c = r.constants
    a = 1.0 * 4 + 4
    assert r.runs[0].lr[0] == pytest.approx(4 / (c["mu"]["value"] * a))
    # below the bound, but the theorem's condition on α_PL is not known: no "holds"
    assert r.verdict.status == "inconclusive"
    assert r.verdict.message.startswith("the measurement is below the bound")


def test_exact_expectation_on_the_quadratic_lies_in_the_band():
    pytest.importorskip("empirics.recursion")
    s = ExperimentSpec(name="q", problem={"kind": "noisy_quadratic", "d": 3, "c": 0.0},
                       algorithm={"name": "pasgd", "m": 4, "tau": 5}, lr=0.05, steps=60,
                       seeds=30, record_every=10)
    r = run_experiment(s)
    assert r.truth is not None and np.isnan(r.truth[0])
    inside = (r.truth[1:] >= r.lower[1:]) & (r.truth[1:] <= r.upper[1:])
    assert inside.mean() >= 0.8, (r.truth, r.lower, r.upper)
    assert r.verdict.status == "holds"


def test_cache_resumes_and_sweep_reports_trends(tmp_path):
    cache = RunCache(tmp_path)
    s = _spec(seeds=2, steps=40)
    a = run_experiment(s, cache=cache)
    assert cache.misses == 3 and cache.hits == 0  # two seeds and the prediction
    b = run_experiment(s, cache=cache)
    assert cache.hits == 3
    assert b.final["predicted"] == a.final["predicted"] is not None
    np.testing.assert_array_equal(a.per_seed, b.per_seed)
    sw = sweep(s, "algorithm.tau", [1, 2, 4], cache=cache)
    assert [row["algorithm.tau"] for row in sw.table()] == [1, 2, 4]
    # the bound's network term η²L²σ²(τ − 1) makes it affine increasing in τ
    assert sw.slope("bound") > 0
    bd = sw.column("bound")
    assert bd[2] - bd[1] == pytest.approx(2 * (bd[1] - bd[0]), rel=1e-9)


def test_result_round_trips_and_report_is_written(pasgd_result, tmp_path):
    from empirics.report import write_experiment_report

    d = pasgd_result.to_dict(runs=True)
    back = ExperimentResult.from_dict(d)
    np.testing.assert_array_equal(back.per_seed, pasgd_result.per_seed)
    assert back.verdict == pasgd_result.verdict and len(back.runs) == 4
    path = write_experiment_report(pasgd_result, tmp_path / "rep")
    text = path.read_text()
    assert "Verdict: holds" in text and "PASGD" in text
    assert (tmp_path / "rep" / "figure.png").stat().st_size > 1000
    assert math.isfinite(ExperimentResult.from_dict(
        __import__("json").loads((tmp_path / "rep" / "result.json").read_text())
    ).final["measured"])


def test_two_parameter_sweep_over_topology_and_tau(tmp_path):
    from empirics.experiment import sweep2

    s = _spec(name="dp", algorithm={"name": "decentralized_periodic", "m": 8, "tau": 1,
                                    "topology": "ring"}, seeds=2, steps=40)
    grid = sweep2(s, "algorithm.tau", [1, 4], "algorithm.topology", ["ring", "hypercube"],
                  cache=RunCache(tmp_path))
    assert set(grid) == {"ring", "hypercube"}
    z = {k: g.results[0].bound_info["values"]["zeta"] for k, g in grid.items()}
    assert z["ring"] == pytest.approx(theory.zeta(theory.ring(8)))
    assert z["hypercube"] == pytest.approx(theory.zeta(theory.hypercube(3)))
    # larger ζ, larger bound, at every τ (the network factor (1+ζ²)/(1−ζ²) grows with ζ)
    assert np.all(grid["ring"].column("bound") > grid["hypercube"].column("bound"))


def test_planted_relu_runs_without_a_bound():
    s = ExperimentSpec(name="relu", problem={"kind": "planted_relu", "d": 5},
                       algorithm={"name": "synchronous", "m": 2}, lr=0.2, steps=30, seeds=2,
                       record_every=10, bound="none")
    r = run_experiment(s)
    assert r.verdict.status == "no bound" and r.metric == "suboptimality"  # F* = 0 known
    assert r.mean[-1] < r.mean[1]  # it converges


def test_specs_build_the_issue_8_configurations():
    from empirics.experiment import build_config

    sq = build_config(_spec(algorithm={"name": "squarm", "m": 8, "topology": "ring", "tau": 2,
                                       "compressor": "topk:k=3", "gamma": 0.5,
                                       "threshold": 10.0, "momentum": 0.9}))
    assert sq.gossip.gamma == 0.5 and sq.gossip.threshold == 10.0 and sq.nesterov
    ch = build_config(_spec(algorithm={"name": "choco", "m": 8, "topology": "ring",
                                       "compressor": "topk:k=3", "gamma": 0.5}))
    assert ch.name == "choco" and ch.gossip.threshold == 0.0
    q = build_config(_spec(algorithm={"name": "qsgd", "m": 4, "s": 4}))
    assert q.error_feedback is False and q.compressor.s == 4
    with pytest.raises(ValueError, match="'squarm' needs 'compressor'"):
        _spec(algorithm={"name": "squarm", "m": 8, "topology": "ring"})
    with pytest.raises(ValueError, match="'squarm' needs 'gamma'"):
        _spec(algorithm={"name": "squarm", "m": 8, "topology": "ring", "compressor": "topk:k=3"})
