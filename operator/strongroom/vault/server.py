"""`strongroom vault-server`: serve the data plane over HTTPS.

A client that has not finished its TLS handshake, or the headers of its next request,
within `HEADER_TIMEOUT_SECONDS` is disconnected: idle connections cost little.
"""

import asyncio
import contextlib
import logging
import signal
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from .. import metrics as exposition
from ..hsm.client import HsmClient
from ..storage import SqliteStorage
from ..tls import OPERATOR_CLIENT_NAME, ServerTls
from . import http1
from .app import MAX_BODY_BYTES, DataPlane, make_app
from .auth import AdminClient, Authenticator
from .config import ServerConfig
from .management import Management
from .metrics import ServerMetrics
from .securitydomain import SecurityDomain

log = logging.getLogger(__name__)

HEADER_TIMEOUT_SECONDS = 10.0
RECORDS_FILE = "records.db"  # the record storage, in the data directory


@dataclass(frozen=True)
class Listen:
    host: str
    port: int
    cert: Path
    key: Path
    # The operator's client CA; None (dev-style local use) leaves the pool without admin.
    client_ca: Path | None = None
    # The metrics endpoint (plain HTTP, its own port; 0: none).
    metrics_port: int = 0
    metrics_host: str = "0.0.0.0"  # noqa: S104 - the pod's address


class TlsSite(web.BaseSite):
    """A TCP site whose clients must finish the TLS handshake within `handshake_timeout`
    (aiohttp's TCPSite leaves asyncio's 60 seconds), served by `protocol` (a factory of
    connections; the runner's aiohttp server when None)."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext,
        handshake_timeout: float,
        backlog: int = 1024,
        protocol: Callable[[], asyncio.Protocol] | None = None,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=backlog)
        self._address = (host, port)
        self._handshake_timeout = handshake_timeout
        self._protocol = protocol

    @property
    def name(self) -> str:
        return f"https://{self._address[0]}:{self._address[1]}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self._protocol or server,
            *self._address,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=True,
            ssl_handshake_timeout=self._handshake_timeout,
        )


async def serve(
    config: ServerConfig,
    listen: Listen,
    hsm_socket: Path,
    data_dir: Path,
    authenticator: Authenticator,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
    admin_client_name: str = OPERATOR_CLIENT_NAME,
    header_timeout: float = HEADER_TIMEOUT_SECONDS,
    backup_dir: Path | None = None,
) -> None:
    # The certificate comes from the mounted files at every start: the operator keeps the
    # Secret in step with what it pushes through the management API.
    tls = ServerTls.from_files(listen.cert, listen.key, listen.client_ca)
    metrics = ServerMetrics()
    hsm = HsmClient(hsm_socket, observer=metrics.observe_hsm)
    storage = SqliteStorage(data_dir / RECORDS_FILE)
    plane = DataPlane(config, hsm, storage, authenticator, AdminClient(admin_client_name))
    await plane.start()
    # The pool-level routes: the operator's management API and the security domain.
    management = (
        Management(plane, tls, backup_dir, data_dir / RECORDS_FILE).routes()
        + SecurityDomain(plane, config).routes()
    )
    runner = web.AppRunner(
        make_app(plane, management, metrics),
        access_log=None,
        handle_signals=False,
        # aiohttp closes a connection that has no complete request when this runs out,
        # from the handshake's end and again after each answer: the header timeout.
        keepalive_timeout=header_timeout,
    )
    await runner.setup()
    assert runner.server is not None
    # Every connection starts in the data plane's own HTTP/1.1 layer, which hands anything
    # but its plain requests to aiohttp (vault/http1.py).
    connections = http1.Connections(
        plane.identify,
        plane.handle,
        metrics,
        runner.server,
        header_timeout,
        http1.own_surfaces(runner.app),
        MAX_BODY_BYTES,
    )
    site = TlsSite(
        runner, listen.host, listen.port, tls.context, header_timeout, protocol=connections
    )
    await site.start()
    log.info(
        "vault server listening on https://%s:%d with %d vault(s)",
        listen.host,
        listen.port,
        len(plane.vaults),
    )
    metrics_runner = await exposition.serve(
        metrics.registry,
        listen.metrics_port,
        listen.metrics_host,
        before_scrape=lambda: metrics.before_scrape(plane),
    )
    if metrics_runner is not None:
        log.info("metrics at http://%s:%d/metrics", listen.metrics_host, listen.metrics_port)
    maintenance = asyncio.create_task(plane.maintain_forever())
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        maintenance.cancel()
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        await runner.cleanup()
        connections.close_all()
        await hsm.close()
        await storage.close()
        close = getattr(authenticator, "close", None)
        if close is not None:
            await close()
        log.info("vault server stopped")
