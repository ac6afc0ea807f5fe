"""Smoke test of a deployed environment's API, run by the delivery pipeline after each stage.

    python -m mlops_platform.tools.smoke_test --api-url URL --endpoint NAME [--role-arn ARN] [--region R]

Assumes ``--role-arn`` (the environment's ``<prefix>-api-smoke-test`` role, trusted by the tooling
account) when given, signs every request with SigV4 (``execute-api``), and checks:

- ``POST /v1/endpoints/<endpoint>/invocations`` answers 200, or 503 ``model_unavailable`` (the
  platform answered, but no model is approved and deployed yet: a fresh environment). The request
  carries ``X-Smoke-Test: true``: coming from the smoke-test role, the inference API serves it
  but counts it in no experiment (the prediction is recorded with ``smoke_test``, never credited);
- ``GET /v1/experiments/<endpoint>`` answers 200 with the experiment's arms;
- ``POST /v1/feedback`` with one record for a random inference id answers 202 (``joined`` false).

Anything else (4xx from authorization or validation, 5xx, timeouts) fails: exit 1 with one line
per failed check. Standard library + boto3/botocore only.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TIMEOUT_S = 30
SMOKE_TEST_HEADER = "X-Smoke-Test"  # the inference API's mark of traffic it must not count


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any


Send = Callable[[str, str, bytes | None, dict[str, str]], Answer]


def signed_sender(region: str, role_arn: str | None, session: Any | None = None) -> Send:
    """A sender signing with SigV4 for ``execute-api`` (after assuming ``role_arn`` when given)."""
    import boto3
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    session = session or boto3.Session(region_name=region)
    if role_arn:
        assumed = session.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="platform-smoke-test")
        c = assumed["Credentials"]
        credentials = Credentials(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])
    else:
        credentials = session.get_credentials()

    def send(method: str, url: str, body: bytes | None, headers: dict[str, str]) -> Answer:
        request = AWSRequest(method=method, url=url, data=body, headers=headers)
        SigV4Auth(credentials, "execute-api", region).add_auth(request)
        prepared = urllib.request.Request(url, data=body, method=method, headers=dict(request.headers.items()))
        try:
            with urllib.request.urlopen(prepared, timeout=TIMEOUT_S) as response:  # noqa: S310 - https URL from the stack
                raw, status = response.read(), response.status
        except urllib.error.HTTPError as error:
            raw, status = error.read(), error.code
        try:
            parsed = json.loads(raw.decode("utf-8")) if raw else None
        except (UnicodeDecodeError, ValueError):
            parsed = raw[:200]
        return Answer(status, parsed)

    return send


def run_checks(api_url: str, endpoint: str, send: Send) -> list[str]:
    """The failed checks, one line each (empty: the environment passed)."""
    base = api_url.rstrip("/")
    failures: list[str] = []

    def check(name: str, method: str, path: str, payload: Any, ok: Callable[[Answer], bool],
              content_type: str = "application/json", extra_headers: dict[str, str] | None = None) -> Answer | None:
        body = payload if isinstance(payload, bytes) or payload is None else json.dumps(payload).encode("utf-8")
        headers = {**({"Content-Type": content_type} if body else {}), **(extra_headers or {})}
        try:
            answer = send(method, f"{base}{path}", body, headers)
        except Exception as error:  # network, DNS, TLS, credentials: the check failed
            failures.append(f"{name}: {type(error).__name__}: {error}")
            return None
        if not ok(answer):
            failures.append(f"{name}: HTTP {answer.status} {json.dumps(answer.body, default=str)[:300]}")
        return answer

    def model_answered(answer: Answer) -> bool:
        return answer.status == 200 or (
            answer.status == 503 and isinstance(answer.body, dict) and answer.body.get("error") == "model_unavailable")

    check("invocation", "POST", f"/v1/endpoints/{endpoint}/invocations", b"0.5,0.5,0.5", model_answered,
          content_type="text/csv", extra_headers={SMOKE_TEST_HEADER: "true"})
    check("experiment", "GET", f"/v1/experiments/{endpoint}", None,
          lambda a: a.status == 200 and isinstance(a.body, dict) and bool(a.body.get("arms")))
    inference_id = f"smoke-{uuid.uuid4().hex}"
    check("feedback", "POST", "/v1/feedback",
          {"inference_id": inference_id, "feedback_type": "smoke-test", "reward": 0},
          lambda a: a.status == 202 and isinstance(a.body, dict) and a.body.get("joined") is False)
    return failures


def main(argv: list[str] | None = None, send: Send | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--endpoint", required=True, help="public endpoint name of the inference API")
    parser.add_argument("--role-arn", help="role to assume in the environment's account")
    parser.add_argument("--region", default=None)
    args = parser.parse_args(argv)
    region = args.region or args.api_url.split(".execute-api.")[-1].split(".")[0]
    try:
        sender = send or signed_sender(region, args.role_arn)
    except Exception as error:
        print(f"smoke test: cannot get credentials: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    failures = run_checks(args.api_url, args.endpoint, sender)
    for line in failures:
        print(f"smoke test failed: {line}", file=sys.stderr)
    if not failures:
        print(f"smoke test passed: {args.api_url} ({args.endpoint})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
