"""Distributed backend (gloo, loopback, CPU): primitives against numpy, distributed trajectories
against the simulator (float64, 1e-10), byte accounting of compressed messages, failures.

Process start-up dominates the cost (each rank imports torch, 5–15 s on a loaded 2-core
machine), so the checks share jobs: one 4-rank job runs every primitive check and every
configuration (``_rank_job``); one job (slow) goes through the ``python -m
empirics.distributed`` entry point from an experiment spec; the failure tests use 2 or 3 ranks
(the hang test is slow: it waits for the collective timeout). The liveness tests (a rank frozen
by SIGSTOP, a deadlocked main thread, a killed rank) time detection from the fault's log line
(``[COOPSGD_FAULT] … at <unix time>``) to the error file of the rank that saw it, and assert the
documented bound L + 2·interval plus generous slack (the test machine is loaded).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from empirics.compressors import RandomK, TopK
from empirics.configs import (
    decentralized_periodic,
    dpsgd,
    easgd,
    hierarchical,
    lupa,
    mdsgd,
    pasgd,
    qsgd,
)
from empirics.distributed import (
    DistributedResult,
    RoundTiming,
    fit_runtime,
    run_distributed,
)
from empirics.engine import RunSpec, run
from empirics.launch import DistributedError, launch
from empirics.liveness import interval_for
from empirics.problems import LeastSquares, MLPClassifier
from empirics.records import COLUMNS
from empirics.spec import ExperimentSpec
from theory.mixing import easgd_matrix, metropolis_hastings, path, ring

M = 4
D_PRIM = 37  # vector length in the primitive checks


def _problem() -> LeastSquares:
    return LeastSquares(n_samples=400, d=10, m=M, seed=0, heterogeneity=0.5)


def _cases() -> dict[str, tuple[RunSpec, dict]]:
    p = _problem()
    mk = dict(batch_size=4, seed=3)
    mlp = MLPClassifier(n_samples=200, d_in=5, hidden=6, n_classes=3, m=M, seed=1,
                        fstar_iters=20, n_random_points=1, power_iters=10)
    return {
        "pasgd": (RunSpec(p, pasgd(M, 5), 0.05, 30, **mk), {}),
        "dpsgd_ring": (RunSpec(p, dpsgd(ring(M)), 0.05, 24, **mk), {}),
        "easgd_replicated": (RunSpec(p, easgd(M, 3, 0.2), 0.05, 24, **mk), {}),
        "easgd_owner": (RunSpec(p, easgd(M, 3, 0.2), 0.05, 24, **mk), {"aux": "owner"}),
        "topk_ef_momentum": (RunSpec(p, mdsgd(M, TopK(3), momentum=0.9), 0.05, 24, **mk), {}),
        # random-k: the per-rank compressor streams must be the simulator's (tested also for
        # worker 0, whose stream the simulator's constructor touches once)
        "randk_ef": (RunSpec(p, mdsgd(M, RandomK(4)), 0.05, 16, **mk), {}),
        # QSGD without error feedback (δ = C(η g), no memory): the per-rank config must carry it
        "qsgd_no_ef": (RunSpec(p, qsgd(M, 2), 0.05, 16, **mk), {}),
        "pasgd_float32": (RunSpec(LeastSquares(n_samples=400, d=10, m=M, seed=0,
                                               heterogeneity=0.5, dtype=torch.float32),
                                  pasgd(M, 4, momentum=0.9), 0.05, 16, **mk), {}),
        "topk_ef_ring": (RunSpec(p, mdsgd(M, TopK(3), momentum=0.9, W=ring(M)), 0.05, 20,
                                 **mk), {}),
        "dense_periodic": (RunSpec(p, decentralized_periodic(path(M), 2), 0.05, 20,
                                   record_every=3, grad_every=4, **mk), {"mixing": "dense"}),
        "hierarchical": (RunSpec(p, hierarchical(M, 2, tau1=2, tau2=4), 0.05, 20, **mk), {}),
        "lupa_linear": (RunSpec(p, lupa(M, 24, 4, 1), 0.05, 24, **mk), {}),
        "adaptive_lupa": (RunSpec(p, lupa(M, 20, 0, 2, adaptive=True), 0.05, 20, **mk), {}),
        "mlp_pasgd_nesterov": (RunSpec(mlp, pasgd(M, 3, momentum=0.5, nesterov=True), 0.1, 15,
                                       **mk), {}),
    }


def _rank_job(ctx, cases: dict[str, tuple[RunSpec, dict]]) -> dict:
    """Runs on every rank: the primitive checks, then every case through ``run_rank``."""
    import dataclasses

    import torch.distributed as dist

    from empirics.distributed import (
        NeighborPlan,
        allreduce_mean,
        dense_mix,
        exchange_payloads,
        neighbor_mix,
        run_rank,
    )

    r = ctx.rank
    g = torch.Generator().manual_seed(100 + r)
    x = torch.randn(D_PRIM, generator=g, dtype=torch.float64)
    out: dict = {"x": x.numpy().copy()}
    out["mean"] = allreduce_mean(x.clone()).numpy()
    for name, W in (("ring", ring(M)), ("path", path(M)),
                    ("mh", metropolis_hastings(__import__("networkx").star_graph(M - 1)))):
        A = np.asarray(W.matrix)
        plan = NeighborPlan(A, M, r, M, aux_owner=False)
        new, nbytes = neighbor_mix({r: x}, plan)
        out[f"nbr_{name}"] = new[r].numpy()
        out[f"nbr_{name}_bytes"] = nbytes
        out[f"nbr_{name}_peers"] = sorted(plan.send)
        out[f"dense_{name}"] = dense_mix(x, A, [r])[0][0].numpy()
    # EASGD W_α with the centre z on rank 0 (owner) — z starts as a known vector
    A = np.asarray(easgd_matrix(M, 0.15).matrix)
    z = torch.linspace(-1, 1, D_PRIM, dtype=torch.float64)
    plan = NeighborPlan(A, M, r, M, aux_owner=True)
    vals = {r: x} | ({M: z} if r == 0 else {})
    new, _ = neighbor_mix(vals, plan)
    out["easgd_owner"] = {j: t.numpy() for j, t in new.items()}
    # packed top-k payload exchange
    comp = TopK(5)
    pl = comp.encode(x[None, :].float())
    parts = exchange_payloads(pl.data)
    out["payload_nbytes"] = pl.nbytes
    out["payload_decoded"] = [comp.decode(dataclasses.replace(pl, data=t)).numpy()[0]
                              for t in parts]
    # the process-group timeout torch got: the world group's, and a hierarchical sub-group's
    from empirics.distributed import ProcessGroupCommunicator
    from empirics.driver import Layout

    cpu = torch.device("cpu")
    out["pg_timeout"] = dist.group.WORLD._get_backend(cpu).options._timeout.total_seconds()
    hspec, _ = cases["hierarchical"]
    x0 = hspec.problem.init_params(device=cpu, dtype=torch.float64)
    lay = Layout(x0)
    hc = ProcessGroupCommunicator(ctx, hspec, lay, lay.flat(x0))
    groups = [rd.W for rd in hspec.config.schedule.rounds(hspec.T) if rd.W is not None]
    st = next(s for s in (hc._entry(W)[1] for W in groups) if s.kind == "groups")
    out["group_timeout"] = st.group._get_backend(cpu).options._timeout.total_seconds()
    dist.barrier()
    # whole runs
    quiet = dataclasses.replace(ctx, out_dir=None)
    out["runs"] = {}
    for name, (spec, kw) in cases.items():
        out["runs"][name] = run_rank(quiet, spec, **kw)
    return out


JOB_TIMEOUT = 400  # seconds; also the process-group timeout of the shared job


@pytest.fixture(scope="module")
def job() -> tuple[list[dict], dict]:
    cases = _cases()
    t = time.monotonic()
    rets = launch(f"{__file__}:_rank_job", M, (cases,), backend="gloo", timeout=JOB_TIMEOUT)
    print(f"4-rank job: {time.monotonic() - t:.1f} s")
    return rets, cases


def _X(rets: list[dict]) -> np.ndarray:
    return np.stack([r["x"] for r in rets])


# ------------------------------------------------------------------------------ primitives
def test_allreduce_mean_equals_numpy_mean(job):
    rets, _ = job
    want = _X(rets).mean(0)
    for r in rets:
        np.testing.assert_allclose(r["mean"], want, rtol=0, atol=1e-14)


@pytest.mark.parametrize("name", ["ring", "path", "mh"])
def test_neighbor_and_dense_mixing_equal_WT_X(job, name):
    rets, _ = job
    W = {"ring": ring(M), "path": path(M),
         "mh": metropolis_hastings(__import__("networkx").star_graph(M - 1))}[name]
    A = np.asarray(W.matrix)
    want = A.T @ _X(rets)
    for i, r in enumerate(rets):
        np.testing.assert_allclose(r[f"nbr_{name}"], want[i], rtol=0, atol=1e-14)
        np.testing.assert_allclose(r[f"dense_{name}"], want[i], rtol=0, atol=1e-14)
        # only graph neighbours are contacted, one d-vector (float64) each
        nbrs = sorted(j for j in range(M) if j != i and abs(A[i, j]) > 1e-12)
        assert r[f"nbr_{name}_peers"] == nbrs
        assert r[f"nbr_{name}_bytes"] == len(nbrs) * D_PRIM * 8


def test_easgd_owner_exchange_updates_workers_and_centre(job):
    rets, _ = job
    A = np.asarray(easgd_matrix(M, 0.15).matrix)
    z = np.linspace(-1, 1, D_PRIM)
    X = np.vstack([_X(rets), z])
    want = A.T @ X
    for i, r in enumerate(rets):
        np.testing.assert_allclose(r["easgd_owner"][i], want[i], rtol=0, atol=1e-14)
    assert set(rets[0]["easgd_owner"]) == {0, M}
    np.testing.assert_allclose(rets[0]["easgd_owner"][M], want[M], rtol=0, atol=1e-14)


def test_payload_exchange_decodes_every_rank_topk(job):
    rets, _ = job
    comp = TopK(5)
    bits = comp.bits(D_PRIM)  # float32 values: 5·(32 + ⌈log2 37⌉)
    assert bits == 5 * (32 + 6)
    for r in rets:
        assert r["payload_nbytes"] == math.ceil(bits / 8)
        for i, dec in enumerate(r["payload_decoded"]):
            xi = torch.as_tensor(rets[i]["x"]).float()[None, :]
            np.testing.assert_array_equal(dec, comp(xi).numpy()[0])


def test_pg_timeout_is_what_torch_gets(job):
    """The process-group timeout given to the launcher bounds the world group and the sub-groups
    of hierarchical averaging (torch would give a new_group 30 minutes by default)."""
    rets, _ = job
    for r in rets:
        assert r["pg_timeout"] == JOB_TIMEOUT
        assert r["group_timeout"] == JOB_TIMEOUT


# ------------------------------------------------------------------------ trajectories
def _assert_same_run(dres: DistributedResult, spec: RunSpec, tol: float = 1e-10) -> None:
    sim = run(spec)
    got = dres.result
    assert got.status == "completed"
    assert len(got) == len(sim) and got.steps_done == sim.steps_done
    for c in COLUMNS:
        if c == "wall":
            continue
        a, b = getattr(sim, c), getattr(got, c)
        np.testing.assert_allclose(b, a, rtol=tol, atol=tol, equal_nan=True, err_msg=c)
    np.testing.assert_allclose(got.u_final, sim.u_final, rtol=tol, atol=tol)
    np.testing.assert_array_equal(got.comm_steps, sim.comm_steps)
    np.testing.assert_array_equal(got.grad_norm2_at, sim.grad_norm2_at)
    assert got.grad_norm2_avg == pytest.approx(sim.grad_norm2_avg, rel=tol)
    # the trajectory moved (a frozen run would match trivially)
    assert sim.loss[-1] < 0.9 * sim.loss[0] or sim.consensus.max() > 0


@pytest.mark.parametrize("name", list(_cases()))
def test_distributed_trajectory_equals_simulator(job, name):
    rets, cases = job
    assert all(r["runs"][name] is None for r in rets[1:])
    dres = rets[0]["runs"][name]
    spec, _ = cases[name]
    _assert_same_run(dres, spec, tol=2e-5 if "float32" in name else 1e-10)
    t = dres.timing
    assert t.compute.shape == (M, len(t.start)) and np.all(t.compute > 0)
    assert int(t.length.sum()) == spec.T


def test_compressed_messages_are_the_declared_payload(job):
    """Top-k error feedback with W = J and τ = 1: every rank puts exactly one packed payload of
    ⌈bits(d, 64)/8⌉ bytes per step on the wire (float64 values), and the recorded bits follow
    the engine's float32 convention m·bits(d) per step."""
    rets, cases = job
    dres = rets[0]["runs"]["topk_ef_momentum"]
    spec, _ = cases["topk_ef_momentum"]
    d = spec.problem.dim
    comp = spec.config.compressor
    per_msg = math.ceil(comp.bits(d, 64) / 8)
    assert per_msg == math.ceil(3 * (64 + 4) / 8)
    assert per_msg * 8 < 64 * d  # smaller than a dense float64 model
    np.testing.assert_array_equal(dres.timing.wire_bytes, [spec.T * per_msg] * M)
    assert dres.result.bits[-1] == spec.T * M * comp.bits(d)
    # the ring variant sends whole models to the two neighbours (engine's accounting)
    ring_res = rets[0]["runs"]["topk_ef_ring"]
    T = cases["topk_ef_ring"][0].T
    np.testing.assert_array_equal(ring_res.timing.wire_bytes, [T * 2 * d * 8] * M)


