"""The tolerance scheme of the kernel-vs-reference tests (see test_lstm_oracles.py).

float64: TOL64 relative to max|oracle|. float32: the kernel is compared with the
float64 reference; the bound is F32_MULTIPLE times the error the reference itself
commits in float32 (on the same inputs and on inputs moved by one ulp), with a
floor of F32_FLOOR_ULPS float32 ulps of max|oracle|.
"""
import numpy as np

F32, F64 = np.float32, np.float64
TOL64 = 1e-10                       # float64, relative to max|oracle|
F32_MULTIPLE = 8.0                  # float32: allowed multiple of the reference's own float32 error
F32_FLOOR_ULPS = 32.0               # float32: floor, in ulps of max|oracle|


def max_abs(a):
    a = np.asarray(a, dtype=np.float64)
    return float(np.max(np.abs(a), initial=0.0))


def check_close(got, want, bound, name):
    got = np.asarray(got)
    want = np.asarray(want)
    assert got.shape == want.shape, f"{name}: shape {got.shape}, expected {want.shape}"
    err = max_abs(got.astype(np.float64) - want.astype(np.float64))
    assert err <= bound, (f"{name}: max|diff| = {err:.3e} > bound {bound:.3e} "
                          f"(max|oracle| = {max_abs(want):.3e})")


def bound_for(dtype, want64, ref32_err=None):
    """Tolerance for comparing a `dtype` kernel result with the float64 oracle want64;
    ref32_err: the float32 reference's own error on that quantity (float32 only)."""
    scale = max(max_abs(want64), 1e-300)
    if dtype == F64:
        return TOL64 * scale
    return max(F32_MULTIPLE * ref32_err, F32_FLOOR_ULPS * np.finfo(F32).eps * scale)


def perturb_ulp(a, rng):
    """float32 array a with every element moved one ulp up or down at random."""
    a = np.asarray(a, F32)
    up = rng.random(a.shape) < 0.5
    return np.where(up, np.nextafter(a, F32(np.inf)), np.nextafter(a, F32(-np.inf)))


def float32_reference_error(run, want64, n_perturbed=2):
    """The error the float32 reference commits, per output: max|run32 - want64| over
    run(F32, None) and n_perturbed runs run(F32, rng) whose float inputs are moved by one
    ulp (perturb_ulp). The perturbed runs make the estimate robust where one float32
    evaluation is exact by luck (a few-element output, cancellation): a float32 kernel's
    own rounding acts like such a perturbation."""
    runs = [run(F32, None)] + [run(F32, np.random.default_rng(k)) for k in range(n_perturbed)]
    return {n: max(max_abs(r[n] - want64[n]) for r in runs) for n in want64}


def f64(a) -> np.ndarray:
    """A float64 NumPy copy of an array, or of a torch tensor (detached)."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().double().numpy()
    return np.asarray(a, dtype=np.float64)


def assert_rel_close(actual, expected, rtol, name=""):
    """max|actual - expected| <= rtol * max|expected| (scale-relative), in
    float64; arrays or torch tensors."""
    actual = f64(actual)
    expected = f64(expected)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    scale = max(float(np.max(np.abs(expected), initial=0.0)), 1e-300)
    err = float(np.max(np.abs(actual - expected), initial=0.0))
    assert err <= rtol * scale, f"{name}: max|diff| = {err:.3e} > {rtol:.1e} * {scale:.3e}"
