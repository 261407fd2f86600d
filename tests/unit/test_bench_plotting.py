"""bench/plotting.py: the benchmarks' figures from given numbers, written as valid PNGs."""

import importlib.util
import struct
import sys
import zlib
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import numpy
import pytest
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.image import imread

BENCH = Path(__file__).resolve().parents[2] / "bench"
GOAL_RED = numpy.array([0xD6, 0x27, 0x28]) / 255


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_plotting", BENCH / "plotting.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


plotting = _load()
MACHINE = plotting.Machine(
    date=datetime(2026, 12, 2, 23, 42, tzinfo=UTC),
    cores=2,
    cpu="Test CPU 9000",
    load=1.5,
    commit="abc1234",
)


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """The chunks of a PNG, each checked against its CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    chunks = []
    offset = 8
    while offset < len(data):
        assert offset + 12 <= len(data), "a chunk cut short"
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        assert offset + 12 + length <= len(data), f"chunk {kind!r} cut short"
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"chunk {kind!r} has a bad CRC"
        chunks.append((kind, body))
        offset += 12 + length
    return chunks


def check_png(path: Path, figure: Figure) -> numpy.ndarray:
    """A whole, decodable PNG of the figure's size; its pixels."""
    chunks = png_chunks(path.read_bytes())
    assert chunks[0][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    width, height, depth, color = struct.unpack(">IIBB", chunks[0][1][:10])
    expected = figure.get_size_inches() * plotting.DPI
    assert (width, height) == (int(expected[0]), int(expected[1]))  # as Agg truncates
    assert depth == 8 and color in (2, 6)  # 8-bit RGB or RGBA
    channels = 4 if color == 6 else 3
    pixels = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    assert len(pixels) == height * (1 + width * channels)  # one filter byte a row
    image = imread(path)
    assert image.shape[:2] == (height, width)
    return numpy.asarray(image)[:, :, :3]


def has_color(image: numpy.ndarray, color: numpy.ndarray) -> bool:
    return bool((numpy.abs(image - color).max(axis=2) < 0.05).any())


def goal_levels(axes: object) -> set[float]:
    levels = set()
    for collection in axes.collections:  # type: ignore[attr-defined]
        if isinstance(collection, LineCollection):
            for segment in collection.get_segments():
                levels.add(round(float(segment[0][1]), 6))
    for line in axes.get_lines():  # type: ignore[attr-defined]
        ys = set(line.get_ydata())
        if len(ys) == 1 and line.get_linestyle() == "--":
            levels.add(round(float(ys.pop()), 6))
    return levels


def footnote(figure: Figure) -> str:
    return "\n".join(text.get_text() for text in figure.texts)


def test_dataplane_figure_and_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [
        plotting.DataplaneRow("RSA-2048 sign", 621, 914, 0.9, 401, 1211, 1092, 86, 1.25),
        plotting.DataplaneRow("EC P-256 sign", 2183, 13097, 0.4, 288, 154, 76, 67, 3.0),
        plotting.DataplaneRow("secret GET", 1352, 12236, 0.7, 616, 251, 81, 87, None),
    ]
    report = plotting.Report("dataplane", tmp_path / "out", MACHINE)
    report.line("throughput")
    machine = report.end()
    assert machine.load_end is not None
    figure = plotting.dataplane_figure(rows, machine, "16 keep-alive clients")
    written = report.save(figure)

    out = tmp_path / "out"
    assert written == [out / "dataplane.txt", out / "dataplane.png"]
    assert (out / "dataplane.txt").read_text() == (
        f"{MACHINE.describe()}\nthroughput\nload average {machine.load_end:.1f} at the end\n"
    )
    assert "throughput" in capsys.readouterr().out
    image = check_png(out / "dataplane.png", figure)
    assert has_color(image, GOAL_RED), "no goal line in the picture"

    throughput, cpu = figure.axes
    assert goal_levels(throughput) == {0.9, 0.4, 0.7}
    # CPU goals: that many times the baseline's CPU, none for the secret GET.
    assert goal_levels(cpu) == {round(1.25 * 1092, 6), round(3.0 * 76, 6)}
    assert "µs" in cpu.get_ylabel()
    assert [tick.get_text() for tick in cpu.get_xticklabels()] == [row.label for row in rows]
    note = footnote(figure)
    facts = ("2026-12-02 23:42 UTC", "2 cores", "Test CPU 9000", "abc1234", "at the end")
    for fact in (*facts, "16 keep-alive"):
        assert fact in note


def test_scale_figure(tmp_path: Path) -> None:
    rows = [
        plotting.ScaleRow(1000, 875, 10.8, 20.3, 1.0, 71.7, 57.4, 1.5),
        plotting.ScaleRow(10000, 1306, 7.1, 21.1, 1.0, 73.1, 57.3, 8.4),
        plotting.ScaleRow(100000, 200, 9.0, 40.0, 12.0, 80.0, 58.0, 72.0),
    ]
    goals = plotting.ScaleGoals(
        set_share=0.8, set_floor=300, p99_share=1.5, restart_s=10, server_mib=250
    )
    figure = plotting.scale_figure(rows, goals, 381, 10000, MACHINE, "16 clients")
    path = tmp_path / "scale.png"
    plotting.save_png(figure, path)
    image = check_png(path, figure)
    assert has_color(image, GOAL_RED)

    sets, gets, restart, memory, disk, summary = figure.axes
    assert goal_levels(sets) == {300.0, round(0.8 * 875, 6)}
    assert goal_levels(gets) == {round(1.5 * 20.3, 6)}
    assert goal_levels(restart) == {10.0}
    assert goal_levels(memory) == {250.0}
    assert goal_levels(disk) == set()
    assert sets.get_xscale() == "log"
    assert "MiB" in memory.get_ylabel() and "ms" in gets.get_ylabel()
    verdicts = summary.texts[0].get_text()
    # The last size misses three goals of four (sets, p99, restart), meets the memory one.
    assert verdicts.count("MISSED") == 3 and verdicts.count("met") == 1
    assert "381/s" in verdicts
    assert "Test CPU 9000" in footnote(figure)


def test_csi_figure(tmp_path: Path) -> None:
    native = [0.9, 1.0, 1.1, 1.2, 1.4]
    csi = [1.0, 1.3, 1.5, 1.9, 2.5]
    figure = plotting.csi_figure(native, csi, 2.0, 2.0, 20, 2, 4.0, 60, MACHINE, "one node")
    path = tmp_path / "csi.png"
    plotting.save_png(figure, path)
    check_png(path, figure)
    starts, calls = figure.axes
    assert round(2.0 * 1.4, 6) in goal_levels(starts)
    assert 4.0 in goal_levels(calls)
    assert "p95 ratio 1.79×" in starts.get_title()
    assert plotting.percentile_95(csi) == 2.5 and plotting.median(native) == 1.1
    assert plotting.median([1.0, 2.0]) == 1.5


def test_a_png_cut_short_is_refused(tmp_path: Path) -> None:
    figure = plotting.csi_figure([1.0], [1.0], 2.0, 1.0, 1, 1, 0.1, 60, MACHINE, "one node")
    path = tmp_path / "csi.png"
    plotting.save_png(figure, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AssertionError):
        check_png(path, figure)
