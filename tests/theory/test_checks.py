"""theory.checks: one rule and one message per kind of argument, whichever entry point checks it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp

import theory
from theory import checks
from theory import schedule_library as lib
from theory.checks import ArgumentError, ArgumentTypeError

W4 = theory.ring(4)


def _message(fn) -> tuple[type, str]:
    with pytest.raises(ValueError) as ei:
        fn()
    return type(ei.value), str(ei.value)


# the same bad value through a public entry point and through the check it uses
SAME_RULE = [
    ("Periodic tau=4.0", lambda: theory.Periodic(W4, 4.0),
     lambda: checks.integer("tau", 4.0, lo=1)),
    ("periodic tau=0", lambda: lib.periodic(W4, 0), lambda: checks.integer("tau", 0, lo=1)),
    ("Intervals periods[1]=2.0", lambda: theory.Intervals(W4, [3, 2.0]),
     lambda: checks.integer("periods[1]", 2.0, lo=1)),
    ("Hierarchical tau2=True", lambda: theory.Hierarchical(W4, W4, 1, True),
     lambda: checks.integer("tau2", True, lo=1)),
    ("adaptive_lupa tau0=1.5", lambda: lib.adaptive_lupa(W4, 1.5),
     lambda: checks.integer("tau0", 1.5, lo=1)),
    ("rounds T=10.0", lambda: list(theory.Periodic(W4, 2).rounds(10.0)),
     lambda: checks.integer("T", 10.0, lo=1)),
    ("ring m=8.0", lambda: theory.ring(8.0), lambda: checks.integer("m", 8.0, lo=2)),
    ("erdos_renyi p=0", lambda: theory.erdos_renyi_graph(10, 0, seed=0),
     lambda: checks.in_range("p", 0, 0, 1, lo_strict=True)),
    ("easgd alpha=nan", lambda: theory.easgd_matrix(4, math.nan),
     lambda: checks.positive("alpha", math.nan, why="the elasticity")),
    ("mixing_matrix rule", lambda: theory.mixing_matrix(theory.ring_graph(5), "metropolis"
                                                                              "_hasting"),
     lambda: checks.one_of("rule", "metropolis_hasting", sorted(theory.mixing.RULES))),
    ("consensus_rounds eps=1", lambda: theory.consensus_rounds(W4, 1),
     lambda: checks.in_range("eps", 1, 0, 1, lo_strict=True, hi_strict=True)),
    ("zeta_exact ring m=2.0", lambda: theory.zeta_exact("ring", 4.0),
     lambda: checks.integer("m", 4.0, lo=3)),
    ("compare_rates p=0", lambda: theory.compare_rates(0, 100),
     lambda: checks.integer("p", 0, lo=1)),
]


@pytest.mark.parametrize(("entry", "check"), [c[1:] for c in SAME_RULE],
                         ids=[c[0] for c in SAME_RULE])
def test_same_bad_value_same_message_from_every_entry_point(entry, check):
    t1, m1 = _message(entry)
    t2, m2 = _message(check)
    assert m1 == m2
    assert t1 is t2


def test_periodic_refuses_an_integral_float_like_pasgd():
    with pytest.raises(ArgumentTypeError, match=r"^tau must be an integer >= 1 \(got 4\.0\)$"):
        theory.Periodic(W4, 4.0)


# --- the rules ------------------------------------------------------------------------------
def test_integer_accepts_index_types_and_refuses_the_rest():
    assert checks.integer("n", 3) == 3
    for x in (np.int64(3), np.uint8(3), sp.Integer(3)):
        v = checks.integer("n", x, lo=1)
        assert v == 3 and type(v) is int
    for bad in (3.0, 2.5, np.float64(3.0), "3", None, True, np.bool_(True)):
        with pytest.raises(ArgumentTypeError, match=r"n must be an integer \(got "):
            checks.integer("n", bad)
    with pytest.raises(ArgumentError, match=r"^k must be an integer in \[0, 5\) \(got 5\)$"):
        checks.integer("k", 5, lo=0, hi=5, hi_strict=True)
    with pytest.raises(ArgumentError, match=r"^n must be an integer <= 3 \(got 4\)$"):
        checks.integer("n", 4, hi=3)
    with pytest.raises(ArgumentError, match=r"^d must be an integer >= 1 \(got 0\): the length$"):
        checks.integer("d", 0, lo=1, why="the length")


def test_wrong_type_errors_are_both_type_and_value_errors():
    with pytest.raises(TypeError):
        checks.integer("n", 1.0)
    with pytest.raises(ValueError):
        checks.integer("n", 1.0)
    with pytest.raises(ValueError) as ei:
        checks.integer("n", 0, lo=1)
    assert not isinstance(ei.value, TypeError)  # a value out of range is not a type error


def test_real_rules():
    assert checks.real("x", "2.5") == 2.5 and checks.real("x", np.float32(1)) == 1.0
    assert checks.positive("eta", 0.1) == 0.1
    assert checks.nonneg("c", 0) == 0.0
    assert checks.probability("h", 1) == 1.0
    for bad, rule in ((0, "a finite number > 0"), (-1e-9, "a finite number > 0"),
                      (math.inf, "a finite number > 0"), (math.nan, "a finite number > 0")):
        with pytest.raises(ArgumentError, match=rf"^eta must be {rule} \(got "):
            checks.positive("eta", bad)
    with pytest.raises(ArgumentTypeError, match=r"eta must be a finite number > 0 \(got True\)"):
        checks.positive("eta", True)
    with pytest.raises(ArgumentTypeError, match=r"x must be a finite number \(got 'abc'\)"):
        checks.finite("x", "abc")
    with pytest.raises(ArgumentError, match=r"^h must be in \[0, 1\] \(got 1\.5\)$"):
        checks.probability("h", 1.5)
    with pytest.raises(ArgumentError, match=r"^g must be in \(0, 1\] \(got 0\)$"):
        checks.in_range("g", 0, 0, 1, lo_strict=True)
    assert checks.real("u", math.inf, 0, allow_inf=True) == math.inf
    with pytest.raises(ArgumentError, match=r"^u must be a number >= 0 \(got nan\)$"):
        checks.real("u", math.nan, 0, allow_inf=True)


def test_one_of_lists_the_choices_and_suggests_a_near_miss():
    assert checks.one_of("method", "sdp", ("auto", "sdp")) == "sdp"
    with pytest.raises(ArgumentError) as ei:
        checks.one_of("method", "spd", ("auto", "sdp", "first_order"))
    assert str(ei.value) == ("method must be one of ['auto', 'sdp', 'first_order'] (got 'spd'; "
                             "did you mean 'sdp'?)")
    with pytest.raises(ArgumentError, match=r"did you mean 'metropolis_hastings'\?"):
        checks.one_of("rule", "Metropolis-Hastings", ["metropolis_hastings", "uniform"])
    with pytest.raises(ArgumentError, match=r"^kind must be one of \['a', 'b'\] \(got 7\)$"):
        checks.one_of("kind", 7, ["a", "b"])
    with pytest.raises(ArgumentError, match=r"got \[1\]"):
        checks.one_of("kind", [1], ["a"])  # unhashable values are refused, not crashed on


def test_boolean_and_refuse():
    assert checks.boolean("flag", np.bool_(False)) is False
    with pytest.raises(ArgumentTypeError, match=r"^flag must be True or False \(got 1\)$"):
        checks.boolean("flag", 1)
    e = checks.refuse("connected", "True, False or 'join'", "yes")
    assert isinstance(e, ArgumentError) and not isinstance(e, TypeError)
    assert str(e) == "connected must be True, False or 'join' (got 'yes')"


@pytest.mark.parametrize(("args", "kw", "text"), [
    ((1, None), {}, ">= 1"), ((0, None), {"lo_strict": True}, "> 0"),
    ((None, 1.5), {}, "<= 1.5"), ((None, 1), {"hi_strict": True}, "< 1"),
    ((0, 1), {"hi_strict": True}, "in [0, 1)"), ((None, None), {}, ""),
    ((1e-6, None), {}, ">= 1e-06"),
])
def test_describe_range(args, kw, text):
    assert checks.describe_range(*args, **kw) == text


def test_symbol_domains_use_the_same_words():
    assert theory.symbols.DOMAINS[theory.symbols.tau].describe() == "an integer >= 1"
    assert theory.symbols.DOMAINS[theory.symbols.zeta].describe() == "a real number in [0, 1)"
    with pytest.raises(ValueError, match=r"^tau must be an integer >= 1 \(got 0\): "):
        theory.symbols.check_value(theory.symbols.tau, 0)
