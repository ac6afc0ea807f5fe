"""A rehearsal of an A/B experiment against the local platform (``python -m mlops_platform.local.server``).

    python -m mlops_platform.local.demo [--base-url URL] [--requests N] [--batch N] [--seed N]
                                        [--rates champion=0.2,challenger=0.5] [--report-dir DIR]
    python -m mlops_platform.local.demo --aa     # an A/A run on a private in-process platform

In batches: sends invocations with subject ids to ``POST /v1/endpoints/local-churn/invocations``,
lets each served prediction convert with its arm's rate (the challenger converts twice as often by
default), sends the conversions as feedback (``reward`` 1, ``label`` 1) in batches to ``POST
/v1/feedback``, and runs the real experiment controller once (``POST /local/controller/local-churn``,
the local stand-in for its schedule). It prints the weights moving and stops when the controller
decides (a winner, or no meaningful difference); then it shows that the kept arm gets all traffic, the experiment's summary
(``GET /v1/experiments/local-churn``), the controller's SNS notification and one search.

The decision report (Markdown and HTML with its plots) is written to ``--report-dir`` (default
``build/experiment-reports/<ab or aa>``). ``--aa``: both arms convert at the same rate (10 %) on a
fresh platform of its own (in this process, on a free loopback port): the test ends in "no meaningful
difference" and the champion is kept.

Exit code: 0 when the experiment was decided, 1 when ``--requests`` ran out first, 2 when the server
cannot be reached or answers unexpectedly. Standard library only, apart from ``--aa`` (the platform).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import json
import os
import random
import sys
import urllib.parse
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_RATES = {"champion": 0.2, "challenger": 0.5}
DEFAULT_REQUESTS = 4000
DEFAULT_BATCH = 100
DEFAULT_SEED = 7
AA_RATES = {"champion": 0.1, "challenger": 0.1}
AA_REQUESTS = 8000
FEEDBACK_BATCH = 500  # records per POST /v1/feedback (the API's default maximum)
SEARCH_QUERY = "how do I reset my password"
TIMEOUT_SECONDS = 30


class DemoError(Exception):
    """The server is unreachable or answered something the demo cannot go on from."""


@dataclass
class Batch:
    number: int
    requests: int
    served: dict[str, int]
    conversions: dict[str, int]
    controller: dict[str, Any]
    weights_before: dict[str, float]
    weights_after: dict[str, float]


@dataclass
class DemoResult:
    endpoint: str
    rates: dict[str, float]
    batches: list[Batch] = field(default_factory=list)
    winner: str | None = None
    outcome: str | None = None  # winner | no_meaningful_difference | stopped_at_limit once decided
    kept: str | None = None
    decided_after: int | None = None  # invocations sent when the winner was declared
    served: dict[str, int] = field(default_factory=dict)
    conversions: dict[str, int] = field(default_factory=dict)
    feedback: dict[str, int] = field(default_factory=dict)  # accepted, joined, credited
    after_decision: dict[str, int] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    search: list[dict[str, Any]] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(self.served.values())


class Client:
    """JSON over one kept-alive HTTP connection (reopened once if the server closed it)."""

    def __init__(self, base_url: str, timeout: float = TIMEOUT_SECONDS) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme != "http" or not parsed.hostname:
            raise DemoError(f"--base-url must be http://host:port, got {base_url!r}")
        self.host, self.port = parsed.hostname, parsed.port or 80
        self.prefix = parsed.path.rstrip("/")
        self.timeout = timeout
        self._connection: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def request(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
        payload = None if body is None else json.dumps(body).encode("utf-8")
        sent = {"Content-Type": "application/json", "Accept": "application/json", **(headers or {})}
        for attempt in (1, 2):
            if self._connection is None:
                self._connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self._connection.request(method, self.prefix + path, body=payload, headers=sent)
                response = self._connection.getresponse()
                data = response.read()
            except (ConnectionError, http.client.HTTPException, OSError) as error:
                self.close()
                if attempt == 2 or isinstance(error, (ConnectionRefusedError, TimeoutError)):
                    raise DemoError(f"{method} {path}: {error!r}") from error
                continue
            if response.getheader("Connection", "").lower() == "close":
                self.close()
            answer_headers = {name.lower(): value for name, value in response.getheaders()}
            try:
                decoded = json.loads(data) if data else None
            except ValueError:
                decoded = data.decode("utf-8", "replace")
            return response.status, answer_headers, decoded
        raise AssertionError("unreachable")

    def expect(self, status: int | tuple[int, ...], method: str, path: str, body: Any = None,
               headers: dict[str, str] | None = None) -> tuple[dict[str, str], Any]:
        got, answer_headers, answer = self.request(method, path, body, headers)
        wanted = (status,) if isinstance(status, int) else status
        if got not in wanted:
            raise DemoError(f"{method} {path}: HTTP {got} {answer!r}")
        return answer_headers, answer


def parse_rates(text: str) -> dict[str, float]:
    rates = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        arm, _, value = part.partition("=")
        try:
            rate = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad rate {part!r}: use arm=0.05") from None
        if not arm or not 0 <= rate <= 1:
            raise argparse.ArgumentTypeError(f"bad rate {part!r}: use arm=<0..1>")
        rates[arm.strip()] = rate
    if len(rates) < 2:
        raise argparse.ArgumentTypeError("give a rate for every arm, e.g. champion=0.2,challenger=0.5")
    return rates


def _weights(values: Any) -> dict[str, float]:
    return {str(k): float(v) for k, v in values.items()} if isinstance(values, dict) else {}


def _shares(weights: dict[str, float]) -> str:
    total = sum(weights.values()) or 1.0
    return ", ".join(f"{arm} {weight / total:.2f}" for arm, weight in weights.items())


def _send_feedback(client: Client, records: list[dict[str, Any]], result: DemoResult) -> None:
    for start in range(0, len(records), FEEDBACK_BATCH):
        chunk = records[start:start + FEEDBACK_BATCH]
        _, answer = client.expect(202, "POST", "/v1/feedback", {"records": chunk})
        result.feedback["accepted"] = result.feedback.get("accepted", 0) + answer["accepted"]
        for entry in answer["results"]:
            result.feedback["joined"] = result.feedback.get("joined", 0) + int(bool(entry["joined"]))
            result.feedback["credited"] = result.feedback.get("credited", 0) + int(bool(entry["credited"]))


def _invoke(client: Client, endpoint: str, subject: str, rng: random.Random) -> tuple[str, str]:
    features = [rng.randrange(1, 72), round(rng.uniform(10, 120), 2), rng.randrange(0, 6)]
    headers, _ = client.expect(200, "POST", f"/v1/endpoints/{endpoint}/invocations",
                               {"instances": [features]}, {"X-Subject-Id": subject})
    return headers["x-variant"], headers["x-inference-id"]


def run(base_url: str, *, requests: int = DEFAULT_REQUESTS, batch: int = DEFAULT_BATCH,
        seed: int = DEFAULT_SEED, rates: dict[str, float] | None = None,
        out: TextIO | None = None) -> DemoResult:
    """Run the rehearsal against ``base_url``; raises :class:`DemoError` if the server misbehaves."""
    out = out or sys.stdout
    rates = dict(DEFAULT_RATES if rates is None else rates)
    rng = random.Random(seed)
    client = Client(base_url)

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    try:
        _, info = client.expect(200, "GET", "/local/info")
        endpoint, index = info["endpoint"], info["search_index"]
        if set(rates) != set(info["variants"]):
            raise DemoError(f"rates name {sorted(rates)}; the endpoint's arms are {sorted(info['variants'])}")
        result = DemoResult(endpoint, rates, served=dict.fromkeys(rates, 0),
                            conversions=dict.fromkeys(rates, 0),
                            feedback={"accepted": 0, "joined": 0, "credited": 0})
        best = max(rates, key=rates.__getitem__)
        say(f"endpoint: {endpoint}   conversion rates: "
            + ", ".join(f"{arm} {rate:.1%}" for arm, rate in rates.items()) + f"   (seed {seed})")
        _, summary = client.expect(200, "GET", f"/v1/experiments/{endpoint}")
        weights = _weights(summary.get("weights"))
        decided = summary.get("decision")
        if decided:
            result.winner, result.outcome = decided.get("winner"), decided.get("outcome")
            result.kept = decided.get("kept_arm")
            result.decided_after = 0
            say(f"this experiment was decided by an earlier run ({result.outcome}, {result.kept} kept): no new "
                "batches; restart the server for a fresh experiment")
        else:
            say(f"start weights: {_shares(weights)}")

        number = 0
        while result.requests < requests and result.outcome is None:
            number += 1
            size = min(batch, requests - result.requests)
            served = dict.fromkeys(rates, 0)
            converted = dict.fromkeys(rates, 0)
            records = []
            for _ in range(size):
                subject = f"customer-{rng.randrange(1_000_000):06d}"
                arm, inference_id = _invoke(client, endpoint, subject, rng)
                served[arm] = served.get(arm, 0) + 1
                if rng.random() < rates.get(arm, 0.0):
                    converted[arm] = converted.get(arm, 0) + 1
                    records.append({"inference_id": inference_id, "feedback_type": "conversion", "reward": 1,
                                    "label": 1, "subject_id": subject})
            for arm in rates:
                result.served[arm] += served.get(arm, 0)
                result.conversions[arm] += converted.get(arm, 0)
            if records:
                _send_feedback(client, records, result)
            _, outcome = client.expect(200, "POST", f"/local/controller/{endpoint}")
            after = _weights(outcome.get("weights")) or weights
            result.batches.append(Batch(number, size, served, converted, outcome, weights, after))
            status = outcome.get("status")
            say(f"batch {number:2}: {size} requests ("
                + ", ".join(f"{arm} {served.get(arm, 0)}" for arm in rates) + "), conversions ("
                + ", ".join(f"{arm} {converted.get(arm, 0)}" for arm in rates)
                + f") -> controller {status}: {_shares(after)}")
            if status not in ("moved", "waiting", "decided", "finished"):
                say(f"          {outcome.get('reason')}")
            weights = after
            if status in ("decided", "finished"):
                result.winner, result.outcome = outcome.get("winner"), outcome.get("outcome")
                result.kept = outcome.get("kept_arm")
                result.decided_after = result.requests

        if result.outcome is None:
            say(f"no decision after {result.requests} requests; try more --requests")
        else:
            after = f" after {result.decided_after} requests" if result.decided_after else ""
            if result.winner is not None:
                say(f"winner: {result.winner}{after}"
                    + ("" if result.winner == best else f" -- not the better arm ({best})"))
            else:
                say(f"{result.outcome.replace('_', ' ')}{after}: {result.kept} kept")
            after_size = max(20, batch // 4)
            result.after_decision = dict.fromkeys(rates, 0)
            for _ in range(after_size):
                arm, _ = _invoke(client, endpoint, f"customer-{rng.randrange(1_000_000):06d}", rng)
                result.after_decision[arm] = result.after_decision.get(arm, 0) + 1
            say(f"after the decision: {result.after_decision.get(result.kept, 0)} of {after_size} requests "
                f"served by {result.kept}")

        _, result.summary = client.expect(200, "GET", f"/v1/experiments/{endpoint}")
        say(f"GET /v1/experiments/{endpoint}:")
        for arm in result.summary.get("arms", []):
            say(f"  {arm['arm']:<11} invocations {arm['invocations']:>5}  "
                f"feedback {arm['feedback_count']:>4}  "
                f"posterior mean {arm.get('posterior_mean', 0):.4f}  "
                f"P(best) {arm.get('probability_best', 0):.3f}  weight {arm['weight']:.2f}")
        decision = result.summary.get("decision")
        say(f"  decision: {decision.get('outcome')}, {decision.get('kept_arm')} kept ({decision.get('reason')})"
            if decision else "  decision: none yet")
        say(f"feedback: {result.feedback['accepted']} accepted, {result.feedback['joined']} joined, "
            f"{result.feedback['credited']} credited")

        status, _, answer = client.request("GET", "/local/notifications")
        if status == 200 and isinstance(answer, dict):
            result.notifications = answer.get("messages", [])
            for message in result.notifications:
                say(f"notification: experiment {message.get('experiment')} {message.get('outcome', '?')}, "
                    f"{message.get('kept_arm', '?')} kept (model package {message.get('model_package_arn')})")

        _, found = client.expect(200, "POST", f"/v1/search/{index}", {"query": SEARCH_QUERY, "top_k": 3})
        result.search = found.get("results", [])
        say(f"search {index!r} for {SEARCH_QUERY!r}:")
        for hit in result.search:
            say(f"  {hit['score']:.3f}  {hit['id']}  {hit.get('text', '')[:80]}")
        return result
    finally:
        client.close()


def write_report(result: DemoResult, directory: Path, out: TextIO | None = None) -> tuple[Path, Path]:
    """The decision report of the run's final summary (``mlops_platform.tools.experiment_report``)."""
    from mlops_platform.tools.experiment_report import write_report as write

    paths = write(result.summary, directory)
    print(f"decision report: {paths[1]} (and {paths[0].name})", file=out or sys.stdout, flush=True)
    return paths