@pytest.mark.slow
def test_torchrun_command_from_the_docs(tmp_path):
    """``torchrun --standalone --nproc-per-node 2 -m empirics.distributed --spec spec.toml --out
    results/`` (docs/running_on_a_cluster.md) from another directory: records equal the
    simulator's."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    desc = {"name": "torchrun", "problem": {"kind": "least_squares", "n_samples": 200, "d": 8,
                                            "seed": 0},
            "algorithm": {"name": "dpsgd", "m": 2, "topology": "path", "momentum": 0.5},
            "lr": 0.05, "steps": 12, "batch_size": 4, "seeds": [1]}
    ExperimentSpec.from_dict(desc).to_toml(tmp_path / "spec.toml")
    repo = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=repo + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node", "2", "-m", "empirics.distributed", "--spec",
                           "spec.toml", "--out", "results/", "--pg-timeout", "60"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    from empirics.records import load_result

    got = load_result(tmp_path / "results" / "result.json")
    t = RoundTiming.load(tmp_path / "results" / "timing.json")
    _assert_same_run(DistributedResult(got, t), ExperimentSpec.from_dict(desc).run_spec())


@pytest.mark.slow
def test_entry_point_run_distributed_pasgd(tmp_path):
    """PASGD through ``python -m empirics.distributed`` (the torchrun entry point), from an
    experiment spec: same trajectory as the simulator; result.json and timing.json on disk."""
    desc = ExperimentSpec.from_dict(
        {"name": "entry", "problem": {"kind": "least_squares", "n_samples": 400, "d": 10,
                                      "seed": 0, "heterogeneity": 0.5},
         "algorithm": {"name": "pasgd", "m": M, "tau": 5}, "lr": 0.05, "steps": 30,
         "batch_size": 4, "seeds": [3]})
    dres = run_distributed(desc, M, timeout=300, out_dir=tmp_path)
    _assert_same_run(dres, desc.run_spec())
    assert (tmp_path / "result.json").exists() and (tmp_path / "timing.json").exists()
    t = RoundTiming.load(tmp_path / "timing.json")
    np.testing.assert_array_equal(t.length, [5] * 6)
    # all-reduce: every rank contributes one float64 model per round
    np.testing.assert_array_equal(t.wire_bytes, [6 * 10 * 8] * M)


def test_startup_phases_are_recorded_and_the_ranks_exit_at_once(tmp_path):
    """Every rank records its start-up phases; the job's wall time splits into launch, imports,
    rendezvous, setup, run and finish; a finished rank exits without the interpreter's slow
    teardown (finish: results gathered and written, processes gone, well under a second)."""
    dres = run_distributed(_small_spec(T=20), 2, timeout=120, out_dir=tmp_path)
    st = dres.startup()
    assert set(st) == {"launch", "imports", "rendezvous", "setup", "run", "finish", "total"}
    assert all(v >= -0.05 for v in st.values())  # /proc start times have 10 ms ticks
    assert st["imports"] > 0.1 and st["run"] > 0 and st["finish"] < st["total"]
    ranks = json.loads((tmp_path / "timing.json").read_text())["startup"]
    assert len(ranks) == 2 and all(r["joined"] >= r["joining"] >= r["entered"] for r in ranks)


# ----------------------------------------------------------------------------- failures
def _small_spec(T: int = 400, m: int = 2) -> RunSpec:
    p = LeastSquares(n_samples=100, d=5, m=m, seed=0)
    return RunSpec(p, dpsgd(path(m)), 0.01, T, batch_size=2, record_every=50, grad_every=0)


def test_rank_that_raises_ends_job_with_rank_and_step(tmp_path):
    t0 = time.monotonic()
    with pytest.raises(DistributedError, match=r"rank 1 raised RuntimeError at step 7") as ei:
        run_distributed(_small_spec(), 2, timeout=120, pg_timeout=15, out_dir=tmp_path,
                        fault=(1, 7, "raise"), save_every=0.0)
    assert time.monotonic() - t0 < 120
    e = ei.value
    assert e.rank == 1 and e.step == 7
    assert "injected fault" in str(e)
    # rank 0 kept its records up to the failure
    assert e.partial is not None and e.partial.status == "error"
    assert list(e.partial.step) == [0]


@pytest.mark.slow
def test_rank_that_hangs_ends_job_within_timeout(tmp_path):
    t0 = time.monotonic()
    with pytest.raises(DistributedError, match=r"rank 1 stopped responding at step 60") as ei:
        run_distributed(_small_spec(), 2, timeout=120, pg_timeout=8, out_dir=tmp_path,
                        fault=(1, 60, "hang"), save_every=0.0)
    assert time.monotonic() - t0 < 120
    msg = str(ei.value)
    assert "rank 1: still running at step 60 when stopped, not communicating" in msg
    assert "rank 0: RuntimeError" in msg and "Timed out" in msg
    assert ei.value.partial is not None and list(ei.value.partial.step) == [0, 50]


@pytest.mark.slow
def test_job_deadline_stops_a_hang_the_collectives_do_not_see(tmp_path):
    """Process-group timeout longer than the job's: the spawn helper's deadline ends the job and
    tells the hung rank from the rank waiting for it."""
    t0 = time.monotonic()
    with pytest.raises(DistributedError, match=r"timed out after 30 s: rank 1 stopped "
                                               r"responding at step 60") as ei:
        run_distributed(_small_spec(), 2, timeout=30, pg_timeout=300, out_dir=tmp_path,
                        fault=(1, 60, "hang"), save_every=0.0)
    assert time.monotonic() - t0 < 45
    assert "rank 0: still running at step 60 when stopped, waiting on its peers" in str(ei.value)


def test_rank_that_dies_is_named(tmp_path):
    with pytest.raises(DistributedError, match=r"rank 0 died \(exit code 3\) at step 120"):
        run_distributed(_small_spec(), 2, timeout=120, pg_timeout=15, out_dir=tmp_path,
                        fault=(0, 120, "exit"))


# ----------------------------------------------------------------------------- liveness
LIVE = 5.0  # liveness timeout of the tests (seconds)
BOUND = LIVE + 2 * interval_for(LIVE)  # documented detection bound after a freeze
SLACK = 10.0  # the test machine is shared and loaded


def _fault_time(out: Path, rank: int) -> float:
    """Unix time the injected fault fired (the line ``_inject`` writes to the rank's log)."""
    for line in (out / "logs" / f"rank{rank}.log").read_text(errors="replace").splitlines():
        if line.startswith("[COOPSGD_FAULT]"):
            return float(line.rsplit(" at ", 1)[1])
    raise AssertionError(f"no fault line in rank {rank}'s log")


def _reports(out: Path) -> dict[int, dict]:
    """The liveness reports: rank → its error file, for the ranks that saw a peer go silent."""
    errs = {int(f.stem.removeprefix("rank")): json.loads(f.read_text())
            for f in (out / "errors").glob("rank*.json")}
    return {r: e for r, e in errs.items() if e["type"] == "PeerNotResponding"}


def test_frozen_rank_is_named_within_the_liveness_timeout(tmp_path):
    """Rank 1 of 3 stops itself (SIGSTOP: heartbeat and all) at step 60. Its peers see no
    heartbeat for L = 5 s and end the job: the error names rank 1 and step 60, rank 0 saved its
    records, and the job ends within the documented bound after the freeze."""
    with pytest.raises(DistributedError, match=r"rank 1 stopped responding at step 60 \(no "
                                               r"heartbeat for") as ei:
        run_distributed(_small_spec(m=3), 3, timeout=240, pg_timeout=120, out_dir=tmp_path,
                        fault=(1, 60, "stop"), save_every=0.0, liveness_timeout=LIVE)
    t_end = time.time()
    e = ei.value
    assert e.rank == 1 and e.step == 60
    assert "rank 1: still running at step 60 when stopped, the process was stopped (state T" \
        in str(e)
    t_fault = _fault_time(tmp_path, 1)
    reps = _reports(tmp_path)
    assert reps and all(r["culprit"] == 1 and r["reason"] == "heartbeat" for r in reps.values())
    detect = min(r["time"] for r in reps.values()) - t_fault
    print(f"SIGSTOP of rank 1 of 3: detected after {detect:.1f} s, job ended after "
          f"{t_end - t_fault:.1f} s (L = {LIVE:g} s)")
    assert LIVE - interval_for(LIVE) - 0.5 <= detect <= BOUND + SLACK
    assert t_end - t_fault <= BOUND + 5.0 + SLACK  # + rank 1's peers' exit delay
    # rank 0 saw it too and saved its records, with the reason
    assert e.partial is not None and e.partial.status == "error"
    assert list(e.partial.step) == [0, 50]
    assert "rank 1 stopped responding" in e.partial.message


def test_deadlocked_rank_0_is_named_by_its_peer(tmp_path):
    """Rank 0's main thread waits forever on a lock at step 60 (its heartbeat thread keeps
    beating): rank 1, waiting for it in a collective, names it by the progress rule. Rank 0
    cannot save anything more: the records up to its last save are kept."""
    with pytest.raises(DistributedError, match=r"rank 0 stopped responding at step 60 \(no "
                                               r"progress for") as ei:
        run_distributed(_small_spec(), 2, timeout=240, pg_timeout=120, out_dir=tmp_path,
                        fault=(0, 60, "deadlock"), save_every=0.0, liveness_timeout=LIVE)
    t_end = time.time()
    e = ei.value
    assert e.rank == 0 and e.step == 60
    assert "idle: deadlocked or blocked" in str(e)
    t_fault = _fault_time(tmp_path, 0)
    reps = _reports(tmp_path)
    assert set(reps) == {1} and reps[1]["culprit"] == 0 and reps[1]["reason"] == "progress"
    detect = reps[1]["time"] - t_fault
    print(f"deadlock of rank 0 of 2: detected after {detect:.1f} s, job ended after "
          f"{t_end - t_fault:.1f} s (L = {LIVE:g} s)")
    assert LIVE - 0.5 <= detect <= BOUND + SLACK
    assert t_end - t_fault <= BOUND + 5.0 + SLACK
    # the last checkpoint (save_every=0: at every record) is what is left
    assert e.partial is not None and e.partial.status == "running"
    assert list(e.partial.step) == [0, 50]


@pytest.mark.slow
def test_frozen_rank_0_is_named_through_its_silent_store(tmp_path):
    """Rank 0 hosts the rendezvous store under the spawn helper: when it is stopped the store
    goes silent with it, and rank 1 names rank 0 by the store rule. Rank 0 cannot save more:
    its last checkpoint is kept."""
    with pytest.raises(DistributedError, match=r"rank 0 stopped responding at step 60 \(the "
                                               r"rendezvous store it hosts") as ei:
        run_distributed(_small_spec(), 2, timeout=240, pg_timeout=120, out_dir=tmp_path,
                        fault=(0, 60, "stop"), save_every=0.0, liveness_timeout=LIVE)
    e = ei.value
    assert e.rank == 0 and e.step == 60
    reps = _reports(tmp_path)
    assert set(reps) == {1} and reps[1]["culprit"] == 0 and reps[1]["reason"] == "store"
    detect = reps[1]["time"] - _fault_time(tmp_path, 0)
    print(f"SIGSTOP of rank 0 of 2: detected after {detect:.1f} s (L = {LIVE:g} s)")
    assert detect <= BOUND + SLACK
    assert e.partial is not None and e.partial.status == "running"


def test_killed_rank_is_reported_in_seconds_with_step_and_records(tmp_path):
    """Rank 2 of 3 is killed (SIGKILL) at step 60, with the default liveness timeout (30 s):
    the launcher sees the death at once and reports it within a few seconds, as before the
    liveness watch; rank 0 keeps its records. The folder held an earlier job's results, which
    overwrite=True replaces."""
    (tmp_path / "result.json").write_text("{}")
    (tmp_path / "timing.json").write_text("{}")
    with pytest.raises(DistributedError, match=r"rank 2 died \(exit code -9\) at step 60") as ei:
        run_distributed(_small_spec(m=3), 3, timeout=240, pg_timeout=120, out_dir=tmp_path,
                        fault=(2, 60, "kill"), save_every=0.0, overwrite=True)
    t_end = time.time()
    dt = t_end - _fault_time(tmp_path, 2)
    print(f"SIGKILL of rank 2 of 3: reported after {dt:.1f} s")
    assert dt <= 5.0 + SLACK  # grace of 5 s for the others to save and exit
    e = ei.value
    assert e.rank == 2 and e.step == 60
    assert e.partial is not None and e.partial.status == "error"
    assert list(e.partial.step) == [0, 50]
    assert not (tmp_path / "timing.json").exists()


def test_output_folder_is_not_reused_without_overwrite(tmp_path):
    (tmp_path / "result.json").write_text('{"earlier": true}')
    with pytest.raises(ValueError, match=r"out_dir: output folder .* already holds the results "
                                         r"of an earlier job \(result.json\).*overwrite=True"):
        run_distributed(_small_spec(), 2, out_dir=tmp_path)
    assert (tmp_path / "result.json").read_text() == '{"earlier": true}'


def test_entry_point_refuses_an_used_output_folder(tmp_path):
    """``python -m empirics.distributed`` (what torchrun starts) on a folder holding an earlier
    job's timing.json: exit code 1, the reason in errors/rank0.json, nothing deleted."""
    import os
    import subprocess
    import sys

    from empirics.launch import free_port

    desc = {"name": "reuse", "problem": {"kind": "least_squares", "n_samples": 50, "d": 3,
                                         "seed": 0},
            "algorithm": {"name": "pasgd", "m": 1, "tau": 1}, "lr": 0.05, "steps": 2,
            "seeds": [1]}
    ExperimentSpec.from_dict(desc).to_toml(tmp_path / "spec.toml")
    out = tmp_path / "out"
    out.mkdir()
    (out / "timing.json").write_text("{}")
    repo = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
               MASTER_PORT=str(free_port()),
               PYTHONPATH=repo + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "empirics.distributed", "--spec",
                           str(tmp_path / "spec.toml"), "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 1
    err = json.loads((out / "errors" / "rank0.json").read_text())
    assert err["type"] == "ValueError"
    assert "already holds the results of an earlier job (timing.json)" in err["message"]
    assert "--overwrite" in err["message"]
    assert (out / "timing.json").read_text() == "{}"


@pytest.mark.slow
def test_torchrun_frozen_rank_is_named_well_before_the_pg_timeout(tmp_path):
    """The documented torchrun command with rank 1 of 3 frozen (SIGSTOP) and the default
    process-group timeout (300 s): the ranks themselves name rank 1 after L = 5 s (no launcher
    of ours watches), torchrun's output shows it, rank 0 saved its records, and the job ends
    well before 300 s (torchrun SIGKILLs the stopped rank after its 30 s shutdown timeout)."""
    import os
    import subprocess
    import sys

    desc = {"name": "torchrun-freeze", "problem": {"kind": "least_squares", "n_samples": 100,
                                                   "d": 5, "seed": 0},
            "algorithm": {"name": "dpsgd", "m": 3, "topology": "path"},
            "lr": 0.01, "steps": 100000, "batch_size": 2, "seeds": [1], "record_every": 50,
            "grad_every": 0, "bound": "none"}
    ExperimentSpec.from_dict(desc).to_toml(tmp_path / "spec.toml")
    repo = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, COOPSGD_FAULT="1:60:stop",
               PYTHONPATH=repo + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node", "3", "-m", "empirics.distributed", "--spec",
                           "spec.toml", "--out", "results/", "--save-every", "0",
                           "--liveness-timeout", str(LIVE)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=280)
    elapsed = time.time() - t0
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "PeerNotResponding: rank 1 stopped responding" in out  # the ranks' stderr
    t_fault = float(next(ln for ln in out.splitlines() if ln.startswith("[COOPSGD_FAULT]"))
                    .rsplit(" at ", 1)[1])
    reps = _reports(tmp_path / "results")
    assert reps and all(r["culprit"] == 1 for r in reps.values())
    detect = min(r["time"] for r in reps.values()) - t_fault
    print(f"torchrun, SIGSTOP of rank 1 of 3: detected after {detect:.1f} s, torchrun ended "
          f"after {elapsed:.1f} s")
    assert detect <= BOUND + SLACK
    assert elapsed < 200  # pg timeout 300 s
    from empirics.records import load_result

    res = load_result(tmp_path / "results" / "result.json")
    assert res.status == "error" and "rank 1 stopped responding" in res.message


