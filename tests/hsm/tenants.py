"""A `strongroom dev` with two vaults and narrow subjects, for the attack tests.

Vault `dev` answers at `localhost`, vault `other` at `other.localhost` (sent as
the Host header over the same TLS connection). Subjects: `dev:admin` (all),
`dev:encrypt-only` (keys: encrypt), `dev:decrypter` (keys: get, decrypt,
unwrapKey), `dev:writer` (keys: create, update, get; secrets: set, get, list).
"""

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from strongroom.dev import prepare

from .conftest import DevServer, start_dev

API = "?api-version=7.6"
OTHER_HOST = "other.localhost"

ACCESS = [
    {"subject": "dev:admin", "keys": ["all"], "secrets": ["all"]},
    {"subject": "dev:encrypt-only", "keys": ["encrypt"]},
    {"subject": "dev:decrypter", "keys": ["get", "decrypt", "unwrapKey"]},
    {"subject": "dev:writer", "keys": ["create", "update", "get"], "secrets": ["set", "get"]},
]


def start_tenants(state: Path, log: Path) -> DevServer:
    """Lay out a dev state directory with both vaults, then serve it."""
    prepare(state, 0)
    config_file = state / "config.json"
    config = json.loads(config_file.read_text())
    dev_vault = config["vaults"][0]
    dev_vault["hosts"] = ["localhost"]
    dev_vault["access"] = ACCESS
    config["vaults"].append(
        {"name": "other", "hosts": [OTHER_HOST], "retentionDays": 7, "access": ACCESS}
    )
    config_file.write_text(json.dumps(config))
    return start_dev(state, log, keep=True)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Caller:
    """Raw HTTPS calls as one subject, to vault `dev` or (other=True) vault `other`."""

    def __init__(self, dev: DevServer, subject: str) -> None:
        self.dev = dev
        self.session = requests.Session()
        self.session.verify = dev.ca
        self.session.headers["Authorization"] = f"Bearer {dev.issue(subject)}"

    def call(
        self, method: str, path: str, body: Any = None, *, other: bool = False
    ) -> requests.Response:
        headers = {"Content-Type": "application/json"}
        if other:
            headers["Host"] = f"{OTHER_HOST}:{urlsplit(self.dev.url).port}"
        return self.session.request(
            method,
            self.dev.url + path + API,
            json=body,
            headers=headers,
            timeout=60,
            verify=self.dev.ca,
        )


def ok(response: requests.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json() if response.content else {}
    return body


def refused(response: requests.Response, status: int = 400) -> str:
    assert response.status_code == status, response.text
    message: str = response.json()["error"]["message"]
    assert message
    return message
