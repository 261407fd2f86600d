"""bench/dataplane.py's own arithmetic and its load connection: turns pooled by request,
answers counted whole however they arrive, a refused answer counted as failed, and no
request sent after the deadline."""

import asyncio
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def dataplane() -> ModuleType:
    sys.path.insert(0, str(BENCH))  # dataplane imports its sibling `plotting`
    try:
        import dataplane as module
    finally:
        sys.path.remove(str(BENCH))
    return module


def test_turns_are_pooled_by_request_not_by_turn(dataplane: ModuleType) -> None:
    Run = dataplane.Run
    pooled = dataplane.pooled(
        [Run(1000.0, 0.0002, 0.0001, 0.00005, 0.2), Run(3000.0, 0.0001, 0.0001, 0.00005, 0.1)]
    )
    assert pooled.rate == pytest.approx(2000.0)
    # 1,000 requests at 200 µs and 3,000 at 100 µs: 125 µs a request.
    assert pooled.server_cpu == pytest.approx(0.000125)
    assert pooled.sidecar_cpu == pytest.approx(0.0001)
    assert pooled.load_cpu == pytest.approx(0.00005)
    assert pooled.idle == pytest.approx(0.15)
    rate, cpu = dataplane.pooled_raw([(10000.0, 0.00008), (5000.0, 0.00011)])
    assert rate == pytest.approx(7500.0)
    assert cpu == pytest.approx((10000 * 0.00008 + 5000 * 0.00011) / 15000)


class _Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True


def _answer(status: bytes, body: bytes) -> bytes:
    return b"HTTP/1.1 " + status + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body


def test_the_load_connection_counts_whole_answers_and_stops_at_the_deadline(
    dataplane: ModuleType,
) -> None:
    async def scenario() -> None:
        client = dataplane._Client(b"REQUEST")
        transport = _Transport()
        client.connection_made(transport)
        finished = client.run(time.monotonic() + 3600)
        assert transport.writes == [b"REQUEST"]
        stream = _answer(b"200 OK", b'{"kid":"x"}') + _answer(b"401 Unauthorized", b"{}")
        for byte in range(len(stream)):  # cut everywhere: each answer still counted once
            client.data_received(stream[byte : byte + 1])
        assert (client.answered, client.failed) == (1, 1)
        assert transport.writes == [b"REQUEST"] * 3  # sent again after each whole answer
        client._deadline = 0.0  # the deadline passes: the next answer ends the run
        client.data_received(_answer(b"200 OK", b""))
        assert (client.answered, client.failed) == (2, 1)
        assert len(transport.writes) == 3
        assert finished.done()
        client.close()
        assert transport.closed

    asyncio.run(scenario())


def test_a_load_connection_closed_by_the_server_fails_its_run(dataplane: ModuleType) -> None:
    async def scenario() -> None:
        client = dataplane._Client(b"REQUEST")
        client.connection_made(_Transport())
        finished = client.run(time.monotonic() + 3600)
        client.connection_lost(None)
        with pytest.raises(ConnectionError):
            await finished

    asyncio.run(scenario())


def test_message_sizes_and_the_floor_server_answering_pipelined_requests(
    dataplane: ModuleType,
) -> None:
    get = b"GET /keys/k HTTP/1.1\r\nHost: h\r\n\r\n"
    post = b"POST /keys/k/sign HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nbody"
    assert dataplane.message_size(get) == len(get)
    assert dataplane.message_size(post + get) == len(post)
    assert dataplane.message_size(post[:-1]) is None  # the body is not all there
    assert dataplane.message_size(get[:-2]) is None  # nor the head
    server = dataplane._LeanAnswer(b'{"ok":1}')
    transport = _Transport()
    server.connection_made(transport)
    stream = post + get + post
    server.data_received(stream[:10])
    server.data_received(stream[10:-2])
    assert len(transport.writes) == 2
    server.data_received(stream[-2:])
    assert len(transport.writes) == 3
    assert transport.writes[0].endswith(b'\r\n\r\n{"ok":1}')
