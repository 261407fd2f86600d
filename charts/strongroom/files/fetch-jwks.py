"""Fetch the cluster's ServiceAccount issuer keys (JWKS) for `strongroom csi-node --jwks-file`.

The CSI node plugin's pod runs it with a token of the plugin's own ServiceAccount,
mounted in its containers only, never in the plugin's:

- `python fetch-jwks.py OUTPUT`: once, in the init container, before the plugin starts;
- `python fetch-jwks.py OUTPUT --watch REQUEST`: in the `jwks-refresh` container,
  fetching again each time the plugin touches REQUEST (`csi-node --jwks-refresh-request`:
  every few minutes, and when a token names a key id the plugin does not know), at most
  once per --min-interval seconds. Each successful fetch rewrites OUTPUT, which is the
  plugin's answer; a failed one leaves OUTPUT as it was, and the plugin keeps its keys.
"""

import argparse
import json
import os
import ssl
import sys
import time
import urllib.request
from collections.abc import Callable
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


def fetch_once(api: str, output: Path) -> dict[str, Any]:
    """Fetch with the mounted token (the kubelet renews it in place) and write `output`."""
    token = (CREDENTIALS / "token").read_text().strip()
    document = fetch_jwks(api, CREDENTIALS / "ca.crt", token)
    write_atomically(output, document)
    return document


def _asked_ns(request: Path) -> int:
    try:
        return request.stat().st_mtime_ns
    except OSError:
        return 0


def watch(
    fetch: Callable[[], dict[str, Any]],
    request: Path,
    min_interval: float,
    poll: float = 0.5,
    running: Callable[[], bool] = lambda: True,
    retry_interval: float = 2.0,
) -> None:
    """Fetch each time `request` is touched after the last fetch began, at most once per
    `min_interval` seconds after a fetch that worked, and once per `retry_interval` after
    one that failed (an API server restarting with a new signing key: the plugin asks again
    within seconds and wants the keys as soon as it answers), until `running()` is false.
    A request found at start (made while this container was starting or restarting) is
    answered."""
    handled, last, failed = 0, float("-inf"), False
    while running():
        asked = _asked_ns(request)
        interval = min(retry_interval, min_interval) if failed else min_interval
        if asked > handled and time.monotonic() - last >= interval:
            handled, last = asked, time.monotonic()
            try:
                document = fetch()
            except (OSError, ValueError) as exc:
                failed = True
                # The exception names the URL and the status, never the token.
                print(f"fetch-jwks: asked for fresh keys: {exc}", file=sys.stderr, flush=True)
            else:
                failed = False
                kids = sorted(str(k.get("kid")) for k in document["keys"] if isinstance(k, dict))
                print(
                    f"fetch-jwks: {len(document['keys'])} keys ({', '.join(kids[:8])})",
                    file=sys.stderr,
                    flush=True,
                )
        time.sleep(poll)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="fetch-jwks")
    parser.add_argument("output", type=Path)
    parser.add_argument("--watch", type=Path, metavar="REQUEST")
    parser.add_argument("--min-interval", type=float, default=10.0)
    args = parser.parse_args(argv[1:])
    api = api_url(dict(os.environ))
    if args.watch is not None:
        watch(lambda: fetch_once(api, args.output), args.watch, args.min_interval)
        return 0
    for attempt in range(1, ATTEMPTS + 1):
        try:
            document = fetch_once(api, args.output)
        except (OSError, ValueError) as exc:
            # The exception names the URL and the status, never the token.
            print(f"fetch-jwks: attempt {attempt}: {exc}", file=sys.stderr)
            time.sleep(2 * attempt)
            continue
        print(f"fetch-jwks: {len(document['keys'])} keys written to {args.output}", file=sys.stderr)
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
