"""TokenReview against a real HTTPS endpoint that records every review it is asked.

The endpoint answers like the Kubernetes API server: a token is authenticated when it holds
one of the audiences asked, and `status.audiences` lists which.
"""

import asyncio
import json
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from strongroom.tls import issue_server_cert, make_ca, write_pair
from strongroom.vault import auth
from strongroom.vault.auth import Throttled, TokenReviewAuthenticator
from strongroom.vault.config import SHARED_AUDIENCE, VaultConfig
from strongroom.vault.encoding import b64url
from strongroom.vault.errors import Unauthorized

OWN_TOKEN = "the-vault-servers-own-token"
PAYMENTS = VaultConfig("payments", ("payments-vault.team-a.svc",), audience="https://payments")
LEDGER = VaultConfig("ledger", ("ledger-vault.team-a.svc",), audience="https://ledger")


def jwt(subject: str, exp: float | None = None, salt: str = "") -> str:
    claims: dict[str, Any] = {"sub": subject, "jti": salt}
    if exp is not None:
        claims["exp"] = int(exp)
    parts = ({"alg": "RS256"}, claims)
    return (
        ".".join(b64url(json.dumps(p).encode()) for p in parts)
        + "."
        + b64url(b"sig" + salt.encode())
    )


@dataclass
class FakeApiServer:
    """Known tokens: token -> (username, audiences it holds)."""

    tokens: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    calls: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    delay: float = 0.0

    async def review(self, request: web.Request) -> web.Response:
        assert request.headers["Authorization"] == f"Bearer {OWN_TOKEN}"
        spec = (await request.json())["spec"]
        self.calls.append(spec)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        known = self.tokens.get(spec["token"])
        held = [a for a in (known[1] if known else []) if a in spec["audiences"]]
        status: dict[str, Any] = {"authenticated": bool(held)}
        if held and known:
            status |= {"user": {"username": known[0]}, "audiences": held}
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": status}
        return web.json_response(body, status=201)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def api_server(
    tmp: Path, fake: FakeApiServer, namespace: str | None = None, clock: Clock | None = None
) -> AsyncIterator[TokenReviewAuthenticator]:
    ca = make_ca("fake API server CA")
    (tmp / "ca.crt").write_bytes(ca.cert_pem)
    write_pair(issue_server_cert(ca, ["127.0.0.1"]), tmp / "tls.crt", tmp / "tls.key")
    (tmp / "token").write_text(OWN_TOKEN)
    app = web.Application()
    app.router.add_post("/apis/authentication.k8s.io/v1/tokenreviews", fake.review)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(tmp / "tls.crt"), str(tmp / "tls.key"))
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    authenticator = TokenReviewAuthenticator(
        f"https://127.0.0.1:{site.port}",
        tmp / "ca.crt",
        tmp / "token",
        (SHARED_AUDIENCE,),
        namespace,
        clock=clock or time.monotonic,
    )
    try:
        yield authenticator
    finally:
        await authenticator.close()
        await runner.cleanup()


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())


async def outcome(authenticator: TokenReviewAuthenticator, token: str, vault: VaultConfig) -> Any:
    try:
        return await authenticator.authenticate(token, vault)
    except (Unauthorized, Throttled) as exc:
        return exc


def test_a_thousand_junk_tokens_cost_a_bounded_number_of_reviews(tmp_path: Path) -> None:
    fake = FakeApiServer(delay=0.05)
    clock = Clock()  # frozen: the token bucket never refills during the flood

    async def scenario() -> None:
        async with api_server(tmp_path, fake, clock=clock) as authenticator:
            future = time.time() + 3600
            junk = (
                [f"not-a-jwt-{i}" for i in range(250)]
                + [jwt("x", future, salt=str(i) * 3000) for i in range(250)]  # over 8 KiB
                + [jwt("x", future, salt=f"distinct-{i}") for i in range(250)]
                + [jwt("x", future, salt="one")] * 250
            )
            results = await asyncio.gather(*(outcome(authenticator, t, PAYMENTS) for t in junk))
            assert all(isinstance(r, Unauthorized | Throttled) for r in results)
            throttled = [r for r in results if isinstance(r, Throttled)]
            assert throttled and all(r.status == 429 and r.retry_after >= 1 for r in throttled)
            # No review for what is no JWT or too large; at most one bucket of the rest.
            assert 1 <= len(fake.calls) <= auth.REVIEWS_PER_SECOND
            assert fake.most_in_flight <= auth.REVIEWS_IN_FLIGHT
            assert all(len(c["token"]) <= auth.MAX_TOKEN_BYTES for c in fake.calls)
            assert not any(c["token"].startswith("not-a-jwt") for c in fake.calls)

    run(scenario)


