"""First and second moments of the stacked state of Cooperative SGD, propagated without sampling.

This is the one moment propagation of the toolkit: :func:`empirics.recursion.exact_moments`
(plain SGD on the noisy quadratic) and :func:`empirics.predict.predict` (every configuration
whose local step is linear in the second moments) both run it.

**State.** Node r (rows 0..m−1 workers, m..n−1 auxiliary variables, engine order) holds slots:
the model x_r; a worker also holds its heavy-ball buffer b (momentum > 0) and its error-feedback
memory e (a compressor with error feedback). z is the stacked state; M = E z (per node and slot)
and C = Cov z are propagated exactly through the engine's step (:mod:`empirics.algorithm`):

    g  = gradient sample of worker i at x_i: E[g | x] = ∇F_i(x), Cov[g | x] = Σ_i(x)/b
    b' = βb + g;   p = b' (heavy ball), g + βb' (Nesterov), g (none)
    no compressor:  x' = x − ηp
    compressor C:   u = e + ηp (EF; u = ηp without), δ = C(u), x' = x − δ, e' = u − δ (EF)
    mixing after the last local step of a round:  x_r ← Σ_s W_sr x_s  (other slots unchanged)

**Laws.** A *law* gives, at each step, E g_i, the Jacobian H_i of E g_i in x (d × d) and the
noise covariance Σ_i as functions of worker i's mean and marginal covariance. For a quadratic
F_i (gradient H_i x − h_i, any noise whose covariance is an affine function of E[x xᵀ]: additive,
the noisy quadratic's multiplicative noise, least-squares sampling) everything is linear and the
propagation is **exact**. A compressor is admitted when its second moment is linear in the
input's (:class:`CompressionLaw`: random-k, biased or unbiased, the identity, their rescalings):
E C(u) = q u, E[C(u)C(u)ᵀ] = r_off uuᵀ + (r_diag − r_off) diag(uuᵀ) — then
Cov(C(u) − qu) = (r_off − q²) E[uuᵀ] + (r_diag − r_off) diag(E[uuᵀ]), which is what the
step adds. For smooth problems the law is a local (second-order) model re-expanded at the
predicted means (:mod:`empirics.laws`).

**Structure, not brute force.** The covariance is held in blocks after an orthogonal change of
node basis V (transformed node t = Σ_r V_rt · node r):

* *modal* — when every worker has the same Jacobian and the same noise law, V is a common
  eigenbasis of the schedule's mixing matrices (of the workers' block and J; auxiliary nodes kept
  as they are, e.g. EASGD's centre). Mixing is then block-diagonal: one block per eigen-mode (the
  consensus mode 1/√n, and for EASGD the pair (workers' mean, centre)), and modes with the same
  eigenvalue under every W of the schedule have the same covariance: one is propagated with its
  multiplicity (PASGD: 2 blocks; D-PSGD on ring(16): 9). The workers' noise enters every mode
  equally because it is independent and identically distributed across workers;
* *dense* — otherwise (per-worker Hessians, heterogeneous state-dependent noise): V = I, one
  block of all n nodes (n² blocks of (s·d)², no Kronecker products formed);
* *separable* — when every H_i is diagonal in one basis (the noisy quadratic; a shared Hessian
  after rotation to its eigenbasis, without compressor) and the noise law keeps the diagonal
  closed, the coordinates decouple: each coordinate carries an (n·s)² node–slot covariance (or
  one per mode), so a step costs O(n d s²) in the modal case instead of O(n d³);
* *eigenbasis* — a local model (re-expanded, so not separable) with one Jacobian H for every
  worker in the modal structure: the blocks are held in H's eigenbasis, where the step is an
  s × s slot map per coordinate pair (:class:`_EigenEngine`; the basis turns at each
  re-expansion).

Records follow the engine (:mod:`empirics.driver`): the record at k describes the state before
step k, records at k = 0, s, 2s, … and at T (after the last mixing); the running average at k
is (1/k) Σ_{j<k} of the per-step values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["CompressionLaw", "Diverged", "MomentRun", "StepRule", "Structure", "blas_threads",
           "compression_law", "propagate", "stationary", "structure_for"]

_TOL = 1e-10

#: hold a local model's blocks in its Jacobian's eigenbasis where that applies
#: (:class:`_EigenEngine`); False forces the plain engine (tests compare the two)
EIGEN = True


# ---------------------------------------------------------------------------------------------
# BLAS threads: the propagation is many small products, which a multi-threaded OpenBLAS on a
# busy machine slows down by orders of magnitude
# ---------------------------------------------------------------------------------------------
class blas_threads:
    """Context manager: at most ``n`` BLAS threads inside (threadpoolctl; a no-op when it is
    missing or ``n`` is None)."""

    def __init__(self, n: int | None = 1):
        self.n = n
        self._ctx: Any = None

    def __enter__(self) -> blas_threads:
        if self.n is not None:
            try:
                from threadpoolctl import threadpool_limits
            except ImportError:  # pragma: no cover - a dependency, but optional here
                return self
            self._ctx = threadpool_limits(limits=int(self.n), user_api="blas")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._ctx is not None:
            self._ctx.unregister()
            self._ctx = None


# ---------------------------------------------------------------------------------------------
# compressors whose second moment is linear in the input's
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CompressionLaw:
    """E C(u) = q·u and E[C(u)C(u)ᵀ] = r_off·uuᵀ + (r_diag − r_off)·diag(uuᵀ) for every u
    (so the compression error is linear in the second moment of u)."""

    q: float
    r_diag: float
    r_off: float
    name: str = ""

    def scaled(self, c: float) -> CompressionLaw:
        return CompressionLaw(c * self.q, c * c * self.r_diag, c * c * self.r_off,
                              f"{c:g}·{self.name}")


def compression_law(comp: Any, d: int) -> CompressionLaw | None:
    """The :class:`CompressionLaw` of an :mod:`empirics.compressors` compressor at dimension d,
    or None when its second moment is not linear in the input's (top-k, QSGD, sign, …).

    Random-k keeps a uniform k-subset S: P(a ∈ S) = k/d, P(a, b ∈ S) = k(k−1)/(d(d−1)) for
    a ≠ b; scale s = d/k (unbiased) or 1: q = s·k/d, r_diag = s²k/d, r_off = s²k(k−1)/(d(d−1))
    (derived; checked against the compressor in ``tests/empirics/test_predict.py``)."""
    from empirics import compressors as C

    if comp is None:
        return None
    if isinstance(comp, C.Identity):
        return CompressionLaw(1.0, 1.0, 1.0, "identity")
    if isinstance(comp, C.RandomK):
        k = int(comp.k)
        if k > d:
            return None
        p = k / d
        pair = k * (k - 1) / (d * (d - 1)) if d > 1 else 0.0
        s = d / k if comp.unbiased else 1.0
        return CompressionLaw(s * p, s * s * p, s * s * pair,
                              f"randk(k={k}{', unbiased' if comp.unbiased else ''})")
    if isinstance(comp, C.Rescaled):
        inner = compression_law(comp.inner, d)
        w = comp.inner.omega(d)
        return None if inner is None or w is None else inner.scaled(1.0 / (1.0 + w))
    return None


# ---------------------------------------------------------------------------------------------
# the local step as a linear map of the node's slots
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StepRule:
    """The local step's slots and coefficients (from a :class:`~empirics.configs.Config`).

    p = κ_g·g + κ_b·b with (κ_g, κ_b) = (1, β) heavy ball, (1 + β, β²) Nesterov, (1, 0) none
    (b the buffer before the step)."""

    beta: float = 0.0
    nesterov: bool = False
    comp: CompressionLaw | None = None
    ef: bool = False

    @property
    def slots(self) -> tuple[str, ...]:
        return ("x",) + (("b",) if self.beta else ()) + (("e",) if self.comp and self.ef
                                                         else ())

    @property
    def s(self) -> int:
        return len(self.slots)

    def index(self, slot: str) -> int | None:
        return self.slots.index(slot) if slot in self.slots else None

    @property
    def kappa(self) -> tuple[float, float]:
        if not self.beta:
            return 1.0, 0.0
        if self.nesterov:
            return 1.0 + self.beta, self.beta**2
        return 1.0, self.beta

    def coefficients(self, eta: float) -> dict[str, Any]:
        """Slot coefficients of the step as dictionaries of scalars (× I or × H):
        ``AH[(σ, τ)]`` multiplies H, ``AI[(σ, τ)]`` multiplies I (new slot σ from old slot τ),
        ``be``/``bn`` (per slot) multiply the gradient noise ε and the compression noise ν,
        ``UH``/``UI`` the u-map (compressors), ``u_eps`` its noise factor."""
        kg, kb = self.kappa
        sl = self.slots
        AH: dict[tuple[str, str], float] = {}
        AI: dict[tuple[str, str], float] = {(s_, s_): 1.0 for s_ in sl}
        be: dict[str, float] = {}
        bn: dict[str, float] = {}
        UH: dict[str, float] = {}
        UI: dict[str, float] = {}
        if self.beta:  # b' = βb + g
            AI[("b", "b")] = self.beta
            AH[("b", "x")] = 1.0
            be["b"] = 1.0
        if self.comp is None:  # x' = x − η(κ_g g + κ_b b)
            AH[("x", "x")] = -eta * kg
            if self.beta:
                AI[("x", "b")] = -eta * kb
            be["x"] = -eta * kg
            return {"AH": AH, "AI": AI, "be": be, "bn": bn, "UH": UH, "UI": UI, "u_eps": 0.0}
        q = self.comp.q
        UH["x"] = eta * kg
        if self.beta:
            UI["b"] = eta * kb
        if self.ef:
            UI["e"] = 1.0
        # x' = x − q u − ν
        for t, c in UH.items():
            AH[("x", t)] = AH.get(("x", t), 0.0) - q * c
        for t, c in UI.items():
            AI[("x", t)] = AI.get(("x", t), 0.0) - q * c
        be["x"] = -q * eta * kg
        bn["x"] = -1.0
        if self.ef:  # e' = (1 − q) u − ν
            AI[("e", "e")] = 0.0
            for t, c in UH.items():
                AH[("e", t)] = AH.get(("e", t), 0.0) + (1 - q) * c
            for t, c in UI.items():
                AI[("e", t)] = AI.get(("e", t), 0.0) + (1 - q) * c
            be["e"] = (1 - q) * eta * kg
            bn["e"] = -1.0
        return {"AH": AH, "AI": AI, "be": be, "bn": bn, "UH": UH, "UI": UI,
                "u_eps": eta * kg}


def rule_of(config: Any, d: int) -> StepRule:
    """The :class:`StepRule` of a configuration; ValueError naming what is outside the
    predictor's regime (gossip, a compressor whose second moment is not linear)."""
    if getattr(config, "gossip", None) is not None:
        raise ValueError("compressed, event-triggered gossip (SQuARM-SGD/CHOCO-SGD) is outside "
                         "the predictor's regime: its trigger is not linear in the moments")
    comp = None
    if config.compressor is not None:
        comp = compression_law(config.compressor, d)
        if comp is None:
            raise ValueError(f"compressor {config.compressor!r}: its second moment is not "
                             f"linear in the input's (only random-k, the identity and their "
                             f"rescalings are), so the moments do not close")
    return StepRule(float(config.momentum), bool(config.nesterov), comp,
                    bool(config.error_feedback) if comp is not None else False)


