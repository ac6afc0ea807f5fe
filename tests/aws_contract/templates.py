"""An environment's synthesized templates as a fake account would deploy them: intrinsics resolved.

CloudFormation decides physical names and ARNs at deploy time; here every ``Ref``, ``Fn::GetAtt``,
``Fn::Join``, ``Fn::Sub``, ``Fn::Select``, ``Fn::Split`` and ``Fn::ImportValue`` is resolved to
the string CloudFormation would produce in the environment's account and region, with a name
made from the stack and logical id where the template leaves the name to CloudFormation. That is
enough to evaluate the templates' policies against concrete ARNs (tests/aws_contract/iam.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

PARTITION = "aws"
URL_SUFFIX = "amazonaws.com"

# Resource type -> (name property, ARN format). ``{name}``: the physical name (the property, else
# generated), ``{r}``/``{a}``: region and account.
_ARNS = {
    "AWS::DynamoDB::Table": ("TableName", "arn:aws:dynamodb:{r}:{a}:table/{name}"),
    "AWS::SQS::Queue": ("QueueName", "arn:aws:sqs:{r}:{a}:{name}"),
    "AWS::SNS::Topic": ("TopicName", "arn:aws:sns:{r}:{a}:{name}"),
    "AWS::KMS::Key": (None, "arn:aws:kms:{r}:{a}:key/{name}"),
    "AWS::Logs::LogGroup": ("LogGroupName", "arn:aws:logs:{r}:{a}:log-group:{name}:*"),
    "AWS::Lambda::Function": ("FunctionName", "arn:aws:lambda:{r}:{a}:function:{name}"),
    "AWS::IAM::Role": ("RoleName", "arn:aws:iam::{a}:role/{name}"),
    "AWS::S3::Bucket": ("BucketName", "arn:aws:s3:::{name}"),
    "AWS::Events::Rule": ("Name", "arn:aws:events:{r}:{a}:rule/{name}"),
    "AWS::KinesisFirehose::DeliveryStream": ("DeliveryStreamName", "arn:aws:firehose:{r}:{a}:deliverystream/{name}"),
    "AWS::SecretsManager::Secret": ("Name", "arn:aws:secretsmanager:{r}:{a}:secret:{name}-AbCdEf"),
    "AWS::SageMaker::Pipeline": ("PipelineName", "arn:aws:sagemaker:{r}:{a}:pipeline/{name}"),
    "AWS::SageMaker::ModelPackageGroup": ("ModelPackageGroupName", "arn:aws:sagemaker:{r}:{a}:model-package-group/{name}"),
}
# Resource type -> what ``Ref`` returns: "name", "arn" or "url" (SQS).
_REFS = {"AWS::SNS::Topic": "arn", "AWS::SQS::Queue": "url", "AWS::SecretsManager::Secret": "arn"}


@dataclass
class Environment:
    """One environment's stacks: ``templates`` is stack id -> template dict."""

    name: str
    account: str
    region: str
    templates: dict[str, dict]
    _exports: dict[str, Any] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        for stack, template in self.templates.items():
            for output in template.get("Outputs", {}).values():
                if "Export" in output:
                    self._exports[self.resolve(stack, output["Export"]["Name"])] = (stack, output["Value"])

    def resources(self, resource_type: str):
        """(stack, logical id, resource) of every resource of the type, in every stack."""
        for stack, template in self.templates.items():
            for logical_id, resource in template.get("Resources", {}).items():
                if resource["Type"] == resource_type:
                    yield stack, logical_id, resource

    def resource(self, stack: str, logical_id: str) -> dict:
        return self.templates[stack]["Resources"][logical_id]

    def physical_name(self, stack: str, logical_id: str) -> str:
        resource = self.resource(stack, logical_id)
        name_property = _ARNS.get(resource["Type"], (None, ""))[0]
        name = resource.get("Properties", {}).get(name_property) if name_property else None
        if name is not None:
            return self.resolve(stack, name)
        return f"{stack}-{logical_id}"[:60]

    def arn(self, stack: str, logical_id: str) -> str:
        resource_type = self.resource(stack, logical_id)["Type"]
        if resource_type not in _ARNS:
            raise KeyError(f"{stack}/{logical_id}: no ARN format for {resource_type} in tests/aws_contract/templates.py")
        name = self.physical_name(stack, logical_id)
        return _ARNS[resource_type][1].format(r=self.region, a=self.account, name=name)

    def ref(self, stack: str, logical_id: str) -> str:
        kind = _REFS.get(self.resource(stack, logical_id)["Type"], "name")
        if kind == "arn":
            return self.arn(stack, logical_id)
        if kind == "url":
            return f"https://sqs.{self.region}.{URL_SUFFIX}/{self.account}/{self.physical_name(stack, logical_id)}"
        return self.physical_name(stack, logical_id)

    def resource_by_ref(self, stack: str, value: Any) -> tuple[str, str] | None:
        """(stack, logical id) that ``{"Ref": id}``, ``{"Fn::GetAtt": [id, ...]}`` or an
        ``Fn::ImportValue`` of one of those points at, else None."""
        if isinstance(value, dict):
            if "Ref" in value and value["Ref"] in self.templates[stack]["Resources"]:
                return stack, value["Ref"]
            if "Fn::GetAtt" in value:
                return stack, value["Fn::GetAtt"][0]
            if "Fn::ImportValue" in value:
                exporting_stack, exported = self._exports[self.resolve(stack, value["Fn::ImportValue"])]
                return self.resource_by_ref(exporting_stack, exported)
        return None

    def resolve(self, stack: str, value: Any) -> Any:
        """``value`` with every intrinsic function replaced by what it resolves to."""
        if isinstance(value, list):
            return [self.resolve(stack, v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1 or not next(iter(value)).startswith(("Fn::", "Ref")):
            return {k: self.resolve(stack, v) for k, v in value.items()}
        function, argument = next(iter(value.items()))
        if function == "Ref":
            return self._pseudo(argument) if argument.startswith("AWS::") else self.ref(stack, argument)
        if function == "Fn::GetAtt":
            logical_id, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
            return self._attribute(stack, logical_id, attribute)
        if function == "Fn::Join":
            separator, parts = argument
            return separator.join(str(p) for p in self.resolve(stack, parts))
        if function == "Fn::Select":
            index, items = argument
            return self.resolve(stack, items)[int(self.resolve(stack, index))]
        if function == "Fn::Split":
            separator, text = argument
            return self.resolve(stack, text).split(separator)
        if function == "Fn::ImportValue":
            exporting_stack, exported = self._exports[self.resolve(stack, argument)]
            return self.resolve(exporting_stack, exported)
        if function == "Fn::Sub":
            text, variables = (argument, {}) if isinstance(argument, str) else argument
            return re.sub(r"\$\{([^}!]+)\}", lambda m: self._substitute(stack, m.group(1), variables), text)
        raise ValueError(f"{stack}: intrinsic {function} not resolved by tests/aws_contract/templates.py")

    def _substitute(self, stack: str, name: str, variables: dict) -> str:
        if name in variables:
            return str(self.resolve(stack, variables[name]))
        if name.startswith("AWS::"):
            return self._pseudo(name)
        if "." in name:
            logical_id, attribute = name.split(".", 1)
            return self._attribute(stack, logical_id, attribute)
        return self.ref(stack, name)

    def _pseudo(self, name: str) -> str:
        return {"AWS::Partition": PARTITION, "AWS::AccountId": self.account, "AWS::Region": self.region,
                "AWS::URLSuffix": URL_SUFFIX, "AWS::StackName": name}[name]

    def _attribute(self, stack: str, logical_id: str, attribute: str) -> str:
        if attribute == "Arn":
            return self.arn(stack, logical_id)
        if attribute in ("QueueName", "Name"):
            return self.physical_name(stack, logical_id)
        if attribute == "QueueUrl":
            return self.ref(stack, logical_id)
        if attribute == "KeyId":
            return self.physical_name(stack, logical_id)
        return f"{stack}-{logical_id}-{attribute}"
