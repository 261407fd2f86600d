"""An audit line is the compact JSON of its record, whatever its strings hold."""

import json

import pytest

from strongroom.vault import audit
from strongroom.vault.audit import AuditRecord


@pytest.mark.parametrize(
    "text",
    ["", "plain", 'quo"te\\back', "new\nline\ttab\x00nul", "ünïcödé ✓ 🔑", "\u2028sep"],
)
def test_the_line_is_what_json_writes(text: str) -> None:
    record = AuditRecord(text, "vault-1", "KeySign", text, "0123abcd", 200, 0.23)
    line = record.line()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert line.isascii()
    expected = {
        "time": json.loads(line)["time"],
        "audit": True,
        "caller": text,
        "vault": "vault-1",
        "operation": "KeySign",
        "object": text,
        "version": "0123abcd",
        "outcome": 200,
        "latency_ms": 0.23,
    }
    assert line == json.dumps(expected, separators=(",", ":")).encode() + b"\n"
    assert json.loads(line) == expected


def test_the_time_is_the_current_second_in_iso_8601() -> None:
    stamp = json.loads(AuditRecord("c", "v", "o", "", "", 401, 1.5).line())["time"]
    assert stamp == audit._timestamp()
    assert len(stamp) == 20 and stamp.endswith("Z") and stamp[10] == "T"