# ---------------------------------------------------------------------------------------------
# node bases: dense, modal
# ---------------------------------------------------------------------------------------------
@dataclass
class Structure:
    """The node basis V (n × n, orthogonal), its blocks (groups of transformed nodes that mixing
    couples), and which blocks are propagated once with a multiplicity.

    ``groups``: list of (representative block (b,) int array of transformed nodes, multiplicity
    w, member blocks). ``kind[t]``: "w" if transformed node t lies in the workers' span, "a" in
    the auxiliary span. ``mixes``: {id(W): (W̃ = VᵀWV restricted to each group's
    representative: list of (b, b) arrays)}. ``name``: "dense" or "modal"."""

    name: str
    V: np.ndarray
    groups: list[tuple[np.ndarray, int, list[np.ndarray]]]
    kind: np.ndarray
    mixes: dict[int, list[np.ndarray]]
    m: int
    n: int

    def weights(self) -> np.ndarray:
        return np.array([w for _, w, _ in self.groups], dtype=float)


def _distinct_mixing(schedule: Any, T: int, loss: Any = None) -> dict[int, Any]:
    """The distinct W ≠ I a schedule applies within T steps (by object)."""
    out: dict[int, Any] = {}
    if getattr(schedule, "adaptive", False):
        W = getattr(schedule, "W", None)
        if W is not None:
            out[id(W)] = W
        return out
    for r in schedule.rounds(T):
        if r.W is not None and not r.W.is_identity:
            out.setdefault(id(r.W), r.W)
    return out


def structure_for(schedule: Any, m: int, T: int, *, modal: bool) -> Structure:
    """The node basis for ``schedule`` (n = m + v nodes): modal (see the module docstring) if
    ``modal``, else dense. Blocks are the connected components of the pattern of VᵀWV over the
    schedule's W, so the basis is correct whatever the W (non-commuting ones give bigger
    blocks)."""
    n = schedule.n
    Ws = _distinct_mixing(schedule, T)
    mats = {k: np.asarray(W.matrix, dtype=np.float64) for k, W in Ws.items()}
    kind = np.array(["w"] * m + ["a"] * (n - m))
    if not modal:
        V = np.eye(n)
        blk = np.arange(n)
        return Structure("dense", V, [(blk, 1, [blk])], kind,
                         {k: [M] for k, M in mats.items()}, m, n)
    # a generic combination of the workers' blocks and J_m: its eigenvectors diagonalise every
    # W_ww when they commute; the consensus vector is made an exact column
    rng = np.random.default_rng(12345)
    comb = (0.5 + rng.random()) * np.full((m, m), 1.0 / m)
    for M in mats.values():
        comb = comb + (0.5 + rng.random()) * M[:m, :m]
    _, Vw = np.linalg.eigh(0.5 * (comb + comb.T))
    one = np.full(m, 1.0 / math.sqrt(m))
    j = int(np.argmax(np.abs(one @ Vw)))
    Vw[:, j] = one
    # re-orthonormalise the rest against the consensus vector (rounding)
    rest = [c for c in range(m) if c != j]
    Q, _ = np.linalg.qr(np.column_stack([one, Vw[:, rest]]))
    Q[:, 0] = one
    Q[:, 1:] -= np.outer(one, one @ Q[:, 1:])
    Vw = Q
    V = np.eye(n)
    V[:m, :m] = Vw
    # blocks: connected components of the union of |VᵀWV| patterns
    adj = np.eye(n, dtype=bool)
    tw = {}
    for k, M in mats.items():
        Wt = V.T @ M @ V
        tw[k] = Wt
        adj |= np.abs(Wt) > 1e-9 * max(1.0, np.abs(M).max())
    comp_of = -np.ones(n, dtype=int)
    c = 0
    for s0 in range(n):
        if comp_of[s0] >= 0:
            continue
        stack = [s0]
        comp_of[s0] = c
        while stack:
            a = stack.pop()
            for b in np.nonzero(adj[a] | adj[:, a])[0]:
                if comp_of[b] < 0:
                    comp_of[b] = c
                    stack.append(b)
        c += 1
    blocks = [np.nonzero(comp_of == i)[0] for i in range(c)]
    tkind = np.array(["w" if np.abs(V[m:, t]).max(initial=0.0) < 1e-12 else
                      ("a" if np.abs(V[:m, t]).max() < 1e-12 else "x") for t in range(n)])
    if (tkind == "x").any():  # a transformed node mixing workers and auxiliaries: not modal
        return structure_for(schedule, m, T, modal=False)
    ones = V.sum(0)  # 1ᵀ V_t
    # group blocks with the same signature (size 1 only: eigenvalues, kind, consensus weight)
    groups: dict[Any, list[np.ndarray]] = {}
    for b in blocks:
        if len(b) == 1:
            t = int(b[0])
            key = ("1", tkind[t], round(float(ones[t]), 9),
                   tuple(round(float(Wt[t, t]), 11) for Wt in tw.values()))
        else:
            key = ("b", tuple(b.tolist()))
        groups.setdefault(key, []).append(b)
    glist = [(members[0], len(members), members) for members in groups.values()]
    mixes = {k: [Wt[np.ix_(rep, rep)] for rep, _, _ in glist] for k, Wt in tw.items()}
    return Structure("modal", V, glist, tkind, mixes, m, n)


def uniform_marginals(st: Structure) -> bool:
    """Whether every worker has the same marginal covariance whenever every propagated block
    has one covariance for all its members: Σ over a group's members of V_it V_iu is the same
    for every worker i (vertex-transitive mixing, J, EASGD's structure)."""
    m = st.m
    for rep, _, members in st.groups:
        b = len(rep)
        acc = np.zeros((m, b, b))
        for blk in members:
            Vb = st.V[:m, blk]
            acc += Vb[:, :, None] * Vb[:, None, :]
        if not np.allclose(acc, acc[0], atol=1e-9):
            return False
    return True


# ---------------------------------------------------------------------------------------------
# the propagation
# ---------------------------------------------------------------------------------------------
@dataclass
class MomentRun:
    """Predicted record columns of a run (arrays over the recorded steps; see
    :data:`empirics.records.COLUMNS` for their meaning): ``steps``, ``rounds``,
    ``suboptimality`` (E F(u_k) − F*), ``grad_norm2`` (E‖∇F(u_k)‖²), ``grad_norm2_running``,
    ``consensus`` (E Σ_r ‖x_r − u_k‖², all n rows), ``consensus_running``, ``dist2_u``
    (E‖u_k − x*‖²), ``dist2_workers`` ((1/m) Σ_i E‖x_i − x*‖²), ``memory_norm2_workers``
    ((1/m) Σ_i E‖e_i‖²), ``memory_norm2`` (E‖(1/m) Σ_i e_i‖²), ``mean_u`` (K, d);
    ``state`` the final moments (node means (n, s, d) in the law's basis, the blocks),
    ``structure`` (dense/modal, separable or not), ``info`` (the structure's groups, the
    slots, the compressor; ``reexpansions``: how often a local model re-expanded — its
    workers' model and its averaged model — (None, None) for an exact law)."""

    steps: np.ndarray
    rounds: np.ndarray
    columns: dict[str, np.ndarray]
    mean_u: np.ndarray
    structure: str
    info: dict[str, Any] = field(default_factory=dict)
    state: Any = None

    def __getattr__(self, name: str) -> Any:
        cols = self.__dict__.get("columns", {})
        if name in cols:
            return cols[name]
        raise AttributeError(name)


