"""Fixtures shared by the test modules."""
import pytest


@pytest.fixture
def torch_one_thread():
    """torch (and so fastlstm.torch's kernels) on one thread for the test:
    parity checks then compare like with like, and timings do not matter."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
