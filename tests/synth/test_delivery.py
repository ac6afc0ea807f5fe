"""Delivery pipeline with the real stages: source, synth (test then synth), self-mutation, the
environments in order with a manual approval before prod and a smoke test after each; pipeline
type V2; cdk-nag clean; a build image whose Python runs `make synth`.

All but the last test read one `python app.py` run with the pipeline enabled (``delivery_synthesis``
in tests/conftest.py), so the environments are the real ones, with their assets.
"""

from __future__ import annotations

import json
import tomllib

from mlops_platform.config import load_environments
from mlops_platform.constructs.naming import pascal
from mlops_platform.paths import REPO_ROOT
from mlops_platform.tools.synth_summary import summarize, warnings

# Python versions each CodeBuild image's `runtime-versions` can select: the images' runtimes.yml
# (github.com/aws/aws-codebuild-docker-images, ubuntu/standard/<n>/runtimes.yml) and the CodeBuild
# user guide's "Available runtimes" page, as of December 2026.
CODEBUILD_IMAGE_PYTHONS = {
    "aws/codebuild/standard:7.0": ("3.11", "3.12"),
    "aws/codebuild/standard:8.0": ("3.10", "3.11", "3.12", "3.13", "3.14"),
    "aws/codebuild/amazonlinux-x86_64-standard:5.0": ("3.9", "3.10", "3.11", "3.12"),
}


def of_type(template, type_):
    return [r["Properties"] for r in template["Resources"].values() if r["Type"] == type_]


def test_the_app_with_the_pipeline_and_real_stages_synthesizes_nag_clean(delivery_synthesis):
    assert delivery_synthesis.returncode == 0, delivery_synthesis.stderr[-2000:]
    summary = summarize(delivery_synthesis.outdir)
    assert {"AwsSolutions", "NIST.800.53.R5"} <= set(summary.packs)
    assert summary.violations == 0
    # the real stages, with every stack, live inside the pipeline
    stacks = {name: {s.name.rsplit("/", 1)[-1] for s in found} for name, found in summary.environments.items()}
    for config in load_environments():
        assert stacks[f"Delivery/{config.environment}"] >= {"Foundation", "Training", "Serving", "Api", "Monitoring"}


def test_the_pipeline_is_type_v2_and_synthesis_warns_of_nothing(delivery_synthesis):
    (codepipeline,) = of_type(delivery_synthesis.template, "AWS::CodePipeline::Pipeline")
    assert codepipeline["PipelineType"] == "V2"
    annotations = [
        (path, entry["data"])
        for artifact in delivery_synthesis.manifest["artifacts"].values()
        for path, entries in artifact.get("metadata", {}).items()
        for entry in entries if entry["type"] in ("aws:cdk:warning", "aws:cdk:error")
    ]
    assert annotations == []


def test_stages_in_order_with_approval_before_prod_and_smoke_tests(delivery_synthesis):
    configs = {c.environment: c for c in load_environments()}
    (codepipeline,) = of_type(delivery_synthesis.template, "AWS::CodePipeline::Pipeline")
    stages = {s["Name"]: s for s in codepipeline["Stages"]}
    assert list(stages)[:4] == ["Source", "Build", "UpdatePipeline", "Assets"]
    assert [n for n in stages if n in ("dev", "staging", "prod")] == ["dev", "staging", "prod"]

    def actions(stage):
        return sorted(stages[stage]["Actions"], key=lambda a: a["RunOrder"])

    for name in ("dev", "staging", "prod"):
        kinds = [(a["Name"], a["ActionTypeId"]["Category"]) for a in actions(name)]
        assert kinds[-1] == (f"SmokeTest-{name}", "Build")
        approval = [k for k in kinds if k[1] == "Approval"]
        assert approval == ([("Promote-to-prod", "Approval")] if name == "prod" else [])
        if name == "prod":
            assert kinds[0] == ("Promote-to-prod", "Approval")
        prefix = configs[name].name_prefix
        deployed = {a["Name"] for a in actions(name) if a["ActionTypeId"]["Provider"] == "CloudFormation"}
        assert {f"{prefix}-{stack}.Deploy" for stack in ("foundation", "training", "serving", "api", "monitoring")} \
            <= deployed
    (source,) = stages["Source"]["Actions"]
    assert source["ActionTypeId"]["Provider"] == "CodeStarSourceConnection"
    assert source["Configuration"]["ConnectionArn"] == delivery_synthesis.connection_arn
    assert source["Configuration"]["FullRepositoryId"] == "my-org/mlops-platform"
    # artifacts are encrypted with a customer key, shared with the target accounts
    assert codepipeline["ArtifactStore"]["EncryptionKey"]["Type"] == "KMS"


def test_synth_runs_the_readme_commands_test_then_synth(delivery_synthesis):
    specs = [json.loads(p["Source"]["BuildSpec"]) for p in of_type(delivery_synthesis.template, "AWS::CodeBuild::Project")
             if "make synth" in p["Source"].get("BuildSpec", "")]
    (spec,) = specs
    commands = spec["phases"]["build"]["commands"]
    assert commands.index("make test") < commands.index("make synth")
    assert spec["artifacts"]["base-directory"] == "cdk.out"


