"""The vault server's metrics (and, appended at each scrape, its HSM sidecar's).

Labels hold only the route table's operation names (or the management API's), HTTP
status codes, the fixed reasons below, the HSM's operation and algorithm names from the
code's own lists, object kinds and vault names: never an object's name or version, a
value, a token, a caller's subject or a path a client sent.
"""

import asyncio
import logging
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge

from .. import jose, metrics
from ..hsm.client import HsmClient
from ..hsm.errors import HsmError
from .auth import FOREIGN_NAMESPACE
from .errors import AccessDenied, ChallengeNeeded, Unauthorized, VaultError
from .objects import CURVES, RSA_ENCRYPTION, SIGN_ALGORITHMS

log = logging.getLogger(__name__)

# Why a request was refused before (or instead of) its operation.
AUTH_REASONS = ("missing", "bad_token", "expired", "wrong_audience", "denied")
# The mechanism label of an HSM call: an algorithm or curve the code knows, else "-".
MECHANISMS = frozenset(
    [alg for algs in SIGN_ALGORITHMS.values() for alg in algs] + [*RSA_ENCRYPTION, *CURVES]
)
SIDECAR_SCRAPE_SECONDS = 5.0
NO_TOKEN = "The request needs a bearer token."  # noqa: S105 - a message


def refusal_reason(exc: VaultError) -> str | None:
    """The auth failure reason of a refused request, or None when it was no auth failure.

    The authenticators tell their refusals apart by message (a refused token is cached by its
    message), so the mapping reads the same messages."""
    if isinstance(exc, AccessDenied):
        return "denied"
    if not isinstance(exc, Unauthorized):
        return None
    if not isinstance(exc, ChallengeNeeded) or exc.message == NO_TOKEN:
        return "missing"  # no bearer token, or the management API without a client certificate
    if exc.message == jose.EXPIRED:
        return "expired"
    if exc.message == jose.AUDIENCE:
        return "wrong_audience"
    if exc.message.startswith(FOREIGN_NAMESPACE):
        return "denied"
    return "bad_token"


def mechanism(op: str, args: dict[str, Any]) -> str:
    for name in ("alg", "curve"):
        value = args.get(name)
        if isinstance(value, str) and value in MECHANISMS:
            return value
    bits = args.get("bits")
    if op in ("generate_rsa", "generate_aes") and bits in (128, 192, 256, 2048, 3072, 4096):
        return f"{bits}"
    return "-"


class ServerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or metrics.registry()
        r = self.registry
        # The request path's own: kept in plain numbers, written out at scrape.
        self.requests = metrics.Tally(
            "strongroom_requests",
            "Requests answered, by operation (the route table's name) and HTTP status.",
            ("op", "code"),
            r,
        )
        self.duration = metrics.Timings(
            "strongroom_request_duration_seconds",
            "Time from a request's arrival to its answer, by operation.",
            ("op",),
            r,
        )
        self.in_flight = metrics.Level(
            "strongroom_requests_in_flight", "Requests being handled now.", r
        )
        self.auth_failures = Counter(
            "strongroom_auth_failures",
            "Requests refused for who sent them: missing (no token or client certificate), "
            "bad_token, expired, wrong_audience, denied (no permission, or a shared-audience "
            "token from another namespace).",
            ["reason"],
            registry=r,
        )
        for reason in AUTH_REASONS:
            self.auth_failures.labels(reason)
        self.hsm_calls = metrics.Timings(
            "strongroom_hsm_call_duration_seconds",
            "HSM calls from the vault server, queueing at the sidecar included, by operation "
            "and mechanism (algorithm, curve or size; - for none).",
            ("operation", "mechanism"),
            r,
        )
        self.hsm_errors = Counter(
            "strongroom_hsm_call_errors",
            "HSM calls that failed, by operation and error class (HsmUnavailable: the sidecar "
            "could not be reached).",
            ["operation", "error"],
            registry=r,
        )
        self.hsm_queue = Gauge(
            "strongroom_hsm_queue_depth",
            "HSM requests sent to the sidecar and not answered yet (it runs one at a time).",
            registry=r,
        )
        self.sidecar_up = Gauge(
            "strongroom_hsm_sidecar_up",
            "1 when the HSM sidecar answered this scrape's request for its metrics.",
            registry=r,
        )
        self.objects = Gauge(
            "strongroom_vault_objects",
            "Objects in each served vault by kind, deleted (recoverable) ones included.",
            ["vault", "kind"],
            registry=r,
        )

    def observe_request(
        self, op: str, status: int, seconds: float, refused: VaultError | None
    ) -> None:
        self.requests.inc(op, str(status))
        self.duration.observe(seconds, op)
        if refused is not None:
            reason = refusal_reason(refused)
            if reason is not None:
                self.auth_failures.labels(reason).inc()

    def observe_hsm(self, op: str, args: dict[str, Any], seconds: float, error: str | None) -> None:
        self.hsm_calls.observe(seconds, op, mechanism(op, args))
        if error is not None:
            self.hsm_errors.labels(op, error).inc()

    async def before_scrape(self, plane: Any) -> bytes:
        """Refresh the gauges read from the data plane; the sidecar's metrics as text."""
        for name, vault in list(plane.vaults.items()):
            try:
                self.objects.labels(name, "key").set(await vault.keys.count())
                self.objects.labels(name, "secret").set(await vault.secrets.count())
            except (VaultError, HsmError):
                continue
        for labels in list(self._object_labels()):
            if labels[0] not in plane.vaults:
                self.objects.remove(*labels)
        hsm = plane.hsm
        if not isinstance(hsm, HsmClient):
            return b""
        self.hsm_queue.set(hsm.in_flight)
        try:
            async with asyncio.timeout(SIDECAR_SCRAPE_SECONDS):
                text = await hsm.sidecar_metrics()
        except (TimeoutError, HsmError):
            self.sidecar_up.set(0)
            return b""
        self.sidecar_up.set(1)
        return text.encode()

    def _object_labels(self) -> list[tuple[str, str]]:
        return [
            (sample.labels["vault"], sample.labels["kind"])
            for family in self.objects.collect()
            for sample in family.samples
        ]


# The metrics of the app, for the middleware; absent when the server has no metrics.
METRICS = web.AppKey("strongroom_metrics", ServerMetrics)
