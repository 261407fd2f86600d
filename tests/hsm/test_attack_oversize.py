"""Finding 3: one subject must not be able to take down every vault of a pool.

The attack: versions of a secret with a 200 KB contentType until its record
outgrows the HSM socket's line, which dropped the sidecar connection (503 for
every vault) and then crashed the server at every start while it listed records.
"""

import asyncio
import json
import socket
import sqlite3
from pathlib import Path

import pytest

from strongroom.hsm import protocol
from strongroom.hsm.client import HsmClient
from strongroom.vault.objects import (
    CONTENT_TYPE_MAX,
    MAX_OBJECTS,
    MAX_TAGS,
    MAX_VERSIONS,
    TAG_NAME_MAX,
    TAG_VALUE_MAX,
)

from .conftest import DevServer, start_dev, stop_dev
from .tenants import Caller, ok, refused, start_tenants


def _still_serving(dev: DevServer) -> None:
    admin = Caller(dev, "dev:admin")
    for other in (False, True):
        ok(admin.call("PUT", "/secrets/canary", {"value": "alive"}, other=other))
        assert ok(admin.call("GET", "/secrets/canary", other=other))["value"] == "alive"


def test_fifteen_versions_of_a_200_kb_content_type_are_refused(tenants: DevServer) -> None:
    writer = Caller(tenants, "dev:writer")
    huge = "t" * 200_000
    for _ in range(15):
        answer = writer.call("PUT", "/secrets/bloat", {"value": "v", "contentType": huge})
        assert f"{CONTENT_TYPE_MAX}" in refused(answer, 400)
        _still_serving(tenants)
    assert writer.call("GET", "/secrets/bloat").status_code == 404
    ok(writer.call("PUT", "/secrets/bloat", {"value": "v", "contentType": "t" * CONTENT_TYPE_MAX}))
    grown = writer.call(
        "PATCH", "/secrets/bloat/" + _latest(writer, "bloat"), {"contentType": huge}
    )
    refused(grown, 400)


def _latest(caller: Caller, name: str) -> str:
    return str(ok(caller.call("GET", f"/secrets/{name}"))["id"].rsplit("/", 1)[1])


@pytest.mark.parametrize(
    "tags,fragment",
    [
        ({f"t{i}": "v" for i in range(MAX_TAGS + 1)}, f"at most {MAX_TAGS} tags"),
        ({"n" * (TAG_NAME_MAX + 1): "v"}, f"{TAG_NAME_MAX}"),
        ({"name": "v" * (TAG_VALUE_MAX + 1)}, f"{TAG_VALUE_MAX}"),
        ({"": "v"}, "tag name"),
    ],
)
def test_oversized_and_too_many_tags_are_refused(
    tenants: DevServer, tags: dict[str, str], fragment: str
) -> None:
    writer = Caller(tenants, "dev:writer")
    for method, path, body in (
        ("PUT", "/secrets/tagged", {"value": "v", "tags": tags}),
        ("POST", "/keys/tagged/create", {"kty": "EC", "tags": tags}),
    ):
        assert fragment in refused(writer.call(method, path, body), 400)
    assert writer.call("GET", "/secrets/tagged").status_code == 404
    assert writer.call("GET", "/keys/tagged").status_code == 404
    ok(
        writer.call(
            "PUT",
            "/secrets/tagged-at-the-limit",
            {"value": "v", "tags": {"n" * TAG_NAME_MAX: "v" * TAG_VALUE_MAX}},
        )
    )


def test_versions_per_object_have_a_quota(tenants: DevServer) -> None:
    writer = Caller(tenants, "dev:writer")
    for index in range(MAX_VERSIONS):
        ok(writer.call("PUT", "/secrets/churn", {"value": str(index)}))
    over = writer.call("PUT", "/secrets/churn", {"value": "one too many"})
    message = refused(over, 409)
    assert over.json()["error"]["code"] == "QuotaExceeded" and f"{MAX_VERSIONS}" in message
    assert ok(writer.call("GET", "/secrets/churn"))["value"] == str(MAX_VERSIONS - 1)
    _still_serving(tenants)


