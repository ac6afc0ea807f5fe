"""The bulk indexing command (``python -m mlops_runtime.search.bulk``) on moto S3 and local files."""

from __future__ import annotations

import json
import subprocess
import sys

import boto3
import pytest
from mlops_runtime.settings_env import SETTINGS_ENV
from mlops_runtime.adapters.embedders import DeterministicEmbedder, EmbedderUnavailable
from mlops_runtime.adapters.vector_store import InMemoryVectorStore
from mlops_runtime.search import bulk
from moto import mock_aws
from search_fixtures import DIMENSION, REGION, deletion, document, words_text

SETTINGS = {"docs": {"dimension": DIMENSION, "store": {"kind": "memory"}, "embedder": {"kind": "deterministic"},
                     "filterable": ["category"], "chunk_size": 20, "chunk_overlap": 4},
            "other": {"dimension": DIMENSION, "store": {"kind": "memory"}, "embedder": {"kind": "deterministic"}}}
ENVIRON = {SETTINGS_ENV: json.dumps({"indexes": SETTINGS})}


@pytest.fixture(scope="module")
def s3_account():
    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        for bucket in ("raw", "artifacts"):
            client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        yield client


@pytest.fixture
def s3(s3_account):
    """The module's moto S3 (one account: starting moto costs ~0.5 s), emptied for each test."""
    for bucket in ("raw", "artifacts"):
        for entry in s3_account.list_objects_v2(Bucket=bucket).get("Contents", []):
            s3_account.delete_object(Bucket=bucket, Key=entry["Key"])
    return s3_account


def put(client, key, lines):
    client.put_object(Bucket="raw", Key=key, Body=("\n".join(lines) + "\n").encode("utf-8"))


def run(argv, s3_client=None, store=None, embedder=None, environ=ENVIRON):
    store = store if store is not None else InMemoryVectorStore()
    code = bulk.run(argv, environ=environ, s3_client=s3_client, store=store,
                    embedder=embedder or DeterministicEmbedder(DIMENSION))
    return code, store


def test_indexes_every_object_under_the_prefix_and_writes_the_report(s3, capsys):
    put(s3, "search/docs/2024/a.jsonl", [document("a", words_text(50, 1), category="x"), "broken line"])
    put(s3, "search/docs/b.jsonl", [document("b", "short text"), deletion("zzz")])
    put(s3, "search/other/c.jsonl", [document("c", "belongs to another index")])
    put(s3, "search/docs/old.report.json", ["{}"])
    s3.put_object(Bucket="raw", Key="search/docs/folder/", Body=b"")
    code, store = run(["--index", "docs", "--input", "s3://raw/search/", "--report", "s3://artifacts/bulk/"], s3)
    assert code == 0
    assert [k.split("#")[0] for k in store.keys("docs")] == ["a"] * 3 + ["b"]
    report = json.loads(s3.get_object(Bucket="artifacts", Key="bulk/docs.report.json")["Body"].read())
    assert (report["status"], report["documents"], report["deleted"], report["rejected"], report["sources"]) == (
        "succeeded", 2, 1, 1, 2)
    assert report["errors"][0] | {"reason": ""} == {"line": 2, "field": "", "reason": "",
                                                    "source": "s3://raw/search/docs/2024/a.jsonl"}
    assert sorted(s["reason"] for s in report["skipped_sources"]) == [
        "a report", "documents of index 'other'", "folder marker"]
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["documents"] == 2 and "errors" not in summary


def test_report_to_an_exact_key_and_local_inputs(tmp_path, s3):
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "one.jsonl").write_text(document("a", "alpha") + "\n")
    (folder / "two.jsonl").write_text(document("b", "beta") + "\n" + "{}\n")
    code, store = run(["--index", "docs", "--input", str(folder), "--report", "s3://artifacts/r/run-1/report.json"],
                      s3)
    assert code == 0 and store.keys("docs") == ["a#0000", "b#0000"]
    report = json.loads(s3.get_object(Bucket="artifacts", Key="r/run-1/report.json")["Body"].read())
    assert report["rejected"] == 1 and report["errors"][0]["source"].endswith("two.jsonl")
    code, _ = run(["--index", "docs", "--input", str(folder / "one.jsonl"), "--report", f"{tmp_path / 'out'}/"])
    assert code == 0 and json.loads((tmp_path / "out" / "docs.report.json").read_text())["documents"] == 1


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--index", "docs"],
        ["--input", "s3://raw/search/"],
        ["--index", "docs", "--input", "s3://"],
        ["--index", "docs", "--input", "s3://raw/x", "--report", "s3:///key"],
        ["--index", "docs", "--input", "s3://raw/x", "--unknown", "1"],
    ],
)
def test_bad_arguments_exit_2(argv, capsys):
    assert run(argv)[0] == 2
    assert capsys.readouterr().err


@pytest.mark.parametrize(
    ("environ", "argv"),
    [
        ({}, ["--index", "docs", "--input", "s3://raw/search/docs/"]),
        ({SETTINGS_ENV: "{broken"}, ["--index", "docs", "--input", "s3://raw/search/docs/"]),
        (ENVIRON, ["--index", "nope", "--input", "s3://raw/search/docs/"]),
        (ENVIRON, ["--index", "docs", "--input", "s3://raw/empty/"]),
        (ENVIRON, ["--index", "docs", "--input", "s3://no-such-bucket/search/"]),
        (ENVIRON, ["--index", "docs", "--input", "/no/such/path"]),
    ],
)
def test_unusable_settings_or_inputs_exit_1(s3, environ, argv, tmp_path):
    report = tmp_path / "report.json"
    code, _ = run([*argv, "--report", str(report)], s3, environ=environ)
    assert code == 1
    written = json.loads(report.read_text())
    assert written["status"] == "failed" and written["error"]


