"""Local verification of ServiceAccount tokens, so that pods of one subject can share a fetch.

The keys come from the cluster's issuer (its JWKS document, which the API server
serves at /openid/v1/jwks) through a file: written by the chart's JWKS fetcher
next to the plugin, by a ConfigMap, or in dev by `strongroom dev`. Verification
here only decides whether two pods may share a cached object; the vault itself
checks every token it is sent.

The cluster rotates its signing keys now and then, so IssuerKeys reads the keys
again every few minutes, and when a token names a key id (`kid`) it does not
know; the latter at most once per `min_refresh_seconds`, so that tokens with
made-up key ids cannot make the plugin ask for keys in a loop. A refresh that
fails keeps the keys it had. Logs name key ids and counts, never a token.
"""

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .. import base64url, jose, jwk

log = logging.getLogger(__name__)

# A JWKS document is a few KB; more is not the issuer's.
MAX_JWKS_BYTES = 1024 * 1024


class TokenVerifier:
    def __init__(self, jwks: dict[str, Any], audience: str) -> None:
        self._keys: list[jose.VerificationKey] = []
        for document in jwks.get("keys", []) if isinstance(jwks, dict) else []:
            if not isinstance(document, dict):
                continue
            try:
                self._keys.append(jose.VerificationKey.from_jwk(document))
            except jwk.JwkError:
                continue  # not a public signing key this verifier uses
        self._audience = audience

    @classmethod
    def from_file(cls, path: Path, audience: str) -> "TokenVerifier":
        return cls(json.loads(path.read_text()), audience)

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(key.kid for key in self._keys if key.kid is not None)

    def names_unknown_kid(self, token: str) -> bool:
        """Whether the token's header names a key id that none of these keys has."""
        try:
            header = json.loads(base64url.decode(token.split(".", 1)[0]))
        except (ValueError, TypeError, base64url.Base64UrlError):
            return False
        kid = header.get("kid") if isinstance(header, dict) else None
        return isinstance(kid, str) and bool(kid) and kid not in self.kids

    def subject(self, token: str) -> str | None:
        """The token's verified subject, or None when it cannot be verified here."""
        try:
            claims = jose.verify(token, self._keys, (self._audience,), leeway=jose.LEEWAY_SECONDS)
        except jose.TokenRefused:
            return None
        subject = claims.get("sub")
        return subject if isinstance(subject, str) and subject else None


JwksSource = Callable[[], Awaitable[dict[str, Any]]]


class JwksUnavailable(Exception):
    """The source has no usable JWKS document now; the message names no token."""


