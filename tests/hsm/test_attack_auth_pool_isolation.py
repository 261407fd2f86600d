"""Attacks on pool isolation: no credential one pool receives opens another pool.

Two real `strongroom dev` servers stand for two tenants' pools: `dev` (no namespace
restriction) and pool B, whose config names namespace `team-b`. Each has its own client CA
for the operator, as every pool of a cluster shares the operator's one client CA.
"""

import http.client
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from strongroom.tls import OPERATOR_CLIENT_NAME, issue_client_cert, make_ca

from .conftest import DevServer, start_dev, stop_dev
from .test_management_api import call, manage

HEALTH = "/_strongroom/v1/health"
SECRETS = "/secrets?api-version=7.5"
TEAM_A_APP = "system:serviceaccount:team-a:app"
TEAM_B_APP = "system:serviceaccount:team-b:app"


@pytest.fixture(scope="module")
def pool_b(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    base = tmp_path_factory.mktemp("pool-b")
    server = start_dev(base / "state", base / "dev.log", namespace="team-b")
    yield server
    stop_dev(server)


def put_vault(pool: DevServer, name: str, namespace: str) -> str:
    """A vault as the operator puts it: its Service host and its own URI as audience.

    Both teams' apps are in its access list, so only the token's binding decides."""
    host = f"{name}-vault.{namespace}.svc"
    body = {
        "hosts": [host],
        "audience": f"https://{host}",
        "access": [
            {"subject": subject, "secrets": ["list"]} for subject in (TEAM_A_APP, TEAM_B_APP)
        ],
        "retentionDays": 7,
    }
    status, answer = manage(pool, "PUT", f"/_strongroom/v1/vaults/{name}", body)
    assert status in (200, 201), answer
    assert answer["audience"] == f"https://{host}"
    return host


class RefusedInHandshake(Exception):
    pass


def tls_attempt(pool: DevServer, context: ssl.SSLContext, path: str = HEALTH) -> Any:
    """The status of a GET with this TLS context, or the TLS handshake failure that ended it."""
    port = int(pool.url.rsplit(":", 1)[1])
    connection = http.client.HTTPSConnection("localhost", port, context=context, timeout=30)
    try:
        try:
            connection.connect()  # the TCP connection and the whole TLS handshake
        except ssl.SSLError as exc:
            return RefusedInHandshake(str(exc))
        connection.request("GET", path)
        return connection.getresponse().status
    finally:
        connection.close()


def client_context(pool: DevServer, cert: bytes, key: bytes, tmp: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pool.ca)
    # TLS 1.2: the server's verdict on the client certificate ends the handshake itself
    # (in TLS 1.3 it comes after the client thinks the handshake done).
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    (tmp / "client.pem").write_bytes(cert + key)
    context.load_cert_chain(str(tmp / "client.pem"))
    return context


def assert_refused_in_handshake(outcome: Any) -> None:
    assert isinstance(outcome, RefusedInHandshake), outcome


def test_no_bearer_token_opens_the_management_api_of_any_pool(
    dev: DevServer, pool_b: DevServer
) -> None:
    # What a hostile pool receives today: the operator's bearer token. Stand-ins for it are
    # the admin subject of old (dev:admin) and the operator's own ServiceAccount name.
    operator_sa = "system:serviceaccount:strongroom-system:strongroom-operator"
    for pool in (dev, pool_b):
        for token in (pool.token, pool.issue(operator_sa), pool.issue(OPERATOR_CLIENT_NAME)):
            for target in (dev, pool_b):
                status, body = call(target, "GET", HEALTH, token)
                assert status == 401, body
                assert "client certificate" in body["error"]["message"]
                status, body = call(target, "PUT", "/_strongroom/v1/vaults/x", token, {})
                assert status == 401, body
    # The operator's client certificate works, on each pool with its client CA.
    for pool in (dev, pool_b):
        status, body = manage(pool, "GET", HEALTH)
        assert status == 200 and body["status"] == "ok", body


def test_a_client_certificate_from_another_ca_is_refused(dev: DevServer, tmp_path: Path) -> None:
    forger = make_ca("not the operator's client CA")
    forged = issue_client_cert(forger, OPERATOR_CLIENT_NAME, 1)
    context = client_context(dev, forged.cert_pem, forged.key_pem, tmp_path)
    assert_refused_in_handshake(tls_attempt(dev, context))
    # The operator's own certificate over the same TLS 1.2 handshake is let in.
    own = dev.client_ca()
    genuine = issue_client_cert(own, OPERATOR_CLIENT_NAME, 1)
    assert tls_attempt(dev, client_context(dev, genuine.cert_pem, genuine.key_pem, tmp_path)) == 200


def test_a_pools_server_certificate_is_no_client_certificate(
    dev: DevServer, pool_b: DevServer, tmp_path: Path
) -> None:
    for pool in (dev, pool_b):
        cert = (pool.state / "tls.crt").read_bytes()
        key = (pool.state / "tls.key").read_bytes()
        for target in (dev, pool_b):
            context = client_context(target, cert, key, tmp_path)
            assert_refused_in_handshake(tls_attempt(target, context))


def test_a_client_certificate_of_another_name_is_not_admin(dev: DevServer, tmp_path: Path) -> None:
    other = issue_client_cert(dev.client_ca(), "someone-else", 1)
    context = client_context(dev, other.cert_pem, other.key_pem, tmp_path)
    assert tls_attempt(dev, context) == 403


def test_a_token_for_one_vaults_audience_is_refused_by_every_other_vault(
    dev: DevServer, pool_b: DevServer
) -> None:
    payments = put_vault(dev, "payments", "team-a")
    ledger = put_vault(dev, "ledger", "team-a")
    elsewhere = put_vault(pool_b, "ledger", "team-b")
    bound = dev.issue(TEAM_A_APP, audience=f"https://{payments}")
    status, body = call(dev, "GET", SECRETS, bound, host=payments)
    assert status == 200, body
    status, body = call(dev, "GET", SECRETS, bound, host=ledger)
    assert status == 401 and "audience" in body["error"]["message"], body
    # Another pool, with the issuer it trusts: the token is bound to the vault, not the issuer.
    replayed = pool_b.issue(TEAM_A_APP, audience=f"https://{payments}")
    status, body = call(pool_b, "GET", SECRETS, replayed, host=elsewhere)
    assert status == 401 and "audience" in body["error"]["message"], body
    own = pool_b.issue(TEAM_A_APP, audience=f"https://{elsewhere}")
    status, body = call(pool_b, "GET", SECRETS, own, host=elsewhere)
    assert status == 200, body


def test_the_shared_audience_is_for_the_pools_own_namespace_only(pool_b: DevServer) -> None:
    host = put_vault(pool_b, "orders", "team-b")
    foreign = pool_b.issue(TEAM_A_APP)  # audience strongroom.io/vault
    status, body = call(pool_b, "GET", SECRETS, foreign, host=host)
    assert status == 401, body
    assert "team-b" in body["error"]["message"] and f"https://{host}" in body["error"]["message"]
    status, body = call(pool_b, "GET", SECRETS, pool_b.issue(TEAM_B_APP), host=host)
    assert status == 200, body
    # From another namespace a workload projects a token for the vault's own URI instead.
    bound = pool_b.issue(TEAM_A_APP, audience=f"https://{host}")
    status, body = call(pool_b, "GET", SECRETS, bound, host=host)
    assert status == 200, body
