"""EndpointSpec: strict parsing of the ENDPOINTS JSON, SageMaker's limits, errors naming the field."""

from __future__ import annotations

import copy
import json

import pytest
from deployment_fixtures import KMS_KEY_ARN, ROLE_ARN, spec_dict
from hypothesis import given, settings
from hypothesis import strategies as st
from mlops_runtime.domain.deployment import (
    AsyncVariantSpec,
    CaptureContentTypes,
    DataCaptureSpec,
    EndpointSpec,
    GuardrailSpec,
    InvalidEndpointSpec,
    RealtimeVariantSpec,
    ServerlessVariantSpec,
    VariantLayout,
    specs_for_group,
)

SERVERLESS = {"champion": {"kind": "serverless", "memory_mb": 2048, "max_concurrency": 20}}
ASYNC = {
    "champion": {
        "kind": "async",
        "instance_type": "ml.m5.xlarge",
        "initial_instance_count": 1,
        "output_s3_uri": "s3://mlops-dev-artifacts/async/out",
        "failure_s3_uri": "s3://mlops-dev-artifacts/async/failed",
        "success_topic_arn": "arn:aws:sns:eu-west-1:123456789012:async-ok",
        "max_concurrent_invocations_per_instance": 4,
    }
}
ALL_AT_ONCE = {"mode": "ALL_AT_ONCE", "wait_interval_s": 300}


def test_parses_the_full_realtime_spec(realtime_spec):
    assert realtime_spec.variants.champion == RealtimeVariantSpec("ml.m5.large", 2)
    assert realtime_spec.variants.challenger_sizing is realtime_spec.variants.champion
    assert realtime_spec.challenger_initial_weight == 0.1
    assert realtime_spec.data_capture == DataCaptureSpec(
        enabled=True,
        destination_s3_uri="s3://mlops-dev-data-capture/endpoints",
        sampling_percentage=20,
        capture_content_types=CaptureContentTypes(json=("application/json",), csv=("text/csv",)),
    )
    assert realtime_spec.data_capture.json_content_types == ("application/json",)
    assert realtime_spec.guardrails.alarm_names == ("mlops-dev-churn-5xx", "mlops-dev-churn-latency")
    assert realtime_spec.tags == {"mlops:stack": "dev-deployment", "environment": "dev"}


def test_minimal_spec_defaults():
    spec = EndpointSpec.from_dict(
        {
            "name": "e",
            "model_package_group": "g",
            "execution_role_arn": ROLE_ARN,
            "variants": {
                "champion": {"kind": "realtime", "instance_type": "ml.t2.medium", "initial_instance_count": 1}
            },
        }
    )
    assert spec.challenger_initial_weight == 0.0 and not spec.shadow
    assert spec.guardrails == GuardrailSpec() and spec.guardrails.mode == "ALL_AT_ONCE"
    assert spec.data_capture is None and spec.vpc is None and spec.kms_key_arn is None and spec.tags == {}


@pytest.mark.parametrize(
    "data",
    [
        spec_dict(),
        spec_dict(
            variants=SERVERLESS, challenger_initial_weight=0, data_capture=None, guardrails=ALL_AT_ONCE
        ),
        spec_dict(variants=ASYNC, challenger_initial_weight=0, guardrails=ALL_AT_ONCE),
        spec_dict(
            variants={
                "champion": {
                    "kind": "realtime",
                    "instance_type": "ml.p3.8xlarge",
                    "initial_instance_count": 2,
                    "volume_size_gb": 200,
                    "model_data_download_timeout_s": 1200,
                    "container_startup_health_check_timeout_s": 900,
                },
                "challenger": {
                    "kind": "realtime",
                    "instance_type": "ml.p3.8xlarge",
                    "initial_instance_count": 2,
                },
            },
            shadow=True,
            challenger_initial_weight=0.5,
            vpc={"subnet_ids": ["subnet-0a1b2c3d4e5f60718"], "security_group_ids": ["sg-0123456789abcdef0"]},
            guardrails={"mode": "LINEAR", "linear_step_percent": 25, "max_execution_timeout_s": 3600},
        ),
    ],
    ids=["realtime", "serverless", "async", "gpu-shadow-vpc-linear"],
)
def test_round_trip(data):
    spec = EndpointSpec.from_dict(data)
    assert EndpointSpec.from_dict(spec.to_dict()) == spec
    assert EndpointSpec.from_dict(json.loads(json.dumps(spec.to_dict()))).to_dict() == spec.to_dict()


