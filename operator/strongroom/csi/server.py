"""`strongroom csi-node`: the CSI Identity and Node services of `csi.strongroom.io`.

Inline ephemeral volumes only. Every RPC validates its input first, is
idempotent, and is logged once by an interceptor that never sees the volume
context (where the pod's token travels) or any file content.
"""

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from .. import __version__
from .. import metrics as exposition
from .fetch import Fetcher
from .generated import (
    csi_pb2,
    csi_pb2_grpc,
    pluginregistration_pb2,
    pluginregistration_pb2_grpc,
)
from .metrics import CsiMetrics
from .publisher import STAGING_DIR, Publisher, PublishError
from .tokens import FileJwks, IssuerKeys
from .volume import EPHEMERAL_KEY, InvalidVolume, parse_volume, pod_token

log = logging.getLogger(__name__)

DRIVER_NAME = "csi.strongroom.io"
AUDIENCE = "strongroom.io/vault"


@dataclass(frozen=True)
class JwksOptions:
    """How the issuer's keys are kept fresh (see tokens.IssuerKeys and tokens.FileJwks)."""

    refresh_request: Path | None = None
    refresh_seconds: float = 300.0
    min_refresh_seconds: float = 30.0
    # How long a mount whose token names an unknown key id waits for the keys to be read
    # while reading them fails (see tokens.IssuerKeys.subject).
    unknown_kid_wait: float = 10.0


def _abort_code(name: str) -> grpc.StatusCode:
    code: grpc.StatusCode = getattr(grpc.StatusCode, name, grpc.StatusCode.INTERNAL)
    return code


class LoggingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """One line per call: method, volume id, target path, outcome, time. Nothing else. With
    `metrics`, publishes and unpublishes are counted by outcome."""

    def __init__(self, metrics: CsiMetrics | None = None) -> None:
        self._metrics = metrics

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: Any
    ) -> Any:
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = details.method.rsplit("/", 1)[-1]
        inner = handler.unary_unary

        async def logged(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            outcome = "OK"
            try:
                return await inner(request, context)
            except BaseException:
                code = context.code()
                outcome = code.name if code is not None else "ERROR"
                raise
            finally:
                if self._metrics is not None:
                    self._metrics.observe(method, outcome)
                log.info(
                    "csi %s volume=%s target=%s outcome=%s ms=%.1f",
                    method,
                    getattr(request, "volume_id", "-") or "-",
                    getattr(request, "target_path", "-") or "-",
                    outcome,
                    (time.perf_counter() - started) * 1000,
                )

        return grpc.unary_unary_rpc_method_handler(
            logged,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


class Identity(csi_pb2_grpc.IdentityServicer):
    async def GetPluginInfo(self, request: Any, context: Any) -> Any:  # noqa: N802
        return csi_pb2.GetPluginInfoResponse(name=DRIVER_NAME, vendor_version=__version__)

    async def GetPluginCapabilities(self, request: Any, context: Any) -> Any:  # noqa: N802
        # No controller service: volumes are inline and ephemeral.
        return csi_pb2.GetPluginCapabilitiesResponse(capabilities=[])

    async def Probe(self, request: Any, context: Any) -> Any:  # noqa: N802
        return csi_pb2.ProbeResponse(ready={"value": True})


class Registration(pluginregistration_pb2_grpc.RegistrationServicer):
    """The kubelet's plugin watcher finds this socket and learns where to dial the driver."""

    def __init__(self, kubelet_endpoint: str) -> None:
        self._endpoint = kubelet_endpoint

    async def GetInfo(self, request: Any, context: Any) -> Any:  # noqa: N802
        return pluginregistration_pb2.PluginInfo(
            type="CSIPlugin",
            name=DRIVER_NAME,
            endpoint=self._endpoint,
            supported_versions=["1.0.0"],
        )

    async def NotifyRegistrationStatus(self, request: Any, context: Any) -> Any:  # noqa: N802
        if request.plugin_registered:
            log.info("registered with the kubelet")
        else:
            log.error("the kubelet refused the registration: %s", request.error)
        return pluginregistration_pb2.RegistrationStatusResponse()


class Controller(csi_pb2_grpc.ControllerServicer):
    """No controller capabilities: inline volumes need none. Answering the question lets
    generic CSI tooling (csi-sanity among them) see that, rather than fail on a missing service.
    """

    async def ControllerGetCapabilities(self, request: Any, context: Any) -> Any:  # noqa: N802
        # One capability of type UNKNOWN: "nothing", in a form tools read as a list rather
        # than as an absent field.
        unknown = csi_pb2.ControllerServiceCapability(
            rpc=csi_pb2.ControllerServiceCapability.RPC(
                type=csi_pb2.ControllerServiceCapability.RPC.UNKNOWN
            )
        )
        return csi_pb2.ControllerGetCapabilitiesResponse(capabilities=[unknown])


class Node(csi_pb2_grpc.NodeServicer):
    def __init__(self, node_id: str, publisher: Publisher) -> None:
        self._node_id = node_id
        self._publisher = publisher
        self._locks: dict[str, asyncio.Lock] = {}

    def _lock(self, target: str) -> asyncio.Lock:
        return self._locks.setdefault(target, asyncio.Lock())

    async def NodePublishVolume(self, request: Any, context: Any) -> Any:  # noqa: N802
        if not request.volume_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "volume_id is required")
        if not request.target_path or not request.target_path.startswith("/"):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "target_path is required and must be absolute"
            )
        if not request.HasField("volume_capability"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "volume_capability is required")
        if request.volume_capability.HasField("block"):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "csi.strongroom.io volumes are filesystems, not block devices",
            )
        if not request.readonly:
            # The kubelet mounts a volume read-only into every container of the pod only
            # when the volume itself says so; a writable view would let the pod plant
            # links and files where the plugin writes.
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "csi.strongroom.io volumes are read-only: set readOnly: true in the pod's "
                "csi volume source",
            )
        attributes = dict(request.volume_context)
        if attributes.get(EPHEMERAL_KEY, "true") != "true":
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "csi.strongroom.io serves inline ephemeral volumes only",
            )
        try:
            volume = parse_volume(attributes)
        except InvalidVolume as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        gid = None
        mount = request.volume_capability.mount
        if mount.volume_mount_group:
            try:
                gid = int(mount.volume_mount_group)
            except ValueError:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "volume_mount_group must be a numeric group id",
                )
        async with self._lock(request.target_path):
            try:
                await self._publisher.publish(
                    Path(request.target_path), volume, pod_token(attributes), gid
                )
            except PublishError as exc:
                await context.abort(_abort_code(exc.code), str(exc))
        return csi_pb2.NodePublishVolumeResponse()

    async def NodeUnpublishVolume(self, request: Any, context: Any) -> Any:  # noqa: N802
        if not request.volume_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "volume_id is required")
        if not request.target_path:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "target_path is required")
        async with self._lock(request.target_path):
            try:
                await asyncio.to_thread(self._publisher.unpublish, Path(request.target_path))
            except OSError as exc:
                await context.abort(
                    grpc.StatusCode.INTERNAL, f"unpublishing failed: {exc.strerror}"
                )
        self._locks.pop(request.target_path, None)
        return csi_pb2.NodeUnpublishVolumeResponse()

    async def NodeStageVolume(self, request: Any, context: Any) -> Any:  # noqa: N802
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "inline volumes are not staged")

    async def NodeUnstageVolume(self, request: Any, context: Any) -> Any:  # noqa: N802
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "inline volumes are not staged")

    async def NodeGetVolumeStats(self, request: Any, context: Any) -> Any:  # noqa: N802
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "volume stats are not reported")

    async def NodeExpandVolume(self, request: Any, context: Any) -> Any:  # noqa: N802
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "volumes are not expandable")

    async def NodeGetCapabilities(self, request: Any, context: Any) -> Any:  # noqa: N802
        # VOLUME_MOUNT_GROUP: the kubelet hands the pod's fsGroup to NodePublishVolume, and
        # the files are written with that group, rather than chowned by the kubelet after
        # each swap (when a reader could meet files it cannot open yet).
        mount_group = csi_pb2.NodeServiceCapability(
            rpc=csi_pb2.NodeServiceCapability.RPC(
                type=csi_pb2.NodeServiceCapability.RPC.VOLUME_MOUNT_GROUP
            )
        )
        return csi_pb2.NodeGetCapabilitiesResponse(capabilities=[mount_group])

    async def NodeGetInfo(self, request: Any, context: Any) -> Any:  # noqa: N802
        return csi_pb2.NodeGetInfoResponse(node_id=self._node_id)


