"""Data-plane throughput, measured side by side in one run on one machine.

1. signs/s through the HTTPS API (16 keep-alive clients) vs a raw python-pkcs11
   loop, on the same token and the same key, for RSA-2048 and EC P-256;
2. secret GETs/s through the API vs a bare aiohttp endpoint serving a body of
   the same size over the same TLS set-up.

The load comes from a separate process. The raw loop runs after the vault
server and its sidecar have stopped, so only one process ever owns the token.

    python bench/dataplane.py [--seconds 10] [--clients 16]
"""

import argparse
import asyncio
import base64
import hashlib
import json
import multiprocessing
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import uvloop
from aiohttp import web

from strongroom import aio

GOALS = {"RSA-2048 sign": 0.8, "EC P-256 sign": 0.4, "secret GET": 0.7}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --- load generator (runs in its own process) --------------------------------------


async def _load(
    url: str, method: str, body: Any, token: str | None, ca: str, seconds: float, clients: int
) -> tuple[int, int]:
    context = ssl.create_default_context(cafile=ca)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    done = errors = 0
    deadline = time.monotonic() + seconds

    async def client() -> None:
        nonlocal done, errors
        connector = aiohttp.TCPConnector(limit=1, ssl=context)
        async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
            while time.monotonic() < deadline:
                async with session.request(method, url, json=body) as response:
                    await response.read()
                    if response.status == 200:
                        done += 1
                    else:
                        errors += 1

    await asyncio.gather(*(client() for _ in range(clients)))
    return done, errors


def _load_process(args: tuple[Any, ...], queue: "multiprocessing.Queue[tuple[int, int]]") -> None:
    queue.put(aio.run(_load(*args)))


def load(
    url: str, method: str, body: Any, token: str | None, ca: str, seconds: float, clients: int
) -> float:
    context = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[tuple[int, int]] = context.Queue()
    process = context.Process(
        target=_load_process, args=((url, method, body, token, ca, seconds, clients), queue)
    )
    process.start()
    done, errors = queue.get(timeout=seconds + 120)
    process.join()
    if errors:
        print(f"  ! {errors} requests failed against {url}", file=sys.stderr)
    return done / seconds


# --- the bare endpoint -------------------------------------------------------------------


def _bare_server(port: int, cert: str, key: str, body: bytes) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    # The same event loop the vault server runs on.
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(app, host="127.0.0.1", port=port, ssl_context=context, access_log=None, print=None)


# --- the raw PKCS#11 loop ------------------------------------------------------------------


def raw_signs(state: Path, version: str, mechanism_name: str, data: bytes, seconds: float) -> float:
    os.environ["SOFTHSM2_CONF"] = str(state / "hsm" / "softhsm2.conf")
    import pkcs11
    from pkcs11 import Attribute, KeyType, Mechanism
    from pkcs11.util.ec import encode_named_curve_parameters

    from strongroom.hsm.pins import read_pool_secret, user_pin

    lib = pkcs11.lib("/usr/lib/softhsm/libsofthsm2.so")
    token = lib.get_token(token_label="dev")  # noqa: S106 - a label, not a password
    pin = user_pin(read_pool_secret(state / "pool-secret"), "dev")
    with token.open(user_pin=pin) as session:
        # The vault's working keys are session objects of its server's sidecar; this loop
        # makes its own of the same kind in the same token, as the sidecar does.
        if mechanism_name == "ECDSA":
            params = encode_named_curve_parameters("secp256r1")
            _, key = session.generate_keypair(
                KeyType.EC, store=False, public_template={Attribute.EC_PARAMS: params}
            )
        else:
            _, key = session.generate_keypair(KeyType.RSA, 2048, store=False)
        mechanism = getattr(Mechanism, mechanism_name)
        count = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            key.sign(data, mechanism=mechanism)
            count += 1
    return count / seconds


def _raw_process(args: tuple[Any, ...], queue: "multiprocessing.Queue[float]") -> None:
    queue.put(raw_signs(*args))


def raw(*args: Any) -> float:
    # A fresh process, so that libsofthsm2 is loaded once, by this measurement alone.
    context = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[float] = context.Queue()
    process = context.Process(target=_raw_process, args=(args, queue))
    process.start()
    rate = queue.get(timeout=300)
    process.join()
    return rate


# --- the run -----------------------------------------------------------------------------


