"""`Bound`: a convergence bound a researcher can hold, print, substitute into and optimise.

A bound is ``lhs ≤ expr`` where ``expr`` is a sympy expression in the canonical symbols of
:mod:`theory.symbols`, split into named ``terms`` (they sum to ``expr``), valid under
``conditions`` (sympy relations such as the learning-rate condition), and traced to a
:class:`Source` with an honest provenance ``status``. The papers behind every Source are listed,
with the theorem and equation numbers used, in ``docs/references.md``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import numpy as np
import sympy as sp

from theory.symbols import DOMAINS, check_value, keyword, symbol
from theory.symbols import eta as _eta
from theory.symbols import zeta as _zeta


class Status(StrEnum):
    """Provenance of a formula.

    * ``quoted``: checked against the paper's own text (theorem and equation numbers given).
    * ``recalled``: a recollection of the paper's text that has not been checked against it.
    * ``derived``: derived by this toolkit from definitions or from other formulas; it is *not*
      a statement of the paper.
    """

    QUOTED = "quoted"
    RECALLED = "recalled"
    DERIVED = "derived"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Source:
    """Where a formula comes from.

    Args:
        paper: citation a reader can follow, e.g. ``"Wang & Joshi, Cooperative SGD, JMLR 22(213),
            2021 (arXiv:1808.07576)"`` (full references: ``docs/references.md``).
        where: theorem / equation / section, e.g. ``"Theorem 1, eqs. 16–17 (JMLR)"``.
        status: :class:`Status` (quoted / recalled / derived).
        confidence: for recalled items, ``"high"``, ``"med"`` or ``"low"``.
        digest: maintainers only — the section of the maintainers' reading notes the formula was
            checked against. Never printed, never in ``repr`` or in JSON a user sees.
        note: anything a reader must know (e.g. "constants not verified against the paper").
    """

    paper: str
    where: str
    status: Status
    confidence: str | None = None
    digest: str | None = field(default=None, repr=False, compare=False)
    note: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status(self.status))
        if self.confidence not in (None, "high", "med", "low"):
            raise ValueError(f"confidence must be high/med/low or None; got {self.confidence!r}")

    def __str__(self) -> str:
        conf = f", confidence {self.confidence}" if self.confidence else ""
        note = f" — {self.note}" if self.note else ""
        return f"{self.paper}, {self.where} [{self.status}{conf}]{note}"

    def to_dict(self) -> dict[str, Any]:
        """The user-facing fields (``digest`` is for maintainers and is left out)."""
        return {"paper": self.paper, "where": self.where, "status": str(self.status),
                "confidence": self.confidence, "note": self.note}


class ConditionError(ValueError):
    """A bound was evaluated where one of its conditions fails."""


class UnusedParameterWarning(UserWarning):
    """A value was given for a symbol that neither the bound nor its conditions contain."""


@dataclass(frozen=True)
class Condition:
    """A condition a bound needs, e.g. the learning-rate condition ``ηL + η²L²τ(τ−1) ≤ 1``.

    For a condition of the form ``a·η + b·η² ≤ c`` (a, b, c ≥ 0 free of η) — every learning-rate
    condition of the papers — :meth:`largest` gives the largest admissible value of η exactly:
    ``2c/(a + √(a² + 4bc))``, the positive root.
    """

    name: str
    relation: sp.Basic
    source: Source | None = None

    def subs(self, mapping: Mapping[sp.Symbol, Any]) -> Condition:
        return replace(self, relation=self.relation.subs(mapping))

    def __str__(self) -> str:
        return f"{self.name}: {sp.sstr(self.relation)}"

    def largest(self, var: str | sp.Symbol = _eta) -> sp.Expr | None:
        """The largest value of ``var`` (default η) satisfying the condition, in closed form (a
        sympy expression in the other symbols; ``oo`` if the condition does not bound ``var``),
        or ``None`` when the condition is not of the form ``a·x + b·x² ≤ c`` with a, b, c ≥ 0."""
        x = symbol(var)
        return _largest_root(self.relation, x)


def _largest_root(rel: sp.Basic, x: sp.Symbol) -> sp.Expr | None:
    """Largest x with ``a·x + b·x² ≤ c`` (see :meth:`Condition.largest`); None if ``rel`` is not
    of that form (a, b, c ≥ 0, or at least not provably negative)."""
    if isinstance(rel, sp.core.relational.LessThan | sp.core.relational.StrictLessThan):
        lhs, rhs = rel.lhs, rel.rhs
    elif isinstance(rel, sp.core.relational.GreaterThan | sp.core.relational.StrictGreaterThan):
        lhs, rhs = rel.rhs, rel.lhs
    else:
        return None
    expr = lhs - rhs
    if x not in expr.free_symbols:
        return None
    try:
        poly = sp.Poly(sp.expand(expr), x)
    except sp.PolynomialError:
        return None
    if poly.degree() > 2 or any(x in cf.free_symbols for cf in poly.all_coeffs()):
        return None
    c0 = poly.coeff_monomial(1)
    a = poly.coeff_monomial(x)
    b = poly.coeff_monomial(x**2)
    c = -c0
    if any(t.is_negative for t in (a, b, c)):
        return None
    if a == 0 and b == 0:
        return sp.oo
    return 2 * c / (a + sp.sqrt(a**2 + 4 * b * c))


def _fmt_num(x: Any) -> str:
    try:
        return f"{float(x):.6g}"
    except (TypeError, ValueError):
        return sp.sstr(x)


#: the measured quantities a bound's left side can be (a :class:`Setting`'s ``metric``)
METRICS: dict[str, str] = {
    "grad_norm2_running": "(1/K) Σ_{k<K} ‖∇F(u_k)‖²",
    "suboptimality": "F(u_k) − F*",
    "grad_norm2": "‖∇F(u_k)‖²",
}

#: the hypotheses a :class:`Setting` can name, as a run must satisfy them (checked by
#: ``empirics.match`` against the run's configuration, problem and step size)
ASSUMPTIONS: dict[str, str] = {
    "iid": "every worker's stochastic gradient is unbiased for ∇F (i.i.d. data across workers: "
           "heterogeneity κ² = 0)",
    "plain_sgd": "plain SGD local steps (no momentum, no compression)",
    "additive_noise": "additive gradient noise, E‖g − ∇F‖² ≤ σ² (β = 0) unless the bound has β",
    "symmetric_W": "Assumption 5: every W symmetric with W1 = 1 and ζ = max(|λ₂|, |λ_n|) < 1",
    "constant_period": "one communication period τ for the whole run",
    "tau_divides_K": "K divisible by τ",
    "full_averaging": "every mixing step is exact averaging, W = J",
    "pl": "F satisfies the PL condition (μ > 0)",
    "alpha_optimal": "EASGD's elasticity is α* = 2/(m+2) (JMLR Lemma 1)",
}


@dataclass(frozen=True)
class Setting:
    """The run a bound speaks about, in terms a measurement can be matched with.

    Args:
        metric: the measured quantity that is the bound's left side: ``"grad_norm2_running"``
            ((1/K) Σ_{k<K} ‖∇F(u_k)‖²), ``"suboptimality"`` (F(u_T) − F*), ``"grad_norm2"``
            (‖∇F(u_K)‖²) or ``"consensus_running"``.
        horizon: keyword of the symbol that is the run's length (``"K"`` or ``"T"``), so the
            bound is evaluated at every recorded step; None when the horizon is built in.
        assumptions: hypotheses of :data:`ASSUMPTIONS` the run must satisfy.
        stepsize: ``"constant"`` (η constant), ``"pl"`` (the PL theorem's η_t) or ``"any"``.
        describes: configuration names the bound is about (``"pasgd"``, ...); empty: any
            Cooperative SGD configuration.
        sigma2: ``"batch"`` (σ² of one worker's mini-batch gradient) or ``"sample"`` (the
            single-sample σ², the batch size B a separate symbol).
        unknown: hypotheses of the theorem that are not known (the paper's text for them was
            not available), each a phrase naming it. No run can be shown to satisfy them, so a
            measurement tested against the bound is *inconclusive*, never "holds" or
            "violated", with them named (:func:`empirics.experiment.run_experiment`).
    """

    metric: str
    horizon: str | None = "K"
    assumptions: tuple[str, ...] = ()
    stepsize: str = "constant"
    describes: tuple[str, ...] = ()
    sigma2: str = "batch"
    unknown: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {sorted(METRICS)} (got {self.metric!r})")
        bad = [a for a in self.assumptions if a not in ASSUMPTIONS]
        if bad:
            raise ValueError(f"unknown assumption(s) {bad}; known: {sorted(ASSUMPTIONS)}")
        if self.stepsize not in ("constant", "pl", "any"):
            raise ValueError(f"stepsize must be 'constant', 'pl' or 'any' (got "
                             f"{self.stepsize!r})")
        if self.sigma2 not in ("batch", "sample"):
            raise ValueError(f"sigma2 must be 'batch' or 'sample' (got {self.sigma2!r})")
        if isinstance(self.unknown, str) or not all(
                isinstance(u, str) and u.strip() for u in self.unknown):
            raise ValueError(f"unknown must be a tuple of non-empty phrases naming the "
                             f"hypotheses that are not known (got {self.unknown!r})")


@dataclass(frozen=True)
class Optimum:
    """Result of :meth:`Bound.minimize`.

    ``argmin`` is a float/int (numeric) or a sympy expression (symbolic); ``closed_form`` is the
    stationary point sympy found (``None`` when the optimum came from a numeric search).
    """

    symbol: sp.Symbol
    argmin: Any
    value: Any
    method: str
    closed_form: sp.Expr | None = None

    def __iter__(self):  # allows ``x, f = bound.minimize(...)``
        yield self.argmin
        yield self.value

    def __repr__(self) -> str:
        cf = f", closed_form={sp.sstr(self.closed_form)}" if self.closed_form is not None else ""
        return (f"Optimum({keyword(self.symbol)}={self.argmin!r}, value={self.value!r}, "
                f"method={self.method!r}{cf})")


def _mixing_zeta(name: str, s: sp.Symbol, x: Any) -> Any:
    """ζ of a MixingMatrix (or of an object carrying one in ``.mixing``, e.g. a design result)
    given for ``zeta``; ``x`` unchanged otherwise."""
    from theory.mixing import MixingMatrix

    W = x if isinstance(x, MixingMatrix) else getattr(x, "mixing", None)
    if not isinstance(W, MixingMatrix):
        return x
    if s != _zeta:
        raise ValueError(f"{name} was given a mixing matrix ({W.name}); only zeta= takes one "
                         "(its ζ = W.zeta is used)")
    return float(W.zeta)


def checked_value(name: str, s: sp.Symbol, x: Any) -> Any:
    """``x`` for symbol ``s`` with a MixingMatrix replaced by its ζ and non-finite numbers
    refused (ValueError naming the argument)."""
    x = _mixing_zeta(name, s, x)
    if isinstance(x, sp.Basic):
        if x.is_number and x.has(sp.oo, -sp.oo, sp.zoo, sp.nan):
            raise ValueError(f"{name} must be finite; got {x}")
        return x
    if isinstance(x, int | float | np.integer | np.floating):
        if not math.isfinite(float(x)):
            raise ValueError(f"{name} must be finite; got {x!r}")
        return x
    return x  # arrays: checked by Bound.grid


def _as_mapping(values: Mapping[Any, Any] | None, kw: Mapping[str, Any]) -> dict[sp.Symbol, Any]:
    out: dict[sp.Symbol, Any] = {}
    for k, x in {**(values or {}), **kw}.items():
        s = symbol(k)
        out[s] = checked_value(keyword(s), s, x)
    return out


#: LaTeX of the left sides the toolkit's bounds use (a Bound may also set ``lhs_latex``)
LHS_LATEX: dict[str, str] = {
    "E[(1/K) Σ_{k=1..K} ‖∇F(u_k)‖²]":
        r"\mathbb{E}\Big[\frac{1}{K}\sum_{k=1}^{K}\|\nabla F(u_k)\|^2\Big]",
    "E[(1/K) Σ_k ‖∇F(u_k)‖²] within wall-clock T_wall":
        r"\mathbb{E}\Big[\frac{1}{K}\sum_{k=1}^{K}\|\nabla F(u_k)\|^2\Big]"
        r"\ \text{within wall-clock } T_{\mathrm{wall}}",
    "min_k E‖∇F(x̄_k)‖² within wall-clock T_wall":
        r"\min_k \mathbb{E}\|\nabla F(\bar x_k)\|^2\ \text{within wall-clock } T_{\mathrm{wall}}",
    "E[F(x̄_T)] − F*": r"\mathbb{E}[F(\bar x_T)] - F^*",
    "sup_t E‖m_t‖²": r"\sup_t \mathbb{E}\|m_t\|^2",
}

_TEX_TOKENS = (
    ("‖", r"\|"), ("∇", r"\nabla "), ("Σ", r"\sum "), ("²", "^2"), ("³", "^3"), ("≤", r"\le "),
    ("≥", r"\ge "), ("−", "-"), ("x̄", r"\bar x"), ("ū", r"\bar u"), ("τ", r"\tau "),
    ("η", r"\eta "), ("ζ", r"\zeta "), ("σ", r"\sigma "), ("κ", r"\kappa "), ("μ", r"\mu "),
    ("E[", r"\mathbb{E}["), ("E‖", r"\mathbb{E}\|"),
)


def _tex_text(s: str) -> str:
    r"""``s`` escaped for ``\text{...}``."""
    out = s.replace("\\", r"\backslash ")
    for ch in "{}_^#$%&~":
        out = out.replace(ch, "\\" + ch)
    return out


def lhs_to_latex(lhs: str) -> str:
    """LaTeX for a left side written in the toolkit's plain-text notation: the known ones from
    :data:`LHS_LATEX`, otherwise a token-by-token conversion (``‖``, ``∇``, ``Σ``, ``²``, Greek
    letters, ``E[``) with runs of plain words set in ``\\text{}``."""
    if lhs in LHS_LATEX:
        return LHS_LATEX[lhs]
    import re

    out = []
    for tok in re.split(r"(\s+)", lhs):
        if re.fullmatch(r"[A-Za-z][a-z]{2,}[a-z\-]*", tok) and tok not in ("sup", "min", "max"):
            out.append(rf"\text{{{_tex_text(tok)}}}")
            continue
        t = tok
        for a, b in _TEX_TOKENS:
            t = t.replace(a, b)
        for fn in ("sup", "min", "max"):
            t = re.sub(rf"^{fn}(?=_|\b)", "\\\\" + fn, t)
        out.append(r"\ " if tok.isspace() else t)
    return "".join(out)


@dataclass(frozen=True)
class Bound:
    """``lhs ≤ expr = Σ terms``, valid under ``conditions``, from ``source``.

    Args:
        name: short name (``"Cooperative SGD A(τ, W, v)"``).
        expr: the right-hand side, a sympy expression in canonical symbols.
        terms: named parts of ``expr`` (e.g. ``optimization``, ``variance``, ``network``); they
            must sum to ``expr``.
        lhs: what is bounded, as text (``"E[(1/K) Σ_k ‖∇F(u_k)‖²]"``).
        conditions: conditions the bound needs (sympy relations).
        source: provenance.
        definitions: auxiliary definitions already substituted into ``expr``, kept for display
            (e.g. ``η_eff = mη/(m+v)``).
        lhs_latex: the left side in LaTeX (default: :func:`lhs_to_latex` of ``lhs``).

    Values are passed by keyword name (``eta=0.01``) or symbol; ``zeta=`` also takes a
    :class:`~theory.mixing.MixingMatrix` (its ζ is used). A non-finite value raises
    ``ValueError`` naming the argument; a value for a symbol the bound does not contain gives an
    :class:`UnusedParameterWarning` naming it.
    """

    name: str
    expr: sp.Expr
    source: Source
    terms: Mapping[str, sp.Expr] = field(default_factory=dict)
    lhs: str = "error"
    conditions: tuple[Condition, ...] = ()
    definitions: Mapping[sp.Symbol, sp.Expr] = field(default_factory=dict)
    #: check that the terms sum to expr (skipped for bounds derived by subs/simplify)
    validate: bool = field(default=True, repr=False, compare=False)
    lhs_latex: str | None = field(default=None, repr=False)
    #: the run the bound speaks about (metric, horizon, hypotheses), for matching with runs
    setting: Setting | None = field(default=None, repr=False)
    #: lambdified functions, keyed by what they compute (private; filled on first use)
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.terms and self.validate:
            diff = sp.simplify(sp.Add(*self.terms.values()) - self.expr)
            if diff.is_number and abs(complex(diff)) <= 1e-12 * (1 + abs(complex(
                    self.expr)) if self.expr.is_number else 1e-12):
                diff = sp.Integer(0)
            if diff != 0:
                raise ValueError(f"terms of bound {self.name!r} do not sum to expr (diff {diff})")

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the lambdified functions (rebuilt on first use after unpickling)."""
        state = dict(self.__dict__)
        state["_cache"] = {}
        return state

    # --- display ------------------------------------------------------------------------------
    @property
    def free_symbols(self) -> set[sp.Symbol]:
        return set(self.expr.free_symbols)

    @property
    def parameters(self) -> set[sp.Symbol]:
        """Every symbol the bound uses: those of ``expr`` and of its conditions."""
        syms = set(self.expr.free_symbols)
        for c in self.conditions:
            syms |= set(c.relation.free_symbols)
        return syms

    def __str__(self) -> str:
        lines = [f"{self.name}", f"  {self.lhs} ≤ {sp.sstr(self.expr)}"]
        for k, t in self.terms.items():
            lines.append(f"    {k}: {sp.sstr(t)}")
        for s, d in self.definitions.items():
            lines.append(f"  where {s} = {sp.sstr(d)}")
        for c in self.conditions:
            lines.append(f"  if {c}")
        lines.append(f"  source: {self.source}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Bound({self.name!r}: {sp.sstr(self.expr)} [{self.source.status}])"

    def latex_lhs(self) -> str:
        """The left side in LaTeX."""
        return self.lhs_latex if self.lhs_latex is not None else lhs_to_latex(self.lhs)

    def _latex_rhs(self, braces: bool = True) -> str:
        if not self.terms:
            return sp.latex(self.expr)
        if not braces:
            return " + ".join(sp.latex(t) for t in self.terms.values())
        return " + ".join(rf"\underbrace{{{sp.latex(t)}}}_{{\text{{{_tex_text(k)}}}}}"
                          for k, t in self.terms.items())

    def _source_line(self) -> str:
        s = self.source
        conf = f", confidence {s.confidence}" if s.confidence else ""
        return f"{s.paper}, {s.where} — {s.status}{conf}"

    def _repr_latex_(self) -> str:
        rows = [rf"\text{{{_tex_text(self.name)}}}",
                rf"{self.latex_lhs()} \le {self._latex_rhs()}"]
        for s, d in self.definitions.items():
            rows.append(rf"\text{{where }} {sp.latex(s)} = {sp.latex(d)}")
        for c in self.conditions:
            rows.append(rf"\text{{if }} {sp.latex(c.relation)} \quad "
                        rf"\text{{({_tex_text(c.name)})}}")
        rows.append(rf"\text{{source: {_tex_text(self._source_line())}}}")
        return r"$\displaystyle \begin{array}{l}" + r" \\ ".join(rows) + r"\end{array}$"

    def _repr_markdown_(self) -> str:
        out = [f"**{self.name}**", "",
               f"$$ {self.latex_lhs()} \\le {self._latex_rhs(braces=False)} $$", ""]
        if self.terms:
            out += ["| term | expression |", "|---|---|"]
            out += [f"| {k} | ${sp.latex(t)}$ |" for k, t in self.terms.items()]
            out.append("")
        if self.definitions:
            out += [f"where ${sp.latex(s)} = {sp.latex(d)}$" for s, d in self.definitions.items()]
            out.append("")
        if self.conditions:
            out.append("Conditions:")
            out += [f"- {c.name}: ${sp.latex(c.relation)}$" for c in self.conditions]
        else:
            out.append("Conditions: none encoded")
        out.append("")
        note = f" — {self.source.note}" if self.source.note else ""
        out.append(f"*Source:* {self.source.paper}, {self.source.where} "
                   f"(**{self.source.status}**"
                   + (f", confidence {self.source.confidence}" if self.source.confidence else "")
                   + f"){note}")
        return "\n".join(out)

    def latex(self) -> str:
        return sp.latex(self.expr)

    # --- algebra ------------------------------------------------------------------------------
    def with_conditions(self, *conditions: Condition) -> Bound:
        """The same bound with ``conditions`` added (e.g. a learning-rate condition that holds
        for a special case only)."""
        return Bound(self.name, self.expr, self.source, terms=self.terms, lhs=self.lhs,
                     conditions=self.conditions + tuple(conditions),
                     definitions=self.definitions, lhs_latex=self.lhs_latex,
                     setting=self.setting)

    def with_setting(self, setting: Setting | None = None, /, **kw: Any) -> Bound:
        """The same bound speaking about ``setting`` (or the current one with fields changed:
        ``b.with_setting(assumptions=(...))``)."""
        if setting is None:
            if self.setting is None:
                raise ValueError(f"{self.name}: no setting to change; pass a Setting")
            setting = replace(self.setting, **kw)
        return replace(self, setting=setting, validate=False)

    def _warn_unused(self, mapping: Mapping[sp.Symbol, Any], stacklevel: int = 3) -> None:
        unused = set(mapping) - self.parameters
        if unused:
            names = ", ".join(sorted(keyword(s) for s in unused))
            known = ", ".join(sorted(keyword(s) for s in self.parameters))
            warnings.warn(f"{self.name}: the bound does not use {names} (ignored); its "
                          f"parameters are {known}", UnusedParameterWarning,
                          stacklevel=stacklevel)

    def subs(self, values: Mapping[Any, Any] | None = None, /, *, name: str | None = None,
             source: Source | None = None, **kw: Any) -> Bound:
        """Substitute values or expressions (keyword names or symbols) everywhere.

        Conditions that become true are dropped; one that becomes false raises
        :class:`ConditionError`.
        """
        mapping = _as_mapping(values, kw)
        self._warn_unused(mapping)
        for s, x in mapping.items():
            if isinstance(x, int | float | np.integer | np.floating | sp.Number):
                check_value(s, float(x))
        conds = []
        for c in self.conditions:
            try:
                c2 = c.subs(mapping)
            except TypeError:  # a side is not a real number (a denominator vanishes)
                raise ConditionError(f"{self.name}: {c.name} is undefined after substitution "
                                     f"(a side is infinite): {c}") from None
            if c2.relation == sp.false:
                raise ConditionError(f"{self.name}: {c.name} fails after substitution: {c}"
                                     + self._largest_hint(c, mapping))
            if c2.relation != sp.true:
                conds.append(c2)
        terms = {k: t.subs(mapping) for k, t in self.terms.items()}
        return Bound(
            name=name or self.name,
            expr=self.expr.subs(mapping),
            source=source or self.source,
            terms=terms,
            lhs=self.lhs,
            conditions=tuple(conds),
            definitions=self.definitions,
            validate=False,
            lhs_latex=self.lhs_latex,
            setting=self.setting,
        )

    def simplify(self) -> Bound:
        if not self.terms:
            return replace(self, expr=sp.simplify(self.expr))
        terms = {k: sp.simplify(t) for k, t in self.terms.items()}
        return replace(self, expr=sp.Add(*terms.values()), terms=terms, validate=False)

    def diff(self, var: str | sp.Symbol) -> sp.Expr:
        """∂ expr / ∂ var."""
        return sp.diff(self.expr, symbol(var))

    # --- admissible values --------------------------------------------------------------------
    def largest(self, var: str | sp.Symbol, values: Mapping[Any, Any] | None = None, /,
                **kw: Any) -> sp.Expr:
        """The largest value of ``var`` that every condition allows, exactly: the minimum over
        the conditions that contain ``var`` of :meth:`Condition.largest` (``oo`` if none
        bounds it). With every other symbol given the result is a number (exact for exact
        inputs: pass ``sympy.Rational``/ints to keep it exact); otherwise a closed form."""
        x = symbol(var)
        mapping = _as_mapping(values, kw)
        mapping.pop(x, None)
        self._warn_unused(mapping)
        out: list[sp.Expr] = []
        for c in self.conditions:
            if x not in c.relation.free_symbols:
                continue
            # substitute first, so that degenerate cases (b = 0, or a = b = 0) are seen
            c2 = c.subs(mapping) if mapping else c
            if c2.relation == sp.false:
                raise ConditionError(f"{self.name}: {c.name} fails at these values whatever "
                                     f"{keyword(x)} is: {c}")
            if c2.relation == sp.true or x not in c2.relation.free_symbols:
                continue
            r = c2.largest(x)
            if r is None:
                raise ValueError(f"{self.name}: {c.name} is not of the form a·{keyword(x)} + "
                                 f"b·{keyword(x)}² ≤ c, so its largest {keyword(x)} has no closed "
                                 "form here")
            out.append(r)
        if not out:
            return sp.oo
        return out[0] if len(out) == 1 else sp.Min(*out)

    def largest_eta(self, values: Mapping[Any, Any] | None = None, /, **kw: Any) -> sp.Expr:
        """The largest admissible learning rate η for the other values given
        (:meth:`largest` with ``var = eta``): every condition holds at η ≤ this value."""
        return self.largest(_eta, values, **kw)

    def _largest_hint(self, c: Condition, mapping: Mapping[sp.Symbol, Any]) -> str:
        """'; largest admissible η = …' for a failed condition containing η, when every other
        symbol of the condition has a value."""
        if _eta not in c.relation.free_symbols:
            return ""
        try:
            r = c.subs({s: x for s, x in mapping.items() if s != _eta}).largest(_eta)
        except TypeError:
            return ""
        if r is None or r.free_symbols:
            return ""
        others = ", ".join(f"{keyword(s)}={_fmt_num(mapping[s])}"
                           for s in sorted(c.relation.free_symbols - {_eta}, key=keyword))
        at = f" at {others}" if others else ""
        return f"; largest admissible η = {_fmt_num(r)}{at}"

    # --- numbers ------------------------------------------------------------------------------
    def check(self, values: Mapping[Any, Any] | None = None, /, **kw: Any) -> list[str]:
        """Return the list of failed conditions (as messages) at the given values. A failed
        learning-rate condition's message gives the largest admissible η for the other values."""
        mapping = _as_mapping(values, kw)
        self._warn_unused(mapping)
        return self._check(mapping)

    def _check(self, mapping: Mapping[sp.Symbol, Any]) -> list[str]:
        failed = []
        for c in self.conditions:
            try:
                r = c.relation.subs(mapping)
            except TypeError:  # a side is not a real number here (a denominator vanishes)
                failed.append(f"{c.name} violated: {sp.sstr(c.relation)} is undefined at these "
                              "values (a side is infinite)")
                continue
            if r.free_symbols:
                missing = ", ".join(sorted(keyword(s) for s in r.free_symbols))
                failed.append(f"{c.name} cannot be checked: missing values for {missing}")
            elif not bool(r):
                rel = c.relation
                if isinstance(rel, sp.core.relational.Relational):
                    lhs = float(rel.lhs.subs(mapping))
                    rhs = float(rel.rhs.subs(mapping))
                    failed.append(f"{c.name} violated: {sp.sstr(rel)} "
                                  f"(left side {lhs:.6g}, right side {rhs:.6g})"
                                  + self._largest_hint(c, mapping))
                else:  # a compound or already-decided condition (And, False, ...)
                    failed.append(f"{c.name} violated: {sp.sstr(rel)}")
        return failed

    def evaluate(self, values: Mapping[Any, Any] | None = None, /, *, check: bool = True,
                 **kw: Any) -> float:
        """The bound's value as a float.

        Raises ``ValueError`` if a value is not finite, outside its symbol's domain or missing,
        and :class:`ConditionError` naming the failed condition (for a learning-rate condition,
        with the largest admissible η). With ``check=False`` a failed condition gives a
        ``UserWarning`` and the value is returned anyway.
        """
        mapping = _as_mapping(values, kw)
        self._warn_unused(mapping)
        for s, x in mapping.items():
            check_value(s, float(x))
        missing = self.free_symbols - set(mapping)
        if missing:
            raise ValueError(f"{self.name}: missing values for "
                             f"{', '.join(sorted(keyword(s) for s in missing))}")
        failed = self._check(mapping)
        if failed:
            msg = f"{self.name}: " + "; ".join(failed)
            if check:
                raise ConditionError(msg)
            warnings.warn(msg + " (evaluated anyway: check=False)", UserWarning, stacklevel=2)
        val = self.expr.subs(mapping)
        if val.has(sp.zoo, sp.oo, sp.nan) or not val.is_number:
            raise ValueError(f"{self.name}: bound is not finite at these values ({val})")
        out = float(val)
        if not math.isfinite(out):
            raise ValueError(f"{self.name}: bound is not finite at these values ({out})")
        return out

    def evaluate_terms(self, values: Mapping[Any, Any] | None = None, /, **kw: Any) -> dict:
        """Each named term's value (no condition check: use :meth:`evaluate` for that)."""
        mapping = _as_mapping(values, kw)
        self._warn_unused(mapping)
        return {k: float(t.subs(mapping)) for k, t in self.terms.items()}

    def lambdify(self, variables: Iterable[str | sp.Symbol] | None = None) -> Callable:
        """A numpy function of ``variables`` (default: all free symbols, sorted by keyword)."""
        syms = tuple(self._ordered(variables))
        return self._lambdified(("expr", syms), syms, self.expr)

    def _lambdified(self, key: Any, syms: tuple[sp.Symbol, ...], expr: sp.Basic) -> Callable:
        """``sympy.lambdify(syms, expr)``, made once per Bound and key and then reused."""
        f = self._cache.get(key)
        if f is None:
            f = sp.lambdify(syms, expr, modules="numpy", cse=True)
            self._cache[key] = f
        return f

    def _ordered(self, variables):
        if variables is None:
            return sorted(self.free_symbols, key=keyword)
        return [symbol(s) for s in variables]

    def grid(self, values: Mapping[Any, Any] | None = None, /, *, check: bool | str = True,
             **kw: Any) -> np.ndarray:
        """Vectorised evaluation on numpy arrays (broadcast together).

        ``check=True`` raises if the conditions fail at any grid point (saying how many and one
        example); ``check="mask"`` returns a masked array with failed points masked;
        ``check=False`` evaluates everywhere. The numpy functions are built on the first call
        and reused by later calls on the same Bound.
        """
        mapping = _as_mapping(values, kw)
        self._warn_unused(mapping)
        missing = self.free_symbols - set(mapping)
        if missing:
            raise ValueError(f"{self.name}: missing values for "
                             f"{', '.join(sorted(keyword(s) for s in missing))}")
        arrays = {s: np.asarray(x, dtype=float) for s, x in mapping.items()}
        for s, a in arrays.items():
            if a.ndim and not np.isfinite(a).all():
                bad = ~np.isfinite(a)
                raise ValueError(f"{keyword(s)} must be finite; {int(bad.sum())} value(s) are "
                                 f"not (e.g. {a[bad].ravel()[0]!r})")
            dom = DOMAINS.get(s)
            if dom is not None:
                bad = ~np.vectorize(dom.contains, otypes=[bool])(a) if a.size < 64 else \
                    ~_domain_mask(dom, a)
                if bad.any():
                    raise ValueError(f"{keyword(s)} must be {dom.describe()}; "
                                     f"{int(bad.sum())} grid value(s) are not "
                                     f"(e.g. {a[bad].ravel()[0]!r})")
        syms = tuple(sorted(self.free_symbols, key=keyword))
        f = self._lambdified(("expr", syms), syms, self.expr)
        shape = np.broadcast_shapes(*(a.shape for a in arrays.values())) if arrays else ()
        out = np.asarray(f(*(arrays[s] for s in syms)), dtype=float)
        if out.shape != shape or not out.flags.writeable:
            out = np.broadcast_to(out, shape).copy()
        if check is False:
            return out
        ok = np.ones(shape, dtype=bool)
        for i, c in enumerate(self.conditions):
            cs = tuple(sorted(c.relation.free_symbols, key=keyword))
            missing_c = set(cs) - set(arrays)
            if missing_c:
                raise ValueError(f"{self.name}: {c.name} needs values for "
                                 f"{', '.join(sorted(keyword(s) for s in missing_c))}")
            g = self._lambdified(("condition", i, cs), cs, c.relation)
            ok &= np.broadcast_to(np.asarray(g(*(arrays[s] for s in cs)), dtype=bool), shape)
        if check == "mask":
            return np.ma.masked_array(out, mask=~ok)
        if check and not ok.all():
            idx = np.unravel_index(int(np.argmin(ok)), shape) if shape else ()
            example = {keyword(s): float(np.broadcast_to(a, shape)[idx])
                       for s, a in arrays.items()}
            raise ConditionError(
                f"{self.name}: conditions fail at {int((~ok).sum())} of {ok.size} grid points, "
                f"e.g. at {example}: " + "; ".join(self.check(example))
                + " (use check='mask' or check=False)")
        return out

    # --- optimisation -------------------------------------------------------------------------
    def minimize(self, var: str | sp.Symbol, values: Mapping[Any, Any] | None = None, /, *,
                 bounds: tuple[float, float] | None = None, **kw: Any) -> Optimum:
        """Minimise the bound over one variable.

        With every other symbol given, returns a numeric :class:`Optimum` (an ``int`` for integer
        symbols, the better of floor and ceil of the continuous optimum, among points satisfying
        the conditions). If sympy finds the stationary point in closed form it is used and
        reported in ``closed_form``; otherwise a bounded numeric search over ``bounds`` (default:
        the symbol's domain, capped at 1e12) is made. With symbols left free, returns the closed
        form (``method="closed-form"``) or raises if there is none.
        """
        x = symbol(var)
        mapping = _as_mapping(values, kw)
        mapping.pop(x, None)
        b = self.subs(mapping) if mapping else self
        f = b.expr
        if x not in f.free_symbols:
            raise ValueError(f"{self.name}: the bound does not depend on {keyword(x)}")
        stationary = _stationary_point(f, x)
        others = f.free_symbols - {x}
        if others:
            if stationary is None:
                raise ValueError(
                    f"{self.name}: no closed-form minimiser in {keyword(x)} found; give values "
                    f"for {', '.join(sorted(keyword(s) for s in others))} for a numeric one")
            return Optimum(x, stationary, sp.simplify(f.subs(x, stationary)), "closed-form",
                           stationary)
        dom = DOMAINS.get(x)
        lo, hi = bounds if bounds is not None else (
            (dom.lower if dom and dom.lower is not None else -1e12),
            (dom.upper if dom and dom.upper is not None else 1e12))
        fn = sp.lambdify([x], f, modules="numpy")
        conds = [sp.lambdify([x], c.relation, modules="numpy") for c in b.conditions]

        def feasible(t: float) -> bool:
            return all(bool(c(t)) for c in conds) and (dom is None or dom.contains(t))

        def value(t: float) -> float:
            with np.errstate(all="ignore"):
                return float(fn(t))

        candidates: list[float] = []
        method = "numeric"
        if stationary is not None and stationary.is_real:
            t = float(stationary)
            if lo <= t <= hi:
                candidates.append(t)
                method = "closed-form"
        # numeric search: log grid (positive domains) or linear grid, then refine
        eps = 1e-12
        lo_g = lo + (eps if dom and dom.lower_strict else 0.0)
        hi_g = hi - (eps * max(1.0, abs(hi)) if dom and dom.upper_strict else 0.0)
        if lo_g > 0 and hi_g / lo_g > 100:
            grid = np.geomspace(lo_g, hi_g, 4001)
        else:
            grid = np.linspace(lo_g, hi_g, 4001)
        with np.errstate(all="ignore"):
            vals = np.asarray(fn(grid), dtype=float) * np.ones_like(grid)
        ok = np.isfinite(vals)
        for c in conds:
            with np.errstate(all="ignore"):
                ok &= np.asarray(c(grid), dtype=bool) * np.ones_like(grid, dtype=bool)
        if not ok.any() and not candidates:
            raise ConditionError(f"{self.name}: no {keyword(x)} in [{lo:g}, {hi:g}] satisfies "
                                 f"the conditions: " + "; ".join(str(c) for c in b.conditions))
        if ok.any():
            i = int(np.argmin(np.where(ok, vals, np.inf)))
            from scipy.optimize import minimize_scalar

            a_, c_ = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
            if c_ > a_:
                with warnings.catch_warnings(), np.errstate(all="ignore"):
                    warnings.simplefilter("ignore", RuntimeWarning)
                    r = minimize_scalar(lambda t: value(t) if feasible(t) else 1e300,
                                        bounds=(a_, c_), method="bounded",
                                        options={"xatol": 1e-12 * max(1.0, abs(a_))})
                candidates.append(float(r.x))
            candidates.append(float(grid[i]))
        if dom is not None and dom.integer:
            ints = set()
            for t in candidates:
                for n in (math.floor(t), math.ceil(t)):
                    if lo <= n <= hi:
                        ints.add(int(n))
            candidates = sorted(ints)
        feas = [t for t in candidates if feasible(t)]
        if not feas:
            raise ConditionError(f"{self.name}: no feasible {keyword(x)} near the continuous "
                                 f"optimum {candidates}; conditions: "
                                 + "; ".join(str(c) for c in b.conditions))
        best = min(feas, key=value)
        if method == "closed-form" and abs(best - float(stationary)) >= 1:
            method = "numeric (conditions bind)" if b.conditions else "numeric"
        at_edge = math.isclose(best, hi_g, rel_tol=1e-9) or (
            best == grid[-1] and bounds is None)
        if at_edge and bounds is None:
            raise ValueError(f"{self.name}: the bound decreases in {keyword(x)} up to the search "
                             f"limit {hi_g:g}; no finite minimiser (pass bounds=...)")
        arg: float | int = int(best) if dom is not None and dom.integer else float(best)
        return Optimum(x, arg, value(best), method,
                       stationary if method.startswith("closed") else None)


def _domain_mask(dom, a: np.ndarray) -> np.ndarray:
    ok = np.isfinite(a)
    if dom.integer:
        ok &= a == np.round(a)
    if dom.lower is not None:
        ok &= a > dom.lower if dom.lower_strict else a >= dom.lower
    if dom.upper is not None:
        ok &= a < dom.upper if dom.upper_strict else a <= dom.upper
    return ok


def _stationary_point(f: sp.Expr, x: sp.Symbol) -> sp.Expr | None:
    """The unique positive real root of ∂f/∂x when its numerator is a polynomial in x of degree
    ≤ 4 (fast, never hangs); ``None`` otherwise."""
    if sp.count_ops(f) > 400:
        return None
    num, _ = sp.fraction(sp.together(sp.diff(f, x)))
    try:
        poly = sp.Poly(sp.expand(num), x)
    except sp.PolynomialError:
        return None
    if poly.degree() < 1 or poly.degree() > 4:
        return None
    xr = sp.Symbol(x.name, positive=True)
    roots = [r.subs(xr, x) for r in sp.solve(poly.as_expr().subs(x, xr), xr)]
    roots = [sp.simplify(r) for r in roots]
    # decide signs as if every parameter were positive (σ² = 0 would make the root undefined)
    def _maybe_positive(r: sp.Expr) -> bool:
        rp = r.xreplace({s: sp.Dummy(positive=True) for s in r.free_symbols})
        return rp.is_positive is not False and rp.is_real is not False

    roots = [r for r in roots if _maybe_positive(r)]
    if len(roots) != 1:
        numeric = [r for r in roots if r.is_number and r.is_real and r > 0]
        return numeric[0] if len(numeric) == 1 else None
    r = roots[0]
    if r.is_number and not (r.is_real and r > 0):
        return None
    return r


__all__ = [
    "ASSUMPTIONS", "LHS_LATEX", "METRICS", "Bound", "Condition", "ConditionError", "Optimum",
    "Setting", "Source", "Status", "UnusedParameterWarning", "checked_value", "lhs_to_latex",
]
