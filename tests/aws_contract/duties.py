"""What AWS services do with the platform's roles, and on its resources, read from the templates.

- A Lambda function's role, used by the Lambda service itself: write the function's logs into its
  log group, send trace segments when tracing is active, send a failed asynchronous event to the
  function's dead-letter queue (with a data key from the queue's KMS key), and poll the queue of
  each SQS event source mapping (receive, delete, read attributes; decrypt with the queue's key).
- A SageMaker pipeline step's role, used by SageMaker to run the step's job: pull its image, read
  its inputs and write its outputs in S3 (with the keys that encrypt them), write the job's logs,
  and attach the job to the VPC.
- An EventBridge rule's target: EventBridge sends an event it could not deliver to the target's
  dead-letter queue, which the queue's policy and the key's policy must let it do, and invokes a
  Lambda target only through the function's resource policy.

Every function, step and rule is found in the templates, so a new one is covered without a change here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from .templates import Environment

HANDLER_PACKAGE = "mlops_runtime."


@dataclass(frozen=True)
class Function:
    stack: str
    logical_id: str
    name: str
    handler: str  # "mlops_runtime.handlers.deployer.handler"
    role_arn: str
    environment: dict  # resolved environment variables

    @property
    def module(self) -> str:
        return self.handler.rsplit(".", 1)[0]


@dataclass(frozen=True)
class Duty:
    """``who`` (a role ARN, or a service principal) must be allowed ``action`` on ``resource``."""

    who: str
    action: str
    resource: str
    why: str
    context: tuple[tuple[str, str], ...] = ()
    runner: str = ""  # the function or "pipeline/step" acting with the role, for the report

    @property
    def by_service(self) -> bool:
        return not self.who.startswith("arn:")


def platform_functions(environment: Environment) -> list[Function]:
    """The platform's own functions (CDK's custom-resource providers are CDK's business)."""
    found = []
    for stack, logical_id, resource in environment.resources("AWS::Lambda::Function"):
        properties = resource["Properties"]
        if not str(properties.get("Handler", "")).startswith(HANDLER_PACKAGE):
            continue
        found.append(Function(
            stack, logical_id, environment.physical_name(stack, logical_id), properties["Handler"],
            environment.resolve(stack, properties["Role"]),
            environment.resolve(stack, properties.get("Environment", {}).get("Variables", {})),
        ))
    return found


def _queue_key(environment: Environment, stack: str, queue_ref: object) -> str | None:
    pointed = environment.resource_by_ref(stack, queue_ref)
    if pointed is None:
        return None
    key = environment.resource(*pointed).get("Properties", {}).get("KmsMasterKeyId")
    if key is None:
        return None
    key_resource = environment.resource_by_ref(pointed[0], key)
    return environment.arn(*key_resource) if key_resource else None


def lambda_service_duties(environment: Environment) -> list[Duty]:
    duties = []
    mappings = list(environment.resources("AWS::Lambda::EventSourceMapping"))
    for function in platform_functions(environment):
        properties = environment.resource(function.stack, function.logical_id)["Properties"]
        role = function.role_arn
        log_group = environment.resolve(function.stack, properties.get("LoggingConfig", {}).get("LogGroup",
                                                                                                  f"/aws/lambda/{function.name}"))
        stream = f"arn:aws:logs:{environment.region}:{environment.account}:log-group:{log_group}:log-stream:2026/01/01/[$LATEST]0"
        first = len(duties)
        duties += [Duty(role, "logs:CreateLogStream", stream, "Lambda creates the function's log stream"),
                   Duty(role, "logs:PutLogEvents", stream, "Lambda writes the function's logs")]
        if properties.get("TracingConfig", {}).get("Mode") == "Active":
            duties += [Duty(role, f"xray:{a}", "*", "Lambda sends the function's traces")
                       for a in ("PutTraceSegments", "PutTelemetryRecords")]
        target = properties.get("DeadLetterConfig", {}).get("TargetArn")
        if target is not None:
            queue = environment.resolve(function.stack, target)
            duties.append(Duty(role, "sqs:SendMessage", queue, "Lambda dead-letters a failed asynchronous event"))
            key = _queue_key(environment, function.stack, target)
            if key:
                duties += [Duty(role, a, key, "Lambda dead-letters into the encrypted queue")
                           for a in ("kms:GenerateDataKey", "kms:Decrypt")]
        for stack, _, mapping in mappings:
            mapping_properties = mapping["Properties"]
            if environment.resolve(stack, mapping_properties["FunctionName"]) not in (function.name, environment.arn(function.stack, function.logical_id)):
                continue
            source = mapping_properties["EventSourceArn"]
            queue = environment.resolve(stack, source)
            if not queue.startswith("arn:aws:sqs:"):
                continue
            duties += [Duty(role, f"sqs:{a}", queue, "the event source mapping polls the queue")
                       for a in ("ReceiveMessage", "DeleteMessage", "GetQueueAttributes", "ChangeMessageVisibility")]
            key = _queue_key(environment, stack, source)
            if key:
                duties.append(Duty(role, "kms:Decrypt", key, "the event source mapping reads the encrypted queue"))
        duties[first:] = [replace(d, runner=function.name) for d in duties[first:]]
    return duties


