"""The platform API's routes: one table read by the API stack and by the local rehearsal.

Each route names its method, its path (API Gateway's resource template, ``{name}`` for a path
parameter), the function that serves it (a key of :data:`HANDLERS`) and its authorization: ``api``
is the stage's (``serving.api.authorization``: SigV4 or an API key; the local rehearsal has none).
Adding a route: a row here and the handler's own route (its Powertools resolver); the stack and the
rehearsal follow, and ``tests/synth/test_api_routes.py`` checks both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

# The function serving each group of routes: handler of the Lambda function and of the rehearsal.
HANDLERS: dict[str, str] = {
    "inference": "mlops_runtime.handlers.inference_api.handler",
    "feedback": "mlops_runtime.handlers.feedback_api.handler",
    "search": "mlops_runtime.handlers.search_api.handler",
}


@dataclass(frozen=True)
class ApiRoute:
    method: Literal["GET", "POST"]
    path: str  # e.g. /v1/endpoints/{endpoint}/invocations
    function: str  # a key of HANDLERS
    auth: Literal["api"] = "api"
    # API Gateway checks only that the body is a non-empty JSON object; the handler validates the rest
    # (a JSON-schema failure there would refuse a whole batch for one bad record).
    object_body: bool = False

    @property
    def parameters(self) -> tuple[str, ...]:
        return tuple(re.findall(r"\{(\w+)\}", self.path))

    @property
    def handler(self) -> str:
        return HANDLERS[self.function]


ROUTES: tuple[ApiRoute, ...] = (
    ApiRoute("POST", "/v1/endpoints/{endpoint}/invocations", "inference"),
    ApiRoute("GET", "/v1/experiments/{endpoint}", "inference"),
    ApiRoute("POST", "/v1/feedback", "feedback", object_body=True),
    ApiRoute("POST", "/v1/search/{index}", "search"),  # deployed when the config has search indexes
)
