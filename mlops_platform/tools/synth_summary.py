"""Summarize a synthesized cloud assembly: stacks per environment, resources, cdk-nag result.

    python -m mlops_platform.tools.synth_summary cdk.out

Exits non-zero when the assembly is missing or the validation report has unacknowledged
findings, so it doubles as a gate after ``cdk synth``.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class StackSummary:
    name: str
    resources: int
    resource_types: Counter = field(default_factory=Counter)
    unsubscribed_topics: list[str] = field(default_factory=list)  # SNS topics nobody receives


@dataclass
class AssemblySummary:
    environments: dict[str, list[StackSummary]]
    violations: int
    acknowledged: int
    packs: list[str]


def _stacks(assembly_dir: Path) -> list[StackSummary]:
    manifest = json.loads((assembly_dir / "manifest.json").read_text())
    stacks = []
    for artifact_id, artifact in sorted(manifest.get("artifacts", {}).items()):
        if artifact.get("type") != "aws:cloudformation:stack":
            continue
        template = json.loads((assembly_dir / artifact["properties"]["templateFile"]).read_text())
        resources = template.get("Resources", {})
        types = Counter(resource["Type"] for resource in resources.values())
        name = artifact.get("displayName", artifact_id)
        stacks.append(StackSummary(name=name, resources=len(resources), resource_types=types,
                                   unsubscribed_topics=_unsubscribed_topics(resources)))
    return stacks


def _unsubscribed_topics(resources: dict) -> list[str]:
    """Names of the template's SNS topics with neither an inline nor a separate subscription."""
    subscribed = {
        resource["Properties"].get("TopicArn", {}).get("Ref")
        for resource in resources.values()
        if resource["Type"] == "AWS::SNS::Subscription" and isinstance(resource["Properties"].get("TopicArn"), dict)
    }
    return sorted(
        resource["Properties"].get("TopicName", logical_id)
        for logical_id, resource in resources.items()
        if resource["Type"] == "AWS::SNS::Topic"
        and logical_id not in subscribed and not resource["Properties"].get("Subscription")
    )


def summarize(outdir: Path) -> AssemblySummary:
    manifest = json.loads((outdir / "manifest.json").read_text())
    environments: dict[str, list[StackSummary]] = {}
    for artifact_id, artifact in sorted(manifest.get("artifacts", {}).items()):
        if artifact.get("type") == "cdk:cloud-assembly":
            stacks = _stacks(outdir / artifact["properties"]["directoryName"])
            # A stage inside the delivery pipeline's stack has no display name: "Delivery/dev" from its stacks'.
            stage = artifact.get("displayName") or (
                stacks[0].name.rsplit("/", 1)[0] if stacks else artifact_id.removeprefix("assembly-"))
            environments[stage] = stacks
    top_level = _stacks(outdir)  # the delivery pipeline's own stack, when enabled
    for stack in top_level:
        environments[stack.name] = [stack]
    report_path = outdir / "validation-report.json"
    violations = acknowledged = 0
    packs: list[str] = []
    if report_path.exists():
        report = json.loads(report_path.read_text())
        for plugin in report.get("pluginReports", []):
            packs.append(plugin["pluginName"])
            violations += sum(len(v["violatingConstructs"]) for v in plugin.get("violations", []))
            acknowledged += sum(
                len(v["violatingConstructs"]) for v in plugin.get("suppressedViolations", [])
            )
    return AssemblySummary(environments, violations, acknowledged, packs)


def render(summary: AssemblySummary) -> str:
    lines = []
    for environment, stacks in summary.environments.items():
        total = sum(stack.resources for stack in stacks)
        lines.append(f"{environment}: {len(stacks)} stacks, {total} resources")
        for stack in stacks:
            lines.append(f"  {stack.name}: {stack.resources} resources")
    packs = ", ".join(summary.packs) if summary.packs else "no report found"
    lines.append(
        f"cdk-nag ({packs}): {summary.violations} unacknowledged findings, "
        f"{summary.acknowledged} acknowledged with a reason"
    )
    return "\n".join(lines)


def warnings(summary: AssemblySummary) -> list[str]:
    """One line per environment whose notification topic has no subscriber: its alarms reach nobody."""
    lines = []
    for environment, stacks in summary.environments.items():
        name = environment.rsplit("/", 1)[-1]  # "Delivery/prod" when the pipeline deploys it
        for topic in (topic for stack in stacks for topic in stack.unsubscribed_topics):
            lines.append(
                f"warning: {name}: topic {topic} has no subscriber, so its alarms, approvals and budget "
                f"alerts reach nobody: set notifications.emails in config/{name}.yaml or subscribe Slack "
                f"(docs/deploying.md#notifications)"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    outdir = Path(args[0] if args else "cdk.out")
    if not (outdir / "manifest.json").exists():
        print(f"{outdir}: no cloud assembly; run `make synth` first", file=sys.stderr)
        return 1
    summary = summarize(outdir)
    print(render(summary))
    for line in warnings(summary):
        print(line, file=sys.stderr)
    if not summary.packs:
        print("cdk-nag did not run: no validation-report.json in the assembly", file=sys.stderr)
        return 1
    return 1 if summary.violations else 0


if __name__ == "__main__":
    sys.exit(main())
