"""Data-plane cost, measured side by side in one run on one machine.

1. signs through the HTTPS API (16 keep-alive clients) vs a raw python-pkcs11 loop, on
   the same token with the same kind of key, for RSA-2048 and EC P-256: throughput, and
   CPU time per signature of the vault server plus its HSM sidecar (from
   /proc/<pid>/stat, utime + stime, over the loaded window) against the raw loop's own
   CPU time per signature. The CPU ratio does not depend on how much of the machine the
   load generator takes, so it is the figure to trust on a small or shared machine;
2. secret GETs/s through the API vs a bare aiohttp endpoint serving a body of the same
   size over the same TLS set-up.

The load comes from a separate process that costs little per request: an asyncio protocol
on uvloop per connection, one preformatted HTTP/1.1 keep-alive request sent again as soon
as its answer (read by its Content-Length) is whole.

For each signature, the API's load and the raw loop take turns (--rounds, three by default,
each a share of --seconds) and each side's figures are pooled over its turns: the host's
speed drifts on a shared machine, and taking turns makes the drift weigh on both sides
alike. The raw loop runs between the loads, in a process and a session of its own on the
vault's token, while the vault server and its sidecar are idle. Beside the CPU figures, the
machine's idle share over the loaded window says how much of the cores the three processes
(load, server, sidecar) left unused.

    python bench/dataplane.py [--seconds 10] [--rounds 3] [--clients 16] [--only sign]
                              [--py-spy PATH --profile-dir DIR] [--out DIR]

The text is also written to DIR/dataplane.txt and drawn in DIR/dataplane.png (DIR is
bench/figures by default).

With --py-spy, both server processes are recorded (raw format, collapsed stacks, with
idle frames left out) during each sign run, one file per run and process in DIR.
"""

import argparse
import asyncio
import base64
import hashlib
import json
import multiprocessing
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import uvloop
from aiohttp import web
from plotting import DataplaneRow, Report, add_out_option, dataplane_figure

from strongroom import aio

# API throughput against the baseline's: at least this share.
GOALS = {"RSA-2048 sign": 0.9, "EC P-256 sign": 0.4, "secret GET": 0.7}
# CPU per signature of vault server + sidecar against the raw loop's: at most this many times.
CPU_GOALS = {"RSA-2048 sign": 1.25, "EC P-256 sign": 3.0}
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        fields = stat.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def machine_ticks() -> tuple[int, int]:
    """Idle (idle + iowait) and all CPU ticks of the machine so far, every core."""
    with open("/proc/stat", "rb") as stat:
        fields = [int(field) for field in stat.readline().split()[1:]]
    return fields[3] + fields[4], sum(fields[:8])


# --- load generator (runs in its own process) --------------------------------------


def http_request(url: str, method: str, body: Any, token: str | None) -> bytes:
    """One preformatted HTTP/1.1 keep-alive request."""
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    payload = json.dumps(body).encode() if body is not None else b""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {parts.netloc}"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


