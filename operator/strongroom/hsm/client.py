"""The vault server's side of the HSM socket: async, pipelined, one connection."""

import asyncio
import itertools
import logging
from pathlib import Path
from typing import Any

from . import protocol
from .errors import HsmError, HsmUnavailable, InvalidInput

log = logging.getLogger(__name__)


class HsmClient:
    """Calls engine operations in the sidecar; many requests may be in flight at once."""

    def __init__(self, socket_path: Path, timeout: float = 30.0) -> None:
        self._socket_path = socket_path
        self._timeout = timeout
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._connect_lock = asyncio.Lock()

    async def _connection(self) -> asyncio.StreamWriter:
        if self._writer is not None and not self._writer.is_closing():
            return self._writer
        async with self._connect_lock:
            if self._writer is not None and not self._writer.is_closing():
                return self._writer
            try:
                reader, writer = await asyncio.open_unix_connection(
                    str(self._socket_path), limit=protocol.MAX_LINE
                )
            except OSError as exc:
                raise HsmUnavailable(f"cannot reach the HSM at {self._socket_path}") from exc
            self._writer = writer
            self._reader_task = asyncio.create_task(self._read_answers(reader))
            return writer

    async def _read_answers(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                try:
                    line = await protocol.read_frame(reader)
                except protocol.FrameTooLarge as exc:
                    lost = self._pending.pop(exc.request_id, None)  # type: ignore[arg-type]
                    if lost is not None and not lost.done():
                        lost.set_exception(HsmError("the HSM's answer was too large"))
                    continue
                if not line:
                    break
                try:
                    answer = protocol.decode(line)
                except ValueError:
                    log.warning("ignored a malformed answer from the HSM")
                    continue
                future = self._pending.pop(answer.get("i"), None)  # type: ignore[arg-type]
                if future is None or future.done():
                    continue
                if "e" in answer:
                    future.set_exception(protocol.error_from(answer["e"]))
                else:
                    future.set_result(answer.get("r"))
        except (ConnectionError, ValueError) as exc:
            log.warning("HSM connection failed: %s", type(exc).__name__)
        finally:
            self._fail_pending()

    def _fail_pending(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._writer = None
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(HsmUnavailable("the connection to the HSM was lost"))

    async def call(self, op: str, **args: Any) -> Any:
        request_id = next(self._ids)
        frame = protocol.encode({"i": request_id, "op": op, "a": args})
        if len(frame) > protocol.MAX_LINE:
            raise InvalidInput(f"the {op} request is too large for the HSM ({len(frame)} bytes)")
        writer = await self._connection()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            writer.write(frame)
        except (ConnectionError, RuntimeError) as exc:
            self._pending.pop(request_id, None)
            raise HsmUnavailable("the connection to the HSM was lost") from exc
        try:
            return await asyncio.wait_for(future, self._timeout)
        except TimeoutError as exc:
            self._pending.pop(request_id, None)
            raise HsmUnavailable(f"the HSM did not answer {op} in {self._timeout:.0f}s") from exc

    async def wait_ready(self, timeout: float) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                await self.call("ping")
                return
            except HsmUnavailable:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.1)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()
        self._writer = None
