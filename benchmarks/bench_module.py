"""Benchmark: the stacked engine on a ModuleProblem (the digits CNN) against a Python loop over m
``nn.Module`` workers with ``torch.optim.SGD`` (the baseline it must beat) and one model trained
on the same total batch (the floor), measured in the same process.

All three run local SGD with periodic averaging (PASGD, τ steps) on the same mini-batches (the
problem's sampler, one generator), the same learning rate and the same schedule; the loop
averages its modules' parameters every τ steps. Throughput = training samples per second
(m·B per step); the engine's time is its per-step work (the simulator's local step and
mixing, as the driver runs them, without the records' full-data evaluations). On the CPU
the clock is the process's CPU time (one intra-op thread), so other jobs on a shared machine
add little noise; on a GPU it is wall time after a device sync. Targets (CPU, 1 thread,
m = 16): engine ≥ 2× the loop, and one model ≤ 2× faster than the engine.

    python benchmarks/bench_module.py                 # CPU, 1 thread, m = 16
    python benchmarks/bench_module.py --m 8 --steps 100 --threads 2

The functions here are shared with ``bench_gpu.py``.
"""

from __future__ import annotations

import argparse
import copy
import time
from typing import Any

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _clock(device: torch.device) -> float:
    """Process CPU time on the CPU (other jobs on a shared machine then cost less noise; one
    intra-op thread), wall time after a device sync on a GPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return time.perf_counter()
    return time.process_time()


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def engine_rate(problem: Any, m: int, batch: int, tau: int, steps: int, lr: float,
                warmup: int = 3) -> tuple[float, float | None]:
    """(samples/s, peak GiB) of the stacked engine running PASGD(τ): the simulator's own local
    step (:class:`empirics.algorithm.LocalStep`: sampling, the stacked gradient, the update)
    and its communicator's mixing every τ steps — what the driver runs per step, without the
    records (F(u) and ∇F(u) over the whole data set, which a benchmark of the step leaves out)."""
    from empirics.configs import pasgd
    from empirics.engine import Simulator
    from empirics.spec import RunSpec

    dev = problem.device
    dt = str(problem.dtype).replace("torch.", "")
    cfg = pasgd(m, tau)
    sim = Simulator(RunSpec(problem, cfg, lr, steps + warmup, batch_size=batch,
                            record_every=steps + warmup, grad_every=0, dtype=dt))
    comm, local = sim.comm, sim.local
    W = cfg.schedule.W
    mixer = comm.mixer(W)

    def step(k: int) -> None:
        Xw, params = comm.worker_rows()
        local(Xw, params, k, lr)
        if (k + 1) % tau == 0:
            comm.mix(W, mixer, None)

    for k in range(warmup):
        step(k)
    _peak_reset(dev)
    t0 = _clock(dev)
    for k in range(warmup, warmup + steps):
        step(k)
    return m * batch * steps / (_clock(dev) - t0), _peak(dev)


def _modules(problem: Any, k: int) -> list[torch.nn.Module]:
    x0 = problem.init_params()
    out = []
    for _ in range(k):
        net = copy.deepcopy(problem.module)
        with torch.no_grad():
            for name, t in list(net.named_parameters()) + list(net.named_buffers()):
                if name in x0:
                    t.copy_(x0[name])
        for name, p in net.named_parameters():
            p.requires_grad_(name in problem.trainable_names)
        out.append(net.train())
    return out


def _autocast(problem: Any) -> Any:
    """The problem's autocast (bf16/fp16) for the baselines' forward passes, else a no-op."""
    import contextlib

    dt = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
          "float16": torch.float16}.get(problem.autocast or "")
    if dt is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=problem.device.type, dtype=dt)


def loop_rate(problem: Any, m: int, batch: int, tau: int, steps: int, lr: float,
              warmup: int = 3) -> tuple[float, float | None]:
    """(samples/s, peak GiB) of m ``nn.Module`` copies with ``torch.optim.SGD``, a Python loop
    over workers every step, parameters averaged every τ steps."""
    dev = problem.device
    nets = _modules(problem, m)
    opts = [torch.optim.SGD(n.parameters(), lr=lr) for n in nets]
    gen = problem.generator(0)
    lossf = problem._loss_fn

    def step(k: int) -> None:
        x, y = problem.sample_all(batch, gen)
        for i in range(m):
            opts[i].zero_grad(set_to_none=True)
            with _autocast(problem):
                out = nets[i](x[i])
            lossf(out.float(), y[i]).backward()
            opts[i].step()
        if (k + 1) % tau == 0:
            with torch.no_grad():
                for ps in zip(*[list(n.parameters()) + [b for b in n.buffers()
                                                        if b.is_floating_point()]
                                for n in nets], strict=True):
                    mean = torch.stack(ps).mean(0)
                    for p in ps:
                        p.copy_(mean)

    for k in range(warmup):
        step(k)
    _peak_reset(dev)
    t0 = _clock(dev)
    for k in range(steps):
        step(k)
    return m * batch * steps / (_clock(dev) - t0), _peak(dev)


def single_rate(problem: Any, m: int, batch: int, steps: int, lr: float, warmup: int = 3
                ) -> tuple[float, float | None]:
    """(samples/s, peak GiB) of one model trained with SGD on the m·B concatenated batch."""
    dev = problem.device
    (net,) = _modules(problem, 1)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    gen = problem.generator(0)
    lossf = problem._loss_fn

    def step() -> None:
        x, y = problem.sample_all(batch, gen)
        opt.zero_grad(set_to_none=True)
        with _autocast(problem):
            out = net(x.reshape(-1, *x.shape[2:]))
        lossf(out.float(), y.reshape(-1)).backward()
        opt.step()

    for _ in range(warmup):
        step()
    _peak_reset(dev)
    t0 = _clock(dev)
    for _ in range(steps):
        step()
    return m * batch * steps / (_clock(dev) - t0), _peak(dev)


def compare(problem: Any, m: int, batch: int, tau: int, steps: int, lr: float,
            repeats: int = 3) -> dict[str, Any]:
    """Best of ``repeats`` interleaved measurements of the three (each in samples/s)."""
    best = {"engine": (0.0, None), "loop": (0.0, None), "single": (0.0, None)}
    for _ in range(repeats):
        for name, fn in (("engine", lambda: engine_rate(problem, m, batch, tau, steps, lr)),
                         ("loop", lambda: loop_rate(problem, m, batch, tau, steps, lr)),
                         ("single", lambda: single_rate(problem, m, batch, steps, lr))):
            r = fn()
            if r[0] > best[name][0]:
                best[name] = r
    e, lo, s = best["engine"][0], best["loop"][0], best["single"][0]
    return {"engine": e, "loop": lo, "single": s, "engine_over_loop": e / lo,
            "single_over_engine": s / e, "engine_over_single": e / s,
            "peak_gib": {k: v[1] for k, v in best.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--batch", type=int, default=32, help="per worker")
    ap.add_argument("--tau", type=int, default=4)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--width", type=int, default=8, help="small_cnn width")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from empirics.problems import ModuleProblem

    prob = ModuleProblem({"factory": "empirics.problems.models:small_cnn",
                          "width": args.width}, "digits", m=args.m, dtype=torch.float32)
    r = compare(prob, args.m, args.batch, args.tau, args.steps, 0.05, args.repeats)
    print(f"digits CNN (small_cnn width {args.width}, d = {prob.dim}), m = {args.m}, batch "
          f"{args.batch}/worker, PASGD τ = {args.tau}, {args.steps} steps, CPU "
          f"{args.threads} thread(s), best of {args.repeats}")
    print(f"  stacked engine   {r['engine']:10.0f} samples/s")
    print(f"  loop of modules  {r['loop']:10.0f} samples/s")
    print(f"  one model (m·B)  {r['single']:10.0f} samples/s")
    print(f"  engine / loop          = {r['engine_over_loop']:.2f}   (target >= 2)")
    print(f"  one model / engine     = {r['single_over_engine']:.2f}   (target <= 2)")


if __name__ == "__main__":
    main()
