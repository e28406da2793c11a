"""Mixing matrices and spectra: closed forms against numerics, validation errors, properties."""

import networkx as nx
import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import theory
from theory.mixing import RULES


def test_repl_ring16():
    W = theory.ring(16)
    A = np.asarray(W)
    assert A.shape == (16, 16)
    assert np.allclose(A[0, [0, 1, 15]], 1 / 3) and A[0, 2] == 0
    assert theory.zeta(W) == pytest.approx(0.9493, abs=5e-5)
    exact = theory.zeta_exact("ring", 16)
    assert sp.simplify(exact - (sp.Rational(1, 3) + sp.Rational(2, 3) * sp.cos(sp.pi / 8))) == 0
    assert float(exact) == pytest.approx(theory.zeta(W), abs=1e-12)


@pytest.mark.parametrize("m", [3, 4, 5, 8, 9, 16, 31, 64])
def test_ring_spectrum_closed_form(m):
    W = theory.ring(m)
    exact = sorted(float(x) for x, k in theory.spectrum_exact("ring", m) for _ in range(k))
    assert np.allclose(sorted(np.linalg.eigvalsh(np.asarray(W))), exact, atol=1e-12)
    assert theory.zeta(W) == pytest.approx(float(theory.zeta_exact("ring", m)), abs=1e-12)


@pytest.mark.parametrize("d", [1, 2, 3, 5])
def test_hypercube_closed_form(d):
    W = theory.hypercube(d)
    assert W.n == 2**d
    exact = sorted(float(x) for x, k in theory.spectrum_exact("hypercube", d) for _ in range(k))
    assert np.allclose(sorted(np.linalg.eigvalsh(W.matrix)), exact, atol=1e-12)
    assert theory.zeta(W) == pytest.approx(float(theory.zeta_exact("hypercube", d)), abs=1e-12)
    assert theory.zeta_exact("hypercube", d) == sp.Rational(d - 1, d + 1)


@pytest.mark.parametrize("n", [2, 5, 17])
def test_complete_graph_is_average(n):
    W = theory.complete(n)
    assert W.is_average
    assert theory.zeta(W) == pytest.approx(0, abs=1e-12)
    assert theory.zeta_exact("complete", n) == 0


def test_ring_of_two_is_average():
    W = theory.ring(2)
    assert W.is_average and theory.zeta(W) == 0


def test_path_and_torus_closed_forms():
    assert theory.zeta(theory.path(10)) == pytest.approx(float(theory.zeta_exact("path", 10)))
    exact = sorted(float(x) for x, k in theory.spectrum_exact("torus", 4, 5) for _ in range(k))
    assert np.allclose(sorted(np.linalg.eigvalsh(theory.torus(4, 5).matrix)), exact)


@pytest.mark.parametrize("m,alpha", [(1, 0.3), (4, 0.1), (8, 0.2), (16, 0.05), (5, 0.5)])
def test_easgd_spectrum(m, alpha):
    W = theory.easgd_matrix(m, alpha)
    assert W.n == m + 1
    exact = sorted(float(x) for x, k in theory.spectrum_exact("easgd", m, alpha=alpha)
                   for _ in range(k))
    assert np.allclose(sorted(np.linalg.eigvalsh(W.matrix)), exact, atol=1e-12)
    assert theory.zeta(W) == pytest.approx(float(theory.zeta_exact("easgd", m, alpha=alpha)))


def test_easgd_matrix_rows_match_update_rule():
    m, a = 3, 0.2
    W = theory.easgd_matrix(m, a).matrix
    X = np.random.default_rng(0).normal(size=(5, m + 1))  # d × (m+1), centre last
    Y = X @ W
    z = X[:, m]
    for i in range(m):
        assert np.allclose(Y[:, i], (1 - a) * X[:, i] + a * z)
    assert np.allclose(Y[:, m], (1 - m * a) * z + a * X[:, :m].sum(axis=1))


def test_weight_rules_known_values():
    G = theory.star_graph(5)
    W = theory.metropolis_hastings(G).matrix
    assert W[0, 1] == pytest.approx(1 / 5) and W[1, 1] == pytest.approx(4 / 5)
    W = theory.max_degree(theory.path_graph(4)).matrix
    assert W[0, 1] == pytest.approx(1 / 3) and W[0, 0] == pytest.approx(2 / 3)
    G = theory.path_graph(6)
    Lap = nx.laplacian_matrix(G).toarray()
    lam = np.linalg.eigvalsh(Lap)
    Wb = theory.best_constant(G)
    assert Wb.zeta == pytest.approx((lam[-1] - lam[1]) / (lam[-1] + lam[1]))
    # best constant is optimal among constant weights: a grid of α does no better
    grid = [theory.zeta(np.eye(6) - a * Lap) for a in np.linspace(0.01, 0.99, 197)]
    assert Wb.zeta <= min(grid) + 1e-12


