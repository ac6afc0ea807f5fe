"""make synth's summary: a warning line per environment whose notification topic nobody receives."""

from __future__ import annotations

import json

from mlops_platform.tools import synth_summary


def write_assembly(root, environments: dict[str, dict]) -> None:
    """A minimal cloud assembly: one nested assembly per environment with one stack template each."""
    artifacts = {}
    for name, resources in environments.items():
        directory = root / f"assembly-{name}"
        directory.mkdir(parents=True)
        (directory / "Foundation.template.json").write_text(json.dumps({"Resources": resources}))
        (directory / "manifest.json").write_text(json.dumps({"artifacts": {f"{name}Foundation": {
            "type": "aws:cloudformation:stack", "displayName": f"{name}/Foundation",
            "properties": {"templateFile": "Foundation.template.json"}}}}))
        artifacts[f"assembly-{name}"] = {"type": "cdk:cloud-assembly", "displayName": name,
                                         "properties": {"directoryName": f"assembly-{name}"}}
    (root / "manifest.json").write_text(json.dumps({"artifacts": artifacts}))


TOPIC = {"Topic": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": "mlops-dev-notifications"}}}
SUBSCRIPTION = {"Mail": {"Type": "AWS::SNS::Subscription",
                         "Properties": {"TopicArn": {"Ref": "Topic"}, "Protocol": "email", "Endpoint": "a@b.c"}}}


def test_only_the_environment_without_subscriber_is_warned_about(tmp_path, capsys):
    write_assembly(tmp_path, {"dev": TOPIC, "prod": {**TOPIC, **SUBSCRIPTION}})
    synth_summary.main([str(tmp_path)])
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert line.startswith("warning: dev: topic mlops-dev-notifications has no subscriber")
    assert "config/dev.yaml" in line and "docs/deploying.md#notifications" in line


def test_the_shipped_configs_warn_once_per_environment(synthesis):
    # every shipped config has notifications.emails: [] (the defect: alarms to a topic nobody reads)
    lines = synth_summary.warnings(synth_summary.summarize(synthesis.outdir))
    assert sorted(line.split(":")[1].strip() for line in lines) == sorted(synthesis.configs)
    assert all(f"{c.name_prefix}-notifications" in " ".join(lines) for c in synthesis.configs.values())
