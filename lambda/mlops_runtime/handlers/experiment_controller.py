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
A finished experiment never moves again. Impossible statistics are logged and notified, not raised.

Environment: ``EXPERIMENTS`` (as the inference API), ``CONTROLLER`` (JSON keyed by public name:
``strategy`` thompson|epsilon_greedy|ucb1|fixed, ``epsilon``, ``min_share``, ``max_step``,
``min_observations``, ``min_change``, ``stop_probability``, ``stop_min_observations``, ``stop``
(false: never declare a winner)), ``STATISTICS_TABLE``, ``EXPERIMENT_STATE_TABLE``,
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
    stopping = None
    if settings.get("stop", True):
        rule = domain.StoppingRule()
        stopping = domain.StoppingRule(
            probability=float(settings.get("stop_probability", rule.probability)),
            min_observations=int(settings.get("stop_min_observations", rule.min_observations)),
        )
    return domain.ExperimentController(strategy, guardrails, stopping)


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
        return {"status": "finished", "winner": state.winner}
    round_id = int((item or {}).get("round", 1))
    try:
        stats = _stats(config, state_store.arm_counts(experiment, round_id))
        controller = build_controller(controller_settings(name), config)
    except domain.ImpossibleStatistics as error:
        return _impossible(config, error)

    try:
        result = controller.step(state, stats, now=time.time(), rng=random.Random())
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
            "reason": result.reason, "deployment": deployment, "packages": dict(packages)}
    if result.winner is not None:
        winner = result.winner
        item["decision"] = {
            "winner": winner.arm,
            "probability": winner.probability,
            "probabilities": dict(winner.probabilities),
            "final_weights": dict(winner.final_weights),
            "decided_at": result.state.decided_at,
            "reason": result.reason,
        }
    try:
        state_store.write_state(experiment, item, version)
    except StateConflict as error:
        logger.warning("Experiment state changed concurrently: this run's result is dropped", extra={"reason": str(error)})
        metrics.add_metric(name="ControllerConflicts", unit=MetricUnit.Count, value=1)
        return {"status": "conflict", "reason": str(error)}

    _publish_arms(config, result.weights, stats)
    if result.winner is not None:
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
    winner = result.winner
    target = config.arms[winner.arm]
    metrics.add_metric(name="WinnersDeclared", unit=MetricUnit.Count, value=1)
    logger.info("Winner declared", extra={"winner": winner.arm, "probability": winner.probability})
    package = target.model_package_arn
    if not package:
        try:
            package = endpoints().find_model_package_arn(target.endpoint, target.variant)
        except Exception:
            logger.exception("Could not look the winner's model package up")
            package = None
    noted = False
    if package:
        decided = datetime.fromtimestamp(result.state.decided_at or time.time(), UTC).isoformat()
        try:
            endpoints().annotate_model_package(
                package,
                {
                    "mlops:experiment": config.experiment,
                    "mlops:experiment-result": "winner",
                    "mlops:experiment-probability-best": f"{winner.probability:.4f}",
                    "mlops:experiment-decided-at": decided,
                },
            )
            noted = True
        except Exception:
            logger.exception("Could not annotate the winner's model package", extra={"model_package_arn": package})
    else:
        logger.info("No model package known for the winning arm: no note written", extra={"arm": winner.arm})
    _notify(
        f"Experiment {config.experiment}: {winner.arm} wins",
        {
            "experiment": config.experiment,
            "endpoint": config.name,
            "winner": winner.arm,
            "sagemaker_endpoint": target.endpoint,
            "variant": target.variant,
            "probability_best": winner.probability,
            "probabilities": winner.probabilities,
            "invocations": {s.arm: s.invocations for s in stats},
            "final_weights": winner.final_weights,
            "model_package_arn": package,
            "reason": result.reason,
        },
    )
    return {"status": "decided", "winner": winner.arm, "probability": winner.probability,
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
