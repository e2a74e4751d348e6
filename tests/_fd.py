"""Central finite differences, shared by the gradient checks."""
import numpy as np


def central_diff(arr: np.ndarray, f, eps: float = 1e-6) -> np.ndarray:
    """d f() / d arr by central differences, perturbing `arr` in place."""
    g = np.zeros_like(arr)
    for idx in np.ndindex(arr.shape):
        old = arr[idx]
        arr[idx] = old + eps
        up = f()
        arr[idx] = old - eps
        down = f()
        arr[idx] = old
        g[idx] = (up - down) / (2 * eps)
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
        old = arr[idx]
        arr[idx] = old + eps
        up = loss()
        arr[idx] = old - eps
        down = loss()
        arr[idx] = old
        numeric = (up - down) / (2 * eps)
        err = abs(numeric - analytic[idx])
        assert err <= rtol * scale, (f"{name}{idx}: analytic {analytic[idx]:.10e}, "
                                     f"numeric {numeric:.10e}, |diff| {err:.2e}")
