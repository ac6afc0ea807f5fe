"""Draw one environment's architecture, as SVG, from the synthesized cloud assembly.

    python -m mlops_platform.tools.architecture --assembly cdk.out --environment staging \\
        --output docs/architecture.svg [--check]

Reads ``<assembly>/manifest.json``, finds the environment's stage (a nested cloud assembly, at any
depth, e.g. inside a delivery pipeline's assembly) and its stack templates, and draws in pure
Python (no Graphviz):

- one box per stack (Foundation, FeatureStore, Training, Serving, Api, Monitoring), listing the
  stack's notable resources grouped by kind, with counts and names (names without the
  environment's prefix), and a count of the supporting resources (IAM, logs, permissions...);
- a dashed box for the SageMaker endpoints, which the deployer creates at run time (they are in
  no template: their names come from the ARNs, event patterns and alarms that refer to them);
- numbered arrows for the flows between them, explained in the legend:

  * data flows of the platform, found by resource names (training pipeline -> model registry ->
    deployer -> endpoints -> data capture -> monitoring; API -> endpoints; feedback -> Firehose ->
    feedback bucket -> monitoring; alarms -> retraining trigger -> training; search);
  * EventBridge rules: the event pattern names the producer (a bucket, a model package group, an
    endpoint, alarms), the targets the consumer;
  * "uses": cross-stack ``Fn::ImportValue`` references and ARNs or names of another stack's
    resources (buckets, pipelines, roles, topics...).

The output is deterministic (stable order, no timestamps, no asset hashes): generating it twice
from the same templates gives the same bytes. ``tests/unit/tools/test_architecture.py`` compares
``docs/architecture.svg`` with what the synthesized app gives for staging.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

COMMAND = "python -m mlops_platform.tools.architecture"
ENDPOINTS = "Endpoints"  # the node of the run-time SageMaker endpoints

# --- reading the cloud assembly ----------------------------------------------------------------


class AssemblyError(Exception):
    """The assembly is missing, or has no stage for the environment (one line)."""


@dataclass
class Resource:
    stack: str
    logical_id: str
    type: str
    properties: dict
    name: str | None  # the literal physical name the template sets, if any
    label: str = ""  # what the picture shows: the short name, or the logical id without its hash

    @property
    def key(self) -> tuple[str, str]:
        return self.stack, self.logical_id


@dataclass
class StackInfo:
    id: str  # construct id, e.g. "Serving"
    stack_name: str  # CloudFormation stack name, e.g. "mlops-staging-serving"
    template: dict
    resources: dict[str, Resource] = field(default_factory=dict)


@dataclass
class Environment:
    name: str
    account: str
    region: str
    prefix: str  # common prefix of the physical names, e.g. "mlops-staging-"
    stacks: list[StackInfo]

    def stack(self, stack_id: str) -> StackInfo:
        return next(s for s in self.stacks if s.id == stack_id)

    def resources(self) -> Iterator[Resource]:
        for stack in self.stacks:
            yield from stack.resources.values()


def _stages(directory: Path) -> Iterator[tuple[str, str, Path]]:
    """(artifact id, display name, directory) of every nested cloud assembly, depth-first."""
    manifest = json.loads((directory / "manifest.json").read_text())
    artifacts = manifest.get("artifacts", {})
    for artifact_id in sorted(artifacts):
        artifact = artifacts[artifact_id]
        if artifact.get("type") != "cdk:cloud-assembly":
            continue
        properties = artifact.get("properties", {})
        nested = directory / properties["directoryName"]
        yield artifact_id, artifact.get("displayName") or properties.get("displayName") or artifact_id, nested
        if (nested / "manifest.json").exists():
            yield from _stages(nested)


def _matches(environment: str, artifact_id: str, display: str) -> bool:
    return display == environment or display.split("/")[-1] == environment or artifact_id == f"assembly-{environment}"


_PSEUDO = {"AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com"}


def _literal(value: Any, account: str, region: str) -> str | None:
    """A string property as a literal, resolving joins of literals and pseudo parameters."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        resolved = [_literal(part, account, region) for part in parts]
        return None if any(part is None for part in resolved) else separator.join(resolved)  # type: ignore[arg-type]
    if isinstance(value, dict) and "Ref" in value:
        pseudo = {**_PSEUDO, "AWS::AccountId": account, "AWS::Region": region}
        return pseudo.get(value["Ref"])
    return None


# Property holding the physical name, per resource type.
NAME_PROPERTIES = {
    "AWS::S3::Bucket": ("BucketName",),
    "AWS::Lambda::Function": ("FunctionName",),
    "AWS::DynamoDB::Table": ("TableName",),
    "AWS::SageMaker::Pipeline": ("PipelineName",),
    "AWS::SageMaker::ModelPackageGroup": ("ModelPackageGroupName",),
    "AWS::SageMaker::FeatureGroup": ("FeatureGroupName",),
    "AWS::SageMaker::MlflowTrackingServer": ("TrackingServerName",),
    "AWS::SQS::Queue": ("QueueName",),
    "AWS::SNS::Topic": ("TopicName",),
    "AWS::KinesisFirehose::DeliveryStream": ("DeliveryStreamName",),
    "AWS::CloudWatch::Alarm": ("AlarmName",),
    "AWS::CloudWatch::Dashboard": ("DashboardName",),
    "AWS::Scheduler::Schedule": ("Name",),
    "AWS::Events::Rule": ("Name",),
    "AWS::S3Vectors::VectorBucket": ("VectorBucketName",),
    "AWS::S3Vectors::Index": ("IndexName",),
    "AWS::OpenSearchServerless::Collection": ("Name",),
    "AWS::ApiGateway::RestApi": ("Name",),
    "AWS::KMS::Alias": ("AliasName",),
    "AWS::SecretsManager::Secret": ("Name",),
    "AWS::IAM::Role": ("RoleName",),
    "AWS::Budgets::Budget": ("Budget", "BudgetName"),
}
_CDK_HASH = re.compile(r"(?<=[a-z0-9])(?=[0-9A-F]{8}$)[0-9A-F]*\d[0-9A-F]*$")


def _strip_hash(logical_id: str) -> str:
    """``TablesPredictions2A11ED16`` -> ``TablesPredictions`` (CDK's 8-digit hash suffix)."""
    stripped = _CDK_HASH.sub("", logical_id)
    return stripped or logical_id


def _physical_name(resource_type: str, properties: dict, account: str, region: str) -> str | None:
    path = NAME_PROPERTIES.get(resource_type)
    if not path:
        return None
    value: Any = properties
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return _literal(value, account, region) if value is not None else None


