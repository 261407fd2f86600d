"""csi.strongroom.io on a real kubelet: pods mount vault objects with their own identity.

The vault server, its HSM sidecar and the CSI node plugin run here as host
processes (see hoststack.py); the kubelet finds the plugin through its plugin
registration directory, and the vault checks every pod token with a real
TokenReview.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import _kubectl_for_cluster
from .hoststack import READER, STRANGER, VAULT, Stack, host_stack


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    kubectl, unusable = _kubectl_for_cluster()
    if unusable:
        pytest.fail(unusable, pytrace=False)
    with host_stack(kubectl) as running:
        yield running


def mounting_pod(stack: Stack, name: str, account: str) -> dict[str, Any]:
    objects = [
        {"kind": "secret", "name": "db-password", "path": "db/password", "mode": "0440"},
        {"kind": "key", "name": "signing", "path": "signing.pem"},
    ]
    script = (
        'while true; do echo "password=$(cat /mnt/vault/db/password)"; '
        "head -1 /mnt/vault/signing.pem; sleep 1; done"
    )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "serviceAccountName": account,
            "terminationGracePeriodSeconds": 1,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "fsGroup": 2000},
            "containers": [
                {
                    "name": "app",
                    "image": stack.kube.image,
                    "imagePullPolicy": "Never",
                    "command": ["/bin/sh", "-c", script],
                    "volumeMounts": [
                        {"name": "vault", "mountPath": "/mnt/vault", "readOnly": True}
                    ],
                }
            ],
            "volumes": [
                {
                    "name": "vault",
                    "csi": {
                        "driver": "csi.strongroom.io",
                        "readOnly": True,
                        "volumeAttributes": {
                            "vault": VAULT,
                            "objects": json.dumps(objects),
                        },
                    },
                }
            ],
        },
    }


@pytest.fixture(scope="module")
def seeded(stack: Stack) -> None:
    assert stack.admin("PUT", "/secrets/db-password", {"value": "first-value"}).ok
    assert stack.admin("POST", "/keys/signing/create", {"kty": "EC-HSM", "crv": "P-256"}).ok


def test_a_pod_reads_its_secret_and_public_key_and_sees_rotation(
    stack: Stack, seeded: None
) -> None:
    stack.kube.apply(mounting_pod(stack, "reader", READER))
    stack.kube.wait_until_ready("reader", timeout=180)
    deadline = time.monotonic() + 60
    while "password=first-value" not in (log := stack.kube.logs("reader")):
        assert time.monotonic() < deadline, log
        time.sleep(1)
    assert "-----BEGIN PUBLIC KEY-----" in log
    assert stack.admin("PUT", "/secrets/db-password", {"value": "rotated-value"}).ok
    deadline = time.monotonic() + 240  # the kubelet republishes on its pod sync
    while "password=rotated-value" not in stack.kube.logs("reader"):
        assert time.monotonic() < deadline, "the rotated value never reached the pod"
        time.sleep(2)


def test_a_pod_without_access_gets_nothing_and_an_event_says_why(
    stack: Stack, seeded: None
) -> None:
    stack.kube.apply(mounting_pod(stack, "stranger", STRANGER))
    deadline = time.monotonic() + 120
    message = ""
    while time.monotonic() < deadline:
        events = json.loads(
            stack.kube.run(
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=stranger",
                "--output",
                "json",
            ).stdout
        )["items"]
        mounts = [e for e in events if e.get("reason") == "FailedMount"]
        if mounts:
            message = mounts[-1]["message"]
            break
        time.sleep(2)
    assert "PermissionDenied" in message or "permission" in message.lower(), message
    # The container never starts: the kubelet reports it waiting in ContainerCreating (its
    # status may come a little after the first FailedMount event), the pod Pending.
    deadline = time.monotonic() + 60
    while True:
        pod = stack.kube.get("pod", "stranger")
        statuses = pod["status"].get("containerStatuses")
        if statuses or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert pod["status"]["phase"] == "Pending", pod["status"]
    assert statuses, f"the kubelet reported no container status in 60 s: {pod['status']}"
    waiting = statuses[0]["state"].get("waiting", {})
    assert waiting.get("reason") == "ContainerCreating", statuses


def test_no_token_or_value_in_the_plugin_log(stack: Stack, seeded: None) -> None:
    log = (stack.logs / "csi.log").read_text()
    assert "NodePublishVolume" in log
    assert "first-value" not in log and "rotated-value" not in log
    assert "eyJ" not in log  # no JWT
