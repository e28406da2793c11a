"""Named Cooperative SGD configurations A(τ, W, v) plus the local-step options (Wang & Joshi,
Cooperative SGD, JMLR 2021, Table 1 and §3).

Every algorithm the engine runs is X_{k+1} = (X_k − Δ_k) W_k (Wang & Joshi, Cooperative SGD,
JMLR 2021, eqs. 7–10; Δ_k = η_k G_k for plain SGD): a :class:`Config` is *data* — a schedule
(when to mix, with which W; :mod:`theory.schedules`), the number v of auxiliary variables, and
the local step (momentum, Nesterov, an error-feedback compressor). The table of special cases
(JMLR §3 and Table 1; M-DSGD from Zhao, Gao & Li; recalled, high confidence):

=============================  ====  =================  ===
algorithm                       τ     W                  v
=============================  ====  =================  ===
fully synchronous SGD           1     J                  0
PASGD / local SGD               τ     J                  0
D-PSGD                          1     sparse W           0
decentralized periodic          τ     sparse W           0
EASGD                           τ     W_α                1
hierarchical averaging          τ₁,τ₂ group J / J        0
M-DSGD (memory + compression)   1     J                  0
=============================  ====  =================  ===

The hierarchical definition (group averaging every τ₁ steps, global every τ₂) is this toolkit's
reading of the paper's hierarchical averaging (JMLR §6.3 describes elastic group nodes and
gives no definition of this scheme nor a bound).

Compressed gossip (:class:`Gossip`, ``Config.gossip``) replaces the mixing X ← WᵀX at the end of a
round by SQuARM-SGD's event-triggered, compressed consensus step on public copies x̂_i (Singh,
Data, George, Diggavi, IEEE JSAIT 2021; update equations as transcribed by a third party, not
checked against the paper):
:func:`squarm`, and CHOCO-SGD as its τ = 1, no-momentum, threshold-0 case (:func:`choco_sgd`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from theory.mixing import MixingMatrix, as_mixing, average, contiguous_groups, easgd_matrix
from theory.mixing import group_average as _group_average
from theory.schedule_library import OneShot
from theory.schedules import Hierarchical, Periodic, Schedule

__all__ = [
    "Config",
    "Gossip",
    "PowerThreshold",
    "choco_sgd",
    "configuration",
    "decentralized_periodic",
    "dpsgd",
    "easgd",
    "hierarchical",
    "local_sgd",
    "lupa",
    "mdsgd",
    "one_shot",
    "pasgd",
    "qsgd",
    "spiridonoff_sgd",
    "squarm",
    "synchronous",
]


def _int(name: str, x: Any, lo: int) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or int(x) < lo:
        raise ValueError(f"{name} must be an integer >= {lo} (got {x!r})")
    return int(x)


def _threshold_value(c: Any, where: str) -> float:
    try:
        v = float(c)
    except (TypeError, ValueError):
        raise ValueError(f"threshold{where} must be a number >= 0 (or inf) (got {c!r})") from None
    if not v >= 0.0:  # also catches NaN
        raise ValueError(f"threshold{where} must be >= 0 and not NaN: the trigger fires when "
                         f"‖x_j − x̂_j‖² > c_t·η², so c_t < 0 is meaningless (got {c!r})")
    return v


@dataclass(frozen=True)
class PowerThreshold:
    """Trigger threshold schedule c_t = c0 · t^(1−ε) at synchronisation step t ≥ 1 (t = number
    of local steps taken). The bound c_t ≤ c₀ t^{1−ε} is the condition of the sister paper SPARQ-SGD
    as transcribed by a third party — not checked against either paper."""

    c0: float
    eps: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "c0", _threshold_value(self.c0, " c0"))
        e = float(self.eps)
        if not (0.0 < e <= 1.0):
            raise ValueError(f"eps must be in (0, 1] (c_t = c0·t^(1−eps)) (got {self.eps!r})")
        object.__setattr__(self, "eps", e)

    def __call__(self, t: int) -> float:
        return self.c0 * max(int(t), 1) ** (1.0 - self.eps)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "power", "c0": self.c0, "eps": self.eps}


@dataclass(frozen=True)
class Gossip:
    """Event-triggered compressed gossip on public copies (SQuARM-SGD's synchronisation step).

    Every node i keeps its model x_i and a public copy x̂_i (x̂_i = x₀ at the start: every node
    knows the common initial model). At a synchronisation step t (the last local step of a round
    of the schedule, W the round's matrix, η = η_t), all at once:

    * trigger: node j fires iff ‖x_j − x̂_j‖² > c_t·η²  (``threshold`` c_t);
    * fired nodes send q_j = C(x_j − x̂_j) and every node applies x̂_j ← x̂_j + q_j (non-fired
      nodes send nothing; their copies stay);
    * consensus: x_i ← x_i + γ Σ_j w_ji (x̂_j − x̂_i)  (= γ Σ_j w_ij(·) for symmetric W).

    Update equations as transcribed by a third party (a public re-implementation), not
    checked against the paper. Averages are preserved when W 1 = 1 (Σ_i of the consensus term is 0).

    compressor: an ``empirics.compressors`` compressor that is a contraction,
    E‖x − C(x)‖² ≤ (1 − δ)‖x‖² with δ > 0 (the paper's ω, as in SPARQ-SGD),
    checked at the run's dimension d by :meth:`check` (e.g. ``Compose(TopK(k),
    QSGD(s).as_contraction())``). gamma: consensus step γ ∈ (0, 1]. threshold: c ≥ 0 (``inf``:
    never fire) or a callable t -> c_t (e.g. :class:`PowerThreshold`), checked at every use.
    """

    compressor: Any
    gamma: float
    threshold: Any = 0.0

    def __post_init__(self) -> None:
        c = self.compressor
        if not (callable(c) and hasattr(c, "bits") and hasattr(c, "delta")):
            raise ValueError(f"compressor must be an empirics.compressors compressor (callable "
                             f"with .bits(d) and .delta(d)); got {type(c).__name__}")
        try:
            g = float(self.gamma)
        except (TypeError, ValueError):
            raise ValueError(f"gamma must be a number in (0, 1] (got {self.gamma!r})") from None
        if not (0.0 < g <= 1.0):
            raise ValueError(f"gamma (the consensus step) must be in (0, 1] (got {self.gamma!r})")
        object.__setattr__(self, "gamma", g)
        th = self.threshold
        if not callable(th):
            object.__setattr__(self, "threshold", _threshold_value(th, ""))

    def threshold_at(self, t: int) -> float:
        """c_t (validated: ≥ 0, not NaN)."""
        th = self.threshold
        if callable(th):
            return _threshold_value(th(t), f" c_t at t = {t}")
        return th

    def check(self, d: int) -> float:
        """The compressor's declared contraction δ at dimension d; ValueError if it declares none
        (SQuARM-SGD and CHOCO-SGD need E‖x − C(x)‖² ≤ (1 − δ)‖x‖², δ > 0)."""
        c = self.compressor
        delta = c.delta(d)
        if delta is None or not (0.0 < float(delta) <= 1.0):
            hint = ""
            if getattr(c, "unbiased", False) and hasattr(c, "as_contraction"):
                hint = f"; rescale it: {c!r}.as_contraction() is one (δ = 1/(1 + ω))"
            elif hasattr(c, "second"):
                hint = ("; e.g. Compose(TopK(k), QSGD(s).as_contraction()) is one "
                        "(δ = (k/d)/(1 + ω_QSGD(k)))")
            raise ValueError(
                f"compressor {c!r} is not a contraction at d = {d} (declared δ = {delta}): "
                f"compressed gossip needs E‖x − C(x)‖² ≤ (1 − δ)‖x‖² with 0 < δ ≤ 1{hint}")
        return float(delta)

    def to_dict(self) -> dict[str, Any]:
        th = self.threshold
        thd = (th.to_dict() if hasattr(th, "to_dict") else
               {"type": "callable", "name": getattr(th, "__name__", repr(th))} if callable(th)
               else th)
        return {"compressor": getattr(self.compressor, "name", repr(self.compressor)),
                "compressor_repr": repr(self.compressor), "gamma": self.gamma, "threshold": thd}


@dataclass(frozen=True)
class Config:
    """One Cooperative SGD configuration (plain data; see the module docstring).

    Attributes:
        name: e.g. ``"pasgd"``.
        schedule: a :class:`theory.schedules.Schedule` of size n = m + v.
        v: number of auxiliary variables (rows m..m+v−1 of X; they get no gradient).
        compressor: an ``empirics.compressors`` compressor for error feedback (M-DSGD), or None.
        momentum: β of local heavy-ball momentum (per-worker buffer; 0 = plain SGD).
        nesterov: Nesterov variant of the local momentum.
        params: the constructor's arguments (for ``to_dict``).
        error_feedback: with a compressor, keep the memory e (δ = C(e + η·p), e ← e + η·p − δ;
            M-DSGD); False: δ = C(η·p) with no memory (QSGD-style distributed SGD). Ignored
            without a compressor.
        gossip: a :class:`Gossip` (SQuARM-SGD / CHOCO-SGD compressed, triggered consensus on
            public copies) used instead of X ← WᵀX at the end of each round, or None.
    """

    name: str
    schedule: Schedule
    v: int = 0
    compressor: Any = None
    momentum: float = 0.0
    nesterov: bool = False
    params: dict[str, Any] = field(default_factory=dict)
    error_feedback: bool = True
    gossip: Any = None

    def __post_init__(self) -> None:
        if not isinstance(self.error_feedback, bool):
            raise ValueError(f"error_feedback must be True or False (got {self.error_feedback!r})")
        if not isinstance(self.schedule, Schedule):
            raise ValueError(f"schedule must be a theory.schedules.Schedule "
                             f"(got {type(self.schedule).__name__})")
        v = _int("v", self.v, 0)
        object.__setattr__(self, "v", v)
        if v >= self.schedule.n:
            raise ValueError(f"v = {v} auxiliary variables leave no worker: the schedule's W is "
                             f"{self.schedule.n}×{self.schedule.n} (n = m + v needs m ≥ 1)")
        beta = float(self.momentum)
        if not (0.0 <= beta < 1.0 and math.isfinite(beta)):
            raise ValueError(f"momentum must be in [0, 1) (got {self.momentum!r})")
        object.__setattr__(self, "momentum", beta)
        if self.nesterov and beta == 0.0:
            raise ValueError("nesterov=True needs momentum > 0")
        c = self.compressor
        if c is not None and not (callable(c) and hasattr(c, "bits")):
            raise ValueError(f"compressor must be an empirics.compressors compressor (callable "
                             f"with .bits(d)); got {type(c).__name__}")
        if self.gossip is not None:
            if not isinstance(self.gossip, Gossip):
                raise ValueError(f"gossip must be an empirics.configs.Gossip (got "
                                 f"{type(self.gossip).__name__})")
            if v:
                raise ValueError(f"gossip (compressed consensus on public copies) needs v = 0 "
                                 f"auxiliary variables (got v = {v})")

    @property
    def m(self) -> int:
        """Number of workers (schedule size minus v)."""
        return self.schedule.n - self.v

    @property
    def n(self) -> int:
        return self.schedule.n

    def with_options(self, **kw: Any) -> Config:
        """A copy with local-step options changed, e.g. ``cfg.with_options(momentum=0.9)``."""
        return replace(self, **kw)

    def to_dict(self) -> dict[str, Any]:
        c = self.compressor
        return {
            "name": self.name,
            "m": self.m,
            "v": self.v,
            "schedule": {"type": type(self.schedule).__name__,
                         "name": getattr(self.schedule, "name", repr(self.schedule)),
                         "adaptive": bool(getattr(self.schedule, "adaptive", False))},
            "compressor": None if c is None else getattr(c, "name", repr(c)),
            "momentum": self.momentum,
            "nesterov": self.nesterov,
            "error_feedback": self.error_feedback,
            "params": {k: (v if isinstance(v, (int, float, str, bool, type(None))) else repr(v))
                       for k, v in self.params.items()},
            **({"gossip": self.gossip.to_dict()} if self.gossip is not None else {}),
        }

    def divergence_hint(self, d: int) -> str:
        """What to change when a run of this configuration on d coordinates diverges: error
        feedback with a compressor that is not a contraction (``delta(d)`` is None: no δ > 0
        with E‖x − C(x)‖² ≤ (1 − δ)‖x‖²) lets the memory e grow whatever η (for an unbiased
        C with ω ≥ 1, E‖e_{k+1}‖² = ω E‖u_k‖²); otherwise the learning rate."""
        c = self.compressor
        delta = getattr(c, "delta", None)
        if c is not None and self.error_feedback and callable(delta):
            try:
                dv = delta(d)
            except (TypeError, ValueError):
                dv = 0.0  # a compressor that refuses this d: say nothing about it
            if dv is None:
                w = c.omega(d) if callable(getattr(c, "omega", None)) else None
                wtxt = f" (ω = {w:.4g} ≥ 1)" if w is not None else ""
                return (f"error feedback with {c!r}, which is not a "
                        f"contraction at d = {d}{wtxt}: its memory grows whatever the learning "
                        f"rate — use C.as_contraction(), a biased compressor (top-k, random-k "
                        f"without rescaling) or qsgd (no memory)")
        return "lower the learning rate"

    def __repr__(self) -> str:
        extra = ""
        if self.compressor is not None:
            extra += f", compressor={getattr(self.compressor, 'name', self.compressor)}"
            if not self.error_feedback:
                extra += ", no error feedback"
        if self.momentum:
            extra += f", momentum={self.momentum}{' nesterov' if self.nesterov else ''}"
        if self.gossip is not None:
            g = self.gossip
            extra += (f", gossip=({getattr(g.compressor, 'name', g.compressor)}, "
                      f"γ={g.gamma}, c={g.to_dict()['threshold']})")
        return (f"Config({self.name}, m={self.m}, v={self.v}, "
                f"schedule={getattr(self.schedule, 'name', self.schedule)}{extra})")


def configuration(schedule: Schedule, *, v: int = 0, compressor: Any = None,
                  momentum: float = 0.0, nesterov: bool = False, name: str | None = None
                  ) -> Config:
    """Any schedule as a configuration (the generic A(τ_i, W_i, v))."""
    return Config(name or getattr(schedule, "name", "custom"), schedule, v=v,
                  compressor=compressor, momentum=momentum, nesterov=nesterov)


def local_sgd(schedule: Schedule, *, name: str = "local_sgd", **options: Any) -> Config:
    """Local SGD with any schedule of averaging steps (W = J), e.g. those of
    :mod:`theory.schedule_library`: ``spiridonoff(average(m), T)``, ``linear_growth(...)``,
    ``adaptive_lupa(...)``, ``one_shot(...)``."""
    return configuration(schedule, name=name, **options)


def synchronous(m: int, **options: Any) -> Config:
    """Fully synchronous (mini-batch) SGD: A(1, J, 0)."""
    m = _int("m", m, 1)
    return Config("synchronous", Periodic(average(m), 1), params={"m": m}, **options)


def pasgd(m: int, tau: int, **options: Any) -> Config:
    """Periodic averaging SGD / local SGD: A(τ, J, 0)."""
    m, tau = _int("m", m, 1), _int("tau", tau, 1)
    return Config("pasgd", Periodic(average(m), tau), params={"m": m, "tau": tau}, **options)


def one_shot(m: int, **options: Any) -> Config:
    """One-shot averaging: local steps only, one average at the last step T−1."""
    m = _int("m", m, 1)
    return Config("one_shot", OneShot(average(m)), params={"m": m}, **options)


def dpsgd(W: MixingMatrix | Any, **options: Any) -> Config:
    """D-PSGD (Lian et al. 2017): A(1, W, 0), neighbour mixing after every step."""
    W = as_mixing(W)
    return Config("dpsgd", Periodic(W, 1), params={"W": W.name}, **options)


def decentralized_periodic(W: MixingMatrix | Any, tau: int, **options: Any) -> Config:
    """Decentralized periodic averaging: A(τ, W, 0) (Cooperative SGD's new variant)."""
    W, tau = as_mixing(W), _int("tau", tau, 1)
    return Config("decentralized_periodic", Periodic(W, tau), params={"W": W.name, "tau": tau},
                  **options)


def easgd(m: int, tau: int, alpha: float, **options: Any) -> Config:
    """EASGD: A(τ, W_α, 1) with the centre variable as row m (W_α from
    :func:`theory.mixing.easgd_matrix`; JMLR eq. 11, corroborated by the author's code)."""
    m, tau = _int("m", m, 1), _int("tau", tau, 1)
    return Config("easgd", Periodic(easgd_matrix(m, alpha), tau), v=1,
                  params={"m": m, "tau": tau, "alpha": float(alpha)}, **options)


def hierarchical(m: int, n_groups: int | None = None, tau1: int = 1, tau2: int = 1, *,
                 groups: list[list[int]] | None = None, **options: Any) -> Config:
    """Hierarchical averaging: average within groups every τ₁ steps, globally every τ₂ steps
    (τ₂ a multiple of τ₁). Groups: ``n_groups`` contiguous equal groups, or explicit ``groups``.
    This definition is the toolkit's own scheme (JMLR §6.3 gives none for it)."""
    m = _int("m", m, 1)
    if groups is None:
        if n_groups is None:
            raise ValueError("hierarchical needs n_groups or groups")
        groups = contiguous_groups(m, _int("n_groups", n_groups, 1))
    Wg = _group_average(groups)
    if Wg.n != m:
        raise ValueError(f"groups cover {Wg.n} workers but m = {m}")
    sched = Hierarchical(Wg, average(m), tau1, tau2)
    return Config("hierarchical", sched, params={"m": m, "n_groups": len(groups),
                                                  "tau1": sched.tau1, "tau2": sched.tau2},
                  **options)


def mdsgd(m: int, compressor: Any, momentum: float = 0.0, *, nesterov: bool = False,
          W: MixingMatrix | Any | None = None, tau: int = 1) -> Config:
    """M-DSGD (memory-based distributed SGD, Zhao, Gao & Li, arXiv:1905.12960;
    update reconstructed from the standard error-feedback construction, not quoted): each
    worker sends C(e + η·direction), keeps e ← e + η·direction − C(·); with W = J and τ = 1
    this is w_{t+1} = w_t − (1/m) Σ_k C(u_k). ``W``/``tau`` give the
    decentralized / periodic variant X_{k+1} = (X_k − C-updates) W_k (not CHOCO)."""
    m = _int("m", m, 1)
    if compressor is None:
        raise ValueError("mdsgd needs a compressor (use empirics.compressors.Identity() for none)")
    Wm = average(m) if W is None else as_mixing(W)
    if Wm.n != m:
        raise ValueError(f"W is {Wm.n}×{Wm.n} but m = {m}")
    return Config("mdsgd", Periodic(Wm, tau), compressor=compressor, momentum=momentum,
                  nesterov=nesterov, params={"m": m, "W": Wm.name, "tau": int(tau)})


def qsgd(m: int, s: int = 1, momentum: float = 0.0, *, nesterov: bool = False,
         W: MixingMatrix | Any | None = None, tau: int = 1, compressor: Any = None) -> Config:
    """Distributed QSGD (Alistarh et al. 2017; as used by Kalan, Soltanolkotabi &
    Avestimehr): each worker sends C(η·p) of its direction p, with C = ``QSGD(s)`` (or the
    given unbiased ``compressor``) and no error-feedback memory; with W = J and τ = 1,
    w_{t+1} = w_t − (1/m) Σ_k C(η g_k). Bits per worker per step: ``C.bits(d)``."""
    from empirics.compressors import QSGD

    m = _int("m", m, 1)
    if compressor is None:
        compressor = QSGD(_int("s", s, 1))
    elif not getattr(compressor, "unbiased", False):
        raise ValueError(f"qsgd needs an unbiased compressor (E C(x) = x) since nothing corrects "
                         f"its error; got {compressor!r} (use mdsgd for error feedback)")
    Wm = average(m) if W is None else as_mixing(W)
    if Wm.n != m:
        raise ValueError(f"W is {Wm.n}×{Wm.n} but m = {m}")
    return Config("qsgd", Periodic(Wm, tau), compressor=compressor, momentum=momentum,
                  nesterov=nesterov, error_feedback=False,
                  params={"m": m, "s": getattr(compressor, "s", None), "W": Wm.name,
                          "tau": int(tau)})


def spiridonoff_sgd(m: int, T: int, R: int | None = None, **options: Any) -> Config:
    """Local SGD with Spiridonoff et al.'s linearly growing intervals H_i = a·i, R = m rounds by
    default (Spiridonoff, Olshevsky & Paschalidis, NeurIPS 2021; verified from the authors'
    notebook)."""
    from theory.schedule_library import spiridonoff

    m = _int("m", m, 1)
    return Config("spiridonoff", spiridonoff(average(m), T, R),
                  params={"m": m, "T": int(T), "R": R}, **options)


def lupa(m: int, T: int, E: int, tau0: int, *, adaptive: bool = False, **options: Any
         ) -> Config:
    """Haddadpour et al.'s LUPA-SGD schedules (NeurIPS 2019; poster and the authors' code):
    linearly growing τ_i = (1 + iα)τ₀ with E rounds, or (``adaptive=True``) the loss-driven
    τ_i = ⌈(F(x̄⁰)/F(x̄))^{1/3}⌉·τ₀."""
    from theory.schedule_library import adaptive_lupa, linear_growth

    m = _int("m", m, 1)
    sched = adaptive_lupa(average(m), tau0) if adaptive else linear_growth(average(m), T, E, tau0)
    return Config("lupa_adaptive" if adaptive else "lupa", sched,
                  params={"m": m, "T": int(T), "E": int(E), "tau0": int(tau0)}, **options)


def squarm(W: MixingMatrix | Any, tau: int | None = 1, *, compressor: Any, gamma: float,
           threshold: Any = 0.0, momentum: float = 0.0, nesterov: bool | None = None,
           schedule: Schedule | None = None, name: str = "squarm") -> Config:
    """SQuARM-SGD (Singh, Data, George, Diggavi, IEEE JSAIT 2021): local SGD steps
    with (Nesterov) momentum, and every τ steps (or at the rounds of ``schedule``) the
    event-triggered compressed gossip of :class:`Gossip` with the round's W:

        v_i ← βv_i + g_i,  x_i^{t+½} = x_i − η(βv_i + g_i)          (Nesterov; heavy ball: −ηv_i)
        x̂_j ← x̂_j + C(x_j^{t+½} − x̂_j)   if ‖x_j^{t+½} − x̂_j‖² > c_t η²   (trigger)
        x_i ← x_i^{t+½} + γ Σ_j w_ji (x̂_j − x̂_i)

    (third-party transcription, not checked against the paper). ``nesterov``:
    None → Nesterov whenever momentum > 0 (the paper's choice). Reductions (tested): threshold
    0, C = Identity, γ = 1 → :func:`decentralized_periodic` with the same momentum; τ = 1, no
    momentum → CHOCO-SGD (:func:`choco_sgd`). ``threshold = inf`` never communicates."""
    Wm = as_mixing(W)
    if schedule is None:
        sched: Schedule = Periodic(Wm, _int("tau", tau, 1))
    else:
        if not isinstance(schedule, Schedule):
            raise ValueError(f"schedule must be a theory.schedules.Schedule "
                             f"(got {type(schedule).__name__})")
        if schedule.n != Wm.n:
            raise ValueError(f"schedule is for {schedule.n} nodes but W is {Wm.n}×{Wm.n}")
        sched = schedule
    if compressor is None:
        raise ValueError("squarm needs a compressor (use empirics.compressors.Identity() for none)")
    beta = float(momentum)
    nest = (beta > 0) if nesterov is None else bool(nesterov)
    g = Gossip(compressor, gamma, threshold)
    th = g.to_dict()["threshold"]
    return Config(name, sched, momentum=beta, nesterov=nest, gossip=g,
                  params={"W": Wm.name, "tau": None if schedule is not None else int(tau),
                          "gamma": g.gamma, "threshold": th if not isinstance(th, dict)
                          else repr(g.threshold)})


def choco_sgd(W: MixingMatrix | Any, *, compressor: Any, gamma: float) -> Config:
    """CHOCO-SGD (Koloskova, Stich, Jaggi, ICML 2019; recalled): SQuARM-SGD
    with τ = 1, no momentum and threshold 0 (every node with x_j ≠ x̂_j sends C(x_j − x̂_j) after
    every step): x ← x − ηg; x̂_j ← x̂_j + C(x_j − x̂_j); x_i ← x_i + γ Σ_j w_ji (x̂_j − x̂_i)."""
    return squarm(W, 1, compressor=compressor, gamma=gamma, threshold=0.0, momentum=0.0,
                  name="choco")