def test_every_build_runs_a_python_that_make_synth_accepts(delivery_synthesis):
    required = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = tuple(int(part) for part in required.removeprefix(">=").split("."))
    projects = of_type(delivery_synthesis.template, "AWS::CodeBuild::Project")
    assert projects
    for project in projects:
        image = project["Environment"]["Image"]
        spec = project["Source"]["BuildSpec"]
        if spec.endswith(".yaml"):  # the asset-publishing project's spec is a file of the assembly
            spec = (delivery_synthesis.outdir / spec).read_text()
        python = json.loads(spec)["phases"]["install"]["runtime-versions"]["python"]
        assert python in CODEBUILD_IMAGE_PYTHONS[image], (image, python)
        assert tuple(int(part) for part in python.split(".")) >= minimum, (python, required)


def test_smoke_tests_assume_only_each_environments_smoke_role(delivery_synthesis):
    texts = [json.dumps(p) for p in of_type(delivery_synthesis.template, "AWS::IAM::Policy")]
    for config in load_environments():
        role = f"arn:aws:iam::{config.account}:role/{config.name_prefix}-api-smoke-test"
        assume = [t for t in texts if role in t]
        assert len(assume) == 1 and "sts:AssumeRole" in assume[0]
    specs = [p["Source"]["BuildSpec"] for p in of_type(delivery_synthesis.template, "AWS::CodeBuild::Project")
             if "smoke_test" in p["Source"].get("BuildSpec", "")]
    assert len(specs) == 3 and all("--role-arn" in s for s in specs)


def test_each_real_stage_has_a_smoke_role_trusting_only_the_tooling_account(delivery_synthesis):
    for config in load_environments():
        (api,) = [path for path in (delivery_synthesis.outdir / f"assembly-Delivery-{config.environment}").glob("*.template.json")
                  if "Api" in path.name]
        roles = [r for r in of_type(json.loads(api.read_text()), "AWS::IAM::Role")
                 if r.get("RoleName") == f"{config.name_prefix}-api-smoke-test"]
        (role,) = roles
        assert delivery_synthesis.account in json.dumps(role["AssumeRolePolicyDocument"])


def test_the_summary_names_the_environments_inside_the_pipeline(delivery_synthesis):
    lines = warnings(summarize(delivery_synthesis.outdir))
    assert sorted(line.split(":")[1].strip() for line in lines) == sorted(c.environment for c in load_environments())
    assert all("config/dev.yaml" in line for line in lines if line.startswith("warning: dev:"))


def test_api_stack_creates_the_smoke_role_for_the_delivery_account(synthesis):
    # The real stages get no smoke role without a delivery pipeline (config/delivery: enabled: false).
    assert "SmokeTestRole" not in json.dumps(synthesis.template("staging", "Api"))


def test_custom_serving_images_are_built_and_pushed_by_codebuild_before_their_stage(delivery_synthesis):
    """An endpoint with `container.dockerfile_dir` (prod's GNN example) is an image asset of its
    stage: the pipeline's Assets stage builds it in a privileged CodeBuild project and pushes it to
    the target account's asset repository before the environment deploys; no developer machine
    builds it. Environments without such an endpoint have no image to build."""
    (codepipeline,) = of_type(delivery_synthesis.template, "AWS::CodePipeline::Pipeline")
    stage_names = [s["Name"] for s in codepipeline["Stages"]]
    (assets,) = [s for s in codepipeline["Stages"] if s["Name"] == "Assets"]
    projects = {logical_id: resource["Properties"] for logical_id, resource in delivery_synthesis.template["Resources"].items()
                if resource["Type"] == "AWS::CodeBuild::Project"}
    docker_projects = [projects[a["Configuration"]["ProjectName"]["Ref"]] for a in assets["Actions"]
                       if a["Name"].startswith("DockerAsset")]
    published = " ".join(command for p in docker_projects
                         for command in json.loads((delivery_synthesis.outdir / p["Source"]["BuildSpec"]).read_text())
                         ["phases"]["build"]["commands"])
    assert all(p["Environment"]["PrivilegedMode"] for p in docker_projects)  # docker build needs it
    built_anywhere = False
    for config in load_environments():
        expected = {f"{pascal(e.name)}Image" for e in config.serving.endpoints
                    if e.container is not None and e.container.dockerfile_dir is not None}
        (serving,) = (delivery_synthesis.outdir / f"assembly-Delivery-{config.environment}").glob("*Serving*.assets.json")
        images = json.loads(serving.read_text()).get("dockerImages", {})
        assert {image["displayName"] for image in images.values()} == expected, config.environment
        for asset_hash, image in images.items():
            built_anywhere = True
            (destination,) = image["destinations"].values()
            assert f"container-assets-{config.account}-{config.region}" in destination["repositoryName"]
            assert f'publish "{asset_hash}:' in published  # this image, by this project
            context = delivery_synthesis.outdir / serving.parent.name / image["source"]["directory"]
            assert (context / "Dockerfile").is_file() and (context / "serve.py").is_file()
            assert stage_names.index("Assets") < stage_names.index(config.environment)
    assert built_anywhere, "the example config should build the GNN image in prod"
