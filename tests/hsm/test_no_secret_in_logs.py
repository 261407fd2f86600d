"""A canary secret, the PINs, the pool secret and tokens appear in no log or audit line."""

import base64
import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def log_records(text: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The audit records and the logging records among the log's lines (the rest is the dev
    server's banner)."""
    audit, logged = [], []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("audit") is True:
            audit.append(record)
        elif isinstance(record, dict) and "level" in record:
            logged.append(record)
    return audit, logged


def test_no_canary_in_any_log_line(debug_dev: DevServer) -> None:
    dev = debug_dev
    session = requests.Session()
    token = dev.token

    def call(
        status: int,
        method: str,
        path: str,
        body: object = None,
        raw: bytes | None = None,
        bearer: str | None = token,
    ) -> requests.Response:
        """One call, which must answer `status`: a path that fails early is not exercised."""
        headers = {"Content-Type": "application/json"}
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        response = session.request(
            method,
            f"{dev.url}{path}?api-version=7.6",
            json=body,
            data=raw,
            headers=headers,
            verify=dev.ca,
            timeout=30,
        )
        assert response.status_code == status, (method, path, response.text[:300])
        return response

    # Every secret path, with the canary as the value.
    call(200, "PUT", "/secrets/canary", {"value": CANARY})
    version = call(200, "GET", "/secrets/canary").json()["id"].rsplit("/", 1)[1]
    assert call(200, "GET", f"/secrets/canary/{version}").json()["value"] == CANARY
    call(200, "GET", "/secrets")
    call(200, "GET", "/secrets/canary/versions")
    call(200, "PATCH", f"/secrets/canary/{version}", {"contentType": "text/plain"})
    backup = call(200, "POST", "/secrets/canary/backup").json()["value"]
    call(200, "DELETE", "/secrets/canary")
    call(200, "GET", "/deletedsecrets/canary")
    call(200, "GET", "/deletedsecrets")
    call(200, "POST", "/deletedsecrets/canary/recover")
    call(200, "DELETE", "/secrets/canary")
    call(204, "DELETE", "/deletedsecrets/canary")
    call(200, "POST", "/secrets/restore", {"value": backup})
    # The canary inside bad requests: malformed, oversized, refused, bad token.
    call(400, "PUT", "/secrets/canary", raw=f'{{"value": "{CANARY}"'.encode())
    call(413, "PUT", "/secrets/canary", {"value": CANARY * 20000})
    call(400, "PUT", f"/secrets/{CANARY}..", {"value": CANARY})
    call(401, "GET", "/secrets/canary", bearer=CANARY)
    call(403, "PUT", "/secrets/canary", {"value": CANARY}, bearer=dev.issue("dev:reader"))
    # Key paths, with the canary as plaintext.
    key = call(200, "POST", "/keys/canary-key/create", {"kty": "RSA-HSM", "key_size": 2048})
    kid = key.json()["key"]["kid"].rsplit("/", 1)[1]
    encrypted = call(
        200,
        "POST",
        f"/keys/canary-key/{kid}/encrypt",
        {"alg": "RSA-OAEP-256", "value": b64(CANARY.encode())},
    ).json()["value"]
    plain = call(
        200,
        "POST",
        f"/keys/canary-key/{kid}/decrypt",
        {"alg": "RSA-OAEP-256", "value": encrypted},
    ).json()["value"]
    assert base64.urlsafe_b64decode(plain + "==") == CANARY.encode()
    call(
        200,
        "POST",
        f"/keys/canary-key/{kid}/sign",
        {"alg": "RS256", "value": b64(hashlib.sha256(CANARY.encode()).digest())},
    )
    # Bad PKCS#1 v1.5 padding answers 200 with random bytes (no padding oracle).
    call(
        200,
        "POST",
        f"/keys/canary-key/{kid}/decrypt",
        {"alg": "RSA1_5", "value": b64(b"x" * 256)},
    )

    logs = dev.log_text()
    audit, logged = log_records(logs)
    # The audit trail of the calls above was captured, outcomes and all...
    outcomes = Counter((record["operation"], record["outcome"]) for record in audit)
    expected = Counter(
        {
            ("SecretSet", 200): 1,
            ("SecretSet", 400): 1,
            ("SecretSet", 413): 1,
            ("SecretSet", 403): 1,
            ("SecretBackup", 200): 1,
            ("SecretRestore", 200): 1,
            ("SecretPurge", 204): 1,
            ("KeyEncrypt", 200): 1,
            ("KeyDecrypt", 200): 2,
            ("KeySign", 200): 1,
        }
    )
    assert outcomes >= expected, expected - outcomes
    # ...and so were the log lines of both processes, the sidecar's and the vault server's.
    assert {"strongroom.hsm.sidecar", "strongroom.vault.server"} <= {r["logger"] for r in logged}
    pool_secret = read_pool_secret(dev.state / "pool-secret")
    forbidden = {
        "canary value": CANARY,
        "base64 canary": b64(CANARY.encode()),
        "hex canary": CANARY.encode().hex(),
        "user PIN": user_pin(pool_secret, "dev"),
        "SO PIN": so_pin(pool_secret, "dev"),
        "pool secret": (dev.state / "pool-secret").read_text().strip(),
        "bearer token": token,
        "token signature": token.rsplit(".", 1)[1],
    }
    for what, value in forbidden.items():
        assert value, what
        assert value not in logs, f"the {what} appeared in the logs"


def test_token_store_files_hold_no_plain_canary(debug_dev: DevServer) -> None:
    """SoftHSM2 encrypts private objects: the canary is not readable from the token directory."""
    tokens = debug_dev.state / "hsm" / "tokens"
    files = [p for p in tokens.rglob("*") if p.is_file()]
    assert files
    for path in files:
        assert CANARY.encode() not in Path(path).read_bytes()


def test_no_imported_private_part_in_any_log_line_or_record(debug_dev: DevServer) -> None:
    """Keys imported with the canary as their private value (an AES key) and with private
    parts made here (RSA, EC), good imports and refused ones: no private part, in any
    encoding, in the logs, the audit lines, an answer or the record storage on disk."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    dev = debug_dev
    session = requests.Session()
    aes = CANARY.encode()[:24]  # an AES-192 key: the canary itself
    rsa_numbers = rsa.generate_private_key(65537, 2048).private_numbers()
    ec_numbers = ec.generate_private_key(ec.SECP256R1()).private_numbers()

    def uint(value: int, size: int | None = None) -> bytes:
        return value.to_bytes(size or (value.bit_length() + 7) // 8, "big")

    rsa_private = {
        "d": uint(rsa_numbers.d),
        "p": uint(rsa_numbers.p),
        "q": uint(rsa_numbers.q),
        "dp": uint(rsa_numbers.dmp1),
        "dq": uint(rsa_numbers.dmq1),
        "qi": uint(rsa_numbers.iqmp),
    }
    rsa_jwk = {
        "kty": "RSA",
        "n": b64(uint(rsa_numbers.public_numbers.n)),
        "e": b64(uint(rsa_numbers.public_numbers.e)),
    } | {name: b64(value) for name, value in rsa_private.items()}
    ec_d = uint(ec_numbers.private_value, 32)
    ec_jwk = {
        "kty": "EC-HSM",
        "crv": "P-256",
        "x": b64(uint(ec_numbers.public_numbers.x, 32)),
        "y": b64(uint(ec_numbers.public_numbers.y, 32)),
        "d": b64(ec_d),
    }
    answers: list[str] = []

    def put(status: int, name: str, body: object, bearer: str | None = None) -> None:
        response = session.put(
            f"{dev.url}/keys/{name}?api-version=7.6",
            json=body,
            headers={"Authorization": f"Bearer {bearer or dev.token}"},
            verify=dev.ca,
            timeout=30,
        )
        assert response.status_code == status, (name, response.text[:300])
        answers.append(response.text)

    put(200, "canary-aes", {"key": {"kty": "oct", "k": b64(aes)}, "Hsm": True})
    put(200, "canary-rsa", {"key": rsa_jwk})
    put(200, "canary-ec", {"key": ec_jwk, "tags": {"imported": "yes"}})
    put(200, "canary-ec", {"key": ec_jwk})  # a second version
    # Refused imports that carry the private parts: inconsistent, off the curve, wrong size.
    put(400, "canary-bad", {"key": rsa_jwk | {"e": b64(b"\x03")}})
    put(400, "canary-bad", {"key": ec_jwk | {"y": ec_jwk["x"]}})
    put(400, "canary-bad", {"key": {"kty": "oct", "k": b64(aes[:20])}})
    put(400, "canary-bad", {"key": rsa_jwk | {"crv": "P-256"}})
    # A caller without the import permission.
    put(403, "canary-bad", {"key": {"kty": "oct", "k": b64(aes)}}, dev.issue("dev:reader"))
    logs = dev.log_text()
    audit, _ = log_records(logs)
    imports = Counter(r["outcome"] for r in audit if r["operation"] == "KeyImport")
    assert imports[200] >= 4 and imports[400] >= 4, imports
    records = b"".join(p.read_bytes() for p in (dev.state / "records").rglob("*") if p.is_file())
    assert records
    private_values = {"canary AES key": aes, "EC d": ec_d} | {
        f"RSA {name}": value for name, value in rsa_private.items()
    }
    for what, value in private_values.items():
        forms = {
            "raw": value,
            "base64url": b64(value).encode(),
            "base64": base64.b64encode(value),
            "hex": value.hex().encode(),
            "decimal": str(int.from_bytes(value, "big")).encode(),
        }
        for form, encoded in forms.items():
            text = encoded.decode("latin-1")
            assert text not in logs, f"the {what} ({form}) appeared in the logs"
            assert not any(text in answer for answer in answers), (
                f"the {what} ({form}) was answered"
            )
            assert encoded not in records, f"the {what} ({form}) is in the record storage"