class _Pack:
    """The groups of one block size b, stacked: C (G, B, b·S, b·S), their multiplicities w,
    noise weights Gw (G, b, b) = Σ_{i workers} V_it V_iu, consensus weights o (G, b) = 1ᵀV_t,
    worker masks (G, b), and the groups' indices in the structure."""

    def __init__(self, st: Structure, idx: list[int], m: int, B: int, S: int):
        self.idx = idx
        reps = np.stack([st.groups[g][0] for g in idx])  # (G, b)
        self.reps = reps
        G, b = reps.shape
        self.b = b
        self.w = np.array([st.groups[g][1] for g in idx], dtype=float)
        Vb = st.V[:m][:, reps]  # (m, G, b)
        self.Gw = np.einsum("igt,igu->gtu", Vb, Vb)
        self.o = st.V[:, reps].sum(0)  # (G, b)
        self.worker = st.kind[reps] == "w"  # (G, b)
        self.C = np.zeros((G, B, b * S, b * S))
        self.win = np.zeros_like(self.C)
        self.has_u = bool(np.any(np.abs(self.o) > 1e-15))
        self._At: Any = None  # (A, the nodes' Jacobians) of the last local step
        self._Nt: Any = None  # (N, its modal noise pattern)


class _Engine:
    """The stacked moments in a :class:`Structure` (see the module docstring).

    Representation: ``sep`` (separable: batch axis = coordinates, D = 1) or not (batch 1,
    D = d). Node means ``M`` (n, s, d) in node space. The covariance of group g is a
    (B, b·s·D, b·s·D) array ordered (transformed node, slot, coordinate); groups of the same
    block size are stacked in a :class:`_Pack`, so a step is a few batched products whatever
    the number of modes. ``C`` reads/writes the list of per-group arrays."""

    def __init__(self, law: Any, rule: StepRule, st: Structure, x0: np.ndarray, sep: bool,
                 batch_size: int):
        self.law, self.rule, self.st, self.sep = law, rule, st, sep
        self.b = batch_size
        self.d = d = law.d
        self.s = rule.s
        self.n, self.m = st.n, st.m
        self.B = d if sep else 1
        self.D = 1 if sep else d
        self.S = self.s * self.D
        self.M = np.zeros((self.n, self.s, d))
        self.M[:, 0, :] = x0
        by_size: dict[int, list[int]] = {}
        for g, (rep, _, _) in enumerate(st.groups):
            by_size.setdefault(len(rep), []).append(g)
        self.packs = [_Pack(st, idx, self.m, self.B, self.S) for idx in by_size.values()]
        self._where = {}
        for p_i, pk in enumerate(self.packs):
            for j, g in enumerate(pk.idx):
                self._where[g] = (p_i, j)
        self.win_n = 0
        self.modal = st.name == "modal"
        self.xi = rule.index("x")
        self.ei = rule.index("e")
        self._ck: Any = None  # (η, H, A, Σ, N) of the last step, reused while unchanged
        self._co: Any = None
        self._mixes: dict[int, list[np.ndarray]] = {}
        self.basis: np.ndarray | None = None  # coordinates of the blocks (None: original)

    def basis_kw(self) -> dict[str, Any]:
        """What ``law.observe`` needs besides (u, Cov u): the blocks' basis when rotated."""
        return {} if self.basis is None else {"basis": self.basis}

    # ---- per-group view (stationary solve, node covariance) ---------------------------------
    @property
    def C(self) -> list[np.ndarray]:
        return [self.packs[self._where[g][0]].C[self._where[g][1]]
                for g in range(len(self.st.groups))]

    @C.setter
    def C(self, blocks: list[np.ndarray]) -> None:
        for g, X in enumerate(blocks):
            p_i, j = self._where[g]
            self.packs[p_i].C[j] = X

    # ---- marginals --------------------------------------------------------------------------
    def _marg_of(self, Cs: list[np.ndarray]) -> np.ndarray:
        S = self.S
        if not self.modal:
            pk = self.packs[0]
            Cg = Cs[0][0].reshape(self.B, self.n, S, self.n, S)
            idx = np.arange(self.m)
            return Cg[:, idx, :, idx, :]  # (m, B, S, S)
        acc = np.zeros((self.B, S, S))
        for pk, Cp in zip(self.packs, Cs, strict=True):
            b = pk.b
            Cv = Cp.reshape(len(pk.idx), self.B, b, S, b, S)
            acc += np.einsum("g,gtu,gktaub->kab", pk.w, pk.Gw, Cv)
        return (acc / self.m)[None]

    def worker_marginals(self) -> np.ndarray:
        """Worker slot-marginal covariances: (m, B, sD, sD) (dense) or the workers' average
        (1, B, sD, sD) (modal)."""
        return self._marg_of([pk.C for pk in self.packs])

    def window_marginals(self) -> np.ndarray:
        """:meth:`worker_marginals` averaged over the steps since the last call (marginals are
        linear in C), then the window restarts."""
        if self.win_n == 0:
            return self.worker_marginals()
        out = self._marg_of([pk.win / self.win_n for pk in self.packs])
        for pk in self.packs:
            pk.win[...] = 0.0
        self.win_n = 0
        return out

    def cov_u(self) -> np.ndarray:
        """Cov(u) of the x slot, u = (1/n) Σ_r x_r: (B, D, D)."""
        D, s = self.D, self.s
        out = np.zeros((self.B, D, D))
        for pk in self.packs:
            if not pk.has_u:
                continue
            b = pk.b
            Cx = pk.C.reshape(len(pk.idx), self.B, b, s, D, b, s, D)[:, :, :, 0, :, :, 0, :]
            out += np.einsum("g,gt,gu,gktaub->kab", pk.w, pk.o, pk.o, Cx)
        return out / self.n**2

    def consensus(self, u: np.ndarray, Cu: np.ndarray) -> float:
        """E Σ_r ‖x_r − u‖² over all n nodes: Σ_r ‖E x_r − E u‖² + Σ_r tr Cov(x_r) − n tr Cov(u)."""
        dM = self.M[:, 0, :] - u
        return float(np.vdot(dM, dM)) + self.trace_x() - self.n * float(np.einsum("kaa->", Cu))

    def trace_x(self) -> float:
        """Σ_r tr Cov(x_r) over all n nodes (basis-invariant)."""
        return self._trace_slot(0, all_nodes=True)

    def _trace_slot(self, slot: int, all_nodes: bool) -> float:
        tot = 0.0
        s, D = self.s, self.D
        for pk in self.packs:
            b = pk.b
            Cs = pk.C.reshape(len(pk.idx), self.B, b, s, D, b, s, D)[:, :, :, slot, :, :, slot]
            dg = np.einsum("gktata->gt", Cs)  # (G, b)
            if not all_nodes:
                dg = dg * pk.worker
            tot += float(pk.w @ dg.sum(1))
        return tot

    # ---- the local step ---------------------------------------------------------------------
    def local(self, eta: float, k: int) -> None:
        law, rule = self.law, self.rule
        m, D = self.m, self.D
        co = self._coef(eta)
        cache: dict[str, np.ndarray] = {}

        def cov(window: bool = False) -> np.ndarray:
            """x-slot worker marginals (current, or window-averaged for refreshed laws)."""
            if window:
                return self.window_marginals()[:, :, :D, :D]
            if "marg" not in cache:
                cache["marg"] = self.worker_marginals()
            return cache["marg"][:, :, :D, :D]

        mu = self.M[:m, self.xi, :]
        gbar, H, Sig = law.moments(mu, cov, self.sep, self.b, k)
        # H: (m or 1, B, D, D); Sig: (m or 1, B, D, D); gbar (m, d)
        Mw = self.M[:m]
        newM = self._mean_step(Mw, gbar, eta)
        Snu = None
        if rule.comp is not None:
            cov(False)
            Snu = self._compression_noise(co, H, Sig, cache["marg"], Mw, gbar, eta)
        ck = self._ck
        if ck is not None and ck[0] == eta and ck[1] is H:
            A = ck[2]
        else:
            A = self._A(co, H)  # (m or 1, B, sD, sD)
        if ck is not None and ck[0] == eta and ck[3] is Sig and Snu is None:
            N = ck[4]
        else:
            N = self._noise(co, Sig, Snu)  # (m or 1, B, sD, sD)
        self._ck = (eta, H, A, Sig, N)
        self._apply_local(A, N)
        self.M[:m] = newM
        if getattr(law, "windowed", False):
            for pk in self.packs:
                pk.win += pk.C
            self.win_n += 1

    def _coef(self, eta: float) -> dict:
        """The step's coefficients at η (:meth:`StepRule.coefficients`), cached per η."""
        if self._co is None or self._co[0] != eta:
            self._co = (eta, self.rule.coefficients(eta))
        return self._co[1]

    def _mean_step(self, Mw: np.ndarray, gbar: np.ndarray, eta: float) -> np.ndarray:
        rule = self.rule
        kg, kb = rule.kappa
        out = Mw.copy()
        x = Mw[:, 0]
        bi, ei = rule.index("b"), rule.index("e")
        b = Mw[:, bi] if bi is not None else 0.0
        p = kg * gbar + kb * b
        if bi is not None:
            out[:, bi] = rule.beta * b + gbar
        if rule.comp is None:
            out[:, 0] = x - eta * p
            return out
        u = eta * p + (Mw[:, ei] if ei is not None else 0.0)
        out[:, 0] = x - rule.comp.q * u
        if ei is not None:
            out[:, ei] = (1 - rule.comp.q) * u
        return out

    def _slot_matrix(self, coefH: dict, coefI: dict, H: np.ndarray) -> np.ndarray:
        """Σ coefH[(σ,τ)] E_στ ⊗ H + coefI[(σ,τ)] E_στ ⊗ I: (m or 1, B, sD, sD)."""
        sl = self.rule.slots
        s, D = self.s, self.D
        nm, B = H.shape[0], H.shape[1]
        A = np.zeros((nm, B, s, D, s, D))
        eye = np.eye(D)
        for (a, b), c in coefH.items():
            A[:, :, sl.index(a), :, sl.index(b), :] += c * H
        for (a, b), c in coefI.items():
            A[:, :, sl.index(a), :, sl.index(b), :] += c * eye
        return A.reshape(nm, B, s * D, s * D)

    def _A(self, co: dict, H: np.ndarray) -> np.ndarray:
        return self._slot_matrix(co["AH"], co["AI"], H)

    def _u_map(self, co: dict, H: np.ndarray) -> np.ndarray:
        """The u-map (m or 1, B, D, sD): u = U z + ..."""
        sl = self.rule.slots
        s, D = self.s, self.D
        nm, B = H.shape[0], H.shape[1]
        U = np.zeros((nm, B, D, s, D))
        for t, c in co["UH"].items():
            U[:, :, :, sl.index(t), :] += c * H
        for t, c in co["UI"].items():
            U[:, :, :, sl.index(t), :] += c * np.eye(D)
        return U.reshape(nm, B, D, s * D)

    def _compression_noise(self, co: dict, H: np.ndarray, Sig: np.ndarray, marg: np.ndarray,
                           Mw: np.ndarray, gbar: np.ndarray, eta: float) -> np.ndarray:
        """Cov of ν = C(u) − q u per worker: (m or 1, B, D, D)."""
        comp = self.rule.comp
        U = self._u_map(co, H)
        Euu = np.matmul(np.matmul(U, marg), U.swapaxes(-1, -2)) + co["u_eps"] ** 2 * Sig
        ub = self._u_mean(Mw, gbar, eta)
        if self.sep:  # per coordinate: only the diagonal of Cov(ν) is kept
            if Euu.shape[0] == 1:  # modal: the workers' average raw second moment
                Euu = Euu + (ub**2).mean(0)[None, :, None, None]
            else:
                Euu = Euu + (ub**2)[:, :, None, None]
            return (comp.r_diag - comp.q**2) * Euu
        outer = ub[:, :, None] * ub[:, None, :]  # (m, d, d)
        if Euu.shape[0] == 1:
            Euu = Euu + outer.mean(0)[None, None]
        else:
            Euu = Euu + outer[:, None]
        dg = np.einsum("nkaa->nka", Euu)
        out = (comp.r_off - comp.q**2) * Euu
        idx = np.arange(self.D)
        out[:, :, idx, idx] += (comp.r_diag - comp.r_off) * dg
        return out

    def _u_mean(self, Mw: np.ndarray, gbar: np.ndarray, eta: float) -> np.ndarray:
        """E u per worker, (m, d) or (d,): u = η(κ_g g + κ_b b) + e, the compressor's input."""
        kg, kb = self.rule.kappa
        bi, ei = self.rule.index("b"), self.rule.index("e")
        return eta * (kg * gbar + (kb * Mw[:, bi] if bi is not None else 0.0)) + (
            Mw[:, ei] if ei is not None else 0.0)

    def _noise(self, co: dict, Sig: np.ndarray, Snu: np.ndarray | None) -> np.ndarray:
        sl = self.rule.slots
        s, D = self.s, self.D
        nm, B = Sig.shape[0], Sig.shape[1]
        if Snu is not None:
            nm = max(nm, Snu.shape[0])
        N = np.zeros((nm, B, s, D, s, D))
        be = co["be"]
        for a, ca in be.items():
            for b_, cb in be.items():
                N[:, :, sl.index(a), :, sl.index(b_), :] += ca * cb * Sig
        if Snu is not None:
            bn = co["bn"]
            for a, ca in bn.items():
                for b_, cb in bn.items():
                    N[:, :, sl.index(a), :, sl.index(b_), :] += ca * cb * Snu
        return N.reshape(nm, B, s * D, s * D)

    def _apply_local(self, A: np.ndarray, N: np.ndarray) -> None:
        """C ← A C Aᵀ + N on every block (workers' transformed nodes; auxiliaries keep I)."""
        S, B = self.S, self.B
        for pk in self.packs:
            G, b = len(pk.idx), pk.b
            if not pk.worker.any():
                continue
            if b == 1 and self.modal:  # stacked single modes: C ← A C Aᵀ for all at once
                A0 = A[0]  # (B, S, S)
                X = np.matmul(np.matmul(A0[None], pk.C), A0.transpose(0, 2, 1)[None])
                if not pk.worker.all():
                    X[~pk.worker[:, 0]] = pk.C[~pk.worker[:, 0]]
                X = X + (pk.Gw[:, 0, 0])[:, None, None, None] * N[0][None]
                pk.C = 0.5 * (X + X.transpose(0, 1, 3, 2))
                continue
            At = self._node_jacobians(pk, A)  # (G, B, b, S, S)
            # rows then columns: node t's block of C is multiplied by A_t (two batched matmuls)
            Cg = np.matmul(At, pk.C.reshape(G, B, b, S, b * S))
            Cg = np.matmul(Cg.reshape(G, B, b * S, b, S).transpose(0, 1, 3, 2, 4),
                           At.swapaxes(-1, -2))  # (G, B, b_u, b·S, S)
            Cg = Cg.transpose(0, 1, 3, 2, 4).reshape(G, B, b * S, b * S)
            if self.modal:
                Cg = Cg + self._modal_noise(pk, N)
            else:
                Cv = Cg.reshape(G, B, b, S, b, S)
                Nw = N if N.shape[0] == self.m else np.broadcast_to(N, (self.m, *N.shape[1:]))
                for i in range(self.m):
                    Cv[0, :, i, :, i, :] += Nw[i]
                Cg = Cv.reshape(G, B, b * S, b * S)
            pk.C = 0.5 * (Cg + Cg.transpose(0, 1, 3, 2))

    def _node_jacobians(self, pk: _Pack, A: np.ndarray) -> np.ndarray:
        """The step's Jacobian of every transformed node of a pack, (G, B, b, S, S): A_t for a
        worker's node (modal: the shared A), I for an auxiliary one; kept while A is the same
        array (the law re-expands every few steps)."""
        hit = pk._At
        if hit is not None and hit[0] is A:
            return hit[1]
        S, B = self.S, self.B
        G, b = len(pk.idx), pk.b
        if self.modal:
            At = np.broadcast_to(A[0], (G, b, B, S, S)).copy()
        else:
            Aw = A if A.shape[0] == self.m else np.broadcast_to(A[0], (self.m, B, S, S))
            At = np.concatenate([Aw, np.broadcast_to(np.eye(S), (b - self.m, B, S, S))],
                                0)[None] if b > self.m else np.array(Aw)[None]
        At[~pk.worker] = np.eye(S)
        At = np.ascontiguousarray(At.transpose(0, 2, 1, 3, 4))
        pk._At = (A, At)
        return At

    def _modal_noise(self, pk: _Pack, N: np.ndarray) -> np.ndarray:
        """Σ_i V_it V_iu N (the workers' i.i.d. noise in the modes t, u): (G, B, b·S, b·S),
        kept while N is the same array."""
        hit = pk._Nt
        if hit is not None and hit[0] is N:
            return hit[1]
        G, b, S, B = len(pk.idx), pk.b, self.S, self.B
        add = np.einsum("gtu,kab->gktaub", pk.Gw, N[0]).reshape(G, B, b * S, b * S)
        pk._Nt = (N, add)
        return add

    # ---- mixing ------------------------------------------------------------------------------
    def _tw(self, W: Any) -> list[np.ndarray]:
        """W̃ = VᵀWV restricted to each pack's blocks: (G, b, b) per pack (cached)."""
        key = id(W)
        hit = self._mixes.get(key)
        if hit is not None and hit[0] is W:
            return hit[1]
        Wm = np.asarray(W.matrix, dtype=np.float64)
        V = self.st.V
        Wt = V.T @ Wm @ V
        off = Wt.copy()
        for _, _, members in self.st.groups:
            for blk in members:
                off[np.ix_(blk, blk)] = 0.0
        if np.abs(off).max(initial=0.0) > 1e-9:
            raise ValueError("a mixing matrix of the schedule is not block-diagonal in the "
                             "structure's basis (adaptive schedule with a new W?)")
        out = [np.stack([Wt[np.ix_(r, r)] for r in pk.reps]) for pk in self.packs]
        self._mixes[key] = (W, out)
        return out

    def mix(self, W: Any) -> None:
        tws = self._tw(W)
        D, s, B, S = self.D, self.s, self.B, self.S
        for pk, Wt in zip(self.packs, tws, strict=True):
            G, b = len(pk.idx), pk.b
            if b == 1 and s == 1:  # a scaling per mode
                lam = Wt[:, 0, 0]
                pk.C = pk.C * (lam**2)[:, None, None, None]
                continue
            Cv = pk.C.reshape(G, B, b, s, D, b, s, D)
            Cv[:, :, :, 0] = np.einsum("gut,gkuaxyz->gktaxyz", Wt, Cv[:, :, :, 0])
            Cv[:, :, :, :, :, :, 0] = np.einsum("gut,gkxyzua->gkxyzta", Wt,
                                                Cv[:, :, :, :, :, :, 0])
            pk.C = Cv.reshape(G, B, b * S, b * S)
        self.M[:, 0, :] = np.asarray(W.matrix, dtype=np.float64).T @ self.M[:, 0, :]

    # ---- what the records need ---------------------------------------------------------------
    def observe(self) -> tuple[np.ndarray, np.ndarray]:
        """(E u (d,), Cov(u) in the law's representation)."""
        return self.M[:, 0, :].mean(0), self.cov_u()


