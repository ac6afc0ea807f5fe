"""A custom serving image replaces the package's image; the package keeps its artifacts."""

from __future__ import annotations

import dataclasses

import pytest
from deployment_fixtures import NOW, make_package, make_spec

from mlops_runtime.domain.deployment import (
    CannotPlan,
    EndpointSpec,
    PackageContainer,
    plan_deployment,
)

GNN_IMAGE = "111111111111.dkr.ecr.eu-west-1.amazonaws.com/gnn-serving:1.4"


def test_override_replaces_only_the_image():
    package = make_package(3)
    plan = plan_deployment(None, package, make_spec(image_uri=GNN_IMAGE), NOW)
    container = plan.call("CreateModel").params["PrimaryContainer"]
    assert container["Image"] == GNN_IMAGE
    assert container["ModelDataUrl"] == package.containers[0].model_data_url
    assert container["Environment"] == {"SAGEMAKER_PROGRAM": "inference.py"}


def test_without_override_the_package_image_is_used():
    package = make_package(3)
    plan = plan_deployment(None, package, make_spec(), NOW)
    assert plan.call("CreateModel").params["PrimaryContainer"]["Image"] == package.containers[0].image


def test_override_changes_the_model_name():
    """Names hash the request, so switching images never reuses the old model."""
    package = make_package(3)
    plain = plan_deployment(None, package, make_spec(), NOW).call("CreateModel").params["ModelName"]
    custom = plan_deployment(None, package, make_spec(image_uri=GNN_IMAGE), NOW).call("CreateModel").params["ModelName"]
    assert plain != custom


def test_multi_container_packages_cannot_be_overridden():
    package = make_package(3)
    package = dataclasses.replace(package, containers=(*package.containers,
                                                       PackageContainer(image=package.containers[0].image)))
    with pytest.raises(CannotPlan, match="single-container packages only"):
        plan_deployment(None, package, make_spec(image_uri=GNN_IMAGE), NOW)


@pytest.mark.parametrize("uri", ["gnn-serving:1.4", "docker.io/library/python:3", "111.dkr.ecr.x.amazonaws.com/a",
                                 "111111111111.dkr.ecr.eu-west-1.amazonaws.com/GNN:1"])
def test_the_config_takes_only_an_ecr_uri_the_deployer_can_serve(uri):
    """The spec's image is a token for an image asset at synthesis: the config checks the URIs it is given."""
    from mlops_platform.config.models import ContainerConfig
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="must be an ECR image URI"):
        ContainerConfig(image_uri=uri)
    assert ContainerConfig(image_uri=GNN_IMAGE).image_uri == GNN_IMAGE


def test_round_trip():
    spec = make_spec(image_uri=GNN_IMAGE)
    assert EndpointSpec.from_dict(spec.to_dict()) == spec
