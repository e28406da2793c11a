"""Cooperative SGD (Wang & Joshi): the bounds of A(τ, W, v), their hypotheses, and what follows.

Reference: J. Wang and G. Joshi, "Cooperative SGD: A Unified Framework for the Design and
Analysis of Local-Update SGD Algorithms", JMLR 22(213):1–50, 2021 (arXiv:1808.07576); equation,
theorem and appendix numbers below are the JMLR version's (see ``docs/references.md``).

Algorithm A(τ, W, v) (JMLR §3.1, eqs. 7–10): X_{k+1} = (X_k − η G_k) W_k with X the d × (m+v)
matrix of m worker models and v auxiliary variables, W_k = W every τ steps and I otherwise. The
averaged model u_k = X_k 1/(m+v) follows u_{k+1} = u_k − η_eff (1/m) Σ_i g(x_k^(i)) with
η_eff = mη/(m+v) (eq. 13–14); ζ = max{|λ₂(W)|, |λ_{m+v}(W)|} (Assumption 5).

Provenance: every formula of the JMLR paper encoded here is **quoted** with its number —
Theorem 1 (eqs. 16–17, exact conditions eqs. 143/145 of Appendix D), Lemma 2 (eq. 38),
Corollary 1 (eq. 18), Theorem 2 (eqs. 20–21), eq. 22 and Lemma 1, Theorem 3 (eq. 23),
Corollary 2 (eq. 24), Corollary 3 (eq. 27), eq. 30 and Theorem 4 (eqs. 31–33). Substitutions
the paper does not state itself (EASGD at any α, decentralized periodic averaging, the largest τ
of Corollary 1 and Theorem 2) are **derived** from them by this toolkit. The runtime bound is
from the companion AdaComm paper (not in the JMLR paper) and is **recalled**.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache

import sympy as sp

from theory import checks
from theory.bound import Bound, Condition, ConditionError, Setting, Source, Status
from theory.bounds.registry import register
from theory.symbols import (
    D,
    F_gap,
    K,
    L,
    T_wall,
    Y,
    alpha,
    consensus_avg,
    eta,
    eta_eff,
    kappa2,
    m,
    sigma2,
    tau,
    v,
    zeta,
)
from theory.symbols import beta as beta_sym

PAPER = "Wang & Joshi, Cooperative SGD, JMLR 22(213), 2021 (arXiv:1808.07576)"
ADACOMM = "Wang & Joshi, AdaComm, SysML 2019 (arXiv:1810.08313)"
LHS = "E[(1/K) Σ_{k=1..K} ‖∇F(u_k)‖²]"

# Maintainers: every quoted item below was checked against the JMLR text as recorded in the
# reading notes §1.0 (the ``digest`` field of each Source).


def _quoted(where: str, note: str = "") -> Source:
    return Source(PAPER, where, Status.QUOTED, digest="1.0", note=note)


def _derived(where: str, note: str) -> Source:
    return Source(f"derived from {PAPER}", where, Status.DERIVED, digest="1.0", note=note)


THEOREM_1 = _quoted(
    "Theorem 1, eqs. 16–17 (JMLR)",
    note="IID data, K divisible by τ, all models start at u₁. The bound holds under the exact "
         "learning-rate condition of the proof, eq. 143 (general β; eq. 145 at β = 0, "
         "Appendix D), which eq. 16 relaxes (eq. 148); β enters the condition only "
         "(footnote 3). The last term is written η²L²σ²(…) as in eq. 144 "
         "(= η_eff²(1 + v/m)² L²σ²(…) of eq. 17)")

#: η_eff = mη/(m+v) (JMLR eq. 13)
ETA_EFF = m * eta / (m + v)


def _network_factor(z: sp.Expr = zeta) -> sp.Expr:
    return (1 + z**2) / (1 - z**2)


def _drift_factor(z: sp.Expr = zeta, t: sp.Expr = tau) -> sp.Expr:
    """τ²/(1−ζ) · (2ζ²/(1+ζ) + 2ζ/(1−ζ) + (τ−1)/τ): the factor of η²L² in eqs. 143, 145, 21."""
    return t**2 / (1 - z) * (2 * z**2 / (1 + z) + 2 * z / (1 - z) + (t - 1) / t)


# --- learning-rate conditions of Theorem 1 ------------------------------------------------------
def lr_condition(kind: str = "exact", beta: float | sp.Expr | None = 0) -> Condition:
    """Theorem 1's learning-rate condition (JMLR Appendix D), as a :class:`Condition` in η:

    * ``"exact"`` with β = 0 — eq. 145: η_eff L + η²L²τ²/(1−ζ)·(2ζ²/(1+ζ) + 2ζ/(1−ζ) +
      (τ−1)/τ) ≤ 1;
    * ``"exact"`` with β ≠ 0 (or ``beta=None`` for a free symbol β) — eq. 143:
      η_eff L(β/m + 1) + 2η²L²βτ/(1−ζ²) + η²L²τ²/(1−ζ)·(…) ≤ 1;
    * ``"relaxed"`` — eq. 16 as Theorem 1 states it (β = 0): η_eff L + 5η_eff²L²[(1 + v/m)τ/
      (1−ζ)]² ≤ 1, which implies eq. 145 (eqs. 146–148).

    Quoted; η_eff = mη/(m+v)."""
    if kind == "relaxed":
        if beta is None or sp.sympify(beta) != 0:
            raise ValueError("the relaxed condition eq. 16 is stated for β = 0; use "
                             "kind='exact' (eq. 143) for β > 0")
        return Condition(
            "learning-rate condition, JMLR eq. 16 (Theorem 1 as stated; relaxes eq. 145)",
            sp.Le(ETA_EFF * L + 5 * ETA_EFF**2 * L**2 * ((1 + v / m) * tau / (1 - zeta))**2, 1),
            _quoted("Theorem 1, eq. 16 (JMLR)"))
    if kind != "exact":
        raise ValueError(f"kind must be 'exact' (eq. 143/145) or 'relaxed' (eq. 16); got "
                         f"{kind!r}")
    b = beta_sym if beta is None else sp.sympify(beta)
    if b.is_number and (not b.is_real or b < 0):
        raise ValueError(f"beta must be a real number ≥ 0 (multiplicative noise β of "
                         f"Assumption 4); got {beta!r}")
    if b == 0:
        return Condition(
            "learning-rate condition, JMLR eq. 145 (Theorem 1, β = 0)",
            sp.Le(ETA_EFF * L + eta**2 * L**2 * _drift_factor(), 1),
            _quoted("Appendix D, eq. 145 (JMLR)"))
    lhs = (ETA_EFF * L * (b / m + 1) + 2 * eta**2 * L**2 * b * tau / (1 - zeta**2)
           + eta**2 * L**2 * _drift_factor())
    return Condition("learning-rate condition, JMLR eq. 143 (Theorem 1, general β)",
                     sp.Le(lhs, 1), _quoted("Appendix D, eq. 143 (JMLR)"))


#: eq. 145 (Theorem 1's exact condition at β = 0)
LR_EQ145 = lr_condition("exact", 0)
#: eq. 143 with a free symbol β
LR_EQ143 = lr_condition("exact", None)
#: eq. 16 (Theorem 1's condition as stated, relaxing eq. 145)
LR_EQ16 = lr_condition("relaxed", 0)

#: Corollary 2's condition (PASGD, A(τ, J, 0)); equals eq. 145 at ζ = 0, v = 0 (proofs/)
PASGD_LR = Condition(
    "learning-rate condition of Corollary 2 (JMLR): ηL + η²L²τ(τ−1) ≤ 1",
    sp.Le(eta * L + eta**2 * L**2 * tau * (tau - 1), 1),
    _quoted("Corollary 2 (JMLR)"))

#: Corollary 3's condition (D-PSGD, A(1, W, 0)); equals eq. 145 at τ = 1, v = 0 (proofs/)
DPSGD_LR = Condition(
    "learning-rate condition of Corollary 3 (JMLR): ηL + η²L²·2ζ/(1−ζ)·(ζ/(1+ζ) + 1/(1−ζ)) ≤ 1",
    sp.Le(eta * L + eta**2 * L**2 * 2 * zeta / (1 - zeta) * (zeta / (1 + zeta) + 1 / (1 - zeta)),
          1),
    _quoted("Corollary 3 (JMLR)"))


#: what a run must satisfy for Theorem 1 to speak about it (matched by ``empirics.match``):
#: assumptions 1–5 with IID data and additive noise, plain SGD local steps, one period τ and one
#: W for the whole run, K a multiple of τ
_THEOREM1_RUN = ("iid", "plain_sgd", "additive_noise", "symmetric_W", "constant_period",
                 "tau_divides_K")


def _run_setting(*, drop: tuple[str, ...] = (), add: tuple[str, ...] = (),
                 describes: tuple[str, ...] = ()) -> Setting:
    return Setting("grad_norm2_running", "K",
                   tuple(a for a in _THEOREM1_RUN if a not in drop) + add, "constant",
                   describes)


def _theorem1_terms() -> dict[str, sp.Expr]:
    terms = {
        "optimization": 2 * F_gap / (eta_eff * K),
        "variance": eta_eff * L * sigma2 / m,
        "network": eta**2 * L**2 * sigma2 * (_network_factor() * tau - 1),
    }
    return {k: t.subs(eta_eff, ETA_EFF) for k, t in terms.items()}


@cache
def cooperative_bound(condition: str = "exact", beta: float | sp.Expr | None = 0) -> Bound:
    """Theorem 1, eqs. 16–17 (JMLR) — the non-convex bound of A(τ, W, v), IID data [quoted]:

        E[(1/K) Σ_k ‖∇F(u_k)‖²] ≤ 2[F(u_1) − F_inf]/(η_eff K)             (optimization)
                                  + η_eff L σ²/m                          (variance)
                                  + η² L² σ² ((1+ζ²)/(1−ζ²) · τ − 1)       (network)

    with η_eff = mη/(m+v) (eq. 13) and ζ = max(|λ₂(W)|, |λ_{m+v}(W)|); η² = η_eff²(1 + v/m)².

    It needs a learning-rate condition (see :func:`lr_condition`): ``condition="exact"`` (the
    default) carries the proof's exact condition, eq. 145 at ``beta=0`` or eq. 143 for β > 0
    (``beta=None``: β stays a symbol, given at evaluation); ``condition="relaxed"`` carries
    eq. 16, the sufficient condition Theorem 1 states. ``evaluate()`` refuses an η outside it
    (``ConditionError`` with the largest admissible η); :func:`largest_eta` gives that η.
    Symbols: eta, L, sigma2, m, v, tau, zeta, K, F_gap (= F(u_1) − F_inf)."""
    terms = _theorem1_terms()
    return Bound("Cooperative SGD A(τ, W, v)", sp.Add(*terms.values()), THEOREM_1, terms=terms,
                 lhs=LHS, conditions=(lr_condition(condition, beta),),
                 definitions={eta_eff: ETA_EFF},
                 setting=_run_setting(drop=("additive_noise",) if beta is None else ()))


def largest_eta(L_: float | sp.Expr = L, m_: int | sp.Expr = m, tau_: int | sp.Expr = tau,
                zeta_: float | sp.Expr = zeta, v_: int | sp.Expr = 0,
                beta_: float | sp.Expr = 0, condition: str = "exact") -> sp.Expr:
    """The largest η that Theorem 1's learning-rate condition admits, exactly.

    Every condition is a·η + b·η² ≤ 1 with a, b ≥ 0 (eq. 143: a = L(m+β)/(m+v),
    b = L²[2βτ/(1−ζ²) + τ²/(1−ζ)·(2ζ²/(1+ζ) + 2ζ/(1−ζ) + (τ−1)/τ)]), whose admissible set is
    η ≤ 2/(a + √(a² + 4b)), the positive root (= 1/a when b = 0). Exact inputs (ints,
    ``sympy.Rational``, symbols) give an exact sympy result; pass ``condition="relaxed"`` for
    eq. 16. ``zeta_`` also takes a :class:`~theory.mixing.MixingMatrix`."""
    from theory.bound import checked_value

    vals = {L: L_, m: m_, tau: tau_, zeta: zeta_, v: v_}
    vals = {s: sp.sympify(checked_value(str(s), s, x)) for s, x in vals.items()}
    return lr_condition(condition, beta_).subs(vals).largest(eta)


@cache
def lemma2_bound(beta: float | sp.Expr | None = 0) -> Bound:
    """Lemma 2, eq. 38 (JMLR) — the error decomposition before the network error is bounded
    [quoted]:

        E[(1/K) Σ_k ‖∇F(u_k)‖²] ≤ 2[F(x_1) − F_inf]/(η_eff K) + η_eff L σ²/m + L² Ξ,

    Ξ = (1/K) Σ_{k=1..K} E‖X_k(I − J)‖²_F / m (symbol ``consensus_avg``), I and J = 11ᵀ/(m+v)
    being (m+v) × (m+v). Condition: η_eff L (1 + β/m) ≤ 1 (β = 0 by default; ``beta=None``
    keeps it a symbol). Evaluated with the *measured* consensus distance of a run, it is a
    semi-empirical bound; Theorem 1 replaces Ξ by its worst case."""
    b = beta_sym if beta is None else sp.sympify(beta)
    terms = {
        "optimization": 2 * F_gap / (ETA_EFF * K),
        "variance": ETA_EFF * L * sigma2 / m,
        "network (measured)": L**2 * consensus_avg,
    }
    cond = Condition("learning-rate condition of Lemma 2 (JMLR eq. 38): η_eff L (1 + β/m) ≤ 1",
                     sp.Le(ETA_EFF * L * (1 + b / m), 1), _quoted("Lemma 2, eq. 38 (JMLR)"))
    src = _quoted("Lemma 2, eq. 38 (JMLR)",
                  note="Assumptions 1–5, all models start at the same point; Ξ is measured")
    return Bound("Lemma 2 error decomposition A(τ, W, v)", sp.Add(*terms.values()), src,
                 terms=terms, lhs=LHS, conditions=(cond,), definitions={eta_eff: ETA_EFF},
                 setting=_run_setting(drop=("constant_period", "tau_divides_K")
                                      + (("additive_noise",) if beta is None else ())))


# --- Corollary 1 and the largest τ --------------------------------------------------------------
def corollary1_eta() -> sp.Expr:
    """Corollary 1 (JMLR): the step size η = ((m+v)/(Lm))·√(m/K), i.e. η_eff = √(m/K)/L
    [quoted]."""
    return (m + v) / (L * m) * sp.sqrt(m / K)


#: Corollary 1's hypothesis on K (quoted): 10m[(1 + v/m)τ/(1−ζ)]² ≤ K
COROLLARY1_K = Condition(
    "K-condition of Corollary 1 (JMLR): 10m[(1 + v/m)τ/(1−ζ)]² ≤ K",
    sp.Le(10 * m * ((1 + v / m) * tau / (1 - zeta))**2, K),
    _quoted("Corollary 1 (JMLR)"))


@cache
def corollary1_bound() -> Bound:
    """Corollary 1, eq. 18 (JMLR) — Theorem 1 at η = ((m+v)/(Lm))√(m/K) [quoted]:

        E[(1/K) Σ_k ‖∇F(u_k)‖²] ≤ (2L[F(u_1) − F_inf] + σ²)/√(mK)
                                  + (m/K)(1 + v/m)²((1+ζ²)/(1−ζ²)·τ − 1)σ²,

    under 10m[(1 + v/m)τ/(1−ζ)]² ≤ K (which makes η meet eq. 16). No η: the corollary fixes
    it (:func:`corollary1_eta`)."""
    terms = {
        "optimization": 2 * L * F_gap / sp.sqrt(m * K),
        "variance": sigma2 / sp.sqrt(m * K),
        "network": m / K * (1 + v / m)**2 * (_network_factor() * tau - 1) * sigma2,
    }
    return Bound("Cooperative SGD A(τ, W, v) at Corollary 1's η", sp.Add(*terms.values()),
                 _quoted("Corollary 1, eq. 18 (JMLR)",
                         note="η = ((m+v)/(Lm))√(m/K); same assumptions as Theorem 1"),
                 terms=terms, lhs=LHS, conditions=(COROLLARY1_K,))


def _tau_value(x: sp.Expr) -> sp.Expr | int:
    """floor of a numeric largest τ (an int ≥ 0: 0 means no τ ≥ 1), a closed form otherwise."""
    if x.free_symbols:
        return x
    return max(int(sp.floor(x)), 0)


def largest_tau(m_: int | sp.Expr = m, zeta_: float | sp.Expr = zeta, K_: float | sp.Expr = K,
                v_: int | sp.Expr = 0, *, iid: bool = True) -> sp.Expr | int:
    """The largest communication period τ at Corollary 1's step size [derived, not quoted]:

    * ``iid=True`` — from Corollary 1's K-condition 10m[(1 + v/m)τ/(1−ζ)]² ≤ K:
      τ ≤ (1−ζ)√(K/(10m))/(1 + v/m);
    * ``iid=False`` — from Theorem 2's C ≤ 1/2 (eq. 21) at η = ((m+v)/(Lm))√(m/K), where
      η²L² = (1 + v/m)² m/K: with A = 2ζ²/(1+ζ) + 2ζ/(1−ζ), C ≤ 1/2 ⟺
      (A + 1)τ² − τ ≤ Q := (1−ζ)K/(12m(1 + v/m)²), so τ ≤ (1 + √(1 + 4(A+1)Q))/(2(A+1));
      Theorem 2's other condition η_eff L ≤ 1 is √(m/K) ≤ 1, i.e. K ≥ m (else no τ: 0).

    Numeric inputs give the integer part (0 when even τ = 1 is outside); symbolic ones the
    continuous closed form. These are where the corollary's *hypotheses* hold; the JMLR Table 1
    columns (see :data:`TABLE_1`) are a different question (the largest τ keeping the rate
    1/√(mK)), answered only up to order there."""
    from theory.bound import checked_value

    m_, z, K_, v_ = (sp.sympify(checked_value(n, s, x)) for n, s, x in
                     (("m", m, m_), ("zeta", zeta, zeta_), ("K", K, K_), ("v", v, v_)))
    if iid:
        return _tau_value((1 - z) * sp.sqrt(K_ / (10 * m_)) / (1 + v_ / m_))
    if K_.is_number and m_.is_number and K_ < m_:
        return 0
    A = 2 * z**2 / (1 + z) + 2 * z / (1 - z)
    Q = (1 - z) * K_ / (12 * m_ * (1 + v_ / m_)**2)
    return _tau_value((1 + sp.sqrt(1 + 4 * (A + 1) * Q)) / (2 * (A + 1)))


@dataclass(frozen=True)
class TableRow:
    """One row of the JMLR paper's Table 1: the largest τ (in order) keeping the rate 1/√(mK)."""

    setting: str
    tau_order: sp.Expr
    source: Source


