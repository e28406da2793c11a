"""Engine speed against its baselines, measured side by side in one process (issues 4 and 21).

For logistic regression (d = 1000) and an MLP 784-256-10 (float32), batch 32 per worker,
m ∈ {4, 16, 64}, τ ∈ {1, 8}, W ∈ {J, ring}:

* engine: steps/s of ``empirics.engine.run`` on the hand-batched fast path (the difference of a
  long and a short run, so set-up and the two records cancel);
* generic: the same through the generic gradient path (``fast_path=False``: what every problem
  without a hand-batched gradient — your own model included — runs);
* (a) loop: a Python loop over m ``nn.Module`` copies (``torch.optim.SGD`` each), mixing by a
  loop over parameters (J: stack + mean; ring: Σ_j W_ij x_j per worker);
* (b) one model stepping on one batch of m·32 (the floor for the gradient part).

Then the targets of issue 21, each against its baseline measured here:

* logistic regression at m = 64: engine ≥ 10× the module loop;
* the generic path on the MLP at m = 64: within 1.5× of the fast path, faster than the loop
  (eager, and with ``compile=True`` unless ``--no-compile``);
* the generic path's fixed cost per step on a tiny problem (logistic regression d = 10, m = 4):
  ≤ 0.3 ms, against the previous generic path (``vmap(grad_and_value)``, gradient buffer);
* sampling: all workers' indices in one call against one call per worker (d = 100, m = 64);
* no allocator cliff: step time per m·b·d element within 1.3× as the gathered batch crosses
  32 MiB (logistic regression, m = 64, d = 1000, b = 96, 128 → 192, 256: 23–31 → 47–62 MiB);
  without ``--quick``, for reference, the same as it was (a child process with the allocator
  left alone and a fresh batch allocated every step);
* mixing (issue 4): ring ≥ 10× cheaper than dense at m = 64 for the MLP's d.

Timings are thread CPU seconds (``time.thread_time``), so other processes on a shared machine do
not inflate them; every figure is the best of ``--repeats`` interleaved measurements. One thread
by default.

    python benchmarks/bench_engine.py [--quick] [--repeats 2] [--no-compile]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

from empirics.configs import Config, decentralized_periodic, pasgd
from empirics.engine import RunSpec, Simulator, run
from empirics.mixers import Mixer
from empirics.problems import LogisticRegression, MLPClassifier
from theory.mixing import MixingMatrix, average, ring

B = 32
LR = 0.05


def verdict(ok: bool) -> str:
    return "reached" if ok else "NOT reached"


# ---------------------------------------------------------------------------------------------
# problems and equivalent nn.Modules
# ---------------------------------------------------------------------------------------------
def make_problem(kind: str, m: int):
    if kind == "logreg":
        return LogisticRegression(n_samples=4096, d=1000, m=m, seed=0, dtype=torch.float32)
    return MLPClassifier(n_samples=4096, d_in=784, hidden=256, n_classes=10, m=m, seed=0,
                         dtype=torch.float32)


class LogReg(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.lin = nn.Linear(d, 1, bias=False)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return nn.functional.softplus(-s * self.lin(x).squeeze(-1)).mean()


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(784, 256), nn.Tanh(), nn.Linear(256, 10))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(self.net(x), y)


def make_module(kind: str) -> nn.Module:
    return LogReg(1000) if kind == "logreg" else MLP()


# ---------------------------------------------------------------------------------------------
# timing helpers (thread CPU time)
# ---------------------------------------------------------------------------------------------
def rate(step: Callable[[], None], seconds: float, min_steps: int = 3) -> float:
    """Steps per CPU second of ``step`` over about ``seconds`` (after one warm-up call)."""
    step()
    n, t0 = 0, time.thread_time()
    while True:
        step()
        n += 1
        el = time.thread_time() - t0
        if n >= min_steps and el >= seconds:
            return n / el


def engine_rate(problem, cfg: Config, seconds: float, **kw) -> float:
    """Steps per CPU second of ``run``: (T₂ − T₁)/(t(T₂) − t(T₁)), T sized to ~seconds."""
    def timed(T: int) -> float:
        spec = RunSpec(problem, cfg, LR, T, batch_size=B, seed=0, record_every=T, grad_every=0)
        t0 = time.thread_time()
        run(spec, **kw)
        return time.thread_time() - t0

    probe = 16  # two rounds of τ = 8 (one mixing inside the run)
    timed(probe)  # warm-up (first-use costs)
    t1 = timed(probe)
    t2 = timed(3 * probe)
    per = max((t2 - t1) / (2 * probe), 1e-6)
    T = min(max(3 * probe, int(seconds / per)), 200_000)
    T = -(-T // 8) * 8  # whole rounds for τ = 8
    tT = timed(T + probe)
    t1 = timed(probe)
    return T / max(tT - t1, 1e-9)


def loop_rate(kind: str, problem, W: MixingMatrix, tau: int, seconds: float) -> float:
    """(a): a Python loop over m nn.Module copies, SGD each, mixing every τ steps."""
    m = problem.m
    mods = [make_module(kind) for _ in range(m)]
    for mod in mods[1:]:
        mod.load_state_dict(mods[0].state_dict())
    l2 = float(problem.l2)
    opts = [torch.optim.SGD(mod.parameters(), lr=LR, weight_decay=l2) for mod in mods]
    gen = problem.generator(0)
    params = [list(mod.parameters()) for mod in mods]
    nbrs = [(i, [(i, float(W.matrix[i, i])), *js]) for i, js in W.neighbors()]
    state = {"k": 0}

    def step() -> None:
        for i, (mod, opt) in enumerate(zip(mods, opts, strict=True)):
            x, y = problem.sample(i, B, gen)
            opt.zero_grad(set_to_none=True)
            mod(x, y).backward()
            opt.step()
        state["k"] += 1
        if state["k"] % tau == 0:
            with torch.no_grad():
                for j in range(len(params[0])):
                    if W.is_average:
                        mean = torch.stack([p[j] for p in params]).mean(0)
                        for p in params:
                            p[j].copy_(mean)
                    else:
                        new = [sum(w * params[q][j] for q, w in terms) for _, terms in nbrs]
                        for p, v in zip(params, new, strict=True):
                            p[j].copy_(v)

    return rate(step, seconds)


def one_model_rate(kind: str, problem, seconds: float) -> float:
    """(b): one model stepping on a batch of m·32."""
    mod = make_module(kind)
    opt = torch.optim.SGD(mod.parameters(), lr=LR, weight_decay=float(problem.l2))
    g = problem.generator(0)
    mB = problem.m * B

    def step() -> None:
        x, y = problem.sample(0, mB, g)
        opt.zero_grad(set_to_none=True)
        mod(x, y).backward()
        opt.step()

    return rate(step, seconds)


def mixing_times(d: int, m: int, seconds: float) -> dict[str, float]:
    """CPU seconds per mixing step X ← WᵀX (m × d, float32) by strategy."""
    X = torch.randn(m, d)
    buf = torch.empty_like(X)
    out = {}
    for name, W, mode in (("ring auto", ring(m), "auto"), ("ring dense", ring(m), "dense"),
                          ("J mean", average(m), "auto"), ("J dense", average(m), "dense")):
        mx = Mixer(W, torch.device("cpu"), torch.float32, mode)
        out[name] = 1.0 / rate(lambda mx=mx: mx(X, buf), seconds)
    out["copy (floor)"] = 1.0 / rate(lambda: buf.copy_(X), seconds)
    return out


# ---------------------------------------------------------------------------------------------
# the targets of issue 21 that need their own measurement
# ---------------------------------------------------------------------------------------------
def tiny_overhead(repeats: int, seconds: float) -> dict[str, float]:
    """CPU ms per step on a tiny problem (logistic regression d = 10, m = 4, batch 8, τ = 8):
    fast path, generic path, and the previous generic path (vmap(grad_and_value) into a
    gradient buffer, unfused update), interleaved."""
    import empirics.algorithm as alg

    def old_vmap_grad(problem):
        from torch.func import grad_and_value, vmap

        return vmap(grad_and_value(lambda p, b: problem.loss(p, b)), in_dims=(0, 0))

    p = LogisticRegression(n_samples=400, d=10, m=4, seed=0)
    cfg = pasgd(4, 8)
    new = alg.vmap_grad
    best: dict[str, float] = {}
    for _ in range(repeats):
        for name, fp, fn in (("fast", True, new), ("generic", False, new),
                             ("previous generic", False, old_vmap_grad)):
            alg.vmap_grad = fn
            try:
                r = engine_rate(p, cfg, seconds, fast_path=fp)
            finally:
                alg.vmap_grad = new
            best[name] = min(best.get(name, 1e9), 1e3 / r)
    return best


def sampling_times(repeats: int) -> dict[str, float]:
    """CPU ms of one step's batches at m = 64, d = 100, b = 32: one (m, b) randint and one
    gather (today) against one randint per worker (the previous convention), and the whole
    step's time on the fast path."""
    p = LogisticRegression(n_samples=4096, d=100, m=64, seed=0, dtype=torch.float32)
    gens = [torch.Generator().manual_seed(i) for i in range(p.m)]
    g = p.generator(0)
    data = p.data()
    buf = p.sample_all(B, g)

    def per_worker() -> None:
        j = torch.cat([torch.randint(p.n_per, (B,), generator=gi) for gi in gens])
        j += torch.arange(p.m).repeat_interleave(B) * p.n_per
        for t in data:
            t.index_select(0, j)

    def one_call() -> None:
        p.sample_all(B, g, out=buf)

    best = {"one call": 1e9, "per worker": 1e9}
    for _ in range(repeats):
        best["one call"] = min(best["one call"], 1e3 / rate(one_call, 0.2))
        best["per worker"] = min(best["per worker"], 1e3 / rate(per_worker, 0.2))
    best["step"] = 1e3 / max(engine_rate(p, pasgd(64, 8), 0.5) for _ in range(repeats))
    return best


