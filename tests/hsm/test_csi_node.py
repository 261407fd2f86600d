"""`strongroom csi-node` over its real gRPC socket, publishing from `strongroom dev` into tmpfs."""

import errno
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import hashes, serialization

from strongroom.csi.generated import csi_pb2, csi_pb2_grpc
from strongroom.csi.publisher import is_mountpoint

from .conftest import DevServer

SHARE_SECONDS = 2.0
NAMESPACE = "default"
# The plugin reaches the pod namespace's vault `dev` (https://dev-vault.default.svc) at the dev
# server, and team-a's vault at a listener that records every connection: a pod of `default`
# that names team-a's vault must not reach it.
DEV_VAULT = f"dev-vault.{NAMESPACE}.svc"
FOREIGN_VAULT = "dev-vault.team-a.svc"


class Listener:
    """A TCP listener that counts the connections it receives."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.socket.settimeout(0.2)
        self.port = self.socket.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.socket.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.socket.close()


@pytest.fixture(scope="module")
def foreign() -> Iterator[Listener]:
    listener = Listener()
    yield listener
    listener.close()


class Plugin:
    def __init__(self, socket: Path, log: Path, process: subprocess.Popen[bytes]) -> None:
        self.channel = grpc.insecure_channel(f"unix://{socket}")
        self.node = csi_pb2_grpc.NodeStub(self.channel)
        self.identity = csi_pb2_grpc.IdentityStub(self.channel)
        self.log = log
        self.process = process


@pytest.fixture(scope="module")
def plugin(
    dev: DevServer, foreign: Listener, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Plugin]:
    with running_plugin(dev, foreign, tmp_path_factory.mktemp("csi")) as running:
        yield running


@contextmanager
def running_plugin(
    dev: DevServer, foreign: Listener, base: Path, extra: tuple[str, ...] = ()
) -> Iterator[Plugin]:
    base.mkdir(parents=True, exist_ok=True)
    csi_socket = base / "csi.sock"
    csi_socket.unlink(missing_ok=True)
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
            f"unix://{csi_socket}",
            "--node-id",
            "test-node",
            "--vault-ca",
            dev.ca,
            "--jwks-file",
            str(dev.state / "jwks.json"),
            "--share-seconds",
            str(SHARE_SECONDS),
            "--staging-dir",
            str(base / "staging"),
            "--vault-address",
            f"{DEV_VAULT}={dev.url}",
            "--vault-address",
            f"{FOREIGN_VAULT}=https://127.0.0.1:{foreign.port}",
            *extra,
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while not csi_socket.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"csi-node did not start:\n{log.read_text()}")
        time.sleep(0.1)
    try:
        yield Plugin(csi_socket, log, process)
    finally:
        process.terminate()
        process.wait(10)


def context(
    dev: DevServer, objects: list[dict[str, Any]], token: str | None, **vault: str
) -> dict[str, str]:
    out = (vault or {"vault": "dev"}) | {
        "objects": json.dumps(objects),
        "csi.storage.k8s.io/ephemeral": "true",
        "csi.storage.k8s.io/pod.namespace": NAMESPACE,
        "csi.storage.k8s.io/pod.name": "app",
    }
    if token is not None:
        tokens = {"strongroom.io/vault": {"token": token, "expirationTimestamp": "2099-01-01"}}
        out["csi.storage.k8s.io/serviceAccount.tokens"] = json.dumps(tokens)
    return out


def publish(
    plugin: Plugin, target: Path, volume_context: dict[str, str], readonly: bool = True
) -> None:
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
            readonly=readonly,
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


def test_the_pods_view_of_its_volume_is_read_only_even_to_root(
    plugin: Plugin, dev: DevServer, seeded: dict[str, Any], tmp_path: Path
) -> None:
    """Root in the pod can plant nothing: the target is a read-only bind mount."""
    assert os.geteuid() == 0, "this test proves what root cannot do: run it as root"
    target = tmp_path / "readonly"
    token = dev.issue("dev:reader")
    publish(plugin, target, context(dev, OBJECTS, token))
    attacks = {
        "write a file": lambda: (target / "planted").write_text("x"),
        "plant a symlink": lambda: os.symlink("/etc", target / "evil"),
        "replace ..data": lambda: os.symlink("/etc", target / "..data_tmp"),
        "rename a directory": lambda: os.rename(target / "..data", target / "..moved"),
        "write into a generation": lambda: (target / "db" / "planted").write_text("x"),
        "remove a file": lambda: (target / "db" / "password").unlink(),
        "make a directory": lambda: (target / "d").mkdir(),
    }
    for what, attack in attacks.items():
        with pytest.raises(OSError) as failed:
            attack()
        assert failed.value.errno == errno.EROFS, what
    time.sleep(SHARE_SECONDS + 0.5)
    publish(plugin, target, context(dev, OBJECTS, token))  # republishing still works
    assert (target / "db" / "password").read_text().startswith("s3cret-value")
    unpublish(plugin, target)
    assert not target.exists() and os.path.exists("/etc/passwd")


def test_a_republish_after_a_plugin_restart_reaches_the_pods_view(
    dev: DevServer, foreign: Listener, clients: Any, seeded: dict[str, Any], tmp_path: Path
) -> None:
    """The plugin's staging mounts go with it; the pod's view stays and is written again."""
    target = tmp_path / "restarted"
    token = dev.issue("dev:reader")
    with running_plugin(dev, foreign, tmp_path / "first") as first:
        publish(first, target, context(dev, OBJECTS, token))
        staging = [line for line in mounts() if str(tmp_path / "first") in line]
        assert staging, "the plugin mounted no staging tmpfs"
    # A restart in a fresh mount namespace loses the staging mount; here, unmount it.
    for line in staging:
        subprocess.run(["/bin/umount", line.split()[4]], check=True)  # noqa: S603
    clients.secrets.set_secret("csi-db-password", "s3cret-after-restart")
    with running_plugin(dev, foreign, tmp_path / "first") as second:
        publish(second, target, context(dev, OBJECTS, token))
        assert (target / "db" / "password").read_text() == "s3cret-after-restart"
        with pytest.raises(OSError) as failed:
            (target / "planted").write_text("x")
        assert failed.value.errno == errno.EROFS
        unpublish(second, target)
    assert not target.exists()
    clients.secrets.set_secret("csi-db-password", "s3cret-value-1")


def mounts() -> list[str]:
    return Path("/proc/self/mountinfo").read_text().splitlines()


@pytest.mark.parametrize(
    "vault",
    [
        {"vaultUrl": f"https://{FOREIGN_VAULT}"},
        {"vaultUrl": f"https://{FOREIGN_VAULT}.cluster.local"},
        {"vaultUrl": "https://127.0.0.1"},
        {"vaultUrl": f"https://{DEV_VAULT}:8443"},
        {"vaultUrl": f"https://x@{DEV_VAULT}"},
        {"vault": "dev.team-a"},
    ],
)
def test_a_vault_outside_the_pods_namespace_gets_neither_a_connection_nor_a_token(
    plugin: Plugin, dev: DevServer, foreign: Listener, tmp_path: Path, vault: dict[str, str]
) -> None:
    target = tmp_path / "foreign"
    before = foreign.connections
    with pytest.raises(grpc.RpcError) as refused:
        publish(plugin, target, context(dev, OBJECTS, dev.issue("dev:reader"), **vault))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "namespace" in refused.value.details() or "vault" in refused.value.details()
    time.sleep(0.5)
    assert foreign.connections == before
    assert not target.exists()


def test_a_volume_the_pod_did_not_ask_read_only_is_refused_before_any_fetch(
    plugin: Plugin, dev: DevServer, tmp_path: Path
) -> None:
    # Without readOnly in the pod's csi volume source the kubelet would mount the volume
    # writable into the containers, where a root container could plant links.
    target = tmp_path / "writable"
    reads = len(dev.log_text().splitlines())
    with pytest.raises(grpc.RpcError) as refused:
        publish(plugin, target, context(dev, OBJECTS, dev.issue("dev:reader")), readonly=False)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "readOnly: true" in refused.value.details()
    assert vault_reads(dev, reads) == 0
    assert not target.exists() or not any(target.iterdir())


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


# --- certificates: read through their secret, certificate and key of one version ----------


@pytest.fixture(scope="module")
def certificates(clients: Any) -> Iterator[Any]:
    from azure.keyvault.certificates import CertificateClient

    client = CertificateClient(clients.dev.url, clients.credential, **clients.options)
    yield client
    # The dev server is shared by the tier: leave no certificate behind.
    for name in ("csi-tls", "csi-tls-pem", "csi-hsm-tls"):
        client.begin_delete_certificate(name, _polling_interval=0).wait()
        client.purge_deleted_certificate(name)


def _certificate(certificates: Any, name: str, **policy: Any) -> Any:
    from azure.keyvault.certificates import CertificatePolicy

    made = CertificatePolicy(issuer_name="Self", subject=f"CN={name}", **policy)
    return certificates.begin_create_certificate(name, made, _polling_interval=0).result()


def _chain(pem: bytes) -> list[Any]:
    from cryptography import x509

    return x509.load_pem_x509_certificates(pem)


def _same_key(private_pem: bytes, certificate: Any) -> bool:
    key = serialization.load_pem_private_key(private_pem, None)
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    public = certificate.public_key().public_bytes(*spki)
    return bool(key.public_key().public_bytes(*spki) == public)


def test_an_exportable_certificate_mounts_as_pem_and_pfx_and_renews_in_one_swap(
    plugin: Plugin, dev: DevServer, certificates: Any, tmp_path: Path
) -> None:
    from azure.keyvault.certificates import CertificateContentType
    from cryptography.hazmat.primitives.serialization import pkcs12

    made = _certificate(
        certificates, "csi-tls", exportable=True, key_type="EC", key_curve_name="P-256"
    )
    _certificate(
        certificates,
        "csi-tls-pem",
        exportable=True,
        content_type=CertificateContentType.pem,
    )
    objects = [
        {"kind": "certificate", "name": "csi-tls", "mode": "0440"},  # tls.crt, tls.key
        {"kind": "certificate", "name": "csi-tls", "path": "tls.pfx", "format": "pfx"},
        {
            "kind": "certificate",
            "name": "csi-tls-pem",
            "path": "pem/cert.pem",
            "keyPath": "pem/key.pem",
        },
    ]
    target = tmp_path / "tls"
    token = dev.issue("dev:reader")
    publish(plugin, target, context(dev, objects, token))
    chain = _chain((target / "tls.crt").read_bytes())
    assert [c.fingerprint(hashes.SHA256()) for c in chain] == [
        x509_of(made.cer).fingerprint(hashes.SHA256())
    ]
    assert _same_key((target / "tls.key").read_bytes(), chain[0])
    assert (target / "tls.key").stat().st_mode & 0o777 == 0o440
    key, leaf, _ = pkcs12.load_key_and_certificates((target / "tls.pfx").read_bytes(), None)
    assert key is not None and leaf is not None and leaf == chain[0]
    assert _same_key(
        (target / "pem" / "key.pem").read_bytes(),
        _chain((target / "pem" / "cert.pem").read_bytes())[0],
    )
    assert b"PRIVATE KEY" not in (target / "pem" / "cert.pem").read_bytes()

    # A renewal (a new version, a new key) reaches the pod at the next republish: the
    # certificate and its key change together, from the same version.
    certificates.begin_create_certificate(
        "csi-tls", certificates.get_certificate_policy("csi-tls"), _polling_interval=0
    ).result()
    renewed = certificates.get_certificate("csi-tls")
    assert renewed.properties.version != made.properties.version
    time.sleep(SHARE_SECONDS + 0.5)
    before = os.readlink(target / "..data")
    publish(plugin, target, context(dev, objects, token))
    assert os.readlink(target / "..data") != before  # one swap of the whole directory
    chain = _chain((target / "tls.crt").read_bytes())
    assert chain[0] == x509_of(renewed.cer)
    assert _same_key((target / "tls.key").read_bytes(), chain[0])
    _, leaf, _ = pkcs12.load_key_and_certificates((target / "tls.pfx").read_bytes(), None)
    assert leaf == chain[0]
    unpublish(plugin, target)


def test_a_non_exportable_certificate_mounts_without_a_key_and_refuses_a_key_file(
    plugin: Plugin, dev: DevServer, certificates: Any, tmp_path: Path
) -> None:
    made = _certificate(
        certificates, "csi-hsm-tls", exportable=False, key_type="EC-HSM", key_curve_name="P-256"
    )
    target = tmp_path / "hsm-tls"
    token = dev.issue("dev:reader")
    publish(plugin, target, context(dev, [{"kind": "certificate", "name": "csi-hsm-tls"}], token))
    assert _chain((target / "tls.crt").read_bytes())[0] == x509_of(made.cer)
    assert not (target / "tls.key").exists()
    unpublish(plugin, target)

    asked = [{"kind": "certificate", "name": "csi-hsm-tls", "keyPath": "tls.key"}]
    with pytest.raises(grpc.RpcError) as refused:
        publish(plugin, tmp_path / "hsm-key", context(dev, asked, token))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not exportable" in refused.value.details()
    assert "keyPath 'tls.key'" in refused.value.details()
    assert not (tmp_path / "hsm-key").exists()

    # A plain secret is not a certificate.
    plain = [{"kind": "certificate", "name": "csi-db-password"}]
    with pytest.raises(grpc.RpcError) as refused:
        publish(plugin, tmp_path / "plain", context(dev, plain, token))
    assert "not a certificate's secret" in refused.value.details()


def x509_of(der: bytes) -> Any:
    from cryptography import x509

    return x509.load_der_x509_certificate(der)
