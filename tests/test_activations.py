"""The kernels' sigmoid and tanh against float64, on every kernel path."""
import numpy as np
import pytest

import fastlstm
from fastlstm import _core

ISAS = fastlstm.available_isas()


def run(kind, x, isa):
    y = np.empty_like(x)
    getattr(_core, f"activation_{'f32' if x.dtype == np.float32 else 'f64'}")(kind, x, y, isa)
    return y


def exact(kind, x):
    x = x.astype(np.float64)
    with np.errstate(over="ignore"):
        return np.tanh(x) if kind == "tanh" else 1.0 / (1.0 + np.exp(-x))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("kind", ["sigmoid", "tanh"])
def test_float32_within_4_ulp(kind, isa):
    # every float32 in [-20, 20] at a fine step, plus the tiny ones around 0
    x = np.concatenate([np.linspace(-20, 20, 400_001, dtype=np.float32),
                        np.geomspace(1e-30, 1e-2, 2_001).astype(np.float32)])
    x = np.concatenate([x, -x])
    y, t = run(kind, x, isa), exact(kind, x)
    ulp = np.spacing(np.abs(t).astype(np.float32)).astype(np.float64)
    # sigmoid far left is flushed to 0 below e^-86.5 by design: never a denormal
    assert np.max(np.abs(y - t) / ulp) <= 4.0


@pytest.mark.parametrize("isa", ISAS)
def test_float32_special_values(isa):
    x = np.array([-np.inf, -1e30, -88.0, -87.0, 0.0, -0.0, 87.0, 1e30, np.inf, np.nan],
                 np.float32)
    s, t = run("sigmoid", x, isa), run("tanh", x, isa)
    assert np.array_equal(s[:2], [0, 0]) and np.array_equal(s[-3:-1], [1, 1])
    assert np.array_equal(t[:2], [-1, -1]) and np.array_equal(t[-3:-1], [1, 1])
    assert np.isnan(s[-1]) and np.isnan(t[-1])
    assert s[4] == 0.5 and t[4] == 0.0
    tiny = np.finfo(np.float32).tiny
    for v in (s, t):  # no denormal is ever produced
        finite = v[np.isfinite(v)]
        assert not np.any((finite != 0) & (np.abs(finite) < tiny))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("kind", ["sigmoid", "tanh"])
def test_float64_accurate(kind, isa):
    x = np.linspace(-40, 40, 100_001)
    y, t = run(kind, x, isa), exact(kind, x)
    assert np.max(np.abs(y - t)) <= 4 * np.finfo(np.float64).eps