class _EigenEngine(_Engine):
    """:class:`_Engine` for a local model with one Jacobian for every worker and modal
    structure: the coordinates of every block are held in the eigenbasis Q of the current
    Jacobian H = Q diag(λ) Qᵀ. The local step's slot map is then one s × s matrix per coordinate,
    Â_a = Σ c^H_στ λ_a E_στ + c^I_στ E_στ, and C ← A C Aᵀ + N acts on the s × s sub-blocks of
    every coordinate pair (a, c): C̃_ac ← Â_a C̃_ac Â_cᵀ + Ñ_ac — with one slot (plain SGD) the
    elementwise C̃ ← (aaᵀ) ⊙ C̃ + Ñ, a = 1 − ηλ — instead of products of sd × sd matrices.
    An auxiliary node keeps Â = I. A compressor's noise (:class:`CompressionLaw`) needs the
    diagonal of E[uuᵀ] in the original coordinates: two d³ products per step.

    The basis changes only when the law re-expands (H is a new array): C and its window are
    rotated once. The node means stay in the original coordinates. The marginals the law reads
    are rotated back; :meth:`observe` returns Cov(u) in the basis, which :func:`propagate`
    passes to ``law.observe`` with ``basis``. Equal to :class:`_Engine` up to rounding
    (tested)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)  # self.basis: Q (d × d) once set; None: identity
        self._Hsrc: Any = None
        self._lam: np.ndarray | None = None
        self._Ssrc: Any = None
        self._Sb: np.ndarray | None = None
        self._al: Any = None  # (η, per-pack step maps)
        self._N: Any = None  # (η, the gradient noise on the slots) while it is fixed
        self._fw: Any = None  # weights of the linear functionals (:meth:`_functionals`)

    @staticmethod
    def applies(law: Any, rule: StepRule, st: Structure, sep: bool) -> bool:
        return bool(getattr(law, "rotatable", False)) and st.name == "modal" and not sep

    # ---- bases -------------------------------------------------------------------------------
    def _to_original(self, X: np.ndarray) -> np.ndarray:
        """(…, D, D) in the basis → the original coordinates: Q X Qᵀ."""
        Q = self.basis
        return X if Q is None else np.matmul(np.matmul(Q, X), Q.T)

    def _rotate_blocks(self, R: np.ndarray) -> None:
        """C ← (I ⊗ R)ᵀ C (I ⊗ R) on every pack (and its window): coordinates t ↦ Rᵀ t."""
        D, s = self.D, self.s
        for pk in self.packs:
            G, bs = len(pk.idx), pk.b * s  # (node, slot) pairs
            for name in ("C", "win"):
                X = getattr(pk, name).reshape(G, bs, D, bs, D)
                X = np.matmul(np.matmul(X, R).transpose(0, 1, 3, 4, 2), R)  # (g, t, u, d, c)
                X = X.transpose(0, 1, 4, 2, 3)
                setattr(pk, name, np.ascontiguousarray(X).reshape(G, 1, bs * D, bs * D))
            pk._Nt = None

    def set_basis(self, Qn: np.ndarray | None) -> None:
        """Hold the blocks in the basis Qn (None: the original coordinates)."""
        Q = self.basis
        if Qn is None and Q is None:
            return
        R = Qn if Q is None else (Q.T if Qn is None else Q.T @ Qn)
        self._rotate_blocks(R)
        self.basis = Qn

    def as_generic(self) -> _Engine:
        """This engine as a plain :class:`_Engine` in the original coordinates (in place)."""
        self.set_basis(None)
        self.__class__ = _Engine  # type: ignore[assignment]
        self._ck = None
        return self

    # ---- linear functionals of the blocks (one weighted sum per pack) -------------------------
    def _functionals(self) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """Per pack: the weights whose inner product with the blocks gives Σ_r tr Cov(x_r) −
        n tr Cov(u) (w_g δ_tu − w_g o_t o_u / n on the x slot's coordinate diagonal), and the
        weights w_g o_t o_u / n² of Cov(u) = Σ_g Σ_tu (w_g o_t o_u / n²) C_g[t x, u x]
        ((G,) for single modes)."""
        if self._fw is None:
            D, n, s = self.D, self.n, self.s
            exx = np.zeros((s, s))
            exx[0, 0] = 1.0
            out = []
            for pk in self.packs:
                G, b = len(pk.idx), pk.b
                node = pk.w[:, None, None] * (np.eye(b)[None] - pk.o[:, :, None]
                                              * pk.o[:, None, :] / n)  # (G, b, b)
                wc = np.einsum("gtu,pq,ac->gtpauqc", node, exx, np.eye(D))
                wu = None
                if pk.has_u:
                    wu = pk.w[:, None, None] * pk.o[:, :, None] * pk.o[:, None, :] / n**2
                    wu = wu[:, 0, 0] if b == 1 else wu
                out.append((np.ascontiguousarray(wc).reshape(G, 1, b * s * D, b * s * D), wu))
            self._fw = out
        return self._fw

    def consensus(self, u: np.ndarray, Cu: np.ndarray) -> float:
        dM = self.M[:, 0, :] - u
        tot = float(np.vdot(dM, dM))
        for pk, (wc, _) in zip(self.packs, self._functionals(), strict=True):
            tot += float(np.vdot(wc, pk.C))
        return tot

    def cov_u(self) -> np.ndarray:
        D, s = self.D, self.s
        out = np.zeros((D, D))
        for pk, (_, wu) in zip(self.packs, self._functionals(), strict=True):
            if wu is None:
                continue
            G, b = len(pk.idx), pk.b
            if b == 1 and s == 1:
                out += (wu @ pk.C.reshape(G, -1)).reshape(D, D)
            else:
                Cx = pk.C.reshape(G, b, s, D, b, s, D)[:, :, 0, :, :, 0, :]
                out += np.einsum("gtu,gtaub->ab", wu.reshape(G, b, b), Cx)
        return out[None]

    def observe(self) -> tuple[np.ndarray, np.ndarray]:
        return self.M[:, 0, :].sum(0) * (1.0 / self.n), self.cov_u()

    def _marg_of(self, Cs: list[np.ndarray]) -> np.ndarray:
        """Single-mode packs: the workers' average marginal Σ_g w_g Gw_g C_g / m as one
        weighted sum; otherwise :meth:`_Engine._marg_of`."""
        if any(pk.b != 1 for pk in self.packs):
            return super()._marg_of(Cs)
        S = self.S
        acc = np.zeros(S * S)
        for pk, Cp in zip(self.packs, Cs, strict=True):
            acc += (pk.w * pk.Gw[:, 0, 0]) @ Cp.reshape(len(pk.idx), -1)
        return (acc / self.m).reshape(1, 1, S, S)

    def mix(self, W: Any) -> None:
        """Single modes with several slots: the x rows and columns of mode g scaled by its
        eigenvalue λ_g (the other slots stay); otherwise :meth:`_Engine.mix`."""
        if self.s == 1 or any(pk.b != 1 for pk in self.packs):
            return super().mix(W)
        D, s = self.D, self.s
        for pk, Wt in zip(self.packs, self._tw(W), strict=True):
            lam = Wt[:, 0, 0]
            C5 = pk.C.reshape(len(pk.idx), s, D, s, D)
            C5[:, 0] *= lam[:, None, None, None]
            C5[:, :, :, 0] *= lam[:, None, None, None]
        self.M[:, 0, :] = np.asarray(W.matrix, dtype=np.float64).T @ self.M[:, 0, :]

    # ---- the local step ----------------------------------------------------------------------
    def _slot_maps(self, co: dict, lam: np.ndarray) -> np.ndarray:
        """Â_a for every coordinate a of the basis: (D, s, s)."""
        sl, s = self.rule.slots, self.s
        A = np.zeros((len(lam), s, s))
        for (a, b), c in co["AH"].items():
            A[:, sl.index(a), sl.index(b)] += c * lam
        for (a, b), c in co["AI"].items():
            A[:, sl.index(a), sl.index(b)] += c
        return A

    def _step_maps(self, eta: float) -> list[Any]:
        """Per pack, the local step on the blocks: one slot — the elementwise factor aaᵀ
        (G, 1, bD, bD); several — each node's slot maps (G, b, D, s, s) (I for an auxiliary
        node). Cached per (η, re-expansion)."""
        al = self._al
        if al is not None and al[0] == eta:
            return al[1]
        D, s = self.D, self.s
        Ahat = self._slot_maps(self._coef(eta), self._lam)  # (D, s, s)
        per = []
        for pk in self.packs:
            G, b = len(pk.idx), pk.b
            if s == 1:
                an = np.where(pk.worker[:, :, None], Ahat[None, None, :, 0, 0], 1.0)
                an = an.reshape(G, 1, b * D)
                per.append(an[:, :, :, None] * an[:, :, None, :])
            else:
                At = np.broadcast_to(Ahat, (G, b, D, s, s)).copy()
                At[~pk.worker] = np.eye(s)
                per.append(At)
        self._al = (eta, per)
        return per

    def _compression_noise_basis(self, co: dict, Sb: np.ndarray, Mw: np.ndarray,
                                 gbar: np.ndarray, eta: float) -> np.ndarray:
        """Cov(C(u) − qu) in the basis, (1, 1, D, D): (r_off − q²) E[uuᵀ] + (r_diag − r_off)
        diag(E[uuᵀ]) (the diagonal taken in the original coordinates), E[uuᵀ] = Û marg Ûᵀ +
        η_u² Σ/b + the workers' average of ū ūᵀ, with Û_a = Σ c^H_σ λ_a + c^I_σ per slot."""
        comp, rule, D, s = self.rule.comp, self.rule, self.D, self.s
        sl, lam, Q = rule.slots, self._lam, self.basis
        U = np.zeros((D, s))
        for t, c in co["UH"].items():
            U[:, sl.index(t)] += c * lam
        for t, c in co["UI"].items():
            U[:, sl.index(t)] += c
        marg = self.worker_marginals()[0, 0].reshape(s, D, s, D)
        Euu = co["u_eps"] ** 2 * Sb
        for p_ in range(s):
            for q_ in range(s):
                Euu = Euu + np.multiply.outer(U[:, p_], U[:, q_]) * marg[p_, :, q_, :]
        ubt = np.broadcast_to(self._u_mean(Mw, gbar, eta), (self.m, D)) @ Q
        Euu = Euu + ubt.T @ ubt / self.m
        v = np.einsum("ab,ab->a", Q @ Euu, Q)  # diag(Q Ẽuu Qᵀ)
        out = (comp.r_off - comp.q**2) * Euu + (comp.r_diag - comp.r_off) * ((Q.T * v) @ Q)
        return out[None, None]

    def local(self, eta: float, k: int) -> None:
        law, m, D, s = self.law, self.m, self.D, self.s

        def cov(window: bool = False) -> np.ndarray:
            X = self.window_marginals() if window else self.worker_marginals()
            return self._to_original(X[:, :, :D, :D])

        mu = self.M[:m, 0, :]
        gbar, H, Sig = law.moments(mu, cov, False, self.b, k)
        if H is not self._Hsrc:  # re-expanded: the eigenbasis of the new Jacobian
            lam, Qn = np.linalg.eigh(H[0, 0])
            self.set_basis(Qn)
            self._Hsrc, self._lam, self._Ssrc, self._al = H, lam, None, None
        Q = self.basis
        co = self._coef(eta)
        if Sig is not self._Ssrc:
            self._Ssrc = Sig
            self._Sb = np.matmul(np.matmul(Q.T, Sig[0]), Q)[None]  # (1, 1, D, D)
            self._N = None
        maps = self._step_maps(eta)
        if self._N is None or self._N[0] != eta:  # the gradient noise on the slots
            self._N = (eta, self._noise(co, self._Sb, None))
        N = self._N[1]
        if self.rule.comp is not None:  # + the compression noise on its slots
            Snu = self._compression_noise_basis(co, self._Sb[0, 0], self.M[:m], gbar, eta)
            N = N.reshape(s, D, s, D).copy()
            sl = self.rule.slots
            for a_, ca in co["bn"].items():
                for b_, cb in co["bn"].items():
                    N[sl.index(a_), :, sl.index(b_), :] += ca * cb * Snu[0, 0]
            N = N.reshape(1, 1, s * D, s * D)
        if s == 1 and self.rule.comp is None:
            self.M[:m, 0] -= eta * gbar  # x' = x − η E g (the only slot)
        else:
            self.M[:m] = self._mean_step(self.M[:m], gbar, eta)
        for pk, step in zip(self.packs, maps, strict=True):
            if not pk.worker.any():
                continue
            if s == 1:
                np.multiply(pk.C, step, out=pk.C)
            else:  # C̃_tu[a, c] ← Â_ta C̃_tu[a, c] Â_ucᵀ on the s × s sub-blocks
                G, b = len(pk.idx), pk.b
                C7 = _slot_products(step, pk.C.reshape(G, b, s, D, b, s, D))
                pk.C = C7.reshape(G, 1, b * s * D, b * s * D)
            if pk.b == 1:  # single modes: Σ_i V_it² N = N for a worker's mode
                pk.C += pk.Gw[:, 0, 0, None, None, None] * N[0]
            else:
                pk.C += self._modal_noise(pk, N)
        if getattr(law, "windowed", False):
            for pk in self.packs:
                pk.win += pk.C
            self.win_n += 1


