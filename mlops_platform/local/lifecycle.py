"""Six weeks of a model's life on a simulated clock: the real handlers handing over to each other.

``python -m mlops_platform.local.lifecycle`` (``make demo-lifecycle``) prints the story week by
week; ``tests/unit/local/test_lifecycle.py`` runs the same :func:`live` and asserts each hand-over.

What is real: the deployer (approvals and the "Experiment Decided" events, through an EventBridge
rule and a queue as the Serving stack wires them), the inference API (sticky routing, rounds,
prediction records), the feedback API (late rewards and labels), the experiment controller
(hourly), the monitoring launcher and the monitoring job (``monitoring/monitor.py`` on the files
its manifests name), the retraining trigger (production records joined with their labels) and
the staging -> prod promotion function. SageMaker, S3, EventBridge and SQS are moto; the three
experiment tables are ``adapters.in_memory.InMemoryExperimentsStore`` (weeks of traffic: a moto
transaction copies the table; a contract test keeps the two alike). The inference API, the feedback
API, the controller and the promotion function get their settings from the stack's builders
(``mlops_platform.function_settings``) for :func:`story_config` (dev's and prod's config files with
the story's endpoint and experiment); the other functions' settings are written in ``World._configure``.

What is simulated: the clock (each handler's own seam), the model containers (a logistic score
over three features, with SageMaker's data capture written per hour), the users (subjects whose
conversions come minutes to three days after the prediction, and a concept and feature drift in
week 4), CloudWatch alarms (the job's ``QualityBelowTarget``/``DriftDetected`` >= 1 puts the alarm
in ALARM) and the two pipelines' compute: the monitoring pipeline's job runs in-process, and the
training pipeline fits a logistic regression on the generated raw data plus the ``production.csv``
the retraining trigger wrote (the example project's container is not run).
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import json
import math
import os
import random
import sys
import tempfile
import time as wall
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parents[2]
REGION, ACCOUNT = "eu-west-1", "123456789012"
START = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
WEEKS = 6
HOUR = timedelta(hours=1)
DEV_ENDPOINT, PROD_ENDPOINT = "mlops-dev-churn", "mlops-prod-churn"
DEV_GROUP, PROD_GROUP = "mlops-dev-churn", "mlops-prod-churn"
EXPERIMENT = "churn"
FEATURES = ("tenure", "spend", "visits")
CAPTURE_BUCKET, FEEDBACK_BUCKET, ARTIFACTS_BUCKET = "capture-bucket", "feedback-bucket", "artifacts-bucket"
CAPTURE_PREFIX, GROUND_TRUTH_PREFIX = "capture/", "ground-truth/"
TRAINING_PIPELINE, MONITORING_PIPELINE = "churn-training", "churn-monitoring"
QUALITY_ALARM, DRIFT_ALARM = f"{DEV_ENDPOINT}-quality", f"{DEV_ENDPOINT}-drift"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/mlops-dev-sagemaker-execution"
IMAGE = "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-xgboost:1.7-1"
MONITOR_EVERY = timedelta(hours=24)  # the monitoring launcher's window (the stack's is configurable)
LABEL_DELAY = (timedelta(minutes=5), timedelta(days=3))
CONTROLLER_RULE = {"strategy": "thompson", "min_share": 0.1, "max_step": 0.2, "min_observations": 100,
                   "alpha": 0.05, "min_effect": 0.02, "feedback_delay_hours": 72}
THRESHOLDS = {"auc_min": 0.6}
# Closed-loop retraining reads the production labels of at most the last two days: the world changed.
RETRAINING_LOOKBACK_HOURS = 48
DRIFT_POLICY = {"window_hours": MONITOR_EVERY // HOUR, "min_rows": 150}
# The world: the true conversion logit before and after week 4's concept drift (a feature shifts
# too). A model's conversions grow with how well its score ranks the subject (the offer fits).
TRUE_WEIGHTS = {"before": (1.2, -0.8, 0.6), "after": (-1.2, 1.0, 0.8)}
TRUE_BIAS = {"before": -1.0, "after": 0.3}
DRIFT_AT = START + timedelta(weeks=3, days=2)


# --- the clock ------------------------------------------------------------------------------------


class Clock:
    """Simulated time for every handler: ``time()`` as ``time.time`` (the controller's module ``time``
    is this object during the run), ``now()`` as the feedback API's and the launchers' clocks."""

    def __init__(self, start: datetime) -> None:
        self.at = start

    def time(self) -> float:
        return self.at.timestamp()

    def now(self) -> datetime:
        return self.at


# --- the story ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    at: datetime
    kind: str  # deployed, weights, decided, promoted, round, monitoring, alarm, retraining, registered, ...
    text: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def week(self) -> int:
        return (self.at - START) // timedelta(weeks=1) + 1


@dataclass
class Story:
    events: list[Event] = field(default_factory=list)
    served: int = 0
    labels: int = 0
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    rounds: dict[int, dict[str, Any]] = field(default_factory=dict)  # round -> arm -> counts, at the end
    api_settings: Any = None  # configs.ApiSettings: what the API's functions ran with (the stack's builders')

    def of(self, kind: str) -> list[Event]:
        return [event for event in self.events if event.kind == kind]

    def timeline(self) -> str:
        lines, week = [], 0
        for event in self.events:
            if event.week != week:
                week = event.week
                lines.append(f"\nweek {week}")
            lines.append(f"  {event.at:%a %d %b %H:%M}  {event.kind:<11} {event.text}")
        lines.append(f"\n{self.served} predictions served, {self.labels} labels sent, "
                     f"{len(self.events)} events, {self.wall_seconds:.1f} s of wall time")
        return "\n".join(lines)


# --- models and users -----------------------------------------------------------------------------


def sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, value))))


def subject_features(subject: int, at: datetime) -> tuple[float, float, float]:
    """A subject's features (stable per subject); after the drift, ``tenure`` moves up by one."""
    rng = random.Random(subject)
    tenure, spend, visits = rng.gauss(0, 1), rng.gauss(0, 1), rng.gauss(0, 1)
    return (tenure + (1.0 if at >= DRIFT_AT else 0.0), spend, visits)


