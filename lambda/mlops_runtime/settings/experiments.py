"""The inference API's and the experiment controller's settings: the public endpoints, their
experiments' arms and weights (``ExperimentSettings``), and how the controller moves each one."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal, Self

from pydantic import Field, ValidationInfo, field_validator, model_validator

from mlops_runtime.settings.base import FunctionSettings, Name, Texts

DEFAULT_CONTENT_TYPES = ("application/json", "text/csv")


class ArmTarget(FunctionSettings):
    """Where an arm's traffic goes: a SageMaker endpoint and one of its production variants."""

    arm: str = Name
    endpoint: str = Name
    variant: str = Name
    model_package_arn: str | None = None


class FeatureLookup(FunctionSettings):
    """The online features that make the model input (one CSV row, in ``features`` order)."""

    name: str = Name
    features: Texts = Field(min_length=1)
    record_identifier: str | None = None


class ExperimentSettings(FunctionSettings):
    """One public endpoint: its experiment id, arms, initial weights and request options."""

    name: str = Name
    experiment: str = ""  # "" means: the public name
    arms: dict[str, ArmTarget] = Field(min_length=1)
    initial_weights: dict[str, float] = Field(default_factory=dict)  # empty means: equal weights
    allow_variant_override: bool = False
    content_types: Texts = DEFAULT_CONTENT_TYPES
    feature_group: FeatureLookup | None = None
    salt: str = ""  # "" means: the experiment id

    @field_validator("arms", mode="before")
    @classmethod
    def _arms_by_name(cls, value: Any) -> Any:
        """A list of arms (as the config writes them) is keyed by arm name; duplicates are refused."""
        if isinstance(value, list | tuple):
            names = [entry.get("arm") if isinstance(entry, Mapping) else getattr(entry, "arm", None)
                     for entry in value]
            if len(set(names)) != len(names):
                raise ValueError(f"arm names must be unique, got {names}")
            return dict(zip(names, value, strict=True))
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        for key, target in self.arms.items():
            if key != target.arm:
                raise ValueError(f"arm {key!r} is keyed under another name than its own ({target.arm!r})")
        weights = self.initial_weights or {arm: 1.0 for arm in self.arms}
        if set(weights) != set(self.arms) or not all(math.isfinite(w) and w >= 0 for w in weights.values()) \
                or sum(weights.values()) <= 0:
            raise ValueError(f"initial_weights must give every arm of {sorted(self.arms)} a weight >= 0, "
                             f"summing to more than 0: {weights}")
        # frozen: fill the defaults that depend on other fields once, here
        object.__setattr__(self, "initial_weights", {arm: float(weights[arm]) for arm in self.arms})
        object.__setattr__(self, "experiment", self.experiment or self.name)
        object.__setattr__(self, "salt", self.salt or self.experiment)
        object.__setattr__(self, "content_types", tuple(c.lower() for c in self.content_types))
        return self

    @property
    def endpoints(self) -> tuple[str, ...]:
        """The distinct SageMaker endpoints of the arms, in arm order."""
        return tuple(dict.fromkeys(target.endpoint for target in self.arms.values()))


def _name_experiments(value: Any) -> Any:
    """Experiments are keyed by public name; each entry's ``name`` is that key."""
    if isinstance(value, Mapping):
        return {key: ({**entry, "name": entry.get("name", key)} if isinstance(entry, Mapping) else entry)
                for key, entry in value.items()}
    return value


class InferenceSettings(FunctionSettings):
    """``handlers.inference_api``."""

    experiments: dict[str, ExperimentSettings]
    predictions_table: str = Name
    statistics_table: str = Name
    state_table: str = Name
    subject_hash_secret: str = Field(min_length=1, description="Secrets Manager id of the subject-hash key")
    prediction_ttl_days: int = Field(default=30, ge=1, le=3650)
    allocation_cache_seconds: int = Field(default=30, ge=1, le=600)
    smoke_test_role: str | None = None

    _experiments_named = field_validator("experiments", mode="before")(classmethod(
        lambda cls, value: _name_experiments(value)))


class ControllerRule(FunctionSettings):
    """How the controller moves and decides one experiment (``ControllerConfig.settings()``).

    ``None`` means the domain's default (``domain.experiments.Guardrails``,
    ``domain.sequential_test.SequentialTest``); the bounds are the domain's own, so a value it would
    refuse fails here, at synthesis."""

    strategy: Literal["thompson", "epsilon_greedy", "ucb1", "fixed"] = "thompson"
    epsilon: float | None = Field(default=None, ge=0, le=1)
    min_share: float | None = Field(default=None, ge=0, lt=1)
    max_step: float | None = Field(default=None, gt=0, le=1)
    min_observations: int | None = Field(default=None, ge=0)
    min_change: float | None = Field(default=None, ge=0, lt=1)
    stop: bool = True  # false: keep adapting, never decide
    alpha: float | None = Field(default=None, gt=0, lt=1)
    min_effect: float | None = Field(default=None, ge=0, lt=1)
    max_invocations: int | None = Field(default=None, ge=1)
    max_duration_days: float | None = Field(default=None, gt=0)
    feedback_delay_hours: float = Field(default=0, ge=0)
    contender_share: float = Field(default=0.2, ge=0, lt=1)  # floor of arms the running test still needs
    weights: dict[str, float] | None = None  # fixed strategy: the split (default: initial weights)

    @model_validator(mode="after")
    def _limits_leave_matured_feedback(self) -> Self:
        if self.max_duration_days is not None and self.max_duration_days * 24 <= self.feedback_delay_hours:
            raise ValueError(f"max_duration_days {self.max_duration_days:g} must be longer than "
                             f"feedback_delay_hours {self.feedback_delay_hours:g} / 24, or no feedback matures "
                             "before the test stops")
        return self


class ControllerSettings(FunctionSettings):
    """``handlers.experiment_controller``."""

    experiments: dict[str, ExperimentSettings]
    controllers: dict[str, ControllerRule] = Field(default_factory=dict)
    statistics_table: str = Name
    state_table: str = Name
    notification_topic_arn: str | None = None

    _experiments_named = field_validator("experiments", mode="before")(classmethod(
        lambda cls, value: _name_experiments(value)))

    @field_validator("controllers")
    @classmethod
    def _fit_their_experiments(cls, controllers: dict[str, ControllerRule],
                               info: ValidationInfo) -> dict[str, ControllerRule]:
        experiments = info.data.get("experiments") or {}
        for name, rule in controllers.items():
            experiment = experiments.get(name)
            if experiment is None:
                raise ValueError(f"controller for an unknown experiment {name!r} "
                                 f"(experiments: {sorted(experiments)})")
            arms = len(experiment.arms)
            if rule.min_share is not None and arms * rule.min_share > 1:
                raise ValueError(f"{name}: min_share {rule.min_share} is impossible for {arms} arms "
                                 f"(every arm keeps min_share: at most {1 / arms:.3g})")
            if rule.weights is not None and set(rule.weights) != set(experiment.arms):
                raise ValueError(f"{name}: fixed weights {sorted(rule.weights)} must name the arms "
                                 f"{sorted(experiment.arms)}")
        return controllers

    def rule(self, name: str) -> ControllerRule:
        return self.controllers.get(name) or ControllerRule()
