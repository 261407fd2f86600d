"""A vault of 100,000 objects: what each write, read and restart costs as the vault grows.

Fills one `strongroom dev` vault with secrets to each size in turn (1,000, 10,000 and
100,000 by default) and at each size prints, from one run: the set rate of the next
1,000 sets, GET p50/p99 over random names, the time from a restart to the first answer,
the RSS of the vault server and of the HSM sidecar, and the bytes on disk. Then it makes
10,000 keys and prints their create rate. Load: 16 keep-alive clients in this process.

    python bench/scale.py [--sizes 1000,10000,100000] [--keys 10000] [--clients 16] [--out DIR]

The text is also written to DIR/scale.txt and drawn in DIR/scale.png (DIR is
bench/figures by default).

Goals (issue: the data plane's second design): set rate at the largest size >= 0.8x the
rate at the smallest and >= 300/s; GET p99 at the largest <= 1.5x at the smallest;
restart-to-ready <= 10 s and server RSS <= 250 MiB at 100,000.
"""

import argparse
import asyncio
import json
import os
import random
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from plotting import Report, ScaleGoals, ScaleRow, add_out_option, scale_figure

QUERY = "?api-version=7.6"
VALUE = "v" * 200  # the 200-byte secrets of the measurement in the issue
MEASURED_SETS = 1000
MEASURED_GETS = 2000
GOALS = ScaleGoals(set_share=0.8, set_floor=300, p99_share=1.5, restart_s=10, server_mib=250)


def start_dev(state: Path, port: int, keep: bool) -> tuple[subprocess.Popen[bytes], float]:
    (state / "dev.json").unlink(missing_ok=True)
    started = time.monotonic()
    process = subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "-m", "strongroom.cli", "--log-level", "WARNING", "dev"]
        + ["--state-dir", str(state), "--port", str(port)]
        + (["--keep-state"] if keep else []),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    while not (state / "dev.json").exists():
        if process.poll() is not None or time.monotonic() - started > 600:
            raise SystemExit("strongroom dev did not start")
        time.sleep(0.05)
    return process, started


