"""The feedback API's and its dead-letter replay's settings (``FeedbackApiSettings``)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationInfo, field_validator

from mlops_runtime.settings.base import FunctionSettings, Name


class FeedbackApiSettings(FunctionSettings):
    """``handlers.feedback_api`` and ``handlers.feedback_replay`` (which needs no subject-hash key:
    it only sees hashed subjects).

    Field order matters: each cross-field rule sits on the later field, so an error names the field
    (and the config field it comes from) that has to change."""

    predictions_table: str = Name
    feedback_table: str = Name
    statistics_table: str = Name
    ground_truth_stream: str = Name
    dead_letter_queue_url: str = Name
    subject_hash_secret: str | None = Field(default=None, min_length=1)
    max_batch: int = Field(default=500, ge=1, le=10_000)
    max_age_days: int = Field(default=30, ge=1, le=3650)
    prediction_ttl_days: int = Field(default=30, ge=1, le=3650)
    retention_days: int = Field(default=90, ge=1, le=36500)

    @field_validator("retention_days")
    @classmethod
    def _outlives_what_it_guards(cls, retention: int, info: ValidationInfo) -> int:
        max_age = info.data.get("max_age_days")
        if max_age is not None and retention <= max_age:
            raise ValueError(f"must exceed feedback_max_age_days ({max_age}): idempotency records must "
                             "outlive the oldest feedback still accepted")
        ttl = info.data.get("prediction_ttl_days")
        if ttl is not None and retention < ttl:
            raise ValueError(f"must be at least prediction_ttl_days ({ttl}): a prediction's credit marker must "
                             "outlive the prediction, or a late second feedback credits its arm twice")
        return retention

    def limits(self, subject_hash_key: bytes | None) -> Any:
        """The handlers' ``domain.feedback.FeedbackSettings``, with the key read from the secret."""
        from datetime import timedelta

        from mlops_runtime.domain.feedback import FeedbackSettings

        return FeedbackSettings(
            predictions_table=self.predictions_table,
            feedback_table=self.feedback_table,
            statistics_table=self.statistics_table,
            ground_truth_stream=self.ground_truth_stream,
            dead_letter_queue_url=self.dead_letter_queue_url,
            subject_hash_key=subject_hash_key,
            max_batch=self.max_batch,
            max_age=timedelta(days=self.max_age_days),
            retention=timedelta(days=self.retention_days),
        )
