"""csi-sanity, the kubernetes-csi conformance tool, against `strongroom csi-node`.

An inline-ephemeral driver has no controller: csi-sanity's controller suite and
the node cases that first create a volume through a controller do not apply.
What they would check is covered by test_csi_node.py.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

VERSION = os.environ.get("CSI_TEST_VERSION", "v5.4.0")
CACHE = Path(os.environ.get("STRONGROOM_CACHE", Path.home() / ".cache" / "strongroom"))
CSI_SANITY = CACHE / "bin" / f"csi-test-{VERSION}" / "csi-sanity"
NOT_FOR_EPHEMERAL = "Controller Server|should remove target path"


def test_csi_sanity_passes(tmp_path: Path) -> None:
    if not CSI_SANITY.exists():
        pytest.fail(f"csi-sanity is not built at {CSI_SANITY}; run scripts/setup")
    socket = tmp_path / "csi.sock"
    plugin = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "strongroom.cli",
            "csi-node",
            "--endpoint",
            f"unix://{socket}",
            "--node-id",
            "sanity-node",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not socket.exists():
            assert plugin.poll() is None and time.monotonic() < deadline, "csi-node did not start"
            time.sleep(0.1)
        result = subprocess.run(
            [
                str(CSI_SANITY),
                "--csi.endpoint",
                f"unix://{socket}",
                "--csi.mountdir",
                str(tmp_path / "mount"),
                "--csi.stagingdir",
                str(tmp_path / "stage"),
                "-ginkgo.no-color",
                "-ginkgo.skip",
                NOT_FOR_EPHEMERAL,
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        plugin.terminate()
        plugin.wait(10)
    summary = [line for line in result.stdout.splitlines() if "Passed" in line]
    assert result.returncode == 0, result.stdout[-4000:]
    assert summary and " 0 Failed" in summary[-1], summary
    passed = int(summary[-1].split(" Passed")[0].split()[-1])
    assert passed >= 10, summary