#: JMLR Table 1, "Ours" row [quoted]: largest τ keeping PSASGD's rate 1/√(mK), in order
TABLE_1: tuple[TableRow, ...] = (
    TableRow("IID", sp.sqrt(K) * m**sp.Rational(-3, 2),
             _quoted("Table 1 (JMLR)", note="order only; §5.2: K ≥ m³τ² (IID)")),
    TableRow("non-IID", K**sp.Rational(1, 4) * m**sp.Rational(-3, 4),
             _quoted("Table 1 (JMLR)", note="order only; §5.2: K ≥ m³τ⁴ (non-IID)")),
)


# --- Theorem 2: non-IID data --------------------------------------------------------------------
#: C of JMLR eq. 21
C_NONIID = 6 * eta**2 * L**2 * _drift_factor()


@cache
def cooperative_noniid_bound() -> Bound:
    """Theorem 2, eqs. 20–21 (JMLR) — A(τ, W, v) on non-IID data [quoted]:

        E[(1/K) Σ_k ‖∇F(u_k)‖²] ≤ 2·[2[F(u_1) − F_inf]/(η_eff K) + η_eff Lσ²/m
                                      + η²L²σ²((1+ζ²)/(1−ζ²)·τ − 1)] + C κ²,

    C = 6η²L²τ²/(1−ζ)·(2ζ²/(1+ζ) + 2ζ/(1−ζ) + (τ−1)/τ), under η_eff L ≤ 1 and C ≤ 1/2. The
    assumptions: E[g_i] = ∇F_i, E‖g_i − ∇F_i‖² ≤ σ², (1/m)Σ_i ‖∇F_i − ∇F‖² ≤ κ² (symbol
    ``kappa2``), each F_i L-smooth, all models start at u_1."""
    base = _theorem1_terms()
    terms = {k: 2 * t for k, t in base.items()}
    terms["heterogeneity"] = C_NONIID * kappa2
    conds = (
        Condition("learning-rate condition of Theorem 2 (JMLR): η_eff L ≤ 1",
                  sp.Le(ETA_EFF * L, 1), _quoted("Theorem 2 (JMLR)")),
        Condition("condition C ≤ 1/2 of Theorem 2 (JMLR eq. 21)",
                  sp.Le(C_NONIID, sp.Rational(1, 2)), _quoted("Theorem 2, eq. 21 (JMLR)")),
    )
    src = _quoted("Theorem 2, eqs. 20–21 (JMLR)",
                  note="non-IID: κ² bounds (1/m)Σ_i ‖∇F_i(x) − ∇F(x)‖² at every x")
    return Bound("Cooperative SGD A(τ, W, v), non-IID", sp.Add(*terms.values()), src,
                 terms=terms, lhs=LHS, conditions=conds, definitions={eta_eff: ETA_EFF},
                 setting=_run_setting(drop=("iid",)))


