"""The architecture picture: drawn from a hand-made cloud assembly (boxes, labels, arrows,
determinism, the command line), and docs/architecture.svg against the synthesized app."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from mlops_platform.tools import architecture
from mlops_platform.tools.architecture import AssemblyError, Graph, build_svg, main, read_environment

ROOT = Path(__file__).resolve().parents[3]
CHECKED_IN = ROOT / "docs" / "architecture.svg"
ACCOUNT, REGION = "123456789012", "eu-west-1"
RAW = f"acme-test-raw-data-{ACCOUNT}-{REGION}"
FEEDBACK = f"acme-test-feedback-{ACCOUNT}-{REGION}"
PIPELINE_ARN = {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"},
                                  f":sagemaker:{REGION}:{ACCOUNT}:pipeline/acme-test-churn"]]}

FOUNDATION = {
    "Resources": {
        "PlatformKey1C4A1A63": {"Type": "AWS::KMS::Key", "Properties": {"EnableKeyRotation": True}},
        "PlatformKeyAlias776892E2": {"Type": "AWS::KMS::Alias", "Properties": {
            "AliasName": "alias/acme-test", "TargetKeyId": {"Fn::GetAtt": ["PlatformKey1C4A1A63", "Arn"]}}},
        "RawDataBucket46CFA8FB": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": RAW}},
        "FeedbackBucketC7CB8C59": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": FEEDBACK}},
        "RawDataPolicy0A1B2C3D": {"Type": "AWS::S3::BucketPolicy", "Properties": {"Bucket": {"Ref": "RawDataBucket46CFA8FB"}}},
    },
    "Outputs": {
        "ExportsKeyArn": {"Value": {"Fn::GetAtt": ["PlatformKey1C4A1A63", "Arn"]},
                          "Export": {"Name": "acme-test-foundation:ExportsKeyArn"}},
    },
}
TRAINING = {
    "Resources": {
        "ChurnPipeline": {"Type": "AWS::SageMaker::Pipeline", "Properties": {
            "PipelineName": "acme-test-churn", "RoleArn": "arn:aws:iam::123456789012:role/acme-test-sagemaker"}},
        "ChurnModelPackageGroup": {"Type": "AWS::SageMaker::ModelPackageGroup", "Properties": {
            "ModelPackageGroupName": "acme-test-churn"}},
        "PipelineRolePolicy5E6F7A8B": {"Type": "AWS::IAM::Policy", "Properties": {"PolicyDocument": {"Statement": [
            {"Action": "kms:Decrypt", "Effect": "Allow", "Resource": {"Fn::ImportValue": "acme-test-foundation:ExportsKeyArn"}},
            {"Action": "s3:GetObject", "Effect": "Allow", "Resource": f"arn:aws:s3:::{RAW}/churn/*"},
        ]}}},
        "ChurnNewDataRule": {"Type": "AWS::Events::Rule", "Properties": {
            "EventPattern": {"source": ["aws.s3"], "detail-type": ["Object Created"],
                             "detail": {"bucket": {"name": [RAW]}, "object": {"key": [{"wildcard": "churn/*_SUCCESS"}]}}},
            "Targets": [{"Arn": PIPELINE_ARN, "Id": "Target0"}]}},
    },
}
SERVING = {
    "Resources": {
        "DeployerFunction8445E917": {"Type": "AWS::Lambda::Function", "Properties": {
            "FunctionName": "acme-test-endpoint-deployer", "Handler": "deployer.handler"}},
        "DeployOnApprovalAF7CCB9E": {"Type": "AWS::Events::Rule", "Properties": {
            "EventPattern": {"source": ["aws.sagemaker"], "detail-type": ["SageMaker Model Package State Change"],
                             "detail": {"ModelPackageGroupName": ["acme-test-churn"], "ModelApprovalStatus": ["Approved"]}},
            "Targets": [{"Arn": {"Fn::GetAtt": ["DeployerFunction8445E917", "Arn"]}, "Id": "Target0"}]}},
        "ChurnLatencyA284EC09": {"Type": "AWS::CloudWatch::Alarm", "Properties": {
            "AlarmName": "acme-test-churn-p99-latency", "MetricName": "ModelLatency", "Namespace": "AWS/SageMaker",
            "Dimensions": [{"Name": "EndpointName", "Value": "acme-test-churn"}]}},
        "DeployerPolicy9A8B7C6D": {"Type": "AWS::IAM::Policy", "Properties": {"PolicyDocument": {"Statement": [
            {"Action": "sagemaker:DescribeModelPackage", "Effect": "Allow",
             "Resource": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/acme-test-churn/*"},
        ]}}},
    },
}


def write_assembly(root: Path, stage: str = "test", nested_in: str | None = None) -> Path:
    """A cloud assembly with one stage of three stacks, optionally inside another assembly."""
    outdir = root / "cdk.out"
    stage_parent = outdir
    top_artifacts: dict = {}
    if nested_in:
        top_artifacts[f"assembly-{nested_in}"] = {"type": "cdk:cloud-assembly", "properties": {
            "directoryName": f"assembly-{nested_in}", "displayName": nested_in}}
        stage_parent = outdir / f"assembly-{nested_in}"
    stage_dir = stage_parent / f"assembly-{stage}"
    stage_dir.mkdir(parents=True)
    stage_artifacts = {}
    for stack_id, template in (("Foundation", FOUNDATION), ("Training", TRAINING), ("Serving", SERVING)):
        file_name = f"{stage}{stack_id}.template.json"
        (stage_dir / file_name).write_text(json.dumps(template))
        stage_artifacts[f"{stage}{stack_id}"] = {
            "type": "aws:cloudformation:stack", "environment": f"aws://{ACCOUNT}/{REGION}",
            "properties": {"templateFile": file_name, "stackName": f"acme-{stage}-{stack_id.lower()}"},
            "displayName": f"{stage}/{stack_id}",
        }
    (stage_dir / "manifest.json").write_text(json.dumps({"version": "48.0.0", "artifacts": stage_artifacts}))
    stage_artifact = {"type": "cdk:cloud-assembly", "properties": {
        "directoryName": f"assembly-{stage}", "displayName": f"{nested_in}/{stage}" if nested_in else stage}}
    if nested_in:
        (stage_parent / "manifest.json").write_text(json.dumps(
            {"version": "48.0.0", "artifacts": {f"assembly-{stage}": stage_artifact}}))
    else:
        top_artifacts[f"assembly-{stage}"] = stage_artifact
    (outdir / "manifest.json").write_text(json.dumps({"version": "48.0.0", "artifacts": top_artifacts}))
    return outdir


@pytest.fixture
def assembly(tmp_path) -> Path:
    return write_assembly(tmp_path)


def text_of(svg: str) -> str:
    """The visible text, tags removed, entities decoded."""
    plain = re.sub(r"<[^>]+>", "", svg)
    return plain.replace("&gt;", ">").replace("&lt;", "<").replace("&amp;", "&")


def edge(svg: str, source: str, target: str) -> str:
    match = re.search(rf'<path id="edge-{source}-{target}" class="edge (\w+)"', svg)
    assert match, f"no arrow {source} -> {target}"
    return match.group(1)


def test_one_box_per_stack_and_one_for_the_run_time_endpoints(assembly):
    svg = build_svg(assembly, "test")
    for node in ("Foundation", "Training", "Serving", "Endpoints"):
        assert f'<g id="node-{node}">' in svg
    dashed = re.findall(r'<g id="node-(\w+)">\n<rect [^>]*stroke-dasharray', svg)
    assert dashed == ["Endpoints"]  # only the run-time endpoints are drawn dashed
    text = text_of(svg)
    assert "MLOps platform: test (account 123456789012, eu-west-1)" in text
    assert "acme-test-training · 4 resources" in text


def test_boxes_list_resources_by_kind_without_the_prefix(assembly):
    text = text_of(build_svg(assembly, "test"))
    assert "KMS key (1): alias/acme-test, rotated" in text
    assert "S3 buckets (2): feedback, raw-data" in text  # sorted, prefix and account/region removed
    assert "SageMaker pipelines (1): churn" in text
    assert "Model package groups (1): churn" in text
    assert "Lambda functions (1): endpoint-deployer" in text
    assert "EventBridge rules (1): ChurnNewDataRule" in text
    assert "EventBridge rules (1): DeployOnApproval" in text  # CDK's hash suffix removed
    assert "CloudWatch alarms: 1" in text
    assert "+ 1 more: IAM 1" in text and "+ 1 more: S3 1" in text
    assert "Endpoints (1): churn" in text


def test_arrows_from_imports_events_and_known_flows(assembly):
    svg = build_svg(assembly, "test")
    assert edge(svg, "Training", "Foundation") == "uses"  # Fn::ImportValue of the key, the bucket's ARN
    assert edge(svg, "Foundation", "Training") == "data"  # raw data -> pipeline, with its rule
    assert edge(svg, "Training", "Serving") == "data"  # approved package -> deployer
    assert edge(svg, "Serving", "Endpoints") == "data"  # the deployer creates the endpoints
    assert edge(svg, "Serving", "Training") == "uses"  # a model-package ARN of Training's group
    assert 'id="edge-Serving-Foundation"' not in svg  # no reference, no arrow
    flows = {(f.source, f.target, f.text) for f in Graph(read_environment(assembly, "test")).flows()}
    assert flows == {
        ("Foundation", "Training", "training data: bucket raw-data -> pipeline churn [EventBridge rule ChurnNewDataRule]"),
        ("Training", "Training", "registers model packages: pipeline churn -> model package group churn"),
        ("Training", "Serving", "approved model package -> deployer: model package group churn -> endpoint-deployer "
                                "[EventBridge rule DeployOnApproval]"),
        ("Serving", "Endpoints", "creates and updates endpoints (blue/green): endpoint-deployer -> endpoint churn"),
        ("Training", "Foundation", "uses bucket raw-data; KMS key"),
        ("Serving", "Training", "uses model package group churn"),
    }
    legend = " ".join(text_of(svg).split())  # the legend wraps long lines
    assert "1. Foundation -> Training: training data: bucket raw-data -> pipeline churn" in legend
    assert "inside Training: registers model packages" in legend


def test_flows_are_numbered_in_order_and_the_arrows_carry_the_numbers(assembly):
    env = read_environment(assembly, "test")
    flows = Graph(env).flows()
    assert [f.number for f in flows] == list(range(1, len(flows) + 1))
    assert [f.style for f in flows] == sorted((f.style for f in flows), key=["data", "event", "uses"].index)
    svg = build_svg(assembly, "test")
    badges = re.findall(r'class="badge">([0-9,]+)</text>', svg)
    drawn = sorted(int(n) for badge in badges for n in badge.split(","))
    assert drawn == sorted(f.number for f in flows if f.source != f.target)


def test_output_is_deterministic_and_independent_of_the_assembly_path(assembly, tmp_path):
    first = build_svg(assembly, "test")
    assert build_svg(assembly, "test") == first
    copy = tmp_path / "elsewhere" / "out"
    shutil.copytree(assembly, copy)
    assert build_svg(copy, "test") == first
    assert str(tmp_path) not in first


def test_a_stage_nested_in_a_pipeline_assembly_is_found(tmp_path):
    outdir = write_assembly(tmp_path, nested_in="Delivery")
    assert '<g id="node-Serving">' in build_svg(outdir, "test")


def test_command_line_writes_checks_and_reports_a_missing_stage(assembly, tmp_path, capsys):
    output = tmp_path / "docs" / "architecture.svg"
    args = ["--assembly", str(assembly), "--environment", "test", "--output", str(output)]
    assert main(args) == 0
    assert output.read_text().startswith("<svg ")
    assert main(args + ["--check"]) == 0
    output.write_text("<svg/>")
    assert main(args + ["--check"]) == 1
    capsys.readouterr()
    assert main(["--assembly", str(assembly), "--environment", "prod", "--output", str(output)]) == 1
    assert capsys.readouterr().err.strip() == f"{assembly}: no stage 'prod' in the assembly (stages: test)"
    with pytest.raises(AssemblyError, match="no cloud assembly"):
        read_environment(tmp_path / "nothing", "test")


def test_text_fits_the_boxes(assembly):
    svg = build_svg(assembly, "test")
    limit = int((architecture.COL_W - 2 * architecture.PAD) / architecture.CHAR)
    for group in re.findall(r'<g id="node-[^"]+">(.*?)</g>', svg, flags=re.DOTALL):
        for line in re.findall(r'class="mono" xml:space="preserve">(.*?)</text>', group):
            assert len(text_of(line)) <= limit, line


@pytest.mark.synth
def test_docs_architecture_svg_matches_the_synthesized_app(synthesis):
    assert synthesis.templates.get("staging"), f"no staging templates in the synthesis ({synthesis.error})"
    generated = build_svg(synthesis.outdir, "staging")
    assert CHECKED_IN.exists(), "docs/architecture.svg is missing: run `make docs`"
    assert CHECKED_IN.read_text(encoding="utf-8") == generated, (
        "docs/architecture.svg is out of date with the synthesized app: run `make docs` (synthesizes into "
        "cdk.out, then python -m mlops_platform.tools.architecture --assembly cdk.out --environment staging "
        "--output docs/architecture.svg) and commit the result"
    )
