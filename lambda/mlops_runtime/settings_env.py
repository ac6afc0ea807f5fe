"""The one environment variable of a function's settings: the JSON of its settings model.

A module of its own so that a handler can read it without loading pydantic: the search API parses
its settings by hand (``domain.search.SearchSettings``) to keep its cold start within budget.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

SETTINGS_ENV = "MLOPS_SETTINGS"


def settings_text(environ: Mapping[str, str] | None = None) -> str | None:
    """The settings JSON of this function (``environ``: the environment, by default the process's)."""
    return (os.environ if environ is None else environ).get(SETTINGS_ENV)