# ---------------------------------------------------------------------------- fit, errors
def test_fit_runtime_on_measured_rounds(job):
    """Growing periods τ = 1, 3, 6, 8, 6: the fit is the least-squares line through (τ_i,
    slowest rank's compute + comm) — checked against numpy.polyfit on the raw timing."""
    rets, _ = job
    t = rets[0]["runs"]["lupa_linear"].timing
    np.testing.assert_array_equal(t.length, [1, 3, 6, 8, 6])
    Y, D = rets[0]["runs"]["lupa_linear"].fit_runtime()
    slope, icpt = np.polyfit(t.length.astype(float), (t.compute + t.comm).max(0), 1)
    assert Y == pytest.approx(slope, rel=1e-9, abs=1e-12)
    assert D == pytest.approx(icpt, rel=1e-9, abs=1e-12)


def test_fit_runtime_recovers_Y_and_D():
    rng = np.random.default_rng(0)
    tau = np.array([1, 2, 4, 8, 1, 2, 4, 8])
    t = 0.003 * tau + 0.02 + rng.normal(0, 1e-5, tau.size)
    Y, D = fit_runtime(tau, t)
    assert Y == pytest.approx(0.003, rel=2e-2) and D == pytest.approx(0.02, rel=2e-2)
    with pytest.raises(ValueError, match="two distinct lengths"):
        fit_runtime([5, 5, 5], [1.0, 1.1, 0.9])


def test_bad_arguments_are_named():
    spec = RunSpec(_problem(), pasgd(M, 2), 0.05, 4)
    with pytest.raises(ValueError, match=r"nprocs must equal the number of workers m = 4"):
        run_distributed(spec, 2)
    with pytest.raises(ValueError, match="mixing must be one of"):
        run_distributed(spec, M, mixing="gossip")
    with pytest.raises(ValueError, match="aux must be one of"):
        run_distributed(spec, M, aux="centre")
    with pytest.raises(ValueError, match="problem kind must be one of"):
        run_distributed(ExperimentSpec.from_dict({
            "name": "bad", "problem": {"kind": "Nope"},
            "algorithm": {"name": "pasgd", "m": 2, "tau": 1}, "lr": 0.1, "steps": 1}))
    with pytest.raises(ValueError, match="spec must be a RunSpec, an ExperimentSpec"):
        run_distributed(42, 2)
