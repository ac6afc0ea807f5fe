"""Lambda: the inference API (API Gateway REST API, Lambda proxy integration). Contract: ``docs/inference-api.md``.

- ``POST /v1/endpoints/{endpoint}/invocations``: route the request to an arm of the public
  endpoint's experiment (sticky per subject, by ``domain.routing.assign`` over the current weights),
  call ``InvokeEndpoint`` on the arm's (endpoint, variant) and record the prediction with ONE
  DynamoDB transaction (prediction item + ``ADD invocations :one``). The model's body and content
  type come back with ``X-Inference-Id``, ``X-Variant`` (arm) and ``X-Endpoint-Variant``.
- ``GET /v1/experiments/{endpoint}``: per-arm counts, rewards, posterior mean with a 95% credible
  interval, current weight, probability of being best, the anytime-valid test's evidence at the last
  look, the trail of looks and the decision once made; ``?format=html|markdown``: the decision
  report page (``domain.experiment_report``).

AWS calls per invocation: InvokeEndpoint + TransactWriteItems (+ GetRecord with a feature group).
The weights come from the experiment state table at most once per ``ALLOCATION_CACHE_SECONDS`` per
execution environment (never a per-request read).

Settings: ``settings.InferenceSettings`` (the experiments, tables, the subject-hash secret read with
Powertools parameters, prediction TTL, allocation cache, the delivery pipeline's smoke-test role:
its requests marked ``X-Smoke-Test: true`` are served and recorded but counted in no experiment),
read on the first request, not at import.

Rounds: the state names the experiment's current round (a new one per deployment, see
``domain.rounds``); each prediction record carries it, its invocation is counted in the row of
(round, arm, served hour), and subjects are assigned with the round's salt. When the state records
the deployment it was written for, each cache refresh also reads the endpoints' configs
(DescribeEndpoint): if the deployer has changed them since, the new round is served at once, with
the weights the deployer gave the variants and the packages behind them (looked up once per
deployment), exactly as the controller's next run will record it, so no prediction of the new
models is counted in the old round.

No Tracer is created at import; tracing is opt-in (``adapters.tracing.OPT_IN``):
``POWERTOOLS_TRACE_DISABLED=false`` creates it on the first request.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.metrics import MetricUnit

from mlops_runtime.adapters.experiments_store import (
    DuplicateInferenceId,
    DynamoDBExperimentsStore,
    ExperimentsStore,
    current_weights,
    round_start_weights,
)
from mlops_runtime.adapters.model_runtime import (
    Boto3EndpointControl,
    Boto3ModelRuntime,
    EndpointControl,
    InvalidModelInput,
    ModelError,
    ModelInvocationError,
    ModelRuntime,
    ModelThrottled,
    UnknownModelEndpoint,
    deployed_packages,
)
from mlops_runtime.adapters.secrets import subject_hash_key
from mlops_runtime.adapters.tracing import OPT_IN, entry_point, powertools
from mlops_runtime.adapters.online_features import Boto3OnlineFeatures, FeatureLookupError, OnlineFeatures
from mlops_runtime.domain import routing
from mlops_runtime.domain.rounds import ArmCounts, redeployed, round_salt, statistics_key
from mlops_runtime.lazy import Lazy
from mlops_runtime.settings.experiments import ExperimentSettings, InferenceSettings

MAX_BODY_BYTES = 6_291_456  # InvokeEndpoint's payload limit
RETRY_AFTER_SECONDS = "1"
TEXT_TYPES = ("application/json", "text/", "application/jsonlines", "application/x-ndjson", "application/xml")

logger, metrics = powertools()
app = APIGatewayRestResolver()


class ApiError(Exception):
    """An answer other than 200: status, machine-readable code, human-readable reason."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


@dataclass
class Runtime:
    """Configuration, adapters, clock and randomness of the function, built on the first request."""

    experiments: dict[str, ExperimentSettings]
    store: ExperimentsStore
    model: ModelRuntime
    features: OnlineFeatures | None = None
    subject_hash_key: bytes | None = None
    ttl_seconds: int = 30 * 86_400
    cache_seconds: float = 30.0
    clock: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    rng: random.Random = field(default_factory=random.Random)
    # public name -> (weights, monotonic time when they expire)
    weights_cache: dict[str, tuple[dict[str, float], float]] = field(default_factory=dict)
    # public name -> arm -> model package ARN deployed behind it (from the state, with the weights)
    packages: dict[str, dict[str, str]] = field(default_factory=dict)
    # public name -> the experiment's current round (from the state, with the weights)
    rounds: dict[str, int] = field(default_factory=dict)
    # name of the delivery pipeline's smoke-test role: its requests marked X-Smoke-Test are not counted
    smoke_test_role: str | None = None
    # the endpoints' deployed configs, compared with the state's (None: the state's round is served)
    endpoints: EndpointControl | None = None
    # public name -> (deployment not yet recorded by the controller, the packages behind its arms)
    pending_packages: dict[str, tuple[dict[str, str | None], dict[str, str | None]]] = field(default_factory=dict)


