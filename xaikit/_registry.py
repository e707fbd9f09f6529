"""One registry helper for every registry of the kit: methods, metrics, architectures, protocols, segmenters,
demo stages.

A :class:`Registry` is a ``dict`` from name to entry (so ``name in METHODS``, ``sorted(METHODS)`` and ``METHODS[name]``
read as before) with one verb to fill it, :meth:`Registry.register` (a decorator), one way to read it that fails
clearly, :meth:`Registry.lookup`, and duplicate names refused everywhere. Parametrized tests run over the registries,
so a registered entry is tested the moment it exists (zennit's ``COMPOSITES`` works the same way).

Example
-------
>>> from xaikit._registry import Registry
>>> SHAPES = Registry("shape")
>>> @SHAPES.register("square")
... def square(side):
...     return side * side
>>> SHAPES.lookup("square")(3)
9
>>> SHAPES.lookup("circle")
Traceback (most recent call last):
...
xaikit.errors.ArgumentError: unknown shape 'circle'. Known shapes: square.
"""
from __future__ import annotations

from typing import Any, Callable, Generic, TypeVar

from .errors import ArgumentError, XaikitError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(dict, Generic[T]):
    """Name -> entry, filled by :meth:`register`, read by :meth:`lookup`.

    Parameters
    ----------
    kind : str
        What an entry is, in words (``"saliency method"``); used in every message.
    error : type of XaikitError
        The exception raised for an unknown or duplicate name (the part's own error class).
    make : callable, optional
        ``make(name, fn, **meta) -> entry``: builds the stored entry from the decorated function and the decorator's
        keyword arguments (e.g. a ``MethodInfo``). Without it the function itself is stored and keyword arguments
        are refused.
    """

    def __init__(self, kind: str, *, error: type[XaikitError] = ArgumentError,
                 make: Callable[..., T] | None = None) -> None:
        super().__init__()
        self.kind, self.error, self._make = kind, error, make

    def add(self, name: str, entry: T) -> T:
        """Store ``entry`` under ``name``; a name already taken is refused."""
        if not isinstance(name, str) or not name:
            raise self.error(f"a {self.kind} needs a non-empty string name; got {name!r}.")
        if name in self:
            raise self.error(f"{self.kind} {name!r} is registered twice; pick another name.")
        self[name] = entry
        return entry

    def register(self, name: str, **meta: Any) -> Callable[[Callable], Callable]:
        """Decorator storing the decorated function (or ``make(name, fn, **meta)``) under ``name``."""
        if meta and self._make is None:
            raise self.error(f"register({name!r}, ...): a {self.kind} takes no options {sorted(meta)}.")

        def decorate(fn: Callable) -> Callable:
            self.add(name, self._make(name, fn, **meta) if self._make else fn)
            return fn

        return decorate

    def lookup(self, name: str) -> T:
        """The entry registered under ``name``; an unknown name raises an error that lists the known ones."""
        if not isinstance(name, str) or name not in self:
            raise self.error(f"unknown {self.kind} {name!r}. Known {self.kind}s: {', '.join(sorted(self))}.")
        return self[name]

    def __reduce__(self):  # pickles (Dask workers) as the entries plus what it needs to refuse duplicates
        return (_rebuild, (self.kind, self.error, self._make, dict(self)))


def _rebuild(kind: str, error: type[XaikitError], make: Callable | None, entries: dict) -> Registry:
    registry = Registry(kind, error=error, make=make)
    registry.update(entries)
    return registry
