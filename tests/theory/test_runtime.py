"""Runtime model, decentralized error-at-wall-clock bound, joint choice of (W, τ)."""

import math

import networkx as nx
import numpy as np
import pytest
import sympy as sp

from theory.bound import Status
from theory.bounds import cooperative as coop
from theory.bounds import runtime as rt
from theory.mixing import average, easgd_matrix, hypercube, identity, metropolis_hastings, ring

VALS = dict(eta=0.01, L=1.0, sigma2=1.0, F_gap=10.0, Y=0.01, T_wall=100.0)


def test_topology_delay():
    assert rt.topology_delay(ring(16), latency=0.5) == 1.0
    assert rt.topology_delay(hypercube(3), latency=1.0) == 3.0
    assert rt.topology_delay(average(8), latency=1.0) == 7.0
    assert rt.topology_delay(identity(4), base=0.25) == 0.25
    assert rt.topology_delay(easgd_matrix(5, 0.1)) == 5.0  # the centre talks to all workers
    costs = np.arange(16.0).reshape(4, 4)
    W = metropolis_hastings(nx.path_graph(4))
    # node 1: edges to 0 and 2 cost 4 + 6; node 2: 9 + 11 = 20 (the max)
    assert rt.topology_delay(W, edge_costs=costs) == 20.0
    with pytest.raises(ValueError, match="edge_costs must be 4×4"):
        rt.topology_delay(W, edge_costs=np.ones((3, 3)))
    bad = np.ones((4, 4))
    bad[1, 2] = -1
    with pytest.raises(ValueError, match=r"edge \(1, 2\) costs -1"):
        rt.topology_delay(W, edge_costs=bad)
    with pytest.raises(ValueError, match="latency must be"):
        rt.topology_delay(W, latency=float("nan"))


def test_iterations_within():
    assert rt.iterations_within(100.0, 0.01, 0.5, 50) == pytest.approx(100 / (0.01 + 0.01))
    with pytest.raises(ValueError, match="tau must be an integer"):
        rt.iterations_within(1.0, 1.0, 1.0, 0)
    with pytest.raises(ValueError, match="Y must be"):
        rt.iterations_within(1.0, 0.0, 1.0, 1)


def test_bound_is_derived_and_reduces_to_adacomm():
    b = rt.decentralized_runtime_bound()
    assert b.source.status is Status.DERIVED
    vals = dict(VALS, D=0.5, m=8, tau=20)
    assert math.isclose(b.evaluate(**vals, zeta=0, v=0),
                        coop.runtime_bound().evaluate(**vals), rel_tol=1e-12)
    # an independent float evaluation at ζ > 0, v = 1
    z, m_, v_, t = 0.7, 8, 1, 20
    eff = m_ * VALS["eta"] / (m_ + v_)
    K = VALS["T_wall"] / (VALS["Y"] + 0.5 / t)
    ref = (2 * VALS["F_gap"] / (eff * K) + eff * VALS["L"] * VALS["sigma2"] / m_
           + VALS["eta"] ** 2 * VALS["L"] ** 2 * VALS["sigma2"] * ((1 + z**2) / (1 - z**2) * t - 1))
    assert math.isclose(b.evaluate(**dict(vals, zeta=z, v=v_)), ref, rel_tol=1e-12)


def test_tau_star_closed_form():
    ts = rt.optimal_tau_decentralized()
    from theory.symbols import D, F_gap, L, T_wall, eta, m, sigma2, v, zeta

    expected = sp.sqrt(2 * F_gap * D * (m + v) * (1 - zeta**2)
                       / (m * eta**3 * L**2 * sigma2 * T_wall * (1 + zeta**2)))
    vals = {F_gap: 3, D: 0.2, m: 7, v: 1, zeta: 0.4, eta: 0.02, L: 2, sigma2: 1.5, T_wall: 50}
    assert math.isclose(float(ts.subs(vals)), float(expected.subs(vals)), rel_tol=1e-12)


