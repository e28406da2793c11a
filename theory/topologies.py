"""The topology table: one place that knows every named topology.

Each entry of :data:`TOPOLOGIES` says how to build the graph on m nodes (and with which extra
parameters), which weights it gets by default, and which m it accepts (its shape rule). Two
functions read it::

    >>> from theory.topologies import build_graph, build_mixing
    >>> build_graph("torus", 16).number_of_edges()
    32
    >>> build_mixing("ring", 8).rule, build_mixing("ring", 8, "metropolis_hastings").rule
    ('uniform', 'metropolis_hastings')
    >>> build_mixing("geometric", 30, "fmmc", seed=1).rule   # designed weights (theory.design)
    'fmmc'

``weights`` is a rule of :func:`theory.mixing.mixing_matrix` (``"uniform"``,
``"metropolis_hastings"``, ``"max_degree"``, ``"best_constant"``, ...), ``"fmmc"`` /
``"fdla"`` (the optimal weights of :func:`theory.design.fastest_mixing` /
:func:`~theory.design.fastest_averaging`, imported on first use), or ``None`` / ``"default"``
for the topology's own weights. Names are case-insensitive and ``-`` is read as ``_``
(``"erdos-renyi"``). Bad names, sizes and parameters raise ``ValueError`` naming the argument
and the rule (and, for a name, the valid ones).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from theory import checks
from theory import mixing as tm

#: the designed weights (:mod:`theory.design`), on top of the rules of :data:`theory.mixing.RULES`
DESIGNED = ("fmmc", "fdla")
#: every value of ``weights`` (canonical names; the aliases of ``theory.mixing.RULES`` work too)
WEIGHTS = ("uniform", "metropolis_hastings", "max_degree", "best_constant", *DESIGNED)


@dataclass(frozen=True)
class Topology:
    """One row of the table.

    Attributes:
        name: canonical name (``"ring"``, ``"erdos_renyi"``).
        graph: ``graph(m, **params) -> networkx.Graph`` on nodes 0..m−1 (m already checked).
        weights: the default weight rule (a key of ``theory.mixing.RULES``, or ``"average"``
            for W = J).
        shape: the rule on m, in words (used in messages and listings).
        params: the keyword parameters ``graph`` accepts besides m (with their defaults).
        random: True if the graph depends on ``seed``.
        description: one line for listings.
    """

    name: str
    graph: Callable[..., Any]
    weights: str
    shape: str
    params: Mapping[str, Any]
    random: bool
    description: str

    def default_mixing(self, G: Any) -> tm.MixingMatrix:
        """The topology's own weights on its graph G."""
        if self.weights == "average":
            return tm.average(G.number_of_nodes())
        return tm.mixing_matrix(G, self.weights)


# ---------------------------------------------------------------------------------------------
# graph builders with their shape rules (m is an integer >= 1 when they are called)
# ---------------------------------------------------------------------------------------------
def _at_least(name: str, m: int, lo: int) -> int:
    if m < lo:
        raise checks.refuse("m", f"an integer >= {lo} for a {name}", m)
    return m


