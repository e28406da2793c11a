"""Spiridonoff et al.: scaling statements only, all marked derived."""

import math

import pytest
import sympy as sp

from theory import schedule_library as lib
from theory.bound import Status
from theory.bounds import one_shot as osa
from theory.mixing import average
from theory.symbols import N, R, T, kappa, mu, sigma2


def test_statuses():
    assert osa.DERIVED.status is Status.DERIVED and "no constants" in osa.DERIVED.note
    assert osa.ABSTRACT.status is Status.QUOTED
    assert any("Ω(N)" in c for c in osa.ABSTRACT_CLAIMS)
    for s in (osa.extra_error(), osa.speedup_term(), osa.required_rounds("linear")):
        assert s.source.status is Status.DERIVED


def test_required_rounds():
    assert sp.simplify(osa.required_rounds("linear").expr - N * kappa**2) == 0
    assert sp.simplify(osa.required_rounds("constant").expr - N * kappa**2 * sp.log(T)) == 0
    assert "≳" in str(osa.required_rounds("linear"))
    with pytest.raises(ValueError, match="kind must be"):
        osa.required_rounds("quadratic")


def test_extra_error_form():
    e = osa.extra_error().expr
    assert sp.simplify(e - kappa**2 * sigma2 * osa.S_H / (mu**2 * T**2)) == 0


@pytest.mark.parametrize("T_,R_", [(1000, 20), (20000, 20), (40000, 100), (5000, 50), (1000, 4),
                                   (1000, 2)])
def test_sum_H_over_t_approx_against_exact(T_, R_):
    lin = float(lib.sum_H_over_t(lib.spiridonoff(average(R_), T_), T_))
    con = float(lib.sum_H_over_t(lib.periodic(average(R_), T_ // R_), T_))
    a_lin = float(osa.sum_H_over_t_approx("linear").subs({T: T_, R: R_}))
    a_con = float(osa.sum_H_over_t_approx("constant").subs({T: T_, R: R_}))
    assert abs(lin / a_lin - 1) < 0.03  # the docstring's measured accuracy
    assert abs(con / a_con - 1) < 1e-3
    # the separation: growing intervals avoid the ln T factor of constant ones
    assert con / lin > 0.5 * math.log(T_) / 4


def test_leading_orders():
    for kind, lead in osa.LEADING.items():
        approx = osa.sum_H_over_t_approx(kind)
        if kind == "constant":
            assert sp.limit(approx / lead, T, sp.oo) == 1
        else:
            assert sp.limit(approx / lead, R, sp.oo) == 1
    with pytest.raises(ValueError, match="kind must be"):
        osa.sum_H_over_t_approx("x")


def test_docs_page_snippets_run():
    import doctest
    from pathlib import Path

    page = Path(__file__).resolve().parents[2] / "docs" / "one_shot_averaging.md"
    r = doctest.testfile(str(page), module_relative=False, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert r.attempted > 5 and r.failed == 0