def true_probability(features: tuple[float, ...], at: datetime) -> float:
    period = "after" if at >= DRIFT_AT else "before"
    return sigmoid(sum(w * x for w, x in zip(TRUE_WEIGHTS[period], features)) + TRUE_BIAS[period])


class SimulatedModels:
    """The model containers behind the endpoints (``adapters.model_runtime.ModelRuntime``): each
    variant serves the logistic model of the package the deployer put there, read from the
    endpoint (as SageMaker loads the model the config names), and SageMaker's data capture is
    written per variant and hour under ``s3://capture-bucket/capture/<endpoint>/``."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.capture: dict[str, list[str]] = {}  # S3 key -> lines, written at the end of each hour
        self.deployed: dict[str, dict[str, str]] = {}  # endpoint -> variant -> package

    def load(self) -> None:
        """Read what each endpoint runs now (after a deployment; outside the handlers, so that the
        permission ledger does not count these reads as the inference API's)."""
        from mlops_runtime.handlers import deployer

        for endpoint in (DEV_ENDPOINT, PROD_ENDPOINT):
            state = deployer.sagemaker_endpoints().describe_endpoint_state(endpoint)
            self.deployed[endpoint] = {v.name: v.model_package_arn for v in state.variants} if state else {}

    def variants(self, endpoint: str) -> dict[str, str]:
        """Variant -> package ARN of the endpoint's current config."""
        return self.deployed.get(endpoint, {})

    def invoke(self, endpoint: str, variant: str | None, inference_id: str, content_type: str, body: bytes,
               accept: str | None = None) -> Any:
        from mlops_runtime.adapters.model_runtime import InvocationResult, UnknownModelEndpoint

        variants = self.variants(endpoint)
        variant = variant or next(iter(variants))
        if variant not in variants:
            raise UnknownModelEndpoint(f"Variant {variant} not found for endpoint {endpoint}.", "ValidationError")
        features = [float(v) for v in body.decode().split(",")]
        weights, bias = self.world.models[variants[variant]]
        score = round(sigmoid(sum(w * x for w, x in zip(weights, features)) + bias), 4)
        at = self.world.clock.now()
        key = f"{CAPTURE_PREFIX}{endpoint}/{variant}/{at:%Y/%m/%d/%H}/capture.jsonl"
        self.capture.setdefault(key, []).append(json.dumps({
            "captureData": {
                "endpointInput": {"observedContentType": content_type, "mode": "INPUT", "data": body.decode(),
                                  "encoding": "CSV"},
                "endpointOutput": {"observedContentType": "text/csv", "mode": "OUTPUT", "data": str(score),
                                   "encoding": "CSV"}},
            "eventMetadata": {"eventId": f"evt-{inference_id}", "inferenceId": inference_id,
                              "inferenceTime": at.strftime("%Y-%m-%dT%H:%M:%SZ")},
            "eventVersion": "0"}))
        return InvocationResult(str(score).encode(), "text/csv", variant)

    def flush(self) -> None:
        for key, lines in self.capture.items():
            self.world.s3.put_object(CAPTURE_BUCKET, key, "\n".join(lines).encode())
        self.capture.clear()


class FirehoseToS3:
    """The feedback API's ground-truth stream (``GroundTruthSink``): lines buffered and written as
    one object per hour of arrival under ``s3://feedback-bucket/ground-truth/yyyy/mm/dd/hh/``."""

    def __init__(self, world: World) -> None:
        self.world, self.lines, self.objects = world, [], 0

    def put(self, lines: list[bytes]) -> dict[int, str]:
        self.lines.extend(lines)
        return {}

    def flush(self) -> None:
        if self.lines:
            at = self.world.clock.now() - timedelta(seconds=1)
            self.objects += 1
            self.world.s3.put_object(FEEDBACK_BUCKET, f"{GROUND_TRUTH_PREFIX}{at:%Y/%m/%d/%H}/ground-truth-{self.objects}",
                                     b"".join(self.lines))
            self.lines = []


class SeededRandom:
    """Stands in for the ``random`` module in the controller: each ``Random()`` is seeded from one
    seeded stream, so the simulation tells the same story every run."""

    def __init__(self, seed: float) -> None:
        self._seeds = random.Random(seed)

    def Random(self) -> random.Random:  # noqa: N802 (the random module's name)
        return random.Random(self._seeds.random())


class UnchangedEndpoints:
    """The real ``Boto3EndpointControl`` on moto, with each endpoint's description kept until
    something changes it: the simulation runs every writer (the deployer, and the controller's
    weight updates through this object), so it knows when to read again. The controller and the
    inference API describe the endpoint every simulated hour; moto would answer the same."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.known = inner, {}

    def describe_endpoint(self, endpoint: str) -> Any:
        if endpoint not in self.known:
            self.known[endpoint] = self.inner.describe_endpoint(endpoint)
        return self.known[endpoint]

    def update_weights(self, endpoint: str, weights: Mapping[str, float]) -> None:
        self.known.pop(endpoint, None)
        self.inner.update_weights(endpoint, weights)

    def find_model_package_arn(self, endpoint: str, variant: str) -> str | None:
        return self.inner.find_model_package_arn(endpoint, variant)

    def annotate_model_package(self, model_package_arn: str, properties: Mapping[str, str]) -> None:
        self.inner.annotate_model_package(model_package_arn, properties)


# --- the pipelines' compute -----------------------------------------------------------------------


def training_rows(rng: random.Random, count: int, at: datetime) -> list[tuple[tuple[float, ...], int]]:
    """Generated raw data: (features, outcome) of ``count`` subjects at ``at``."""
    rows = []
    for _ in range(count):
        features = subject_features(rng.randrange(10**9), at)
        rows.append((features, int(rng.random() < true_probability(features, at))))
    return rows


def fit(rows: list[tuple[tuple[float, ...], int]]) -> tuple[tuple[float, ...], float]:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit([list(x) for x, _ in rows], [y for _, y in rows])
    return tuple(float(w) for w in model.coef_[0]), float(model.intercept_[0])


def baseline_of(rows: list[tuple[tuple[float, ...], int]]) -> dict:
    """The training baseline as the example project's preprocessing step writes it."""
    import pandas as pd

    sys.path.insert(0, str(ROOT / "training" / "example_classifier"))
    try:
        from preprocess import build_baseline
    finally:
        sys.path.pop(0)
    frame = pd.DataFrame([(*x, y) for x, y in rows], columns=[*FEATURES, "outcome"])
    return build_baseline(frame, "outcome", list(FEATURES))


class SimulatedPipelines:
    """``SageMakerPipelines`` whose executions start in moto and whose compute runs here: the
    monitoring pipeline's job on the files its manifests name, the training pipeline's fit."""

    def __init__(self, world: World, inner: Any) -> None:
        self.world, self.inner = world, inner
        self.started: list[tuple[str, dict[str, str]]] = []

    def start(self, pipeline: str, *, display_name: str, token: str, parameters=(), description=None) -> str:
        arn = self.inner.start(pipeline, display_name=display_name, token=token, parameters=parameters,
                               description=description)
        self.started.append((pipeline, {p["Name"]: p["Value"] for p in parameters}))
        return arn

    def recent_executions(self, pipeline: str, max_results: int = 10):
        return self.inner.recent_executions(pipeline, max_results)


# --- the world ------------------------------------------------------------------------------------


def endpoint_spec(name: str, group: str) -> dict[str, Any]:
    return {
        "name": name, "model_package_group": group, "execution_role_arn": ROLE,
        "variants": {"champion": {"kind": "realtime", "instance_type": "ml.m5.large", "initial_instance_count": 2}},
        "challenger_initial_weight": 0.1,
        "data_capture": {"enabled": True, "sampling_percentage": 100,
                         "destination_s3_uri": f"s3://{CAPTURE_BUCKET}/{CAPTURE_PREFIX.rstrip('/')}",
                         "capture_content_types": {"csv": ["text/csv"]}},
        "tags": {"mlops:stack": "lifecycle"},
    }


def story_config(environment: str = "dev") -> Any:
    """The environment's config (``config/<environment>.yaml``) in moto's account, with the story's
    endpoint ``churn`` (``mlops-<environment>-churn``: two instances, a challenger at 10 %, CSV
    captured) and its experiment ``churn`` (CSV requests, :data:`CONTROLLER_RULE`) in place of the
    file's endpoints, validated as any config file: the API's functions (dev) and the promotion
    function (prod, promoting from dev in the same account) get their settings from the stack's
    builders for it."""
    from mlops_platform.local.configs import with_one_endpoint

    return with_one_endpoint(
        environment,
        endpoint={"name": EXPERIMENT, "model_package_group": EXPERIMENT,
                  "variant": {"kind": "realtime", "instance_type": "ml.m5.large", "initial_instance_count": 2},
                  "challenger_initial_weight": 0.1, "data_capture": {"csv_content_types": ["text/csv"]}},
        experiment={"name": EXPERIMENT, "content_types": ["text/csv"], "controller": CONTROLLER_RULE},
        promote_from={"account": ACCOUNT, "name_prefix": "mlops-dev"} if environment == "prod" else None,
        account=ACCOUNT, region=REGION,
    )


class World:
    """Every handler configured on one moto account and one simulated clock."""

    def __init__(self, seed: int, traffic_per_hour: int, stack: contextlib.ExitStack) -> None:
        import boto3

        self.rng = random.Random(seed)
        self.traffic_per_hour = traffic_per_hour
        self.clock = Clock(START)
        self.story = Story()
        self.models: dict[str, tuple[tuple[float, ...], float]] = {}  # package ARN -> (weights, bias)
        self.versions: dict[str, str] = {}  # package ARN -> "v1", ...
        self.training_data = training_rows(self.rng, 4000, START)
        # (due, n, inference id, reward: converted after the model's offer, label: the subject's outcome)
        self.pending_labels: list[tuple[float, int, str, int, int]] = []
        self.alarms: dict[str, str] = {QUALITY_ALARM: "OK", DRIFT_ALARM: "OK"}
        # The monitoring job reads files: in memory where the machine has a tmpfs (thousands of them).
        shm = Path("/dev/shm")
        self.work = Path(stack.enter_context(tempfile.TemporaryDirectory(
            prefix="lifecycle-", dir=shm if shm.is_dir() and os.access(shm, os.W_OK) else None)))

        def client(service: str) -> Any:
            return boto3.client(service, region_name=REGION)

        from mlops_runtime.adapters.in_memory import InMemoryS3Objects

        self.sm, self.ddb, self.events, self.sqs, self.sns = (
            client(s) for s in ("sagemaker", "dynamodb", "events", "sqs", "sns"))
        self.s3 = InMemoryS3Objects()  # capture, ground truth, baselines, manifests, datasets
        self.trained = 0
        self.pending_version: str | None = None
        self._seed_aws()
        self._configure(stack, client)

    # -- set-up
    def _seed_aws(self) -> None:
        from mlops_runtime.domain import promotion

        for group in (DEV_GROUP, PROD_GROUP):
            self.sm.create_model_package_group(ModelPackageGroupName=group)
        for pipeline in (TRAINING_PIPELINE, MONITORING_PIPELINE):
            self.sm.create_pipeline(PipelineName=pipeline, RoleArn=ROLE,
                                    PipelineDefinition=json.dumps({"Version": "2020-12-01", "Steps": []}))
        self.ddb.create_table(TableName="deployer-idempotency", BillingMode="PAY_PER_REQUEST",
                              KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                              AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])
        self.topic = self.sns.create_topic(Name="mlops-dev-deployments")["TopicArn"]
        self.queue = self.sqs.create_queue(QueueName="deployer-events")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.events.put_rule(Name="promote-on-decision", EventPattern=json.dumps(
            {"source": [promotion.EVENT_SOURCE], "detail-type": [promotion.EVENT_DETAIL_TYPE]}))
        self.events.put_targets(Rule="promote-on-decision", Targets=[{"Id": "deployer", "Arn": queue_arn}])

    def _configure(self, stack: contextlib.ExitStack, client) -> None:
        from mlops_platform.function_settings import ApiResources, promotion
        from mlops_platform.local.configs import api_settings
        from mlops_platform.local.sagemaker_stubs import UpdateEndpointStub
        from mlops_runtime.adapters.idempotency import once_per_event
        from mlops_runtime.adapters.in_memory import InMemoryExperimentsStore
        from mlops_runtime.adapters.ground_truth import InMemoryDeadLetters
        from mlops_runtime.adapters.model_registry import ModelRegistry
        from mlops_runtime.adapters.model_runtime import Boto3EndpointControl
        from mlops_runtime.adapters.monitoring_inputs import (
            CloudWatchMetrics, SageMakerModels, SageMakerPipelines)
        from mlops_runtime.adapters.sagemaker_endpoints import Boto3SageMakerEndpoints
        from mlops_runtime.handlers import (
            deployer, experiment_controller, feedback_api, inference_api, model_promotion, monitoring_launcher,
            retraining_trigger)

        stub = UpdateEndpointStub(self.sm)
        stack.callback(stub.remove)
        # moto stamps SageMaker resources (a package's CreationTime: the last training) with its clock
        stack.enter_context(mock.patch("moto.sagemaker.models.utcnow", lambda: self.clock.now().replace(tzinfo=None)))
        production = {"model_package_group": DEV_GROUP, "capture_bucket": CAPTURE_BUCKET,
                      "capture_prefix": f"{CAPTURE_PREFIX}{DEV_ENDPOINT}/", "ground_truth_bucket": FEEDBACK_BUCKET,
                      "ground_truth_prefix": GROUND_TRUTH_PREFIX, "dataset_bucket": ARTIFACTS_BUCKET,
                      "dataset_prefix": "retraining/churn/", "max_lookback_hours": RETRAINING_LOOKBACK_HOURS}
        # Each function's settings model (its handler's SETTINGS_MODEL), as the stack passes it in MLOPS_SETTINGS.
        # Written here, not built from story_config(), where the story is not one stack's: one deployer
        # serves dev's and prod's endpoints (each stack's deployer has its own), with the simulation's
        # capture bucket and no KMS key or guardrail alarms; the monitoring and training pipelines are
        # the simulation's (churn-monitoring, churn-training: no config's), and only the quality alarm
        # retrains (the builder maps both alarms of an endpoint whose monitoring retrains).
        settings = {
            deployer: deployer.SETTINGS_MODEL.model_validate_json(json.dumps({
                "endpoints": [endpoint_spec(DEV_ENDPOINT, DEV_GROUP), endpoint_spec(PROD_ENDPOINT, PROD_GROUP)],
                "idempotency_table": "deployer-idempotency", "notification_topic_arn": self.topic,
                "environment": "dev"})),
            monitoring_launcher: monitoring_launcher.SETTINGS_MODEL.model_validate_json(json.dumps({"monitors": {DEV_ENDPOINT: {
                "pipeline_name": MONITORING_PIPELINE, "window_hours": MONITOR_EVERY // HOUR,
                "ground_truth_lookback_hours": 72, "capture_bucket": CAPTURE_BUCKET,
                "capture_prefix": f"{CAPTURE_PREFIX}{DEV_ENDPOINT}/", "ground_truth_bucket": FEEDBACK_BUCKET,
                "ground_truth_prefix": GROUND_TRUTH_PREFIX, "manifest_bucket": ARTIFACTS_BUCKET,
                "manifest_prefix": "monitoring/manifests/"}}})),
            retraining_trigger: retraining_trigger.SETTINGS_MODEL.model_validate_json(json.dumps({"retraining": {QUALITY_ALARM: {
                "pipelines": [TRAINING_PIPELINE], "cooldown_hours": 7 * 24, "production": production}}})),
            model_promotion: promotion(story_config("prod")),  # dev's groups -> prod's, the stack's builder
        }
        for lazy, value in ((deployer.sagemaker_endpoints, Boto3SageMakerEndpoints(self.sm)), (deployer.sns, self.sns),
                            (deployer.deploy_once, once_per_event(deployer.deploy_event, table_name="deployer-idempotency",
                                                                  boto3_client=self.ddb))):
            lazy.set(value)
            stack.callback(lazy.set, None)
        self.deployer = deployer

        # The API's functions: the settings the stack builds for the story's config. The experiment
        # tables are in memory (their names: the builders' placeholders); the subject-hash key is in
        # moto's Secrets Manager; the controller notifies nobody (the story does not follow its mail).
        api = self.api_settings = api_settings(story_config(), ApiResources(
            subject_hash_secret=client("secretsmanager").create_secret(
                Name="mlops-dev/subject-hash-key", SecretString="lifecycle")["ARN"],
            notification_topic_arn=None))
        self.experiment_id = api.inference.experiments[EXPERIMENT].experiment
        self.store = InMemoryExperimentsStore()
        self.endpoint_control = control = UnchangedEndpoints(Boto3EndpointControl(self.sm))
        self.model_runtime = SimulatedModels(self)
        self.inference = inference_api
        inference = inference_api.runtime_from_settings(api.inference, client("secretsmanager"))
        # The simulation's adapters, clock and randomness. The weights are cached for a simulated hour
        # (the controller's period), not for serving.api.allocation_cache_seconds: at 8 requests an
        # hour, 30 s would re-read them for every request (10 % more CPU for the whole story).
        inference_api.configure(dataclasses.replace(
            inference, store=self.store, model=self.model_runtime, clock=self.clock.time, monotonic=self.clock.time,
            rng=random.Random(self.rng.random()), endpoints=control, cache_seconds=HOUR.total_seconds()))
        stack.callback(inference_api.configure, None)

        self.ground_truth = FirehoseToS3(self)
        self.feedback = feedback_api
        feedback_api.configure(feedback_api.Runtime(
            settings=api.feedback.limits(inference.subject_hash_key),
            store=self.store, ground_truth=self.ground_truth, dead_letters=InMemoryDeadLetters(),
            clock=self.clock.now))
        stack.callback(feedback_api.configure, None)

        self.controller = experiment_controller
        experiment_controller.configure(
            store=self.store, endpoints=control, sns=client("sns"), events=self.events, settings=api.controller)
        stack.callback(experiment_controller.configure)
        stack.enter_context(mock.patch.object(experiment_controller, "time", self.clock))
        # The controller draws its Thompson samples from a fresh random.Random() per run: seeded here.
        stack.enter_context(mock.patch.object(experiment_controller, "random", SeededRandom(self.rng.random())))

        self.pipelines = SimulatedPipelines(self, SageMakerPipelines(self.sm))
        self.monitoring = monitoring_launcher
        monitoring_launcher.configure(s3=self.s3, models=SageMakerModels(self.sm), pipelines=self.pipelines,
                                      cloudwatch=CloudWatchMetrics(client("cloudwatch")), clock=self.clock.now)
        stack.callback(monitoring_launcher.configure)
        self.retraining = retraining_trigger
        retraining_trigger.configure(pipelines=self.pipelines, models=SageMakerModels(self.sm), s3=self.s3,
                                     clock=self.clock.now)
        stack.callback(retraining_trigger.configure)
        self.promotion = model_promotion
        model_promotion.configure(ModelRegistry(self.sm))
        stack.callback(model_promotion.configure)
        for module, model in settings.items():  # after configure(), which clears them
            module.settings.set(model)
            stack.callback(module.settings.set, None)

    # -- the story
    def note(self, kind: str, text: str, **data: Any) -> None:
        self.story.events.append(Event(self.clock.now(), kind, text, data))

    def live(self, endpoint: str = DEV_ENDPOINT) -> dict[str, tuple[str, float]]:
        """{variant: (model version, live weight)}."""
        state = self.deployer.sagemaker_endpoints().describe_endpoint_state(endpoint)
        if state is None:
            return {}
        return {v.name: (self.versions.get(v.model_package_arn or "", "?"), round(v.weight, 3)) for v in state.variants}

    def describe_live(self, endpoint: str = DEV_ENDPOINT) -> str:
        return ", ".join(f"{variant} {version} {weight:.0%}" for variant, (version, weight) in self.live(endpoint).items())

    # -- models
    def register(self, version: str, rows, group: str = DEV_GROUP, metadata: Mapping[str, str] | None = None,
                 features: int = len(FEATURES)) -> str:
        """Train on ``rows`` (a logistic regression on the first ``features`` features), write the
        baseline, register the package."""
        weights = fit([((*x[:features], *(0.0,) * (len(x) - features)), y) for x, y in rows])
        self.trained += 1
        key = f"training/{version}/baseline.json"
        self.s3.put_object(ARTIFACTS_BUCKET, key, json.dumps(baseline_of(rows)).encode())
        request: dict[str, Any] = dict(
            ModelPackageGroupName=group, ModelApprovalStatus="PendingManualApproval",
            InferenceSpecification={
                "Containers": [{"Image": IMAGE, "ModelDataUrl": f"s3://{ARTIFACTS_BUCKET}/training/{version}/model.tar.gz"}],
                "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"],
                "SupportedRealtimeInferenceInstanceTypes": ["ml.m5.large"]},
            ModelMetrics={"ModelDataQuality": {"Statistics": {
                "ContentType": "application/json", "S3Uri": f"s3://{ARTIFACTS_BUCKET}/{key}"}}})
        if metadata:
            request["CustomerMetadataProperties"] = dict(metadata)
        arn = self.sm.create_model_package(**request)["ModelPackageArn"]
        self.models[arn], self.versions[arn] = weights, version
        self.note("registered", f"{version} trained on {len(rows)} rows and registered in {group}",
                  version=version, arn=arn, **({"metadata": dict(metadata)} if metadata else {}))
        return arn

    def approve(self, arn: str, group: str = DEV_GROUP) -> dict:
        """Approve in the registry; the approval event reaches the deployer (and, in staging, the
        promotion function, as the rules route it)."""
        self.sm.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved")
        event = {"version": "0", "id": f"approve-{self.versions[arn]}-{group}", "account": ACCOUNT, "region": REGION,
                 "detail-type": "SageMaker Model Package State Change", "source": "aws.sagemaker",
                 "time": self.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ"), "resources": [arn],
                 "detail": {"ModelPackageGroupName": group, "ModelPackageArn": arn,
                            "ModelPackageVersion": int(arn.rsplit("/", 1)[1]), "ModelApprovalStatus": "Approved"}}
        results = self.deployer.handler(event, Context("deployer"))["results"]
        self.deployed()
        endpoint = DEV_ENDPOINT if group == DEV_GROUP else PROD_ENDPOINT
        self.note("deployed", f"{self.versions[arn]} approved in {group}: {results[0]['action']} -> "
                  f"{self.describe_live(endpoint)}", version=self.versions[arn], endpoint=endpoint,
                  action=results[0]["action"], live=self.live(endpoint))
        if group == DEV_GROUP:
            promoted = self.promotion.handler(event, Context("model-promotion"))
            self.note("promoted", f"{self.versions[arn]} registered in prod's registry, waiting for prod's approval",
                      source=arn, target=promoted["target"])
            self.versions[promoted["target"]] = self.versions[arn]
            self.models[promoted["target"]] = self.models[arn]
            return {"target": promoted["target"]}
        return {}

    def deployed(self) -> None:
        """After a deployment: the containers serve the new config, and by the time SageMaker has
        finished the update (minutes) the inference API's allocation cache (30 s) has expired."""
        self.model_runtime.load()
        self.endpoint_control.known.clear()
        self.inference.runtime().weights_cache.clear()

    # -- an hour of traffic
    def hour(self) -> None:
        """Subjects served, their labels due later queued; labels now due sent to the feedback API;
        capture and ground truth written; the controller's hourly run; the monitoring launcher at
        each window's end; decisions handed to the deployer; alarms to the retraining trigger."""
        at = self.clock.now()
        for _ in range(self.traffic_per_hour):
            self.serve(self.rng.randrange(50_000), at)
        self.clock.at = at + HOUR
        self.send_due_labels()
        self.model_runtime.flush()
        self.ground_truth.flush()
        if self.run_controller()["status"] in ("decided", "finished"):  # the controller put the decision event
            self.deliver_decisions()
        if self.clock.at.timestamp() % MONITOR_EVERY.total_seconds() == 0:
            self.monitor()

    def serve(self, subject: int, at: datetime) -> None:
        from mlops_platform.local.server import proxy_event

        self.clock.at = at + timedelta(seconds=self.rng.randrange(3600))
        features = subject_features(subject, self.clock.at)
        body = ",".join(f"{x:.4f}" for x in features).encode()
        event = proxy_event("POST", f"/v1/endpoints/{EXPERIMENT}/invocations", "/v1/endpoints/{endpoint}/invocations",
                            {"endpoint": EXPERIMENT}, [("Content-Type", "text/csv"), ("X-Subject-Id", f"s{subject}")],
                            "", body)
        response = self.inference.handler(event, Context("inference-api"))
        if response["statusCode"] != 200:
            raise RuntimeError(f"inference API answered {response['statusCode']}: {response['body']}")
        headers = {k.lower(): (v[0] if isinstance(v, list) else v)
                   for k, v in (response.get("multiValueHeaders") or response["headers"]).items()}
        score = float(response["body"])
        # The offer fits when the score is close to the subject's true probability: conversions
        # follow that probability, damped by the model's error.
        truth = true_probability(features, self.clock.at)
        converted = int(self.rng.random() < truth * math.exp(-5 * abs(score - truth)))
        outcome = int(self.rng.random() < truth)  # the label the product learns later (model quality, retraining)
        low, high = (d.total_seconds() for d in LABEL_DELAY)
        due = self.clock.time() + low + (high - low) * self.rng.random() ** 2  # most labels come early
        heapq.heappush(self.pending_labels, (due, self.story.served, headers["x-inference-id"], converted, outcome))
        self.story.served += 1
        self.clock.at = at

    def send_due_labels(self) -> None:
        from mlops_platform.local.server import proxy_event

        due = []
        while self.pending_labels and self.pending_labels[0][0] <= self.clock.time():
            due.append(heapq.heappop(self.pending_labels))
        for start in range(0, len(due), 100):
            records = [{"inference_id": inference_id, "feedback_type": "conversion", "reward": converted,
                        "label": outcome} for _, _, inference_id, converted, outcome in due[start:start + 100]]
            event = proxy_event("POST", "/v1/feedback", "/v1/feedback", None, [("Content-Type", "application/json")],
                                "", json.dumps({"records": records}).encode())
            response = self.feedback.handler(event, Context("feedback-api"))
            if response["statusCode"] != 202:
                raise RuntimeError(f"feedback API answered {response['statusCode']}: {response['body']}")
        self.story.labels += len(due)

    def run_controller(self) -> dict:
        result = self.controller.handler({"experiment": EXPERIMENT}, Context("experiment-controller"))
        status = result["status"]
        if status in ("error", "conflict", "apply_failed"):
            raise RuntimeError(f"controller: {result}")
        if status == "restarted":
            previous = self.store.arm_counts(self.experiment_id, result["round"] - 1)
            self.note("round", f"round {result['round']} starts: {self.describe_live()}", round=result["round"],
                      weights=result["weights"], previous_round_labels=sum(c.feedback_count for c in previous.values()))
        elif status == "moved":
            self.note("weights", "weights " + ", ".join(f"{a} {w:.0%}" for a, w in result["weights"].items()),
                      weights=result["weights"])
        elif status == "decided":
            state = self.store.read_state(self.experiment_id) or {}
            self.note("decided", f"round {state.get('round')}: {result.get('outcome', 'winner')} "
                      f"{result.get('winner') or result.get('kept_arm')} -> {self.describe_live()}",
                      round=state.get("round"), result=result, live=self.live())
        return result

    def deliver_decisions(self) -> None:
        """The "Experiment Decided" events the rule put on the queue, handed to the deployer."""
        messages = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return
        for message in messages:
            self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])
        records = [{"messageId": m["MessageId"], "body": m["Body"]} for m in messages]
        self.deployer.handler({"Records": records}, Context("deployer"))
        self.deployed()
        self.note("kept", f"the deployer keeps the winner: {self.describe_live()}", live=self.live())

    # -- monitoring
    def monitor(self) -> None:
        """The launcher's run; the pipelines it started run the job here; the alarms follow its metrics."""
        before = len(self.pipelines.started)
        result = self.monitoring.handler({"endpoint": DEV_ENDPOINT}, Context("monitoring-launcher"))
        if result.get("status") not in ("started", "empty_window", "skipped"):
            raise RuntimeError(f"monitoring launcher: {result}")
        datapoints: dict[str, float] = {}
        for pipeline, parameters in self.pipelines.started[before:]:
            if pipeline == MONITORING_PIPELINE:
                for metric, value in self.run_monitoring_job(parameters).items():
                    datapoints[metric] = max(value, datapoints.get(metric, value))
        # CloudWatch: each alarm watches the Maximum of its metric over the period (the window's
        # datapoint and the late-label rechecks' datapoints, all published in this run).
        for alarm, metric in ((QUALITY_ALARM, "QualityBelowTarget"), (DRIFT_ALARM, "DriftDetected")):
            if metric in datapoints:
                self.set_alarm(alarm, "ALARM" if datapoints[metric] >= 1 else "OK")

    def _download(self, manifest_uri: str, into: Path) -> Path:
        from mlops_runtime.domain.monitoring_window import manifest_keys

        bucket, key = manifest_uri.removeprefix("s3://").split("/", 1)
        manifest = json.loads(self.s3.get_object(bucket, key))
        prefix = manifest[0]["prefix"]
        for uri in manifest_keys(manifest):
            source_bucket, source_key = uri.removeprefix("s3://").split("/", 1)
            target = into / uri.removeprefix(prefix)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.s3.get_object(source_bucket, source_key))
        return into

    def run_monitoring_job(self, parameters: Mapping[str, str]) -> dict[str, float]:
        """The monitoring pipeline's processing job (``monitoring/monitor.py``) on the manifests' files."""
        from monitoring import monitor

        run = self.work / f"monitoring-{len(self.pipelines.started)}"
        capture = self._download(parameters["CaptureManifestS3Uri"], run / "capture")
        labels = self._download(parameters["GroundTruthManifestS3Uri"], run / "ground-truth")
        bucket, key = parameters["BaselineS3Uri"].removeprefix("s3://").split("/", 1)
        (run / "baseline.json").write_bytes(self.s3.get_object(bucket, key))
        argv = ["--capture-dir", str(capture), "--baseline", str(run / "baseline.json"), "--ground-truth-dir",
                str(labels), "--output-dir", str(run / "out"), "--window-start", parameters["WindowStart"],
                "--window-end", parameters["WindowEnd"], "--thresholds", json.dumps(THRESHOLDS), "--workers", "1",
                "--endpoint", DEV_ENDPOINT, "--drift-policy", json.dumps(DRIFT_POLICY),
                "--carry", str(self.work / "drift-carry.json"), "--metric-scope", parameters.get("MetricScope") or "all"]
        if parameters.get("MetricTime"):
            argv += ["--metric-time", parameters["MetricTime"]]
        with contextlib.redirect_stderr(None), _quiet_logging():
            code = monitor.main(argv)
        if code != 0:
            raise RuntimeError(f"monitoring job failed ({code}) on {parameters}")
        metrics = json.loads((run / "out" / "cloudwatch_metrics.json").read_text())
        values = {m["MetricName"]: m["Value"] for m in _metric_data(metrics)
                  if {d["Name"]: d["Value"] for d in m.get("Dimensions", [])}.get("Variant") == "_all"}
        scope = "labels re-checked" if parameters.get("MetricScope") == "quality" else "window"
        self.note("monitoring", f"{scope} {parameters['WindowStart'][:10]}: AUC {values.get('AUC', float('nan')):.2f} on "
                  f"{values.get('LabelCount', 0):.0f} labels, drift {'yes' if values.get('DriftDetected') else 'no'}",
                  window=parameters["WindowStart"], values=values, scope=scope)
        return values

    def set_alarm(self, alarm: str, state: str) -> None:
        """CloudWatch's alarm state change; into ALARM, the event reaches the retraining trigger."""
        previous = self.alarms[alarm]
        self.alarms[alarm] = state
        if state == previous:
            return
        self.note("alarm", f"{alarm} {previous} -> {state}", alarm=alarm, state=state)
        if state != "ALARM":
            return
        stamp = self.clock.now()
        event = {"source": "aws.cloudwatch", "detail-type": "CloudWatch Alarm State Change",
                 "time": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
                 "detail": {"alarmName": alarm, "previousState": {"value": previous},
                            "state": {"value": "ALARM", "timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%S.000+0000")}}}
        before = len(self.pipelines.started)
        result = self.retraining.handler(event, Context("retraining-trigger"))
        if result.get("status") == "ignored":
            return
        for decision in result.get("decisions", []):
            self.note("retraining", f"{decision['pipeline']}: {decision['action']} ({decision.get('reason', '')})",
                      decision=decision)
        for pipeline, parameters in self.pipelines.started[before:]:
            if pipeline == TRAINING_PIPELINE:
                self.retrain(parameters)

    def retrain(self, parameters: Mapping[str, str]) -> None:
        """The training pipeline: the raw data plus ``production.csv`` (features from data capture,
        labels from the feedback API), registered with the window and the count as the pipeline does."""
        rows = list(self.training_data)
        production = []
        uri = parameters.get("ProductionDataUri")
        if uri:
            bucket, key = uri.removeprefix("s3://").split("/", 1)
            lines = self.s3.get_object(bucket, key).decode().splitlines()
            header = lines[0].split(",")
            for line in lines[1:]:
                values = dict(zip(header, line.split(",")))
                production.append((tuple(float(values[f]) for f in FEATURES), int(float(values[header[-1]]))))
        # Production labels describe today's world: they outweigh the old raw data.
        rows = rows[:200] + production * 3
        self.pending_version = self.register(f"v{self.trained + 1}", rows, metadata={
            "mlops:production-records": parameters.get("ProductionRecords", "0"),
            "mlops:production-window": f"{parameters.get('ProductionWindowStart')}/{parameters.get('ProductionWindowEnd')}"})