def run_aa(*, requests: int = AA_REQUESTS, batch: int = DEFAULT_BATCH, seed: int = DEFAULT_SEED,
           report_dir: Path | None = None, out: TextIO | None = None) -> DemoResult:
    """An A/A run (``AA_RATES``) on a private local platform started for it and stopped after."""
    from mlops_platform.local.server import LocalPlatform

    out = out or sys.stdout
    print("A/A: both arms convert at 10 %; a private local platform for this run", file=out, flush=True)
    # the handlers' metric documents (printed, as in Lambda) and Powertools' warning about a run
    # without metrics would drown the demo's lines
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), LocalPlatform(0) as platform:
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        result = run(platform.base_url, requests=requests, batch=batch, seed=seed, rates=AA_RATES, out=out)
    if report_dir is not None:
        write_report(result, report_dir, out)
    return result


def main(argv: list[str] | None = None) -> int:
    port = os.environ.get("PORT") or "8080"
    parser = argparse.ArgumentParser(prog="python -m mlops_platform.local.demo",
                                     description="A/B experiment rehearsal against the local platform.")
    parser.add_argument("--base-url", default=f"http://127.0.0.1:{port}",
                        help="the local server (default: http://127.0.0.1:$PORT, PORT defaulting to 8080)")
    parser.add_argument("--requests", type=int, default=DEFAULT_REQUESTS,
                        help="most invocations to send before giving up on a decision "
                             f"(default {DEFAULT_REQUESTS})")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH,
                        help=f"invocations between two controller runs (default {DEFAULT_BATCH})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of subjects and conversions")
    parser.add_argument("--aa", action="store_true",
                        help="an A/A run (both arms at 10 %%) on a private in-process platform instead")
    parser.add_argument("--report-dir", type=Path, default=None,
                        help="where the decision report goes (default build/experiment-reports/ab or /aa)")
    parser.add_argument("--rates", type=parse_rates, default=DEFAULT_RATES,
                        help="conversion rate per arm (default champion=0.2,challenger=0.5)")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.batch < 1:
        parser.error("--requests and --batch must be positive")
    report_dir = args.report_dir or REPO_ROOT / "build" / "experiment-reports" / ("aa" if args.aa else "ab")
    try:
        if args.aa:
            requests = args.requests if args.requests != DEFAULT_REQUESTS else AA_REQUESTS
            result = run_aa(requests=requests, batch=args.batch, seed=args.seed, report_dir=report_dir)
        else:
            result = run(args.base_url, requests=args.requests, batch=args.batch, seed=args.seed,
                         rates=args.rates)
            write_report(result, report_dir)
    except DemoError as error:
        print(f"demo failed: {error}", file=sys.stderr)
        print("is the local server running? start it with `make local` "
              "(python -m mlops_platform.local.server) and pass its base url with --base-url",
              file=sys.stderr)
        return 2
    return 0 if result.outcome else 1


if __name__ == "__main__":
    sys.exit(main())
