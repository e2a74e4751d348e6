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
