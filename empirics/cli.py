"""The ``coopsgd`` command line (click).

``coopsgd tour`` prints a short tour of the theory; ``coopsgd spectra`` tabulates ζ for built-in
topologies; ``coopsgd bound NAME --eta ...`` prints and evaluates a named bound;
``coopsgd design TOPOLOGY`` compares weight rules with the optimal weights;
``coopsgd check-compressor MODULE:CLASS`` runs the compressor property suite on your own
compressor; ``coopsgd run SPEC``
runs one experiment against its bound; ``coopsgd verify`` runs the papers' reproductions and
writes a report (the main job); ``coopsgd proofs`` runs the proof obligations. Heavy imports
(sympy, theory, torch, cvxpy) happen only inside the commands that need them, so
``coopsgd --help`` stays fast.

Exit codes (every command): 0 ok; 1 a check failed (``proofs``, ``verify``); 2 usage error
(unknown bound, parameter or option, bad value); 3 a bound's condition fails at the given values.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from typing import Any

import click

#: exit codes scripts can rely on
EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE, EXIT_CONDITION, EXIT_INTERNAL = 0, 1, 2, 3, 4

_EXIT_CODES_HELP = """\b
Exit codes:
  0  ok
  1  a check failed (proofs, verify) or training diverged (run)
  2  usage error (unknown bound, parameter or option; bad value; unreadable spec;
     an output folder that cannot be written)
  3  a bound's condition fails at the given values
  4  internal error (a bug: COOPSGD_DEBUG=1 shows the traceback)"""


class _Group(click.Group):
    """Every command's errors as one line, never a traceback: a bad value or file (ValueError,
    OSError) exits 2, a divergence exits 1, anything else is an internal error (exit 4; the
    traceback only with COOPSGD_DEBUG=1)."""

    def invoke(self, ctx: click.Context) -> Any:
        import os

        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)
        except (ValueError, OSError) as e:
            click.echo(f"Error: {_one_line(e)}", err=True)
            sys.exit(EXIT_USAGE)
        except Exception as e:
            from empirics.algorithm import DivergenceError

            if isinstance(e, DivergenceError):
                click.echo(f"Error: training diverged: {_one_line(e)}", err=True)
                sys.exit(EXIT_CHECK_FAILED)
            if os.environ.get("COOPSGD_DEBUG"):
                raise
            click.echo(f"Error: internal error: {type(e).__name__}: {_one_line(e)} (this is a "
                       f"bug; COOPSGD_DEBUG=1 shows the traceback)", err=True)
            sys.exit(EXIT_INTERNAL)


def _one_line(e: BaseException) -> str:
    msg = str(e).strip() or type(e).__name__
    if isinstance(e, OSError) and e.filename is not None and str(e.filename) not in msg:
        msg = f"{e.filename}: {msg}"
    return msg


def _echo_table(rows: list[tuple], header: tuple) -> None:
    cols = list(zip(*([header, *rows]), strict=True))
    widths = [max(len(str(x)) for x in c) for c in cols]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    click.echo(fmt.format(*header))
    click.echo("  ".join("-" * w for w in widths))
    for r in rows:
        click.echo(fmt.format(*r))


@click.group(cls=_Group, epilog=f"""\b
Examples:
  coopsgd tour
  coopsgd bound --list
  coopsgd bound pasgd --eta 0.01 --L 1 --sigma2 1 --m 16 --tau 4 --K 10000 --F-gap 10
  coopsgd bound dpsgd --topology ring --m 16 --eta 0.01 --L 1 --sigma2 1 --K 1e4 --F-gap 10
  coopsgd design ring --n 8
  coopsgd run spec.toml
  coopsgd predict spec.toml
  coopsgd verify --scale smoke
  coopsgd proofs --topic spectra

Run 'coopsgd COMMAND --help' for a command's options and examples.

