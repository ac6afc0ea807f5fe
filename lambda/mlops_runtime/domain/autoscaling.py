"""Autoscaling of the deployer's endpoints: scaling specs, endpoint state-change events, the pure planner.

No boto3, no I/O (the scaler's settings, ``settings.endpoint_scaler.ScalerSettings``, hold a :data:`ScalingEntry`
per endpoint). CloudFormation cannot own the scalable targets: the deployer creates the endpoints
at approval time, after the stack deployed, and a scalable target needs its variant to exist. So the ``endpoint_scaler`` Lambda applies scaling each time an endpoint
reaches ``InService`` ("SageMaker Endpoint State Change" event): it describes the endpoint, calls
:func:`plan_scaling` and hands the :class:`ScalingPlan` (Application Auto Scaling and CloudWatch
requests with their exact parameters) to ``adapters.autoscaling`` to apply.

What a plan does for an endpoint listed in the scaler's settings (endpoints not listed are left alone):

- every live **production** variant (``champion`` and, when present, a live ``challenger``) is
  registered as a scalable target (``endpoint/<name>/variant/<variant>``,
  ``sagemaker:variant:DesiredInstanceCount``) with ``min_instances``/``max_instances``. **The
  challenger gets the same bounds as the champion**: one scaling entry per endpoint, and a
  challenger that wins traffic (promotion by weight) must be able to carry it. A challenger started
  with fewer instances than ``min_instances`` is scaled out to ``min_instances`` (the plan notes it).
  Shadow variants are never registered (they answer no caller);
- ``realtime``: a target-tracking policy on the predefined ``SageMakerVariantInvocationsPerInstance``
  (invocations per minute per instance) with the spec's target and cooldowns;
- ``async``: a target-tracking policy on the customized metric ``ApproximateBacklogSizePerInstance``
  (``AWS/SageMaker``, dimension ``EndpointName``, ``Average``); with ``min_instances`` 0, also a
  step-scaling policy (+1 instance) triggered by a CloudWatch alarm on ``HasBacklogWithoutCapacity``,
  because target tracking cannot scale out from zero instances (no instance, no per-instance metric);
- scalable targets of the endpoint whose variant no longer runs (a dropped challenger, a challenger
  moved to shadow) are deregistered (their policies deleted first, and the backlog alarm);
- the scaler's own policies (names starting ``mlops-``) that the spec no longer asks for are deleted
  (e.g. the scale-out-from-zero policy after ``min_instances`` went from 0 to 1).

Register and put are upserts, so applying the same plan twice leaves the same registrations.

An endpoint that is not ``InService`` when described (the deployer started another update since the
event), not tagged by the deployer, gone, or of another kind than its spec says is skipped: the next
``IN_SERVICE`` event applies the scaling.

Blue/green updates and autoscaling: SageMaker refuses an ``UpdateEndpoint`` that changes the
instance type of, or removes, a variant registered for autoscaling, and recommends deleting the
policies and deregistering first. The deployer calls ``adapters.autoscaling.suspend_scaling`` (see
:func:`plan_suspension`) before each update; the ``IN_SERVICE`` event that ends the update
re-registers everything.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import AliasChoices, BaseModel, BeforeValidator, Field
from pydantic.dataclasses import dataclass as pydantic_dataclass

from mlops_runtime.domain.deployment import MANAGED_BY_TAG, MANAGED_BY_VALUE
from mlops_runtime.domain.validation import AWS, OURS, int_between, json_text, matching, parse_event
from mlops_runtime.domain.variant_kinds import BACKLOG, INVOCATIONS, KINDS as VARIANT_KINDS, ScalingDimension
from mlops_runtime.domain.variant_kinds import kind_of_endpoint

# The kinds that scale, each by its ``scaling`` dimension (``domain.variant_kinds``); this module
# holds the policies of each dimension (:data:`DIMENSIONS`).
DIMENSIONS = (INVOCATIONS, BACKLOG)
KINDS = tuple(tag for tag, kind in VARIANT_KINDS.items() if kind.scaling in DIMENSIONS)

SERVICE_NAMESPACE = "sagemaker"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
IN_SERVICE = "InService"

INVOCATIONS_METRIC = "SageMakerVariantInvocationsPerInstance"
BACKLOG_METRIC = "ApproximateBacklogSizePerInstance"
BACKLOG_WITHOUT_CAPACITY_METRIC = "HasBacklogWithoutCapacity"
METRIC_NAMESPACE = "AWS/SageMaker"

# Policies the scaler owns on a target; others (added by hand) are left alone.
POLICY_PREFIX = "mlops-"
INVOCATIONS_POLICY = "mlops-invocations-per-instance"
BACKLOG_POLICY = "mlops-backlog-per-instance"
SCALE_OUT_FROM_ZERO_POLICY = "mlops-scale-out-from-zero"
# CloudWatch alarm names are per account and region: endpoint and variant make them unique.
ALARM_PREFIX = "mlops-autoscaling-"

MAX_INSTANCES = 1000
MAX_COOLDOWN_S = 3600

EVENT_SOURCE = "aws.sagemaker"
EVENT_DETAIL_TYPE = "SageMaker Endpoint State Change"

_NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_ENDPOINT_ARN_RE = re.compile(r"^arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]*:\d{12}:endpoint/(?P<name>[^/]+)$")
_RESOURCE_ID_RE = re.compile(r"^endpoint/(?P<endpoint>[^/]+)/variant/(?P<variant>[^/]+)$")
EndpointName = matching(_NAME_RE, "an endpoint name (1-63 letters, digits and hyphens)")


# --- errors -------------------------------------------------------------------------------------


class InvalidScalingSpec(ValueError):
    """A scaling entry breaks a rule; ``field`` is its dotted path, ``reason`` says why."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}" if field else reason)


