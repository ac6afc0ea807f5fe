"""Lambda: the experiment controller, run on a schedule (EventBridge Scheduler) per public endpoint.

Input: ``{"experiment": "<public endpoint name>"}`` (a key of ``EXPERIMENTS``).

Each run: read the state (GetItem) and the current round's per-arm counts (Query on the round's
statistics rows, ``arm_counts``: evidence of earlier rounds never counts), skip when an endpoint of the
experiment is not InService (DescribeEndpoint), run ``ExperimentController.step`` (time read per
call), apply moved weights with ``UpdateEndpointWeightsAndCapacities`` when every arm is a variant
of ONE SageMaker endpoint (arms spanning endpoints are split by the inference API, whose weights
ARE the state table's), then write the state with a version check. On a declared winner: the final
weights (winner 1.0), the decision in the state, an SNS notification and a note on the winner's
model package (``UpdateModelPackage`` CustomerMetadataProperties; skipped when no package is known).
The decision is the anytime-valid test's (``domain.sequential_test``) on matured predictions only
(served ``feedback_delay_hours`` ago or earlier): ``winner``, ``no_meaningful_difference`` or
``stopped_at_limit`` (both keep the champion) end the experiment; the state keeps each look's
evidence (``looks``, ``evidence``) for the report. A finished experiment never moves again. Impossible statistics are logged and notified, not raised.

Environment: ``EXPERIMENTS`` (as the inference API), ``CONTROLLER`` (JSON keyed by public name:
``strategy`` thompson|epsilon_greedy|ucb1|fixed, ``epsilon``, ``min_share``, ``max_step``,
``min_observations``, ``min_change``, ``stop`` (false: never decide), ``alpha``, ``min_effect``,
``max_invocations``, ``max_duration_days``, ``feedback_delay_hours``), ``STATISTICS_TABLE``, ``EXPERIMENT_STATE_TABLE``,
``NOTIFICATION_TOPIC_ARN``.

Returns ``{"status": finished|skipped|waiting|moved|decided|conflict|apply_failed|error, ...}``.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from mlops_runtime.adapters.tracing import LazilyTraced
from mlops_runtime.adapters.aws_errors import is_not_found
from mlops_runtime.adapters.experiments_store import (
    DynamoDBExperimentsStore,
    ExperimentConfig,
    ExperimentsStore,
    StateConflict,
    current_weights,
    parse_experiments,
)
from mlops_runtime.adapters.model_runtime import Boto3EndpointControl, EndpointControl
from mlops_runtime.domain import experiments as domain
from mlops_runtime.domain.rounds import ArmCounts
from mlops_runtime.domain.sequential_test import ExperimentDecision, SequentialTest

logger = Logger()
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "MlopsPlatform"))

_experiments: dict[str, ExperimentConfig] | None = None
_store: ExperimentsStore | None = None
_endpoints: EndpointControl | None = None
_sns: Any | None = None


def configure(
    store: ExperimentsStore | None = None, endpoints: EndpointControl | None = None, sns: Any | None = None
) -> None:
    """Inject adapters (tests); with no arguments everything is rebuilt from the environment."""
    global _experiments, _store, _endpoints, _sns
    _experiments, _store, _endpoints, _sns = None, store, endpoints, sns


def experiments_config() -> dict[str, ExperimentConfig]:
    global _experiments
    if _experiments is None:
        _experiments = parse_experiments(os.environ.get("EXPERIMENTS"))
    return _experiments


def store() -> ExperimentsStore:
    global _store
    if _store is None:
        _store = DynamoDBExperimentsStore(
            os.environ.get("PREDICTIONS_TABLE"), os.environ["STATISTICS_TABLE"], os.environ["EXPERIMENT_STATE_TABLE"]
        )
    return _store


def endpoints() -> EndpointControl:
    global _endpoints
    if _endpoints is None:
        _endpoints = Boto3EndpointControl()
    return _endpoints


def build_controller(settings: Mapping[str, Any], config: ExperimentConfig) -> domain.ExperimentController:
    """The domain controller for one experiment's ``CONTROLLER`` settings (defaults: domain defaults)."""
    name = settings.get("strategy", "thompson")
    if name == "thompson":
        strategy: domain.Strategy = domain.ThompsonSampling()
    elif name == "epsilon_greedy":
        strategy = domain.EpsilonGreedy(float(settings.get("epsilon", 0.1)))
    elif name == "ucb1":
        strategy = domain.UCB1()
    elif name == "fixed":
        strategy = domain.FixedSplit(settings.get("weights") or config.initial_weights)
    else:
        raise domain.ExperimentError(f"unknown strategy {name!r}")
    defaults = domain.Guardrails()
    guardrails = domain.Guardrails(
        min_share=float(settings.get("min_share", defaults.min_share)),
        max_step=float(settings.get("max_step", defaults.max_step)),
        min_observations=int(settings.get("min_observations", defaults.min_observations)),
        min_change=float(settings.get("min_change", defaults.min_change)),
    )
    test = None
    if settings.get("stop", True):
        defaults_test = SequentialTest()
        days = settings.get("max_duration_days")
        limit = settings.get("max_invocations")
        test = SequentialTest(
            alpha=float(settings.get("alpha", defaults_test.alpha)),
            min_effect=float(settings.get("min_effect", defaults_test.min_effect)),
            max_invocations=None if limit is None else int(limit),
            max_duration_seconds=None if days is None else float(days) * 86_400,
        )
    return domain.ExperimentController(strategy, guardrails, test)


