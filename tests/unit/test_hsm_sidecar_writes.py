"""How the sidecar sends its answers: quick operations that arrived together share one
write, a slow one (a signature) is sent as soon as it is made, and every answer goes out,
in order, whatever the mix."""

from typing import Any

import pytest

from strongroom.hsm import sidecar as sidecar_module
from strongroom.hsm.sidecar import SidecarConnection


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


class _Sidecar:
    """Answers `<n> <seconds>` lines with `<n>`, taking that long on the clock."""

    def __init__(self, clock: _Clock) -> None:
        self.clock = clock

    def answer(self, line: bytes) -> bytes:
        number, seconds = line.split()
        self.clock.now += float(seconds)
        return b"A" + number + b"\n"


class _Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    clock = _Clock()
    monkeypatch.setattr(sidecar_module, "time", clock)
    return clock


def _connection(clock: _Clock) -> tuple[SidecarConnection, _Transport]:
    connection = SidecarConnection(_Sidecar(clock))  # type: ignore[arg-type]
    transport = _Transport()
    connection.connection_made(transport)  # type: ignore[arg-type]
    return connection, transport


# One EC P-256 signature on SoftHSM2 (about 80 µs of CPU).
SIGNATURE = 0.00008


def _lines(*seconds: float) -> bytes:
    return b"".join(b"%d %f\n" % (n, s) for n, s in enumerate(seconds))


def _answers(*numbers: int) -> bytes:
    return b"".join(b"A%d\n" % n for n in numbers)


def test_quick_answers_that_arrived_together_leave_in_one_write(clock: _Clock) -> None:
    connection, transport = _connection(clock)
    connection.data_received(_lines(*[0.000002] * 10))
    assert transport.writes == [_answers(*range(10))]


def test_each_signature_is_sent_as_soon_as_it_is_made(clock: _Clock) -> None:
    connection, transport = _connection(clock)
    connection.data_received(_lines(SIGNATURE, SIGNATURE, SIGNATURE))
    assert transport.writes == [_answers(0), _answers(1), _answers(2)]


def test_quick_answers_ride_with_the_next_write_and_the_order_holds(clock: _Clock) -> None:
    connection, transport = _connection(clock)
    quick, sign = 0.000001, SIGNATURE
    connection.data_received(_lines(quick, quick, sign, quick, sign, quick, quick))
    assert transport.writes == [_answers(0, 1, 2), _answers(3, 4), _answers(5, 6)]


def test_a_line_cut_across_reads_is_answered_once_whole(clock: _Clock) -> None:
    connection, transport = _connection(clock)
    stream = _lines(0.000001, 0.000001)
    connection.data_received(stream[:5])
    assert transport.writes == []
    connection.data_received(stream[5:])
    answered: Any = b"".join(transport.writes)
    assert answered == _answers(0, 1)
