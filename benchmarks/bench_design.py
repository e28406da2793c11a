"""Benchmark: topology design on seeded random geometric graphs (average degree ≈ 5).

For each size n it prints, side by side on the same graph: Metropolis–Hastings (the floor),
our design (``theory.fastest_mixing`` / ``fastest_averaging``; first-order spectral bundle
above 40 nodes, optionally the SCS SDP) and the peer ``mixingmatrix`` (PyPI 0.2.0, not a
dependency; skipped when not importable) with its defaults and a time limit. Columns: wall
time, ζ, certified lower bound on ζ*, relative gap (ζ − lb)/(1 − ζ).

Graphs: ``theory.random_geometric_graph(n, avg_degree=5, seed, connected="join")``: one draw with
r = sqrt(5/(π n)); when that is disconnected (usual at n ≥ 300) the components are joined by the
shortest geometric edges between them (n unchanged, average degree stays ≈ 5).

    python benchmarks/bench_design.py                       # n = 64, 100, 1000
    python benchmarks/bench_design.py --sizes 64 100 --sdp  # also the SCS SDP
"""

from __future__ import annotations

import argparse
import time
import warnings

from theory.design import fastest_averaging, fastest_mixing
from theory.mixing import metropolis_hastings, random_geometric_graph
from theory.spectral import zeta


def row(name: str, t: float | None, z: float, lb: float | None, note: str = "") -> str:
    gap = (z - lb) / (1 - z) if lb is not None and z < 1 else float("nan")
    ts = f"{t:8.2f}" if t is not None else "       -"
    lbs = f"{lb:.8f}" if lb is not None else "         -"
    return f"  {name:<26}{ts} s  ζ={z:.8f}  lb={lbs}  rel.gap={gap:9.2e}  {note}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 100, 1000])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kind", choices=["fmmc", "fdla"], default="fmmc")
    ap.add_argument("--limit", type=float, default=60.0, help="our time limit (s)")
    ap.add_argument("--peer-limit", type=float, default=120.0, help="mixingmatrix time limit")
    ap.add_argument("--tol", type=float, default=None,
                    help="target relative gap (default 1%% for n ≤ 100, 5%% above)")
    ap.add_argument("--sdp", action="store_true", help="also solve the SDP with SCS")
    ap.add_argument("--no-peer", action="store_true")
    args = ap.parse_args()
    fn = fastest_mixing if args.kind == "fmmc" else fastest_averaging
    try:
        import mixingmatrix  # type: ignore[import-not-found]
    except ImportError:
        mixingmatrix = None
    for n in args.sizes:
        G = random_geometric_graph(n, avg_degree=5.0, seed=args.seed, connected="join")
        print(f"n = {n}: {G.number_of_edges()} edges, average degree "
              f"{2 * G.number_of_edges() / n:.2f} ({args.kind.upper()})")
        zmh = zeta(metropolis_hastings(G))
        print(row("Metropolis–Hastings", None, zmh, None, "(floor)"))
        tol = args.tol if args.tol is not None else (0.01 if n <= 100 else 0.05)
        r = fn(G, method="first_order", tol=tol, time_limit=args.limit)
        print(row("ours: first_order", r.solve_time, r.zeta, r.lower_bound,
                  f"{r.status}, {r.iterations} it, tol {tol:g}"))
        if args.sdp:
            try:
                s = fn(G, method="sdp", solver="SCS", time_limit=args.limit)
                print(row("ours: sdp (SCS)", s.solve_time, s.zeta, s.lower_bound, s.status))
            except RuntimeError as e:
                print(f"  ours: sdp (SCS) failed: {e}")
        if mixingmatrix is not None and not args.no_peer:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t0 = time.perf_counter()
                sol = mixingmatrix.solve(G, time_limit=args.peer_limit,
                                         allow_negative=args.kind == "fdla")
                t = time.perf_counter() - t0
            lb = sol.lower_bound
            print(row("peer: mixingmatrix 0.2.0", t, float(sol.slem),
                      None if lb is None else float(lb), f"{sol.status}, {sol.method}"))
        elif mixingmatrix is None:
            print("  peer: mixingmatrix not installed (pip install mixingmatrix) — skipped")
        print(flush=True)


if __name__ == "__main__":
    main()
