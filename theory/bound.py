"""`Bound`: a convergence bound a researcher can hold, print, substitute into and optimise.

A bound is ``lhs ≤ expr`` where ``expr`` is a sympy expression in the canonical symbols of
:mod:`theory.symbols`, split into named ``terms`` (they sum to ``expr``), valid under
``conditions`` (sympy relations such as the learning-rate condition), and traced to a
:class:`Source` with an honest provenance ``status``.
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


class Status(StrEnum):
    """Provenance of a formula.

    * ``quoted``: verified verbatim against a source (digest tag [V]).
    * ``recalled``: recollection of the paper's text, not verified (digest tag [MEM]).
    * ``derived``: derived by us from definitions or other formulas (digest tag [RECON]); it is
      *not* a statement of the paper.
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
        paper: short citation, e.g. ``"Wang & Joshi, Cooperative SGD (arXiv:1808.07576)"``.
        where: theorem / equation / section, e.g. ``"Theorem 1"``.
        status: :class:`Status` (quoted / recalled / derived).
        confidence: for recalled items, ``"high"``, ``"med"`` or ``"low"``.
        digest: section of ``shared/papers.md`` the formula was taken from.
        note: anything a reader must know (e.g. "constants not verified against the PDF").
    """

    paper: str
    where: str
    status: Status
    confidence: str | None = None
    digest: str | None = None
    note: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status(self.status))
        if self.confidence not in (None, "high", "med", "low"):
            raise ValueError(f"confidence must be high/med/low or None; got {self.confidence!r}")

    def __str__(self) -> str:
        conf = f", confidence {self.confidence}" if self.confidence else ""
        dig = f"; digest §{self.digest}" if self.digest else ""
        note = f" — {self.note}" if self.note else ""
        return f"{self.paper}, {self.where} [{self.status}{conf}{dig}]{note}"


class ConditionError(ValueError):
    """A bound was evaluated where one of its conditions fails."""


@dataclass(frozen=True)
class Condition:
    """A condition a bound needs, e.g. the learning-rate condition ``ηL + η²L²τ(τ−1) ≤ 1``."""

    name: str
    relation: sp.Basic
    source: Source | None = None

    def subs(self, mapping: Mapping[sp.Symbol, Any]) -> Condition:
        return replace(self, relation=self.relation.subs(mapping))

    def __str__(self) -> str:
        return f"{self.name}: {sp.sstr(self.relation)}"


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


def _as_mapping(values: Mapping[Any, Any] | None, kw: Mapping[str, Any]) -> dict[sp.Symbol, Any]:
    out: dict[sp.Symbol, Any] = {}
    for k, x in {**(values or {}), **kw}.items():
        out[symbol(k)] = x
    return out


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

    def __post_init__(self) -> None:
        if self.terms and self.validate:
            diff = sp.simplify(sp.Add(*self.terms.values()) - self.expr)
            if diff.is_number and abs(complex(diff)) <= 1e-12 * (1 + abs(complex(
                    self.expr)) if self.expr.is_number else 1e-12):
                diff = sp.Integer(0)
            if diff != 0:
                raise ValueError(f"terms of bound {self.name!r} do not sum to expr (diff {diff})")

    # --- display ------------------------------------------------------------------------------
    @property
    def free_symbols(self) -> set[sp.Symbol]:
        return set(self.expr.free_symbols)

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

    def _repr_latex_(self) -> str:
        rhs = " + ".join(sp.latex(t) for t in self.terms.values()) if self.terms else sp.latex(
            self.expr)
        lhs = self.lhs.replace("‖", r"\|").replace("∇", r"\nabla ").replace("Σ", r"\sum ")
        return rf"$\displaystyle \text{{{lhs}}} \le {rhs}$"

    def latex(self) -> str:
        return sp.latex(self.expr)

    # --- algebra ------------------------------------------------------------------------------
    def with_conditions(self, *conditions: Condition) -> Bound:
        """The same bound with ``conditions`` added (e.g. a learning-rate condition that holds
        for a special case only)."""
        return Bound(self.name, self.expr, self.source, terms=self.terms, lhs=self.lhs,
                     conditions=self.conditions + tuple(conditions),
                     definitions=self.definitions)

    def subs(self, values: Mapping[Any, Any] | None = None, /, *, name: str | None = None,
             source: Source | None = None, **kw: Any) -> Bound:
        """Substitute values or expressions (keyword names or symbols) everywhere.

        Conditions that become true are dropped; one that becomes false raises
        :class:`ConditionError`.
        """
        mapping = _as_mapping(values, kw)
        for s, x in mapping.items():
            if isinstance(x, (int, float)) or (isinstance(x, sp.Number)):
                check_value(s, float(x))
        conds = []
        for c in self.conditions:
            c2 = c.subs(mapping)
            if c2.relation == sp.false:
                raise ConditionError(f"{self.name}: {c.name} fails after substitution: {c}")
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
        )

    def simplify(self) -> Bound:
        if not self.terms:
            return replace(self, expr=sp.simplify(self.expr))
        terms = {k: sp.simplify(t) for k, t in self.terms.items()}
        return replace(self, expr=sp.Add(*terms.values()), terms=terms, validate=False)

    def diff(self, var: str | sp.Symbol) -> sp.Expr:
        """∂ expr / ∂ var."""
        return sp.diff(self.expr, symbol(var))

    # --- numbers ------------------------------------------------------------------------------
    def check(self, values: Mapping[Any, Any] | None = None, /, **kw: Any) -> list[str]:
        """Return the list of failed conditions (as messages) at the given values."""
        mapping = _as_mapping(values, kw)
        failed = []
        for c in self.conditions:
            r = c.relation.subs(mapping)
            if r.free_symbols:
                missing = ", ".join(sorted(keyword(s) for s in r.free_symbols))
                failed.append(f"{c.name} cannot be checked: missing values for {missing}")
            elif not bool(r):
                rel = c.relation
                if isinstance(rel, sp.core.relational.Relational):
                    lhs = float(rel.lhs.subs(mapping))
                    rhs = float(rel.rhs.subs(mapping))
                    failed.append(f"{c.name} violated: {sp.sstr(rel)} "
                                  f"(left side {lhs:.6g}, right side {rhs:.6g})")
                else:  # a compound or already-decided condition (And, False, ...)
                    failed.append(f"{c.name} violated: {sp.sstr(rel)}")
        return failed

    def evaluate(self, values: Mapping[Any, Any] | None = None, /, *, check: bool = True,
                 **kw: Any) -> float:
        """The bound's value as a float.

        Raises ``ValueError`` if a value is outside its symbol's domain or a symbol is missing, and
        :class:`ConditionError` naming the failed condition. With ``check=False`` a failed
        condition gives a ``UserWarning`` and the value is returned anyway.
        """
        mapping = _as_mapping(values, kw)
        for s, x in mapping.items():
            check_value(s, float(x))
        missing = self.free_symbols - set(mapping)
        if missing:
            raise ValueError(f"{self.name}: missing values for "
                             f"{', '.join(sorted(keyword(s) for s in missing))}")
        failed = self.check(mapping)
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
        return {k: float(t.subs(mapping)) for k, t in self.terms.items()}

    def lambdify(self, variables: Iterable[str | sp.Symbol] | None = None) -> Callable:
        """A numpy function of ``variables`` (default: all free symbols, sorted by keyword)."""
        syms = self._ordered(variables)
        return sp.lambdify(syms, self.expr, modules="numpy")

    def _ordered(self, variables):
        if variables is None:
            return sorted(self.free_symbols, key=keyword)
        return [symbol(s) for s in variables]

    def grid(self, values: Mapping[Any, Any] | None = None, /, *, check: bool | str = True,
             **kw: Any) -> np.ndarray:
        """Vectorised evaluation on numpy arrays (broadcast together).

        ``check=True`` raises if the conditions fail at any grid point (saying how many and one
        example); ``check="mask"`` returns a masked array with failed points masked;
        ``check=False`` evaluates everywhere.
        """
        mapping = _as_mapping(values, kw)
        missing = self.free_symbols - set(mapping)
        if missing:
            raise ValueError(f"{self.name}: missing values for "
                             f"{', '.join(sorted(keyword(s) for s in missing))}")
        arrays = {s: np.asarray(x, dtype=float) for s, x in mapping.items()}
        for s, a in arrays.items():
            dom = DOMAINS.get(s)
            if dom is not None:
                bad = ~np.vectorize(dom.contains, otypes=[bool])(a) if a.size < 64 else \
                    ~_domain_mask(dom, a)
                if bad.any():
                    raise ValueError(f"{keyword(s)} must be {dom.describe()}; "
                                     f"{int(bad.sum())} grid value(s) are not "
                                     f"(e.g. {a[bad].ravel()[0]!r})")
        syms = sorted(self.free_symbols, key=keyword)
        f = sp.lambdify(syms, self.expr, modules="numpy")
        shape = np.broadcast_shapes(*(a.shape for a in arrays.values())) if arrays else ()
        out = np.broadcast_to(np.asarray(f(*(arrays[s] for s in syms)), dtype=float), shape)
        ok = np.ones(shape, dtype=bool)
        for c in self.conditions:
            cs = sorted(c.relation.free_symbols, key=keyword)
            missing_c = set(cs) - set(arrays)
            if missing_c:
                raise ValueError(f"{self.name}: {c.name} needs values for "
                                 f"{', '.join(sorted(keyword(s) for s in missing_c))}")
            g = sp.lambdify(cs, c.relation, modules="numpy")
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
        return np.array(out)

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


__all__ = ["Bound", "Condition", "ConditionError", "Optimum", "Source", "Status"]
