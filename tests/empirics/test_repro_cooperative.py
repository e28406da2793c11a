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


def _eq145(eta: float, L: float, m: int, v: int, tau: int, z: float) -> float:
    """Left side of JMLR eq. 145 (Theorem 1's learning-rate condition), typed in with floats."""
    return (m * eta / (m + v) * L + eta**2 * L**2 * tau**2 / (1 - z)
            * (2 * z**2 / (1 + z) + 2 * z / (1 - z) + (tau - 1) / tau))


def test_bound_holds_where_its_conditions_hold_and_is_not_applicable_elsewhere(runs):
    """Every configuration runs on i.i.d. data at one η (Corollary 2's largest at τ = 16). Each
    bound row holds where η meets its learning-rate condition, and is "not applicable", naming
    the condition, where it does not: D-PSGD on ring(16) (Corollary 3 allows ηL ≤ 0.0357 only)
    and EASGD at τ = 4 (eq. 145 at v = 1, ζ(W_α))."""
    _, rep, *_ = runs
    rows = {c.claim: c for c in rep.claims if "≤ bound at every recorded K" in c.claim}
    s = co.setting("smoke")
    assert len(rows) == len(s.taus) + len(s.topologies) + len(s.alpha_factors)
    eta, L = rep.data["eta"], rep.data["constants"]["L"]
    for claim, c in rows.items():
        if claim.startswith("PASGD"):
            ok = True  # η is chosen inside Corollary 2 for every τ ≤ 16
        elif claim.startswith("D-PSGD"):
            z = float(claim.split("ζ = ")[1].split(":")[0])
            ok = _eq145(eta, L, 16, 0, 1, z) <= 1  # eq. 145 at τ = 1 = Corollary 3
        else:
            a = float(claim.split("α = ")[1].split(" ")[0].rstrip(":"))
            z = max(abs(1 - a), abs(1 - 17 * a))
            ok = _eq145(eta, L, 16, 1, s.easgd_tau, z) <= 1
        if ok:
            assert c.verdict == "holds", (claim, c.detail)
            assert c.tightness is not None and c.tightness > 1
        else:
            assert c.verdict == "not applicable", (claim, c.detail)
            assert "largest admissible η" in c.detail["message"]
            assert ("Corollary 3" if claim.startswith("D-PSGD") else "eq. 145") in \
                c.detail["message"]
    ring = next(c for k, c in rows.items() if k.startswith("D-PSGD A(1, W_ring"))
    assert ring.verdict == "not applicable" and ring.bound == "—"
    assert any(c.verdict == "holds" for k, c in rows.items() if k.startswith("D-PSGD"))
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