# --- special cases (substitutions into the general bound) ---------------------------------------
def _special(name: str, source: Source, conditions: tuple[Condition, ...] | None = None,
             **values) -> Bound:
    """Theorem 1 (eq. 145) with ``values`` substituted; ``conditions`` replaces the substituted
    eq. 145 by the paper's own statement of it when the paper gives one."""
    b = cooperative_bound().subs(values, name=name, source=source).simplify()
    return b if conditions is None else replace(b, conditions=conditions)


@cache
def synchronous_bound() -> Bound:
    """Fully synchronous SGD, A(1, J, 0): 2ΔF/(ηK) + ηLσ²/m under ηL ≤ 1 — Corollary 2, eq. 24
    at τ = 1 (JMLR) [quoted]: the paper notes the network error vanishes at τ = 1, ζ = 0,
    v = 0. The condition is Corollary 2's (= eq. 145) at τ = 1."""
    src = _quoted("Corollary 2, eq. 24 at τ = 1 (JMLR)",
                  note="the network error is zero at τ = 1, ζ = 0, v = 0 (JMLR §4.2)")
    return _special("fully synchronous SGD A(1, J, 0)", src, tau=1, zeta=0, v=0).with_setting(
        describes=("synchronous",))


@cache
def pasgd_bound() -> Bound:
    """PASGD / local SGD, A(τ, J, 0) — Corollary 2, eq. 24 (JMLR) [quoted]:
    2ΔF/(ηK) + ηLσ²/m + η²L²σ²(τ − 1), if ηL + η²L²τ(τ−1) ≤ 1 (the corollary's own
    condition: eq. 145 at ζ = 0, v = 0)."""
    return _special("PASGD A(τ, J, 0)", _quoted("Corollary 2, eq. 24 (JMLR)"), (PASGD_LR,),
                    zeta=0, v=0).with_setting(describes=("pasgd", "synchronous"))