def _brute_force(W, v_, D_, cap):
    b = rt.decentralized_runtime_bound().subs(VALS, zeta=W.zeta, D=D_, m=W.n - v_, v=v_)
    f = sp.lambdify(sp.Symbol("tau", positive=True, integer=True), b.expr)
    taus = np.arange(1, cap + 1)
    # Theorem 1's learning-rate condition, JMLR eq. 145, typed in independently: it bounds τ
    e, L_, z, m_ = VALS["eta"], VALS["L"], W.zeta, W.n - v_
    drift = taus**2 / (1 - z) * (2 * z**2 / (1 + z) + 2 * z / (1 - z) + (taus - 1) / taus)
    taus = taus[m_ / (m_ + v_) * e * L_ + e**2 * L_**2 * drift <= 1]
    vals = np.array([f(int(t)) for t in taus])
    i = int(np.argmin(vals))
    return int(taus[i]), float(vals[i])


def test_best_topology_and_tau_matches_brute_force():
    cands = {"ring": ring(16), "hypercube": hypercube(4), "J": average(16),
             "easgd": (easgd_matrix(15, 2 / 17), 1)}
    res = rt.best_topology_and_tau(cands, VALS, latency=0.05, tau_max=2000)
    assert [r.value for r in res.table] == sorted(r.value for r in res.table)
    assert res.best is res.table[0]
    for row in res.table:
        W, v_ = (cands[row.name] if isinstance(cands[row.name], tuple) else (cands[row.name], 0))
        t, val = _brute_force(W, v_, row.D, 2000)
        assert row.tau == t and math.isclose(row.value, val, rel_tol=1e-9), row.name
    assert res.best.name == "hypercube"
    assert "best: hypercube" in str(res)


def test_pasgd_candidate_respects_its_learning_rate_condition():
    """W = J, v = 0 is PASGD: the search obeys eq. 145 at ζ = 0, v = 0, i.e. Corollary 2's
    ηL + η²L²τ(τ−1) ≤ 1, and agrees with the AdaComm runtime bound's own constrained minimum
    (τ ≤ 10 at η = 0.1, L = 1)."""
    vals = dict(VALS, eta=0.1)
    res = rt.best_topology_and_tau({"J": average(16)}, vals, latency=5.0)
    D_ = rt.topology_delay(average(16), latency=5.0)
    ada = coop.runtime_bound().minimize("tau", eta=0.1, L=1.0, sigma2=1.0, F_gap=10.0, Y=0.01,
                                        T_wall=100.0, D=D_, m=16)
    assert res.best.tau == 10 == ada.argmin
    assert math.isclose(res.best.value, float(ada.value), rel_tol=1e-12)
    # η L > 1: no admissible τ at all
    with pytest.raises(ValueError, match="no candidate"):
        rt.best_topology_and_tau({"J": average(16)}, dict(VALS, eta=2.0), latency=5.0)


def test_free_communication_prefers_tau_one_and_custom_delay():
    res = rt.best_topology_and_tau({"J": average(8)}, VALS, delay=lambda W: 0.0)
    assert res.best.tau == 1


def test_disconnected_candidates():
    res = rt.best_topology_and_tau({"I": identity(8), "ring": ring(8)}, VALS)
    assert res.best.name == "ring" and math.isinf(res.table[-1].value)
    with pytest.raises(ValueError, match=r"no candidate has a finite bound: ζ = 1"):
        rt.best_topology_and_tau({"I": identity(8)}, VALS)


def test_argument_errors():
    with pytest.raises(ValueError, match="values is missing T_wall"):
        rt.best_topology_and_tau({"r": ring(8)}, {k: v for k, v in VALS.items() if k != "T_wall"})
    with pytest.raises(ValueError, match="must not fix m"):
        rt.best_topology_and_tau({"r": ring(8)}, dict(VALS, m=8))
    with pytest.raises(ValueError, match="at least one"):
        rt.best_topology_and_tau({}, VALS)
    with pytest.raises(ValueError, match=r"v must be an integer in \[0, 8\)"):
        rt.best_topology_and_tau({"r": (ring(8), 8)}, VALS)


def test_designed_weights_beat_metropolis_on_the_same_graph():
    from theory.design import fastest_mixing

    G = nx.path_graph(6)
    fm = fastest_mixing(G)
    mh = metropolis_hastings(G)
    res = rt.best_topology_and_tau({"fmmc": fm, "mh": mh}, VALS, latency=0.05)
    by = {r.name: r for r in res.table}
    assert by["fmmc"].zeta < by["mh"].zeta
    assert by["fmmc"].D <= by["mh"].D  # same support (or sparser)
    assert res.best.name == "fmmc" and by["fmmc"].value < by["mh"].value