def test_variant_kinds():
    assert EndpointSpec.from_dict(
        spec_dict(variants=SERVERLESS, challenger_initial_weight=0, data_capture=None, guardrails=ALL_AT_ONCE)
    ).variants.champion == ServerlessVariantSpec(2048, 20)
    async_spec = EndpointSpec.from_dict(
        spec_dict(variants=ASYNC, challenger_initial_weight=0, guardrails=ALL_AT_ONCE)
    )
    assert isinstance(async_spec.variants.champion, AsyncVariantSpec)
    assert async_spec.variants.kind == "async"


def with_champion(**fields):
    data = spec_dict()
    data["variants"]["champion"].update(fields)
    return data


def with_key(path: str, value):
    data = spec_dict()
    node = data
    *parents, last = path.split(".")
    for key in parents:
        node = node[key]
    node[last] = value
    return data


def without_key(path: str):
    data = spec_dict()
    node = data
    *parents, last = path.split(".")
    for key in parents:
        node = node[key]
    del node[last]
    return data


@pytest.mark.parametrize(
    ("data", "field", "reason"),
    [
        (without_key("name"), "name", "is required"),
        (with_key("name", "bad_name"), "name", "letters, digits and hyphens"),
        (with_key("name", "x" * 64), "name", "1-63"),
        (with_key("name", 7), "name", "expected a string, got int"),
        (with_key("model_package_group", "-g"), "model_package_group", "letters, digits"),
        (with_key("execution_role_arn", "role"), "execution_role_arn", "an IAM role ARN"),
        (with_key("kms_key_arn", "alias/x"), "kms_key_arn", "a KMS key or alias ARN"),
        (with_key("colour", "red"), "colour", "unknown field"),
        (
            with_key("variants.champion.kind", "batch"),
            "variants.champion.kind",
            "realtime, serverless, async",
        ),
        (
            with_champion(instance_type="ml.m5.huge"),
            "variants.champion.instance_type",
            "unknown instance type",
        ),
        (with_champion(instance_type="m5.large"), "variants.champion.instance_type", "unknown instance type"),
        (
            with_champion(initial_instance_count=0),
            "variants.champion.initial_instance_count",
            "from 1 to 1000",
        ),
        (
            with_champion(initial_instance_count=True),
            "variants.champion.initial_instance_count",
            "got a boolean",
        ),
        (with_champion(initial_instance_count=2.5), "variants.champion.initial_instance_count", "an integer"),
        (with_champion(volume_size_gb=513), "variants.champion.volume_size_gb", "from 1 to 512"),
        (
            with_champion(model_data_download_timeout_s=30),
            "variants.champion.model_data_download_timeout_s",
            "60 to 3600",
        ),
        (
            with_champion(container_startup_health_check_timeout_s=4000),
            "variants.champion.container_startup_health_check_timeout_s",
            "60 to 3600",
        ),
        (
            with_champion(instance_type="ml.g5.12xlarge", volume_size_gb=100),
            "variants.champion.volume_size_gb",
            "ml.g5.12xlarge has local NVMe storage",
        ),
        (with_champion(memory_mb=1024), "variants.champion.memory_mb", "unknown field"),
        (
            with_key("variants.challenger", {"kind": "serverless", "memory_mb": 1024, "max_concurrency": 1}),
            "variants.challenger.kind",
            "must match the champion's kind",
        ),
        (with_key("variants.extra", {}), "variants.extra", "unknown field"),
        (
            with_key("variants.champion", "ml.m5.large"),
            "variants.champion",
            "expected an object, got str",
        ),
        (with_key("challenger_initial_weight", 1.0), "challenger_initial_weight", "below 1 for a live split"),
        (with_key("challenger_initial_weight", -0.1), "challenger_initial_weight", "from 0 to 1"),
        (with_key("challenger_initial_weight", "10%"), "challenger_initial_weight", "expected a number"),
        (with_key("shadow", "yes"), "shadow", "expected a boolean"),
        (
            spec_dict(shadow=True, challenger_initial_weight=0, guardrails=ALL_AT_ONCE),
            "challenger_initial_weight",
            "above 0 with shadow",
        ),
        (
            spec_dict(
                challenger_initial_weight=0,
                variants={
                    **spec_dict()["variants"],
                    "challenger": {
                        "kind": "realtime",
                        "instance_type": "ml.m5.large",
                        "initial_instance_count": 2,
                    },
                },
            ),
            "variants.challenger",
            "never used",
        ),
        (
            with_key("data_capture.sampling_percentage", 101),
            "data_capture.sampling_percentage",
            "from 0 to 100",
        ),
        (
            with_key("data_capture.destination_s3_uri", "/tmp/capture"),
            "data_capture.destination_s3_uri",
            "s3://",
        ),
        (
            with_key("data_capture.capture_content_types", {"xml": ["text/xml"]}),
            "data_capture.capture_content_types.xml",
            "unknown field",
        ),
        (
            with_key("data_capture.capture_content_types", {"csv": ["csv"]}),
            "data_capture.capture_content_types.csv[0]",
            "a MIME type",
        ),
        (with_key("data_capture.enabled", None), "data_capture.enabled", "is required"),
        (
            with_key("vpc", {"subnet_ids": [], "security_group_ids": ["sg-0123456789abcdef0"]}),
            "vpc.subnet_ids",
            "1 to 16",
        ),
        (
            with_key("vpc", {"subnet_ids": ["subnet-0a1b2c3d"], "security_group_ids": [""]}),
            "vpc.security_group_ids[0]",
            "must not be empty",
        ),
        (with_key("guardrails.mode", "BLUE_GREEN"), "guardrails.mode", "ALL_AT_ONCE, CANARY, LINEAR"),
        (
            without_key("guardrails.canary_size_percent"),
            "guardrails.canary_size_percent",
            "required when mode is CANARY",
        ),
        (with_key("guardrails.canary_size_percent", 60), "guardrails.canary_size_percent", "from 1 to 50"),
        (
            with_key("guardrails", {"mode": "LINEAR", "linear_step_percent": 5}),
            "guardrails.linear_step_percent",
            "from 10 to 50",
        ),
        (
            with_key("guardrails", {"mode": "ALL_AT_ONCE", "canary_size_percent": 10}),
            "guardrails.canary_size_percent",
            "only applies to mode CANARY",
        ),
        (with_key("guardrails.wait_interval_s", 3601), "guardrails.wait_interval_s", "from 0 to 3600"),
        (
            with_key("guardrails.alarm_names", [f"a{i}" for i in range(11)]),
            "guardrails.alarm_names",
            "at most 10",
        ),
        (with_key("guardrails.alarm_names", ["a", "a"]), "guardrails.alarm_names", "twice"),
        (with_key("guardrails.alarm_names", [3]), "guardrails.alarm_names[0]", "expected a string"),
        (with_champion(initial_instance_count=1), "guardrails.mode", "CANARY needs at least 2 instances"),
        (
            with_key("tags", {"aws:cloudformation:stack-name": "x"}),
            "tags.aws:cloudformation:stack-name",
            "reserved by AWS",
        ),
        (with_key("tags", {"mlops:managed-by": "me"}), "tags.mlops:managed-by", "set by the deployer"),
        (with_key("tags", {"team": "a&b"}), "tags.team", "tag values"),
        (with_key("tags", {"team": 1}), "tags.team", "tag values"),
        (with_key("tags", {f"k{i}": "v" for i in range(48)}), "tags", "at most 47 tags"),
    ],
)
def test_invalid_specs_name_the_field(data, field, reason):
    with pytest.raises(InvalidEndpointSpec) as raised:
        EndpointSpec.from_dict(data)
    assert raised.value.field == field
    assert reason in raised.value.reason
    assert str(raised.value).startswith(f"{field}: ")
    assert isinstance(raised.value, ValueError)


