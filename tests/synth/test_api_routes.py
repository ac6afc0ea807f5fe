"""The API's routes as deployed (the synthesized REST API) and as rehearsed (the local server's URL map)
are the same table: method, path and the handler that serves each."""

from __future__ import annotations

import json

import pytest

from mlops_platform.config.loader import environment_names

pytestmark = pytest.mark.synth


def deployed_routes(template: dict) -> set[tuple[str, str, str]]:
    """(method, path, handler) of every API Gateway method of the template."""
    resources = template["Resources"]
    api_root = next(k for k, v in resources.items() if v["Type"] == "AWS::ApiGateway::RestApi")

    def path(resource_id: str) -> str:
        resource = resources[resource_id]["Properties"]
        parent = resource["ParentId"]
        prefix = "" if parent == {"Fn::GetAtt": [api_root, "RootResourceId"]} else path(parent["Ref"])
        return f"{prefix}/{resource['PathPart']}"

    routes = set()
    for method in (v["Properties"] for v in resources.values() if v["Type"] == "AWS::ApiGateway::Method"):
        uri = json.dumps(method["Integration"]["Uri"])
        (function_id,) = [k for k, v in resources.items() if v["Type"] == "AWS::Lambda::Function"
                          and json.dumps({"Fn::GetAtt": [k, "Arn"]}) in uri]
        routes.add((method["HttpMethod"], path(method["ResourceId"]["Ref"]),
                    resources[function_id]["Properties"]["Handler"]))
    return routes


def rehearsed_routes() -> set[tuple[str, str, str]]:
    """(method, path, handler) of every API route the local server's URL map serves."""
    from mlops_platform.local.server import URL_MAP, LocalPlatform, LocalRoute

    routes = set()
    for rule in URL_MAP.iter_rules():
        route = rule.endpoint
        if isinstance(route, LocalRoute):
            continue
        handler = LocalPlatform._handler(route.function)
        routes.add((route.method, route.path, f"{handler.__module__}.{handler.__name__}"))
    return routes


def test_every_deployed_route_is_rehearsed_and_every_rehearsed_route_deployed(synthesis):
    deployed = {env: deployed_routes(synthesis.template(env, "Api")) for env in environment_names()}
    rehearsed = rehearsed_routes()
    for environment, routes in deployed.items():
        assert routes <= rehearsed, f"{environment} deploys routes the rehearsal lacks: {routes - rehearsed}"
        if synthesis.configs[environment].search.indexes:
            assert routes == rehearsed, f"{environment} lacks rehearsed routes: {rehearsed - routes}"
        else:
            assert {r for r in rehearsed if "/search/" not in r[1]} == routes