def champion_arm(config: ExperimentConfig) -> str:
    """The arm kept when a test ends without a winner: the arm on the deployer's champion variant,
    else the arm called champion, else the first arm."""
    for arm, target in config.arms.items():
        if target.variant == "champion":
            return arm
    return "champion" if "champion" in config.arms else next(iter(config.arms))


def matured_before(settings: Mapping[str, Any], now: float) -> float | None:
    """Only predictions served before this count (their feedback window has closed); ``None`` (all
    so far) when no feedback delay is configured."""
    delay_hours = float(settings.get("feedback_delay_hours", 0) or 0)
    return now - delay_hours * 3600 if delay_hours > 0 else None


# The report's plots need the evidence at each look; a round keeps at most this many (older looks are
# thinned to every other one when full, so the trail always spans the whole round).
MAX_LOOK_TRAIL = 240


def look_trail(previous: Any, decision: ExperimentDecision | None, now: float) -> list[dict[str, Any]]:
    """The round's trail of looks with this one appended: time, and per arm matured invocations,
    reward sum and anytime-valid interval."""
    trail = [entry for entry in previous if isinstance(entry, Mapping)] if isinstance(previous, list) else []
    if decision is None:
        return trail
    trail.append({"at": now, "arms": {item.arm: [item.invocations, item.reward_sum, item.lower, item.upper]
                                      for item in decision.arms}})
    while len(trail) > MAX_LOOK_TRAIL:
        trail = trail[:-1:2] + trail[-1:]
    return trail


def controller_settings(name: str) -> dict[str, Any]:
    raw = os.environ.get("CONTROLLER") or "{}"
    data = json.loads(raw)
    settings = data.get(name, {}) if isinstance(data, dict) else {}
    return settings if isinstance(settings, dict) else {}


def _notify(subject: str, message: Mapping[str, Any]) -> None:
    """Publish to ``NOTIFICATION_TOPIC_ARN``; a failed publish is logged, never raised."""
    global _sns
    topic = os.environ.get("NOTIFICATION_TOPIC_ARN")
    if not topic:
        logger.warning("No notification topic configured", extra={"subject": subject})
        return
    try:
        if _sns is None:
            import boto3

            _sns = boto3.client("sns")
        _sns.publish(TopicArn=topic, Subject=subject[:100], Message=json.dumps(message, default=str))
    except Exception:
        logger.exception("Could not publish the notification", extra={"subject": subject})


