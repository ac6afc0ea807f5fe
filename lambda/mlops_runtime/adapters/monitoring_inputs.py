"""AWS adapters of the monitoring launcher and the retraining trigger.

- :class:`S3Objects`: ``ListObjectsV2`` (folders with ``Delimiter="/"``, or keys), paginated,
  ``GetObject`` (retraining's capture, ground truth and baseline) and ``PutObject`` (manifests,
  retraining's production data);
- :class:`SageMakerModels`: the champion's baseline: ``DescribeEndpoint``, the model package behind
  a variant (:meth:`Boto3EndpointControl.find_model_package_arn`: ``DescribeEndpointConfig``,
  ``DescribeModel``, ``ListTags``), ``DescribeModelPackage``; a group's newest package
  (``ListModelPackages``);
- :class:`SageMakerPipelines`: ``StartPipelineExecution`` and ``ListPipelineExecutions``;
- :class:`CloudWatchMetrics`: ``PutMetricData`` of one datum.

Every call is retried on throttling and transient service errors (``SlowDown``,
``ThrottlingException``, ``ServiceUnavailable``, connection errors...) with the shared full-jitter
back-off (:class:`~mlops_runtime.adapters.retrying.Retrying`), on top of botocore's own standard
retries; other errors are raised. boto3 is imported when a client is first needed.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from mlops_runtime.adapters.aws_errors import error_code_or_name, is_not_found
from mlops_runtime.adapters.model_runtime import Boto3EndpointControl
from mlops_runtime.adapters.retrying import Retrying
from mlops_runtime.domain.retraining import Execution

RETRYABLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "SlowDown",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)


def is_retryable(error: Exception) -> bool:
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(error, ClientError):
        return error_code_or_name(error) in RETRYABLE_CODES
    return isinstance(error, BotoCoreError)  # connection errors and timeouts


class _Adapter(Retrying):
    service = ""

    def __init__(
        self,
        client: Any | None = None,
        *,
        max_attempts: int = 4,
        base_delay: float = 0.2,
        max_delay: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        super().__init__(
            client, max_attempts=max_attempts, base_delay=base_delay, max_delay=max_delay, sleep=sleep, jitter=jitter
        )

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._new_client(self.service)
        return self._client

    def _call(self, operation: str, **request: Any) -> Any:
        """``client.<operation>(**request)``, retried on throttling and transient errors."""
        attempt = 0
        while True:
            try:
                return getattr(self.client, operation)(**request)
            except Exception as error:
                if attempt + 1 >= self._max_attempts or not is_retryable(error) or not self._back_off(attempt):
                    raise
            attempt += 1


class S3Objects(_Adapter):
    service = "s3"

    def __init__(self, client: Any | None = None, *, page_size: int = 1000, **retrying: Any) -> None:
        super().__init__(client, **retrying)
        self.page_size = page_size

    def _pages(self, **request: Any):
        token = None
        while True:
            page = self._call(
                "list_objects_v2", **request, MaxKeys=self.page_size, **({"ContinuationToken": token} if token else {})
            )
            yield page
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    def list_folders(self, bucket: str, prefix: str) -> list[str]:
        """The "folders" right below ``prefix`` (``CommonPrefixes`` with ``Delimiter="/"``), e.g.
        ``capture/<endpoint>/<variant>/``."""
        folders: list[str] = []
        for page in self._pages(Bucket=bucket, Prefix=prefix, Delimiter="/"):
            folders.extend(p["Prefix"] for p in page.get("CommonPrefixes", ()) or () if p.get("Prefix"))
        return folders

    def list_keys(self, bucket: str, prefix: str) -> list[str]:
        """Every key below ``prefix``."""
        keys: list[str] = []
        for page in self._pages(Bucket=bucket, Prefix=prefix):
            keys.extend(item["Key"] for item in page.get("Contents", ()) or ())
        return keys

    def get_object(self, bucket: str, key: str) -> bytes:
        """The object's body (ground truth may be gzip-compressed by Firehose: decompressed here)."""
        body = self._call("get_object", Bucket=bucket, Key=key)["Body"].read()
        if body[:2] == b"\x1f\x8b":
            import gzip

            body = gzip.decompress(body)
        return body

    def put_object(self, bucket: str, key: str, body: bytes, content_type: str = "application/json") -> None:
        self._call("put_object", Bucket=bucket, Key=key, Body=body, ContentType=content_type)


