"""The permission contract: each call of the ledger, made by its runner's role in an environment.

A runner is what runs the code that made a call: a Lambda function (found by its handler module)
or a pipeline step (found by the entry it names: ``mlops_runtime.search.bulk``, ``monitor.py``...).
The placeholders of a ledger entry's requests are put in with the names the runner is configured
with in that environment: its environment variables (JSON values walked, keys included) and the
event patterns of the rules that invoke it, or its pipeline step's definition (S3 URIs split into
bucket and key prefix). A request is allowed when,
for one of those names, the runner's role may make it (tests/aws_contract/iam.py), together with
the KMS requests S3 and SQS make as the caller on a resource encrypted with a customer key.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import re
from dataclasses import dataclass, field

from .duties import encryption_keys, platform_functions
from .iam import Roles
from .ledger import Entry
from .operations import Request
from .templates import Environment

_PLACEHOLDER = re.compile(r"\{(?:name|key)(?:\|[^}]*)?\}|\{arn:[a-z0-9-]+\}")
_OBJECT = "object.json"


@dataclass
class Runner:
    """A function or pipeline step of one environment: its role and the names it is configured with."""

    label: str  # function name or "pipeline/step"
    role_arn: str
    configured: set[str] = field(default_factory=set)
    settings: dict = field(default_factory=dict)  # its environment variables, JSON values parsed

    def has(self, path: str) -> bool:
        """Is something configured at ``path`` ("VAR/key/0/...")? A key this runner does not have is
        a name a test chose (an endpoint, an experiment): any of the runner's own stands for it."""
        variable, *keys = path.split("/")
        return variable in self.settings and _has(self.settings[variable], keys)

    def names(self) -> list[str]:
        return sorted(s for s in self.configured if not s.startswith(("arn:", "s3://", "https://")) and " " not in s)

    def keys(self) -> list[str]:
        prefixes = {s for s in self.configured if "/" in s and not s.startswith(("arn:", "s3://", "https://"))} | {""}
        return sorted(p if p.endswith("/") or not p else p + "/" for p in prefixes)


def _strings(value: object) -> set[str]:
    """Every string in a configuration value: JSON in strings walked, dict keys included, S3 URIs,
    queue URLs and ARNs split into the names they carry."""
    found: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            found |= _strings(k) | _strings(v)
    elif isinstance(value, list):
        for v in value:
            found |= _strings(v)
    elif isinstance(value, str):
        found.add(value)
        if value[:1] in "{[":
            try:
                found |= _strings(json.loads(value))
            except ValueError:
                pass
        if value.startswith("s3://"):
            bucket, _, prefix = value[5:].partition("/")
            found |= {bucket, prefix}
        elif value.startswith("https://sqs."):
            found.add(value.rsplit("/", 1)[1])
        elif value.startswith("arn:"):
            found.add(re.split(r"[:/]", value)[-1])
    return found


TRAINING_STEP_SCRIPTS = {"Preprocess": "preprocess.py", "Evaluate": "evaluate.py"}


def runners(environment: Environment) -> dict[str, list[Runner]]:
    """Caller (handler module or job entry, as the recorder names them) -> its runners here."""
    found: dict[str, list[Runner]] = {}
    patterns = _rule_patterns(environment)
    for function in platform_functions(environment):
        configured = _strings(function.environment) | _strings(patterns.get(environment.arn(function.stack, function.logical_id), []))
        found.setdefault(function.module, []).append(
            Runner(function.name, function.role_arn, configured, _parsed(function.environment)))
    for stack, logical_id, pipeline in environment.resources("AWS::SageMaker::Pipeline"):
        body = environment.resolve(stack, pipeline["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"])
        definition = json.loads(body)
        parameters = _strings([p.get("DefaultValue", "") for p in definition.get("Parameters", [])])
        for step in definition.get("Steps", []):
            role = step.get("Arguments", {}).get("RoleArn")
            if not role:
                continue
            text = json.dumps(step)
            # The training pipeline's processing scripts are CDK file assets named by their hash:
            # those steps are known by their names (pipelines/training_definition.py).
            named = TRAINING_STEP_SCRIPTS.get(step.get("Name"))
            for entry in ("mlops_runtime.search.bulk", "monitor.py", "train.py", "preprocess.py", "evaluate.py"):
                if entry in text or entry == named:
                    found.setdefault(entry, []).append(
                        Runner(f"{environment.physical_name(stack, logical_id)}/{step['Name']}", role,
                               _strings(step) | parameters, _parsed(step["Arguments"].get("Environment", {}))))
    return found


