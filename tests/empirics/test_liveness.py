"""The liveness rule of empirics.liveness, on a fake store and a fake clock (no processes): which
peer is named, for which reason, and when — never before the liveness timeout L.

The multi-process checks (SIGSTOP, deadlock, kill on gloo; torchrun) are in test_distributed.py.
"""

from __future__ import annotations

import json

import pytest

import empirics.liveness as lv
from empirics.launch import RankContext
from empirics.liveness import Liveness, RankState, check_liveness_timeout, interval_for

L = 10.0


class FakeStore:
    def __init__(self) -> None:
        self.kv: dict[str, bytes] = {}
        self.down = False

    def _up(self) -> None:
        if self.down:
            raise RuntimeError("Socket Timeout")

    def set(self, k: str, v: str) -> None:
        self._up()
        self.kv[k] = v.encode()

    def check(self, keys: list[str]) -> bool:
        self._up()
        return all(k in self.kv for k in keys)

    def multi_get(self, keys: list[str]) -> list[bytes]:
        self._up()
        return [self.kv[k] for k in keys]


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(lv.time, "monotonic", c)
    return c


class Rank:
    """One simulated rank: its state, its Liveness (threads never started) and a beat()."""

    def __init__(self, r: int, world: int, store: FakeStore, tmp_path=None, agent=False):
        self.state = RankState()
        self.exits: list[int] = []
        self.live = Liveness(r, world, L, self.state, host="h", port=1,
                             store_host_rank=None if agent else 0, out_dir=tmp_path,
                             connect=lambda: store, exit=self.exits.append)
        self.store = store

    def beat(self) -> None:
        self.store.set(self.live._key(self.live.rank), self.live._payload())

    def read(self) -> None:
        self.live._read(self.store)


def _round(ranks: list[Rank], clock: Clock, dt: float, silent: tuple[int, ...] = ()) -> None:
    clock.t += dt
    for i, rk in enumerate(ranks):
        if i not in silent:
            rk.beat()
    for i, rk in enumerate(ranks):
        if i not in silent:
            rk.read()


def test_no_heartbeat_names_the_silent_rank_after_L(clock):
    store = FakeStore()
    ranks = [Rank(r, 3, store) for r in range(3)]
    for rk in ranks:
        rk.state.progress(5)
    _round(ranks, clock, 1.0)
    ranks[1].state.progress(7)
    _round(ranks, clock, 1.0)
    t_last = clock.t
    while clock.t - t_last <= L:  # rank 1 frozen: no beat, no read
        assert ranks[0].live.judge(clock.t) is None
        _round(ranks, clock, 1.0, silent=(1,))
    v = ranks[0].live.judge(clock.t)
    assert v is not None and v.culprit == 1 and v.reason == "heartbeat" and v.step == 7
    assert v.message.startswith("rank 1 stopped responding at step ≥ 7 (its last heartbeat's): "
                                "no heartbeat for 11.0 s, liveness timeout 10 s")
    assert v.message.endswith("detected by rank 0")
    assert ranks[2].live.judge(clock.t).culprit == 1


def test_an_exited_peer_is_not_a_frozen_one(clock):
    store = FakeStore()
    ranks = [Rank(r, 2, store) for r in range(2)]
    _round(ranks, clock, 1.0)
    ranks[1].live._exited = True
    _round(ranks, clock, 1.0)
    for _ in range(30):
        _round(ranks, clock, 1.0, silent=(1,))
    assert ranks[0].live.judge(clock.t) is None


def test_a_peer_that_never_beats_is_named(clock):
    store = FakeStore()
    ranks = [Rank(r, 2, store) for r in range(2)]
    for _ in range(11):
        _round(ranks, clock, 1.0, silent=(1,))
    v = ranks[0].live.judge(clock.t)
    assert v.culprit == 1 and "no heartbeat since the job started" in v.message


def test_no_progress_while_a_peer_waits_names_the_stuck_rank(clock):
    """Rank 2's main thread stops at step 9 outside communication, its heartbeat goes on. Rank 0
    is named neither while rank 0 computes nor before it has waited L seconds."""
    store = FakeStore()
    ranks = [Rank(r, 3, store) for r in range(3)]
    for rk in ranks:
        rk.state.progress(9)
    _round(ranks, clock, 1.0)
    for _ in range(15):  # rank 0 computes a long step: nobody waits, nobody is named
        _round(ranks, clock, 1.0)
        assert ranks[0].live.judge(clock.t) is None
    ranks[0].state.enter()
    ranks[1].state.enter()
    t_wait = clock.t
    while clock.t - t_wait <= L:
        assert ranks[0].live.judge(clock.t) is None
        _round(ranks, clock, 1.0)
    v = ranks[0].live.judge(clock.t)
    assert v.culprit == 2 and v.reason == "progress" and v.step == 9
    assert "rank 2 stopped responding at step 9: no progress for" in v.message
    assert "while rank 0 waited 11.0 s for its peers" in v.message
    # rank 1 waits too, but rank 1 is in communication: never named
    assert ranks[2].live.judge(clock.t) is None  # rank 2 itself is not waiting


def test_a_frozen_peer_is_named_by_its_silent_heartbeat_not_its_missing_progress(clock):
    """A stopped process neither beats nor progresses: rule 1 names it (no heartbeat), also when
    the observer has waited for it longer than L."""
    store = FakeStore()
    ranks = [Rank(r, 2, store) for r in range(2)]
    for rk in ranks:
        rk.state.progress(2)
    _round(ranks, clock, 1.0)
    ranks[0].state.enter()
    for _ in range(int(L) + 1):
        _round(ranks, clock, 1.0, silent=(1,))
        v = ranks[0].live.judge(clock.t)
        assert v is None or v.reason == "heartbeat"
    assert v is not None and v.culprit == 1 and v.reason == "heartbeat"


