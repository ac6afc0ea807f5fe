"""What AWS services do with the platform's roles, and on its resources, read from the templates.

- A Lambda function's role, used by the Lambda service itself: write the function's logs into its
  log group, send trace segments when tracing is active, send a failed asynchronous event to the
  function's dead-letter queue (with a data key from the queue's KMS key), and poll the queue of
  each SQS event source mapping (receive, delete, read attributes; decrypt with the queue's key).
- An EventBridge rule's target: EventBridge sends an event it could not deliver to the target's
  dead-letter queue, which the queue's policy and the key's policy must let it do, and invokes a
  Lambda target only through the function's resource policy.

Every function and rule is found in the templates, so a new one is covered without a change here.
"""

from __future__ import annotations

from dataclasses import dataclass

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
