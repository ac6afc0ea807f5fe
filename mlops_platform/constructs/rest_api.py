"""The platform's REST API: one API Gateway REST API per environment, fronting Lambda handlers.

Baseline: regional endpoint; IAM (SigV4) authorization on every method, or an API key with a usage
plan (config); request validation; stage throttling; X-Ray; execution logging of errors; access logs
as JSON to a log group encrypted with the platform key. The access log format leaves out the
caller's IP address and user agent on purpose (the feedback API promises not to store them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from aws_cdk import RemovalPolicy
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from ..compliance import acknowledge
from .logging import encrypted_log_group

# $context variables only: no $context.identity.sourceIp, userAgent, caller or user.
ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "requestTime": "$context.requestTimeEpoch",
    "httpMethod": "$context.httpMethod",
    "resourcePath": "$context.resourcePath",
    "path": "$context.path",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "responseLatency": "$context.responseLatency",
    "integrationLatency": "$context.integration.latency",
    "integrationStatus": "$context.integration.status",
    "errorMessage": "$context.error.message",
    "apiKeyId": "$context.identity.apiKeyId",
    "xrayTraceId": "$context.xrayTraceId",
}
BINARY_MEDIA_TYPES = ("application/octet-stream", "application/x-npy", "application/x-image", "image/*")


@dataclass(frozen=True)
class PlatformRestApiProps:
    api_name: str
    description: str
    stage_name: str
    authorization: Literal["iam", "api_key"]
    rate_limit: float
    burst_limit: int
    daily_quota: int | None
    key: kms.IKey
    log_retention_days: int
    removal_policy: RemovalPolicy


class PlatformRestApi(Construct):
    def __init__(self, scope: Construct, construct_id: str, props: PlatformRestApiProps) -> None:
        super().__init__(scope, construct_id)
        self._props = props
        self.access_logs = encrypted_log_group(
            self, "AccessLogs", name=f"/aws/apigateway/{props.api_name}/access", key=props.key,
            retention_days=props.log_retention_days, removal_policy=props.removal_policy,
        )
        iam_auth = props.authorization == "iam"
        self.api = apigateway.RestApi(
            self, "Api",
            rest_api_name=props.api_name,
            description=props.description,
            endpoint_types=[apigateway.EndpointType.REGIONAL],
            binary_media_types=list(BINARY_MEDIA_TYPES),
            cloud_watch_role=True,  # API Gateway's account-level role for execution logs
            cloud_watch_role_removal_policy=props.removal_policy,
            default_method_options=apigateway.MethodOptions(
                authorization_type=apigateway.AuthorizationType.IAM if iam_auth else apigateway.AuthorizationType.NONE,
                api_key_required=not iam_auth,
            ),
            deploy_options=apigateway.StageOptions(
                stage_name=props.stage_name,
                tracing_enabled=True,
                throttling_rate_limit=props.rate_limit,
                throttling_burst_limit=props.burst_limit,
                logging_level=apigateway.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,  # would log request and response bodies
                metrics_enabled=True,
                access_log_destination=apigateway.LogGroupLogDestination(self.access_logs),
                access_log_format=apigateway.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FIELDS)),
            ),
        )
        self.validator = apigateway.RequestValidator(
            self, "Validator", rest_api=self.api,
            validate_request_parameters=True, validate_request_body=True,
        )
        self.api_key: apigateway.IApiKey | None = None
        if not iam_auth:
            self._usage_plan()
        self._acknowledge()

    def route(self, path: str, method: str, function: lambda_.IFunction, *, path_parameters: tuple[str, ...] = (),
              body_schema: apigateway.JsonSchema | None = None, model_name: str | None = None) -> apigateway.Method:
        """``method`` on ``path`` (e.g. ``v1/endpoints/{endpoint}/invocations``), a Lambda proxy integration."""
        resource = self.api.root.resource_for_path(path)
        models = None
        if body_schema is not None:
            model = self.api.add_model(model_name or "Body", content_type="application/json", schema=body_schema)
            models = {"application/json": model}
        added = resource.add_method(
            method,
            apigateway.LambdaIntegration(function, proxy=True),
            request_validator=self.validator,
            request_parameters={f"method.request.path.{name}": True for name in path_parameters} or None,
            request_models=models,
        )
        iam_auth = self._props.authorization == "iam"
        acknowledge(added, "AwsSolutions-COG4",
                    "Machine-to-machine API: callers are IAM principals signing with SigV4"
                    + ("" if iam_auth else ", or holders of the usage plan's API key")
                    + "; there are no end users for a Cognito user pool.")
        if not iam_auth:
            acknowledge(added, "AwsSolutions-APIG4",
                        "authorization: api_key in config: callers present the usage plan's API key.")
        return added

    def invoke_arn(self, method: str = "*", path: str = "*") -> str:
        """The execute-api ARN of ``method`` on ``path`` of the stage (for ``execute-api:Invoke`` grants)."""
        return self.api.arn_for_execute_api(method, f"/{path.lstrip('/')}", self._props.stage_name)

    def _usage_plan(self) -> None:
        props = self._props
        self.api_key = self.api.add_api_key("Key", api_key_name=f"{props.api_name}-default")
        plan = self.api.add_usage_plan(
            "UsagePlan", name=f"{props.api_name}-default",
            throttle=apigateway.ThrottleSettings(rate_limit=props.rate_limit, burst_limit=props.burst_limit),
            quota=apigateway.QuotaSettings(limit=props.daily_quota, period=apigateway.Period.DAY)
            if props.daily_quota else None,
        )
        plan.add_api_key(self.api_key)
        plan.add_api_stage(stage=self.api.deployment_stage)

    def _acknowledge(self) -> None:
        props = self._props
        stage = self.api.deployment_stage
        acknowledge(stage, "AwsSolutions-APIG3",
                    "Callers are authenticated (SigV4 or API key) and throttled per stage; a WAF web ACL "
                    "costs a fixed monthly fee the small team's private API does not need.")
        acknowledge(stage, "NIST.800.53.R5-APIGWAssociatedWithWAF",
                    "Callers are authenticated (SigV4 or API key) and throttled per stage; no WAF.")
        acknowledge(stage, "NIST.800.53.R5-APIGWCacheEnabledAndEncrypted",
                    "Predictions and feedback must not be served from a cache: every request is distinct.")
        acknowledge(stage, "NIST.800.53.R5-APIGWSSLEnabled",
                    "The integrations are Lambda functions, not HTTP backends: no client certificate to present.")
        role = self.api.node.try_find_child("CloudWatchRole")
        if role is not None:
            acknowledge(role, "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                              "AmazonAPIGatewayPushToCloudWatchLogs]",
                        "API Gateway's account-level logging role: the AWS-managed policy is the documented one.")



def caller_policy(scope: Construct, construct_id: str, api: PlatformRestApi, name: str) -> iam.ManagedPolicy:
    """A managed policy allowing ``execute-api:Invoke`` on every route of the API's stage, to attach
    to the roles of the applications that call the platform (IAM authorization)."""
    return iam.ManagedPolicy(
        scope, construct_id,
        managed_policy_name=name,
        description="Call the MLOps platform's REST API (every route of its stage)",
        statements=[iam.PolicyStatement(actions=["execute-api:Invoke"], resources=[api.invoke_arn()])],
    )
