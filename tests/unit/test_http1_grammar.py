"""The data plane's HTTP/1.1 layer serves only heads in its strict grammar; every other
head goes, untouched, to aiohttp (vault/http1.py). These are the grammar's decisions."""

import pytest
from aiohttp import web

from strongroom.vault import http1

OWN = frozenset({"healthz", "strongroom", "securitydomain"})
MAX_BODY = 256 * 1024
PLAIN = (
    b"POST /keys/k/0123/sign?api-version=7.6 HTTP/1.1\r\n"
    b"Host: vault.example:8443\r\n"
    b"Authorization: Bearer abc.def.ghi\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: 17"
)


def parse(head: bytes) -> tuple[str, str, dict[str, str], int, bool] | None:
    parsed = http1.parse_head(head, OWN, MAX_BODY)
    if parsed is None:
        return None
    method, target, headers, length, close = parsed
    return method, target, dict(headers), length, close


def test_a_plain_request_is_served_here_as_written() -> None:
    parsed = parse(PLAIN)
    assert parsed is not None
    method, target, headers, length, close = parsed
    assert (method, target, length, close) == (
        "POST",
        "/keys/k/0123/sign?api-version=7.6",
        17,
        False,
    )
    assert headers["Host"] == "vault.example:8443"
    assert headers["Authorization"] == "Bearer abc.def.ghi"


def test_header_values_lose_surrounding_whitespace_and_names_are_case_blind() -> None:
    parsed = http1.parse_head(
        b"GET /keys HTTP/1.1\r\nhOsT:   v.example \t\r\nX-Empty:\r\nconnection: Close", OWN, 0
    )
    assert parsed is not None
    _, _, headers, length, close = parsed
    assert headers["host"] == "v.example"
    assert headers["X-Empty"] == ""
    assert (length, close) == (0, True)


@pytest.mark.parametrize(
    "head",
    [
        # what a smuggler sends: two lengths, or a length and chunked, or chunked alone
        PLAIN + b"\r\nContent-Length: 17",
        PLAIN + b"\r\nTransfer-Encoding: chunked",
        b"POST /keys/k/create HTTP/1.1\r\nHost: v\r\nTransfer-Encoding: chunked",
        b"POST /keys/k/create HTTP/1.1\r\nHost: v\r\nContent-Length: +17",
        b"POST /keys/k/create HTTP/1.1\r\nHost: v\r\nContent-Length: 1 7",
        b"POST /keys/k/create HTTP/1.1\r\nHost: v\r\nContent-Length: 0x11",
        b"POST /keys/k/create HTTP/1.1\r\nHost: v\r\nContent-Length: 1234567890",
        # a body over the data plane's bound: aiohttp answers it (413)
        b"POST /keys/k/create HTTP/1.1\r\nHost: v\r\nContent-Length: 262145",
        # folded, spaced or otherwise unusual header lines
        b"GET /keys HTTP/1.1\r\nHost: v\r\nX-A: 1\r\n  folded",
        b"GET /keys HTTP/1.1\r\nHost: v\r\nX-A : 1",
        b"GET /keys HTTP/1.1\r\nHost: v\r\nX A: 1",
        b"GET /keys HTTP/1.1\r\nHost: v\r\nX-A: a\x00b",
        b"GET /keys HTTP/1.1\r\nHost: v\r\nX-A: caf\xc3\xa9",
        b"GET /keys HTTP/1.1\r\nHost: v\r\n",
        b"GET /keys HTTP/1.1\r\nHost: v\nX-A: 1",
        b"GET /keys HTTP/1.1\r\nHost: v\rX-A: 1",
        b"GET /keys HTTP/1.1\r\nHost: v\r\nX-A: a\x7fb",
        b"GET /keys HTTP/1.1\r\nHost: v\r\nX-A: a\x0bb",
        # no host, or two
        b"GET /keys HTTP/1.1\r\nX-A: 1",
        b"GET /keys HTTP/1.1\r\nHost: v\r\nHost: w",
        # what the data plane never needs
        b"GET /keys HTTP/1.1\r\nHost: v\r\nExpect: 100-continue",
        b"GET /keys HTTP/1.1\r\nHost: v\r\nUpgrade: websocket",
        b"GET /keys HTTP/1.1\r\nHost: v\r\nConnection: upgrade",
        b"GET /keys HTTP/1.0\r\nHost: v",
        b"GET /keys HTTP/2\r\nHost: v",
        b"HEAD /keys HTTP/1.1\r\nHost: v",
        b"OPTIONS * HTTP/1.1\r\nHost: v",
        b"get /keys HTTP/1.1\r\nHost: v",
        # request lines out of shape
        b"GET  /keys HTTP/1.1\r\nHost: v",
        b"GET /keys HTTP/1.1 \r\nHost: v",
        b"GET http://v/keys HTTP/1.1\r\nHost: v",
        b"GET /keys#frag HTTP/1.1\r\nHost: v",
        b"GET /ke\x7fys HTTP/1.1\r\nHost: v",
        # the pool's own surfaces, also when percent-encoded
        b"GET /healthz HTTP/1.1\r\nHost: v",
        b"GET /securitydomain/download/pending HTTP/1.1\r\nHost: v",
        b"PUT /strongroom/v1/vaults/a HTTP/1.1\r\nHost: v",
        b"GET /%73ecuritydomain/download/pending HTTP/1.1\r\nHost: v",
        b"GET /healthz?x=1 HTTP/1.1\r\nHost: v",
    ],
)
def test_anything_else_goes_to_aiohttp(head: bytes) -> None:
    assert parse(head) is None, head


def test_the_pool_surfaces_are_read_off_the_app_routes() -> None:
    async def nothing(request: web.Request) -> web.Response:
        return web.Response()

    app = web.Application()
    app.router.add_get("/healthz", nothing)
    app.router.add_get("/strongroom/v1/vaults/{name}", nothing)
    app.router.add_post("/securitydomain/download", nothing)
    app.router.add_route("*", r"/{tail:[\s\S]*}", nothing)
    assert http1.own_surfaces(app) == frozenset({"healthz", "strongroom", "securitydomain"})


def test_an_answer_is_written_with_its_length_date_and_headers() -> None:
    response = web.Response(
        status=401, body=b'{"error":{}}', headers={"WWW-Authenticate": 'Bearer x="y"'}
    )
    response.content_type = "application/json"
    data = http1.serialize(response, close=True)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 401 Unauthorized"
    assert b"Content-Length: 12" in lines
    assert b"Connection: close" in lines
    assert b'WWW-Authenticate: Bearer x="y"' in lines
    assert b"Content-Type: application/json" in lines
    assert any(line.startswith(b"Date: ") and line.endswith(b" GMT") for line in lines)
    assert body == b'{"error":{}}'


def test_a_no_content_answer_has_no_body_and_no_length() -> None:
    data = http1.serialize(web.Response(status=204), close=False)
    assert data.startswith(b"HTTP/1.1 204 No Content\r\n")
    assert data.endswith(b"\r\n\r\n")
    assert b"Content-Length" not in data