def stop_dev(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(60)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def sidecar_pid(state: Path) -> int:
    return int((state / "hsm.pid").read_text())


def disk_bytes(state: Path) -> int:
    return sum(p.stat().st_size for p in state.rglob("*") if p.is_file())


class Client:
    def __init__(self, state: Path, clients: int) -> None:
        info = json.loads((state / "dev.json").read_text())
        self.url = info["vaultUrl"]
        self.token = Path(info["tokenFile"]).read_text().strip()
        self.context = ssl.create_default_context(cafile=info["caFile"])
        self.clients = clients

    async def run(self, requests: list[tuple[str, str, Any]]) -> list[float]:
        """Send every request with `clients` in flight; the latency of each, in seconds."""
        latencies: list[float] = []
        queue = list(reversed(requests))
        connector = aiohttp.TCPConnector(limit=self.clients, ssl=self.context)
        headers = {"Authorization": f"Bearer {self.token}"}
        async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

            async def worker() -> None:
                while queue:
                    method, path, body = queue.pop()
                    began = time.perf_counter()
                    async with session.request(method, self.url + path + QUERY, json=body) as r:
                        await r.read()
                        if r.status != 200:
                            raise SystemExit(f"{method} {path}: {r.status} {await r.text()}")
                    latencies.append(time.perf_counter() - began)

            await asyncio.gather(*(worker() for _ in range(self.clients)))
        return latencies

    async def ready(self) -> None:
        connector = aiohttp.TCPConnector(ssl=self.context)
        headers = {"Authorization": f"Bearer {self.token}"}
        async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
            async with session.get(f"{self.url}/secrets/s0{QUERY}") as response:
                if response.status != 200:
                    raise SystemExit(f"not ready: {response.status}")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--keys", type=int, default=10000)
    parser.add_argument("--clients", type=int, default=16)
    add_out_option(parser)
    args = parser.parse_args()
    report = Report("scale", args.out)
    sizes = [int(s) for s in args.sizes.split(",")]

    state = Path(tempfile.mkdtemp(prefix="strongroom-scale-")) / "state"
    port = 20000 + random.randrange(20000)  # noqa: S311 - a port, not a secret
    dev, _ = start_dev(state, port, keep=False)
    client = Client(state, args.clients)
    filled = 0
    rows: list[dict[str, float]] = []
    try:
        for size in sizes:
            fill = [("PUT", f"/secrets/s{i}", {"value": VALUE}) for i in range(filled, size)]
            asyncio.run(client.run(fill))
            filled = size
            began = time.perf_counter()
            measured = [
                ("PUT", f"/secrets/m{size}-{i}", {"value": VALUE}) for i in range(MEASURED_SETS)
            ]
            asyncio.run(client.run(measured))
            set_rate = MEASURED_SETS / (time.perf_counter() - began)
            gets = [
                ("GET", f"/secrets/s{random.randrange(size)}", None)  # noqa: S311
                for _ in range(MEASURED_GETS)
            ]
            latencies = asyncio.run(client.run(gets))
            server_rss, sidecar_rss = rss_mib(dev.pid), rss_mib(sidecar_pid(state))
            stop_dev(dev)
            dev, started = start_dev(state, port, keep=True)
            client = Client(state, args.clients)
            asyncio.run(client.ready())
            ready = time.monotonic() - started
            rows.append(
                {
                    "size": size,
                    "set/s": set_rate,
                    "GET p50 ms": percentile(latencies, 0.5) * 1000,
                    "GET p99 ms": percentile(latencies, 0.99) * 1000,
                    "restart s": ready,
                    "server MiB": server_rss,
                    "sidecar MiB": sidecar_rss,
                    "disk MiB": disk_bytes(state) / 2**20,
                }
            )
            report.line(json.dumps(rows[-1]))
        key_rate = 0.0
        if args.keys:
            began = time.perf_counter()
            creates = [("POST", f"/keys/k{i}/create", {"kty": "EC"}) for i in range(args.keys)]
            asyncio.run(client.run(creates))
            key_rate = args.keys / (time.perf_counter() - began)
    finally:
        stop_dev(dev)

    report.line()
    header = list(rows[0])
    report.line(" | ".join(f"{h:>11}" for h in header))
    for row in rows:
        report.line(" | ".join(f"{row[h]:>11.1f}" for h in header))
    first, last = rows[0], rows[-1]
    report.line()
    report.line(f"EC key creates: {key_rate:.0f}/s for {args.keys} keys")
    report.line(
        f"set rate at {last['size']:.0f} vs {first['size']:.0f}: "
        f"{last['set/s'] / first['set/s']:.2f}x (goal >= {GOALS.set_share}x, and >= "
        f"{GOALS.set_floor:.0f}/s: {last['set/s']:.0f}/s)"
    )
    report.line(
        f"GET p99 at {last['size']:.0f} vs {first['size']:.0f}: "
        f"{last['GET p99 ms'] / first['GET p99 ms']:.2f}x (goal <= {GOALS.p99_share}x)"
    )
    report.line(
        f"restart-to-ready at {last['size']:.0f}: {last['restart s']:.1f} s "
        f"(goal <= {GOALS.restart_s:.0f} s)"
    )
    report.line(
        f"vault-server RSS at {last['size']:.0f}: {last['server MiB']:.0f} MiB "
        f"(goal <= {GOALS.server_mib:.0f})"
    )
    points = [
        ScaleRow(
            size=int(row["size"]),
            set_rate=row["set/s"],
            get_p50_ms=row["GET p50 ms"],
            get_p99_ms=row["GET p99 ms"],
            restart_s=row["restart s"],
            server_mib=row["server MiB"],
            sidecar_mib=row["sidecar MiB"],
            disk_mib=row["disk MiB"],
        )
        for row in rows
    ]
    setting = (
        f"{args.clients} keep-alive clients in the measuring process, on the same machine; "
        f"at each size: the next {MEASURED_SETS:,} sets, {MEASURED_GETS:,} GETs of random "
        "names, then a restart timed to the first answer; RSS read before the restart."
    )
    report.save(scale_figure(points, GOALS, key_rate, args.keys, report.end(), setting))


if __name__ == "__main__":
    main()
