"""kill -9 at random points during mixed writes loses no acknowledged write, invents none,
tears no record and leaves no key in the HSM: the server and the sidecar, each in turn."""

import asyncio
import os
import random
import signal
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

from strongroom.hsm.client import HsmClient

from .conftest import DevServer, start_dev, stop_dev
from .tenants import Caller, start_tenants

THREADS = 4
NAMES = 12


@dataclass
class Ledger:
    """What the writers were told was done, and what they sent without an answer."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)  # name: {version: value}
    keys: dict[str, set[str]] = field(default_factory=dict)  # name: versions
    deleted: set[str] = field(default_factory=set)
    unanswered_values: set[str] = field(default_factory=set)
    unanswered_keys: int = 0
    acknowledged: int = 0


def _writer(dev: DevServer, ledger: Ledger, seed: int, stop: threading.Event) -> None:
    chance = random.Random(seed)
    caller = Caller(dev, "dev:admin")
    while not stop.is_set():
        roll = chance.random()
        name = f"n{chance.randrange(NAMES)}"
        value = uuid.uuid4().hex
        try:
            if roll < 0.6:
                response = caller.call("PUT", f"/secrets/{name}", {"value": value})
                if response.status_code == 200:
                    version = response.json()["id"].rsplit("/", 1)[1]
                    with ledger.lock:
                        ledger.secrets.setdefault(name, {})[version] = value
                        ledger.acknowledged += 1
            elif roll < 0.8:
                response = caller.call("POST", f"/keys/{name}/create", {"kty": "EC"})
                if response.status_code == 200:
                    version = response.json()["key"]["kid"].rsplit("/", 1)[1]
                    with ledger.lock:
                        ledger.keys.setdefault(name, set()).add(version)
                        ledger.acknowledged += 1
            elif roll < 0.9:
                response = caller.call("POST", f"/keys/{name}/rotate")
                if response.status_code == 200:
                    version = response.json()["key"]["kid"].rsplit("/", 1)[1]
                    with ledger.lock:
                        ledger.keys.setdefault(name, set()).add(version)
                        ledger.acknowledged += 1
            else:
                response = caller.call("DELETE", f"/secrets/{name}")
                if response.status_code == 200:
                    with ledger.lock:
                        ledger.deleted.add(name)
                        ledger.acknowledged += 1
        except requests.RequestException:
            with ledger.lock:
                if roll < 0.6:
                    ledger.unanswered_values.add(value)
                elif roll < 0.9:
                    ledger.unanswered_keys += 1
            time.sleep(0.05)


def _run_until(dev: DevServer, ledger: Ledger, target: int, kill: Callable[[], None]) -> None:
    stop = threading.Event()
    threads = [
        threading.Thread(target=_writer, args=(dev, ledger, random.random(), stop))
        for _ in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 300
    while ledger.acknowledged < target and time.monotonic() < deadline:
        time.sleep(0.01)
    kill()
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join(90)


def _sidecar_pid(dev: DevServer) -> int:
    return int((dev.state / "hsm.pid").read_text())


def _kill_all(dev: DevServer) -> None:
    os.killpg(dev.process.pid, signal.SIGKILL)
    dev.process.wait()


def test_kill_9_of_server_and_sidecar_during_writes_loses_nothing(tmp_path: Path) -> None:
    state, log = tmp_path / "state", tmp_path / "dev.log"
    ledger = Ledger()
    dev = start_tenants(state, log)
    chance = random.Random()
    # The whole pool at a random point.
    _run_until(dev, ledger, chance.randrange(250, 450), lambda: _kill_all(dev))
    dev = start_dev(state, log, keep=True)
    # The sidecar alone, the server going on (answering 503), then the server.
    first = ledger.acknowledged
    sidecar = _sidecar_pid(dev)
    _run_until(
        dev,
        ledger,
        first + chance.randrange(250, 450),
        lambda: os.kill(sidecar, signal.SIGKILL),
    )
    _kill_all(dev)
    dev = start_dev(state, log, keep=True)
    second = ledger.acknowledged
    _run_until(dev, ledger, second + 1000 - second, lambda: _kill_all(dev))
    assert ledger.acknowledged >= 1000
    dev = start_dev(state, log, keep=True)
    try:
        _verify(dev, ledger, state)
    finally:
        stop_dev(dev)


def _listed_versions(dev: DevServer, caller: Caller, path: str, field: str) -> set[str]:
    """Every version the vault lists at `path`, following nextLink, each page a 200."""
    listed = caller.call("GET", path)
    assert listed.status_code == 200, listed.text
    present = {item[field].rsplit("/", 1)[1] for item in listed.json()["value"]}
    while listed.json().get("nextLink"):
        listed = caller.session.get(listed.json()["nextLink"], timeout=60, verify=dev.ca)
        assert listed.status_code == 200, listed.text
        present |= {item[field].rsplit("/", 1)[1] for item in listed.json()["value"]}
    return present


def _verify(dev: DevServer, ledger: Ledger, state: Path) -> None:
    caller = Caller(dev, "dev:admin")
    with sqlite3.connect(state / "records" / "records.db") as db:
        stored_versions = dict(
            db.execute(
                "SELECT kind || '/' || name, count(*) FROM versions WHERE vault='dev' "
                "GROUP BY kind, name"
            ).fetchall()
        )
    for name, versions in ledger.secrets.items():
        if name in ledger.deleted:
            deleted = caller.call("GET", f"/deletedsecrets/{name}")
            live = caller.call("GET", f"/secrets/{name}")
            # Deleted, or set again after the delete (a set on a deleted name is refused,
            # so only a delete that was undone by nothing): it must be one of the two.
            assert deleted.status_code == 200 or live.status_code == 200, name
            continue
        present = _listed_versions(dev, caller, f"/secrets/{name}/versions", "id")
        assert set(versions) <= present, f"secret {name}: acknowledged versions lost"
        assert stored_versions.get(f"secret/{name}") == len(present), f"secret {name}: torn"
        for version in present:
            got = caller.call("GET", f"/secrets/{name}/{version}")
            assert got.status_code == 200, got.text
            value = got.json()["value"]
            assert versions.get(version) == value or value in ledger.unanswered_values
    extra_keys = 0
    for name, versions in ledger.keys.items():
        present = _listed_versions(dev, caller, f"/keys/{name}/versions", "kid")
        assert versions <= present, f"key {name}: acknowledged versions lost"
        assert stored_versions.get(f"key/{name}") == len(present), f"key {name}: torn"
        extra_keys += len(present - versions)
        for version in present:  # each loads from its wrapped blob and signs
            signed = caller.call(
                "POST", f"/keys/{name}/{version}/sign", {"alg": "ES256", "value": "A" * 43}
            )
            assert signed.status_code == 200, signed.text
    assert extra_keys <= ledger.unanswered_keys

    async def token_keys() -> list[str]:
        client = HsmClient(dev.state / "hsm.sock")
        try:
            return await client.token_key_ids("dev")
        finally:
            await client.close()

    assert asyncio.run(token_keys()) == []