def test_exponential_graph_and_seeded_random_graphs():
    G = theory.exponential_graph(16)
    assert set(G.neighbors(0)) == {1, 2, 4, 8, 15, 14, 12}
    a = theory.random_geometric_graph(40, avg_degree=5, seed=3)
    b = theory.random_geometric_graph(40, avg_degree=5, seed=3)
    assert sorted(a.edges) == sorted(b.edges) and nx.is_connected(a)
    e1, e2 = theory.erdos_renyi_graph(30, 0.2, seed=1), theory.erdos_renyi_graph(30, 0.2, seed=1)
    assert sorted(e1.edges) == sorted(e2.edges) and nx.is_connected(e1)


def test_random_geometric_join_connects_by_shortest_edges():
    n, seed = 400, 0
    raw = theory.random_geometric_graph(n, avg_degree=5, seed=seed, connected=False)
    k = nx.number_connected_components(raw)
    assert k > 1  # at this size and degree a single draw is disconnected
    G = theory.random_geometric_graph(n, avg_degree=5, seed=seed, connected="join")
    assert nx.is_connected(G) and set(raw.edges) <= set(G.edges)
    added = set(G.edges) - set(raw.edges)
    assert len(added) == k - 1
    # the first join is the shortest edge between the largest component and the rest
    P = np.array([raw.nodes[i]["pos"] for i in range(n)])
    big = max(nx.connected_components(raw), key=len)
    A, B = sorted(big), sorted(set(range(n)) - big)
    D = np.linalg.norm(P[A][:, None] - P[B][None], axis=2)
    assert D.min() == pytest.approx(min(np.linalg.norm(P[u] - P[v]) for u, v in added))
    with pytest.raises(ValueError, match="connected must be True, False or 'join'"):
        theory.random_geometric_graph(10, avg_degree=3, connected="yes")
    with pytest.raises(ValueError, match="connected='join'"):
        theory.random_geometric_graph(400, avg_degree=2, seed=0, max_tries=3)


def test_any_networkx_graph_with_labels():
    G = nx.Graph([("d", "c"), ("b", "c"), ("c", "a"), ("a", "b")])
    W = theory.metropolis_hastings(G)
    assert W.n == 4 and W.zeta < 1
    # rows follow the sorted labels, and W.labels says so: d's only neighbour is c (degree 3)
    assert W.labels == ("a", "b", "c", "d")
    row = dict(zip(W.labels, W.matrix[W.labels.index("d")], strict=True))
    assert row["c"] == pytest.approx(1 / 4) and row["a"] == row["b"] == 0
    assert theory.ring(5).labels == (0, 1, 2, 3, 4)
    # a user's own node attribute called "label" is not mistaken for row labels
    R = nx.cycle_graph(5)
    nx.set_node_attributes(R, "gpu", "label")
    assert theory.metropolis_hastings(R).labels == (0, 1, 2, 3, 4)
    with pytest.raises(ValueError, match="labels must name each of the 3 rows once"):
        theory.MixingMatrix(np.full((3, 3), 1 / 3), labels=("x", "x", "y"))


def test_hierarchical_schedule():
    s = theory.hierarchical(8, 2, tau1=2, tau2=6)
    rounds = list(s.rounds(12))
    assert [r.length for r in rounds] == [2] * 6
    assert [r.W.rule for r in rounds] == ["group_average", "group_average", "average"] * 2
    Wg = rounds[0].W.matrix
    assert np.allclose(Wg[:4, :4], 1 / 4) and np.allclose(Wg[:4, 4:], 0)


# --- validation ---------------------------------------------------------------------------------
def test_errors_name_the_rule():
    with pytest.raises(ValueError, match="symmetric"):
        theory.zeta([[0.5, 0.5], [0.4, 0.6]])
    with pytest.raises(ValueError, match=r"doubly stochastic \(row 1 sums to 0.97"):
        theory.zeta([[0.5, 0.5, 0], [0.5, 0.47, 0], [0, 0, 1]])
    with pytest.raises(ValueError, match="square"):
        theory.zeta(np.ones((2, 3)) / 3)
    with pytest.raises(ValueError, match="connected; it has 2 components"):
        theory.metropolis_hastings(nx.Graph([(0, 1), (2, 3)]))
    G = nx.Graph([(0, 1), (1, 2)])
    G.add_edge(3, 3)
    with pytest.raises(ValueError, match="no edge other than a self-loop"):
        theory.metropolis_hastings(G)
    with pytest.raises(ValueError, match="at least 2 nodes"):
        theory.metropolis_hastings(nx.empty_graph(1))
    with pytest.raises(ValueError, match="regular graph"):
        theory.uniform(theory.star_graph(4))
    with pytest.raises(ValueError, match=r"not an edge of the graph"):
        theory.MixingMatrix(np.full((3, 3), 1 / 3), graph=theory.path_graph(3))
    with pytest.raises(ValueError, match="alpha must be a finite number > 0"):
        theory.easgd_matrix(4, 0)
    with pytest.raises(ValueError, match="rule must be one of"):
        theory.mixing_matrix(theory.ring_graph(5), "nope")


