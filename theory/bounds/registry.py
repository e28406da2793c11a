"""The one table of named bounds: name → factory, arguments, one-line description, aliases.

Each paper module of :mod:`theory.bounds` registers its bounds at import (``register(...)`` at
the bottom of the module); the CLI (``coopsgd bound NAME``), the experiment specs (``bound =
NAME``) and the run matching of ``empirics.match`` all read this table, so a new bound is one
factory and one ``register`` line in its paper's module.

Example:
    >>> from theory.bounds import registry
    >>> registry.resolve("local-sgd")
    'pasgd'
    >>> registry.build("pasgd").source.where
    'Corollary 2, eq. 24 (JMLR)'
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Entry", "build", "entries", "get", "names", "register", "resolve"]


@dataclass(frozen=True)
class Entry:
    """A named bound: ``factory(*args)`` builds it; ``from_run``: names of factory keyword
    arguments a run supplies (e.g. ``periods`` for a bound with variable periods)."""

    name: str
    factory: Callable[..., Any]
    args: tuple[Any, ...] = ()
    description: str = ""
    aliases: tuple[str, ...] = ()
    from_run: tuple[str, ...] = ()

    def build(self, **from_run: Any) -> Any:
        missing = [k for k in self.from_run if k not in from_run]
        if missing:
            raise ValueError(f"bound {self.name!r} is built from the run's {missing}")
        return self.factory(*self.args, **{k: from_run[k] for k in self.from_run})


_TABLE: dict[str, Entry] = {}
_ALIASES: dict[str, str] = {}


def _key(name: str) -> str:
    key = name.strip().lower().replace("_", "-")
    return key[: -len("-bound")] if key.endswith("-bound") else key


def register(name: str, factory: Callable[..., Any], *args: Any, description: str = "",
             aliases: tuple[str, ...] = (), from_run: tuple[str, ...] = ()) -> Entry:
    """Add a named bound (names and aliases are case- and ``_``/``-``-insensitive)."""
    key = _key(name)
    if key in _TABLE and _TABLE[key].factory is not factory:
        raise ValueError(f"bound name {name!r} is already registered")
    entry = Entry(key, factory, tuple(args), description, tuple(aliases), tuple(from_run))
    _TABLE[key] = entry
    for a in aliases:
        _ALIASES[_key(a)] = key
    return entry


def resolve(name: str) -> str:
    """The registered name for ``name`` (or one of its aliases); ValueError naming the closest
    one otherwise."""
    key = _key(str(name))
    key = _ALIASES.get(key, key)
    if key not in _TABLE:
        near = difflib.get_close_matches(key, [*_TABLE, *_ALIASES], n=1)
        hint = f"; did you mean {_ALIASES.get(near[0], near[0])!r}?" if near else ""
        raise ValueError(f"unknown bound {name!r}{hint}; valid bounds: {', '.join(_TABLE)}")
    return key


def get(name: str) -> Entry:
    return _TABLE[resolve(name)]


def build(name: str, **from_run: Any) -> Any:
    """The :class:`~theory.bound.Bound` registered as ``name``."""
    return get(name).build(**from_run)


def names() -> list[str]:
    return list(_TABLE)


def entries() -> list[Entry]:
    return list(_TABLE.values())
