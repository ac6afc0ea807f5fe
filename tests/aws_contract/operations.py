"""What IAM authorizes for each AWS call the platform's code makes: action, resource ARN, condition keys.

botocore knows a call's service and operation; IAM wants an action (not always the operation's
name: ``TransactWriteItems`` is authorized item by item, ``ListObjectsV2`` is ``s3:ListBucket``)
on a resource ARN built from the call's parameters. ``OPERATIONS`` holds that, for every operation
the code calls (a call missing here fails its test, see ``aws_contract.ledger``).

The requests are shapes, independent of the names a test happened to use: a resource name is the
placeholder ``{name}``, an object key ``{key}``, an ARN ``{arn:<service>}``; the contract puts in
their place each name the function (or job step) is configured with in an environment. A value the
code may take either from its configuration or as written keeps the written one: ``{name|value}``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

NAME = "{name}"
KEY = "{key}"
REGION = "{region}"
ACCOUNT = "{account}"
TESTS_ACCOUNT = "123456789012"  # moto's default: the account the tests' own resources live in


def kept(value: Any) -> str:
    return "{name|" + str(value) + "}"


def kept_prefix(key: str) -> str:
    """An object key: under a configured prefix, or under the written key's top-level folder."""
    return "{key|" + (key.split("/", 1)[0] + "/" if "/" in key else "") + "}"


def arn_of(service: str) -> str:
    return "{arn:" + service + "}"


@dataclass(frozen=True, order=True)
class Request:
    action: str
    resource: str
    context: tuple[tuple[str, str], ...] = ()

    def as_json(self) -> list:
        return [self.action, self.resource, dict(self.context)]

    @classmethod
    def from_json(cls, value: list) -> Request:
        action, resource, context = value
        return cls(action, resource, tuple(sorted(context.items())))


def _r(action: str, resource: str, **context: str) -> Request:
    return Request(action, resource, tuple(sorted(context.items())))


def _sagemaker(kind: str) -> str:
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:{kind}/{NAME}"


def _table(suffix: str = "") -> str:
    return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{NAME}{suffix}"


def _sagemaker_arn(value: str, default_kind: str) -> str:
    """``arn:aws:sagemaker:r:a:<kind>/<name>[/<version>]`` -> the same kind with the name a placeholder."""
    if not value.startswith("arn:"):
        return _sagemaker(default_kind)
    kind, _, rest = value.split(":", 5)[5].partition("/")
    version = "/" + rest.rsplit("/", 1)[1] if kind == "model-package" and "/" in rest else ""
    return _sagemaker(kind) + version


def _other_account(value: str, default_kind: str) -> str:
    """:func:`_sagemaker_arn`, but a resource of another account than the tests' own (a package read
    across accounts by the promotion function) keeps its account as a configured name."""
    arn = _sagemaker_arn(value, default_kind)
    account = value.split(":")[4] if value.startswith("arn:") and value.count(":") >= 5 else TESTS_ACCOUNT
    return arn if account == TESTS_ACCOUNT else arn.replace(f":{ACCOUNT}:", f":{NAME}:", 1)


def _scaling(action: str, p: dict) -> Request:
    resource = "*" if action.startswith("application-autoscaling:Describe") else (
        f"arn:aws:application-autoscaling:{REGION}:{ACCOUNT}:scalable-target/{NAME}")
    return _r(action, resource, **{"application-autoscaling:scalable-dimension": p["ScalableDimension"],
                                   "application-autoscaling:service-namespace": p["ServiceNamespace"]})


def _transact_write(p: dict) -> list[Request]:
    actions = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem", "ConditionCheck": "ConditionCheckItem"}
    return sorted({_r(f"dynamodb:{actions[kind]}", _table()) for item in p["TransactItems"] for kind in item})