class InvalidEvent(ValueError):
    """The event is not a usable "SageMaker Endpoint State Change" event."""


# --- the scaling spec ---------------------------------------------------------------------------

Count = int_between(0, MAX_INSTANCES)
Cooldown = int_between(0, MAX_COOLDOWN_S)
Target = int_between(1, 1_000_000)


@pydantic_dataclass(frozen=True, config=OURS)
class _Entry:
    """The bounds and cooldowns of a scaling entry, whatever its kind."""

    min_instances: Count
    max_instances: int_between(1, MAX_INSTANCES)
    scale_in_cooldown_s: Cooldown
    scale_out_cooldown_s: Cooldown

    def __post_init__(self) -> None:
        if self.min_instances > self.max_instances:
            raise InvalidScalingSpec(
                "max_instances",
                f"must be at least min_instances ({self.max_instances} < {self.min_instances})",
            )


def dimension_of(kind: str) -> ScalingDimension:
    """The scaling dimension of a kind that scales (one of :data:`KINDS`)."""
    dimension = VARIANT_KINDS[kind].scaling
    if dimension not in DIMENSIONS:
        raise ValueError(f"{kind} variants do not scale (scaling kinds: {', '.join(KINDS)})")
    return dimension


def _entry_class(dimension: ScalingDimension) -> type | None:
    """The entry of the kinds scaling by ``dimension``: ``kind`` is one of them, the target in
    ``dimension.target_field``; ``min_instances`` at least the dimension's."""
    kinds = tuple(tag for tag in KINDS if VARIANT_KINDS[tag].scaling is dimension)
    if not kinds:
        return None
    zero = [tag for tag in KINDS if VARIANT_KINDS[tag].scaling.min_instances == 0]

    def __post_init__(self: Any) -> None:
        if self.min_instances < dimension.min_instances:
            raise InvalidScalingSpec(
                "min_instances",
                f"must be an integer from {dimension.min_instances} to {MAX_INSTANCES}, got {self.min_instances} "
                f"({self.kind} variants keep at least one instance; only {' and '.join(zero) or 'no kind'} "
                "scales to 0)",
            )
        _Entry.__post_init__(self)

    namespace = {
        "__annotations__": {dimension.target_field: Target, "kind": Literal[kinds]},
        "__post_init__": __post_init__,
        "__module__": __name__,
        "__qualname__": f"_{dimension.name.title()}Entry",
        "target": property(lambda self: getattr(self, dimension.target_field)),
    }
    return pydantic_dataclass(frozen=True, config=OURS)(type(f"_{dimension.name.title()}Entry", (_Entry,), namespace))


