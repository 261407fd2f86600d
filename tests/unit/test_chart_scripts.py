"""The chart's in-image scripts: the CSI node plugin's JWKS fetch and the `helm test` checks."""

import importlib.util
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from strongroom.tls import issue_server_cert, make_ca, write_pair

FILES = Path(__file__).resolve().parents[2] / "charts" / "strongroom" / "files"
TOKEN = "header.claims.signature"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name.replace("-", "_"), FILES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fetch_jwks = _load("fetch-jwks")
check_install = _load("check-install")


class _ApiServer(BaseHTTPRequestHandler):
    document: Any = {"keys": [{"kty": "RSA", "kid": "k1", "n": "AQAB", "e": "AQAB"}]}

    def do_GET(self) -> None:  # noqa: N802
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self.send_response(401)
            self.end_headers()
            return
        if self.path != "/openid/v1/jwks":
            self.send_response(404)
            self.end_headers()
            return
        body = json.dumps(self.document).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def api_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    ca = make_ca("test API server CA")
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    write_pair(issue_server_cert(ca, ["127.0.0.1"]), tmp_path / "tls.crt", tmp_path / "tls.key")
    server = HTTPServer(("127.0.0.1", 0), _ApiServer)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}", tmp_path / "ca.crt"
    server.shutdown()
    server.server_close()


def test_the_jwks_is_fetched_with_the_token_and_the_cluster_ca(
    api_server: tuple[str, Path], tmp_path: Path
) -> None:
    url, ca = api_server
    document = fetch_jwks.fetch_jwks(url, ca, TOKEN)
    assert document == _ApiServer.document
    output = tmp_path / "jwks.json"
    fetch_jwks.write_atomically(output, document)
    assert json.loads(output.read_text()) == document
    assert [p.name for p in tmp_path.glob("jwks.json*")] == ["jwks.json"]


def test_a_refused_token_or_an_untrusted_server_fails_without_the_token_in_the_message(
    api_server: tuple[str, Path], tmp_path: Path
) -> None:
    url, ca = api_server
    with pytest.raises(OSError) as refused:
        fetch_jwks.fetch_jwks(url, ca, "another.token.value")
    assert "401" in str(refused.value) and "another" not in str(refused.value)
    (tmp_path / "other-ca.crt").write_bytes(make_ca("someone else").cert_pem)
    with pytest.raises(OSError):
        fetch_jwks.fetch_jwks(url, tmp_path / "other-ca.crt", TOKEN)


