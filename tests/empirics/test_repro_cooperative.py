"""Smoke-scale reproduction of Cooperative SGD (empirics.reproductions.cooperative): the bound
holds on i.i.d. data, is not applicable on a heterogeneous split, the derived crossover and α*
agree with the formulas, figures are on disk, and a cached rerun gives identical numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from empirics.reproductions import VERDICTS, Context
from empirics.reproductions import cooperative as co


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, smoke_twice):
    return smoke_twice("cooperative", tmp_path_factory)


def test_claims_have_valid_verdicts(runs):
    _, rep, *_ = runs
    assert rep.name == co.NAME == "cooperative" and rep.scale == "smoke"
    assert all(c.verdict in VERDICTS for c in rep.claims)
    assert all(c.paper for c in rep.claims)


def test_bound_holds_on_iid_and_is_not_applicable_on_heterogeneous(runs):
    _, rep, *_ = runs
    rows = [c for c in rep.claims if "≤ bound at every recorded K" in c.claim]
    s = co.setting("smoke")
    assert len(rows) == len(s.taus) + len(s.topologies) + len(s.alpha_factors)
    for c in rows:  # every configuration runs on i.i.d. data (sampling = "shared")
        assert c.verdict == "holds", (c.claim, c.detail)
        assert c.tightness is not None and c.tightness > 1
    het = next(c for c in rep.claims if "heterogeneous" in c.claim)
    assert het.verdict == "not applicable"
    assert all("i.i.d." in m for m in het.detail["verdicts"].values())


def test_derived_results_agree_with_the_formulas(runs):
    _, rep, *_ = runs
    cross = next(c for c in rep.claims if c.claim.startswith("bound crossover"))
    assert cross.verdict == "agrees"
    assert cross.detail["tau_eq_formula"] == pytest.approx(19.2186, abs=1e-3)
    assert cross.detail["tau_eq_from_bounds"] == pytest.approx(cross.detail["tau_eq_formula"])
    alpha = next(c for c in rep.claims if c.claim.startswith("α* = 2/(m+2)"))
    assert alpha.verdict == "agrees"
    nf = alpha.detail["network_factor"]
    assert min(nf, key=nf.get) == f"{2 / 18:.6g}"
    # the bound's τ slope is η²L²σ² with the run's η and the problem's exact constants
    slope = next(c for c in rep.claims if "affine and increasing" in c.claim)
    k = rep.data["constants"]
    assert slope.detail["bound_slope"] == pytest.approx(
        rep.data["eta"] ** 2 * k["L"] ** 2 * k["sigma2"], rel=1e-9)
    # η satisfies the PASGD condition at τ = 16, so every τ ≤ 16 has a verdict
    eta, L = rep.data["eta"], k["L"]
    assert eta * L + eta**2 * L**2 * 16 * 15 <= 1


def test_figures_exist(runs, repro_checks):
    out, rep, *_ = runs
    repro_checks.figures(out, rep, 4)


def test_cached_rerun_is_identical(runs, repro_checks):
    repro_checks.cached_rerun(runs)


def test_eta_max_is_the_boundary_of_the_pasgd_condition():
    L = 0.251
    for tau in (1, 2, 16, 64):
        eta = co.pasgd_eta_max(L, tau)
        assert eta * L + eta**2 * L**2 * tau * (tau - 1) == pytest.approx(1.0, rel=1e-12)
        eta2 = 1.01 * eta
        assert eta2 * L + eta2**2 * L**2 * tau * (tau - 1) > 1


def test_spectral_crossover_equals_bound_formula_when_all_modes_are_slowest():
    import theory

    z = 0.7  # W = (1 − z)J + zI has every non-unit eigenvalue equal to z
    n = 8
    W = theory.mixing.as_mixing((1 - z) * np.full((n, n), 1 / n) + z * np.eye(n))
    assert co.spectral_crossover(W) == pytest.approx((1 + z * z) / (1 - z * z), rel=1e-10)
    ring = theory.ring(16)  # mixed spectrum: the mode average is far below the worst mode
    zr = ring.zeta
    tau_spec = co.spectral_crossover(ring)
    assert tau_spec > 1 and tau_spec < (1 + zr * zr) / (1 - zr * zr) / 2
    assert co.spectral_crossover(theory.complete(16)) == pytest.approx(1.0, abs=1e-12)


def test_crossing_and_paired_test():
    x = np.array([1.0, 4.0, 16.0])
    assert co._crossing(x, np.array([-1.0, 1.0, 2.0])) == pytest.approx(2.0)
    assert co._crossing(x, np.array([-1.0, -0.5, -0.1])) is None
    rng = np.random.default_rng(0)
    b = rng.normal(size=20)
    a = b + 0.5 + 0.01 * rng.normal(size=20)  # paired shift far above the pair noise
    md, p_greater, p_less = co.paired_p(a, b)
    assert md == pytest.approx(0.5, abs=0.01) and p_greater < 1e-6 and p_less > 0.99
    assert math.isclose(co.paired_p(b, b)[0], 0.0)


def test_a_deliberately_wrong_bound_is_reported_violated(tmp_path):
    """The "holds" rows are not vacuous: the same pipeline with the bound scaled by 1/1000
    (below the measured error) reports "violated"."""
    ctx = Context(out=tmp_path, scale="smoke")
    s = co.setting("smoke")
    spec = co._spec(ctx, s, "wrong", {"name": "pasgd", "tau": 4}, 0.2)
    spec.bound_scale = 1e-3
    spec.seeds = 3
    claim = co._bound_claim("PASGD, bound ÷ 1000", co._run(ctx, spec), "test")
    assert claim.verdict == "violated", claim.detail
    assert claim.tightness is not None and claim.tightness < 1
