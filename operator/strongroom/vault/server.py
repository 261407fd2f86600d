"""`strongroom vault-server`: serve the data plane over HTTPS."""

import asyncio
import contextlib
import logging
import signal
import ssl
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from ..hsm.client import HsmClient
from .app import DataPlane, make_app
from .auth import Authenticator
from .config import ServerConfig
from .management import Management

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Listen:
    host: str
    port: int
    cert: Path
    key: Path


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert), str(key))
    return context


async def serve(
    config: ServerConfig,
    listen: Listen,
    hsm_socket: Path,
    authenticator: Authenticator,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
    admin_subjects: tuple[str, ...] = (),
) -> None:
    hsm = HsmClient(hsm_socket)
    plane = DataPlane(config, hsm, authenticator, admin_subjects)
    await plane.start()
    management = Management(plane, admin_subjects).routes()
    runner = web.AppRunner(make_app(plane, management), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(
        runner,
        listen.host,
        listen.port,
        ssl_context=tls_context(listen.cert, listen.key),
        backlog=1024,
    )
    await site.start()
    log.info(
        "vault server listening on https://%s:%d with %d vault(s)",
        listen.host,
        listen.port,
        len(plane.vaults),
    )
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
        await runner.cleanup()
        await hsm.close()
        close = getattr(authenticator, "close", None)
        if close is not None:
            await close()
        log.info("vault server stopped")