def _slot_products(step: np.ndarray, C7: np.ndarray) -> np.ndarray:
    """Â C Âᵀ on the slots of every (node, coordinate) pair: step (G, b, D, s, s) holds Â of
    node t at coordinate a, C7 (G, b, s, D, b, s, D) the blocks ordered (node, slot,
    coordinate); s² broadcast products per side (s ≤ 3: x, momentum, memory)."""
    s = step.shape[-1]
    Y = np.empty_like(C7)
    for p in range(s):  # rows: Y[t, p, a] = Σ_σ Â_ta[p, σ] C[t, σ, a]
        acc = step[:, :, :, p, 0][:, :, :, None, None, None] * C7[:, :, 0]
        for q in range(1, s):
            acc += step[:, :, :, p, q][:, :, :, None, None, None] * C7[:, :, q]
        Y[:, :, p] = acc
    Z = np.empty_like(C7)
    for q in range(s):  # columns: Z[u, q, c] = Σ_r Â_uc[q, r] Y[u, r, c]
        acc = step[:, None, None, None, :, :, q, 0] * Y[:, :, :, :, :, 0]
        for r in range(1, s):
            acc += step[:, None, None, None, :, :, q, r] * Y[:, :, :, :, :, r]
        Z[:, :, :, :, :, q] = acc
    return Z


