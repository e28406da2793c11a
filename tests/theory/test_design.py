"""Tests for theory.design (FMMC / FDLA design with certificates, SDP and first-order)."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from theory.design import (
    DesignResult,
    certify,
    compare_weights,
    design_schedule,
    edge_orbits,
    fastest_averaging,
    fastest_mixing,
)
from theory.design.certificate import lower_bound, support_upper
from theory.design.first_order import spectral_bundle
from theory.design.problem import design_problem
from theory.mixing import (
    MixingMatrix,
    complete_graph,
    hypercube_graph,
    metropolis_hastings,
    path_graph,
    random_geometric_graph,
    ring_graph,
    torus_graph,
)
from theory.spectral import zeta

TOL = 1e-6  # interior-point accuracy on ζ


def _zeta_indep(W: np.ndarray) -> float:
    """ζ by singular values of W − J (independent of theory.spectral's eigvalsh)."""
    n = W.shape[0]
    return float(np.linalg.svd(W - 1.0 / n, compute_uv=False)[0])


def _check_result(r: DesignResult, G: nx.Graph, *, nonneg: bool) -> None:
    W = r.W
    n = G.number_of_nodes()
    assert W.shape == (n, n)
    assert np.allclose(W, W.T, atol=1e-12)
    assert np.abs(W.sum(axis=1) - 1).max() <= 1e-9
    if nonneg:
        assert W.min() >= 0.0
    idx = {u: k for k, u in enumerate(r.labels)}
    A = np.zeros((n, n), bool)
    for u, v in G.edges:
        A[idx[u], idx[v]] = A[idx[v], idx[u]] = True
    np.fill_diagonal(A, True)
    assert np.all(W[~A] == 0)
    assert isinstance(r.mixing, MixingMatrix)
    assert r.zeta == pytest.approx(_zeta_indep(W), abs=1e-10)
    assert r.spectral_gap == pytest.approx(1 - r.zeta)
    assert r.lower_bound <= r.zeta + 1e-12
    assert r.relative_gap == pytest.approx((r.zeta - r.lower_bound) / (1 - r.zeta), abs=1e-12)


# --------------------------------------------------------------------------------------------
# closed forms
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [4, 7, 10])
def test_path_fmmc_is_cos_pi_over_n(n):
    r = fastest_mixing(path_graph(n), method="sdp")
    z_star = math.cos(math.pi / n)
    _check_result(r, path_graph(n), nonneg=True)
    assert r.zeta == pytest.approx(z_star, abs=TOL)
    assert r.lower_bound <= z_star + 1e-12  # the certificate never exceeds the true optimum
    assert r.lower_bound >= z_star - 1e-5
    assert r.status == "optimal"


def test_complete_graph_fmmc_is_zero():
    r = fastest_mixing(complete_graph(5), method="sdp")
    assert r.zeta <= 1e-6
    assert r.lower_bound <= 1e-12
    assert np.allclose(r.W, 1 / 5, atol=1e-6)


@pytest.mark.parametrize("d", [2, 3])
def test_hypercube_fmmc(d):
    G = hypercube_graph(d)
    r = fastest_mixing(G)
    _check_result(r, G, nonneg=True)
    z_star = (d - 1) / (d + 1)
    assert r.zeta == pytest.approx(z_star, abs=TOL)
    assert r.lower_bound <= z_star + 1e-12
    assert r.lower_bound >= z_star - 1e-5
    assert np.allclose(list(r.weights.values()), 1 / (d + 1), atol=1e-5)


@pytest.mark.parametrize("n", [6, 8, 12])
@pytest.mark.parametrize("method", ["sdp", "symmetric"])
def test_even_cycle_fmmc(n, method):
    c = math.cos(2 * math.pi / n)
    z_star = (1 + c) / (3 - c)
    r = fastest_mixing(ring_graph(n), method=method)
    assert r.method == method
    assert r.zeta == pytest.approx(z_star, abs=TOL)
    assert r.lower_bound <= z_star + 1e-12
    assert r.relative_gap < 1e-4


def test_symmetric_reduction_on_torus_matches_full_sdp():
    G = torus_graph(3, 4)
    a = fastest_mixing(G, method="symmetric")
    b = fastest_mixing(G, method="sdp")
    assert a.zeta == pytest.approx(b.zeta, abs=1e-6)
    assert a.lower_bound <= b.zeta + 1e-9 and b.lower_bound <= a.zeta + 1e-9


