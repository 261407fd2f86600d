"""Errors of the data plane, each with its HTTP status and Azure error code."""

from ..hsm import errors as hsm


class VaultError(Exception):
    status = 500
    code = "InternalServerError"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status


class BadParameter(VaultError):
    status = 400
    code = "BadParameter"


class Unauthorized(VaultError):
    status = 401
    code = "Unauthorized"


class ChallengeNeeded(Unauthorized):
    """A 401 whose answer carries the bearer challenge the Azure SDKs follow."""

    def __init__(self, challenge: str, message: str) -> None:
        super().__init__(message)
        self.challenge = challenge


class Forbidden(VaultError):
    status = 403
    code = "Forbidden"


class AccessDenied(Forbidden):
    """The caller is known but holds no permission for the operation (an auth failure)."""


class NotFound(VaultError):
    status = 404
    code = "NotFound"


class MethodNotAllowed(VaultError):
    """A method no operation takes on a path that others do; `allowed` are the others."""

    status = 405
    code = "MethodNotAllowed"

    def __init__(self, message: str, allowed: list[str]) -> None:
        super().__init__(message)
        self.allowed = allowed


class Conflict(VaultError):
    status = 409
    code = "Conflict"


class NotActivated(Conflict):
    """The pool is not activated: no key or secret operation until its security domain is
    downloaded or uploaded."""

    code = "PoolNotActivated"


NOT_ACTIVATED = (
    "The pool is not activated, so it serves no key or secret operation: its security "
    "domain must first be downloaded (POST /securitydomain/download, a new pool) or uploaded "
    "(POST /securitydomain/upload, a pool being restored)."
)


class ServiceUnavailable(VaultError):
    status = 503
    code = "ServiceUnavailable"


class QuotaExceeded(VaultError):
    status = 409
    code = "QuotaExceeded"


class RecordUnreadable(VaultError):
    """A stored record does not open or parse: damaged storage, never a caller's error."""


def from_hsm(exc: hsm.HsmError) -> VaultError:
    """The one place HSM failures become HTTP answers."""
    if isinstance(exc, hsm.NotActivated):
        return NotActivated(NOT_ACTIVATED)
    if isinstance(exc, hsm.DomainConflict):
        return Conflict(str(exc), code="SecurityDomainConflict")
    if isinstance(exc, hsm.InvalidInput):
        return BadParameter(str(exc))
    if isinstance(exc, hsm.OperationNotAllowed):
        return Forbidden(str(exc))
    if isinstance(exc, hsm.KeyNotFound):
        return NotFound(str(exc), code="KeyNotFound")
    if isinstance(exc, (hsm.HsmUnavailable, hsm.TokenNotFound)):
        return ServiceUnavailable(str(exc))
    return VaultError(str(exc))
