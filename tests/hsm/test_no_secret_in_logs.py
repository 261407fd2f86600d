"""A canary secret, the PINs, the pool secret and tokens appear in no log or audit line."""

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from strongroom.hsm.pins import read_pool_secret, so_pin, user_pin

from .conftest import DevServer, start_dev, stop_dev

CANARY = "canary-7f3a9c1e5b2d4f6a8c0e"


@pytest.fixture(scope="module")
def debug_dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    base = tmp_path_factory.mktemp("canary")
    server = start_dev(base / "state", base / "dev.log", log_level="DEBUG")
    yield server
    stop_dev(server)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_no_canary_in_any_log_line(debug_dev: DevServer) -> None:
    dev = debug_dev
    session = requests.Session()
    token = dev.token

    def call(
        method: str,
        path: str,
        body: object = None,
        raw: bytes | None = None,
        bearer: str | None = token,
    ) -> requests.Response:
        headers = {"Content-Type": "application/json"}
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        return session.request(
            method,
            f"{dev.url}{path}?api-version=7.6",
            json=body,
            data=raw,
            headers=headers,
            verify=dev.ca,
            timeout=30,
        )

    # Every secret path, with the canary as the value.
    assert call("PUT", "/secrets/canary", {"value": CANARY}).status_code == 200
    version = call("GET", "/secrets/canary").json()["id"].rsplit("/", 1)[1]
    assert call("GET", f"/secrets/canary/{version}").json()["value"] == CANARY
    call("GET", "/secrets")
    call("GET", "/secrets/canary/versions")
    call("PATCH", f"/secrets/canary/{version}", {"contentType": "text/plain"})
    backup = call("POST", "/secrets/canary/backup").json()["value"]
    call("DELETE", "/secrets/canary")
    call("GET", "/deletedsecrets/canary")
    call("GET", "/deletedsecrets")
    call("POST", "/deletedsecrets/canary/recover")
    call("DELETE", "/secrets/canary")
    call("DELETE", "/deletedsecrets/canary")
    assert call("POST", "/secrets/restore", {"value": backup}).status_code == 200
    # The canary inside bad requests: malformed, oversized, refused, bad token.
    call("PUT", "/secrets/canary", raw=f'{{"value": "{CANARY}"'.encode())
    call("PUT", "/secrets/canary", {"value": CANARY * 20000})
    call("PUT", f"/secrets/{CANARY}..", {"value": CANARY})
    call("GET", "/secrets/canary", bearer=CANARY)
    call("PUT", "/secrets/canary", {"value": CANARY}, bearer=dev.issue("dev:reader"))
    # Key paths, with the canary as plaintext.
    key = call("POST", "/keys/canary-key/create", {"kty": "RSA-HSM", "key_size": 2048}).json()
    kid = key["key"]["kid"].rsplit("/", 1)[1]
    encrypted = call(
        "POST",
        f"/keys/canary-key/{kid}/encrypt",
        {"alg": "RSA-OAEP-256", "value": b64(CANARY.encode())},
    ).json()["value"]
    plain = call(
        "POST", f"/keys/canary-key/{kid}/decrypt", {"alg": "RSA-OAEP-256", "value": encrypted}
    ).json()["value"]
    assert base64.urlsafe_b64decode(plain + "==") == CANARY.encode()
    call(
        "POST",
        f"/keys/canary-key/{kid}/sign",
        {"alg": "RS256", "value": b64(hashlib.sha256(CANARY.encode()).digest())},
    )
    call("POST", f"/keys/canary-key/{kid}/decrypt", {"alg": "RSA1_5", "value": b64(b"x" * 256)})

    logs = dev.log_text()
    assert "KeyDecrypt" in logs and "SecretSet" in logs  # the audit trail was captured
    assert "DEBUG" in logs or "INFO" in logs
    pool_secret = read_pool_secret(dev.state / "pool-secret")
    forbidden = {
        "canary value": CANARY,
        "base64 canary": b64(CANARY.encode()),
        "user PIN": user_pin(pool_secret, "dev"),
        "SO PIN": so_pin(pool_secret, "dev"),
        "pool secret": (dev.state / "pool-secret").read_text().strip(),
        "bearer token": token,
        "token signature": token.rsplit(".", 1)[1],
    }
    for what, value in forbidden.items():
        assert value not in logs, f"the {what} appeared in the logs"


def test_token_store_files_hold_no_plain_canary(debug_dev: DevServer) -> None:
    """SoftHSM2 encrypts private objects: the canary is not readable from the token directory."""
    tokens = debug_dev.state / "hsm" / "tokens"
    files = [p for p in tokens.rglob("*") if p.is_file()]
    assert files
    for path in files:
        assert CANARY.encode() not in Path(path).read_bytes()
