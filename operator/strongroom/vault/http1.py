"""The data plane's own HTTP/1.1 layer: a strict, small parser and writer for the plain
requests Key Vault clients send, with anything else handed to aiohttp on the same
connection.

Every TLS connection of the pool's server starts here. A request is served here only when
its head is plainly written and complete, and its body has fully arrived: request line
`METHOD /target HTTP/1.1` with a method of the data plane, header lines of a token name and
visible-ASCII value, exactly one `Host`, at most one `Content-Length` (decimal, within the
data plane's body bound), and no `Transfer-Encoding`, `Expect`, `Upgrade`, or `Connection`
other than `keep-alive` / `close`, on a path outside the pool's own surfaces (`/healthz`,
the management API, the security domain). At the first request that is anything else (a
chunked or oversized body, a body still arriving after
`BODY_GRACE_SECONDS`, a byte this grammar does not know, HTTP/1.0, another path), the
connection is handed, with every byte not yet served, to aiohttp's protocol, which serves it
from then on: the strict grammar here never has to decide a hard case, and a request either
side reads is read the same way by both.

A request served here goes through the same gate, handler, error mapping, audit line and
metrics as one served by aiohttp (middleware.answer). A connection that has not sent a
complete head within the header timeout, from the end of its handshake or its last answer,
is closed; a head longer than `MAX_HEAD`, on any path, is answered 431 and the connection
closed (so a head is never handed over unfinished, and never gets a second timeout).
Requests pipelined on one connection are answered in order, one at a time; while an answer
waits to be sent (the client does not read), nothing more is read.
"""

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import Any, cast

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy, MultiDictProxy
from yarl import URL

from .errors import VaultError
from .metrics import ServerMetrics
from .middleware import Gate, answer, error_response

log = logging.getLogger(__name__)

# The longest head any request may have (a token is at most 8 KiB); a longer one is refused.
MAX_HEAD = 16 * 1024
# A body not complete this long after its head goes to aiohttp with what has arrived
# (which then applies the data plane's body timeout).
BODY_GRACE_SECONDS = 1.0
# Unserved bytes held before reading pauses (a head and a body at their bounds, twice).
MAX_BUFFERED = 2 * (MAX_HEAD + 256 * 1024)  # the data plane's body bound: 256 KiB
# The methods of the data plane's routes.
METHODS = frozenset({"GET", "PUT", "POST", "PATCH", "DELETE"})

_TARGET = re.compile(r"/[!$-~]*")  # visible ASCII but "#" and '"'
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# What a head served here is made of besides its line ends: visible ASCII, SP and HT.
_PLAIN_BYTES = bytes([9, *range(32, 127)])
_DIGITS = re.compile(r"[0-9]{1,9}")
_REASONS = {200: "OK", 201: "Created", 204: "No Content"}
_NO_BODY = frozenset({204, 304})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Request(dict[Any, Any]):
    """One request served here: the part of aiohttp's `web.Request` that the data plane
    reads (method, targets, host, headers, query, transport, request-scoped keys), and its
    whole body."""

    __slots__ = ("method", "raw_path", "host", "headers", "body", "transport", "_url")

    def __init__(
        self,
        method: str,
        raw_path: str,
        headers: CIMultiDictProxy[str],
        body: bytes,
        transport: asyncio.Transport,
    ) -> None:
        super().__init__()
        self.method = method
        self.raw_path = raw_path
        self.headers = headers
        self.host = headers["Host"]
        self.body = body
        self.transport: asyncio.Transport | None = transport
        self._url: URL | None = None

    @property
    def url(self) -> URL:
        if self._url is None:
            path, _, query = self.raw_path.partition("?")
            self._url = URL.build(path=path, query_string=query, encoded=True)
        return self._url

    @property
    def path(self) -> str:
        return self.url.path

    @property
    def query(self) -> MultiDictProxy[str]:
        return self.url.query


