"""`strongroom operator` as a process: a standby answers its probes, says whom it stands by
for and stops cleanly at SIGTERM; losing the Lease ends the process at once.

The Kubernetes API server is a small HTTP stand-in serving one Lease (the real client,
kubeconfig loading and requests are the operator's own); no kopf runs, since a standby
never starts it.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
NS = "strongroom-system"
LEASE_PATH = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/strongroom-operator"
TOKEN = "kube-token-for-tests"  # noqa: S105 - a stand-in API server's token


class _LeaseServer(BaseHTTPRequestHandler):
    seen: list[tuple[str, str, str | None]] = []

    def do_GET(self) -> None:  # noqa: N802
        self.seen.append(("GET", self.path, self.headers.get("Authorization")))
        if self.path.split("?")[0] != LEASE_PATH:
            self._answer(404, {"kind": "Status", "code": 404})
            return
        renewed = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        self._answer(
            200,
            {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": "strongroom-operator",
                    "namespace": NS,
                    # A new version at every read: the holder renews it.
                    "resourceVersion": str(len(self.seen)),
                },
                "spec": {
                    "holderIdentity": "strongroom-operator-active",
                    "leaseDurationSeconds": 60,
                    "renewTime": renewed,
                    "acquireTime": renewed,
                },
            },
        )

    def do_PUT(self) -> None:  # noqa: N802
        self.seen.append(("PUT", self.path, self.headers.get("Authorization")))
        self._answer(409, {"kind": "Status", "code": 409})

    do_POST = do_PUT  # noqa: N815

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Iterator[Path]:
    _LeaseServer.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _LeaseServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "stand-in",
                        "cluster": {"server": f"http://127.0.0.1:{server.server_address[1]}"},
                    }
                ],
                "users": [{"name": "operator", "user": {"token": TOKEN}}],
                "contexts": [
                    {"name": "test", "context": {"cluster": "stand-in", "user": "operator"}}
                ],
                "current-context": "test",
            }
        )
    )
    yield path
    server.shutdown()
    server.server_close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _probe(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as answer:  # noqa: S310
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _environment(kubeconfig: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("KUBERNETES_SERVICE_HOST", "POD_ID")
    }
    env |= {
        "KUBECONFIG": str(kubeconfig),
        "POD_NAME": "strongroom-operator-standby",
        "PYTHONPATH": str(ROOT / "operator"),
    }
    return env


def test_a_standby_answers_its_probes_and_stops_cleanly(kubeconfig: Path) -> None:
    port = _free_port()
    metrics_port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "strongroom.cli",
            "--log-level=INFO",
            "operator",
            f"--namespace={NS}",
            f"--health-address=127.0.0.1:{port}",
            f"--metrics-port={metrics_port}",
            "--metrics-address=127.0.0.1",
            "--lease-retry-period=0.2",
            "--lease-renew-deadline=1",
        ],
        env=_environment(kubeconfig),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        answer: tuple[int, str] = (0, "")
        while time.monotonic() < deadline and process.poll() is None:
            try:
                answer = _probe(port, "/readyz")
            except OSError:
                answer = (0, "")
            if answer[0] == 200:
                break
            time.sleep(0.2)
        assert answer == (200, "standby for strongroom-operator-active\n"), answer
        assert _probe(port, "/healthz") == (200, "standby for strongroom-operator-active\n")
        # Its metrics, on their own port: a standby reconciles nothing.
        status, text = _probe(metrics_port, "/metrics")
        assert status == 200
        assert "strongroom_operator_active 0.0" in text
        assert 'strongroom_resources_not_ready{kind="Vault"} 0.0' in text
        assert _probe(port, "/metrics")[0] == 404  # not on the probes' port
        # It keeps looking: several reads, each with the kubeconfig's token; it never
        # writes a Lease that another replica holds.
        time.sleep(1)
        reads = [s for s in _LeaseServer.seen if s[0] == "GET" and s[1].startswith(LEASE_PATH)]
        assert len(reads) >= 3
        assert {auth for _, _, auth in _LeaseServer.seen} == {f"Bearer {TOKEN}"}
        assert not [s for s in _LeaseServer.seen if s[0] != "GET"]
        process.send_signal(signal.SIGTERM)
        _, log = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, log
    assert (
        "standing by for strongroom-operator-active, which holds Lease "
        f"{NS}/strongroom-operator; taking over if it is not renewed for 60s"
    ) in log
    assert log.count("standing by for") == 1, log
    assert "became active" not in log
    assert TOKEN not in log


def test_losing_the_lease_ends_the_process_at_once() -> None:
    script = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.INFO, stream=sys.stderr)\n"
        "from strongroom.operator.main import _stop_now\n"
        "_stop_now('someone-else holds it now')\n"
        "print('still running')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": str(ROOT / "operator")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3, result.stderr
    assert "still running" not in result.stdout
    assert "lost the Lease (someone-else holds it now): stopping at once" in result.stderr
