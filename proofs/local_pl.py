"""Obligations for Haddadpour et al. (theory.bounds.local_pl)."""

from __future__ import annotations

import sympy as sp

from proofs.core import obligation, proved, require
from theory.bounds import cooperative as coop
from theory.bounds import local_pl as pl
from theory.symbols import B, F_gap, K, L, T, m, mu, p, sigma2, tau


@obligation(pl.tau_choice, pl.pl_bound)
def haddadpour_tau_gives_cube_root_rounds() -> object:
    """τ = Θ(T^{2/3}/(p^{1/3}ΔF^{1/3})) derived from the bound gives (pT)^{1/3} rounds."""
    tc = pl.tau_choice()
    require(sp.simplify(tc.rounds * tc.tau - T) == 0, "rounds · τ ≠ T")
    ratio = sp.simplify(tc.tau / (T ** sp.Rational(2, 3) / (p * F_gap) ** sp.Rational(1, 3)))
    require(not (ratio.free_symbols & {T, p, F_gap}), f"τ / (T^(2/3)/(pΔF)^(1/3)) = {ratio}")
    r = sp.simplify(tc.rounds / (p * T) ** sp.Rational(1, 3))
    require(not (r.free_symbols & {T, p}), f"rounds/(pT)^(1/3) = {r} depends on p or T")
    require(tc.binding == "initial", f"binding term is {tc.binding}")
    # at τ = tc.tau the leading order of the initial term equals c/(pT)
    init = pl.pl_bound().terms["initial"].subs(tau, tc.tau)
    lead = sp.limit(sp.simplify(init * p * T), T, sp.oo)
    require(sp.simplify(lead - tc.c) == 0, f"initial term at τ: leading {lead} ≠ c = {tc.c}")
    # regime: the local-steps limit is larger iff T ≳ p² (power of p in the crossover)
    require(tc.regime is not None and sp.degree(tc.regime, p) == 2, f"regime {tc.regime}")
    n = float((4 * 5469) ** sp.Rational(1, 3))
    require(abs(n - 27.97) < 0.01, "p = 4, T = 5469 example")
    return proved(f"τ ∝ {sp.sstr(tc.scaling_tau)}, rounds ∝ {sp.sstr(tc.scaling_rounds)}; "
                  f"initial term = c/(pT) at τ; needs T ≳ p²; p=4, T=5469 → {n:.2f} rounds")


@obligation(pl.pl_bound)
def pl_bound_minibatch_at_tau1() -> object:
    """At τ = 1 the local term vanishes and the bound is O(κσ²/(μpBT)) (mini-batch SGD)."""
    b = pl.pl_bound()
    require(b.terms["local"].subs(tau, 1) == 0, "local term ≠ 0 at τ = 1")
    lead = sp.limit(b.expr.subs(tau, 1) * T, T, sp.oo)
    require(sp.simplify(lead - 4 * L * sigma2 / (mu**2 * p * B)) == 0, f"T·bound → {lead}")
    return proved("local term = 0 at τ = 1; T·bound → 4κσ²/(μpB) as T → ∞")


@obligation(pl.pl_bound_intervals, pl.pl_bound)
def pl_intervals_reduce_to_constant() -> object:
    """Variable-period bound with τ_i = τ for all i equals the constant-τ bound at T = Eτ."""
    for t_, E_ in ((1, 5), (3, 4), (7, 10), (91, 60)):
        v = pl.pl_bound_intervals([t_] * E_).expr
        c = pl.pl_bound().expr.subs({tau: t_, T: E_ * t_})
        require(sp.simplify(v - c) == 0, f"τ = {t_}, E = {E_}")
    return proved("τ_i ≡ τ reduces to the constant-period bound for (τ, E) ∈ "
                  "{(1,5), (3,4), (7,10), (91,60)}")


@obligation("theory.bounds.local_pl.RATE_TABLE", coop.pasgd_bound)
def wang_joshi_row_from_pasgd_bound() -> object:
    """The poster's Wang & Joshi rounds O(p^{3/2}T^{1/2}) follow from the PASGD bound."""
    b = coop.pasgd_bound().expr
    eta_ = sp.sqrt(m / K) / L
    from theory.symbols import eta
    bb = b.subs(eta, eta_)
    net = sp.simplify(bb - bb.subs(tau, 1))  # the τ-dependent (network) part
    speed = sp.simplify(bb.subs(tau, 1))      # O(1/√(mK)) part
    t = sp.Symbol("t", positive=True)
    # largest τ with network ≤ σ²/√(mK) (the variance term's order)
    (sol,) = sp.solve(sp.Eq(net.subs(tau, t), sigma2 / sp.sqrt(m * K)), t)
    rounds = sp.simplify(K / sol)
    lead = sp.limit(rounds / (m ** sp.Rational(3, 2) * sp.sqrt(K)), K, sp.oo)
    require(lead.is_number and lead > 0, f"rounds/(m^(3/2)K^(1/2)) → {lead}")
    row = next(r for r in pl.RATE_TABLE if r.strategy.startswith("Wang"))
    require(sp.simplify(row.rounds - p ** sp.Rational(3, 2) * sp.sqrt(T)) == 0, "table row")
    require(sp.simplify(speed * sp.sqrt(m * K)).free_symbols.isdisjoint({m, K}),
            "η = √(m/K)/L does not give O(1/√(mK))")
    return proved("η = √(m/K)/L in the PASGD bound: network ≤ σ²/√(mK) iff τ − 1 ≤ √K/m^(3/2), "
                  "rounds K/τ ~ m^(3/2)K^(1/2) = the table's p^(3/2)T^(1/2)")
