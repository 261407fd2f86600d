"""`strongroom csi-node` over its real gRPC socket, publishing from `strongroom dev` into tmpfs."""

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization

from strongroom.csi.generated import csi_pb2, csi_pb2_grpc
from strongroom.csi.publisher import is_mountpoint

from .conftest import DevServer

SHARE_SECONDS = 2.0


class Plugin:
    def __init__(self, socket: Path, log: Path, process: subprocess.Popen[bytes]) -> None:
        self.channel = grpc.insecure_channel(f"unix://{socket}")
        self.node = csi_pb2_grpc.NodeStub(self.channel)
        self.identity = csi_pb2_grpc.IdentityStub(self.channel)
        self.log = log
        self.process = process


@pytest.fixture(scope="module")
def plugin(dev: DevServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plugin]:
    base = tmp_path_factory.mktemp("csi")
    socket = base / "csi.sock"
    log = base / "csi.log"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "strongroom.cli",
            "--log-level",
            "DEBUG",
            "csi-node",
            "--endpoint",
            f"unix://{socket}",
            "--node-id",
            "test-node",
            "--vault-ca",
            dev.ca,
            "--jwks-file",
            str(dev.state / "jwks.json"),
            "--share-seconds",
            str(SHARE_SECONDS),
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while not socket.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"csi-node did not start:\n{log.read_text()}")
        time.sleep(0.1)
    yield Plugin(socket, log, process)
    process.terminate()
    process.wait(10)


def context(dev: DevServer, objects: list[dict[str, Any]], token: str | None) -> dict[str, str]:
    out = {
        "vaultUrl": dev.url,
        "objects": json.dumps(objects),
        "csi.storage.k8s.io/ephemeral": "true",
        "csi.storage.k8s.io/pod.namespace": "default",
        "csi.storage.k8s.io/pod.name": "app",
    }
    if token is not None:
        tokens = {"strongroom.io/vault": {"token": token, "expirationTimestamp": "2099-01-01"}}
        out["csi.storage.k8s.io/serviceAccount.tokens"] = json.dumps(tokens)
    return out


def publish(plugin: Plugin, target: Path, volume_context: dict[str, str]) -> None:
    capability = csi_pb2.VolumeCapability(
        mount=csi_pb2.VolumeCapability.MountVolume(),
        access_mode=csi_pb2.VolumeCapability.AccessMode(
            mode=csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_READER_ONLY
        ),
    )
    plugin.node.NodePublishVolume(
        csi_pb2.NodePublishVolumeRequest(
            volume_id=f"csi-{target.name}",
            target_path=str(target),
            volume_capability=capability,
            readonly=True,
            volume_context=volume_context,
        ),
        timeout=30,
    )


def unpublish(plugin: Plugin, target: Path) -> None:
    plugin.node.NodeUnpublishVolume(
        csi_pb2.NodeUnpublishVolumeRequest(volume_id=f"csi-{target.name}", target_path=str(target)),
        timeout=30,
    )


@pytest.fixture(scope="module")
def seeded(clients: Any) -> dict[str, Any]:
    clients.secrets.set_secret("csi-db-password", "s3cret-value-1")
    key = clients.keys.create_ec_key("csi-signing", curve="P-256")
    return {"key": key}


OBJECTS = [
    {"kind": "secret", "name": "csi-db-password", "path": "db/password", "mode": "0440"},
    {"kind": "key", "name": "csi-signing", "path": "signing.pem"},
    {"kind": "key", "name": "csi-signing", "path": "signing.jwk", "format": "jwk"},
]


def test_identity_answers(plugin: Plugin) -> None:
    info = plugin.identity.GetPluginInfo(csi_pb2.GetPluginInfoRequest())
    assert info.name == "csi.strongroom.io" and info.vendor_version
    assert plugin.identity.Probe(csi_pb2.ProbeRequest()).ready.value
    assert plugin.node.NodeGetInfo(csi_pb2.NodeGetInfoRequest()).node_id == "test-node"


