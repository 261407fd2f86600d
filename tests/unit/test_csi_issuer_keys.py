"""The CSI plugin's copy of the cluster's ServiceAccount issuer keys follows a key rotation.

The keys decide only whether pods of one ServiceAccount share a fetch, so the refresh
logic is local: the source here is a JWKS document the test changes, as the API server's
changes when the cluster rotates its signing keys. Tokens are real ES256 JWTs.
"""

import asyncio
import base64
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from strongroom.csi.tokens import FileJwks, IssuerKeys, JwksUnavailable

AUDIENCE = "strongroom.io/vault"
SUBJECT = "system:serviceaccount:team-a:reader"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class SigningKey:
    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.private = ec.generate_private_key(ec.SECP256R1())

    def jwk(self) -> dict[str, str]:
        numbers = self.private.public_key().public_numbers()
        return {
            "kty": "EC",
            "crv": "P-256",
            "kid": self.kid,
            "use": "sig",
            "alg": "ES256",
            "x": _b64(numbers.x.to_bytes(32, "big")),
            "y": _b64(numbers.y.to_bytes(32, "big")),
        }

    def token(self, subject: str = SUBJECT, kid: str | None = None) -> str:
        header = {"alg": "ES256", "kid": kid or self.kid, "typ": "JWT"}
        claims = {"aud": [AUDIENCE], "sub": subject, "exp": int(time.time()) + 600}
        signed = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self.private.sign(signed.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signed}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


class FakeIssuer:
    """The API server's /openid/v1/jwks as the test sets it; counts and can fail reads."""

    def __init__(self, *keys: SigningKey) -> None:
        self.keys = list(keys)
        self.reads = 0
        self.failing: Exception | None = None

    async def __call__(self) -> dict[str, Any]:
        self.reads += 1
        if self.failing is not None:
            raise self.failing
        return {"keys": [key.jwk() for key in self.keys]}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run(body: Callable[[], Any]) -> Any:
    return asyncio.run(body())


def test_a_token_of_a_new_key_is_shared_after_the_unknown_kid_refresh(
    caplog: pytest.LogCaptureFixture,
) -> None:
    old, new = SigningKey("old"), SigningKey("new")
    issuer, clock = FakeIssuer(old), Clock()
    keys = IssuerKeys(issuer, AUDIENCE, min_refresh_seconds=30, clock=clock)
    new_token = new.token()

    async def body() -> tuple[str | None, str | None, str | None]:
        await keys.start()
        try:
            before = await keys.subject(old.token())
            # The cluster rotates: the new key is published, then signs new tokens.
            issuer.keys = [old, new]
            clock.now += 31
            after = await keys.subject(new_token)
            again = await keys.subject(new.token())
            return before, after, again
        finally:
            await keys.close()

    with caplog.at_level(logging.INFO, logger="strongroom.csi.tokens"):
        before, after, again = run(body)
    assert (before, after, again) == (SUBJECT, SUBJECT, SUBJECT)
    assert issuer.reads == 2  # at start, and once for the unknown kid; not for the second token
    changed = [r.getMessage() for r in caplog.records if "issuer keys changed" in r.getMessage()]
    assert len(changed) == 1 and "added new" in changed[0] and "removed none" in changed[0]
    assert new_token not in caplog.text and new_token.split(".")[2] not in caplog.text


def test_the_periodic_refresh_picks_up_the_new_key_and_drops_the_old_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    old, new = SigningKey("old"), SigningKey("new")
    issuer = FakeIssuer(old)
    # No unknown-kid refresh can happen within the test: only the periodic one.
    keys = IssuerKeys(issuer, AUDIENCE, refresh_seconds=0.05, min_refresh_seconds=3600)

    async def body() -> tuple[str | None, str | None, int]:
        await keys.start()
        try:
            issuer.keys = [new]
            reads = issuer.reads
            async with asyncio.timeout(5):
                while issuer.reads < reads + 2:
                    await asyncio.sleep(0.01)
            return await keys.subject(new.token()), await keys.subject(old.token()), issuer.reads
        finally:
            await keys.close()

    with caplog.at_level(logging.INFO, logger="strongroom.csi.tokens"):
        shared_new, shared_old, reads = run(body)
    assert shared_new == SUBJECT
    assert shared_old is None  # a key the issuer no longer publishes shares nothing
    assert "added new; removed old" in caplog.text
    # close() stopped the periodic refresh.
    assert issuer.reads == reads


