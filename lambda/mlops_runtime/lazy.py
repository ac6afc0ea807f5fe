"""The one lazy-singleton pattern of the handlers: settings and clients built on first use."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Lazy(Generic[T]):
    """A value built on first use and kept for the execution environment (settings, clients).

    ``set`` replaces it (tests, the local rehearsal); ``set(None)`` rebuilds it on next use."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._value: T | None = None

    def __call__(self) -> T:
        if self._value is None:
            self._value = self._build()
        return self._value

    def set(self, value: T | None) -> None:
        self._value = value

    @property
    def current(self) -> T | None:
        """The value if built, else ``None`` (builds nothing)."""
        return self._value