def eventbridge_duties(environment: Environment) -> list[Duty]:
    duties = []
    for stack, logical_id, rule in environment.resources("AWS::Events::Rule"):
        rule_arn = environment.arn(stack, logical_id)
        context = (("aws:SourceArn", rule_arn),)
        for target in rule["Properties"].get("Targets", []):
            dead_letters = target.get("DeadLetterConfig", {}).get("Arn")
            if dead_letters is None:
                continue
            queue = environment.resolve(stack, dead_letters)
            duties.append(Duty("events.amazonaws.com", "sqs:SendMessage", queue,
                               f"EventBridge dead-letters what rule {logical_id} could not deliver", context))
            key = _queue_key(environment, stack, dead_letters)
            if key:
                duties += [Duty("events.amazonaws.com", a, key, f"EventBridge dead-letters into the encrypted queue of {logical_id}", context)
                           for a in ("kms:GenerateDataKey", "kms:Decrypt")]
    return duties


def lambda_invoke_permissions(environment: Environment) -> set[tuple[str, str, str]]:
    """(function ARN, principal, source ARN) of every ``AWS::Lambda::Permission``."""
    found = set()
    for stack, _, permission in environment.resources("AWS::Lambda::Permission"):
        properties = permission["Properties"]
        function = environment.resource_by_ref(stack, properties["FunctionName"])
        function_arn = environment.arn(*function) if function else environment.resolve(stack, properties["FunctionName"])
        found.add((function_arn, properties["Principal"], environment.resolve(stack, properties.get("SourceArn", "*"))))
    return found


def lambda_rule_targets(environment: Environment) -> list[tuple[str, str]]:
    """(rule ARN, function ARN) of every rule whose target is a Lambda function."""
    found = []
    for stack, logical_id, rule in environment.resources("AWS::Events::Rule"):
        for target in rule["Properties"].get("Targets", []):
            arn = environment.resolve(stack, target["Arn"])
            if arn.startswith("arn:aws:lambda:"):
                found.append((environment.arn(stack, logical_id), arn))
    return found


# --- SageMaker running a pipeline's jobs as their role ----------------------------------------

_JOB_KINDS = {"Processing": "ProcessingJobs", "Training": "TrainingJobs"}
# What SageMaker does to attach a job to the VPC (CreateProcessingJob/CreateTrainingJob execution
# role permissions, SageMaker developer guide).
_ENI_ACTIONS = ("CreateNetworkInterface", "CreateNetworkInterfacePermission", "DeleteNetworkInterface",
                "DeleteNetworkInterfacePermission")
_DESCRIBE_NETWORK = ("DescribeNetworkInterfaces", "DescribeVpcs", "DescribeDhcpOptions", "DescribeSubnets",
                     "DescribeSecurityGroups")