def parse_jwks(raw: bytes, where: str) -> dict[str, Any]:
    """A JWKS document with a list of keys, or JwksUnavailable saying what is wrong."""
    if len(raw) > MAX_JWKS_BYTES:
        raise JwksUnavailable(f"{where} is larger than {MAX_JWKS_BYTES} bytes")
    try:
        document = json.loads(raw)
    except ValueError:
        raise JwksUnavailable(f"{where} is not JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksUnavailable(f"{where} is not a JWKS document (no list of keys)")
    return document


class FileJwks:
    """The JWKS in a file, read again at each call.

    With `request`, each call but the first (the init container has just written the
    file) asks the chart's JWKS fetcher (the `jwks-refresh` container, which holds the API
    token the plugin does not) for a fresh copy by touching that file, and waits up to
    `wait` seconds for the fetcher to rewrite `path`.
    """

    def __init__(self, path: Path, request: Path | None = None, wait: float = 5.0) -> None:
        self.path = path
        self.request = request
        self.wait = wait
        self._calls = 0

    async def __call__(self) -> dict[str, Any]:
        self._calls += 1
        if self.request is not None and self._calls > 1:
            # The fetcher writes a new file (os.replace) for each answer: a new inode.
            before = self._stamp()
            await asyncio.to_thread(self._ask)
            deadline = time.monotonic() + self.wait
            while self._stamp() == before:
                if time.monotonic() >= deadline:
                    raise JwksUnavailable(
                        f"the JWKS fetcher did not rewrite {self.path} within {self.wait:g}s "
                        "of being asked (see the logs of its container, jwks-refresh)"
                    )
                await asyncio.sleep(0.05)
        return parse_jwks(await asyncio.to_thread(self._read), str(self.path))

    def _ask(self) -> None:
        assert self.request is not None
        try:
            self.request.touch()
        except OSError as exc:
            raise JwksUnavailable(
                f"the JWKS fetcher cannot be asked through {self.request} ({exc.strerror})"
            ) from None

    def _stamp(self) -> tuple[int, int] | None:
        try:
            found = self.path.stat()
        except OSError:
            return None
        return found.st_ino, found.st_mtime_ns

    def _read(self) -> bytes:
        try:
            with self.path.open("rb") as document:
                return document.read(MAX_JWKS_BYTES + 1)
        except OSError as exc:
            raise JwksUnavailable(f"{self.path} cannot be read ({exc.strerror})") from None


def _listed(kids: frozenset[str]) -> str:
    """Key ids of the issuer's own document (never a token's), at most 8 of them."""
    if not kids:
        return "none"
    return ", ".join(sorted(kids)[:8]) + (", ..." if len(kids) > 8 else "")


def _summary(kids: frozenset[str], count: int) -> str:
    return f"{count} keys" + (f" (key ids {_listed(kids)})" if kids else "")


class IssuerKeys:
    """The issuer's keys, kept fresh: read from `source` at start, every `refresh_seconds`,
    and when a token names an unknown key id, at most once per `min_refresh_seconds` (of such
    reads: the periodic ones do not count), or
    once per `retry_seconds` while the last read failed (the API server restarting with its
    new key: the keys are wanted as soon as it answers again)."""

    def __init__(
        self,
        source: JwksSource,
        audience: str,
        *,
        refresh_seconds: float = 300.0,
        min_refresh_seconds: float = 30.0,
        retry_seconds: float = 3.0,
        unknown_kid_wait: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._audience = audience
        self._verifier = TokenVerifier({}, audience)
        self._document: str | None = None
        self.refresh_seconds = refresh_seconds
        self.min_refresh_seconds = min_refresh_seconds
        self.retry_seconds = min(retry_seconds, min_refresh_seconds)
        self.unknown_kid_wait = unknown_kid_wait
        self._clock = clock
        self._last_attempt: float | None = None
        self._last_unknown_attempt: float | None = None
        self._last_failed = False
        self._inflight: asyncio.Task[bool] | None = None
        self._periodic: asyncio.Task[None] | None = None
        self.refreshes = 0
        self.failures = 0

    @property
    def verifier(self) -> TokenVerifier:
        return self._verifier

    async def start(self) -> None:
        """Load the keys once, then refresh them every `refresh_seconds` until close()."""
        await self.refresh("start")
        if self._periodic is None:
            self._periodic = asyncio.create_task(self._every())

    async def close(self) -> None:
        for task in (self._periodic, self._inflight):
            if task is not None and not task.done():
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        self._periodic = None

    async def _every(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_seconds)
            await self.refresh("periodic")

    async def subject(self, token: str) -> str | None:
        """The token's verified subject, or None. A token that names a key id the plugin does
        not know triggers a refresh first, unless one ran less than `min_refresh_seconds` ago.
        While the keys cannot be read (the API server restarting with its new signing key),
        the call tries again every `retry_seconds` for up to `unknown_kid_wait` seconds
        before it gives up: the pods mounting just then still share their fetches. A read
        that worked ends the wait at once, whether the key id was in it or not."""
        subject = self._verifier.subject(token)
        if subject is not None or not self._verifier.names_unknown_kid(token):
            return subject
        attempts = 1 + (
            int(self.unknown_kid_wait / self.retry_seconds) if self.retry_seconds else 0
        )
        for attempt in range(attempts):
            if await self._refresh_for_unknown_kid():
                return self._verifier.subject(token)
            if not self._verifier.names_unknown_kid(token):  # another caller's read found it
                return self._verifier.subject(token)
            if not self._last_failed or attempt == attempts - 1 or self._last_attempt is None:
                return None
            await asyncio.sleep(max(0.0, self._last_attempt + self.retry_seconds - self._clock()))
        return None

    async def _refresh_for_unknown_kid(self) -> bool:
        if self._inflight is not None and not self._inflight.done():
            return await asyncio.shield(self._inflight)
        now = self._clock()
        # The limit counts the reads unknown key ids caused, not the periodic ones: a periodic
        # read just before a rotation must not hold back the read of the new key.
        if self._last_failed:
            since, wait = self._last_attempt, self.retry_seconds
        else:
            since, wait = self._last_unknown_attempt, self.min_refresh_seconds
        if since is not None and now - since < wait:
            log.debug("a token names an unknown key id; the issuer keys were read recently")
            return False
        self._last_unknown_attempt = now
        log.info("a token names a key id the plugin does not know: refreshing the issuer keys")
        return await self.refresh("unknown key id")

    async def refresh(self, reason: str) -> bool:
        """Read the keys again; True when they were read (changed or not). One at a time."""
        if self._inflight is not None and not self._inflight.done():
            return await asyncio.shield(self._inflight)
        self._last_attempt = self._clock()
        self._inflight = asyncio.create_task(self._load(reason))
        return await asyncio.shield(self._inflight)

    async def _load(self, reason: str) -> bool:
        self.refreshes += 1
        had = self._verifier
        try:
            document = await self._source()
            fresh = TokenVerifier(document, self._audience)
            if len(fresh) == 0:
                raise JwksUnavailable("the JWKS document has no usable key")
        except Exception as exc:  # noqa: BLE001 - any failure keeps the keys there are
            self.failures += 1
            self._last_failed = True
            message = str(exc) if isinstance(exc, JwksUnavailable) else type(exc).__name__
            if len(had):
                log.warning(
                    "refreshing the issuer keys (%s) failed: %s; keeping the %s loaded before",
                    reason,
                    message,
                    _summary(had.kids, len(had)),
                )
            else:
                log.warning(
                    "reading the issuer keys (%s) failed: %s; until they can be read, pods "
                    "fetch their objects each on their own",
                    reason,
                    message,
                )
            return False
        self._last_failed = False
        canonical = json.dumps(document.get("keys"), sort_keys=True)
        if canonical != self._document:
            if self._document is None:
                log.info("issuer keys loaded: %s", _summary(fresh.kids, len(fresh)))
            else:
                log.info(
                    "issuer keys changed (%s): now %s; added %s; removed %s",
                    reason,
                    _summary(fresh.kids, len(fresh)),
                    _listed(fresh.kids - had.kids),
                    _listed(had.kids - fresh.kids),
                )
            self._document = canonical
            self._verifier = fresh
        return True
