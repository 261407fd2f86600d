"""The operator pushes a pool's certificate through the management API, and only it can.

A real `strongroom dev` of its own (the test replaces its certificate); the operator's pool
client does the pushing, as the Vault reconcile does.
"""

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography import x509

from strongroom.reconcile.errors import PoolApiError
from strongroom.reconcile.poolapi import PoolApi
from strongroom.tls import issue_server_cert, make_ca

from .conftest import DevServer, start_dev, stop_dev
from .test_management_api import call, manage

TLS = "/_strongroom/v1/tls"


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    base = tmp_path_factory.mktemp("tls-push")
    server = start_dev(base / "state", base / "dev.log")
    yield server
    stop_dev(server)


def served_certificate(pool: DevServer) -> x509.Certificate:
    """The certificate a new handshake gets (not verified: only looked at)."""
    port = urlsplit(pool.url).port
    assert port is not None
    pem = ssl.get_server_certificate(("127.0.0.1", port), timeout=30)
    return x509.load_pem_x509_certificate(pem.encode())


def with_pools(pool: DevServer, scenario: Any) -> Any:
    async def main() -> Any:
        pools = PoolApi(Path(pool.ca).read_text(), pool.client_ca())
        try:
            return await scenario(pools)
        finally:
            await pools.close()

    return asyncio.run(main())


def test_only_the_operator_may_push_and_bad_pairs_are_refused(pool: DevServer) -> None:
    served = served_certificate(pool)
    other = issue_server_cert(make_ca("stranger"), ["localhost"])
    body = {"certificate": other.cert_pem.decode(), "privateKey": other.key_pem.decode()}
    status, answer = call(pool, "PUT", TLS, pool.token, body)
    assert status == 401 and "client certificate" in answer["error"]["message"]
    mismatched = {"certificate": other.cert_pem.decode(), "privateKey": _fresh_key()}
    status, answer = manage(pool, "PUT", TLS, mismatched)
    assert status == 400 and "does not belong" in answer["error"]["message"]
    assert "PRIVATE KEY" not in answer["error"]["message"]
    status, answer = manage(pool, "PUT", TLS, {"certificate": "junk", "privateKey": "junk"})
    assert status == 400 and "not a PEM certificate" in answer["error"]["message"]
    status, answer = manage(pool, "PUT", TLS, {"certificate": other.cert_pem.decode()})
    assert status == 400 and "privateKey" in answer["error"]["message"]
    assert served_certificate(pool).serial_number == served.serial_number


def _fresh_key() -> str:
    return issue_server_cert(make_ca("another"), ["localhost"]).key_pem.decode()


def test_a_pool_error_reaches_the_operator(pool: DevServer) -> None:
    async def push(pools: PoolApi) -> None:
        with pytest.raises(PoolApiError) as raised:
            await pools.put_tls(pool.url, "junk", "junk")
        assert raised.value.status == 400

    with_pools(pool, push)


def test_a_pushed_certificate_serves_new_handshakes_and_is_reported(pool: DevServer) -> None:
    """Last in this module: from here on the pool serves a certificate of another CA."""
    before = served_certificate(pool)
    new_ca = make_ca("the operator's CA, renewed")
    hosts = ["localhost", "payments-vault.team-a.svc", "payments-vault.team-a.svc.cluster.local"]
    issued = issue_server_cert(new_ca, hosts, days=30)
    pushed = x509.load_pem_x509_certificate(issued.cert_pem)

    async def push(pools: PoolApi) -> None:
        assert "localhost" in (await pools.get_tls(pool.url))["dnsNames"]
        await pools.put_tls(pool.url, issued.cert_pem.decode(), issued.key_pem.decode())

    with_pools(pool, push)
    after = served_certificate(pool)
    assert after.serial_number == pushed.serial_number != before.serial_number
    (pool.state / "new-ca.crt").write_bytes(new_ca.cert_pem)
    pool.ca = str(pool.state / "new-ca.crt")

    async def look(pools: PoolApi) -> dict[str, Any]:
        return await pools.get_tls(pool.url)

    answer = with_pools(pool, look)
    assert answer["dnsNames"] == hosts
    assert answer["notAfter"] == pushed.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    # Served from memory: the key was written nowhere in the pool's state.
    key_body = issued.key_pem.split(b"\n")[1]
    for path in pool.state.rglob("*"):
        if path.is_file():
            assert key_body not in path.read_bytes(), path
    assert key_body.decode() not in pool.log_text()