class Context:
    """The Lambda context the handlers' Powertools decorators read."""

    memory_limit_in_mb = 512
    aws_request_id = "lifecycle"

    def __init__(self, function: str) -> None:
        self.function_name = f"mlops-dev-{function}"
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.function_name}"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


def _metric_data(document: Any) -> list[dict]:
    if isinstance(document, list):
        return document
    return list(document.get("MetricData") or document.get("metric_data") or [])


@contextlib.contextmanager
def _quiet_logging() -> Iterator[None]:
    import logging

    logger = logging.getLogger("monitor")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


# --- the six weeks --------------------------------------------------------------------------------


def live(seed: int = 15, traffic_per_hour: int = 8, weeks: int = WEEKS) -> Story:
    """The whole life; the story of what each part did when."""
    from moto import mock_aws

    began, cpu = wall.perf_counter(), wall.process_time()
    with contextlib.ExitStack() as stack, _aws_environment(), mock_aws():
        world = World(seed, traffic_per_hour, stack)
        in_prod: dict[str, str] = {}  # version -> its package in prod's registry
        v1 = world.register("v1", world.training_data, features=1)  # a first model on one feature
        in_prod["v1"] = world.approve(v1)["target"]
        for _ in range(24 * 2):
            world.hour()
        v2 = world.register("v2", world.training_data + training_rows(world.rng, 6000, world.clock.now()))
        in_prod["v2"] = world.approve(v2)["target"]
        retrained = None
        while world.clock.now() < START + timedelta(weeks=weeks):
            world.hour()
            if world.pending_version and retrained is None:  # the team approves the retrained model
                retrained, world.pending_version = world.pending_version, None
                in_prod[world.versions[retrained]] = world.approve(retrained)["target"]
            kept = world.story.of("kept")
            if retrained and kept and kept[-1].at > world.story.of("deployed")[-1].at and not world.story.of("prod"):
                champion = kept[-1].data["live"]["champion"][0]
                world.approve(in_prod[champion], PROD_GROUP)  # prod's manual approval of the promoted package
                world.note("prod", f"prod serves {world.describe_live(PROD_ENDPOINT)}", live=world.live(PROD_ENDPOINT))
        state = world.store.read_state(world.experiment_id) or {}
        world.story.rounds = {n: world.store.arm_counts(world.experiment_id, n) for n in range(1, int(state.get("round", 1)) + 1)}
        world.story.api_settings = world.api_settings
        world.story.wall_seconds, world.story.cpu_seconds = wall.perf_counter() - began, wall.process_time() - cpu
        return world.story


@contextlib.contextmanager
def _aws_environment() -> Iterator[None]:
    fake = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true", "POWERTOOLS_METRICS_NAMESPACE": "MlopsPlatform/Lifecycle",
            "POWERTOOLS_LOG_LEVEL": "ERROR", "POWERTOOLS_TRACE_DISABLED": "true"}
    with mock.patch.dict(os.environ, fake):
        yield


def main() -> int:
    import io
    import warnings

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():  # the handlers' EMF metrics
        warnings.simplefilter("ignore")
        story = live()
    print(story.timeline())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
