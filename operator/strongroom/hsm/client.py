"""The vault server's side of the HSM socket: async, pipelined, one connection.

`HsmClient` implements the typed interface `api.Hsm`: one method per operation, each
sending the operation's name and arguments and giving back the answer in its type.
"""

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from . import protocol
from .api import GeneratedKey
from .errors import HsmError, HsmUnavailable, InvalidInput

log = logging.getLogger(__name__)

# Told of every call once it ends: the operation, its arguments (for what names the mechanism;
# an observer must never label with an argument it does not know), the seconds it took and
# the class name of its error (None when it succeeded).
CallObserver = Callable[[str, dict[str, Any], float, str | None], None]


class _Answers(asyncio.Protocol):
    """The client's end of the socket: each complete answer line settles its request's
    future in the callback that read it (no reader task to wake per answer). A line
    longer than `protocol.MAX_LINE` is thrown away as it arrives and fails only the
    request that began it; the stream stays in step."""

    def __init__(self, client: "HsmClient") -> None:
        self._client = client
        self._lines = protocol.Lines()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self._lines.feed(data)
        while (line := self._lines.next()) is not None:
            if isinstance(line, protocol.Overlong):
                self._client._lost_answer(line.request_id)
            else:
                self._client._answered(line)

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            log.warning("HSM connection failed: %s", type(exc).__name__)
        self.transport = None
        self._lines.clear()
        self._client._lost(self)


