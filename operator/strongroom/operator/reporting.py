"""The one place where a failed reconcile becomes a condition, an Event and a kopf retry.

Messages come from reconcile.errors.classify, which names objects and causes
only; the original exception's text is never logged or posted, as it could
carry what an API server or a pool echoed back.
"""

import logging
import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import kopf

from ..models.base import HasConditions
from ..reconcile.conditions import with_condition
from ..reconcile.errors import NotReady, classify

log = logging.getLogger(__name__)


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


@asynccontextmanager
async def reporting(body: kopf.Body, patch: kopf.Patch) -> AsyncIterator[None]:
    try:
        yield
    except (kopf.TemporaryError, kopf.PermanentError):
        raise
    except Exception as exc:  # noqa: BLE001 - every failure is sorted by classify
        raise failure_to_kopf(exc, body, patch) from None
