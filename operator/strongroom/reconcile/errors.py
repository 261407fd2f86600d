"""The small exception tree of reconciling, and the one function that sorts any failure into it.

Each error says whether to retry and when; messages name objects and causes,
never a secret value, a PIN or a token.
"""

import asyncio
from dataclasses import dataclass

import aiohttp
import pydantic
from kubernetes_asyncio.client.exceptions import ApiException


class ReconcileError(Exception):
    """A reconcile that did not finish. `retry_after` None: retrying cannot help."""

    reason = "ReconcileFailed"
    retry_after: float | None = 30.0

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason


class NotReady(ReconcileError):
    """Something this resource needs is not there yet (its pool, its vault); wait for it."""

    reason = "NotReady"
    retry_after = 15.0


class Conflict(ReconcileError):
    """Someone else changed the object at the same time; try again soon."""

    reason = "Conflict"
    retry_after = 5.0


class Unavailable(ReconcileError):
    """The API server or the pool cannot be reached or failed; try again later."""

    reason = "Unavailable"
    retry_after = 30.0


class InvalidSpec(ReconcileError):
    """The spec cannot be carried out as written; a person has to change it."""

    reason = "InvalidSpec"
    retry_after = None


class ObjectConflict(ReconcileError):
    """An object the operator would make exists and was not made by it for this resource:
    it is never adopted, patched or deleted. Retried, as a person may remove it."""

    reason = "ObjectConflict"
    retry_after = 60.0


class ImageNotAllowed(ReconcileError):
    """An HsmPool names an image outside the operator's allowlist; nothing is made with it."""

    reason = "ImageNotAllowed"
    retry_after = None


class ImportNotAllowed(ReconcileError):
    """The Secret to import from does not opt in to this VaultSecret. Retried: its owner may
    add the annotation later."""

    reason = "ImportNotAllowed"
    retry_after = 60.0


class AdoptionNotAllowed(ReconcileError):
    """The Vault does not opt in to this object being adopted. Retried: its owner may add
    the annotation later."""

    reason = "AdoptionNotAllowed"
    retry_after = 60.0


class DeletionBlocked(ReconcileError):
    """A deletion waits for a pool that does not answer. Retried; unlike a NotReady it is
    posted as a Warning, as it may never end without a person."""

    reason = "PoolUnreachable"
    retry_after = 30.0


@dataclass(frozen=True)
class PoolApiError(Exception):
    """An answer of a pool's management API other than success."""

    status: int
    code: str
    message: str


def classify(exc: BaseException) -> ReconcileError:
    """The one place that decides whether a failure is retried, and says what happened."""
    if isinstance(exc, ReconcileError):
        return exc
    if isinstance(exc, pydantic.ValidationError):
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'spec'}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)
        )
        return InvalidSpec(f"The spec is invalid: {problems}")
    if isinstance(exc, ApiException):
        what = f"the Kubernetes API answered {exc.status} {exc.reason}"
        if exc.status == 409:
            return Conflict(f"{what}; retrying")
        if exc.status in (401, 403):
            return Unavailable(
                f"{what}: the operator's ServiceAccount lacks a permission (see deploy/rbac.yaml)",
                reason="Forbidden",
            )
        if exc.status == 422:
            return InvalidSpec(f"{what}: a child object was refused", reason="ChildRefused")
        return Unavailable(what)
    if isinstance(exc, PoolApiError):
        if exc.status == 404 and exc.code == "VaultNotFound":
            return NotReady(
                "The pool does not serve the vault yet; waiting for the Vault to be reconciled",
                reason="VaultNotServed",
            )
        if exc.status == 409:
            return InvalidSpec(exc.message, reason=exc.code or "PoolRefused")
        if exc.status == 400:
            return InvalidSpec(f"The pool refused the request: {exc.message}", reason="PoolRefused")
        if exc.status in (401, 403):
            return Unavailable(
                f"The pool refused the operator ({exc.status}): {exc.message}",
                reason="PoolAccessDenied",
            )
        return Unavailable(f"The pool answered {exc.status}: {exc.message}", reason="PoolFailed")
    if isinstance(exc, (aiohttp.ClientError, OSError, asyncio.TimeoutError)):
        return NotReady(
            f"The pool cannot be reached yet ({type(exc).__name__})", reason="PoolUnreachable"
        )
    return ReconcileError(f"Unexpected {type(exc).__name__}; retrying", reason="InternalError")
