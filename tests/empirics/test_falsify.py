"""The property-based search over a bound's admissible settings: wrong bounds are broken and
shrunk, right ones are not, and no searched setting leaves the hypotheses."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

import theory
from empirics.experiment import ExperimentSpec, run_experiment
from empirics.falsify import Space, falsify, parse_over
from theory.bound import Bound

SPACE = Space(m=(2, 6), tau=(1, 6), rounds=(4, 8), seeds=3)


def _inside_pasgd(c) -> bool:
    """Corollary 2's condition ηL + η²L²τ(τ−1) ≤ 1 and τ | K, checked by hand."""
    spec = ExperimentSpec.from_dict({**c.spec, "bound": "none"})  # the run's data only
    Lc = spec.build()[0].constants.L.value
    eta, tau, K = c.setting["eta"], c.setting["tau"], c.setting["K"]
    return eta * Lc + eta**2 * Lc**2 * tau * (tau - 1) <= 1 and K % tau == 0


def test_a_wrong_bound_is_broken_and_shrunk(tmp_path):
    right = theory.pasgd_bound()
    # the PASGD bound without its optimization term 2ΔF/(ηK): false at small K
    wrong = Bound("PASGD without 2ΔF/(ηK)", right.terms["variance"] + right.terms["network"],
                  right.source, conditions=right.conditions, setting=right.setting)
    res = falsify(wrong, SPACE, budget=8, seed=0, out=tmp_path)
    ce = res.counterexample
    assert ce is not None and ce.verdict == "violated" and ce.tightness < 1
    assert all(_inside_pasgd(c) for c in res.candidates)  # never outside the hypotheses
    assert all(c.verdict in ("holds", "violated") for c in res.candidates)
    # hypothesis shrank it: its last replay is the reported example, at the low end of m
    assert ce is [c for c in res.candidates if c.verdict == "violated"][-1]
    assert ce.setting["m"] == SPACE.m[0]
    assert (tmp_path / "report.md").read_text().count("Counterexample") == 1
    assert (tmp_path / "tightness.png").stat().st_size > 0


def test_a_scaled_bound_is_broken_and_its_spec_reproduces_it(tmp_path):
    res = falsify("pasgd", SPACE, budget=8, seed=1, out=tmp_path, bound_scale=0.2)
    assert res.counterexample is not None
    again = run_experiment(ExperimentSpec.load(tmp_path / "counterexample.toml"),
                           progress=False)
    assert again.verdict.status == "violated"


@pytest.mark.parametrize("key", ["pasgd", "dpsgd"])
def test_right_bounds_are_not_broken_on_the_same_budget(key):
    space = SPACE if key == "pasgd" else Space(m=(4, 9), topology=("ring", "torus", "complete"),
                                               rounds=(4, 8), seeds=3)
    res = falsify(key, space, budget=8, seed=0)
    assert res.counterexample is None
    assert len(res.candidates) >= 8 and res.tightest.tightness >= 1
    if key == "pasgd":
        assert all(_inside_pasgd(c) for c in res.candidates)


def test_the_predictor_ranks_candidates_before_they_run():
    """guide="predict": a drawn setting is run only if its predicted tightness is within
    GUIDE_FACTOR of the best predicted so far; the ranked-out ones carry no verdict, the runs stop
    at the budget. guide="none" runs every drawn setting."""
    from empirics.falsify import GUIDE_FACTOR

    g = falsify("pasgd", SPACE, budget=6, seed=2, guide="predict")
    assert len(g.candidates) <= 6 and g.counterexample is None
    pts = [c.predicted_tightness for c in g.candidates]
    assert all(p is not None and p > 0 for p in pts)  # logistic regression: in regime
    assert all(r["predicted_tightness"] > GUIDE_FACTOR * min(pts) for r in g.ranked_out)
    assert all("verdict" not in r for r in g.ranked_out)
    # the prediction is close to the measurement (the predictor's regime: within 2x)
    for c in g.candidates:
        assert 0.5 <= c.predicted_tightness / c.tightness <= 2, c
    n = falsify("pasgd", SPACE, budget=6, seed=2, guide="none")
    assert n.ranked_out == [] and all(c.predicted_tightness is None for c in n.candidates)
    assert len(n.candidates) == 6
    with pytest.raises(ValueError, match=r"guide must be 'predict'.*or 'none'"):
        falsify("pasgd", SPACE, budget=1, guide="sometimes")


def test_same_seed_same_search():
    a = falsify("pasgd", SPACE, budget=4, seed=3)
    b = falsify("pasgd", SPACE, budget=4, seed=3)
    assert [c.setting for c in a.candidates] == [c.setting for c in b.candidates]
    assert [c.tightness for c in a.candidates] == [c.tightness for c in b.candidates]


def test_bad_search_arguments_are_named():
    with pytest.raises(ValueError, match=r"--over takes NAME=LO..HI"):
        parse_over(["zeta=0..1"])
    with pytest.raises(ValueError, match=r"--over tau: '1..x' is not a range"):
        parse_over(["tau=1..x"])
    assert parse_over(["m=2..8", "topology=ring, torus"]) == {"m": (2, 8),
                                                             "topology": ("ring", "torus")}
    with pytest.raises(ValueError, match=r"m must be >= 2 workers"):
        Space(m=(1, 4))
    with pytest.raises(ValueError, match=r"seeds must be an integer >= 2"):
        Space(seeds=1)
    with pytest.raises(ValueError, match=r"topology must be a non-empty list"):
        Space(topology=("moebius",))
    with pytest.raises(ValueError, match=r"no topology of \['torus'\] fits m in 2..5"):
        falsify("dpsgd", Space(m=(2, 5), topology=("torus",)), budget=1)
    with pytest.raises(ValueError, match=r"bounds .*suboptimality"):
        falsify("pl", budget=1)
    with pytest.raises(ValueError, match=r"declares no setting"):
        falsify(Bound("bare", theory.pasgd_bound().expr, theory.pasgd_bound().source))
    hidden = theory.pasgd_bound().with_setting(unknown=("the condition on c",))
    with pytest.raises(ValueError, match=r"hypotheses that are not known \(the condition on "
                                         r"c\): no setting can be shown inside them"):
        falsify(hidden, budget=1)
    assert math.isfinite(SPACE.eta[0])


@pytest.mark.slow
def test_cli_falsify_writes_a_report(tmp_path):
    p = subprocess.run([sys.executable, "-m", "empirics.cli", "falsify", "pasgd", "--over",
                        "tau=1..4", "--over", "m=2..4", "--budget", "4", "--quiet", "--out",
                        str(tmp_path / "f")], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert "admissible settings" in p.stdout and (tmp_path / "f" / "report.md").exists()
    bad = subprocess.run([sys.executable, "-m", "empirics.cli", "falsify", "pasgd", "--over",
                          "tau=1..4", "--over", "m=2..4", "--budget", "6", "--quiet",
                          "--bound-scale", "0.1", "--seeds", "4", "--out", str(tmp_path / "g")],
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 1 and "counterexample: coopsgd run" in bad.stdout, bad.stderr
