"""The indexer Lambda on moto S3: EventBridge and S3-notification events, reports, metrics, failures."""

from __future__ import annotations

import json

import boto3
import pytest
from mlops_runtime.adapters.embedders import DeterministicEmbedder, EmbedderThrottled
from mlops_runtime.adapters.vector_store import InMemoryVectorStore
from mlops_runtime.domain.search import ConfigurationError, SearchSettings
from mlops_runtime.settings_env import SETTINGS_ENV
from mlops_runtime.handlers import search_indexer
from moto import mock_aws
from lambda_context import LambdaContext
from search_fixtures import DIMENSION, REGION, deletion, document, words_text

SETTINGS = {"docs": {"dimension": DIMENSION, "store": {"kind": "memory"}, "embedder": {"kind": "deterministic"},
                     "chunk_size": 20, "chunk_overlap": 4}}


def eventbridge(key: str, bucket: str = "raw") -> dict:
    return {"version": "0", "id": "e-1", "detail-type": "Object Created", "source": "aws.s3", "account": "123456789012",
            "region": REGION, "resources": [f"arn:aws:s3:::{bucket}"],
            "detail": {"version": "0", "bucket": {"name": bucket}, "object": {"key": key, "size": 10},
                       "reason": "PutObject"}}


def notification(*keys: str, bucket: str = "raw") -> dict:
    return {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                         "s3": {"bucket": {"name": bucket}, "object": {"key": key}}} for key in keys]}


def emitted_metrics(output: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for line in output.splitlines():
        if '"_aws"' in line:
            blob = json.loads(line)
            for definition in blob["_aws"]["CloudWatchMetrics"]:
                for metric in definition["Metrics"]:
                    value = blob[metric["Name"]]
                    found[metric["Name"]] = sum(value) if isinstance(value, list) else value
    return found


@pytest.fixture(scope="module")
def account():
    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        for bucket in ("raw", "artifacts"):
            client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        yield client


@pytest.fixture
def aws(account):
    for bucket in ("raw", "artifacts"):
        for entry in account.list_objects_v2(Bucket=bucket).get("Contents", []):
            account.delete_object(Bucket=bucket, Key=entry["Key"])
    store = InMemoryVectorStore()
    runtime = search_indexer.Runtime(SearchSettings.parse({"indexes": SETTINGS}).indexes, "artifacts", "search-reports/", s3=account,
                                     embedder_factory=lambda s: DeterministicEmbedder(s.dimension),
                                     store_factory=lambda s: store)
    search_indexer.configure(runtime)
    yield account, store, runtime
    search_indexer.configure(None)


def put(client, key, lines):
    client.put_object(Bucket="raw", Key=key, Body=("\n".join(lines) + "\n").encode("utf-8"))


def report_of(client, key):
    return json.loads(client.get_object(Bucket="artifacts", Key=key)["Body"].read())


def test_eventbridge_drop_is_indexed_reported_and_measured(aws, capsys):
    client, store, _ = aws
    put(client, "search/docs/batch-1.jsonl", [document("a", words_text(30, 1)), "oops", document("b", "bee"),
                                              deletion("c")])
    result = search_indexer.handler(eventbridge("search/docs/batch-1.jsonl"), LambdaContext())
    assert result | {"seconds": 0} == {
        "status": "indexed", "index": "docs", "documents": 2, "chunks": 3, "deleted": 1, "rejected": 1, "lines": 4,
        "seconds": 0, "source": "s3://raw/search/docs/batch-1.jsonl",
        "report": "s3://artifacts/search-reports/docs/search/docs/batch-1.jsonl.report.json"}
    assert store.keys("docs") == ["a#0000", "a#0001", "b#0000"]
    report = report_of(client, "search-reports/docs/search/docs/batch-1.jsonl.report.json")
    assert report["errors"][0]["line"] == 2 and report["source"] == "s3://raw/search/docs/batch-1.jsonl"
    metrics = emitted_metrics(capsys.readouterr().out)
    assert metrics == {"DocumentsIndexed": 2, "ChunksIndexed": 3, "DocumentsDeleted": 1, "DocumentsRejected": 1}


def test_the_same_event_twice_is_idempotent(aws):
    client, store, _ = aws
    put(client, "search/docs/x.jsonl", [document("a", words_text(45, 2))])
    search_indexer.handler(eventbridge("search/docs/x.jsonl"), LambdaContext())
    first = {k: store.get("docs", [k])[k] for k in store.keys("docs")}
    search_indexer.handler(eventbridge("search/docs/x.jsonl"), LambdaContext())
    assert {k: store.get("docs", [k])[k] for k in store.keys("docs")} == first


def test_s3_notifications_with_url_encoded_keys(aws):
    client, store, _ = aws
    put(client, "search/docs/my drop+1.jsonl", [document("a", "alpha")])
    put(client, "search/docs/b.jsonl", [document("b", "beta")])
    result = search_indexer.handler(notification("search/docs/my+drop%2B1.jsonl", "search/docs/b.jsonl"),
                                    LambdaContext())
    assert [r["status"] for r in result["results"]] == ["indexed", "indexed"]
    assert result["results"][0]["source"] == "s3://raw/search/docs/my drop+1.jsonl"
    assert store.keys("docs") == ["a#0000", "b#0000"]
    report_of(client, "search-reports/docs/search/docs/my drop+1.jsonl.report.json")


def test_eventbridge_key_with_a_literal_plus_is_found(aws):
    client, store, _ = aws
    put(client, "search/docs/a+b.jsonl", [document("a", "alpha")])
    result = search_indexer.handler(eventbridge("search/docs/a+b.jsonl"), LambdaContext())
    assert result["source"] == "s3://raw/search/docs/a+b.jsonl" and store.keys("docs") == ["a#0000"]


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("search/unknown/x.jsonl", "unknown index 'unknown'"),
        ("search/docs/notes.txt", "not a document drop"),
        ("other/docs/x.jsonl", "not a document drop"),
        ("search/docs.jsonl", "not a document drop"),
        ("search/docs/gone.jsonl", "no longer exists"),
    ],
)
def test_other_objects_are_ignored(aws, key, reason):
    client, store, _ = aws
    result = search_indexer.handler(eventbridge(key), LambdaContext())
    assert result["status"] == "ignored" and reason in result["reason"]
    assert store.keys("docs") == []
    assert client.list_objects_v2(Bucket="artifacts").get("KeyCount") == 0


