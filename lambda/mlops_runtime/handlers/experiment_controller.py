"""Lambda: the experiment controller, run on a schedule (EventBridge Scheduler) per public endpoint.

Input: ``{"experiment": "<public endpoint name>"}`` (a key of ``EXPERIMENTS``).

Each run: read the state (GetItem) and the current round's per-arm counts (Query on the round's
statistics rows, ``arm_counts``: evidence of earlier rounds never counts), skip when an endpoint of the
experiment is not InService (DescribeEndpoint), run ``ExperimentController.step`` (time read per
call), apply moved weights with ``UpdateEndpointWeightsAndCapacities`` when every arm is a variant
of ONE SageMaker endpoint (arms spanning endpoints are split by the inference API, whose weights
ARE the state table's), then write the state with a version check. The decision is the
anytime-valid test's (``domain.sequential_test``) on matured predictions only (served
``feedback_delay_hours`` ago or earlier): ``winner``, ``no_meaningful_difference`` or
``stopped_at_limit`` (both keep the champion) end the experiment; the state keeps each look's
evidence (``looks``, ``evidence``) for the report. On a decision: the final weights (kept arm 1.0),
the decision in the state, an SNS notification and, for an experiment between the deployer's
``champion`` and ``challenger`` variants of one endpoint, the hand-over (``domain.promotion``): the
decision noted on both model packages (``UpdateModelPackage`` CustomerMetadataProperties: the kept
one ``champion``, the other ``retired``) and an "Experiment Decided" event (EventBridge
``PutEvents``, default bus) on which the deployer makes the kept model the sole champion and
removes the retired variant (otherwise only the kept arm's package is noted). A finished experiment
never moves again; while its retired variant is still deployed, each run puts the event again (the
deployer's plan is a no-op once done). After a deployment with one model only, the run records it
and waits. Impossible statistics are logged and notified, not raised.

Settings: ``settings.ControllerSettings``: the experiments (as the inference API), each one's
``ControllerRule`` (strategy thompson|epsilon_greedy|ucb1|fixed, guardrails, the test's ``alpha``,
``min_effect``, ``max_invocations``, ``max_duration_days``, ``feedback_delay_hours``, ``contender_share``; ``stop`` false:
never decide), the tables and the notification topic.

Returns ``{"status": finished|skipped|waiting|moved|decided|conflict|apply_failed|error, ...}``.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from mlops_runtime.adapters.tracing import entry_point, powertools
from mlops_runtime.adapters.aws_errors import is_not_found
from mlops_runtime.adapters.experiments_store import (
    DynamoDBExperimentsStore,
    ExperimentsStore,
    StateConflict,
    current_weights,
    round_start_weights,
)
from mlops_runtime.adapters.model_runtime import Boto3EndpointControl, EndpointControl, deployed_packages
from mlops_runtime.domain import experiments as domain
from mlops_runtime.domain import promotion as handover
from mlops_runtime.domain.rounds import ArmCounts, redeployed
from mlops_runtime.domain.sequential_test import ExperimentDecision, SequentialTest
from mlops_runtime.lazy import Lazy
from mlops_runtime.settings.experiments import ControllerRule, ControllerSettings, ExperimentSettings

logger, metrics = powertools()

SETTINGS_MODEL = ControllerSettings  # what the stack passes in MLOPS_SETTINGS
settings = Lazy(SETTINGS_MODEL.from_env)


def _client(service: str) -> Any:
    import boto3

    return boto3.client(service)


store: Lazy[ExperimentsStore] = Lazy(lambda: DynamoDBExperimentsStore(
    None, settings().statistics_table, settings().state_table))
endpoints: Lazy[EndpointControl] = Lazy(Boto3EndpointControl)
sns = Lazy(lambda: _client("sns"))
events = Lazy(lambda: _client("events"))  # the decision's hand-over to the deployer


def configure(
    store: ExperimentsStore | None = None, endpoints: EndpointControl | None = None, sns: Any | None = None,
    events: Any | None = None, settings: ControllerSettings | None = None,
) -> None:
    """Inject adapters and settings (tests, the local rehearsal); ``None``: built from the environment."""
    for lazy, value in zip(lazies, (settings, store, endpoints, sns, events), strict=True):
        lazy.set(value)


lazies = (settings, store, endpoints, sns, events)  # what configure() sets, in its order


def experiments_config() -> dict[str, ExperimentSettings]:
    return settings().experiments


def build_controller(rule: ControllerRule, config: ExperimentSettings) -> domain.ExperimentController:
    """The domain controller for one experiment's rule (unset values: the domain's defaults)."""
    if rule.strategy == "thompson":
        strategy: domain.Strategy = domain.ThompsonSampling()
    elif rule.strategy == "epsilon_greedy":
        strategy = domain.EpsilonGreedy(*(() if rule.epsilon is None else (rule.epsilon,)))
    elif rule.strategy == "ucb1":
        strategy = domain.UCB1()
    else:
        strategy = domain.FixedSplit(rule.weights or config.initial_weights)
    guardrails = domain.Guardrails(**_set(rule, min_share="min_share", max_step="max_step",
                                          min_observations="min_observations", min_change="min_change"))
    test = None
    if rule.stop:
        test = SequentialTest(
            **_set(rule, alpha="alpha", min_effect="min_effect", max_invocations="max_invocations"),
            max_duration_seconds=None if rule.max_duration_days is None else rule.max_duration_days * 86_400,
        )
    contender_share = rule.contender_share if test is not None else 0.0
    return domain.ExperimentController(strategy, guardrails, test, contender_share)


def _set(rule: ControllerRule, **fields: str) -> dict[str, Any]:
    """The domain's keyword arguments (domain name -> rule field) that the rule sets."""
    return {name: getattr(rule, field) for name, field in fields.items() if getattr(rule, field) is not None}