def _parsed(variables: dict) -> dict:
    parsed = {}
    for name, value in variables.items():
        try:
            parsed[name] = json.loads(value) if isinstance(value, str) and value[:1] in "{[" else value
        except ValueError:
            parsed[name] = value
    return parsed


def _has(value: object, keys: list[str]) -> bool:
    if not keys:
        return value not in (None, "", [], {})
    key, rest = keys[0], keys[1:]
    if isinstance(value, dict):
        if key in value:
            return _has(value[key], rest)
        return any(_has(child, rest) for child in value.values())
    if isinstance(value, list):
        return any(_has(child, rest) for child in value)
    return False


def _rule_patterns(environment: Environment) -> dict[str, list]:
    """Function ARN -> the event patterns of the rules that invoke it (the events name resources too)."""
    found: dict[str, list] = {}
    for stack, _, rule in environment.resources("AWS::Events::Rule"):
        pattern = environment.resolve(stack, rule["Properties"].get("EventPattern", {}))
        for target in rule["Properties"].get("Targets", []):
            found.setdefault(environment.resolve(stack, target["Arn"]), []).append(pattern)
    return found


@dataclass(frozen=True)
class Decision:
    runner: str
    role_arn: str
    entry: Entry
    request: Request
    allowed_as: tuple[str, ...] | None  # the concrete requests that were allowed, or None


class Contract:
    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        self.roles = Roles(environment)
        self.runners = runners(environment)
        self._keys = encryption_keys(environment)
        self._cache: dict = {}

    def decide(self, entry: Entry) -> list[Decision]:
        """One decision per request and runner that makes the call (configured with what it needs)."""
        decisions = []
        for runner in self.runners.get(entry.caller, []):
            if not all(any(runner.has(path) for path in alternatives) for alternatives in entry.needs):
                continue
            for request in entry.requests:
                decisions.append(Decision(runner.label, runner.role_arn, entry, request, self._allowed_as(runner, request)))
        return decisions

    def _allowed_as(self, runner: Runner, request: Request) -> tuple[str, ...] | None:
        for action, resource, context in self._expansions(runner, request):
            concrete = [(action, resource, context), *self._kms_requests(action, resource)]
            if all(self._allowed(runner.role_arn, *c) for c in concrete):
                return tuple(f"{a} {r}" for a, r, _ in concrete)
        return None

    def _allowed(self, role: str, action: str, resource: str, context: dict) -> bool:
        key = (role, action, resource, tuple(sorted(context.items())))
        if key not in self._cache:
            self._cache[key] = self.roles.allowed(role, action, resource, context)
        return self._cache[key]

    def _expansions(self, runner: Runner, request: Request):
        """The request with each placeholder (each occurrence its own) put in with every candidate."""
        fixed = {"{region}": self.environment.region, "{account}": self.environment.account,
                 "{environment}": self.environment.name}
        texts = [_replace_all(t, fixed) for t in (request.resource, *(v for _, v in request.context))]
        pieces = [_PLACEHOLDER.split(t) for t in texts]
        slots = [m.group(0) for t in texts for m in _PLACEHOLDER.finditer(t)]
        for choice in itertools.product(*(self._candidates(runner, slot) for slot in slots)):
            values = iter(choice)
            resource, *context_values = ["".join(p + (next(values) if i < len(parts) - 1 else "")
                                                 for i, p in enumerate(parts)) for parts in pieces]
            context = dict(zip((k for k, _ in request.context), context_values, strict=True))
            yield request.action, resource, context

    def _candidates(self, runner: Runner, slot: str) -> list[str]:
        inner, _, written = slot[1:-1].partition("|")
        if inner == "key":
            prefixes = [*runner.keys(), *([written] if written else [])]
            return [prefix + _OBJECT for prefix in prefixes]
        if inner.startswith("arn:"):
            return sorted(s for s in runner.configured if s.startswith(f"arn:aws:{inner[4:]}:"))
        return [*([written] if "|" in slot else []), *runner.names()]

    def _kms_requests(self, action: str, resource: str) -> list[tuple[str, str, dict]]:
        """S3 and SQS ask KMS as the caller for a resource encrypted with a customer key."""
        service = action.split(":", 1)[0]
        container = resource.split("/", 1)[0] if service == "s3" else resource
        key = self._keys.get(container)
        if key is None:
            return []
        via = {"kms:ViaService": f"{service}.{self.environment.region}.amazonaws.com"}
        needs = {"s3:PutObject": ["kms:GenerateDataKey"], "s3:GetObject": ["kms:Decrypt"],
                 "sqs:SendMessage": ["kms:GenerateDataKey", "kms:Decrypt"], "sqs:ReceiveMessage": ["kms:Decrypt"]}
        return [(kms_action, key, via) for kms_action in needs.get(action, [])]