def _pipeline_value(value: object, parameters: dict) -> str | None:
    """A pipeline expression's value at run time: a parameter's default, an execution id, a join;
    None for another step's output (that step's own duties cover writing it)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Get" in value:
        name = value["Get"]
        if name.startswith("Parameters."):
            default = parameters.get(name.split(".", 1)[1])
            return None if default in (None, "") else str(default)
        return "execution-1" if name.startswith("Execution.") else None
    if isinstance(value, dict) and "Std:Join" in value:
        parts = [_pipeline_value(v, parameters) for v in value["Std:Join"]["Values"]]
        return None if None in parts else value["Std:Join"]["On"].join(parts)
    return None


def _s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[5:].partition("/")
    return f"arn:aws:s3:::{bucket}", key


def sagemaker_job_duties(environment: Environment) -> list[Duty]:
    """What SageMaker does as each pipeline step's role: pull the image, download the inputs and
    upload the outputs (with the keys that encrypt them), write the job's logs, and put the job's
    network interfaces into the VPC."""
    keys = encryption_keys(environment)
    duties = []
    for stack, logical_id, pipeline in environment.resources("AWS::SageMaker::Pipeline"):
        definition = json.loads(environment.resolve(stack, pipeline["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]))
        parameters = {p["Name"]: p.get("DefaultValue") for p in definition.get("Parameters", [])}
        for step in definition.get("Steps", []):
            kind = _JOB_KINDS.get(step.get("Type"))
            if kind is None:
                continue
            job, role = step["Arguments"], step["Arguments"]["RoleArn"]
            label = f"{environment.physical_name(stack, logical_id)}/{step['Name']}"
            why = f"SageMaker runs step {label}"

            def duty(action: str, resource: str, context: tuple = (), why: str = why, role: str = role,
                     label: str = label) -> Duty:
                return Duty(role, action, resource, why, context, label)

            inputs = [i["S3Input"]["S3Uri"] for i in job.get("ProcessingInputs", []) if "S3Input" in i]
            inputs += [c["DataSource"]["S3DataSource"]["S3Uri"] for c in job.get("InputDataConfig", [])]
            outputs = [o["S3Output"]["S3Uri"] for o in job.get("ProcessingOutputConfig", {}).get("Outputs", [])]
            outputs += [job["OutputDataConfig"]["S3OutputPath"]] if "OutputDataConfig" in job else []
            output_key = job.get("ProcessingOutputConfig", job.get("OutputDataConfig", {})).get("KmsKeyId")
            for uri in filter(None, (_pipeline_value(u, parameters) for u in inputs)):
                # An S3Prefix input is listed under its key, then each object under it downloaded.
                bucket, prefix = _s3(uri)
                duties += [duty("s3:ListBucket", bucket, (("s3:prefix", prefix),)),
                           duty("s3:GetObject", f"{bucket}/{prefix.rstrip('/')}/object" if prefix.endswith("/") or not prefix
                                else f"{bucket}/{prefix}")]
                if bucket in keys:
                    duties.append(duty("kms:Decrypt", keys[bucket], (("kms:ViaService", f"s3.{environment.region}.amazonaws.com"),)))
            for uri in filter(None, (_pipeline_value(u, parameters) for u in outputs)):
                bucket, prefix = _s3(uri)
                duties.append(duty("s3:PutObject", f"{bucket}/{prefix.rstrip('/')}/output.tar.gz"))
                for key in {output_key, keys.get(bucket)} - {None}:
                    duties.append(duty("kms:GenerateDataKey", key, (("kms:ViaService", f"s3.{environment.region}.amazonaws.com"),)))
            image = job.get("AppSpecification", {}).get("ImageUri") or job.get("AlgorithmSpecification", {}).get("TrainingImage")
            registry, _, repository = image.partition("/")
            if registry.split(".")[0] == environment.account:  # SageMaker's own images need no grant
                repository_arn = f"arn:aws:ecr:{environment.region}:{environment.account}:repository/{repository.split(':')[0].split('@')[0]}"
                duties += [duty("ecr:GetAuthorizationToken", "*"),
                           *(duty(f"ecr:{a}", repository_arn) for a in ("BatchGetImage", "GetDownloadUrlForLayer"))]
            group = f"arn:aws:logs:{environment.region}:{environment.account}:log-group:/aws/sagemaker/{kind}"
            duties += [duty("logs:CreateLogGroup", f"{group}:log-stream:"),
                       duty("logs:CreateLogStream", f"{group}:log-stream:job/algo-1"),
                       duty("logs:PutLogEvents", f"{group}:log-stream:job/algo-1")]
            vpc = job.get("NetworkConfig", {}).get("VpcConfig") or job.get("VpcConfig")
            if vpc:
                ec2 = f"arn:aws:ec2:{environment.region}:{environment.account}"
                interface = f"{ec2}:network-interface/eni-0123456789abcdef0"
                placed_in = [f"{ec2}:subnet/{s}" for s in vpc["Subnets"]] + [f"{ec2}:security-group/{g}" for g in vpc["SecurityGroupIds"]]
                duties += [duty(f"ec2:{a}", "*") for a in _DESCRIBE_NETWORK]
                duties += [duty(f"ec2:{a}", interface) for a in _ENI_ACTIONS]
                duties += [duty("ec2:CreateNetworkInterface", arn) for arn in placed_in]
    return duties


def encryption_keys(environment: Environment) -> dict[str, str]:
    """Bucket and queue ARN -> the ARN of the customer key that encrypts it."""
    keys = {}
    for stack, logical_id, queue in environment.resources("AWS::SQS::Queue"):
        key = queue.get("Properties", {}).get("KmsMasterKeyId")
        pointed = environment.resource_by_ref(stack, key) if key else None
        if pointed:
            keys[environment.arn(stack, logical_id)] = environment.arn(*pointed)
    for stack, logical_id, bucket in environment.resources("AWS::S3::Bucket"):
        rules = bucket.get("Properties", {}).get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", [])
        for rule in rules:
            key = rule.get("ServerSideEncryptionByDefault", {}).get("KMSMasterKeyID")
            pointed = environment.resource_by_ref(stack, key) if key else None
            if pointed:
                keys[environment.arn(stack, logical_id)] = environment.arn(*pointed)
    return keys