# --------------------------------------------------------------------------------------------
# orderings and certificates
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1])
def test_fdla_le_fmmc_le_metropolis(seed):
    G = random_geometric_graph(14, avg_degree=4, seed=seed)
    fm = fastest_mixing(G, method="sdp")
    fd = fastest_averaging(G, method="sdp")
    mh = zeta(metropolis_hastings(G))
    _check_result(fm, G, nonneg=True)
    _check_result(fd, G, nonneg=False)
    assert fd.zeta <= fm.zeta + TOL
    assert fm.zeta <= mh + 1e-12
    # each certificate bounds its own optimum from below; FDLA's optimum is ≤ FMMC's
    assert fd.lower_bound <= fm.zeta + 1e-9
    assert fm.relative_gap < 1e-3 and fd.relative_gap < 1e-3


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from(["fmmc", "fdla"]))
def test_certificate_from_any_Y_is_below_the_optimum(seed, kind):
    """Eq. (4): any symmetric Y gives a lower bound. On P_8, ζ* = cos(π/8) for FMMC and FDLA ≤
    that; so every bound must be ≤ cos(π/8) (FMMC) and ≤ the FDLA optimum (computed)."""
    n = 8
    G = path_graph(n)
    spec = design_problem(G, kind)
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, n))
    V = np.linalg.qr(rng.standard_normal((n, k)))[0]
    S = rng.standard_normal((k, k))
    S = S @ S.T
    V2 = np.linalg.qr(rng.standard_normal((n, 2)))[0]
    S2 = np.diag(rng.random(2))
    rho = float(zeta(metropolis_hastings(G)))
    lb = lower_bound(spec, [(V, S, 1.0), (V2, S2, -1.0)], rho)
    bound = math.cos(math.pi / n) if kind == "fmmc" else _FDLA_P8
    assert lb <= bound + 1e-12


_FDLA_P8 = fastest_averaging(path_graph(8), method="sdp").zeta


def test_public_certify_on_metropolis_weights():
    n = 9
    G = path_graph(n)
    W = metropolis_hastings(G).matrix
    lb = certify(G, W)
    assert lb <= math.cos(math.pi / n) + 1e-12
    assert lb > 0.5  # a real bound, not −inf
    with pytest.raises(ValueError, match="outside the graph"):
        certify(G, np.full((n, n), 1 / n))


# --------------------------------------------------------------------------------------------
# first-order method
# --------------------------------------------------------------------------------------------
def test_first_order_matches_sdp_small():
    G = random_geometric_graph(20, avg_degree=5, seed=2)
    a = fastest_mixing(G, method="sdp")
    b = fastest_mixing(G, method="first_order", tol=1e-5)
    _check_result(b, G, nonneg=True)
    assert b.method == "first_order" and b.iterations >= 1
    assert abs(a.zeta - b.zeta) <= 1e-4
    assert b.lower_bound <= a.zeta + 1e-9
    assert b.relative_gap <= 1e-3


def test_support_bound_is_scale_invariant_for_tiny_costs():
    """The certificate's LP bound is positively homogeneous in the costs d. HiGHS's tolerances
    are absolute (1e−7), so costs of size 1e−8 (eigenvector differences on large graphs) must be
    rescaled before the solve: the rigorous bound for 1e−8·d must be 1e−8 × the bound for d."""
    from scipy.optimize import linprog

    G = random_geometric_graph(40, avg_degree=5, seed=4)
    spec = design_problem(G, "fmmc")
    d = np.random.default_rng(0).random(spec.m)
    exact = -linprog(-d, A_ub=spec.inc, b_ub=np.ones(spec.n), bounds=(0, None),
                     method="highs").fun  # plain fractional b-matching (rho = 1: no extra rows)
    for s in (1.0, 1e-8):
        ub = support_upper(spec, s * d, 1.0)
        assert ub >= s * exact * (1 - 1e-9)
        assert ub == pytest.approx(s * exact, rel=1e-6)


