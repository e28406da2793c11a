"""empirics.laws.AutogradLaw: the local model of any smooth finite-sum torch problem (the MLP,
your own ModuleProblem) — against the independent margin formulas of GLMLaw on logistic
regression, its batched path against the per-worker one, its Hutch++ directions, its
refusals, and a prediction against the measured mean of the runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from empirics.experiment import ExperimentSpec, run_experiment
from empirics.laws import MAX_DIM, AutogradLaw, GLMLaw
from empirics.predict import predict


def _logistic(n: int = 300, d: int = 5, m: int = 1, seed: int = 0, l2: float = 1e-2):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n * m, d))
    s = np.sign(X @ rng.standard_normal(d) + 0.5 * rng.standard_normal(n * m))
    return X, s, l2


def _autograd_logistic(X, s, l2, shards, rank=16):
    """The same logistic loss written in torch, for the autograd law."""
    Xt, st = torch.as_tensor(X), torch.as_tensor(s)

    def loss(theta, Xb, sb):
        return torch.nn.functional.softplus(-sb * (Xb @ theta)).mean() + 0.5 * l2 * theta @ theta

    sets, seen, data_of = [], {}, []
    for idx in shards:
        key = tuple(idx.tolist())
        if key not in seen:
            seen[key] = len(sets)
            sets.append((Xt[idx], st[idx]))
        data_of.append(seen[key])
    d = X.shape[1]
    return AutogradLaw(loss, sets, data_of, np.zeros(d), np.zeros(d), 0.0, rank=rank)


def test_autograd_local_model_equals_the_margin_formulas_on_logistic_regression() -> None:
    """Hessian, per-draw noise covariance and the drift ½∇³F[C] by torch.func equal GLMLaw's
    closed forms (X ᵀ diag(ℓ'') X/n + l2·I, mean ℓ'²xxᵀ − ḡḡᵀ, ½ Xᵀ(s ℓ''' q)/n) to 1e-10
    (d ≤ 2·rank: every eigen-direction of C, no probes)."""
    X, s, l2 = _logistic()
    n, d = X.shape
    glm = GLMLaw(X, s, None, [np.arange(n)], l2, "logistic", np.zeros(d), np.zeros(d), 0.0,
                 closure="taylor")
    law = _autograd_logistic(X, s, l2, [np.arange(n)])
    rng = np.random.default_rng(1)
    mu = 0.5 * rng.standard_normal(d)
    A = 0.2 * rng.standard_normal((d, d))
    C = A @ A.T
    lin = glm._second(0, mu, None)  # H and Σ at the mean
    tay = glm._second(0, mu, C)  # the drift correction ½ Xᵀ(s ℓ''' q)/n
    got = law._second(0, mu, C)
    np.testing.assert_allclose(got["H"], lin["H"], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(got["Sigma"], lin["Sigma"], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(got["corr"], tay["corr"], rtol=1e-10, atol=1e-13)
    # the averaged model: the same Hessian and drift, and the loss E F = F(ū) + ½ tr(H C)
    H, corr, _ = law._observe_model(law._point(0, mu), C)
    np.testing.assert_allclose(H, lin["H"], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(corr, tay["corr"], rtol=1e-10, atol=1e-13)
    F = float(np.logaddexp(0.0, -s * (X @ mu)).mean()) + 0.5 * l2 * mu @ mu
    o = {"Hb": H}
    assert law._observe_loss(law._point(0, mu), mu, C, o) == pytest.approx(
        F + 0.5 * float(np.trace(H @ C)), rel=1e-12)


def test_batched_workers_equal_the_worker_by_worker_model() -> None:
    """Distinct shards of one size: one vmapped pass over all workers equals the per-worker
    Hessians, noises and drifts (to 1e-12), and the workers' gradients."""
    m, n = 4, 60
    X, s, l2 = _logistic(n=n, d=4, m=m)
    shards = [np.arange(i * n, (i + 1) * n) for i in range(m)]
    law = _autograd_logistic(X, s, l2, shards)
    assert law._batched()
    rng = np.random.default_rng(2)
    mu = 0.4 * rng.standard_normal((m, 4))
    A = 0.1 * rng.standard_normal((m, 4, 4))
    C = A @ A.transpose(0, 2, 1)
    H, S, corr = law._second_stacked(mu, C)
    for i in range(m):
        r = law._second(i, mu[i], C[i])
        np.testing.assert_allclose(H[i], r["H"], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(S[i], r["Sigma"], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(corr[i], r["corr"], rtol=1e-12, atol=1e-15)
    g = law._worker_grads(mu)
    for i in range(m):
        np.testing.assert_allclose(g[i], law._point(i, mu[i])["g"], rtol=1e-12, atol=1e-15)


def test_hutchpp_directions_are_exact_on_top_and_unbiased_below() -> None:
    """d > 2·rank: the rank leading eigen-directions of C exactly, plus Rademacher probes
    whose outer products average to C's remainder (Monte Carlo, 4000 draws, 5 σ)."""
    d, rank = 12, 3
    law = AutogradLaw(lambda t, x, y: (t * t).sum(), [(torch.zeros(1, 1), torch.zeros(1))],
                      [0], np.zeros(d), np.zeros(d), 0.0, rank=rank)
    rng = np.random.default_rng(3)
    A = rng.standard_normal((d, d))
    C = A @ A.T / d
    c, V = np.linalg.eigh(C)
    top = (V[:, -rank:] * c[-rank:]) @ V[:, -rank:].T
    acc = np.zeros((d, d))
    draws = 4000
    for _ in range(draws):
        W = law._directions(C)
        assert W.shape == (2 * rank, d)
        np.testing.assert_allclose(W[:rank].T @ W[:rank], top, atol=1e-12)
        acc += W.T @ W
    est = acc / draws
    # each entry of the probes' sum has variance ≤ (Σ_k c_k)²·2/rank per draw
    tol = 5 * np.sqrt(2 / rank / draws) * c[:-rank].sum()
    assert np.abs(est - C).max() < tol


def test_an_mlp_prediction_matches_the_measured_mean() -> None:
    """A tanh MLP (d = 51) with PASGD τ = 4 on i.i.d. shards (one per worker): the predicted running
    average of ‖∇F(u_k)‖² is within 10 % of the 8-seed mean at every 50th step, and the
    prediction lists the autograd model among its assumptions."""
    spec = ExperimentSpec(name="mlp", problem={"kind": "mlp", "n_samples": 400, "d_in": 4,
                                               "hidden": 6, "n_classes": 3, "seed": 0},
                          algorithm={"name": "pasgd", "m": 8, "tau": 4}, lr=0.2, steps=300,
                          record_every=50, seeds=8, bound="none", metric="grad_norm2_running")
    res = run_experiment(spec, progress=False)
    assert res.prediction["regime"] == "local model"
    assert any("automatic differentiation" in a for a in res.prediction["assumptions"])
    ratio = np.asarray(res.predicted[1:]) / np.asarray(res.mean[1:])
    assert np.all(np.abs(ratio - 1) < 0.1), ratio
    assert res.prediction["floor"] is None and "negative eigenvalue" in res.prediction[
        "floor_note"]
    # the MLP starts in a non-convex region: said, with the smallest eigenvalue met
    assert any(a.startswith("non-convex: the Hessian at the predicted mean had a negative")
               for a in res.prediction["assumptions"])


@pytest.mark.slow
def test_unscheduled_re_expansions_keep_heterogeneous_workers_on_track(monkeypatch) -> None:
    """Heterogeneous shards, τ = 8: the workers' means move far between scheduled
    re-expansions. With the forced re-expansion (TOL_FORCE) the prediction stays within 10 %
    of the 8-seed mean; without it the first-order means drift over 1.5× off by K = 300."""
    import empirics.laws as L

    spec = ExperimentSpec(name="mlp", problem={"kind": "mlp", "n_samples": 400, "d_in": 4,
                                               "hidden": 6, "n_classes": 3, "seed": 0,
                                               "heterogeneity": 1.0},
                          algorithm={"name": "pasgd", "m": 8, "tau": 8}, lr=0.2, steps=300,
                          record_every=50, seeds=8, bound="none", metric="grad_norm2_running")
    res = run_experiment(spec, progress=False)
    ratio = np.asarray(res.predicted[1:]) / np.asarray(res.mean[1:])
    assert np.all(np.abs(ratio - 1) < 0.1), ratio
    monkeypatch.setattr(L, "TOL_FORCE", None)
    p = predict(spec, floor=False)
    assert p.final / res.mean[-1] > 1.5


def test_a_local_model_blown_up_by_negative_curvature_is_out_of_regime() -> None:
    """Stronger ridge, longer run: the linearised spread grows along a negative eigenvalue and
    the predicted E‖∇F(u_k)‖² jumps hundreds of times above its minimum (empirics.moments.
    LOCAL_JUMP) while every run converges. The prediction is out of regime and says why (not
    "lower the learning rate")."""
    spec = ExperimentSpec(name="mlp", problem={"kind": "mlp", "n_samples": 400, "d_in": 4,
                                               "hidden": 6, "n_classes": 3, "seed": 0,
                                               "l2": 1e-2},
                          algorithm={"name": "pasgd", "m": 8, "tau": 4}, lr=0.2, steps=600,
                          record_every=100, seeds=3, bound="none", metric="grad_norm2_running")
    res = run_experiment(spec, progress=False)
    assert all(r.status == "completed" for r in res.runs)
    why = res.prediction["reason"]
    assert res.prediction["regime"] == "out of regime" and "negative eigenvalue" in why
    assert "the local model has left its regime" in why and "runs may well converge" in why


def _module_spec(model: dict, **problem) -> ExperimentSpec:
    return ExperimentSpec(name="mod", problem={"kind": "module", "model": model,
                                               "data": {"name": "digits", "n_train": 120},
                                               "n_points": 2, "ref_steps": 10,
                                               "power_iters": 3, **problem},
                          algorithm={"name": "pasgd", "m": 2, "tau": 2}, lr=0.05, steps=6,
                          record_every=3, seeds=2, bound="none")


@pytest.mark.parametrize(("factory", "why"), [
    ("tests.empirics.test_predict_autograd:_relu_net", "contains ReLU, not three times"),
    ("tests.empirics.test_predict_autograd:_bn_net", "batch statistics"),
    ("tests.empirics.test_predict_autograd:_wide_net", f"up to d = {MAX_DIM}"),
])
def test_own_models_outside_the_local_model_are_refused_with_the_reason(factory, why):
    p = predict(_module_spec({"factory": factory}), floor=False)
    assert not p.in_regime and why in p.reason


def test_a_smooth_own_model_is_predicted_and_run_can_skip_it(tmp_path) -> None:
    s = _module_spec({"factory": "tests.empirics.test_predict_autograd:_tanh_net"})
    p = predict(s, floor=False)
    assert p.in_regime and p.regime == "local model" and np.isfinite(p.final)
    from click.testing import CliRunner

    from empirics.cli import main

    spec = tmp_path / "s.json"
    spec.write_text(json.dumps(s.to_dict()))
    r = CliRunner().invoke(main, ["run", str(spec), "--out", str(tmp_path / "o"), "--quiet",
                                  "--no-predict"])
    assert r.exit_code == 0, r.output
    out = json.loads((tmp_path / "o" / "result.json").read_text())
    assert out["prediction"] is None and out["predicted"] is None


def _relu_net() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 4), nn.ReLU(), nn.Linear(4, 10))


