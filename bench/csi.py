"""CSI driver figures, measured side by side in one run on one node of a real cluster.

1. pod start-to-running time with a csi.strongroom.io volume against the same pod
   with a native Secret volume holding the same files (goal: p95 ratio <= 2);
2. vault calls per rotation interval (the kubelet's pod sync, 60 s by default)
   for 20 pods mounting the same objects (goal: <= 0.1 x pods x objects).

Needs KUBECONFIG (the local cluster: `e2e/cluster up`) and the strongroom image
on the node; run as root from the repository root:

    python bench/csi.py [--pods 20] [--starts 15] [--intervals 3] [--out DIR]

The text is also written to DIR/csi.txt and drawn in DIR/csi.png (DIR is bench/figures
by default).
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from plotting import Report, add_out_option, csi_figure  # noqa: E402
from plotting import percentile_95 as p95  # noqa: E402

from tests.cluster.conftest import _kubectl_for_cluster  # noqa: E402
from tests.cluster.hoststack import READER, VAULT, Stack, host_stack  # noqa: E402

OBJECTS = [
    {"kind": "secret", "name": "bench-password", "path": "db/password"},
    {"kind": "key", "name": "bench-signing", "path": "signing.pem"},
]
SYNC_SECONDS = 60.0
START_GOAL = 2.0  # p95 start-to-Running with a CSI volume, at most this many times native's
CALL_SHARE = 0.1  # vault calls per rotation interval, at most this share of pods x objects


def pod(stack: Stack, name: str, native: bool) -> dict[str, Any]:
    volume: dict[str, Any]
    if native:
        volume = {
            "name": "files",
            "secret": {
                "secretName": "bench-native",
                "items": [
                    {"key": "password", "path": "db/password"},
                    {"key": "pem", "path": "signing.pem"},
                ],
            },
        }
    else:
        volume = {
            "name": "files",
            "csi": {
                "driver": "csi.strongroom.io",
                "readOnly": True,
                "volumeAttributes": {"vault": VAULT, "objects": json.dumps(OBJECTS)},
            },
        }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "serviceAccountName": READER,
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "app",
                    "image": stack.kube.image,
                    "imagePullPolicy": "Never",
                    "command": ["sleep", "3600"],
                    "volumeMounts": [{"name": "files", "mountPath": "/mnt/files"}],
                }
            ],
            "volumes": [volume],
        },
    }


def time_to_running(stack: Stack, manifest: dict[str, Any]) -> float:
    name = manifest["metadata"]["name"]
    started = time.monotonic()
    stack.kube.apply(manifest)
    while True:
        phase = stack.kube.run("get", "pod", name, "-o", "jsonpath={.status.phase}").stdout
        if phase == "Running":
            elapsed = time.monotonic() - started
            break
        if time.monotonic() - started > 300:
            raise RuntimeError(f"pod {name} never ran")
        time.sleep(0.1)
    stack.kube.run("delete", "pod", name, "--grace-period=0", "--force", "--wait=false")
    return elapsed


def vault_reads(stack: Stack) -> int:
    lines = (stack.logs / "vault.log").read_text().splitlines()
    return sum(
        1
        for line in lines
        if '"audit":true' in line
        and f":{READER}" in line
        and ('"operation":"SecretGet"' in line or '"operation":"KeyGet"' in line)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pods", type=int, default=20)
    parser.add_argument("--starts", type=int, default=15, help="pods started per volume kind")
    parser.add_argument("--intervals", type=int, default=3, help="rotation intervals to count")
    parser.add_argument(
        "--share-seconds",
        type=float,
        default=30.0,
        help="csi-node --share-seconds (the chart's default is 30)",
    )
    add_out_option(parser)
    args = parser.parse_args()
    kubectl, unusable = _kubectl_for_cluster()
    if unusable:
        raise SystemExit(unusable)
    report = Report("csi", args.out)
    with host_stack(kubectl, args.share_seconds) as stack:
        assert stack.admin("PUT", "/secrets/bench-password", {"value": "bench-value"}).ok
        key = stack.admin("POST", "/keys/bench-signing/create", {"kty": "EC-HSM", "crv": "P-256"})
        assert key.ok
        stack.kube.run(
            "create",
            "secret",
            "generic",
            "bench-native",
            "--from-literal=password=bench-value",
            "--from-literal=pem=public-key",
        )
        native: list[float] = []
        csi: list[float] = []
        for index in range(args.starts):  # interleaved, so both see the same node
            native.append(time_to_running(stack, pod(stack, f"native-{index}", True)))
            csi.append(time_to_running(stack, pod(stack, f"csi-{index}", False)))

        for index in range(args.pods):
            stack.kube.apply(pod(stack, f"steady-{index}", False))
        for index in range(args.pods):
            stack.kube.run("wait", "--for=condition=Ready", f"pod/steady-{index}", "--timeout=300s")
        time.sleep(args.share_seconds + 1)
        before = vault_reads(stack)
        window = args.intervals * SYNC_SECONDS
        time.sleep(window)
        calls = vault_reads(stack) - before
        per_interval = calls / args.intervals
        budget = CALL_SHARE * args.pods * len(OBJECTS)

        report.line()
        report.line(
            f"csi.strongroom.io on one node, {args.starts} starts per volume kind, "
            f"{args.pods} steady pods x {len(OBJECTS)} objects, "
            f"share window {args.share_seconds:.0f} s"
        )
        report.line()
        report.line(f"{'pod start to Running':<28}{'p50 s':>8}{'p95 s':>8}")
        report.line(
            f"{'  native Secret volume':<28}{statistics.median(native):>8.2f}{p95(native):>8.2f}"
        )
        report.line(
            f"{'  strongroom CSI volume':<28}{statistics.median(csi):>8.2f}{p95(csi):>8.2f}"
        )
        ratio = p95(csi) / p95(native)
        report.line(
            f"{f'  p95 ratio (goal <= {START_GOAL})':<28}{ratio:>16.2f}  "
            f"({'met' if ratio <= START_GOAL else 'missed'})"
        )
        report.line()
        report.line(
            f"vault calls per rotation interval ({SYNC_SECONDS:.0f} s, measured over "
            f"{args.intervals}): {per_interval:.1f}; pods x objects = "
            f"{args.pods * len(OBJECTS)}; goal <= {budget:.1f} "
            f"({'met' if per_interval <= budget else 'missed'})"
        )
        for index in range(args.pods):
            stack.kube.run(
                "delete", "pod", f"steady-{index}", "--grace-period=0", "--force", "--wait=false"
            )

    setting = (
        f"One node of the local cluster; {args.starts} pod starts per volume kind, interleaved; "
        f"{args.pods} steady pods mounting the same {len(OBJECTS)} objects (a secret and a "
        f"key), csi-node --share-seconds {args.share_seconds:g}; vault reads counted in the "
        f"audit log over {args.intervals} kubelet sync intervals."
    )
    report.save(
        csi_figure(
            native,
            csi,
            START_GOAL,
            per_interval,
            args.pods,
            len(OBJECTS),
            budget,
            SYNC_SECONDS,
            report.end(),
            setting,
        )
    )


if __name__ == "__main__":
    main()