def read_environment(assembly: Path, environment: str) -> Environment:
    """The stacks of ``environment`` in the cloud assembly at ``assembly``."""
    if not (assembly / "manifest.json").exists():
        raise AssemblyError(f"{assembly}: no cloud assembly (manifest.json); synthesize first (make synth)")
    stages = list(_stages(assembly))
    found = [(artifact_id, display, path) for artifact_id, display, path in stages
             if _matches(environment, artifact_id, display)]
    if not found:
        names = sorted({display.split("/")[-1] for _, display, _ in stages})
        raise AssemblyError(f"{assembly}: no stage '{environment}' in the assembly (stages: {', '.join(names) or 'none'})")
    stage_dir = found[0][2]
    manifest = json.loads((stage_dir / "manifest.json").read_text())
    stacks: list[StackInfo] = []
    account = region = ""
    for artifact_id, artifact in manifest.get("artifacts", {}).items():  # CDK writes them in dependency order
        if artifact.get("type") != "aws:cloudformation:stack":
            continue
        properties = artifact.get("properties", {})
        template = json.loads((stage_dir / properties["templateFile"]).read_text())
        display = artifact.get("displayName", artifact_id)
        stacks.append(StackInfo(id=display.split("/")[-1], stack_name=properties.get("stackName", display),
                                template=template))
        match = re.fullmatch(r"aws://([^/]+)/(.+)", artifact.get("environment", ""))
        if match and not account:
            account, region = match.group(1), match.group(2)
    if not stacks:
        raise AssemblyError(f"{stage_dir}: the stage '{environment}' has no stack templates")
    prefix = _common_prefix([s.stack_name for s in stacks])
    env = Environment(environment, account, region, prefix, stacks)
    for stack in stacks:
        for logical_id, body in sorted(stack.template.get("Resources", {}).items()):
            properties = body.get("Properties", {}) or {}
            name = _physical_name(body["Type"], properties, account, region)
            resource = Resource(stack.id, logical_id, body["Type"], properties, name)
            resource.label = short_name(env, name) if name else _strip_hash(logical_id)
            stack.resources[logical_id] = resource
    return env


def _common_prefix(names: list[str]) -> str:
    if not names:
        return ""
    first, last = min(names), max(names)
    size = 0
    while size < min(len(first), len(last)) and first[size] == last[size]:
        size += 1
    common = first[:size]
    if len(names) == 1:
        common = names[0]
    return common[: common.rfind("-") + 1] if "-" in common else ""


def short_name(env: Environment, name: str) -> str:
    """A physical name without the environment's prefix and account/region suffix."""
    short = name.removeprefix("alias/") if name.startswith("alias/") else name
    if env.prefix and short.startswith(env.prefix):
        short = short[len(env.prefix):]
    elif env.prefix and short.startswith(env.prefix[:-1] + "/"):  # e.g. a secret "mlops-dev/hash-key"
        short = short[len(env.prefix):]
    if env.account and env.region:
        short = short.removesuffix(f"-{env.account}-{env.region}")
    return short or name


# --- what each box lists ------------------------------------------------------------------------


@dataclass
class Group:
    label: str
    items: list[str]
    one_per_line: bool = False
    count: int | None = None  # shown as "label (count)"; None: len(items)


def _of_type(stack: StackInfo, *types: str) -> list[Resource]:
    return [r for r in stack.resources.values() if r.type in types]


def _ref_id(value: Any) -> str | None:
    """The logical id a Ref or Fn::GetAtt points at."""
    if isinstance(value, dict):
        if "Ref" in value and isinstance(value["Ref"], str):
            return value["Ref"]
        if "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            return target[0] if isinstance(target, list) else str(target).split(".")[0]
    return None


def _camel_words(text: str) -> list[str]:
    return re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z0-9]+", text)


def _labels(resources: Iterable[Resource]) -> list[str]:
    """Sorted labels; logical-id labels lose a first word they all share (``Tables``Predictions)."""
    resources = list(resources)
    labels = [r.label for r in resources]
    derived = [r for r in resources if r.name is None]
    if len(derived) >= 2 and len(derived) == len(resources):
        firsts = {(_camel_words(r.label) or [""])[0] for r in derived}
        if len(firsts) == 1:
            first = firsts.pop()
            if first and all(len(r.label) > len(first) for r in derived):
                labels = [r.label[len(first):] for r in derived]
    return sorted(labels)


def _routes(stack: StackInfo) -> list[str]:
    resources = stack.resources
    paths: dict[str, str] = {}

    def path_of(logical_id: str, seen: tuple[str, ...] = ()) -> str:
        if logical_id in paths:
            return paths[logical_id]
        resource = resources.get(logical_id)
        if resource is None or resource.type != "AWS::ApiGateway::Resource" or logical_id in seen:
            return ""
        parent = _ref_id(resource.properties.get("ParentId"))
        parent_path = path_of(parent, seen + (logical_id,)) if parent else ""
        paths[logical_id] = f"{parent_path}/{resource.properties.get('PathPart', '')}"
        return paths[logical_id]

    routes = set()
    for method in _of_type(stack, "AWS::ApiGateway::Method"):
        verb = method.properties.get("HttpMethod", "ANY")
        if verb == "OPTIONS":
            continue
        resource_id = _ref_id(method.properties.get("ResourceId"))
        path = path_of(resource_id) if resource_id else ""
        routes.add((path or "/", verb))
    return [f"{verb} {path}" for path, verb in sorted(routes)]


def _dead_letter_ids(stack: StackInfo) -> set[str]:
    ids = set()
    for resource in stack.resources.values():
        redrive = resource.properties.get("RedrivePolicy") if resource.type == "AWS::SQS::Queue" else None
        if isinstance(redrive, dict):
            ids.add(_ref_id(redrive.get("deadLetterTargetArn")))
        if resource.type == "AWS::Lambda::Function":
            ids.add(_ref_id((resource.properties.get("DeadLetterConfig") or {}).get("TargetArn")))
        if resource.type == "AWS::Lambda::EventSourceMapping":
            destination = ((resource.properties.get("DestinationConfig") or {}).get("OnFailure") or {})
            ids.add(_ref_id(destination.get("Destination")))
        if resource.type == "AWS::Events::Rule":
            for target in resource.properties.get("Targets", []):
                ids.add(_ref_id((target.get("DeadLetterConfig") or {}).get("Arn")))
        if resource.type == "AWS::Scheduler::Schedule":
            ids.add(_ref_id(((resource.properties.get("Target") or {}).get("DeadLetterConfig") or {}).get("Arn")))
    ids.discard(None)
    return ids  # type: ignore[return-value]


