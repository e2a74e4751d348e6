"""Fixtures shared by the test modules: thread counts, kernel paths (ISA),
the CUDA drivers compiled for the host, and torch's threads for the torch
adapter's tests."""
import importlib.util

import pytest


def pytest_sessionstart(session):
    if importlib.util.find_spec("fastlstm") is None:
        pytest.exit("fastlstm is not installed in this Python: run the README's first "
                    "command (`pip install .`) before `pip install --group test`", returncode=4)


@pytest.fixture
def restore_threads():
    """fastlstm's thread count as it was before the test (tests set their own)."""
    import fastlstm
    n = fastlstm.get_num_threads()
    yield
    fastlstm.set_num_threads(n)


@pytest.fixture
def one_thread(restore_threads):
    """fastlstm on one thread: a small model's run time stays predictable on a
    busy machine. Results do not depend on the thread count
    (test_determinism.py, test_isa_paths.py)."""
    import fastlstm
    fastlstm.set_num_threads(1)


def _isas():
    try:
        import fastlstm
    except ImportError:  # the references' tests also run without the extension
        return []
    return fastlstm.available_isas()


@pytest.fixture(params=_isas())
def isa(request, monkeypatch):
    """Each kernel path this CPU runs, selected through FASTLSTM_ISA."""
    monkeypatch.setenv("FASTLSTM_ISA", request.param)
    return request.param


@pytest.fixture(scope="session")
def emu(tmp_path_factory):
    """csrc/cuda's drivers compiled for the host, once (tests/_cuda_emu.py)."""
    import _cuda_emu
    return _cuda_emu.build(tmp_path_factory.mktemp("emu"))


@pytest.fixture
def torch_one_thread():
    """torch (and so fastlstm.torch's kernels) on one thread for the test:
    parity checks then compare like with like, and timings do not matter."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
