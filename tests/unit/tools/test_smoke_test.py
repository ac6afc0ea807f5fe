"""The delivery pipeline's smoke test: which answers pass, and SigV4-signed requests (loopback)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from moto import mock_aws

from mlops_platform.tools import smoke_test
from mlops_platform.tools.smoke_test import Answer, run_checks

API = "https://abc.execute-api.eu-west-1.amazonaws.com/live/"


def answers(invocation=Answer(200, {"p": 1}), experiment=Answer(200, {"arms": [{"arm": "champion"}]}),
            feedback=Answer(202, {"status": "accepted", "joined": False})):
    table = {"invocation": invocation, "experiment": experiment, "feedback": feedback}

    def send(method, url, body, headers):
        kind = "feedback" if url.endswith("/v1/feedback") else "experiment" if "/v1/experiments/" in url else "invocation"
        send.calls.append((kind, method, url, body, headers))
        return table[kind]
    send.calls = []
    return send


def test_a_healthy_environment_passes_and_the_requests_are_right():
    send = answers()
    assert run_checks(API, "churn", send) == []
    kinds = {c[0]: c for c in send.calls}
    assert kinds["invocation"][2] == "https://abc.execute-api.eu-west-1.amazonaws.com/live/v1/endpoints/churn/invocations"
    assert kinds["invocation"][4] == {"Content-Type": "text/csv", "X-Smoke-Test": "true"}
    record = json.loads(kinds["feedback"][3])
    assert record["inference_id"].startswith("smoke-") and 0 <= record["reward"] <= 1


def test_no_model_deployed_yet_is_still_a_pass():
    assert run_checks(API, "churn", answers(invocation=Answer(503, {"error": "model_unavailable"}))) == []


@pytest.mark.parametrize("kwargs,check", [
    ({"invocation": Answer(403, {"message": "Missing Authentication Token"})}, "invocation: HTTP 403"),
    ({"invocation": Answer(503, {"error": "features_unavailable"})}, "invocation: HTTP 503"),
    ({"invocation": Answer(500, {"error": "internal_error"})}, "invocation: HTTP 500"),
    ({"experiment": Answer(404, {"error": "unknown_endpoint"})}, "experiment: HTTP 404"),
    ({"feedback": Answer(202, {"joined": True})}, "feedback: HTTP 202"),
    ({"feedback": Answer(422, {"errors": []})}, "feedback: HTTP 422"),
])
def test_anything_else_fails_with_one_line_per_check(kwargs, check):
    failures = run_checks(API, "churn", answers(**kwargs))
    assert len(failures) == 1 and failures[0].startswith(check)


def test_network_errors_fail_the_check():
    def send(*_):
        raise OSError("connection refused")
    assert len(run_checks(API, "churn", send)) == 3


def test_main_exit_codes(capsys):
    assert smoke_test.main(["--api-url", API, "--endpoint", "churn"], send=answers()) == 0
    assert "smoke test passed" in capsys.readouterr().out
    assert smoke_test.main(["--api-url", API, "--endpoint", "churn"],
                           send=answers(invocation=Answer(403, {}))) == 1
    assert "smoke test failed: invocation" in capsys.readouterr().err


class Recorder(BaseHTTPRequestHandler):
    seen: list = []

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        Recorder.seen.append((self.path, dict(self.headers), self.rfile.read(length)))
        self.send_response(202)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"joined": false}')

    def log_message(self, *_):
        pass


def test_requests_are_sigv4_signed_with_the_assumed_role():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with mock_aws():
            session = boto3.Session(region_name="eu-west-1")
            send = smoke_test.signed_sender("eu-west-1", "arn:aws:iam::123456789012:role/mlops-dev-api-smoke-test",
                                            session=session)
            url = f"http://127.0.0.1:{server.server_address[1]}/live/v1/feedback"
            answer = send("POST", url, b'{"x": 1}', {"Content-Type": "application/json"})
    finally:
        server.shutdown()
        server.server_close()
    assert answer == Answer(202, {"joined": False})
    path, headers, body = Recorder.seen[-1]
    assert path == "/live/v1/feedback" and body == b'{"x": 1}'
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=")
    assert "/eu-west-1/execute-api/aws4_request" in headers["Authorization"]
    assert headers["X-Amz-Security-Token"]  # temporary credentials of the assumed role