def _stats(config: ExperimentConfig, counts: Mapping[str, ArmCounts]) -> list[domain.ArmStats]:
    """The domain's statistics of every configured arm from one round's ``arm_counts``."""
    empty = ArmCounts()
    return [
        domain.ArmStats(arm, counts.get(arm, empty).invocations, counts.get(arm, empty).reward_sum,
                        counts.get(arm, empty).reward_sq_sum)
        for arm in config.arms
    ]


def _load_state(config: ExperimentConfig, item: Mapping[str, Any] | None) -> tuple[domain.ExperimentState, int]:
    if not item:
        return domain.ExperimentState.start(config.initial_weights), 0
    fields = {k: item[k] for k in domain.ExperimentState.__dataclass_fields__ if k in item}
    fields["weights"] = current_weights(config, item)
    if item.get("winner") and not item.get("outcome"):  # decided before outcomes existed: a winner
        fields.update(outcome="winner", kept_arm=item["winner"])
    return domain.ExperimentState.from_dict(fields), int(item.get("version", 0))


def _deployed_packages(config: ExperimentConfig, control: EndpointControl) -> dict[str, str | None]:
    """Arm -> model package ARN deployed behind it (configured, else looked up on the endpoint).
    Looked up once per deployment; the inference API stores it with every prediction."""
    packages: dict[str, str | None] = {}
    for arm, target in config.arms.items():
        package = target.model_package_arn
        if not package:
            try:
                package = control.find_model_package_arn(target.endpoint, target.variant)
            except Exception:
                logger.exception("Could not look the arm's model package up", extra={"arm": arm})
                package = None
        packages[arm] = package
    return packages


def _restart(config: ExperimentConfig, item: Mapping[str, Any], deployment: dict[str, str | None], version: int,
             packages: Mapping[str, str | None], weights: Mapping[str, float]) -> dict[str, Any]:
    """A new round after a deployment: predictions from now on are recorded (and their rewards
    credited) under the new round's number, so the previous round's evidence never counts in it;
    the inference API assigns subjects with the new round's salt; a decision is moved to
    ``history``. ``weights``: the split the new round starts from."""
    previous_round = int(item.get("round", 1))
    history = list(item.get("history") or [])
    if item.get("decision"):
        history.append({"round": previous_round, **item["decision"]})
    fresh = domain.ExperimentState.start(config.initial_weights)
    now = time.time()
    restarted = {
        **fresh.to_dict(), "weights": dict(weights), "updated_at": now,
        "round": previous_round + 1, "round_started_at": now, "deployment": deployment, "packages": dict(packages),
        "history": history[-20:],
        "reason": "new deployment: " + ", ".join(sorted(f"{e}={c}" for e, c in deployment.items())),
    }
    try:
        store().write_state(config.experiment, restarted, version)
    except StateConflict as error:
        metrics.add_metric(name="ControllerConflicts", unit=MetricUnit.Count, value=1)
        return {"status": "conflict", "reason": str(error)}
    metrics.add_metric(name="ExperimentRestarts", unit=MetricUnit.Count, value=1)
    logger.info("Deployment changed: experiment restarted", extra={"round": previous_round + 1,
                                                                   "deployment": deployment})
    return {"status": "restarted", "round": previous_round + 1, "weights": restarted["weights"]}


