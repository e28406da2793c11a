"""Local SGD with periodic averaging under the PL condition (Haddadpour, Kamani, Mahdavi, Cadambe,
NeurIPS 2019, arXiv:1910.13598; "LUPA-SGD").

What this module encodes, with its provenance (references: ``docs/references.md``):

* :data:`ASSUMPTIONS` — unbiasedness, variance ``E‖g̃_j − g_j‖² ≤ C₁‖g_j‖² + σ²/B``,
  L-smoothness, μ-PL. **Quoted** from the authors' NeurIPS 2019 poster.
* :func:`pl_bound` — the PL bound ``E F(x̄_T) − F* ≤ a³ΔF/(T+a)³ + 4κσ²T(T+2a)/(μpB(T+a)³)
  + 256κ²σ²T(τ−1)/(μB(T+a)³)``, ``a = α_PL τ + 4``, ``κ = L/μ``. **Recalled**: structure medium
  confidence, numeric constants (4, 256, a = ατ + 4) *low* confidence; not checked against the
  paper's text (its theorem number is not known to us either).
* :func:`tau_choice` — the choice ``τ = O(T^{2/3}/(p^{1/3}ΔF^{1/3}))`` and ``(pT)^{1/3}`` rounds,
  **derived by sympy from the bound** (largest τ whose τ-dependent terms stay below the
  linear-speed-up term); it agrees with the poster's statement (quoted).
* :data:`RATE_TABLE` / :func:`compare_rates` — the poster's comparison table (Yu et al., Wang &
  Joshi, Stich, this paper) as symbolic O(·) expressions, **quoted** from the poster.

The step-size condition on α_PL (something like ``α exp(−2/α) < κ√(192(C₁/p + 1))``) is **not
known**; it is not encoded and :func:`pl_bound` carries no condition on α_PL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache

import sympy as sp

from theory import checks
from theory.bound import Bound, Setting, Source, Status
from theory.bounds.registry import register
from theory.stepsizes import pl_shift
from theory.symbols import (
    C1,
    B,
    Domain,
    F_gap,
    L,
    T,
    define,
    kappa,
    keyword,
    mu,
    p,
    sigma2,
    tau,
)

#: α in the step size η_t = 4/(μ(t + a)), a = α τ + 4 (Haddadpour et al.; recalled, low conf.)
alpha_pl = define("alpha_pl", "alpha_PL",
                  "constant α of the PL step size η_t = 4/(μ(t+a)), a = ατ + 4 "
                  "(Haddadpour et al.)", Domain(lower=0, lower_strict=True), positive=True)
#: G² in the bounded-gradient assumption E‖g‖² ≤ G² (Yu et al., Stich; error feedback)
G2 = define("G2", "G^2", "bound G² on the second moment E‖g‖² of stochastic gradients",
            Domain(lower=0), nonnegative=True)

PAPER = ("Haddadpour, Kamani, Mahdavi, Cadambe, Local SGD with Periodic Averaging: Tighter "
         "Analysis and Adaptive Synchronization, NeurIPS 2019 (arXiv:1910.13598)")
POSTER = Source(PAPER, "NeurIPS 2019 poster, assumptions (github.com/mmkamani7/LUPA-SGD)",
                Status.QUOTED, digest="3.2")


@dataclass(frozen=True)
class Assumption:
    """One assumption of the analysis, as data.

    ``statement`` is the formula as text, ``relation`` the same as a sympy relation where it is a
    relation between the analysis' constants (``None`` for statements about random vectors),
    ``constants`` the symbols the assumption introduces.
    """

    name: str
    statement: str
    constants: tuple[sp.Symbol, ...]
    source: Source
    relation: sp.Basic | None = None

    def __str__(self) -> str:
        cs = ", ".join(keyword(c) for c in self.constants)
        return f"{self.name}: {self.statement}  [{cs}; {self.source.status}]"


ASSUMPTIONS: tuple[Assumption, ...] = (
    Assumption("unbiased", "E[g̃_j] = g_j = ∇F(x_j)", (), POSTER),
    Assumption("bounded variance", "E_ξ‖g̃_j − g_j‖² ≤ C₁‖g_j‖² + σ²/B  (C₁ ≥ 0; no bounded "
               "gradients)", (C1, sigma2, B), POSTER, sp.Ge(C1, 0)),
    Assumption("L-smooth", "‖∇F(x) − ∇F(y)‖ ≤ L‖x − y‖", (L,), POSTER, sp.Gt(L, 0)),
    # μ ≤ L is not on the poster: it follows from PL with L-smoothness (derived), kept as a check
    Assumption("mu-PL", "½‖∇F(x)‖² ≥ μ(F(x) − F(x*)) for all x (implied by μ-strong convexity); "
               "μ ≤ L follows with L-smoothness (derived, not on the poster)",
               (mu,), POSTER, sp.And(sp.Gt(mu, 0), sp.Le(mu, L))),
)

PL_SOURCE = Source(
    PAPER, "main theorem for PL objectives (η_t = 4/(μ(t+a)), a = ατ + 4; theorem number not "
    "verified)", Status.RECALLED, confidence="low", digest="3.3",
    note="structure recalled with medium confidence and corroborated by the poster's τ choice; "
         "the constants 4, 256 and a = ατ + 4 are low-confidence and unverified against the "
         "paper; the condition on α is not known and not encoded")


def shift(tau_: sp.Expr = tau) -> sp.Expr:
    """``a = α_PL τ + 4``, the shift of the step size η_t = 4/(μ(t + a)) [recalled, low]: the
    rule of :func:`theory.stepsizes.pl_shift` (which the runs use numerically), symbolically."""
    return pl_shift(tau_, alpha_pl)


#: the run the PL theorem speaks about: local SGD with full averaging on IID data, plain SGD
#: steps with the theorem's η_t = 4/(μ(t + a)), F(x̄_T) − F* at T (σ² per sample, B separate);
#: its condition on α_PL is not known, so no run is shown inside the theorem's hypotheses and a
#: test against the bound is inconclusive (it says where the measurement lies)
PL_RUN = Setting("suboptimality", "T", ("iid", "plain_sgd", "full_averaging", "constant_period",
                                        "pl"), "pl", ("pasgd", "synchronous", "local_sgd"),
                 "sample", unknown=("the theorem's condition on α_PL (the step size η_t = "
                                    "4/(μ(t + a)), a = α_PL·τ + 4)",))


@cache
def pl_bound() -> Bound:
    """The PL bound on ``E[F(x̄^(T))] − F*`` after T local steps per worker, p workers, period τ:

    ``a³ΔF/(T+a)³ + 4κσ²T(T+2a)/(μpB(T+a)³) + 256κ²σ²T(τ−1)/(μB(T+a)³)``, ``a = α_PL τ + 4``,
    ``κ = L/μ`` (substituted; kept in ``definitions``). Terms: ``initial`` (forgetting ΔF),
    ``variance`` (the linear-speed-up term ~ 4κσ²/(μpBT)), ``local`` (cost of local steps).

    Source: Haddadpour et al., NeurIPS 2019, main theorem for PL objectives (η_t = 4/(μ(t+a)),
    a = ατ + 4; theorem number not verified) — recalled, constants low confidence.
    """
    a = shift()
    kap = L / mu
    terms = {
        "initial": a**3 * F_gap / (T + a) ** 3,
        "variance": 4 * kap * sigma2 * T * (T + 2 * a) / (mu * p * B * (T + a) ** 3),
        "local": 256 * kap**2 * sigma2 * T * (tau - 1) / (mu * B * (T + a) ** 3),
    }
    return Bound(
        name="LUPA-SGD under PL (Haddadpour et al.)",
        expr=sp.Add(*terms.values()),
        source=PL_SOURCE,
        terms=terms,
        lhs="E[F(x̄_T)] − F*",
        definitions={kappa: kap, sp.Symbol("a"): a},
        setting=PL_RUN,
    )


def pl_bound_intervals(periods: Sequence[int]) -> Bound:
    """The PL bound with variable periods ``τ_1..τ_E`` [derived]: ``T(τ−1)`` becomes
    ``Σ τ_i(τ_i − 1)`` (this toolkit's derivation, matching the poster's condition (ii) for
    adaptive schedules) and ``a`` uses ``max τ_i`` (our extension, consistent with the poster's
    condition (iii) on (max τ_i)³). T is set to ``Σ τ_i`` (condition (i)).

    Source: main PL theorem with variable periods τ_i (derived from the recalled theorem of
    Haddadpour et al., NeurIPS 2019).
    """
    taus = [checks.integer(f"periods[{i}]", t, lo=1) for i, t in enumerate(periods)]
    if not taus:
        raise checks.refuse("periods", "a non-empty list of integers >= 1", periods)
    b = pl_bound()
    S = sum(t * (t - 1) for t in taus)
    a = shift(max(taus))
    kap = L / mu
    T_ = sum(taus)
    terms = {
        "initial": a**3 * F_gap / (T_ + a) ** 3,
        "variance": 4 * kap * sigma2 * T_ * (T_ + 2 * a) / (mu * p * B * (T_ + a) ** 3),
        "local": 256 * kap**2 * sigma2 * S / (mu * B * (T_ + a) ** 3),
    }
    return Bound(
        name=f"LUPA-SGD under PL, {len(taus)} variable periods",
        expr=sp.Add(*terms.values()), terms=terms, lhs=b.lhs,
        source=Source(f"derived from {PAPER}", "main PL theorem with variable periods τ_i",
                      Status.DERIVED, digest="3.3",
                      note="T(τ−1) → Σ τ_i(τ_i−1) (this toolkit's derivation); a uses max τ_i "
                           "(our extension, consistent with the poster's condition (iii)); "
                           "built on the recalled (low-confidence) constants"),
        definitions=b.definitions,
        setting=replace(PL_RUN, horizon=None, assumptions=tuple(
            x for x in PL_RUN.assumptions if x != "constant_period")),
    )


@dataclass(frozen=True)
class TauChoice:
    """Result of :func:`tau_choice` (every field a sympy expression).

    ``limits`` maps each τ-dependent term to the largest τ (leading order as T → ∞) for which the
    term stays ≤ ``c/(pT)``; ``tau`` is the smallest of them (the binding one, named by
    ``binding``); ``rounds = T/tau``; ``scaling_tau`` and ``scaling_rounds`` drop the constants
    that involve neither T nor p nor ΔF; ``regime`` is the T above which ``binding`` binds.
    """

    c: sp.Expr
    limits: Mapping[str, sp.Expr]
    binding: str
    tau: sp.Expr
    rounds: sp.Expr
    scaling_tau: sp.Expr
    scaling_rounds: sp.Expr
    regime: sp.Expr | None


def _leading_in_T(expr: sp.Expr) -> sp.Expr:
    """Leading term of ``expr`` as T → ∞ (coefficient × T^k)."""
    lead = sp.Order(expr, (T, sp.oo)).expr  # the order T^k (times symbols)
    coeff = sp.limit(sp.simplify(expr / lead), T, sp.oo)
    return sp.simplify(coeff * lead)


def _scaling(expr: sp.Expr, keep: Sequence[sp.Symbol]) -> sp.Expr:
    """``expr`` with every factor not involving a symbol of ``keep`` dropped."""
    factors = sp.Mul.make_args(sp.powsimp(sp.expand_power_base(sp.factor(expr), force=True),
                                          force=True))
    return sp.Mul(*[f for f in factors if f.free_symbols & set(keep)])


@cache
def tau_choice(c: sp.Expr | None = None) -> TauChoice:
    """Derive the communication period and number of rounds from :func:`pl_bound`.

    Linear speed-up means error ``O(1/(pT))``. For each τ-dependent term (``initial`` and
    ``local``) take its leading order as T → ∞ (with ``a ≈ α_PL τ`` for large τ), solve
    ``term = c/(pT)`` for τ (the largest admissible τ, since each term increases with τ), and take
    the smallest solution: minimising the rounds T/τ subject to the condition. ``c`` defaults to
    the coefficient of the bound's own speed-up term ``variance ≈ 4κσ²/(μpBT)``, i.e. the local
    steps may cost no more than the variance does.

    Result (derived): ``τ = (c/ΔF)^{1/3} T^{2/3}/(α p^{1/3})`` from the ``initial`` term, hence
    ``rounds = α (ΔF/c)^{1/3} (pT)^{1/3}`` — the poster's τ = O(T^{2/3}/(p^{1/3}ΔF^{1/3})) and
    O((pT)^{1/3}) rounds — valid while the ``local`` term's limit (∝ T/p) is larger, i.e. for
    T ≳ p² (``regime``).
    """
    b = pl_bound()
    if c is None:
        c = sp.simplify(_leading_in_T(b.terms["variance"]) * p * T)
    t = sp.Symbol("t", positive=True)
    limits: dict[str, sp.Expr] = {}
    for name in ("initial", "local"):
        term = b.terms[name]
        lead = _leading_in_T(term)
        # large-τ leading order: keep the highest power of τ (a = ατ + 4 → ατ)
        lead = sp.Poly(sp.expand(sp.numer(sp.together(lead))), tau)
        lead_tau = lead.LC() * tau ** lead.degree() / sp.denom(sp.together(_leading_in_T(term)))
        sols = [s for s in sp.solve(sp.Eq(lead_tau.subs(tau, t), c / (p * T)), t)
                if not s.has(sp.I) and s.is_positive is not False]
        if len(sols) != 1:
            raise RuntimeError(f"tau_choice: expected one positive root for {name}; got {sols}")
        limits[name] = sp.simplify(sols[0])
    # the binding constraint: the one with the smaller limit for large T
    ratio = sp.simplify(limits["initial"] / limits["local"])
    binding = "initial" if sp.limit(ratio, T, sp.oo) == 0 else "local"
    tau_ = limits[binding]
    rounds = sp.simplify(T / tau_)
    other = "local" if binding == "initial" else "initial"
    crossing = [s for s in sp.solve(sp.Eq(limits[binding], limits[other]), T)
                if not s.has(sp.I) and s.is_positive is not False]
    keep = (T, p, F_gap)
    return TauChoice(
        c=c, limits=limits, binding=binding, tau=tau_, rounds=rounds,
        scaling_tau=_scaling(tau_, keep), scaling_rounds=_scaling(rounds, keep),
        regime=sp.simplify(crossing[0]) if len(crossing) == 1 else None,
    )


# --- the poster's comparison table ---------------------------------------------------------------
@dataclass(frozen=True)
class RateRow:
    """One row of the poster's comparison table: rate and rounds as O(·) expressions (no
    constants) in p, T and, for the bounded-gradient rows, G²."""

    strategy: str
    rate: sp.Expr
    rounds: sp.Expr
    extra_assumption: str
    setting: str
    source: Source

    def evaluate(self, p_: int, T_: float, G2_: float = 1.0) -> tuple[float, float]:
        """``(rate, rounds)`` at the given p, T (and G²), constants taken as 1."""
        vals = {p: p_, T: T_, G2: G2_}
        return float(self.rate.subs(vals)), float(self.rounds.subs(vals))


_TABLE_SRC = Source(PAPER, "NeurIPS 2019 poster, comparison table", Status.QUOTED, digest="3.4",
                    note="O(·) statements: constants are not part of the table")

RATE_TABLE: tuple[RateRow, ...] = (
    RateRow("Yu et al. (2019)", G2 / sp.sqrt(p * T),
            p ** sp.Rational(3, 4) * T ** sp.Rational(3, 4), "bounded gradients", "non-convex",
            _TABLE_SRC),
    RateRow("Wang & Joshi (2018)", 1 / sp.sqrt(p * T), p ** sp.Rational(3, 2) * sp.sqrt(T), "no",
            "non-convex", _TABLE_SRC),
    RateRow("Stich (2019)", G2 / (p * T), sp.sqrt(p) * sp.sqrt(T), "bounded gradients",
            "strongly convex", _TABLE_SRC),
    RateRow("Haddadpour et al. (2019)", 1 / (p * T), (p * T) ** sp.Rational(1, 3), "no",
            "non-convex under PL", _TABLE_SRC),
)


def compare_rates(p_: int, T_: float, G2_: float = 1.0) -> list[dict]:
    """The comparison table at given p, T: one dict per strategy with ``rate`` and ``rounds``
    (O(·) expressions evaluated with constants 1), sorted by rounds."""
    p_ = checks.integer("p", p_, lo=1)
    T_ = checks.real("T", T_, 1)
    rows = []
    for r in RATE_TABLE:
        rate, rounds = r.evaluate(p_, T_, G2_)
        rows.append({"strategy": r.strategy, "rate": rate, "rounds": rounds,
                     "rate_expr": r.rate, "rounds_expr": r.rounds,
                     "extra_assumption": r.extra_assumption, "setting": r.setting})
    return sorted(rows, key=lambda d: d["rounds"])


__all__ = [
    "ASSUMPTIONS", "G2", "PL_SOURCE", "RATE_TABLE", "Assumption", "RateRow", "TauChoice",
    "alpha_pl", "compare_rates", "pl_bound", "pl_bound_intervals", "shift", "tau_choice",
]


register("pl", pl_bound, description="local SGD under the PL condition (Haddadpour et al.)",
         aliases=("lupa", "lupa-sgd"))
register("pl-intervals", pl_bound_intervals, from_run=("periods",),
         description="the PL bound with variable periods τ_1..τ_E (derived)")
