"""The API's route table (``mlops_platform.api_routes``) and the handlers' own Powertools routes agree:
a row whose handler has no such route would be deployed and answer 404 ``no such route``; a handler
route without a row would never be deployed nor rehearsed."""

from __future__ import annotations

import importlib
import re

from mlops_platform.api_routes import HANDLERS, ROUTES


def resolver_routes(function: str) -> set[tuple[str, str]]:
    """(method, path) of every route the function's ``APIGatewayRestResolver`` serves, in the table's
    ``{name}`` notation. Powertools keeps them in ``_static_routes`` / ``_dynamic_routes``."""
    module = importlib.import_module(HANDLERS[function].rsplit(".", 1)[0])
    app = module.app
    return {(route.method, re.sub(r"<(\w+)>", r"{\1}", route.path))
            for route in (*app._static_routes, *app._dynamic_routes)}


def test_every_table_route_is_a_handler_route_and_every_handler_route_in_the_table():
    for function in HANDLERS:
        table = {(route.method, route.path) for route in ROUTES if route.function == function}
        served = resolver_routes(function)
        assert served, f"{HANDLERS[function]}: no routes found on its resolver (app)"
        assert table <= served, f"api_routes.ROUTES rows {sorted(table - served)} have no route in {HANDLERS[function]}"
        assert served <= table, f"{HANDLERS[function]} serves {sorted(served - table)}, not in api_routes.ROUTES"
