"""ingest(): validate the whole batch, then write; and its command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlops_runtime.features import ingest as ingest_module
from mlops_runtime.features import store as store_module
from mlops_runtime.features.ingest import IngestResult, IngestWriteError, ingest, main
from mlops_runtime.features.schema import InvalidBatch
from mlops_runtime.features.store import InMemoryFeatureStore

REPO_ROOT = Path(__file__).resolve().parents[3]
NOW = "2024-05-01T12:00:00Z"


def customer(identifier, **values):
    return {"customer_id": identifier, "event_time": NOW, **values}


class FlakyWriter:
    """Writes to a fake store, failing on the ``fail_at``-th call (0-based)."""

    def __init__(self, store, fail_at):
        self.store, self.fail_at, self.calls = store, fail_at, 0

    def put_record(self, feature_group_name, record, target_stores):
        if self.calls == self.fail_at:
            raise RuntimeError("AccessDenied")
        self.calls += 1
        self.store.put_record(feature_group_name, record, target_stores)


# --- ingest() --------------------------------------------------------------------------------


def test_ingest_writes_every_record(customers):
    store = InMemoryFeatureStore([customers])
    result = ingest(customers, [customer("a", age=1), customer("b", balance=2.5)], store)
    assert result == IngestResult(written=2)
    assert store.get_record("customers", "a")["age"] == "1"
    assert store.get_record("customers", "b")["balance"] == "2.5"


def test_one_bad_record_means_nothing_is_written(customers):
    store = InMemoryFeatureStore([customers])
    batch = [customer("a"), customer("b"), customer("c", age="old"), customer("d")]
    with pytest.raises(InvalidBatch) as caught:
        ingest(customers, batch, store)
    assert [(e.index, e.feature) for e in caught.value.errors] == [(2, "age")]
    assert store.offline_records("customers") == []
    assert store.get_record("customers", "a") is None


def test_ingest_passes_target_stores(customers):
    store = InMemoryFeatureStore([customers])
    ingest(customers, [customer("a")], store, target_stores=["OfflineStore"])
    assert store.get_record("customers", "a") is None
    assert len(store.offline_records("customers")) == 1


def test_bad_target_stores_are_rejected_before_writing(customers):
    store = InMemoryFeatureStore([customers])
    with pytest.raises(ValueError, match="target stores"):
        ingest(customers, [customer("a")], store, target_stores=["S3"])
    assert store.offline_records("customers") == []


def test_empty_batch_writes_nothing(customers):
    assert ingest(customers, [], InMemoryFeatureStore([customers])).written == 0


def test_write_failure_reports_how_many_were_written(customers):
    store = InMemoryFeatureStore([customers])
    with pytest.raises(IngestWriteError) as caught:
        ingest(customers, [customer(c) for c in "abcd"], FlakyWriter(store, fail_at=2))
    assert (caught.value.written, caught.value.total) == (2, 4)
    assert "after 2 of 4 record(s) were written: AccessDenied" in str(caught.value)
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert [r["customer_id"] for r in store.offline_records("customers")] == ["a", "b"]


# --- command line ----------------------------------------------------------------------------


@pytest.fixture
def schema_file(tmp_path, customers_dict):
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(customers_dict))
    return str(path)


def jsonl(tmp_path, *lines):
    path = tmp_path / "records.jsonl"
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return str(path)


def test_cli_writes_and_prints_the_count(tmp_path, schema_file, customers, capsys):
    store = InMemoryFeatureStore([customers])
    records = jsonl(tmp_path, customer("a", age=1), "", customer("b", segment="café"))
    assert main(["--schema", schema_file, "--input", records], writer=store) == 0
    assert capsys.readouterr().out == "wrote 2 record(s) to feature group 'customers'\n"
    assert store.get_record("customers", "b")["segment"] == "café"


def test_cli_target_stores(tmp_path, schema_file, customers):
    store = InMemoryFeatureStore([customers])
    records = jsonl(tmp_path, customer("a"))
    assert (
        main(["--schema", schema_file, "--input", records, "--target-stores", "OfflineStore"], writer=store)
        == 0
    )
    assert store.get_record("customers", "a") is None
    assert len(store.offline_records("customers")) == 1


def test_cli_invalid_records_exit_2_and_write_nothing(tmp_path, schema_file, customers, capsys):
    store = InMemoryFeatureStore([customers])
    records = jsonl(
        tmp_path,
        customer("a"),
        "",  # blank lines are skipped but still counted
        customer("b", age=True),
        customer("c"),
        {"event_time": NOW},
        [1, 2],
    )
    assert main(["--schema", schema_file, "--input", records], writer=store) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "line 3: feature 'age': expected Integral, got boolean True",
        "line 5: feature 'customer_id': missing: the record identifier is required",
        "line 6: expected an object mapping feature names to values, got list",
        "3 of 5 record(s) invalid; nothing written",
    ]
    assert store.offline_records("customers") == []


def test_cli_bad_json_names_the_line(tmp_path, schema_file, customers, capsys):
    store = InMemoryFeatureStore([customers])
    records = jsonl(tmp_path, customer("a"), '{"customer_id": "b",', customer("c"), "nope")
    assert main(["--schema", schema_file, "--input", records], writer=store) == 2
    assert capsys.readouterr().err.splitlines() == [
        "line 2: invalid JSON at column 21: Expecting property name enclosed in double quotes",
        "line 4: invalid JSON at column 1: Expecting value",
    ]
    assert store.offline_records("customers") == []


def test_cli_dry_run_validates_without_writing(tmp_path, schema_file, monkeypatch, capsys):
    def no_writer(*args, **kwargs):
        raise AssertionError("dry run must not create a writer")

    monkeypatch.setattr(store_module, "Boto3FeatureStoreWriter", no_writer)
    records = jsonl(tmp_path, customer("a"), customer("b"))
    assert main(["--schema", schema_file, "--input", records, "--dry-run"]) == 0
    assert (
        capsys.readouterr().out
        == "2 record(s) valid for feature group 'customers'; dry run, nothing written\n"
    )


def test_cli_dry_run_still_reports_invalid_records(tmp_path, schema_file, capsys):
    records = jsonl(tmp_path, customer("a", balance="lots"))
    assert main(["--schema", schema_file, "--input", records, "--dry-run"]) == 2
    assert "line 1: feature 'balance': expected Fractional, got 'lots'" in capsys.readouterr().err


def test_cli_uses_the_boto3_writer_by_default(tmp_path, schema_file, customers, monkeypatch, capsys):
    store = InMemoryFeatureStore([customers])
    monkeypatch.setattr(store_module, "Boto3FeatureStoreWriter", lambda: store)
    assert main(["--schema", schema_file, "--input", jsonl(tmp_path, customer("a"))]) == 0
    assert store.get_record("customers", "a") is not None


def test_cli_write_failure_exits_1(tmp_path, schema_file, customers, capsys):
    writer = FlakyWriter(InMemoryFeatureStore([customers]), fail_at=1)
    records = jsonl(tmp_path, customer("a"), customer("b"), customer("c"))
    assert main(["--schema", schema_file, "--input", records], writer=writer) == 1
    assert capsys.readouterr().err == (
        "error: writing record 1 failed after 1 of 3 record(s) were written: AccessDenied\n"
    )


def test_cli_reads_stdin(schema_file, customers, monkeypatch, capsys):
    import io

    store = InMemoryFeatureStore([customers])
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(customer("a")) + "\n"))
    assert main(["--schema", schema_file, "--input", "-"], writer=store) == 0
    assert store.get_record("customers", "a") is not None


@pytest.mark.parametrize(
    ("schema_text", "message"),
    [
        ("{not json", "Invalid JSON: key must be a string at line 1 column 2"),
        ('{"name": "customers"}', "record_identifier: Field required"),
        (
            json.dumps(
                {
                    "name": "g",
                    "record_identifier": "id",
                    "event_time_feature": "ts",
                    "features": [{"name": "id", "type": "String"}],
                }
            ),
            "event time feature 'ts' is not among its features",
        ),
    ],
)
def test_cli_bad_schema_exits_2(tmp_path, schema_text, message, capsys):
    schema = tmp_path / "schema.json"
    schema.write_text(schema_text)
    assert main(["--schema", str(schema), "--input", jsonl(tmp_path, customer("a"))], writer=object()) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{schema}: ") and message in err


def test_cli_missing_files_exit_2(tmp_path, schema_file, capsys):
    missing = str(tmp_path / "missing.json")
    assert main(["--schema", missing, "--input", missing], writer=object()) == 2
    assert capsys.readouterr().err == f"{missing}: cannot read schema: No such file or directory\n"
    assert main(["--schema", schema_file, "--input", missing], writer=object()) == 2
    assert capsys.readouterr().err == f"{missing}: cannot read input: No such file or directory\n"


def test_cli_non_utf8_input_exits_2(tmp_path, schema_file, capsys):
    records = tmp_path / "records.jsonl"
    records.write_bytes(b'{"customer_id": "\xff"}\n')
    assert main(["--schema", schema_file, "--input", str(records)], writer=object()) == 2
    assert "not UTF-8 text" in capsys.readouterr().err


def test_cli_unknown_target_store_is_an_argument_error(tmp_path, schema_file, capsys):
    with pytest.raises(SystemExit) as caught:
        main(["--schema", schema_file, "--input", schema_file, "--target-stores", "S3"])
    assert caught.value.code == 2
    assert "invalid choice: 'S3'" in capsys.readouterr().err


def test_cli_duplicate_target_store_exits_2(tmp_path, schema_file, capsys):
    args = [
        "--schema",
        schema_file,
        "--input",
        jsonl(tmp_path, customer("a")),
        "--target-stores",
        "OnlineStore",
        "OnlineStore",
    ]
    assert main(args, writer=object()) == 2
    assert "target stores must be one or both" in capsys.readouterr().err


def test_module_runs_as_a_script(tmp_path, schema_file):
    records = jsonl(tmp_path, customer("a"), customer("b", age="x"))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "lambda")}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlops_runtime.features.ingest",
            "--schema",
            schema_file,
            "--input",
            records,
            "--dry-run",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2, run.stderr
    assert "line 2: feature 'age': expected Integral, got 'x'" in run.stderr


def test_module_docstring_documents_the_api():
    doc = ingest_module.__doc__
    assert "ingest(schema, records, Boto3FeatureStoreWriter())" in doc
    assert "--dry-run" in doc