{_EXIT_CODES_HELP}""")
@click.version_option(package_name="coopsgd")
def main() -> None:
    """coopsgd: the theory of communication-efficient distributed SGD against the numbers."""


@main.command(short_help="A short tour: spectra, the Cooperative SGD bound, derived results.")
def tour() -> None:
    """A short tour: spectra, the Cooperative SGD bound and what the code derives from it."""
    import sympy as sp

    import theory

    click.echo("== Spectra of mixing matrices (numeric vs closed form) ==")
    rows = []
    for name, W, exact in [
        ("ring(16), weights 1/3", theory.ring(16), theory.zeta_exact("ring", 16)),
        ("ring(32), weights 1/3", theory.ring(32), theory.zeta_exact("ring", 32)),
        ("hypercube(4), 1/5", theory.hypercube(4), theory.zeta_exact("hypercube", 4)),
        ("path(10), Metropolis", theory.path(10), theory.zeta_exact("path", 10)),
        ("EASGD W_α m=8, α=1/5", theory.easgd_matrix(8, 0.2),
         theory.zeta_exact("easgd", 8, alpha=sp.Rational(1, 5))),
    ]:
        rows.append((name, f"{theory.zeta(W):.6f}", f"{float(exact):.6f}",
                     f"{theory.spectral_gap(W):.4g}"))
    _echo_table(rows, ("W", "ζ numeric", "ζ closed form", "spectral gap"))

    click.echo("\n== Weight rules on a seeded random geometric graph (n=30, avg degree 5) ==")
    G = theory.random_geometric_graph(30, avg_degree=5, seed=0)
    rows = []
    for rule in ("metropolis_hastings", "max_degree", "best_constant"):
        W = theory.mixing_matrix(G, rule)
        rows.append((rule, f"{W.zeta:.6f}", theory.consensus_rounds(W, 1e-6)))
    _echo_table(rows, ("rule", "ζ", "rounds to 1e-6"))

    b = theory.cooperative_bound()
    click.echo("\n== Cooperative SGD bound A(τ, W, v) ==")
    click.echo(str(b))
    # η inside every learning-rate condition below (ring(16), τ = 4 allows η ≤ 0.0090, eq. 145)
    vals = dict(eta=0.005, L=1, sigma2=1, m=16, K=10_000, F_gap=10)
    click.echo(f"\nAt {vals}:")
    rows = []
    for label, bound, extra in [
        ("synchronous A(1, J, 0)", theory.synchronous_bound(), {}),
        ("PASGD A(4, J, 0)", theory.pasgd_bound(), {"tau": 4}),
        ("D-PSGD A(1, ring16, 0)", theory.dpsgd_bound(), {"zeta": theory.zeta(theory.ring(16))}),
        ("decentralized periodic A(4, ring16, 0)", theory.decentralized_periodic_bound(),
         {"tau": 4, "zeta": theory.zeta(theory.ring(16))}),
        ("EASGD A(4, W_α*, 1)", theory.easgd_bound("optimal"), {"tau": 4}),
    ]:
        terms = bound.subs(**vals, **extra).evaluate_terms()
        rows.append((label, f"{bound.evaluate(**vals, **extra):.5g}",
                     *(f"{terms[k]:.3g}" for k in ("optimization", "variance", "network"))))
    _echo_table(rows, ("algorithm", "bound", "optimization", "variance", "network"))

    click.echo("\n== Derived by the code ==")
    tau_eq = theory.pasgd_dpsgd_crossover()
    click.echo(f"PASGD/D-PSGD crossover τ_eq(ζ) = {tau_eq}")
    rows = [(m, f"{theory.zeta(theory.ring(m)):.4f}",
             f"{float(tau_eq.subs(theory.symbols.zeta, theory.zeta(theory.ring(m)))):.4g}")
            for m in (4, 8, 16, 32)]
    _echo_table(rows, ("ring m", "ζ", "τ_eq"))
    a, z = theory.easgd_optimal_alpha()
    a8, z8 = theory.easgd_optimal_alpha(8)
    click.echo(f"EASGD optimal elasticity α* = {a}, ζ* = {z};  m = 8: ({a8}, {z8})")
    click.echo(f"runtime-optimal period τ* = {theory.optimal_tau_runtime()}")
    opt = theory.runtime_bound().minimize("tau", eta=0.01, L=1, sigma2=1, m=16, T_wall=1000,
                                          Y=0.1, D=1, F_gap=10)
    click.echo(f"  at η=0.01, L=1, σ²=1, m=16, T_wall=1000, Y=0.1, D=1, ΔF=10: {opt}")


@main.command(short_help="ζ and spectral gap of the built-in topologies.",
              epilog="\b\nExamples:\n  coopsgd spectra --m 16\n  coopsgd spectra --m 64")
@click.option("--m", "m", default=16, show_default=True, type=click.IntRange(min=2),
              help="number of workers (>= 2)")
def spectra(m: int) -> None:
    """ζ and spectral gap of the built-in topologies for m workers (each with its own weights;
    topologies whose shape rule excludes m, e.g. a hypercube on 12 nodes, are left out)."""
    import theory
    from theory.topologies import TOPOLOGIES, build_mixing

    rows = []
    for name in theory.topologies.deterministic():
        try:
            W = build_mixing(name, m)
        except ValueError:
            continue
        w = TOPOLOGIES[name].weights
        label = "J" if w == "average" else "MH" if w == "metropolis_hastings" else w
        rows.append((f"{name} ({label})", f"{W.zeta:.6f}", f"{W.spectral_gap:.3g}",
                     theory.consensus_rounds(W, 1e-6)))
    _echo_table(rows, ("topology", "ζ", "gap", "rounds to 1e-6"))


# =============================================================================================
# topologies (shared by `bound --topology` and `design`): theory.topologies is the table
# =============================================================================================
class _FromTheory(Sequence):
    """Names read from ``theory.topologies`` on first use, so ``coopsgd --help`` does not import
    theory (sympy)."""

    def __init__(self, names: Any) -> None:
        self._names, self._cache = names, None

    def _get(self) -> tuple[str, ...]:
        if self._cache is None:
            from theory import topologies

            self._cache = tuple(self._names(topologies))
        return self._cache

    def __getitem__(self, i: Any) -> Any:
        return self._get()[i]

    def __len__(self) -> int:
        return len(self._get())


class _LazyChoice(click.Choice):
    """``click.Choice`` over a :class:`_FromTheory` (the choices are read when first needed)."""

    def __init__(self, names: _FromTheory) -> None:  # click.Choice.__init__ would read them
        self._lazy, self.case_sensitive = names, True

    @property
    def choices(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(self._lazy)


#: topology names as the CLI spells them (``erdos-renyi``; theory reads ``-`` as ``_``)
_GRAPHS = _FromTheory(lambda t: [n.replace("_", "-") for n in t.TOPOLOGIES])
#: topologies whose graph is fixed by the number of nodes (usable by `bound --topology`)
_DETERMINISTIC = _FromTheory(lambda t: [n.replace("_", "-") for n in t.deterministic()])
#: weight rules of `--rule` ("default": the topology's own weights)
_RULES = _FromTheory(lambda t: ("default", *(w for w in t.WEIGHTS if w not in t.DESIGNED)))


def _default_rule(topology: str) -> str:
    """The weight rule a topology gets by default (theory.ring, theory.torus, ...)."""
    from theory.topologies import topology as row

    w = row(topology).weights
    return "uniform" if w == "average" else w  # W = J is the uniform rule on a complete graph


def _stderr_is_terminal() -> bool:
    """Whether progress lines would reach a person (stderr is a terminal)."""
    return sys.stderr.isatty()


def _graph(topology: str, n: int, *, rows: int | None = None, cols: int | None = None,
           p: float = 0.1, avg_degree: float = 5.0, seed: int = 0):
    """The networkx graph of a named topology on n nodes (hypercube: n = 2^dim)."""
    return _from_table("build_graph", topology, n, rows=rows, cols=cols, p=p,
                       avg_degree=avg_degree, seed=seed)


def _mixing(topology: str, n: int, rule: str = "default", **kw: Any):
    """W = rule(graph of the topology); ``rule="default"`` is the topology's own weights."""
    return _from_table("build_mixing", topology, n, None if rule == "default" else rule, **kw)


def _from_table(fn: str, topology: str, n: int, *args: Any, **given: Any):
    """theory.topologies.<fn>(topology, n, *args, **the given options the topology takes); its
    ValueErrors become usage errors (exit code 2)."""
    from theory import topologies

    try:
        t = topologies.topology(topology)
        params = {k: v for k, v in given.items() if k in t.params}
        return getattr(topologies, fn)(t.name, n, *args, **params)
    except ValueError as e:
        rule = f" with weight rule {args[0]}" if args and args[0] else ""
        raise click.UsageError(f"{topology} on {n} nodes{rule}: {e}") from None


# =============================================================================================
# coopsgd bound
# =============================================================================================
#: the named bounds are theory's registry (theory.bounds.registry); theory is imported only when
#: a bound command runs, so `coopsgd --help` stays fast.
#: extra spellings of parameter names (lower case, '-' as '_')
_PARAM_ALIASES = {"delta_f": "F_gap", "fgap": "F_gap", "twall": "T_wall", "sigma_2": "sigma2",
                  "sigma^2": "sigma2"}


def _registry():
    import theory  # noqa: F401  (registers every paper's bounds)
    from theory.bounds import registry

    return registry


def _bound_names() -> str:
    return ", ".join(_registry().names())


def _bound_name(name: str) -> str:
    try:
        return _registry().resolve(name)
    except ValueError as e:
        raise click.UsageError(str(e)) from None


def _build_bound(key: str):
    entry = _registry().get(key)
    if entry.from_run:
        raise click.UsageError(f"bound {key!r} is built from a run's {list(entry.from_run)}: "
                               f"use it as bound = {key!r} in an experiment spec")
    return entry.build()


def _bound_params(b) -> list:
    """Symbols a bound takes: those of its expression and of its conditions, sorted by name."""
    from theory.symbols import keyword

    syms = set(b.free_symbols)
    for c in b.conditions:
        syms |= set(c.relation.free_symbols)
    return sorted(syms, key=lambda s: keyword(s).lower())


