"""``adapters.in_memory.InMemoryS3Objects`` answers as ``S3Objects`` over moto's S3 (the lifecycle
simulation runs the monitoring launcher and the retraining trigger on it)."""

from __future__ import annotations

import gzip

import boto3
from moto import mock_aws

from mlops_runtime.adapters.in_memory import InMemoryS3Objects
from mlops_runtime.adapters.monitoring_inputs import S3Objects

KEYS = ["capture/ep/champion/2026/11/02/00/a.jsonl", "capture/ep/champion/2026/11/02/01/b.jsonl",
        "capture/ep/challenger/2026/11/02/00/c.jsonl", "capture/ep/top.jsonl", "capture/epx/other/k",
        "ground-truth/2026/11/02/00/f-1", "ground-truth/2026/11/02/00/f-2", "ground-truth/2026/11/03/10/f-3"]
QUERIES = [("list_folders", "capture/ep/"), ("list_folders", "capture/"), ("list_folders", "capture/ep/champion/2026/"),
           ("list_folders", "nothing/"), ("list_keys", "capture/ep/"), ("list_keys", "capture/ep"),
           ("list_keys", "ground-truth/2026/11/02/00/"), ("list_keys", "ground-truth/2026/11/04/")]


def answers(objects) -> list:
    for n, key in enumerate(KEYS):
        body = f"body {n}".encode()
        objects.put_object("bucket", key, gzip.compress(body) if key.endswith("f-2") else body)
    found = [getattr(objects, method)("bucket", prefix) for method, prefix in QUERIES]
    return found + [objects.get_object("bucket", key) for key in KEYS]


def test_the_in_memory_objects_answer_as_s3_does():
    with mock_aws():
        client = boto3.client("s3", region_name="eu-west-1")
        client.create_bucket(Bucket="bucket", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        on_moto = answers(S3Objects(client, page_size=2))  # pages of two: the adapter's paging too
    assert answers(InMemoryS3Objects()) == on_moto
    assert on_moto[0] == ["capture/ep/challenger/", "capture/ep/champion/"] and on_moto[7] == []
    assert on_moto[len(QUERIES) + 6] == b"body 6"  # gzip (as Firehose may write it) read back plain
