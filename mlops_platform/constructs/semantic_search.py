"""Semantic search: vector stores, the indexing Lambda and bulk pipeline, the search route, alarms.

Documents (JSON lines ``{"id", "text", "metadata"}``, or ``{"id", "deleted": true}``) dropped under
``search/<index>/`` in the raw-data bucket reach the indexer through EventBridge (the bucket sends
its events there); for large backfills the pipeline ``<prefix>-search-bulk-index`` runs the same
indexing code as a processing job (parameters ``IndexName`` and ``InputS3Uri``). Both write a
report of rejected lines under ``search-reports/`` in the artifacts bucket. ``POST
/v1/search/{index}`` embeds the query and returns the nearest chunks. Runtime contracts:
``docs/search.md``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_sns as sns
from constructs import Construct

from ..compliance import (
    GRANT_READ_ACTIONS, KMS_GRANT_ACTIONS, acknowledge_wildcards, objects_under,
)
from ..config.models import SearchIndexConfig
from ..function_settings import SearchResources
from ..lambda_bundles import stage_bundle
from ..runtime_tables import settings_env
from ..wheel_sets import BULK_JOB_SDK_TARGET, sdk_requirements
from ..wheels import code_zip
from ..pipelines.images import DEFAULT_SKLEARN
from ..pipelines.monitoring_definition import sklearn_image_uri
from .naming import EnvironmentNames
from .platform_function import BUNDLE_DIR, PlatformFunction, PlatformFunctionProps
from ..api_routes import HANDLERS
from .rest_api import PlatformRestApi
from .roles import processing_pipeline_role, read_code_assets
from .vector_store import VectorStoreProps, VectorStores

DOCUMENTS_PREFIX = "search/"
REPORTS_PREFIX = "search-reports/"
BULK_MODULE = "mlops_runtime.search.bulk"
BULK_IMAGE_VERSION = DEFAULT_SKLEARN  # Python 3.12: the runtime package's syntax
BULK_ROOT = "/opt/ml/processing"
SEARCH_NAMESPACE = "MlopsPlatform/Search"
SETTINGS_ENV = settings_env().SETTINGS_ENV


@dataclass(frozen=True)
class SemanticSearchProps:
    names: EnvironmentNames
    indexes: tuple[SearchIndexConfig, ...]
    key: kms.IKey
    production: bool
    raw_data_bucket: s3.IBucket
    artifacts_bucket: s3.IBucket
    job_role: iam.IRole  # the SageMaker execution role (bulk job)
    topic: sns.ITopic
    function_props: Callable[..., PlatformFunctionProps]
    settings: Callable[[SearchResources], dict]  # function_settings.search_json of the environment's config


class SemanticSearch(Construct):
    def __init__(self, scope: Construct, construct_id: str, props: SemanticSearchProps) -> None:
        super().__init__(scope, construct_id)
        self._props = props
        names = props.names
        self.stores = VectorStores(self, "Stores", VectorStoreProps(
            name_prefix=names.prefix, indexes=props.indexes, key=props.key, production=props.production))
        self.indexer = PlatformFunction(self, "Indexer", props.function_props(
            function_name=f"{names.prefix}-search-indexer",
            handler="mlops_runtime.handlers.search_indexer.handler",
            description="Chunks, embeds and indexes documents dropped under search/<index>/",
            environment={"POWERTOOLS_METRICS_NAMESPACE": SEARCH_NAMESPACE},
            memory_mb=1024, timeout=Duration.minutes(15), reserved_concurrency=4,
        ))
        self.search = PlatformFunction(self, "SearchApi", props.function_props(
            function_name=f"{names.prefix}-search-api",
            handler=HANDLERS["search"],
            description="Search API: embeds the query and returns the nearest chunks",
            environment={"POWERTOOLS_METRICS_NAMESPACE": SEARCH_NAMESPACE},
            memory_mb=512, timeout=Duration.seconds(28), reserved_concurrency=20,
        ))
        self.stores.open_search_collections((self.indexer.role, self.search.role, props.job_role))
        # the indexer's settings name where it writes its reports; the API's and the bulk job's need not
        self.indexer.function.add_environment(SETTINGS_ENV, self.settings_json(props.artifacts_bucket.bucket_name))
        self.search.function.add_environment(SETTINGS_ENV, self.settings_json(None))
        self._grant()
        self._route_documents()
        # The job's image may predate S3 Vectors: the tested SDK ships beside the code (pure-Python
        # wheels for the image's Python, installed at synthesis), so the job installs nothing.
        # One zip file (the S3 object is a zip either way): CDK copies one file into the cloud
        # assembly instead of walking and copying the SDK's thousands.
        self.bulk_code = s3_assets.Asset(self, "BulkIndexingCode", path=str(code_zip(
            stage_bundle(BULK_MODULE, BUNDLE_DIR), sdk_requirements(), BULK_JOB_SDK_TARGET)))
        self.bulk_pipeline = self._bulk_pipeline()
        self.alarms = self._alarms()

    # --- the runtime's settings -------------------------------------------------------------------
    def settings_json(self, report_bucket: str | None) -> str:
        """The search functions' settings (``domain.search.SearchSettings``, built by
        ``function_settings.search_json``) with this environment's stores, as JSON."""
        stores = self.stores
        resources = SearchResources(
            report_bucket=report_bucket, report_prefix=REPORTS_PREFIX, vector_bucket=stores.vector_bucket_name,
            opensearch_endpoints={name: c.attr_collection_endpoint for name, c in stores.collections.items()},
            opensearch_region=Stack.of(self).region)
        return Stack.of(self).to_json_string(self._props.settings(resources))

    # --- permissions ------------------------------------------------------------------------------
    def _embedder_statement(self, index: SearchIndexConfig) -> iam.PolicyStatement:
        names = self._props.names
        embedder = index.embedder
        if embedder.kind == "bedrock":
            arn = f"arn:{names.partition}:bedrock:{names.region}::foundation-model/{embedder.model_id}"
            return iam.PolicyStatement(actions=["bedrock:InvokeModel"], resources=[arn])
        arn = names.arn("sagemaker", f"endpoint/{names.endpoint_name(embedder.endpoint)}")
        return iam.PolicyStatement(actions=["sagemaker:InvokeEndpoint"], resources=[arn])

    def _grant(self) -> None:
        props = self._props
        job_access = iam.ManagedPolicy(self, "BulkIndexingAccess", roles=[props.job_role])
        for index in props.indexes:
            for role in (self.indexer.role, self.search.role):
                role.add_to_principal_policy(self._embedder_statement(index))
            self.stores.grant(self.indexer.role, index, write=True)
            self.stores.grant(self.search.role, index, write=False)
            job_access.add_statements(self._embedder_statement(index))
            if index.store == "s3vectors":
                job_access.add_statements(iam.PolicyStatement(
                    actions=["s3vectors:GetVectors", "s3vectors:PutVectors", "s3vectors:DeleteVectors"],
                    resources=[self.stores.index_arn(index)]))
            else:
                job_access.add_statements(iam.PolicyStatement(
                    actions=["aoss:APIAccessAll"], resources=[self.stores.collections[index.name].attr_arn]))
        props.raw_data_bucket.grant_read(self.indexer.role, f"{DOCUMENTS_PREFIX}*")
        props.artifacts_bucket.grant_put(self.indexer.role, f"{REPORTS_PREFIX}*")
        raw, artifacts = props.raw_data_bucket.bucket_name, props.artifacts_bucket.bucket_name
        acknowledge_wildcards(
            self.indexer.role.node.find_child("DefaultPolicy"),
            [*GRANT_READ_ACTIONS, *KMS_GRANT_ACTIONS, "Action::s3:Abort*",
             objects_under(raw, DOCUMENTS_PREFIX), objects_under(artifacts, REPORTS_PREFIX)],
            "Reads the documents under search/, writes reports under search-reports/; KMS data-key actions "
            "come from the bucket grants on the platform key.",
        )

    # --- indexing ---------------------------------------------------------------------------------
    def _route_documents(self) -> None:
        props = self._props
        events.Rule(
            self, "IndexNewDocuments",
            description="Documents dropped under search/<index>/ in the raw-data bucket are indexed",
            event_pattern=events.EventPattern(
                source=["aws.s3"], detail_type=["Object Created"],
                detail={"bucket": {"name": [props.raw_data_bucket.bucket_name]},
                        "object": {"key": [{"prefix": DOCUMENTS_PREFIX}]}},
            ),
            targets=[targets.LambdaFunction(self.indexer.function, retry_attempts=2,
                                            dead_letter_queue=self.indexer.dead_letter_queue)],
        )

    def _bulk_pipeline(self) -> sagemaker.CfnPipeline:
        """Bulk indexing as a SageMaker processing job: the indexer's code and settings, no time limit
        of a Lambda. It runs outside the VPC: it calls Bedrock or the embedding endpoint and the
        vector store, which the isolated subnets have no endpoints for."""
        props = self._props
        names = props.names
        stack = Stack.of(self)
        pipeline_role = processing_pipeline_role(
            self, "BulkPipelineRole", "Runs the bulk search-indexing pipeline",
            jobs_arn=names.arn("sagemaker", "processing-job/pipelines-*"), job_role=props.job_role)
        iam.ManagedPolicy(self, "BulkIndexingCodeAccess", roles=[props.job_role],
                          statements=read_code_assets("ReadBulkIndexingCode", (self.bulk_code,)))
        entrypoint = [
            "/bin/sh", "-c",
            f"python3 -m zipfile -e {BULK_ROOT}/input/code/*.zip {BULK_ROOT}/search && cd {BULK_ROOT}/search "
            f'&& exec python3 -m {BULK_MODULE} "$@"',
            "bulk-index",
        ]
        report = {"Std:Join": {"On": "/", "Values": [
            props.artifacts_bucket.s3_url_for_object(f"{REPORTS_PREFIX}bulk"), {"Get": "Execution.PipelineExecutionId"},
            "report.json"]}}
        definition = {
            "Version": "2020-12-01",
            "Metadata": {},
            "Parameters": [
                {"Name": "IndexName", "Type": "String",
                 "DefaultValue": props.indexes[0].name if props.indexes else ""},
                {"Name": "InputS3Uri", "Type": "String",
                 "DefaultValue": props.raw_data_bucket.s3_url_for_object(
                     f"{DOCUMENTS_PREFIX}{props.indexes[0].name}/" if props.indexes else DOCUMENTS_PREFIX)},
                # Several instances shard the objects by key (mlops_runtime.search.bulk.Shard).
                {"Name": "InstanceCount", "Type": "Integer",
                 "DefaultValue": props.indexes[0].bulk_instance_count if props.indexes else 1},
            ],
            "Steps": [{
                "Name": "BulkIndex",
                "Type": "Processing",
                "Arguments": {
                    "ProcessingResources": {"ClusterConfig": {
                        "InstanceType": props.indexes[0].bulk_instance_type if props.indexes else "ml.m5.large",
                        "InstanceCount": {"Get": "Parameters.InstanceCount"}, "VolumeSizeInGB": 30, "VolumeKmsKeyId": props.key.key_arn}},
                    "AppSpecification": {
                        "ImageUri": sklearn_image_uri(names.region, BULK_IMAGE_VERSION),
                        "ContainerEntrypoint": entrypoint,
                        "ContainerArguments": ["--index", {"Get": "Parameters.IndexName"},
                                               "--input", {"Get": "Parameters.InputS3Uri"}, "--report", report],
                    },
                    "RoleArn": props.job_role.role_arn,
                    "Environment": {SETTINGS_ENV: self.settings_json(None), "AWS_DEFAULT_REGION": names.region},
                    "ProcessingInputs": [{
                        "InputName": "code", "AppManaged": False,
                        "S3Input": {"S3Uri": self.bulk_code.s3_object_url, "LocalPath": f"{BULK_ROOT}/input/code",
                                    "S3DataType": "S3Prefix", "S3InputMode": "File",
                                    "S3DataDistributionType": "FullyReplicated", "S3CompressionType": "None"},
                    }],
                    "StoppingCondition": {"MaxRuntimeInSeconds": 24 * 3600},
                },
            }],
        }
        pipeline = sagemaker.CfnPipeline(
            self, "BulkIndexingPipeline",
            pipeline_name=f"{names.prefix}-search-bulk-index",
            pipeline_description="Indexes every document under an S3 prefix into a semantic-search index",
            pipeline_definition={"PipelineDefinitionBody": stack.to_json_string(definition)},
            role_arn=pipeline_role.role_arn,
        )
        pipeline.node.add_dependency(pipeline_role)
        return pipeline

    # --- alarms -----------------------------------------------------------------------------------
    def _alarms(self) -> list[cloudwatch.Alarm]:
        prefix = self._props.names.prefix
        five_minutes = Duration.minutes(5)
        alarms = [
            cloudwatch.Alarm(
                self, "IndexerErrorsAlarm", alarm_name=f"{prefix}-search-indexer-errors",
                alarm_description="The search indexer failed on a document drop (retried, then dead-lettered)",
                metric=self.indexer.function.metric_errors(period=five_minutes, statistic="Sum"),
                threshold=1, comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                evaluation_periods=1, treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING),
            cloudwatch.Alarm(
                self, "RejectedDocumentsAlarm", alarm_name=f"{prefix}-search-documents-rejected",
                alarm_description="Documents were rejected by the indexer: see the reports under search-reports/",
                metric=cloudwatch.Metric(namespace=SEARCH_NAMESPACE, metric_name="DocumentsRejected",
                                         dimensions_map={"service": f"{prefix}-search-indexer"},
                                         statistic="Sum", period=Duration.hours(1)),
                threshold=1, comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                evaluation_periods=1, treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING),
            cloudwatch.Alarm(
                self, "SearchErrorsAlarm", alarm_name=f"{prefix}-search-api-errors",
                alarm_description="The search API function failed",
                metric=self.search.function.metric_errors(period=five_minutes, statistic="Sum"),
                threshold=5, comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                evaluation_periods=1, treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING),
            cloudwatch.Alarm(
                self, "SearchLatencyAlarm", alarm_name=f"{prefix}-search-api-p99-latency",
                alarm_description="p99 duration of the search API above 2 s",
                metric=self.search.function.metric_duration(period=five_minutes, statistic="p99"),
                threshold=2000, comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=3, datapoints_to_alarm=2,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING),
        ]
        for alarm in alarms:
            alarm.add_alarm_action(cloudwatch_actions.SnsAction(self._props.topic))
        return alarms