def test_a_refused_token_is_refused_again_without_a_review(tmp_path: Path) -> None:
    fake = FakeApiServer()
    clock = Clock()

    async def scenario() -> None:
        async with api_server(tmp_path, fake, clock=clock) as authenticator:
            token = jwt("x", time.time() + 3600, salt="junk")
            for _ in range(100):
                result = await outcome(authenticator, token, PAYMENTS)
                assert isinstance(result, Unauthorized) and result.status == 401
            assert len(fake.calls) == 1
            clock.now += auth.NEGATIVE_CACHE_SECONDS + 0.1
            assert isinstance(await outcome(authenticator, token, PAYMENTS), Unauthorized)
            assert len(fake.calls) == 2
            # An expired token costs no review at all.
            expired = jwt("x", time.time() - 3600, salt="old")
            assert isinstance(await outcome(authenticator, expired, PAYMENTS), Unauthorized)
            assert len(fake.calls) == 2

    run(scenario)


def test_an_accepted_token_is_trusted_for_the_bound_at_most_and_never_past_exp(
    tmp_path: Path,
) -> None:
    assert auth.POSITIVE_CACHE_SECONDS <= 10
    fake = FakeApiServer()
    clock = Clock()

    async def scenario() -> None:
        async with api_server(tmp_path, fake, clock=clock) as authenticator:
            subject = "system:serviceaccount:team-a:app"
            lasting = jwt(subject, time.time() + 3600, salt="a")
            fake.tokens[lasting] = (subject, ["https://payments"])
            assert await authenticator.authenticate(lasting, PAYMENTS) == subject
            clock.now += auth.POSITIVE_CACHE_SECONDS - 0.5
            assert await authenticator.authenticate(lasting, PAYMENTS) == subject
            assert len(fake.calls) == 1
            # Revoked: after the bound the API server is asked again, and says no.
            del fake.tokens[lasting]
            clock.now += 1.0
            assert isinstance(await outcome(authenticator, lasting, PAYMENTS), Unauthorized)
            assert len(fake.calls) == 2

            short = jwt(subject, time.time() + 3, salt="b")
            fake.tokens[short] = (subject, ["https://payments"])
            assert await authenticator.authenticate(short, PAYMENTS) == subject
            clock.now += 3.5  # before the bound, past the token's exp
            assert await authenticator.authenticate(short, PAYMENTS) == subject
            assert len(fake.calls) == 4

    run(scenario)


def test_a_token_is_bound_to_its_vault_and_the_shared_audience_to_the_namespace(
    tmp_path: Path,
) -> None:
    fake = FakeApiServer()
    team_a, team_b = "system:serviceaccount:team-a:app", "system:serviceaccount:team-b:app"

    async def scenario() -> None:
        async with api_server(tmp_path, fake, namespace="team-a") as authenticator:
            bound = jwt(team_b, time.time() + 3600, salt="bound")
            fake.tokens[bound] = (team_b, ["https://payments"])
            assert await authenticator.authenticate(bound, PAYMENTS) == team_b
            assert fake.calls[-1]["audiences"] == ["https://payments", SHARED_AUDIENCE]
            refused = await outcome(authenticator, bound, LEDGER)
            assert isinstance(refused, Unauthorized)
            assert fake.calls[-1]["audiences"] == ["https://ledger", SHARED_AUDIENCE]

            shared_b = jwt(team_b, time.time() + 3600, salt="shared-b")
            fake.tokens[shared_b] = (team_b, [SHARED_AUDIENCE])
            refused = await outcome(authenticator, shared_b, PAYMENTS)
            assert isinstance(refused, Unauthorized)
            assert "team-a" in refused.message and "https://payments" in refused.message
            shared_a = jwt(team_a, time.time() + 3600, salt="shared-a")
            fake.tokens[shared_a] = (team_a, [SHARED_AUDIENCE])
            assert await authenticator.authenticate(shared_a, PAYMENTS) == team_a
            assert await authenticator.authenticate(shared_a, LEDGER) == team_a

    run(scenario)


def test_without_a_namespace_the_shared_audience_is_open(tmp_path: Path) -> None:
    fake = FakeApiServer()
    subject = "dev:anyone"

    async def scenario() -> None:
        async with api_server(tmp_path, fake) as authenticator:
            token = jwt(subject, time.time() + 3600, salt="s")
            fake.tokens[token] = (subject, [SHARED_AUDIENCE])
            assert await authenticator.authenticate(token, PAYMENTS) == subject

    run(scenario)
