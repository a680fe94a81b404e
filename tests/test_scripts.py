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


def test_device_studies_are_defined_and_their_cv_arguments_parse():
    """A study name the script does not define, or a `cv` flag that does not exist, would only
    show on the device, after the build, as a failed study."""
    import re
    import shlex

    from emohrnet_fast.cli import _parser

    script = (REPO / "tests/gpu/run_device.sh").read_text()
    defaults = re.search(r"studies=\$\{STUDIES-([^}]*)\}", script).group(1).split()
    defined = dict(re.findall(r'^\s*\[(\w+)\]="([^"]*)"', script, flags=re.M))
    assert defaults and set(defaults) <= set(defined), set(defaults) - set(defined)
    for arguments in defined.values():
        argv = ["cv", "--corpus", "emodb", "--root", "x", "--out", "y", *shlex.split(arguments)]
        _parser().parse_args(argv)  # SystemExit on an unknown flag or value