SERVERLESS_BASE = {
    "variants": SERVERLESS,
    "challenger_initial_weight": 0,
    "data_capture": None,
    "guardrails": ALL_AT_ONCE,
}


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        (
            {"challenger_initial_weight": 0.1},
            "challenger_initial_weight",
            "must be 0 for a serverless endpoint",
        ),
        (
            {"shadow": True, "challenger_initial_weight": 0.1},
            "challenger_initial_weight",
            "must be 0 for a serverless",
        ),
        ({"data_capture": spec_dict()["data_capture"]}, "data_capture", "do not support data capture"),
        (
            {"vpc": {"subnet_ids": ["subnet-0a1b2c3d"], "security_group_ids": ["sg-0a1b2c3d"]}},
            "vpc",
            "do not support a VPC",
        ),
        ({"guardrails": {"mode": "CANARY", "canary_size_percent": 10}}, "guardrails.mode", "use ALL_AT_ONCE"),
        (
            {"variants": {"champion": {"kind": "serverless", "memory_mb": 3000, "max_concurrency": 1}}},
            "variants.champion.memory_mb",
            "multiple of 1024",
        ),
        (
            {"variants": {"champion": {"kind": "serverless", "memory_mb": 7168, "max_concurrency": 1}}},
            "variants.champion.memory_mb",
            "1024 to 6144",
        ),
        (
            {"variants": {"champion": {"kind": "serverless", "memory_mb": 1024, "max_concurrency": 201}}},
            "variants.champion.max_concurrency",
            "1 to 200",
        ),
        (
            {
                "variants": {
                    "champion": {
                        "kind": "serverless",
                        "memory_mb": 1024,
                        "max_concurrency": 5,
                        "provisioned_concurrency": 6,
                    }
                }
            },
            "variants.champion.provisioned_concurrency",
            "must not exceed max_concurrency",
        ),
        (
            {
                "variants": {**SERVERLESS, "challenger": SERVERLESS["champion"]},
                "challenger_initial_weight": 0.1,
            },
            "variants.challenger",
            "cannot hold more than one production variant",
        ),
    ],
)
def test_serverless_limits(overrides, field, reason):
    with pytest.raises(InvalidEndpointSpec) as raised:
        EndpointSpec.from_dict(spec_dict(**{**SERVERLESS_BASE, **overrides}))
    assert (raised.value.field, reason in raised.value.reason) == (field, True), raised.value


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        ({"challenger_initial_weight": 0.1}, "challenger_initial_weight", "must be 0 for an async endpoint"),
        ({"shadow": True}, "shadow", "not allowed"),
        (
            {"variants": {"champion": {**ASYNC["champion"], "output_s3_uri": "https://x"}}},
            "variants.champion.output_s3_uri",
            "s3://",
        ),
        (
            {"variants": {"champion": {**ASYNC["champion"], "error_topic_arn": "topic"}}},
            "variants.champion.error_topic_arn",
            "an SNS topic ARN",
        ),
        (
            {"variants": {"champion": {**ASYNC["champion"], "max_concurrent_invocations_per_instance": 0}}},
            "variants.champion.max_concurrent_invocations_per_instance",
            "1 to 1000",
        ),
        (
            {"guardrails": {"mode": "CANARY", "canary_size_percent": 10}},
            "guardrails.mode",
            "the champion has 1",
        ),
    ],
)
def test_async_limits(overrides, field, reason):
    with pytest.raises(InvalidEndpointSpec) as raised:
        EndpointSpec.from_dict(
            spec_dict(
                **{"variants": ASYNC, "challenger_initial_weight": 0, "guardrails": ALL_AT_ONCE, **overrides}
            )
        )
    assert raised.value.field == field and reason in raised.value.reason, raised.value