@cache
def dpsgd_bound() -> Bound:
    """D-PSGD, A(1, W, 0) — Corollary 3, eq. 27 (JMLR) [quoted]:
    2ΔF/(ηK) + ηLσ²/m + η²L²σ²·2ζ²/(1−ζ²), if ηL + η²L²·2ζ/(1−ζ)·(ζ/(1+ζ) + 1/(1−ζ)) ≤ 1
    (eq. 145 at τ = 1, v = 0). Ring(16) with weights 1/3 (ζ ≈ 0.9493) allows ηL ≤ 0.0357."""
    return _special("D-PSGD A(1, W, 0)", _quoted("Corollary 3, eq. 27 (JMLR)"), (DPSGD_LR,),
                    tau=1, v=0).with_setting(describes=("dpsgd",))


@cache
def decentralized_periodic_bound() -> Bound:
    """Decentralized periodic averaging, A(τ, W, 0) (JMLR §6.1) — Theorem 1 (eqs. 16–17,
    condition eq. 145) at v = 0 [derived: the paper states no separate bound for it]."""
    src = _derived("Theorem 1 (eqs. 16–17, condition eq. 145) at v = 0",
                   note="substitution by this toolkit; JMLR §6.1 names the algorithm")
    return _special("decentralized periodic averaging A(τ, W, 0)", src, v=0).with_setting(
        describes=("decentralized_periodic", "dpsgd", "pasgd", "synchronous"))


