"""Canonical sympy symbols shared by every bound.

Each symbol is created once, with the sympy assumptions that hold for it, and registered under a
Python keyword name (``eta``, ``sigma2``, ``F_gap`` ...). ``Bound.evaluate(eta=0.01, ...)`` and
friends look values up by these names. Domains that sympy assumptions cannot express (``ζ < 1``,
``m ≥ 1``) are stored in :data:`DOMAINS` and checked on evaluation.

Example:
    >>> from theory.symbols import eta, L, tau
    >>> (eta * L * tau).free_symbols == {eta, L, tau}
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import sympy as sp

from theory import checks


@dataclass(frozen=True)
class Domain:
    """The admissible values of one symbol: ``lower <(=) x <(=) upper``, integer or real."""

    lower: float | None = None
    upper: float | None = None
    lower_strict: bool = False
    upper_strict: bool = False
    integer: bool = False

    def describe(self) -> str:
        """The rule in the words of :mod:`theory.checks`: ``"an integer >= 1"``, ``"a real
        number in [0, 1)"``."""
        rng = checks.describe_range(self.lower, self.upper, lo_strict=self.lower_strict,
                                    hi_strict=self.upper_strict)
        return f"{'an integer' if self.integer else 'a real number'} {rng}".rstrip()

    def contains(self, x: float) -> bool:
        if x != x:  # NaN
            return False
        if self.integer and float(x) != round(float(x)):
            return False
        if self.lower is not None and (x <= self.lower if self.lower_strict else x < self.lower):
            return False
        return not (
            self.upper is not None and (x >= self.upper if self.upper_strict else x > self.upper)
        )


#: keyword name -> sympy Symbol
SYMBOLS: dict[str, sp.Symbol] = {}
#: sympy Symbol -> Domain
DOMAINS: dict[sp.Symbol, Domain] = {}
#: sympy Symbol -> one-line meaning
MEANINGS: dict[sp.Symbol, str] = {}


def _sym(key: str, latex: str, meaning: str, domain: Domain, **assumptions: bool) -> sp.Symbol:
    s = sp.Symbol(latex, **assumptions)
    SYMBOLS[key] = s
    DOMAINS[s] = domain
    MEANINGS[s] = meaning
    return s


def define(key: str, latex: str, meaning: str, domain: Domain, **assumptions: bool
           ) -> sp.Symbol:
    """The symbol registered under ``key``, registering it first (sympy ``latex`` name, one-line
    ``meaning``, ``domain``, sympy assumptions) if it is missing: how a bounds module adds its own
    symbols, once however often it is imported."""
    return SYMBOLS[key] if key in SYMBOLS else _sym(key, latex, meaning, domain, **assumptions)


_pos = Domain(lower=0, lower_strict=True)
_nonneg = Domain(lower=0)
_int1 = Domain(lower=1, integer=True)

# --- optimisation and noise -------------------------------------------------------------------
eta = _sym("eta", "eta", "learning rate η", _pos, positive=True)
eta_eff = _sym("eta_eff", "eta_eff", "effective learning rate mη/(m+v)", _pos, positive=True)
L = _sym("L", "L", "smoothness constant of F", _pos, positive=True)
mu = _sym("mu", "mu", "PL / strong-convexity constant μ", _pos, positive=True)
kappa = _sym("kappa", "kappa", "condition number L/μ", Domain(lower=1), positive=True)
sigma2 = _sym("sigma2", "sigma^2", "gradient-noise variance σ²", _nonneg, nonnegative=True)
beta = _sym("beta", "beta", "multiplicative noise β: E‖g−∇F‖² ≤ β‖∇F‖² + σ²", _nonneg,
            nonnegative=True)
C1 = _sym("C1", "C_1", "multiplicative noise C₁ (Haddadpour et al.)", _nonneg, nonnegative=True)
B = _sym("B", "B", "mini-batch size per worker", _int1, positive=True, integer=True)
F_gap = _sym("F_gap", "Delta_F", "initial gap F(u_1) − F_inf", _nonneg, nonnegative=True)
kappa2 = _sym("kappa2", "kappa^2",
              "heterogeneity κ² ≥ (1/m) Σ_i ‖∇F_i(x) − ∇F(x)‖² for every x (Cooperative SGD, "
              "JMLR Theorem 2; not the condition number κ)", _nonneg, nonnegative=True)
consensus_avg = _sym(
    "consensus_avg", "Xi",
    "average consensus distance Ξ = (1/K) Σ_{k=1..K} E‖X_k(I − J)‖²_F / m, X_k the d × (m+v) "
    "matrix of models, J = 11ᵀ/(m+v) (the last term of JMLR Lemma 2, eq. 38; measured on a run)",
    _nonneg, nonnegative=True)

