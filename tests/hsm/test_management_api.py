"""The pool's management API: admins only, vaults made and served by host, kept across restarts."""

import json
import os
import signal
import ssl
import urllib.error
import urllib.request
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