def easgd_zeta(m_=m, alpha_=alpha) -> sp.Expr:
    """ζ(W_α) = max{|1−α|, |1−(m+1)α|} — JMLR eq. 22 [quoted] (m = 1: the spectrum is
    {1, 1 − 2α}, so |1 − 2α})."""
    m_, a = sp.sympify(m_), sp.sympify(alpha_)
    if m_ == 1:  # no eigenvalue 1 − α when m = 1
        return sp.Abs(1 - 2 * a)
    return sp.Max(sp.Abs(1 - a), sp.Abs(1 - (m_ + 1) * a))


@cache
def easgd_bound(alpha_: sp.Expr | float | None = None) -> Bound:
    """EASGD, A(τ, W_α, 1): Theorem 1 (eqs. 16–17, condition eq. 145) with v = 1, ζ = ζ(W_α)
    of eq. 22 (JMLR) [derived by substitution; tighter than the paper's own Theorem 3,
    :func:`easgd_paper_bound`].

    ``alpha_=None`` keeps α symbolic; ``"optimal"`` takes α* = 2/(m+2), ζ* = m/(m+2) (Lemma 1).
    Otherwise the bound carries ζ(W_α) < 1, i.e. 0 < α < 2/(m+1) (JMLR §5.1: needed for
    Assumption 5). The learning-rate condition is eq. 145 at v = 1, ζ = ζ(W_α)."""
    if alpha_ == "optimal":
        z = easgd_optimal_alpha(m)[1]
    else:
        z = easgd_zeta(m, alpha if alpha_ is None else alpha_)
    src = _derived("Theorem 1 (eqs. 16–17, condition eq. 145) with v = 1, ζ = ζ(W_α) of eq. 22",
                   note="substitution by this toolkit; the paper's own EASGD bound is Theorem 3 "
                        "(eq. 23), looser in τ")
    b = _special("EASGD A(τ, W_α, 1)", src, v=1, zeta=z).with_setting(describes=("easgd",))
    if alpha_ == "optimal":
        return b
    cond = Condition("ζ(W_α) < 1, i.e. 0 < α < 2/(m+1) (JMLR §5.1, Lemma 1)", sp.Lt(z, 1),
                     _quoted("§5.1 after eq. 22; Lemma 1 (JMLR)"))
    if cond.relation == sp.false:
        raise ConditionError(f"easgd_bound: alpha_ = {alpha_} gives ζ(W_α) ≥ 1 for every m "
                             "(Theorem 1 needs 0 < α < 2/(m+1))")
    return replace(b, conditions=(cond, *b.conditions))  # ζ < 1 first: eq. 145 needs it


