"""Every Python example in README.md runs as written, in a fresh interpreter started in the
repository root (-P keeps the source tree off sys.path: the installed package is used)."""

from __future__ import annotations

import re
import subprocess
import sys

from ef_testing import REPO


def test_readme_python_examples_run():
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 3, "README.md lost an example"
    outputs = []
    for block in blocks:
        result = subprocess.run(
            [sys.executable, "-P", "-c", block],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, f"README example failed:\n{block}\n{result.stderr}"
        outputs.append(result.stdout)
    assert "torch.Size([8, 128, 401])" in outputs[0]
