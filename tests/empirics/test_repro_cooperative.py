"""Smoke-scale reproduction of Cooperative SGD (empirics.reproductions.cooperative): every bound
claim runs inside its own bound's hypotheses (checked here with formulas typed in from the JMLR
text and with ``theory``, not with the reproduction's code), a bound verdict never appears
outside them, the slack factors multiply to the tightness, the Fig. 3 ordering rule and the
runtime conversion are right on inputs with a known answer, figures are on disk, and a cached
rerun gives identical numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from empirics.reproductions import VERDICTS, Context
from empirics.reproductions import cooperative as co
from empirics.stats import order_test, spearman_exact

BOUND = "≤ bound at every recorded K"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, smoke_twice):
    return smoke_twice("cooperative", tmp_path_factory)


def _bound_claims(rep):
    return [c for c in rep.claims if BOUND in c.claim]


def test_claims_have_valid_verdicts(runs):
    _, rep, *_ = runs
    assert rep.name == co.NAME == "cooperative" and rep.scale == "smoke"
    assert all(c.verdict in VERDICTS for c in rep.claims)
    assert all(c.paper for c in rep.claims)
    s = co.setting("smoke")
    n_alpha = len(s.alpha_factors)
    assert len(_bound_claims(rep)) == (len(s.taus) + len(s.taus_noniid) + len(s.topologies)
                                       + n_alpha)
    # the claims of the paper's experiments cite the figure of JMLR Appendix A
    for n in (3, 4, 5, 6):
        assert any(f"Appendix A, Fig. {n}" in c.paper and "quoted paraphrase" in c.paper
                   for c in rep.claims), n


# --- the learning-rate conditions, typed in from the JMLR text ---------------------------------
def _eq145(eta: float, L: float, m: int, v: int, tau: int, z: float) -> float:
    """Left side of JMLR eq. 145 (Theorem 1's learning-rate condition)."""
    return (m * eta / (m + v) * L + eta**2 * L**2 * tau**2 / (1 - z)
            * (2 * z**2 / (1 + z) + 2 * z / (1 - z) + (tau - 1) / tau))


def _conditions(key: str, vals: dict) -> dict[str, float]:
    """{condition: left side − right side} (≤ 0: holds) of the bound ``key`` at ``vals``."""
    eta, L = vals["eta"], vals["L"]
    if key == "pasgd":  # Corollary 2
        t = vals["tau"]
        return {"Corollary 2": eta * L + eta**2 * L**2 * t * (t - 1) - 1}
    if key == "dpsgd":  # Corollary 3
        z = vals["zeta"]
        return {"Corollary 3": eta * L + eta**2 * L**2 * 2 * z / (1 - z)
                * (z / (1 + z) + 1 / (1 - z)) - 1}
    if key == "easgd":  # eq. 145 at v = 1, ζ(W_α) of eq. 22
        m, a = vals["m"], vals["alpha"]
        z = max(abs(1 - a), abs(1 - (m + 1) * a))
        return {"ζ < 1": z - 1, "eq. 145": _eq145(eta, L, m, 1, vals["tau"], z) - 1}
    if key == "cooperative-noniid":  # Theorem 2
        m, v, t, z = vals["m"], vals["v"], vals["tau"], vals["zeta"]
        C = 6 * eta**2 * L**2 * t**2 / (1 - z) * (2 * z**2 / (1 + z) + 2 * z / (1 - z)
                                                  + (t - 1) / t)
        return {"η_eff L ≤ 1": m * eta / (m + v) * L - 1, "C ≤ 1/2": C - 0.5}
    raise AssertionError(f"unexpected bound {key!r}")


def test_every_bound_claim_runs_at_an_admissible_eta(runs):
    """Each bound claim's η (the run's) meets its own bound's conditions, by the formulas above
    and by ``theory.largest_eta`` (eq. 145, of which Corollaries 2 and 3 are special cases);
    the Theorem-1/2 sweep shares one η_A = 0.9 × the smallest largest-admissible η (rounded
    down), and each EASGD α runs at 0.9 × its own."""
    import theory

    _, rep, *_ = runs
    etas_a = set()
    for c in _bound_claims(rep):
        key, vals = c.detail["bound_key"], c.detail["values"]
        assert vals["eta"] == c.detail["eta"]
        for name, slack in _conditions(key, vals).items():
            assert slack <= 0, (c.claim, name, slack)
        m, v = vals.get("m", 16), vals.get("v", 0)
        tau, z = vals.get("tau", 1), vals.get("zeta", 0.0)
        if key == "easgd":
            a = vals["alpha"]
            z, v = max(abs(1 - a), abs(1 - (m + 1) * a)), 1
        if key != "cooperative-noniid":
            largest = float(theory.largest_eta(vals["L"], m, tau, z, v))
            assert vals["eta"] <= largest
            if key == "easgd":  # 0.9 × its own largest η, rounded down to 4 digits
                assert vals["eta"] == pytest.approx(0.9 * largest, rel=2e-3)
        if key != "easgd":
            etas_a.add(vals["eta"])
            assert "η_A" in c.claim and "strictest" in c.claim  # the rule is in the claim
    assert etas_a == {rep.data["eta_A"]}
    smallest = min(rep.data["eta_A_largest_per_setting"].values())
    assert 0.9 * smallest * (1 - 1e-3) <= rep.data["eta_A"] <= 0.9 * smallest
    # the ring (Corollary 3: ηL ≤ 0.0357) now has a verdict, inside its condition
    ring = next(c for c in _bound_claims(rep) if "W_ring" in c.claim)
    assert ring.verdict in ("holds", "violated") and ring.detail["values"]["zeta"] == \
        pytest.approx(theory.ring(16).zeta)
    assert ring.detail["values"]["eta"] * ring.detail["values"]["L"] <= 0.0358


def test_no_bound_verdict_outside_the_hypotheses(runs):
    """holds / violated only where every hypothesis holds: the i.i.d. runs under Theorem 1's
    corollaries, the heterogeneous split under Theorem 2 (with κ² > 0 from the problem); no
    other claim says holds or violated; every bound claim here has a verdict."""
    _, rep, *_ = runs
    for c in rep.claims:
        if c.verdict in ("holds", "violated"):
            assert BOUND in c.claim, c.claim
            assert c.detail["failed"] == [], c.detail
            het = "heterogeneous" in c.claim
            assert (c.detail["bound_key"] == "cooperative-noniid") == het, c.claim
            if het:
                assert c.detail["values"]["kappa2"] > 0
    assert all(c.verdict in ("holds", "violated") for c in _bound_claims(rep))


def test_a_failed_hypothesis_gives_not_applicable_naming_it(tmp_path):
    """The previous design's run — D-PSGD on the ring at the shared η, ηL ≈ 0.06 > 0.0357 —
    is "not applicable" with Corollary 3 and the largest admissible η named, and no
    tightness or slack."""
    ctx = Context(out=tmp_path, scale="smoke")
    s = co.setting("smoke")
    res = co._run(ctx, co._spec(ctx, s, "ring_shared", {"name": "dpsgd", "topology": "ring"},
                                0.241, bound="dpsgd"))
    claim = co._bound_claim("D-PSGD on the ring at η = 0.241", res, "test", "shared η")
    L = res.constants["L"]["value"]
    assert _conditions("dpsgd", {"eta": 0.241, "L": L, "zeta": 0.9492530216741915}) \
        ["Corollary 3"] > 0
    assert claim.verdict == "not applicable"
    assert "Corollary 3" in claim.detail["message"]
    assert "largest admissible η" in claim.detail["message"]
    assert claim.tightness is None and claim.slack_descent is None
    assert claim.slack_consensus is None


def test_slack_factors_multiply_to_the_tightness(runs):
    """Every bound claim carries Lemma 2 ÷ measured and bound ÷ Lemma 2; their product is the
    tightness; Lemma 2 sits between the measurement and the bound."""
    _, rep, *_ = runs
    rows = co.slack_rows(rep.claims)
    assert len(rows) == len(_bound_claims(rep))
    for c in _bound_claims(rep):
        assert c.slack_descent is not None and c.slack_consensus is not None, c.claim
        assert c.slack_descent * c.slack_consensus == pytest.approx(c.tightness, rel=1e-9)
        assert c.slack_consensus >= 1 - 1e-9  # Theorem 1 bounds Lemma 2's consensus term
        assert c.detail["lemma2"] is not None


def test_derived_results_agree_with_the_formulas(runs):
    _, rep, *_ = runs
    cross = next(c for c in rep.claims if c.claim.startswith("bound crossover"))
    assert cross.verdict == "agrees"
    assert cross.detail["tau_eq_formula"] == pytest.approx(19.2186, abs=1e-3)
    assert cross.detail["tau_eq_from_bounds"] == pytest.approx(cross.detail["tau_eq_formula"])
    assert cross.detail["dpsgd_lr_condition_on_ring"]  # η_A is inside Corollary 3 on the ring
    alpha = next(c for c in rep.claims if c.claim.startswith("α* = 2/(m+2) minimises"))
    assert alpha.verdict == "agrees"
    nf = alpha.detail["network_factor"]
    assert min(nf, key=nf.get) == f"{2 / 18:.6g}"
    # the bound's τ slope is η²L²σ² with η_A and the problem's exact constants
    slope = next(c for c in rep.claims if "affine and increasing" in c.claim)
    k = rep.data["constants"]
    assert slope.detail["bound_slope"] == pytest.approx(
        rep.data["eta_A"] ** 2 * k["L"] ** 2 * k["sigma2"], rel=1e-9)


def test_fig3_settings_are_the_papers(runs):
    """JMLR Fig. 3's five (τ, ζ), their network factors, and ζ built exactly."""
    from empirics.spec import build_mixing

    _, rep, *_ = runs
    f3 = rep.data["fig3"]
    assert f3["labels"] == ["(τ=1, ζ=0)", "(τ=1, ζ=0.33)", "(τ=2, ζ=0)", "(τ=10, ζ=0)",
                            "(τ=1, ζ=0.99)"]
    assert f3["key"] == pytest.approx([0, 1.1089 / 0.8911 - 1, 1, 9, 1.9801 / 0.0199 - 1])
    for z in (0.33, 0.99):
        assert build_mixing(16, {"name": "complete", "lazy": z}).zeta == pytest.approx(z,
                                                                                       abs=1e-12)
    assert np.asarray(f3["floors"]).shape == (co.setting("smoke").seeds, 5)


# --- the ordering rule (empirics.stats.order_test) on inputs with a known answer ---------------
def test_order_rule_agrees_disagrees_and_stays_inconclusive():
    rng = np.random.default_rng(1)
    key = [0.0, 0.24, 1.0, 9.0, 98.5]          # the five settings' network factors
    base = np.array([1.0, 1.1, 1.3, 2.0, 5.0])  # floors in the predicted order
    seeds = 6
    common = rng.normal(0, 0.05, size=(seeds, 1))  # paired: a common seed effect
    x = base + common + rng.normal(0, 0.01, size=(seeds, 5))
    ok = order_test(x, key)
    assert ok.verdict == "agrees" and ok.rho == pytest.approx(1.0) and not ok.reversed
    assert ok.p_rho == pytest.approx(1 / 120)
    # the highest-key setting well below the lowest: a significant reversal
    bad = x.copy()
    bad[:, 4] = bad[:, 0] - 0.5
    assert order_test(bad, key).verdict == "disagrees"
    assert (0, 4) in order_test(bad, key).reversed
    # no difference at all: nothing confirmed, nothing reversed
    flat = 1.0 + common + rng.normal(0, 0.01, size=(seeds, 5))
    assert order_test(flat, key).verdict == "inconclusive"
    # two adjacent settings swapped within the noise: still agrees (ρ = 0.9, p = 5/120)
    swap = x.copy()
    swap[:, 1] = x[:, 0] + 0.004
    swap[:, 0] = x[:, 1] - 0.004 + 0.1
    o = order_test(swap, key)
    assert o.rho == pytest.approx(0.9) and o.p_rho == pytest.approx(5 / 120)
    # three settings: no rank test; the extreme pair and no reversal decide
    assert order_test(x[:, :3] * [1, 1, 1.5], key[:3]).p_rho is None


def test_spearman_exact_matches_enumeration():
    assert spearman_exact([3, 1, 2], [1, 2, 3]) == pytest.approx((-0.5, 5 / 6))
    rho, p = spearman_exact([1, 2, 3, 4], [10, 20, 30, 40])
    assert rho == pytest.approx(1.0) and p == pytest.approx(1 / 24)
    with pytest.raises(ValueError, match="2 to 8 values"):
        spearman_exact([1], [1])


# --- the runtime model -------------------------------------------------------------------------
def test_runtime_conversion_is_the_runtime_model():
    """wall-clock = k·Y + rounds·D, by hand, and the inverse of theory's iterations_within."""
    from theory.bounds.runtime import iterations_within

    w = co.wall_clock([0, 10, 20, 35], [0, 1, 2, 3], Y=0.5, D=3.0)
    assert w.tolist() == [0.0, 8.0, 16.0, 26.5]
    for tau in (1, 4, 10):
        k = 40
        assert iterations_within(float(co.wall_clock(k, k // tau, Y=0.2, D=1.5)), 0.2, 1.5,
                                 tau) == pytest.approx(k)
    # at Y = D = 1, K = 2048: τ = 1 costs 4096, τ = 32 costs 2048 + 64 = 2112
    assert co.wall_clock(2048, 2048) == 4096 and co.wall_clock(2048, 64) == 2112


def test_fig6_times_follow_the_runtime_model(runs):
    """Fig. 6: per seed, the step reaching the target and the rounds done by then (the
    schedule's: k for τ = 1, ⌊k/10⌋ for τ = 10), and the reported ratio = the geometric mean of
    (k·Y + rounds·D at τ = 1) ÷ (the same at τ = 10), recomputed by hand."""
    _, rep, *_ = runs
    f6 = next(c for c in rep.claims if "Appendix A, Fig. 6" in c.paper)
    assert f6.detail["runtime_model"] == {"Y": co.RUNTIME_Y, "D": co.RUNTIME_D}
    for z in f6.detail["per_zeta"].values():
        lo, hi = z["per_seed"]["tau1"], z["per_seed"]["tau10"]
        assert lo["rounds"] == lo["steps"]
        assert hi["rounds"] == [k // 10 for k in hi["steps"]]
        wl = [k * co.RUNTIME_Y + r * co.RUNTIME_D
              for k, r in zip(lo["steps"], lo["rounds"], strict=True)]
        wh = [k * co.RUNTIME_Y + r * co.RUNTIME_D
              for k, r in zip(hi["steps"], hi["rounds"], strict=True)]
        ratio = math.exp(np.mean(np.log(wl) - np.log(wh)))
        assert z["ratio"] == pytest.approx(ratio, rel=1e-12)
    assert co.first_reach([0, 5, 10], [3.0, 1.0, 0.5], 1.0) == 1
    assert co.first_reach([0, 5, 10], [3.0, 2.0, 1.5], 1.0) is None


def test_round_down_stays_below():
    for x in (0.1245, 0.0097803, 3.14159, 0.28125):
        r = co.round_down(x)
        assert r <= x and r >= x * (1 - 1e-3)
    assert co.round_down(0.12450199) == 0.1245


# --- unchanged pieces --------------------------------------------------------------------------
def test_figures_exist(runs, repro_checks):
    out, rep, *_ = runs
    repro_checks.figures(out, rep, 6)


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
    (below the measured error) reports "violated", with its slack factors."""
    ctx = Context(out=tmp_path, scale="smoke")
    s = co.setting("smoke")
    spec = co._spec(ctx, s, "wrong", {"name": "pasgd", "tau": 4}, 0.2, bound="pasgd")
    spec.bound_scale = 1e-3
    spec.seeds = 3
    claim = co._bound_claim("PASGD, bound ÷ 1000", co._run(ctx, spec), "test")
    assert claim.verdict == "violated", claim.detail
    assert claim.tightness is not None and claim.tightness < 1
    assert claim.slack_descent * claim.slack_consensus == pytest.approx(claim.tightness)


def test_budget_cells_say_why_a_candidate_has_no_prediction() -> None:
    """A budget table row without a prediction is shown as out of regime with its reason, and
    gives no ratio (never a formatted None or a silent nan)."""
    from empirics.reproductions.cooperative import _ratio, _value

    row = {"predicted": None, "reason": "no gradient law for MLPClassifier"}
    assert _value(row) == "out of regime (no gradient law for MLPClassifier)"
    assert _value({"predicted": None}) == "out of regime"
    assert _value({"predicted": 0.0123456}) == "0.01235"
    assert _ratio(row, 0.5) is None and _ratio({"predicted": 0.25}, 0.5) == 0.5


@pytest.mark.parametrize("predicted, measured, ci, verdict", [
    (2.0, 3.0, (1.5, 3.9), "agrees"),          # the whole interval within [1, 4]
    (2.0, 3.0, (0.5, 3.9), "inconclusive"),    # point inside, interval reaches below p/2
    (2.0, 1.5, (-1.0, 4.0), "inconclusive"),   # an interval through zero tells nothing
    (2.0, 6.0, (5.0, 7.0), "disagrees"),       # disjoint from [1, 4]
    (2.0, 0.1, (0.05, 0.9), "disagrees"),
    (-2.0, -3.0, (-3.9, -1.5), "agrees"),      # negative effects: the band [−4, −1]
    (-2.0, -3.0, (-3.9, -0.5), "inconclusive"),
    (-2.0, 1.0, (0.5, 1.5), "disagrees"),      # the wrong sign, surely
    (2.0, 3.0, None, "agrees"),                # no interval: the point decides
    (2.0, 5.0, None, "disagrees"),
    (None, 3.0, (1.0, 4.0), "inconclusive"),
])
def test_an_effect_agrees_only_when_the_measurement_allows_nothing_else(predicted, measured,
                                                                        ci, verdict):
    from empirics.reproductions.base import effect_verdict

    assert effect_verdict(predicted, measured, ci) == verdict


def test_a_runs_verdict_keeps_its_name_in_a_claim():
    """A diverged or one-seed run is reported as such, not as 'not applicable'; only 'no bound'
    becomes 'not applicable'."""
    from empirics.reproductions.base import claim_status, interval_verdict

    for s in ("holds", "violated", "inconclusive", "untested", "diverged", "not applicable"):
        assert claim_status(s) == s
    assert claim_status("no bound") == "not applicable"
    assert interval_verdict((-0.97, -0.79), (-1.2, -0.8)) == "inconclusive"
    assert interval_verdict((-0.97, -0.85), (-0.8, -1.2)) == "agrees"  # either order
    assert interval_verdict((-0.7, -0.6), (-1.2, -0.8)) == "disagrees"
