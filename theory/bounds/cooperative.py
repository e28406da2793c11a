"""Cooperative SGD (Wang & Joshi): the bound of A(τ, W, v), its special cases, and what follows.

Algorithm A(τ, W, v) (digest §1.3): X_{k+1} = (X_k − η G_k) W_k with X the d × (m+v) matrix of m
worker models and v auxiliary variables, W_k = W every τ steps and I otherwise. The averaged model
u_k = X_k 1/(m+v) follows u_{k+1} = u_k − η_eff (1/m) Σ_i g(x_k^(i)), η_eff = mη/(m+v).

Provenance (``shared/papers.md``): the three-term non-convex bound is *recalled* (medium
confidence; whether the network term has η or η_eff is low–medium); its general learning-rate
condition is not known [NF] and is therefore **not** encoded; the PASGD learning-rate condition
and the runtime bound are recalled from the companion AdaComm paper; the crossover τ_eq and the
EASGD α* are *derived* here by the code.
"""

from __future__ import annotations

from functools import cache

import sympy as sp

from theory import checks
from theory.bound import Bound, Condition, ConditionError, Source, Status
from theory.symbols import D, F_gap, K, L, T_wall, Y, alpha, eta, eta_eff, m, sigma2, tau, v, zeta

PAPER = "Wang & Joshi, Cooperative SGD (arXiv:1808.07576; JMLR 22(213), 2021)"
ADACOMM = "Wang & Joshi, AdaComm (arXiv:1810.08313, SysML 2019)"
LHS = "E[(1/K) Σ_{k=1..K} ‖∇F(u_k)‖²]"

THEOREM_1 = Source(
    PAPER, "Theorem 1 (non-convex, assumptions 1–5)", Status.RECALLED, confidence="med",
    digest="1.6",
    note=("not checked against the PDF; whether the network term uses η or η_eff is recalled "
          "with low–medium confidence (η here); the general learning-rate condition is unknown "
          "[NF] and NOT encoded: evaluate() cannot check that η is small enough"))

#: η_eff = mη/(m+v) (digest §1.3; identity verified numerically, derived)
ETA_EFF = m * eta / (m + v)


def _network_factor(z: sp.Expr = zeta) -> sp.Expr:
    return (1 + z**2) / (1 - z**2)


@cache
def cooperative_bound() -> Bound:
    """The non-convex bound of A(τ, W, v) (digest §1.6, recalled):

        E[(1/K) Σ_k ‖∇F(u_k)‖²] ≤ 2[F(u_1) − F_inf]/(η_eff K)             (optimization)
                                  + η_eff L σ²/m                          (variance)
                                  + η² L² σ² ((1+ζ²)/(1−ζ²) · τ − 1)       (network)

    with η_eff = mη/(m+v) and ζ = max(|λ₂(W)|, |λ_{m+v}(W)|). Symbols: eta, L, sigma2, m, v, tau,
    zeta, K, F_gap (= F(u_1) − F_inf)."""
    terms = {
        "optimization": 2 * F_gap / (eta_eff * K),
        "variance": eta_eff * L * sigma2 / m,
        "network": eta**2 * L**2 * sigma2 * (_network_factor() * tau - 1),
    }
    terms = {k: t.subs(eta_eff, ETA_EFF) for k, t in terms.items()}
    return Bound("Cooperative SGD A(τ, W, v)", sp.Add(*terms.values()), THEOREM_1, terms=terms,
                 lhs=LHS, definitions={eta_eff: ETA_EFF})


def _special(name: str, where: str, digest: str, status: Status = Status.RECALLED,
             confidence: str | None = "med", note: str = THEOREM_1.note, **values) -> Bound:
    """Theorem 1 with ``values`` substituted. Recalled special cases keep the paper as source;
    derived ones (the digest reconstructs them from Theorem 1) say so and inherit its form."""
    if status is Status.DERIVED:
        src = Source(f"derived from {PAPER}, Theorem 1", f"{where}: special case of Theorem 1",
                     Status.DERIVED, digest=digest,
                     note="substitution by the code; inherits Theorem 1's recalled "
                          "(medium-confidence) form: " + THEOREM_1.note)
    else:
        src = Source(PAPER, f"{where}: special case of Theorem 1", Status.RECALLED,
                     confidence=confidence, digest=digest, note=note)
    return cooperative_bound().subs(values, name=name, source=src).simplify()