def _lr_value(sched: Any, k: int) -> float:
    eta = sched(k)
    if not (isinstance(eta, (int, float)) and math.isfinite(eta) and eta > 0):
        raise ValueError(f"lr must be finite and > 0 at every step; lr({k}) = {eta!r}")
    return float(eta)


def propagate(law: Any, config: Any, lr: Any, T: int, *, batch_size: int = 1,
              record_every: int = 1, structure: str = "auto", threads: int | None = 1,
              divergence: float = math.inf) -> MomentRun:
    """Propagate the moments of ``config`` on ``law`` for T steps (see the module docstring).

    law: an object of :mod:`empirics.laws` (``d``, ``m``, ``x0``, ``moments``, ``observe``,
    ``shared_jacobian``, ``uniform_noise``, ``separable``). config: a
    :class:`~empirics.configs.Config` (static schedule; an adaptive one is driven by the
    predicted E F(u)). lr: number or schedule. structure: ``"auto"`` (modal where valid, else
    dense; separable where the law allows), ``"dense"``, ``"modal"``. threads: BLAS threads
    while propagating (None: leave as is). divergence: a blow-up factor D —
    :class:`Diverged` once E‖∇F(u_k)‖² exceeds D·max(‖∇F(u_0)‖², 1) (:func:`empirics.predict`
    passes the spec's, the runs' divergence rule in expectation; the default ``inf`` counts
    only NaN/inf and overflow: a transient growth of the expectation is not a divergence)."""
    with blas_threads(threads), np.errstate(over="ignore", invalid="ignore"):
        return _propagate(law, config, lr, T, batch_size, record_every, structure,
                          float(divergence))


#: a local model (an approximate law) whose predicted E‖∇F(u_k)‖² rises above its start and
#: LOCAL_JUMP times its smallest value so far has left its regime (a linearisation blown up
#: along a negative curvature, an expansion point far from the iterates): :class:`Diverged` is
#: raised rather than reporting a number the model no longer supports
LOCAL_JUMP = 100.0


class Diverged(ValueError):
    """The predicted moments blow up (the expected error diverges)."""


