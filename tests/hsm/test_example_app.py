"""The quick start's signing application (examples/app/sign.py, the image of
examples/06-app-signs.yaml) runs against `strongroom dev`.

The script is run as it is shipped, pointed at the dev server through its environment;
only the SDK's challenge-domain check is turned off, which only `localhost` needs.
"""

import os
import subprocess
import sys
from pathlib import Path

from .conftest import Clients

APP = Path(__file__).resolve().parents[2] / "examples" / "app" / "sign.py"


def _for_localhost(script: str) -> str:
    old = "connection_verify=CA)"
    assert script.count(old) == 2, f"the example no longer has {old!r} twice"
    return script.replace(old, "connection_verify=CA, verify_challenge_resource=False)")


def test_the_example_application_signs_with_an_hsm_key(clients: Clients, tmp_path: Path) -> None:
    clients.keys.create_ec_key("signing", curve="P-256", hardware_protected=True)
    path = tmp_path / "sign.py"
    path.write_text(_for_localhost(APP.read_text()))
    environment = os.environ | {
        "VAULT_URL": clients.dev.url,
        "TOKEN_FILE": clients.dev.token_file,
        "CA_FILE": clients.dev.ca,
        "KEY_NAME": "signing",
    }
    environment.pop("SIGN_EVERY", None)
    result = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=60, env=environment
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"key {clients.dev.url}/keys/signing/" in result.stdout
    assert "verified: True" in result.stdout
