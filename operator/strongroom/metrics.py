"""Prometheus metrics of strongroom's processes: each has its own registry, served in plain
HTTP at `/metrics` on a port of its own (`--metrics-port`, 0 for none), never on a port
that carries data-plane or CSI traffic.

What a label may hold (docs/security.md, "Metrics"): an operation or kind from the code's
own fixed vocabulary, an HTTP status or gRPC status name, a reason from a fixed list, and
a vault's name (the name of a Kubernetes resource, already visible to anyone who can list
Vaults). Never an object's name, a value, a token, a subject or a path a client chose.
"""

import argparse
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterator

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

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


class Tally(Collector):
    """A counter family for a request path: one dict update per increment, the samples
    written out at scrape. For a single-threaded event loop (no lock is taken)."""

    def __init__(
        self, name: str, documentation: str, labels: tuple[str, ...], registry: CollectorRegistry
    ) -> None:
        self._name, self._doc, self._labels = name, documentation, labels
        self.values: dict[tuple[str, ...], float] = {}
        registry.register(self)

    def inc(self, *labels: str) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + 1.0

    def value(self, *labels: str) -> float:
        return self.values.get(labels, 0.0)

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self._name, self._doc, labels=self._labels)

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self._name, self._doc, labels=self._labels)
        for labels, value in sorted(self.values.items()):
            family.add_metric(list(labels), value)
        yield family


class Timings(Collector):
    """A histogram family for a request path, like `Tally`: an observation is a bisection
    and two list updates; cumulative buckets are summed at scrape."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labels: tuple[str, ...],
        registry: CollectorRegistry,
        buckets: tuple[float, ...] = LATENCY_BUCKETS,
    ) -> None:
        self._name, self._doc, self._labels = name, documentation, labels
        self._bounds = buckets
        # Per label set: a count per bucket (the last for +Inf), then the sum.
        self.values: dict[tuple[str, ...], list[float]] = {}
        registry.register(self)

    def observe(self, seconds: float, *labels: str) -> None:
        entry = self.values.get(labels)
        if entry is None:
            entry = self.values[labels] = [0.0] * (len(self._bounds) + 2)
        entry[bisect_left(self._bounds, seconds)] += 1.0
        entry[-1] += seconds

    def count(self, *labels: str) -> float:
        entry = self.values.get(labels)
        return sum(entry[:-1]) if entry is not None else 0.0

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self._name, self._doc, labels=self._labels)

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self._name, self._doc, labels=self._labels)
        for labels, entry in sorted(self.values.items()):
            buckets, total = [], 0.0
            for bound, count in zip((*self._bounds, float("inf")), entry[:-1], strict=True):
                total += count
                buckets.append((_bound_label(bound), total))
            family.add_metric(list(labels), buckets, sum_value=entry[-1])
        yield family


def _bound_label(bound: float) -> str:
    """A bucket's `le` as Prometheus writes it: "+Inf", else the float's shortest form."""
    return "+Inf" if bound == float("inf") else repr(float(bound))


class Level(Collector):
    """A gauge without labels kept in a plain number (`value`), for a request path."""

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry) -> None:
        self._name, self._doc = name, documentation
        self.value = 0.0
        registry.register(self)

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self._name, self._doc)

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self._name, self._doc, value=self.value)


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
