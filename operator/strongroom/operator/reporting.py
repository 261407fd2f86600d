"""The one place where a failed reconcile becomes a condition, an Event and a kopf retry.

Messages come from reconcile.errors.classify, which names objects and causes
only; the original exception's text is never logged or posted, as it could
carry what an API server or a pool echoed back.
"""

import logging
import time
import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import kopf
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .. import metrics
from ..models.base import HasConditions
from ..reconcile.conditions import with_condition
from ..reconcile.errors import NotReady, classify

log = logging.getLogger(__name__)

KINDS = ("HsmPool", "Vault", "Key", "VaultSecret")
OUTCOMES = ("ok", "not_ready", "retry", "failed")


class OperatorMetrics:
    """Reconciles by kind, action (reconcile or delete) and outcome (ok; not_ready: waiting
    for another object; retry: a temporary failure; failed: given up until the spec
    changes), their duration, and the resources of each kind whose Ready condition is False.
    Labels hold kinds and outcomes only: never a resource's name or namespace."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or metrics.registry()
        self.reconciles = Counter(
            "strongroom_reconciles",
            "Handler runs by kind, action (reconcile or delete) and outcome.",
            ["kind", "action", "outcome"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "strongroom_reconcile_duration_seconds",
            "Time a handler ran, by kind and action.",
            ["kind", "action"],
            buckets=metrics.LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.not_ready = Gauge(
            "strongroom_resources_not_ready",
            "Resources of each kind whose last reconcile left Ready False (or unknown).",
            ["kind"],
            registry=self.registry,
        )
        # Whether each resource (by uid) was Ready after its last reconcile.
        self._ready: dict[str, dict[str, bool]] = {kind: {} for kind in KINDS}
        for kind in KINDS:
            self.not_ready.labels(kind).set(0)

    def observe(
        self, kind: str, action: str, outcome: str, seconds: float, uid: str, ready: bool | None
    ) -> None:
        kind = kind if kind in KINDS else "Unknown"
        self.reconciles.labels(kind, action, outcome).inc()
        self.duration.labels(kind, action).observe(seconds)
        states = self._ready.setdefault(kind, {})
        if action == "delete" and outcome == "ok":
            states.pop(uid, None)
        elif ready is not None:
            states[uid] = ready
        self.not_ready.labels(kind).set(sum(1 for ok in states.values() if not ok))


OPERATOR_METRICS = OperatorMetrics()


def _ready(body: kopf.Body, patch: kopf.Patch) -> bool | None:
    """The Ready condition after this run: the patch's, else the one the body had."""
    for status in (patch.status, body.get("status") or {}):
        conditions: Any = status.get("conditions") if hasattr(status, "get") else None
        if conditions:
            for condition in conditions:
                if isinstance(condition, dict) and condition.get("type") == "Ready":
                    return condition.get("status") == "True"
    return None


def failure_to_kopf(
    exc: BaseException, body: kopf.Body, patch: kopf.Patch
) -> kopf.TemporaryError | kopf.PermanentError:
    """Write the failure to the status, post an Event when a person should know, and say when
    to retry."""
    error = classify(exc)
    generation = body.meta.get("generation")
    status = getattr(error, "status", None)
    if isinstance(status, HasConditions):
        patch.status.update(status.wire())
    else:
        previous = HasConditions.model_validate(
            {"conditions": dict(body.status).get("conditions") or []}
        )
        conditions = with_condition(
            previous.conditions, "Ready", False, error.reason, error.message, generation
        )
        patch.status["conditions"] = [c.wire() for c in conditions]
        patch.status["observedGeneration"] = generation
    where = f"{body.meta.get('namespace')}/{body.meta.get('name')}"
    if error.reason == "InternalError":
        frames = "".join(traceback.format_tb(exc.__traceback__))
        log.error("%s failed with %s at\n%s", where, type(exc).__name__, frames)
    if error.retry_after is None:
        kopf.event(body, type="Warning", reason=error.reason, message=error.message)
        return kopf.PermanentError(error.message)
    if not isinstance(error, NotReady):
        kopf.event(body, type="Warning", reason=error.reason, message=error.message)
    return kopf.TemporaryError(error.message, delay=error.retry_after)


def _outcome(exc: BaseException | None) -> str:
    if exc is None:
        return "ok"
    return "failed" if isinstance(exc, kopf.PermanentError) else "retry"


@asynccontextmanager
async def reporting(
    body: kopf.Body,
    patch: kopf.Patch,
    action: str = "reconcile",
    observed: OperatorMetrics = OPERATOR_METRICS,
) -> AsyncIterator[None]:
    started = time.perf_counter()
    outcome = "ok"
    try:
        yield
    except (kopf.TemporaryError, kopf.PermanentError) as exc:
        outcome = _outcome(exc)
        raise
    except Exception as exc:  # noqa: BLE001 - every failure is sorted by classify
        error = failure_to_kopf(exc, body, patch)
        outcome = "not_ready" if isinstance(classify(exc), NotReady) else _outcome(error)
        raise error from None
    except BaseException:
        outcome = "retry"  # cancelled: kopf runs it again
        raise
    finally:
        observed.observe(
            str(body.get("kind", "")),
            action,
            outcome,
            time.perf_counter() - started,
            str(body.get("metadata", {}).get("uid", "")),
            _ready(body, patch),
        )