@pytest.mark.parametrize("event", [{}, {"detail": {}}, {"Records": [{"s3": {}}]}, {"source": "aws.events"}])
def test_malformed_events_are_ignored(aws, event):
    assert search_indexer.handler(event, LambdaContext())["status"] == "ignored"


def test_aws_failures_raise_and_count(aws, capsys):
    client, _, runtime = aws

    class Throttled:
        dimension = DIMENSION

        def embed(self, texts):
            raise EmbedderThrottled("InvokeModel failed after retries: ThrottlingException")

    runtime.embedders["docs"] = Throttled()
    put(client, "search/docs/x.jsonl", [document("a", "alpha")])
    with pytest.raises(EmbedderThrottled):
        search_indexer.handler(eventbridge("search/docs/x.jsonl"), LambdaContext())
    assert emitted_metrics(capsys.readouterr().out) == {"IndexingFailures": 1}
    assert client.list_objects_v2(Bucket="artifacts").get("KeyCount") == 0


def test_without_list_bucket_a_missing_candidate_key_is_access_denied(aws):
    """Without s3:ListBucket S3 answers 403 for a missing key: the next candidate is tried, and a 403
    on the last one is raised (retried by EventBridge), not mistaken for a vanished object."""
    from botocore.exceptions import ClientError

    client, store, runtime = aws
    put(client, "search/docs/a+b.jsonl", [document("a", "alpha")])

    class NoListBucket:
        def __init__(self, inner):
            self.inner, self.asked = inner, []

        def get_object(self, Bucket, Key):
            self.asked.append(Key)
            try:
                return self.inner.get_object(Bucket=Bucket, Key=Key)
            except ClientError as error:
                if error.response["Error"]["Code"] == "NoSuchKey":
                    raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}},
                                      "GetObject") from None
                raise

        def put_object(self, **kwargs):
            return self.inner.put_object(**kwargs)

    runtime.s3 = NoListBucket(client)
    assert search_indexer.handler(eventbridge("search/docs/a+b.jsonl"), LambdaContext())["status"] == "indexed"
    assert runtime.s3.asked == ["search/docs/a b.jsonl", "search/docs/a+b.jsonl"]
    with pytest.raises(ClientError, match="AccessDenied"):
        search_indexer.handler(eventbridge("search/docs/gone.jsonl"), LambdaContext())


def test_missing_bucket_raises(aws):
    put(aws[0], "search/docs/x.jsonl", [document("a", "alpha")])
    with pytest.raises(Exception) as caught:
        search_indexer.handler(eventbridge("search/docs/x.jsonl", bucket="no-such-bucket"), LambdaContext())
    assert "NoSuchBucket" in str(caught.value)


def test_runtime_from_the_environment(monkeypatch):
    search_indexer.configure(None)
    monkeypatch.setenv(SETTINGS_ENV, json.dumps({"indexes": SETTINGS, "report_bucket": "artifacts"}))
    runtime = search_indexer.runtime()
    assert (runtime.report_bucket, runtime.report_prefix, sorted(runtime.settings)) == (
        "artifacts", "search-reports/", ["docs"])
    search_indexer.configure(None)
    monkeypatch.setenv(SETTINGS_ENV, json.dumps({"indexes": SETTINGS}))  # the API's settings: no report bucket
    with pytest.raises(ConfigurationError, match="report_bucket: is not set"):
        search_indexer.runtime()
    search_indexer.configure(None)