# --- workers, periods, iterations -------------------------------------------------------------
m = _sym("m", "m", "number of workers", _int1, positive=True, integer=True)
p = _sym("p", "p", "number of workers (Haddadpour et al.)", _int1, positive=True, integer=True)
N = _sym("N", "N", "number of workers (Spiridonoff et al.)", _int1, positive=True, integer=True)
v = _sym("v", "v", "number of auxiliary variables", Domain(lower=0, integer=True),
         nonnegative=True, integer=True)
tau = _sym("tau", "tau", "communication period τ (local steps per round)", _int1, positive=True,
           integer=True)
tau0 = _sym("tau0", "tau_0", "initial communication period τ₀", _int1, positive=True,
            integer=True)
K = _sym("K", "K", "number of iterations", Domain(lower=1), positive=True)
T = _sym("T", "T", "number of local iterations per worker", Domain(lower=1), positive=True)
R = _sym("R", "R", "number of communication rounds", _int1, positive=True, integer=True)
E = _sym("E", "E", "number of communication rounds (Haddadpour et al.)", _int1, positive=True,
         integer=True)

# --- topology ---------------------------------------------------------------------------------
zeta = _sym("zeta", "zeta", "ζ = max(|λ₂(W)|, |λ_n(W)|), second-largest eigenvalue magnitude",
            Domain(lower=0, upper=1, upper_strict=True), nonnegative=True)
alpha = _sym("alpha", "alpha", "elasticity α of EASGD", Domain(lower=0, lower_strict=True),
             positive=True)

# --- compression ------------------------------------------------------------------------------
delta = _sym("delta", "delta", "compressor contraction δ: E‖x−C(x)‖² ≤ (1−δ)‖x‖²",
             Domain(lower=0, upper=1, lower_strict=True), positive=True)
omega = _sym("omega", "omega", "compressor variance ω: E‖C(x)−x‖² ≤ ω‖x‖²", _nonneg,
             nonnegative=True)

# --- runtime ----------------------------------------------------------------------------------
Y = _sym("Y", "Y", "compute time per local step", _pos, positive=True)
D = _sym("D", "D", "communication time per round", _nonneg, nonnegative=True)
T_wall = _sym("T_wall", "T_wall", "wall-clock budget", _pos, positive=True)


#: extra explanation when a value is out of its domain
HINTS: dict[sp.Symbol, str] = {
    zeta: "ζ = 1 means W's graph is disconnected (or W has eigenvalue −1, e.g. a bipartite graph "
          "with zero self-weights); consensus is never reached and the network term is infinite",
}


def symbol(name: str | sp.Symbol) -> sp.Symbol:
    """The canonical symbol for a keyword name (``"eta"``) or its printed name (``"sigma^2"``)."""
    if isinstance(name, sp.Symbol):
        return name
    if name in SYMBOLS:
        return SYMBOLS[name]
    for s in SYMBOLS.values():
        if s.name == name:
            return s
    raise KeyError(f"unknown symbol {name!r}; known keyword names: {', '.join(sorted(SYMBOLS))}")


def keyword(s: sp.Symbol) -> str:
    """The keyword name under which ``s`` is passed to ``evaluate`` (``sigma^2`` -> ``sigma2``)."""
    for k, v_ in SYMBOLS.items():
        if v_ == s:
            return k
    return s.name


def check_value(s: sp.Symbol, x: float) -> None:
    """Raise ``ValueError`` naming the symbol if ``x`` is not finite or outside its domain."""
    if not math.isfinite(float(x)):
        raise ValueError(f"{keyword(s)} must be finite ({MEANINGS.get(s, s.name)}); got {x!r}")
    dom = DOMAINS.get(s)
    if dom is not None and not dom.contains(float(x)):
        hint = HINTS.get(s, "")
        raise checks.refuse(keyword(s), dom.describe(), x,
                            why=MEANINGS[s] + (f"; {hint}" if hint else ""))


__all__ = [
    "DOMAINS", "MEANINGS", "SYMBOLS", "B", "C1", "D", "E", "F_gap", "K", "L", "N", "R", "T",
    "T_wall", "Y", "Domain", "alpha", "beta", "check_value", "consensus_avg", "define", "delta",
    "eta", "eta_eff", "kappa", "kappa2", "keyword", "m", "mu", "omega", "p", "sigma2", "symbol",
    "tau", "tau0", "v", "zeta",
]
