"""Prometheus metrics of strongroom's processes: each has its own registry, served in plain
HTTP at `/metrics` on a port of its own (`--metrics-port`, 0 for none), never on a port
that carries data-plane or CSI traffic.

What a label may hold (docs/security.md, "Metrics"): an operation or kind from the code's
own fixed vocabulary, an HTTP status or gRPC status name, a reason from a fixed list, and
a vault's name (the name of a Kubernetes resource, already visible to anyone who can list
Vaults). Never an object's name, a value, a token, a subject or a path a client chose.
"""

import argparse
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    ProcessCollector,
    generate_latest,
)

# Seconds: from a cached read (about a millisecond) to an RSA-4096 key generation.
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)

# Called at every scrape before the registry is written out; gives exposition text to
# append (metrics of another process, e.g. the HSM sidecar's), or b"".
BeforeScrape = Callable[[], Awaitable[bytes]]


def registry() -> CollectorRegistry:
    """A registry of this process's metrics only (never the global default), with the
    process's own (process_cpu_seconds_total, process_resident_memory_bytes, ...)."""
    made = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=made)
    return made


def add_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """`--metrics-port` and `--metrics-address` for a command."""
    parser.add_argument(
        "--metrics-port",
        type=_port,
        default=0,
        help=f"serve {what}'s Prometheus metrics at http://ADDRESS:PORT/metrics, apart from "
        "every other port (default 0: no metrics endpoint)",
    )
    parser.add_argument(
        "--metrics-address",
        default="0.0.0.0",  # noqa: S104 - the pod's address
        help="address the metrics endpoint listens on (default %(default)s)",
    )


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("expected a port from 0 to 65535 (0: none)")
    return port


async def serve(
    registry: CollectorRegistry,
    port: int,
    host: str = "0.0.0.0",  # noqa: S104 - the pod's address
    before_scrape: BeforeScrape | None = None,
) -> web.AppRunner | None:
    """Serve `registry` at /metrics on host:port (nothing when port is 0); the caller
    cleans the returned runner up."""
    if port == 0:
        return None

    async def metrics(request: web.Request) -> web.Response:
        extra = await before_scrape() if before_scrape is not None else b""
        return web.Response(
            body=generate_latest(registry) + extra,
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