def champion_arm(config: ExperimentSettings) -> str:
    """The arm kept when a test ends without a winner: the arm on the deployer's champion variant,
    else the arm called champion, else the first arm."""
    for arm, target in config.arms.items():
        if target.variant == "champion":
            return arm
    return "champion" if "champion" in config.arms else next(iter(config.arms))


def matured_before(rule: ControllerRule, now: float) -> float | None:
    """Only predictions served before this count (their feedback window has closed); ``None`` (all
    so far) when no feedback delay is configured."""
    delay_hours = rule.feedback_delay_hours
    return now - delay_hours * 3600 if delay_hours > 0 else None


# The report's plots need the evidence at each look; a round keeps at most this many (older looks are
# thinned to every other one when full, so the trail always spans the whole round).
MAX_LOOK_TRAIL = 240


def look_trail(previous: Any, decision: ExperimentDecision | None, now: float) -> list[dict[str, Any]]:
    """The round's trail of looks with this one appended: time, the leader, the test's two
    statistics, and per arm ``[matured invocations, reward sum, lower, upper]``."""
    trail = [entry for entry in previous if isinstance(entry, Mapping)] if isinstance(previous, list) else []
    if decision is None:
        return trail
    trail.append({"at": now, "leader": decision.leader, "winner_statistic": decision.winner_statistic,
                  "equivalence_statistic": decision.equivalence_statistic,
                  "arms": {item.arm: [item.invocations, item.reward_sum, item.lower, item.upper]
                           for item in decision.arms}})
    while len(trail) > MAX_LOOK_TRAIL:
        trail = trail[:-1:2] + trail[-1:]
    return trail


def _notify(subject: str, message: Mapping[str, Any]) -> None:
    """Publish to the settings' notification topic; a failed publish is logged, never raised."""
    topic = settings().notification_topic_arn
    if not topic:
        logger.warning("No notification topic configured", extra={"subject": subject})
        return
    try:
        sns().publish(TopicArn=topic, Subject=subject[:100], Message=json.dumps(message, default=str))
    except Exception:
        logger.exception("Could not publish the notification", extra={"subject": subject})