def test_unknown_kid_refreshes_are_rate_limited() -> None:
    known = SigningKey("known")
    issuer, clock = FakeIssuer(known), Clock()
    keys = IssuerKeys(issuer, AUDIENCE, min_refresh_seconds=30, clock=clock)
    hostile = SigningKey("hostile")

    async def body() -> list[int]:
        await keys.start()
        reads = [issuer.reads]
        # The first made-up key id causes a read; within 30 s of it, others cause none.
        for i in range(50):
            assert await keys.subject(hostile.token(kid=f"random-{i}")) is None
        reads.append(issuer.reads)
        clock.now += 30
        for i in range(50):
            assert await keys.subject(hostile.token(kid=f"again-{i}")) is None
        reads.append(issuer.reads)
        # Concurrent unknown kids share the one read in flight.
        clock.now += 30
        answers = await asyncio.gather(
            *(keys.subject(hostile.token(kid=f"many-{i}")) for i in range(20))
        )
        assert answers == [None] * 20
        reads.append(issuer.reads)
        # The known key is verified without any read.
        assert await keys.subject(known.token()) == SUBJECT
        reads.append(issuer.reads)
        await keys.close()
        return reads

    assert run(body) == [1, 2, 3, 4, 4]


def test_a_token_without_a_kid_or_malformed_causes_no_refresh() -> None:
    known = SigningKey("known")
    issuer, clock = FakeIssuer(known), Clock()
    keys = IssuerKeys(issuer, AUDIENCE, min_refresh_seconds=1, clock=clock)

    async def body() -> int:
        await keys.start()
        clock.now += 100
        header = _b64(json.dumps({"alg": "ES256"}).encode())
        for token in ("", "a.b", "not.a.jwt", f"{header}.e30.AAAA", known.token(kid="known")):
            await keys.subject(token)
        await keys.close()
        return issuer.reads

    assert run(body) == 1


def test_a_failed_refresh_keeps_the_old_keys_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    old, new = SigningKey("old"), SigningKey("new")
    issuer, clock = FakeIssuer(old), Clock()
    keys = IssuerKeys(issuer, AUDIENCE, min_refresh_seconds=30, clock=clock)
    token = new.token()

    async def body() -> tuple[bool, str | None, str | None]:
        await keys.start()
        issuer.failing = JwksUnavailable("the API server answered 503")
        refreshed = await keys.refresh("periodic")
        clock.now += 31
        unknown = await keys.subject(token)
        kept = await keys.subject(old.token())
        await keys.close()
        return refreshed, unknown, kept

    with caplog.at_level(logging.INFO, logger="strongroom.csi.tokens"):
        refreshed, unknown, kept = run(body)
    assert refreshed is False and unknown is None and kept == SUBJECT
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    for record in warnings:
        message = record.getMessage()
        assert "the API server answered 503" in message
        assert "keeping the 1 keys (key ids old) loaded before" in message
    assert keys.failures == 2
    assert token not in caplog.text and token.split(".")[2] not in caplog.text


def test_a_document_without_usable_keys_is_a_failure_not_an_empty_key_set(
    caplog: pytest.LogCaptureFixture,
) -> None:
    old = SigningKey("old")
    issuer = FakeIssuer(old)
    keys = IssuerKeys(issuer, AUDIENCE)

    async def body() -> str | None:
        await keys.start()
        issuer.keys = []
        assert await keys.refresh("periodic") is False
        subject = await keys.subject(old.token())
        await keys.close()
        return subject

    with caplog.at_level(logging.WARNING, logger="strongroom.csi.tokens"):
        assert run(body) == SUBJECT
    assert "no usable key" in caplog.text


