"""Process launch for the distributed backend: local spawn helper with fault handling.

One OS process per rank, started as ``python -m <module> ...`` with the environment variables
``torchrun`` sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``,
``MASTER_ADDR=127.0.0.1``, ``MASTER_PORT`` = a free loopback port), so the code path a child runs
is the one a ``torchrun`` job runs. The parent monitors the children:

* a child that exits non-zero → the others get ``grace`` seconds to exit by themselves (their
  collectives fail once the peer is gone, and rank 0 then writes its partial records), then are
  terminated, and :class:`DistributedError` names the rank, the step it was at and its error;
* a child reports that a peer stopped responding (the liveness rule of
  :mod:`empirics.liveness`: heartbeats through the rendezvous store, checked by every rank, so
  that the same rule holds under plain ``torchrun``) → that child exits with code 1 and an error
  file naming the silent rank; the parent handles it like any failure, and names the silent
  rank and the step it was at;
* the deadline ``timeout`` passes → every child is terminated and the error names the ranks still
  running and the last step each reported (a hung rank is the one whose step lags).

A child that is stopped (SIGSTOP: ``/proc/<pid>/stat`` state ``T``) is reported as such and
killed with SIGKILL (a SIGTERM would wait for a SIGCONT); the others' grace period ends early
when every child still running is stopped or named as not responding.

Children report through files in the job directory: ``progress/rank{r}.step`` (last step
started), ``errors/rank{r}.json`` (exception, step, traceback), ``logs/rank{r}.log``
(stdout/stderr) and ``returns/rank{r}.pkl`` (the return value of a :func:`launch` target).

:func:`launch` runs any importable function ``target(ctx, *args)`` on every rank (used by the
tests of the communication primitives); :func:`empirics.distributed.run_distributed` runs a
:class:`~empirics.engine.RunSpec`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from empirics.liveness import (
    DEFAULT_LIVENESS_TIMEOUT,
    ERROR_TYPE,
    Liveness,
    RankState,
    check_liveness_timeout,
    write_torchelastic_error,
)

__all__ = [
    "DEFAULT_LIVENESS_TIMEOUT",
    "DistributedError",
    "RankContext",
    "free_port",
    "launch",
    "spawn",
]

_REPO_ROOT = str(Path(__file__).resolve().parent.parent)
FAULT_ENV = "COOPSGD_FAULT"  #: "rank:step:kind", kind in FAULT_KINDS; for tests
#: raise: RuntimeError; hang: sleep forever; exit: ``os._exit(3)``; kill: SIGKILL to itself;
#: stop: SIGSTOP to itself (the whole process freezes, heartbeat included); deadlock: the main
#: thread waits forever on a lock (the heartbeat thread keeps beating: only the progress rule
#: sees it)
FAULT_KINDS = ("raise", "hang", "exit", "kill", "stop", "deadlock")


class DistributedError(RuntimeError):
    """A distributed job failed. ``rank``/``step``: the failing rank and the step it was at
    (None if unknown); ``out_dir``: the job directory (logs, partial records); ``partial``: the
    records rank 0 saved before the failure (``empirics.records.Result``) or None."""

    def __init__(self, message: str, *, rank: int | None = None, step: int | None = None,
                 out_dir: str | None = None, partial: Any = None):
        super().__init__(message)
        self.rank, self.step, self.out_dir, self.partial = rank, step, out_dir, partial


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now (bind to port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# ---------------------------------------------------------------------------------------------
# child side
# ---------------------------------------------------------------------------------------------
@dataclass
class RankContext:
    """What a rank knows about the job: ``rank``, ``world_size``, ``local_rank``, ``device``
    (``torch.device``), ``backend``, ``out_dir`` (job directory, may be None), ``pg_timeout``
    (seconds a collective waits; pass it to every ``new_group``), and the current ``step`` (set
    by the code running on the rank; reported in progress and error files, and to the liveness
    heartbeat). Copies (``dataclasses.replace``) share the progress state and the heartbeat."""

    rank: int
    world_size: int
    local_rank: int
    device: Any
    backend: str
    out_dir: Path | None
    step: int | None = None
    pg_timeout: float | None = None
    _fault: tuple[int, int, str] | None = field(default=None, repr=False)
    _progress: Any = field(default=None, repr=False)
    _state: RankState = field(default_factory=RankState, repr=False)
    _liveness: Liveness | None = field(default=None, repr=False)
    #: wall-clock times (``time.time()``) of this rank's start-up phases: ``process`` (the OS
    #: started it), ``entered`` (imports done), ``joining``/``joined`` (the rendezvous of
    #: ``init_process_group``), and what the code on the rank adds (:meth:`mark`)
    phases: dict[str, float] = field(default_factory=dict, repr=False)

    def mark(self, phase: str) -> None:
        """Record the wall-clock time of ``phase`` in :attr:`phases`."""
        self.phases[phase] = time.time()

    def _mm(self) -> Any:
        if self._progress is None and self.out_dir is not None:
            import numpy as np

            path = self.out_dir / "progress" / f"rank{self.rank}.step"
            path.parent.mkdir(parents=True, exist_ok=True)
            self._progress = np.memmap(path, dtype=np.int64, mode="w+", shape=(2,))
        return self._progress

    def progress(self, step: int) -> None:
        """Record that this rank started ``step`` (int64 in the memory-mapped file
        ``progress/rank{r}.step``: a memory write, no system call) and trigger an injected
        fault (``COOPSGD_FAULT``) planned for this step."""
        self.step = step
        self._state.progress(step)
        mm = self._mm()
        if mm is not None:
            mm[0] = step
        if self._fault is not None:
            r, k, kind = self._fault
            if r == self.rank and step >= k:
                self._fault = None
                _inject(kind, self.rank, step)

    @contextlib.contextmanager
    def communicating(self) -> Iterator[None]:
        """Mark the enclosed code as waiting on peers (collectives, point-to-point), so that a
        rank blocked there is told apart from a rank that stopped on its own."""
        st = self._state
        st.enter()
        mm = self._mm()
        if mm is not None:
            mm[1] = 1
        try:
            yield
        finally:
            st.leave()
            if mm is not None:
                mm[1] = 1 if st.depth else 0

    def on_peer_failure(self, fn: Callable[[str], Any]) -> contextlib.AbstractContextManager:
        """While the block runs, call ``fn(message)`` if this rank finds a peer not responding
        (just before the process exits; e.g. rank 0 saves its partial records)."""
        if self._liveness is None:
            return contextlib.nullcontext()
        return self._liveness.hook(fn)

    def close(self) -> None:
        """Stop the liveness heartbeat (marking this rank as exited for its peers)."""
        if self._liveness is not None:
            self._liveness.stop()


def _inject(kind: str, rank: int, step: int) -> None:
    with contextlib.suppress(Exception):  # the tests time detection from this line
        sys.stderr.write(f"[{FAULT_ENV}] rank {rank} step {step}: {kind} at {time.time():.3f}\n")
        sys.stderr.flush()
    if kind == "raise":
        raise RuntimeError(f"injected fault: rank {rank} raises at step {step}")
    if kind == "hang":
        while True:  # a rank that stops responding
            time.sleep(3600)
    if kind == "exit":
        os._exit(3)
    if kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "stop":
        os.kill(os.getpid(), signal.SIGSTOP)
        return
    if kind == "deadlock":
        import threading

        lock = threading.Lock()
        lock.acquire()
        lock.acquire()  # waits forever (releases the GIL: other threads run)
    raise ValueError(f"{FAULT_ENV}: kind must be one of {FAULT_KINDS} (got {kind!r})")


def _parse_fault(s: str | None) -> tuple[int, int, str] | None:
    if not s:
        return None
    try:
        r, k, kind = s.split(":")
        return int(r), int(k), kind
    except ValueError:
        raise ValueError(f"{FAULT_ENV} must look like 'rank:step:kind' (got {s!r})") from None


def init_rank(backend: str = "auto", device: str = "cpu", timeout: float = 60.0,
              out_dir: str | os.PathLike | None = None,
              liveness_timeout: float = DEFAULT_LIVENESS_TIMEOUT) -> RankContext:
    """Join the process group from the torchrun environment (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``); ``timeout`` (seconds) bounds every
    collective (the process-group timeout torch gets). ``device="cuda"`` → ``cuda:{LOCAL_RANK}``
    and backend nccl (when ``"auto"``); ``"cpu"`` → gloo. Sets one intra-op thread on CPU.
    With two or more ranks and ``liveness_timeout`` > 0, starts the heartbeat and watchdog of
    :mod:`empirics.liveness` (stop them with :meth:`RankContext.close`)."""
    liveness_timeout = check_liveness_timeout(liveness_timeout)
    if not (float(timeout) > 0):
        raise ValueError(f"timeout (the process-group timeout) must be > 0 seconds "
                         f"(got {timeout!r})")
    import torch
    import torch.distributed as dist

    missing = [v for v in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
               if v not in os.environ]
    if missing:
        raise RuntimeError(f"environment variables {missing} are not set: start this program "
                           f"with torchrun or empirics.launch.spawn")
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    dev_type = torch.device(device).type
    if dev_type == "cuda":
        dev = torch.device(f"cuda:{local_rank}")
        torch.cuda.set_device(dev)
    elif dev_type == "cpu":
        dev = torch.device("cpu")
        torch.set_num_threads(1)
    else:
        raise ValueError(f"device must be 'cpu' or 'cuda' (got {device!r})")
    if backend == "auto":
        backend = "nccl" if dev_type == "cuda" else "gloo"
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"backend must be 'gloo', 'nccl' or 'auto' (got {backend!r})")
    phases = {"joining": time.time()}
    if not dist.is_initialized():
        dist.init_process_group(backend, rank=rank, world_size=world,
                                timeout=timedelta(seconds=float(timeout)))
    phases["joined"] = time.time()
    out = Path(out_dir) if out_dir is not None else None
    ctx = RankContext(rank, world, local_rank, dev, backend, out, pg_timeout=float(timeout),
                      _fault=_parse_fault(os.environ.get(FAULT_ENV)), phases=phases)
    if world > 1 and liveness_timeout > 0:
        ctx._liveness = Liveness.from_env(rank, world, liveness_timeout, ctx._state,
                                          out).start()
    return ctx


def report_error(ctx: RankContext | None, exc: BaseException, out_dir: Path | None) -> None:
    """Write ``errors/rank{r}.json`` (type, message, step, traceback) for the parent."""
    if out_dir is None:
        return
    rank = ctx.rank if ctx is not None else int(os.environ.get("RANK", -1))
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    write_torchelastic_error(type(exc).__name__, str(exc), tb)
    info = {"rank": rank, "step": None if ctx is None else ctx.step,
            "type": type(exc).__name__, "message": str(exc), "time": time.time(),
            "traceback": tb}
    with contextlib.suppress(OSError):
        _atomic_write(out_dir / "errors" / f"rank{rank}.json", json.dumps(info).encode())


def _resolve(target: str) -> Callable[..., Any]:
    """``"package.module:function"`` or ``"/path/to/file.py:function"``."""
    mod, _, name = target.rpartition(":")
    if not mod or not name:
        raise ValueError(f"target must be 'module:function' or 'file.py:function' "
                         f"(got {target!r})")
    if mod.endswith(".py"):
        spec = importlib.util.spec_from_file_location(Path(mod).stem, mod)
        if spec is None or spec.loader is None:
            raise ValueError(f"target: cannot load {mod}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(mod)
    return getattr(module, name)


def _child_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of a :func:`launch` child: run ``target(ctx, *args)`` after joining the
    group, pickle its return value to ``returns/rank{r}.pkl``."""
    ap = argparse.ArgumentParser(prog="python -m empirics.launch")
    ap.add_argument("--target", required=True)
    ap.add_argument("--args", required=True, help="pickle file holding the argument tuple")
    ap.add_argument("--out", required=True)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--pg-timeout", type=float, default=60.0)
    ap.add_argument("--liveness-timeout", type=float, default=DEFAULT_LIVENESS_TIMEOUT)
    a = ap.parse_args(argv)
    out = Path(a.out)

    def work(ctx: RankContext) -> None:
        fn = _resolve(a.target)
        with open(a.args, "rb") as fh:
            args = pickle.load(fh)
        ret = fn(ctx, *args)
        _atomic_write(out / "returns" / f"rank{ctx.rank}.pkl", pickle.dumps(ret))

    return rank_main(work, out, a.backend, a.device, a.pg_timeout, a.liveness_timeout)