def test_canary_needs_two_instances_in_the_challenger_too():
    data = spec_dict()
    data["variants"]["challenger"] = {
        "kind": "realtime",
        "instance_type": "ml.m5.large",
        "initial_instance_count": 1,
    }
    with pytest.raises(InvalidEndpointSpec, match="the challenger has 1"):
        EndpointSpec.from_dict(data)


def test_direct_construction_is_validated_too():
    # pydantic's ValidationError (a ValueError); from_dict turns it into InvalidEndpointSpec.
    with pytest.raises(ValueError, match="unknown instance type 'ml.x.large'"):
        RealtimeVariantSpec("ml.x.large", 1)
    with pytest.raises(ValueError, match="challenger.kind: must match the champion's kind"):
        VariantLayout(RealtimeVariantSpec("ml.m5.large", 1), ServerlessVariantSpec(1024, 1))
    with pytest.raises(ValueError, match="kms_key_arn\n.*a KMS key or alias ARN"):
        DataCaptureSpec(True, "s3://bucket/x", kms_key_arn="key")


def test_a_non_object_spec():
    with pytest.raises(InvalidEndpointSpec, match="expected an object, got list"):
        EndpointSpec.from_dict([])


def test_the_deployers_settings_hold_the_specs_and_refuse_duplicates():
    from mlops_runtime.settings.base import SettingsError
    from mlops_runtime.settings.deployer import DeployerSettings

    second = spec_dict(
        name="mlops-dev-churn-async", variants=ASYNC, challenger_initial_weight=0, guardrails=ALL_AT_ONCE
    )

    def settings_json(*endpoints):
        return json.dumps({"endpoints": list(endpoints), "idempotency_table": "t", "environment": "dev"})

    settings = DeployerSettings.model_validate_json(settings_json(spec_dict(), second))
    specs = settings.endpoints
    assert [spec.name for spec in specs] == ["mlops-dev-churn", "mlops-dev-churn-async"]
    assert specs_for_group(specs, "MLOPS-DEV-CHURN") == specs
    assert specs_for_group(specs, "other") == ()
    assert DeployerSettings.from_env(settings.to_env()) == settings

    bad = copy.deepcopy(second)
    bad["variants"]["champion"]["instance_type"] = "ml.nope"
    with pytest.raises(SettingsError, match=r"endpoints\.1\.variants\.champion\.async\.instance_type"):
        DeployerSettings.from_env({"MLOPS_SETTINGS": settings_json(spec_dict(), bad)})
    with pytest.raises(SettingsError, match="endpoint 'MLOPS-DEV-CHURN' is listed twice"):
        DeployerSettings.from_env({"MLOPS_SETTINGS": settings_json(spec_dict(), spec_dict(name="MLOPS-DEV-CHURN"))})