class SageMakerModels(_Adapter):
    service = "sagemaker"

    def endpoint_variants(self, endpoint: str) -> list[str] | None:
        """The endpoint's production variant names in order; ``None`` when it does not exist."""
        try:
            response = self._call("describe_endpoint", EndpointName=endpoint)
        except Exception as error:
            if is_not_found(error):
                return None
            raise
        return [v["VariantName"] for v in response.get("ProductionVariants", []) or [] if v.get("VariantName")]

    def model_package_arn(self, endpoint: str, variant: str) -> str | None:
        return Boto3EndpointControl(self.client).find_model_package_arn(endpoint, variant)

    def newest_package(self, group: str) -> tuple[str, datetime] | None:
        """``(ARN, creation time)`` of the group's newest model package; ``None``: none yet."""
        try:
            response = self._call("list_model_packages", ModelPackageGroupName=group, SortBy="CreationTime",
                                  SortOrder="Descending", MaxResults=1)
        except Exception as error:
            if is_not_found(error):
                return None
            raise
        for summary in response.get("ModelPackageSummaryList", []) or []:
            created = summary.get("CreationTime")
            if summary.get("ModelPackageArn") and isinstance(created, datetime):
                return summary["ModelPackageArn"], created
        return None

    def data_quality_statistics(self, model_package_arn: str) -> str | None:
        """``ModelMetrics.ModelDataQuality.Statistics.S3Uri`` of the package (``None``: none, or no package)."""
        try:
            package = self._call("describe_model_package", ModelPackageName=model_package_arn)
        except Exception as error:
            if is_not_found(error):
                return None
            raise
        uri = (((package.get("ModelMetrics") or {}).get("ModelDataQuality") or {}).get("Statistics") or {}).get("S3Uri")
        return uri if isinstance(uri, str) and uri.startswith("s3://") else None


class SageMakerPipelines(_Adapter):
    service = "sagemaker"

    def start(
        self,
        pipeline: str,
        *,
        display_name: str,
        token: str,
        parameters: Sequence[Mapping[str, str]] = (),
        description: str | None = None,
    ) -> str:
        """``StartPipelineExecution``; the execution ARN (the same one again for a repeated ``token``)."""
        request: dict[str, Any] = {
            "PipelineName": pipeline,
            "PipelineExecutionDisplayName": display_name,
            "ClientRequestToken": token,
        }
        if parameters:
            request["PipelineParameters"] = [dict(p) for p in parameters]
        if description:
            request["PipelineExecutionDescription"] = description[:3072]
        return self._call("start_pipeline_execution", **request)["PipelineExecutionArn"]

    def recent_executions(self, pipeline: str, max_results: int = 10) -> list[Execution]:
        """The newest ``max_results`` executions (``ListPipelineExecutions`` by creation time, descending)."""
        response = self._call(
            "list_pipeline_executions",
            PipelineName=pipeline,
            SortBy="CreationTime",
            SortOrder="Descending",
            MaxResults=max_results,
        )
        executions = []
        for summary in response.get("PipelineExecutionSummaries", []) or []:
            start = summary.get("StartTime")
            executions.append(
                Execution(
                    str(summary.get("PipelineExecutionArn", "")),
                    str(summary.get("PipelineExecutionStatus", "")),
                    start if isinstance(start, datetime) else None,
                )
            )
        return executions


class CloudWatchMetrics(_Adapter):
    service = "cloudwatch"

    def put_count(
        self, namespace: str, name: str, value: float, dimensions: Mapping[str, str], timestamp: datetime
    ) -> None:
        self._call(
            "put_metric_data",
            Namespace=namespace,
            MetricData=[
                {
                    "MetricName": name,
                    "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()],
                    "Timestamp": timestamp,
                    "Value": float(value),
                    "Unit": "Count",
                }
            ],
        )
