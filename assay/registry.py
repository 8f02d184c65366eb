"""A small typed registry: names map to objects or lazy ``"module:attr"`` targets.

Unknown names fail with the close matches listed, so a typo in pipelines.yaml is caught
at validation time rather than in the middle of a paid run.
"""

import difflib
import importlib
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownName(KeyError):
    """Raised when a name is not registered; the message lists close matches."""

    def __init__(self, kind: str, name: str, known: list[str]):
        self.kind, self.name, self.known = kind, name, known
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        super().__init__(f"unknown {kind} {name!r}{hint} (known: {', '.join(sorted(known))})")

    def __str__(self) -> str:
        return self.args[0]


class Registry(Generic[T]):
    """Names to objects; a value may be a lazy ``"package.module:attr"`` string."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Any] = {}

    def register(self, name: str, target: Any = None):
        """Register ``target`` under ``name``; usable as a decorator when target is None."""
        if target is not None:
            self._items[name] = target
            return target

        def deco(obj):
            self._items[name] = obj
            return obj

        return deco

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def check(self, name: str) -> None:
        """Raise UnknownName if ``name`` is not registered (without importing it)."""
        if name not in self._items:
            raise UnknownName(self.kind, name, list(self._items))

    def get(self, name: str) -> T:
        self.check(name)
        target = self._items[name]
        if isinstance(target, str):
            module, _, attr = target.partition(":")
            target = getattr(importlib.import_module(module), attr)
            self._items[name] = target
        return target
