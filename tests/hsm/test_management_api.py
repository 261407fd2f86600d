"""The pool's management API: admins only, vaults made and served by host, kept across restarts."""

import json
import os
import signal
import ssl
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import pytest

from .conftest import DevServer, start_dev, stop_dev

HOST = "payments-vault.team-a.svc"


def call(
    dev: DevServer,
    method: str,
    path: str,
    token: str | None,
    body: Any = None,
    host: str | None = None,
    *,
    admin: bool = False,
) -> tuple[int, Any]:
    """One HTTPS call; `admin` presents the operator's client certificate."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if host is not None:
        headers["Host"] = f"{host}:{urlsplit(dev.url).port}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(dev.url + path, data, headers, method=method)  # noqa: S310
    context = dev.admin_context() if admin else ssl.create_default_context(cafile=dev.ca)
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as response:  # noqa: S310
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        raw = error.read()
        return error.code, json.loads(raw) if raw else None


def manage(dev: DevServer, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """A management API call as the operator makes it: its client certificate, no token."""
    return call(dev, method, path, None, body, admin=True)


def vault_body(purge_protection: bool = True, retention: int = 7) -> dict[str, Any]:
    return {
        "hosts": [HOST],
        "access": [{"subject": "dev:admin", "keys": ["all"], "secrets": ["all"]}],
        "retentionDays": retention,
        "purgeProtection": purge_protection,
    }


def test_only_the_operators_client_certificate_may_manage(dev: DevServer) -> None:
    status, body = call(dev, "GET", "/_strongroom/v1/health", None)
    assert status == 401 and "client certificate" in body["error"]["message"]
    for token in (dev.token, dev.issue("dev:reader"), dev.issue("dev:admin", audience="else")):
        status, body = call(dev, "GET", "/_strongroom/v1/health", token)
        assert status == 401 and "client certificate" in body["error"]["message"]
    assert manage(dev, "GET", "/_strongroom/v1/health")[0] == 200


def test_health_reports_the_hsm_and_the_vaults(dev: DevServer) -> None:
    status, body = manage(dev, "GET", "/_strongroom/v1/health")
    assert status == 200 and body["status"] == "ok"
    assert "SoftHSM" in body["hsmPlatform"]
    assert "dev" in body["vaults"]


def test_bad_vault_names_and_configs_are_refused(dev: DevServer) -> None:
    for name in ("Upper", "-dash", "x" * 33, "a_b"):
        status, body = manage(dev, "PUT", f"/_strongroom/v1/vaults/{name}", vault_body())
        assert status == 400, name
        assert "1-32 lowercase letters" in body["error"]["message"]
    status, body = manage(dev, "PUT", "/_strongroom/v1/vaults/bad", {"hosts": []})
    assert status == 400 and "host" in body["error"]["message"]
    status, body = manage(dev, "PUT", "/_strongroom/v1/vaults/bad", vault_body(retention=3))
    assert status == 400 and "retentionDays" in body["error"]["message"]


def test_a_vault_put_is_served_kept_and_guarded(tmp_path_factory: pytest.TempPathFactory) -> None:
    base = tmp_path_factory.mktemp("management")
    first = start_dev(base / "state", base / "dev.log")
    try:
        path = "/_strongroom/v1/vaults/payments"
        assert manage(first, "GET", path)[0] == 404
        status, body = manage(first, "PUT", path, vault_body())
        assert status == 201 and body["hosts"] == [HOST] and body["purgeProtection"] is True
        assert manage(first, "PUT", path, vault_body())[0] == 200  # idempotent
        status, body = manage(first, "PUT", path, vault_body(purge_protection=False))
        assert status == 409 and "Purge protection" in body["error"]["message"]
        status, body = manage(first, "PUT", path, vault_body(retention=30))
        assert status == 409 and "retention" in body["error"]["message"]
        status, body = call(
            first,
            "POST",
            "/keys/signing/create?api-version=7.5",
            first.token,
            {"kty": "EC-HSM", "crv": "P-256"},
            host=HOST,
        )
        assert status == 200, body
        kid = body["key"]["kid"]
        assert kid.startswith(f"https://{HOST}")
        os.killpg(first.process.pid, signal.SIGKILL)
        first.process.wait()

        second = start_dev(base / "state", base / "dev.log", keep=True)
        try:
            status, body = manage(second, "GET", path)
            assert status == 200 and body["hosts"] == [HOST]
            status, body = call(
                second, "GET", "/keys/signing?api-version=7.5", second.token, host=HOST
            )
            assert status == 200 and body["key"]["kid"].split("/")[-1] == kid.split("/")[-1]
            assert manage(second, "DELETE", path)[0] == 204
            assert manage(second, "GET", path)[0] == 404
            status, _ = call(
                second, "GET", "/keys/signing?api-version=7.5", second.token, host=HOST
            )
            assert status == 404
            # Served again, the vault finds its keys: its token was kept.
            assert manage(second, "PUT", path, vault_body())[0] == 201
            status, _ = call(
                second, "GET", "/keys/signing?api-version=7.5", second.token, host=HOST
            )
            assert status == 200
        finally:
            stop_dev(second)
    finally:
        stop_dev(first)


def test_a_host_served_by_another_vault_is_refused_before_any_token_is_made(
    dev: DevServer,
) -> None:
    body = vault_body() | {"hosts": ["localhost"]}
    status, answer = manage(dev, "PUT", "/_strongroom/v1/vaults/clash", body)
    assert status == 409 and "already served by vault 'dev'" in answer["error"]["message"]
    status, answer = manage(dev, "GET", "/_strongroom/v1/health")
    assert "clash" not in answer["vaults"]


# --- rotating a generated secret ------------------------------------------------------------

ROTATE_HOST = "rotating-vault.team-a.svc"


def _secret_value(dev: DevServer, name: str, version: str = "") -> str:
    status, body = call(
        dev, "GET", f"/secrets/{name}/{version}?api-version=7.5", None, host=ROTATE_HOST, admin=True
    )
    assert status == 200, body
    value: str = body["value"]
    return value


def test_a_rotation_names_the_version_it_replaces_so_a_retry_makes_nothing(
    dev: DevServer,
) -> None:
    base = "/_strongroom/v1/vaults/rotating"
    body = vault_body() | {"hosts": [ROTATE_HOST]}
    status, answer = manage(dev, "PUT", base, body)
    assert status in (200, 201), answer
    owner = "6a0e-owner-uid"
    generate = {"length": 24, "encoding": "hex"}
    status, made = manage(
        dev,
        "PUT",
        f"{base}/secrets/rotated",
        {"owner": owner, "generate": generate, "contentType": "text/plain"},
    )
    assert status == 201, made
    first = made["versions"][-1]["version"]
    first_value = _secret_value(dev, "rotated")
    rotate = f"{base}/secrets/rotated/rotate"
    ask = {"owner": owner, "ifCurrentVersion": first, "generate": generate}

    status, rotated = manage(dev, "POST", rotate, ask)
    assert status == 201, rotated
    assert [v["version"] for v in rotated["versions"]][0] == first
    assert len(rotated["versions"]) == 2
    second = rotated["versions"][-1]["version"]
    assert rotated["id"].endswith(f"/secrets/rotated/{second}")
    assert rotated["owner"] == owner and rotated["contentType"] == "text/plain"
    assert "value" not in rotated and first_value not in json.dumps(rotated)
    second_value = _secret_value(dev, "rotated")
    assert len(second_value) == 48 and second_value != first_value
    assert _secret_value(dev, "rotated", first) == first_value  # the old version stays readable

    # The same request again (the operator retrying after the first was made): nothing made.
    for _ in range(3):
        status, again = manage(dev, "POST", rotate, ask)
        assert status == 200, again
        assert [v["version"] for v in again["versions"]] == [first, second]
    assert _secret_value(dev, "rotated") == second_value

    # From the new current version: one more, once, even when asked concurrently.
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(
                lambda _: manage(dev, "POST", rotate, ask | {"ifCurrentVersion": second}), range(8)
            )
        )
    assert sorted(code for code, _ in answers) == [200] * 7 + [201]
    status, state = manage(dev, "GET", f"{base}/secrets/rotated")
    assert status == 200 and len(state["versions"]) == 3


def test_a_rotation_is_refused_clearly_when_it_cannot_be_made(dev: DevServer) -> None:
    base = "/_strongroom/v1/vaults/rotating"
    body = vault_body() | {"hosts": [ROTATE_HOST]}
    status, answer = manage(dev, "PUT", base, body)
    assert status in (200, 201), answer
    owner = "7b1f-owner-uid"
    generate = {"length": 16, "encoding": "base64"}
    status, made = manage(dev, "PUT", f"{base}/secrets/refused", {"owner": owner, "value": "v1"})
    assert status == 201, made
    current = made["versions"][-1]["version"]
    rotate = f"{base}/secrets/refused/rotate"
    ask = {"owner": owner, "ifCurrentVersion": current, "generate": generate}
    for changed, code, words in (
        ({"ifCurrentVersion": None}, 400, "ifCurrentVersion"),
        ({"owner": None}, 400, "owner"),
        ({"generate": None}, 400, "generate"),
        ({"generate": {"length": 8}}, 400, "16-4096"),
        ({"generate": {"encoding": "rot13"}}, 400, "encoding"),
        ({"value": "chosen by the caller"}, 400, "generated in the HSM"),
        ({"owner": "someone-else"}, 409, "another owner"),
    ):
        status, refused = manage(dev, "POST", rotate, ask | changed)
        assert status == code, (changed, refused)
        assert set(refused) == {"error"} and words in refused["error"]["message"], refused
    status, missing = manage(dev, "POST", f"{base}/secrets/nothing-here/rotate", ask)
    assert status == 404 and missing["error"]["code"] == "SecretNotFound"
    # A workload's token does not open the management API, whatever it may do in the vault.
    status, refused = call(dev, "POST", rotate, dev.token, ask)
    assert status == 401 and "client certificate" in refused["error"]["message"]
    # A deleted secret is not rotated: recover it first.
    status, _ = call(
        dev, "DELETE", "/secrets/refused?api-version=7.5", None, host=ROTATE_HOST, admin=True
    )
    assert status == 200
    status, refused = manage(dev, "POST", rotate, ask)
    assert status == 409 and refused["error"]["code"] == "SecretDeleted"
    status, state = manage(dev, "GET", f"{base}/secrets/refused")
    assert status == 200 and [v["version"] for v in state["versions"]] == [current]


CANARY = "canary-5e0d-never-in-an-error"


@pytest.mark.parametrize(
    "path,body,words",
    [
        ("/vaults/bad", {"hosts": ["h"], "retentionDays": "30"}, "retentionDays: Input should be"),
        (
            "/vaults/bad",
            {"hosts": ["h"], "access": [{"subject": "s", "keys": ["export"]}]},
            "access[0].keys: unknown keys permission(s): export",
        ),
        ("/vaults/dev/keys/k", {"kty": "EC"}, "owner: Field required"),
        ("/vaults/dev/keys/k", {"owner": "u", "kty": "RSA", "key_size": "2k"}, "key_size:"),
        ("/vaults/dev/keys/k", {"owner": "u", "kty": "XX"}, "'kty' must be one of"),
        ("/vaults/dev/secrets/s", {"owner": "u"}, "'value' or 'generate'"),
        ("/vaults/dev/secrets/s", {"owner": "u", "value": CANARY, "generate": {}}, "'generate'"),
        ("/vaults/dev/secrets/s", {"owner": 7, "value": CANARY}, "owner: Input should be"),
        ("/vaults/dev/secrets/s", {"owner": "u", "generate": {"length": 8}}, "generate.length:"),
        ("/vaults/dev/secrets/s", {"owner": "u", "generate": {"encoding": "x"}}, "encoding:"),
        ("/tls", {"certificate": "PEM"}, "privateKey: Field required"),
        ("/vaults/dev/secrets/s", [CANARY], "Input should be an object"),
    ],
)
def test_a_bad_body_is_a_400_that_names_the_field(
    dev: DevServer, path: str, body: Any, words: str
) -> None:
    status, answer = manage(dev, "PUT", f"/_strongroom/v1{path}", body)
    assert status == 400, answer
    assert answer["error"]["code"] == "BadParameter"
    assert words in answer["error"]["message"]
    assert CANARY not in answer["error"]["message"]


def test_a_body_that_is_not_json_is_a_400(dev: DevServer) -> None:
    request = urllib.request.Request(  # noqa: S310
        dev.url + "/_strongroom/v1/vaults/dev/secrets/s",
        f'{{"owner": "u", "value": "{CANARY}"'.encode(),
        {"Content-Type": "application/json"},
        method="PUT",
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, context=dev.admin_context(), timeout=30)  # noqa: S310
    assert caught.value.code == 400
    message = json.loads(caught.value.read())["error"]["message"]
    assert "Invalid JSON" in message and CANARY not in message


def test_the_answers_keep_their_shape(dev: DevServer) -> None:
    """The fields of each answer, as the operator has always read them."""
    status, health = manage(dev, "GET", "/_strongroom/v1/health")
    assert status == 200 and set(health) == {"status", "hsmPlatform", "vaults"}
    status, tls = manage(dev, "GET", "/_strongroom/v1/tls")
    assert status == 200 and set(tls) == {"dnsNames", "notAfter"}
    assert tls["notAfter"].endswith("Z") and len(tls["notAfter"]) == len("2030-01-01T00:00:00Z")
    status, vaults = manage(dev, "GET", "/_strongroom/v1/vaults")
    assert status == 200 and set(vaults) == {"value"}
    [served] = [v for v in vaults["value"] if v["name"] == "dev"]
    assert set(served) == {"name", "hosts", "access", "retentionDays", "purgeProtection"}
    assert set(served["access"][0]) == {"subject", "keys", "secrets"}
    owner = "uid-shape"
    status, key = manage(
        dev,
        "PUT",
        "/_strongroom/v1/vaults/dev/keys/shape",
        {"owner": owner, "kty": "EC-HSM", "crv": "P-256", "attributes": {"nbf": None}},
    )
    assert status == 201, key
    assert set(key) == {"name", "owner", "key", "versions", "rotationPolicy", "deleted"}
    assert key["owner"] == owner and key["rotationPolicy"] is None and key["deleted"] is None
    [version] = key["versions"]
    assert set(version) == {"version", "keyOps", "attributes"}
    assert {"enabled", "created", "updated", "recoveryLevel"} <= set(version["attributes"])
    assert version["attributes"]["exportable"] is False  # passed on as the data plane has it
    status, again = manage(
        dev, "PUT", "/_strongroom/v1/vaults/dev/keys/shape", {"owner": owner, "kty": "EC-HSM"}
    )
    assert status == 200 and again["versions"] == key["versions"]
    status, secret = manage(
        dev,
        "PUT",
        "/_strongroom/v1/vaults/dev/secrets/shape",
        {"owner": owner, "generate": {"length": 16, "encoding": "hex"}, "contentType": "text/x"},
    )
    assert status == 201, secret
    assert set(secret) == {"name", "owner", "id", "contentType", "versions", "deleted"}
    assert secret["contentType"] == "text/x" and secret["deleted"] is None
    assert set(secret["versions"][0]) == {"version", "created", "enabled"}
    status, value = call(dev, "GET", "/secrets/shape?api-version=7.5", dev.token)
    assert status == 200 and len(value["value"]) == 32  # 16 bytes in hex
