"""The HSM socket's line reader, shared by the vault server's client and the sidecar:
lines come back whole however the stream is cut, and an overlong line is thrown away as it
arrives, reported once with the id that began it, without losing the lines around it."""

import random

import pytest

from strongroom.hsm import protocol
from strongroom.hsm.protocol import Lines, Overlong


def _read_all(lines: Lines, stream: bytes, cuts: list[int]) -> list[bytes | Overlong]:
    out: list[bytes | Overlong] = []
    last = 0
    for cut in [*cuts, len(stream)]:
        lines.feed(stream[last:cut])
        last = cut
        while (line := lines.next()) is not None:
            out.append(line)
    return out


@pytest.mark.parametrize("seed", range(20))
def test_lines_come_back_whole_however_the_stream_is_cut(seed: int) -> None:
    rng = random.Random(seed)
    sent = [b'{"i":%d,"op":"ping"}\n' % i for i in range(50)]
    stream = b"".join(sent)
    cuts = sorted(rng.sample(range(1, len(stream)), 30))
    assert _read_all(Lines(), stream, cuts) == sent


def test_an_overlong_line_is_reported_once_with_its_id_and_the_stream_stays_in_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(protocol, "MAX_LINE", 64)
    before = b'{"i":1,"op":"ping"}\n'
    overlong = b'{"i":7,"op":"seal","a":"' + b"A" * 200 + b'"}\n'
    anonymous = b"x" * 100 + b"\n"
    after = b'{"i":2,"op":"ping"}\n'
    stream = before + overlong + anonymous + after
    for cuts in ([], [5, 30, 90, 150, 240, 300], list(range(1, len(stream), 7))):
        lines = Lines()
        got = _read_all(lines, stream, cuts)
        assert got == [before, Overlong(7), Overlong(None), after], cuts
        # Nothing of the overlong lines is held once they are past.
        assert len(lines._buffer) - lines._start == 0


def test_an_overlong_line_is_not_held_whole_while_it_arrives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(protocol, "MAX_LINE", 64)
    lines = Lines()
    lines.feed(b'{"i":9,"op":"x","a":"' + b"B" * 100)
    assert lines.next() is None
    for _ in range(100):
        lines.feed(b"C" * 1000)
        assert lines.next() is None
        assert len(lines._buffer) <= 1000  # what was seen of it is dropped at each feed
    lines.feed(b'"}\n{"i":3}\n')
    assert lines.next() == Overlong(9)
    assert lines.next() == b'{"i":3}\n'