def runtime_from_settings(settings: InferenceSettings, secrets_client: Any | None = None) -> Runtime:
    experiments = settings.experiments
    return Runtime(
        experiments=experiments,
        store=DynamoDBExperimentsStore(settings.predictions_table, settings.statistics_table, settings.state_table),
        model=Boto3ModelRuntime(),
        features=Boto3OnlineFeatures() if any(c.feature_group for c in experiments.values()) else None,
        subject_hash_key=subject_hash_key(settings.subject_hash_secret, secrets_client),
        ttl_seconds=settings.prediction_ttl_days * 86_400,
        cache_seconds=float(settings.allocation_cache_seconds),
        smoke_test_role=settings.smoke_test_role,
        endpoints=Boto3EndpointControl(),
    )


SETTINGS_MODEL = InferenceSettings  # what the stack passes in MLOPS_SETTINGS
runtime = Lazy(lambda: runtime_from_settings(SETTINGS_MODEL.from_env()))
configure = runtime.set  # tests and the local rehearsal; None rebuilds from the environment on next use


# --- helpers ---------------------------------------------------------------------------------------


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status_code=status, content_type="application/json", body=json.dumps(payload), headers=headers)


def _header(name: str) -> str | None:
    headers = app.current_event.headers  # Powertools builds a new dict on each access: once here
    if not headers:
        return None
    value = headers.get(name)
    if value is None:  # API Gateway keeps the caller's case
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value


def _query(name: str) -> str | None:
    params = app.current_event.query_string_parameters or {}
    return params.get(name)


def _experiment(name: str) -> ExperimentSettings:
    config = runtime().experiments.get(name)
    if config is None:
        raise ApiError(404, "unknown_endpoint", f"no endpoint named {name!r}")
    return config


def allocation_for(config: ExperimentSettings) -> dict[str, float]:
    """The current weights: cached per environment for ``cache_seconds``; the state table when stale,
    ``initial_weights`` when it has no state (or cannot be read, keeping the last known weights)."""
    rt = runtime()
    cached = rt.weights_cache.get(config.name)
    now = rt.monotonic()
    if cached is not None and cached[1] > now:
        return cached[0]
    try:
        state = rt.store.read_state(config.experiment)
        weights, round_id, packages = current_weights(config, state), state_round(state), (state or {}).get("packages")
        pending = _new_deployment(config, (state or {}).get("deployment"))
        if pending is not None:  # deployed since the controller's last run: its next round, now
            deployment, live = pending
            weights, round_id = round_start_weights(config, live), round_id + 1
            packages = _packages_of(config, deployment)
        if isinstance(packages, dict):
            rt.packages[config.name] = {arm: arn for arm, arn in packages.items() if isinstance(arn, str) and arn}
        rt.rounds[config.name] = round_id
    except Exception:
        logger.exception("Could not read the experiment state; keeping the last weights",
                         extra={"experiment": config.experiment})
        metrics.add_metric(name="AllocationReadFailures", unit=MetricUnit.Count, value=1)
        weights = cached[0] if cached else dict(config.initial_weights)
    rt.weights_cache[config.name] = (weights, now + rt.cache_seconds)
    return weights


def _new_deployment(
    config: ExperimentSettings, recorded: Any
) -> tuple[dict[str, str | None], dict[str, dict[str, float]]] | None:
    """``(endpoint -> config, endpoint -> variant -> weight)`` when the experiment's endpoints now
    serve other configs than the deployment the state recorded; None when they do not, when nothing
    is recorded (before the controller's first run) or when an endpoint cannot be described (the
    controller then skips too)."""
    control = runtime().endpoints
    if control is None or recorded is None:
        return None
    deployment, live = {}, {}
    for endpoint in config.endpoints:
        try:
            info = control.describe_endpoint(endpoint)
        except Exception:
            logger.exception("Could not describe the endpoint; serving the state's round", extra={"endpoint": endpoint})
            metrics.add_metric(name="DeploymentReadFailures", unit=MetricUnit.Count, value=1)
            return None
        deployment[endpoint], live[endpoint] = info.config_name, info.variant_weights
    return (deployment, live) if redeployed(recorded, deployment) else None