CLIFF_B = (32, 96, 128, 192, 256)  # 7.8 (in L3), 23.4, 31.3 | 46.9, 62.5 MiB of float32 batch


def cliff(repeats: int, seconds: float) -> dict[int, float]:
    """ns of CPU per m·b·d element of a step (logistic regression, m = 64, d = 1000, τ = 8) for
    batch sizes whose gathered batch lies below and above glibc's 32 MiB mmap threshold."""
    global B
    p = make_problem("logreg", 64)
    out = {}
    saved = B
    try:
        for b in CLIFF_B:
            B = b
            r = max(engine_rate(p, pasgd(64, 8), seconds) for _ in range(repeats))
            out[b] = 1e9 / r / (64 * b * 1000)
    finally:
        B = saved
    return out


def cliff_ratio(c: dict[int, float]) -> float:
    """Worst per-element time above 32 MiB over the best just below it (23–31 MiB: both out of
    the 32 MiB L3 of the development machine, so the cache does not blur the comparison)."""
    return max(c[192], c[256]) / min(c[96], c[128])


def cliff_before(repeats: int, seconds: float) -> dict[int, float] | None:
    """:func:`cliff` as it was: a child process with the allocator left alone
    (``COOPSGD_TUNE_ALLOCATOR=0``) and a fresh batch allocated every step (no ``out=``)."""
    env = dict(os.environ, COOPSGD_TUNE_ALLOCATOR="0")
    code = (f"import json, sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); "
            f"import torch; torch.set_num_threads(1); import empirics.algorithm as alg; "
            f"alg._accepts_out = lambda fn: False; import bench_engine as b; "
            f"print(json.dumps(b.cliff({repeats}, {seconds})))")
    try:
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=900, check=True).stdout
        return {int(k): v for k, v in json.loads(out.strip().splitlines()[-1]).items()}
    except (subprocess.SubprocessError, ValueError, IndexError):
        return None