def test_a_rank_waiting_in_communication_is_not_stuck(clock):
    store = FakeStore()
    ranks = [Rank(r, 2, store) for r in range(2)]
    for rk in ranks:
        rk.state.progress(3)
        rk.state.enter()
    for _ in range(3 * int(L)):
        _round(ranks, clock, 1.0)
    assert ranks[0].live.judge(clock.t) is None and ranks[1].live.judge(clock.t) is None


def test_a_silent_store_names_its_host(clock):
    store = FakeStore()
    ranks = [Rank(r, 2, store) for r in range(2)]
    ranks[0].state.progress(4)
    _round(ranks, clock, 1.0)
    store.down = True
    for _ in range(int(L)):
        clock.t += 1.0
        with pytest.raises(RuntimeError):
            ranks[1].read()
        assert ranks[1].live.judge(clock.t) is None
    clock.t += 1.5
    v = ranks[1].live.judge(clock.t)
    assert v.culprit == 0 and v.reason == "store"
    assert "rendezvous store it hosts (h:1) has not answered for 11.5 s" in v.message
    agent = Rank(1, 2, store, agent=True)
    clock.t += L + 1
    v = agent.live.judge(clock.t)
    assert v.culprit is None and "torchrun agent" in v.message


def test_failure_report_error_file_hook_and_exit(clock, tmp_path, monkeypatch):
    ef = tmp_path / "torchelastic.json"
    monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(ef))
    monkeypatch.setattr(lv.time, "sleep", lambda s: None)
    store = FakeStore()
    ranks = [Rank(r, 2, store, tmp_path) for r in range(2)]
    ranks[0].live._sent_reported.set()  # (no heartbeat thread here)
    ranks[0].state.progress(12)
    saved = []
    with ranks[0].live.hook(saved.append):
        v = lv.Verdict(1, 11, "heartbeat", "rank 1 stopped responding at step ≥ 11 (…)")
        ranks[0].live._fail(v)
    assert ranks[0].exits == [1]
    assert saved == [v.message]
    err = json.loads((tmp_path / "errors" / "rank0.json").read_text())
    assert err["type"] == "PeerNotResponding" and err["culprit"] == 1
    assert err["culprit_step"] == 11 and err["step"] == 12 and err["liveness_timeout"] == L
    te = json.loads(ef.read_text())
    assert te["message"]["message"] == f"PeerNotResponding: {v.message}"
    # outside the block the hook is gone
    ranks[0].live._fail(v)
    assert saved == [v.message]


def test_other_observers_wait_for_rank_0_to_report(clock, tmp_path):
    """Rank 1 found rank 2 silent: it exits only once rank 0's heartbeat says rank 0 has
    reported (saved its records), so that torchrun does not stop rank 0 first."""
    store = FakeStore()
    ranks = [Rank(r, 3, store, tmp_path) for r in range(3)]
    _round(ranks, clock, 1.0)
    assert not ranks[1].live.peers[0].reported
    ranks[0].live._reported = True
    _round(ranks, clock, 1.0)
    assert ranks[1].live.peers[0].reported
    ranks[1].live._await_rank0()  # returns at once (the fake clock does not move)
    ranks[1].live._fail(lv.Verdict(2, 5, "heartbeat", "rank 2 stopped responding"))
    assert ranks[1].exits == [1]
    assert ranks[1].live.exit_delay == L  # the most it would wait: min(L, 10 s)


def test_rank_context_tracks_nested_communication(tmp_path):
    import numpy as np

    ctx = RankContext(0, 1, 0, "cpu", "gloo", tmp_path)
    st = ctx._state
    ctx.progress(3)
    mm = np.memmap(tmp_path / "progress" / "rank0.step", dtype=np.int64, mode="r", shape=(2,))
    assert st.step == 3 and st.started and mm[0] == 3
    ev = st.events
    with ctx.communicating():
        with ctx.communicating():
            pass
        assert st.depth == 1 and mm[1] == 1 and st.comm_since is not None
    assert st.depth == 0 and mm[1] == 0 and st.comm_since is None
    assert st.events == ev + 2  # entering and leaving the outer block only
    import dataclasses

    copy = dataclasses.replace(ctx, out_dir=None)
    copy.progress(4)
    assert ctx._state.step == 4  # copies share the state the heartbeat reports


def test_liveness_timeout_is_checked():
    assert check_liveness_timeout(0) == 0 and check_liveness_timeout("7.5") == 7.5
    for bad in (0.5, -1, float("inf"), float("nan"), "x", None):
        with pytest.raises(ValueError, match="liveness_timeout must be"):
            check_liveness_timeout(bad)
    assert interval_for(30) == 2.0 and interval_for(5) == 0.5 and interval_for(1) == 0.1
    from empirics.configs import pasgd
    from empirics.distributed import run_distributed
    from empirics.engine import RunSpec
    from empirics.problems import LeastSquares

    spec = RunSpec(LeastSquares(n_samples=50, d=3, m=2, seed=0), pasgd(2, 1), 0.05, 2)
    with pytest.raises(ValueError, match="liveness_timeout must be 0"):
        run_distributed(spec, 2, liveness_timeout=0.2)
