"""The ``coopsgd`` command line (click).

``coopsgd tour`` prints a short tour of the theory (bounds, spectra, derived results);
``coopsgd spectra`` tabulates ζ for built-in topologies; ``coopsgd bound NAME --eta ...``
evaluates a named bound. Heavy imports (torch, cvxpy) happen only inside the commands that need
them.
"""

from __future__ import annotations

import sys

import click


def _echo_table(rows: list[tuple], header: tuple) -> None:
    cols = list(zip(*([header, *rows]), strict=True))
    widths = [max(len(str(x)) for x in c) for c in cols]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    click.echo(fmt.format(*header))
    click.echo("  ".join("-" * w for w in widths))
    for r in rows:
        click.echo(fmt.format(*r))


@click.group()
@click.version_option(package_name="coopsgd")
def main() -> None:
    """coopsgd: the theory of communication-efficient distributed SGD against the numbers."""


@main.command()
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
    vals = dict(eta=0.01, L=1, sigma2=1, m=16, K=10_000, F_gap=10)
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


@main.command()
@click.option("--m", "m", default=16, show_default=True, help="number of workers")
def spectra(m: int) -> None:
    """ζ and spectral gap of the built-in topologies for m workers."""
    import math

    import theory

    rows = []
    builders = {
        "ring (1/3)": lambda: theory.ring(m),
        "path (MH)": lambda: theory.path(m),
        "star (MH)": lambda: theory.star(m),
        "exponential (MH)": lambda: theory.exponential(m),
        "complete (J)": lambda: theory.complete(m),
    }
    d = int(round(math.log2(m)))
    if 2**d == m:
        builders["hypercube (uniform)"] = lambda: theory.hypercube(d)
    r = int(round(math.sqrt(m)))
    if r * r == m and r >= 3:
        builders["torus (1/5)"] = lambda: theory.torus(r, r)
    for name, fn in builders.items():
        W = fn()
        rows.append((name, f"{W.zeta:.6f}", f"{W.spectral_gap:.3g}",
                     theory.consensus_rounds(W, 1e-6)))
    _echo_table(rows, ("topology", "ζ", "gap", "rounds to 1e-6"))


_GRAPHS = ("ring", "path", "torus", "grid", "hypercube", "star", "complete", "exponential",
           "erdos-renyi", "geometric")


@main.command()
@click.option("--graph", type=click.Choice(_GRAPHS), default="geometric", show_default=True)
@click.option("--n", default=64, show_default=True, help="nodes (hypercube: dimension)")
@click.option("--avg-degree", default=5.0, show_default=True,
              help="random geometric graph (one draw, components joined by shortest edges)")
@click.option("--p", "p", default=0.1, show_default=True, help="Erdős–Rényi edge probability")
@click.option("--seed", default=0, show_default=True)
@click.option("--eps", default=1e-6, show_default=True, help="consensus accuracy for rounds")
def design(graph: str, n: int, avg_degree: float, p: float, seed: int, eps: float) -> None:
    """Compare weight rules with the optimal (FMMC, FDLA) weights on a graph, with certificates."""
    import math

    import theory

    side = max(2, int(round(math.sqrt(n))))
    G = {
        "ring": lambda: theory.ring_graph(n),
        "path": lambda: theory.path_graph(n),
        "torus": lambda: theory.torus_graph(side, side),
        "grid": lambda: theory.grid_graph(side, side),
        "hypercube": lambda: theory.hypercube_graph(n),
        "star": lambda: theory.star_graph(n),
        "complete": lambda: theory.complete_graph(n),
        "exponential": lambda: theory.exponential_graph(n),
        "erdos-renyi": lambda: theory.erdos_renyi_graph(n, p, seed),
        "geometric": lambda: theory.random_geometric_graph(n, avg_degree=avg_degree, seed=seed,
                                                          connected="join"),
    }[graph]()
    click.echo(f"{graph}: {G.number_of_nodes()} nodes, {G.number_of_edges()} edges")
    click.echo(str(theory.compare_weights(G, eps)))


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def proofs(args: tuple[str, ...]) -> None:
    """Run the proof obligations (same as ``python -m proofs [--topic T] [--only NAME] [-v]``);
    exit code 1 if any fails."""
    from proofs.__main__ import main as proofs_main

    sys.exit(proofs_main(list(args)))


def run() -> None:  # pragma: no cover - entry point shim
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    main()
