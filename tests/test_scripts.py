"""The shell scripts parse: the GPU ones run only on the rare sessions that have a device, so a
syntax slip would otherwise cost a device lease to find."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from ef_testing import REPO

SCRIPTS = sorted(
    str(path.relative_to(REPO)) for path in [*REPO.glob("tests/**/*.sh"), REPO / ".ci" / "run"]
)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("script", SCRIPTS)
def test_shell_script_parses(script):
    result = subprocess.run(["bash", "-n", script], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_device_scripts_are_covered():
    assert {"tests/gpu/run_device.sh", "tests/gpu/sanitize.sh"} <= set(SCRIPTS)
