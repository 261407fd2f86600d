"""Fetch the cluster's ServiceAccount issuer keys (JWKS) for `strongroom csi-node --jwks-file`.

The CSI node plugin's init container runs it with a token of the plugin's own
ServiceAccount, mounted in that container only: `python -c <this> <output file>`.
"""

import json
import os
import ssl
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

CREDENTIALS = Path("/var/run/secrets/kubernetes.io/serviceaccount")
ATTEMPTS = 5


def fetch_jwks(api: str, ca_file: Path, token: str, timeout: float = 10.0) -> dict[str, Any]:
    """The issuer's JWKS as the API server serves it; refuses a document without keys."""
    context = ssl.create_default_context(cafile=str(ca_file))
    # The API server serves this document as application/jwk-set+json only: asking for
    # application/json gets 406 Not Acceptable.
    request = urllib.request.Request(  # noqa: S310 - an https:// URL built here
        f"{api}/openid/v1/jwks",
        headers={"Authorization": f"Bearer {token}", "Accept": "application/jwk-set+json"},
    )
    with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310
        document: object = json.load(response)
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("the API server's JWKS document has no list of keys")
    if not document["keys"]:
        raise ValueError("the API server's JWKS document has no keys")
    return document


def api_url(environ: dict[str, str]) -> str:
    host = environ["KUBERNETES_SERVICE_HOST"]
    port = environ.get("KUBERNETES_SERVICE_PORT", "443")
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


def write_atomically(path: Path, document: dict[str, Any]) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(document))
    os.replace(partial, path)


def main(argv: list[str]) -> int:
    output = Path(argv[1])
    api = api_url(dict(os.environ))
    for attempt in range(1, ATTEMPTS + 1):
        try:
            token = (CREDENTIALS / "token").read_text().strip()
            document = fetch_jwks(api, CREDENTIALS / "ca.crt", token)
        except (OSError, ValueError) as exc:
            # The exception names the URL and the status, never the token.
            print(f"fetch-jwks: attempt {attempt}: {exc}", file=sys.stderr)
            time.sleep(2 * attempt)
            continue
        write_atomically(output, document)
        print(f"fetch-jwks: {len(document['keys'])} keys written to {output}", file=sys.stderr)
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
