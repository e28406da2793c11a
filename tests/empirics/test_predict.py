"""empirics.predict: the Prediction API, floors, regimes, the local model's closures, the
choices under a budget, the CLI (exactness: test_predict_exact.py; Monte Carlo:
test_predict_montecarlo.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from empirics.configs import one_shot
from empirics.experiment import ExperimentSpec, run_experiment
from empirics.laws import PiecewiseLaw, law_for
from empirics.moments import propagate, stationary
from empirics.predict import Prediction, best_tau, best_topology, predict
from empirics.problems import PiecewiseQuadratic1D
from empirics.recursion import exact_moments


def _spec(**kw) -> ExperimentSpec:
    base = {"name": "q", "problem": {"kind": "noisy_quadratic", "d": 3, "c": 0.5, "sigma": 0.5},
            "algorithm": {"name": "pasgd", "m": 4, "tau": 3}, "lr": 0.1, "steps": 60,
            "record_every": 5, "seeds": 2}
    return ExperimentSpec(**(base | kw))


def _logreg(**kw) -> ExperimentSpec:
    base = {"name": "lr", "problem": {"kind": "logistic_regression", "n_samples": 400, "d": 6,
                                      "l2": 1e-3, "seed": 0, "sampling": "shared"},
            "algorithm": {"name": "pasgd", "m": 8, "tau": 4}, "lr": 0.3, "steps": 300,
            "record_every": 10, "seeds": 2}
    return ExperimentSpec(**(base | kw))


def test_prediction_on_a_quadratic_is_the_exact_recursion() -> None:
    s = _spec()
    p = predict(s, metric="suboptimality")
    problem, cfg, lr = s.build()
    mo = exact_moments(problem, cfg, lr, s.steps, record_every=s.record_every)
    assert p.exact and p.in_regime and p.regime == "exact"
    np.testing.assert_array_equal(p.steps, mo.steps)
    np.testing.assert_allclose(p.values, mo.suboptimality, rtol=1e-13)
    assert p.at(30) == pytest.approx(mo.suboptimality[6], rel=1e-13)
    assert p.at(31) is None and p.final == pytest.approx(mo.suboptimality[-1], rel=1e-13)
    back = Prediction.from_dict(json.loads(json.dumps(p.to_dict())))
    np.testing.assert_allclose(back.values, p.values, rtol=0, atol=0)
    assert back.regime == "exact" and "Prediction(q" in repr(p)


def test_floor_is_the_long_run_limit() -> None:
    """Stein solve of the stationary cycle = the propagation run long (exact law: to 1e-9)."""
    s = _spec(steps=3000, record_every=1000)
    p = predict(s, metric="grad_norm2")
    run_long = predict(_spec(steps=3003, record_every=1), metric="grad_norm2", floor=False)
    cycle = run_long.values[-4:-1]  # the last full period (τ = 3)
    assert p.floor == pytest.approx(float(np.mean(cycle)), rel=1e-9)
    assert "Stein" in p.floor_note


def test_floor_with_an_auxiliary_node_and_momentum() -> None:
    """EASGD with heavy ball: the centre has no momentum slot of its own (it stays exactly zero),
    so the round map contracts and the floor is the long-run cycle (exact law: to 1e-9)."""
    alg = {"name": "easgd", "m": 4, "tau": 3, "alpha": 0.1, "momentum": 0.5}
    p = predict(_spec(algorithm=alg, steps=3000, record_every=1000), metric="grad_norm2")
    run_long = predict(_spec(algorithm=alg, steps=3003, record_every=1), metric="grad_norm2",
                       floor=False)
    assert p.floor == pytest.approx(float(np.mean(run_long.values[-4:-1])), rel=1e-9)


def test_no_floor_for_a_decaying_step_or_a_non_periodic_schedule() -> None:
    p = predict(_spec(lr={"kind": "inverse_time", "a": 1.0, "beta": 5.0}))
    assert p.floor is None and "not constant" in p.floor_note
    prob = law_for(_spec().build()[0])
    run = propagate(prob, one_shot(4), 0.1, 20)
    assert stationary(run, one_shot(4), 0.1, 1)[0] is None


@pytest.mark.parametrize("alg,why", [
    ({"name": "mdsgd", "m": 4, "compressor": "topk:k=1"}, "second moment is not linear"),
    ({"name": "choco", "m": 4, "topology": "ring", "compressor": "randk:k=1", "gamma": 0.5},
     "gossip"),
])
def test_out_of_regime_says_why_and_the_run_still_stands(alg: dict, why: str) -> None:
    s = _spec(algorithm=alg, steps=20, seeds=2, bound="none", metric="suboptimality")
    p = predict(s)
    assert not p.in_regime and p.values is None and why in p.reason
    assert "out of regime" in repr(p)
    res = run_experiment(s, progress=False)
    assert res.predicted is None and res.final["predicted"] is None
    assert res.prediction["regime"] == "out of regime"


def test_a_predictor_failure_warns_and_the_run_still_stands(monkeypatch) -> None:
    """A bug in the predictor must not lose the run, and must not pass silently: a
    RuntimeWarning naming it, and the prediction reported out of regime with the error."""
    import empirics.predict as pr

    def broken(*a, **k):
        raise TypeError("planted")

    monkeypatch.setattr(pr, "predict_built", broken)
    s = _spec(steps=20, seeds=2, bound="none")
    with pytest.warns(RuntimeWarning, match=r"the predictor failed \(TypeError: planted\)"):
        res = run_experiment(s, progress=False)
    assert res.predicted is None and res.prediction["regime"] == "out of regime"
    assert "predictor failed: TypeError: planted" in res.prediction["reason"]
    plain = run_experiment(s, progress=False, predict=False)
    np.testing.assert_array_equal(res.per_seed, plain.per_seed)
    assert res.verdict.status == plain.verdict.status


def test_error_feedback_with_a_non_contracting_compressor_names_the_compressor() -> None:
    """Random-k rescaled by d/k (ω = d/k − 1 = 5) under error feedback: the memory grows by
    E‖e_{k+1}‖² = ω E‖u_k‖² whatever η. The prediction and the diverged run both say so,
    instead of asking for a lower learning rate."""
    s = _spec(problem={"kind": "noisy_quadratic", "d": 6, "c": 0.0, "sigma": 0.5},
              algorithm={"name": "mdsgd", "m": 4, "compressor": "randk:k=1,unbiased=true"},
              lr=1e-3, steps=400, seeds=2, bound="none", metric="suboptimality")
    p = predict(s, floor=False)
    assert not p.in_regime and "diverge" in p.reason
    assert "RandomK(k=1, unbiased=True), which is not a contraction at d = 6 (ω = 5" in p.reason
    res = run_experiment(s, progress=False, predict=False)
    msg = " ".join(r.message for r in res.runs)
    assert "not a contraction" in msg and "lower the learning rate" not in msg
    # a contraction (random-k without rescaling) is not blamed
    from empirics.compressors import RandomK
    from empirics.configs import mdsgd
    assert mdsgd(4, RandomK(1)).divergence_hint(6) == "lower the learning rate"


def test_problem_without_a_law_is_out_of_regime() -> None:
    s = ExperimentSpec(name="relu", problem={"kind": "planted_relu"}, algorithm={
        "name": "pasgd", "m": 2, "tau": 2}, lr=0.05, steps=5, seeds=2)
    p = predict(s, floor=False)
    assert p.values is None and "no gradient law for PlantedReLU" in p.reason


def test_run_experiment_carries_the_prediction() -> None:
    res = run_experiment(_spec(), progress=False)
    assert res.predicted is not None and res.prediction["regime"] == "exact"
    assert res.final["predicted_ratio"] == pytest.approx(
        res.final["predicted"] / res.final["measured"])
    np.testing.assert_allclose(res.truth, res.predicted, rtol=1e-12)
    assert "predicted" in repr(res)


def test_the_linearised_closure_is_blind_to_tau_and_the_gaussian_one_is_not() -> None:
    """On i.i.d. logistic regression a model linearised at the mean cannot see τ (the
    averaged model of a linear-gradient problem follows mini-batch SGD); the closures that keep
    the workers' spread do."""
    a = predict(_logreg(), closure="linear", floor=False)
    b = predict(_logreg(algorithm={"name": "pasgd", "m": 8, "tau": 32}), closure="linear",
                floor=False)
    np.testing.assert_allclose(a.values, b.values, rtol=1e-10)
    g1 = predict(_logreg(), floor=False)
    g32 = predict(_logreg(algorithm={"name": "pasgd", "m": 8, "tau": 32}), floor=False)
    assert abs(g32.final - g1.final) > 1e-3 * g1.final
    t1 = predict(_logreg(), closure="taylor", floor=False)
    assert t1.final == pytest.approx(g1.final, rel=0.05)  # its leading term
    assert g1.regime == "local model" and any("Gaussian" in x for x in g1.assumptions)


