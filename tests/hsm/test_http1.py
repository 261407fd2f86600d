"""The data plane's own HTTP/1.1 layer on real sockets against `strongroom dev`: plain
requests are served by it, everything else by aiohttp on the same connection, and a
request means the same to both (vault/http1.py).

Which side answered shows in the answer: aiohttp names itself in a `Server` header, the
data plane's layer sends none.
"""

import json
import socket
import ssl
import time
from urllib.parse import urlsplit

from strongroom.vault.app import BODY_TIMEOUT_SECONDS
from strongroom.vault.http1 import BODY_GRACE_SECONDS, MAX_HEAD

from .conftest import DevServer

API = "api-version=7.6"


class Answer:
    def __init__(self, head: bytes, body: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ")[1])
        self.headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:])
        }
        self.body = body

    @property
    def by_aiohttp(self) -> bool:
        return "aiohttp" in self.headers.get("server", "")

    def json(self) -> dict[str, object]:
        loaded = json.loads(self.body)
        assert isinstance(loaded, dict)
        return loaded


class Client:
    """One TLS connection that writes raw bytes and reads answers one by one."""

    def __init__(self, dev: DevServer) -> None:
        url = urlsplit(dev.url)
        assert url.port is not None
        self.host = f"localhost:{url.port}"
        self.token = dev.token
        context = ssl.create_default_context(cafile=dev.ca)
        raw = socket.create_connection(("127.0.0.1", url.port), timeout=15)
        self.sock = context.wrap_socket(raw, server_hostname="localhost")
        self.pending = b""

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *_: object) -> None:
        self.sock.close()

    def request(
        self, method: str, target: str, body: bytes | None = None, extra: str = ""
    ) -> bytes:
        head = f"{method} {target} HTTP/1.1\r\nHost: {self.host}\r\n"
        head += f"Authorization: Bearer {self.token}\r\n" + extra
        if body is not None and "Transfer-Encoding" not in extra:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        return head.encode() + b"\r\n" + (body or b"")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.pending += chunk

    def answer(self, informational: bool = False) -> Answer:
        """The next answer; a 100 Continue is skipped unless `informational`."""
        while b"\r\n\r\n" not in self.pending:
            self._fill()
        head, _, rest = self.pending.partition(b"\r\n\r\n")
        self.pending = rest
        answer = Answer(head, b"")
        if answer.status == 100:
            return answer if informational else self.answer()
        length = int(answer.headers.get("content-length", "0"))
        while len(self.pending) < length:
            self._fill()
        answer.body, self.pending = self.pending[:length], self.pending[length:]
        return answer

    def closed(self) -> bool:
        self.sock.settimeout(5)
        try:
            return self.sock.recv(1) == b""
        except (ConnectionError, ssl.SSLError, OSError):
            return True


def secret_body(value: str) -> bytes:
    return json.dumps({"value": value}).encode()


def test_pipelined_requests_are_answered_in_order_and_the_unusual_one_by_aiohttp(
    dev: DevServer,
) -> None:
    with Client(dev) as client:
        client.send(
            client.request("PUT", f"/secrets/http1-pipe?{API}", secret_body("one"))
            + client.request("GET", f"/secrets/http1-pipe?{API}")
            + client.request("GET", f"/secrets/http1-absent?{API}")
            + client.request("GET", "/healthz")
            + client.request("GET", f"/secrets/http1-pipe?{API}")
        )
        put, got, absent, health, again = (client.answer() for _ in range(5))
    assert (put.status, got.status, absent.status, health.status) == (200, 200, 404, 200)
    assert [a.by_aiohttp for a in (put, got, absent)] == [False, False, False]
    assert got.json()["value"] == "one"
    assert absent.json()["error"]["code"] == "SecretNotFound"  # type: ignore[index]
    # /healthz is aiohttp's; the connection, and what follows on it, stays with aiohttp
    assert health.by_aiohttp and again.by_aiohttp
    assert again.status == 200 and again.json()["value"] == "one"


def test_a_chunked_body_and_an_expect_go_to_aiohttp_and_work(dev: DevServer) -> None:
    body = secret_body("chunked")
    chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    with Client(dev) as client:
        client.send(
            client.request(
                "PUT", f"/secrets/http1-chunked?{API}", chunked, "Transfer-Encoding: chunked\r\n"
            )
        )
        answer = client.answer()
    assert answer.status == 200 and answer.by_aiohttp
    assert answer.json()["value"] == "chunked"
    with Client(dev) as client:
        body = secret_body("expected")
        client.send(
            client.request(
                "PUT", f"/secrets/http1-expect?{API}", None, "Expect: 100-continue\r\n"
            ).replace(b"\r\n\r\n", f"\r\nContent-Length: {len(body)}\r\n\r\n".encode())
        )
        assert client.answer(informational=True).status == 100
        client.send(body)
        answer = client.answer()
    assert answer.status == 200 and answer.by_aiohttp
    assert answer.json()["value"] == "expected"