def start_dev(state: Path, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "strongroom.cli",
            "--log-level",
            "WARNING",
            "dev",
            "--state-dir",
            str(state),
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not (state / "dev.json").exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("strongroom dev did not start")
        time.sleep(0.1)
    return process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--secret-bytes", type=int, default=1024)
    args = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="strongroom-bench-")) / "state"
    port = free_port()
    dev = start_dev(state, port)
    info = json.loads((state / "dev.json").read_text())
    url, ca, token = info["vaultUrl"], info["caFile"], Path(info["tokenFile"]).read_text()
    context = ssl.create_default_context(cafile=ca)
    query = "?api-version=7.6"
    versions: dict[str, str] = {}
    secret_path = ""

    async def prepare() -> None:
        nonlocal secret_path
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            for name, body in (
                ("bench-rsa", {"kty": "RSA-HSM", "key_size": 2048}),
                ("bench-ec", {"kty": "EC-HSM", "crv": "P-256"}),
            ):
                async with session.post(
                    f"{url}/keys/{name}/create{query}", json=body, ssl=context
                ) as response:
                    versions[name] = (await response.json())["key"]["kid"].rsplit("/", 1)[1]
            value = "s" * args.secret_bytes
            async with session.put(
                f"{url}/secrets/bench-secret{query}", json={"value": value}, ssl=context
            ) as response:
                assert response.status == 200
            secret_path = f"/secrets/bench-secret{query}"

    asyncio.run(prepare())
    digest = hashlib.sha256(b"bench").digest()
    results: dict[str, tuple[float, float]] = {}
    api: dict[str, float] = {}
    for label, name, alg in (
        ("RSA-2048 sign", "bench-rsa", "RS256"),
        ("EC P-256 sign", "bench-ec", "ES256"),
    ):
        api[label] = load(
            f"{url}/keys/{name}/{versions[name]}/sign{query}",
            "POST",
            {"alg": alg, "value": b64(digest)},
            token,
            ca,
            args.seconds,
            args.clients,
        )
    api_get = load(url + secret_path, "GET", None, token, ca, args.seconds, args.clients)

    body = asyncio.run(_fetch(url + secret_path, token, context))
    os.killpg(dev.pid, signal.SIGTERM)
    dev.wait(30)

    bare_port = free_port()
    bare = multiprocessing.get_context("spawn").Process(
        target=_bare_server, args=(bare_port, str(state / "tls.crt"), str(state / "tls.key"), body)
    )
    bare.start()
    time.sleep(1.5)
    bare_get = load(
        f"https://localhost:{bare_port}/secrets/bench-secret",
        "GET",
        None,
        None,
        ca,
        args.seconds,
        args.clients,
    )
    bare.terminate()
    bare.join()

    rsa_info = bytes.fromhex("3031300d060960864801650304020105000420") + digest
    results["RSA-2048 sign"] = (
        api["RSA-2048 sign"],
        raw(state, versions["bench-rsa"], "RSA_PKCS", rsa_info, args.seconds),
    )
    results["EC P-256 sign"] = (
        api["EC P-256 sign"],
        raw(state, versions["bench-ec"], "ECDSA", digest, args.seconds),
    )
    results["secret GET"] = (api_get, bare_get)

    print(
        f"\nstrongroom data plane, {args.clients} keep-alive clients, {args.seconds:.0f} s "
        f"each, {os.cpu_count()} cores, secret body {len(body)} bytes\n"
    )
    print(f"{'measure':<16}{'API /s':>10}{'baseline /s':>14}{'ratio':>8}{'goal':>7}  baseline")
    baselines = {
        "RSA-2048 sign": "raw python-pkcs11 loop, same key",
        "EC P-256 sign": "raw python-pkcs11 loop, same key",
        "secret GET": "bare aiohttp endpoint, same body",
    }
    for label, (measured, baseline) in results.items():
        ratio = measured / baseline if baseline else 0.0
        verdict = "met" if ratio >= GOALS[label] else "missed"
        print(
            f"{label:<16}{measured:>10.0f}{baseline:>14.0f}{ratio:>8.2f}{GOALS[label]:>6.1f}"
            f"  {baselines[label]} ({verdict})"
        )


async def _fetch(url: str, token: str, context: ssl.SSLContext) -> bytes:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:
        async with session.get(url, ssl=context) as response:
            return await response.read()


if __name__ == "__main__":
    main()
