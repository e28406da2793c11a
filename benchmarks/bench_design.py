"""Benchmark: FMMC design at scale, against today's method measured in the same run.

Targets (issue "design at scale", 2-core machine): a seeded random geometric graph on n = 1,000
nodes to a 1% certified FMMC gap in ≤ 30 s, and n = 10,000 to 5% in ≤ 10 min. For each case it
prints the wall time to reach the certified relative gap (ζ − lower bound)/(1 − ζ) ≤ target with
``theory.fastest_mixing(G, method="first_order", tol=target)`` — the lower bound is the design's
certificate, a valid dual bound, re-checked here to lie below ζ — and the same for the
**baseline**: the first-order solver as it was at ``--baseline-rev`` (default 2d99f12, before the
design package; its two modules are loaded from git, so the baseline is the old code itself, run
on the same graph in the same process), then the ratio baseline time / our time.

Graphs: ``theory.random_geometric_graph(n, avg_degree=5, seed, connected="join")``: one draw with
r = sqrt(5/(π n)), components joined by their shortest geometric edges (n exact, degree ≈ 5).

    python benchmarks/bench_design.py                  # n = 1,000 to 1% (about 1.5 min)
    python benchmarks/bench_design.py --large          # also n = 10,000 to 5% (15–20 min)
    python benchmarks/bench_design.py --sizes 64 100 --tol 0.01 --no-baseline
    python benchmarks/bench_design.py --peer           # also the peer package mixingmatrix
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
import types
import warnings
from pathlib import Path

from theory.design import fastest_averaging, fastest_mixing
from theory.mixing import metropolis_hastings, random_geometric_graph
from theory.spectral import zeta

ROOT = Path(__file__).resolve().parents[1]


def load_baseline(rev: str) -> types.ModuleType | None:
    """``theory/design.py`` and ``theory/design_firstorder.py`` at ``rev`` as importable modules
    (``_bench_baseline_design`` and ``_bench_baseline_firstorder``), or None without git."""
    mods = {}
    for path, name in (("theory/design.py", "_bench_baseline_design"),
                       ("theory/design_firstorder.py", "_bench_baseline_firstorder")):
        try:
            src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{path}"], check=True,
                                 capture_output=True, text=True).stdout
        except (OSError, subprocess.CalledProcessError) as e:
            print(f"  baseline: cannot read {path} at {rev} ({e}); skipped")
            return None
        # the two old modules imported each other by their old names
        src = src.replace("from theory.design_firstorder import", "from _bench_baseline_firstorder"
                          " import").replace("from theory.design import",
                                             "from _bench_baseline_design import")
        spec = importlib.util.spec_from_loader(name, loader=None)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        mods[name] = (mod, src)
    for mod, src in mods.values():
        exec(compile(src, f"<{rev}:{mod.__name__}>", "exec"), mod.__dict__)
    return mods["_bench_baseline_design"][0]


def row(name: str, t: float | None, z: float, lb: float | None, note: str = "") -> str:
    gap = (z - lb) / (1 - z) if lb is not None and z < 1 else float("nan")
    ts = f"{t:8.1f}" if t is not None else "       -"
    lbs = f"{lb:.10f}" if lb is not None else "           -"
    return f"  {name:<30}{ts} s  ζ={z:.10f}  lb={lbs}  rel.gap={gap:8.2e}  {note}"


def solve(fn, G, tol: float, limit: float) -> tuple[float, object]:
    t0 = time.perf_counter()
    r = fn(G, method="first_order", tol=tol, time_limit=limit)
    t = time.perf_counter() - t0
    assert r.lower_bound <= r.zeta + 1e-12  # a certificate below the value it certifies
    return t, r


def case(n: int, tol: float, args: argparse.Namespace, baseline: types.ModuleType | None
         ) -> None:
    G = random_geometric_graph(n, avg_degree=5.0, seed=args.seed, connected="join")
    print(f"n = {n}: {G.number_of_edges()} edges, average degree "
          f"{2 * G.number_of_edges() / n:.2f}; {args.kind.upper()} to a {tol:.0%} certified gap",
          flush=True)
    print(row("Metropolis–Hastings (floor)", None, zeta(metropolis_hastings(G)), None),
          flush=True)
    fn = fastest_mixing if args.kind == "fmmc" else fastest_averaging
    t, r = solve(fn, G, tol, args.limit)
    ok = r.status == "optimal"
    print(row("ours", t, r.zeta, r.lower_bound, f"{r.status}, {r.iterations} it"), flush=True)
    if baseline is not None:
        bfn = baseline.fastest_mixing if args.kind == "fmmc" else baseline.fastest_averaging
        tb, rb = solve(bfn, G, tol, args.baseline_limit)
        okb = rb.status == "optimal"
        print(row(f"baseline ({args.baseline_rev})", tb, rb.zeta, rb.lower_bound,
                  f"{rb.status}, {rb.iterations} it"), flush=True)
        if ok and okb:
            print(f"  time to a {tol:.0%} certified gap: ours {t:.1f} s, baseline {tb:.1f} s, "
                  f"ratio {tb / t:.2f}×", flush=True)
        elif ok:
            print(f"  ours {t:.1f} s; the baseline did not reach {tol:.0%} in {tb:.0f} s "
                  f"(ratio > {tb / t:.2f}×)", flush=True)
        else:
            print(f"  ours did not reach {tol:.0%} within {args.limit:.0f} s", flush=True)
    if args.peer:
        peer(G, args)
    print(flush=True)


def peer(G, args: argparse.Namespace) -> None:
    try:
        import mixingmatrix  # type: ignore[import-not-found]
    except ImportError:
        print("  peer: mixingmatrix not installed (pip install mixingmatrix) — skipped")
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        sol = mixingmatrix.solve(G, time_limit=args.peer_limit,
                                 allow_negative=args.kind == "fdla")
        t = time.perf_counter() - t0
    lb = sol.lower_bound
    print(row("peer: mixingmatrix", t, float(sol.slem), None if lb is None else float(lb),
              f"{sol.status}, {sol.method}"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--large", action="store_true", help="also n = 10,000 to a 5%% gap")
    ap.add_argument("--sizes", type=int, nargs="+", default=None,
                    help="other sizes instead of the targets (with --tol)")
    ap.add_argument("--tol", type=float, default=0.01, help="target gap for --sizes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kind", choices=["fmmc", "fdla"], default="fmmc")
    ap.add_argument("--limit", type=float, default=900.0, help="our time limit (s)")
    ap.add_argument("--baseline-limit", type=float, default=900.0, help="baseline time limit")
    ap.add_argument("--baseline-rev", default="2d99f12", help="git revision of the baseline")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--peer", action="store_true", help="also run mixingmatrix (if installed)")
    ap.add_argument("--peer-limit", type=float, default=120.0)
    args = ap.parse_args()
    baseline = None if args.no_baseline else load_baseline(args.baseline_rev)
    cases = ([(n, args.tol) for n in args.sizes] if args.sizes else
             [(1000, 0.01)] + ([(10_000, 0.05)] if args.large else []))
    for n, tol in cases:
        case(n, tol, args, baseline)


if __name__ == "__main__":
    main()
