"""The `kube` fixture: the cluster named by KUBECONFIG, driven through kubectl.

A test that asks for `kube` fails, never skips, when no cluster answers: the
cluster tier must not pass by testing nothing.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from .kube import Kube


@functools.cache
def _kubectl_for_cluster() -> tuple[str, str]:
    """kubectl's path, or why the cluster cannot be used; checked once per session."""
    kubectl = os.environ.get("STRONGROOM_KUBECTL") or shutil.which("kubectl")
    if not kubectl:
        return "", "kubectl not found: put it on PATH or set STRONGROOM_KUBECTL"
    if not os.environ.get("KUBECONFIG"):
        return "", "KUBECONFIG is not set: start a cluster with `e2e/cluster up`"
    try:
        ready = subprocess.run(
            [kubectl, "get", "--raw", "/readyz"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "", "the cluster in KUBECONFIG did not answer within 30s"
    if ready.returncode != 0:
        return "", f"the cluster in KUBECONFIG is not ready: {ready.stderr.strip()}"
    return kubectl, ""


@pytest.fixture
def kube(request: pytest.FixtureRequest) -> Iterator[Kube]:
    """A Kube bound to a fresh namespace, deleted (without waiting) after the test."""
    kubectl, unusable = _kubectl_for_cluster()
    if unusable:
        pytest.fail(unusable, pytrace=False)
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    namespace = f"{slug}-{uuid.uuid4().hex[:6]}"
    client = Kube(kubectl, namespace)
    client.run("create", "namespace", namespace, namespaced=False)
    # Pods can start only once the namespace's default ServiceAccount exists.
    deadline = time.monotonic() + 60
    while client.run("get", "serviceaccount", "default", check=False).returncode != 0:
        if time.monotonic() > deadline:
            pytest.fail(f"namespace {namespace} got no default ServiceAccount", pytrace=False)
        time.sleep(0.5)
    yield client
    client.run("delete", "namespace", namespace, "--wait=false", check=False, namespaced=False)