def test_guardrail_deployment_config():
    canary = GuardrailSpec(
        "CANARY",
        canary_size_percent=10,
        wait_interval_s=600,
        termination_wait_s=300,
        max_execution_timeout_s=3600,
        alarm_names=("a", "b"),
    )
    assert canary.deployment_config() == {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "CANARY",
                "WaitIntervalInSeconds": 600,
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
            },
            "TerminationWaitInSeconds": 300,
            "MaximumExecutionTimeoutInSeconds": 3600,
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "a"}, {"AlarmName": "b"}]},
    }
    linear = GuardrailSpec("LINEAR", linear_step_percent=20).deployment_config()
    assert linear["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["LinearStepSize"] == {
        "Type": "CAPACITY_PERCENT",
        "Value": 20,
    }
    assert "AutoRollbackConfiguration" not in linear  # Alarms needs at least one alarm


# --- property: whatever valid spec is built, to_dict/from_dict round-trips ------------------------

_instance_types = st.sampled_from(
    ["ml.m5.large", "ml.c6i.2xlarge", "ml.g5.12xlarge", "ml.p3.8xlarge", "ml.inf2.xlarge"]
)


@st.composite
def realtime_specs(draw):
    instance = draw(_instance_types)
    champion = {
        "kind": "realtime",
        "instance_type": instance,
        "initial_instance_count": draw(st.integers(2, 8)),
    }
    if instance in ("ml.m5.large", "ml.c6i.2xlarge", "ml.p3.8xlarge") and draw(st.booleans()):
        champion["volume_size_gb"] = draw(st.integers(1, 512))
    if draw(st.booleans()):
        champion["model_data_download_timeout_s"] = draw(st.integers(60, 3600))
    shadow = draw(st.booleans())
    weight = draw(st.floats(0.01, 1.0 if shadow else 0.99, allow_nan=False))
    mode = draw(st.sampled_from(["ALL_AT_ONCE", "CANARY", "LINEAR"]))
    guardrails = {"mode": mode, "wait_interval_s": draw(st.integers(0, 3600))}
    if mode == "CANARY":
        guardrails["canary_size_percent"] = draw(st.integers(1, 50))
    if mode == "LINEAR":
        guardrails["linear_step_percent"] = draw(st.integers(10, 50))
    data = spec_dict(
        variants={"champion": champion},
        challenger_initial_weight=weight,
        shadow=shadow,
        guardrails=guardrails,
        kms_key_arn=draw(st.sampled_from([KMS_KEY_ARN, None])) or None,
    )
    if data.get("kms_key_arn") is None:
        data.pop("kms_key_arn", None)
    return data


