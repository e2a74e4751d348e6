"""pytest-benchmark suite: fastlstm vs torch.nn.LSTM on the "stream" and "small" shapes.

    pytest bench/ --benchmark-only              # time them
    pytest bench/ --benchmark-disable           # run each once (a smoke test)

Benchmarks are grouped by shape, mode and thread count, so each group compares
fastlstm (warm, and cold: the first call after a weight update) and torch on the
same weights and data (built by ``fastlstm.bench``).
Two plain tests (skipped under --benchmark-only) check the ONNX graph that the
side-by-side bench times against torch.nn.LSTM, and run that bench once.
"""

import functools
import itertools
import os

import numpy as np
import pytest

pytest.importorskip("pytest_benchmark")
bench = pytest.importorskip("fastlstm.bench")

SHAPES = ("stream", "small")
THREADS = [n for n in (1, 2) if n <= (os.cpu_count() or 1)]


@functools.cache
def case(shape: str):
    return bench.make_case(bench.SHAPES[shape])


def run(benchmark, impl_cls, shape: str, mode: str, threads: int) -> None:
    c = case(shape)
    benchmark.group = f"{shape} {mode} t={threads}"
    benchmark.extra_info["gflop"] = bench.mode_flops(c.shape, mode, c.lengths) / 1e9
    benchmark(impl_cls(c).prepare(mode, threads))


CASES = pytest.mark.parametrize("shape,mode,threads",
                                list(itertools.product(SHAPES, bench.MODES, THREADS)))


@CASES
def test_fastlstm(benchmark, shape, mode, threads):
    run(benchmark, bench.FastLSTM, shape, mode, threads)


@CASES
def test_fastlstm_cold(benchmark, shape, mode, threads):
    """The first call after a weight update: the weights are marked changed in the
    untimed setup, so every timed call repacks them."""
    c = case(shape)
    benchmark.group = f"{shape} {mode} t={threads}"
    benchmark.extra_info["gflop"] = bench.mode_flops(c.shape, mode, c.lengths) / 1e9
    impl = bench.FastLSTM(c)
    fn = impl.prepare(mode, threads)
    fn()  # warm-up: thread pool and workspaces, as in the warm case
    benchmark.pedantic(fn, setup=impl.invalidate, rounds=10, iterations=1)


@CASES
def test_torch(benchmark, shape, mode, threads):
    pytest.importorskip("torch")
    run(benchmark, bench.Torch, shape, mode, threads)


TINY = [bench.Shape("tiny", 7, 3, 5, 4),
        bench.Shape("tiny_bi2", 9, 4, 6, 3, layers=2, bidirectional=True),
        bench.Shape("tiny_varlen", 12, 5, 4, 6, bidirectional=True, varlen=True)]


@pytest.mark.parametrize("shape", TINY, ids=lambda s: s.name)
def test_onnx_graph_matches_torch(shape):
    """The ONNX LSTM chain that the bench times computes what torch.nn.LSTM does."""
    for module in ("torch", "onnx", "onnxruntime"):
        pytest.importorskip(module)
    c = bench.make_case(shape)
    np.testing.assert_allclose(bench.OnnxRuntime(c).output(), bench.Torch(c).output(),
                               atol=1e-5, rtol=0)


def test_cli_runs(capsys):
    """``python -m fastlstm bench`` end to end on one shape, one thread, one repeat."""
    assert bench.main(["--shapes", "stream", "--threads", "1", "--min-reps", "1",
                       "--min-time", "0"]) == 0
    out = capsys.readouterr().out
    assert "stream" in out and "ratio" in out and "error" not in out
    assert "peak fp32 GEMM: 1 thread " in out and "GFLOP/s" in out
    assert "%pk" in out and "cold" in out
