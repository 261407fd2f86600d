"""A hostile vault cannot exhaust the node plugin: bodies are capped, every fetch is timed.

The vault a pod names is a server the pod's tenant may run. These servers speak
real HTTPS on 127.0.0.1 and misbehave: an endless body, a body that claims to
be huge, a gzip bomb, a body trickled a byte at a time, an answer that never
comes. Each fetch fails with a clear error, in bounded time and memory.
"""

import asyncio
import gzip
import ssl
import time
import tracemalloc
from pathlib import Path

import pytest
from aiohttp import web

from strongroom.csi.fetch import Fetcher, FetchError
from strongroom.csi.volume import VaultObject
from strongroom.tls import issue_server_cert, make_ca, write_pair

SECRET = VaultObject("secret", "db-password", "", "db-password", "value", 0o444)
CHUNK = b" " * 65536
ENDLESS_LIMIT = 256 * 1024 * 1024  # the server gives up after this much, should the client not


async def endless(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    await response.write(b'{"value": "')
    sent = 0
    while sent < ENDLESS_LIMIT:
        await response.write(CHUNK)
        sent += len(CHUNK)
    return response


async def claims_huge(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Length": str(10 * 1024**3)})
    await response.prepare(request)
    sent = 0
    while sent < ENDLESS_LIMIT:
        await response.write(CHUNK)
        sent += len(CHUNK)
    return response


BOMB = gzip.compress(b'{"value": "' + b"A" * (100 * 1024 * 1024) + b'"}', compresslevel=1)


async def gzip_bomb(request: web.Request) -> web.Response:
    body = BOMB
    return web.Response(
        body=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
    )


async def trickle(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    for _ in range(10_000):
        await response.write(b" ")
        await asyncio.sleep(0.2)
    return response


async def silent(request: web.Request) -> web.Response:
    await asyncio.sleep(3600)
    return web.Response()


async def huge_header(request: web.Request) -> web.Response:
    return web.Response(text="{}", headers={"X-Filler": "x" * 100_000})


async def many_headers(request: web.Request) -> web.Response:
    return web.Response(text="{}", headers={f"X-H{i}": "x" * 100 for i in range(1000)})


async def honest(request: web.Request) -> web.Response:
    return web.json_response({"value": "fine", "id": "x"})


ROUTES = {
    "endless": endless,
    "claims-huge": claims_huge,
    "gzip-bomb": gzip_bomb,
    "trickle": trickle,
    "silent": silent,
    "huge-header": huge_header,
    "many-headers": many_headers,
    "honest": honest,
}


async def serving(tmp_path: Path) -> tuple[web.AppRunner, str]:
    ca = make_ca("hostile test CA")
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    write_pair(issue_server_cert(ca, ["localhost"]), tmp_path / "tls.crt", tmp_path / "tls.key")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    app = web.Application()
    for name, handler in ROUTES.items():
        app.router.add_get(f"/{name}/secrets/db-password/", handler)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"https://localhost:{port}"


TIMEOUT = 3.0


def fetch_from(tmp_path: Path, route: str) -> tuple[bytes | FetchError, float, int]:
    """Fetch a secret from the hostile server's `route`: (content or error, seconds, peak)."""

    async def attempt() -> tuple[bytes | FetchError, float, int]:
        runner, url = await serving(tmp_path)
        fetcher = Fetcher(str(tmp_path / "ca.crt"), None, share_seconds=0, timeout=TIMEOUT)
        tracemalloc.start()
        started = time.monotonic()
        try:
            outcome: bytes | FetchError = await fetcher.fetch(f"{url}/{route}", SECRET, "token")
        except FetchError as exc:
            outcome = exc
        finally:
            elapsed = time.monotonic() - started
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            await fetcher.close()
            await runner.cleanup()
        return outcome, elapsed, peak

    return asyncio.run(attempt())


@pytest.mark.parametrize(
    "route,fragment",
    [
        ("endless", "more than"),
        ("claims-huge", "more than"),
        ("gzip-bomb", "encoding"),
        ("trickle", "within"),
        ("silent", "within"),
        ("huge-header", "header"),
        ("many-headers", "header"),
    ],
)
def test_a_hostile_vault_gets_a_clear_error_in_bounded_time_and_memory(
    tmp_path: Path, route: str, fragment: str
) -> None:
    outcome, elapsed, peak = fetch_from(tmp_path, route)
    assert isinstance(outcome, FetchError), f"{route}: the fetch succeeded"
    assert fragment in str(outcome), str(outcome)
    assert elapsed < TIMEOUT + 2, f"{route}: {elapsed:.1f}s"
    assert peak < 16 * 1024 * 1024, f"{route}: peak {peak / 2**20:.0f} MiB"


def test_an_honest_vault_still_answers(tmp_path: Path) -> None:
    outcome, _, _ = fetch_from(tmp_path, "honest")
    assert outcome == b"fine"
