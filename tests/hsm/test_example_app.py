"""The quick start's signing application (examples/06-app-signs.yaml) runs against `strongroom dev`.

The script is run as it is shipped, with only its vault address, token and CA
pointed at the dev server (and the SDK's challenge-domain check off, which only
`localhost` needs).
"""

import subprocess
import sys
from pathlib import Path

import yaml

from .conftest import Clients

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "06-app-signs.yaml"


def _script() -> str:
    for document in yaml.safe_load_all(EXAMPLE.read_text()):
        if document and document["kind"] == "ConfigMap":
            script: str = document["data"]["sign.py"]
            return script
    raise AssertionError("examples/06-app-signs.yaml has no ConfigMap with sign.py")


def _pointed_at(script: str, url: str, token: str, ca: str) -> str:
    replacements = {
        'VAULT_URL = "https://demo-vault.demo.svc"': f'VAULT_URL = "{url}"',
        'TOKEN = Path("/var/run/secrets/strongroom.io/token")': f'TOKEN = Path("{token}")',
        'CA = "/etc/strongroom/ca.crt"': f'CA = "{ca}"',
        "connection_verify=CA)": "connection_verify=CA, verify_challenge_resource=False)",
    }
    for old, new in replacements.items():
        assert old in script, f"the example no longer has {old!r}"
        script = script.replace(old, new)
    return script


def test_the_example_application_signs_with_an_hsm_key(clients: Clients, tmp_path: Path) -> None:
    clients.keys.create_ec_key("signing", curve="P-256", hardware_protected=True)
    path = tmp_path / "sign.py"
    path.write_text(_pointed_at(_script(), clients.dev.url, clients.dev.token_file, clients.dev.ca))
    result = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"key {clients.dev.url}/keys/signing/" in result.stdout
    assert "verified: True" in result.stdout
