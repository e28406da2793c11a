"""theory.stepsizes: torch-free step-size schedules, their dict vocabulary and the PL step size."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import sympy as sp

import theory
from theory.bounds import local_pl
from theory.stepsizes import (
    Constant,
    InverseTime,
    LRFunction,
    PLStepsize,
    Stagewise,
    as_lr,
    pl_shift,
    pl_stepsize,
    stepsize_from_dict,
)


def test_values():
    assert Constant(0.1)(7) == 0.1
    s = Stagewise((0.1, 0.01), (5,))
    assert [s(t) for t in (0, 4, 5, 9)] == [0.1, 0.1, 0.01, 0.01]
    it = InverseTime(2.0, beta=4.0, max_lr=0.3)
    assert it(0) == 0.3 and it(6) == pytest.approx(0.2)


@pytest.mark.parametrize("lr", [Constant(0.3), Stagewise((0.2, 0.1, 0.05), (10, 20)),
                                InverseTime(2.0, 3.0), InverseTime(2.0, 3.0, max_lr=0.5),
                                PLStepsize(0.5, 8, alpha_pl=2.0)])
def test_dict_round_trip_through_json(lr):
    d = json.loads(json.dumps(lr.to_dict()))
    assert d["kind"] in ("constant", "stagewise", "inverse_time", "pl") and "type" not in d
    back = stepsize_from_dict(d)
    assert back == lr and [back(t) for t in range(30)] == [lr(t) for t in range(30)]


def test_older_type_key_and_numbers_are_read():
    assert stepsize_from_dict({"type": "constant", "eta": 0.3}) == Constant(0.3)
    assert stepsize_from_dict({"type": "inverse_time", "a": 1.0, "beta": 2.0, "max_lr": None}) \
        == InverseTime(1.0, 2.0)
    assert stepsize_from_dict(0.05) == Constant(0.05)
    assert as_lr(0.05) == Constant(0.05) and as_lr(Stagewise((1.0,), ())).etas == (1.0,)
    f = as_lr(lambda t: 1 / (t + 1))
    assert isinstance(f, LRFunction) and f.to_dict() == {"kind": "callable", "name": "<lambda>"}


def test_pl_step_size_is_the_theorem_rule():
    lr = pl_stepsize(mu=0.5, tau_max=6, alpha_pl=2.0)
    a = 2.0 * 6 + 4
    assert lr.shift == a
    for t in (0, 1, 10, 1000):
        assert lr(t) == 4 / (0.5 * (t + a))
        assert lr(t) == lr.inverse_time()(t)  # what build_lr computes today, bit for bit
    assert as_lr(lr) is lr
    # the bound uses the same rule, symbolically
    assert sp.simplify(local_pl.shift() - pl_shift(theory.symbols.tau, local_pl.alpha_pl)) == 0
    assert local_pl.shift(7).subs(local_pl.alpha_pl, 2) == pl_shift(7, 2)
    # mu and tau_max from the run when the spec names only alpha_pl
    assert stepsize_from_dict({"kind": "pl", "alpha_pl": 2.0}, mu=0.5, tau_max=6) == lr
    assert stepsize_from_dict({"kind": "pl"}, mu=0.5, tau_max=6) == pl_stepsize(0.5, 6)


@pytest.mark.parametrize(("d", "kw", "message"), [
    ({"kind": "pl", "alpha_pl": 1.0}, {"tau_max": 4}, r"lr kind 'pl' needs mu \(mu: the PL"),
    ({"kind": "pl"}, {}, r"lr kind 'pl' needs mu and tau_max"),
    ({"kind": "cosine"}, {}, r"lr kind must be one of \['constant', 'inverse_time', "
                             r"'stagewise', 'pl'\] \(got 'cosine'\)"),
    ({"kind": "inverse-time", "a": 1}, {}, r"did you mean 'inverse_time'\?"),
    ({"kind": "constant"}, {}, r"lr kind 'constant' needs eta"),
    ({"kind": "constant", "eta": 0.1, "beta": 2}, {}, r"lr kind 'constant' does not take beta"),
    ({"kind": "stagewise", "etas": [0.1]}, {}, r"lr kind 'stagewise' needs boundaries"),
    ({"kind": "callable", "name": "f"}, {}, r"cannot be rebuilt from data"),
    ({"kind": "constant", "type": "pl", "eta": 1}, {}, r"gives kind 'constant' and type 'pl'"),
    ({"eta": 0.1}, {}, r"lr must be a number or a dict with a 'kind'"),
    ("0.1", {}, r"lr must be a number or a dict with a 'kind' \(got '0.1'\)"),
    ({"kind": "constant", "eta": -1}, {}, r"lr \(eta\) must be a finite number > 0 \(got -1\)"),
    ({"kind": "inverse_time", "a": 1, "beta": 0}, {},
     r"beta must be > 0 so that η_0 = a/beta is finite \(got 0\)"),
    ({"kind": "pl", "mu": 1.0, "tau_max": 2.5}, {}, r"tau_max must be an integer >= 1 \(got 2.5\)"),
    ({"kind": "stagewise", "etas": [0.1, 0.2], "boundaries": [5.0]}, {},
     r"boundaries\[0\] must be an integer \(got 5.0\)"),
])
def test_bad_specs_name_the_argument_and_the_rule(d, kw, message):
    with pytest.raises(ValueError, match=message):
        stepsize_from_dict(d, **kw)


def test_theory_stepsizes_is_torch_free():
    code = "import sys, theory.stepsizes; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
    assert theory.pl_stepsize is pl_stepsize and math.isfinite(theory.Constant(1.0)(0))
