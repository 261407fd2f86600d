"""The `release` fixture: strongroom installed with its chart into the cluster in KUBECONFIG.

Once per session: the CRDs applied server-side, `helm install` of charts/strongroom
with the image under test, and at the end everything the tier made removed again
(the release, its namespaces, and the CRDs when this session created them). A
missing cluster, kubectl or helm fails the tier; it never skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from .release import (
    API_GROUP_KINDS,
    CHART,
    DRIVER,
    IMAGE,
    NAMESPACE,
    PULL_POLICY,
    RELEASE,
    ROOT,
    CommandFailed,
    Release,
)

CRDS = ROOT / "crds"
HELM = ROOT / "scripts" / "helm"  # the pinned helm (scripts/setup builds it)


def _tools() -> tuple[str, str]:
    kubectl = os.environ.get("STRONGROOM_KUBECTL") or shutil.which("kubectl")
    if not kubectl:
        pytest.fail("kubectl not found: put it on PATH or set STRONGROOM_KUBECTL", pytrace=False)
    if not os.environ.get("KUBECONFIG"):
        pytest.fail("KUBECONFIG is not set: start a cluster with `e2e/cluster up`", pytrace=False)
    helm = os.environ.get("STRONGROOM_HELM") or str(HELM)
    version = subprocess.run([helm, "version", "--short"], capture_output=True, text=True)
    if version.returncode != 0:
        pytest.fail(f"helm does not run: {version.stderr.strip()}", pytrace=False)
    ready = subprocess.run(
        [kubectl, "get", "--raw", "/readyz"], capture_output=True, text=True, timeout=30
    )
    if ready.returncode != 0:
        pytest.fail(f"the cluster in KUBECONFIG is not ready: {ready.stderr.strip()}", False)
    return kubectl, helm


def registered_drivers(release: Release) -> list[str]:
    return [
        driver["name"]
        for node in release.items("csinodes")
        for driver in node["spec"].get("drivers") or []
    ]


@pytest.fixture(scope="session")
def release(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    kubectl, helm = _tools()
    installed = Release(kubectl, helm, tmp_path_factory.mktemp("e2e"))
    if installed.h("status", RELEASE, "-n", NAMESPACE, check=False).returncode == 0:
        pytest.fail(f"a release {RELEASE} is already installed; this tier installs its own", False)
    # The cluster tier's host-process plugin of the same driver must be gone before the
    # chart's DaemonSet registers; its fixture unregisters it on the way out.
    installed.wait_for(
        f"no other {DRIVER} plugin registered (the cluster tier's host stack?)",
        lambda: DRIVER not in registered_drivers(installed),
        timeout=60,
    )
    # A namespace a previous run deleted may still be terminating.
    installed.wait_for(
        f"namespace {NAMESPACE} to finish terminating",
        lambda: (
            not installed.exists("namespace", NAMESPACE)
            or installed.get("namespace", NAMESPACE, NAMESPACE)["status"]["phase"] == "Active"
        ),
        timeout=120,
    )
    crds_existed = installed.exists("crd", "keys.strongroom.io")
    installed.k("apply", "--server-side", "-f", str(CRDS))
    installed.k("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    repository, _, tag = IMAGE.rpartition(":")
    try:
        installed.h(
            "install",
            RELEASE,
            str(CHART),
            "-n",
            NAMESPACE,
            "--create-namespace",
            f"--set=image.repository={repository}",
            f"--set=image.tag={tag}",
            f"--set=image.pullPolicy={PULL_POLICY}",
            "--wait",
            "--timeout=5m",
            timeout=330,
        )
    except CommandFailed:
        _diagnose(installed)
        raise
    yield installed
    _clean_up(installed, crds_existed)


def _diagnose(release: Release) -> None:
    """What a failed install left to read: the release namespace's pods and Events, and the
    logs of its containers, the last crashed run's too."""
    print(release.k("-n", NAMESPACE, "get", "pods,events", "-o", "wide", check=False).stdout)
    for pod in release.items("pods", "-n", NAMESPACE):
        name = pod["metadata"]["name"]
        for previous in ("--previous=false", "--previous=true"):
            logs = release.k(
                "-n",
                NAMESPACE,
                "logs",
                name,
                "--all-containers",
                previous,
                "--tail=60",
                check=False,
            )
            print(f"--- {name} {previous}:\n{logs.stdout}{logs.stderr}")


def _clean_up(release: Release, crds_existed: bool) -> None:
    """Whatever a failed test left: its pods and resources (while the operator still runs,
    so that finalizers are honoured), the release, the tests' namespaces, and the CRDs."""
    namespaces = list(release.cleanups)
    for namespace in namespaces:
        delete_contents(release, namespace)
    if release.h("status", RELEASE, "-n", NAMESPACE, check=False).returncode == 0:
        release.h("uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout=3m", timeout=200)
    for namespace in [*namespaces, NAMESPACE]:
        release.k(
            "delete",
            "namespace",
            namespace,
            "--ignore-not-found",
            "--timeout=120s",
            check=False,
            timeout=150,
        )
    if not crds_existed:
        release.k(
            "delete",
            "-f",
            str(CRDS),
            "--ignore-not-found",
            "--timeout=60s",
            check=False,
            timeout=90,
        )


def delete_contents(release: Release, namespace: str) -> None:
    """Pods first (their CSI volumes unmount only while the node plugin runs), then the
    strongroom resources; what the operator cannot finalize any more loses its finalizer."""
    release.k(
        "-n", namespace, "delete", "pods", "--all", "--timeout=120s", check=False, timeout=150
    )
    operator_runs = any(
        s.get("ready")
        for p in release.operator_pods()
        for s in p["status"].get("containerStatuses") or []
    )
    if not operator_runs:
        for item in release.items(API_GROUP_KINDS, "-n", namespace):
            release.k(
                "-n",
                namespace,
                "patch",
                f"{item['kind']}/{item['metadata']['name']}",
                "--type=merge",
                "-p",
                '{"metadata":{"finalizers":null}}',
                check=False,
            )
    release.k(
        "-n",
        namespace,
        "delete",
        API_GROUP_KINDS,
        "--all",
        "--timeout=120s",
        check=False,
        timeout=150,
    )


@contextmanager
def namespace_of(release: Release, name: str) -> Iterator[str]:
    """A namespace for a test module, emptied and deleted when the module is done."""
    release.k("create", "namespace", name)
    release.cleanups.append(name)
    release.wait_for(
        f"namespace {name}'s default ServiceAccount",
        lambda: release.exists("serviceaccount", "default", name),
    )
    yield name
    delete_contents(release, name)
    release.k("delete", "namespace", name, "--timeout=120s", timeout=150)
    release.cleanups.remove(name)
