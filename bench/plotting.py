"""The benchmarks' output: the text each prints, also kept in a file, and a PNG figure beside it.

    report = Report("dataplane", args.out)     # --out DIR, bench/figures by default
    report.line("...")                         # printed now, kept for <DIR>/dataplane.txt
    report.save(dataplane_figure(rows, ...))   # <DIR>/dataplane.png and <DIR>/dataplane.txt

The figures are drawn with matplotlib's Agg backend on a bare `Figure` (no pyplot, no
display). Each carries a footnote with the run's date, the machine (cores, CPU model, load
average when the run began) and the commit measured; the text file starts with the same.
The figure builders take plain numbers, so they can be drawn from any run's results.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from matplotlib.axes import Axes  # noqa: E402 - after the backend is chosen
from matplotlib.figure import Figure  # noqa: E402

FIGURES = Path(__file__).resolve().parent / "figures"
API_COLOR, SIDECAR_COLOR, BASE_COLOR, GOAL_COLOR = "#1f77b4", "#9ecae1", "#7f7f7f", "#d62728"
SECOND_COLOR = "#ff7f0e"
DPI = 110  # of the PNGs


def add_out_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        type=Path,
        default=FIGURES,
        metavar="DIR",
        help=f"where the figure (<bench>.png) and the text (<bench>.txt) go; default {FIGURES}",
    )


# --- the run's machine ------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _commit() -> str:
    git = shutil.which("git")
    if git is None:
        return "unknown"
    here = str(Path(__file__).resolve().parent)
    head = subprocess.run(
        [git, "-C", here, "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    if head.returncode != 0:
        return "unknown"
    dirty = subprocess.run(
        [git, "-C", here, "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    )
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


@dataclass(frozen=True)
class Machine:
    """Where and when a run happened."""

    date: datetime
    cores: int
    cpu: str
    load: float  # 1-minute load average when the run began
    commit: str
    load_end: float | None = None  # and when it ended

    @classmethod
    def here(cls) -> Machine:
        return cls(
            date=datetime.now(UTC),
            cores=os.cpu_count() or 0,
            cpu=_cpu_model(),
            load=os.getloadavg()[0],
            commit=_commit(),
        )

    def ended(self) -> Machine:
        return replace(self, load_end=os.getloadavg()[0])

    def describe(self) -> str:
        end = "" if self.load_end is None else f", {self.load_end:.1f} at the end"
        return (
            f"run {self.date:%Y-%m-%d %H:%M} UTC; {self.cores} cores ({self.cpu}), "
            f"load average {self.load:.1f} at the start{end}; strongroom {self.commit}"
        )


class Report:
    """The text of one bench: printed as it comes, saved with the figure."""

    def __init__(self, name: str, out: Path, machine: Machine | None = None) -> None:
        self.name = name
        self.out = out
        self.machine = machine or Machine.here()
        self.lines: list[str] = []
        self.line(self.machine.describe())

    def end(self) -> Machine:
        """The machine with the load average now, for the figure's footnote and the text."""
        self.machine = self.machine.ended()
        self.line(f"load average {self.machine.load_end:.1f} at the end")
        return self.machine

    def line(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)

    def save(self, figure: Figure | None) -> list[Path]:
        """Write <out>/<name>.txt and, given a figure, <out>/<name>.png; the paths written."""
        self.out.mkdir(parents=True, exist_ok=True)
        text = self.out / f"{self.name}.txt"
        text.write_text("\n".join(self.lines) + "\n")
        written = [text]
        if figure is not None:
            png = self.out / f"{self.name}.png"
            save_png(figure, png)
            written.append(png)
        print(f"\nwrote {', '.join(str(p) for p in written)}", flush=True)
        return written


def save_png(figure: Figure, path: Path) -> None:
    figure.savefig(path, format="png", dpi=DPI)


def _new_figure(columns: int, rows: int, title: str, note: str, machine: Machine) -> Figure:
    width = 6.2 * columns if columns < 3 else 5.4 * columns
    # About 15 characters of 7.5-point text to the inch.
    lines = [
        wrapped
        for paragraph in [*note.split("\n"), machine.describe()]
        for wrapped in textwrap.wrap(paragraph, int(width * 15)) or [""]
    ]
    footnote = 0.16 * len(lines) + 0.15  # inches
    figure = Figure(figsize=(width, 4.3 * rows + 0.6 + footnote))
    figure.suptitle(title, fontsize=13, fontweight="bold")
    figure.text(0.01, 0.01, "\n".join(lines), fontsize=7.5, color="#444444", va="bottom", ha="left")
    figure.set_layout_engine("tight", rect=(0, (footnote + 0.1) / figure.get_figheight(), 1, 0.95))
    return figure


def _finish(figure: Figure) -> Figure:
    """The layout is done when the figure is drawn (tight, above the footnote)."""
    return figure