@cache
def easgd_paper_bound() -> Bound:
    """Theorem 3, eq. 23 (JMLR) — EASGD A(τ, W_α, 1) at α = 2/(m+2) [quoted]:

        ≤ 2[F(u_1) − F_inf]/(η_eff K) + η_eff Lσ²/m + ½η_eff²L²σ²(m+1)[1 + C(τ−1)],
        C = 1 + 2(1 + 1/m)², η_eff = mη/(m+1).

    Appendix G proves it by substitution into Theorem 1, so Theorem 1's condition applies:
    eq. 145 at v = 1, ζ = m/(m+2) [that reading is derived]. It is looser than
    :func:`easgd_bound` at α* by [m² + (3m²+4m+2)(τ−1)]/[m² + (m²+2m+2)(τ−1)] in the network
    term (equal at τ = 1; → (3m²+4m+2)/(m²+2m+2), 2.5–2.9× for m = 4–16, as τ → ∞)."""
    ee = ETA_EFF.subs(v, 1)
    C3 = 1 + 2 * (1 + 1 / m)**2
    terms = {
        "optimization": 2 * F_gap / (ee * K),
        "variance": ee * L * sigma2 / m,
        "network": sp.Rational(1, 2) * ee**2 * L**2 * sigma2 * (m + 1) * (1 + C3 * (tau - 1)),
    }
    cond = LR_EQ145.subs({v: 1, zeta: m / (m + 2)})
    cond = replace(cond, name="learning-rate condition, JMLR eq. 145 at v = 1, ζ = m/(m+2) "
                              "(Theorem 3 is Theorem 1 substituted, Appendix G)",
                   source=_derived("Appendix G: Theorem 3 from Theorem 1, so eq. 145 applies",
                                   note="the paper states no separate condition for Theorem 3"))
    src = _quoted("Theorem 3, eq. 23 (JMLR)", note="α = 2/(m+2) (Lemma 1), IID data")
    return Bound("EASGD A(τ, W_α*, 1), Theorem 3", sp.Add(*terms.values()), src, terms=terms,
                 lhs=LHS, conditions=(cond,), definitions={eta_eff: ee},
                 setting=_run_setting(add=("alpha_optimal",), describes=("easgd",)))


# --- derived results --------------------------------------------------------------------------
def error_floor(b: Bound) -> sp.Expr:
    """K → ∞ limit of a bound (the error floor)."""
    return sp.limit(b.expr, K, sp.oo)


def pasgd_dpsgd_crossover(zeta_: sp.Expr = zeta) -> sp.Expr:
    """τ_eq = (1+ζ²)/(1−ζ²): PASGD(τ) and D-PSGD(ζ) have equal error floors — JMLR eq. 30
    [quoted; the code re-derives it by solving "floor of eq. 24 = floor of eq. 27" with sympy].
    PASGD has the smaller floor iff τ < τ_eq; the same relation as ζ_τ of
    :func:`dpsgd_zeta_threshold`."""
    f_pasgd = error_floor(pasgd_bound())
    f_dpsgd = error_floor(dpsgd_bound())
    (sol,) = sp.solve(sp.Eq(f_pasgd, f_dpsgd), tau)
    num, den = sp.fraction(sp.cancel(sol))
    if num.could_extract_minus_sign():
        num, den = -num, -den
    return (sp.expand(num) / sp.expand(den)).subs(zeta, zeta_)