def test_a_smuggled_request_behind_two_framings_is_never_served(dev: DevServer) -> None:
    """Content-Length and Transfer-Encoding together: whichever framing one side read, a
    request hidden in the body must not run. The head goes to aiohttp, which refuses it."""
    smuggled = b"".join(
        [
            b"PUT /secrets/http1-smuggled?api-version=7.6 HTTP/1.1\r\n",
            b"Host: localhost\r\nContent-Type: application/json\r\n",
            b'Content-Length: 15\r\n\r\n{"value":"bad"}',
        ]
    )
    body = b"0\r\n\r\n" + smuggled
    with Client(dev) as client:
        client.send(
            client.request(
                "POST",
                f"/secrets/http1-smuggled/versions?{API}",
                None,
                f"Content-Length: {len(body)}\r\nTransfer-Encoding: chunked\r\n",
            )
            + body
        )
        answer = client.answer()
        assert answer.status == 400 and answer.by_aiohttp
        assert client.closed()
    with Client(dev) as client:
        client.send(client.request("GET", f"/secrets/http1-smuggled?{API}"))
        assert client.answer().status == 404


def test_a_body_sent_apart_from_its_head_is_served_here(dev: DevServer) -> None:
    with Client(dev) as client:
        request = client.request("PUT", f"/secrets/http1-split?{API}", secret_body("split"))
        head, _, body = request.partition(b"\r\n\r\n")
        client.send(head + b"\r\n\r\n")
        time.sleep(0.2)
        client.send(body[:5])
        time.sleep(0.1)
        client.send(body[5:])
        answer = client.answer()
    assert answer.status == 200 and not answer.by_aiohttp
    assert answer.json()["value"] == "split"


def test_a_slow_body_goes_to_aiohttp_with_what_arrived_and_is_served(dev: DevServer) -> None:
    with Client(dev) as client:
        request = client.request("PUT", f"/secrets/http1-slow?{API}", secret_body("slow"))
        head, _, body = request.partition(b"\r\n\r\n")
        client.send(head + b"\r\n\r\n" + body[:3])
        time.sleep(BODY_GRACE_SECONDS + 0.5)
        client.send(body[3:])
        answer = client.answer()
    assert BODY_GRACE_SECONDS < BODY_TIMEOUT_SECONDS
    assert answer.status == 200 and answer.by_aiohttp
    assert answer.json()["value"] == "slow"


def test_connection_close_is_honoured(dev: DevServer) -> None:
    with Client(dev) as client:
        client.send(client.request("GET", f"/keys?{API}", None, "Connection: close\r\n"))
        answer = client.answer()
        assert answer.status == 200 and not answer.by_aiohttp
        assert answer.headers["connection"] == "close"
        assert client.closed()


def test_answers_from_both_sides_agree(dev: DevServer) -> None:
    """The same refused request, once through each side: the same status, error body and
    challenge."""
    answers = []
    for extra in ("", "Expect: 100-continue\r\n"):
        with Client(dev) as client:
            request = client.request("GET", f"/keys/http1-none?{API}", None, extra)
            client.send(request.replace(f"Bearer {client.token}".encode(), b"Bearer nonsense"))
            answers.append(client.answer())
    here, there = answers
    assert (here.by_aiohttp, there.by_aiohttp) == (False, True)
    assert here.status == there.status == 401
    assert here.json() == there.json()
    assert here.headers["www-authenticate"] == there.headers["www-authenticate"]
    assert here.headers["content-type"] == there.headers["content-type"]


def test_a_head_longer_than_the_bound_is_refused_and_the_connection_closed(
    dev: DevServer,
) -> None:
    """Whether the head ever ends or not, and on any path: 431 in Key Vault's shape, then
    the connection closes (nothing is handed to aiohttp half read)."""
    padding = "X-Pad: " + "a" * 1000 + "\r\n"
    for target, ended in ((f"/keys?{API}", True), ("/healthz", True), (f"/keys?{API}", False)):
        with Client(dev) as client:
            request = client.request("GET", target, None, padding * (MAX_HEAD // 1000 + 1))
            client.send(request if ended else request[: -len("\r\n\r\n")])
            answer = client.answer()
            assert answer.status == 431 and not answer.by_aiohttp
            assert answer.json()["error"]["code"] == "RequestHeaderFieldsTooLarge"  # type: ignore[index]
            assert answer.headers["connection"] == "close"
            assert client.closed()
