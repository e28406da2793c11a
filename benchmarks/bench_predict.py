"""Benchmark: the cost of a prediction (:func:`empirics.predict.predict_built`) against the cost
of simulating one seed of the same spec (:func:`empirics.engine.run`), measured in the same
process, for d ≤ 1000 and m ≤ 64.

Cases (``--quick`` shortens the runs):

* ``quadratic d=1000 m=64``: :class:`~empirics.problems.Quadratic` with a shared dense Hessian
  (κ = 10), heterogeneous optima and correlated additive noise — PASGD τ = 8, D-PSGD on
  ring(64), EASGD (τ = 4): the exact predictor, separable modal structure (eigenbasis of H, W's
  eigen-modes; EASGD's (mean, centre) block);
* ``noisy quadratic d=1000 m=64``: multiplicative noise, PASGD with random-k error feedback;
* ``logistic regression`` at the suite's sizes (Cooperative SGD reproduction: d = 20, m = 16,
  n = 2000, K = 2048; the EF memory reproduction: d = 50, m = 8, batch 4) and a larger one
  (d = 100, m = 32) at K = 1000 and K = 10,000: the local model (Gaussian closure), d × d
  blocks per mode in the Jacobian's eigenbasis. Its re-expansions (≈ five n·d² products each)
  follow the means' transient, so the ratio falls as K grows.
* ``tanh MLP d=51``: the autograd local model (:class:`empirics.laws.AutogradLaw`):
  every re-expansion takes d Hessian-vector products and 32 third-order directional
  derivatives over all rows by torch.func — far dearer than a seed of so small a network.

The simulator gets its best path: a hand-batched gradient for the quadratic (one matmul for all
workers, registered here with :func:`empirics.algorithm.register_fast_grad`), the built-in fast
path for logistic regression. Two seeds are timed: **the spec's own** (its default strides,
:func:`empirics.spec.default_strides`: the running average of ‖∇F(u_k)‖² from one uniformly
random step per block of ``grad_every`` steps — 2 to 50 here — unbiased; what ``coopsgd run``
pays per seed, and the target's baseline) and **the exact record** (``grad_every = 1``: the
exact ‖∇F(u_k)‖² at every step, the metric the prediction gives in expectation). Reported:
prediction seconds, both seeds' seconds and the ratios (prediction ÷ seed; < 1 means the
prediction is cheaper than a single run), and the local model's re-expansions (workers' model +
averaged model; each costs a few n·d² products) with their share of the prediction's time.

    python benchmarks/bench_predict.py
    python benchmarks/bench_predict.py --quick
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any

import numpy as np
import torch

from empirics.algorithm import register_fast_grad
from empirics.engine import run
from empirics.experiment import ExperimentSpec
from empirics.predict import predict_built
from empirics.problems.quadratic import Quadratic


def _quadratic_fast_grad(problem: Quadratic) -> Any:
    """All workers' gradients H_i(x_i − x_i*) + L_i ξ̄_i in batched products (shared H: one
    matmul); the same law as ``Quadratic.loss`` under vmap."""
    H = torch.as_tensor(problem.H, dtype=problem.dtype)
    xs = torch.as_tensor(problem.x_stars, dtype=problem.dtype)
    L = torch.as_tensor(problem._L, dtype=problem.dtype)
    shared_H = problem.shared_hessian
    shared_L = bool(np.all(problem._L == problem._L[0]))

    def grad(params: dict[str, torch.Tensor], batch: tuple[torch.Tensor, ...]
             ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        x = params["x"]
        xi = batch[0].mean(1)  # (m, d)
        r = x - xs
        Hr = r @ H[0] if shared_H else torch.einsum("iab,ib->ia", H, r)
        noise = xi @ L[0].T if shared_L else torch.einsum("iab,ib->ia", L, xi)
        loss = 0.5 * (r * Hr).sum(1) + (x * noise).sum(1)
        return {"x": Hr + noise}, loss

    return grad


register_fast_grad(lambda p: type(p) is Quadratic, _quadratic_fast_grad)


def _case(name: str, spec: ExperimentSpec, problem: Any = None) -> dict[str, Any]:
    built = spec.build() if problem is None else _built(spec, problem)
    _ = built[0].constants
    metric = "grad_norm2_running"
    predict_built(spec, built, metric=metric, floor=False)  # warm-up (imports, caches)
    t0 = time.perf_counter()
    p = predict_built(spec, built, metric=metric, floor=False)
    tp = time.perf_counter() - t0
    torch.set_num_threads(1)
    rs = spec.run_spec(0, built)
    t0 = time.perf_counter()
    res = run(rs)
    ts = time.perf_counter() - t0
    exact = dataclasses.replace(rs, grad_every=1)
    t0 = time.perf_counter()
    run(exact)
    te = time.perf_counter() - t0
    reexp, share = _reexpansions(spec, built, rs.record_every)
    return {"name": name, "predict": tp, "seed": ts, "ratio": tp / ts, "grad_every":
            rs.grad_every, "seed_exact": te, "ratio_exact": tp / te, "reexp": reexp,
            "share": share, "structure": p.structure, "regime": p.regime, "predicted": p.final,
            "one_seed": float(res.grad_norm2_running[-1])}


def _reexpansions(spec: ExperimentSpec, built: Any, every: int) -> tuple[str, float]:
    """(the local model's re-expansions, "workers + averaged model"; the share of an untimed
    repeat of the propagation spent in them) — ("—", 0) for an exact law."""
    from empirics.laws import law_for
    from empirics.moments import propagate

    problem, cfg, lr = built
    law = law_for(problem)
    t0 = time.perf_counter()
    r = propagate(law, cfg, lr, spec.steps, batch_size=spec.batch_size, record_every=every)
    total = time.perf_counter() - t0
    n_w, n_o = r.info["reexpansions"]
    if n_w is None:
        return "—", 0.0
    return f"{n_w}+{n_o}", law.reexpand_seconds / total


def _built(spec: ExperimentSpec, problem: Any) -> tuple[Any, Any, Any]:
    from empirics.spec import build_config, build_lr

    cfg = build_config(spec)
    return problem, cfg, build_lr(spec, problem, cfg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="shorter runs")
    args = ap.parse_args()
    K = 200 if args.quick else 1000
    rows = []
    base = {"name": "bench", "problem": {"kind": "quadratic", "d": 1000, "heterogeneity": 1.0,
                                         "x0": 0.0}, "lr": 0.3, "steps": K,
            "record_every": max(1, K // 10), "seeds": 1}
    for label, alg in (("PASGD τ=8", {"name": "pasgd", "m": 64, "tau": 8}),
                       ("D-PSGD ring(64)", {"name": "dpsgd", "m": 64, "topology": "ring"}),
                       ("EASGD τ=4", {"name": "easgd", "m": 64, "tau": 4, "alpha": 0.03})):
        spec = ExperimentSpec(**base | {"algorithm": alg})
        rows.append(_case(f"quadratic d=1000 m=64, {label}", spec))
    nq = ExperimentSpec(name="nq", problem={"kind": "noisy_quadratic", "d": 1000, "c": 0.3,
                                            "sigma": 0.5}, algorithm={
        "name": "mdsgd", "m": 64, "compressor": "randk:k=100", "tau": 4}, lr=5e-4, steps=K,
        record_every=max(1, K // 10), seeds=1)
    rows.append(_case("noisy quadratic d=1000 m=64, random-k EF, τ=4", nq))
    lr_base = {"problem": {"kind": "logistic_regression", "n_samples": 2000, "d": 20,
                           "l2": 1e-3, "seed": 0, "sampling": "shared"}, "lr": 0.112,
               "record_every": 25, "seeds": 1}
    Kl = 512 if args.quick else 2048
    for label, alg in (("PASGD τ=8", {"name": "pasgd", "m": 16, "tau": 8}),
                       ("D-PSGD ring(16)", {"name": "dpsgd", "m": 16, "topology": "ring"}),
                       ("EASGD α*", {"name": "easgd", "m": 16, "tau": 4, "alpha": 1 / 9})):
        spec = ExperimentSpec(name="lr", algorithm=alg, steps=Kl, **lr_base)
        rows.append(_case(f"logistic d=20 m=16 (suite), {label}", spec))
    het = ExperimentSpec(name="het", algorithm={"name": "pasgd", "m": 16, "tau": 8}, steps=Kl,
                         **lr_base | {"problem": {**lr_base["problem"], "heterogeneity": 1.0,
                                                  "sampling": "shards"}})
    rows.append(_case("logistic d=20 m=16 heterogeneous, PASGD τ=8", het))
    mem = ExperimentSpec(name="mem", problem={"kind": "logistic_regression", "n_samples": 4096,
                                              "d": 50, "l2": 0.02, "seed": 0,
                                              "sampling": "shared"},
                         algorithm={"name": "mdsgd", "m": 8, "compressor": "randk:k=5"},
                         lr=0.2, steps=300 if args.quick else 1500, batch_size=4,
                         record_every=10, seeds=1)
    rows.append(_case("logistic d=50 m=8 (memory suite), random-k EF", mem))
    for K_big in ((200, 2000) if args.quick else (1000, 10000)):
        big = ExperimentSpec(name="big", problem={"kind": "logistic_regression",
                                                  "n_samples": 4000, "d": 100, "l2": 1e-3,
                                                  "seed": 0, "sampling": "shared"},
                             algorithm={"name": "pasgd", "m": 32, "tau": 8}, lr=0.1,
                             steps=K_big, record_every=K_big // 20, seeds=1)
        rows.append(_case(f"logistic d=100 m=32, PASGD τ=8, K={K_big}", big))
    mlp = ExperimentSpec(name="mlp", problem={"kind": "mlp", "n_samples": 400, "d_in": 4,
                                              "hidden": 6, "n_classes": 3, "seed": 0},
                         algorithm={"name": "pasgd", "m": 8, "tau": 4}, lr=0.2,
                         steps=100 if args.quick else 300, record_every=50, seeds=1)
    rows.append(_case("tanh MLP d=51 m=8 (autograd local model), PASGD τ=4", mlp))
    print("prediction (no sampling) vs one simulated seed, same process, 1 thread;")
    print("seed: the spec's default strides (grad_every q); exact: grad_every = 1;")
    print("re-exp.: the local model's re-expansions (workers + averaged model), their time share")
    print(f"  {'case':<58}{'predict s':>10}{'seed s':>8}{'q':>4}{'ratio':>7}{'exact s':>9}"
          f"{'ratio':>7}{'re-exp.':>9}{'share':>7}  structure")
    for r in rows:
        print(f"  {r['name']:<58}{r['predict']:>10.3f}{r['seed']:>8.3f}{r['grad_every']:>4}"
              f"{r['ratio']:>7.2f}{r['seed_exact']:>9.3f}{r['ratio_exact']:>7.2f}"
              f"{r['reexp']:>9}{r['share']:>7.0%}  {r['structure']} ({r['regime']})")


if __name__ == "__main__":
    main()
