"""The hashed lock files cover what pyproject.toml asks for, at versions it admits.

scripts/setup and the image builds install only from these files with
`pip install --require-hashes`; scripts/lock writes them.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
RUNTIME = ROOT / "requirements.lock"
TEST = ROOT / "requirements-test.lock"
BUILD = ROOT / "requirements-build.lock"
EXAMPLE_APP = ROOT / "examples" / "app" / "requirements.lock"
LOCKS = (RUNTIME, TEST, BUILD, EXAMPLE_APP)
RUNTIME_DEPENDENCIES: list[str] = PYPROJECT["project"]["dependencies"]
TEST_DEPENDENCIES: list[str] = PYPROJECT["project"]["optional-dependencies"]["test"]
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)(?P<rest>.*)$")
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Pin:
    name: str
    version: Version
    hashes: tuple[str, ...]


def entries(path: Path) -> list[str]:
    """The requirement entries of a requirements file, continuation lines joined, comments
    dropped."""
    joined = re.sub(r"\\\n", " ", path.read_text())
    lines = (line.split("#", 1)[0].strip() for line in joined.splitlines())
    return [line for line in lines if line]


def pins(path: Path) -> dict[str, Pin]:
    found: dict[str, Pin] = {}
    for entry in entries(path):
        match = PIN.match(entry)
        assert match, f"{path.name}: not pinned with ==: {entry[:80]}"
        name = canonicalize_name(match["name"])
        assert name not in found, f"{path.name}: {name} pinned twice"
        found[name] = Pin(name, Version(match["version"]), tuple(HASH.findall(match["rest"])))
    return found


@pytest.mark.parametrize("lock", LOCKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_entry_is_pinned_with_hashes_only(lock: Path) -> None:
    found = pins(lock)
    assert found, f"{lock.name} pins nothing"
    for entry in entries(lock):
        # Nothing but the pin and its hashes: no index, no link, no option that would
        # loosen --require-hashes.
        match = PIN.match(entry)
        assert match and HASH.sub("", match["rest"]).strip() == "", (
            f"{lock.name}: unexpected text in {entry[:80]}"
        )
    for pin in found.values():
        assert pin.hashes, f"{lock.name}: {pin.name} has no --hash=sha256"


@pytest.mark.parametrize(
    ("lock", "wanted"),
    [
        (RUNTIME, RUNTIME_DEPENDENCIES),
        (TEST, RUNTIME_DEPENDENCIES + TEST_DEPENDENCIES),
        (BUILD, PYPROJECT["build-system"]["requires"]),
        (
            EXAMPLE_APP,
            entries(ROOT / "examples" / "app" / "requirements.in"),
        ),
    ],
    ids=["runtime", "test", "build", "example-app"],
)
def test_the_lock_pins_every_requirement_at_a_version_it_admits(
    lock: Path, wanted: list[str]
) -> None:
    locked = pins(lock)
    for text in wanted:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{lock.name} lacks {requirement.name}"
        version = locked[name].version
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{lock.name} pins {name}=={version}, outside pyproject's {requirement}"
        )


def test_the_test_lock_keeps_every_runtime_pin() -> None:
    runtime, test = pins(RUNTIME), pins(TEST)
    for name, pin in runtime.items():
        assert name in test, f"{TEST.name} lacks the runtime dependency {name}"
        assert test[name].version == pin.version, f"{name}: {pin.version} vs {test[name].version}"
        assert set(test[name].hashes) == set(pin.hashes), f"{name}: the hashes differ"


def test_the_test_vectors_are_those_of_the_locked_cryptography() -> None:
    """tests/unit/test_rsapad.py reads pyca's published vectors: the release made with the
    cryptography the package runs on."""
    test = pins(TEST)
    assert test["cryptography-vectors"].version == test["cryptography"].version


@pytest.mark.parametrize("other", [BUILD, EXAMPLE_APP], ids=["build", "example-app"])
def test_packages_shared_with_the_test_lock_have_its_versions(other: Path) -> None:
    """setup installs the build lock into the test virtualenv, and the example app uses the
    SDK the e2e tests use: one version of each package."""
    test = pins(TEST)
    for name, pin in pins(other).items():
        if name in test:
            assert test[name].version == pin.version, f"{name}: {pin.version} vs test's"


def test_setup_and_the_image_builds_install_from_the_locks_with_hashes() -> None:
    setup = (ROOT / "scripts" / "setup").read_text()
    assert "--require-hashes" in setup
    assert "requirements-test.lock" in setup and "requirements-build.lock" in setup
    assert re.search(r"--no-deps --no-build-isolation -e", setup)
    build_image = (ROOT / "e2e" / "build-image").read_text()
    dockerfile = (ROOT / "e2e" / "Dockerfile").read_text()
    for text in (build_image, dockerfile):
        assert "--require-hashes" in text and "requirements.lock" in text
        assert "--no-deps" in text
    base = [line for line in dockerfile.splitlines() if line.startswith("FROM ")]
    assert base and all(re.search(r"@sha256:[0-9a-f]{64}\b", line) for line in base), base