def _goal_segment(axes: Axes, x: float, half_width: float, y: float, label: str | None) -> None:
    axes.hlines(
        y,
        x - half_width,
        x + half_width,
        colors=GOAL_COLOR,
        linestyles="--",
        label=label if label is not None else "_nolegend_",
    )


# --- dataplane.py -------------------------------------------------------------------------


@dataclass(frozen=True)
class DataplaneRow:
    label: str  # "EC P-256 sign"
    api_rate: float  # answered requests per second through the API
    base_rate: float  # the baseline's, per second
    rate_goal: float  # API rate at least this share of the baseline's
    server_us: float  # CPU microseconds per request, vault server
    sidecar_us: float  # CPU microseconds per request, HSM sidecar
    base_us: float  # CPU microseconds per request of the baseline
    load_us: float  # CPU microseconds per request of the load generator
    cpu_goal: float | None  # server + sidecar at most this many times the baseline's


def dataplane_figure(rows: Sequence[DataplaneRow], machine: Machine, setting: str) -> Figure:
    figure = _new_figure(
        2,
        1,
        "strongroom data plane: API against raw PKCS#11 and a bare HTTPS endpoint",
        f"{setting}. Baselines: signs, a raw python-pkcs11 loop on the same token; "
        "secret GET, a bare aiohttp endpoint with the same body over the same TLS.\n"
        "CPU = utime + stime from /proc over the loaded window; the load generator's CPU is "
        "left out. Throughput ratios move with the machine's load; CPU per request is steadier.",
        machine,
    )
    throughput, cpu = figure.subplots(1, 2)
    xs = list(range(len(rows)))
    names = [row.label for row in rows]

    ratios = [row.api_rate / row.base_rate if row.base_rate else 0.0 for row in rows]
    throughput.bar(xs, ratios, width=0.6, color=API_COLOR, label="API / baseline")
    for x, row, ratio in zip(xs, rows, ratios, strict=True):
        _goal_segment(throughput, x, 0.38, row.rate_goal, "goal (at least)" if x == 0 else None)
        throughput.annotate(
            f"{ratio:.2f}×\n{row.api_rate:,.0f}/s of {row.base_rate:,.0f}/s",
            (x, ratio),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    top = max([*ratios, *(row.rate_goal for row in rows), 1.0])
    throughput.set_ylim(0, top * 1.3)
    throughput.set_xticks(xs, names)
    throughput.set_ylabel("API throughput / baseline throughput (higher is better)")
    throughput.set_title("Throughput, share of the baseline")
    throughput.legend(loc="upper right", fontsize=8)
    throughput.grid(axis="y", alpha=0.3)

    width = 0.36
    left = [x - width / 2 for x in xs]
    right = [x + width / 2 for x in xs]
    servers = [row.server_us for row in rows]
    sidecars = [row.sidecar_us for row in rows]
    cpu.bar(left, servers, width=width, color=API_COLOR, label="vault server")
    cpu.bar(left, sidecars, width=width, bottom=servers, color=SIDECAR_COLOR, label="HSM sidecar")
    cpu.bar(right, [row.base_us for row in rows], width=width, color=BASE_COLOR, label="baseline")
    labelled = False
    heights: list[float] = []
    for bar_x, row in zip(left, rows, strict=True):
        total = row.server_us + row.sidecar_us
        heights.append(total)
        ratio = total / row.base_us if row.base_us else 0.0
        cpu.annotate(
            f"{total:,.0f} µs\n{ratio:.2f}× baseline",
            (bar_x, total),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8,
        )
        if row.cpu_goal is not None:
            goal = row.cpu_goal * row.base_us
            heights.append(goal)
            _goal_segment(
                cpu,
                bar_x,
                width * 0.7,
                goal,
                "goal (at most, × baseline)" if not labelled else None,
            )
            cpu.annotate(
                f"≤ {row.cpu_goal:g}×",
                (bar_x + width * 0.7, goal),
                xytext=(2, 0),
                textcoords="offset points",
                va="center",
                fontsize=7.5,
                color=GOAL_COLOR,
            )
            labelled = True
    for bar_x, row in zip(right, rows, strict=True):
        heights.append(row.base_us)
        cpu.annotate(
            f"{row.base_us:,.0f}",
            (bar_x, row.base_us),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    cpu.set_ylim(0, max([*heights, 1.0]) * 1.25)
    cpu.set_xticks(xs, names)
    cpu.set_ylabel("CPU time per request, µs (lower is better)")
    cpu.set_title("CPU per request: server + sidecar against the baseline")
    cpu.legend(loc="upper right", fontsize=8)
    cpu.grid(axis="y", alpha=0.3)
    return _finish(figure)


# --- scale.py -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScaleRow:
    size: int  # secrets in the vault
    set_rate: float  # sets per second of the next 1,000
    get_p50_ms: float
    get_p99_ms: float
    restart_s: float  # restart to the first answer
    server_mib: float  # RSS of the vault server
    sidecar_mib: float  # RSS of the HSM sidecar
    disk_mib: float  # bytes on disk of the state directory


@dataclass(frozen=True)
class ScaleGoals:
    set_share: float  # set rate at the largest size at least this share of the smallest's
    set_floor: float  # and at least this many per second
    p99_share: float  # GET p99 at the largest at most this many times the smallest's
    restart_s: float  # restart to ready at the largest size, at most
    server_mib: float  # vault-server RSS at the largest size, at most


def _size_axis(axes: Axes, sizes: Sequence[int]) -> None:
    axes.set_xscale("log")
    axes.set_xticks(list(sizes), [f"{size:,}" for size in sizes])
    axes.minorticks_off()
    axes.set_xlabel("secrets in the vault (200-byte values)")
    axes.grid(alpha=0.3)
    axes.set_ylim(bottom=0)


def _hline(axes: Axes, y: float, label: str, color: str = GOAL_COLOR) -> None:
    axes.axhline(y, color=color, linestyle="--", linewidth=1.6, label=label)


def scale_figure(
    rows: Sequence[ScaleRow],
    goals: ScaleGoals,
    key_rate: float,
    keys: int,
    machine: Machine,
    setting: str,
) -> Figure:
    figure = _new_figure(
        3,
        2,
        "strongroom at scale: one vault filled with secrets, measured at each size",
        setting,
        machine,
    )
    grid = figure.subplots(2, 3)
    sizes = [row.size for row in rows]
    first, last = rows[0], rows[-1]

    sets = grid[0][0]
    sets.plot(sizes, [r.set_rate for r in rows], marker="o", color=API_COLOR, label="sets/s")
    _hline(sets, goals.set_floor, f"goal: at least {goals.set_floor:g}/s")
    _hline(
        sets,
        goals.set_share * first.set_rate,
        f"goal: at least {goals.set_share:g}× the rate at {first.size:,}",
        color="#9467bd",
    )
    _size_axis(sets, sizes)
    sets.set_ylim(top=max(r.set_rate for r in rows) * 1.3)
    sets.set_ylabel("secret sets per second (next 1,000 sets)")
    sets.set_title("Write rate")
    sets.legend(fontsize=7.5, loc="best")

    gets = grid[0][1]
    gets.plot(sizes, [r.get_p50_ms for r in rows], marker="o", color=API_COLOR, label="p50")
    gets.plot(sizes, [r.get_p99_ms for r in rows], marker="s", color=SECOND_COLOR, label="p99")
    _hline(
        gets,
        goals.p99_share * first.get_p99_ms,
        f"goal: p99 at most {goals.p99_share:g}× the p99 at {first.size:,}",
    )
    _size_axis(gets, sizes)
    gets.set_ylim(top=max(goals.p99_share * first.get_p99_ms, *(r.get_p99_ms for r in rows)) * 1.3)
    gets.set_ylabel("GET latency, ms (random names)")
    gets.set_title("Read latency")
    gets.legend(fontsize=7.5, loc="best")

    restart = grid[0][2]
    restart.plot(sizes, [r.restart_s for r in rows], marker="o", color=API_COLOR, label="restart")
    _hline(restart, goals.restart_s, f"goal: at most {goals.restart_s:g} s")
    _size_axis(restart, sizes)
    restart.set_ylim(top=max(goals.restart_s, *(r.restart_s for r in rows)) * 1.2)
    restart.set_ylabel("seconds from start to the first answer")
    restart.set_title("Restart to ready")
    restart.legend(fontsize=7.5, loc="best")

    memory = grid[1][0]
    memory.plot(sizes, [r.server_mib for r in rows], marker="o", color=API_COLOR, label="server")
    memory.plot(
        sizes, [r.sidecar_mib for r in rows], marker="s", color=SECOND_COLOR, label="HSM sidecar"
    )
    _hline(memory, goals.server_mib, f"goal: server at most {goals.server_mib:g} MiB")
    _size_axis(memory, sizes)
    memory.set_ylim(top=max(goals.server_mib, *(r.server_mib for r in rows)) * 1.2)
    memory.set_ylabel("resident memory (RSS), MiB")
    memory.set_title("Memory")
    memory.legend(fontsize=7.5, loc="best")

    disk = grid[1][1]
    disk.plot(sizes, [r.disk_mib for r in rows], marker="o", color=API_COLOR)
    _size_axis(disk, sizes)
    disk.set_ylim(top=max(r.disk_mib for r in rows) * 1.2)
    disk.set_ylabel("state directory on disk, MiB")
    disk.set_title("Disk")

    summary = grid[1][2]
    summary.axis("off")
    set_share = last.set_rate / first.set_rate if first.set_rate else 0.0
    p99_share = last.get_p99_ms / first.get_p99_ms if first.get_p99_ms else 0.0
    checks = [
        (
            f"sets at {last.size:,}: {set_share:.2f}× those at {first.size:,}, "
            f"{last.set_rate:,.0f}/s",
            set_share >= goals.set_share and last.set_rate >= goals.set_floor,
            f"≥ {goals.set_share:g}× and ≥ {goals.set_floor:g}/s",
        ),
        (
            f"GET p99 at {last.size:,}: {p99_share:.2f}× that at {first.size:,}",
            p99_share <= goals.p99_share,
            f"≤ {goals.p99_share:g}×",
        ),
        (
            f"restart at {last.size:,}: {last.restart_s:.1f} s",
            last.restart_s <= goals.restart_s,
            f"≤ {goals.restart_s:g} s",
        ),
        (
            f"server RSS at {last.size:,}: {last.server_mib:.0f} MiB",
            last.server_mib <= goals.server_mib,
            f"≤ {goals.server_mib:g} MiB",
        ),
    ]
    text = ["Goals at the largest size"]
    for what, met, goal in checks:
        text.append(f"{'met   ' if met else 'MISSED'}  {what}\n        (goal {goal})")
    if keys:
        text.append(f"\nEC key creates: {key_rate:,.0f}/s\n  ({keys:,} keys, after the secrets)")
    summary.text(0, 1, "\n".join(text), va="top", ha="left", fontsize=9, family="monospace")
    return _finish(figure)


# --- csi.py ---------------------------------------------------------------------------------


def percentile_95(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def csi_figure(
    native: Sequence[float],
    csi: Sequence[float],
    start_goal: float,
    calls_per_interval: float,
    pods: int,
    objects: int,
    call_goal: float,
    interval_s: float,
    machine: Machine,
    setting: str,
) -> Figure:
    figure = _new_figure(
        2,
        1,
        "strongroom CSI driver: pod starts and vault calls",
        setting,
        machine,
    )
    starts, calls = figure.subplots(1, 2)
    groups = [
        ("native Secret volume", native, BASE_COLOR),
        ("strongroom CSI volume", csi, API_COLOR),
    ]
    for x, (_, values, color) in enumerate(groups):
        count = len(values)
        offsets = [((i % 7) - 3) * 0.04 for i in range(count)]
        starts.scatter(
            [x + o for o in offsets], list(values), s=18, color=color, alpha=0.7, zorder=3
        )
        for value, style, name in (
            (median(values), "-", "p50"),
            (percentile_95(values), ":", "p95"),
        ):
            starts.hlines(value, x - 0.3, x + 0.3, colors="black", linestyles=style)
            starts.annotate(
                f"{name} {value:.2f} s",
                (x + 0.3, value),
                xytext=(3, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
            )
    native_p95, csi_p95 = percentile_95(native), percentile_95(csi)
    goal = start_goal * native_p95
    _goal_segment(starts, 1, 0.35, goal, f"goal: CSI p95 at most {start_goal:g}× native p95")
    starts.set_xticks([0, 1], [name for name, _, _ in groups])
    starts.set_xlim(-0.6, 1.9)
    starts.set_ylim(0, max(goal, *native, *csi) * 1.2)
    starts.set_ylabel("seconds from apply to Running")
    starts.set_title(
        f"Pod start to Running ({len(native)} + {len(csi)} pods, interleaved); "
        f"p95 ratio {csi_p95 / native_p95 if native_p95 else 0.0:.2f}×",
        fontsize=10,
    )
    starts.legend(fontsize=8, loc="upper left")
    starts.grid(axis="y", alpha=0.3)

    calls.bar([0], [calls_per_interval], width=0.5, color=API_COLOR, label="measured")
    calls.annotate(
        f"{calls_per_interval:.1f}",
        (0, calls_per_interval),
        xytext=(0, 3),
        textcoords="offset points",
        ha="center",
        fontsize=9,
    )
    _hline(calls, call_goal, f"goal: at most {call_goal:g} (0.1 × pods × objects)")
    _hline(calls, pods * objects, f"pods × objects = {pods * objects} (one read each)", BASE_COLOR)
    calls.set_xticks([0], [f"{pods} pods × {objects} objects"])
    calls.set_xlim(-1, 1)
    calls.set_ylim(0, max(pods * objects, calls_per_interval) * 1.2)
    calls.set_ylabel(f"vault reads per rotation interval ({interval_s:g} s)")
    calls.set_title("Vault calls per rotation interval", fontsize=10)
    calls.legend(fontsize=8, loc="center right")
    calls.grid(axis="y", alpha=0.3)
    return _finish(figure)