_ENTRIES = tuple(entry for entry in map(_entry_class, DIMENSIONS) if entry is not None)
# One endpoint's entry of the scaler's settings (``settings.endpoint_scaler.ScalerSettings``), tagged by ``kind``.
ScalingEntry = Annotated[Union[_ENTRIES], Field(discriminator="kind")]  # noqa: UP007


@dataclass(frozen=True)
class ScalingSpec:
    """How one endpoint scales (an entry of the scaler's settings, keyed by the full endpoint name).

    ``target`` is ``target_invocations_per_instance`` (realtime: invocations per minute per instance)
    or ``target_backlog_per_instance`` (async: queued requests per instance).
    """

    endpoint_name: str
    kind: str
    min_instances: int
    max_instances: int
    target: int
    scale_in_cooldown_s: int
    scale_out_cooldown_s: int

    @property
    def scales_from_zero(self) -> bool:
        return dimension_of(self.kind).min_instances == 0 and self.min_instances == 0

    @classmethod
    def of(cls, endpoint_name: str, entry: Any) -> ScalingSpec:
        """The spec of a validated :data:`ScalingEntry`."""
        return cls(endpoint_name, entry.kind, entry.min_instances, entry.max_instances, entry.target,
                   entry.scale_in_cooldown_s, entry.scale_out_cooldown_s)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "min_instances": self.min_instances,
            "max_instances": self.max_instances,
            dimension_of(self.kind).target_field: self.target,
            "scale_in_cooldown_s": self.scale_in_cooldown_s,
            "scale_out_cooldown_s": self.scale_out_cooldown_s,
        }


def spec_for(specs: Mapping[str, ScalingSpec], endpoint_name: str) -> ScalingSpec | None:
    """The spec of ``endpoint_name``: exact match, else ignoring case (names from ARNs are lowercase)."""
    if endpoint_name in specs:
        return specs[endpoint_name]
    lowered = endpoint_name.lower()
    return next((spec for name, spec in specs.items() if name.lower() == lowered), None)


# --- the event ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EndpointStateChange:
    """What the scaler reads from a "SageMaker Endpoint State Change" event.

    The documented shape: ``{"source": "aws.sagemaker", "detail-type": "SageMaker Endpoint State
    Change", "resources": ["arn:...:endpoint/<lowercase name>"], "detail": {"EndpointName",
    "EndpointArn", "EndpointConfigName", "EndpointStatus": "IN_SERVICE", "ProductionVariants", ...}}``.
    Tolerated: ``EndpointStatus`` as ``IN_SERVICE``, ``InService`` or ``in-service``; the name taken
    from ``EndpointArn`` or ``resources`` when ``EndpointName`` is missing (lowercase then); a
    ``detail`` delivered as a JSON string; missing ``source``/``detail-type`` (a test invocation).
    """

    endpoint_name: str
    status: str
    event_id: str | None = None

    @property
    def in_service(self) -> bool:
        return _normalized_status(self.status) == "inservice"

    @classmethod
    def from_eventbridge(cls, event: object) -> EndpointStateChange:
        change = parse_event(_StateChangeEvent, event, InvalidEvent)
        detail = change.detail
        name = detail.EndpointName
        if not name:
            arns = [detail.EndpointArn, *change.resources]
            name = next((_name_from_arn(arn) for arn in arns if _name_from_arn(arn)), None)
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise InvalidEvent(f"no valid endpoint name in the event (EndpointName={name!r})")
        return cls(endpoint_name=name, status=detail.EndpointStatus, event_id=change.id)


