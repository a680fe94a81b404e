"""Every Python example in README.md runs as written."""

from __future__ import annotations

import re

from ef_testing import REPO


def test_readme_python_examples_run(capsys):
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README.md has no python example"
    assert len(blocks) >= 3, "README.md lost an example"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
    assert "torch.Size([8, 128, 401])" in capsys.readouterr().out