@settings(max_examples=60, deadline=None)
@given(realtime_specs())
def test_round_trip_property(data):
    spec = EndpointSpec.from_dict(data)
    assert EndpointSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


# --- property: a value of the wrong JSON type anywhere is reported at its own dotted path ----------

_WRONG = {
    "string": st.one_of(st.integers(), st.booleans(), st.lists(st.text(max_size=3), max_size=2)),
    "integer": st.one_of(st.text(max_size=5), st.booleans(), st.floats(0.5, 9.5), st.just({})),
    "number": st.one_of(st.text(max_size=5), st.booleans(), st.just([1])),
    "boolean": st.one_of(st.text(max_size=5), st.integers(), st.just({})),
    "list": st.one_of(st.text(max_size=5), st.integers(), st.booleans(), st.just({})),
}
_LEAVES = [
    ("name", "string"),
    ("execution_role_arn", "string"),
    ("variants.champion.initial_instance_count", "integer"),
    ("variants.champion.instance_type", "string"),
    ("challenger_initial_weight", "number"),
    ("shadow", "boolean"),
    ("data_capture.enabled", "boolean"),
    ("data_capture.sampling_percentage", "integer"),
    ("data_capture.capture_content_types.json", "list"),
    ("guardrails.wait_interval_s", "integer"),
    ("guardrails.alarm_names", "list"),
]


@st.composite
def wrongly_typed(draw):
    path, kind = draw(st.sampled_from(_LEAVES))
    return path, draw(_WRONG[kind])


@settings(max_examples=80, deadline=None)
@given(wrongly_typed())
def test_a_wrong_type_is_reported_at_its_path(case):
    path, value = case
    with pytest.raises(InvalidEndpointSpec) as raised:
        EndpointSpec.from_dict(with_key(path, value))
    assert raised.value.field == path
    assert raised.value.reason.startswith("expected "), raised.value
