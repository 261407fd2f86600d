"""kubectl against the cluster named by KUBECONFIG, for the cluster tier's tests."""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import Any

IMAGE = os.environ.get("STRONGROOM_IMAGE", "strongroom.io/strongroom:dev")
KUBECTL_TIMEOUT_SECONDS = 60


class Kube:
    """kubectl against one cluster, scoped to a namespace made for one test."""

    def __init__(self, kubectl: str, namespace: str) -> None:
        self.kubectl = kubectl
        self.namespace = namespace
        self.image = IMAGE

    def run(
        self, *args: str, stdin: str | None = None, check: bool = True, namespaced: bool = True
    ) -> subprocess.CompletedProcess[str]:
        command = [self.kubectl, *(["--namespace", self.namespace] if namespaced else []), *args]
        result = subprocess.run(
            command,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=KUBECTL_TIMEOUT_SECONDS,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}"
            )
        return result

    def get(self, kind: str, name: str) -> dict[str, Any]:
        return _object(self.run("get", kind, name, "--output", "json").stdout)

    def apply(self, *manifests: dict[str, Any]) -> None:
        self.run("apply", "--filename", "-", stdin=_as_list(manifests))

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Creates an object and returns the server's answer (for review-style APIs)."""
        answer = self.run(
            "create", "--filename", "-", "--output", "json", stdin=json.dumps(manifest)
        )
        return _object(answer.stdout)

    def logs(self, pod: str) -> str:
        return self.run("logs", pod).stdout

    def wait_for_pod(self, name: str, phases: set[str], timeout: float = 120) -> dict[str, Any]:
        """Waits until the pod reaches one of `phases`; says why when it does not."""
        deadline = time.monotonic() + timeout
        pod: dict[str, Any] = {}
        while time.monotonic() < deadline:
            pod = self.get("pod", name)
            phase = pod.get("status", {}).get("phase")
            if phase in phases:
                return pod
            if phase in {"Succeeded", "Failed"}:
                break
            time.sleep(1)
        events = self.run(
            "get", "events", "--field-selector", f"involvedObject.name={name}", check=False
        ).stdout
        logs = self.run("logs", name, "--all-containers", check=False)
        raise AssertionError(
            f"pod {name} is {pod.get('status', {}).get('phase')}, wanted {sorted(phases)}\n"
            f"status: {json.dumps(pod.get('status'), indent=1)}\n"
            f"events:\n{events}\nlogs:\n{logs.stdout}{logs.stderr}"
        )

    def wait_until_ready(self, name: str, timeout: float = 120) -> None:
        self.wait_for_pod(name, {"Running"}, timeout)
        self.run("wait", "--for=condition=Ready", f"pod/{name}", f"--timeout={int(timeout)}s")


def _object(text: str) -> dict[str, Any]:
    parsed = json.loads(text)
    assert isinstance(parsed, dict), text
    return parsed


def _as_list(manifests: tuple[dict[str, Any], ...]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": list(manifests)})