class _StateChangeDetail(BaseModel):
    model_config = AWS

    EndpointName: str | None = Field(None, validation_alias=AliasChoices("EndpointName", "endpointName"))
    EndpointArn: str | None = None
    EndpointStatus: str = Field(min_length=1, validation_alias=AliasChoices("EndpointStatus", "endpointStatus"))


class _StateChangeEvent(BaseModel):
    """The envelope's ``source`` and ``detail-type`` may be missing (a test invocation), not wrong."""

    model_config = AWS

    source: Literal[EVENT_SOURCE] | None = None
    detail_type: Literal[EVENT_DETAIL_TYPE] | None = Field(None, alias="detail-type")
    id: str | None = None
    resources: list[str] = []
    detail: Annotated[_StateChangeDetail, BeforeValidator(json_text)]


def _normalized_status(status: str) -> str:
    return re.sub(r"[^a-z]", "", status.lower())


def _name_from_arn(arn: object) -> str | None:
    if not isinstance(arn, str):
        return None
    match = _ENDPOINT_ARN_RE.match(arn)
    return match.group("name") if match else None


# --- the endpoint as described ------------------------------------------------------------------


@dataclass(frozen=True)
class LiveVariant:
    """A production variant as DescribeEndpoint reports it."""

    name: str
    current_instance_count: int | None = None
    desired_instance_count: int | None = None


@dataclass(frozen=True)
class EndpointDescription:
    """What DescribeEndpoint, DescribeEndpointConfig and the endpoint's tags say, for scaling."""

    name: str
    status: str
    kind: str
    variants: tuple[LiveVariant, ...]
    shadow_variant_names: tuple[str, ...] = ()
    managed: bool = True

    def variant(self, name: str) -> LiveVariant | None:
        return next((variant for variant in self.variants if variant.name == name), None)

    @classmethod
    def from_descriptions(
        cls, endpoint: Mapping[str, Any], config: Mapping[str, Any] | None, tags: Mapping[str, str]
    ) -> EndpointDescription:
        """Live variants and counts from the endpoint; the kind from the endpoint and its config."""
        config = config or {}
        configured = {v.get("VariantName"): v for v in config.get("ProductionVariants") or ()}
        live = list(endpoint.get("ProductionVariants") or ()) or list(configured.values())
        variants = []
        for variant in live:
            name = variant.get("VariantName")
            if not name:
                continue
            variants.append(
                LiveVariant(
                    name=name,
                    current_instance_count=variant.get("CurrentInstanceCount"),
                    desired_instance_count=variant.get("DesiredInstanceCount"),
                )
            )
        shadow_variants = (
            endpoint.get("ShadowProductionVariants") or config.get("ShadowProductionVariants") or ()
        )
        shadows = [v.get("VariantName") for v in shadow_variants if v.get("VariantName")]
        return cls(
            name=endpoint["EndpointName"],
            status=endpoint.get("EndpointStatus", ""),
            kind=kind_of_endpoint(endpoint, config),
            variants=tuple(variants),
            shadow_variant_names=tuple(shadows),
            managed=tags.get(MANAGED_BY_TAG) == MANAGED_BY_VALUE,
        )


# --- requests -----------------------------------------------------------------------------------


def resource_id(endpoint_name: str, variant_name: str) -> str:
    """Application Auto Scaling's id of a SageMaker variant."""
    return f"endpoint/{endpoint_name}/variant/{variant_name}"


def parse_resource_id(value: str) -> tuple[str, str] | None:
    """``endpoint/<name>/variant/<variant>`` -> (name, variant); ``None`` for anything else."""
    match = _RESOURCE_ID_RE.match(value or "")
    return (match.group("endpoint"), match.group("variant")) if match else None


def backlog_alarm_name(endpoint_name: str, variant_name: str) -> str:
    """The scale-out-from-zero alarm of an async variant (unique per account and region)."""
    return f"{ALARM_PREFIX}{endpoint_name}-{variant_name}-backlog-without-capacity"


