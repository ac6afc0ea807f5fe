"""The local rehearsal end to end: the server in-process on a free loopback port, the demo against it.

One module-scoped run (start, demo with a fixed seed, a few probes, stop) collects what the tests
assert, so that the order of the tests does not matter and the demo runs once. The real
``python -m mlops_platform.local.server`` process is started alongside (it boots meanwhile) and
stopped with Ctrl-C by the last test. The demo uses a wider
conversion gap (15% vs 60%) than its default (20% vs 50%), so that the controller decides within a few
hundred requests and the module stays under 20 s.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

from mlops_platform.local import demo, server
from mlops_platform.local.server import ENDPOINT, HOST, SEARCH_INDEX, LocalPlatform

# The controller's runs without a move add no metric: Powertools warns, as it does in Lambda.
pytestmark = [pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")]
if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test`: the whole module on one worker, one rehearsal
    pytestmark.append(pytest.mark.xdist_group("local-rehearsal"))

REPO_ROOT = Path(__file__).resolve().parents[3]
RATES = {"champion": 0.15, "challenger": 0.6}
BETTER = "challenger"
SEED = 11
HANDLER_GLOBALS = (  # each handler's lazily built runtime (mlops_runtime.lazy.Lazy)
    ("mlops_runtime.handlers.inference_api", "runtime"),
    ("mlops_runtime.handlers.feedback_api", "runtime"),
    ("mlops_runtime.handlers.search_api", "runtime"),
    ("mlops_runtime.handlers.experiment_controller", "store"),
    ("mlops_runtime.handlers.experiment_controller", "settings"),
)


def request(base_url: str, method: str, path: str, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", **(headers or {})}
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(base_url + path, data=data, method=method, headers=sent),
                         timeout=10) as answer:
            status, answer_headers, raw = answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        status, answer_headers, raw = error.code, dict(error.headers), error.read()
    return status, answer_headers, json.loads(raw) if raw else None


def refused(address) -> bool:
    try:
        socket.create_connection(address, timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def loopback_listeners(port: int) -> list[str]:
    """Local addresses (hex, as in /proc/net/tcp{,6}) of the sockets listening on ``port``."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                address, hex_port = fields[1].rsplit(":", 1)
                if int(hex_port, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                    found.append(address)
    return found


def new_threads(before: set[threading.Thread], wait: float = 3.0) -> list[str]:
    deadline = time.monotonic() + wait
    while True:
        extra = [t.name for t in threading.enumerate() if t not in before and t.is_alive()]
        if not extra or time.monotonic() > deadline:
            return extra
        time.sleep(0.05)


def handler_globals() -> dict[str, object]:
    import importlib

    return {f"{module}.{name}": getattr(importlib.import_module(module), name).current
            for module, name in HANDLER_GLOBALS}


@pytest.fixture(scope="module")
def process():
    """``python -m mlops_platform.local.server`` in a child process, started first so that it boots
    (imports, moto, seeding: a few seconds) while the in-process rehearsal runs."""
    env = {**os.environ, "PORT": "0", "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen([sys.executable, "-m", "mlops_platform.local.server"], cwd=REPO_ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    yield child
    if child.poll() is None:
        child.kill()
        child.communicate()


@pytest.fixture(scope="module")
def run(process):
    """Start, rehearse, probe, stop; what happened, for the tests below."""
    globals_before = handler_globals()  # imports the handlers first (feedback_api sets a pydantic variable)
    threads_before = set(threading.enumerate())
    environ_before = dict(os.environ)
    platform = LocalPlatform(0)
    facts = SimpleNamespace()
    try:
        platform.start()
        base = platform.base_url
        facts.base_url, facts.port, facts.address = base, platform.port, platform.address
        facts.moto_address = platform.moto_address
        facts.listeners = {"http": loopback_listeners(platform.port),
                           "moto": loopback_listeners(platform.moto_address[1])}
        facts.transaction_backups = platform.transaction_backups.installed
        out = io.StringIO()
        facts.result = demo.run(base, requests=3000, seed=SEED, rates=RATES, out=out)
        facts.output = out.getvalue()

        from mlops_runtime.handlers import experiment_controller

        facts.config, facts.api_resources, facts.settings = platform.config, platform.api_resources, platform.settings
        facts.controller_settings = experiment_controller.settings.current  # what the handler runs with
        facts.summary = request(base, "GET", f"/v1/experiments/{ENDPOINT}")
        facts.unknown_route = request(base, "GET", "/v1/nothing-here")
        facts.unknown_endpoint = request(base, "POST", "/v1/endpoints/nope/invocations", {"x": 1})
        facts.wrong_method = request(base, "GET", "/v1/feedback")
        facts.unknown_index = request(base, "POST", "/v1/search/nope", {"query": "x"})
        facts.search = request(base, "POST", f"/v1/search/{SEARCH_INDEX}",
                               {"query": "cancel my subscription", "top_k": 5,
                                "filter": {"category": "plans"}})
        # A repeated inference id: moto cancels the transaction and rolls it back (invocations +1 only).
        before = {a["arm"]: a["invocations"] for a in facts.summary[2]["arms"]}
        headers = {"X-Inference-Id": "rehearsal-duplicate", "X-Subject-Id": "customer-dup"}
        facts.first = request(base, "POST", f"/v1/endpoints/{ENDPOINT}/invocations", {"x": 1}, headers)
        facts.second = request(base, "POST", f"/v1/endpoints/{ENDPOINT}/invocations", {"x": 2}, headers)
        after = request(base, "GET", f"/v1/experiments/{ENDPOINT}")[2]
        facts.invocations_added = {a["arm"]: a["invocations"] - before[a["arm"]] for a in after["arms"]}

        s3 = platform.client("s3")
        listing = s3.list_objects_v2(Bucket=platform.names.feedback_bucket,
                                     Prefix=platform.names.ground_truth_prefix).get("Contents", [])
        facts.ground_truth = [json.loads(line) for obj in listing
                              for line in s3.get_object(Bucket=platform.names.feedback_bucket, Key=obj["Key"])
                              ["Body"].read().decode().splitlines() if line.strip()]
        package = platform.resources[f"model_package_{BETTER}"]
        facts.winner_package = package
        facts.package_note = platform.client("sagemaker").describe_model_package(
            ModelPackageName=package).get("CustomerMetadataProperties", {})
        described = platform.client("sagemaker").describe_endpoint(EndpointName=platform.names.endpoint)
        facts.variant_weights = {v["VariantName"]: v.get("CurrentWeight")
                                 for v in described["ProductionVariants"]}
    finally:
        platform.stop()
    facts.http_refused = refused(facts.address)
    facts.moto_refused = refused(facts.moto_address)
    facts.extra_threads = new_threads(threads_before)
    facts.environ_restored = dict(os.environ) == environ_before
    facts.globals_restored = handler_globals() == globals_before
    return facts


# --- the experiment ---------------------------------------------------------------------------------


def test_weights_move_toward_the_better_variant(run):
    batches = run.result.batches
    moved = [b for b in batches if b.controller.get("status") == "moved"]
    assert moved, run.output
    first = moved[0]
    assert first.weights_after[BETTER] > first.weights_before[BETTER] >= 0.5
    undecided = [b for b in batches if b.controller.get("status") != "decided"]
    assert undecided[-1].weights_after[BETTER] > undecided[-1].weights_after["champion"]
    # the move reached the SageMaker endpoint too (moto), then the decision: all traffic to the winner
    assert run.variant_weights == {BETTER: 1.0, "champion": 0.0}


def test_the_controller_declares_the_better_variant_the_winner(run):
    result = run.result
    assert result.winner == BETTER and result.outcome == "winner", run.output
    assert result.decided_after <= 3000
    assert result.after_decision == {BETTER: sum(result.after_decision.values()), "champion": 0}
    assert f"winner: {BETTER}" in run.output


def test_feedback_is_joined_and_credited_to_the_serving_arm(run):
    result = run.result
    conversions = sum(result.conversions.values())
    assert conversions > 0
    assert result.feedback == {"accepted": conversions, "joined": conversions, "credited": conversions}
    arms = {arm["arm"]: arm for arm in result.summary["arms"]}
    for arm in RATES:
        assert arms[arm]["feedback_count"] == result.conversions[arm]
        assert arms[arm]["reward_sum"] == result.conversions[arm]
        assert arms[arm]["invocations"] == result.served[arm] + result.after_decision[arm]


def test_labels_reach_s3_through_firehose_as_ground_truth(run):
    assert len(run.ground_truth) == sum(run.result.conversions.values())
    assert all(line["groundTruthData"] == {"data": "1", "encoding": "CSV"} for line in run.ground_truth)


def test_get_experiments_shows_the_decision(run):
    status, _, summary = run.summary
    assert status == 200
    assert summary["decision"]["winner"] == BETTER
    assert summary["weights"] == {"champion": 0.0, BETTER: 1.0}
    assert summary["decision"]["outcome"] == "winner"
    assert summary["decision"]["winner_statistic"] > summary["decision"]["threshold"] == 0.1


def test_the_winner_is_notified_and_its_model_package_noted(run):
    assert [m["winner"] for m in run.result.notifications] == [BETTER]
    assert run.result.notifications[0]["model_package_arn"] == run.winner_package
    assert run.package_note.get("mlops:experiment-result") == "champion"  # kept; the loser's is "retired"


def test_a_repeated_inference_id_is_served_but_recorded_once(run):
    assert run.first[0] == 200 and run.second[0] == 200
    assert "X-Prediction-Recorded" not in run.first[1]
    assert run.second[1].get("X-Prediction-Recorded") == "false"
    assert run.invocations_added == {"champion": 0, BETTER: 1}
    assert run.transaction_backups


def test_responses_differ_per_variant(run):
    status, headers, body = run.first
    assert body["variant"] == headers["X-Endpoint-Variant"] == headers["X-Variant"] == BETTER
    assert body["model"] == f"{ENDPOINT}-{BETTER}"


# --- search and routing -----------------------------------------------------------------------------


def test_search_returns_results(run):
    assert run.result.search and run.result.search[0]["id"] == "kb-001"  # "how do I reset my password"
    status, _, body = run.search
    assert status == 200 and body["results"]
    assert {hit["metadata"]["category"] for hit in body["results"]} == {"plans"}
    assert body["results"][0]["id"] == "kb-014"  # "Cancel your subscription from Billing ..."


def test_unknown_routes_are_404_and_wrong_methods_405(run):
    status, _, body = run.unknown_route
    assert status == 404 and body["error"] == "not_found"
    status, _, body = run.unknown_endpoint
    assert status == 404 and body["error"] == "unknown_endpoint"  # the inference handler's own answer
    status, _, body = run.unknown_index
    assert status == 404 and body["error"] == "unknown_index"
    status, headers, _ = run.wrong_method
    assert status == 405 and headers["Allow"] == "POST"


# --- loopback only, clean stop ----------------------------------------------------------------------


def test_both_servers_bind_only_to_127_0_0_1(run):
    assert run.address[0] == HOST == "127.0.0.1"
    assert run.moto_address[0] == "127.0.0.1"
    assert run.base_url == f"http://127.0.0.1:{run.port}"
    if os.path.exists("/proc/net/tcp"):
        # one listener each, on 127.0.0.1 (0100007F in /proc/net/tcp), none on 0.0.0.0 or ::
        assert run.listeners == {"http": ["0100007F"], "moto": ["0100007F"]}


def test_after_stop_ports_are_closed_and_no_thread_is_left(run):
    assert run.http_refused and run.moto_refused
    assert run.extra_threads == []
    assert run.environ_restored and run.globals_restored


# --- the settings: the stack's builders, from a config -------------------------------------------------


def test_the_handlers_get_what_the_stack_builds_for_the_rehearsal_config(run):
    """The join, with both real sides: each function's settings as the stack builds them for the
    rehearsal's config and names, passed as the deployed function gets them (``MLOPS_SETTINGS``) and
    validated by its handler's own model, are the objects the rehearsal gave its handlers."""
    import importlib

    from mlops_platform import function_settings as build

    stack = {
        "inference_api": (build.inference(run.config, run.api_resources), run.settings.inference),
        "feedback_api": (build.feedback(run.config, run.api_resources), run.settings.feedback),
        "experiment_controller": (build.controller(run.config, run.api_resources, build.controller_rules(run.config)),
                                  run.settings.controller),
    }
    for handler, (built, rehearsed) in stack.items():
        model = importlib.import_module(f"mlops_runtime.handlers.{handler}").SETTINGS_MODEL
        assert model.from_env(built.to_env()) == rehearsed, handler
        assert type(rehearsed) is model, handler
    assert run.controller_settings is run.settings.controller
    (arm_endpoint,) = {arm.endpoint for arm in run.settings.inference.experiments[ENDPOINT].arms.values()}
    assert arm_endpoint == build.endpoint_name(run.config, ENDPOINT) == "local-local-churn"


def test_the_rehearsal_settings_follow_its_config(tmp_path, monkeypatch):
    """A value changed in the config file the rehearsal starts from reaches the functions' settings;
    a controller the stack would refuse is refused as a config error, naming the config field."""
    import yaml

    from mlops_platform.config import loader
    from mlops_platform.local.configs import api_settings

    data = yaml.safe_load((loader.CONFIG_DIR / f"{server.BASE_CONFIG}.yaml").read_text())
    data["serving"]["api"].update(prediction_ttl_days=7, allocation_cache_seconds=5, feedback_max_batch=50)
    (tmp_path / f"{server.BASE_CONFIG}.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setattr(loader, "CONFIG_DIR", tmp_path)

    platform = LocalPlatform(0, controller={"strategy": "epsilon_greedy", "epsilon": 0.3})
    names = platform.names
    settings = api_settings(platform.config, server.api_resources(names, "queue", "topic", "secret"))
    assert (settings.inference.prediction_ttl_days, settings.inference.allocation_cache_seconds) == (7, 5)
    assert (settings.feedback.prediction_ttl_days, settings.feedback.max_batch) == (7, 50)
    rule = settings.controller.controllers[ENDPOINT]
    assert (rule.strategy, rule.epsilon) == ("epsilon_greedy", 0.3)
    assert rule.min_observations == 200  # the config's default, as the stack gives it
    assert settings.inference.experiments[ENDPOINT].initial_weights == server.INITIAL_WEIGHTS

    with pytest.raises(loader.ConfigError, match=r"experiments\[0\]\.controller\.min_share"):
        server.rehearsal_config({"min_share": 0.6})


def test_controller_settings_are_a_valid_controller_config():
    from mlops_platform.config.models import ControllerConfig

    settings = ControllerConfig(**server.CONTROLLER_SETTINGS).settings()
    assert settings == server.CONTROLLER_SETTINGS


def test_main_stops_cleanly_on_sigterm(monkeypatch, capsys):
    seen = {}
    banner = server.banner

    def banner_then_signal(platform):
        seen["address"], seen["moto"] = platform.address, platform.moto_address
        threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGTERM)).start()
        return banner(platform)

    monkeypatch.setenv("PORT", "0")
    monkeypatch.setattr(server, "banner", banner_then_signal)
    threads_before = set(threading.enumerate())
    handlers_before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    stdout_before = sys.stdout

    assert server.main([]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert f"base url: http://127.0.0.1:{seen['address'][1]}" in lines
    assert "endpoint: local-churn" in lines
    assert f"search index: {SEARCH_INDEX}" in lines
    assert lines[-1] == "stopped"
    assert refused(seen["address"]) and refused(seen["moto"])
    assert new_threads(threads_before) == []
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers_before
    assert sys.stdout is stdout_before


def test_the_server_process_prints_its_url_and_exits_0_on_ctrl_c(process):
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.startswith("Ctrl-C"):
            break
    base = next((line.split(": ", 1)[1] for line in lines if line.startswith("base url: ")), None)
    assert base and base.startswith("http://127.0.0.1:"), (lines, process.stderr.read() if process.poll() else "")
    assert "endpoint: local-churn" in lines
    assert request(base, "GET", "/local/info")[2]["endpoint"] == ENDPOINT
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert out.splitlines()[-2:] == ["stopping...", "stopped"]
    assert "Traceback" not in err
    assert refused(("127.0.0.1", int(base.rsplit(":", 1)[1])))
