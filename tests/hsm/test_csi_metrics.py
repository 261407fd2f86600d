"""The CSI node plugin's metrics endpoint, scraped over HTTP while the real plugin publishes
from `strongroom dev` into tmpfs: publishes and their failures by status, mount and refresh
latency, rotations, vault fetches and shared fetches move by exactly what was done, and no
value, object name, token or path reaches the output."""

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from .conftest import DevServer, free_port
from .test_csi_node import (
    SHARE_SECONDS,
    Listener,
    Plugin,
    context,
    publish,
    running_plugin,
    unpublish,
)
from .test_metrics import delta, scrape, scrape_text

SECRET = "csi-metrics-canary-name-8d2e"
VALUE_1 = "csi-metrics-canary-value-one-41f7"
VALUE_2 = "csi-metrics-canary-value-two-92c3"
OBJECTS = [{"kind": "secret", "name": SECRET, "path": "value"}]


@pytest.fixture(scope="module")
def metered(
    dev: DevServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Plugin, str]]:
    port = free_port()
    base = tmp_path_factory.mktemp("csi-metrics")
    extra = ("--metrics-port", str(port), "--metrics-address", "127.0.0.1")
    foreign = Listener()
    try:
        with running_plugin(dev, foreign, base, extra) as running:
            yield running, f"http://127.0.0.1:{port}/metrics"
    finally:
        foreign.close()


def test_publishes_rotations_and_fetches_are_counted(
    metered: tuple[Plugin, str], dev: DevServer, clients: Any, tmp_path: Path
) -> None:
    plugin, url = metered
    clients.secrets.set_secret(SECRET, VALUE_1)
    token = dev.issue("dev:reader")
    target = tmp_path / "mount"
    volume = context(dev, OBJECTS, token)

    before = scrape(url)
    publish(plugin, target, volume)  # the first publish: one vault call
    publish(plugin, target, volume)  # a republish within the share time: from the cache
    after = scrape(url)
    assert (target / "value").read_text() == VALUE_1
    assert delta(before, after, "strongroom_csi_publishes_total", code="OK") == 2
    assert delta(before, after, "strongroom_csi_vault_fetches_total") == 1
    assert delta(before, after, "strongroom_csi_shared_fetches_total", source="cache") == 1
    seconds = "strongroom_csi_publish_duration_seconds_count"
    assert delta(before, after, seconds, kind="mount") == 1
    assert delta(before, after, seconds, kind="refresh") == 1
    assert delta(before, after, "strongroom_csi_rotations_total") == 0

    clients.secrets.set_secret(SECRET, VALUE_2)
    time.sleep(SHARE_SECONDS + 0.5)
    before = scrape(url)
    publish(plugin, target, volume)  # the kubelet's republish after the rotation
    after = scrape(url)
    assert (target / "value").read_text() == VALUE_2
    assert delta(before, after, "strongroom_csi_rotations_total") == 1
    assert delta(before, after, "strongroom_csi_vault_fetches_total") == 1
    assert delta(before, after, seconds, kind="refresh") == 1

    before = scrape(url)
    unpublish(plugin, target)
    after = scrape(url)
    assert delta(before, after, "strongroom_csi_unpublishes_total", code="OK") == 1


def test_failed_publishes_are_counted_by_status(
    metered: tuple[Plugin, str], dev: DevServer, clients: Any, tmp_path: Path
) -> None:
    plugin, url = metered
    clients.secrets.set_secret(SECRET, VALUE_1)
    before = scrape(url)
    with pytest.raises(grpc.RpcError) as refused:
        publish(plugin, tmp_path / "a", context(dev, OBJECTS, None))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as refused:
        publish(plugin, tmp_path / "b", context(dev, OBJECTS, dev.issue("dev:reader")), False)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    missing = [{"kind": "secret", "name": "csi-metrics-absent", "path": "x"}]
    with pytest.raises(grpc.RpcError) as refused:
        publish(plugin, tmp_path / "c", context(dev, missing, dev.issue("dev:reader")))
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    publishes = "strongroom_csi_publishes_total"
    # A refusal reaches the caller when the handler aborts, a moment before the interceptor
    # around it counts it: read until all three are counted (or time runs out).
    deadline = time.monotonic() + 10
    while True:
        after = scrape(url)
        counted = sum(
            delta(before, after, publishes, code=code)
            for code in ("UNAUTHENTICATED", "INVALID_ARGUMENT", "NOT_FOUND")
        )
        if counted >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert delta(before, after, publishes, code="UNAUTHENTICATED") == 1
    assert delta(before, after, publishes, code="INVALID_ARGUMENT") == 1
    assert delta(before, after, publishes, code="NOT_FOUND") == 1
    assert delta(before, after, publishes, code="OK") == 0
    seconds = "strongroom_csi_publish_duration_seconds_count"
    assert delta(before, after, seconds, kind="mount") == 0  # only successes are timed


def test_no_value_name_token_or_path_in_the_plugin_metrics(
    metered: tuple[Plugin, str], dev: DevServer, clients: Any, tmp_path: Path
) -> None:
    plugin, url = metered
    clients.secrets.set_secret(SECRET, VALUE_1)
    token = dev.issue("dev:reader")
    target = tmp_path / "canary-target"
    publish(plugin, target, context(dev, OBJECTS, token))
    unpublish(plugin, target)
    text = scrape_text(url)
    assert "strongroom_csi_publishes_total" in text
    for forbidden in (VALUE_1, VALUE_2, SECRET, token, "canary-target", "dev:reader", "dev-vault"):
        assert forbidden not in text
