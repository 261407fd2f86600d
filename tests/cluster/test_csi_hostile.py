"""A root pod attacks its own strongroom volume while the real kubelet republishes it.

The pod runs as root (uid 0, the runtime's default capabilities, not privileged),
asks for a writable volume, and loops: it plants symlinks to a host directory
in every directory of the volume, swaps directories for such symlinks, moves
`..data`, and writes files. Meanwhile the secret rotates, so the kubelet's
republishes write new generations. Nothing may appear, change or disappear in
the watched host directory, every write of the pod must fail (read-only), and
the pod still sees each rotated value.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import _kubectl_for_cluster
from .hoststack import READER, VAULT, Stack, host_stack

pytestmark = pytest.mark.cluster

ROTATIONS = 3

# The attacker, in the pod. It prints one JSON line of counters every second.
ATTACKER = r"""
import json, os, sys, time
vol, watch = "/mnt/vault", sys.argv[1]
stats = {"writes_ok": 0, "erofs": 0, "other_errors": 0, "value": ""}

def attempt(action):
    try:
        action()
        stats["writes_ok"] += 1
    except OSError as exc:
        stats["erofs" if exc.errno == 30 else "other_errors"] += 1

def swap(path, to):
    attempt(lambda: os.rename(path, path + ".moved"))
    attempt(lambda: os.symlink(to, path))

last = 0.0
while True:
    try:
        entries = os.listdir(vol)
    except OSError:
        entries = []
    for entry in entries:
        full = os.path.join(vol, entry)
        if entry.startswith("..2") and os.path.isdir(full) and not os.path.islink(full):
            swap(os.path.join(full, "db"), watch + "/db")
            swap(full, watch)
            attempt(lambda: open(os.path.join(full, "db", "planted"), "w").close())
    attempt(lambda: os.symlink(watch, os.path.join(vol, "..data_tmp")))
    attempt(lambda: os.symlink(watch + "/db", os.path.join(vol, "evil")))
    swap(os.path.join(vol, "..data"), watch)
    swap(os.path.join(vol, "db"), watch + "/db")
    attempt(lambda: open(os.path.join(vol, "planted"), "w").close())
    if time.monotonic() - last > 1:
        try:
            stats["value"] = open(os.path.join(vol, "db", "password")).read()
        except OSError as exc:
            stats["value"] = "unreadable: " + exc.strerror
        print(json.dumps(stats), flush=True)
        last = time.monotonic()
"""


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under `root`, not followed: a file's content, a symlink's target, a dir."""
    out: dict[str, str] = {str(root): "dir"}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            if full.is_symlink():
                out[str(full)] = "-> " + os.readlink(full)
            elif full.is_dir():
                out[str(full)] = "dir"
            else:
                out[str(full)] = full.read_text(errors="replace")
    return out


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    kubectl, unusable = _kubectl_for_cluster()
    if unusable:
        pytest.fail(unusable, pytrace=False)
    with host_stack(kubectl, share_seconds=1.0) as running:
        yield running


@pytest.fixture
def watched() -> Iterator[Path]:
    """A host directory shaped like the volume, where a followed symlink would lead."""
    root = Path(f"/tmp/strongroom-hostile-{uuid.uuid4().hex[:8]}")  # noqa: S108
    (root / "db").mkdir(parents=True)
    (root / "db" / "password").write_text("host file, not the pod's\n")
    (root / "canary").write_text("host file, not the pod's\n")
    (root / "..data").mkdir()
    yield root
    shutil.rmtree(root)


def attacking_pod(stack: Stack, watch: Path) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "attacker"},
        "spec": {
            "serviceAccountName": READER,
            "terminationGracePeriodSeconds": 1,
            "securityContext": {"runAsUser": 0, "runAsGroup": 0},
            "containers": [
                {
                    "name": "attacker",
                    "image": stack.kube.image,
                    "imagePullPolicy": "Never",
                    "command": ["python", "-c", ATTACKER, str(watch)],
                    "securityContext": {"privileged": False, "allowPrivilegeEscalation": True},
                    # Mounts the volume without readOnly: the pod must still get a
                    # read-only view (the driver takes only read-only volumes).
                    "volumeMounts": [{"name": "vault", "mountPath": "/mnt/vault"}],
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
                            "objects": json.dumps(
                                [{"kind": "secret", "name": "db-password", "path": "db/password"}]
                            ),
                        },
                    },
                }
            ],
        },
    }


def latest_stats(stack: Stack) -> dict[str, Any]:
    lines = [line for line in stack.kube.logs("attacker").splitlines() if line.startswith("{")]
    assert lines, "the attacker printed nothing"
    stats: dict[str, Any] = json.loads(lines[-1])
    return stats


def test_a_root_pod_racing_republishes_reaches_nothing_outside_its_read_only_volume(
    stack: Stack, watched: Path
) -> None:
    assert stack.admin("PUT", "/secrets/db-password", {"value": "rotation-0"}).ok
    before = snapshot(watched)
    stack.kube.apply(attacking_pod(stack, watched))
    stack.kube.wait_until_ready("attacker", timeout=180)
    for rotation in range(1, ROTATIONS + 1):
        value = f"rotation-{rotation}"
        assert stack.admin("PUT", "/secrets/db-password", {"value": value}).ok
        deadline = time.monotonic() + 240  # the kubelet republishes on its pod sync
        while (stats := latest_stats(stack))["value"] != value:
            assert time.monotonic() < deadline, f"{value} never reached the pod: {stats}"
            assert snapshot(watched) == before
            time.sleep(2)
    stats = latest_stats(stack)
    assert snapshot(watched) == before, "the plugin wrote or removed outside the volume"
    assert stats["writes_ok"] == 0, f"the pod changed its volume: {stats}"
    assert stats["erofs"] > 1000, f"the attacker barely ran: {stats}"
    pod = stack.kube.get("pod", "attacker")
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
