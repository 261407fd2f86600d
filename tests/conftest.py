"""Each test is marked with its tier, named after its folder: unit, hsm, cluster or e2e."""

from pathlib import Path

import pytest

TIERS = ("unit", "hsm", "cluster", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = Path(str(item.fspath)).parent.name
        if tier in TIERS and tier != "unit":
            item.add_marker(getattr(pytest.mark, tier))