def dpsgd_zeta_threshold(tau_: sp.Expr = tau) -> sp.Expr:
    """ζ_τ = √(1 − 2/(τ+1)) — JMLR eq. 30 [quoted]: D-PSGD A(1, W, 0) has a lower worst-case
    error floor than PASGD A(τ, J, 0) iff ζ ≤ ζ_τ."""
    return sp.sqrt(1 - 2 / (sp.sympify(tau_) + 1))


def easgd_optimal_alpha(m_: int | sp.Expr = m) -> tuple[sp.Expr, sp.Expr]:
    """(α*, ζ*) minimising ζ(α) = max(|1−α|, |1−(m+1)α|) over α > 0, found exactly.

    Lemma 1 (JMLR) [quoted]: α* = 2/(m+2) gives the minimum ζ* = m/(m+2). The code derives it
    independently: ζ(α) is convex piecewise linear, so its minimum lies at a breakpoint (a zero
    of 1−α or 1−(m+1)α, or a crossing ±(1−α) = ±(1−(m+1)α)); it enumerates these and picks the
    best. For m = 1 the spectrum is {1, 1 − 2α}: α* = 1/2, ζ* = 0. A symbolic m is taken to be
    ≥ 2."""
    m_ = sp.sympify(m_)
    if m_.is_number:
        m_ = sp.Integer(checks.integer("m", m_, lo=1))
    a = sp.Symbol("a", positive=True)
    f1, f2 = (1 - a if m_ != 1 else 1 - 2 * a), 1 - (m_ + 1) * a
    cands = set()
    for eq in (f1, f2, f1 - f2, f1 + f2):
        cands.update(s for s in sp.solve(eq, a) if s.is_positive is not False)
    if m_.is_number:
        best = min(cands, key=lambda c: float(easgd_zeta(m_, c)))
        return sp.nsimplify(best), sp.nsimplify(easgd_zeta(m_, best))
    # symbolic m ≥ 2: write m = 2 + t with t ≥ 0 so that sympy can decide the signs
    t = sp.Dummy("t", nonnegative=True)
    vals = {c: sp.simplify(easgd_zeta(2 + t, c.subs(m_, 2 + t))) for c in cands}
    for c, zc in vals.items():
        if all(sp.simplify(z2 - zc).is_nonnegative for z2 in vals.values()):
            return sp.simplify(c), sp.simplify(zc.subs(t, m_ - 2))
    raise ValueError("could not decide α* symbolically; pass an integer m")


def easgd_network_factor(m_: int | sp.Expr = m) -> sp.Expr:
    """(1+ζ*²)/(1−ζ*²) at the optimal elasticity = (m²+2m+2)/(2(m+1)) [derived from Lemma 1]."""
    _, z = easgd_optimal_alpha(m_)
    return sp.factor(sp.simplify(_network_factor(z)))


# --- Theorem 4: generalized elastic averaging ---------------------------------------------------
def _zeta_arg(zeta_):
    from theory.bound import checked_value

    z = sp.sympify(checked_value("zeta", zeta, zeta_))
    if z.is_number and not (0 <= z <= 1):
        raise ValueError(f"zeta must be in [0, 1] (ζ of W); got {zeta_!r}")
    return z


def generalized_easgd_zeta(zeta_: float | sp.Expr = zeta, m_: int | sp.Expr = m,
                           alpha_: float | sp.Expr = alpha) -> sp.Expr:
    """ζ′ = max{(1−α)ζ, |1 − (m+1)α|} of W′ = [[(1−α)W, α1], [α1ᵀ, 1 − mα]] — Theorem 4,
    eq. 33 (JMLR) [quoted], for 0 ≤ α ≤ 1. ``zeta_`` is ζ(W) (a number, a symbol, or a
    :class:`~theory.mixing.MixingMatrix`); exact inputs give an exact result."""
    z, m_, a = _zeta_arg(zeta_), sp.sympify(m_), sp.sympify(alpha_)
    if a.is_number and not (0 <= a <= 1):
        raise ValueError(f"alpha must be in [0, 1] (elasticity of Theorem 4); got {alpha_!r}")
    return sp.Max((1 - a) * z, sp.Abs(1 - (m_ + 1) * a))


def generalized_easgd_optimal_alpha(zeta_: float | sp.Expr = zeta, m_: int | sp.Expr = m
                                    ) -> tuple[sp.Expr, sp.Expr]:
    """(α*, ζ′*) = ((1+ζ)/(m+1+ζ), mζ/(m+1+ζ)) — Theorem 4 (JMLR) [quoted]: the α minimising
    ζ′ = max{(1−α)ζ, |1−(m+1)α|} (where (1−α)ζ = (m+1)α − 1). Exact for exact inputs."""
    z, m_ = _zeta_arg(zeta_), sp.sympify(m_)
    if m_.is_number and (not m_.is_integer or m_ < 1):
        raise ValueError(f"m must be an integer ≥ 1; got {m_}")
    return (1 + z) / (m_ + 1 + z), m_ * z / (m_ + 1 + z)


