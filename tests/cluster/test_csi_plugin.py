"""The node's side of strongroom's CSI flow, with e2e/csi-probe as the driver:
a node plugin registers through the kubelet's plugins_registry, and an inline
volume is published with the pod's ServiceAccount token for the CSIDriver's
audience, on a tmpfs that reaches the pod through Bidirectional propagation."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .kube import Kube

pytestmark = pytest.mark.cluster

DRIVER = "probe.csi.strongroom.io"
AUDIENCE = "strongroom-csi-test"
PROBE_IMAGE = os.environ.get("STRONGROOM_CSI_PROBE_IMAGE", "strongroom.io/csi-probe:dev")
KUBELET_DIR = "/var/lib/kubelet"


def csi_driver() -> dict[str, Any]:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "CSIDriver",
        "metadata": {"name": DRIVER},
        "spec": {
            "attachRequired": False,
            "podInfoOnMount": True,
            "volumeLifecycleModes": ["Ephemeral"],
            "tokenRequests": [{"audience": AUDIENCE, "expirationSeconds": 600}],
        },
    }


def host_path(name: str, path: str, kind: str) -> dict[str, Any]:
    return {"name": name, "hostPath": {"path": path, "type": kind}}


def plugin_pod(node: str) -> dict[str, Any]:
    plugin_dir = f"{KUBELET_DIR}/plugins/{DRIVER}"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "plugin"},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "probe",
                    "image": PROBE_IMAGE,
                    "imagePullPolicy": "Never",
                    "args": [
                        f"--driver={DRIVER}",
                        f"--node-id={node}",
                        "--csi-socket=/csi/csi.sock",
                        f"--kubelet-endpoint={plugin_dir}/csi.sock",
                        f"--registration-socket=/registration/{DRIVER}-reg.sock",
                    ],
                    "securityContext": {"privileged": True},
                    "volumeMounts": [
                        {"name": "csi", "mountPath": "/csi"},
                        {"name": "registration", "mountPath": "/registration"},
                        {
                            "name": "pods",
                            "mountPath": f"{KUBELET_DIR}/pods",
                            "mountPropagation": "Bidirectional",
                        },
                    ],
                }
            ],
            "volumes": [
                host_path("csi", plugin_dir, "DirectoryOrCreate"),
                host_path("registration", f"{KUBELET_DIR}/plugins_registry", "Directory"),
                host_path("pods", f"{KUBELET_DIR}/pods", "Directory"),
            ],
        },
    }


def consumer_pod(image: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "consumer"},
        "spec": {
            "serviceAccountName": "consumer",
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "main",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": ["python3", "-c", "import time; time.sleep(3600)"],
                    "volumeMounts": [
                        {"name": "probe", "mountPath": "/mnt/probe", "readOnly": True}
                    ],
                }
            ],
            "volumes": [{"name": "probe", "csi": {"driver": DRIVER, "readOnly": True}}],
        },
    }


@pytest.fixture
def registered_driver(kube: Kube) -> Iterator[str]:
    """The probe plugin running and registered on the (first) node; yields the node name."""
    node = kube.run("get", "nodes", "--output", "jsonpath={.items[0].metadata.name}").stdout
    kube.run("delete", "csidriver", DRIVER, "--ignore-not-found", namespaced=False)
    kube.apply(csi_driver(), plugin_pod(node))
    try:
        kube.wait_until_ready("plugin")
        deadline = time.monotonic() + 60
        while DRIVER not in registered_drivers(kube, node):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{DRIVER} never appeared in CSINode {node}: {kube.logs('plugin')}"
                )
            time.sleep(1)
        yield node
    finally:
        # The consumer must go while the plugin can still unpublish its volume.
        kube.run("delete", "pod", "consumer", "--ignore-not-found", "--wait=true", check=False)
        kube.run("delete", "pod", "plugin", "--ignore-not-found", "--wait=true", check=False)
        kube.run("delete", "csidriver", DRIVER, "--ignore-not-found", check=False, namespaced=False)


def registered_drivers(kube: Kube, node: str) -> list[str]:
    result = kube.run("get", "csinode", node, "--output", "json", check=False, namespaced=False)
    if result.returncode != 0:
        return []
    return [driver["name"] for driver in json.loads(result.stdout)["spec"].get("drivers") or []]


def test_node_plugin_registers_through_plugins_registry(kube: Kube, registered_driver: str) -> None:
    assert DRIVER in registered_drivers(kube, registered_driver)


@pytest.mark.usefixtures("registered_driver")
def test_inline_volume_receives_the_pods_token_for_the_driver_audience(kube: Kube) -> None:
    kube.apply(
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "consumer"}},
        consumer_pod(kube.image),
    )
    kube.wait_until_ready("consumer")

    tokens = json.loads(kube.run("exec", "consumer", "--", "cat", "/mnt/probe/tokens.json").stdout)
    mounts = kube.run("exec", "consumer", "--", "cat", "/proc/mounts").stdout

    assert list(tokens) == [AUDIENCE]
    review = kube.create(
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": tokens[AUDIENCE]["token"], "audiences": [AUDIENCE]},
        }
    )["status"]
    assert review.get("authenticated") is True, review
    assert review["user"]["username"] == f"system:serviceaccount:{kube.namespace}:consumer"
    assert any(line.split()[1:3] == ["/mnt/probe", "tmpfs"] for line in mounts.splitlines()), mounts