# --- learning-rate condition ------------------------------------------------------------------
PASGD_LR = Condition(
    "PASGD learning-rate condition ηL + η²L²τ(τ−1) ≤ 1",
    sp.Le(eta * L + eta**2 * L**2 * tau * (tau - 1), 1),
    Source(ADACOMM, "PASGD analysis (learning-rate condition)", Status.RECALLED,
           confidence="med", digest="1.9", note="companion paper; not checked against the PDF"))


_PASGD_NOTE = ("not checked against the PDF; with W = J, v = 0 the η vs η_eff question does not "
               "arise; the learning-rate condition encoded is PASGD's (AdaComm, recalled)")

#: PASGD's condition at τ = 1: ηL ≤ 1 (the condition of synchronous SGD in this form)
SYNC_LR = Condition(
    "ηL ≤ 1 (the PASGD condition at τ = 1)", sp.Le(eta * L, 1),
    Source("derived", "PASGD learning-rate condition (AdaComm, recalled) at τ = 1",
           Status.DERIVED, digest="1.9"))


# --- special cases (substitutions into the general bound) ---------------------------------------
@cache
def synchronous_bound() -> Bound:
    """Fully synchronous SGD, A(1, J, 0): ζ = 0, τ = 1, v = 0 → 2ΔF/(ηK) + ηLσ²/m."""
    b = _special("fully synchronous SGD A(1, J, 0)", "τ = 1, W = J, v = 0", "1.4",
                 note=_PASGD_NOTE, tau=1, zeta=0, v=0)
    return b.with_conditions(SYNC_LR)


@cache
def pasgd_bound() -> Bound:
    """PASGD / local SGD, A(τ, J, 0): 2ΔF/(ηK) + ηLσ²/m + η²L²σ²(τ − 1) (digest §1.7.1), with the
    PASGD learning-rate condition ηL + η²L²τ(τ−1) ≤ 1 (AdaComm, recalled)."""
    b = _special("PASGD A(τ, J, 0)", "PASGD corollary (W = J, v = 0)", "1.7.1",
                 confidence="high", note=_PASGD_NOTE, zeta=0, v=0)
    return b.with_conditions(PASGD_LR)


@cache
def dpsgd_bound() -> Bound:
    """D-PSGD, A(1, W, 0): 2ΔF/(ηK) + ηLσ²/m + η²L²σ² · 2ζ²/(1−ζ²) (digest §1.7.2)."""
    return _special("D-PSGD A(1, W, 0)", "D-PSGD (τ = 1, v = 0)", "1.7.2", tau=1, v=0)


@cache
def decentralized_periodic_bound() -> Bound:
    """Decentralized periodic averaging, A(τ, W, 0) (digest §1.7.4, derived from Theorem 1)."""
    return _special("decentralized periodic averaging A(τ, W, 0)", "v = 0", "1.7.4",
                    status=Status.DERIVED, v=0)


def easgd_zeta(m_=m, alpha_=alpha) -> sp.Expr:
    """ζ(W_α) = max(|1−α|, |1−(m+1)α|) from the spectrum {1, 1−α, 1−(m+1)α} (derived, §1.4)."""
    m_, a = sp.sympify(m_), sp.sympify(alpha_)
    if m_ == 1:  # no eigenvalue 1 − α when m = 1
        return sp.Abs(1 - 2 * a)
    return sp.Max(sp.Abs(1 - a), sp.Abs(1 - (m_ + 1) * a))


@cache
def easgd_bound(alpha_: sp.Expr | float | None = None) -> Bound:
    """EASGD, A(τ, W_α, 1): v = 1, ζ = ζ(W_α). ``alpha_=None`` keeps α symbolic; pass
    ``"optimal"`` for α* = 2/(m+2), ζ* = m/(m+2) (digest §1.7.3, derived). Otherwise the bound
    carries the condition ζ(W_α) < 1, i.e. 0 < α < 2/(m+1) (Theorem 1 needs ζ < 1, digest §1.5):
    outside it the network term is meaningless (negative or unbounded)."""
    if alpha_ == "optimal":
        z = easgd_optimal_alpha(m)[1]
    else:
        z = easgd_zeta(m, alpha if alpha_ is None else alpha_)
    b = _special("EASGD A(τ, W_α, 1)", "v = 1, W = W_α", "1.7.3", status=Status.DERIVED,
                 v=1, zeta=z)
    if alpha_ == "optimal":
        return b
    cond = Condition("ζ(W_α) < 1, i.e. 0 < α < 2/(m+1)", sp.Lt(z, 1), Source(
        "derived", "spectrum {1, 1 − α, 1 − (m+1)α} of W_α with Theorem 1's ζ < 1",
        Status.DERIVED, digest="1.4, 1.5"))
    if cond.relation == sp.false:
        raise ConditionError(f"easgd_bound: alpha_ = {alpha_} gives ζ(W_α) ≥ 1 for every m "
                             "(Theorem 1 needs 0 < α < 2/(m+1))")
    return b.with_conditions(cond)