def test_heterogeneous_logistic_regression_is_predicted() -> None:
    s = _logreg(problem={"kind": "logistic_regression", "n_samples": 400, "d": 6,
                         "l2": 1e-3, "seed": 0, "heterogeneity": 1.0})
    p = predict(s, floor=False)
    assert p.in_regime and any("distinct shards per worker" in x for x in p.assumptions)
    d = predict(s, floor=False, structure="dense")
    assert d.final == pytest.approx(p.final, rel=0.05)


def test_piecewise_law_is_exact_without_noise_on_one_side() -> None:
    """σ = 0 and x₀ > 0: the iterate stays on the steep branch (f' = 2μx): deterministic GD."""
    p = PiecewiseQuadratic1D(m=1, mu=1.0, sigma=0.0, x0=2.0)
    run = propagate(law_for(p), one_shot(1), 0.1, 10)
    x = 2.0 * 0.8 ** np.arange(11)
    np.testing.assert_allclose(run.columns["suboptimality"], x**2, rtol=1e-12)
    assert isinstance(law_for(p), PiecewiseLaw)


def test_best_tau_and_best_topology_under_a_budget() -> None:
    s = _logreg(steps=200)
    tc = best_tau(s, [1, 2, 8], wall=300.0, Y=1.0, D=1.0)
    assert [r["tau"] for r in tc.table] == [1, 2, 8]
    assert [r["steps"] for r in tc.table] == [150, 200, 266]
    assert tc.best == min(tc.table, key=lambda r: r["predicted"])["tau"]
    assert tc.bound_tau is not None and tc.bound_tau > 0 and "TauChoice" in repr(tc)
    assert best_tau(s, [1, 2, 8], rounds=30).best == 8  # τ ≥ K/rounds ≈ 6.7
    d = _logreg(algorithm={"name": "dpsgd", "m": 8, "topology": "ring"}, steps=200)
    tp = best_topology(d, ["ring", "complete"], wall=600.0)
    assert {r["name"] for r in tp.table} == {"ring", "complete"}
    assert tp.best in ("ring", "complete") and tp.bound_best is not None
    assert all("reason" in r for r in tp.table)  # an out-of-regime row says why
    with pytest.raises(ValueError, match="needs an algorithm with a period"):
        best_tau(d)


