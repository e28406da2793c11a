"""Liveness of the ranks of a distributed job: a heartbeat through the rendezvous store and a
watchdog on every rank, so that a rank that stops responding is named within a bounded time —
under the spawn helper (:func:`empirics.launch.spawn`) and under plain ``torchrun`` alike, with
no process of ours watching from outside.

Every rank of a job with two or more ranks starts two daemon threads once it has joined the
process group (:func:`empirics.launch.init_rank`):

* the **heartbeat** thread writes the key ``coopsgd/liveness/<run>/<attempt>/<rank>`` into the
  rendezvous store — the TCPStore at ``MASTER_ADDR:MASTER_PORT`` that ``init_process_group``
  and torchrun already run, through a connection of its own — every ``interval`` seconds
  (L/10, within 0.05–2 s): a beat counter, the rank's current step, whether its main thread is
  in communication, a counter of its progress events (starting a step, entering or leaving
  communication) and its main thread's CPU seconds; then it reads every peer's key (one
  ``multi_get``);
* the **watchdog** thread applies the liveness rule below to the last reading.

The rule, with L the liveness timeout (seconds; default :data:`DEFAULT_LIVENESS_TIMEOUT` = 30;
``liveness_timeout=`` / ``--liveness-timeout``; 0 turns the watch off). A peer is *not
responding* when

1. **no heartbeat**: its beat counter has not changed during L s in which the store answered —
   the process is stopped (SIGSTOP), frozen, lost with its node, or something holds its
   interpreter so that even the heartbeat thread cannot run;
2. **no progress**: it has started its first step, and for L s it has neither started a step
   nor entered or left communication, it is outside communication, and this rank has itself
   been waiting in communication for L s — its main thread is deadlocked or stuck in its own
   code (a single step or record evaluation that legitimately takes longer than L looks the
   same: raise L for such runs);
3. **store silent**: the store has not answered for L s. Under ``env://`` rendezvous (the spawn
   helper; ``TORCHELASTIC_USE_AGENT_STORE`` unset) rank 0 hosts the store, so rank 0 is named;
   under torchrun the agent of the rendezvous node hosts it, and the message says so.

The rank that sees it writes ``errors/rank{r}.json`` (``type`` ``"PeerNotResponding"``, the
message, ``culprit`` = the silent rank, ``culprit_step`` = its last reported step), runs the
failure hooks (rank 0 saves its partial records, see :func:`empirics.distributed.run_rank`),
writes torchrun's error file (``TORCHELASTIC_ERROR_FILE``, shown in torchrun's summary), prints
the message on stderr and exits with code 1: its main thread is blocked in a collective that
nothing can interrupt (gloo's ``abort`` does not wake a waiting collective). Rank 0 sees the
same silence at about the same time; so that it can save its records before torchrun stops every
rank, another observer first waits until rank 0's heartbeat says it has reported (or rank 0 is
gone, or :attr:`Liveness.exit_delay` = min(L, 10 s) has passed), and rank 0 stays one more
interval after its report has been published. Detection comes
within L + 2·interval (≈ 1.2 L) of the freeze (rules 1 and 3) or of the moment the observer
started waiting (rule 2); the process-group timeout (``pg_timeout``) stays as the last resort
and should be longer than L.

A rank that leaves normally (or with its own error) marks its key as exited first, so its peers
never mistake the end of a job for a freeze.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from empirics.records import atomic_write_text

__all__ = ["DEFAULT_LIVENESS_TIMEOUT", "Liveness", "RankState", "check_liveness_timeout"]

DEFAULT_LIVENESS_TIMEOUT = 30.0  #: seconds; see the module docstring for the rule
ERROR_TYPE = "PeerNotResponding"


def check_liveness_timeout(value: Any) -> float:
    """``value`` as seconds: 0 (no liveness watch) or a finite number ≥ 1."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"liveness_timeout must be a number of seconds (got {value!r})") \
            from None
    if not (v == 0 or (v >= 1 and v != float("inf"))):
        raise ValueError(f"liveness_timeout must be 0 (off) or a finite number of seconds ≥ 1 "
                         f"(got {value!r})")
    return v


def interval_for(timeout: float) -> float:
    """Seconds between two heartbeats (and two watchdog checks) for liveness timeout L."""
    return min(2.0, max(0.05, timeout / 10))


