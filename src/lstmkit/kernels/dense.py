"""Dense (fully connected) layer over the last axis: forward and backward.

    y = act(x @ kernel + bias)        x (..., I), kernel (I, U), bias (U,), y (..., U)
"""
from . import activations


def dense_forward(x, kernel, bias=None, activation=None):
    """Returns ``y, cache``."""
    act, _ = activations.get(activation)
    # One 2-D product: a batched matmul over a strided 3-D view (e.g. time-major outputs seen
    # batch-major) is up to hundreds of times slower than flattening first.
    y = (x.reshape(-1, x.shape[-1]) @ kernel).reshape(*x.shape[:-1], kernel.shape[1])
    if bias is not None:
        y += bias
    y = act(y)
    return y, (x, kernel, bias is not None, y, activation)


def dense_backward(cache, d_y):
    """Returns a dict with ``x``, ``kernel`` and ``bias`` (None without bias)."""
    x, kernel, has_bias, y, activation = cache
    _, dact = activations.get(activation)
    dz = d_y if activation in (None, "linear") else d_y * dact(y)
    dz2 = dz.reshape(-1, dz.shape[-1])
    return {
        "x": (dz2 @ kernel.T).reshape(x.shape),
        "kernel": x.reshape(-1, x.shape[-1]).T @ dz2,
        "bias": dz2.sum(axis=0) if has_bias else None,
    }