def test_keys_unreadable_at_start_are_read_once_a_token_needs_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = SigningKey("k")
    issuer, clock = FakeIssuer(key), Clock()
    issuer.failing = JwksUnavailable("not there yet")
    keys = IssuerKeys(issuer, AUDIENCE, min_refresh_seconds=30, clock=clock)

    async def body() -> tuple[str | None, str | None]:
        await keys.start()
        first = await keys.subject(key.token())
        issuer.failing = None
        clock.now += 30
        second = await keys.subject(key.token())
        await keys.close()
        return first, second

    with caplog.at_level(logging.INFO, logger="strongroom.csi.tokens"):
        assert run(body) == (None, SUBJECT)
    assert "each on their own" in caplog.text
    assert "issuer keys loaded: 1 keys (key ids k)" in caplog.text


# --- the file the chart's jwks-refresh container writes ----------------------------------


def _write(path: Path, *keys: SigningKey) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps({"keys": [key.jwk() for key in keys]}))
    os.replace(partial, path)


def test_the_file_source_asks_the_fetcher_and_waits_for_its_answer(tmp_path: Path) -> None:
    old, new = SigningKey("old"), SigningKey("new")
    document, request = tmp_path / "jwks.json", tmp_path / "refresh"
    _write(document, old)
    published = [old]
    stop = threading.Event()

    def fetcher() -> None:
        """What fetch-jwks.py --watch does: rewrite the file when the request is touched."""
        handled = 0
        while not stop.is_set():
            asked = request.stat().st_mtime_ns if request.exists() else 0
            if asked > handled:
                handled = asked
                time.sleep(0.2)  # the API server's answer takes a moment
                _write(document, *published)
            time.sleep(0.02)

    thread = threading.Thread(target=fetcher, daemon=True)
    thread.start()
    keys = IssuerKeys(FileJwks(document, request, wait=5), AUDIENCE, min_refresh_seconds=1)

    async def body() -> str | None:
        await keys.start()
        # The init container has just written the file: the first read does not ask.
        assert not request.exists() and len(keys.verifier) == 1
        published.append(new)  # rotated at the API server; the file does not have it yet
        await asyncio.sleep(1)
        subject = await keys.subject(new.token())
        await keys.close()
        return subject

    try:
        assert run(body) == SUBJECT
    finally:
        stop.set()
        thread.join()


