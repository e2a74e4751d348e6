"""The README's Python snippets run as written, in order, in one namespace
(they need torch, jax and keras; CI has them)."""
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run():
    for module in ("torch", "jax", "keras"):
        pytest.importorskip(module)
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 2
    ns = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), ns)  # noqa: S102 (our own README)
    assert tuple(ns["y_torch"].shape) == tuple(ns["y"].shape) == (8, 50, 256)
    assert tuple(ns["y_jax"].shape) == (8, 50, 256)
    assert tuple(ns["y_keras"].shape) == (8, 50, 128)
