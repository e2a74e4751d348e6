"""Central finite differences, shared by the gradient checks."""
import numpy as np


def diff_at(arr: np.ndarray, idx, f, eps: float = 1e-6) -> float:
    """d f() / d arr[idx] by a central difference, perturbing `arr` in place."""
    old = arr[idx]
    arr[idx] = old + eps
    up = f()
    arr[idx] = old - eps
    down = f()
    arr[idx] = old
    return (up - down) / (2 * eps)


def central_diff(arr: np.ndarray, f, eps: float = 1e-6) -> np.ndarray:
    """d f() / d arr by central differences, perturbing `arr` in place."""
    g = np.zeros_like(arr)
    for idx in np.ndindex(arr.shape):
        g[idx] = diff_at(arr, idx, f, eps)
    return g


def sampled_fd_check(arr, analytic, loss, rng, name, n=4, eps=1e-6, rtol=1e-7):
    """Central differences on n random entries of arr against the analytic gradient.
    Bound: rtol * max|analytic| over the whole array. The central difference's own
    error is mostly rounding, ~1e-16·|loss|/eps ~ 1e-9 here (measured up to 6e-9 of
    max|analytic|; the eps² truncation is ~1e-12), so 1e-7 is ~20x that, while a wrong
    term errs by a sizeable fraction of the gradient."""
    scale = float(np.max(np.abs(analytic)))
    assert scale > 1e-3, f"{name}: gradient is ~0, the check would be vacuous"
    flat = [np.unravel_index(i, arr.shape) for i in rng.choice(arr.size, min(n, arr.size),
                                                                replace=False)]
    for idx in flat:
        numeric = diff_at(arr, idx, loss, eps)
        err = abs(numeric - analytic[idx])
        assert err <= rtol * scale, (f"{name}{idx}: analytic {analytic[idx]:.10e}, "
                                     f"numeric {numeric:.10e}, |diff| {err:.2e}")