@pytest.mark.parametrize("seed", [1, 3])
def test_top_only_bundle_certificate_is_rigorous_and_tight(seed):
    """The λ₂-only model (used on large graphs when λ_min(W) is far from −ζ): its certificate
    (Y = V₊S₊V₊ᵀ ⪰ 0 only, eq. (4)) must stay below the exact SDP optimum and close to it."""
    G = random_geometric_graph(30, avg_degree=5, seed=seed)
    a = fastest_mixing(G, method="sdp")
    spec = design_problem(G, "fmmc")
    w, lb, info = spectral_bundle(spec, tol=1e-4, top_only=True, max_iter=200)
    W = spec.W(w)
    lam = np.linalg.eigvalsh(W - 1.0 / spec.n)
    assert info["top_only"]  # λ_min stayed non-binding on these graphs
    assert -lam[0] < lam[-1]  # ... checked independently
    assert lb <= a.zeta + 1e-9  # rigorous: below the exact optimum
    assert (a.zeta - lb) / (1 - a.zeta) <= 2e-3  # and tight
    assert _zeta_indep(W) - a.zeta <= 1e-4 * (1 - a.zeta) + 1e-9


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["fmmc", "fdla"])
def test_first_order_matches_sdp_60_nodes(kind):
    G = random_geometric_graph(60, avg_degree=8, seed=5)
    fn = fastest_mixing if kind == "fmmc" else fastest_averaging
    a = fn(G, method="sdp", solver="CLARABEL")
    b = fn(G, method="first_order", tol=5e-3, time_limit=300)
    assert abs(a.zeta - b.zeta) <= 1e-4
    assert b.lower_bound <= a.zeta + 1e-9 and a.lower_bound <= b.zeta + 1e-9


# --------------------------------------------------------------------------------------------
# constraints
# --------------------------------------------------------------------------------------------
def _graph():
    return random_geometric_graph(12, avg_degree=4, seed=7)


def test_self_weight_cap():
    G = _graph()
    base = fastest_mixing(G, method="sdp")
    r = fastest_mixing(G, method="sdp", self_weight_max=0.6)
    _check_result(r, G, nonneg=True)
    assert r.W.diagonal().max() <= 0.6 + 1e-9
    assert r.zeta >= base.zeta - TOL  # a constraint cannot help


def test_edge_cap_zero_and_fixed_edges():
    G = _graph()
    e0, e1 = list(G.edges)[:2]
    r = fastest_mixing(G, method="sdp", edge_weight_max=0.2, zero_edges=[e0],
                       fixed_edges={e1: 0.05})
    W, lab = r.W, {u: k for k, u in enumerate(r.labels)}
    off = W[~np.eye(len(W), dtype=bool)]
    assert off.max() <= 0.2 + 1e-9
    assert W[lab[e0[0]], lab[e0[1]]] == 0.0
    assert W[lab[e1[0]], lab[e1[1]]] == pytest.approx(0.05, abs=1e-12)
    assert r.lower_bound <= r.zeta


def test_cost_budget_fmmc_and_fdla():
    G = _graph()
    costs = {e: 1.0 + (k % 3) for k, e in enumerate(G.edges)}
    for fn in (fastest_mixing, fastest_averaging):
        free = fn(G, method="sdp")
        spent = sum(costs[e] * abs(free.weights.get(e, free.weights.get(e[::-1], 0)))
                    for e in G.edges)
        B = 0.5 * spent
        r = fn(G, method="sdp", edge_costs=costs, cost_budget=B)
        used = sum(costs[e] * abs(r.weights.get(e, r.weights.get(e[::-1], 0))) for e in G.edges)
        assert used <= B + 1e-9
        assert r.zeta >= free.zeta - TOL
        assert r.lower_bound <= r.zeta


def test_first_order_respects_constraints():
    G = random_geometric_graph(16, avg_degree=5, seed=3)
    a = fastest_mixing(G, method="sdp", self_weight_max=0.8, edge_weight_max=0.3)
    b = fastest_mixing(G, method="first_order", self_weight_max=0.8, edge_weight_max=0.3,
                       tol=1e-5)
    for r in (a, b):
        assert r.W.diagonal().max() <= 0.8 + 1e-9
        assert r.W[~np.eye(16, dtype=bool)].max() <= 0.3 + 1e-9
    assert abs(a.zeta - b.zeta) <= 1e-4