def message_size(buffer: bytes) -> int | None:
    """The length of the HTTP/1.1 message (head and Content-Length body) at the start of
    `buffer`, or None while it is not all there."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    length = 0
    for line in buffer[:end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    size = end + 4 + length
    return size if len(buffer) >= size else None


class _Client(asyncio.Protocol):
    """One keep-alive connection of the load: the preformatted request sent again as soon
    as its answer (read by its Content-Length) is whole, until the deadline."""

    def __init__(self, request: bytes) -> None:
        self._request = request
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self._deadline = 0.0
        self.answered = self.failed = 0
        self.finished: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def run(self, deadline: float) -> "asyncio.Future[None]":
        """Send until `deadline` (one exchange when it has passed); done when the last
        answer is in."""
        assert self._transport is not None
        self.finished = asyncio.get_running_loop().create_future()
        self._deadline = deadline
        self._transport.write(self._request)
        return self.finished

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data
        while (size := message_size(buffer)) is not None:
            if buffer[9:12] == b"200":
                self.answered += 1
            else:
                self.failed += 1
            buffer = buffer[size:]
            if time.monotonic() < self._deadline:
                assert self._transport is not None
                self._transport.write(self._request)
            elif self.finished is not None and not self.finished.done():
                self.finished.set_result(None)
        self._buffer = buffer

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self.finished is not None and not self.finished.done():
            self.finished.set_exception(ConnectionError("the server closed a load connection"))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def _load(
    url: str,
    request: bytes,
    ca: str,
    seconds: float,
    clients: int,
    ready: Any,
    go: Any,
) -> tuple[int, int, float]:
    context = ssl.create_default_context(cafile=ca)
    parts = urlsplit(url)
    loop = asyncio.get_running_loop()
    connections: list[_Client] = []
    for _ in range(clients):
        _, client = await loop.create_connection(
            lambda: _Client(request), parts.hostname, parts.port, ssl=context
        )
        connections.append(client)
    # One exchange each: warm, and the URL is right.
    await asyncio.gather(*(client.run(0.0) for client in connections))
    if any(client.failed for client in connections):
        raise SystemExit(f"the load's request to {url} does not answer 200")
    for client in connections:
        client.answered = 0
    ready.set()
    await loop.run_in_executor(None, go.wait)
    cpu = time.process_time()
    deadline = time.monotonic() + seconds
    await asyncio.gather(*(client.run(deadline) for client in connections))
    cpu = time.process_time() - cpu
    for client in connections:
        client.close()
    done = sum(client.answered for client in connections)
    errors = sum(client.failed for client in connections)
    return done, errors, cpu


def _load_process(
    args: tuple[Any, ...], queue: "multiprocessing.Queue[tuple[int, int, float]]"
) -> None:
    queue.put(aio.run(_load(*args)))


@dataclass
class Run:
    rate: float  # answered requests per second
    server_cpu: float  # CPU seconds per request, vault server
    sidecar_cpu: float  # CPU seconds per request, HSM sidecar
    load_cpu: float  # CPU seconds per request, load generator
    idle: float = 0.0  # the machine's idle share over the loaded window (every core)


def load(
    url: str,
    method: str,
    body: Any,
    token: str | None,
    ca: str,
    seconds: float,
    clients: int,
    pids: tuple[int, ...] = (),
    profile: tuple[str, Path] | None = None,
) -> Run:
    """Run the load against `url`; CPU per request of each of `pids` over the loaded window
    (the vault server, then the sidecar)."""
    context = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[tuple[int, int, float]] = context.Queue()
    ready, go = context.Event(), context.Event()
    request = http_request(url, method, body, token)
    process = context.Process(
        target=_load_process, args=((url, request, ca, seconds, clients, ready, go), queue)
    )
    process.start()
    if not ready.wait(120):
        process.kill()
        raise SystemExit(f"the load generator did not connect to {url}")
    spies = []
    if profile is not None:
        spy, stem = profile
        for role, pid in zip(("server", "sidecar"), pids, strict=False):
            spies.append(
                subprocess.Popen(
                    [
                        spy,
                        "record",
                        "--pid",
                        str(pid),
                        "--format",
                        "raw",
                        "--rate",
                        "250",
                        "--duration",
                        str(int(seconds)),
                        "--nonblocking",
                        "--output",
                        f"{stem}-{role}.txt",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
    before = [cpu_seconds(pid) for pid in pids]
    idle_before, all_before = machine_ticks()
    go.set()
    done, errors, load_cpu = queue.get(timeout=seconds + 120)
    idle_after, all_after = machine_ticks()
    after = [cpu_seconds(pid) for pid in pids]
    process.join()
    for spy_process in spies:
        spy_process.wait(60)
    if errors:
        print(f"  ! {errors} requests failed against {url}", file=sys.stderr)
    per = [(b - a) / done if done else 0.0 for a, b in zip(before, after, strict=True)]
    per += [0.0] * (2 - len(per))
    idle = (idle_after - idle_before) / max(all_after - all_before, 1)
    return Run(done / seconds, per[0], per[1], load_cpu / done if done else 0.0, idle)


# --- the bare endpoint -------------------------------------------------------------------


def _bare_server(port: int, cert: str, key: str, body: bytes) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    # The same event loop the vault server runs on.
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(app, host="127.0.0.1", port=port, ssl_context=context, access_log=None, print=None)


class _LeanAnswer(asyncio.Protocol):
    """HTTP/1.1 keep-alive answered with a fixed body, no framework: the floor of a Python
    HTTPS server on uvloop (requests parsed only as far as their Content-Length)."""

    def __init__(self, body: bytes) -> None:
        self._answer = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        ) + body
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data
        while (size := message_size(buffer)) is not None:
            buffer = buffer[size:]
            assert self._transport is not None
            self._transport.write(self._answer)
        self._buffer = buffer


def _lean_server(port: int, cert: str, key: str, body: bytes) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        await loop.create_server(lambda: _LeanAnswer(body), "127.0.0.1", port, ssl=context)
        await asyncio.Event().wait()

    aio.run(serve())


def _own_layer_server(port: int, cert: str, key: str, body: bytes) -> None:
    """The vault server's own HTTP/1.1 layer (vault/http1.py) answering `body` with no
    gate, no handler work, no audit and no metrics."""
    from strongroom.vault import http1

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def nobody(request: web.Request) -> None:
        return None

    async def fixed(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type="application/json")

    async def serve() -> None:
        connections = http1.Connections(
            nobody, fixed, None, web.Server(fixed), 10.0, frozenset(), 256 * 1024
        )
        await asyncio.get_running_loop().create_server(connections, "127.0.0.1", port, ssl=context)
        await asyncio.Event().wait()

    aio.run(serve())


def load_endpoint(
    server: Any,
    tls: tuple[str, str],
    body: bytes,
    path: str,
    ca: str,
    seconds: float,
    clients: int,
) -> Run:
    """GETs against `server(port, cert, key, body)` run in a process of its own."""
    port = free_port()
    process = multiprocessing.get_context("spawn").Process(target=server, args=(port, *tls, body))
    process.start()
    time.sleep(1.5)
    assert process.pid is not None
    try:
        url = f"https://localhost:{port}{path}"
        return load(url, "GET", None, None, ca, seconds, clients, (process.pid,))
    finally:
        process.terminate()
        process.join()


# --- the raw PKCS#11 loop ------------------------------------------------------------------


def raw_signs(state: Path, mechanism_name: str, data: bytes, seconds: float) -> tuple[float, float]:
    """Signatures per second of a bare python-pkcs11 loop, and its CPU seconds per signature."""
    os.environ["SOFTHSM2_CONF"] = str(state / "hsm" / "softhsm2.conf")
    import pkcs11
    from pkcs11 import Attribute, KeyType, Mechanism
    from pkcs11.util.ec import encode_named_curve_parameters

    from strongroom.hsm.pins import read_pool_secret, user_pin

    lib = pkcs11.lib("/usr/lib/softhsm/libsofthsm2.so")
    token = lib.get_token(token_label="dev")  # noqa: S106 - a label, not a password
    pin = user_pin(read_pool_secret(state / "pool-secret"), "dev")
    with token.open(user_pin=pin) as session:
        # The vault's working keys are session objects of its server's sidecar; this loop
        # makes its own of the same kind in the same token, as the sidecar does.
        if mechanism_name == "ECDSA":
            params = encode_named_curve_parameters("secp256r1")
            _, key = session.generate_keypair(
                KeyType.EC, store=False, public_template={Attribute.EC_PARAMS: params}
            )
        else:
            _, key = session.generate_keypair(KeyType.RSA, 2048, store=False)
        mechanism = getattr(Mechanism, mechanism_name)
        count = 0
        cpu = time.process_time()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            key.sign(data, mechanism=mechanism)
            count += 1
        cpu = time.process_time() - cpu
    return count / seconds, cpu / count


def _raw_process(
    args: tuple[Any, ...], queue: "multiprocessing.Queue[tuple[float, float]]"
) -> None:
    queue.put(raw_signs(*args))


def raw(*args: Any) -> tuple[float, float]:
    # A fresh process, so that libsofthsm2 is loaded once, by this measurement alone.
    context = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[tuple[float, float]] = context.Queue()
    process = context.Process(target=_raw_process, args=(args, queue))
    process.start()
    result = queue.get(timeout=300)
    process.join()
    return result


def pooled(runs: list[Run]) -> Run:
    """Runs of equal length as one: the mean rate, CPU per request over all requests."""
    total = sum(run.rate for run in runs) or 1.0

    def per_request(cpu: Any) -> float:
        return float(sum(cpu(run) * run.rate for run in runs) / total)

    return Run(
        total / len(runs),
        per_request(lambda run: run.server_cpu),
        per_request(lambda run: run.sidecar_cpu),
        per_request(lambda run: run.load_cpu),
        sum(run.idle for run in runs) / len(runs),
    )


def pooled_raw(raws: list[tuple[float, float]]) -> tuple[float, float]:
    """Raw loops of equal length as one: the mean rate, CPU per signature over all."""
    total = sum(rate for rate, _ in raws) or 1.0
    return total / len(raws), sum(rate * cpu for rate, cpu in raws) / total


# --- the run -----------------------------------------------------------------------------


def start_dev(state: Path, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "strongroom.cli",
            "--log-level",
            "WARNING",
            "dev",
            "--state-dir",
            str(state),
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not (state / "dev.json").exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("strongroom dev did not start")
        time.sleep(0.1)
    return process


SIGNS = (
    ("RSA-2048 sign", "bench-rsa", "RS256", "RSA_PKCS"),
    ("EC P-256 sign", "bench-ec", "ES256", "ECDSA"),
)
LAYERS = (
    "GET /healthz: HTTPS, aiohttp, one HSM round trip (ping)",
    "GET key: own HTTP layer, token, route, key, answer, audit",
    "POST sign: + JSON body, HSM signature",
    "floor: a bare TLS protocol on uvloop, the key's GET body",
    "own HTTP layer alone: a fixed answer, no gate, no audit",
)
RSA_SHA256_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--secret-bytes", type=int, default=1024)
    parser.add_argument("--only", choices=("sign", "get"), default=None)
    parser.add_argument(
        "--rounds", type=int, default=3, help="turns of API load and raw loop per signature"
    )
    parser.add_argument("--py-spy", default=None, help="record both servers with this py-spy")
    parser.add_argument("--profile-dir", type=Path, default=Path("."))
    add_out_option(parser)
    args = parser.parse_args()
    report = Report("dataplane", args.out)

    state = Path(tempfile.mkdtemp(prefix="strongroom-bench-")) / "state"
    port = free_port()
    dev = start_dev(state, port)
    info = json.loads((state / "dev.json").read_text())
    url, ca, token = info["vaultUrl"], info["caFile"], Path(info["tokenFile"]).read_text()
    pids = (dev.pid, int((state / "hsm.pid").read_text()))
    context = ssl.create_default_context(cafile=ca)
    query = "?api-version=7.6"
    versions: dict[str, str] = {}
    secret_path = ""

    async def prepare() -> None:
        nonlocal secret_path
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            for name, body in (
                ("bench-rsa", {"kty": "RSA-HSM", "key_size": 2048}),
                ("bench-ec", {"kty": "EC-HSM", "crv": "P-256"}),
            ):
                async with session.post(
                    f"{url}/keys/{name}/create{query}", json=body, ssl=context
                ) as response:
                    versions[name] = (await response.json())["key"]["kid"].rsplit("/", 1)[1]
            value = "s" * args.secret_bytes
            async with session.put(
                f"{url}/secrets/bench-secret{query}", json={"value": value}, ssl=context
            ) as response:
                assert response.status == 200
            secret_path = f"/secrets/bench-secret{query}"

    asyncio.run(prepare())
    digest = hashlib.sha256(b"bench").digest()
    api: dict[str, Run] = {}
    baseline: dict[str, tuple[float, float]] = {}
    if args.only != "get":
        # The API's load and the raw loop take turns, so that a change in the host's speed
        # during the run weighs on both alike.
        share = args.seconds / args.rounds
        for label, name, alg, mechanism in SIGNS:
            profile = None
            if args.py_spy:
                args.profile_dir.mkdir(parents=True, exist_ok=True)
                stem = args.profile_dir / label.split()[0].lower()
                profile = (args.py_spy, stem)
            data = RSA_SHA256_INFO + digest if mechanism == "RSA_PKCS" else digest
            runs: list[Run] = []
            raws: list[tuple[float, float]] = []
            for turn in range(args.rounds):
                runs.append(
                    load(
                        f"{url}/keys/{name}/{versions[name]}/sign{query}",
                        "POST",
                        {"alg": alg, "value": b64(digest)},
                        token,
                        ca,
                        share,
                        args.clients,
                        pids,
                        profile if turn == 0 else None,
                    )
                )
                raws.append(raw(state, mechanism, data, share))
            api[label] = pooled(runs)
            baseline[label] = pooled_raw(raws)
    layers: dict[str, Run] = {}
    if args.only != "get":
        # The sign path's layers, for where an EC signature's CPU goes: the same server
        # answering less of the work.
        ec = f"{url}/keys/bench-ec/{versions['bench-ec']}"
        seconds = min(args.seconds, 5.0)
        for label, target, method, body in (
            (LAYERS[0], url + "/healthz", "GET", None),
            (LAYERS[1], ec + query, "GET", None),
            (LAYERS[2], f"{ec}/sign{query}", "POST", {"alg": "ES256", "value": b64(digest)}),
        ):
            layers[label] = load(target, method, body, token, ca, seconds, args.clients, pids)
    if args.only != "sign":
        api["secret GET"] = load(
            url + secret_path, "GET", None, token, ca, args.seconds, args.clients, pids
        )

    body = asyncio.run(_fetch(url + secret_path, token, context))
    key_body = asyncio.run(_fetch(f"{ec}{query}", token, context)) if layers else b""
    os.killpg(dev.pid, signal.SIGTERM)
    dev.wait(30)
    tls = (str(state / "tls.crt"), str(state / "tls.key"))
    if layers:
        # The floor under every layer: a bare TLS protocol answering the key's GET body.
        layers[LAYERS[3]] = load_endpoint(
            _lean_server, tls, key_body, "/keys/bench-ec", ca, seconds, args.clients
        )
        layers[LAYERS[4]] = load_endpoint(
            _own_layer_server, tls, key_body, "/keys/bench-ec", ca, seconds, args.clients
        )
    if args.only != "sign":
        bare_run = load_endpoint(
            _bare_server, tls, body, "/secrets/bench-secret", ca, args.seconds, args.clients
        )
        baseline["secret GET"] = (bare_run.rate, bare_run.server_cpu)

    report.line()
    report.line(
        f"strongroom data plane, {args.clients} keep-alive clients, {args.seconds:.0f} s "
        f"each, {os.cpu_count()} cores, secret body {len(body)} bytes"
    )
    report.line()
    report.line("throughput")
    report.line(
        f"{'measure':<16}{'API /s':>10}{'baseline /s':>14}{'ratio':>8}{'goal':>8}  baseline"
    )
    baselines = {
        "RSA-2048 sign": "raw python-pkcs11 loop, same token",
        "EC P-256 sign": "raw python-pkcs11 loop, same token",
        "secret GET": "bare aiohttp endpoint, same body",
    }
    for label, run in api.items():
        rate = baseline[label][0]
        ratio = run.rate / rate if rate else 0.0
        verdict = "met" if ratio >= GOALS[label] else "missed"
        report.line(
            f"{label:<16}{run.rate:>10.0f}{rate:>14.0f}{ratio:>8.2f}{'>=':>4}{GOALS[label]:>4.2f}"
            f"  {baselines[label]} ({verdict})"
        )
    report.line()
    report.line(
        "CPU per request, microseconds (server + sidecar vs baseline; load generator apart;"
    )
    report.line("idle: the machine's idle share while loaded)")
    report.line(
        f"{'measure':<16}{'server':>8}{'sidecar':>9}{'total':>8}{'baseline':>10}{'ratio':>8}"
        f"{'goal':>8}{'load':>7}{'idle':>6}"
    )
    for label, run in api.items():
        cpu = baseline[label][1]
        total = run.server_cpu + run.sidecar_cpu
        ratio = total / cpu if cpu else 0.0
        goal = CPU_GOALS.get(label)
        verdict = "" if goal is None else ("  (met)" if ratio <= goal else "  (missed)")
        goal_text = f"{'<=':>4}{goal:>4.2f}" if goal is not None else f"{'':>8}"
        report.line(
            f"{label:<16}{run.server_cpu * 1e6:>8.0f}{run.sidecar_cpu * 1e6:>9.0f}"
            f"{total * 1e6:>8.0f}{cpu * 1e6:>10.0f}{ratio:>8.2f}{goal_text}"
            f"{run.load_cpu * 1e6:>7.0f}{run.idle:>6.0%}{verdict}"
        )
    if layers:
        report.line()
        report.line("the sign path by layer: CPU per request, microseconds (EC P-256 key)")
        report.line(f"{'request':<58}{'server':>8}{'sidecar':>9}")
        for label, run in layers.items():
            report.line(f"{label:<58}{run.server_cpu * 1e6:>8.0f}{run.sidecar_cpu * 1e6:>9.0f}")
    rows = [
        DataplaneRow(
            label=label,
            api_rate=run.rate,
            base_rate=baseline[label][0],
            rate_goal=GOALS[label],
            server_us=run.server_cpu * 1e6,
            sidecar_us=run.sidecar_cpu * 1e6,
            base_us=baseline[label][1] * 1e6,
            load_us=run.load_cpu * 1e6,
            cpu_goal=CPU_GOALS.get(label),
        )
        for label, run in api.items()
    ]
    setting = (
        f"{args.clients} keep-alive clients, {args.seconds:g} s per measure, load generator "
        f"on the same machine; secret body {len(body)} bytes"
    )
    report.save(dataplane_figure(rows, report.end(), setting))


async def _fetch(url: str, token: str, context: ssl.SSLContext) -> bytes:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:
        async with session.get(url, ssl=context) as response:
            return await response.read()


if __name__ == "__main__":
    main()