def test_piecewise_speedup_saturates_for_one_shot_only() -> None:
    from empirics.reproductions.growing_intervals import predicted_speedup

    pr = predicted_speedup([2, 32], 1000)
    assert pr["speedup"]["one_shot"][-1] < 0.5 * 32 < pr["speedup"]["this_paper"][-1]


def test_cli_predict(tmp_path) -> None:
    spec = tmp_path / "s.toml"
    spec.write_text('name = "q"\nlr = 0.1\nsteps = 40\nrecord_every = 10\n[problem]\n'
                    'kind = "noisy_quadratic"\nd = 3\n[algorithm]\nname = "pasgd"\nm = 4\n'
                    'tau = 2\n')
    cmd = [sys.executable, "-m", "empirics.cli", "predict", str(spec)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "predicted" in r.stdout and "exact" in r.stdout and "floor" in r.stdout
    r = subprocess.run([*cmd, "--json", "--best-tau", "1,2,4", "--rounds", "20"],
                       capture_output=True, text=True, timeout=300)
    out = json.loads(r.stdout)
    assert out["prediction"]["regime"] == "exact" and out["best_tau"]["best"] in (2, 4)
    bad = tmp_path / "b.toml"
    bad.write_text(spec.read_text().replace('"pasgd"\nm = 4\ntau = 2',
                                            '"mdsgd"\nm = 4\ncompressor = "topk:k=1"'))
    r = subprocess.run([sys.executable, "-m", "empirics.cli", "predict", str(bad)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "out of the predictor's regime" in r.stdout



@pytest.mark.parametrize("alg", [
    {"name": "pasgd", "m": 8, "tau": 4},
    {"name": "dpsgd", "m": 8, "topology": "ring"},
    {"name": "easgd", "m": 8, "tau": 2, "alpha": 0.1},
    {"name": "pasgd", "m": 8, "tau": 4, "momentum": 0.5},
    {"name": "mdsgd", "m": 8, "compressor": "randk:k=2", "momentum": 0.5},
    {"name": "mdsgd", "m": 8, "compressor": "randk:k=3,unbiased=true", "tau": 2},
    {"name": "easgd", "m": 8, "tau": 2, "alpha": 0.1, "momentum": 0.5}])
def test_eigenbasis_engine_equals_the_plain_engine(alg, monkeypatch) -> None:
    """The local model's blocks held in the Jacobian's eigenbasis (slot maps per coordinate,
    elementwise for plain SGD, rotated at each re-expansion; momentum and random-k error
    feedback included) give the plain engine's numbers to rounding, floor included (the
    floor's solve runs on the engine brought back to the original coordinates)."""
    import empirics.moments as mo

    s = _logreg(algorithm=alg, lr=0.1)
    run = propagate(law_for(s.build()[0]), s.build()[1], 0.1, 20)
    assert type(run.state).__name__ == "_EigenEngine"
    fast = predict(s)
    monkeypatch.setattr(mo, "EIGEN", False)
    plain = predict(s)
    for col in ("grad_norm2_running", "suboptimality", "dist2_u", "dist2_workers",
                "memory_norm2_workers", "memory_norm2"):
        np.testing.assert_allclose(fast.columns[col], plain.columns[col], rtol=1e-9,
                                   atol=1e-300, err_msg=col)
    assert fast.columns["consensus"][1:] == pytest.approx(plain.columns["consensus"][1:],
                                                          rel=1e-8)
    if "compressor" in alg and plain.floor is None:  # the fixed point may not converge here
        assert fast.floor is None and fast.floor_note == plain.floor_note
    else:
        assert fast.floor is not None and fast.floor == pytest.approx(plain.floor, rel=1e-9)


def test_eigenbasis_engine_on_heterogeneous_shards_with_momentum(monkeypatch) -> None:
    """Per-worker means and Jacobians (the modal average propagates the covariance): the
    eigenbasis engine = the plain engine to rounding."""
    import empirics.moments as mo

    s = _logreg(problem={"kind": "logistic_regression", "n_samples": 400, "d": 6, "l2": 1e-3,
                         "seed": 0, "heterogeneity": 1.0},
                algorithm={"name": "pasgd", "m": 8, "tau": 4, "momentum": 0.5}, lr=0.1)
    fast = predict(s, floor=False)
    monkeypatch.setattr(mo, "EIGEN", False)
    plain = predict(s, floor=False)
    for col in ("grad_norm2_running", "suboptimality", "dist2_workers"):
        np.testing.assert_allclose(fast.columns[col], plain.columns[col], rtol=1e-9,
                                   err_msg=col)


def test_modal_newton_floor_equals_the_dense_one() -> None:
    """The stationary means solved mode by mode (blocks of the round map) = one dense solve of
    the stacked means (structure='dense'), shared data (the two structures are the same model)."""
    s = _logreg()
    a = predict(s)
    b = predict(s, structure="dense")
    assert a.structure.startswith("modal") and b.structure.startswith("dense")
    assert a.floor == pytest.approx(b.floor, rel=1e-8)


def test_stacked_second_order_quantities_equal_the_per_worker_ones() -> None:
    """Heterogeneous shards: the batched re-expansion of all workers = worker by worker."""
    s = _logreg(problem={"kind": "logistic_regression", "n_samples": 400, "d": 6, "l2": 1e-3,
                         "seed": 0, "heterogeneity": 1.0})
    law = law_for(s.build()[0])
    rng = np.random.default_rng(0)
    mu = 0.3 * rng.standard_normal((8, 6))
    A = 0.1 * rng.standard_normal((8, 6, 6))
    C = A @ A.transpose(0, 2, 1)
    assert law._stacked() is not False
    H, S, corr = law._second_stacked(mu, C)
    for i in range(8):
        r = law._second(law.data_of[i], mu[i], C[i])
        np.testing.assert_allclose(H[i], r["H"], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(S[i], r["Sigma"], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(corr[i], r["corr"], rtol=1e-12, atol=1e-15)


def test_a_kept_local_model_stays_close_to_re_expanding_every_step(monkeypatch) -> None:
    """Skipping re-expansions while the model holds and the mean gradients' first-order model
    between them change the prediction by little against a model re-expanded at every step
    (exact mean gradients), and they do skip (fewer re-expansions)."""
    import empirics.laws as L

    s = _logreg(steps=400)
    kept = predict(s, floor=False)
    counts = {}
    orig = L.GLMLaw._refresh

    def counting(self, *a, **k):
        counts[id(self)] = counts.get(id(self), 0) + 1
        return orig(self, *a, **k)

    monkeypatch.setattr(L.GLMLaw, "_refresh", counting)
    predict(s, floor=False)
    n_kept = sum(counts.values())
    monkeypatch.setattr(L, "REEXPAND_GROWTH", 10**9)
    monkeypatch.setattr(L, "TOL_MARGIN", None)
    counts.clear()
    every = predict(s, floor=False, refresh=1)
    assert sum(counts.values()) == 401 - 1 and n_kept < 100
    for col in ("grad_norm2_running", "suboptimality"):
        np.testing.assert_allclose(kept.columns[col][1:], every.columns[col][1:], rtol=0.03,
                                   err_msg=col)


def test_the_run_reports_the_local_models_re_expansions(monkeypatch) -> None:
    """MomentRun.info["reexpansions"] = (re-expansions of the workers' model, of the averaged
    model), equal to independently counted calls of _refresh and _observe_model, with their
    time in law.reexpand_seconds; an exact law reports (None, None)."""
    import empirics.laws as L

    calls = {"_refresh": 0, "_observe_model": 0}
    for name in calls:
        orig = getattr(L.GLMLaw, name)

        def counting(self, *a, _orig=orig, _name=name, **k):
            calls[_name] += 1
            return _orig(self, *a, **k)

        monkeypatch.setattr(L.GLMLaw, name, counting)
    problem, cfg, lr = _logreg().build()
    law = law_for(problem)
    run = propagate(law, cfg, lr, 300, record_every=10)
    assert run.info["reexpansions"] == (calls["_refresh"], calls["_observe_model"])
    assert min(calls.values()) > 5 and law.reexpand_seconds > 0
    problem, cfg, lr = _spec().build()
    assert propagate(law_for(problem), cfg, lr, 60).info["reexpansions"] == (None, None)