def test_a_fetcher_that_does_not_answer_keeps_the_keys_read_before(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = SigningKey("old")
    document, request = tmp_path / "jwks.json", tmp_path / "refresh"
    _write(document, old)
    keys = IssuerKeys(FileJwks(document, request, wait=0.3), AUDIENCE)

    async def body() -> tuple[bool, str | None]:
        await keys.start()  # the init container's copy, read without asking
        # From now on each read asks a fetcher that never answers.
        refreshed = await keys.refresh("periodic")
        subject = await keys.subject(old.token())
        await keys.close()
        return refreshed, subject

    with caplog.at_level(logging.WARNING, logger="strongroom.csi.tokens"):
        refreshed, subject = run(body)
    assert refreshed is False and subject == SUBJECT
    assert "did not rewrite" in caplog.text and "jwks-refresh" in caplog.text
    assert request.exists()


def test_a_file_that_is_not_a_jwks_is_refused_clearly(tmp_path: Path) -> None:
    document = tmp_path / "jwks.json"
    for content, message in (
        (b"{", "is not JSON"),
        (b'{"nokeys": []}', "no list of keys"),
        (b" " * (1024 * 1024 + 1), "larger than"),
    ):
        document.write_bytes(content)
        with pytest.raises(JwksUnavailable, match=message):
            run(FileJwks(document))
    document.unlink()
    with pytest.raises(JwksUnavailable, match="cannot be read"):
        run(FileJwks(document))


def test_after_a_failed_read_an_unknown_kid_retries_within_seconds_not_the_full_limit() -> None:
    """The cluster restarts its API server with a new signing key: the first read of the keys
    fails while it is down. Pods whose tokens name the new key must not go unshared for the
    whole rate limit: a read is tried again after retry_seconds, and once one succeeds the
    full limit applies again."""
    old, new = SigningKey("old"), SigningKey("new")
    issuer, clock = FakeIssuer(old), Clock()
    keys = IssuerKeys(issuer, AUDIENCE, min_refresh_seconds=30, retry_seconds=3, clock=clock)

    async def body() -> list[tuple[str | None, int]]:
        await keys.start()
        seen = []
        issuer.keys = [old, new]
        issuer.failing = JwksUnavailable("connection refused")
        clock.now += 31
        seen.append((await keys.subject(new.token()), issuer.reads))  # read, failed
        clock.now += 1
        seen.append((await keys.subject(new.token()), issuer.reads))  # too soon: no read
        issuer.failing = None
        clock.now += 2
        seen.append((await keys.subject(new.token()), issuer.reads))  # retried: known now
        hostile = SigningKey("hostile")
        clock.now += 3
        seen.append((await keys.subject(hostile.token()), issuer.reads))  # full limit again
        await keys.close()
        return seen

    assert run(body) == [(None, 2), (None, 2), (SUBJECT, 3), (None, 3)]


def test_mounts_during_an_api_server_restart_wait_for_the_keys_and_still_share() -> None:
    """Four pods mount at once with tokens of the new key while the API server restarts: the
    first reads fail. The calls try again every retry_seconds for up to unknown_kid_wait and
    all get their subject once a read works; a made-up key id after that is refused at once,
    without waiting (a read worked)."""
    old, new = SigningKey("old"), SigningKey("new")
    issuer = FakeIssuer(old)
    keys = IssuerKeys(
        issuer,
        AUDIENCE,
        min_refresh_seconds=30,
        retry_seconds=0.1,
        unknown_kid_wait=2.0,
    )

    class Restarting:
        def __init__(self) -> None:
            self.failures_left = 2

        async def __call__(self) -> dict[str, Any]:
            if self.failures_left:
                self.failures_left -= 1
                issuer.reads += 1
                raise JwksUnavailable("connection refused")
            return await issuer()

    async def body() -> tuple[list[str | None], int, str | None, float]:
        await keys.start()
        issuer.keys = [old, new]
        keys._source = Restarting()  # the API server goes down as the new key is published
        keys._last_attempt = None
        answers = await asyncio.gather(*(keys.subject(new.token()) for _ in range(4)))
        reads = issuer.reads
        started = time.monotonic()
        hostile = await keys.subject(SigningKey("hostile").token())
        waited = time.monotonic() - started
        await keys.close()
        return answers, reads, hostile, waited

    answers, reads, hostile, waited = run(body)
    assert answers == [SUBJECT] * 4
    assert reads == 1 + 3  # at start; two failed reads and the one that worked, shared by all
    assert hostile is None and waited < 0.05


def test_without_a_wait_a_failed_read_gives_up_at_once() -> None:
    new = SigningKey("new")
    issuer = FakeIssuer(SigningKey("old"))
    keys = IssuerKeys(issuer, AUDIENCE, retry_seconds=0.1)  # unknown_kid_wait 0

    async def body() -> tuple[str | None, int]:
        await keys.start()
        issuer.failing = JwksUnavailable("down")
        keys._last_attempt = None
        subject = await keys.subject(new.token())
        await keys.close()
        return subject, issuer.reads

    assert run(body) == (None, 2)


def test_a_periodic_read_just_before_the_rotation_does_not_hold_back_the_new_key() -> None:
    """The periodic read runs 17 s before pods with tokens of the new key mount (as in a CI
    run where the plugin's five-minute refresh fell just before the API server restarted):
    the unknown key id still causes a read, and the pods get their subject."""
    old, new = SigningKey("old"), SigningKey("new")
    issuer, clock = FakeIssuer(old), Clock()
    keys = IssuerKeys(issuer, AUDIENCE, min_refresh_seconds=30, clock=clock)

    async def body() -> tuple[str | None, int]:
        await keys.start()
        clock.now += 300
        assert await keys.refresh("periodic")  # the old key only
        issuer.keys = [old, new]
        clock.now += 17
        subject = await keys.subject(new.token())
        await keys.close()
        return subject, issuer.reads

    assert run(body) == (SUBJECT, 3)