def parse_head(
    head: bytes, own_surfaces: frozenset[str], max_body: int
) -> tuple[str, str, CIMultiDictProxy[str], int, bool] | None:
    """Method, target, headers, body length and whether the client asked to close, of a
    head in the strict grammar served here, on a path outside `own_surfaces` (first path
    segments that aiohttp serves), with a body of at most `max_body` bytes; None for
    anything else."""
    lines = head.decode("latin-1").split("\r\n")
    # Nothing but line ends may remain: no other control byte, no bare CR or LF, no DEL,
    # nothing beyond ASCII.
    if head.translate(None, _PLAIN_BYTES) != b"\r\n" * (len(lines) - 1):
        return None
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[2] != "HTTP/1.1" or parts[0] not in METHODS:
        return None
    method, target = parts[0], parts[1]
    if _TARGET.fullmatch(target) is None or _first_segment(target, own_surfaces):
        return None
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or _TOKEN.fullmatch(name) is None:
            return None
        headers.add(name, value.strip(" \t"))
    if (
        "Transfer-Encoding" in headers
        or "Expect" in headers
        or "Upgrade" in headers
        or len(headers.getall("Host", ())) != 1
    ):
        return None
    lengths = headers.getall("Content-Length", ())
    length = 0
    if lengths:
        if len(lengths) != 1 or _DIGITS.fullmatch(lengths[0]) is None:
            return None
        length = int(lengths[0])
        if length > max_body:
            return None
    close = False
    connection = headers.get("Connection")
    if connection is not None:
        tokens = {token.strip().lower() for token in connection.split(",")}
        if not tokens <= {"keep-alive", "close"}:
            return None
        close = "close" in tokens
    return method, target, CIMultiDictProxy(headers), length, close


def _first_segment(target: str, own_surfaces: frozenset[str]) -> bool:
    """Whether the target's first segment is one of `own_surfaces`, or percent-encoded
    (aiohttp's router decodes before it matches)."""
    first = target[1:].split("/", 1)[0].split("?", 1)[0]
    return first in own_surfaces or "%" in first


def own_surfaces(app: web.Application) -> frozenset[str]:
    """The first path segments of the app's routes other than the data plane's catch-all."""
    firsts = {resource.canonical[1:].split("/", 1)[0] for resource in app.router.resources()}
    return frozenset(first for first in firsts if first and not first.startswith("{"))


_date: tuple[int, bytes] = (0, b"")


def _date_header() -> bytes:
    global _date
    second = int(time.time())
    if _date[0] != second:
        _date = (second, formatdate(second, usegmt=True).encode())
    return _date[1]


def serialize(response: web.StreamResponse, close: bool) -> bytes:
    """The status line, headers and body of an answer the data plane built."""
    body = response.body if isinstance(response, web.Response) else None
    if body is not None and not isinstance(body, bytes | bytearray):
        raise TypeError(f"an answer's body must be bytes, not {type(body).__name__}")
    status = response.status
    reason = response.reason or _REASONS.get(status, "")
    lines = [f"HTTP/1.1 {status} {reason}"]
    for name, value in response.headers.items():
        if name.lower() not in ("content-length", "connection", "date", "transfer-encoding"):
            lines.append(f"{name}: {value}")
    if status not in _NO_BODY:
        lines.append(f"Content-Length: {len(body or b'')}")
    if close:
        lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\nDate: ").encode("latin-1") + _date_header() + b"\r\n\r\n"
    return head + bytes(body or b"") if status not in _NO_BODY else head


class Connections:
    """What the connections of one server share: the data plane's gate and handler, the
    metrics, aiohttp's protocol factory for the connections handed over, the timeouts, and
    the set of open connections (closed at shutdown)."""

    def __init__(
        self,
        gate: Gate,
        handler: Handler,
        metrics: ServerMetrics | None,
        fallback: Callable[[], asyncio.Protocol],
        header_timeout: float,
        own_surfaces: frozenset[str],
        max_body: int,
    ) -> None:
        self.gate = gate
        self.handler = handler
        self.metrics = metrics
        self.fallback = fallback
        self.header_timeout = header_timeout
        self.own_surfaces = own_surfaces
        self.max_body = max_body
        self.open: set[Connection] = set()

    def __call__(self) -> "Connection":
        return Connection(self)

    def close_all(self) -> None:
        for connection in list(self.open):
            connection.close()


