"""What recording costs with the default strides, against a run that records nothing (issue 21).

For a few runs — the docs' first examples and larger ones — three timings of the same run in one
process, interleaved: no recording (``record_every = T``, ``grad_every = 0``: the baseline),
the defaults (``empirics.spec.default_strides``), and the previous defaults
(``record_every = 1``, ``grad_every = 1``). Printed: the strides the defaults chose, the share of
the run's time recording takes with them — target ≤ 20 % — and how many times slower the
previous defaults made the run.

Timings are thread CPU seconds (``time.thread_time``), best of ``--repeats``; one thread.

    python benchmarks/bench_defaults.py [--quick] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch

from empirics.configs import decentralized_periodic, pasgd
from empirics.engine import RunSpec, run
from empirics.problems import LogisticRegression, MLPClassifier, NoisyQuadratic
from empirics.spec import default_strides
from theory.mixing import ring


def cases(quick: bool) -> list[tuple[str, object, object, int, int]]:
    """(name, problem, config, T, batch size)."""
    out = [
        ("experiments.md example: logistic d=20, m=8, ring τ=4",
         LogisticRegression(n_samples=2000, d=20, m=8, seed=0),
         decentralized_periodic(ring(8), 4), 500, 8),
        ("tutorial/README: logistic d=10, m=8, PASGD τ=4",
         LogisticRegression(n_samples=1000, d=10, m=8, seed=0, l2=0.01, sampling="shared"),
         pasgd(8, 4), 200, 4),
        ("noisy quadratic d=3, m=8, PASGD τ=5",
         NoisyQuadratic(d=3, m=8), pasgd(8, 5), 2000, 1),
        ("MLP 10-16-4, m=16, PASGD τ=4",
         MLPClassifier(n_samples=2000, m=16, seed=0), pasgd(16, 4), 2000, 8),
        ("logistic d=1000, m=64 (float32), PASGD τ=8",
         LogisticRegression(n_samples=4096, d=1000, m=64, seed=0, dtype=torch.float32),
         pasgd(64, 8), 1000, 32),
    ]
    if not quick:
        out.append(("MLP 784-256-10, m=16 (float32), PASGD τ=8",
                    MLPClassifier(n_samples=4096, d_in=784, hidden=256, n_classes=10, m=16,
                                  seed=0, dtype=torch.float32), pasgd(16, 8), 400, 32))
    return out


def cpu_seconds(problem, cfg, T: int, b: int, **strides) -> float:
    spec = RunSpec(problem, cfg, 0.05, T, batch_size=b, seed=0, **strides)
    t0 = time.thread_time()
    run(spec)
    return time.thread_time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="skip the 784-256-10 MLP")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread, thread CPU time, best of {a.repeats}")
    hdr = (f"{'run':<50} {'T':>5} {'s,q':>8} {'none':>8} {'default':>8} {'old 1,1':>8} "
           f"{'share':>6} {'old ×':>6}")
    print(hdr + "   (CPU seconds per run)")
    print("-" * len(hdr))
    worst = 0.0
    for name, p, cfg, T, b in cases(a.quick):
        s, q = default_strides(p, cfg.m, b, T)
        cpu_seconds(p, cfg, min(T, 50), b)  # warm-up: first-use costs, constants
        t: dict[str, float] = {}
        for _ in range(a.repeats):  # interleaved
            for k, kw in (("none", {"record_every": T, "grad_every": 0}), ("default", {}),
                          ("old", {"record_every": 1, "grad_every": 1})):
                t[k] = min(t.get(k, 1e9), cpu_seconds(p, cfg, T, b, **kw))
        share = max(0.0, t["default"] - t["none"]) / t["default"]
        worst = max(worst, share)
        print(f"{name:<50} {T:>5} {f'{s},{q}':>8} {t['none']:>8.3f} {t['default']:>8.3f} "
              f"{t['old']:>8.3f} {share:>6.0%} {t['old'] / t['none']:>5.1f}x", flush=True)
    print(f"\ntarget: with default arguments recording costs <= 20% of a run's time: worst "
          f"{worst:.0%}  {'reached' if worst <= 0.2 else 'NOT reached'}")


if __name__ == "__main__":
    main()
