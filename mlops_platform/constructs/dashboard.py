"""The environment's CloudWatch dashboard: serving, experiments, feedback, drift and quality, pipelines.

Every metric is addressed by names the platform sets (endpoint, function, pipeline and API names), so
the dashboard needs no reference into the stacks that own those resources.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct

VARIANTS = ("champion", "challenger")
MONITORING_NAMESPACE = "MlopsPlatform/Monitoring"


@dataclass(frozen=True)
class MonitoredEndpoint:
    endpoint_name: str
    drift_thresholds: dict[str, float]  # report metric name (MaxDriftEffect) -> line drawn (the minimum effect)
    quality: tuple[str, str, float] | None  # (metric, comparison, threshold)


@dataclass(frozen=True)
class PlatformDashboardProps:
    dashboard_name: str
    endpoint_names: tuple[str, ...]
    experiments: dict[str, tuple[str, ...]]  # experiment id -> arms
    experiments_namespace: str
    api_name: str
    feedback_service: str  # the feedback function's Powertools service name (its metric dimension)
    feedback_namespace: str
    monitored: tuple[MonitoredEndpoint, ...] = ()
    pipelines: tuple[str, ...] = ()
    search: tuple[str, str] | None = None  # (search function name, indexer function name) with indexes
    period: Duration = field(default_factory=lambda: Duration.minutes(5))


class PlatformDashboard(Construct):
    def __init__(self, scope: Construct, construct_id: str, props: PlatformDashboardProps) -> None:
        super().__init__(scope, construct_id)
        self._props = props
        self.dashboard = cloudwatch.Dashboard(
            self, "Dashboard", dashboard_name=props.dashboard_name,
            default_interval=Duration.days(1),
        )
        rows: list[list[cloudwatch.IWidget]] = [[self._title("Serving: per-variant traffic, latency and errors")]]
        for endpoint in props.endpoint_names:
            rows.append(self._endpoint_row(endpoint))
        rows.append([self._title("API")])
        rows.append(self._api_row())
        if props.experiments:
            rows.append([self._title("Experiments: traffic weights and rewards of the current round")])
            rows.extend(self._experiment_row(experiment, arms) for experiment, arms in props.experiments.items())
        rows.append([self._title("Feedback")])
        rows.append(self._feedback_row())
        if props.monitored:
            rows.append([self._title("Drift and model quality (dashed lines: alarm thresholds)")])
            rows.extend(self._monitoring_row(monitored) for monitored in props.monitored)
        if props.search:
            rows.append([self._title("Semantic search")])
            rows.append(self._search_row(*props.search))
        if props.pipelines:
            rows.append([self._title("Pipelines")])
            rows.append(self._pipelines_row())
        for row in rows:
            self.dashboard.add_widgets(*row)

    # --- widgets --------------------------------------------------------------------------------
    @staticmethod
    def _title(text: str) -> cloudwatch.TextWidget:
        return cloudwatch.TextWidget(markdown=f"## {text}", width=24, height=1)

    def _metric(self, namespace: str, name: str, dimensions: dict[str, str], statistic: str = "Sum",
                label: str | None = None) -> cloudwatch.Metric:
        return cloudwatch.Metric(namespace=namespace, metric_name=name, dimensions_map=dimensions,
                                 statistic=statistic, period=self._props.period, label=label)

    def _endpoint_row(self, endpoint: str) -> list[cloudwatch.IWidget]:
        def per_variant(name: str, statistic: str) -> list[cloudwatch.IMetric]:
            return [self._metric("AWS/SageMaker", name, {"EndpointName": endpoint, "VariantName": variant},
                                 statistic, label=variant) for variant in VARIANTS]

        return [
            cloudwatch.GraphWidget(title=f"{endpoint}: invocations", left=per_variant("Invocations", "Sum"),
                                   width=8, height=6),
            cloudwatch.GraphWidget(title=f"{endpoint}: p99 model latency (µs)", left=per_variant("ModelLatency", "p99"),
                                   width=8, height=6),
            cloudwatch.GraphWidget(title=f"{endpoint}: 5xx / 4xx",
                                   left=per_variant("Invocation5XXErrors", "Sum"),
                                   right=per_variant("Invocation4XXErrors", "Sum"), width=8, height=6),
        ]

    def _api_row(self) -> list[cloudwatch.IWidget]:
        api = {"ApiName": self._props.api_name}
        return [
            cloudwatch.GraphWidget(title="API requests", left=[self._metric("AWS/ApiGateway", "Count", api)],
                                   width=8, height=6),
            cloudwatch.GraphWidget(title="API 4xx / 5xx", left=[self._metric("AWS/ApiGateway", "4XXError", api),
                                                                 self._metric("AWS/ApiGateway", "5XXError", api)],
                                   width=8, height=6),
            cloudwatch.GraphWidget(title="API latency p99 (ms)",
                                   left=[self._metric("AWS/ApiGateway", "Latency", api, "p99"),
                                         self._metric("AWS/ApiGateway", "IntegrationLatency", api, "p99")],
                                   width=8, height=6),
        ]

    def _experiment_row(self, experiment: str, arms: tuple[str, ...]) -> list[cloudwatch.IWidget]:
        props = self._props

        def per_arm(name: str, statistic: str) -> list[cloudwatch.IMetric]:
            return [self._metric(props.experiments_namespace, name, {"Experiment": experiment, "Arm": arm},
                                 statistic, label=arm) for arm in arms]

        return [
            cloudwatch.GraphWidget(title=f"{experiment}: weights", left=per_arm("ArmWeight", "Average"),
                                   left_y_axis=cloudwatch.YAxisProps(min=0, max=1), width=8, height=6),
            cloudwatch.GraphWidget(title=f"{experiment}: mean reward", left=per_arm("ArmMeanReward", "Average"),
                                   width=8, height=6),
            cloudwatch.GraphWidget(title=f"{experiment}: invocations (round)", left=per_arm("ArmInvocations", "Maximum"),
                                   width=8, height=6),
        ]

    def _feedback_row(self) -> list[cloudwatch.IWidget]:
        props = self._props
        dims = {"service": props.feedback_service}
        accepted = self._metric(props.feedback_namespace, "FeedbackAccepted", dims)
        joined = self._metric(props.feedback_namespace, "FeedbackJoined", dims)
        join_rate = cloudwatch.MathExpression(
            expression="IF(accepted > 0, 100 * joined / accepted, 0)",
            using_metrics={"accepted": accepted, "joined": joined}, label="join rate %", period=props.period,
        )
        return [
            cloudwatch.GraphWidget(title="Feedback received / accepted", width=8, height=6, left=[
                self._metric(props.feedback_namespace, "FeedbackReceived", dims), accepted]),
            cloudwatch.GraphWidget(title="Feedback join rate (%)", left=[join_rate],
                                   left_y_axis=cloudwatch.YAxisProps(min=0, max=100), width=8, height=6),
            cloudwatch.GraphWidget(title="Feedback dead-lettered / failed", width=8, height=6, left=[
                self._metric(props.feedback_namespace, "FeedbackDeadLettered", dims),
                self._metric(props.feedback_namespace, "FeedbackFailed", dims)]),
        ]

    def _monitoring_row(self, monitored: MonitoredEndpoint) -> list[cloudwatch.IWidget]:
        dims = {"Endpoint": monitored.endpoint_name, "Variant": "_all"}
        hour = Duration.hours(1)

        def metric(name: str, statistic: str = "Maximum") -> cloudwatch.Metric:
            return cloudwatch.Metric(namespace=MONITORING_NAMESPACE, metric_name=name, dimensions_map=dims,
                                     statistic=statistic, period=hour)

        drift = cloudwatch.GraphWidget(
            title=f"{monitored.endpoint_name}: drift", width=8, height=6,
            left=[metric(name) for name in monitored.drift_thresholds],
            left_annotations=[cloudwatch.HorizontalAnnotation(value=value, label=f"{name} threshold")
                              for name, value in monitored.drift_thresholds.items()],
        )
        drifted = cloudwatch.GraphWidget(
            title=f"{monitored.endpoint_name}: drift decided / drifted tests / records", width=8, height=6,
            left=[metric("DriftDetected"), metric("DriftedFeatures")], right=[metric("RecordCount", "Sum")],
        )
        widgets: list[cloudwatch.IWidget] = [drift, drifted]
        if monitored.quality is not None:
            name, _, threshold = monitored.quality
            widgets.append(cloudwatch.GraphWidget(
                title=f"{monitored.endpoint_name}: {name} from feedback", width=8, height=6,
                left=[metric(name, "Minimum")], right=[metric("LabelCount", "Sum")],
                left_annotations=[cloudwatch.HorizontalAnnotation(value=threshold, label=f"{name} threshold")],
            ))
        return widgets

    def _search_row(self, search_function: str, indexer_function: str) -> list[cloudwatch.IWidget]:
        def function_metric(function: str, name: str, statistic: str) -> cloudwatch.Metric:
            return self._metric("AWS/Lambda", name, {"FunctionName": function}, statistic, label=f"{name} {statistic}")

        indexer = {"service": indexer_function}
        return [
            cloudwatch.GraphWidget(title="Search latency (ms)", width=8, height=6, left=[
                function_metric(search_function, "Duration", "p50"), function_metric(search_function, "Duration", "p99")]),
            cloudwatch.GraphWidget(title="Search requests / errors", width=8, height=6, left=[
                function_metric(search_function, "Invocations", "Sum"), function_metric(search_function, "Errors", "Sum")]),
            cloudwatch.GraphWidget(title="Indexing: documents, chunks, rejected", width=8, height=6, left=[
                self._metric("MlopsPlatform/Search", name, indexer, label=name)
                for name in ("DocumentsIndexed", "ChunksIndexed", "DocumentsRejected")]),
        ]

    def _pipelines_row(self) -> list[cloudwatch.IWidget]:
        def per_pipeline(name: str) -> list[cloudwatch.IMetric]:
            return [self._metric("AWS/Sagemaker/ModelBuildingPipeline", name, {"PipelineName": pipeline},
                                 label=pipeline) for pipeline in self._props.pipelines]

        return [
            cloudwatch.GraphWidget(title="Pipeline executions started", left=per_pipeline("ExecutionStarted"),
                                   width=8, height=6),
            cloudwatch.GraphWidget(title="Pipeline executions succeeded", left=per_pipeline("ExecutionSucceeded"),
                                   width=8, height=6),
            cloudwatch.GraphWidget(title="Pipeline executions failed", left=per_pipeline("ExecutionFailed"),
                                   width=8, height=6),
        ]