def _alarm(action: str, name: str) -> Request:
    return _r(action, f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{kept(name)}")


# Teardown deletes only what the deployer tagged as its own in this environment (it reads the tags
# first); the role's policy asks for those tags.
_DEPLOYER_TAGS = {"aws:ResourceTag/mlops:managed-by": "endpoint-deployer", "aws:ResourceTag/mlops:environment": "{environment}"}

Builder = Callable[[dict], list[Request]]
OPERATIONS: dict[tuple[str, str], Builder] = {
    # application-autoscaling: the scalable target of an endpoint variant.
    **{("application-autoscaling", op): (lambda p, op=op: [_scaling(f"application-autoscaling:{op}", p)])
       for op in ("DescribeScalableTargets", "DescribeScalingPolicies", "RegisterScalableTarget",
                  "DeregisterScalableTarget", "PutScalingPolicy", "DeleteScalingPolicy")},
    # dynamodb
    **{("dynamodb", op): (lambda p, op=op: [_r(f"dynamodb:{op}", _table(f"/index/{p['IndexName']}" if "IndexName" in p else ""))])
       for op in ("GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query")},
    ("dynamodb", "BatchGetItem"): lambda p: [_r("dynamodb:BatchGetItem", _table())],
    ("dynamodb", "TransactWriteItems"): _transact_write,
    # sagemaker control plane
    **{("sagemaker", op): (lambda p, op=op, kind=kind: [_r(f"sagemaker:{op}", _sagemaker(kind))])
       for op, kind in (
           ("DescribeEndpoint", "endpoint"), ("CreateEndpoint", "endpoint"), ("UpdateEndpoint", "endpoint"),
           ("UpdateEndpointWeightsAndCapacities", "endpoint"), ("DescribeEndpointConfig", "endpoint-config"),
           ("CreateEndpointConfig", "endpoint-config"), ("DescribeModel", "model"),
           ("StartPipelineExecution", "pipeline"), ("ListPipelineExecutions", "pipeline"))},
    ("sagemaker", "CreateModel"): lambda p: [
        _r("sagemaker:CreateModel", _sagemaker("model")),
        _r("iam:PassRole", arn_of("iam"), **{"iam:PassedToService": "sagemaker.amazonaws.com"})],
    **{("sagemaker", op): (lambda p, op=op, kind=kind: [_r(f"sagemaker:{op}", _sagemaker(kind), **_DEPLOYER_TAGS)])
       for op, kind in (("DeleteEndpoint", "endpoint"), ("DeleteEndpointConfig", "endpoint-config"), ("DeleteModel", "model"))},
    **{("sagemaker", op): (lambda p, op=op: [_r(f"sagemaker:{op}", "*")])
       for op in ("ListEndpoints", "ListEndpointConfigs", "ListModels", "ListModelPackages")},
    ("sagemaker", "DescribeModelPackage"): lambda p: [
        _r("sagemaker:DescribeModelPackage", _other_account(p["ModelPackageName"], "model-package"))],
    ("sagemaker", "CreateModelPackage"): lambda p: [
        _r("sagemaker:CreateModelPackage", _sagemaker("model-package-group"))],
    ("sagemaker", "UpdateModelPackage"): lambda p: [
        _r("sagemaker:UpdateModelPackage", _sagemaker_arn(p["ModelPackageArn"], "model-package"))],
    ("sagemaker", "ListTags"): lambda p: [_r("sagemaker:ListTags", _sagemaker_arn(p["ResourceArn"], "endpoint"))],
    ("sagemaker-runtime", "InvokeEndpoint"): lambda p: [_r("sagemaker:InvokeEndpoint", _sagemaker("endpoint"))],
    ("sagemaker-featurestore-runtime", "PutRecord"): lambda p: [_r("sagemaker:PutRecord", _sagemaker("feature-group"))],
    ("sagemaker-featurestore-runtime", "GetRecord"): lambda p: [_r("sagemaker:GetRecord", _sagemaker("feature-group"))],
    # messaging
    ("sns", "Publish"): lambda p: [_r("sns:Publish", arn_of("sns"))],
    ("events", "PutEvents"): lambda p: [
        _r("events:PutEvents", f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{kept(e.get('EventBusName', 'default'))}")
        for e in p["Entries"]],
    ("sqs", "SendMessage"): lambda p: [_r("sqs:SendMessage", f"arn:aws:sqs:{REGION}:{ACCOUNT}:{NAME}")],
    ("sqs", "SendMessageBatch"): lambda p: [_r("sqs:SendMessage", f"arn:aws:sqs:{REGION}:{ACCOUNT}:{NAME}")],
    ("sqs", "ReceiveMessage"): lambda p: [_r("sqs:ReceiveMessage", f"arn:aws:sqs:{REGION}:{ACCOUNT}:{NAME}")],
    ("sqs", "DeleteMessageBatch"): lambda p: [_r("sqs:DeleteMessage", f"arn:aws:sqs:{REGION}:{ACCOUNT}:{NAME}")],
    ("firehose", "PutRecordBatch"): lambda p: [
        _r("firehose:PutRecordBatch", f"arn:aws:firehose:{REGION}:{ACCOUNT}:deliverystream/{NAME}")],
    # storage
    ("s3", "GetObject"): lambda p: [_r("s3:GetObject", f"arn:aws:s3:::{NAME}/{kept_prefix(p['Key'])}")],
    ("s3", "PutObject"): lambda p: [_r("s3:PutObject", f"arn:aws:s3:::{NAME}/{kept_prefix(p['Key'])}")],
    ("s3", "ListObjectsV2"): lambda p: [
        _r("s3:ListBucket", f"arn:aws:s3:::{NAME}", **{"s3:prefix": kept_prefix(p.get("Prefix", ""))})],
    ("s3vectors", "QueryVectors"): lambda p: [
        _r("s3vectors:QueryVectors", f"arn:aws:s3vectors:{REGION}:{ACCOUNT}:bucket/{NAME}/index/{NAME}"),
        # Returning metadata or filtering on it reads the vectors too (S3 Vectors' QueryVectors page).
        *([_r("s3vectors:GetVectors", f"arn:aws:s3vectors:{REGION}:{ACCOUNT}:bucket/{NAME}/index/{NAME}")]
          if p.get("returnMetadata") or p.get("filter") else [])],
    ("s3vectors", "PutVectors"): lambda p: [
        _r("s3vectors:PutVectors", f"arn:aws:s3vectors:{REGION}:{ACCOUNT}:bucket/{NAME}/index/{NAME}")],
    ("s3vectors", "DeleteVectors"): lambda p: [
        _r("s3vectors:DeleteVectors", f"arn:aws:s3vectors:{REGION}:{ACCOUNT}:bucket/{NAME}/index/{NAME}")],
    # metrics and alarms
    ("cloudwatch", "PutMetricData"): lambda p: [_r("cloudwatch:PutMetricData", "*", **{"cloudwatch:namespace": kept(p["Namespace"])})],
    # The code names its own alarms (a fixed prefix, then the endpoint's): the written name is kept.
    ("cloudwatch", "PutMetricAlarm"): lambda p: [_alarm("cloudwatch:PutMetricAlarm", p["AlarmName"])],
    ("cloudwatch", "DescribeAlarms"): lambda p: [_alarm("cloudwatch:DescribeAlarms", n) for n in p.get("AlarmNames", ["*"])],
    ("cloudwatch", "DeleteAlarms"): lambda p: [_alarm("cloudwatch:DeleteAlarms", n) for n in p["AlarmNames"]],
    # secrets and models
    ("secretsmanager", "GetSecretValue"): lambda p: [  # by ARN (the API's settings) or by name
        _r("secretsmanager:GetSecretValue", arn_of("secretsmanager") if str(p["SecretId"]).startswith("arn:")
           else f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{NAME}-AbCdEf")],
    ("bedrock-runtime", "InvokeModel"): lambda p: [
        _r("bedrock:InvokeModel", f"arn:aws:bedrock:{REGION}::foundation-model/{kept(p['modelId'])}")],
}


def requests(service: str, operation: str, params: dict) -> list[Request] | None:
    """The IAM requests of a call, or None when the operation is not in ``OPERATIONS``."""
    builder = OPERATIONS.get((service, operation))
    return None if builder is None else sorted(set(builder(params)))