def _packages_of(config: ExperimentSettings, deployment: dict[str, str | None]) -> dict[str, str | None]:
    """The packages behind the arms of a deployment the controller has not recorded yet, looked up
    once per deployment and execution environment."""
    rt = runtime()
    known = rt.pending_packages.get(config.name)
    if known is None or known[0] != deployment:
        known = rt.pending_packages[config.name] = (deployment, deployed_packages(config, rt.endpoints))
    return known[1]


def state_round(state: dict[str, Any] | None) -> int:
    """The experiment's current round in its state item (1 before the controller's first run)."""
    value = (state or {}).get("round", 1)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else 1


def _is_smoke_test() -> bool:
    """A request marked ``X-Smoke-Test: true`` by the delivery pipeline's smoke-test role (IAM caller
    ``assumed-role/<SMOKE_TEST_ROLE_NAME>/...``). The mark from any other caller is ignored, so a
    client cannot take its own traffic out of an experiment."""
    role = runtime().smoke_test_role
    if not role or (_header("X-Smoke-Test") or "").lower() != "true":
        return False
    identity = (app.current_event.raw_event.get("requestContext") or {}).get("identity") or {}
    caller = identity.get("userArn") or ""
    return f":assumed-role/{role}/" in caller


def _body_bytes() -> bytes:
    event = app.current_event
    raw = event.body
    if raw is None:
        return b""
    if event.is_base64_encoded:
        try:
            return base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError) as error:
            raise ApiError(400, "bad_body", "body is marked base64 but is not valid base64") from error
    return raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)


def _media_type(value: str | None) -> str | None:
    if not value:
        return None
    return value.split(";", 1)[0].strip().lower() or None