class Connection(asyncio.Protocol):
    """One client connection, served here until it is handed to aiohttp."""

    def __init__(self, shared: Connections) -> None:
        self._shared = shared
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._busy = False  # a request is being answered
        self._write_paused = False
        self._read_paused = False
        self._close_after = False
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self._waiting_body = False

    # --- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self._shared.open.add(self)
        self._wait_for_head()

    def data_received(self, data: bytes) -> None:
        self._buffer = self._buffer + data if self._buffer else data
        if len(self._buffer) > MAX_BUFFERED and self._transport is not None:
            self._transport.pause_reading()
            self._read_paused = True
        self._advance()

    def eof_received(self) -> bool | None:
        return None  # close the transport (a half-closed client gets no more answers)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._advance()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._buffer = b""
        self._cancel_timer()
        self._shared.open.discard(self)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # --- timers -----------------------------------------------------------------------
    # One timer per connection, moved lazily: a request only sets the deadline, and the
    # timer, when it fires early, waits again for what is left.

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + seconds
        if self._timer is None:
            self._timer = loop.call_at(self._deadline, self._timed_out)

    def _wait_for_head(self) -> None:
        self._waiting_body = False
        self._arm(self._shared.header_timeout)

    def _timed_out(self) -> None:
        self._timer = None
        if self._busy or self._transport is None:
            return  # a request is being answered; its answer sets the next deadline
        loop = asyncio.get_running_loop()
        if loop.time() < self._deadline:
            self._timer = loop.call_at(self._deadline, self._timed_out)
        elif self._waiting_body:
            self._hand_over()  # a slow body: aiohttp reads the rest under the body timeout
        else:
            self.close()  # no complete head within the header timeout

    # --- requests -----------------------------------------------------------------------

    def _advance(self) -> None:
        """Serve the next complete request in the buffer, if none is being served."""
        transport = self._transport
        if transport is None or self._busy or self._write_paused:
            return
        buffer = self._buffer
        if not buffer:
            return
        end = buffer.find(b"\r\n\r\n")
        if end > MAX_HEAD or (end < 0 and len(buffer) > MAX_HEAD):
            self._refuse_head()
            return
        if end < 0:
            return
        shared = self._shared
        parsed = parse_head(buffer[:end], shared.own_surfaces, shared.max_body)
        if parsed is None:
            self._hand_over()
            return
        method, target, headers, length, close = parsed
        total = end + 4 + length
        if len(buffer) < total:
            if not self._waiting_body:  # the body's grace starts once, at its head
                self._cancel_timer()  # it ends before the header deadline did
                self._waiting_body = True
                self._arm(BODY_GRACE_SECONDS)
            return
        self._waiting_body = False
        self._buffer = buffer[total:]
        if self._read_paused and len(self._buffer) <= MAX_BUFFERED:
            self._read_paused = False
            transport.resume_reading()
        self._busy = True
        self._close_after = close
        request = Request(method, target, headers, buffer[end + 4 : total], transport)
        asyncio.get_running_loop().create_task(self._serve(request))

    async def _serve(self, request: Request) -> None:
        shared = self._shared
        try:
            response = await answer(
                cast(web.Request, request), shared.handler, shared.gate, shared.metrics, _no_name
            )
            data = serialize(response, self._close_after)
        except Exception as exc:  # noqa: BLE001 - a bug closes this connection only
            log.error("a data-plane answer could not be written: %s", type(exc).__name__)
            self._busy = False
            self.close()
            return
        self._busy = False
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.write(data)
        if self._close_after:
            transport.close()
            return
        self._wait_for_head()
        if self._buffer:
            self._advance()

    def _refuse_head(self) -> None:
        """Answer a head longer than MAX_HEAD with 431, and close."""
        transport = self._transport
        if transport is None:
            return
        self._cancel_timer()
        self._buffer = b""
        refusal = VaultError(
            f"The request's head is longer than {MAX_HEAD} bytes.",
            code="RequestHeaderFieldsTooLarge",
            status=431,
        )
        if self._shared.metrics is not None:
            self._shared.metrics.observe_request("Unknown", 431, 0.0, refusal)
        transport.write(serialize(error_response(refusal), close=True))
        transport.close()

    def _hand_over(self) -> None:
        """Give this connection, with every byte not yet served, to aiohttp's protocol."""
        transport = self._transport
        if transport is None:
            return
        self._cancel_timer()
        self._shared.open.discard(self)
        buffered, self._buffer = self._buffer, b""
        self._transport = None
        protocol = self._shared.fallback()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if self._read_paused:
            transport.resume_reading()
        if buffered:
            protocol.data_received(buffered)


def _no_name() -> str | None:
    return None