def test_the_object_quota_is_in_the_error(tenants: DevServer) -> None:
    # Filling a vault takes too long for a test; the quota is checked like the version one.
    assert 100_000 <= MAX_OBJECTS <= 1_000_000


def test_a_raw_oversize_frame_gets_an_error_and_the_connection_lives(tenants: DevServer) -> None:
    sock_path = tenants.state / "hsm.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(str(sock_path))
        reader = sock.makefile("rb")
        garbage = b'{"i":7,"op":"seal","a":{"x":"' + b"A" * (protocol.MAX_LINE + 10) + b'"}}\n'
        sock.sendall(garbage)
        answer = json.loads(reader.readline())
        assert answer["i"] == 7 and answer["e"][0] == "InvalidInput"
        sock.sendall(b"not json at all\n")
        assert json.loads(reader.readline())["e"][0] == "InvalidInput"
        sock.sendall(protocol.encode({"i": 8, "op": "ping", "a": {}}))
        assert json.loads(reader.readline()) == {"i": 8, "r": "pong"}
    _still_serving(tenants)


def test_the_client_refuses_to_send_an_oversize_frame(tenants: DevServer) -> None:
    async def attempt() -> str:
        client = HsmClient(tenants.state / "hsm.sock")
        try:
            with pytest.raises(Exception) as raised:
                await client.seal("dev", b"\0" * protocol.MAX_LINE, b"")
            assert await client.ping() == "pong"
            return type(raised.value).__name__
        finally:
            await client.close()

    assert asyncio.run(attempt()) == "InvalidInput"


def test_a_corrupt_record_is_an_error_of_its_own_and_hides_nothing_else(tmp_path: Path) -> None:
    first = start_tenants(tmp_path / "state", tmp_path / "dev.log")
    try:
        admin = Caller(first, "dev:admin")
        ok(admin.call("PUT", "/secrets/kept", {"value": "kept"}))
        ok(admin.call("PUT", "/secrets/broken", {"value": "soon broken"}))
    finally:
        stop_dev(first)
    # Damage one sealed record on disk, as a bad sector or a hand edit would.
    with sqlite3.connect(tmp_path / "state" / "records" / "records.db") as db:
        changed = db.execute(
            "UPDATE objects SET head = X'00112233445566778899aabbccddeeff00112233445566778899'"
            " WHERE vault='dev' AND kind='secret' AND name='broken'"
        ).rowcount
        assert changed == 1
    second = start_dev(tmp_path / "state", tmp_path / "dev.log", keep=True)
    try:
        caller = Caller(second, "dev:admin")
        assert ok(caller.call("GET", "/secrets/kept"))["value"] == "kept"
        broken = caller.call("GET", "/secrets/broken")
        assert broken.status_code == 500, broken.text
        assert "broken" in broken.json()["error"]["message"]
        assert "soon broken" not in broken.text
        listed = ok(caller.call("GET", "/secrets"))["value"]
        assert [item["id"].rsplit("/", 2)[1] for item in listed] == ["kept"]
        assert "secret broken" in second.log_text()
        _still_serving(second)
    finally:
        stop_dev(second)


def test_a_vault_full_of_big_versions_restarts(tmp_path: Path) -> None:
    first = start_tenants(tmp_path / "state", tmp_path / "dev.log")
    big = {"value": "v" * 25_000, "contentType": "c" * CONTENT_TYPE_MAX}
    try:
        writer = Caller(first, "dev:writer")
        for _ in range(200):  # ~5 MB of history: more than one socket line
            ok(writer.call("PUT", "/secrets/history", big))
    finally:
        stop_dev(first)
    second = start_dev(tmp_path / "state", tmp_path / "dev.log", keep=True)
    try:
        admin = Caller(second, "dev:admin")
        assert ok(admin.call("GET", "/secrets/history"))["value"] == big["value"]
        _still_serving(second)
    finally:
        stop_dev(second)