def run(name: str) -> dict[str, Any]:
    """One controller step for the public endpoint ``name``."""
    config = experiments_config().get(name)
    if config is None:
        raise ValueError(f"no experiment configured for endpoint {name!r}")
    experiment = config.experiment
    logger.append_keys(experiment=experiment)
    state_store = store()
    item = state_store.read_state(experiment)
    state, version = _load_state(config, item)

    control = endpoints()
    busy, deployment = [], {}
    for endpoint in config.endpoints:
        try:
            info = control.describe_endpoint(endpoint)
        except Exception as error:
            if not is_not_found(error):  # not deployed yet (no approved model), or torn down
                raise
            busy.append(f"{endpoint} is not deployed")
            continue
        deployment[endpoint] = info.config_name
        if not info.in_service:
            busy.append(f"{endpoint} is {info.status}")
    if busy:
        logger.info("Endpoint not InService: nothing decided", extra={"endpoints": busy})
        metrics.add_metric(name="ControllerSkipped", unit=MetricUnit.Count, value=1)
        return {"status": "skipped", "reason": "; ".join(busy)}

    known = (item or {}).get("deployment")
    redeployed = bool(item) and isinstance(known, Mapping) and dict(known) != deployment
    packages = (item or {}).get("packages")
    if redeployed or not isinstance(packages, Mapping):
        packages = _deployed_packages(config, control)
    if redeployed:
        return _restart(config, item, deployment, version, packages, config.initial_weights)
    if state.finished:
        return {"status": "finished", "outcome": state.outcome, "winner": state.winner, "kept_arm": state.kept_arm}
    round_id = int((item or {}).get("round", 1))
    settings = controller_settings(name)
    looked_at = time.time()
    try:
        stats = _stats(config, state_store.arm_counts(experiment, round_id, matured_before(settings, looked_at)))
        controller = build_controller(settings, config)
    except domain.ImpossibleStatistics as error:
        return _impossible(config, error)

    try:
        result = controller.step(state, stats, now=looked_at, rng=random.Random(), champion=champion_arm(config))
    except domain.ImpossibleStatistics as error:
        return _impossible(config, error)

    single_endpoint = len(config.endpoints) == 1
    if result.moved and single_endpoint:
        variant_weights = {config.arms[arm].variant: weight for arm, weight in result.weights.items()}
        try:
            control.update_weights(config.endpoints[0], variant_weights)
        except Exception as error:  # e.g. it started updating since we looked: try again next period
            logger.warning("Could not apply the weights; state left as it was",
                           extra={"reason": repr(error), "weights": result.weights})
            metrics.add_metric(name="ControllerApplyFailures", unit=MetricUnit.Count, value=1)
            return {"status": "apply_failed", "reason": repr(error)}

    now = time.time()
    carried = {k: item[k] for k in ("round", "round_started_at", "history") if item and k in item}
    item = {**carried, **result.state.to_dict(), "weights": dict(result.weights), "updated_at": now,
            "reason": result.reason, "deployment": deployment, "packages": dict(packages),
            "looks": look_trail((item or {}).get("looks"), result.decision, looked_at)}
    if result.decision is not None:
        item["evidence"] = result.decision.to_dict()  # the latest look's, for the report
    if result.decided:
        item["decision"] = {
            **result.decision.to_dict(),
            "winner": result.state.winner,
            "kept_arm": result.state.kept_arm,
            "final_weights": dict(result.weights),
            "decided_at": result.state.decided_at,
        }
    try:
        state_store.write_state(experiment, item, version)
    except StateConflict as error:
        logger.warning("Experiment state changed concurrently: this run's result is dropped", extra={"reason": str(error)})
        metrics.add_metric(name="ControllerConflicts", unit=MetricUnit.Count, value=1)
        return {"status": "conflict", "reason": str(error)}

    _publish_arms(config, result.weights, stats)
    if result.decided:
        return _declare(config, result, stats)
    if result.moved:
        metrics.add_metric(name="WeightsMoved", unit=MetricUnit.Count, value=1)
        logger.info("Weights moved", extra={"weights": result.weights, "reason": result.reason})
        return {"status": "moved", "weights": result.weights, "reason": result.reason}
    return {"status": "waiting", "weights": result.weights, "reason": result.reason}