def test_node_labels_are_kept():
    G = nx.relabel_nodes(path_graph(5), {i: f"w{i}" for i in range(5)})
    r = fastest_mixing(G, method="sdp")
    assert r.labels == ["w0", "w1", "w2", "w3", "w4"]
    assert set(r.weights) == {("w0", "w1"), ("w1", "w2"), ("w2", "w3"), ("w3", "w4")}
    assert r.mixing.labels == tuple(r.labels)


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------
def test_bad_inputs():
    D = nx.Graph([(0, 1), (2, 3)])
    with pytest.raises(ValueError, match="connected"):
        fastest_mixing(D)
    S = nx.Graph([(0, 1), (1, 2)])
    S.add_edge(3, 3)
    with pytest.raises(ValueError, match="self-loop"):
        fastest_mixing(S)
    one = nx.Graph()
    one.add_node(0)
    with pytest.raises(ValueError, match="at least 2 nodes"):
        fastest_averaging(one)
    G = path_graph(4)
    with pytest.raises(ValueError, match="infeasible"):
        # W_ii ≤ 0.1 needs Σ_j w_ij ≥ 0.9, impossible with every w_e ≤ 0.2 at an end node
        fastest_mixing(G, self_weight_max=0.1, edge_weight_max=0.2)
    with pytest.raises(ValueError, match="disconnect"):
        fastest_mixing(G, zero_edges=[(1, 2)])
    with pytest.raises(ValueError, match="not an edge"):
        fastest_mixing(G, fixed_edges={(0, 3): 0.1})
    with pytest.raises(ValueError, match="negative"):
        fastest_mixing(G, fixed_edges={(0, 1): -0.1})
    with pytest.raises(ValueError, match="method must be one of"):
        fastest_mixing(G, method="magic")
    with pytest.raises(ValueError, match="both edge_costs and cost_budget"):
        fastest_mixing(G, edge_costs=1.0)
    with pytest.raises(ValueError, match="solver must be"):
        fastest_mixing(G, method="sdp", solver="MOSEK")
    with pytest.raises(ValueError, match="GBs of memory"):
        fastest_mixing(ring_graph(200), method="sdp", solver="CLARABEL")


@pytest.mark.parametrize("fn", [fastest_mixing, fastest_averaging, compare_weights])
@pytest.mark.parametrize(("cls", "fix"), [(nx.MultiGraph, r"nx\.Graph\(G\)"),
                                          (nx.DiGraph, r"G\.to_undirected\(\)"),
                                          (nx.MultiDiGraph, r"G\.to_undirected\(\)")])
def test_multigraphs_and_directed_graphs_are_refused_by_name(fn, cls, fix):
    G = cls([(0, 1), (1, 2), (2, 0)])
    if G.is_multigraph():
        G.add_edge(0, 1)  # a parallel edge
    with pytest.raises(ValueError, match=rf"G must be a simple undirected networkx\.Graph, not a "
                                         rf"{cls.__name__}: .*{fix}"):
        fn(G)


def test_progress_callback_sees_every_phase(capsys):
    fastest_mixing(path_graph(5), method="sdp", progress=True)
    assert "certificate" in capsys.readouterr().err  # the default status line, on stderr
    events = []
    fastest_mixing(path_graph(6), method="sdp", progress=events.append)
    assert [e.phase for e in events][:1] == ["setup"]
    assert {"sdp", "certificate"} <= {e.phase for e in events}
    events.clear()
    r = fastest_mixing(random_geometric_graph(20, avg_degree=5, seed=2), method="first_order",
                       tol=1e-3, progress=events.append)
    its = [e for e in events if e.phase == "first_order"]
    assert [e.iteration for e in its] == list(range(1, r.iterations + 1))
    assert its[-1].relative_gap <= 1e-3 and its[-1].lower_bound <= its[-1].zeta
    assert all(a.elapsed <= b.elapsed for a, b in zip(its, its[1:], strict=False))
    with pytest.raises(ValueError, match="progress must be True, False, None or a callable"):
        fastest_mixing(path_graph(4), progress="yes")


