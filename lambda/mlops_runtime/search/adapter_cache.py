"""Per-index embedders and vector stores, built on first use and kept (shared by the search handlers)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class IndexAdapterCache:
    """Mixin of a handler's runtime holding ``settings`` (index name -> settings), the factories
    ``embedder_factory`` / ``store_factory`` and the caches ``embedders`` / ``stores``."""

    settings: dict[str, Any]
    embedder_factory: Callable[[Any], Any]
    store_factory: Callable[[Any], Any]
    embedders: dict[str, Any]
    stores: dict[str, Any]

    def embedder(self, index: str) -> Any:
        if index not in self.embedders:
            self.embedders[index] = self.embedder_factory(self.settings[index])
        return self.embedders[index]

    def store(self, index: str) -> Any:
        if index not in self.stores:
            self.stores[index] = self.store_factory(self.settings[index])
        return self.stores[index]
