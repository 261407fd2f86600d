"""The CSI node plugin's metrics.

Labels hold gRPC status names and fixed words only: never a volume id, a target path, a
pod, a vault, an object's name or anything from the volume context (where the pod's token
travels).
"""

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from .. import metrics
from .fetch import Fetcher

# The status names a publish or unpublish answers with (grpc.StatusCode names).
CODES = (
    "OK",
    "INVALID_ARGUMENT",
    "UNAUTHENTICATED",
    "PERMISSION_DENIED",
    "NOT_FOUND",
    "UNAVAILABLE",
    "INTERNAL",
)


class _FetchCounts(Collector):
    """The fetcher's own counts, read at each scrape."""

    def __init__(self, fetcher: Fetcher) -> None:
        self._fetcher = fetcher

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "strongroom_csi_vault_fetches",
            "Objects fetched from a vault (calls made to a vault server).",
            value=self._fetcher.vault_calls,
        )
        shared = CounterMetricFamily(
            "strongroom_csi_shared_fetches",
            "Objects served without a vault call: from a recent fetch of the same subject "
            "(cache), or by waiting for an identical fetch in flight (inflight).",
            labels=["source"],
        )
        shared.add_metric(["cache"], self._fetcher.cache_hits)
        shared.add_metric(["inflight"], self._fetcher.joined)
        yield shared


class CsiMetrics:
    def __init__(self, fetcher: Fetcher | None = None, registry: CollectorRegistry | None = None):
        self.registry = registry or metrics.registry()
        r = self.registry
        self.publishes = Counter(
            "strongroom_csi_publishes",
            "NodePublishVolume calls by the gRPC status they answered (OK, or why not).",
            ["code"],
            registry=r,
        )
        self.unpublishes = Counter(
            "strongroom_csi_unpublishes",
            "NodeUnpublishVolume calls by the gRPC status they answered.",
            ["code"],
            registry=r,
        )
        for code in CODES:
            self.publishes.labels(code)
            self.unpublishes.labels(code)
        self.publish_seconds = Histogram(
            "strongroom_csi_publish_duration_seconds",
            "Time to publish a volume that succeeded: mount (its first publish: fetch, tmpfs, "
            "write, bind) or refresh (a republish by the kubelet).",
            ["kind"],
            buckets=metrics.LATENCY_BUCKETS,
            registry=r,
        )
        self.rotations = Counter(
            "strongroom_csi_rotations",
            "Republishes that changed a mounted volume's files (an object rotated).",
            registry=r,
        )
        if fetcher is not None:
            r.register(_FetchCounts(fetcher))

    def observe(self, method: str, code: str) -> None:
        """One finished RPC of the Node service (others are not counted)."""
        if method == "NodePublishVolume":
            self.publishes.labels(code).inc()
        elif method == "NodeUnpublishVolume":
            self.unpublishes.labels(code).inc()