def test_disconnected_W_has_zeta_one_and_bound_refuses():
    W = np.kron(np.eye(2), np.full((2, 2), 0.5))
    assert theory.zeta(W) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="zeta must be"):
        theory.dpsgd_bound().evaluate(eta=0.01, L=1, sigma2=1, m=4, K=100, F_gap=1,
                                      zeta=theory.zeta(W))


# --- properties ---------------------------------------------------------------------------------
@st.composite
def connected_graphs(draw):
    n = draw(st.integers(2, 24))
    seed = draw(st.integers(0, 10_000))
    p = draw(st.floats(0.05, 1.0))
    G = nx.gnp_random_graph(n, p, seed=seed)
    # connect components along a random spanning path so that the graph is connected
    comps = [sorted(c) for c in nx.connected_components(G)]
    for a, b in zip(comps, comps[1:], strict=False):
        G.add_edge(a[0], b[0])
    return G


@settings(max_examples=60, deadline=None)
@given(G=connected_graphs(), rule=st.sampled_from(["metropolis_hastings", "max_degree",
                                                   "best_constant", "uniform"]))
def test_weight_rules_give_symmetric_doubly_stochastic_zeta_below_one(G, rule):
    degs = {d for _, d in G.degree}
    if rule == "uniform" and len(degs) > 1:
        with pytest.raises(ValueError, match="regular"):
            RULES[rule](G)
        return
    W = RULES[rule](G)
    A = W.matrix
    assert np.allclose(A, A.T, atol=1e-12)
    assert np.allclose(A.sum(axis=0), 1, atol=1e-12) and np.allclose(A.sum(axis=1), 1, atol=1e-12)
    if rule != "best_constant":
        assert (A >= -1e-12).all()
    z = theory.zeta(W)
    assert z < 1 - 1e-9
    # ζ = ‖W − J‖₂ (independent computation: singular values)
    J = np.full_like(A, 1 / len(A))
    assert z == pytest.approx(np.linalg.svd(A - J, compute_uv=False)[0], abs=1e-10)


# --- ζ from the cached spectrum -----------------------------------------------------------------
def test_zeta_gap_and_eigenvalues_share_one_eigendecomposition(monkeypatch):
    calls = []
    eigvalsh, eigh = np.linalg.eigvalsh, np.linalg.eigh

    def counted(fn):
        def wrapper(*a, **k):
            calls.append(fn.__name__)
            return fn(*a, **k)
        return wrapper

    monkeypatch.setattr(np.linalg, "eigvalsh", counted(eigvalsh))
    monkeypatch.setattr(np.linalg, "eigh", counted(eigh))
    W = theory.metropolis_hastings(theory.random_geometric_graph(30, avg_degree=5, seed=1))
    assert calls == []  # nothing computed until asked
    z = W.zeta
    assert (W.spectral_gap, theory.zeta(W), theory.spectral_gap(W)) == (1 - z, z, 1 - z)
    assert np.array_equal(theory.eigenvalues(W), W.eigenvalues)
    theory.consensus_rounds(W, 1e-6)
    repr(W)
    assert len(calls) == 1
    # ... and the value is ‖W − J‖₂ (independent: singular values)
    A = W.matrix
    assert z == pytest.approx(np.linalg.svd(A - 1 / W.n, compute_uv=False)[0], abs=1e-12)


def test_zeta_when_an_eigenvalue_exceeds_one():
    # rows sum to 1 but W has eigenvalues 1 and 3: ζ = ‖W − J‖₂ = 3 (W is not a contraction)
    W = np.array([[2.0, -1.0], [-1.0, 2.0]])
    assert theory.zeta(W) == pytest.approx(3.0)
    assert theory.zeta(np.eye(1)) == 0.0
    assert theory.zeta(np.kron(np.eye(3), np.full((2, 2), 0.5))) == 1.0  # disconnected
