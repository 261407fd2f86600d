"""The HSM interface in this process: the sidecar's dispatch on the test session's engine,
and a record storage in a temporary directory, for tests that drive a store directly."""

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from strongroom.hsm.api import GeneratedKey
from strongroom.hsm.engine import Engine
from strongroom.hsm.sidecar import Sidecar


class InProcessHsm:
    """`Hsm` through the sidecar's dispatch (and its refusal of unknown operations)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sidecar = Sidecar(engine)

    def __getattr__(self, op: str) -> Callable[..., Awaitable[Any]]:
        async def call(*args: Any, **kwargs: Any) -> Any:
            method = getattr(self.engine, op, None) if op != "ping" else None
            if method is not None:
                kwargs = dict(inspect.signature(method).bind(*args, **kwargs).arguments)
            await asyncio.sleep(0)
            result = self.sidecar.call(op, kwargs)
            if op.startswith("generate_") or op == "import_key":
                return GeneratedKey(result["public"], result["wrapped"], result.get("private"))
            if op == "aes_gcm_encrypt":
                return tuple(result)
            return result

        return call
