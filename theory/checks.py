"""Argument checks: one rule, one message, used by theory and empirics.

Every check returns the normalised value (``int``, ``float``, the chosen string) or raises with a
message that names the argument, states the rule and shows the value::

    >>> integer("tau", 4, lo=1)
    4
    >>> integer("tau", 4.0, lo=1)
    Traceback (most recent call last):
    ...
    theory.checks.ArgumentTypeError: tau must be an integer >= 1 (got 4.0)

The rules:

* **integers** are objects Python itself accepts as indices (``operator.index``: ``int``, numpy
  and sympy integers), never ``bool``. A float is refused even when it is integral (``4.0``): a
  count of steps, workers or rounds given as a float is usually a computed value that was meant to
  be rounded somewhere, and silently truncating it hides that.
* **reals** are anything ``float()`` accepts except ``bool``, and must be finite (NaN and ±inf are
  refused) unless the rule says otherwise.
* a **range** is written ``>= lo``, ``> lo``, ``<= hi``, ``< hi``, or as an interval ``[lo, hi)``
  when both ends are given.
* **choices** list the valid values and suggest the nearest one (``difflib``) on a near miss.

Errors are :class:`ArgumentError` (a ``ValueError``); a value of the wrong type (a float where an
integer is needed, a string where a number is) raises :class:`ArgumentTypeError`, which is both a
``ValueError`` and a ``TypeError`` so that callers catching either keep working.
"""

from __future__ import annotations

import difflib
import math
import operator
from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = [
    "ArgumentError", "ArgumentTypeError", "boolean", "describe_range", "finite", "in_range",
    "integer", "nonneg", "one_of", "positive", "probability", "real", "refuse",
]


class ArgumentError(ValueError):
    """A bad argument value; the message names the argument, the rule and the value."""


class ArgumentTypeError(ArgumentError, TypeError):
    """An argument of the wrong type (also a ``TypeError``)."""


def _num(x: float) -> str:
    """A bound as written in a rule: ``1``, ``0.5``, ``1e-06``."""
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return f"{x:g}" if isinstance(x, float) else str(x)


def describe_range(lo: float | None = None, hi: float | None = None, *,
                   lo_strict: bool = False, hi_strict: bool = False) -> str:
    """The range part of a rule: ``">= 1"``, ``"> 0"``, ``"in [0, 1)"`` or ``""`` (no bound)."""
    if lo is not None and hi is not None:
        return (f"in {'(' if lo_strict else '['}{_num(lo)}, {_num(hi)}"
                f"{')' if hi_strict else ']'}")
    if lo is not None:
        return f"{'>' if lo_strict else '>='} {_num(lo)}"
    if hi is not None:
        return f"{'<' if hi_strict else '<='} {_num(hi)}"
    return ""


def refuse(name: str, rule: str, x: Any, *, why: str | None = None, wrong_type: bool = False
           ) -> ArgumentError:
    """The error for a rule the small checks do not cover, in the same words: ``raise
    refuse("connected", "True, False or 'join'", x)`` gives ``connected must be True, False or
    'join' (got 'yes')``. ``wrong_type`` makes it an :class:`ArgumentTypeError`."""
    cls = ArgumentTypeError if wrong_type else ArgumentError
    return cls(f"{name} must be {rule} (got {x!r})" + (f": {why}" if why else ""))


def _inside(v: float, lo: float | None, hi: float | None, lo_strict: bool, hi_strict: bool
            ) -> bool:
    if lo is not None and (v <= lo if lo_strict else v < lo):
        return False
    return not (hi is not None and (v >= hi if hi_strict else v > hi))


