import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def librosa():
    """librosa, imported once per session (its first call JIT-compiles for ~25 s)."""
    return pytest.importorskip("librosa")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The tiny EmoDB copy of train_fixtures (24 clips), decoded once per test module."""
    from train_fixtures import tiny_corpus

    return tiny_corpus(tmp_path_factory.mktemp("tiny"))
