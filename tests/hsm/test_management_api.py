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
    assert status == 200 and set(health) == {
        "status",
        "hsmPlatform",
        "vaults",
        "securityDomain",
        "securityDomainHeld",
        "securityDomainId",
    }
    # Plain strongroom dev: activated at start, with a domain never exported.
    assert health["securityDomain"] == "unexported" and health["securityDomainHeld"] is False
    status, tls = manage(dev, "GET", "/_strongroom/v1/tls")
    assert status == 200 and set(tls) == {"dnsNames", "notAfter"}
    assert tls["notAfter"].endswith("Z") and len(tls["notAfter"]) == len("2030-01-01T00:00:00Z")
    status, vaults = manage(dev, "GET", "/_strongroom/v1/vaults")
    assert status == 200 and set(vaults) == {"value"}
    [served] = [v for v in vaults["value"] if v["name"] == "dev"]
    assert set(served) == {"name", "hosts", "access", "retentionDays", "purgeProtection"}
    assert set(served["access"][0]) == {"subject", "keys", "secrets", "certificates"}
    owner = "uid-shape"
    status, key = manage(
        dev,
        "PUT",
        "/_strongroom/v1/vaults/dev/keys/shape",
        {"owner": owner, "kty": "EC-HSM", "crv": "P-256", "attributes": {"nbf": None}},
    )
    assert status == 201, key
    assert set(key) == {
        "name",
        "owner",
        "key",
        "versions",
        "rotationPolicy",
        "deleted",
        "keySize",
    }
    assert key["keySize"] is None  # an EC key: its JWK names the curve
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


# --- adopting an object made through the data plane -----------------------------------------

ADOPT_HOST = "adopting-vault.team-a.svc"
ADOPT_BASE = "/_strongroom/v1/vaults/adopting"
OWNER_TAG = "strongroom.io/uid"
WRITER = "dev:writer"


def _adopting_vault(dev: DevServer) -> None:
    body = {
        "hosts": [ADOPT_HOST],
        "access": [
            {"subject": "dev:admin", "keys": ["all"], "secrets": ["all"]},
            {"subject": WRITER, "keys": ["create", "update", "get"], "secrets": ["set", "get"]},
        ],
        "retentionDays": 7,
        "purgeProtection": False,
    }
    status, answer = manage(dev, "PUT", ADOPT_BASE, body)
    assert status in (200, 201), answer


def _plane(
    dev: DevServer, method: str, path: str, body: Any = None, token: str | None = None
) -> tuple[int, Any]:
    """The vault's data plane: as `token`'s subject, or as the operator (every permission)."""
    sep = "&" if "?" in path else "?"
    return call(
        dev,
        method,
        f"{path}{sep}api-version=7.5",
        token,
        body,
        host=ADOPT_HOST,
        admin=token is None,
    )


def _key_versions(dev: DevServer, name: str) -> list[dict[str, Any]]:
    """Each version of the key as the data plane has it, tags included, oldest first."""
    status, listed = _plane(dev, "GET", f"/keys/{name}/versions")
    assert status == 200, listed
    found = []
    for item in listed["value"]:
        status, version = _plane(dev, "GET", f"/keys/{name}/{item['kid'].rsplit('/', 1)[1]}")
        assert status == 200, version
        found.append(version)
    return sorted(found, key=lambda v: v["attributes"]["created"])


