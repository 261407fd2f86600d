"""The operator's pool client: a client certificate from the client CA, never a bearer token.

A real HTTPS server with the vault server's TLS context records what each request brought.
"""

import asyncio
import datetime
import ssl
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography import x509

from strongroom.reconcile import poolapi
from strongroom.reconcile.poolapi import PoolApi
from strongroom.tls import (
    OPERATOR_CLIENT_NAME,
    ServerTls,
    issue_client_cert,
    issue_server_cert,
    make_ca,
    write_pair,
)
from strongroom.vault.auth import AdminClient


def test_the_pool_client_presents_its_certificate_and_no_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server_ca, client_ca = make_ca("pool CA"), make_ca("client CA")
    write_pair(issue_server_cert(server_ca, ["127.0.0.1"]), tmp_path / "s.crt", tmp_path / "s.key")
    (tmp_path / "client-ca.crt").write_bytes(client_ca.cert_pem)
    seen: list[dict[str, Any]] = []
    admin = AdminClient()

    async def health(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        seen.append(
            {
                "authorization": request.headers.get("Authorization"),
                "admin": admin.matches(request),
                "serial": (peer or {}).get("serialNumber"),
            }
        )
        # A new connection for each call, so a renewed certificate is seen at once.
        return web.json_response({"status": "ok"}, headers={"Connection": "close"})

    async def scenario() -> None:
        tls = ServerTls.from_files(
            tmp_path / "s.crt", tmp_path / "s.key", tmp_path / "client-ca.crt"
        )
        app = web.Application()
        app.router.add_get("/_strongroom/v1/health", health)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls.context)
        await site.start()
        endpoint = f"https://127.0.0.1:{site.port}"
        pools = PoolApi(server_ca.cert_pem.decode(), client_ca)
        try:
            assert (await pools.health(endpoint))["status"] == "ok"
            first = x509.load_pem_x509_certificate(pools.client_cert_pem)
            life = first.not_valid_after_utc - first.not_valid_before_utc
            assert life >= datetime.timedelta(days=poolapi.CLIENT_CERT_DAYS)
            # Half its life gone: the next call presents a new certificate.
            later = poolapi.time.time() + life.total_seconds() / 2 + 60
            monkeypatch.setattr(poolapi.time, "time", lambda: later)
            assert (await pools.health(endpoint))["status"] == "ok"
            second = x509.load_pem_x509_certificate(pools.client_cert_pem)
            assert second.serial_number != first.serial_number
        finally:
            await pools.close()
            await runner.cleanup()
        assert [s["authorization"] for s in seen] == [None, None]
        assert [s["admin"] for s in seen] == [True, True]
        assert seen[0]["serial"] != seen[1]["serial"]
        assert int(seen[1]["serial"], 16) == second.serial_number

    asyncio.run(scenario())


def test_a_client_certificate_names_the_operator_for_client_auth_only() -> None:
    issued = issue_client_cert(make_ca("client CA"), OPERATOR_CLIENT_NAME, 30)
    cert = x509.load_pem_x509_certificate(issued.cert_pem)
    assert cert.subject.rfc4514_string() == f"CN={OPERATOR_CLIENT_NAME}"
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


def test_the_server_trusts_no_system_ca_for_clients(tmp_path: Path) -> None:
    ca = make_ca("pool CA")
    write_pair(issue_server_cert(ca, ["localhost"]), tmp_path / "s.crt", tmp_path / "s.key")
    (tmp_path / "client-ca.crt").write_bytes(make_ca("client CA").cert_pem)
    tls = ServerTls.from_files(tmp_path / "s.crt", tmp_path / "s.key", tmp_path / "client-ca.crt")
    assert tls.context.verify_mode == ssl.CERT_OPTIONAL
    assert [c["subject"] for c in tls.context.get_ca_certs()] == [((("commonName", "client CA"),),)]
    assert tls.served is not None and tls.served.dns_names == ("localhost",)
