"""A Python Lambda function with the platform's baseline, shared by every handler.

Baseline: its own role (no AWS-managed policies), an encrypted log group with retention, JSON
logs, X-Ray tracing, environment variables encrypted with the platform key, reserved
concurrency, an encrypted dead-letter queue for asynchronous invocations (EventBridge, S3), and
Powertools from its public layer. Functions run outside the VPC: they call only AWS APIs (see
``FoundationStack.function_props``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from ..compliance import acknowledge, acknowledge_inline_policy, acknowledge_wildcards
from ..lambda_bundles import services_called, stage_bundle
from ..wheel_sets import LAMBDA_SDK_TARGET, sdk_requirements
from ..wheels import installed_zip
from .logging import encrypted_log_group
from ..paths import BUILD_DIR

BUNDLE_DIR = BUILD_DIR / "lambda-bundles"
POWERTOOLS_ACCOUNT = "017000801446"
RUNTIME = lambda_.Runtime.PYTHON_3_13
# Services the runtime's built-in boto3 has: all launched before the python3.13 runtime
# (November 2024), whose included SDK was newer (bedrock-runtime, the newest here, is from
# September 2023). A function that calls anything else (s3vectors: July 2025) gets the SDK the
# tests ran with in a layer (SDK_LAYER_ID) instead of trusting the runtime's.
RUNTIME_SDK_SERVICES = frozenset({
    "application-autoscaling", "bedrock-runtime", "cloudwatch", "dynamodb", "firehose", "s3", "sagemaker",
    "sagemaker-featurestore-runtime", "sagemaker-runtime", "sns", "sqs", "sts",
})
SDK_LAYER_ID = "PythonSdkLayer"


def python_sdk_layer(stack: Stack) -> lambda_.ILayerVersion:
    """The stack's one layer with the pinned AWS SDK for Python (wheels, no Docker)."""
    existing = stack.node.try_find_child(SDK_LAYER_ID)
    if existing is not None:
        return existing
    return lambda_.LayerVersion(
        stack, SDK_LAYER_ID,
        code=lambda_.Code.from_asset(str(installed_zip(sdk_requirements(), LAMBDA_SDK_TARGET, "python"))),
        compatible_runtimes=[RUNTIME],
        compatible_architectures=[lambda_.Architecture.ARM_64, lambda_.Architecture.X86_64],
        description="AWS SDK for Python as tested: " + ", ".join(sdk_requirements()[:2]),
        removal_policy=RemovalPolicy.DESTROY,  # code only; a new version replaces it
    )


@dataclass(frozen=True)
class PlatformFunctionProps:
    """``handler`` is a dotted path inside ``lambda/`` (e.g. ``mlops_runtime.handlers.x.handler``)."""

    function_name: str
    handler: str
    description: str
    key: kms.IKey
    log_retention_days: int
    removal_policy: RemovalPolicy
    architecture: str = "arm64"
    powertools_layer_version: int = 27
    environment: dict[str, str] = field(default_factory=dict)
    memory_mb: int = 256
    timeout: Duration = Duration.seconds(30)
    reserved_concurrency: int = 10


class PlatformFunction(Construct):
    def __init__(self, scope: Construct, construct_id: str, props: PlatformFunctionProps) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        arm = props.architecture == "arm64"
        self.role = iam.Role(
            self, "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Runs {props.function_name}",
        )
        self.log_group = encrypted_log_group(
            self, "Logs", name=f"/aws/lambda/{props.function_name}", key=props.key,
            retention_days=props.log_retention_days, removal_policy=props.removal_policy,
        )
        self.dead_letter_queue = sqs.Queue(
            self, "DeadLetters",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=props.key,
            enforce_ssl=True,
            retention_period=Duration.days(14),
            removal_policy=props.removal_policy,
        )
        layer = lambda_.LayerVersion.from_layer_version_arn(
            self, "Powertools",
            f"arn:{stack.partition}:lambda:{stack.region}:{POWERTOOLS_ACCOUNT}:layer:"
            f"AWSLambdaPowertoolsPythonV3-python313-{'arm64' if arm else 'x86_64'}:"
            f"{props.powertools_layer_version}",
        )
        module = props.handler.rsplit(".", 1)[0]
        # Layers unpack in order: the SDK layer last, so its boto3 wins over any earlier copy.
        layers = [layer]
        if services_called(module) - RUNTIME_SDK_SERVICES:
            layers.append(python_sdk_layer(stack))
        self.function = lambda_.Function(
            self, "Function",
            function_name=props.function_name,
            description=props.description,
            runtime=RUNTIME,
            architecture=lambda_.Architecture.ARM_64 if arm else lambda_.Architecture.X86_64,
            handler=props.handler,
            # Only the handler's own imports ship (mlops_platform/lambda_bundles.py).
            code=lambda_.Code.from_asset(str(stage_bundle(module, BUNDLE_DIR))),
            layers=layers,
            role=self.role,
            memory_size=props.memory_mb,
            timeout=props.timeout,
            reserved_concurrent_executions=props.reserved_concurrency,
            environment={
                "POWERTOOLS_SERVICE_NAME": props.function_name,
                "POWERTOOLS_LOG_LEVEL": "INFO",
                **props.environment,
            },
            environment_encryption=props.key,
            log_group=self.log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            tracing=lambda_.Tracing.ACTIVE,
            dead_letter_queue=self.dead_letter_queue,
        )
        self._grant_what_lambda_does_with_the_role(props.key)
        self._acknowledge()

    def _grant_what_lambda_does_with_the_role(self, key: kms.IKey) -> None:
        """The Lambda service acts as the function's role for its own work: it writes the logs
        into the function's log group, and sends a failed asynchronous event to the dead-letter
        queue, which is encrypted with the platform key (SQS asks KMS for a data key as the
        sender). With no AWS-managed policy on the role, both must be granted here."""
        self.log_group.grant_write(self.role)
        key.grant(self.role, "kms:GenerateDataKey", "kms:Decrypt")

    def _acknowledge(self) -> None:
        acknowledge(
            self.function, "AwsSolutions-L1",
            "Pinned to python3.13, the newest runtime the public Powertools v3 layer is published "
            "for; bump together with the layer.",
        )
        policy = self.role.node.find_child("DefaultPolicy")
        acknowledge_wildcards(
            policy, ["Resource::*"],
            "X-Ray PutTraceSegments/PutTelemetryRecords and VPC ENI management (when in a VPC) "
            "support no resource-level permissions.",
        )
        acknowledge_inline_policy(self.role)
        acknowledge(self.dead_letter_queue, "AwsSolutions-SQS3",
                    "This queue is the dead-letter queue; failed events stay here for replay.")
        acknowledge(
            self.function, "NIST.800.53.R5-LambdaInsideVPC",
            "Calls only AWS service APIs over TLS with IAM authorization and reaches no VPC "
            "resource; the platform VPC's isolated subnets have no route to the services it uses.",
        )

    def grant_invoke(self, principal: iam.IGrantable) -> iam.Grant:
        return self.function.grant_invoke(principal)
