"""theory.topologies: the one topology table (graphs, default weights, shape rules, designs)."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

import theory
from theory.topologies import (
    TOPOLOGIES,
    build_graph,
    build_mixing,
    deterministic,
    topology,
)


@pytest.mark.parametrize(("name", "m", "shortcut"), [
    ("ring", 16, lambda: theory.ring(16)), ("ring", 2, lambda: theory.ring(2)),
    ("path", 10, lambda: theory.path(10)), ("star", 7, lambda: theory.star(7)),
    ("exponential", 16, lambda: theory.exponential(16)),
    ("complete", 5, lambda: theory.complete(5)), ("torus", 16, lambda: theory.torus(4, 4)),
    ("hypercube", 16, lambda: theory.hypercube(4)), ("grid", 9, lambda: theory.grid(3, 3)),
])
def test_default_weights_are_the_shortcuts(name, m, shortcut):
    W, ref = build_mixing(name, m), shortcut()
    assert W == ref and W.rule == ref.rule
    assert build_mixing(name, m, "default") == ref


def test_every_row_builds_and_lists_its_rules():
    assert list(TOPOLOGIES)[:8] == list(deterministic())
    assert set(TOPOLOGIES) - set(deterministic()) == {"erdos_renyi", "geometric"}
    for name, t in TOPOLOGIES.items():
        G = build_graph(name, 16)
        assert sorted(G.nodes) == list(range(16)) and nx.is_connected(G), name
        assert t.shape and t.description
        W = build_mixing(name, 16)
        assert W.n == 16 and W.zeta < 1


def test_weights_rules_and_names_are_normalised():
    G = build_graph("ring", 8)
    assert build_mixing("ring", 8, "metropolis_hastings") == theory.metropolis_hastings(G)
    assert build_mixing("Ring", 8, "mh") == theory.metropolis_hastings(G)
    assert topology("erdos-renyi").name == "erdos_renyi" and topology("rgg").name == "geometric"
    assert build_graph("torus", 15, rows=3, cols=5).number_of_edges() == 30
    assert build_graph("torus", 15, rows=3).number_of_nodes() == 15
    assert build_graph("grid", 6, cols=2).number_of_edges() == 7


def test_random_topologies_are_seeded():
    a, b = build_graph("geometric", 60, seed=3), build_graph("geometric", 60, seed=3)
    c = build_graph("geometric", 60, seed=4)
    assert sorted(a.edges) == sorted(b.edges) != sorted(c.edges)
    ref = theory.random_geometric_graph(60, avg_degree=5.0, seed=3, connected="join")
    assert sorted(a.edges) == sorted(ref.edges)
    e = build_graph("erdos_renyi", 30, p=0.2, seed=1)
    assert sorted(e.edges) == sorted(theory.erdos_renyi_graph(30, 0.2, seed=1).edges)
    assert build_graph("geometric", 40, radius=0.4, seed=0, connected=True).number_of_nodes() == 40


def test_designed_weights():
    W = build_mixing("ring", 8, "fmmc")
    c = np.cos(2 * np.pi / 8)
    assert W.rule == "fmmc" and W.zeta == pytest.approx((1 + c) / (3 - c), abs=1e-6)
    D = build_mixing("path", 6, "fdla", design={"method": "sdp"})
    assert D.rule == "fdla" and D.zeta <= theory.zeta(theory.path(6))
    with pytest.raises(ValueError, match="design options apply to weights 'fmmc' and 'fdla'"):
        build_mixing("ring", 8, "uniform", design={"tol": 1e-2})


@pytest.mark.parametrize(("call", "message"), [
    (lambda: build_graph("moebius", 8),
     r"topology must be one of \['ring', 'path', .*'geometric'\] \(got 'moebius'\)"),
    (lambda: build_graph("tours", 9), r"did you mean 'torus'\?"),
    (lambda: build_graph("torus", 12), r"m must be r² with r >= 3 for a torus \(got 12\): not a "
                                       r"square"),
    (lambda: build_graph("torus", 4), r"m must be r² with r >= 3 for a torus \(got 4\): r = 2"),
    (lambda: build_graph("hypercube", 12), r"m must be a power of 2 \(m = 2\^k, k >= 1\) for a "
                                           r"hypercube \(got 12\)"),
    (lambda: build_graph("ring", 1), r"m must be an integer >= 2 for a ring \(got 1\)"),
    (lambda: build_graph("ring", 8.0), r"m must be an integer >= 1 \(got 8\.0\)"),
    (lambda: build_graph("ring", 8, seed=1),
     r"topology 'ring' does not take seed \(it takes no parameters besides m\)"),
    (lambda: build_graph("torus", 15, rows=4), r"15 nodes do not split into rows of 4"),
    (lambda: build_graph("torus", 15, rows=3, cols=4), r"rows × cols = 3 × 4 = 12"),
    (lambda: build_mixing("ring", 8, "metropolis-hastings"),
     r"weights must be one of \['default', 'uniform', .*did you mean 'metropolis_hastings'"),
    (lambda: build_mixing("star", 5, "uniform"), r"regular graph"),
])
def test_bad_input_names_the_argument_and_the_rule(call, message):
    with pytest.raises(ValueError, match=message):
        call()