def mlp_generic(repeats: int, seconds: float, compile_: bool) -> dict[str, float]:
    """Steps per CPU second at m = 64 (MLP, τ = 8, W = J): fast path, generic path (eager and
    compiled), module loop."""
    p = make_problem("mlp", 64)
    cfg = pasgd(64, 8)
    out: dict[str, float] = {}
    if compile_:  # compile once outside the timings (tens of seconds)
        t0 = time.perf_counter()
        Simulator(RunSpec(p, cfg, LR, 16, batch_size=B, record_every=16, grad_every=0),
                  fast_path=False, compile=True).run()
        out["compile seconds"] = time.perf_counter() - t0
    for _ in range(repeats):
        for name, kw in (("fast", {}), ("generic", {"fast_path": False}),
                         *((("generic compiled", {"fast_path": False, "compile": True}),)
                           if compile_ else ())):
            out[name] = max(out.get(name, 0.0), engine_rate(p, cfg, seconds, **kw))
        out["loop"] = max(out.get("loop", 0.0), loop_rate("mlp", p, cfg.schedule.W, 8, seconds))
    return out


# ---------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="m ∈ {4, 64} only, shorter timings")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--problems", default="logreg,mlp")
    ap.add_argument("--no-compile", action="store_true", help="skip the compiled generic path")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    secs = args.seconds or (0.4 if args.quick else 1.0)
    ms = (4, 64) if args.quick else (4, 16, 64)
    from empirics.algorithm import auto_tune_allocator

    tuned = auto_tune_allocator(torch.device("cpu"))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, allocator tuned "
          f"(automatically): {tuned}, thread CPU time, best of {args.repeats}, ~{secs:.1f} s "
          f"per measurement")
    hdr = (f"{'problem':<7} {'m':>3} {'tau':>3} {'W':<4} {'fast path':<22} {'engine':>8} "
           f"{'generic':>8} {'loop(a)':>8} {'one(b)':>8} {'eng/loop':>9} {'one/eng':>8}")
    print(hdr + "   (steps per CPU second)")
    print("-" * len(hdr))
    summary = {}
    for kind in args.problems.split(","):
        for m in ms:
            problem = make_problem(kind, m)
            one = max(one_model_rate(kind, problem, secs) for _ in range(args.repeats))
            for tau in (1, 8):
                for wname in ("J", "ring"):
                    cfg = pasgd(m, tau) if wname == "J" else decentralized_periodic(ring(m), tau)
                    path = Simulator(RunSpec(problem, cfg, LR, 1, batch_size=B)).grad_path
                    eng = gen = loop = 0.0
                    for _ in range(args.repeats):  # interleaved
                        eng = max(eng, engine_rate(problem, cfg, secs))
                        gen = max(gen, engine_rate(problem, cfg, secs, fast_path=False))
                        loop = max(loop, loop_rate(kind, problem, cfg.schedule.W, tau, secs))
                    summary[(kind, m, tau, wname)] = (eng, loop, one)
                    print(f"{kind:<7} {m:>3} {tau:>3} {wname:<4} {path:<22} {eng:>8.1f} "
                          f"{gen:>8.1f} {loop:>8.1f} {one:>8.1f} {eng / loop:>8.2f}x "
                          f"{one / eng:>7.2f}x", flush=True)
    d_mlp = 784 * 256 + 256 + 256 * 10 + 10
    mt: dict[str, float] = {}
    for _ in range(args.repeats):
        for k, v in mixing_times(d_mlp, 64, secs).items():
            mt[k] = min(mt.get(k, float("inf")), v)
    print(f"\nmixing step, m = 64, d = {d_mlp} (float32; ring auto kernel: "
          f"{Mixer(ring(64), torch.device('cpu'), torch.float32).strategy_for(d_mlp)}):")
    for k, v in mt.items():
        print(f"  {k:<12} {v * 1e3:8.2f} ms")

    print("\ntargets (issue 21), each against its baseline measured above or here:")
    if "logreg" in args.problems:
        for tau in (1, 8):
            for wname in ("J", "ring"):
                if ("logreg", 64, tau, wname) in summary:
                    e, lp, _ = summary[("logreg", 64, tau, wname)]
                    print(f"  logreg m=64 d=1000 tau={tau} W={wname:<4} engine/loop >= 10: "
                          f"{e / lp:6.2f}  {verdict(e / lp >= 10)}")
    if "mlp" in args.problems:
        g = mlp_generic(args.repeats, max(secs, 0.5), not args.no_compile)
        if "compile seconds" in g:
            print(f"  (compiling the generic MLP path took {g['compile seconds']:.1f} s)")
        for name in ("generic", "generic compiled"):
            if name in g:
                r = g["fast"] / g[name]
                print(f"  mlp m=64 {name:<16} time vs fast path <= 1.5x: {r:5.2f}x  "
                      f"{verdict(r <= 1.5)};  faster than the module loop: "
                      f"{g[name] / g['loop']:5.2f}x  {verdict(g[name] > g['loop'])}")
    t = tiny_overhead(args.repeats, secs)
    print(f"  tiny problem, ms per step (CPU): fast {t['fast']:.3f}, generic {t['generic']:.3f}, "
          f"previous generic {t['previous generic']:.3f} "
          f"({t['previous generic'] / t['generic']:.2f}x); generic <= 0.3 ms: "
          f"{verdict(t['generic'] <= 0.3)}")
    s = sampling_times(args.repeats)
    print(f"  sampling m=64 d=100: one call {s['one call']:.3f} ms vs per worker "
          f"{s['per worker']:.3f} ms ({s['per worker'] / s['one call']:.1f}x); share of the "
          f"step {s['one call'] / s['step']:.0%} (was {s['per worker'] / s['step']:.0%} of "
          f"today's step): {verdict(s['one call'] < s['per worker'])}")
    c = cliff(args.repeats, secs)
    r = cliff_ratio(c)
    fmt = "/".join(f"{v:.3f}" for v in c.values())
    print(f"  no cliff: ns per m·b·d element at b = {'/'.join(map(str, CLIFF_B))} (7.8 | 23–31 "
          f"| 47–62 MiB batch): {fmt}; above/below 32 MiB = {r:.2f} <= 1.3: {verdict(r <= 1.3)}")
    if not args.quick:
        u = cliff_before(args.repeats, secs)
        if u is not None:
            print("    before (allocator left alone, a fresh batch every step): "
                  + "/".join(f"{v:.3f}" for v in u.values())
                  + f"; above/below = {cliff_ratio(u):.2f}")
    rr = mt["ring dense"] / mt["ring auto"]
    print(f"  (issue 4) ring mixing >= 10x cheaper than dense at m=64: {rr:.1f}  "
          f"{verdict(rr >= 10)}; dense/copy = {mt['ring dense'] / mt['copy (floor)']:.1f}x "
          f"(the most any structured W can gain here)")


if __name__ == "__main__":
    main()