@dataclass(frozen=True)
class ScalingPolicy:
    """One ``PutScalingPolicy`` for a variant."""

    name: str
    policy_type: str  # TargetTrackingScaling | StepScaling
    configuration: Mapping[str, Any]

    _CONFIG_KEYS: ClassVar[dict[str, str]] = {
        "TargetTrackingScaling": "TargetTrackingScalingPolicyConfiguration",
        "StepScaling": "StepScalingPolicyConfiguration",
    }

    def request(self, target_id: str) -> dict[str, Any]:
        return {
            "PolicyName": self.name,
            "ServiceNamespace": SERVICE_NAMESPACE,
            "ResourceId": target_id,
            "ScalableDimension": SCALABLE_DIMENSION,
            "PolicyType": self.policy_type,
            self._CONFIG_KEYS[self.policy_type]: _plain(self.configuration),
        }

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.policy_type, "configuration": _plain(self.configuration)}


@dataclass(frozen=True)
class BacklogAlarm:
    """The CloudWatch alarm that runs the step-scaling policy while requests wait and no instance runs.

    Values as in SageMaker's "scale an asynchronous endpoint to zero" guide: ``HasBacklogWithoutCapacity``
    (``AWS/SageMaker``, ``EndpointName``) averaged over a minute, >= 1 for 2 of 2 periods.
    """

    name: str
    endpoint_name: str
    policy_name: str = SCALE_OUT_FROM_ZERO_POLICY

    def request(self, policy_arn: str) -> dict[str, Any]:
        return {
            "AlarmName": self.name,
            "AlarmDescription": (
                f"Scale {self.endpoint_name} out from zero instances when requests wait "
                "(managed by the endpoint scaler; do not edit)"
            ),
            "Namespace": METRIC_NAMESPACE,
            "MetricName": BACKLOG_WITHOUT_CAPACITY_METRIC,
            "Dimensions": [{"Name": "EndpointName", "Value": self.endpoint_name}],
            "Statistic": "Average",
            "Period": 60,
            "EvaluationPeriods": 2,
            "DatapointsToAlarm": 2,
            "Threshold": 1.0,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "TreatMissingData": "missing",
            "AlarmActions": [policy_arn],
        }


@dataclass(frozen=True)
class VariantScaling:
    """Register one variant and put its policies (and the backlog alarm)."""

    endpoint_name: str
    variant_name: str
    min_capacity: int
    max_capacity: int
    policies: tuple[ScalingPolicy, ...]
    alarm: BacklogAlarm | None = None

    @property
    def resource_id(self) -> str:
        return resource_id(self.endpoint_name, self.variant_name)

    def register_request(self) -> dict[str, Any]:
        return {
            "ServiceNamespace": SERVICE_NAMESPACE,
            "ResourceId": self.resource_id,
            "ScalableDimension": SCALABLE_DIMENSION,
            "MinCapacity": self.min_capacity,
            "MaxCapacity": self.max_capacity,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant_name,
            "resource_id": self.resource_id,
            "min_capacity": self.min_capacity,
            "max_capacity": self.max_capacity,
            "policies": [policy.to_dict() for policy in self.policies],
            "alarm": self.alarm.name if self.alarm else None,
        }


@dataclass(frozen=True)
class Deregistration:
    """Delete a target's policies (all of them, as SageMaker asks before an update), then deregister it."""

    resource_id: str
    policy_names: tuple[str, ...] = ()

    def deregister_request(self) -> dict[str, Any]:
        return {
            "ServiceNamespace": SERVICE_NAMESPACE,
            "ResourceId": self.resource_id,
            "ScalableDimension": SCALABLE_DIMENSION,
        }

    def delete_policy_requests(self) -> list[dict[str, Any]]:
        return [_delete_policy_request(self.resource_id, name) for name in self.policy_names]


def _delete_policy_request(target_id: str, policy_name: str) -> dict[str, Any]:
    return {
        "PolicyName": policy_name,
        "ServiceNamespace": SERVICE_NAMESPACE,
        "ResourceId": target_id,
        "ScalableDimension": SCALABLE_DIMENSION,
    }


APPLY = "apply"
SKIP = "skip"
IGNORE = "ignore"


