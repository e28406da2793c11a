"""Mixing matrices: topologies (graphs) and the weight rules that turn them into W.

A mixing matrix W (n × n) for Cooperative SGD (Wang & Joshi, JMLR 2021, Assumption 5) is symmetric
and doubly stochastic, ``W 1 = 1``, ``Wᵀ = W``; non-negativity is *not* required (EASGD's W_α
has a negative entry for m > 2 at the optimal elasticity). Its support must lie inside the graph
(edges plus self-loops). ζ(W) = max(|λ₂|, |λ_n|) < 1 iff the graph is connected (for the weight
rules here) — see :mod:`theory.spectral`.

Graph builders return ``networkx.Graph`` with nodes ``0..n-1``. Weight rules return a
:class:`MixingMatrix`. Shortcuts ``ring(m)``, ``torus(r, c)``, ... build both at once.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from theory import checks
from theory._lazy import lazy_import

nx = lazy_import("networkx")  # imported on first use: keeps ``import theory`` fast

#: tolerance for "rows sum to 1" and symmetry checks
ATOL = 1e-9


# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------
#: node attribute in which :func:`validate_graph` keeps a relabelled node's original label (a
#: private name, so a user's own node attributes are never mistaken for it)
LABEL_ATTR = "_coopsgd_label"


def validate_graph(G: nx.Graph, *, name: str = "G") -> nx.Graph:
    """Check that G is an undirected, connected graph on ≥ 2 nodes; return it relabelled 0..n−1
    (sorted labels when they sort, else G's node order; node i keeps its original label in the
    attribute ``LABEL_ATTR``).

    Self-loops are ignored (every W has a diagonal). Raises ``ValueError`` naming the rule broken.
    """
    if not isinstance(G, nx.Graph):
        raise TypeError(f"{name} must be a networkx.Graph; got {type(G).__name__}")
    if G.is_directed():
        raise ValueError(f"{name} must be undirected (mixing matrices here are symmetric)")
    n = G.number_of_nodes()
    if n < 2:
        raise ValueError(f"{name} must have at least 2 nodes; got {n}")
    H = nx.Graph(G)
    H.remove_edges_from(list(nx.selfloop_edges(H)))
    isolated = [u for u in H.nodes if H.degree(u) == 0]
    if isolated:
        raise ValueError(f"{name} has node(s) {isolated[:5]} with no edge other than a self-loop: "
                         "a disconnected graph has ζ = 1 and no averaging ever reaches them")
    if not nx.is_connected(H):
        comps = nx.number_connected_components(H)
        raise ValueError(f"{name} must be connected; it has {comps} components (ζ(W) = 1 for any "
                         "W supported on a disconnected graph: consensus is never reached)")
    if list(H.nodes) != list(range(n)):
        # node i of the result carries its original label (read back by MixingMatrix.labels)
        H = nx.convert_node_labels_to_integers(H, ordering="sorted" if _sorts(H.nodes) else
                                               "default", label_attribute=LABEL_ATTR)
    return H


def node_order(nodes: Iterable[Hashable]) -> list:
    """The node labels sorted when they sort (``1 < "a"`` does not), else in the given order: the
    row order of every W built from a graph (:func:`validate_graph`, :mod:`theory.design`)."""
    nodes = list(nodes)
    return sorted(nodes) if _sorts(nodes) else nodes


def _sorts(nodes: Iterable[Hashable]) -> bool:
    try:
        sorted(nodes)
        return True
    except TypeError:
        return False


def validate_mixing(W: Any, *, graph: nx.Graph | None = None, name: str = "W",
                    atol: float = ATOL, nonnegative: bool = False) -> np.ndarray:
    """Return W as a float64 array after checking: square, finite, symmetric, rows and columns
    summing to 1 (within ``atol``), support inside ``graph`` (+ self-loops), and optionally
    non-negative. Errors name the argument and the offending row/entry."""
    A = np.array(W, dtype=float, copy=True)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"{name} must be a square matrix; got shape {A.shape}")
    if A.shape[0] < 1:
        raise ValueError(f"{name} must be non-empty")
    if not np.all(np.isfinite(A)):
        raise ValueError(f"{name} must be finite (contains NaN or inf)")
    asym = np.abs(A - A.T)
    if asym.max() > atol:
        i, j = np.unravel_index(int(np.argmax(asym)), A.shape)
        raise ValueError(f"{name} must be symmetric (|W[{i},{j}] − W[{j},{i}]| = "
                         f"{asym[i, j]:.3g} > {atol:g})")
    rows = A.sum(axis=1)
    bad = np.abs(rows - 1) > atol
    if bad.any():
        i = int(np.argmax(np.abs(rows - 1)))
        raise ValueError(f"{name} must be doubly stochastic (row {i} sums to {rows[i]:.12g}, "
                         f"tolerance {atol:g})")
    if nonnegative and (A < -atol).any():
        i, j = np.unravel_index(int(np.argmin(A)), A.shape)
        raise ValueError(f"{name} must be non-negative (W[{i},{j}] = {A[i, j]:.3g})")
    if graph is not None:
        if graph.number_of_nodes() != A.shape[0]:
            raise ValueError(f"{name} is {A.shape[0]}×{A.shape[0]} but the graph has "
                             f"{graph.number_of_nodes()} nodes")
        allowed = nx.to_numpy_array(graph, nodelist=range(A.shape[0]), weight=None) != 0
        np.fill_diagonal(allowed, True)
        outside = (np.abs(A) > atol) & ~allowed
        if outside.any():
            i, j = np.argwhere(outside)[0]
            raise ValueError(f"{name} has weight {A[i, j]:.3g} on ({i}, {j}), which is not an "
                             "edge of the graph (support must lie inside the graph)")
    return A


# ---------------------------------------------------------------------------------------------
# the MixingMatrix value type
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class MixingMatrix:
    """A validated symmetric doubly-stochastic mixing matrix.

    Attributes:
        matrix: the n × n array W.
        graph: the communication graph (nodes 0..n−1) or None (e.g. W = J, EASGD).
        rule: weight rule that produced it (``"uniform"``, ``"metropolis_hastings"``, ...).
        name: human-readable description.
        labels: the caller's node label of each row (row i ↔ ``labels[i]``); by default the
            original labels :func:`validate_graph` keeps on a relabelled graph, else 0..n−1.
    """

    matrix: np.ndarray
    graph: nx.Graph | None = None
    rule: str = "custom"
    name: str = ""
    nonnegative_required: bool = field(default=False, repr=False)
    labels: tuple | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        A = validate_mixing(self.matrix, graph=self.graph, nonnegative=self.nonnegative_required)
        A = (A + A.T) / 2
        A.setflags(write=False)
        object.__setattr__(self, "matrix", A)
        n = A.shape[0]
        labels = self.labels
        if labels is None:
            g = self.graph
            if g is not None and all(LABEL_ATTR in g.nodes[i] for i in range(n)):
                labels = tuple(g.nodes[i][LABEL_ATTR] for i in range(n))
            else:
                labels = tuple(range(n))
        labels = tuple(labels)
        if len(labels) != n or len(set(labels)) != n:
            raise ValueError(f"labels must name each of the {n} rows once; got {len(labels)} "
                             f"labels ({len(set(labels))} distinct)")
        object.__setattr__(self, "labels", labels)
        if not self.name:
            object.__setattr__(self, "name", f"{self.rule} W ({A.shape[0]}×{A.shape[0]})")

    # numpy interop
    def __array__(self, dtype=None, copy=None):
        return np.array(self.matrix, dtype=dtype) if dtype is not None else np.array(self.matrix)

    @property
    def W(self) -> np.ndarray:
        return self.matrix

    @property
    def n(self) -> int:
        return self.matrix.shape[0]

    @property
    def shape(self) -> tuple[int, int]:
        return self.matrix.shape

    @cached_property
    def is_average(self) -> bool:
        """True iff W = J = 11ᵀ/n."""
        return bool(np.allclose(self.matrix, 1.0 / self.n, atol=ATOL, rtol=0))

    @cached_property
    def is_identity(self) -> bool:
        return bool(np.allclose(self.matrix, np.eye(self.n), atol=ATOL, rtol=0))

    @cached_property
    def nonnegative(self) -> bool:
        return bool((self.matrix >= -ATOL).all())

    @cached_property
    def density(self) -> float:
        """Fraction of non-zero entries."""
        return float(np.count_nonzero(np.abs(self.matrix) > ATOL)) / self.matrix.size

    def sparse(self):
        """W as a ``scipy.sparse.csr_matrix`` (scipy is imported lazily)."""
        import scipy.sparse as sps

        A = np.where(np.abs(self.matrix) > ATOL, self.matrix, 0.0)
        return sps.csr_matrix(A)

    def neighbors(self) -> list[tuple[int, list[tuple[int, float]]]]:
        """For each node i: (i, [(j, W_ij) for off-diagonal non-zeros])."""
        out = []
        for i in range(self.n):
            js = np.nonzero(np.abs(self.matrix[i]) > ATOL)[0]
            out.append((i, [(int(j), float(self.matrix[i, j])) for j in js if j != i]))
        return out

    @cached_property
    def spectrum(self) -> np.ndarray:
        """Eigenvalues of W − J, increasing: the one symmetric eigensolve (``eigvalsh``) behind
        :attr:`eigenvalues`, :attr:`zeta` and :attr:`spectral_gap`, computed once and cached.

        W and J = 11ᵀ/n commute (W1 = 1, W symmetric), so this is W's spectrum with the
        consensus eigenvalue 1 replaced by 0."""
        lam = np.linalg.eigvalsh(self.matrix - 1.0 / self.n)
        lam.setflags(write=False)
        return lam

    @cached_property
    def eigenvalues(self) -> np.ndarray:
        """Eigenvalues of W in decreasing order (from :attr:`spectrum`: its eigenvalue nearest 0,
        the consensus one, put back to 1)."""
        lam = np.array(self.spectrum)
        lam[int(np.argmin(np.abs(lam)))] = 1.0
        lam = np.sort(lam)[::-1].copy()
        lam.setflags(write=False)
        return lam

    @cached_property
    def zeta(self) -> float:
        """ζ(W) = ‖W − J‖₂ = max(|λ₂|, |λ_n|), from :attr:`spectrum`; an eigenvalue ±1 besides
        the consensus one (disconnected or periodic W) gives exactly 1."""
        if self.n == 1:
            return 0.0
        lam = self.spectrum
        z = float(max(abs(lam[0]), abs(lam[-1])))
        return 1.0 if abs(z - 1.0) <= 1e-10 else z

    @property
    def spectral_gap(self) -> float:
        """1 − ζ(W)."""
        return 1.0 - self.zeta

    def __repr__(self) -> str:
        return f"MixingMatrix({self.name}, n={self.n}, rule={self.rule!r}, ζ={self.zeta:.6g})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, MixingMatrix):
            return self.matrix.shape == other.matrix.shape and bool(
                np.array_equal(self.matrix, other.matrix))
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.matrix.shape, self.matrix.tobytes()))


def as_matrix(W: Any, *, name: str = "W") -> np.ndarray:
    """A validated float64 ndarray from a MixingMatrix or any array-like."""
    if isinstance(W, MixingMatrix):
        return W.matrix
    return validate_mixing(W, name=name)


def as_mixing(W: Any, *, name: str = "W") -> MixingMatrix:
    """A MixingMatrix from a MixingMatrix or array-like (validated)."""
    if isinstance(W, MixingMatrix):
        return W
    try:
        return MixingMatrix(np.asarray(W, dtype=float), rule="custom")
    except ValueError as e:
        raise ValueError(str(e).replace("W ", f"{name} ", 1)) from None


# ---------------------------------------------------------------------------------------------
# graphs
# ---------------------------------------------------------------------------------------------
def ring_graph(n: int) -> nx.Graph:
    """Cycle C_n (n ≥ 3; n = 2 gives a single edge)."""
    n = checks.integer("n", n, lo=2)
    return nx.cycle_graph(n) if n >= 3 else nx.path_graph(2)


def path_graph(n: int) -> nx.Graph:
    """Path P_n."""
    return nx.path_graph(checks.integer("n", n, lo=2))


def torus_graph(rows: int, cols: int) -> nx.Graph:
    """2-D torus (periodic grid) rows × cols, nodes numbered row-major."""
    r, c = checks.integer("rows", rows, lo=2), checks.integer("cols", cols, lo=2)
    G = nx.grid_2d_graph(r, c, periodic=True)
    return nx.convert_node_labels_to_integers(G, ordering="sorted")


def grid_graph(rows: int, cols: int) -> nx.Graph:
    """2-D grid rows × cols (no wrap-around), nodes numbered row-major."""
    r, c = checks.integer("rows", rows, lo=1), checks.integer("cols", cols, lo=1)
    if r * c < 2:
        raise ValueError("grid must have at least 2 nodes")
    G = nx.grid_2d_graph(r, c)
    return nx.convert_node_labels_to_integers(G, ordering="sorted")


def hypercube_graph(dim: int) -> nx.Graph:
    """Hypercube Q_dim on 2^dim nodes; node i ~ j iff their binary labels differ in one bit."""
    d = checks.integer("dim", dim, lo=1)
    H = nx.Graph()
    H.add_nodes_from(range(2**d))
    H.add_edges_from((i, i ^ (1 << b)) for i in range(2**d) for b in range(d) if i < i ^ (1 << b))
    return H


def star_graph(n: int) -> nx.Graph:
    """Star on n nodes: node 0 is the hub."""
    n = checks.integer("n", n, lo=2)
    return nx.star_graph(n - 1)


def complete_graph(n: int) -> nx.Graph:
    return nx.complete_graph(checks.integer("n", n, lo=2))


def erdos_renyi_graph(n: int, p: float, seed: int, *, connected: bool = True,
                      max_tries: int = 1000) -> nx.Graph:
    """G(n, p) with a seed. With ``connected=True`` redraws with seeds seed, seed+1, … until the
    graph is connected (deterministic for a given seed); raises after ``max_tries``."""
    n = checks.integer("n", n, lo=2)
    p = checks.in_range("p", p, 0, 1, lo_strict=True)
    seed = checks.integer("seed", seed)
    for t in range(max_tries):
        G = nx.gnp_random_graph(n, p, seed=seed + t)
        if not connected or nx.is_connected(G):
            return G
    raise ValueError(f"no connected G({n}, {p}) in {max_tries} draws: increase p "
                     f"(connectivity threshold ≈ ln(n)/n = {math.log(n) / n:.3g})")


def random_geometric_graph(n: int, radius: float | None = None, seed: int = 0, *,
                           avg_degree: float | None = None, connected: bool | str = True,
                           max_tries: int = 1000) -> nx.Graph:
    """Random geometric graph on the unit square (seeded); node ``i`` has attribute ``pos``.

    Give ``radius`` or ``avg_degree`` (radius = sqrt(avg_degree / (π n)), ignoring boundary
    effects). ``connected``: ``True`` redraws with seeds seed, seed+1, … until connected (at a
    fixed average degree this fails for large n: the connectivity radius grows like
    sqrt(ln n / n)); ``"join"`` draws once and joins the components, largest first, each time by
    the shortest edge between the largest component and the rest (deterministic; adds
    components − 1 edges, so the average degree barely moves); ``False`` returns the draw."""
    n = checks.integer("n", n, lo=2)
    if (radius is None) == (avg_degree is None):
        raise ValueError("give exactly one of radius or avg_degree")
    seed = checks.integer("seed", seed)
    if radius is None:
        radius = math.sqrt(checks.positive("avg_degree", avg_degree) / (math.pi * n))
    radius = checks.positive("radius", radius)
    if connected not in (True, False, "join"):
        raise checks.refuse("connected", "True, False or 'join'", connected)
    if connected == "join":
        return _join_components(nx.random_geometric_graph(n, radius, seed=seed))
    for t in range(max_tries):
        G = nx.random_geometric_graph(n, radius, seed=seed + t)
        if not connected or nx.is_connected(G):
            return G
    raise ValueError(f"no connected random geometric graph (n={n}, radius={radius:.3g}) in "
                     f"{max_tries} draws: increase the radius, or pass connected='join'")


def _join_components(G: nx.Graph) -> nx.Graph:
    """Add the shortest geometric edge between the largest component and the rest until G is
    connected (nodes carry ``pos``); a k-d tree keeps each join O(n log n)."""
    from scipy.spatial import cKDTree

    P = np.array([G.nodes[i]["pos"] for i in range(G.number_of_nodes())])
    while not nx.is_connected(G):
        comps = sorted(nx.connected_components(G), key=lambda c: (-len(c), min(c)))
        A = np.array(sorted(comps[0]))
        B = np.array(sorted(u for c in comps[1:] for u in c))
        dist, idx = cKDTree(P[A]).query(P[B])
        b = int(np.argmin(dist))
        G.add_edge(int(A[idx[b]]), int(B[b]))
    return G


def exponential_graph(n: int) -> nx.Graph:
    """Undirected exponential graph: i ~ i ± 2^k (mod n) for 2^k < n."""
    n = checks.integer("n", n, lo=2)
    G = nx.Graph()
    G.add_nodes_from(range(n))
    k = 1
    while k < n:
        for i in range(n):
            j = (i + k) % n
            if j != i:
                G.add_edge(i, j)
        k *= 2
    return G


# ---------------------------------------------------------------------------------------------
# weight rules
# ---------------------------------------------------------------------------------------------
def _degrees(G: nx.Graph) -> np.ndarray:
    return np.array([G.degree(u) for u in range(G.number_of_nodes())], dtype=float)


def _from_edge_weights(G: nx.Graph, w: dict[tuple[int, int], float]) -> np.ndarray:
    n = G.number_of_nodes()
    A = np.zeros((n, n))
    for (i, j), x in w.items():
        A[i, j] = A[j, i] = x
    np.fill_diagonal(A, 1.0 - A.sum(axis=1))
    return A


def uniform(G: nx.Graph) -> MixingMatrix:
    """Uniform (lazy) weights on a regular graph: W_ij = 1/(deg+1) for j ∈ N(i) ∪ {i}.

    Only doubly stochastic when G is regular: raises otherwise (use Metropolis–Hastings)."""
    G = validate_graph(G)
    deg = _degrees(G)
    if not np.all(deg == deg[0]):
        raise ValueError("uniform weights 1/(deg+1) need a regular graph (degrees range "
                         f"{int(deg.min())}..{int(deg.max())}); use metropolis_hastings(G)")
    w = 1.0 / (deg[0] + 1)
    A = _from_edge_weights(G, {(i, j): w for i, j in G.edges})
    return MixingMatrix(A, graph=G, rule="uniform", name=f"uniform 1/{int(deg[0]) + 1}")


def metropolis_hastings(G: nx.Graph) -> MixingMatrix:
    """Metropolis–Hastings weights: W_ij = 1/(1 + max(d_i, d_j)) on edges, W_ii = 1 − Σ_j W_ij."""
    G = validate_graph(G)
    deg = _degrees(G)
    A = _from_edge_weights(G, {(i, j): 1.0 / (1.0 + max(deg[i], deg[j])) for i, j in G.edges})
    return MixingMatrix(A, graph=G, rule="metropolis_hastings", name="Metropolis–Hastings")


def max_degree(G: nx.Graph) -> MixingMatrix:
    """Max-degree weights W_ij = 1/(d_max + 1) on edges (the lazy variant: Xiao & Boyd's 1/d_max
    gives ζ = 1 on bipartite regular graphs such as even rings)."""
    G = validate_graph(G)
    dmax = _degrees(G).max()
    A = _from_edge_weights(G, {(i, j): 1.0 / (dmax + 1) for i, j in G.edges})
    return MixingMatrix(A, graph=G, rule="max_degree", name=f"max-degree 1/{int(dmax) + 1}")


def best_constant(G: nx.Graph) -> MixingMatrix:
    """Best constant edge weight (Xiao & Boyd 2004): W = I − α* 𝓛 with 𝓛 the graph Laplacian and
    α* = 2/(λ₁(𝓛) + λ_{n−1}(𝓛)); ζ = (λ₁ − λ_{n−1})/(λ₁ + λ_{n−1}). Self-weights may be < 0."""
    G = validate_graph(G)
    Lap = nx.laplacian_matrix(G, nodelist=range(G.number_of_nodes())).toarray().astype(float)
    lam = np.linalg.eigvalsh(Lap)  # ascending: 0 = lam[0] < lam[1] <= ... <= lam[-1]
    a = 2.0 / (lam[-1] + lam[1])
    A = np.eye(G.number_of_nodes()) - a * Lap
    return MixingMatrix(A, graph=G, rule="best_constant", name=f"best constant α={a:.4g}")


def average(n: int) -> MixingMatrix:
    """W = J = 11ᵀ/n: exact averaging (PASGD / all-reduce)."""
    n = checks.integer("n", n, lo=1)
    return MixingMatrix(np.full((n, n), 1.0 / n), graph=nx.complete_graph(n) if n > 1 else None,
                        rule="average", name=f"J ({n} workers)")


def identity(n: int) -> MixingMatrix:
    """W = I (no communication)."""
    n = checks.integer("n", n, lo=1)
    return MixingMatrix(np.eye(n), rule="identity", name=f"I ({n})")


RULES = {
    "uniform": uniform,
    "metropolis_hastings": metropolis_hastings,
    "metropolis": metropolis_hastings,
    "mh": metropolis_hastings,
    "max_degree": max_degree,
    "best_constant": best_constant,
}


def mixing_matrix(G: nx.Graph, rule: str = "metropolis_hastings") -> MixingMatrix:
    """W from any networkx graph by a named weight rule (see :data:`RULES`)."""
    return RULES[checks.one_of("rule", rule, sorted(RULES))](G)


# shortcuts --------------------------------------------------------------------------------------
def ring(m: int, rule: str = "uniform") -> MixingMatrix:
    """Ring of m workers; default uniform weights 1/3 (self and two neighbours).

    Spectrum: λ_k = 1/3 + (2/3) cos(2πk/m), k = 0..m−1 (circulant). For m = 2 the ring is a
    single edge and uniform weights are 1/2, i.e. W = J."""
    m = checks.integer("m", m, lo=2)
    return mixing_matrix(ring_graph(m), rule)


def path(m: int, rule: str = "metropolis_hastings") -> MixingMatrix:
    return mixing_matrix(path_graph(m), rule)


def torus(rows: int, cols: int, rule: str = "uniform") -> MixingMatrix:
    return mixing_matrix(torus_graph(rows, cols), rule)


def grid(rows: int, cols: int, rule: str = "metropolis_hastings") -> MixingMatrix:
    return mixing_matrix(grid_graph(rows, cols), rule)


def hypercube(dim: int, rule: str = "uniform") -> MixingMatrix:
    """Hypercube on 2^dim workers; uniform weights 1/(dim+1): eigenvalues 1 − 2k/(dim+1)."""
    return mixing_matrix(hypercube_graph(dim), rule)


def star(m: int, rule: str = "metropolis_hastings") -> MixingMatrix:
    return mixing_matrix(star_graph(m), rule)


def complete(m: int) -> MixingMatrix:
    """Complete graph with uniform weights 1/m: this is W = J."""
    return average(m)


def exponential(m: int, rule: str = "metropolis_hastings") -> MixingMatrix:
    return mixing_matrix(exponential_graph(m), rule)


# ---------------------------------------------------------------------------------------------
# EASGD and hierarchical averaging
# ---------------------------------------------------------------------------------------------
def easgd_matrix(m: int, alpha: float) -> MixingMatrix:
    """EASGD mixing matrix W_α ((m+1) × (m+1)) of Cooperative SGD (JMLR eq. 11):

        W_α = [[(1−α) I_m, α 1_m], [α 1_mᵀ, 1 − mα]]

    Workers x_i ← (1−α)x_i + α z, centre z ← (1−mα) z + α Σ_i x_i. Spectrum {1, 1−α (×(m−1)),
    1−(m+1)α}, so ζ = max{|1−α|, |1−(m+1)α|} (JMLR eq. 22). Symmetric and doubly stochastic;
    not non-negative when α > 1/m (Assumption 5 does not require non-negativity)."""
    m = checks.integer("m", m, lo=1)
    a = checks.positive("alpha", alpha, why="the elasticity")
    A = np.zeros((m + 1, m + 1))
    A[:m, :m] = (1 - a) * np.eye(m)
    A[:m, m] = A[m, :m] = a
    A[m, m] = 1 - m * a
    G = nx.star_graph(m)  # centre node 0 in networkx; relabel so the centre is node m
    G = nx.relabel_nodes(G, {0: m, **{i: i - 1 for i in range(1, m + 1)}})
    return MixingMatrix(A, graph=G, rule="easgd", name=f"EASGD W_α (m={m}, α={a:g})")


def generalized_easgd_matrix(W: Any, alpha: float) -> MixingMatrix:
    """Generalized elastic averaging W′ ((m+1) × (m+1)) of Cooperative SGD, JMLR Theorem 4
    (eq. 31): an auxiliary node joined to all m workers of a mixing matrix W,

        W′ = [[(1−α) W, α 1_m], [α 1_mᵀ, 1 − mα]].

    Its ζ′ = max{(1−α)ζ(W), |1 − (m+1)α|} (eq. 33; ``theory.generalized_easgd_zeta``), lowest
    at α = (1+ζ)/(m+1+ζ) (``theory.generalized_easgd_optimal_alpha``). W = I gives EASGD's W_α.
    The engine runs W′ like any W with v = 1 auxiliary variable (the last row/column).

    Args:
        W: m × m mixing matrix (:class:`MixingMatrix` or array; validated).
        alpha: elasticity, 0 < α ≤ 1.
    """
    Wm = as_mixing(W)
    a = float(alpha)
    if not (math.isfinite(a) and 0 < a <= 1):
        raise ValueError(f"alpha must be in (0, 1] (elasticity of generalized elastic "
                         f"averaging); got {alpha!r}")
    m = Wm.n
    A = np.zeros((m + 1, m + 1))
    A[:m, :m] = (1 - a) * Wm.matrix
    A[:m, m] = A[m, :m] = a
    A[m, m] = 1 - m * a
    G = None
    if Wm.graph is not None:
        G = nx.Graph(Wm.graph)
        G.add_edges_from((i, m) for i in range(m))
    return MixingMatrix(A, graph=G, rule="generalized_easgd",
                        name=f"generalized EASGD W′ ({Wm.name}, α={a:g})")


def group_average(groups: list[list[int]]) -> MixingMatrix:
    """Block-diagonal W averaging within each group (groups partition 0..n−1)."""
    flat = sorted(i for g in groups for i in g)
    n = len(flat)
    if flat != list(range(n)):
        raise ValueError("groups must partition 0..n−1 (each worker in exactly one group)")
    if any(len(g) == 0 for g in groups):
        raise ValueError("groups must be non-empty")
    A = np.zeros((n, n))
    for g in groups:
        A[np.ix_(g, g)] = 1.0 / len(g)
    return MixingMatrix(A, rule="group_average", name=f"group average ({len(groups)} groups)")


def contiguous_groups(m: int, n_groups: int) -> list[list[int]]:
    """Split 0..m−1 into ``n_groups`` contiguous groups of equal size."""
    m, g = checks.integer("m", m, lo=1), checks.integer("n_groups", n_groups, lo=1)
    if m % g:
        raise ValueError(f"m = {m} is not divisible by n_groups = {g}")
    s = m // g
    return [list(range(i * s, (i + 1) * s)) for i in range(g)]


__all__ = [
    "ATOL", "RULES", "MixingMatrix", "as_matrix", "as_mixing", "average", "best_constant",
    "complete", "complete_graph", "contiguous_groups", "easgd_matrix", "erdos_renyi_graph",
    "generalized_easgd_matrix",
    "exponential", "exponential_graph", "grid", "grid_graph", "group_average", "hypercube",
    "hypercube_graph", "identity", "max_degree", "metropolis_hastings", "mixing_matrix",
    "node_order", "path",
    "path_graph", "random_geometric_graph", "ring", "ring_graph", "star", "star_graph", "torus",
    "torus_graph", "uniform", "validate_graph", "validate_mixing",
]