def _blowup(k: int, g2: float, cons: float, g2_0: float, g2_min: float, divergence: float,
            local: bool) -> None:
    """:class:`Diverged` when step k's E‖∇F(u_k)‖² = g2 (first g2_0, smallest so far g2_min)
    breaks a rule: a local model's jump (above g2_0 and :data:`LOCAL_JUMP`·g2_min); the
    divergence rule, g2 > divergence·max(g2_0, 1); NaN/inf or overflow of g2 or the consensus."""
    if local and g2 > LOCAL_JUMP * g2_min and g2 > g2_0:
        raise Diverged(f"the predicted E‖∇F(u_k)‖² jumps to {g2:.3g} at step {k}, above its "
                       f"start ({g2_0:.3g}) and {g2 / g2_min:.3g}× its smallest value so far: "
                       f"the local model has left its regime")
    limit = min(divergence * max(g2_0, 1.0), 1e300) if math.isfinite(g2_0) else 1e300
    if not (math.isfinite(g2) and g2 <= limit and math.isfinite(cons)):
        by_rule = limit < 1e300 and math.isfinite(g2) and math.isfinite(cons)
        rule = f" > {divergence:.3g}·max(‖∇F(u_0)‖², 1)" if by_rule else ""
        raise Diverged(f"the predicted moments diverge at step {k} (E‖∇F(u_k)‖² = {g2:.3g}"
                       f"{rule}): the expected error grows without bound")


def _propagate(law: Any, config: Any, lr: Any, T: int, batch_size: int, record_every: int,
               structure: str, divergence: float = math.inf) -> MomentRun:
    from theory.stepsizes import as_lr

    if config.m != law.m:
        raise ValueError(f"the law has m = {law.m} workers but the configuration m = {config.m}")
    T = int(T)
    sched = as_lr(lr)
    d = law.d
    rule = rule_of(config, d)
    # structure: modal needs one Jacobian for all workers and a noise that enters every mode
    # alike: additive and identical, or state-dependent with identical workers whose marginals
    # the mixing keeps equal (an approximate law may average the workers' noise instead)
    if structure not in ("auto", "dense", "modal"):
        raise ValueError(f"structure must be 'auto', 'dense' or 'modal' (got {structure!r})")
    approx = bool(getattr(law, "approximate", False))
    st = structure_for(config.schedule, config.m, T,
                       modal=structure != "dense" and (bool(law.shared_jacobian) or approx))
    if st.name == "modal" and not law.uniform_noise(rule) and not approx and not (
            law.identical_workers and uniform_marginals(st)):
        st = structure_for(config.schedule, config.m, T, modal=False)
    if structure == "modal" and st.name != "modal":
        raise ValueError("structure='modal' needs one Jacobian for every worker, a noise law "
                         "that is the same for every worker, and a basis that separates the "
                         "auxiliary nodes")
    sep = bool(law.separable(rule))
    law.prepare(sep, T)
    Eng = _EigenEngine if EIGEN and _EigenEngine.applies(law, rule, st, sep) else _Engine
    eng = Eng(law, rule, st, law.x0_basis(), sep, batch_size)

    rec: dict[str, list[float]] = {k: [] for k in (
        "suboptimality", "grad_norm2", "grad_norm2_running", "consensus", "consensus_running",
        "dist2_u", "dist2_workers", "memory_norm2_workers", "memory_norm2")}
    steps: list[int] = []
    rounds: list[int] = []
    mean_u: list[np.ndarray] = []
    gsum = csum = 0.0
    n_rounds = 0
    s_rec = int(record_every)
    last_F = [math.nan]
    g2_0 = g2_min = math.inf  # the first and the smallest E‖∇F(u_k)‖² (:func:`_blowup`)
    adaptive = bool(getattr(config.schedule, "adaptive", False))

    def obs(k: int, record: bool) -> None:
        nonlocal gsum, csum, g2_0, g2_min
        u, Cu = eng.observe()
        F, g2 = law.observe(u, Cu, k, need_F=record or adaptive, **eng.basis_kw())
        last_F[0] = F
        Mx = eng.M[:, 0, :]
        cons = eng.consensus(u, Cu)
        if record:
            steps.append(k)
            rounds.append(n_rounds)
            rec["suboptimality"].append(F)
            rec["grad_norm2"].append(g2)
            rec["grad_norm2_running"].append(gsum / k if k else math.nan)
            rec["consensus"].append(cons)
            rec["consensus_running"].append(csum / k if k else math.nan)
            xs = law.x_star_basis()
            rec["dist2_u"].append(float(((u - xs) ** 2).sum()) + float(np.einsum("kaa->", Cu)))
            dw = float(((Mx[: eng.m] - xs) ** 2).sum()) + eng._trace_slot(0, all_nodes=False)
            rec["dist2_workers"].append(dw / eng.m)
            if eng.ei is not None:
                me = eng.M[: eng.m, eng.ei, :]
                tr_e = eng._trace_slot(eng.ei, all_nodes=False)
                rec["memory_norm2_workers"].append((float((me**2).sum()) + tr_e) / eng.m)
                rec["memory_norm2"].append(float((me.mean(0) ** 2).sum()) + _cov_mean_e(eng))
            else:
                rec["memory_norm2_workers"].append(0.0)
                rec["memory_norm2"].append(0.0)
            mean_u.append(law.to_original(u))
        if math.isfinite(g2):
            g2_0 = g2 if k == 0 else g2_0
            g2_min = min(g2_min, g2)
        _blowup(k, g2, cons, g2_0, g2_min, divergence, approx)
        if k < T:
            gsum += g2
            csum += cons

    def loss_fn() -> float:
        return last_F[0] + law.F_star

    it = config.schedule.rounds(T, loss=loss_fn if adaptive else None)
    for rnd in it:
        for k in range(rnd.start, rnd.end):
            obs(k, k % s_rec == 0)
            eng.local(_lr_value(sched, k), k)
        if rnd.W is not None and not rnd.W.is_identity:
            eng.mix(rnd.W)
            n_rounds += 1
        if adaptive:
            u, Cu = eng.observe()
            last_F[0], _g = law.observe(u, Cu, rnd.end, **eng.basis_kw())
    obs(T, True)
    info = {"structure": st.name, "separable": sep, "blocks": [len(r) for r, _, _ in st.groups],
            "multiplicities": [w for _, w, _ in st.groups], "slots": rule.slots,
            "compression": None if rule.comp is None else rule.comp.name,
            "reexpansions": (getattr(law, "n_refresh", None), getattr(law, "n_observe", None))}
    return MomentRun(np.asarray(steps, dtype=np.int64), np.asarray(rounds, dtype=np.int64),
                     {k: np.asarray(v, dtype=float) for k, v in rec.items()},
                     np.asarray(mean_u), f"{st.name}{' separable' if sep else ''}", info,
                     state=eng)


def _cov_mean_e(eng: _Engine) -> float:
    """tr Cov((1/m) Σ_i e_i): the memory slot of the workers' mean direction."""
    ei = eng.ei
    m, B, D, s = eng.m, eng.B, eng.D, eng.s
    tot = 0.0
    for g, (rep, w, _) in enumerate(eng.st.groups):
        b = len(rep)
        o = eng.st.V[:m, rep].sum(0)  # 1_mᵀ V_t over the workers
        if np.all(np.abs(o) < 1e-15):
            continue
        Ce = eng.C[g].reshape(B, b, s, D, b, s, D)[:, :, ei, :, :, ei, :]
        tot += w * float(np.einsum("t,u,ktaua->", o, o, Ce))
    return tot / m**2


# ---------------------------------------------------------------------------------------------
# the stationary floor (constant step size, periodic schedule)
# ---------------------------------------------------------------------------------------------
def _metrics(eng: _Engine, k: int, need_F: bool) -> dict[str, float]:
    """The per-step predicted quantities at the engine's current state."""
    law = eng.law
    u, Cu = eng.observe()
    F, g2 = law.observe(u, Cu, k, need_F=need_F, **eng.basis_kw())
    cons = eng.consensus(u, Cu)
    out = {"suboptimality": F, "grad_norm2": g2, "consensus": cons}
    if eng.ei is not None:
        me = eng.M[: eng.m, eng.ei, :]
        out["memory_norm2_workers"] = (float((me**2).sum())
                                       + eng._trace_slot(eng.ei, all_nodes=False)) / eng.m
    return out


def _node_transition(eng: _Engine, A: np.ndarray, W: Any, tau: int, basis: bool
                     ) -> list[np.ndarray]:
    """The linear part of one round (τ local steps with Jacobian blocks A, then W), per group
    in the structure's basis (``basis``) or for the node-space means (one matrix):
    list of (B, N, N)."""
    S = eng.s * eng.D
    B = eng.B
    st = eng.st
    Wm = np.asarray(W.matrix, dtype=np.float64)
    if basis:
        tw = st.mixes.get(id(W))
        if tw is None:
            Wt = st.V.T @ Wm @ st.V
            tw = [Wt[np.ix_(rep, rep)] for rep, _, _ in st.groups]
        parts = [(rep, tw[g], st.kind[rep] == "w") for g, (rep, _, _) in enumerate(st.groups)]
        shared = True
    else:
        parts = [(np.arange(eng.n), Wm, np.arange(eng.n) < eng.m)]
        shared = A.shape[0] == 1
    out = []
    for rep, Wt, isw in parts:
        b = len(rep)
        blk = np.zeros((B, b, S, b, S))
        for t in range(b):
            if isw[t]:
                blk[:, t, :, t, :] = A[0] if shared else A[rep[t]]
            else:  # an auxiliary node keeps its x slot; its other slots stay zero (exactly)
                blk[:, t, : eng.D, t, : eng.D] = np.eye(eng.D)
        blk = blk.reshape(B, b * S, b * S)
        step = np.linalg.matrix_power(blk, tau) if B == 1 else np.stack(
            [np.linalg.matrix_power(x, tau) for x in blk])
        mix = np.zeros((b, eng.s, eng.D, b, eng.s, eng.D))
        for sl in range(eng.s):
            for a in range(eng.D):
                if sl == 0:
                    mix[:, 0, a, :, 0, a] = Wt.T
                else:
                    mix[np.arange(b), sl, a, np.arange(b), sl, a] = 1.0
        mix = mix.reshape(b * S, b * S)
        out.append(mix @ step)
    return out