@dataclass(frozen=True)
class ScalingPlan:
    """What to do with one endpoint's autoscaling.

    ``action``: ``apply`` (make the calls), ``skip`` (nothing now; the reason says why, a later
    ``IN_SERVICE`` event applies it) or ``ignore`` (the endpoint is not in the scaler's settings).
    Order of the calls: ``deregister`` (policies, then target), ``targets`` (register, policies,
    alarm), ``delete_policies``, ``delete_alarms``.
    """

    endpoint_name: str
    action: str
    reason: str = ""
    targets: tuple[VariantScaling, ...] = ()
    deregister: tuple[Deregistration, ...] = ()
    delete_policies: tuple[tuple[str, str], ...] = ()  # (resource id, policy name)
    delete_alarms: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def is_noop(self) -> bool:
        return not (self.targets or self.deregister or self.delete_policies or self.delete_alarms)

    def delete_policy_requests(self) -> list[dict[str, Any]]:
        return [_delete_policy_request(target, name) for target, name in self.delete_policies]

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint_name,
            "action": self.action,
            "reason": self.reason,
            "targets": [target.to_dict() for target in self.targets],
            "deregister": [item.resource_id for item in self.deregister],
            "delete_policies": [f"{target}:{name}" for target, name in self.delete_policies],
            "delete_alarms": list(self.delete_alarms),
            "notes": list(self.notes),
        }


# --- the planners -------------------------------------------------------------------------------


def policies_for(spec: ScalingSpec, endpoint_name: str) -> tuple[ScalingPolicy, ...]:
    """The policies of each of the endpoint's variants under ``spec``."""
    cooldowns = {"ScaleInCooldown": spec.scale_in_cooldown_s, "ScaleOutCooldown": spec.scale_out_cooldown_s}
    if dimension_of(spec.kind) is INVOCATIONS:
        return (
            ScalingPolicy(
                INVOCATIONS_POLICY,
                "TargetTrackingScaling",
                {
                    "TargetValue": float(spec.target),
                    "PredefinedMetricSpecification": {"PredefinedMetricType": INVOCATIONS_METRIC},
                    **cooldowns,
                },
            ),
        )
    policies = [
        ScalingPolicy(
            BACKLOG_POLICY,
            "TargetTrackingScaling",
            {
                "TargetValue": float(spec.target),
                "CustomizedMetricSpecification": {
                    "MetricName": BACKLOG_METRIC,
                    "Namespace": METRIC_NAMESPACE,
                    "Dimensions": [{"Name": "EndpointName", "Value": endpoint_name}],
                    "Statistic": "Average",
                },
                **cooldowns,
            },
        )
    ]
    if spec.scales_from_zero:
        policies.append(
            ScalingPolicy(
                SCALE_OUT_FROM_ZERO_POLICY,
                "StepScaling",
                {
                    "AdjustmentType": "ChangeInCapacity",
                    "MetricAggregationType": "Average",
                    "Cooldown": spec.scale_out_cooldown_s,
                    "StepAdjustments": [{"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": 1}],
                },
            )
        )
    return tuple(policies)