def _rect(name: str, m: int, rows: int | None, cols: int | None, lo: int) -> tuple[int, int]:
    """rows × cols = m: both given, one given (the other m // it) or neither (a square)."""
    if rows is not None:
        rows = checks.integer("rows", rows, lo=lo)
    if cols is not None:
        cols = checks.integer("cols", cols, lo=lo)
    if rows is not None and cols is not None:
        if rows * cols != m:
            raise checks.refuse("m", f"rows × cols = {rows} × {cols} = {rows * cols} for this "
                                f"{name}", m)
        return rows, cols
    if rows is not None or cols is not None:
        k = rows if rows is not None else cols
        if m % k:
            raise checks.refuse("m", f"a multiple of {'rows' if rows else 'cols'} = {k} for a "
                                f"{name}", m, why=f"{m} nodes do not split into rows of {k}")
        other = checks.integer("cols" if rows is not None else "rows", m // k, lo=lo)
        return (k, other) if rows is not None else (other, k)
    r = math.isqrt(m)
    if r * r != m or r < lo:
        raise checks.refuse("m", f"r² with r >= {lo} for a {name}", m,
                            why=("not a square; give a square number of nodes, or rows and "
                                 "cols for a rectangle") if r * r != m else f"r = {r} < {lo}")
    return r, r


def _torus(m: int, rows: int | None = None, cols: int | None = None) -> Any:
    return tm.torus_graph(*_rect("torus", m, rows, cols, 3))


def _grid(m: int, rows: int | None = None, cols: int | None = None) -> Any:
    return tm.grid_graph(*_rect("grid", _at_least("grid", m, 2), rows, cols, 1))


def _hypercube(m: int) -> Any:
    k = m.bit_length() - 1
    if m < 2 or 2**k != m:
        raise checks.refuse("m", "a power of 2 (m = 2^k, k >= 1) for a hypercube", m)
    return tm.hypercube_graph(k)


def _simple(builder: Callable[[int], Any], name: str, lo: int = 2) -> Callable[..., Any]:
    return lambda m: builder(_at_least(name, m, lo))


def _erdos_renyi(m: int, p: float = 0.1, seed: int = 0) -> Any:
    return tm.erdos_renyi_graph(_at_least("erdos_renyi graph", m, 2), p, seed)


def _geometric(m: int, avg_degree: float = 5.0, seed: int = 0, radius: float | None = None,
               connected: bool | str = "join") -> Any:
    if radius is not None:
        return tm.random_geometric_graph(_at_least("geometric graph", m, 2), radius, seed,
                                         connected=connected)
    return tm.random_geometric_graph(_at_least("geometric graph", m, 2), seed=seed,
                                     avg_degree=avg_degree, connected=connected)


def _row(name: str, graph: Callable[..., Any], weights: str, shape: str, description: str,
         params: Mapping[str, Any] | None = None, random: bool = False) -> Topology:
    return Topology(name, graph, weights, shape, dict(params or {}), random, description)


#: name -> :class:`Topology`, in listing order (deterministic topologies first)
TOPOLOGIES: dict[str, Topology] = {t.name: t for t in (
    _row("ring", _simple(tm.ring_graph, "ring"), "uniform", "m >= 2",
         "cycle C_m (m = 2: one edge); uniform weights 1/3"),
    _row("path", _simple(tm.path_graph, "path"), "metropolis_hastings", "m >= 2", "path P_m"),
    _row("torus", _torus, "uniform", "m = rows × cols with rows, cols >= 3 (default square)",
         "2-D periodic grid; uniform weights 1/5", {"rows": None, "cols": None}),
    _row("grid", _grid, "metropolis_hastings", "m = rows × cols >= 2 (default square)",
         "2-D grid without wrap-around", {"rows": None, "cols": None}),
    _row("hypercube", _hypercube, "uniform", "m = 2^k with k >= 1",
         "hypercube Q_k; uniform weights 1/(k+1)"),
    _row("star", _simple(tm.star_graph, "star"), "metropolis_hastings", "m >= 2",
         "star, hub = node 0"),
    _row("complete", _simple(tm.complete_graph, "complete graph"), "average", "m >= 2",
         "complete graph; W = J (exact averaging)"),
    _row("exponential", _simple(tm.exponential_graph, "exponential graph"),
         "metropolis_hastings", "m >= 2", "i ~ i ± 2^k (mod m)"),
    _row("erdos_renyi", _erdos_renyi, "metropolis_hastings", "m >= 2",
         "G(m, p), redrawn with seed, seed+1, ... until connected", {"p": 0.1, "seed": 0},
         random=True),
    _row("geometric", _geometric, "metropolis_hastings", "m >= 2",
         "random geometric graph on the unit square, components joined by shortest edges",
         {"avg_degree": 5.0, "seed": 0, "radius": None, "connected": "join"}, random=True),
)}

#: other spellings of the names
ALIASES = {"cycle": "ring", "hypercubic": "hypercube", "er": "erdos_renyi",
           "gnp": "erdos_renyi", "random_geometric": "geometric", "rgg": "geometric",
           "fully_connected": "complete", "all_to_all": "complete"}


def topology(name: str) -> Topology:
    """The table row of ``name`` (case-insensitive, ``-`` read as ``_``, aliases allowed)."""
    key = name.strip().lower().replace("-", "_").replace(" ", "_") if isinstance(name, str) \
        else name
    key = ALIASES.get(key, key)
    return TOPOLOGIES[checks.one_of("topology", key, list(TOPOLOGIES))]


def build_graph(name: str, m: int, **params: Any) -> Any:
    """The networkx graph of topology ``name`` on m nodes (0..m−1).

    ``params`` are the topology's own (``rows``/``cols`` for torus and grid, ``p``/``seed`` for
    erdos_renyi, ``avg_degree``/``seed``/``radius``/``connected`` for geometric); others are
    refused by name. Raises ValueError naming the argument and the rule (shape rules: torus
    m = r² with r >= 3 unless rows/cols are given, hypercube m = 2^k)."""
    t = topology(name)
    m = checks.integer("m", m, lo=1)
    extra = sorted(set(params) - set(t.params))
    if extra:
        takes = ", ".join(t.params) if t.params else "no parameters besides m"
        raise ValueError(f"topology {t.name!r} does not take {', '.join(extra)} (it takes "
                         f"{takes})")
    return t.graph(m, **params)


def build_mixing(name: str, m: int, weights: str | None = None, *,
                 design: Mapping[str, Any] | None = None, **params: Any) -> tm.MixingMatrix:
    """W for topology ``name`` on m nodes: ``weights`` None/"default" (the topology's own), a rule
    of :func:`theory.mixing.mixing_matrix`, or "fmmc"/"fdla" (designed; ``design`` holds keyword
    arguments for :func:`theory.design.fastest_mixing`, e.g. ``{"tol": 1e-2}``). ``params`` go
    to :func:`build_graph`."""
    t = topology(name)
    G = build_graph(t.name, m, **params)
    if weights is None or weights == "default":
        return t.default_mixing(G)
    rules = list(WEIGHTS) + [r for r in tm.RULES if r not in WEIGHTS]
    w = checks.one_of("weights", weights, ["default", *rules])
    if w in DESIGNED:
        import theory.design as td

        fn = td.fastest_mixing if w == "fmmc" else td.fastest_averaging
        return fn(G, **dict(design or {})).mixing
    if design:
        raise ValueError(f"design options apply to weights 'fmmc' and 'fdla' only (weights = "
                         f"{w!r})")
    return tm.mixing_matrix(G, w)


def deterministic() -> tuple[str, ...]:
    """Names of the topologies fixed by m alone (no seed)."""
    return tuple(n for n, t in TOPOLOGIES.items() if not t.random)


__all__ = ["ALIASES", "DESIGNED", "TOPOLOGIES", "WEIGHTS", "Topology", "build_graph",
           "build_mixing", "deterministic", "topology"]