def groups_of(env: Environment, stack: StackInfo) -> tuple[list[Group], set[str]]:
    """The notable resources of a stack, grouped by kind, and the logical ids they cover."""
    covered: set[str] = set()
    groups: list[Group] = []

    def add(label: str, resources: list[Resource], items: list[str] | None = None, **kwargs) -> None:
        covered.update(r.logical_id for r in resources)
        shown = items if items is not None else _labels(resources)
        if resources or shown:
            groups.append(Group(label, shown, **kwargs))

    keys = _of_type(stack, "AWS::KMS::Key")
    aliases = _of_type(stack, "AWS::KMS::Alias")
    if keys:
        items = []
        for key in keys:
            names = sorted(a.name or a.label for a in aliases if _ref_id(a.properties.get("TargetKeyId")) == key.logical_id)
            rotation = ", rotated" if key.properties.get("EnableKeyRotation") else ""
            items.append(f"{names[0] if names else key.label}{rotation}")
        add("KMS key", keys + aliases, sorted(items))
    add("S3 buckets", _of_type(stack, "AWS::S3::Bucket"))
    vpcs = _of_type(stack, "AWS::EC2::VPC")
    if vpcs:
        subnets = len(_of_type(stack, "AWS::EC2::Subnet"))
        endpoints = len(_of_type(stack, "AWS::EC2::VPCEndpoint"))
        flow_logs = len(_of_type(stack, "AWS::EC2::FlowLog"))
        items = [f"{v.properties.get('CidrBlock', v.label)}, {subnets} subnets, {endpoints} VPC endpoints"
                 + (", flow logs" if flow_logs else "") for v in vpcs]
        network = [r for r in stack.resources.values() if r.type.startswith("AWS::EC2::")]
        add("VPC", network, items)
    add("SNS topics", _of_type(stack, "AWS::SNS::Topic"))
    budgets = _of_type(stack, "AWS::Budgets::Budget")
    if budgets:
        items = []
        for budget in budgets:
            limit = (budget.properties.get("Budget") or {}).get("BudgetLimit") or {}
            amount = f" ({limit.get('Amount')} {limit.get('Unit', '')}/month)".replace(" )", ")") if limit else ""
            items.append(f"{budget.label}{amount}")
        add("Budget", budgets, sorted(items))
    feature_groups = _of_type(stack, "AWS::SageMaker::FeatureGroup")
    if feature_groups:
        items = []
        for group in feature_groups:
            stores = [s for s, key in (("online", "OnlineStoreConfig"), ("offline", "OfflineStoreConfig"))
                      if group.properties.get(key)]
            items.append(f"{group.label} ({' + '.join(stores)})" if stores else group.label)
        add("Feature groups", feature_groups, sorted(items))
    add("SageMaker pipelines", _of_type(stack, "AWS::SageMaker::Pipeline"))
    add("Model package groups", _of_type(stack, "AWS::SageMaker::ModelPackageGroup"))
    servers = _of_type(stack, "AWS::SageMaker::MlflowTrackingServer")
    if servers:
        add("MLflow tracking server", servers,
            sorted(f"{s.label} ({s.properties.get('TrackingServerSize', '?')})" for s in servers))
    apis = _of_type(stack, "AWS::ApiGateway::RestApi")
    if apis:
        routes = _routes(stack)
        add("REST API", apis + _of_type(stack, "AWS::ApiGateway::Method", "AWS::ApiGateway::Resource",
                                        "AWS::ApiGateway::Stage", "AWS::ApiGateway::Deployment"),
            [f"{api.label} ({len(routes)} routes)" for api in apis])
        groups.append(Group("Routes", routes, one_per_line=True))
    functions = _of_type(stack, "AWS::Lambda::Function")
    if functions:
        named = [f for f in functions if f.name]
        helpers = len(functions) - len(named)
        items = _labels(named) + ([f"+{helpers} CDK helper" + ("s" if helpers > 1 else "")] if helpers else [])
        add("Lambda functions", functions, items, count=len(functions))
    add("DynamoDB tables", _of_type(stack, "AWS::DynamoDB::Table"))
    streams = _of_type(stack, "AWS::KinesisFirehose::DeliveryStream")
    if streams:
        items = []
        for stream in streams:
            destination = (stream.properties.get("ExtendedS3DestinationConfiguration")
                           or stream.properties.get("S3DestinationConfiguration") or {})
            arn = _literal(destination.get("BucketARN"), env.account, env.region) or ""
            bucket = arn.rsplit(":", 1)[-1] if arn else ""
            items.append(f"{stream.label} -> {short_name(env, bucket)}" if bucket else stream.label)
        add("Firehose", streams, sorted(items))
    vector_buckets = _of_type(stack, "AWS::S3Vectors::VectorBucket")
    indexes = _of_type(stack, "AWS::S3Vectors::Index")
    if vector_buckets or indexes:
        items = [f"{len(vector_buckets)} vector bucket" + ("s" if len(vector_buckets) != 1 else "")]
        items += sorted(f"index {i.label} ({i.properties.get('Dimension', '?')}-d, "
                        f"{i.properties.get('DistanceMetric', '?')})" for i in indexes)
        add("S3 Vectors", vector_buckets + indexes, items)
    add("OpenSearch Serverless", _of_type(stack, "AWS::OpenSearchServerless::Collection"))
    queues = _of_type(stack, "AWS::SQS::Queue")
    if queues:
        dead = _dead_letter_ids(stack)
        work = [q for q in queues if q.logical_id not in dead]
        dead_count = len(queues) - len(work)
        items = _labels(work) + ([f"+{dead_count} dead-letter"] if dead_count else [])
        add("SQS queues", queues, items, count=len(queues))
    rules = [r for r in _of_type(stack, "AWS::Events::Rule") if r.properties.get("EventPattern")]
    add("EventBridge rules", rules)
    schedules = _of_type(stack, "AWS::Scheduler::Schedule")
    timed = [r for r in _of_type(stack, "AWS::Events::Rule") if r.properties.get("ScheduleExpression")]
    if schedules or timed:
        items = sorted(f"{s.label}: {s.properties.get('ScheduleExpression', '?')}" for s in schedules + timed)
        add("Schedules", schedules + timed, items, one_per_line=True)
    alarms = _of_type(stack, "AWS::CloudWatch::Alarm")
    if alarms:
        add("CloudWatch alarms", alarms, [str(len(alarms))])
    add("Dashboard", _of_type(stack, "AWS::CloudWatch::Dashboard"))
    add("Secrets", _of_type(stack, "AWS::SecretsManager::Secret"))
    custom = [r for r in stack.resources.values() if r.type.startswith("Custom::")
              or r.type == "AWS::CloudFormation::CustomResource"]
    if custom:
        add("Custom resources", custom, sorted({r.type.removeprefix("Custom::") for r in custom}))
    return groups, covered


def other_resources(stack: StackInfo, covered: set[str]) -> str:
    """``+ 50 more: IAM 24, Lambda 10, ...``: the supporting resources, by service."""
    rest = Counter(r.type.split("::")[1] if r.type.count("::") >= 2 else r.type
                   for r in stack.resources.values() if r.logical_id not in covered)
    if not rest:
        return ""
    parts = ", ".join(f"{service} {count}" for service, count in sorted(rest.items(), key=lambda kv: (-kv[1], kv[0])))
    return f"+ {sum(rest.values())} more: {parts}"


# --- flows --------------------------------------------------------------------------------------


@dataclass
class Flow:
    source: str  # node id
    target: str
    style: str  # "data" | "event" | "uses"
    text: str
    number: int = 0
    source_resources: frozenset = frozenset()
    target_resources: frozenset = frozenset()


# A name mentioned in another stack counts as a reference only in the context of its ARN type, so
# that a pipeline, a model package group and an endpoint sharing a name are told apart.
REFERENCE_CONTEXT = {
    "AWS::S3::Bucket": "",
    "AWS::SageMaker::Pipeline": r":pipeline/",
    "AWS::SageMaker::ModelPackageGroup": r":model-package(?:-group)?/",
    "AWS::SageMaker::FeatureGroup": r":feature-group/",
    "AWS::SageMaker::MlflowTrackingServer": r":mlflow-tracking-server/",
    "AWS::Lambda::Function": r":function:",
    "AWS::DynamoDB::Table": r":table/",
    "AWS::KinesisFirehose::DeliveryStream": r":deliverystream/",
    "AWS::SNS::Topic": r":sns:[a-z0-9-]*:[0-9]*:",
    "AWS::SQS::Queue": r":sqs:[a-z0-9-]*:[0-9]*:",
    "AWS::CloudWatch::Alarm": r":alarm:",
    "AWS::IAM::Role": r":role/(?:[A-Za-z0-9_+=,.@-]+/)*",
    "AWS::KMS::Alias": r":",
}
NOUNS = {
    "AWS::S3::Bucket": "bucket", "AWS::KMS::Key": "KMS key", "AWS::KMS::Alias": "KMS key",
    "AWS::IAM::Role": "role", "AWS::EC2::Subnet": "subnet", "AWS::EC2::SecurityGroup": "security group",
    "AWS::EC2::VPC": "VPC", "AWS::SNS::Topic": "topic", "AWS::SQS::Queue": "queue",
    "AWS::SageMaker::Pipeline": "pipeline", "AWS::SageMaker::ModelPackageGroup": "model package group",
    "AWS::SageMaker::FeatureGroup": "feature group", "AWS::Lambda::Function": "function",
    "AWS::DynamoDB::Table": "table", "AWS::KinesisFirehose::DeliveryStream": "Firehose stream",
    "AWS::CloudWatch::Alarm": "alarm", "AWS::SageMaker::MlflowTrackingServer": "MLflow server",
}
# Named items shown by name; the others are counted ("2 subnets").
_UNNAMED_NOUNS = {"KMS key", "subnet", "security group", "VPC"}


