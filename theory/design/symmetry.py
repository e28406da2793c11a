"""Symmetry: edge orbits of graph automorphisms, which reduce the design to one weight per orbit.

The design problems are convex and invariant under the automorphisms of G (when the constraints
are), so averaging an optimal w over a group of automorphisms gives an optimal w constant on its
edge orbits: the SDP then has one variable per orbit (``method="symmetric"``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import networkx as nx
import numpy as np

from theory.design.problem import DesignProblem


def edge_orbits(G: nx.Graph, *, max_nodes: int = 256, time_limit: float = 10.0
                ) -> list[list[tuple[int, int]]] | None:
    """Edge orbits of a subgroup of Aut(G) (nodes 0..n−1), or None if not computed.

    For every node v we look for one automorphism mapping node 0 to v (VF2 with node 0 and v
    pinned by a label), plus the first automorphisms VF2 enumerates; union–find over the edge
    images gives the orbits of the group they generate. A subgroup's orbits are finer than the
    full group's, which is safe: the design problem is convex and invariant, so averaging an
    optimal w over the subgroup gives an optimal w constant on its orbits."""
    from networkx.algorithms.isomorphism import GraphMatcher

    n = G.number_of_nodes()
    if n > max_nodes:
        return None
    edges = sorted(tuple(sorted(e)) for e in G.edges if e[0] != e[1])
    pos = {e: k for k, e in enumerate(edges)}
    parent = list(range(len(edges)))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    def apply(sigma: dict) -> None:
        for e, k in pos.items():
            f = tuple(sorted((sigma[e[0]], sigma[e[1]])))
            a, b = find(k), find(pos[f])
            if a != b:
                parent[a] = b

    t0 = time.perf_counter()
    GM = GraphMatcher(G, G)
    for c, sigma in enumerate(GM.isomorphisms_iter()):
        apply(sigma)
        if c >= 2 * n or time.perf_counter() - t0 > time_limit / 4:
            break
    src = 0
    for v in range(n):
        if time.perf_counter() - t0 > time_limit:
            return None
        G1, G2 = G.copy(), G.copy()
        nx.set_node_attributes(G1, {u: u == src for u in G1}, "pin")
        nx.set_node_attributes(G2, {u: u == v for u in G2}, "pin")
        gm = GraphMatcher(G1, G2, node_match=lambda a, b: a["pin"] == b["pin"])
        sigma = next(gm.isomorphisms_iter(), None)
        if sigma is not None:
            apply(sigma)
    groups: dict[int, list] = {}
    for e, k in pos.items():
        groups.setdefault(find(k), []).append(e)
    return sorted(groups.values(), key=lambda g: g[0])


def symmetry_applies(prob: DesignProblem, constraints: Mapping[str, Any]) -> bool:
    """True when the orbit reduction is exact: no fixed or zero edges, and every constraint a
    scalar (then the constraints are invariant under every automorphism)."""
    return (len(prob.fixed_edges) == 0 and not constraints.get("zero_edges")
            and not isinstance(constraints.get("edge_weight_max"), Mapping)
            and not isinstance(constraints.get("self_weight_max"), Mapping)
            and not isinstance(constraints.get("edge_costs"), Mapping))


def orbit_labels(prob: DesignProblem, orbits: list[list[tuple[int, int]]]) -> np.ndarray:
    """(m,) orbit id of each free edge of ``prob``, for :attr:`DesignProblem.orbits`."""
    lab = np.empty(prob.m, dtype=int)
    pos = {tuple(e): k for k, e in enumerate(prob.edges)}
    for o, group in enumerate(orbits):
        for e in group:
            lab[pos[e]] = o
    return lab


__all__ = ["edge_orbits", "orbit_labels", "symmetry_applies"]
