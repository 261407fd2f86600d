"""Attack: hold the vault server's connections by sending headers (or the handshake) slowly.

A client that has not completed its TLS handshake, or its request headers, within the
header timeout is disconnected: measured on a real socket against `strongroom dev`.
"""

import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

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