def process_start_time() -> float | None:
    """Wall-clock time at which the OS started this process (Linux ``/proc``), or None."""
    try:
        with open("/proc/self/stat") as fh:
            start_ticks = float(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
        return time.time() - uptime + start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def exit_now(code: int) -> None:
    """End a rank's process at once, once its work is done and written: flush stdout and stderr,
    then ``os._exit(code)``. The interpreter's own teardown of torch and the scientific stack
    took 2–2.5 s per process on a loaded 2-core machine — a third of a small job's wall time —
    and does nothing a finished rank needs (its files are written atomically and closed).
    ``COOPSGD_FAST_EXIT=0`` exits the ordinary way instead (``sys.exit``: atexit handlers run,
    e.g. for coverage measurement of the ranks)."""
    if os.environ.get("COOPSGD_FAST_EXIT", "1").strip() == "0":
        sys.exit(code)
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    os._exit(code)


def rank_main(work: Callable[[RankContext], None], out: Path, backend: str, device: str,
              pg_timeout: float, liveness_timeout: float) -> int:
    """A rank's whole life: join the group (:func:`init_rank`), ``work(ctx)``, leave together
    (barrier, then the group is destroyed); 0 on success. On any failure the rank writes
    ``errors/rank{r}.json`` for the parent, prints the traceback to its log and returns 1."""
    ctx = None
    entered = time.time()
    try:
        ctx = init_rank(backend, device, pg_timeout, out, liveness_timeout)
        ctx.phases = {"process": process_start_time() or entered, "entered": entered,
                      **ctx.phases}
        work(ctx)
        import torch.distributed as dist

        with ctx.communicating():
            dist.barrier()
        ctx.close()
        dist.destroy_process_group()
        return 0
    except BaseException as e:
        report_error(ctx, e, out)
        traceback.print_exc()
        return 1
    finally:
        if ctx is not None:
            ctx.close()


# ---------------------------------------------------------------------------------------------
# parent side
# ---------------------------------------------------------------------------------------------
def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _log_tail(out: Path, rank: int, n: int = 15) -> str:
    try:
        lines = (out / "logs" / f"rank{rank}.log").read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def _proc_state(pid: int) -> str | None:
    """The one-letter state of ``/proc/<pid>/stat`` (``T``: stopped, e.g. by SIGSTOP; ``t``:
    stopped by a tracer), or None where it cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw.rpartition(")")[2].split()[0] if ")" in raw else None


def _stopped(p: subprocess.Popen) -> bool:
    return p.poll() is None and _proc_state(p.pid) in ("T", "t")


def _terminate(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(OSError):
                # a stopped process would keep a SIGTERM pending until a SIGCONT
                p.send_signal(signal.SIGKILL if _stopped(p) else signal.SIGTERM)
    t_end = time.monotonic() + 3.0
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(max(0.0, t_end - time.monotonic()))
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(OSError):
                p.kill()
            p.wait()


def _is_comm_error(info: dict[str, Any]) -> bool:
    """An error caused by a peer going away or timing out (a consequence, not the cause)."""
    msg = (info.get("type", "") + " " + info.get("message", "")).lower()
    return any(s in msg for s in ("connection closed", "connection reset", "timed out",
                                  "timeout", "gloo", "broken pipe", "peer", "nccl"))


def _silent_named(out: Path, nprocs: int) -> set[int]:
    """Ranks named as not responding in the error files of their peers."""
    named = set()
    for r in range(nprocs):
        e = _read_json(out / "errors" / f"rank{r}.json")
        if e and e.get("type") == ERROR_TYPE and e.get("culprit") is not None:
            named.add(int(e["culprit"]))
    return named


def _diagnose(out: Path, nprocs: int, codes: list[int | None], why: str, timeout: float,
              states: dict[int, str | None] | None = None) -> DistributedError:
    states = states or {}
    errors = {r: e for r in range(nprocs) if (e := _read_json(out / "errors" / f"rank{r}.json"))}
    # reports of a peer not responding (empirics.liveness): the named rank is the cause
    live = {r: e for r, e in errors.items()
            if e.get("type") == ERROR_TYPE and e.get("culprit") is not None}
    prog = {}
    for r in range(nprocs):
        with contextlib.suppress(OSError, ValueError, IndexError):
            raw = (out / "progress" / f"rank{r}.step").read_bytes()
            prog[r] = {"step": int.from_bytes(raw[:8], sys.byteorder, signed=True),
                       "comm": int.from_bytes(raw[8:16], sys.byteorder, signed=True) == 1}

    def step_of(r: int) -> int | None:
        if r in errors and errors[r].get("step") is not None:
            return int(errors[r]["step"])
        if r in prog:
            return int(prog[r]["step"])
        told = [int(e["culprit_step"]) for e in live.values()
                if e["culprit"] == r and e.get("culprit_step") is not None]
        return told[0] if told else None

    lines = []
    culprit: int | None = None
    report: dict[str, Any] | None = None  # the liveness report that names the culprit
    causes = [r for r in errors if r not in live and errors[r].get("type") != ERROR_TYPE
              and not _is_comm_error(errors[r])]
    crashed_early = [r for r in range(nprocs) if r not in errors and codes[r] not in (None, 0)]
    if causes:
        culprit = min(causes, key=lambda r: errors[r].get("time", 0.0))
    elif live and not crashed_early:
        # the rank most reports name, then the earliest report
        votes: dict[int, list[dict[str, Any]]] = {}
        for e in sorted(live.values(), key=lambda e: e.get("time", 0.0)):
            votes.setdefault(int(e["culprit"]), []).append(e)
        culprit = max(votes, key=lambda c: (len(votes[c]), -votes[c][0].get("time", 0.0)))
        report = votes[culprit][0]
    else:
        silent = [r for r in range(nprocs) if r not in errors and codes[r] in (None, 0)]
        crashed = [r for r in range(nprocs) if r not in errors and codes[r] not in (None, 0)]
        if crashed:
            culprit = crashed[0]
        elif silent and why == "failure":
            culprit = silent[0]
        elif silent:
            # a rank that stopped outside communication, else the one with the lowest step
            culprit = min(silent, key=lambda r: (prog.get(r, {}).get("comm", False),
                                                 step_of(r) if step_of(r) is not None else -1))
        elif errors:
            culprit = min(errors, key=lambda r: errors[r].get("time", 0.0))
    for r in range(nprocs):
        s = step_of(r)
        at = f"at step {s}" if s is not None else "before its first step"
        if r in errors:
            e = errors[r]
            lines.append(f"  rank {r}: {e['type']}: {e['message']} ({at}, exit code {codes[r]})")
        elif codes[r] is None:
            where = ("waiting on its peers (collective or point-to-point)"
                     if prog.get(r, {}).get("comm") else "not communicating: hung in its own "
                     "computation")
            if states.get(r) in ("T", "t"):
                where = "the process was stopped (state T: SIGSTOP or a debugger)"
            lines.append(f"  rank {r}: still running {at} when stopped, {where}")
        elif codes[r] != 0:
            tail = _log_tail(out, r)
            lines.append(f"  rank {r}: exited with code {codes[r]} {at} without a Python "
                         f"error (killed or crashed)" + (f"; log tail:\n{tail}" if tail else ""))
        else:
            lines.append(f"  rank {r}: finished")
    cs = step_of(culprit) if culprit is not None else None
    if why == "timeout":
        head = f"distributed job timed out after {timeout:g} s"
    else:
        head = "distributed job failed"
    if culprit is not None:
        kind = ("stopped responding" if report is not None
                else "raised " + errors[culprit]["type"] if culprit in errors
                else "stopped responding" if codes[culprit] in (None, 0)
                else f"died (exit code {codes[culprit]})")
        head += f": rank {culprit} {kind}" + (f" at step {cs}" if cs is not None else "")
        if report is not None:
            detail = report["message"].partition(": ")[2] or report["message"]
            head += f" ({detail})"
    partial = None
    if (out / "result.json").exists():
        with contextlib.suppress(Exception):
            from empirics.records import load_result

            partial = load_result(out / "result.json")
    tail = (f"\nrecords saved so far: {out / 'result.json'} ({len(partial)} records)"
            if partial is not None else "")
    return DistributedError(head + "\n" + "\n".join(lines) + f"\njob directory: {out}" + tail,
                            rank=culprit, step=cs, out_dir=str(out), partial=partial)


def spawn(module_args: Sequence[str], nprocs: int, *, out_dir: str | os.PathLike,
          timeout: float = 600.0, grace: float = 5.0, env: dict[str, str] | None = None,
          fault: tuple[int, int, str] | None = None) -> Path:
    """Start ``python <module_args>`` as ``nprocs`` ranks on localhost and wait for them.

    Each child gets the torchrun environment (loopback rendezvous on a free port) and logs to
    ``out_dir/logs/rank{r}.log``. Raises :class:`DistributedError` when a child exits non-zero
    (after ``grace`` seconds for the others to exit; a child reporting a peer not responding
    exits with code 1 too) or when ``timeout`` seconds pass. ``fault`` = (rank, step, kind),
    kind one of :data:`FAULT_KINDS`, injects a failure (for tests). Returns out_dir.
    """
    if isinstance(nprocs, bool) or not isinstance(nprocs, int) or nprocs < 1:
        raise ValueError(f"nprocs must be an integer >= 1 (got {nprocs!r})")
    if not (float(timeout) > 0):
        raise ValueError(f"timeout must be > 0 seconds (got {timeout!r})")
    out = Path(out_dir).resolve()
    for sub in ("logs", "errors", "progress", "returns"):
        (out / sub).mkdir(parents=True, exist_ok=True)
        for f in (out / sub).iterdir():
            if f.is_file():
                f.unlink()
    port = free_port()
    base = dict(os.environ)
    base.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                 "WORLD_SIZE": str(nprocs), "LOCAL_WORLD_SIZE": str(nprocs),
                 "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                 "PYTHONPATH": os.pathsep.join(
                     [_REPO_ROOT] + ([base["PYTHONPATH"]] if base.get("PYTHONPATH") else []))})
    base.pop(FAULT_ENV, None)
    if fault is not None:
        r, k, kind = fault
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS} (got {kind!r})")
        base[FAULT_ENV] = f"{int(r)}:{int(k)}:{kind}"
    if env:
        base.update(env)
    procs: list[subprocess.Popen] = []
    logs = []
    try:
        for r in range(nprocs):
            e = dict(base, RANK=str(r), LOCAL_RANK=str(r), GROUP_RANK="0")
            log = open(out / "logs" / f"rank{r}.log", "wb")
            logs.append(log)
            procs.append(subprocess.Popen([sys.executable, *module_args], env=e, stdout=log,
                                          stderr=subprocess.STDOUT, cwd=_REPO_ROOT))
        deadline = time.monotonic() + float(timeout)
        while True:
            codes = [p.poll() for p in procs]
            if all(c == 0 for c in codes):
                return out
            if any(c not in (None, 0) for c in codes):
                t_end = min(deadline, time.monotonic() + grace)
                while time.monotonic() < t_end and any(p.poll() is None for p in procs):
                    # the stopped and the ranks named as not responding will not exit
                    named = _silent_named(out, nprocs)
                    if all(_stopped(p) or r in named
                           for r, p in enumerate(procs) if p.poll() is None):
                        break
                    time.sleep(0.1)
                codes = [p.poll() for p in procs]
                states = {r: _proc_state(p.pid) for r, p in enumerate(procs) if codes[r] is None}
                _terminate(procs)
                raise _diagnose(out, nprocs, codes, "failure", timeout, states)
            if time.monotonic() > deadline:
                codes = [p.poll() for p in procs]
                states = {r: _proc_state(p.pid) for r, p in enumerate(procs) if codes[r] is None}
                _terminate(procs)
                raise _diagnose(out, nprocs, codes, "timeout", timeout, states)
            time.sleep(0.05)
    finally:
        _terminate(procs)
        for log in logs:
            log.close()


def launch(target: str, nprocs: int, args: tuple = (), *, backend: str = "auto",
           device: str = "cpu", timeout: float = 120.0, pg_timeout: float | None = None,
           out_dir: str | os.PathLike | None = None, fault: tuple[int, int, str] | None = None,
           liveness_timeout: float = DEFAULT_LIVENESS_TIMEOUT) -> list[Any]:
    """Run ``target(ctx, *args)`` on ``nprocs`` local ranks; return the list of return values
    (index = rank). ``target`` is ``"module:function"`` or ``"/path/file.py:function"``; ``ctx``
    is a :class:`RankContext`; args and return values must pickle. ``pg_timeout`` bounds each
    collective (default: ``timeout``); ``liveness_timeout``: see :mod:`empirics.liveness`."""
    liveness_timeout = check_liveness_timeout(liveness_timeout)
    tmp = out_dir is None
    out = Path(tempfile.mkdtemp(prefix="coopsgd-launch-")) if tmp else Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "args.pkl", "wb") as fh:
        pickle.dump(tuple(args), fh)
    spawn(["-m", "empirics.launch", "--target", target, "--args", str(out / "args.pkl"),
           "--out", str(out), "--backend", backend, "--device", device,
           "--pg-timeout", str(pg_timeout if pg_timeout is not None else timeout),
           "--liveness-timeout", str(liveness_timeout)],
          nprocs, out_dir=out, timeout=timeout, fault=fault)
    rets = []
    for r in range(nprocs):
        with open(out / "returns" / f"rank{r}.pkl", "rb") as fh:
            rets.append(pickle.load(fh))
    if tmp:
        shutil.rmtree(out, ignore_errors=True)
    return rets


if __name__ == "__main__":
    exit_now(_child_main())
