"""The fuzzer's saved inputs (tests/fuzz/regressions/): each replays through
the harness (tests/fuzz/fuzz_core.py) and must run or be rejected with
ValueError / TypeError / OverflowError and a message. Inputs that once
crashed or were wrongly accepted are kept here, with inputs that reach each
entry point's valid path."""
import pathlib
import sys

import pytest

FUZZ = pathlib.Path(__file__).resolve().parent / "fuzz"
sys.path.insert(0, str(FUZZ))
import fuzz_core  # noqa: E402

INPUTS = sorted((FUZZ / "regressions").iterdir())


def test_there_are_saved_inputs():
    assert len(INPUTS) >= 8


@pytest.mark.parametrize("path", INPUTS, ids=[p.name for p in INPUTS])
def test_saved_input(path):
    fuzz_core.one_input(path.read_bytes())
