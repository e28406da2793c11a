"""Obligations: small functions that re-derive or check a formula the toolkit uses.

An obligation is registered with :func:`obligation`, naming the code it protects (the function or
constant is *imported from the code*, so changing the formula makes the obligation fail). It
returns :func:`proved` (a symbolic proof, possibly for stated finite sizes), :func:`checked`
(numerical agreement on N random or enumerated instances) or raises / returns :func:`failed`.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class ProofStatus(StrEnum):
    """Outcome of an obligation."""

    PROVED = "proved symbolically"
    CHECKED = "checked numerically"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Outcome:
    """What an obligation function returns: status, a one-line detail, and (for numerical
    checks) the number of instances checked."""

    status: ProofStatus
    detail: str
    instances: int | None = None


def proved(detail: str) -> Outcome:
    """A symbolic proof (sympy reduced the claim to an identity)."""
    return Outcome(ProofStatus.PROVED, detail)


def checked(n: int, detail: str) -> Outcome:
    """Agreement to tolerance on ``n`` numerical instances."""
    return Outcome(ProofStatus.CHECKED, detail, int(n))


def failed(detail: str) -> Outcome:
    return Outcome(ProofStatus.FAILED, detail)


class ObligationFailed(AssertionError):
    """Raised inside an obligation when a claim does not hold."""


def require(cond: Any, message: str) -> None:
    """``assert`` that survives ``python -O``: raise :class:`ObligationFailed` with ``message``."""
    if not bool(cond):
        raise ObligationFailed(message)


@dataclass(frozen=True)
class Result:
    """The result of running one obligation."""

    name: str
    topic: str
    protects: tuple[str, ...]
    status: ProofStatus
    detail: str
    instances: int | None
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status is not ProofStatus.FAILED


@dataclass(frozen=True)
class Obligation:
    name: str
    topic: str
    protects: tuple[str, ...]
    fn: Callable[[], Outcome]
    doc: str

    def run(self) -> Result:
        t0 = time.perf_counter()
        try:
            out = self.fn()
            if not isinstance(out, Outcome):
                out = failed(f"obligation returned {type(out).__name__}, not an Outcome")
        except Exception as e:  # a failing obligation reports, it does not crash the run
            frames = [f for f in traceback.extract_tb(e.__traceback__)
                      if not f.filename.endswith("core.py")]
            tb = frames[-1] if frames else traceback.extract_tb(e.__traceback__)[-1]
            out = failed(f"{type(e).__name__}: {e} (at {tb.name}:{tb.lineno})")
        return Result(self.name, self.topic, self.protects, out.status, out.detail,
                      out.instances, time.perf_counter() - t0)


#: name -> Obligation, filled by the topic modules at import
REGISTRY: dict[str, Obligation] = {}

TOPICS = ("cooperative", "spectra", "schedules", "local_pl", "memory", "compressors", "squarm",
          "predict")


def _qualname(obj: Any) -> str:
    if isinstance(obj, str):
        return obj
    mod = getattr(obj, "__module__", None)
    qn = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if mod and qn:
        return f"{mod}.{qn}"
    raise TypeError(f"protects must name code (a function, class or 'module.name'); got {obj!r}")


def obligation(*protects: Any) -> Callable[[Callable[[], Outcome]], Callable[[], Outcome]]:
    """Register the decorated function as an obligation protecting ``protects`` (objects imported
    from the code, or dotted names). Its topic is the last part of its module name."""
    if not protects:
        raise TypeError("an obligation must name at least one piece of code it protects")
    names = tuple(_qualname(p) for p in protects)

    def deco(fn: Callable[[], Outcome]) -> Callable[[], Outcome]:
        topic = fn.__module__.rsplit(".", 1)[-1]
        if fn.__name__ in REGISTRY and REGISTRY[fn.__name__].fn is not fn:
            raise ValueError(f"obligation {fn.__name__!r} is registered twice")
        REGISTRY[fn.__name__] = Obligation(fn.__name__, topic, names, fn,
                                           (fn.__doc__ or "").strip().split("\n")[0])
        return fn

    return deco


def load_all() -> dict[str, Obligation]:
    """Import every topic module (which registers its obligations) and return the registry."""
    import importlib

    for t in TOPICS:
        importlib.import_module(f"proofs.{t}")
    return REGISTRY


def run_all(names: Iterable[str] | None = None, topics: Iterable[str] | None = None
            ) -> list[Result]:
    """Run the selected obligations (default: all) and return their results."""
    reg = load_all()
    sel = list(reg.values())
    if names is not None:
        names = list(names)
        unknown = [n for n in names if n not in reg]
        if unknown:
            raise ValueError(f"unknown obligation(s) {unknown}; known: {sorted(reg)}")
        sel = [reg[n] for n in names]
    if topics is not None:
        topics = set(topics)
        if bad := topics - set(TOPICS):
            raise ValueError(f"unknown topic(s) {sorted(bad)}; known: {list(TOPICS)}")
        sel = [o for o in sel if o.topic in topics]
    return [o.run() for o in sel]


def format_table(results: list[Result], *, verbose: bool = False) -> str:
    """A plain-text table: obligation, status, what it protects, detail."""
    rows = [("obligation", "status", "protects", "detail")]
    for r in results:
        st = str(r.status) + (f" (N={r.instances})" if r.instances else "")
        prot = ", ".join(p.replace("theory.", "").replace("empirics.", "") for p in r.protects)
        det = r.detail if verbose or len(r.detail) <= 90 else r.detail[:87] + "..."
        rows.append((f"{r.topic}.{r.name}", st, prot, det))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [f"{a:<{w0}}  {b:<{w1}}  {c}\n{'':<{w0}}  {'':<{w1}}    {d}" for a, b, c, d in rows[1:]]
    head = f"{rows[0][0]:<{w0}}  {rows[0][1]:<{w1}}  {rows[0][2]} / {rows[0][3]}"
    n_fail = sum(not r.ok for r in results)
    foot = (f"{len(results)} obligations: "
            f"{sum(r.status is ProofStatus.PROVED for r in results)} proved, "
            f"{sum(r.status is ProofStatus.CHECKED for r in results)} checked, {n_fail} failed")
    return "\n".join([head, "-" * len(head), *lines, "-" * len(head), foot])


__all__ = [
    "REGISTRY", "TOPICS", "Obligation", "ObligationFailed", "Outcome", "ProofStatus", "Result",
    "checked", "failed", "format_table", "load_all", "obligation", "proved", "require", "run_all",
]