def integer(name: str, x: Any, lo: int | None = None, hi: int | None = None, *,
            hi_strict: bool = False, why: str | None = None) -> int:
    """``x`` as an ``int``, checked ``lo <= x <= hi`` (``< hi`` with ``hi_strict``).

    Raises :class:`ArgumentTypeError` for a non-integer (bools and floats such as 4.0 included),
    :class:`ArgumentError` for an integer out of range; ``why`` is appended to the message."""
    rng = describe_range(lo, hi, hi_strict=hi_strict)
    rule = f"an integer {rng}" if rng else "an integer"
    if isinstance(x, bool):
        raise refuse(name, rule, x, why=why, wrong_type=True)
    try:
        v = operator.index(x)
    except TypeError:
        raise refuse(name, rule, x, why=why, wrong_type=True) from None
    if not _inside(v, lo, hi, False, hi_strict):
        raise refuse(name, rule, x, why=why)
    return v


def real(name: str, x: Any, lo: float | None = None, hi: float | None = None, *,
         lo_strict: bool = False, hi_strict: bool = False, allow_inf: bool = False,
         why: str | None = None) -> float:
    """``x`` as a finite ``float`` in the given range (``allow_inf`` admits ±inf where the range
    does)."""
    rng = describe_range(lo, hi, lo_strict=lo_strict, hi_strict=hi_strict)
    if lo is not None and hi is not None:
        rule = rng  # an interval with finite ends says "finite number" already
    elif allow_inf:
        rule = f"a number {rng}".rstrip()
    else:
        rule = f"a finite number {rng}".rstrip()
    if isinstance(x, bool):
        raise refuse(name, rule, x, why=why, wrong_type=True)
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise refuse(name, rule, x, why=why, wrong_type=True) from None
    if math.isnan(v) or (math.isinf(v) and not allow_inf):
        raise refuse(name, rule, x, why=why)
    if not _inside(v, lo, hi, lo_strict, hi_strict):
        raise refuse(name, rule, x, why=why)
    return v


def finite(name: str, x: Any, *, why: str | None = None) -> float:
    """``x`` as a finite float (any sign)."""
    return real(name, x, why=why)


def positive(name: str, x: Any, *, why: str | None = None) -> float:
    """``x`` as a finite float ``> 0``."""
    return real(name, x, 0, lo_strict=True, why=why)


def nonneg(name: str, x: Any, *, why: str | None = None) -> float:
    """``x`` as a finite float ``>= 0``."""
    return real(name, x, 0, why=why)


def in_range(name: str, x: Any, lo: float, hi: float, *, lo_strict: bool = False,
             hi_strict: bool = False, why: str | None = None) -> float:
    """``x`` as a float in the interval from ``lo`` to ``hi`` (closed unless strict)."""
    return real(name, x, lo, hi, lo_strict=lo_strict, hi_strict=hi_strict, why=why)


def probability(name: str, x: Any, *, why: str | None = None) -> float:
    """``x`` as a float in [0, 1]."""
    return real(name, x, 0, 1, why=why)


def boolean(name: str, x: Any, *, why: str | None = None) -> bool:
    """``x`` if it is ``True`` or ``False`` (numpy bools too); else :class:`ArgumentTypeError`."""
    if isinstance(x, bool | np.bool_):
        return bool(x)
    raise refuse(name, "True or False", x, why=why, wrong_type=True)


def one_of(name: str, x: Any, choices: Iterable[Any], *, why: str | None = None) -> Any:
    """``x`` if it is one of ``choices``; otherwise the message lists them and, for a string
    close to one of them, suggests it (``did you mean 'sdp'?``)."""
    opts = list(choices)
    try:
        ok = x in opts
    except TypeError:  # unhashable or incomparable x
        ok = False
    if ok:
        return x
    hint = ""
    if isinstance(x, str):
        names = [c for c in opts if isinstance(c, str)]
        near = difflib.get_close_matches(x, names, n=1, cutoff=0.6)
        if not near:  # case or separator slips: "Metropolis-Hastings" for "metropolis_hastings"
            key = x.lower().replace("-", "_").replace(" ", "_")
            near = [c for c in names if c.lower().replace("-", "_") == key]
        if near:
            hint = f"; did you mean {near[0]!r}?"
    msg = f"{name} must be one of {opts} (got {x!r}{hint})" + (f": {why}" if why else "")
    raise ArgumentError(msg)
