"""Definition of the training pipeline, built with the SageMaker Python SDK v3, offline.

The CDK app calls :func:`build_training_pipeline_definition` at synth time and puts the returned
JSON into ``AWS::SageMaker::Pipeline`` (``PipelineDefinitionBody``). The build:

* makes no network call and needs no credentials: the SDK session is given its region, its
  default bucket and an empty set of SDK defaults, IAM role names are never expanded, role
  validation is switched off and telemetry is opted out of;
* never uploads anything: every piece of code is referenced by its ``s3://`` URI, and training
  uses the XGBoost framework container in script mode through the ``sagemaker_program`` /
  ``sagemaker_submit_directory`` hyper-parameters (not ``ModelTrainer(source_code=...)``, which
  uploads at definition time);
* is deterministic: the same spec gives byte-identical JSON (keys sorted, no job names,
  timestamps or generated ids);
* keeps its side effects contained: the environment variables the SDK needs are set only for the
  duration of the build and restored afterwards, as are the root logger and ``boto3``'s default
  session, both of which importing the SDK changes.

CDK tokens (``${Token[TOKEN.123]}``) may appear in any string of the spec except ``region``: they
are swapped for URL-safe placeholders while the SDK runs (the SDK parses S3 URIs, and a token in
the host part of a URI is not valid there) and put back, unchanged, in the returned JSON.

Pipeline:

``Preprocess`` (processing, scikit-learn image) -> ``Train`` (training, XGBoost image) ->
``Evaluate`` (processing, writes ``evaluation.json``) -> ``CheckMetric`` (condition on
``binary_classification_metrics.<metric>.value`` >= ``MetricThreshold``) -> ``Register`` (model
package in the model package group) or ``MetricBelowThreshold`` (fail).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import re
import types
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .images import DEFAULT_SKLEARN, DEFAULT_XGBOOST

__all__ = [
    "APPROVAL_STATUSES",
    "EVALUATE_IMAGE_FRAMEWORKS",
    "EVALUATION_PROPERTY_FILE",
    "PARAMETER_NAMES",
    "STEP_NAMES",
    "TrainingPipelineSpec",
    "build_training_pipeline_definition",
]

# --- Names that are part of the contract (CDK side, docs, pipeline start parameters) -------------

PARAM_INPUT_DATA_URI = "InputDataUri"
PARAM_PROCESSING_INSTANCE_TYPE = "ProcessingInstanceType"
PARAM_PROCESSING_INSTANCE_COUNT = "ProcessingInstanceCount"
PARAM_TRAINING_INSTANCE_TYPE = "TrainingInstanceType"
PARAM_TRAINING_INSTANCE_COUNT = "TrainingInstanceCount"
PARAM_METRIC_THRESHOLD = "MetricThreshold"
PARAM_MODEL_APPROVAL_STATUS = "ModelApprovalStatus"
# Closed-loop retraining (handlers/retraining_trigger.py): production records joined with their
# ground truth, read by the preprocess step next to the raw data; the window and the row count are
# recorded on the registered package. "none" when a run has no production data (a package's
# metadata values must not be empty).
PARAM_PRODUCTION_DATA_URI = "ProductionDataUri"
PARAM_PRODUCTION_WINDOW_START = "ProductionWindowStart"
PARAM_PRODUCTION_WINDOW_END = "ProductionWindowEnd"
PARAM_PRODUCTION_RECORDS = "ProductionRecords"
NO_PRODUCTION_DATA = "none"
PRODUCTION_PARAMETERS = (
    PARAM_PRODUCTION_DATA_URI, PARAM_PRODUCTION_WINDOW_START, PARAM_PRODUCTION_WINDOW_END, PARAM_PRODUCTION_RECORDS,
)
# Parameter -> the key recording it in the package's CustomerMetadataProperties.
PRODUCTION_METADATA = {
    PARAM_PRODUCTION_DATA_URI: "production-data", PARAM_PRODUCTION_WINDOW_START: "production-window-start",
    PARAM_PRODUCTION_WINDOW_END: "production-window-end", PARAM_PRODUCTION_RECORDS: "production-records",
}
PARAMETER_NAMES = (
    PARAM_INPUT_DATA_URI,
    PARAM_PROCESSING_INSTANCE_TYPE,
    PARAM_PROCESSING_INSTANCE_COUNT,
    PARAM_TRAINING_INSTANCE_TYPE,
    PARAM_TRAINING_INSTANCE_COUNT,
    PARAM_METRIC_THRESHOLD,
    PARAM_MODEL_APPROVAL_STATUS,
    *PRODUCTION_PARAMETERS,
)

STEP_PREPROCESS = "Preprocess"
STEP_TRAIN = "Train"
STEP_EVALUATE = "Evaluate"
STEP_CHECK_METRIC = "CheckMetric"
STEP_REGISTER = "Register"
STEP_FAIL = "MetricBelowThreshold"
STEP_NAMES = (STEP_PREPROCESS, STEP_TRAIN, STEP_EVALUATE, STEP_CHECK_METRIC, STEP_REGISTER, STEP_FAIL)

EVALUATION_PROPERTY_FILE = "EvaluationReport"
EVALUATION_OUTPUT = "evaluation"
EVALUATION_FILE = "evaluation.json"
PREPROCESS_OUTPUTS = ("train", "validation", "test", "baseline")
BASELINE_FILE = "baseline.json"  # preprocess writes it; evaluate adds the model's score references
PROCESSING_ROOT = "/opt/ml/processing"
CONTENT_TYPE = "text/csv"
APPROVAL_STATUSES = ("PendingManualApproval", "Approved")
EVALUATE_IMAGE_FRAMEWORKS = ("sklearn", "xgboost")

_TUPLE_FIELDS = (
    "subnet_ids", "security_group_ids", "inference_instance_types", "transform_instance_types",
    "preprocess_arguments",
)

# Hyper-parameters set by the builder (script mode of the framework container); not overridable.
_RESERVED_HYPERPARAMETERS = ("sagemaker_program", "sagemaker_submit_directory", "sagemaker_region")


# --- Spec -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingPipelineSpec:
    """Everything the training pipeline definition depends on. Plain Python values only.

    Strings may contain CDK tokens (``${Token[...]}``), except ``region``, which selects the
    ECR account of the framework images and must be a concrete region name. Mappings are copied
    on construction (sorted by key) and sequences are turned into tuples, so that a spec does not
    change after it is built; treat them as read-only.
    """

    pipeline_name: str
    region: str
    role_arn: str
    default_bucket: str
    """Bucket name (no ``s3://``) given to the SDK session so that it never looks one up. The
    definition does not reference it: every input and output location is explicit."""
    input_data_uri: str
    """Default value of the ``InputDataUri`` parameter (``s3://`` URI)."""
    output_uri: str
    """``s3://`` prefix for job outputs; each execution writes under ``<output_uri>/<execution id>/``."""
    model_package_group_name: str
    preprocess_code_uri: str
    evaluate_code_uri: str
    train_source_uri: str
    """``s3://`` URI of a ``sourcedir.tar.gz`` that contains ``train_entry_point``."""
    train_entry_point: str = "train.py"
    framework_version: str = DEFAULT_XGBOOST
    sklearn_version: str = DEFAULT_SKLEARN
    processing_instance_type: str = "ml.m5.large"
    processing_instance_count: int = 1
    training_instance_type: str = "ml.m5.xlarge"
    training_instance_count: int = 1
    hyperparameters: Mapping[str, str] = field(default_factory=dict)
    metric_name: str = "auc"
    """Key under ``binary_classification_metrics`` in ``evaluation.json``."""
    metric_threshold: float = 0.8
    default_approval_status: str = "PendingManualApproval"
    kms_key_arn: str | None = None
    """When set: volume and output encryption of every job."""
    subnet_ids: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    """When set (with ``subnet_ids``): VPC of every job, with inter-container traffic encryption."""
    environment: Mapping[str, str] = field(default_factory=dict)
    """Environment of the training job (e.g. ``MLFLOW_TRACKING_URI``, ``MLFLOW_EXPERIMENT_NAME``)."""
    inference_instance_types: tuple[str, ...] = ("ml.m5.large",)
    transform_instance_types: tuple[str, ...] = ("ml.m5.large",)
    model_approval_description: str | None = None
    """Description of every model package the pipeline registers."""
    evaluate_image_framework: str = "sklearn"
    """Image of the ``Evaluate`` job: ``sklearn`` (the ``sklearn_version`` image, like
    ``Preprocess``) or ``xgboost`` (the training image: needed by an evaluation script that loads
    the model with xgboost, which the scikit-learn image does not ship)."""
    preprocess_arguments: tuple[str, ...] = ()
    """Extra command-line arguments of the preprocess script (e.g. its input format)."""
    tags: Mapping[str, str] = field(default_factory=dict)
    """Tags of every job the pipeline runs (created at run time: CloudFormation's tags do not
    reach them), e.g. the environment's cost allocation tag."""

    def __post_init__(self) -> None:
        for name in ("hyperparameters", "environment", "tags"):
            value = getattr(self, name)
            if not isinstance(value, Mapping):
                raise TypeError(f"{name} must be a mapping of str to str")
            copied = {str(key): str(value[key]) for key in sorted(value, key=str)}
            object.__setattr__(self, name, copied)
        for name in _TUPLE_FIELDS:
            value = getattr(self, name)
            if isinstance(value, str):
                raise TypeError(f"{name} must be a sequence of strings, not a string")
            object.__setattr__(self, name, tuple(value))

        for name in ("pipeline_name", "region", "role_arn", "default_bucket", "model_package_group_name"):
            if not getattr(self, name):
                raise ValueError(f"{name} must not be empty")
        if CDK_TOKEN.search(self.region):
            raise ValueError(
                "region must be a concrete region name, not a CDK token: it selects the ECR "
                "account of the framework images (use an environment-specific stack)"
            )
        if self.default_bucket.startswith("s3://") or "/" in self.default_bucket:
            raise ValueError("default_bucket must be a bucket name, without s3:// or a key")
        for name in (
            "input_data_uri",
            "output_uri",
            "preprocess_code_uri",
            "evaluate_code_uri",
            "train_source_uri",
        ):
            if not getattr(self, name).startswith("s3://"):
                raise ValueError(f"{name} must be an s3:// URI (code is never uploaded from local paths)")
        if not self.train_entry_point:
            raise ValueError("train_entry_point must not be empty")
        for name in ("processing_instance_count", "training_instance_count"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer")
        if isinstance(self.metric_threshold, bool) or not isinstance(self.metric_threshold, (int, float)):
            raise TypeError("metric_threshold must be a number")
        if not self.metric_name:
            raise ValueError("metric_name must not be empty")
        if self.evaluate_image_framework not in EVALUATE_IMAGE_FRAMEWORKS:
            raise ValueError(
                f"evaluate_image_framework must be one of {', '.join(EVALUATE_IMAGE_FRAMEWORKS)}"
            )
        if self.default_approval_status not in APPROVAL_STATUSES:
            raise ValueError(f"default_approval_status must be one of {', '.join(APPROVAL_STATUSES)}")
        if bool(self.subnet_ids) != bool(self.security_group_ids):
            raise ValueError("subnet_ids and security_group_ids must be given together (or neither)")
        if not self.inference_instance_types or not self.transform_instance_types:
            raise ValueError("inference_instance_types and transform_instance_types must not be empty")
        reserved = sorted(set(self.hyperparameters) & set(_RESERVED_HYPERPARAMETERS))
        if reserved:
            raise ValueError(f"hyperparameters must not set {', '.join(reserved)}: the builder sets them")


# --- CDK tokens -----------------------------------------------------------------------------------

# Finds (never rejects) CDK string tokens, so that they can be kept away from the SDK's URI parsing.
CDK_TOKEN = re.compile(r"\$\{Token\[[^\]]*\]\}")
_PLACEHOLDER_PREFIX = "cdk-token-placeholder-"


class _TokenMask:
    """Swaps CDK tokens for URL-safe placeholders, and back."""

    def __init__(self) -> None:
        self._tokens: dict[str, str] = {}  # token -> placeholder, in order of appearance

    def _placeholder(self, match: re.Match[str]) -> str:
        token = match.group(0)
        if token not in self._tokens:
            self._tokens[token] = f"{_PLACEHOLDER_PREFIX}{len(self._tokens):04d}"
        return self._tokens[token]

    def mask(self, value: Any) -> Any:
        if isinstance(value, str):
            if _PLACEHOLDER_PREFIX in value:
                raise ValueError(f"spec values must not contain {_PLACEHOLDER_PREFIX!r}")
            return CDK_TOKEN.sub(self._placeholder, value)
        if isinstance(value, tuple):
            return tuple(self.mask(item) for item in value)
        if isinstance(value, Mapping):
            return {self.mask(key): self.mask(item) for key, item in value.items()}
        return value

    def mask_spec(self, spec: TrainingPipelineSpec) -> TrainingPipelineSpec:
        changes = {f.name: self.mask(getattr(spec, f.name)) for f in dataclasses.fields(spec)}
        return dataclasses.replace(spec, **changes)

    def unmask(self, text: str) -> str:
        # Placeholders have a fixed width, so none is a prefix of another.
        for token, placeholder in self._tokens.items():
            text = text.replace(placeholder, json.dumps(token)[1:-1])
        if _PLACEHOLDER_PREFIX in text:
            raise RuntimeError("a CDK token placeholder was altered by the SDK and cannot be restored")
        return text


# --- Offline SDK environment ----------------------------------------------------------------------

# Only SDK defaults the build relies on: telemetry opt-out. Set on the session around the calls
# that emit telemetry (see _telemetry_opted_out), empty otherwise: the SDK validates its whole
# config schema on every lookup when the config is not empty (~0.2 s each, dozens of lookups).
_SDK_CONFIG_TELEMETRY_OPT_OUT = {
    "SchemaVersion": "1.0",
    "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}},
}


def _environment_overrides(region: str) -> dict[str, str]:
    return {
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        # No shared config / credentials files (~/.aws), no instance metadata lookups.
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        # No iam:SimulatePrincipalPolicy / GetRole calls to validate the execution role.
        "SAGEMAKER_VALIDATE_ROLE": "false",
        # No SDK defaults from /etc/xdg/sagemaker or ~/.config/sagemaker: the definition must
        # not depend on the machine that synthesizes it.
        "SAGEMAKER_ADMIN_CONFIG_OVERRIDE": os.devnull,
        "SAGEMAKER_USER_CONFIG_OVERRIDE": os.devnull,
    }


_ENVIRONMENT_REMOVED = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE")


@contextlib.contextmanager
def _offline_sdk_environment(region: str) -> Iterator[None]:
    """Environment for the SDK during one build; everything it changes is restored on exit.

    Not thread-safe (it sets process environment variables): build definitions one at a time.
    """
    import boto3

    overrides = _environment_overrides(region)
    saved_environment = {name: os.environ.get(name) for name in (*overrides, *_ENVIRONMENT_REMOVED)}
    root = logging.getLogger()
    saved_root = (root.level, list(root.handlers))
    saved_boto3_session = boto3.DEFAULT_SESSION
    sdk_loggers: dict[str, int] = {}
    try:
        for name in _ENVIRONMENT_REMOVED:
            os.environ.pop(name, None)
        os.environ.update(overrides)
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message="Running within a PipelineSession", category=UserWarning
            )
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"sagemaker(\.|$)")
            # Importing the SDK configures the root logger and creates boto3's default session
            # (restored below); its INFO/WARNING chatter about popped job names is not for synth.
            _sdk()
            for name in ("sagemaker", *sorted(_sdk_logger_names())):
                logger = logging.getLogger(name)
                sdk_loggers[name] = logger.level
                logger.setLevel(logging.ERROR)
            yield
    finally:
        for name, level in sdk_loggers.items():
            logging.getLogger(name).setLevel(level)
        root.setLevel(saved_root[0])
        root.handlers[:] = saved_root[1]
        boto3.DEFAULT_SESSION = saved_boto3_session
        for name, value in saved_environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _sdk_logger_names() -> list[str]:
    """SDK loggers with a level of their own (they would not follow the ``sagemaker`` logger)."""
    return [
        name
        for name, logger in logging.root.manager.loggerDict.items()
        if name.startswith("sagemaker.") and isinstance(logger, logging.Logger) and logger.level
    ]


@functools.cache
def _sdk() -> types.SimpleNamespace:
    """Imports the SDK (once; slow) and returns the pieces the build uses."""
    from sagemaker.core import image_uris, model_metrics, network, processing, shapes
    from sagemaker.core.training import configs
    from sagemaker.core.workflow import (
        conditions,
        execution_variables,
        functions,
        parameters,
        pipeline_context,
        properties,
    )
    from sagemaker.mlops import workflow
    from sagemaker.serve.model_builder import ModelBuilder
    from sagemaker.train.model_trainer import ModelTrainer

    class OfflinePipelineSession(pipeline_context.PipelineSession):
        """A PipelineSession that passes IAM role names through (instead of asking IAM)."""

        def expand_role(self, role: str) -> str:
            return role

    return types.SimpleNamespace(
        OfflinePipelineSession=OfflinePipelineSession,
        image_uris=image_uris,
        ModelMetrics=model_metrics.ModelMetrics,
        MetricsSource=model_metrics.MetricsSource,
        NetworkConfig=network.NetworkConfig,
        ScriptProcessor=processing.ScriptProcessor,
        ProcessingInput=shapes.ProcessingInput,
        ProcessingOutput=shapes.ProcessingOutput,
        ProcessingS3Input=shapes.ProcessingS3Input,
        ProcessingS3Output=shapes.ProcessingS3Output,
        S3DataSource=shapes.S3DataSource,
        Tag=shapes.Tag,
        Compute=configs.Compute,
        InputData=configs.InputData,
        Networking=configs.Networking,
        OutputDataConfig=configs.OutputDataConfig,
        ConditionGreaterThanOrEqualTo=conditions.ConditionGreaterThanOrEqualTo,
        ExecutionVariables=execution_variables.ExecutionVariables,
        Join=functions.Join,
        JsonGet=functions.JsonGet,
        ParameterFloat=parameters.ParameterFloat,
        ParameterInteger=parameters.ParameterInteger,
        ParameterString=parameters.ParameterString,
        PropertyFile=properties.PropertyFile,
        ConditionStep=workflow.ConditionStep,
        FailStep=workflow.FailStep,
        ModelStep=workflow.ModelStep,
        Pipeline=workflow.Pipeline,
        ProcessingStep=workflow.ProcessingStep,
        TrainingStep=workflow.TrainingStep,
        ModelBuilder=ModelBuilder,
        ModelTrainer=ModelTrainer,
    )


@functools.lru_cache(maxsize=8)
def _boto_session(region: str) -> Any:
    """One boto3 session per region, private to this module: its loader caches the service
    models, which makes every build after the first one faster. It never resolves credentials."""
    import boto3

    return boto3.Session(region_name=region)


def _make_session(sdk: types.SimpleNamespace, spec: TrainingPipelineSpec) -> Any:
    # SDK defaults are read from the config files, which _offline_sdk_environment points at
    # os.devnull: none. (Passing a non-empty config here instead costs schema validations.)
    session = sdk.OfflinePipelineSession(
        boto_session=_boto_session(spec.region),
        default_bucket=spec.default_bucket,
    )
    session._default_bucket = spec.default_bucket  # never HeadBucket/CreateBucket/STS
    session.sagemaker_config = {}
    return session


@contextlib.contextmanager
def _telemetry_opted_out(session: Any) -> Iterator[None]:
    """Around the SDK calls that emit telemetry (run/train/register): opt out of it."""
    session.sagemaker_config = json.loads(json.dumps(_SDK_CONFIG_TELEMETRY_OPT_OUT))
    try:
        yield
    finally:
        session.sagemaker_config = {}


# --- Build ----------------------------------------------------------------------------------------


def build_training_pipeline_definition(spec: TrainingPipelineSpec) -> str:
    """Returns the training pipeline definition (JSON text) for ``spec``. Offline, deterministic."""
    if not isinstance(spec, TrainingPipelineSpec):
        raise TypeError("spec must be a TrainingPipelineSpec")
    tokens = _TokenMask()
    masked = tokens.mask_spec(spec)
    with _offline_sdk_environment(spec.region):
        definition = _build_definition(_sdk(), masked)
    text = json.dumps(json.loads(definition), sort_keys=True, separators=(",", ":"))
    return tokens.unmask(text)


def _build_definition(sdk: types.SimpleNamespace, spec: TrainingPipelineSpec) -> str:
    session = _make_session(sdk, spec)
    params = types.SimpleNamespace(
        input_data_uri=sdk.ParameterString(name=PARAM_INPUT_DATA_URI, default_value=spec.input_data_uri),
        processing_instance_type=sdk.ParameterString(
            name=PARAM_PROCESSING_INSTANCE_TYPE, default_value=spec.processing_instance_type
        ),
        processing_instance_count=sdk.ParameterInteger(
            name=PARAM_PROCESSING_INSTANCE_COUNT, default_value=spec.processing_instance_count
        ),
        training_instance_type=sdk.ParameterString(
            name=PARAM_TRAINING_INSTANCE_TYPE, default_value=spec.training_instance_type
        ),
        training_instance_count=sdk.ParameterInteger(
            name=PARAM_TRAINING_INSTANCE_COUNT, default_value=spec.training_instance_count
        ),
        metric_threshold=sdk.ParameterFloat(
            name=PARAM_METRIC_THRESHOLD, default_value=float(spec.metric_threshold)
        ),
        model_approval_status=sdk.ParameterString(
            name=PARAM_MODEL_APPROVAL_STATUS, default_value=spec.default_approval_status
        ),
        **{name: sdk.ParameterString(name=name, default_value=NO_PRODUCTION_DATA) for name in PRODUCTION_PARAMETERS},
    )
    job_tags = [{"Key": key, "Value": value} for key, value in spec.tags.items()] or None
    sklearn_image = sdk.image_uris.retrieve(
        framework="sklearn", region=spec.region, version=spec.sklearn_version, py_version="py3"
    )
    xgboost_training_image = sdk.image_uris.retrieve(
        framework="xgboost", region=spec.region, version=spec.framework_version, image_scope="training"
    )
    xgboost_inference_image = sdk.image_uris.retrieve(
        framework="xgboost", region=spec.region, version=spec.framework_version, image_scope="inference"
    )
    output_root = spec.output_uri.rstrip("/")

    def output_location(step_name: str, output_name: str | None = None) -> Any:
        values = [output_root, sdk.ExecutionVariables.PIPELINE_EXECUTION_ID, step_name]
        return sdk.Join(on="/", values=values + ([output_name] if output_name else []))

    def processor(base_job_name: str, image_uri: str) -> Any:
        network = None
        if spec.subnet_ids:
            network = sdk.NetworkConfig(
                subnets=list(spec.subnet_ids),
                security_group_ids=list(spec.security_group_ids),
                encrypt_inter_container_traffic=True,
            )
        return sdk.ScriptProcessor(
            role=spec.role_arn,
            image_uri=image_uri,
            command=["python3"],
            instance_type=params.processing_instance_type,
            instance_count=params.processing_instance_count,
            volume_kms_key=spec.kms_key_arn,
            output_kms_key=spec.kms_key_arn,
            network_config=network,
            base_job_name=base_job_name,
            sagemaker_session=session,
            tags=job_tags,
        )

    def processing_input(name: str, source: Any, destination: str) -> Any:
        return sdk.ProcessingInput(
            input_name=name,
            s3_input=sdk.ProcessingS3Input(
                s3_uri=source, local_path=destination, s3_data_type="S3Prefix", s3_input_mode="File"
            ),
        )

    def processing_output(step_name: str, name: str) -> Any:
        return sdk.ProcessingOutput(
            output_name=name,
            s3_output=sdk.ProcessingS3Output(
                s3_uri=output_location(step_name, name),
                local_path=f"{PROCESSING_ROOT}/{name}",
                s3_upload_mode="EndOfJob",
            ),
        )

    # Preprocess -----------------------------------------------------------------------------------
    preprocessor = processor("preprocess", sklearn_image)
    with _telemetry_opted_out(session):
        preprocess_args = preprocessor.run(
            code=spec.preprocess_code_uri,
            # One train file per training instance, so ShardedByS3Key hands each its own part.
            arguments=[*spec.preprocess_arguments, "--train-shards", params.training_instance_count,
                       "--production-data", getattr(params, PARAM_PRODUCTION_DATA_URI)],
            inputs=[processing_input("input", params.input_data_uri, f"{PROCESSING_ROOT}/input")],
            outputs=[processing_output(STEP_PREPROCESS, name) for name in PREPROCESS_OUTPUTS],
        )
    preprocess = sdk.ProcessingStep(name=STEP_PREPROCESS, step_args=preprocess_args)

    def preprocess_output(name: str) -> Any:
        return preprocess.properties.ProcessingOutputConfig.Outputs[name].S3Output.S3Uri

    # Train ----------------------------------------------------------------------------------------
    trainer = sdk.ModelTrainer(
        training_image=xgboost_training_image,
        # The role is set below: at construction the SDK resolves anything that is not an IAM
        # role ARN through iam:GetRole, and a CDK token is not one.
        role="arn:aws:iam::000000000000:role/placeholder",
        base_job_name="train",
        sagemaker_session=session,
        tags=[sdk.Tag(key=tag["Key"], value=tag["Value"]) for tag in job_tags] if job_tags else None,
        compute=sdk.Compute(
            instance_type=params.training_instance_type,
            instance_count=params.training_instance_count,
            volume_size_in_gb=30,
            volume_kms_key_id=spec.kms_key_arn,
        ),
        networking=(
            sdk.Networking(
                subnets=list(spec.subnet_ids),
                security_group_ids=list(spec.security_group_ids),
                enable_inter_container_traffic_encryption=True,
            )
            if spec.subnet_ids
            else None
        ),
        output_data_config=sdk.OutputDataConfig(
            s3_output_path=output_location(STEP_TRAIN),
            kms_key_id=spec.kms_key_arn,
            compression_type="GZIP",
        ),
        hyperparameters={
            **spec.hyperparameters,
            "sagemaker_program": spec.train_entry_point,
            "sagemaker_submit_directory": spec.train_source_uri,
            "sagemaker_region": spec.region,
        },
        environment=dict(spec.environment),
    )
    trainer.role = spec.role_arn
    with _telemetry_opted_out(session):
        train_args = trainer.train(
            # train is sharded by file across the instances (data-parallel XGBoost); every
            # instance evaluates on the whole validation split.
            input_data_config=[
                sdk.InputData(
                    channel_name=name,
                    data_source=sdk.S3DataSource(
                        s3_data_type="S3Prefix", s3_uri=preprocess_output(name), s3_data_distribution_type=distribution
                    ),
                    content_type=CONTENT_TYPE,
                )
                for name, distribution in (("train", "ShardedByS3Key"), ("validation", "FullyReplicated"))
            ]
        )
    train = sdk.TrainingStep(name=STEP_TRAIN, step_args=train_args)
    model_data = train.properties.ModelArtifacts.S3ModelArtifacts

    # Evaluate -------------------------------------------------------------------------------------
    evaluation_report = sdk.PropertyFile(
        name=EVALUATION_PROPERTY_FILE, output_name=EVALUATION_OUTPUT, path=EVALUATION_FILE
    )
    evaluator = processor(
        "evaluate", xgboost_training_image if spec.evaluate_image_framework == "xgboost" else sklearn_image
    )
    with _telemetry_opted_out(session):
        evaluate_args = evaluator.run(
            code=spec.evaluate_code_uri,
            inputs=[
                processing_input("model", model_data, f"{PROCESSING_ROOT}/model"),
                processing_input("test", preprocess_output("test"), f"{PROCESSING_ROOT}/test"),
                processing_input("baseline", preprocess_output("baseline"), f"{PROCESSING_ROOT}/baseline"),
            ],
            outputs=[processing_output(STEP_EVALUATE, EVALUATION_OUTPUT)],
        )
    evaluate = sdk.ProcessingStep(
        name=STEP_EVALUATE, step_args=evaluate_args, property_files=[evaluation_report]
    )
    evaluation_output = evaluate.properties.ProcessingOutputConfig.Outputs[EVALUATION_OUTPUT]
    evaluation_uri = sdk.Join(on="/", values=[evaluation_output.S3Output.S3Uri, EVALUATION_FILE])

    # Register -------------------------------------------------------------------------------------
    model = sdk.ModelBuilder(
        s3_model_data_url=model_data,
        image_uri=xgboost_inference_image,
        role_arn=spec.role_arn,
        sagemaker_session=session,
        instance_type=spec.inference_instance_types[0],
        # No script-mode serving (which would add empty SAGEMAKER_PROGRAM/SUBMIT_DIRECTORY and
        # look for code to upload): the XGBoost container serves the model in algorithm mode.
        dependencies=None,
        log_level=None,  # the default (DEBUG) would set the SDK's module logger level for good
    )
    with _telemetry_opted_out(session):
        register_args = model.register(
            model_package_group_name=spec.model_package_group_name,
            content_types=[CONTENT_TYPE],
            response_types=[CONTENT_TYPE],
            inference_instances=list(spec.inference_instance_types),
            transform_instances=list(spec.transform_instance_types),
            model_metrics=sdk.ModelMetrics(
                model_statistics=sdk.MetricsSource(content_type="application/json", s3_uri=evaluation_uri),
                # The training baseline, with the model's score and predicted-class references added
                # by the evaluation, travels with the package: the monitoring launcher finds the
                # deployed champion's baseline here (ModelDataQuality.Statistics).
                model_data_statistics=sdk.MetricsSource(
                    content_type="application/json",
                    s3_uri=sdk.Join(on="/", values=[evaluation_output.S3Output.S3Uri, BASELINE_FILE]),
                ),
            ),
            approval_status=params.model_approval_status,
            description=spec.model_approval_description,
            customer_metadata_properties={key: getattr(params, name) for name, key in PRODUCTION_METADATA.items()},
        )
    register = sdk.ModelStep(name=STEP_REGISTER, step_args=register_args)

    # CheckMetric ----------------------------------------------------------------------------------
    metric_value = sdk.JsonGet(
        step_name=STEP_EVALUATE,
        property_file=evaluation_report,
        json_path=f"binary_classification_metrics.{spec.metric_name}.value",
    )
    fail = sdk.FailStep(
        name=STEP_FAIL,
        error_message=sdk.Join(
            on="",
            values=[
                f"Model not registered: {spec.metric_name} ",
                metric_value,
                f" is below {PARAM_METRIC_THRESHOLD} ",
                params.metric_threshold,
                ".",
            ],
        ),
    )
    check_metric = sdk.ConditionStep(
        name=STEP_CHECK_METRIC,
        conditions=[sdk.ConditionGreaterThanOrEqualTo(left=metric_value, right=params.metric_threshold)],
        if_steps=[register],
        else_steps=[fail],
    )

    pipeline = sdk.Pipeline(
        name=spec.pipeline_name,
        parameters=[getattr(params, name) for name in vars(params)],
        steps=[preprocess, train, evaluate, check_metric],
        sagemaker_session=session,
        # No SageMaker Experiments trial per execution (and no region-dependent default):
        # experiments are tracked in MLflow, through the training job's environment.
        pipeline_experiment_config=None,
    )
    return pipeline.definition()
