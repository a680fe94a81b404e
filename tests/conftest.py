import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def librosa():
    """librosa, imported once per session (its first call JIT-compiles for ~25 s)."""
    return pytest.importorskip("librosa")