def test_embedder_failure_exits_1_with_a_partial_report(s3, tmp_path):
    put(s3, "search/docs/a.jsonl", [document("a", "alpha")])

    class Down:
        dimension = DIMENSION

        def embed(self, texts):
            raise EmbedderUnavailable("InvokeModel failed after retries: ServiceUnavailableException")

    report = tmp_path / "r.json"
    code, _ = run(["--index", "docs", "--input", "s3://raw/search/docs/", "--report", str(report)], s3, embedder=Down())
    assert code == 1
    assert "ServiceUnavailableException" in json.loads(report.read_text())["error"]


def test_unwritable_report_exits_1(s3):
    put(s3, "search/docs/a.jsonl", [document("a", "alpha")])
    code, _ = run(["--index", "docs", "--input", "s3://raw/search/docs/", "--report", "s3://missing-bucket/r.json"],
                  s3)
    assert code == 1


def test_module_entry_point_runs_locally(tmp_path):
    drop = tmp_path / "docs.jsonl"
    drop.write_text(document("a", "alpha beta") + "\nnot json\n")
    env = {**ENVIRON, "PATH": "", "PYTHONPATH": "lambda"}
    completed = subprocess.run([sys.executable, "-m", "mlops_runtime.search.bulk", "--index", "docs", "--input",
                                str(drop)], capture_output=True, text=True, env=env)
    assert completed.returncode == 0, completed.stderr
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    assert (summary["documents"], summary["rejected"], summary["status"]) == (1, 1, "succeeded")
    assert subprocess.run([sys.executable, "-m", "mlops_runtime.search.bulk"], capture_output=True,
                          env=env).returncode == 2


# --- Sharded runs (several processing instances) ------------------------------------------------

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@given(keys=st.lists(st.text(min_size=1, max_size=40), unique=True, max_size=30), count=st.integers(1, 8))
def test_every_key_belongs_to_exactly_one_shard(keys, count):
    shards = [bulk.Shard(index, count) for index in range(count)]
    for key in keys:
        assert sum(shard.owns(key) for shard in shards) == 1


def test_sharded_runs_index_what_one_run_indexes_and_a_retried_shard_adds_nothing(s3):
    for number in range(12):
        put(s3, f"search/docs/part-{number:02d}.jsonl",
            [document(f"d{number}-{line}", words_text(30, number + line)) for line in range(3)])
    _, whole = run(["--index", "docs", "--input", "s3://raw/search/docs/"], s3)
    sharded = InMemoryVectorStore()
    for index in range(3):
        code, _ = run(["--index", "docs", "--input", "s3://raw/search/docs/", "--report", "s3://artifacts/bulk/",
                       "--shard-index", str(index), "--shard-count", "3"], s3, store=sharded)
        assert code == 0
    assert sharded.keys("docs") == whole.keys("docs")
    reports = [json.loads(s3.get_object(Bucket="artifacts", Key=f"bulk/docs.shard-{index}-of-3.report.json")
                          ["Body"].read()) for index in range(3)]
    assert sum(report["sources"] for report in reports) == 12  # every object once, across the shards
    assert sum(report["documents"] for report in reports) == 36
    assert all(report["sources"] > 0 for report in reports)  # 12 keys spread over 3 shards
    before = {key: sharded.get("docs", [key]) for key in sharded.keys("docs")}
    code, _ = run(["--index", "docs", "--input", "s3://raw/search/docs/", "--shard-index", "1", "--shard-count", "3"],
                  s3, store=sharded)  # the retry of a shard that failed half-way
    assert code == 0
    assert {key: sharded.get("docs", [key]) for key in sharded.keys("docs")} == before


def test_a_shard_that_owns_no_object_succeeds_and_the_shard_comes_from_sagemakers_resource_config(s3, tmp_path):
    put(s3, "search/docs/only.jsonl", [document("a", "alpha")])
    owner = next(index for index in range(4) if bulk.Shard(index, 4).owns("search/docs/only.jsonl"))
    idle = (owner + 1) % 4
    code, store = run(["--index", "docs", "--input", "s3://raw/search/docs/", "--shard-index", str(idle),
                       "--shard-count", "4"], s3)
    assert code == 0 and store.keys("docs") == []
    config = tmp_path / "resourceconfig.json"
    config.write_text(json.dumps({"current_host": "algo-2", "hosts": ["algo-3", "algo-1", "algo-2"]}))
    assert bulk.shard_of_this_instance(config) == bulk.Shard(1, 3)
    assert bulk.shard_of_this_instance(tmp_path / "absent.json") == bulk.Shard(0, 1)
    assert run(["--index", "docs", "--input", "s3://raw/x", "--shard-index", "1"], s3)[0] == 2
    assert run(["--index", "docs", "--input", "s3://raw/x", "--shard-index", "3", "--shard-count", "3"], s3)[0] == 2