# --------------------------------------------------------------------------------------------
# orbits, comparison table, schedules
# --------------------------------------------------------------------------------------------
def test_edge_orbits():
    assert len(edge_orbits(ring_graph(10))) == 1
    assert len(edge_orbits(hypercube_graph(3))) == 1
    assert len(edge_orbits(torus_graph(3, 5))) == 2
    assert len(edge_orbits(path_graph(6))) == 3  # (0,1)~(4,5), (1,2)~(3,4), (2,3)


def test_compare_weights_table():
    G = ring_graph(8)
    t = compare_weights(G, eps=1e-4)
    rules = [r.rule for r in t]
    assert rules == ["uniform", "metropolis_hastings", "max_degree", "best_constant", "fmmc",
                     "fdla"]
    by = {r.rule: r for r in t}
    c = math.cos(2 * math.pi / 8)
    assert by["fmmc"].zeta == pytest.approx((1 + c) / (3 - c), abs=TOL)
    assert by["fdla"].zeta <= by["fmmc"].zeta + TOL <= by["metropolis_hastings"].zeta + TOL
    z = by["uniform"].zeta
    assert by["uniform"].rounds == math.ceil(math.log(1e-4) / math.log(z))
    assert "rounds to 0.0001" in str(t)
    assert t.as_dicts()[0]["rule"] == "uniform"
    star = compare_weights(nx.star_graph(5))
    assert star.rows[0].zeta is None and "n/a" in str(star)


def test_design_schedule_two_matchings_of_a_ring():
    n = 8
    even = nx.Graph([(i, i + 1) for i in range(0, n, 2)])
    odd = nx.Graph([(i, (i + 1) % n) for i in range(1, n, 2)])
    for H in (even, odd):
        H.add_nodes_from(range(n))
    d = design_schedule([even, odd])
    assert len(d.factors) == 2
    A, B = d.matrices
    # within a matching edge the fastest averaging of two nodes is exact: weight 1/2
    assert A[0, 1] == pytest.approx(0.5, abs=1e-6) and B[1, 2] == pytest.approx(0.5, abs=1e-6)
    P = B @ A
    assert d.zeta_product == pytest.approx(_zeta_indep(P), abs=1e-10)
    assert d.zeta_product < 1 and d.zeta_bound == pytest.approx(1.0)
    with pytest.raises(ValueError, match="union of the graphs"):
        design_schedule([even])


# --------------------------------------------------------------------------------------------
# the first-order solver at scale (sparse eigensolver, bundle basis, BLAS threads)
# --------------------------------------------------------------------------------------------
def test_orth_keeps_order_drops_dependent_columns_and_is_perpendicular_to_ones():
    from theory.design.first_order import _orth

    rng = np.random.default_rng(0)
    A = rng.standard_normal((50, 3))
    B = np.column_stack([A[:, 0] + 2 * A[:, 1], rng.standard_normal(50)])  # first is dependent
    Q = _orth(A, B, kmax=4)
    assert Q.shape == (50, 4)
    assert np.allclose(Q.T @ Q, np.eye(4), atol=1e-12) and np.allclose(Q.sum(axis=0), 0, atol=1e-12)
    # the first columns span A's (centred) columns, in order
    Ac = A - A.mean(axis=0)
    assert np.allclose(Q[:, :3] @ (Q[:, :3].T @ Ac), Ac, atol=1e-10)
    assert abs(Q[:, 0] @ Ac[:, 0]) == pytest.approx(np.linalg.norm(Ac[:, 0]))
    assert _orth(A, kmax=2).shape == (50, 2)


def test_first_order_on_a_graph_above_the_dense_limit():
    from threadpoolctl import threadpool_info

    from theory.design.first_order import DENSE_MAX_N, single_threaded_blas

    G = random_geometric_graph(300, avg_degree=5, seed=1, connected="join")
    assert G.number_of_nodes() > DENSE_MAX_N
    r = fastest_mixing(G, method="first_order", tol=0.05)
    assert r.status == "optimal" and r.relative_gap <= 0.05
    assert r.zeta < zeta(metropolis_hastings(G)) and r.lower_bound <= r.zeta
    assert r.zeta == pytest.approx(_zeta_indep(r.W), abs=1e-10)
    assert r.info["subproblems"] == r.iterations  # no extra model solves above the dense limit
    with single_threaded_blas():
        assert {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"} <= {1}