def _csv_row(values: list[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue().encode("utf-8")


def _feature_payload(config: ExperimentSettings, subject: str | None) -> bytes:
    group = config.feature_group
    if not subject:
        raise ApiError(400, "subject_required", "this endpoint looks features up by subject: send X-Subject-Id")
    features = runtime().features
    if features is None:
        raise RuntimeError("a feature group is configured but no online feature reader")
    try:
        record = features.get_record(group.name, subject, group.features)
    except FeatureLookupError as error:
        logger.error("Feature lookup failed", extra={"feature_group": group.name, "reason": str(error)})
        raise ApiError(503, "features_unavailable", "the online feature store could not be read",
                       {"Retry-After": RETRY_AFTER_SECONDS}) from error
    if record is None:
        metrics.add_metric(name="FeatureRecordMissing", unit=MetricUnit.Count, value=1)
        raise ApiError(400, "no_feature_record", f"subject has no record in feature group {group.name!r}")
    missing = [name for name in group.features if name not in record]
    if missing:
        raise ApiError(400, "incomplete_feature_record", f"the subject's record lacks features {missing}")
    return _csv_row([record[name] for name in group.features])


def _response_body(body: bytes, content_type: str | None) -> str | bytes:
    media = _media_type(content_type) or ""
    if media.startswith(TEXT_TYPES) or media.endswith(("+json", "/csv")):
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            return body
    return body  # Powertools base64-encodes bytes (binary media types must be enabled on the API)


# --- routes ----------------------------------------------------------------------------------------


@app.post("/v1/endpoints/<endpoint>/invocations")
def invoke(endpoint: str) -> Response:
    rt = runtime()
    config = _experiment(endpoint)

    inference_id = _header("X-Inference-Id")
    if inference_id is None or inference_id == "":
        inference_id = routing.new_inference_id()
    else:
        try:
            routing.validate_inference_id(inference_id)
        except routing.InvalidInferenceId as error:
            raise ApiError(400, "invalid_inference_id", str(error)) from error

    subject = _header("X-Subject-Id") or _query("subject_id") or None

    weights = allocation_for(config)  # cached: also refreshes the arms' model packages and the round
    round_id = rt.rounds.get(config.name, 1)
    smoke_test = _is_smoke_test()
    override = _header("X-Target-Arm")
    if override:
        if not config.allow_variant_override:
            raise ApiError(403, "override_not_allowed", f"endpoint {endpoint!r} does not allow X-Target-Arm")
        if override not in config.arms:
            raise ApiError(400, "unknown_arm", f"no arm {override!r}; arms: {sorted(config.arms)}")
        arm, assignment = override, "override"
    else:
        if subject:
            arm, assignment = routing.assign(subject, weights, round_salt(config.salt, round_id)), "subject"
        else:
            arm, assignment = routing.assign_random(weights, rt.rng), "random"
    target = config.arms[arm]

    if config.feature_group is not None:
        body, content_type = _feature_payload(config, subject), "text/csv"
    else:
        content_type = _media_type(_header("Content-Type"))
        if content_type is None or content_type not in config.content_types:
            raise ApiError(
                400, "unsupported_content_type",
                f"Content-Type {content_type or '(none)'} is not accepted; use one of {list(config.content_types)}",
            )
        body = _body_bytes()
        if not body:
            raise ApiError(400, "empty_body", "the request body is empty")
    if len(body) > MAX_BODY_BYTES:
        raise ApiError(400, "body_too_large", f"the body exceeds {MAX_BODY_BYTES} bytes")

    try:
        try:
            result = rt.model.invoke(target.endpoint, target.variant, inference_id, content_type, body,
                                     _header("Accept"))
        except UnknownModelEndpoint:
            fallback = next(iter(config.arms))
            if assignment == "override" or arm == fallback:
                raise
            # The arm's variant is not deployed (yet): e.g. no challenger since the last promotion.
            # Its subjects are served by the first arm (the champion) and recorded there.
            metrics.add_metric(name="ArmFallbacks", unit=MetricUnit.Count, value=1)
            logger.info("Arm not deployed; served by the first arm",
                        extra={"arm": arm, "fallback": fallback, "endpoint": target.endpoint})
            arm, target = fallback, config.arms[fallback]
            result = rt.model.invoke(target.endpoint, target.variant, inference_id, content_type, body,
                                     _header("Accept"))
    except ModelError as error:
        metrics.add_metric(name="ModelErrors", unit=MetricUnit.Count, value=1)
        logger.warning("Model error", extra={"arm": arm, "endpoint": target.endpoint, "inference_id": inference_id})
        raise ApiError(502, "model_error", error.message, {"X-Inference-Id": inference_id, "X-Variant": arm}) from error
    except ModelThrottled as error:
        metrics.add_metric(name="Throttled", unit=MetricUnit.Count, value=1)
        raise ApiError(429, "throttled", "the model endpoint is throttling requests; retry later",
                       {"Retry-After": RETRY_AFTER_SECONDS}) from error
    except UnknownModelEndpoint as error:
        metrics.add_metric(name="ModelEndpointMissing", unit=MetricUnit.Count, value=1)
        logger.error("Configured endpoint or variant not found",
                     extra={"arm": arm, "endpoint": target.endpoint, "variant": target.variant, "reason": error.message})
        raise ApiError(503, "model_unavailable", "the model behind this endpoint is not deployed",
                       {"Retry-After": "60"}) from error
    except InvalidModelInput as error:
        raise ApiError(400, "invalid_request", error.message) from error
    except ModelInvocationError as error:
        logger.error("InvokeEndpoint failed", extra={"code": error.code, "reason": error.message})
        raise ApiError(503, "model_unavailable", "the model endpoint is unavailable; retry later",
                       {"Retry-After": RETRY_AFTER_SECONDS}) from error

    served_variant = result.invoked_variant or target.variant
    headers = {"X-Inference-Id": inference_id, "X-Variant": arm, "X-Endpoint-Variant": served_variant}
    package = target.model_package_arn or rt.packages.get(config.name, {}).get(arm)
    recorded = _record(config, arm, target.endpoint, served_variant, package, inference_id, subject,
                       round_id, counted=not smoke_test)
    if not recorded:
        headers["X-Prediction-Recorded"] = "false"
    if smoke_test:
        headers["X-Prediction-Counted"] = "false"
        metrics.add_metric(name="SmokeTestInvocations", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="Invocations", unit=MetricUnit.Count, value=1)
    logger.debug("Served", extra={"arm": arm, "assignment": assignment, "inference_id": inference_id})
    return Response(
        status_code=200,
        content_type=result.content_type or "application/octet-stream",
        body=_response_body(result.body, result.content_type),
        headers=headers,
    )


def _record(
    config: ExperimentSettings, arm: str, endpoint: str, variant: str, package: str | None,
    inference_id: str, subject: str | None, round_id: int, *, counted: bool,
) -> bool:
    """The single write; False (logged, metric) when it failed: the prediction is still returned.
    The record names the round that served it; an uncounted (smoke-test) one adds to no statistics
    row and its feedback is never credited."""
    rt = runtime()
    now = rt.clock()
    try:
        subject_hash = routing.hash_subject(subject, rt.subject_hash_key) if subject and rt.subject_hash_key else None
        item = routing.build_prediction_record(inference_id, endpoint, variant, package, subject_hash, now, rt.ttl_seconds)
        item["created_at"] = int(now)
        item["experiment"] = config.experiment
        item["arm"] = arm
        item["round"] = round_id
        if not counted:
            item["smoke_test"] = True
        row_key = statistics_key(round_id, arm, now) if counted else None
        rt.store.record_prediction(item, config.experiment, row_key)
        return True
    except DuplicateInferenceId:
        logger.warning("Inference id already recorded: prediction not recorded again",
                       extra={"inference_id": inference_id})
        metrics.add_metric(name="DuplicateInferenceIds", unit=MetricUnit.Count, value=1)
    except Exception:
        logger.exception("Could not record the prediction", extra={"inference_id": inference_id, "arm": arm})
        metrics.add_metric(name="PredictionWriteFailures", unit=MetricUnit.Count, value=1)
    return False


REPORT_FORMATS = {"html": "text/html; charset=utf-8", "markdown": "text/markdown; charset=utf-8"}


@app.get("/v1/experiments/<endpoint>")
def experiment_summary(endpoint: str) -> Response:
    """JSON by default; ``?format=html`` or ``?format=markdown``: the decision report page."""
    wanted = _query("format") or "json"
    if wanted != "json" and wanted not in REPORT_FORMATS:
        raise ApiError(400, "invalid_format", f"format must be json, html or markdown, got {wanted!r}")
    summary = summarize_experiment(_experiment(endpoint), runtime().store)
    if wanted == "json":
        return _json(200, summary)
    from mlops_runtime.domain import experiment_report

    render = experiment_report.render_html if wanted == "html" else experiment_report.render_markdown
    return Response(status_code=200, content_type=REPORT_FORMATS[wanted], body=render(summary))


def summarize_experiment(config: ExperimentSettings, store: ExperimentsStore) -> dict[str, Any]:
    """The experiment's dashboard: per-arm statistics and posteriors, weights, and the decision
    report: the outcome, the test's evidence at the last look (matured counts, anytime-valid
    intervals, statistics and threshold), the trail of looks and the regret spent."""
    from mlops_runtime.domain import experiments
    from mlops_runtime.domain.experiment_report import estimated_regret

    state = store.read_state(config.experiment) or {}
    round_id = state_round(state)
    counts = store.arm_counts(config.experiment, round_id)
    weights = current_weights(config, state)
    total = sum(weights.values())
    arms, stats, error = [], [], None
    for arm, target in config.arms.items():
        row = counts.get(arm, ArmCounts())
        entry = {
            "arm": arm,
            "endpoint": target.endpoint,
            "variant": target.variant,
            "invocations": row.invocations,
            "feedback_count": row.feedback_count,
            "reward_sum": row.reward_sum,
            "weight": weights[arm] / total,
        }
        arms.append(entry)
        try:
            stats.append(experiments.ArmStats(arm, row.invocations, row.reward_sum, row.reward_sq_sum))
        except experiments.ImpossibleStatistics as exc:
            error = str(exc)
    if error is None:
        for entry, summary in zip(arms, experiments.summarize(stats)):
            entry.update(
                mean_reward=summary.mean_reward,
                posterior_mean=summary.posterior_mean,
                credible_interval_95=[summary.lower, summary.upper],
                probability_best=summary.probability_best,
            )
    return {
        "endpoint": config.name,
        "experiment": config.experiment,
        "arms": arms,
        "weights": {a["arm"]: a["weight"] for a in arms},
        "outcome": state.get("outcome") or ("keep_running" if state.get("evidence") else None),
        "decision": state.get("decision"),
        "evidence": state.get("evidence"),
        "looks": state.get("looks", []),
        "estimated_regret": estimated_regret(state.get("decision") or state.get("evidence")),
        "steps": state.get("steps", 0),
        "moves": state.get("moves", 0),
        "updated_at": state.get("updated_at"),
        "round": round_id,
        "history": state.get("history", []),
        "error": error,
    }


# --- errors ----------------------------------------------------------------------------------------


@app.exception_handler(ApiError)
def _api_error(error: ApiError) -> Response:
    return _json(error.status, {"error": error.code, "message": error.message}, error.headers or None)


@app.not_found
def _not_found(_: Exception) -> Response:
    return _json(404, {"error": "not_found", "message": "no such route"})


@app.exception_handler(Exception)
def _unexpected(error: Exception) -> Response:
    logger.exception("Unexpected error")
    metrics.add_metric(name="UnexpectedErrors", unit=MetricUnit.Count, value=1)
    return _json(500, {"error": "internal_error", "message": "internal error"})


handler = entry_point(lambda event, context: app.resolve(event, context), logger, metrics, tracing=OPT_IN)