def test_a_key_made_through_the_data_plane_is_adopted_once_for_one_owner(dev: DevServer) -> None:
    _adopting_vault(dev)
    writer = dev.issue(WRITER)
    status, made = _plane(
        dev, "POST", "/keys/legacy/create", {"kty": "RSA", "key_size": 3072, "tags": {"a": "b"}}
    )
    assert status == 200, made
    status, rotated = _plane(dev, "POST", "/keys/legacy/rotate")
    assert status == 200, rotated
    path = f"{ADOPT_BASE}/keys/legacy"
    status, before = manage(dev, "GET", path)
    assert status == 200 and before["owner"] is None and before["keySize"] == 3072
    assert len(before["versions"]) == 2

    owner = "c41d-adopting-uid"
    status, adopted = manage(dev, "PUT", f"{path}/owner", {"owner": owner})
    assert status == 200, adopted
    # Only the owner changed: the same versions, attributes, key and policy.
    assert adopted == before | {"owner": owner}
    versions = _key_versions(dev, "legacy")
    assert [v["key"]["kid"] for v in versions] == [made["key"]["kid"], rotated["key"]["kid"]]
    assert all(v["tags"] == {"a": "b", OWNER_TAG: owner} for v in versions)

    # Again, for the same owner (a retried reconcile): nothing changes.
    status, again = manage(dev, "PUT", f"{path}/owner", {"owner": owner})
    assert status == 200 and again == adopted
    # Another owner: refused, and the first keeps it.
    status, refused = manage(dev, "PUT", f"{path}/owner", {"owner": "someone-else"})
    assert status == 409 and refused["error"]["code"] == "KeyOwnedElsewhere", refused
    # The create-once of the owner now finds its key: no version is made.
    status, found = manage(dev, "PUT", path, {"owner": owner, "kty": "RSA", "key_size": 3072})
    assert status == 200 and found["versions"] == adopted["versions"]

    # The tag stays out of data-plane reach: an update cannot drop it nor set another.
    version = versions[-1]["key"]["kid"].rsplit("/", 1)[1]
    status, patched = _plane(dev, "PATCH", f"/keys/legacy/{version}", {"tags": {}}, writer)
    assert status == 200 and patched["tags"] == {OWNER_TAG: owner}, patched
    status, refused = _plane(
        dev, "PATCH", f"/keys/legacy/{version}", {"tags": {OWNER_TAG: "planted"}}, writer
    )
    assert status == 400 and "strongroom.io/" in refused["error"]["message"]
    # A rotation carries it to the new version (with the current version's tags, now none).
    status, rotated = _plane(dev, "POST", "/keys/legacy/rotate")
    assert status == 200 and rotated["tags"] == {OWNER_TAG: owner}, rotated
    status, state = manage(dev, "GET", path)
    assert status == 200 and state["owner"] == owner and len(state["versions"]) == 3


def test_a_secret_set_through_the_data_plane_is_adopted_with_its_values(dev: DevServer) -> None:
    _adopting_vault(dev)
    values = ["first-c2VjcmV0", "second-c2VjcmV0"]
    ids = []
    for value in values:
        status, set_ = _plane(
            dev, "PUT", "/secrets/legacy", {"value": value, "contentType": "text/plain"}
        )
        assert status == 200, set_
        ids.append(set_["id"])
    path = f"{ADOPT_BASE}/secrets/legacy"
    status, before = manage(dev, "GET", path)
    assert status == 200 and before["owner"] is None

    owner = "5e7a-adopting-uid"
    status, adopted = manage(dev, "PUT", f"{path}/owner", {"owner": owner})
    assert status == 200, adopted
    assert adopted == before | {"owner": owner}
    assert "value" not in adopted and not any(v in json.dumps(adopted) for v in values)
    for id_, value in zip(ids, values, strict=True):
        status, read = _plane(dev, "GET", f"/secrets/legacy/{id_.rsplit('/', 1)[1]}")
        assert status == 200 and read["value"] == value
        assert read["tags"] == {OWNER_TAG: owner} and read["contentType"] == "text/plain"
    assert manage(dev, "PUT", f"{path}/owner", {"owner": owner}) == (200, adopted)
    status, refused = manage(dev, "PUT", f"{path}/owner", {"owner": "someone-else"})
    assert status == 409 and refused["error"]["code"] == "SecretOwnedElsewhere", refused
    # The owner's rotation now finds its secret.
    generate = {"length": 16, "encoding": "hex"}
    current = adopted["versions"][-1]["version"]
    ask = {"owner": owner, "ifCurrentVersion": current, "generate": generate}
    status, rotated = manage(dev, "POST", f"{path}/rotate", ask)
    assert status == 201 and len(rotated["versions"]) == 3, rotated
    assert rotated["contentType"] == "text/plain"
    writer = dev.issue(WRITER)
    status, patched = _plane(dev, "PATCH", f"/secrets/legacy/{current}", {"tags": {}}, writer)
    assert status == 200 and patched["tags"] == {OWNER_TAG: owner}, patched


