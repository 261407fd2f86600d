"""What the later cluster and e2e tests rely on: the strongroom image runs,
Service DNS resolves, ServiceAccount tokens are audience-bound, and the API
server validates what it is given."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from .kube import Kube

pytestmark = pytest.mark.cluster

AUDIENCE = "strongroom-test"
TOKEN_DIR = "/var/run/secrets/strongroom"


def pod(kube: Kube, name: str, command: list[str], **spec: Any) -> dict[str, Any]:
    labels = spec.pop("labels", {})
    container = {
        "name": "main",
        "image": kube.image,
        "imagePullPolicy": "Never",
        "command": command,
    }
    container.update(spec.pop("container", {}))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [container],
            **spec,
        },
    }


SLEEP = ["python3", "-c", "import time; time.sleep(3600)"]


def test_image_runs_and_its_log_is_read_back(kube: Kube) -> None:
    kube.apply(pod(kube, "help", command=["strongroom", "--help"]))

    kube.wait_for_pod("help", {"Succeeded"})

    assert "usage" in kube.logs("help").lower()


def test_pod_reaches_another_pod_through_a_service_by_dns_name(kube: Kube) -> None:
    marker = "served by strongroom"
    server = (
        "import http.server\n"
        "class Reply(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(200); self.end_headers()\n"
        f"        self.wfile.write(b'{marker}')\n"
        "http.server.HTTPServer(('', 8080), Reply).serve_forever()\n"
    )
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "echo"},
        "spec": {"selector": {"app": "echo"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    kube.apply(
        service,
        pod(
            kube,
            "echo",
            command=["python3", "-c", server],
            labels={"app": "echo"},
            container={"readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}},
        ),
    )
    kube.wait_until_ready("echo")
    # The short name goes through the pod's DNS search path, the long one does not.
    client = (
        "import sys, time, urllib.request\n"
        "for name in sys.argv[1:]:\n"
        "    for attempt in range(30):\n"
        "        try:\n"
        "            reply = urllib.request.urlopen(f'http://{name}/', timeout=2).read()\n"
        "            print(name, reply.decode()); break\n"
        "        except OSError as error:\n"
        "            print(name, 'retrying:', error, file=sys.stderr); time.sleep(1)\n"
        "    else:\n"
        "        sys.exit(1)\n"
    )
    fqdn = f"echo.{kube.namespace}.svc.cluster.local"
    kube.apply(pod(kube, "client", command=["python3", "-c", client, fqdn, "echo"]))

    kube.wait_for_pod("client", {"Succeeded"})

    log = kube.logs("client")
    assert f"{fqdn} {marker}" in log
    assert f"echo {marker}" in log


def review(kube: Kube, token: str, audiences: list[str]) -> dict[str, Any]:
    status: dict[str, Any] = kube.create(
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token, "audiences": audiences},
        }
    )["status"]
    return status


def jwt_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


def test_projected_token_is_bound_to_its_audience(kube: Kube) -> None:
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader"}}
    token_volume = {
        "name": "token",
        "projected": {
            "sources": [
                {
                    "serviceAccountToken": {
                        "audience": AUDIENCE,
                        "expirationSeconds": 600,
                        "path": "token",
                    }
                }
            ]
        },
    }
    kube.apply(
        account,
        pod(
            kube,
            "holder",
            command=SLEEP,
            serviceAccountName="reader",
            volumes=[token_volume],
            container={
                "volumeMounts": [{"name": "token", "mountPath": TOKEN_DIR, "readOnly": True}]
            },
        ),
    )
    kube.wait_until_ready("holder")

    token = kube.run("exec", "holder", "--", "cat", f"{TOKEN_DIR}/token").stdout.strip()

    claims = jwt_claims(token)
    assert claims["aud"] == [AUDIENCE]
    assert claims["kubernetes.io"]["pod"]["name"] == "holder"
    accepted = review(kube, token, [AUDIENCE])
    assert accepted.get("authenticated") is True, accepted
    assert accepted["user"]["username"] == f"system:serviceaccount:{kube.namespace}:reader"
    assert accepted["audiences"] == [AUDIENCE]
    rejected = review(kube, token, ["some-other-audience"])
    assert not rejected.get("authenticated"), rejected
    # Without audiences the API server checks its own, which this token is not for.
    assert not review(kube, token, []).get("authenticated")


def test_token_request_issues_tokens_for_a_custom_audience(kube: Kube) -> None:
    kube.apply({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "caller"}})

    token = kube.run(
        "create", "token", "caller", "--audience", AUDIENCE, "--duration", "10m"
    ).stdout.strip()

    assert review(kube, token, [AUDIENCE])["authenticated"] is True
    assert not review(kube, token, ["some-other-audience"]).get("authenticated")


def test_server_side_dry_run_rejects_an_invalid_object(kube: Kube) -> None:
    valid = pod(kube, "valid", command=SLEEP)
    invalid = pod(kube, "Not_A_Valid_Name", command=SLEEP)
    invalid["spec"]["containers"][0]["image"] = ""

    accepted = kube.run("apply", "--dry-run=server", "--filename", "-", stdin=json.dumps(valid))
    rejected = kube.run(
        "apply", "--dry-run=server", "--filename", "-", stdin=json.dumps(invalid), check=False
    )

    assert "created (server dry run)" in accepted.stdout
    assert rejected.returncode != 0
    assert "is invalid" in rejected.stderr
    assert "metadata.name" in rejected.stderr
    assert "image" in rejected.stderr
    # A dry run stores nothing.
    assert kube.run("get", "pod", "valid", check=False).returncode != 0