def _split_params(tokens: tuple[str, ...]) -> list[tuple[str, str]]:
    """``('--eta', '0.01', '--tau=4')`` -> ``[('eta', '0.01'), ('tau', '4')]``."""
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if not t.startswith("--") or len(t) == 2:
            raise click.UsageError(f"unexpected argument {t!r}: parameters are given as "
                                   "--NAME VALUE (e.g. --eta 0.01)")
        if "=" in t:
            k, val = t[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(tokens):
                raise click.UsageError(f"parameter {t} needs a value")
            k, val = t[2:], tokens[i + 1]
            i += 2
        out.append((k, val))
    return out


def _resolve_param(name: str, params: list, bound_key: str):
    """The symbol of the bound that ``--name`` refers to (exact keyword, '-' for '_', or case
    insensitive), else a usage error naming the valid parameters."""
    from theory.symbols import SYMBOLS, keyword

    valid = {keyword(s): s for s in params}
    key = name.replace("-", "_")
    if key in valid:
        return valid[key]
    low = _PARAM_ALIASES.get(key.lower(), key).lower()
    hits = [s for k, s in valid.items() if k.lower() == low or s.name.lower() == low]
    if len(hits) == 1:
        return hits[0]
    known = {k.lower() for k in SYMBOLS}
    why = (f"bound {bound_key!r} does not depend on {name}" if low in known
           else f"unknown parameter --{name} for bound {bound_key!r}")
    extra = " (or ζ via --topology/--zeta-of)" if "zeta" in valid else ""
    raise click.UsageError(f"{why}; its parameters are: "
                           + ", ".join("--" + k.replace("_", "-") for k in valid) + extra)


def _parse_value(sym, raw: str):
    """A number for ``sym``: int, float, or a fraction ``a/b`` (kept exact)."""
    import sympy as sp

    from theory.symbols import DOMAINS, keyword

    s = raw.strip()
    try:
        if "/" in s:
            a, b = s.split("/", 1)
            if int(b) == 0:
                raise click.UsageError(f"--{keyword(sym)}: {raw!r} divides by zero")
            x: Any = sp.Rational(int(a), int(b))
        else:
            try:
                x = int(s)
            except ValueError:
                x = float(s)
    except (ValueError, ZeroDivisionError):
        raise click.UsageError(f"--{keyword(sym)}: {raw!r} is not a number") from None
    if isinstance(x, float) and not math.isfinite(x):
        raise click.UsageError(f"--{keyword(sym)}: {raw!r} is not a finite number")
    dom = DOMAINS.get(sym)
    if isinstance(x, float) and dom is not None and dom.integer and x.is_integer():
        x = int(x)
    return x


def _zeta_from_spec(spec: str, m: Any, rule: str) -> tuple[float, str, int]:
    """(ζ, where it came from, W's number of nodes) from ``--zeta-of``: ``TOPOLOGY:N[:RULE]``
    (torus/grid also ``RxC``), or a ``.npy`` file holding W (e.g. written by
    ``coopsgd design --save``)."""
    import os

    import numpy as np

    import theory

    if spec.endswith(".npy") or os.path.isfile(spec):
        try:
            W = np.load(spec)
            return theory.zeta(W), f"{spec} ({W.shape[0]} nodes)", int(W.shape[0])
        except (OSError, ValueError) as e:
            raise click.UsageError(f"--zeta-of {spec}: {e}") from e
    parts = spec.split(":")
    topo = parts[0].lower().replace("_", "-")
    n_raw = parts[1] if len(parts) > 1 else (str(m) if m is not None else None)
    r = parts[2] if len(parts) > 2 else rule
    if topo not in _DETERMINISTIC:
        raise click.UsageError(
            f"--zeta-of {spec}: topology must be one of {', '.join(_DETERMINISTIC)} (random "
            "graphs: 'coopsgd design TOPOLOGY --save W.npy', then --zeta-of W.npy)")
    if r not in _RULES:
        raise click.UsageError(f"--zeta-of {spec}: unknown weight rule {r!r}; choose from "
                               + ", ".join(_RULES))
    if n_raw is None:
        raise click.UsageError(f"--zeta-of {spec}: give the number of nodes ({topo}:16) or --m")
    rows = cols = None
    try:
        if "x" in n_raw.lower():
            rows, cols = (int(t) for t in n_raw.lower().split("x"))
            n = rows * cols
        else:
            n = int(n_raw)
    except ValueError:
        raise click.UsageError(f"--zeta-of {spec}: {n_raw!r} is not a number of nodes") from None
    W = _mixing(topo, n, r, rows=rows, cols=cols)
    rule_used = _default_rule(topo) if r == "default" else r
    shape = f"{rows}x{cols}" if rows else str(n)
    return theory.zeta(W), f"{topo}({shape}), {rule_used} weights", n


def _aux_from_nodes(values: dict, params: Any, n_nodes: int, derived: dict) -> None:
    """A W on n nodes mixes m workers and v = n − m auxiliary variables (Cooperative SGD's
    A(τ, W, v)): fill in v when the bound has it and --m is given, or refuse an --m/--v that
    does not add up to n."""
    from theory.symbols import m as m_sym
    from theory.symbols import v as v_sym

    if v_sym not in params or m_sym not in values:
        return
    m_val = values[m_sym]
    if v_sym in values:
        if float(m_val) + float(values[v_sym]) != n_nodes:
            raise click.UsageError(f"W has {n_nodes} nodes but --m {m_val} + --v "
                                   f"{values[v_sym]} = {float(m_val) + float(values[v_sym]):g}: "
                                   f"Cooperative SGD's W mixes the m workers and the v "
                                   f"auxiliary variables (m + v = {n_nodes})")
        return
    if float(m_val) > n_nodes:
        raise click.UsageError(f"W has {n_nodes} nodes, fewer than --m {m_val} workers")
    values[v_sym] = int(n_nodes - float(m_val))
    derived["v"] = {"value": values[v_sym], "from": f"W's {n_nodes} nodes − m = {m_val}"}


def _fmt(x: Any) -> str:
    return f"{float(x):.6g}"


def _condition_report(c, mapping: dict) -> dict:
    """Status of condition ``c`` at ``mapping``; for a failed condition on η, the largest
    admissible η at the other values (``largest_eta``)."""
    import sympy as sp

    from theory.symbols import eta, keyword

    out: dict[str, Any] = {"name": c.name, "relation": sp.sstr(c.relation)}
    if c.source is not None:
        out["source"] = c.source.to_dict()
    try:
        r = c.relation.subs(mapping)
    except TypeError:  # a side is infinite at these values
        out["status"] = "fails"
        return out
    if r.free_symbols:
        out["status"] = "undecided"
        out["missing"] = sorted(keyword(s) for s in r.free_symbols)
        return out
    out["status"] = "holds" if bool(r) else "fails"
    if isinstance(c.relation, sp.core.relational.Relational):
        try:
            out["lhs"] = float(c.relation.lhs.subs(mapping))
            out["rhs"] = float(c.relation.rhs.subs(mapping))
        except (TypeError, ValueError):
            pass
    if out["status"] == "fails" and eta in c.relation.free_symbols:
        e = c.subs({s: x for s, x in mapping.items() if s != eta}).largest(eta)
        if e is not None and not e.free_symbols:
            out["largest_eta"] = float(e)
    return out


def _number(x: Any) -> Any:
    """JSON-friendly number."""
    if isinstance(x, int | float):
        return x
    return int(x) if getattr(x, "is_Integer", False) else float(x)


def _bound_list_rows() -> list[tuple[str, str, str]]:
    from theory.symbols import keyword

    rows = []
    for e in _registry().entries():
        params = ("(built from a run: " + ", ".join(e.from_run) + ")" if e.from_run else
                  " ".join(keyword(s) for s in _bound_params(_build_bound(e.name))))
        rows.append((e.name, e.description, params))
    return rows


_BOUND_HELP = """Print a named bound, its terms and conditions, evaluated at the given values.

NAME is one of: {names} (see --list for what each is and its
parameters). Parameters are the bound's symbols by keyword name: --eta --L --sigma2 --m --v
--tau --zeta --K --F-gap (= F(u_1) − F_inf) --beta --kappa2 --consensus-avg --T-wall --Y --D
--mu --p --B --T --alpha --delta --omega --G2 ... ('-' and '_' are interchangeable; values may
be ints, floats or fractions like 1/3). ζ can instead be computed from a mixing matrix with
--topology NAME (uses --m workers and --rule) or --zeta-of TOPOLOGY:N[:RULE] or --zeta-of
W.npy; a bound with auxiliary variables then takes v = (W's nodes) − m.

Every Cooperative SGD bound carries its learning-rate condition (JMLR Wang & Joshi 2021: eq.
145 for Theorem 1, Corollaries 2 and 3 for PASGD and D-PSGD, ...). With every parameter
given, prints the value; with some missing, prints the bound with the given ones substituted
and lists the ones that remain (exit code 0). A condition that fails at the values is
reported, with the largest admissible η for a learning-rate condition, and the exit code is
3. Sources and their status (quoted / recalled / derived): docs/references.md.
"""


class _BoundCommand(click.Command):
    """The bound command, whose help lists the registry's names (read when help is shown)."""

    def format_help_text(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self.help = _BOUND_HELP.replace("{names}", _bound_names())
        super().format_help_text(ctx, formatter)


@main.command(
    "bound", cls=_BoundCommand, help=_BOUND_HELP,
    short_help="Print a named bound, its terms and conditions, and its value.",
    context_settings={"ignore_unknown_options": True},
    epilog=f"""\b
Examples:
  coopsgd bound --list
  coopsgd bound pasgd
  coopsgd bound pasgd --eta 0.01 --L 1 --sigma2 1 --m 16 --tau 4 --K 10000 --F-gap 10
  coopsgd bound dpsgd --topology ring --m 16 --eta 0.01 --L 1 --sigma2 1 --K 1e4 --F-gap 10
  coopsgd bound decentralized-periodic --zeta-of torus:4x4 --tau 4 --eta 0.01 --L 1
  coopsgd bound runtime --eta 0.01 --L 1 --sigma2 1 --m 16 --T-wall 1000 --Y 0.1 --D 1 \\
      --F-gap 10 --minimize tau
  coopsgd bound pasgd --eta 0.5 --L 1 --tau 8 --json       # exit code 3: condition fails
  coopsgd bound cooperative --eta 0.05 --L 1 --m 16 --v 0 --tau 1 --zeta 0.9493
                                     # exit code 3: eq. 145 fails, largest admissible η shown

{_EXIT_CODES_HELP}""")
@click.argument("name", required=False)
@click.argument("params", nargs=-1, type=click.UNPROCESSED, metavar="[--PARAM VALUE]...")
@click.option("--list", "list_", is_flag=True, help="List the named bounds and their parameters.")
@click.option("--topology", type=_LazyChoice(_DETERMINISTIC), default=None,
              help="Compute ζ from this topology's W on --m workers.")
@click.option("--rule", type=_LazyChoice(_RULES), default="default", show_default=True,
              help="Weight rule for --topology/--zeta-of (default: uniform on ring, torus, "
                   "hypercube, complete; Metropolis–Hastings otherwise).")
@click.option("--zeta-of", "zeta_of", metavar="TOPOLOGY:N[:RULE] | W.npy", default=None,
              help="Compute ζ from a topology (torus/grid: N may be RxC) or a saved W.")
@click.option("--minimize", "minimize", metavar="PARAM", default=None,
              help="Also minimise the bound over PARAM (numeric with every other parameter "
                   "given, else closed form).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (one JSON object).")
def bound_cmd(name: str | None, params: tuple[str, ...], list_: bool, topology: str | None,
              rule: str, zeta_of: str | None, minimize: str | None, as_json: bool) -> None:
    if list_:
        rows = _bound_list_rows()
        if as_json:
            click.echo(json.dumps([{"name": k, "description": d, "parameters": p.split()}
                                   for k, d, p in rows], indent=2))
        else:
            _echo_table(rows, ("name", "description", "parameters"))
        return
    if name is None:
        raise click.UsageError("missing bound NAME; valid bounds: " + _bound_names()
                               + " (coopsgd bound --list describes them)")
    if name.startswith("--"):  # e.g. `coopsgd bound --eta 0.01 pasgd`
        raise click.UsageError(f"give the bound NAME first (got {name!r}); valid bounds: "
                               + _bound_names())
    key = _bound_name(name)
    sys.exit(_run_bound(key, params, topology, rule, zeta_of, minimize, as_json))


def _run_bound(key: str, tokens: tuple[str, ...], topology: str | None, rule: str,
               zeta_of: str | None, minimize: str | None, as_json: bool) -> int:
    import warnings

    import sympy as sp

    from theory.bound import ConditionError
    from theory.symbols import check_value, keyword
    from theory.symbols import m as m_sym
    from theory.symbols import zeta as zeta_sym

    b = _build_bound(key)
    params = _bound_params(b)
    values: dict = {}
    for k, raw in _split_params(tokens):
        s = _resolve_param(k, params, key)
        if s in values:
            raise click.UsageError(f"parameter --{keyword(s)} given twice")
        values[s] = _parse_value(s, raw)
    derived: dict[str, dict] = {}
    if topology is not None or zeta_of is not None:
        if topology is not None and zeta_of is not None:
            raise click.UsageError("give either --topology or --zeta-of, not both")
        if zeta_sym not in params:
            raise click.UsageError(f"bound {key!r} has no ζ (its W is fixed), so --topology/"
                                   "--zeta-of do not apply")
        if zeta_sym in values:
            raise click.UsageError("give either --zeta or --topology/--zeta-of, not both")
        if topology is not None:
            if m_sym not in values:
                raise click.UsageError(f"--topology {topology} needs the number of workers --m")
            zeta_of = f"{topology}:{values[m_sym]}"
        z, how, n_nodes = _zeta_from_spec(zeta_of, values.get(m_sym), rule)
        values[zeta_sym] = z
        derived["zeta"] = {"value": z, "from": how}
        _aux_from_nodes(values, params, n_nodes, derived)
    for s, x in values.items():
        try:
            check_value(s, float(x))
        except ValueError as e:
            raise click.UsageError(str(e)) from None
    min_sym = None
    if minimize is not None:
        min_sym = _resolve_param(minimize, params, key)
        if min_sym in values:
            raise click.UsageError(f"--minimize {keyword(min_sym)}: do not also give "
                                   f"--{keyword(min_sym)}")

    mapping = {s: (sp.Integer(x) if isinstance(x, int) else x) for s, x in values.items()}
    missing = sorted((keyword(s) for s in b.free_symbols - set(values)), key=str.lower)
    conditions = [_condition_report(c, mapping) for c in b.conditions]
    failed = [c for c in conditions if c["status"] == "fails"]
    terms = {}
    for k, t in b.terms.items():
        tv = t.subs(mapping)
        terms[k] = {"expr": sp.sstr(t), "value": float(tv) if not tv.free_symbols else None,
                    "partial": sp.sstr(tv) if tv.free_symbols and values else None}
    value = None
    partial = None
    if missing:
        partial = sp.sstr(b.expr.subs(mapping)) if values else None
    else:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                value = b.evaluate(values, check=False)
        except ValueError as e:
            raise click.UsageError(str(e)) from None
    optimum = None
    min_error = None
    if min_sym is not None:
        try:
            opt = b.minimize(min_sym, {s: x for s, x in values.items()})
        except ConditionError as e:
            min_error = f"--minimize {keyword(min_sym)}: {e}"
            opt = None
        except ValueError as e:
            raise click.UsageError(f"--minimize {keyword(min_sym)}: {e}") from None
        if opt is not None:
            numeric = not (isinstance(opt.argmin, sp.Basic) and opt.argmin.free_symbols)
            optimum = {"parameter": keyword(min_sym), "method": opt.method,
                       "argmin": _number(opt.argmin) if numeric else sp.sstr(opt.argmin),
                       "value": _number(opt.value) if numeric else sp.sstr(opt.value)}
    code = EXIT_CONDITION if failed or min_error else EXIT_OK
    src = b.source
    out = {
        "bound": key, "name": b.name, "lhs": b.lhs, "expr": sp.sstr(b.expr),
        "source": src.to_dict(),
        "parameters": {keyword(s): _number(x) for s, x in values.items()},
        "derived": derived, "terms": terms, "conditions": conditions, "missing": missing,
        "partial": partial, "value": value, "valid": value is not None and not failed,
        "minimum": optimum, "minimum_error": min_error, "exit_code": code,
    }
    if as_json:
        click.echo(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        _print_bound(out, b)
    return code


def _print_bound(out: dict, b) -> None:
    import sympy as sp

    from theory.symbols import keyword

    src = out["source"]
    click.echo(f"{out['name']}  [coopsgd bound {out['bound']}]")
    click.echo(f"  {out['lhs']} ≤ {out['expr']}")
    for s, d in b.definitions.items():
        click.echo(f"  where {keyword(s) if isinstance(s, sp.Symbol) else s} = {sp.sstr(d)}")
    conf = f", confidence {src['confidence']}" if src["confidence"] else ""
    click.echo(f"source: {src['paper']}, {src['where']}")
    click.echo(f"  status: {src['status']}{conf}")
    if src["note"]:
        click.echo(f"  note: {src['note']}")
    from theory.symbols import MEANINGS

    click.echo("parameters:")
    rows = []
    for s in _bound_params(b):
        k = keyword(s)
        if k in out["derived"]:
            val = f"= {out['derived'][k]['value']:.6g} from {out['derived'][k]['from']}"
        elif k in out["parameters"]:
            val = f"= {out['parameters'][k]}"
        else:
            val = "(not given)"
        flag = "--" + k.replace("_", "-")
        rows.append((flag, s.name, val, MEANINGS.get(s, "")))
    widths = [max(len(r[i]) for r in rows) for i in range(3)] if rows else []
    for r in rows:
        click.echo("  " + "  ".join(f"{x:<{w}}" for x, w in zip(r[:3], widths, strict=True))
                   + f"  {r[3]}")
    if out["terms"]:
        click.echo("terms:")
        w = max(len(k) for k in out["terms"])
        for k, t in out["terms"].items():
            if t["value"] is not None:
                val = f" = {_fmt(t['value'])}"
            elif t["partial"] is not None:
                val = f" → {t['partial']}"
            else:
                val = ""
            click.echo(f"  {k:<{w}}  {t['expr']}{val}")
    if out["conditions"]:
        click.echo("conditions:")
        for c in out["conditions"]:
            extra = ""
            if "lhs" in c:
                extra = f" (left side {_fmt(c['lhs'])}, right side {_fmt(c['rhs'])})"
                if "largest_eta" in c:
                    extra += f"; largest admissible η = {_fmt(c['largest_eta'])}"
            elif c["status"] == "undecided":
                extra = f" (needs {', '.join(c['missing'])})"
            click.echo(f"  {c['name']}: {c['relation']}  → {c['status'].upper()}{extra}")
    else:
        click.echo("conditions: none encoded")
    if out["missing"]:
        if out["partial"] is not None:
            click.echo(f"partial: {out['partial']}")
        click.echo("missing: " + ", ".join(out["missing"]))
    else:
        tag = "" if out["valid"] else "  (NOT valid: a condition fails)"
        click.echo(f"value: {out['value']!r}{tag}")
    if out["minimum"] is not None:
        o = out["minimum"]
        click.echo(f"minimum over {o['parameter']}: {o['parameter']}* = {o['argmin']}, "
                   f"value {o['value']} ({o['method']})")
    for c in out["conditions"]:
        if c["status"] == "fails":
            hint = (f"; largest admissible η = {_fmt(c['largest_eta'])} at the other values"
                    if "largest_eta" in c else "")
            click.echo(f"condition fails: {c['name']}{hint}", err=True)
    if out["minimum_error"]:
        click.echo(f"condition fails: {out['minimum_error']}", err=True)


# =============================================================================================
# coopsgd design
# =============================================================================================
@main.command(
    short_help="Weight rules vs the optimal (FMMC, FDLA) weights on a graph.",
    epilog=f"""\b
Examples:
  coopsgd design ring --n 8
  coopsgd design torus --n 16
  coopsgd design grid --rows 3 --cols 5
  coopsgd design hypercube --n 16            # 16 nodes (dimension 4); or --dim 4
  coopsgd design geometric --n 64 --avg-degree 5 --seed 0 --save W.npy
  coopsgd bound dpsgd --zeta-of W.npy ...   # use the saved W's ζ in a bound

{_EXIT_CODES_HELP}""")
@click.argument("topology", required=False, type=_LazyChoice(_GRAPHS), metavar="[TOPOLOGY]")
@click.option("--graph", type=_LazyChoice(_GRAPHS), default=None,
              help="Same as the TOPOLOGY argument (older form).")
@click.option("--n", "--m", "n", type=int, default=64, show_default=True,
              help="number of nodes (workers); hypercube: a power of 2")
@click.option("--dim", type=int, default=None, help="hypercube dimension (instead of --n)")
@click.option("--rows", type=int, default=None, help="torus/grid rows (default √n)")
@click.option("--cols", type=int, default=None, help="torus/grid columns (default √n)")
@click.option("--avg-degree", default=5.0, show_default=True,
              help="geometric: expected degree (one draw, components joined by shortest edges)")
@click.option("--p", "p", default=0.1, show_default=True, help="erdos-renyi: edge probability")
@click.option("--seed", default=0, show_default=True, help="seed of the random graphs")
@click.option("--eps", default=1e-6, show_default=True, help="consensus accuracy for rounds")
@click.option("--method", type=click.Choice(("auto", "sdp", "symmetric", "first_order")),
              default="auto", show_default=True, help="FMMC/FDLA solver method")
@click.option("--save", "save", type=click.Path(dir_okay=False), default=None,
              help="Save the optimal W (numpy .npy) to this file.")
@click.option("--save-kind", type=click.Choice(("fdla", "fmmc")), default="fdla",
              show_default=True, help="Which optimum --save writes: FDLA (smallest ζ, weights "
              "may be negative) or FMMC (non-negative weights).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (one JSON object).")
@click.option("--quiet", "-q", is_flag=True, help="No progress line on stderr (it is shown only "
              "when stderr is a terminal).")
def design(topology: str | None, graph: str | None, n: int, dim: int | None, rows: int | None,
           cols: int | None, avg_degree: float, p: float, seed: int, eps: float, method: str,
           save: str | None, save_kind: str, as_json: bool, quiet: bool) -> None:
    """Compare weight rules with the optimal (FMMC, FDLA) weights on a graph, with certificates.

    TOPOLOGY is one of ring, path, torus, grid, hypercube, star, complete, exponential,
    erdos-renyi, geometric (default geometric). Prints ζ, the spectral gap and the consensus
    rounds of uniform, Metropolis–Hastings, max-degree, best-constant, FMMC and FDLA weights,
    each optimum with a certified lower bound on ζ*.
    """
    import theory

    if topology is not None and graph is not None and topology != graph:
        raise click.UsageError(f"TOPOLOGY {topology!r} and --graph {graph!r} disagree")
    topo = topology or graph or "geometric"
    if dim is not None:
        if topo != "hypercube":
            raise click.UsageError("--dim applies to the hypercube only")
        if dim < 1:
            raise click.UsageError(f"--dim must be ≥ 1; got {dim}")
        n = 2**dim
    if (rows is not None or cols is not None) and topo not in ("torus", "grid"):
        raise click.UsageError("--rows/--cols apply to torus and grid only")
    if rows is not None and cols is not None:
        n = rows * cols
    if not 0 < eps < 1:
        raise click.UsageError(f"--eps must be in (0, 1); got {eps}")
    try:
        G = _graph(topo, n, rows=rows, cols=cols, p=p, avg_degree=avg_degree, seed=seed)
    except ValueError as e:
        raise click.UsageError(f"{topo} with {n} nodes: {e}") from None
    if save is not None:  # the folder exists before any work starts (created if missing)
        from pathlib import Path

        from empirics.records import writable_folder

        writable_folder(Path(save).resolve().parent)
    progress = not quiet and _stderr_is_terminal()
    table = theory.compare_weights(G, eps, method=method, progress=progress)
    saved = None
    if save is not None:
        import numpy as np

        fn = theory.fastest_averaging if save_kind == "fdla" else theory.fastest_mixing
        r = fn(G, method=method, progress=progress)
        with open(save, "wb") as f:  # np.save would append .npy to other names
            np.save(f, np.asarray(r.W, dtype=float))
        saved = {"path": save, "kind": save_kind, "zeta": r.zeta}
    head = f"{topo}: {G.number_of_nodes()} nodes, {G.number_of_edges()} edges"
    if as_json:
        click.echo(json.dumps({"topology": topo, "nodes": G.number_of_nodes(),
                               "edges": G.number_of_edges(), "eps": eps,
                               "rows": table.as_dicts(), "saved": saved}, indent=2,
                              ensure_ascii=False))
        return
    click.echo(head)
    click.echo(str(table))
    if saved:
        click.echo(f"saved the {save_kind.upper()} W (ζ = {saved['zeta']:.6f}) to {save}")


#: the reproductions' names for --only's help (kept equal to empirics.reproductions.REPRODUCTIONS
#: by tests/test_cli.py; not imported here so that --help stays fast)
_REPRO_NAMES = ("cooperative", "local_pl", "growing_intervals", "memory", "squarm", "relu_qsgd",
                "falsify", "cooperative_cnn")


@main.command(
    "verify",
    short_help="Run the papers' reproductions and write a verification report (main job).",
    epilog=f"""\b
Examples:
  coopsgd verify                          # default suite, < 10 min on 2 CPU cores
  coopsgd verify --out report --only cooperative --only memory
  coopsgd verify --scale full --device cuda
  coopsgd verify --scale smoke --strict   # seconds; exit 1 if a claim is violated

\b
Writes OUT/report.md (one table of claims: claim, paper, measured, bound, verdict,
tightness; the figures), OUT/figures/*.png and OUT/results.json. Finished runs are
cached in OUT/cache and finished reproductions in OUT/reproductions: an interrupted
call resumes on the next one (--fresh starts over).

{_EXIT_CODES_HELP}
  (verify: 1 if a reproduction failed with an error, or with --strict if a claim is
  violated / disagrees; 130 if interrupted by Ctrl-C or SIGTERM, after writing the
  report of what finished)""")
@click.option("--out", default="coopsgd-report", show_default=True, help="report folder")
@click.option("--scale", type=click.Choice(["smoke", "default", "full"]), default="default",
              show_default=True, help="smoke: seconds; default: < 10 min; full: papers' sizes")
@click.option("--device", default="cpu", show_default=True, help="torch device (cpu, cuda, ...)")
@click.option("--only", multiple=True, metavar="NAME",
              help=f"run only these reproductions (repeatable): {', '.join(_REPRO_NAMES)}")
@click.option("--fresh", is_flag=True, help="ignore finished work in OUT and start over")
@click.option("--strict", is_flag=True, help="exit 1 if any claim is violated or disagrees")
@click.option("--quiet", is_flag=True, help="no progress bars")
@click.option("--gallery", default=None, metavar="DOCS_DIR",
              help="also write DOCS_DIR/gallery.md and DOCS_DIR/gallery/*.png")
def verify_cmd(out: str, scale: str, device: str, only: tuple[str, ...], fresh: bool,
               strict: bool, quiet: bool, gallery: str | None) -> None:
    """Run the reproductions of the four papers (and two related works) and write a report."""
    from empirics.verify import verify

    try:
        res = verify(out, scale=scale, device=device, only=list(only) or None, fresh=fresh,
                     progress=not quiet)
    except KeyboardInterrupt:
        click.echo(f"interrupted: the report of the finished reproductions is in {out}; run "
                   "the same command again to resume", err=True)
        sys.exit(130)
    counts: dict[str, int] = {}
    for r in res.reproductions:
        for c in r.claims:
            counts[c.verdict] = counts.get(c.verdict, 0) + 1
    click.echo(f"report: {res.report}")
    if gallery is not None:
        from empirics.report import write_gallery
        from empirics.verify import _meta

        g = write_gallery(res.reproductions, res.report.parent, gallery, _meta(scale, device),
                          res.failures)
        click.echo(f"gallery: {g}")
    if res.resumed:
        click.echo(f"resumed from finished work: {', '.join(res.resumed)}")
    click.echo("verdicts: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    for name, err in res.failures.items():
        click.echo(f"reproduction {name} failed: {err}", err=True)
    for name, claim, verdict in res.failing_claims():
        click.echo(f"{verdict}: [{name}] {claim}")
    if res.failures or (strict and res.failing_claims()):
        sys.exit(EXIT_CHECK_FAILED)


@main.command(
    "run",
    short_help="Run one experiment spec (TOML/YAML/JSON): measured vs bound, verdict, report.",
    epilog=f"""\b
Examples:
  coopsgd run spec.toml
  coopsgd run spec.yaml --out results/pasgd --seeds 10
  coopsgd run spec.toml --strict          # exit 1 if the bound is violated
  coopsgd run spec.toml --backend gloo    # one torch.distributed process per worker

\b
A spec (see docs/tutorial.md):
  name = "pasgd"
  lr = 0.05
  steps = 500
  seeds = 5
  [problem]
  kind = "logistic_regression"
  sampling = "shared"
  [algorithm]
  name = "pasgd"
  m = 8
  tau = 4

{_EXIT_CODES_HELP}
  (run: 1 if training diverged, or with --strict if the verdict is "violated")""")
@click.argument("spec_file", type=click.Path(dir_okay=False))
@click.option("--out", default=None, help="report folder (default: runs/<spec name>)")
@click.option("--seeds", type=int, default=None, help="override the spec's number of seeds")
@click.option("--device", default=None, help="override the spec's device")
@click.option("--strict", is_flag=True, help="exit 1 if the bound is violated")
@click.option("--quiet", is_flag=True, help="no progress bar")
@click.option("--backend", type=click.Choice(("simulator", "gloo", "nccl")), default="simulator",
              show_default=True, help="simulator (stacked workers) or one torch.distributed "
              "process per worker")
@click.option("--no-predict", "no_predict", is_flag=True,
              help="skip the predicted column (the local model of an MLP or your own model "
                   "costs d Hessian-vector products per re-expansion)")
def run_cmd(spec_file: str, out: str | None, seeds: int | None, device: str | None,
            strict: bool, quiet: bool, backend: str, no_predict: bool) -> None:
    """Run one experiment spec and write OUT/report.md, OUT/result.json, OUT/figure.png."""
    from pathlib import Path

    from empirics.experiment import ExperimentSpec, run_experiment
    from empirics.records import RunCache, writable_folder
    from empirics.report import write_experiment_report

    try:
        spec = ExperimentSpec.load(spec_file)
        if seeds is not None:
            spec = spec.replace("seeds", seeds)
        if device is not None:
            spec = spec.replace("device", device)
    except ValueError as e:
        raise ValueError(str(e) if str(e).startswith(spec_file) else f"{spec_file}: {e}") \
            from None
    folder = writable_folder(out or Path("runs") / spec.name)  # before any work starts
    try:
        res = run_experiment(spec, progress=not quiet, cache=RunCache(folder / "cache"),
                             backend=backend, predict=not no_predict)
    except FloatingPointError as e:
        click.echo(f"Error: {e}", err=True)
        sys.exit(EXIT_CHECK_FAILED)
    path = write_experiment_report(res, folder)
    click.echo(repr(res))
    click.echo(f"report: {path}")
    if res.verdict.status == "diverged":
        click.echo(f"Error: training diverged: {res.verdict.message}", err=True)
        sys.exit(EXIT_CHECK_FAILED)
    if strict and res.verdict.status == "violated":
        sys.exit(EXIT_CHECK_FAILED)


_PREDICT_COLUMNS = ("suboptimality", "grad_norm2", "grad_norm2_running", "consensus",
                    "consensus_running", "dist2_u", "dist2_workers", "memory_norm2_workers",
                    "memory_norm2")


def _num(x: Any) -> str:
    """A number for a table ("—" for None / NaN)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{float(x):.6g}"


def _int_list(raw: str | None, what: str) -> list[int] | None:
    if raw is None or raw == "auto":
        return None
    try:
        out = [int(x) for x in raw.split(",") if x.strip()]
    except ValueError:
        raise click.UsageError(f"{what}: give integers separated by commas (got {raw!r})") \
            from None
    if not out or min(out) < 1:
        raise click.UsageError(f"{what}: give integers ≥ 1 (got {raw!r})")
    return out


@main.command(
    "predict",
    short_help="Predict a spec's expected error without sampling (exact on quadratics).",
    epilog=f"""\b
Examples:
  coopsgd predict spec.toml
  coopsgd predict spec.toml --metric consensus --json
  coopsgd predict spec.toml --best-tau 1,2,4,8,16,32 --wall 4096 --Y 1 --D 1
  coopsgd predict spec.toml --best-topology ring,torus,hypercube,complete --wall 8192

\b
Prints the predicted metric at the spec's records (the same metric its bound controls:
the running average of ‖∇F(u_k)‖², F(u_T) − F*, ...), the stationary floor at a constant
step size, the regime (exact: quadratic problems; local model: logistic regression; out
of regime: why) and the assumptions. No run, no sampling. --best-tau / --best-topology
choose the period / topology with the smallest predicted error under a budget (wall-clock
--wall with Y per step and D per round, or --rounds) beside the bound's choice.

{_EXIT_CODES_HELP}
  (predict: 1 if the spec is out of the predictor's regime)""")
@click.argument("spec_file", type=click.Path(dir_okay=False))
@click.option("--metric", type=click.Choice(_PREDICT_COLUMNS), default=None,
              help="predict this column instead of the spec's metric")
@click.option("--structure", type=click.Choice(("auto", "modal", "dense")), default="auto",
              show_default=True, help="how the moments are held (see empirics.moments)")
@click.option("--closure", type=click.Choice(("gauss", "taylor", "linear")), default="gauss",
              show_default=True, help="local model: Gaussian closure, its second-order "
              "(Taylor) term, or the linearised model")
@click.option("--no-floor", is_flag=True, help="skip the stationary floor")
@click.option("--rows", default=12, show_default=True, type=click.IntRange(min=2),
              help="records printed (evenly spaced, the last always)")
@click.option("--best-tau", "best_tau_", default=None, metavar="T1,T2,...|auto",
              help="choose τ (algorithm.tau) among these under the budget")
@click.option("--best-topology", default=None, metavar="A,B,...",
              help="choose the topology (algorithm.topology) among these under the budget")
@click.option("--wall", type=float, default=None, help="wall-clock budget for the choices")
@click.option("--rounds", type=int, default=None, help="communication-round budget (τ)")
@click.option("--Y", "Y_", default=1.0, show_default=True, help="time of a local step")
@click.option("--D", "D_", default=1.0, show_default=True,
              help="time of a round (τ), or per message of the largest degree (topology)")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (one JSON "
              "object).")
def predict_cmd(spec_file: str, metric: str | None, structure: str, closure: str,
                no_floor: bool, rows: int, best_tau_: str | None, best_topology: str | None,
                wall: float | None, rounds: int | None, Y_: float, D_: float,
                as_json: bool) -> None:
    """Predict SPEC_FILE's expected error along its records without running it."""
    import numpy as np

    from empirics.experiment import ExperimentSpec
    from empirics.predict import best_tau, predict
    from empirics.predict import best_topology as choose_topology
    from theory.bound import METRICS

    try:
        spec = ExperimentSpec.load(spec_file)
    except ValueError as e:
        raise ValueError(str(e) if str(e).startswith(spec_file) else f"{spec_file}: {e}") \
            from None
    pred = predict(spec, metric=metric, structure=structure, closure=closure,
                   floor=not no_floor)
    out: dict[str, Any] = {"prediction": pred.to_dict()}
    if best_tau_ is not None:
        tc = best_tau(spec, _int_list(best_tau_, "--best-tau"), rounds=rounds, wall=wall,
                      Y=Y_, D=D_, structure=structure)
        out["best_tau"] = {"best": tc.best, "table": tc.table, "budget": tc.budget,
                           "bound_tau": tc.bound_tau, "bound_note": tc.bound_note}
    if best_topology is not None:
        cands = [c.strip() for c in best_topology.split(",") if c.strip()]
        tp = choose_topology(spec, cands, wall=wall, Y=Y_, latency=D_, structure=structure)
        out["best_topology"] = {"best": tp.best, "table": tp.table, "budget": tp.budget,
                                "bound_best": tp.bound_best, "bound_note": tp.bound_note}
    if as_json:
        from empirics.records import json_ready

        click.echo(json.dumps(json_ready(out), indent=2, ensure_ascii=False))
    else:
        label = METRICS.get(pred.metric, pred.metric)
        if pred.values is None:
            click.echo(f"{spec.name}: out of the predictor's regime — {pred.reason}")
        else:
            click.echo(f"{spec.name}: predicted {label} ({pred.regime}; {pred.structure}; "
                       f"{pred.seconds:.2g} s, no sampling)")
            n = len(pred.steps)
            idx = sorted({int(round(i)) for i in np.linspace(0, n - 1, min(rows, n))})
            extra = [c for c in ("consensus", "memory_norm2_workers") if c != pred.metric
                     and np.nanmax(np.abs(pred.columns.get(c, np.zeros(1)))) > 1e-12]
            _echo_table([(int(pred.steps[i]), _num(pred.values[i]),
                          *(_num(pred.columns[c][i]) for c in extra)) for i in idx],
                        ("step", pred.metric, *extra))
            if pred.floor is not None:
                click.echo(f"floor (stationary, constant η): {pred.floor:.6g} — {pred.floor_note}")
            else:
                click.echo(f"floor: none — {pred.floor_note}")
            if pred.assumptions:
                click.echo("assumptions:")
                for a in pred.assumptions:
                    click.echo(f"  - {a}")
        if "best_tau" in out:
            b = out["best_tau"]
            click.echo(f"best τ under {b['budget']}: τ = {b['best']}"
                       + ("" if b["bound_tau"] is None else
                          f"  (the bound's τ* = {b['bound_tau']:.4g}: {b['bound_note']})"))
            _echo_table([(r["tau"], r["steps"], r["rounds"], _num(r["predicted"]),
                          "yes" if r["admissible"] else "no") for r in b["table"]],
                        ("tau", "steps", "rounds", "predicted", "in budget"))
        if "best_topology" in out:
            b = out["best_topology"]
            click.echo(f"best topology under {b['budget']}: {b['best']}"
                       + ("" if b["bound_best"] is None else
                          f"  (the bound picks {b['bound_best']}: {b['bound_note']})"))
            _echo_table([(r["name"], f"{r['zeta']:.4g}", _num(r["D"]), r["steps"],
                          _num(r["predicted"])) for r in b["table"]],
                        ("topology", "zeta", "D(W)", "steps", "predicted"))
    if pred.values is None:
        sys.exit(EXIT_CHECK_FAILED)


@main.command(
    "falsify",
    short_help="Search a bound's admissible settings for the run closest to breaking it.",
    epilog=f"""\b
Examples:
  coopsgd falsify pasgd --over tau=1..32 --over m=2..32 --budget 60
  coopsgd falsify dpsgd --over topology=ring,torus,hypercube --over m=4..16
  coopsgd falsify cooperative-noniid --over heterogeneity=0..1 --budget 40

\b
--over NAME=LO..HI for m, tau, rounds (K = rounds·τ), heterogeneity, eta (a fraction of the
largest η the bound's conditions admit); --over topology=A,B,... (ring, torus, hypercube,
complete, geometric). Every searched setting lies inside the bound's hypotheses.

{_EXIT_CODES_HELP}
  (falsify: 1 if a counterexample was found)""")
@click.argument("bound_name", metavar="BOUND")
@click.option("--over", multiple=True, metavar="NAME=LO..HI",
              help="a searched range (repeatable)")
@click.option("--budget", default=30, show_default=True, type=click.IntRange(min=1),
              help="settings run (a violation is then shrunk, which runs a few more)")
@click.option("--seed", default=0, show_default=True, help="fixes the search")
@click.option("--seeds", default=3, show_default=True, type=click.IntRange(min=2),
              help="runs per setting (the verdict's test)")
@click.option("--out", default=None, help="report folder (default: falsify-BOUND)")
@click.option("--bound-scale", default=1.0, show_default=True, type=float,
              help="multiply the bound (e.g. 0.2: a deliberately wrong bound the search must "
                   "break)")
@click.option("--guide", type=click.Choice(["predict", "none"]), default="predict",
              show_default=True,
              help="rank drawn settings by their predicted tightness before running them "
                   "(predict), or run every drawn setting (none)")
@click.option("--quiet", is_flag=True, help="no per-setting lines")
def falsify_cmd(bound_name: str, over: tuple[str, ...], budget: int, seed: int, seeds: int,
                out: str | None, bound_scale: float, guide: str, quiet: bool) -> None:
    """Hypothesis searches the settings inside BOUND's hypotheses for the one where it is
    tightest (bound ÷ measured) or broken; writes OUT/report.md, candidates.json,
    tightness.png and, for a counterexample, counterexample.toml."""
    from empirics.falsify import Space, falsify, parse_over

    key = _bound_name(bound_name)
    space = Space(**parse_over(list(over)), seeds=seeds)
    res = falsify(key, space, budget=budget, seed=seed, out=out or f"falsify-{key}",
                  progress=not quiet, bound_scale=bound_scale, guide=guide)
    click.echo(repr(res))
    click.echo(f"report: {res.out}/report.md")
    if res.counterexample is not None:
        click.echo(f"counterexample: coopsgd run {res.out}/counterexample.toml")
        sys.exit(EXIT_CHECK_FAILED)


@main.command(
    "check-compressor",
    short_help="Check a compressor's declared properties (the property suite, for yours).",
    epilog=f"""\b
Examples:
  coopsgd check-compressor mypackage.compress:MyTopK --kw k=5
  coopsgd check-compressor topk --kw k=3          # a registered name
  coopsgd check-compressor mymod:MyQuant --kw s=4 --max-d 64 --json

\b
Checks, each with its counterexample when it fails (empirics.testing):
  shape, roundtrip (decode∘encode = C), bits (≤ declared), deterministic (same
  seed, same output), rows (per-row generators), unbiased and variance ω
  (unbiased compressors), contraction δ (where declared).

{_EXIT_CODES_HELP}
  (check-compressor: 1 if a property fails)""")
@click.argument("target", metavar="MODULE:CLASS")
@click.option("--kw", "kws", multiple=True, metavar="KEY=VALUE",
              help="constructor argument (repeatable), e.g. --kw k=5")
@click.option("--max-d", default=40, show_default=True, type=click.IntRange(min=1),
              help="largest vector length drawn")
@click.option("--examples", default=50, show_default=True, type=click.IntRange(min=1),
              help="hypothesis examples per exact property")
@click.option("--draws", default=20000, show_default=True, type=click.IntRange(min=100),
              help="draws per input for the statistical properties")
@click.option("--alpha", default=1e-6, show_default=True, type=click.FloatRange(0, 0.5,
                                                                               min_open=True),
              help="false-alarm level of each statistical property")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (one JSON object).")
def check_compressor_cmd(target: str, kws: tuple[str, ...], max_d: int, examples: int,
                         draws: int, alpha: float, as_json: bool) -> None:
    """Run the compressor property suite on MODULE:CLASS (or a registered name): the checks
    the built-in compressors pass, each reported with its counterexample."""
    import importlib

    from empirics import compressors
    from empirics.spec import option_value
    from empirics.testing import check_compressor

    kw: dict[str, Any] = {}
    for item in kws:
        k, sep, v = item.partition("=")
        if not sep or not k.strip():
            raise click.UsageError(f"--kw takes KEY=VALUE (got {item!r})")
        kw[k.strip()] = option_value(v.strip())
    if ":" not in target:
        try:
            comp = compressors.make(target, **kw)
        except (ValueError, TypeError) as e:
            raise click.UsageError(f"{target}: {e} (or give MODULE:CLASS)") from None
    else:
        mod, _, attr = target.partition(":")
        try:
            obj: Any = importlib.import_module(mod)
        except ImportError as e:
            raise click.UsageError(f"{target}: cannot import {mod!r} ({e})") from None
        for part in attr.split("."):
            if not hasattr(obj, part):
                raise click.UsageError(f"{target}: {mod!r} has no attribute {attr!r}")
            obj = getattr(obj, part)
        if callable(obj) and (isinstance(obj, type) or not hasattr(obj, "encode")):
            try:
                comp = obj(**kw)
            except (TypeError, ValueError) as e:
                raise click.UsageError(f"{target}({', '.join(kws)}): {e}") from None
        elif kw:
            raise click.UsageError(f"{target} is an instance: --kw does not apply")
        else:
            comp = obj
    try:
        rep = check_compressor(comp, max_d=max_d, max_examples=examples, draws=draws,
                               alpha=alpha)
    except TypeError as e:
        raise click.UsageError(str(e)) from None
    if as_json:
        click.echo(json.dumps(rep.to_dict(), indent=2, default=str))
    else:
        click.echo(str(rep))
    if not rep.ok:
        sys.exit(EXIT_CHECK_FAILED)


@main.command(
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
    short_help="Run the proof obligations (exit code 1 if one fails).",
    epilog=f"""\b
Examples:
  coopsgd proofs
  coopsgd proofs --topic spectra -v
  coopsgd proofs --only NAME

{_EXIT_CODES_HELP}""")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def proofs(ctx: click.Context, args: tuple[str, ...]) -> None:
    """Run the proof obligations (same as ``python -m proofs [--topic T] [--only NAME] [-v]``).

    Exit code 0 if all hold, 1 if any fails, 2 on a usage error (e.g. an unknown --only NAME).
    """
    if "--help" in args or "-h" in args:
        click.echo(ctx.get_help())
        click.echo("\nOptions of python -m proofs:")
        from proofs.__main__ import main as proofs_main

        try:
            proofs_main(["--help"])
        except SystemExit:
            pass
        ctx.exit(EXIT_OK)
    from proofs.__main__ import main as proofs_main

    sys.exit(proofs_main(list(args)))


def run() -> None:  # pragma: no cover - entry point shim
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    main()