async def serve(
    endpoint: str,
    node_id: str,
    ca_file: str | None,
    jwks_file: Path | None,
    use_tmpfs: bool,
    share_seconds: float = 30.0,
    registration: tuple[Path, str] | None = None,
    stop: asyncio.Event | None = None,
    staging_dir: Path = STAGING_DIR,
    vault_addresses: dict[str, str] | None = None,
    jwks: JwksOptions | None = None,
    metrics_port: int = 0,
    metrics_host: str = "0.0.0.0",  # noqa: S104 - the pod's address
) -> None:
    """Serve CSI on `endpoint`; with `registration` (socket, endpoint the kubelet dials), also
    register with the kubelet through its plugin registration directory."""
    jwks = jwks or JwksOptions()
    keys = None
    if jwks_file is not None:
        keys = IssuerKeys(
            FileJwks(jwks_file, jwks.refresh_request),
            AUDIENCE,
            refresh_seconds=jwks.refresh_seconds,
            min_refresh_seconds=jwks.min_refresh_seconds,
            unknown_kid_wait=jwks.unknown_kid_wait,
        )
        await keys.start()
    fetcher = Fetcher(ca_file, keys, share_seconds, addresses=vault_addresses)
    metrics = CsiMetrics(fetcher)
    server = grpc.aio.server(interceptors=[LoggingInterceptor(metrics)])
    csi_pb2_grpc.add_IdentityServicer_to_server(Identity(), server)  # type: ignore[no-untyped-call]
    csi_pb2_grpc.add_ControllerServicer_to_server(Controller(), server)  # type: ignore[no-untyped-call]
    node = Node(node_id, Publisher(fetcher, use_tmpfs, staging_dir, metrics))
    csi_pb2_grpc.add_NodeServicer_to_server(node, server)  # type: ignore[no-untyped-call]
    if endpoint.startswith("unix://"):
        socket_path = Path(endpoint.removeprefix("unix://"))
        socket_path.parent.mkdir(parents=True, exist_ok=True)
        socket_path.unlink(missing_ok=True)
    server.add_insecure_port(endpoint)
    await server.start()
    log.info("CSI node %s serving %s on %s", node_id, DRIVER_NAME, endpoint)
    exposed = await exposition.serve(metrics.registry, metrics_port, metrics_host)
    registrar = None
    if registration is not None:
        registration_socket, kubelet_endpoint = registration
        registration_socket.parent.mkdir(parents=True, exist_ok=True)
        registration_socket.unlink(missing_ok=True)
        registrar = grpc.aio.server()
        pluginregistration_pb2_grpc.add_RegistrationServicer_to_server(  # type: ignore[no-untyped-call]
            Registration(kubelet_endpoint), registrar
        )
        registrar.add_insecure_port(f"unix://{registration_socket}")
        await registrar.start()
        log.info("waiting for the kubelet at %s", registration_socket)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    await stop.wait()
    if registrar is not None:
        await registrar.stop(1)
        registration[0].unlink(missing_ok=True)  # type: ignore[index]
    await server.stop(5)
    if exposed is not None:
        await exposed.cleanup()
    await fetcher.close()
    if keys is not None:
        await keys.close()
