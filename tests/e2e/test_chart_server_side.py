"""The chart passes `helm lint` and the real API server's validation, with default and
changed values: every rendered object is applied with --dry-run=server."""

from __future__ import annotations

import json

import pytest

from .release import CHART, NAMESPACE, RELEASE, Release

VALUE_SETS = {
    "defaults": [],
    "changed": [
        "--set",
        "logLevel=DEBUG",
        "--set",
        "csiNode.shareSeconds=10",
        "--set",
        "csiNode.jwks.source=none",
    ],
}


@pytest.mark.parametrize("values", sorted(VALUE_SETS))
def test_rendered_chart_is_accepted_by_the_api_server(release: Release, values: str) -> None:
    # The cluster's own version: helm checks the chart's kubeVersion against it.
    server = json.loads(release.k("version", "-o", "json").stdout)["serverVersion"]
    kube_version = f"--kube-version={server['gitVersion'].lstrip('v').split('+')[0]}"
    release.h("lint", "--strict", str(CHART), kube_version, *VALUE_SETS[values])
    rendered = release.h(
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        kube_version,
        *VALUE_SETS[values],
    ).stdout
    assert "kind: DaemonSet" in rendered and "kind: Deployment" in rendered
    applied = release.k("apply", "--dry-run=server", "-f", "-", stdin=rendered)
    assert "(server dry run)" in applied.stdout
