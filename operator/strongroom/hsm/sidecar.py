"""`strongroom hsm`: the only process that loads the PKCS#11 module for a token directory.

It serves the engine's operations, one at a time, over a unix socket shared
with the vault server. Serial execution is the point: libsofthsm2 is not
thread-safe, and one process must own the token directory.
"""

import asyncio
import dataclasses
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any, cast

from prometheus_client import CollectorRegistry, Counter, generate_latest

from .. import aio, metrics
from . import protocol
from .api import OPERATIONS, UNACTIVATED_OPERATIONS
from .domain import STATE_FILE
from .engine import Engine
from .errors import HsmError

log = logging.getLogger(__name__)

SOFTHSM2_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


def write_softhsm_config(state_dir: Path) -> Path:
    """Point SoftHSM2 at a token directory this process owns; return the config path."""
    tokens = state_dir / "tokens"
    tokens.mkdir(parents=True, exist_ok=True, mode=0o700)
    config = state_dir / "softhsm2.conf"
    config.write_text(
        f"directories.tokendir = {tokens}\n"
        "objectstore.backend = file\n"
        "log.level = ERROR\n"
        "slots.removable = false\n"
        "slots.mechanisms = ALL\n"
    )
    return config


class SidecarMetrics:
    """What the sidecar counts: operations, their errors, and the time spent in the HSM.
    Labels: the operation's name (one of api.OPERATIONS, else "invalid") and the error's
    class name; never an argument."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # Kept in plain numbers on the operation path, written out at scrape.
        self.operations = metrics.Tally(
            "strongroom_hsm_operations",
            "HSM operations the sidecar ran, by operation.",
            ("operation",),
            self.registry,
        )
        self.errors = Counter(
            "strongroom_hsm_operation_errors",
            "HSM operations that failed, by operation and error class.",
            ["operation", "error"],
            registry=self.registry,
        )
        self.seconds = metrics.Timings(
            "strongroom_hsm_operation_duration_seconds",
            "Time in the HSM: from the sidecar starting an operation to its result.",
            ("operation",),
            self.registry,
        )

    def observe(self, op: str, seconds: float, error: str | None) -> None:
        op = op if op in OPERATIONS else "invalid"
        self.operations.inc(op)
        self.seconds.observe(seconds, op)
        if error is not None:
            self.errors.labels(op, error).inc()

    def text(self) -> str:
        return generate_latest(self.registry).decode()


class Sidecar:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.metrics = SidecarMetrics()

    def call(self, op: str, args: dict[str, Any]) -> Any:
        if op == protocol.METRICS_OP:
            return self.metrics.text()
        started = time.perf_counter()
        error: str | None = "HsmError"
        try:
            result = self._call(op, args)
            error = None
            return result
        except HsmError as exc:
            error = type(exc).__name__
            raise
        except (ValueError, TypeError, KeyError):
            error = "InvalidInput"
            raise
        finally:
            self.metrics.observe(op, time.perf_counter() - started, error)

    def _call(self, op: str, args: dict[str, Any]) -> Any:
        if op not in OPERATIONS:
            raise HsmError(f"unknown HSM operation {op!r}")
        if op == "ping":
            return "pong"
        if op not in UNACTIVATED_OPERATIONS:
            self._engine.domain.refuse_unless_activated(op)
        result = getattr(self._engine, op)(**args)
        if isinstance(result, _PLAIN) or result is None:
            return result
        if dataclasses.is_dataclass(result) and not isinstance(result, type):
            return dataclasses.asdict(result)
        return result

    def connection(self) -> "SidecarConnection":
        """A protocol for one client connection of the socket."""
        return SidecarConnection(self)

    def answer_sign(self, line: bytes) -> bytes:
        """The answer to a plain `sign` line (protocol.py)."""
        try:
            request_id, args = protocol.decode_sign(line)
        except ValueError:
            log.warning("malformed HSM request: a sign line out of shape")
            return _error_answer(None, "InvalidInput", "malformed request")
        try:
            return protocol.sign_answer(request_id, self.call("sign", args))
        except HsmError as exc:
            return _error_answer(request_id, type(exc).__name__, str(exc))
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("malformed HSM request: %s", type(exc).__name__)
            return _error_answer(request_id, "InvalidInput", "malformed request")
        except Exception as exc:  # noqa: BLE001 - one failed request must not end the connection
            log.error("HSM request failed: %s", type(exc).__name__)
            message = f"the HSM request failed ({type(exc).__name__})"
            return _error_answer(request_id, "HsmError", message)

    def answer(self, line: bytes) -> bytes:
        if line.startswith(protocol.SIGN_REQUEST):
            return self.answer_sign(line)
        answer: dict[str, Any] = {"i": None}
        try:
            request = protocol.decode(line)
            answer["i"] = request.get("i")
            answer["r"] = self.call(str(request.get("op")), dict(request.get("a") or {}))
        except HsmError as exc:
            answer["e"] = [type(exc).__name__, str(exc)]
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("malformed HSM request: %s", type(exc).__name__)
            answer["e"] = ["InvalidInput", "malformed request"]
        except Exception as exc:  # noqa: BLE001 - one failed request must not end the connection
            log.error("HSM request failed: %s", type(exc).__name__)
            answer["e"] = ["HsmError", f"the HSM request failed ({type(exc).__name__})"]
        encoded = protocol.encode(answer)
        if len(encoded) > protocol.MAX_LINE:
            return _error_answer(answer["i"], "HsmError", "the answer is too large to send")
        return encoded


class SidecarConnection(asyncio.Protocol):
    """One client of the socket: its requests are answered in order, one at a time.

    The complete lines that have arrived are answered in turn, and the answers go out in
    one write once `FLUSH_SECONDS` of HSM work has gone into them, or when no complete line
    is left: quick operations share a write (one system call, one wake-up of the client),
    while a signature is sent as soon as it is made, so that the client's server works on
    it while the HSM makes the next (one write per batch would leave one core idle while
    the other signs the whole batch). A line longer than `protocol.MAX_LINE` is
    thrown away as it arrives and answered with an error; the connection stays in step.
    When the client does not read its answers, no more requests are read.
    """

    FLUSH_SECONDS = 0.00005  # below one EC P-256 signature (about 80 µs on SoftHSM2)

    def __init__(self, sidecar: Sidecar) -> None:
        self._sidecar = sidecar
        self._lines = protocol.Lines()
        self._transport: asyncio.Transport | None = None
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self._lines.feed(data)
        self._process()

    def pause_writing(self) -> None:
        self._paused = True
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._paused = False
        if self._transport is not None:
            self._transport.resume_reading()
        self._process()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._lines.clear()

    def _process(self) -> None:
        transport = self._transport
        answers: list[bytes] = []
        started = time.monotonic()
        while transport is not None and not self._paused:
            line = self._lines.next()
            if line is None:
                break
            if isinstance(line, protocol.Overlong):
                log.warning("refused an HSM request longer than %d bytes", protocol.MAX_LINE)
                message = f"a message is longer than {protocol.MAX_LINE} bytes"
                answers.append(_error_answer(line.request_id, "InvalidInput", message))
                continue
            answers.append(self._sidecar.answer(line))
            if time.monotonic() - started > self.FLUSH_SECONDS:
                transport.write(b"".join(answers))
                answers.clear()
                started = time.monotonic()
        if answers and transport is not None:
            transport.write(b"".join(answers))


_PLAIN = (str, bytes, bool, int, list, dict, tuple)


def _error_answer(request_id: object, error: str, message: str) -> bytes:
    return protocol.encode({"i": request_id, "e": [error, message]})


async def serve(engine: Engine, socket_path: Path) -> None:
    sidecar = Sidecar(engine)
    if socket_path.exists():
        socket_path.unlink()
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    server = await asyncio.get_running_loop().create_unix_server(
        sidecar.connection, path=str(socket_path)
    )
    os.chmod(socket_path, 0o660)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("HSM sidecar listening on %s", socket_path)
    async with server:
        await stop.wait()
    engine.close()
    log.info("HSM sidecar stopped")


def run(
    module: str,
    state_dir: Path,
    socket_path: Path,
    pool_secret: bytes,
    vaults: list[str],
    await_activation: bool = False,
) -> None:
    if module == SOFTHSM2_MODULE or "softhsm" in module:
        os.environ["SOFTHSM2_CONF"] = str(write_softhsm_config(state_dir))
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    engine = Engine(module, pool_secret, state_dir / STATE_FILE, await_activation)
    if engine.activated:
        for vault in vaults:
            engine.ensure_vault(vault)
    else:
        # Made once the pool is activated (download) or restored (upload).
        engine.domain.pending_vaults = list(vaults)
        log.info("the pool is not activated: it awaits a security domain download or upload")
    aio.run(serve(engine, socket_path))
