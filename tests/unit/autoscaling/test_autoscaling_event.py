"""Reading "SageMaker Endpoint State Change" events: the documented shape and tolerated variations."""

from __future__ import annotations

import copy
import json

import pytest
from mlops_runtime.domain.autoscaling import EndpointStateChange, InvalidEvent

# The shape of the example in "Events that Amazon SageMaker AI sends to Amazon EventBridge".
EVENT = {
    "version": "0",
    "id": "d2921b5a-b0ad-cace-a692-2a5e2da2d1a2",
    "detail-type": "SageMaker Endpoint State Change",
    "source": "aws.sagemaker",
    "account": "123456789012",
    "time": "2026-11-27T12:00:00Z",
    "region": "eu-west-1",
    "resources": ["arn:aws:sagemaker:eu-west-1:123456789012:endpoint/mlops-dev-churn"],
    "detail": {
        "EndpointName": "Mlops-Dev-Churn",
        "EndpointArn": "arn:aws:sagemaker:eu-west-1:123456789012:endpoint/mlops-dev-churn",
        "EndpointConfigName": "mlops-dev-churn-v3-c0123abcd",
        "ProductionVariants": [{"DesiredWeight": 1.0, "DesiredInstanceCount": 2.0}],
        "EndpointStatus": "IN_SERVICE",
        "CreationTime": 1795000000000.0,
        "LastModifiedTime": 1795000100000.0,
        "Tags": {},
    },
}


def event(**detail):
    data = copy.deepcopy(EVENT)
    for key, value in detail.items():
        if value is None:
            data["detail"].pop(key, None)
        else:
            data["detail"][key] = value
    return data


def test_documented_event():
    change = EndpointStateChange.from_eventbridge(EVENT)
    assert change == EndpointStateChange("Mlops-Dev-Churn", "IN_SERVICE", EVENT["id"])
    assert change.in_service


@pytest.mark.parametrize(
    ("status", "in_service"),
    [("IN_SERVICE", True), ("InService", True), ("in-service", True), ("UPDATING", False),
     ("CREATING", False), ("FAILED", False), ("OutOfService", False), ("DELETING", False)],
)
def test_status_spellings(status, in_service):
    assert EndpointStateChange.from_eventbridge(event(EndpointStatus=status)).in_service is in_service


def test_name_from_the_arn_when_the_detail_has_none():
    assert EndpointStateChange.from_eventbridge(event(EndpointName=None)).endpoint_name == "mlops-dev-churn"
    without_any_name = event(EndpointName=None, EndpointArn=None)
    assert EndpointStateChange.from_eventbridge(without_any_name).endpoint_name == "mlops-dev-churn"


def test_detail_as_a_json_string_and_no_envelope_fields():
    data = {"detail": json.dumps(EVENT["detail"])}
    change = EndpointStateChange.from_eventbridge(data)
    assert (change.endpoint_name, change.in_service, change.event_id) == ("Mlops-Dev-Churn", True, None)


def test_camel_case_keys_are_read():
    data = {"detail": {"endpointName": "mlops-dev-churn", "endpointStatus": "IN_SERVICE"}}
    assert EndpointStateChange.from_eventbridge(data).in_service


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ("not an event", "expected an object, got str"),
        ({**EVENT, "source": "aws.s3"}, "source: must be one of aws.sagemaker, got 'aws.s3'"),
        ({**EVENT, "detail-type": "SageMaker Model Package State Change"}, "detail-type: must be one of SageMaker Endpoint State Change"),
        ({**EVENT, "detail": None}, "detail: is required"),
        ({**EVENT, "detail": "{not json"}, "detail: is a string but not JSON"),
        (event(EndpointStatus=None), "detail.EndpointStatus: is required"),
        ({**event(EndpointName=None, EndpointArn=None), "resources": []}, "no valid endpoint name"),
        (event(EndpointName="bad name!"), "no valid endpoint name"),
    ],
)
def test_unusable_events(data, reason):
    with pytest.raises(InvalidEvent, match=reason):
        EndpointStateChange.from_eventbridge(data)
