"""SQuARM-SGD (Singh, Data, George, Diggavi, "SQuARM-SGD: Communication-Efficient Momentum SGD
for Decentralized Optimization", arXiv:2005.07041, IEEE JSAIT 2021) — **scaling statements only**.

What is known (references: ``docs/references.md``):

* The rates, from the abstract (quoted): O(1/(nT)) for smooth strongly convex
  objectives and O(1/√(nT)) for non-convex ones, "matching vanilla distributed SGD", with n the
  number of nodes and T the number of iterations. The constants, the step sizes, which error is
  bounded (last iterate or an average, ‖∇f‖² or f − f*) and the conditions on τ, γ, c_t and ω
  are **not known**: this module encodes no bound with constants, so no measurement can be
  checked *against a value*; only trends (e.g. the n·T dependence) can be compared.
* The compressor condition E‖x − C(x)‖² ≤ (1 − ω)‖x‖², ω ∈ (0, 1] (the toolkit's contraction δ,
  :data:`theory.symbols.delta`), and the trigger schedule c_t ≤ c₀ t^{1−ε}: stated in the sister
  paper SPARQ-SGD, as transcribed by a third-party implementation page — not checked against
  either paper.
* The update equations (third-party transcription, not checked against the paper)
  are implemented by ``empirics.squarm`` (:class:`empirics.configs.Gossip`).

Symbols: the paper's n (nodes) is :data:`theory.symbols.m` (workers) here; T is
:data:`theory.symbols.T`.
"""

from __future__ import annotations

import sympy as sp

from theory.bound import Source, Status
from theory.bounds.one_shot import Scaling
from theory.symbols import T, delta, m

PAPER = ("Singh, Data, George, Diggavi, SQuARM-SGD: Communication-Efficient Momentum SGD for "
         "Decentralized Optimization (arXiv:2005.07041; IEEE JSAIT 2021)")

ABSTRACT = Source(PAPER, "abstract", Status.QUOTED, digest="5(b)",
                  note="rate orders only: constants, step sizes, the bounded quantity and the "
                       "conditions are not known")
TRANSCRIPTION = Source(PAPER, "update equations and compressor/trigger conditions",
                       Status.RECALLED, confidence="med", digest="5(b)",
                       note="as transcribed by a third-party implementation page "
                            "(junaidaliop.github.io; conditions from the sister paper SPARQ-SGD); "
                            "not checked against the paper, so not a quotation of it")

#: the trigger-schedule exponent ε of c_t ≤ c₀ t^{1−ε}
eps = sp.Symbol("epsilon", positive=True)
c0 = sp.Symbol("c_0", nonnegative=True)
t = sp.Symbol("t", positive=True)

SQUARM_CLAIMS: tuple[str, ...] = (
    "nodes run a fixed number of local SGD steps with Nesterov momentum, then send sparsified "
    "and quantised updates to their neighbours only when a locally computable trigger fires",
    "rate O(1/(nT)) for smooth strongly convex objectives",
    "rate O(1/√(nT)) for smooth non-convex objectives, matching vanilla distributed SGD",
    "first analysis of compressed decentralized SGD with momentum (arXiv v3 abstract)",
)


def squarm_rate(kind: str) -> Scaling:
    """The abstract's rate as a scaling statement [quoted from the abstract; constants unknown]:
    ``"strongly_convex"`` → error ∝ 1/(nT); ``"nonconvex"`` → error ∝ 1/√(nT) (n = m nodes).
    The exact error quantity is not known (stated in the quantity's text)."""
    if kind == "strongly_convex":
        return Scaling("suboptimality (quantity and averaging not known), smooth strongly convex",
                       "∝", 1 / (m * T), ABSTRACT)
    if kind == "nonconvex":
        return Scaling("stationarity gap (quantity and averaging not known), smooth non-convex",
                       "∝", 1 / sp.sqrt(m * T), ABSTRACT)
    raise ValueError(f"kind must be 'strongly_convex' or 'nonconvex'; got {kind!r}")


def squarm_compressor_condition(x_norm2: sp.Expr | None = None) -> sp.Rel:
    """E‖x − C(x)‖² ≤ (1 − ω)‖x‖² with ω = :data:`theory.symbols.delta` ∈ (0, 1]
    [third-party transcription, recalled], as a sympy relation in the symbols
    ``E_err`` (= E‖x − C(x)‖²) and ``x2`` (= ‖x‖², or ``x_norm2``)."""
    x2 = sp.Symbol("x2", nonnegative=True) if x_norm2 is None else x_norm2
    return sp.Le(sp.Symbol("E_err", nonnegative=True), (1 - delta) * x2)


def squarm_trigger_condition() -> sp.Rel:
    """c_t ≤ c₀ t^{1−ε} (the threshold schedule's growth bound; SPARQ-SGD via a third-party
    transcription, recalled); :class:`empirics.configs.PowerThreshold` is the equality case."""
    return sp.Le(sp.Symbol("c_t", nonnegative=True), c0 * t ** (1 - eps))


__all__ = [
    "ABSTRACT", "PAPER", "SQUARM_CLAIMS", "TRANSCRIPTION", "squarm_compressor_condition",
    "squarm_rate", "squarm_trigger_condition",
]
