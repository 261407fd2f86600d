"""Attack: hold the vault server's connections by sending headers, the handshake or a body
slowly.

A client that has not completed its TLS handshake, or its request headers, within the
header timeout is disconnected; a body that has not arrived within the body timeout fails
its request with 408: measured on real sockets against `strongroom dev`.
"""

import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from strongroom.vault.app import BODY_TIMEOUT_SECONDS
from strongroom.vault.server import HEADER_TIMEOUT_SECONDS

from .conftest import DevServer

SLACK = 3.0


def _address(dev: DevServer) -> tuple[str, int]:
    url = urlsplit(dev.url)
    assert url.port is not None
    return "127.0.0.1", url.port


def _closed(sock: socket.socket | ssl.SSLSocket) -> bool:
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except (ConnectionError, ssl.SSLError, OSError):
        return True


def trickle_headers(dev: DevServer) -> float:
    """Seconds from the handshake's end until the server hangs up on a header trickle."""
    context = ssl.create_default_context(cafile=dev.ca)
    raw = socket.create_connection(_address(dev), timeout=10)
    with context.wrap_socket(raw, server_hostname="localhost") as sock:
        started = time.monotonic()
        sock.settimeout(0.5)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
        deadline = started + HEADER_TIMEOUT_SECONDS + 20
        while time.monotonic() < deadline:
            try:
                sock.sendall(b"X")  # one byte of a header that never ends
            except (ConnectionError, ssl.SSLError, OSError):
                return time.monotonic() - started
            if _closed(sock):
                return time.monotonic() - started
        raise AssertionError("the server kept a trickling client past any bound")


def stall_handshake(dev: DevServer) -> float:
    """Seconds until the server hangs up on a client that never starts its TLS handshake."""
    with socket.create_connection(_address(dev), timeout=10) as sock:
        started = time.monotonic()
        sock.settimeout(0.5)
        deadline = started + HEADER_TIMEOUT_SECONDS + 70
        while time.monotonic() < deadline:
            if _closed(sock):
                return time.monotonic() - started
        raise AssertionError("the server kept a silent client past any bound")


def test_slow_clients_are_disconnected_within_the_header_timeout(dev: DevServer) -> None:
    with ThreadPoolExecutor(2) as pool:
        headers = pool.submit(trickle_headers, dev)
        handshake = pool.submit(stall_handshake, dev)
        header_seconds, handshake_seconds = headers.result(), handshake.result()
    assert HEADER_TIMEOUT_SECONDS - 1 <= header_seconds <= HEADER_TIMEOUT_SECONDS + SLACK
    assert handshake_seconds <= HEADER_TIMEOUT_SECONDS + SLACK
    assert dev.alive()


def trickle_body(dev: DevServer) -> tuple[float, bytes]:
    """Seconds until the server answers an authenticated request whose body trickles, and
    the answer's first bytes."""
    context = ssl.create_default_context(cafile=dev.ca)
    raw = socket.create_connection(_address(dev), timeout=10)
    with context.wrap_socket(raw, server_hostname="localhost") as sock:
        sock.sendall(
            b"PUT /secrets/trickled?api-version=7.6 HTTP/1.1\r\nHost: localhost\r\n"
            + f"Authorization: Bearer {dev.token}\r\n".encode()
            + b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
        )
        started = time.monotonic()
        sock.settimeout(0.5)
        deadline = started + BODY_TIMEOUT_SECONDS + 20
        while time.monotonic() < deadline:
            try:
                sock.sendall(b" ")  # one byte of a body that never completes
                answer = sock.recv(64)
            except TimeoutError:
                continue
            except (ConnectionError, ssl.SSLError, OSError):
                return time.monotonic() - started, b""
            return time.monotonic() - started, answer
        raise AssertionError("the server kept a trickling body past any bound")


def test_a_trickling_body_fails_its_request_within_the_body_timeout(dev: DevServer) -> None:
    seconds, answer = trickle_body(dev)
    assert BODY_TIMEOUT_SECONDS - 1 <= seconds <= BODY_TIMEOUT_SECONDS + SLACK, seconds
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert dev.alive()
