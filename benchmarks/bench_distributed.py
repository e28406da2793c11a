"""Time per mixing round for a 1M-parameter model: distributed all-reduce, neighbour exchange
(ring), all-gather + dense combination, against the simulator's mixing of the same W.

For n = 2 and 4 local gloo processes (loopback), each rank holds one d-vector (d = 1 000 000)
and times ``reps`` rounds (median, after a barrier each round). In the same run, the parent times
the simulator's ``Mixer`` (the simulator's mixing: all n rows in one process) for the same W. The
ratio column is distributed time / simulated time (same W, same dtype). For n = 2 the "ring" is
the single edge (W = [[½, ½], [½, ½]], exchanged point-to-point rather than by all-reduce).

``--startup``: where a small job's wall time goes (issue 21: "≈ 8 s start-up per run"). For
n = 2 and 4 ranks, a 20-step PASGD run through :func:`empirics.distributed.run_distributed`,
split by :meth:`DistributedResult.startup` into launch, imports, rendezvous, setup, run and
finish, interleaved with the same job exiting the previous way (``COOPSGD_FAST_EXIT=0``: the
interpreter's teardown after the work); prints both totals and their ratio.

Run: ``python benchmarks/bench_distributed.py [--d 1000000] [--reps 20] [--dtype float32]
[--startup]``. Numbers depend on the machine and its load (the 2-core CI box runs 4 ranks on 2
cores).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from empirics.launch import launch
from empirics.mixers import Mixer
from theory.mixing import average, path, ring


def _ring(n: int):
    return ring(n) if n >= 3 else path(2)


def _bench_rank(ctx, d: int, reps: int, dtype: str) -> dict[str, float]:
    import torch.distributed as dist

    from empirics.distributed import NeighborPlan, allreduce_mean, dense_mix, neighbor_mix

    n, r = ctx.world_size, ctx.rank
    dt = getattr(torch, dtype)
    x = torch.randn(d, generator=torch.Generator().manual_seed(r), dtype=dt)
    A = np.asarray(_ring(n).matrix)
    plan = NeighborPlan(A, n, r, n, aux_owner=False)

    def timed(fn) -> float:
        ts = []
        for _ in range(reps + 2):
            dist.barrier()
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        return statistics.median(ts[2:])

    return {
        "all-reduce (W = J)": timed(lambda: allreduce_mean(x.clone())),
        "neighbour exchange (ring)": timed(lambda: neighbor_mix({r: x}, plan)),
        "all-gather + dense (ring)": timed(lambda: dense_mix(x, A, [r])),
    }


def _sim(n: int, d: int, reps: int, dtype: str) -> dict[str, float]:
    dt = getattr(torch, dtype)
    X = torch.randn(n, d, generator=torch.Generator().manual_seed(0), dtype=dt)
    buf = torch.empty_like(X)
    out = {}
    for name, W, mode in (("J", average(n), "auto"), ("ring", _ring(n), "auto"),
                          ("ring sparse", _ring(n), "sparse" if n >= 3 else "auto")):
        mx = Mixer(W, X.device, dt, mode)
        ts = []
        for _ in range(reps + 2):
            t = time.perf_counter()
            mx(X, buf)
            ts.append(time.perf_counter() - t)
        out[name] = (statistics.median(ts[2:]), mx.kind)
    return out


def startup(nprocs: list[int], repeats: int) -> None:
    """Wall-time breakdown of small jobs, fast exit against the previous exit, interleaved."""
    import os

    from empirics.configs import pasgd
    from empirics.distributed import run_distributed
    from empirics.engine import RunSpec
    from empirics.problems import LogisticRegression

    keys = ("launch", "imports", "rendezvous", "setup", "run", "finish", "total")
    print(f"{'n':>2} {'exit':<9} " + " ".join(f"{k:>10}" for k in keys) + "   (seconds, best "
          f"total of {repeats})")
    for n in nprocs:
        spec = RunSpec(LogisticRegression(n_samples=400, d=10, m=n, seed=0), pasgd(n, 4), 0.1,
                       20, batch_size=4)
        best: dict[str, dict[str, float]] = {}
        for _ in range(repeats):
            for mode, flag in (("fast", "1"), ("previous", "0")):
                os.environ["COOPSGD_FAST_EXIT"] = flag
                try:
                    st = run_distributed(spec, n, timeout=300).startup()
                finally:
                    os.environ.pop("COOPSGD_FAST_EXIT", None)
                if mode not in best or st["total"] < best[mode]["total"]:
                    best[mode] = st
        for mode, st in best.items():
            print(f"{n:>2} {mode:<9} " + " ".join(f"{st[k]:>10.2f}" for k in keys))
        f, p = best["fast"], best["previous"]
        print(f"{n:>2} previous/fast total = {p['total'] / f['total']:.2f}x; finish "
              f"{p['finish']:.2f} → {f['finish']:.2f} s; what remains is mostly imports "
              f"({f['imports']:.2f} s: n processes importing torch on the machine's cores) and "
              f"the rendezvous ({f['rendezvous']:.2f} s)\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--d", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--nprocs", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--startup", action="store_true",
                    help="only the start-up breakdown of small jobs (see the docstring)")
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.startup:
        startup(a.nprocs, a.repeats)
        return
    print(f"d = {a.d:,} parameters, {a.dtype}, median of {a.reps} rounds, gloo on 127.0.0.1\n")
    hdr = f"{'n':>2}  {'method':<28} {'ms/round':>9}  {'simulated (engine kind)':<26} {'ratio':>7}"
    print(hdr)
    print("-" * len(hdr))
    for n in a.nprocs:
        sim = _sim(n, a.d, a.reps, a.dtype)
        rets = launch(f"{__file__}:_bench_rank", n, (a.d, a.reps, a.dtype), backend="gloo",
                      timeout=600)
        dist_t = {k: max(r[k] for r in rets) for k in rets[0]}  # the slowest rank ends a round
        ref = {"all-reduce (W = J)": "J", "neighbour exchange (ring)": "ring",
               "all-gather + dense (ring)": "ring"}
        for k, t in dist_t.items():
            s, kind = sim[ref[k]]
            print(f"{n:>2}  {k:<28} {1e3 * t:>9.2f}  {1e3 * s:>9.2f} ms ({kind:<8})    "
                  f"{t / s:>7.2f}")
        if n >= 3:
            s, kind = sim["ring sparse"]
            print(f"{n:>2}  {'(simulator, ring forced sparse)':<28} {'':>9}  "
                  f"{1e3 * s:>9.2f} ms ({kind:<8})")
        print()


if __name__ == "__main__":
    main()