def test_a_secret_and_a_public_key_are_mounted_idempotently(
    plugin: Plugin, dev: DevServer, seeded: dict[str, Any], tmp_path: Path
) -> None:
    target = tmp_path / "mount"
    token = dev.issue("dev:reader")
    publish(plugin, target, context(dev, OBJECTS, token))
    publish(plugin, target, context(dev, OBJECTS, token))  # a second publish is success
    assert is_mountpoint(target)
    assert (target / "db" / "password").read_text() == "s3cret-value-1"
    assert (target / "db" / "password").stat().st_mode & 0o777 == 0o440
    pem = serialization.load_pem_public_key((target / "signing.pem").read_bytes())
    expected = seeded["key"].key
    assert pem.public_numbers().x == int.from_bytes(expected.x, "big")  # type: ignore[union-attr]
    jwk = json.loads((target / "signing.jwk").read_text())
    assert jwk["kty"] == "EC" and "d" not in jwk
    unpublish(plugin, target)
    unpublish(plugin, target)  # a second unpublish is success
    assert not target.exists()


def test_a_rotated_secret_replaces_the_file_on_republish(
    plugin: Plugin, dev: DevServer, clients: Any, seeded: dict[str, Any], tmp_path: Path
) -> None:
    target = tmp_path / "rotating"
    token = dev.issue("dev:reader")
    publish(plugin, target, context(dev, OBJECTS, token))
    clients.secrets.set_secret("csi-db-password", "s3cret-value-2")
    time.sleep(SHARE_SECONDS + 0.5)
    publish(plugin, target, context(dev, OBJECTS, token))
    assert (target / "db" / "password").read_text() == "s3cret-value-2"
    unpublish(plugin, target)


@pytest.mark.parametrize("who", ["no-token", "no-access", "bad-token"])
def test_without_access_nothing_is_mounted(
    plugin: Plugin, dev: DevServer, seeded: dict[str, Any], tmp_path: Path, who: str
) -> None:
    target = tmp_path / "denied"
    token = {
        "no-token": None,
        "no-access": dev.issue("system:serviceaccount:other:app"),
        "bad-token": "not-a-token",
    }[who]
    with pytest.raises(grpc.RpcError) as refused:
        publish(plugin, target, context(dev, OBJECTS, token))
    expected = {
        "no-token": grpc.StatusCode.UNAUTHENTICATED,
        "no-access": grpc.StatusCode.PERMISSION_DENIED,
        "bad-token": grpc.StatusCode.UNAUTHENTICATED,
    }[who]
    assert refused.value.code() == expected
    assert refused.value.details()
    assert not target.exists()


@pytest.mark.parametrize(
    "objects,fragment",
    [
        ([{"kind": "secret", "name": "x", "path": "../../etc/passwd"}], "'..'"),
        ([{"kind": "secret", "name": "x", "path": "/etc/passwd"}], "relative"),
        ([{"kind": "secret", "name": "..", "path": "x"}], "name"),
        ([{"kind": "secret", "name": "x", "path": "a\x00b"}], "NUL"),
        ([{"kind": "secret", "name": "x", "path": "p" * 300}], "255 bytes"),
    ],
)
def test_hostile_paths_are_invalid_arguments(
    plugin: Plugin, dev: DevServer, tmp_path: Path, objects: list[dict[str, str]], fragment: str
) -> None:
    target = tmp_path / "hostile"
    with pytest.raises(grpc.RpcError) as refused:
        publish(plugin, target, context(dev, objects, dev.issue("dev:reader")))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in refused.value.details()
    assert not target.exists()