def _replace_all(text: str, values: dict[str, str]) -> str:
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text


def granted_actions(roles: Roles, role_arn: str) -> set[str]:
    """The actions the role's own policies allow (as written: wildcards kept)."""
    found = set()
    for document in roles.policies.get(role_arn, []):
        statements = document["Statement"] if isinstance(document["Statement"], list) else [document["Statement"]]
        for statement in statements:
            if statement["Effect"] == "Allow":
                actions = statement.get("Action", [])
                found |= {actions} if isinstance(actions, str) else set(actions)
    return found


@dataclass
class RoleReport:
    environment: str
    runner: str
    role_arn: str
    observed: set[str] = field(default_factory=set)  # "action resource" the role was found to need
    granted: set[str] = field(default_factory=set)

    def unexercised(self) -> list[str]:
        """Granted actions no observed call or service duty matched (the report's removal candidates)."""
        actions = {o.split(" ", 1)[0] for o in self.observed}
        return sorted(g for g in self.granted if not any(fnmatch.fnmatchcase(a, g) for a in actions))


ASSET_HASH = re.compile(r"\b[0-9a-f]{64}(?=\.(?:zip|tar\.gz|json)\b)")


def render_report(reports: list[RoleReport], unconfigured: list[Entry]) -> str:
    lines = [
        "# Permissions: what each role does, and what it is granted",
        "",
        "Generated by `make permissions` from the synthesized templates and the AWS calls the",
        "handlers and jobs make in the tests (`tests/aws_contract/calls.json`); the permission",
        "contract (`tests/synth/test_permission_contract.py`) fails on any call a role may not make,",
        "evaluated by moto's IAM policy engine with every environment's policies resolved for its",
        "account. *Observed* lists the IAM requests the role was found to need: its code's calls, and",
        "what Lambda and SageMaker do with it (logs, traces, dead letters, queue polling; a job's image,",
        "inputs, outputs and network interfaces); a resource",
        "shows the configured name it was checked with. *Granted, not exercised* lists actions of the",
        "role's policies no test call needed: either a code path the tests do not reach, or a grant",
        "to remove.",
        "",
    ]
    if unconfigured:
        lines += ["## Calls no environment is configured to make", "",
                  "The code makes these only with settings no environment has (the contract checks them",
                  "where one does):", "",
                  *(f"- `{e.caller}`: {e.service} `{e.operation}`, with "
                    + " and ".join("`" + " or ".join(n) + "`" for n in e.needs) for e in unconfigured), ""]
    for report in sorted(reports, key=lambda r: (r.runner.split("-", 2)[-1], r.environment)):
        lines += [f"## {report.runner} ({report.environment})", "", f"Role `{report.role_arn}`", "",
                  "| Observed | Resource |", "| --- | --- |"]
        for item in sorted(report.observed):
            action, _, resource = item.partition(" ")
            lines.append(f"| `{action}` | `{resource}` |")
        unexercised = report.unexercised()
        lines += ["", "Granted, not exercised: " + (", ".join(f"`{a}`" for a in unexercised) if unexercised else "none"), ""]
    # CDK names file assets by their content hash; a hash can differ between checkouts (bundled
    # wheels, file modes), so the report names the asset object, not its hash.
    return ASSET_HASH.sub("<asset>", "\n".join(lines).rstrip() + "\n")