class RankState:
    """What a rank's main thread reports to its heartbeat, by plain attribute writes (no lock,
    no system call): the step it started last, whether it is in communication (nesting depth
    and since when), and a counter of progress events."""

    __slots__ = ("comm_since", "depth", "events", "started", "step")

    def __init__(self) -> None:
        self.step: int | None = None
        self.events = 0
        self.depth = 0
        self.comm_since: float | None = None
        self.started = False

    def progress(self, step: int) -> None:
        self.step = step
        self.events += 1
        self.started = True

    def enter(self) -> None:
        if self.depth == 0:
            self.comm_since = time.monotonic()
            self.events += 1
        self.depth += 1

    def leave(self) -> None:
        self.depth = max(0, self.depth - 1)
        if self.depth == 0:
            self.comm_since = None
            self.events += 1


@dataclass
class _Peer:
    """The last heartbeat read from one peer and when (this process's monotonic clock) its
    beat counter and its progress counter last changed."""

    beat_at: float
    events_at: float
    beat: int = -1
    step: int | None = None
    comm: bool = False
    events: int = -1
    started: bool = False
    exited: bool = False
    cpu: float = float("nan")
    cpu_at_events: float = float("nan")
    seen: bool = False
    reported: bool = False


@dataclass
class Verdict:
    culprit: int | None
    step: int | None
    reason: str  # heartbeat | progress | store
    message: str


def _main_thread_cpu() -> Callable[[], float]:
    """A function returning the main thread's CPU seconds (NaN where the platform lacks it)."""
    try:
        clk = time.pthread_getcpuclockid(threading.main_thread().ident)  # type: ignore[arg-type]
        time.clock_gettime(clk)
    except (AttributeError, OSError, TypeError):
        return lambda: float("nan")
    return lambda: time.clock_gettime(clk)


def _at(step: int | None, exact: bool = True) -> str:
    """Where a peer was: its last heartbeat's step is exact when it has not moved for L s (the
    progress rule), a lower bound when the peer went silent (it may have gone on for up to one
    heartbeat interval)."""
    if step is None:
        return "before its first step" if exact else "before its first heartbeat with a step"
    return f"at step {step}" if exact else f"at step ≥ {step} (its last heartbeat's)"