def test_adoption_is_refused_for_deleted_and_missing_objects_and_bad_bodies(
    dev: DevServer,
) -> None:
    _adopting_vault(dev)
    assert _plane(dev, "POST", "/keys/gone/create", {"kty": "EC"})[0] == 200
    assert _plane(dev, "DELETE", "/keys/gone")[0] == 200
    assert _plane(dev, "PUT", "/secrets/gone", {"value": "v"})[0] == 200
    assert _plane(dev, "DELETE", "/secrets/gone")[0] == 200
    for kind, title in (("keys", "Key"), ("secrets", "Secret")):
        status, refused = manage(dev, "PUT", f"{ADOPT_BASE}/{kind}/gone/owner", {"owner": "u"})
        assert status == 409 and refused["error"]["code"] == f"{title}Deleted", refused
        assert "recover it" in refused["error"]["message"]
        status, state = manage(dev, "GET", f"{ADOPT_BASE}/{kind}/gone")
        assert status == 200 and state["owner"] is None and state["deleted"] is not None
        status, missing = manage(dev, "PUT", f"{ADOPT_BASE}/{kind}/nothing/owner", {"owner": "u"})
        assert status == 404 and missing["error"]["code"] == f"{title}NotFound", missing
        for body, words in (
            ({}, "owner: Field required"),
            ({"owner": ""}, "owner: String should have at least 1 character"),
            ({"owner": 7}, "owner: Input should be a valid string"),
            ({"owner": "u" * 129}, "owner: String should have at most 128 characters"),
        ):
            status, bad = manage(dev, "PUT", f"{ADOPT_BASE}/{kind}/gone/owner", body)
            assert status == 400 and words in bad["error"]["message"], bad
        status, bad = manage(dev, "PUT", f"{ADOPT_BASE}/{kind}/bad_name/owner", {"owner": "u"})
        assert status == 400 and "name is invalid" in bad["error"]["message"], bad
        status, bad = manage(
            dev, "PUT", f"/_strongroom/v1/vaults/nowhere/{kind}/x/owner", {"owner": "u"}
        )
        assert status == 404 and bad["error"]["code"] == "VaultNotFound", bad
        # A workload's token does not open it, whatever it may do in the vault.
        status, refused = call(
            dev, "PUT", f"{ADOPT_BASE}/{kind}/gone/owner", dev.token, {"owner": "u"}
        )
        assert status == 401 and "client certificate" in refused["error"]["message"]


def test_an_adoption_is_one_durable_write_kept_across_a_kill(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    base = tmp_path_factory.mktemp("adoption")
    first = start_dev(base / "state", base / "dev.log")
    try:
        _adopting_vault(first)
        assert _plane(first, "POST", "/keys/kept/create", {"kty": "EC"})[0] == 200
        assert _plane(first, "POST", "/keys/kept/rotate")[0] == 200
        owner = "9b2c-kept-uid"
        status, adopted = manage(first, "PUT", f"{ADOPT_BASE}/keys/kept/owner", {"owner": owner})
        assert status == 200, adopted
        os.killpg(first.process.pid, signal.SIGKILL)
        first.process.wait()
        second = start_dev(base / "state", base / "dev.log", keep=True)
        try:
            status, state = manage(second, "GET", f"{ADOPT_BASE}/keys/kept")
            assert status == 200 and state == adopted
            assert all(v["tags"] == {OWNER_TAG: owner} for v in _key_versions(second, "kept"))
        finally:
            stop_dev(second)
    finally:
        stop_dev(first)
