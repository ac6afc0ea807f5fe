"""Semantic search: vector store, indexer and its trigger, the search route, bulk pipeline, alarms."""

from __future__ import annotations

import json
import sys

import pytest
from aws_cdk.assertions import Match

from mlops_platform.config.loader import environment_names
from mlops_platform.paths import RUNTIME_ROOT
from mlops_runtime.settings_env import SETTINGS_ENV

pytestmark = pytest.mark.synth

ENVIRONMENTS = environment_names()


def resources(synthesis, environment, type_, stack="Api"):
    template = synthesis.template(environment, stack)
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


def function(synthesis, environment, handler) -> dict:
    (found,) = [f["Properties"] for f in resources(synthesis, environment, "AWS::Lambda::Function").values()
                if f["Properties"]["Handler"] == f"mlops_runtime.handlers.{handler}.handler"]
    return found


def statements_of(synthesis, environment, props) -> list[dict]:
    role = props["Role"]["Fn::GetAtt"][0]
    return [s for p in resources(synthesis, environment, "AWS::IAM::Policy").values()
            if {"Ref": role} in p["Properties"]["Roles"] for s in p["Properties"]["PolicyDocument"]["Statement"]]


def actions_of(statements) -> dict[str, list]:
    found: dict[str, list] = {}
    for statement in statements:
        for action in statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]:
            found.setdefault(action, []).append(statement["Resource"])
    return found


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_s3_vectors_bucket_and_index_are_kms_encrypted_with_the_configured_shape(synthesis, cdk_template, environment):
    config = synthesis.configs[environment]
    (index,) = config.search.indexes
    template = cdk_template(environment, "Api")
    template.has_resource_properties("AWS::S3Vectors::VectorBucket", {
        "VectorBucketName": f"{config.name_prefix}-vectors",
        "EncryptionConfiguration": {"SseType": "aws:kms", "KmsKeyArn": Match.any_value()},
    })
    template.has_resource_properties("AWS::S3Vectors::Index", {
        "IndexName": index.name, "Dimension": index.dimension, "DistanceMetric": index.distance,
        "DataType": "float32", "VectorBucketName": f"{config.name_prefix}-vectors",
        "MetadataConfiguration": {"NonFilterableMetadataKeys": ["text", "chunk_count"]},
    })
    # the key lets S3 Vectors' indexing principal decrypt, for this account only
    key_policy = json.dumps(synthesis.template(environment, "Foundation"))
    assert "indexing.s3vectors.amazonaws.com" in key_policy


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_indexer_and_search_share_settings_the_runtime_parses(synthesis, environment):
    if str(RUNTIME_ROOT) not in sys.path:
        sys.path.append(str(RUNTIME_ROOT))
    from mlops_runtime.domain import search as domain

    config = synthesis.configs[environment]
    (index,) = config.search.indexes
    indexer = function(synthesis, environment, "search_indexer")
    search = function(synthesis, environment, "search_api")
    raw = json.loads(indexer["Environment"]["Variables"][SETTINGS_ENV])
    report_bucket = f"{config.name_prefix}-artifacts-{config.account}-eu-west-1"
    assert (raw.pop("report_bucket"), raw.pop("report_prefix")) == (report_bucket, "search-reports/")
    api = json.loads(search["Environment"]["Variables"][SETTINGS_ENV])
    assert (api.pop("report_bucket", None), api.pop("report_prefix")) == (None, "search-reports/")  # null: left out
    assert raw == api  # the same indexes; only the indexer writes reports
    settings = raw["indexes"]
    assert settings[index.name]["store"] == {"kind": "s3vectors", "vector_bucket": f"{config.name_prefix}-vectors",
                                             "index": index.name}
    assert settings[index.name]["embedder"] == {"kind": "bedrock", "model_id": index.embedder.model_id,
                                                "batch_size": index.embedder.batch_size}
    domain.SearchSettings.parse(raw)  # the runtime's own parser accepts what the stack writes
    assert search["Timeout"] <= 28 and indexer["Timeout"] == 900


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_search_route_is_iam_authorized(synthesis, environment):
    paths = {r["Properties"]["PathPart"] for r in resources(synthesis, environment, "AWS::ApiGateway::Resource").values()}
    assert {"search", "{index}"} <= paths
    methods = [m["Properties"] for m in resources(synthesis, environment, "AWS::ApiGateway::Method").values()
               if m["Properties"].get("RequestParameters") == {"method.request.path.index": True}]
    assert len(methods) == 1 and methods[0]["HttpMethod"] == "POST" and methods[0]["AuthorizationType"] == "AWS_IAM"


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_least_privilege_for_indexer_and_search(synthesis, environment):
    config = synthesis.configs[environment]
    (index,) = config.search.indexes
    index_arn = f":s3vectors:eu-west-1:{config.account}:bucket/{config.name_prefix}-vectors/index/{index.name}"
    model_arn = f"arn:aws:bedrock:eu-west-1::foundation-model/{index.embedder.model_id}"
    indexer = actions_of(statements_of(synthesis, environment, function(synthesis, environment, "search_indexer")))
    search = actions_of(statements_of(synthesis, environment, function(synthesis, environment, "search_api")))
    for action in ("s3vectors:PutVectors", "s3vectors:DeleteVectors", "s3vectors:GetVectors"):
        assert json.dumps(indexer[action]).count(index_arn) >= 1, action
    assert "s3vectors:QueryVectors" not in indexer  # the indexer never searches
    assert "s3vectors:PutVectors" not in search and "s3vectors:DeleteVectors" not in search
    assert json.dumps(search["s3vectors:QueryVectors"]).count(index_arn) == 1
    assert indexer["bedrock:InvokeModel"] == [model_arn] and search["bedrock:InvokeModel"] == [model_arn]
    assert "s3:PutObject" not in search


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_new_documents_reach_the_indexer_through_eventbridge(synthesis, cdk_template, environment):
    config = synthesis.configs[environment]
    cdk_template(environment, "Api").has_resource_properties("AWS::Events::Rule", {
        "EventPattern": {"source": ["aws.s3"], "detail-type": ["Object Created"],
                         "detail": {"bucket": {"name": [f"{config.name_prefix}-raw-data-{config.account}-eu-west-1"]},
                                    "object": {"key": [{"prefix": "search/"}]}}},
        "Targets": [Match.object_like({"RetryPolicy": {"MaximumRetryAttempts": 2},
                                       "DeadLetterConfig": Match.any_value()})],
    })


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_bulk_indexing_pipeline_runs_the_indexer_code_as_a_processing_job(synthesis, environment):
    config = synthesis.configs[environment]
    pipelines = [p for p in resources(synthesis, environment, "AWS::SageMaker::Pipeline").values()
                 if p["Properties"]["PipelineName"] == f"{config.name_prefix}-search-bulk-index"]
    (pipeline,) = pipelines
    body = pipeline["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]
    text = body if isinstance(body, str) else "".join(p if isinstance(p, str) else "TOKEN" for p in body["Fn::Join"][1])
    assert "-m mlops_runtime.search.bulk" in text and "sagemaker-scikit-learn:1.4-2-py312-cpu-py3" in text
    assert '"Parameters.IndexName"' in text and '"Parameters.InputS3Uri"' in text and SETTINGS_ENV in text
    # The instance count is a parameter (default from config): several instances shard the objects.
    count = config.search.indexes[0].bulk_instance_count if config.search.indexes else 1
    assert f'{{"Name":"InstanceCount","Type":"Integer","DefaultValue":{count}}}' in text.replace(" ", "")
    assert '"InstanceCount":{"Get":"Parameters.InstanceCount"}' in text.replace(" ", "")


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_indexing_failures_and_search_latency_are_alarmed(synthesis, cdk_template, environment):
    prefix = synthesis.configs[environment].name_prefix
    template = cdk_template(environment, "Api")
    for name in ("search-indexer-errors", "search-documents-rejected", "search-api-errors", "search-api-p99-latency"):
        template.has_resource_properties("AWS::CloudWatch::Alarm", {
            "AlarmName": f"{prefix}-{name}", "AlarmActions": [Match.string_like_regexp(f"{prefix}-notifications$")]})
    monitoring = [a["Properties"] for a in resources(synthesis, environment, "AWS::CloudWatch::Alarm", "Monitoring").values()]
    (bulk,) = [a for a in monitoring if a["AlarmName"] == f"{prefix}-search-bulk-index-failed"]
    assert bulk["MetricName"] == "ExecutionFailed" and bulk["Dimensions"] == [
        {"Name": "PipelineName", "Value": f"{prefix}-search-bulk-index"}]
    dashboard = json.dumps(resources(synthesis, environment, "AWS::CloudWatch::Dashboard", "Monitoring"))
    assert f"{prefix}-search-api" in dashboard and "DocumentsRejected" in dashboard


def test_opensearch_serverless_option_scopes_its_policies_and_stays_nag_clean(tmp_path):
    """`store: opensearch`: a VECTORSEARCH collection with encryption (platform key), network and
    data-access policies naming only the platform's roles, and the k-NN index. Foundation and API
    stacks only, with the compliance packs (raises on an unacknowledged finding)."""
    from pathlib import Path

    import yaml
    from aws_cdk import App, Environment, Stage

    from mlops_platform.app_builder import FEATURE_FLAGS
    from mlops_platform.compliance import add_compliance_checks
    from mlops_platform.config import parse_config
    from mlops_platform.stacks.api import ApiStack
    from mlops_platform.stacks.foundation import FoundationStack

    data = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" / "dev.yaml").read_text())
    data["search"]["indexes"][0].update(store="opensearch", max_top_k=50)
    config = parse_config(data, "dev.yaml")
    app = App(context=FEATURE_FLAGS, outdir=str(tmp_path))
    stage = Stage(app, "dev", env=Environment(account=config.account, region=config.region))
    foundation = FoundationStack(stage, "Foundation", config=config)
    ApiStack(stage, "Api", config=config, foundation=foundation)
    add_compliance_checks(app)
    app.synth()

    (template_file,) = (tmp_path / "assembly-dev").glob("devApi*.template.json")
    template = json.loads(template_file.read_text())
    found = {k: r for k, r in template["Resources"].items()}
    (collection,) = [r["Properties"] for r in found.values() if r["Type"] == "AWS::OpenSearchServerless::Collection"]
    assert collection["Type"] == "VECTORSEARCH" and collection["StandbyReplicas"] == "DISABLED"
    policies = {r["Properties"]["Type"]: r["Properties"]["Policy"] for r in found.values()
                if r["Type"] in ("AWS::OpenSearchServerless::SecurityPolicy", "AWS::OpenSearchServerless::AccessPolicy")}
    assert set(policies) == {"encryption", "network", "data"}
    assert "KmsARN" in json.dumps(policies["encryption"]) and '"AWSOwnedKey":false' in json.dumps(
        policies["encryption"]).replace(" ", "").replace('\\"', '"')
    data_policy = json.dumps(policies["data"])
    assert "aoss:ReadDocument" in data_policy and "cfn-exec-role" in data_policy and "*" not in data_policy.replace(
        f"index/{collection['Name']}/*", "")
    (knn,) = [r["Properties"] for r in found.values() if r["Type"] == "AWS::OpenSearchServerless::Index"]
    assert knn["Mappings"]["Properties"]["vector"]["Dimension"] == 1024
    assert not [r for r in found.values() if r["Type"].startswith("AWS::S3Vectors::")]