def test_a_document_without_keys_is_refused(
    api_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, ca = api_server
    for document in ({"keys": []}, {"nokeys": 1}, ["keys"]):
        monkeypatch.setattr(_ApiServer, "document", document)
        with pytest.raises(ValueError, match="no"):
            fetch_jwks.fetch_jwks(url, ca, TOKEN)


def test_the_api_url_comes_from_the_service_environment() -> None:
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    assert fetch_jwks.api_url(env) == "https://10.96.0.1:443"
    assert fetch_jwks.api_url({"KUBERNETES_SERVICE_HOST": "fd00::1"}) == "https://[fd00::1]:443"


NS = "strongroom-system"
HEALTHY: dict[str, Any] = {
    f"/apis/apps/v1/namespaces/{NS}/deployments/op": {
        "status": {"readyReplicas": 2, "replicas": 2}
    },
    f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/op": {
        "spec": {
            "holderIdentity": "op-7d9-abcde",
            "leaseDurationSeconds": 10,
            "renewTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
    },
    f"/apis/apps/v1/namespaces/{NS}/daemonsets/csi": {
        "status": {"desiredNumberScheduled": 2, "numberReady": 2}
    },
    "/apis/storage.k8s.io/v1/csidrivers/csi.strongroom.io": {
        "spec": {"tokenRequests": [{"audience": "strongroom.io/vault"}]}
    },
    "/apis/storage.k8s.io/v1/csinodes": {
        "items": [
            {"metadata": {"name": n}, "spec": {"drivers": [{"name": "csi.strongroom.io"}]}}
            for n in ("node-a", "node-b")
        ]
    },
}


def _api(monkeypatch: pytest.MonkeyPatch, answers: dict[str, Any]) -> None:
    def get(path: str) -> Any:
        if path not in answers:
            raise check_install.NotYet(f"GET {path}: HTTP 404")
        return answers[path]

    monkeypatch.setattr(check_install, "get", get)


def test_helm_test_passes_on_a_healthy_installation(monkeypatch: pytest.MonkeyPatch) -> None:
    _api(monkeypatch, HEALTHY)
    lines = check_install.check(NS, "op", "csi", "csi.strongroom.io")
    assert lines[:2] == [
        "Deployment op: 2 of 2 replicas ready",
        "Lease op: held by op-7d9-abcde, the active replica",
    ]
    assert lines[-1] == "CSIDriver csi.strongroom.io: registered with the kubelet on node-a, node-b"


def test_helm_test_allows_for_clocks_a_little_apart_but_not_a_dead_holder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    renewed = datetime(2026, 3, 1, 12, 0, 0, 500000, tzinfo=UTC)
    lease = {
        "spec": {
            "holderIdentity": "op-a",
            "leaseDurationSeconds": 30,
            "renewTime": "2026-03-01T12:00:00.500000Z",
        }
    }
    _api(monkeypatch, {f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/op": lease})
    assert check_install.lease_held(NS, "op", renewed + timedelta(seconds=90)).endswith(
        "op-a, the active replica"
    )
    with pytest.raises(check_install.NotYet, match="not renewed it for 91s"):
        check_install.lease_held(NS, "op", renewed + timedelta(seconds=91))


@pytest.mark.parametrize(
    ("path", "answer", "reason"),
    [
        (f"/apis/apps/v1/namespaces/{NS}/deployments/op", {"status": {}}, "no ready replica"),
        (f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/op", None, "HTTP 404"),
        (
            f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/op",
            {"spec": {"leaseDurationSeconds": 1, "renewTime": "2026-01-01T00:00:00.000000Z"}},
            "no replica holds it",
        ),
        (
            f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/op",
            {
                "spec": {
                    "holderIdentity": "op-dead",
                    "leaseDurationSeconds": 10,
                    "renewTime": "2020-01-01T00:00:00.000000Z",
                }
            },
            "op-dead holds it but has not renewed it for",
        ),
        (
            f"/apis/apps/v1/namespaces/{NS}/daemonsets/csi",
            {"status": {"desiredNumberScheduled": 2, "numberReady": 1}},
            "1 of 2 pods ready",
        ),
        (
            f"/apis/apps/v1/namespaces/{NS}/daemonsets/csi",
            {"status": {"desiredNumberScheduled": 0}},
            "scheduled on no node",
        ),
        ("/apis/storage.k8s.io/v1/csidrivers/csi.strongroom.io", None, "HTTP 404"),
        ("/apis/storage.k8s.io/v1/csidrivers/csi.strongroom.io", {"spec": {}}, "audience"),
        ("/apis/storage.k8s.io/v1/csinodes", {"items": []}, "registered on 0 of 2 nodes"),
    ],
)
def test_helm_test_fails_and_says_why(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    path: str,
    answer: Any,
    reason: str,
) -> None:
    answers = dict(HEALTHY)
    if answer is None:
        del answers[path]
    else:
        answers[path] = answer
    _api(monkeypatch, answers)
    monkeypatch.setattr(check_install, "DEADLINE_SECONDS", 0)
    monkeypatch.setattr(check_install.time, "sleep", lambda _: None)
    assert check_install.main(["check-install.py", NS, "op", "csi", "csi.strongroom.io"]) == 1
    assert reason in capsys.readouterr().err


def test_the_watching_fetcher_answers_each_request_at_most_once_per_interval(
    api_server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, ca = api_server
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "token").write_text(TOKEN + "\n")
    (credentials / "ca.crt").write_bytes(ca.read_bytes())
    monkeypatch.setattr(fetch_jwks, "CREDENTIALS", credentials)
    output, request = tmp_path / "jwks.json", tmp_path / "refresh"
    fetches: list[float] = []

    def fetch() -> dict[str, Any]:
        started = time.monotonic()
        try:
            document: dict[str, Any] = fetch_jwks.fetch_once(url, output)
        finally:
            fetches.append(started)  # once the fetch is over, written or failed
        return document

    stop = threading.Event()
    watcher = threading.Thread(
        target=fetch_jwks.watch,
        args=(fetch, request, 1.0),
        kwargs={"poll": 0.02, "running": lambda: not stop.is_set(), "retry_interval": 0.2},
        daemon=True,
    )
    watcher.start()
    try:
        time.sleep(0.2)
        assert fetches == [] and not output.exists()  # nothing asked, nothing fetched
        request.touch()
        _wait_for(lambda: len(fetches) == 1)
        assert json.loads(output.read_text()) == _ApiServer.document
        # Asked again at once: answered once the interval has passed, not before.
        first = output.stat().st_ino
        time.sleep(0.05)
        request.touch()
        _wait_for(lambda: len(fetches) == 2, timeout=5)
        assert fetches[1] - fetches[0] >= 1.0
        assert output.stat().st_ino != first  # a new file: the plugin's sign of an answer
        # A failed fetch leaves the keys there are.
        monkeypatch.setattr(_ApiServer, "document", {"keys": []})
        before = output.read_text()
        time.sleep(0.05)
        request.touch()
        _wait_for(lambda: len(fetches) == 3, timeout=5)
        assert output.read_text() == before
        # After a failed fetch, a request is answered after the retry interval (0.2 s),
        # not the full one (1 s): the keys are wanted as soon as the API server answers.
        monkeypatch.setattr(_ApiServer, "document", {"keys": [{"kty": "EC", "kid": "k3"}]})
        request.touch()
        _wait_for(lambda: len(fetches) == 4, timeout=5)
        assert 0.2 <= fetches[3] - fetches[2] < 0.9
        assert json.loads(output.read_text())["keys"][0]["kid"] == "k3"
    finally:
        stop.set()
        watcher.join(timeout=5)
    assert not watcher.is_alive()

    # Restarted with a request made meanwhile: it is answered.
    output.unlink()
    stop.clear()
    restarted = threading.Thread(
        target=fetch_jwks.watch,
        args=(fetch, request, 1.0),
        kwargs={"poll": 0.02, "running": lambda: not stop.is_set()},
        daemon=True,
    )
    monkeypatch.setattr(_ApiServer, "document", {"keys": [{"kty": "EC", "kid": "k2"}]})
    restarted.start()
    try:
        _wait_for(output.exists)
    finally:
        stop.set()
        restarted.join(timeout=5)
    assert json.loads(output.read_text())["keys"][0]["kid"] == "k2"


def _wait_for(done: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