class HsmClient:
    """Calls engine operations in the sidecar; many requests may be in flight at once."""

    def __init__(
        self, socket_path: Path, timeout: float = 30.0, observer: CallObserver | None = None
    ) -> None:
        self._socket_path = socket_path
        self._timeout = timeout
        self._observer = observer
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._answers: _Answers | None = None
        self._connect_lock = asyncio.Lock()
        self._outgoing: list[tuple[int, bytes]] = []  # frames to send at this turn's end

    def _connected(self) -> bool:
        answers = self._answers
        return (
            answers is not None
            and answers.transport is not None
            and not answers.transport.is_closing()
        )

    async def _connection(self) -> None:
        if self._connected():
            return
        async with self._connect_lock:
            if self._connected():
                return
            try:
                _, answers = await asyncio.get_running_loop().create_unix_connection(
                    lambda: _Answers(self), str(self._socket_path)
                )
            except OSError as exc:
                raise HsmUnavailable(f"cannot reach the HSM at {self._socket_path}") from exc
            self._answers = answers

    def _answered(self, line: bytes) -> None:
        if line.startswith(protocol.SIGN_ANSWER):
            try:
                request_id, signature = protocol.decode_sign_answer(line)
            except ValueError:
                log.warning("ignored a malformed answer from the HSM")
                return
            settled = self._pending.pop(request_id, None)
            if settled is not None and not settled.done():
                settled.set_result(signature)
            return
        try:
            answer = protocol.decode(line)
        except ValueError:
            log.warning("ignored a malformed answer from the HSM")
            return
        future = self._pending.pop(answer.get("i"), None)  # type: ignore[arg-type]
        if future is None or future.done():
            return
        if "e" in answer:
            future.set_exception(protocol.error_from(answer["e"]))
        else:
            future.set_result(answer.get("r"))

    def _lost_answer(self, request_id: int | None) -> None:
        lost = self._pending.pop(request_id, None)  # type: ignore[arg-type]
        if lost is not None and not lost.done():
            lost.set_exception(HsmError("the HSM's answer was too large"))

    def _lost(self, answers: _Answers) -> None:
        if answers is self._answers:
            self._answers = None
            self._fail_pending()

    def _fail_pending(self) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(HsmUnavailable("the connection to the HSM was lost"))

    @property
    def in_flight(self) -> int:
        """Requests sent to the sidecar and not answered yet: the queue in front of the HSM,
        which runs one operation at a time."""
        return len(self._pending)

    async def _call(self, op: str, **args: Any) -> Any:
        if self._observer is None:
            return await self._exchange(op, args)
        started = time.perf_counter()
        error: str | None = "HsmError"
        try:
            result = await self._exchange(op, args)
            error = None
            return result
        except HsmError as exc:
            error = type(exc).__name__
            raise
        finally:
            self._observer(op, args, time.perf_counter() - started, error)

    async def _exchange(self, op: str, args: dict[str, Any]) -> Any:
        request_id = next(self._ids)
        frame = protocol.frame(request_id, op, args)
        if len(frame) > protocol.MAX_LINE:
            raise InvalidInput(f"the {op} request is too large for the HSM ({len(frame)} bytes)")
        await self._connection()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending[request_id] = future
        # Requests made in one turn of the event loop leave in one write (one system call,
        # one wake-up of the sidecar) at the end of that turn.
        self._outgoing.append((request_id, frame))
        if len(self._outgoing) == 1:
            loop.call_soon(self._flush)
        timer = loop.call_later(self._timeout, self._expire, request_id, op)
        try:
            return await future
        finally:
            timer.cancel()

    def _flush(self) -> None:
        # A request failed meanwhile (its connection lost, its time out) is not sent.
        outgoing = [(i, frame) for i, frame in self._outgoing if i in self._pending]
        self._outgoing = []
        if not outgoing:
            return
        transport = self._answers.transport if self._answers is not None else None
        try:
            if transport is None or transport.is_closing():
                raise ConnectionError("not connected")
            transport.write(b"".join(frame for _, frame in outgoing))
        except (ConnectionError, RuntimeError):
            for request_id, _ in outgoing:
                future = self._pending.pop(request_id, None)
                if future is not None and not future.done():
                    future.set_exception(HsmUnavailable("the connection to the HSM was lost"))

    def _expire(self, request_id: int, op: str) -> None:
        future = self._pending.pop(request_id, None)
        if future is not None and not future.done():
            future.set_exception(
                HsmUnavailable(f"the HSM did not answer {op} in {self._timeout:.0f}s")
            )

    async def close(self) -> None:
        answers, self._answers = self._answers, None
        if answers is not None and answers.transport is not None:
            answers.transport.close()
        self._fail_pending()

    async def sidecar_metrics(self) -> str:
        """The sidecar's own metrics as Prometheus text (not an HSM operation)."""
        return cast(str, await self._exchange(protocol.METRICS_OP, {}))

    # --- the operations of api.Hsm ------------------------------------------------

    async def ping(self) -> str:
        return cast(str, await self._call("ping"))

    async def platform(self) -> str:
        return cast(str, await self._call("platform"))

    async def vault_names(self) -> list[str]:
        return cast(list[str], await self._call("vault_names"))

    async def has_vault(self, vault: str) -> bool:
        return bool(await self._call("has_vault", vault=vault))

    async def ensure_vault(self, vault: str) -> None:
        await self._call("ensure_vault", vault=vault)

    @staticmethod
    def _generated(raw: Any) -> GeneratedKey:
        return GeneratedKey(
            public=raw["public"], wrapped=raw["wrapped"], private=raw.get("private")
        )

    async def generate_rsa(self, vault: str, key_id: str, label: str, bits: int) -> GeneratedKey:
        return self._generated(
            await self._call("generate_rsa", vault=vault, key_id=key_id, label=label, bits=bits)
        )

    async def generate_ec(self, vault: str, key_id: str, label: str, curve: str) -> GeneratedKey:
        return self._generated(
            await self._call("generate_ec", vault=vault, key_id=key_id, label=label, curve=curve)
        )

    async def generate_aes(self, vault: str, key_id: str, label: str, bits: int) -> GeneratedKey:
        return self._generated(
            await self._call("generate_aes", vault=vault, key_id=key_id, label=label, bits=bits)
        )

    async def generate_exportable(
        self, vault: str, key_id: str, label: str, kty: str, bits: int, curve: str
    ) -> GeneratedKey:
        return self._generated(
            await self._call(
                "generate_exportable",
                vault=vault,
                key_id=key_id,
                label=label,
                kty=kty,
                bits=bits,
                curve=curve,
            )
        )

    async def import_key(
        self, vault: str, key_id: str, label: str, kty: str, crv: str, parts: dict[str, bytes]
    ) -> GeneratedKey:
        return self._generated(
            await self._call(
                "import_key",
                vault=vault,
                key_id=key_id,
                label=label,
                kty=kty,
                crv=crv,
                parts=parts,
            )
        )

    async def load_key(self, vault: str, key_id: str, label: str, kty: str, wrapped: bytes) -> None:
        await self._call(
            "load_key", vault=vault, key_id=key_id, label=label, kty=kty, wrapped=wrapped
        )

    async def destroy_key(self, vault: str, key_id: str) -> None:
        await self._call("destroy_key", vault=vault, key_id=key_id)

    async def key_attributes(self, vault: str, key_id: str) -> dict[str, bool]:
        return cast(dict[str, bool], await self._call("key_attributes", vault=vault, key_id=key_id))

    async def token_key_ids(self, vault: str) -> list[str]:
        return cast(list[str], await self._call("token_key_ids", vault=vault))

    async def sign(self, vault: str, key_id: str, alg: str, digest: bytes) -> bytes:
        return cast(
            bytes, await self._call("sign", vault=vault, key_id=key_id, alg=alg, digest=digest)
        )

    async def rsa_decrypt(self, vault: str, key_id: str, alg: str, data: bytes) -> bytes:
        return cast(
            bytes,
            await self._call("rsa_decrypt", vault=vault, key_id=key_id, alg=alg, data=data),
        )

    async def aes_gcm_encrypt(
        self, vault: str, key_id: str, data: bytes, iv: bytes, aad: bytes | None
    ) -> tuple[bytes, bytes]:
        cipher, tag = await self._call(
            "aes_gcm_encrypt", vault=vault, key_id=key_id, data=data, iv=iv, aad=aad
        )
        return cipher, tag

    async def aes_gcm_decrypt(
        self, vault: str, key_id: str, data: bytes, iv: bytes, aad: bytes | None, tag: bytes
    ) -> bytes:
        return cast(
            bytes,
            await self._call(
                "aes_gcm_decrypt", vault=vault, key_id=key_id, data=data, iv=iv, aad=aad, tag=tag
            ),
        )

    async def aes_cbc(
        self, vault: str, key_id: str, data: bytes, iv: bytes, pad: bool, encrypt: bool
    ) -> bytes:
        return cast(
            bytes,
            await self._call(
                "aes_cbc", vault=vault, key_id=key_id, data=data, iv=iv, pad=pad, encrypt=encrypt
            ),
        )

    async def aes_wrap(self, vault: str, key_id: str, data: bytes) -> bytes:
        return cast(bytes, await self._call("aes_wrap", vault=vault, key_id=key_id, data=data))

    async def aes_unwrap(self, vault: str, key_id: str, data: bytes) -> bytes:
        return cast(bytes, await self._call("aes_unwrap", vault=vault, key_id=key_id, data=data))

    async def random(self, vault: str, count: int) -> bytes:
        return cast(bytes, await self._call("random", vault=vault, count=count))

    async def seal(self, vault: str, plaintext: bytes, aad: bytes) -> bytes:
        return cast(bytes, await self._call("seal", vault=vault, plaintext=plaintext, aad=aad))

    async def unseal(self, vault: str, blob: bytes, aad: bytes) -> bytes:
        return cast(bytes, await self._call("unseal", vault=vault, blob=blob, aad=aad))

    async def seal_records(
        self, vault: str, aads: list[bytes], plaintexts: list[bytes]
    ) -> list[bytes]:
        return cast(
            list[bytes],
            await self._call("seal_records", vault=vault, aads=aads, plaintexts=plaintexts),
        )

    async def unseal_records(
        self, vault: str, aads: list[bytes], blobs: list[bytes]
    ) -> list[bytes]:
        return cast(
            list[bytes], await self._call("unseal_records", vault=vault, aads=aads, blobs=blobs)
        )

    async def domain_state(self) -> dict[str, Any]:
        return cast(dict[str, Any], await self._call("domain_state"))

    async def domain_download(self, request: dict[str, Any]) -> str:
        return cast(str, await self._call("domain_download", request=request))

    async def domain_transfer_key(self) -> str:
        return cast(str, await self._call("domain_transfer_key"))

    async def domain_upload(self, value: str) -> dict[str, Any]:
        return cast(dict[str, Any], await self._call("domain_upload", value=value))

    async def domain_held_download(self) -> str:
        return cast(str, await self._call("domain_held_download"))

    async def domain_release_download(self) -> None:
        await self._call("domain_release_download")

    async def snapshot_tokens(self) -> dict[str, Any]:
        return cast(dict[str, Any], await self._call("snapshot_tokens"))

    async def list_token_records(self, vault: str, after: str) -> dict[str, Any]:
        return cast(
            dict[str, Any], await self._call("list_token_records", vault=vault, after=after)
        )

    async def delete_token_record(self, vault: str, name: str) -> None:
        await self._call("delete_token_record", vault=vault, name=name)