# --- derived results --------------------------------------------------------------------------
def error_floor(b: Bound) -> sp.Expr:
    """K → ∞ limit of a bound (the error floor)."""
    return sp.limit(b.expr, K, sp.oo)


def pasgd_dpsgd_crossover(zeta_: sp.Expr = zeta) -> sp.Expr:
    """τ_eq with equal error floors of PASGD(τ) and D-PSGD(ζ), solved by sympy from the two
    special cases: τ_eq = (1+ζ²)/(1−ζ²) (derived, digest §1.8). PASGD has the smaller floor iff
    τ < τ_eq."""
    f_pasgd = error_floor(pasgd_bound())
    f_dpsgd = error_floor(dpsgd_bound())
    (sol,) = sp.solve(sp.Eq(f_pasgd, f_dpsgd), tau)
    num, den = sp.fraction(sp.cancel(sol))
    if num.could_extract_minus_sign():
        num, den = -num, -den
    return (sp.expand(num) / sp.expand(den)).subs(zeta, zeta_)


def easgd_optimal_alpha(m_: int | sp.Expr = m) -> tuple[sp.Expr, sp.Expr]:
    """(α*, ζ*) minimising ζ(α) = max(|1−α|, |1−(m+1)α|) over α > 0, found exactly.

    ζ(α) is convex piecewise linear, so its minimum lies at a breakpoint: a zero of 1−α or
    1−(m+1)α, or a crossing ±(1−α) = ±(1−(m+1)α). The code enumerates these and picks the best;
    for m ≥ 2 the result is α* = 2/(m+2), ζ* = m/(m+2) (digest §1.7.3, derived); for m = 1 the
    spectrum is {1, 1 − 2α} and α* = 1/2 gives ζ* = 0. A symbolic m is taken to be ≥ 2."""
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
    """(1+ζ*²)/(1−ζ*²) at the optimal elasticity = (m²+2m+2)/(2(m+1)) (derived, §1.7.3)."""
    _, z = easgd_optimal_alpha(m_)
    return sp.factor(sp.simplify(_network_factor(z)))


# --- runtime (AdaComm companion paper) ----------------------------------------------------------
@cache
def runtime_bound() -> Bound:
    """Error at wall-clock time T_wall for PASGD with compute time Y per step and communication
    time D per round (digest §1.9, AdaComm, recalled):

        min_k E‖∇F(x̄_k)‖² ≤ 2ΔF/(η T_wall)·(Y + D/τ) + ηLσ²/m + η²L²σ²(τ − 1)."""
    terms = {
        "optimization": 2 * F_gap / (eta * T_wall) * (Y + D / tau),
        "variance": eta * L * sigma2 / m,
        "network": eta**2 * L**2 * sigma2 * (tau - 1),
    }
    src = Source(ADACOMM, "error–runtime bound of PASGD", Status.RECALLED, confidence="med",
                 digest="1.9", note="companion paper of Cooperative SGD; not checked against the "
                 "PDF")
    return Bound("PASGD error vs wall-clock (AdaComm)", sp.Add(*terms.values()), src, terms=terms,
                 lhs="min_k E‖∇F(x̄_k)‖² within wall-clock T_wall", conditions=(PASGD_LR,))


def optimal_tau_runtime() -> sp.Expr:
    """τ* = sqrt(2ΔF·D/(η³L²σ²T_wall)), the stationary point of :func:`runtime_bound` in τ, found
    by ``Bound.minimize`` (derived, digest §1.9)."""
    return runtime_bound().minimize(tau).argmin


__all__ = [
    "ETA_EFF", "PASGD_LR", "THEOREM_1", "cooperative_bound", "decentralized_periodic_bound",
    "dpsgd_bound", "easgd_bound", "easgd_network_factor", "easgd_optimal_alpha", "easgd_zeta",
    "error_floor", "optimal_tau_runtime", "pasgd_bound", "pasgd_dpsgd_crossover",
    "runtime_bound", "synchronous_bound",
]