def _bn_net() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 4), nn.BatchNorm1d(4), nn.Tanh(),
                         nn.Linear(4, 10))


def _wide_net() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 10))


def _tanh_net() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 4), nn.Tanh(), nn.Linear(4, 10))


def test_a_prediction_over_the_time_budget_is_refused_with_the_estimate(monkeypatch) -> None:
    """The projected cost (the second re-expansion's seconds × twice the scheduled
    re-expansions) above empirics.laws.AUTOGRAD_BUDGET_S: out of regime, naming the estimate
    and the knob; None lifts the cap."""
    import empirics.laws as L

    s = ExperimentSpec(name="mlp", problem={"kind": "mlp", "n_samples": 120, "d_in": 3,
                                            "hidden": 4, "n_classes": 3, "seed": 0},
                       algorithm={"name": "pasgd", "m": 4, "tau": 2}, lr=0.1, steps=40,
                       record_every=20, seeds=2, bound="none")
    monkeypatch.setattr(L, "AUTOGRAD_BUDGET_S", 1e-6)
    p = predict(s, floor=False)
    assert not p.in_regime and "the autograd local model would take ≈" in p.reason
    assert "up to 25 re-expansions" in p.reason and "AUTOGRAD_BUDGET_S" in p.reason
    monkeypatch.setattr(L, "AUTOGRAD_BUDGET_S", None)
    assert predict(s, floor=False).in_regime


def test_a_law_propagated_twice_gives_the_same_numbers() -> None:
    """d > 2·rank (Rademacher probes drawn at every re-expansion): a second propagation of the
    same AutogradLaw starts its probes, counts and eigenvalues afresh — the same columns to the
    last digit and the same re-expansion counts; a law with another seed draws other probes."""
    from empirics.configs import pasgd
    from empirics.moments import propagate

    X, s, l2 = _logistic(n=60, d=12, m=4)
    shards = np.array_split(np.arange(X.shape[0]), 4)
    law = _autograd_logistic(X, s, l2, shards, rank=3)
    cfg = pasgd(4, 4)
    a = propagate(law, cfg, 0.3, 60, record_every=10)
    b = propagate(law, cfg, 0.3, 60, record_every=10)
    assert a.info["reexpansions"] == b.info["reexpansions"]
    for col, v in a.columns.items():
        np.testing.assert_array_equal(v, b.columns[col], err_msg=col)
    law2 = _autograd_logistic(X, s, l2, shards, rank=3)
    law2.seed = 1
    c = propagate(law2, cfg, 0.3, 60, record_every=10)
    assert not np.array_equal(a.columns["grad_norm2_running"], c.columns["grad_norm2_running"])
