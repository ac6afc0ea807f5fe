"""Application Auto Scaling of SageMaker endpoint variants: read the endpoint and its targets, apply a plan.

:class:`EndpointScaling` is what the ``endpoint_scaler`` handler (and the teardown) need;
:class:`Boto3EndpointScaling` implements it over the ``application-autoscaling``, ``sagemaker`` and
``cloudwatch`` clients, each created on first use so that importing this module stays cheap.

:func:`suspend_scaling` is for the deployer: call it before ``UpdateEndpoint``. It deletes the
endpoint's scaling policies, deregisters its scalable targets and deletes the scaler's backlog
alarms; the ``IN_SERVICE`` event at the end of the update re-registers them (``endpoint_scaler``).
Everything here is safe to repeat: register/put are upserts, and deleting what is already gone
counts as done.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from mlops_runtime.adapters.aws_errors import is_not_found
from mlops_runtime.adapters.sagemaker_endpoints import AppliedCall
from mlops_runtime.domain.autoscaling import (
    SCALABLE_DIMENSION,
    SERVICE_NAMESPACE,
    EndpointDescription,
    ScalingPlan,
    parse_resource_id,
    plan_suspension,
)

_RETRIES = {"mode": "standard", "max_attempts": 5}


class EndpointScaling(Protocol):
    """What the scaler needs from SageMaker, Application Auto Scaling and CloudWatch."""

    def describe_endpoint(self, endpoint_name: str) -> EndpointDescription | None:
        """The endpoint's variants, kind, status and whether the deployer manages it; ``None`` if absent."""
        ...

    def registered_targets(self, endpoint_name: str) -> dict[str, tuple[str, ...]]:
        """The endpoint's scalable targets: resource id -> names of their scaling policies."""
        ...

    def apply(self, plan: ScalingPlan) -> list[AppliedCall]:
        """Make the plan's calls in order; repeating an applied plan changes nothing."""
        ...

    def suspend_scaling(self, endpoint_name: str) -> list[str]:
        """Deregister every scalable target of the endpoint; the resource ids deregistered."""
        ...