def _plural(noun: str, count: int) -> str:
    return noun if count == 1 else noun + "s"


def _describe_used(items: Iterable[tuple[str, str | None]]) -> str:
    """``KMS key; 2 subnets; buckets artifacts, raw-data`` from (noun, name) pairs."""
    by_noun: dict[str, set[str]] = defaultdict(set)
    counts: Counter = Counter()
    for noun, name in items:
        if noun == "KMS key":
            counts[noun] = 1  # the key and its alias
        elif noun in _UNNAMED_NOUNS or not name:
            counts[noun] += 1
        else:
            by_noun[noun].add(name)
    parts = []
    for noun in sorted(set(by_noun) | set(counts), key=lambda n: (list(NOUNS.values()).index(n) if n in NOUNS.values() else 99, n)):
        if noun in by_noun:
            names = sorted(by_noun[noun])
            parts.append(f"{_plural(noun, len(names))} {', '.join(names)}")
        elif noun in ("KMS key", "VPC"):
            parts.append(noun)
        else:
            parts.append(f"{counts[noun]} {_plural(noun, counts[noun])}" if counts[noun] > 1 else noun)
    return "; ".join(parts)


class Graph:
    """The nodes (stacks, run-time endpoints) and the flows between them."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.by_name: dict[tuple[str, str], list[Resource]] = defaultdict(list)
        for resource in env.resources():
            if resource.name:
                self.by_name[(resource.type, resource.name)].append(resource)
        self.texts = {s.id: json.dumps(s.template.get("Resources", {}), sort_keys=True) for s in env.stacks}
        self.endpoint_names = self._endpoint_names()
        self.nodes = [s.id for s in env.stacks] + ([ENDPOINTS] if self.endpoint_names else [])
        self.references = self._name_references()
        self.exports = self._exports()

    # -- the run-time endpoints --
    def _endpoint_names(self) -> list[str]:
        prefix = re.escape(self.env.prefix)
        names: set[str] = set()
        for text in self.texts.values():
            names.update(re.findall(rf":endpoint/({prefix}[A-Za-z0-9-]*[A-Za-z0-9])(?![A-Za-z0-9*-])", text))
        for resource in self.env.resources():
            if resource.type == "AWS::Events::Rule":
                detail = (resource.properties.get("EventPattern") or {}).get("detail") or {}
                names.update(n for n in detail.get("EndpointName", []) if isinstance(n, str))
            if resource.type == "AWS::CloudWatch::Alarm":
                for dimension in resource.properties.get("Dimensions", []) or []:
                    if dimension.get("Name") == "EndpointName" and isinstance(dimension.get("Value"), str):
                        names.add(dimension["Value"])
                for metric in resource.properties.get("Metrics", []) or []:
                    stat = (metric.get("MetricStat") or {}).get("Metric") or {}
                    for dimension in stat.get("Dimensions", []) or []:
                        if dimension.get("Name") == "EndpointName" and isinstance(dimension.get("Value"), str):
                            names.add(dimension["Value"])
        return sorted(n for n in names if "*" not in n)

    # -- references by name (ARNs) --
    def _name_references(self) -> dict[tuple[str, str], list[Resource]]:
        """(referencing stack, owning stack) -> resources of the owner named in the referencing one."""
        found: dict[tuple[str, str], list[Resource]] = defaultdict(list)
        for (resource_type, name), owners in sorted(self.by_name.items()):
            context = REFERENCE_CONTEXT.get(resource_type)
            if context is None:
                continue
            boundary = r"(?<![A-Za-z0-9_.-])" if not context else ""
            pattern = re.compile(f"{context}{boundary}{re.escape(name)}(?![A-Za-z0-9_-])")
            for stack in self.env.stacks:
                for owner in owners:
                    if owner.stack != stack.id and pattern.search(self.texts[stack.id]):
                        found[(stack.id, owner.stack)].append(owner)
        return found

    def _exports(self) -> dict[str, Resource]:
        """Export name -> the resource the exported value refers to."""
        exports: dict[str, Resource] = {}
        for stack in self.env.stacks:
            for output in (stack.template.get("Outputs") or {}).values():
                export = (output.get("Export") or {}).get("Name")
                target = _ref_id(output.get("Value"))
                if isinstance(export, str) and target in stack.resources:
                    exports[export] = stack.resources[target]
        return exports

    def _imports(self) -> dict[tuple[str, str], list[Resource]]:
        found: dict[tuple[str, str], list[Resource]] = defaultdict(list)
        for stack in self.env.stacks:
            for name in sorted(set(_find_imports(stack.template.get("Resources", {})))):
                owner = self.exports.get(name)
                if owner is not None and owner.stack != stack.id:
                    found[(stack.id, owner.stack)].append(owner)
        return found

    def resolve(self, stack: StackInfo, value: Any) -> list[Resource]:
        """The resources an ARN value (Ref, GetAtt, ImportValue, string or join) points at."""
        local = _ref_id(value)
        if local and local in stack.resources:
            return [stack.resources[local]]
        if isinstance(value, dict) and "Fn::ImportValue" in value:
            owner = self.exports.get(value["Fn::ImportValue"]) if isinstance(value["Fn::ImportValue"], str) else None
            return [owner] if owner is not None else []
        text = json.dumps(value, sort_keys=True)
        hits = []
        for (resource_type, name), owners in sorted(self.by_name.items()):
            context = REFERENCE_CONTEXT.get(resource_type)
            if context and re.search(f"{context}{re.escape(name)}(?![A-Za-z0-9_-])", text):
                hits.extend(owners)
        return hits

    # -- flows --
    def flows(self) -> list[Flow]:
        known = self._known_flows()
        events = self._event_flows()
        flows = list(known)
        for event in events:
            twin = next((k for k in known if (k.source, k.target) == (event.source, event.target) and (
                k.source_resources & event.source_resources or k.target_resources & event.target_resources)), None)
            if twin is not None:
                twin.text += f" [{event.text.split(' [', 1)[1]}" if " [" in event.text else ""
            else:
                flows.append(event)
        flows += self._uses()
        for number, flow in enumerate(flows, start=1):
            flow.number = number
        return flows

    def _pick(self, predicate: Callable[[Resource], bool]) -> list[Resource]:
        return [r for r in self.env.resources() if predicate(r)]

    def _known_flows(self) -> list[Flow]:
        env = self.env
        stacks_with_registry = {r.stack for r in self.env.resources() if r.type == "AWS::SageMaker::ModelPackageGroup"}

        def named(resource_type: str, pattern: str) -> Callable[[Resource], bool]:
            return lambda r: r.type == resource_type and bool(r.name) and re.search(pattern, r.label) is not None

        def training_pipeline(r: Resource) -> bool:
            return r.type == "AWS::SageMaker::Pipeline" and r.stack in stacks_with_registry

        bucket = lambda purpose: named("AWS::S3::Bucket", rf"^{purpose}$")  # noqa: E731
        function = lambda suffix: named("AWS::Lambda::Function", rf"(^|-){suffix}$")  # noqa: E731
        endpoints = ENDPOINTS if self.endpoint_names else None
        vector_index = lambda r: r.type in ("AWS::S3Vectors::Index", "AWS::OpenSearchServerless::Collection")  # noqa: E731
        feature_group = lambda r: r.type == "AWS::SageMaker::FeatureGroup"  # noqa: E731
        steps: list[tuple[str, Any, Any, bool | str]] = [
            # (label, source, target, evidence needed: a reference between the two stacks, or
            # "s3-uri": the target bucket named as an s3:// destination, i.e. data capture is on)
            ("training data", bucket("raw-data"), training_pipeline, False),
            ("training data from the offline store", feature_group, training_pipeline, True),
            ("registers model packages", training_pipeline, lambda r: r.type == "AWS::SageMaker::ModelPackageGroup", False),
            ("approved model package -> deployer", lambda r: r.type == "AWS::SageMaker::ModelPackageGroup",
             function("endpoint-deployer"), False),
            ("creates and updates endpoints (blue/green)", function("endpoint-deployer"), endpoints, False),
            ("inference requests", function("inference-api"), endpoints, False),
            ("online features", feature_group, function("inference-api"), True),
            ("variant weights of experiments", function("experiment-controller"), endpoints, False),
            ("data capture (requests and predictions)", endpoints, bucket("data-capture"), "s3-uri"),
            ("ground truth records", function("feedback-api"), named("AWS::KinesisFirehose::DeliveryStream", "ground-truth"), False),
            ("ground truth delivered", named("AWS::KinesisFirehose::DeliveryStream", "ground-truth"), bucket("feedback"), False),
            ("capture window", bucket("data-capture"), named("AWS::SageMaker::Pipeline", r"-monitoring$"), False),
            ("ground truth labels", bucket("feedback"), named("AWS::SageMaker::Pipeline", r"-monitoring$"), False),
            ("drift / quality ALARM", named("AWS::CloudWatch::Alarm", r"-(drift|quality)$"), function("retraining-trigger"), False),
            ("starts retraining", function("retraining-trigger"), training_pipeline, False),
            ("documents to index (search/)", bucket("raw-data"), function("search-indexer"), False),
            ("embeddings", function("search-indexer"), vector_index, False),
            ("nearest-neighbour queries", function("search-api"), vector_index, False),
        ]
        flows: list[Flow] = []
        for label, source, target, needs_reference in steps:
            sources = [ENDPOINTS] if source == ENDPOINTS else (self._pick(source) if source else [])
            targets = [ENDPOINTS] if target == ENDPOINTS else (self._pick(target) if target else [])
            if not sources or not targets:
                continue
            pairs: dict[tuple[str, str], tuple[list, list]] = {}
            for s in sources:
                for t in targets:
                    s_node = s if s == ENDPOINTS else s.stack
                    t_node = t if t == ENDPOINTS else t.stack
                    if needs_reference == "s3-uri":  # an endpoint spec names the bucket as its destination
                        if not any(f"s3://{t.name}/" in text for text in self.texts.values()):
                            continue
                    elif needs_reference and not self._references(s_node, t_node):
                        continue
                    entry = pairs.setdefault((s_node, t_node), ([], []))
                    if s not in entry[0]:
                        entry[0].append(s)
                    if t not in entry[1]:
                        entry[1].append(t)
            for (s_node, t_node), (s_list, t_list) in pairs.items():
                text = f"{label}: {self._names(s_list)} -> {self._names(t_list)}"
                flows.append(Flow(s_node, t_node, "data", text,
                                  source_resources=frozenset(r.key for r in s_list if r != ENDPOINTS),
                                  target_resources=frozenset(r.key for r in t_list if r != ENDPOINTS)))
        return flows

    def _references(self, a: str, b: str) -> bool:
        return bool(self.references.get((a, b)) or self.references.get((b, a)))

    def _names(self, resources: list) -> str:
        names = []
        for r in resources:
            if r == ENDPOINTS:
                names.append("endpoint" + ("s " if len(self.endpoint_names) > 1 else " ")
                             + ", ".join(short_name(self.env, n) for n in self.endpoint_names))
            else:
                noun = NOUNS.get(r.type, "")
                names.append(f"{noun} {r.label}".strip() if noun in ("bucket", "pipeline", "model package group", "feature group") else r.label)
        return ", ".join(sorted(dict.fromkeys(names)))

    def _event_flows(self) -> list[Flow]:
        flows = []
        for stack in self.env.stacks:
            for rule in _of_type(stack, "AWS::Events::Rule"):
                pattern = rule.properties.get("EventPattern")
                if not pattern:
                    continue
                producer = self._producer(pattern)
                if producer is None:
                    continue
                node, produced_by, what = producer
                for target in rule.properties.get("Targets", []):
                    consumers = self.resolve(stack, target.get("Arn"))
                    for consumer in consumers:
                        final = self._consumer_of_queue(consumer)
                        shown = f"{consumer.label} queue -> {final.label}" if final else consumer.label
                        flows.append(Flow(node, consumer.stack, "event",
                                          f"{what} -> {shown} [EventBridge rule {rule.label}]",
                                          source_resources=frozenset(r.key for r in produced_by),
                                          target_resources=frozenset({consumer.key} | ({final.key} if final else set()))))
        return flows

    def _consumer_of_queue(self, queue: Resource) -> Resource | None:
        if queue.type != "AWS::SQS::Queue":
            return None
        stack = self.env.stack(queue.stack)
        for mapping in _of_type(stack, "AWS::Lambda::EventSourceMapping"):
            if _ref_id(mapping.properties.get("EventSourceArn")) == queue.logical_id:
                function = _ref_id(mapping.properties.get("FunctionName"))
                return stack.resources.get(function) if function else None
        return None

    def _producer(self, pattern: dict) -> tuple[str, list[Resource], str] | None:
        """(node, producing resources, what happens) of an event pattern."""
        sources = pattern.get("source", [])
        detail_types = pattern.get("detail-type", [])
        detail = pattern.get("detail") or {}

        def owned(resource_type: str, names: list) -> list[Resource]:
            return [r for n in names if isinstance(n, str) for r in self.by_name.get((resource_type, n), [])]

        if "aws.s3" in sources:
            buckets = owned("AWS::S3::Bucket", ((detail.get("bucket") or {}).get("name") or []))
            if not buckets:
                return None
            keys = (detail.get("object") or {}).get("key") or []
            filters = [k.get("prefix", "") + "*" if "prefix" in k else k.get("wildcard", "") for k in keys
                       if isinstance(k, dict)]
            where = f" ({', '.join(filters)})" if filters else ""
            return buckets[0].stack, buckets, f"object created in {self._names(buckets)}{where}"
        if "aws.sagemaker" in sources and "SageMaker Model Package State Change" in detail_types:
            groups = owned("AWS::SageMaker::ModelPackageGroup", detail.get("ModelPackageGroupName") or [])
            if not groups:
                return None
            statuses = "/".join(detail.get("ModelApprovalStatus") or ["changed"])
            return groups[0].stack, groups, f"model package {statuses} in {self._names(groups)}"
        if "aws.sagemaker" in sources and "SageMaker Endpoint State Change" in detail_types:
            if not self.endpoint_names:
                return None
            statuses = "/".join(detail.get("EndpointStatus") or ["changed"])
            return ENDPOINTS, [], f"endpoint {statuses}"
        if "aws.cloudwatch" in sources:
            alarms = owned("AWS::CloudWatch::Alarm", detail.get("alarmName") or [])
            if not alarms:
                return None
            state = "/".join((detail.get("state") or {}).get("value") or ["changed"])
            return alarms[0].stack, alarms, f"alarms {', '.join(sorted(a.label for a in alarms))} in {state}"
        return None

    def _uses(self) -> list[Flow]:
        used: dict[tuple[str, str], dict[tuple[str, str], Resource]] = defaultdict(dict)
        for pair, owners in list(self._imports().items()) + list(self.references.items()):
            for owner in owners:
                used[pair][owner.key] = owner
        order = {node: index for index, node in enumerate(self.nodes)}
        flows = []
        for (user, owner) in sorted(used, key=lambda pair: (order[pair[0]], order[pair[1]])):
            resources = [used[(user, owner)][key] for key in sorted(used[(user, owner)])]
            items = [(NOUNS.get(r.type, r.type.split("::")[-1]), r.label if r.name else None) for r in resources]
            flows.append(Flow(user, owner, "uses", f"uses {_describe_used(items)}",
                              target_resources=frozenset(r.key for r in resources)))
        return flows


def _find_imports(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        if "Fn::ImportValue" in value and isinstance(value["Fn::ImportValue"], str):
            yield value["Fn::ImportValue"]
        for item in value.values():
            yield from _find_imports(item)
    elif isinstance(value, list):
        for item in value:
            yield from _find_imports(item)


# --- layout and drawing -------------------------------------------------------------------------

# Grid cell (column, row) of each node: the loop reads clockwise from Training.
CELLS = {
    "Training": (0, 0), "Serving": (1, 0), ENDPOINTS: (2, 0),
    "Monitoring": (0, 1), "Foundation": (1, 1), "Api": (2, 1),
    "FeatureStore": (1, 2),
}
COLORS = {  # header fill of each box
    "Foundation": "#e8edf5", "FeatureStore": "#e3f4f1", "Training": "#efe8f7", "Serving": "#e6f4e6",
    "Api": "#fdf0e1", "Monitoring": "#fbe7e7", ENDPOINTS: "#ffffff",
}
STYLES = {  # stroke, dash, width, legend text
    "data": ("#1f5fbf", "", 2.0, "data flow (by resource names)"),
    "event": ("#c2620a", "", 2.0, "EventBridge rule: event pattern -> target"),
    "uses": ("#7d8590", "5 4", 1.3, "uses (Fn::ImportValue, ARNs and names of another stack's resources)"),
}
MONO = "ui-monospace, SFMono-Regular, Menlo, Consolas, 'DejaVu Sans Mono', monospace"
SANS = "-apple-system, 'Segoe UI', Helvetica, Arial, sans-serif"
FONT = 11.0  # body text, monospace: 0.6 em per character
CHAR = FONT * 0.6
LINE = 15.0
MARGIN = 30.0
COL_W = 450.0
COL_GAP = 150.0
ROW_GAP = 110.0
PAD = 12.0
TITLE_H = 44.0
HEADER_H = 78.0


def _fmt(value: float) -> str:
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _wrap(prefix: str, items: list[str], width: int, one_per_line: bool) -> list[tuple[str, str]]:
    """Lines of (bold prefix, text) fitting ``width`` characters."""
    if one_per_line:
        lines = [(prefix, "")] if items else []
        for item in items:
            lines += [("", chunk) for chunk in textwrap.wrap(item, width - 2, initial_indent="  ", subsequent_indent="    ",
                                                              break_on_hyphens=False) or ["  "]]
        return lines
    text = ", ".join(items)
    wrapped = textwrap.wrap(prefix + text, width, subsequent_indent="  ", break_on_hyphens=False) or [prefix]
    first = wrapped[0]
    return [(prefix, first[len(prefix):])] + [("", line) for line in wrapped[1:]]


@dataclass
class Box:
    node: str
    title: str
    subtitle: str
    lines: list[tuple[str, str]]
    dashed: bool = False
    col: int = 0
    row: int = 0
    x: float = 0.0
    y: float = 0.0
    w: float = COL_W
    h: float = 0.0

    @property
    def content_height(self) -> float:
        return TITLE_H + PAD + LINE * len(self.lines) + PAD / 2


def _boxes(env: Environment, graph: Graph) -> list[Box]:
    width = int((COL_W - 2 * PAD) / CHAR)
    boxes = []
    for stack in env.stacks:
        groups, covered = groups_of(env, stack)
        lines: list[tuple[str, str]] = []
        for group in groups:
            count = group.count if group.count is not None else len(group.items)
            label = group.label if group.label == "CloudWatch alarms" else f"{group.label} ({count})"
            if group.label == "CloudWatch alarms":
                lines.append((f"{label}: ", group.items[0]))
                continue
            lines += _wrap(f"{label}: ", group.items, width, group.one_per_line)
        rest = other_resources(stack, covered)
        if rest:
            lines += [("", line) for line in textwrap.wrap(rest, width, subsequent_indent="  ")]
        total = len(stack.resources)
        boxes.append(Box(stack.id, stack.id, f"{stack.stack_name} · {total} resources", lines))
    if graph.endpoint_names:
        deployers = [r.label for r in env.resources() if r.type == "AWS::Lambda::Function" and r.name
                     and r.label.endswith("endpoint-deployer")]
        names = [short_name(env, n) for n in graph.endpoint_names]
        lines = _wrap(f"Endpoints ({len(names)}): ", names, width, False)
        lines += [("", line) for line in textwrap.wrap(
            "Not CloudFormation resources: created, updated and deleted at run time by "
            + (", ".join(deployers) or "the deployer") + " (Serving) when a model package is approved; "
            "variants champion and challenger.", width)]
        boxes.append(Box(ENDPOINTS, "SageMaker endpoints", "run time", lines, dashed=True))
    return boxes


def _place(boxes: list[Box]) -> tuple[float, float, dict[int, float], dict[int, float]]:
    """Grid positions; returns (width, height of the grid, row tops, row heights)."""
    used = set()
    for box in boxes:
        if box.node in CELLS:
            box.col, box.row = CELLS[box.node]
            used.add((box.col, box.row))
    free = ((c, r) for r in range(3, 100) for c in range(3))
    spare = [cell for cell in ((0, 2), (2, 2)) if cell not in used]
    for box in boxes:
        if box.node not in CELLS:
            box.col, box.row = spare.pop(0) if spare else next(free)
    rows = sorted({b.row for b in boxes})
    heights = {r: max(b.content_height for b in boxes if b.row == r) for r in rows}
    tops: dict[int, float] = {}
    y = HEADER_H
    for r in rows:
        tops[r] = y
        y += heights[r] + ROW_GAP
    for box in boxes:
        box.x = MARGIN + box.col * (COL_W + COL_GAP)
        box.y = tops[box.row]
        box.h = heights[box.row]
    width = 2 * MARGIN + 3 * COL_W + 2 * COL_GAP
    return width, y - ROW_GAP, tops, heights


@dataclass
class Arrow:
    source: Box
    target: Box
    style: str
    numbers: list[int]
    points: list[tuple[float, float]] = field(default_factory=list)


def _arrows(flows: list[Flow], boxes: dict[str, Box]) -> list[Arrow]:
    grouped: dict[tuple[str, str], list[Flow]] = defaultdict(list)
    for flow in flows:
        if flow.source != flow.target and flow.source in boxes and flow.target in boxes:
            grouped[(flow.source, flow.target)].append(flow)
    rank = {"data": 0, "event": 1, "uses": 2}
    arrows = []
    for (source, target), members in grouped.items():
        style = min((f.style for f in members), key=rank.__getitem__)
        arrows.append(Arrow(boxes[source], boxes[target], style, sorted(f.number for f in members)))
    arrows.sort(key=lambda a: a.numbers[0])
    _route(arrows)
    return arrows


def _route(arrows: list[Arrow]) -> None:
    """Orthogonal routes through the gaps between boxes, anchors spread along the box sides."""
    ends: dict[tuple[str, str], list[tuple[float, Arrow, str]]] = defaultdict(list)  # (node, side) -> ends
    plans = []
    for arrow in arrows:
        a, b = arrow.source, arrow.target
        dc, dr = b.col - a.col, b.row - a.row
        if dc == 0:
            if abs(dr) == 1:
                sides = ("bottom", "top") if dr > 0 else ("top", "bottom")
                gap = ("row", min(a.row, b.row))
            else:
                sides = ("right", "right")
                gap = ("col", a.col)
        elif abs(dc) == 1:
            sides = ("right", "left") if dc > 0 else ("left", "right")
            gap = ("col", min(a.col, b.col))
        else:
            if dr == 0:
                sides = ("bottom", "bottom")
                gap = ("row", a.row)
            else:
                sides = ("bottom", "top") if dr > 0 else ("top", "bottom")
                gap = ("row", min(a.row, b.row))
        plans.append((arrow, sides, gap))
        ends[(a.node, sides[0])].append(((b.x + b.w / 2, b.y + b.h / 2), arrow, "source"))
        ends[(b.node, sides[1])].append(((a.x + a.w / 2, a.y + a.h / 2), arrow, "target"))

    anchors: dict[tuple[int, str], tuple[float, float]] = {}
    for (node, side), items in ends.items():
        box = items[0][1].source if items[0][2] == "source" else items[0][1].target
        horizontal = side in ("top", "bottom")
        items.sort(key=lambda item: ((item[0][0] if horizontal else item[0][1]), item[1].numbers[0], item[2]))
        count = len(items)
        for index, (_, arrow, end) in enumerate(items):
            if horizontal:
                span_start, span = box.x + 40, box.w - 80
                pos = span_start + span * (index + 1) / (count + 1)
                point = (pos, box.y if side == "top" else box.y + box.h)
            else:
                span_start, span = box.y + TITLE_H, box.h - TITLE_H - 20
                pos = span_start + span * (index + 1) / (count + 1)
                point = (box.x + box.w if side == "right" else box.x, pos)
            anchors[(id(arrow), end)] = point

    lanes: dict[tuple[str, int], list[Arrow]] = defaultdict(list)
    for arrow, _, gap in plans:
        lanes[gap].append(arrow)
    lane_pos: dict[int, float] = {}
    for (kind, index), members in lanes.items():
        members.sort(key=lambda a: a.numbers[0])
        for order, arrow in enumerate(members):
            share = (order + 1) / (len(members) + 1)
            if kind == "col":
                start = MARGIN + index * (COL_W + COL_GAP) + COL_W
                if arrow.source.col == arrow.target.col:  # a detour right of its column
                    start = arrow.source.x + arrow.source.w
                lane_pos[id(arrow)] = start + COL_GAP * share
            else:
                row_boxes = [arrow.source, arrow.target]
                bottom = max(b.y + b.h for b in row_boxes if b.row == index)
                lane_pos[id(arrow)] = bottom + ROW_GAP * share

    for arrow, sides, gap in plans:
        x1, y1 = anchors[(id(arrow), "source")]
        x2, y2 = anchors[(id(arrow), "target")]
        lane = lane_pos[id(arrow)]
        if gap[0] == "col":
            arrow.points = [(x1, y1), (lane, y1), (lane, y2), (x2, y2)]
        else:
            arrow.points = [(x1, y1), (x1, lane), (x2, lane), (x2, y2)]


def _crosses(rect: tuple[float, float, float, float], segment: tuple[tuple[float, float], tuple[float, float]]) -> bool:
    (x1, y1), (x2, y2) = segment
    left, right, top, bottom = min(x1, x2), max(x1, x2), min(y1, y2), max(y1, y2)
    return left <= rect[2] and rect[0] <= right and top <= rect[3] and rect[1] <= bottom


def _badge_spot(arrow: Arrow, taken: list[tuple[float, float, float, float]], width: float,
                others: list[tuple[tuple[float, float], tuple[float, float]]]) -> tuple[float, float]:
    """A spot on the arrow's middle run clear of other badges and other arrows' lines."""
    (xa, ya), (xb, yb) = arrow.points[1], arrow.points[2]
    candidates = [0.5 + step * sign for step in (0.0, 0.1, 0.2, 0.3, 0.4) for sign in (-1, 1)][1:]
    best = None
    for t in candidates:
        x, y = xa + (xb - xa) * t, ya + (yb - ya) * t
        rect = (x - width / 2 - 3, y - 11, x + width / 2 + 3, y + 11)
        if any(rect[0] < r[2] and r[0] < rect[2] and rect[1] < r[3] and r[1] < rect[3] for r in taken):
            continue
        if best is None:
            best = (x, y, rect)
        if not any(_crosses(rect, segment) for segment in others):
            best = (x, y, rect)
            break
    if best is None:
        x, y = xa + (xb - xa) * 0.5, ya + (yb - ya) * 0.5
        best = (x, y, (x - width / 2, y - 10, x + width / 2, y + 10))
    taken.append(best[2])
    return best[0], best[1]


def _node_title(boxes: dict[str, Box], node: str) -> str:
    return boxes[node].title if node in boxes else node


def render(env: Environment) -> str:
    graph = Graph(env)
    flows = graph.flows()
    box_list = _boxes(env, graph)
    width, grid_bottom, _, _ = _place(box_list)
    boxes = {b.node: b for b in box_list}
    arrows = _arrows(flows, boxes)

    # legend: the key, then the numbered flows in two columns
    legend_top = grid_bottom + 50
    column_chars = int(((width - 2 * MARGIN - 40) / 2) / CHAR)
    entries: list[tuple[Flow, list[str]]] = []
    for flow in flows:
        inside = flow.source == flow.target
        route = (f"inside {_node_title(boxes, flow.source)}" if inside
                 else f"{_node_title(boxes, flow.source)} -> {_node_title(boxes, flow.target)}")
        text = f"{flow.number:>2}. {route}: {flow.text}"
        entries.append((flow, textwrap.wrap(text, column_chars, subsequent_indent="    ", break_on_hyphens=False)))
    total_lines = sum(len(lines) for _, lines in entries)
    half, count, split = total_lines / 2, 0, len(entries)
    for index, (_, lines) in enumerate(entries):
        if count >= half:
            split = index
            break
        count += len(lines)
    columns = [entries[:split], entries[split:]]
    flows_top = legend_top + 64
    legend_height = 64 + LINE * max(sum(len(lines) for _, lines in column) for column in columns) + 20
    height = legend_top + legend_height + MARGIN

    out: list[str] = []
    add = out.append
    add(f'<svg xmlns="http://www.w3.org/2000/svg" width="{_fmt(width)}" height="{_fmt(height)}" '
        f'viewBox="0 0 {_fmt(width)} {_fmt(height)}" font-family="{escape(SANS, {chr(39): "&apos;"})}">')
    add(f"<title>MLOps platform architecture: {escape(env.name)}</title>")
    add("<defs>")
    for style, (color, _dash, _width, _text) in STYLES.items():
        add(f'<marker id="arrow-{style}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
            f'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="{color}"/></marker>')
    add("<style>"
        f".mono{{font-family:{MONO};font-size:{_fmt(FONT)}px;fill:#24292f}}"
        ".k{font-weight:bold}"
        ".title{font-size:15px;font-weight:bold;fill:#1f2328}"
        ".sub{font-size:11px;fill:#57606a}"
        ".badge{font-size:11px;font-weight:bold;fill:#ffffff}"
        "</style>")
    add("</defs>")
    add(f'<rect x="0" y="0" width="{_fmt(width)}" height="{_fmt(height)}" fill="#ffffff"/>')
    where = f" (account {env.account}, {env.region})" if env.account else ""
    add(f'<text x="{_fmt(MARGIN)}" y="36" font-size="20" font-weight="bold" fill="#1f2328">'
        f"MLOps platform: {escape(env.name)}{escape(where)}</text>")
    add(f'<text x="{_fmt(MARGIN)}" y="58" class="sub">Generated from the synthesized cloud assembly by '
        f"{escape(COMMAND)}; do not edit. Names are shown without the prefix {escape(env.prefix or '-')}"
        f"{escape(f' and the suffix -{env.account}-{env.region}' if env.account else '')}.</text>")

    for box in box_list:
        add(f'<g id="node-{escape(box.node)}">')
        dash = ' stroke-dasharray="7 5"' if box.dashed else ""
        add(f'<rect x="{_fmt(box.x)}" y="{_fmt(box.y)}" width="{_fmt(box.w)}" height="{_fmt(box.h)}" rx="8" '
            f'fill="#ffffff" stroke="#57606a" stroke-width="1.4"{dash}/>')
        if not box.dashed:
            add(f'<path d="M {_fmt(box.x + 0.7)} {_fmt(box.y + TITLE_H)} V {_fmt(box.y + 8)} '
                f'Q {_fmt(box.x + 0.7)} {_fmt(box.y + 0.7)} {_fmt(box.x + 8)} {_fmt(box.y + 0.7)} '
                f'H {_fmt(box.x + box.w - 8)} Q {_fmt(box.x + box.w - 0.7)} {_fmt(box.y + 0.7)} '
                f'{_fmt(box.x + box.w - 0.7)} {_fmt(box.y + 8)} V {_fmt(box.y + TITLE_H)} Z" '
                f'fill="{COLORS.get(box.node, "#f3f4f6")}"/>')
            add(f'<line x1="{_fmt(box.x)}" y1="{_fmt(box.y + TITLE_H)}" x2="{_fmt(box.x + box.w)}" '
                f'y2="{_fmt(box.y + TITLE_H)}" stroke="#d0d7de"/>')
        add(f'<text x="{_fmt(box.x + PAD)}" y="{_fmt(box.y + 20)}" class="title">{escape(box.title)}</text>')
        add(f'<text x="{_fmt(box.x + PAD)}" y="{_fmt(box.y + 36)}" class="sub">{escape(box.subtitle)}</text>')
        y = box.y + TITLE_H + PAD + FONT
        for bold, text in box.lines:
            parts = (f'<tspan class="k">{escape(bold)}</tspan>' if bold else "") + escape(text)
            add(f'<text x="{_fmt(box.x + PAD)}" y="{_fmt(y)}" class="mono" xml:space="preserve">{parts}</text>')
            y += LINE
        add("</g>")

    taken: list[tuple[float, float, float, float]] = []
    badges = []
    for arrow in arrows:
        color, dash, stroke, _ = STYLES[arrow.style]
        path = " ".join(("M" if i == 0 else "L") + f" {_fmt(x)} {_fmt(y)}" for i, (x, y) in enumerate(arrow.points))
        dashes = f' stroke-dasharray="{dash}"' if dash else ""
        add(f'<path id="edge-{escape(arrow.source.node)}-{escape(arrow.target.node)}" class="edge {arrow.style}" '
            f'd="{path}" fill="none" stroke="{color}" stroke-width="{_fmt(stroke)}"{dashes} '
            f'marker-end="url(#arrow-{arrow.style})"/>')
        label = ",".join(str(n) for n in arrow.numbers)
        badge_w = max(20.0, len(label) * 7.0 + 10)
        others = [(other.points[i], other.points[i + 1]) for other in arrows if other is not arrow
                  for i in range(len(other.points) - 1)]
        x, y = _badge_spot(arrow, taken, badge_w, others)
        badges.append((x, y, badge_w, label, color))
    for x, y, badge_w, label, color in badges:  # badges above every line
        add(f'<g class="badge-group"><rect x="{_fmt(x - badge_w / 2)}" y="{_fmt(y - 9)}" width="{_fmt(badge_w)}" '
            f'height="18" rx="9" fill="{color}"/>'
            f'<text x="{_fmt(x)}" y="{_fmt(y + 4)}" text-anchor="middle" class="badge">{escape(label)}</text></g>')

    add('<g id="legend">')
    add(f'<line x1="{_fmt(MARGIN)}" y1="{_fmt(legend_top - 20)}" x2="{_fmt(width - MARGIN)}" '
        f'y2="{_fmt(legend_top - 20)}" stroke="#d0d7de"/>')
    add(f'<text x="{_fmt(MARGIN)}" y="{_fmt(legend_top + 4)}" class="title">Legend</text>')
    x = MARGIN + 80
    for style, (color, dash, stroke, text) in STYLES.items():
        dashes = f' stroke-dasharray="{dash}"' if dash else ""
        add(f'<line x1="{_fmt(x)}" y1="{_fmt(legend_top)}" x2="{_fmt(x + 40)}" y2="{_fmt(legend_top)}" '
            f'stroke="{color}" stroke-width="{_fmt(stroke)}"{dashes} marker-end="url(#arrow-{style})"/>')
        add(f'<text x="{_fmt(x + 50)}" y="{_fmt(legend_top + 4)}" class="sub">{escape(text)}</text>')
        x += 50 + len(text) * 6.2 + 30
    add(f'<rect x="{_fmt(x)}" y="{_fmt(legend_top - 8)}" width="40" height="16" rx="4" fill="none" '
        f'stroke="#57606a" stroke-dasharray="7 5"/>')
    add(f'<text x="{_fmt(x + 50)}" y="{_fmt(legend_top + 4)}" class="sub">created at run time, not by CloudFormation</text>')
    add(f'<text x="{_fmt(MARGIN)}" y="{_fmt(legend_top + 34)}" class="sub">Numbers on the arrows: the flows '
        f"below. A flow inside one stack has no arrow.</text>")
    for column_index, column in enumerate(columns):
        x = MARGIN + column_index * ((width - 2 * MARGIN) / 2 + 20)
        y = flows_top
        for flow, lines in column:
            color = STYLES[flow.style][0]
            for index, line in enumerate(lines):
                number, _, rest = line.partition(".") if index == 0 else ("", "", line)
                if index == 0:
                    text = (f'<tspan fill="{color}" class="k">{escape(number)}.</tspan>{escape(rest)}')
                else:
                    text = escape(line)
                add(f'<text x="{_fmt(x)}" y="{_fmt(y)}" class="mono" xml:space="preserve">{text}</text>')
                y += LINE
    add("</g>")
    add("</svg>")
    return "\n".join(out) + "\n"


def build_svg(assembly: Path, environment: str) -> str:
    return render(read_environment(assembly, environment))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assembly", type=Path, default=Path("cdk.out"), help="cloud assembly (default: cdk.out)")
    parser.add_argument("--environment", required=True, help="stage to draw, e.g. staging")
    parser.add_argument("--output", type=Path, default=Path("docs/architecture.svg"))
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 when the file differs from what would be generated")
    args = parser.parse_args(argv)
    try:
        svg = build_svg(args.assembly, args.environment)
    except AssemblyError as error:
        print(error, file=sys.stderr)
        return 1
    current = args.output.read_text(encoding="utf-8") if args.output.exists() else None
    if args.check:
        if current != svg:
            print(f"{args.output} is out of date with the synthesized app; run `make docs`", file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    if current != svg:
        args.output.write_text(svg, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