def plan_scaling(
    endpoint: EndpointDescription | None,
    spec: ScalingSpec | None,
    registered: Mapping[str, Iterable[str]],
    endpoint_name: str | None = None,
) -> ScalingPlan:
    """The scaling plan for one endpoint.

    ``endpoint``: the described endpoint (``None``: it does not exist); ``spec``: its scaling spec
    (``None``: not listed); ``registered``: the endpoint's current scalable targets (resource
    id -> names of the policies attached), other endpoints' targets are ignored.
    """
    name = endpoint.name if endpoint is not None else (spec.endpoint_name if spec else endpoint_name or "")
    if spec is None:
        return ScalingPlan(name, IGNORE,
                           "the endpoint is not in the scaler's settings (e.g. serverless): not scaled")
    if endpoint is None:
        return ScalingPlan(name, SKIP, "the endpoint does not exist (deleted since the event?)")
    if not endpoint.managed:
        return ScalingPlan(
            name, SKIP, f"the endpoint is not tagged {MANAGED_BY_TAG}={MANAGED_BY_VALUE}: never touched"
        )
    if endpoint.status != IN_SERVICE:
        return ScalingPlan(
            name, SKIP, f"the endpoint is {endpoint.status or 'of unknown status'}, not InService: "
            "the next IN_SERVICE event applies the scaling"
        )
    if endpoint.kind != spec.kind:
        return ScalingPlan(
            name, SKIP, f"SCALING says {spec.kind} but the endpoint is {endpoint.kind}: fix the scaler's settings"
        )

    own = _own_targets(name, registered)
    policies = policies_for(spec, name)
    wanted_policies = {policy.name for policy in policies}
    targets, deregister, delete_policies, delete_alarms, notes = [], [], [], [], []
    live = {variant.name for variant in endpoint.variants}
    for variant in endpoint.variants:
        alarm = BacklogAlarm(backlog_alarm_name(name, variant.name), name) if spec.scales_from_zero else None
        targets.append(
            VariantScaling(name, variant.name, spec.min_instances, spec.max_instances, policies, alarm)
        )
        count = variant.current_instance_count
        runs = f"{variant.name} runs {count} instance(s): autoscaling scales it"
        if count is not None and count < spec.min_instances:
            notes.append(f"{runs} out to {spec.min_instances}")
        elif count is not None and count > spec.max_instances:
            notes.append(f"{runs} in to {spec.max_instances}")
        stale = sorted(
            policy for policy in own.get(variant.name, ())
            if policy.startswith(POLICY_PREFIX) and policy not in wanted_policies
        )
        target_id = resource_id(name, variant.name)
        delete_policies.extend((target_id, policy) for policy in stale)
        if SCALE_OUT_FROM_ZERO_POLICY in stale:
            delete_alarms.append(backlog_alarm_name(name, variant.name))
    if len(endpoint.variants) > 1:
        notes.append(
            "every production variant gets the same bounds "
            f"({spec.min_instances}-{spec.max_instances} instances), the challenger included"
        )
    for variant_name in sorted(set(own) - live):
        deregister.append(Deregistration(resource_id(name, variant_name), tuple(sorted(own[variant_name]))))
        delete_alarms.append(backlog_alarm_name(name, variant_name))
        why = "now a shadow variant" if variant_name in endpoint.shadow_variant_names else "no longer runs"
        notes.append(f"{variant_name} {why}: its scalable target is deregistered")
    return ScalingPlan(
        endpoint_name=name,
        action=APPLY,
        reason=f"{spec.kind} scaling of {', '.join(sorted(live)) or 'no variant'}",
        targets=tuple(targets),
        deregister=tuple(deregister),
        delete_policies=tuple(delete_policies),
        delete_alarms=tuple(delete_alarms),
        notes=tuple(notes),
    )


def plan_suspension(endpoint_name: str, registered: Mapping[str, Iterable[str]]) -> ScalingPlan:
    """Deregister every scalable target of the endpoint (policies first) and delete its backlog alarms.

    Run before an ``UpdateEndpoint`` (blue/green updates that change or drop a registered variant
    are refused) and before deleting the endpoint.
    """
    own = _own_targets(endpoint_name, registered)
    return ScalingPlan(
        endpoint_name=endpoint_name,
        action=APPLY,
        reason="suspend autoscaling",
        deregister=tuple(
            Deregistration(resource_id(endpoint_name, variant), tuple(sorted(own[variant])))
            for variant in sorted(own)
        ),
        delete_alarms=tuple(backlog_alarm_name(endpoint_name, variant) for variant in sorted(own)),
    )


def _own_targets(endpoint_name: str, registered: Mapping[str, Iterable[str]]) -> dict[str, tuple[str, ...]]:
    """variant name -> policy names, for the targets of this endpoint only."""
    own: dict[str, tuple[str, ...]] = {}
    for target_id, policies in registered.items():
        parsed = parse_resource_id(target_id)
        if parsed and parsed[0] == endpoint_name:
            own[parsed[1]] = tuple(policies)
    return own


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value