def _publish_arms(config: ExperimentConfig, weights: Mapping[str, float], stats: list[domain.ArmStats]) -> None:
    """Per-arm gauges for the dashboard (dimensions Experiment, Arm): weight, invocations and mean
    reward of the current round. One EMF document per arm, printed to the function's log."""
    from aws_lambda_powertools.metrics import single_metric

    total = sum(weights.values()) or 1.0
    namespace = metrics.namespace
    for arm_stats in stats:
        values = (("ArmWeight", weights.get(arm_stats.arm, 0.0) / total, MetricUnit.NoUnit),
                  ("ArmInvocations", arm_stats.invocations, MetricUnit.Count),
                  ("ArmMeanReward", arm_stats.reward_sum / arm_stats.invocations if arm_stats.invocations else 0.0,
                   MetricUnit.NoUnit))
        for name, value, unit in values:
            with single_metric(name=name, unit=unit, value=value, namespace=namespace) as metric:
                metric.add_dimension(name="Experiment", value=config.experiment)
                metric.add_dimension(name="Arm", value=arm_stats.arm)


def _declare(config: ExperimentConfig, result: domain.StepResult, stats: list[domain.ArmStats]) -> dict[str, Any]:
    """The test ended the experiment: metric, a note on the kept arm's model package, a notification."""
    decision = result.decision
    kept = decision.arm
    target = config.arms[kept]
    metrics.add_metric(name="ExperimentsDecided", unit=MetricUnit.Count, value=1)
    if decision.winner is not None:
        metrics.add_metric(name="WinnersDeclared", unit=MetricUnit.Count, value=1)
    logger.info("Experiment decided", extra={"outcome": decision.outcome, "kept_arm": kept, "reason": decision.reason})
    package = target.model_package_arn
    if not package:
        try:
            package = endpoints().find_model_package_arn(target.endpoint, target.variant)
        except Exception:
            logger.exception("Could not look the kept arm's model package up")
            package = None
    noted = False
    if package:
        decided = datetime.fromtimestamp(result.state.decided_at or time.time(), UTC).isoformat()
        try:
            endpoints().annotate_model_package(
                package,
                {
                    "mlops:experiment": config.experiment,
                    "mlops:experiment-result": decision.outcome,
                    "mlops:experiment-lower-bound": f"{decision.winner_statistic:.5f}",
                    "mlops:experiment-decided-at": decided,
                },
            )
            noted = True
        except Exception:
            logger.exception("Could not annotate the kept arm's model package", extra={"model_package_arn": package})
    else:
        logger.info("No model package known for the kept arm: no note written", extra={"arm": kept})
    headline = (f"{kept} wins" if decision.winner is not None
                else f"{decision.outcome.replace('_', ' ')}, {kept} kept")
    _notify(
        f"Experiment {config.experiment}: {headline}",
        {
            "experiment": config.experiment,
            "endpoint": config.name,
            "outcome": decision.outcome,
            "winner": decision.winner,
            "kept_arm": kept,
            "sagemaker_endpoint": target.endpoint,
            "variant": target.variant,
            "intervals": {item.arm: [item.lower, item.upper] for item in decision.arms},
            "invocations": {s.arm: s.invocations for s in stats},
            "final_weights": dict(result.weights),
            "model_package_arn": package,
            "reason": decision.reason,
        },
    )
    return {"status": "decided", "outcome": decision.outcome, "winner": decision.winner, "kept_arm": kept,
            "weights": result.weights, "model_package_arn": package, "package_noted": noted}


def _impossible(config: ExperimentConfig, error: Exception) -> dict[str, Any]:
    logger.error("Impossible statistics: the experiment is left as it is", extra={"reason": str(error)})
    metrics.add_metric(name="ImpossibleStatistics", unit=MetricUnit.Count, value=1)
    _notify(
        f"Experiment {config.experiment}: impossible statistics",
        {"experiment": config.experiment, "endpoint": config.name, "error": str(error)},
    )
    return {"status": "error", "reason": str(error)}


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _traced(event, context)


def _handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    name = event.get("experiment") if isinstance(event, dict) else None
    if not isinstance(name, str) or not name:
        logger.error("Event without an experiment name", extra={"event": event})
        return {"status": "error", "reason": "event must be {\"experiment\": \"<public endpoint name>\"}"}
    return run(name)


_traced = LazilyTraced(_handler)
