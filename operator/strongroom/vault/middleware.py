"""The one middleware of the pool's HTTPS server: authentication, errors and audit for
every surface.

A handler names its surface's gate (`gated`): the data plane's identifies the caller by
the operator's client certificate or a bearer token bound to the vault; the management
API's admits the operator's certificate only. The middleware runs the gate before the
handler. The data plane and the management API raise the data plane's errors
(`VaultError`, or the HSM's, mapped here); this turns each into Key Vault's error body
with its headers, turns
an unexpected exception into a 500 of the same shape (logged by type and place only: its
message could hold request data), and writes one audit line for every request a handler
opened an `Audit` for, with the status it got. A request turned away before it was
authenticated (401, 429) with no operation known leaves no audit line.
"""

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from ..hsm.errors import HsmError
from .audit import AuditRecord
from .auth import Throttled
from .errors import ChallengeNeeded, MethodNotAllowed, VaultError, from_hsm
from .metrics import METRICS, ServerMetrics

log = logging.getLogger(__name__)

_AUDIT = web.RequestKey("strongroom_audit", object)
Gate = Callable[[web.Request], Awaitable[None]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def gated(gate: Gate, handler: Handler) -> Handler:
    """`handler` behind `gate`: the middleware authenticates with the gate first (it
    raises to refuse, and notes the caller in the request's audit)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        return await handler(request)

    handle.strongroom_gate = gate  # type: ignore[attr-defined]
    return handle


@dataclass
class Audit:
    """What the audit line of one request says; its handler fills it in as it learns."""

    operation: str = "Unknown"
    caller: str = ""
    vault: str = ""
    object: str = ""
    version: str = ""


def audit(request: web.Request) -> Audit:
    """The audit of this request, opened on first use: only opened ones are written."""
    found = request.get(_AUDIT)
    if isinstance(found, Audit):
        return found
    opened = Audit()
    request[_AUDIT] = opened
    return opened


def error_response(exc: VaultError) -> web.Response:
    """Key Vault's error body, with the headers an error of this kind carries."""
    headers = {}
    if isinstance(exc, ChallengeNeeded):
        headers["WWW-Authenticate"] = exc.challenge
    if isinstance(exc, Throttled):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, MethodNotAllowed):
        headers["Allow"] = ", ".join(exc.allowed)
    body = {"error": {"code": exc.code, "message": exc.message}}
    return web.Response(
        status=exc.status,
        headers=headers,
        body=json.dumps(body).encode(),
        content_type="application/json",
    )


def _unexpected(request: web.Request, exc: Exception) -> web.Response:
    where = exc.__traceback__
    while where is not None and where.tb_next is not None:
        where = where.tb_next
    log.error(
        "%s %s failed: %s at %s:%s",
        request.method,
        audit(request).operation if request.get(_AUDIT) else request.path[:64],
        type(exc).__name__,
        where.tb_frame.f_code.co_filename if where else "?",
        where.tb_lineno if where else "?",
    )
    return error_response(VaultError("The server failed to handle the request."))


@web.middleware
async def answers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    return await answer(
        request,
        handler,
        getattr(handler, "strongroom_gate", None),
        request.app.get(METRICS),
        lambda: request.match_info.route.name,
    )


async def answer(
    request: web.Request,
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    gate: Gate | None,
    metrics: ServerMetrics | None,
    route_name: Callable[[], str | None],
) -> web.StreamResponse:
    """`handler`'s answer to `request` behind `gate`, with errors in Key Vault's shape, the
    audit line and the request metrics: what every surface's request gets, through
    aiohttp (the middleware) or the data plane's own HTTP/1.1 layer (vault/http1.py)."""
    if metrics is not None:
        metrics.in_flight.value += 1
    try:
        started = time.perf_counter()
        response: web.StreamResponse
        refused: VaultError | None = None
        try:
            if gate is not None:
                await gate(request)
            response = await handler(request)
        except VaultError as exc:
            refused = exc
            response = error_response(exc)
        except HsmError as exc:
            response = error_response(from_hsm(exc))
        except web.HTTPNotFound:  # the router's own: a path no route takes
            response = error_response(
                VaultError("No such resource exists in this API.", code="NotFound", status=404)
            )
        except web.HTTPMethodNotAllowed as exc:
            response = error_response(
                MethodNotAllowed(
                    f"The method {request.method[:16]} is not allowed here.",
                    sorted(exc.allowed_methods),
                )
            )
        except Exception as exc:  # noqa: BLE001 - a bug answers 500 in Key Vault's shape
            response = _unexpected(request, exc)
        opened = request.get(_AUDIT)
        if isinstance(opened, Audit) and (
            opened.operation != "Unknown" or response.status not in (401, 429)
        ):
            AuditRecord(
                opened.caller,
                opened.vault,
                opened.operation,
                opened.object,
                opened.version,
                response.status,
                round((time.perf_counter() - started) * 1000, 2),
            ).emit()
        if metrics is not None:  # the operation names a route, never an object
            op = opened.operation if isinstance(opened, Audit) else None
            op = op or route_name() or "Unknown"
            metrics.observe_request(op, response.status, time.perf_counter() - started, refused)
        return response
    finally:
        if metrics is not None:
            metrics.in_flight.value -= 1
