"""Empirics and theory refuse the same bad value with the same message (theory.checks)."""

from __future__ import annotations

import pytest

import theory
from empirics.compressors import QSGD, RandomK, TopK
from empirics.configs import pasgd
from empirics.problems import LeastSquares, seed_for
from theory import checks

CASES = [
    ("pasgd vs Periodic: tau=4.0", lambda: pasgd(4, 4.0),
     lambda: theory.Periodic(theory.ring(4), 4.0)),
    ("pasgd vs check: tau=0", lambda: pasgd(4, 0), lambda: checks.integer("tau", 0, lo=1)),
    ("TopK k=2.0", lambda: TopK(2.0), lambda: checks.integer("TopK: k", 2.0, lo=1)),
    ("RandomK unbiased=1", lambda: RandomK(2, unbiased=1),
     lambda: checks.boolean("RandomK: unbiased", 1)),
    ("QSGD s=0", lambda: QSGD(0), lambda: checks.integer("QSGD: s", 0, lo=1)),
    ("seed_for seed=-1", lambda: seed_for(-1, 0), lambda: checks.integer("seed", -1, lo=0)),
    ("LeastSquares d=2.0", lambda: LeastSquares(d=2.0), lambda: checks.integer("d", 2.0, lo=1)),
    ("LeastSquares heterogeneity", lambda: LeastSquares(heterogeneity=1.5),
     lambda: checks.probability("heterogeneity", 1.5)),
]


@pytest.mark.parametrize(("a", "b"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_identical_messages(a, b):
    with pytest.raises(ValueError) as ea:
        a()
    with pytest.raises(ValueError) as eb:
        b()
    assert str(ea.value) == str(eb.value)


def test_type_errors_stay_type_errors():
    with pytest.raises(TypeError, match=r"TopK: k must be an integer >= 1 \(got 2\.5\)"):
        TopK(2.5)
