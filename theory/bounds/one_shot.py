"""Growing communication intervals and one-shot averaging (Spiridonoff, Olshevsky, Paschalidis,
NeurIPS 2021, arXiv:2106.04759) — **scaling statements only**.

The main theorem's constants, admissible step sizes, κ- and c-dependence, and even which error it
bounds are not known to this toolkit (the paper's theorems were not available). This module
therefore encodes no bound with constants. It exposes:

* :data:`ABSTRACT_CLAIMS` — what the abstract says (verified against it, paraphrased):
  Ω(N) communications suffice for error ∝ 1/(NT), independent of T; √N or N^{3/4}
  communications fail; one-shot averaging achieves the optimal rate for objectives twice
  differentiable near x* — "asymptotically" is recalled (high confidence): the readable abstract
  is cut off there.
* :func:`extra_error` and :func:`required_rounds` — the heuristic scaling of the error caused by
  local steps, ``∝ κ²σ²/(μ²T²) · Σ_t H(t)/t``, and the number of rounds it takes to match the
  speed-up term ``σ²/(μ²NT)``. **Derived** (this toolkit's heuristic) — *up to unknown
  constants*, and the κ-power is our heuristic, not the paper's.
* :func:`sum_H_over_t_approx` — approximations of ``Σ_t H(t)/t`` for constant and linearly
  growing intervals (derived); the exact sum of any schedule is
  :func:`theory.schedule_library.sum_H_over_t`.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from theory.bound import Source, Status
from theory.symbols import N, R, T, kappa, mu, sigma2

PAPER = ("Spiridonoff, Olshevsky, Paschalidis, Communication-efficient SGD: From Local SGD to "
         "One-Shot Averaging, NeurIPS 2021 (arXiv:2106.04759)")

#: Σ_{t=1}^{T} H(t)/t, H(t) = length of the communication interval containing step t
S_H = sp.Symbol("S_H", positive=True)

DERIVED = Source(PAPER, "heuristic scaling (not the paper's theorem)", Status.DERIVED,
                 digest="4.4", note="no constants: every statement holds up to an unknown "
                 "constant factor; the κ² dependence is our heuristic")
ABSTRACT = Source(PAPER, "abstract", Status.QUOTED, digest="4.2")


@dataclass(frozen=True)
class Scaling:
    """A statement ``quantity ∝ expr`` (or ``≳``), holding up to a constant factor."""

    quantity: str
    relation: str  # "∝" or "≳"
    expr: sp.Expr
    source: Source

    def __str__(self) -> str:
        return f"{self.quantity} {self.relation} {sp.sstr(self.expr)}  [{self.source.status}]"


ABSTRACT_CLAIMS: tuple[str, ...] = (
    "error ∝ 1/(NT) with a number of communications independent of T: Ω(N) communications suffice",
    "√N or N^{3/4} communications fail to achieve linear speed-up (simulations)",
    "one-shot averaging (a single round) achieves the optimal rate under mild assumptions, "
    "chiefly twice differentiability near the optimum ('asymptotically': recalled, high "
    "confidence; the readable abstract is cut off there)",
)


def extra_error(S: sp.Expr = S_H) -> Scaling:
    """Extra error from local steps: ``∝ κ²σ²/(μ²T²) · Σ_t H(t)/t`` [derived heuristic].

    Within a round of length H the drift is ~ η_t²σ²H with η_t ~ 1/(μt); the weighted average over
    t of the optimality gap collects ``Σ_t H(t)/t``.
    """
    return Scaling("extra error from local steps", "∝", kappa**2 * sigma2 / (mu**2 * T**2) * S,
                   DERIVED)


def speedup_term() -> Scaling:
    """The linear-speed-up (optimal) term ``∝ σ²/(μ²NT)`` [derived heuristic]."""
    return Scaling("linear-speed-up term", "∝", sigma2 / (mu**2 * N * T), DERIVED)


def sum_H_over_t_approx(kind: str) -> sp.Expr:
    """Approximate ``Σ_{t=1}^{T} H(t)/t`` for R rounds [derived by this toolkit]:

    * ``"constant"`` (H = T/R): ``(T/R)(ln T + γ)`` (H times the harmonic number H_T);
    * ``"linear"`` (H_i = a·i, a = 2T/(R(R+1))): round i ≥ 2 contributes
      ``a i ln((i+1)/(i−1)) ≈ 2a``, the first round ``a·H_a ≈ a(ln a + γ)``; total
      ``2a(R−1) + a(ln a + γ)``, whose leading term is ``4T/R`` (the heuristic's value). The first
      round's ``a ln a ~ (2T/R²) ln(T/R²)`` is a log factor suppressed by 1/R² instead of 1/R.

    Measured against the exact :func:`theory.schedule_library.sum_H_over_t` on
    T ∈ [10³, 10⁵], 2 ≤ R ≤ 100, T ≥ R(R+1)/2 (the linear schedule needs it): linear within 3%
    (worst 2.7% at T = 1000, R = 4), constant within 0.01%.
    """
    if kind == "constant":
        return T / R * (sp.log(T) + sp.EulerGamma)
    if kind == "linear":
        a = 2 * T / (R * (R + 1))
        return 2 * a * (R - 1) + a * (sp.log(a) + sp.EulerGamma)
    raise ValueError(f"kind must be 'constant' or 'linear'; got {kind!r}")


#: leading orders of :func:`sum_H_over_t_approx` (T → ∞ for constant, R → ∞ for linear)
LEADING = {"constant": T / R * sp.log(T), "linear": 4 * T / R}


def required_rounds(kind: str) -> Scaling:
    """Rounds R for which the extra error does not exceed the speed-up term, solved by sympy from
    :func:`extra_error` and :func:`speedup_term` with the leading order of ``Σ_t H(t)/t``
    (:data:`LEADING`) [derived]: ``"constant"`` → ``R ≳ κ² N ln T``; ``"linear"`` → ``R ≳ κ² N``
    (independent of T; the paper's abstract states Ω(N) with no κ)."""
    if kind not in LEADING:
        raise ValueError(f"kind must be 'constant' or 'linear'; got {kind!r}")
    r = sp.Symbol("r", positive=True)
    eq = sp.Eq(extra_error(LEADING[kind].subs(R, r)).expr, speedup_term().expr)
    sols = [s for s in sp.solve(eq, r) if s.is_positive is not False]
    if len(sols) != 1:
        raise RuntimeError(f"required_rounds: expected one positive root; got {sols}")
    expr = sp.simplify(sols[0])
    # drop numeric constant factors: scaling statement only
    expr = sp.Mul(*[f for f in sp.Mul.make_args(expr) if not f.is_number])
    return Scaling(f"rounds R for linear speed-up ({kind} intervals)", "≳", expr, DERIVED)


__all__ = [
    "ABSTRACT", "ABSTRACT_CLAIMS", "DERIVED", "LEADING", "S_H", "Scaling", "extra_error",
    "required_rounds", "speedup_term", "sum_H_over_t_approx",
]