def test_a_symlink_planted_in_the_volume_is_refused(
    plugin: Plugin, dev: DevServer, seeded: dict[str, Any], tmp_path: Path
) -> None:
    target = tmp_path / "planted"
    token = dev.issue("dev:reader")
    publish(plugin, target, context(dev, OBJECTS, token))
    os.symlink("/etc", target / "evil")
    time.sleep(SHARE_SECONDS + 0.5)
    with pytest.raises(grpc.RpcError) as refused:
        publish(plugin, target, context(dev, OBJECTS, token))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (target / "db" / "password").exists()  # the pod keeps what it had
    unpublish(plugin, target)
    assert not target.exists() and os.path.exists("/etc/passwd")


@pytest.mark.parametrize("field", ["volume_id", "target_path", "volume_capability"])
def test_requests_without_required_fields_are_invalid(plugin: Plugin, field: str) -> None:
    request = csi_pb2.NodePublishVolumeRequest(
        volume_id="v",
        target_path="/tmp/strongroom-never",  # noqa: S108
        volume_capability=csi_pb2.VolumeCapability(mount=csi_pb2.VolumeCapability.MountVolume()),
    )
    request.ClearField(field)
    with pytest.raises(grpc.RpcError) as refused:
        plugin.node.NodePublishVolume(request, timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def vault_reads(dev: DevServer, since: int) -> int:
    lines = dev.log_text().splitlines()[since:]
    return sum(
        1
        for line in lines
        if '"audit":true' in line
        and '"caller":"dev:reader"' in line
        and ('"operation":"SecretGet"' in line or '"operation":"KeyGet"' in line)
    )


def test_twenty_pods_of_one_subject_share_vault_calls(
    plugin: Plugin, dev: DevServer, seeded: dict[str, Any], tmp_path: Path
) -> None:
    pods, objects = 20, len(OBJECTS)
    time.sleep(SHARE_SECONDS + 0.5)
    start = len(dev.log_text().splitlines())
    targets = [tmp_path / f"pod-{i}" for i in range(pods)]
    for _interval in range(2):  # two rotation intervals
        for target in targets:
            publish(plugin, target, context(dev, OBJECTS, dev.issue("dev:reader")))
        time.sleep(SHARE_SECONDS + 0.5)
    calls = vault_reads(dev, start)
    per_interval = calls / 2
    assert per_interval <= 0.1 * pods * objects, f"{calls} vault calls in 2 intervals"
    for target in targets:
        unpublish(plugin, target)


def test_no_token_or_value_in_the_plugin_log(plugin: Plugin, dev: DevServer) -> None:
    log = plugin.log.read_text()
    assert "NodePublishVolume" in log
    for forbidden in ("s3cret-value", dev.token.rsplit(".", 1)[1], "serviceAccount.tokens"):
        assert forbidden not in log


def test_the_plugin_registers_with_the_kubelets_plugin_watcher(tmp_path: Path) -> None:
    """The socket the kubelet's plugin watcher dials answers as pluginregistration v1."""
    from strongroom.csi.generated import pluginregistration_pb2, pluginregistration_pb2_grpc

    registration = tmp_path / "registry" / "csi.strongroom.io-reg.sock"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "strongroom.cli",
            "csi-node",
            "--endpoint",
            f"unix://{tmp_path / 'csi.sock'}",
            "--registration-socket",
            str(registration),
            "--kubelet-endpoint",
            "/var/lib/kubelet/plugins/csi.strongroom.io/csi.sock",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not registration.exists():
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        with grpc.insecure_channel(f"unix://{registration}") as channel:
            stub = pluginregistration_pb2_grpc.RegistrationStub(channel)
            info = stub.GetInfo(pluginregistration_pb2.InfoRequest(), timeout=10)
            assert info.type == "CSIPlugin" and info.name == "csi.strongroom.io"
            assert info.endpoint == "/var/lib/kubelet/plugins/csi.strongroom.io/csi.sock"
            assert "1.0.0" in info.supported_versions
            stub.NotifyRegistrationStatus(
                pluginregistration_pb2.RegistrationStatus(plugin_registered=True), timeout=10
            )
    finally:
        process.terminate()
        process.wait(10)
    assert not registration.exists()
