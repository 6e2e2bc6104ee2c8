"""Central finite differences, the reference for every hand-derived backward pass (use float64)."""
import numpy as np


def numeric_grad(f, a, eps=1e-6):
    """d f() / d a by central differences, perturbing ``a`` in place one entry at a time."""
    g = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        old = a[idx]
        a[idx] = old + eps
        up = f()
        a[idx] = old - eps
        down = f()
        a[idx] = old
        g[idx] = (up - down) / (2 * eps)
    return g