class Boto3EndpointScaling:
    """:class:`EndpointScaling` over boto3 (standard retry mode)."""

    def __init__(
        self, autoscaling: Any | None = None, sagemaker: Any | None = None, cloudwatch: Any | None = None
    ) -> None:
        self._clients = {
            "application-autoscaling": autoscaling,
            "sagemaker": sagemaker,
            "cloudwatch": cloudwatch,
        }

    def _client(self, service: str) -> Any:
        if self._clients[service] is None:
            import boto3
            from botocore.config import Config

            self._clients[service] = boto3.client(service, config=Config(retries=dict(_RETRIES)))
        return self._clients[service]

    @property
    def autoscaling(self) -> Any:
        return self._client("application-autoscaling")

    @property
    def sagemaker(self) -> Any:
        return self._client("sagemaker")

    @property
    def cloudwatch(self) -> Any:
        return self._client("cloudwatch")

    # -- reading
    def describe_endpoint(self, endpoint_name: str) -> EndpointDescription | None:
        from botocore.exceptions import ClientError

        try:
            endpoint = self.sagemaker.describe_endpoint(EndpointName=endpoint_name)
            config = self.sagemaker.describe_endpoint_config(
                EndpointConfigName=endpoint["EndpointConfigName"]
            )
        except ClientError as error:
            if is_not_found(error):
                return None
            raise
        return EndpointDescription.from_descriptions(endpoint, config, self._tags(endpoint["EndpointArn"]))

    def _tags(self, arn: str) -> dict[str, str]:
        tags: dict[str, str] = {}
        request: dict[str, Any] = {"ResourceArn": arn}
        while True:
            page = self.sagemaker.list_tags(**request)
            tags.update({tag["Key"]: tag["Value"] for tag in page.get("Tags", ())})
            if not page.get("NextToken"):
                return tags
            request["NextToken"] = page["NextToken"]

    def registered_targets(self, endpoint_name: str) -> dict[str, tuple[str, ...]]:
        targets = [
            target["ResourceId"]
            for target in self._pages(
                self.autoscaling.describe_scalable_targets,
                "ScalableTargets",
                ServiceNamespace=SERVICE_NAMESPACE,
                ScalableDimension=SCALABLE_DIMENSION,
            )
            if (parse_resource_id(target.get("ResourceId", "")) or ("",))[0] == endpoint_name
            and target.get("ScalableDimension", SCALABLE_DIMENSION) == SCALABLE_DIMENSION
        ]
        return {target: self._policy_names(target) for target in sorted(set(targets))}

    def _policy_names(self, target_id: str) -> tuple[str, ...]:
        policies = self._pages(
            self.autoscaling.describe_scaling_policies,
            "ScalingPolicies",
            ServiceNamespace=SERVICE_NAMESPACE,
            ResourceId=target_id,
            ScalableDimension=SCALABLE_DIMENSION,
        )
        return tuple(sorted({p["PolicyName"] for p in policies if p.get("ResourceId") == target_id}))

    @staticmethod
    def _pages(method: Any, key: str, **request: Any) -> Iterator[dict[str, Any]]:
        seen: set[str] = set()
        while True:
            page = method(**request)
            yield from page.get(key, ())
            token = page.get("NextToken")
            if not token or token in seen:
                return
            seen.add(token)
            request["NextToken"] = token

    # -- writing
    def apply(self, plan: ScalingPlan) -> list[AppliedCall]:
        applied: list[AppliedCall] = []
        for item in plan.deregister:
            applied.extend(self._delete_policy(request) for request in item.delete_policy_requests())
            applied.append(
                self._delete(
                    "DeregisterScalableTarget",
                    self.autoscaling.deregister_scalable_target,
                    item.deregister_request(),
                    item.resource_id,
                )
            )
        for target in plan.targets:
            self.autoscaling.register_scalable_target(**target.register_request())
            applied.append(AppliedCall("RegisterScalableTarget", target.resource_id, "called"))
            arns = {}
            for policy in target.policies:
                response = self.autoscaling.put_scaling_policy(**policy.request(target.resource_id))
                arns[policy.name] = response["PolicyARN"]
                applied.append(
                    AppliedCall("PutScalingPolicy", f"{target.resource_id}:{policy.name}", "called")
                )
            if target.alarm is not None:
                self.cloudwatch.put_metric_alarm(**target.alarm.request(arns[target.alarm.policy_name]))
                applied.append(AppliedCall("PutMetricAlarm", target.alarm.name, "called"))
        applied.extend(self._delete_policy(request) for request in plan.delete_policy_requests())
        if plan.delete_alarms:
            applied.extend(self._delete_alarms(plan.delete_alarms))
        return applied

    def _delete_policy(self, request: dict[str, Any]) -> AppliedCall:
        name = f"{request['ResourceId']}:{request['PolicyName']}"
        return self._delete("DeleteScalingPolicy", self.autoscaling.delete_scaling_policy, request, name)

    def _delete(self, operation: str, method: Any, request: dict[str, Any], name: str) -> AppliedCall:
        from botocore.exceptions import ClientError

        try:
            method(**request)
        except ClientError as error:
            if is_not_found(error):
                return AppliedCall(operation, name, "absent")
            raise
        return AppliedCall(operation, name, "deleted")

    def _delete_alarms(self, names: tuple[str, ...]) -> list[AppliedCall]:
        """Delete the alarms among ``names`` that exist (DeleteAlarms takes at most 100 names)."""
        from botocore.exceptions import ClientError

        wanted = sorted(set(names))
        existing: set[str] = set()
        for start in range(0, len(wanted), 100):
            chunk = wanted[start : start + 100]
            existing.update(
                alarm["AlarmName"]
                for alarm in self._pages(self.cloudwatch.describe_alarms, "MetricAlarms", AlarmNames=chunk)
            )
        gone = sorted(existing)
        for start in range(0, len(gone), 100):
            try:
                self.cloudwatch.delete_alarms(AlarmNames=gone[start : start + 100])
            except ClientError as error:
                if not is_not_found(error):
                    raise
        return [
            AppliedCall("DeleteAlarms", name, "deleted" if name in existing else "absent") for name in wanted
        ]

    def suspend_scaling(self, endpoint_name: str) -> list[str]:
        plan = plan_suspension(endpoint_name, self.registered_targets(endpoint_name))
        self.apply(plan)
        return [item.resource_id for item in plan.deregister]


_default: Boto3EndpointScaling | None = None


def default_scaling() -> Boto3EndpointScaling:
    """A process-wide :class:`Boto3EndpointScaling` (clients made on first use, kept across invocations)."""
    global _default
    if _default is None:
        _default = Boto3EndpointScaling()
    return _default


def suspend_scaling(endpoint_name: str, scaling: EndpointScaling | None = None) -> list[str]:
    """Before ``UpdateEndpoint``: delete the endpoint's scaling policies and deregister its targets.

    SageMaker refuses an update that changes the instance type of, or removes, a variant registered
    for autoscaling, and asks to delete its policies and deregister it first. Returns the resource
    ids deregistered (empty when nothing was registered, e.g. before the first deployment). The
    ``IN_SERVICE`` event at the end of the update makes ``endpoint_scaler`` register them again.
    """
    return (scaling or default_scaling()).suspend_scaling(endpoint_name)