def _stats(config: ExperimentSettings, counts: Mapping[str, ArmCounts]) -> list[domain.ArmStats]:
    """The domain's statistics of every configured arm from one round's ``arm_counts``."""
    empty = ArmCounts()
    return [
        domain.ArmStats(arm, counts.get(arm, empty).invocations, counts.get(arm, empty).reward_sum,
                        counts.get(arm, empty).reward_sq_sum)
        for arm in config.arms
    ]


def _load_state(config: ExperimentSettings, item: Mapping[str, Any] | None) -> tuple[domain.ExperimentState, int]:
    if not item:
        return domain.ExperimentState.start(config.initial_weights), 0
    fields = {k: item[k] for k in domain.ExperimentState.__dataclass_fields__ if k in item}
    fields["weights"] = current_weights(config, item)
    if item.get("winner") and not item.get("outcome"):  # decided before outcomes existed: a winner
        fields.update(outcome="winner", kept_arm=item["winner"])
    return domain.ExperimentState.from_dict(fields), int(item.get("version", 0))


def _restart(config: ExperimentSettings, item: Mapping[str, Any], deployment: dict[str, str | None], version: int,
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
    busy, deployment, live = [], {}, {}
    for endpoint in config.endpoints:
        try:
            info = control.describe_endpoint(endpoint)
        except Exception as error:
            if not is_not_found(error):  # not deployed yet (no approved model), or torn down
                raise
            busy.append(f"{endpoint} is not deployed")
            continue
        deployment[endpoint] = info.config_name
        live[endpoint] = info.variant_weights
        if not info.in_service:
            busy.append(f"{endpoint} is {info.status}")
    if busy:
        logger.info("Endpoint not InService: nothing decided", extra={"endpoints": busy})
        metrics.add_metric(name="ControllerSkipped", unit=MetricUnit.Count, value=1)
        return {"status": "skipped", "reason": "; ".join(busy)}

    changed = redeployed((item or {}).get("deployment"), deployment)
    packages = (item or {}).get("packages")
    if changed or not isinstance(packages, Mapping):
        packages = deployed_packages(config, control)
    if changed:
        return _restart(config, item, deployment, version, packages, round_start_weights(config, live))
    if state.finished:
        decision = (item or {}).get("decision")
        if isinstance(decision, Mapping) and _retired_still_deployed(config, decision, live):
            _hand_over(config, decision, packages, int(item.get("round", 1)))
        return {"status": "finished", "outcome": state.outcome, "winner": state.winner, "kept_arm": state.kept_arm}
    if len(config.endpoints) == 1 and len(config.arms) > 1 and sum(
            target.variant in live[config.endpoints[0]] for target in config.arms.values()) < 2:
        # One model deployed (e.g. the kept champion after a promotion): nothing to compare yet, but
        # the deployment is recorded so that the next one (a new challenger) starts a new round.
        waiting = {**(item or {}), **state.to_dict(), "updated_at": time.time(), "deployment": deployment,
                   "packages": dict(packages), "reason": "only one arm is deployed"}
        waiting.pop("version", None)
        if item and item.get("deployment") == deployment and item.get("packages") == dict(packages):
            return {"status": "waiting", "reason": waiting["reason"], "weights": state.weights}
        try:
            state_store.write_state(experiment, waiting, version)
        except StateConflict as error:
            return {"status": "conflict", "reason": str(error)}
        return {"status": "waiting", "reason": waiting["reason"], "weights": state.weights}
    round_id = int((item or {}).get("round", 1))
    rule = settings().rule(name)
    looked_at = time.time()
    try:
        stats = _stats(config, state_store.arm_counts(experiment, round_id, matured_before(rule, looked_at)))
        controller = build_controller(rule, config)
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
        return _declare(config, result, stats, item["decision"], packages, int(item.get("round", 1)))
    if result.moved:
        metrics.add_metric(name="WeightsMoved", unit=MetricUnit.Count, value=1)
        logger.info("Weights moved", extra={"weights": result.weights, "reason": result.reason})
        return {"status": "moved", "weights": result.weights, "reason": result.reason}
    return {"status": "waiting", "weights": result.weights, "reason": result.reason}


def _publish_arms(config: ExperimentSettings, weights: Mapping[str, float], stats: list[domain.ArmStats]) -> None:
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


def _declare(config: ExperimentSettings, result: domain.StepResult, stats: list[domain.ArmStats],
             decision: Mapping[str, Any], packages: Mapping[str, str | None], round_id: int) -> dict[str, Any]:
    """The test ended the experiment: metrics, the hand-over to the deployer (notes on the model
    packages, the "Experiment Decided" event), a notification."""
    test = result.decision
    kept = test.arm
    target = config.arms[kept]
    metrics.add_metric(name="ExperimentsDecided", unit=MetricUnit.Count, value=1)
    if test.winner is not None:
        metrics.add_metric(name="WinnersDeclared", unit=MetricUnit.Count, value=1)
    logger.info("Experiment decided", extra={"outcome": test.outcome, "kept_arm": kept, "reason": test.reason})
    package = packages.get(kept) or target.model_package_arn
    handed_over = _hand_over(config, decision, packages, round_id)
    headline = (f"{kept} wins" if test.winner is not None
                else f"{test.outcome.replace('_', ' ')}, {kept} kept")
    _notify(
        f"Experiment {config.experiment}: {headline}",
        {
            "experiment": config.experiment,
            "endpoint": config.name,
            "outcome": test.outcome,
            "winner": test.winner,
            "kept_arm": kept,
            "sagemaker_endpoint": target.endpoint,
            "variant": target.variant,
            "intervals": {item.arm: [item.lower, item.upper] for item in test.arms},
            "invocations": {s.arm: s.invocations for s in stats},
            "final_weights": dict(result.weights),
            "model_package_arn": package,
            "promotion": handed_over,
            "reason": test.reason,
        },
    )
    return {"status": "decided", "outcome": test.outcome, "winner": test.winner, "kept_arm": kept,
            "weights": result.weights, "model_package_arn": package, "package_noted": bool(handed_over.get("noted")),
            "promotion": handed_over}


def _kept_and_retired(config: ExperimentSettings, decision: Mapping[str, Any]) -> tuple[str, str]:
    """The arms ``decision`` keeps and retires; :class:`handover.InvalidPromotion` when there is no
    hand-over to make (arms on several endpoints, not the deployer's champion + challenger)."""
    if len(config.endpoints) != 1:
        raise handover.InvalidPromotion("the arms span several endpoints: each keeps its own deployment")
    champion = next((arm for arm, t in config.arms.items() if t.variant == handover.CHAMPION_VARIANT), None)
    if champion is None:
        raise handover.InvalidPromotion(f"no arm serves the deployer's {handover.CHAMPION_VARIANT!r} variant")
    return handover.kept_and_retired(str(decision.get("outcome", handover.OUTCOME_WINNER)),
                                     decision.get("winner"), champion, tuple(config.arms))


def _promotion(config: ExperimentSettings, decision: Mapping[str, Any], packages: Mapping[str, str | None],
               round_id: int) -> handover.Promotion:
    """The hand-over of ``decision`` (:class:`handover.InvalidPromotion`: none to make, or no package
    known for the kept arm)."""
    kept, retired = _kept_and_retired(config, decision)
    kept_package = packages.get(kept) or config.arms[kept].model_package_arn
    if not kept_package:
        raise handover.InvalidPromotion(f"no model package is known for the kept arm {kept!r}")
    decided_at = decision.get("decided_at")
    return handover.Promotion(
        endpoint_name=config.endpoints[0], experiment=config.experiment, round=round_id,
        outcome=str(decision.get("outcome", handover.OUTCOME_WINNER)),
        kept_variant=config.arms[kept].variant, kept_model_package_arn=kept_package,
        retired_variant=config.arms[retired].variant,
        retired_model_package_arn=packages.get(retired) or config.arms[retired].model_package_arn,
        decided_at=float(decided_at) if isinstance(decided_at, (int, float)) else time.time(),
    )


def _note(notes: Mapping[str, Mapping[str, str]], decision: Mapping[str, Any]) -> bool:
    """Write ``notes`` on their model packages (a winner's with the test's lower bound of its lead);
    False when there was none, or a write failed (logged)."""
    if not notes:
        logger.info("No model package known for the decision: no note written")
        return False
    bound = decision.get("winner_statistic") if decision.get("outcome") == handover.OUTCOME_WINNER else None
    for arn, properties in notes.items():
        if isinstance(bound, (int, float)) and properties.get("mlops:experiment-result") in ("champion", "kept"):
            properties = {**properties, "mlops:experiment-lower-bound": f"{bound:.5f}"}
        try:
            endpoints().annotate_model_package(arn, properties)
        except Exception:
            logger.exception("Could not note the decision on the model package", extra={"model_package_arn": arn})
            return False
    return True


def _retired_still_deployed(config: ExperimentSettings, decision: Mapping[str, Any],
                            live: Mapping[str, Mapping[str, float]]) -> bool:
    """Whether a finished experiment's hand-over is still to be done (its retired variant is live)."""
    try:
        _, retired = _kept_and_retired(config, decision)
    except handover.InvalidPromotion:
        return False
    return config.arms[retired].variant in live.get(config.endpoints[0], {})


def _hand_over(config: ExperimentSettings, decision: Mapping[str, Any], packages: Mapping[str, str | None],
               round_id: int) -> dict[str, Any]:
    """Note the decision on both model packages and put the "Experiment Decided" event for the
    deployer. Failures are logged and reported in the result, never raised: a finished experiment's
    later runs put the event again while the retired variant is still deployed."""
    try:
        promotion = _promotion(config, decision, packages, round_id)
    except handover.InvalidPromotion as error:
        logger.info("No hand-over to the deployer", extra={"reason": str(error)})
        kept = decision.get("kept_arm")
        package = (packages.get(kept) or config.arms[kept].model_package_arn) if kept in config.arms else None
        notes = {package: handover.kept_note(config.experiment, round_id, decision)} if package else {}
        return {"handed_over": False, "noted": _note(notes, decision), "reason": str(error)}
    noted = _note(handover.package_notes(promotion), decision)
    try:
        answer = events().put_events(Entries=[handover.event_entry(promotion)])
        if answer.get("FailedEntryCount"):
            raise RuntimeError(f"PutEvents refused the entry: {answer.get('Entries')}")
    except Exception as error:
        logger.exception("Could not hand the decision over to the deployer")
        metrics.add_metric(name="HandOverFailures", unit=MetricUnit.Count, value=1)
        return {"handed_over": False, "noted": noted, "reason": repr(error)}
    metrics.add_metric(name="HandOvers", unit=MetricUnit.Count, value=1)
    logger.info("Decision handed over to the deployer", extra={"kept": promotion.kept_model_package_arn,
                                                                "retired": promotion.retired_model_package_arn})
    return {"handed_over": True, "noted": noted, "kept_variant": promotion.kept_variant,
            "retired_variant": promotion.retired_variant, "kept_model_package_arn": promotion.kept_model_package_arn,
            "retired_model_package_arn": promotion.retired_model_package_arn}


def _impossible(config: ExperimentSettings, error: Exception) -> dict[str, Any]:
    logger.error("Impossible statistics: the experiment is left as it is", extra={"reason": str(error)})
    metrics.add_metric(name="ImpossibleStatistics", unit=MetricUnit.Count, value=1)
    _notify(
        f"Experiment {config.experiment}: impossible statistics",
        {"experiment": config.experiment, "endpoint": config.name, "error": str(error)},
    )
    return {"status": "error", "reason": str(error)}


def _handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    name = event.get("experiment") if isinstance(event, dict) else None
    if not isinstance(name, str) or not name:
        logger.error("Event without an experiment name", extra={"event": event})
        return {"status": "error", "reason": "event must be {\"experiment\": \"<public endpoint name>\"}"}
    return run(name)


handler = entry_point(_handler, logger, metrics)
