"""The ledger of AWS calls the platform's handlers and jobs make in the tests (``calls.json``).

Every test run checks its recorded calls against the ledger, so that the permission contract
(tests/synth/test_permission_contract.py), which runs where the templates are, knows every call
the code makes, whichever test worker saw it. A call that is not in the ledger fails its test with
the entry to add; ``make permissions`` (``AWS_CONTRACT_RECORD=1``) adds the new entries instead.
Entries are shapes (tests/aws_contract/operations.py), so a test's own names do not matter.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .operations import Request, requests
from .recorder import AwsCall

LEDGER = Path(__file__).with_name("calls.json")
RECORD_ENV_VAR = "AWS_CONTRACT_RECORD"


@dataclass(frozen=True, order=True)
class Entry:
    caller: str
    service: str
    operation: str
    requests: tuple[Request, ...]
    needs: tuple[tuple[str, ...], ...] = ()  # per identifier, the settings paths it came from

    def as_json(self) -> dict:
        return {"caller": self.caller, "service": self.service, "operation": self.operation,
                "requests": [r.as_json() for r in self.requests], "needs": [list(n) for n in self.needs]}

    @classmethod
    def from_json(cls, value: dict) -> Entry:
        return cls(value["caller"], value["service"], value["operation"],
                   tuple(Request.from_json(r) for r in value["requests"]), tuple((n,) if isinstance(n, str) else tuple(n) for n in value.get("needs", ())))  # a bare name: first ledger form


class UnknownOperation(Exception):
    pass


def entry(call: AwsCall) -> Entry:
    built = requests(call.service, call.operation, call.params)
    if built is None:
        raise UnknownOperation(
            f"{call.caller} calls {call.service} {call.operation}, which tests/aws_contract/operations.py "
            "does not map to an IAM action and resource: add it to OPERATIONS")
    return Entry(call.caller, call.service, call.operation, tuple(built), call.needs)


def load(path: Path = LEDGER) -> set[Entry]:
    return {Entry.from_json(e) for e in json.loads(path.read_text())} if path.exists() else set()


def save(entries: set[Entry], path: Path = LEDGER) -> None:
    path.write_text(json.dumps([e.as_json() for e in sorted(entries)], indent=1) + "\n")


def recording() -> bool:
    return os.environ.get(RECORD_ENV_VAR) == "1"