def stationary(run: MomentRun, config: Any, lr: Any, batch_size: int, *, max_iter: int = 60,
               tol: float = 1e-10, max_mean_size: int = 4000
               ) -> tuple[dict[str, float] | None, str]:
    """The stationary floor of every predicted quantity at a constant step size on a periodic
    schedule: the time average over one period of the stationary cycle.

    Starting from the end of ``run``, each iteration propagates one round (τ local steps and
    the mixing) and then jumps to the fixed point of that round's linearisation: the
    covariance of every block solves the discrete Lyapunov (Stein) equation
    X = Φ X Φᵀ + Q (scipy.linalg.solve_discrete_lyapunov; Φ the round's transition, Q what the
    round added, state-dependent noise included), the means take a Newton step
    M* = M₀ + (I − Φ)⁻¹(M₁ − M₀). Exact laws converge in one or a few iterations (state-dependent
    noise: a fixed-point iteration); local models re-expand at every round. Returns (floors by
    column, note) or (None, why)."""
    import copy

    from scipy.linalg import solve_discrete_lyapunov

    from theory.schedules import Periodic
    from theory.stepsizes import Constant, as_lr

    sched = as_lr(lr)
    if not isinstance(sched, Constant):
        return None, "no floor: the step size is not constant (η_t → 0 drives the error to 0)"
    if not isinstance(config.schedule, Periodic) or getattr(config.schedule, "adaptive", False):
        return None, "floor solved for a periodic schedule only (one W every τ steps)"
    eng = copy.deepcopy(run.state)
    if eng is None:
        return None, "no state to start from"
    if isinstance(eng, _EigenEngine):  # the round map below is built in original coordinates
        eng = eng.as_generic()
    eta, tau, W = float(sched.eta), int(config.schedule.tau), config.schedule.W
    mixes = W is not None and not W.is_identity
    k = int(run.steps[-1])
    nS = eng.n * eng.s * eng.D
    newton = nS <= max_mean_size
    with blas_threads(1), np.errstate(over="ignore", invalid="ignore"):
        delta = math.inf
        for it in range(max_iter):
            C0 = [c.copy() for c in eng.C]
            M0 = eng.M.copy()
            for _ in range(tau):
                eng.local(eta, k)
                k += 1
            if mixes:
                eng.mix(W)
            A = eng._ck[2]
            Phis = _node_transition(eng, A, W if mixes else _Identity(eng.n), tau, basis=True)
            rho = 0.0
            newC = []
            for g, Phi in enumerate(Phis):
                Cg = np.empty_like(eng.C[g])
                for bb in range(eng.B):
                    ev = np.abs(np.linalg.eigvals(Phi[bb])).max() if Phi.shape[-1] else 0.0
                    rho = max(rho, float(ev))
                    if ev >= 1 - 1e-12:
                        return None, (f"no floor: the round map is not contracting (spectral "
                                      f"radius {ev:.6g})")
                    Q = eng.C[g][bb] - Phi[bb] @ C0[g][bb] @ Phi[bb].T
                    X = solve_discrete_lyapunov(Phi[bb], 0.5 * (Q + Q.T))
                    Cg[bb] = 0.5 * (X + X.T)
                newC.append(Cg)
            if eng.st.name == "modal":  # the means' round map has the blocks of the modes
                newM = _modal_newton(eng, Phis, M0, eng.M)
            elif newton:
                (PhiM,) = _node_transition(eng, A, W if mixes else _Identity(eng.n), tau,
                                           basis=False)
                vec0 = _mean_vec(eng, M0)
                vec1 = _mean_vec(eng, eng.M)
                I = np.eye(PhiM.shape[-1])
                step = np.stack([np.linalg.solve(I - PhiM[bb], vec1[bb] - vec0[bb])
                                 for bb in range(eng.B)])
                newM = _mean_from_vec(eng, vec0 + step)
            else:
                newM = eng.M.copy()
            scale = max(max(float(np.abs(c).max(initial=0.0)) for c in newC), 1e-300)
            delta = max(float(np.abs(c1 - c0).max(initial=0.0)) for c1, c0 in zip(newC, C0,
                                                                                    strict=True))
            mscale = max(float(np.abs(newM).max()), 1e-300)
            dm = float(np.abs(newM - M0).max()) / mscale
            eng.C, eng.M = newC, newM
            _reset(eng.law)
            if delta / scale < tol and dm < tol and it > 0:
                break
        else:
            if delta / scale > 1e-6:
                return None, (f"no floor: the fixed-point iteration did not converge in "
                              f"{max_iter} rounds (relative change {delta / scale:.2g})")
        # one stationary period, averaged (a local model re-expands at the fixed point first)
        _reset(eng.law)
        acc: dict[str, float] = {}
        for _ in range(tau):
            for key, v in _metrics(eng, k, True).items():
                acc[key] = acc.get(key, 0.0) + v / tau
            eng.local(eta, k)
            k += 1
        if mixes:
            eng.mix(W)
    acc["grad_norm2_running"] = acc["grad_norm2"]
    acc["consensus_running"] = acc["consensus"]
    note = (f"stationary cycle of period τ = {tau} at η = {eta:g}: Stein solve per block "
            f"(spectral radius of the round map {rho:.4g}), {it + 1} iteration(s), mean over "
            f"the period")
    return acc, note


def _reset(law: Any) -> None:
    """Forget a law's lazily refreshed quantities (after the state jumped)."""
    reset = getattr(law, "reset_window", None)
    if reset is not None:
        reset()


class _Identity:
    """W = I as a mixing matrix (a schedule that never mixes)."""

    def __init__(self, n: int):
        self.matrix = np.eye(n)
        self.is_identity = True


def _modal_newton(eng: _Engine, Phis: list[np.ndarray], M0: np.ndarray, M1: np.ndarray
                  ) -> np.ndarray:
    """Newton step of the node means towards the round map's fixed point in the modal basis:
    M̃ = VᵀM, and for every member block of group g, M̃* = M̃₀ + (I − Φ_g)⁻¹(M̃₁ − M̃₀) with the
    group's round transition Φ_g (the covariance's, same ordering (node, slot, coordinate));
    a few (b·s·D)² solves instead of one (n·s·d)² system."""
    V = eng.st.V
    T0 = np.einsum("rt,rsa->tsa", V, M0)
    T1 = np.einsum("rt,rsa->tsa", V, M1)
    out = T0.copy()
    for (_rep, _, members), Phi in zip(eng.st.groups, Phis, strict=True):
        Bn, N = Phi.shape[0], Phi.shape[-1]
        IminusPhi = np.eye(N)[None] - Phi
        for blk in members:
            b = len(blk)
            d0, d1 = T0[blk], T1[blk]  # (b, s, d)
            if eng.sep:  # per coordinate: (d, b·s)
                r = (d1 - d0).transpose(2, 0, 1).reshape(Bn, b * eng.s)
                x = np.linalg.solve(IminusPhi, r[..., None])[..., 0]
                out[blk] = d0 + x.reshape(Bn, b, eng.s).transpose(1, 2, 0)
            else:
                r = (d1 - d0).reshape(1, N)
                x = np.linalg.solve(IminusPhi, r[..., None])[..., 0]
                out[blk] = d0 + x.reshape(b, eng.s, eng.d)
    return np.einsum("rt,tsa->rsa", V, out)


def _mean_vec(eng: _Engine, M: np.ndarray) -> np.ndarray:
    """Node means (n, s, d) as (B, n·s·D) in the engine's layout."""
    if eng.sep:
        return M.transpose(2, 0, 1).reshape(eng.d, eng.n * eng.s)
    return M.reshape(1, -1)


def _mean_from_vec(eng: _Engine, v: np.ndarray) -> np.ndarray:
    if eng.sep:
        return v.reshape(eng.d, eng.n, eng.s).transpose(1, 2, 0).copy()
    return v.reshape(eng.n, eng.s, eng.d).copy()


def node_covariance_x(eng: _Engine) -> np.ndarray:
    """Cov of the x slots in node space, (B, n, D, n, D) (assembled from the blocks)."""
    if isinstance(eng, _EigenEngine) and eng.basis is not None:
        import copy

        eng = copy.deepcopy(eng).as_generic()
    n, B, s, D = eng.n, eng.B, eng.s, eng.D
    Cy = np.zeros((B, n, D, n, D))
    for g, (rep, _, members) in enumerate(eng.st.groups):
        b = len(rep)
        Cx = eng.C[g].reshape(B, b, s, D, b, s, D)[:, :, 0, :, :, 0, :]
        for blk in members:
            Cy[np.ix_(range(B), blk, range(D), blk, range(D))] = Cx
    V = eng.st.V
    return np.einsum("rt,ktaub,su->krasb", V, Cy, V, optimize=True)