# --- runtime (AdaComm companion paper) ----------------------------------------------------------
RUNTIME_ADACOMM = Source(
    ADACOMM, "error–runtime bound of PASGD", Status.RECALLED, confidence="med", digest="1.9",
    note="from the companion AdaComm paper, not the JMLR Cooperative SGD paper; not checked "
         "against the AdaComm text. Condition: Corollary 2's (JMLR, quoted)")


@cache
def runtime_bound() -> Bound:
    """Error at wall-clock time T_wall for PASGD with compute time Y per step and communication
    time D per round — AdaComm's error–runtime bound of PASGD [recalled; not in the JMLR paper]:

        min_k E‖∇F(x̄_k)‖² ≤ 2ΔF/(η T_wall)·(Y + D/τ) + ηLσ²/m + η²L²σ²(τ − 1),

    under Corollary 2's condition ηL + η²L²τ(τ−1) ≤ 1."""
    terms = {
        "optimization": 2 * F_gap / (eta * T_wall) * (Y + D / tau),
        "variance": eta * L * sigma2 / m,
        "network": eta**2 * L**2 * sigma2 * (tau - 1),
    }
    return Bound("PASGD error vs wall-clock (AdaComm)", sp.Add(*terms.values()), RUNTIME_ADACOMM,
                 terms=terms, lhs="min_k E‖∇F(x̄_k)‖² within wall-clock T_wall",
                 conditions=(PASGD_LR,))


def optimal_tau_runtime() -> sp.Expr:
    """τ* = sqrt(2ΔF·D/(η³L²σ²T_wall)), the stationary point of :func:`runtime_bound` in τ, found
    by ``Bound.minimize`` [derived]."""
    return runtime_bound().minimize(tau).argmin


__all__ = [
    "C_NONIID", "COROLLARY1_K", "DPSGD_LR", "ETA_EFF", "LR_EQ143", "LR_EQ145", "LR_EQ16",
    "PASGD_LR", "TABLE_1", "THEOREM_1", "TableRow", "cooperative_bound",
    "cooperative_noniid_bound", "corollary1_bound", "corollary1_eta",
    "decentralized_periodic_bound", "dpsgd_bound", "dpsgd_zeta_threshold", "easgd_bound",
    "easgd_network_factor", "easgd_optimal_alpha", "easgd_paper_bound", "easgd_zeta",
    "error_floor", "generalized_easgd_optimal_alpha", "generalized_easgd_zeta", "largest_eta",
    "largest_tau", "lemma2_bound", "lr_condition", "optimal_tau_runtime", "pasgd_bound",
    "pasgd_dpsgd_crossover", "runtime_bound", "synchronous_bound",
]


# --- the registry (coopsgd bound NAME, bound = NAME in experiment specs) ------------------------
register("cooperative", cooperative_bound,
         description="Cooperative SGD A(τ, W, v), JMLR Theorem 1 under its exact condition eq. 145",
         aliases=("theorem1",))
register("cooperative-relaxed", cooperative_bound, "relaxed",
         description="JMLR Theorem 1 under the relaxed condition eq. 16 as stated")
register("cooperative-beta", cooperative_bound, "exact", None,
         description="JMLR Theorem 1 with multiplicative noise β: condition eq. 143")
register("cooperative-noniid", cooperative_noniid_bound,
         description="A(τ, W, v) on non-IID data, JMLR Theorem 2 (κ² = --kappa2)",
         aliases=("theorem2", "non-iid", "noniid"))
register("lemma2", lemma2_bound,
         description="JMLR Lemma 2 with the measured consensus distance Ξ (--consensus-avg)")
register("corollary1", corollary1_bound,
         description="JMLR Corollary 1: Theorem 1 at η = ((m+v)/(Lm))√(m/K)")
register("synchronous", synchronous_bound,
         description="fully synchronous SGD A(1, J, 0) (ηL ≤ 1)", aliases=("sync",))
register("pasgd", pasgd_bound, description="PASGD / local SGD A(τ, J, 0), JMLR Corollary 2",
         aliases=("local-sgd",))
register("dpsgd", dpsgd_bound, description="D-PSGD A(1, W, 0), JMLR Corollary 3",
         aliases=("d-psgd",))
register("decentralized-periodic", decentralized_periodic_bound,
         description="decentralized periodic averaging A(τ, W, 0)")
register("easgd", easgd_bound,
         description="EASGD A(τ, W_α, 1), elasticity α free (0 < α < 2/(m+1))")
register("easgd-optimal", easgd_bound, "optimal",
         description="EASGD at the optimal α* = 2/(m+2)")
register("easgd-paper", easgd_paper_bound,
         description="EASGD at α* = 2/(m+2), JMLR Theorem 3 (eq. 23)", aliases=("theorem3",))
register("runtime", runtime_bound,
         description="PASGD error within a wall-clock budget (AdaComm)")