class Liveness:
    """Heartbeat and watchdog of one rank (see the module docstring). ``state``: the rank's
    :class:`RankState`; ``host``/``port``: the rendezvous store; ``store_host_rank``: the rank
    whose process hosts the store (0 under ``env://``), None when a torchrun agent hosts it;
    ``out_dir``: where ``errors/rank{r}.json`` goes (None: nowhere); ``connect``: a factory of
    store clients (tests); ``exit``: what ends the process (default ``os._exit``)."""

    def __init__(self, rank: int, world_size: int, timeout: float, state: RankState, *,
                 host: str, port: int, store_host_rank: int | None = 0,
                 prefix: str = "coopsgd/liveness/", out_dir: Path | None = None,
                 connect: Callable[[], Any] | None = None,
                 exit: Callable[[int], Any] = os._exit):
        self.rank, self.world_size = rank, world_size
        self.timeout = check_liveness_timeout(timeout)
        self.interval = interval_for(self.timeout)
        self.state = state
        self.host, self.port, self.store_host_rank = host, int(port), store_host_rank
        self.prefix, self.out_dir = prefix, out_dir
        self._connect = connect or self._tcp_client
        self._exit = exit
        self._cpu = _main_thread_cpu()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._hooks: list[Callable[[str], Any]] = []
        self._beat = 0
        self._exited = False
        self._reported = False   # this rank has reported a verdict (hooks done)
        self._sent_reported = threading.Event()  # ... and a beat saying so went out
        self._threads: list[threading.Thread] = []
        t0 = time.monotonic()
        self._last_ok = t0
        self._store_error = ""
        self.peers = {p: _Peer(t0, t0) for p in range(world_size) if p != rank}
        self.verdict: Verdict | None = None  # set when a peer was found not responding

    # -- set-up ----------------------------------------------------------------------------
    @classmethod
    def from_env(cls, rank: int, world_size: int, timeout: float, state: RankState,
                 out_dir: Path | None) -> Liveness:
        """From the torchrun environment: the store at ``MASTER_ADDR:MASTER_PORT``, keys under
        the run id and restart count (a restarted torchrun job does not read old beats)."""
        agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == str(True)
        run = os.environ.get("TORCHELASTIC_RUN_ID", "")
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        return cls(rank, world_size, timeout, state, host=os.environ["MASTER_ADDR"],
                   port=int(os.environ["MASTER_PORT"]),
                   store_host_rank=None if agent else 0,
                   prefix=f"coopsgd/liveness/{run}/{attempt}/", out_dir=out_dir)

    def _tcp_client(self) -> Any:
        import torch.distributed as dist

        return dist.TCPStore(self.host, self.port, is_master=False,
                             timeout=timedelta(seconds=self.timeout), wait_for_workers=False)

    def start(self) -> Liveness:
        for name, fn in (("heartbeat", self._io_loop), ("watchdog", self._watch_loop)):
            t = threading.Thread(target=fn, name=f"coopsgd-{name}-rank{self.rank}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        """Mark this rank as exited in the store (best effort) and stop both threads."""
        self._exited = True
        self._stop.set()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=2 * self.interval + 0.5)

    @contextlib.contextmanager
    def hook(self, fn: Callable[[str], Any]):
        """Run ``fn(message)`` (e.g. save partial records) if a peer is found not responding
        while the block runs."""
        with self._lock:
            self._hooks.append(fn)
        try:
            yield
        finally:
            with self._lock:
                if fn in self._hooks:
                    self._hooks.remove(fn)

    # -- heartbeat -------------------------------------------------------------------------
    def _key(self, r: int) -> str:
        return f"{self.prefix}{r}"

    def _payload(self) -> str:
        st = self.state
        self._beat += 1
        return json.dumps([self._beat, st.step, st.depth > 0, st.events, st.started,
                           self._exited, round(self._cpu(), 3), os.getpid(), self._reported])

    def _io_loop(self) -> None:
        store = None
        while True:
            stopping = self._stop.is_set()
            if stopping and store is None:
                return  # no client to say goodbye with: connecting may wait L s for a gone store
            try:
                if store is None:
                    store = self._connect()
                reported = self._reported
                store.set(self._key(self.rank), self._payload())
                if reported:
                    self._sent_reported.set()
                if stopping:
                    return
                self._read(store)
            except Exception as e:  # store gone or slow: reconnect next time
                store = None
                self._store_error = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}" \
                    if str(e) else type(e).__name__
                if stopping:
                    return
            self._stop.wait(self.interval)

    def _read(self, store: Any) -> None:
        unseen = [p for p, q in self.peers.items() if not q.seen]
        newly = [p for p in unseen if store.check([self._key(p)])]
        ids = [p for p, q in self.peers.items() if q.seen or p in newly]
        vals = store.multi_get([self._key(p) for p in ids]) if ids else []
        now = time.monotonic()
        with self._lock:
            for p, raw in zip(ids, vals, strict=True):
                beat, step, comm, events, started, exited, cpu, _pid, reported = json.loads(
                    bytes(raw).decode())
                q = self.peers[p]
                q.seen = True
                if beat != q.beat:
                    q.beat, q.beat_at = beat, now
                if events != q.events:
                    q.events, q.events_at, q.cpu_at_events = events, now, cpu
                q.step, q.comm, q.started, q.exited, q.cpu = step, comm, started, exited, cpu
                q.reported = reported
            self._last_ok = now

    # -- watchdog --------------------------------------------------------------------------
    def _watch_loop(self) -> None:
        while not self._stop.wait(self.interval):
            v = self.judge(time.monotonic())
            if v is not None and not self._stop.is_set():
                self.verdict = v
                self._fail(v)
                return

    def judge(self, now: float) -> Verdict | None:
        """Apply the liveness rule to the last reading (None: everyone responds)."""
        L, me = self.timeout, self.rank
        by = f"detected by rank {me}"
        with self._lock:
            last_ok = self._last_ok
            peers = {p: _Peer(**vars(q)) for p, q in self.peers.items()}
        if now - last_ok > L:
            age = now - last_ok
            why = f"({self._store_error})" if self._store_error else "(no answer)"
            if self.store_host_rank is not None:
                h = self.store_host_rank
                step = peers[h].step if h in peers else self.state.step
                return Verdict(h, step, "store",
                               f"rank {h} stopped responding {_at(step, False)}: the rendezvous "
                               f"store it hosts ({self.host}:{self.port}) has not answered for "
                               f"{age:.1f} s {why}, liveness timeout {L:g} s; {by}")
            return Verdict(None, None, "store",
                           f"the rendezvous store at {self.host}:{self.port} (hosted by the "
                           f"torchrun agent of the rendezvous node) has not answered for "
                           f"{age:.1f} s {why}, liveness timeout {L:g} s: that node is lost "
                           f"or frozen; {by}")
        live = {p: q for p, q in peers.items() if not q.exited}
        stale = {p: last_ok - q.beat_at for p, q in live.items() if last_ok - q.beat_at > L}
        if stale:
            p = max(stale, key=stale.__getitem__)
            q = live[p]
            what = ("no heartbeat" if q.seen else "no heartbeat since the job started")
            others = sorted(set(stale) - {p})
            also = f" (also silent: ranks {others})" if others else ""
            return Verdict(p, q.step, "heartbeat",
                           f"rank {p} stopped responding {_at(q.step, False)}: {what} for "
                           f"{stale[p]:.1f} s, liveness timeout {L:g} s: the process is stopped "
                           f"(e.g. SIGSTOP), frozen or lost with its node{also}; {by}")
        st = self.state
        since = st.comm_since
        if st.depth > 0 and since is not None and now - since > L:
            waited = now - since
            # a peer whose heartbeat is silent too is left to rule 1 (it names the cause)
            stuck = {p: last_ok - q.events_at for p, q in live.items()
                     if q.started and not q.comm and last_ok - q.events_at > L
                     and last_ok - q.beat_at <= 3 * self.interval}
            if stuck:
                p = max(stuck, key=stuck.__getitem__)
                q = live[p]
                cpu = q.cpu - q.cpu_at_events
                busy = ""
                if cpu == cpu:  # not NaN
                    busy = (f"; its main thread used {cpu:.1f} s of CPU meanwhile ("
                            + ("busy: a livelock, or a step longer than the timeout"
                               if cpu > 0.2 * stuck[p] else "idle: deadlocked or blocked")
                            + ")")
                return Verdict(p, q.step, "progress",
                               f"rank {p} stopped responding {_at(q.step)}: no progress for "
                               f"{stuck[p]:.1f} s outside communication while rank {me} waited "
                               f"{waited:.1f} s for its peers, liveness timeout {L:g} s{busy}; "
                               f"{by}")
        return None

    def _fail(self, v: Verdict) -> None:
        """Report ``v`` everywhere a user or a launcher looks, then end this process."""
        info = {"rank": self.rank, "step": self.state.step, "type": ERROR_TYPE,
                "message": v.message, "culprit": v.culprit, "culprit_step": v.step,
                "reason": v.reason, "liveness_timeout": self.timeout, "time": time.time(),
                "traceback": ""}
        if self.out_dir is not None:
            with contextlib.suppress(OSError):
                atomic_write_text(self.out_dir / "errors" / f"rank{self.rank}.json",
                                  json.dumps(info))
        with self._lock:
            hooks = list(self._hooks)
        for fn in hooks:
            with contextlib.suppress(Exception):
                fn(v.message)
        write_torchelastic_error(ERROR_TYPE, v.message)
        with contextlib.suppress(Exception):
            sys.stderr.write(f"[rank {self.rank}] {ERROR_TYPE}: {v.message}\n")
            sys.stderr.flush()
        self._reported = True
        if self.rank == 0:
            # let the peers read that rank 0 has reported (they wait for it before exiting)
            if self._sent_reported.wait(2 * self.interval + 1.0):
                time.sleep(self.interval + 0.1)
        elif v.culprit != 0:
            self._await_rank0()
        self._exit(1)

    @property
    def exit_delay(self) -> float:
        """At most this many seconds a rank other than 0 waits, between its report and its
        exit, for rank 0 to report (torchrun stops every rank as soon as one exits)."""
        return min(self.timeout, 10.0)

    def _await_rank0(self) -> None:
        """Wait until rank 0 has reported or is gone (exited, or the store it may host fails),
        at most :attr:`exit_delay` seconds."""
        t_end = time.monotonic() + self.exit_delay
        with self._lock:
            last_ok = self._last_ok
        while time.monotonic() < t_end:
            with self._lock:
                q = self.peers.get(0)
                gone = q is None or q.reported or q.exited
                failing = (self._last_ok == last_ok
                           and time.monotonic() - last_ok > 3 * self.interval)
            if gone or failing:
                return
            time.sleep(min(0.05, self.interval))


def write_torchelastic_error(type_name: str, message: str, tb: str = "") -> None:
    """Write torchrun's per-worker error file (``TORCHELASTIC_ERROR_FILE``, set by its agent)
    so that its failure summary shows ``message``; nothing outside torchrun."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path or os.path.exists(path):
        return
    data = {"message": {"message": f"{type_name}: {message}",
                        "extraInfo": {"py_callstack": tb or f"{type_name}: {message}",
                                      "timestamp": str(int(time.time()))}}}
    with contextlib.suppress(OSError):
        atomic_write_text(path, json.dumps(data))
