"""Dense (fully connected) layer over the last axis: forward and backward.

    y = act(x @ kernel + bias)        x (..., I), kernel (I, U), bias (U,), y (..., U)

A weight's gradient is ``inputs.T @ d_outputs`` summed over the rows of every call. A layer called step
by step (a decoder) can keep each call's factors (``weight_grads=False`` gives :class:`Deferred` values)
and make one product over all their rows with :func:`resolve`: one product of T·B rows instead of
T products of B rows and T additions into the gradient.
"""
from typing import NamedTuple, Optional

import numpy as np

from . import activations, backend, buffers


class Deferred(NamedTuple):
    """A gradient not computed yet: ``inputs^T @ d_outputs`` over the rows (axis -2; leading axes,
    if any, are a batch), or for a bias (``inputs`` None) ``d_outputs`` summed over the rows.
    ``inputs`` (..., N, I), ``d_outputs`` (..., N, U)."""
    inputs: Optional[np.ndarray]
    d_outputs: np.ndarray


def resolve(parts):
    """The sum of ``parts``, gradients of one array: arrays, or :class:`Deferred` gradients, which are
    computed together as one product over all their rows."""
    def rows(arrays):
        if len(arrays) == 1:
            return arrays[0]
        shape = list(arrays[0].shape)
        shape[-2] = sum(a.shape[-2] for a in arrays)
        return np.concatenate(arrays, axis=-2, out=buffers.empty(shape, np.result_type(*arrays)))
    deferred = [p for p in parts if isinstance(p, Deferred)]
    total = None
    if deferred:
        d = rows([p.d_outputs for p in deferred])
        if deferred[0].inputs is None:
            total = d.sum(axis=-2)
        else:
            a = np.swapaxes(rows([p.inputs for p in deferred]), -1, -2)
            total = backend.matmul(a, d) if d.ndim == 2 else a @ d
    for p in parts:
        if not isinstance(p, Deferred):
            total = p if total is None else total + p
    return total


def dense_forward(x, kernel, bias=None, activation=None):
    """Returns ``y, cache``."""
    act, _ = activations.get(activation)
    # One 2-D product: a batched matmul over a strided 3-D view (e.g. time-major outputs seen
    # batch-major) is up to hundreds of times slower than flattening first.
    y = backend.matmul(x.reshape(-1, x.shape[-1]), kernel).reshape(*x.shape[:-1], kernel.shape[1])
    if bias is not None:
        y += bias
    y = act(y)
    return y, (x, kernel, bias is not None, y, activation)


def dense_backward(cache, d_y, *, weight_grads=True):
    """Returns a dict with ``x``, ``kernel`` and ``bias`` (None without bias); with ``weight_grads``
    False the ``kernel`` and ``bias`` gradients are :class:`Deferred`."""
    x, kernel, has_bias, y, activation = cache
    _, dact = activations.get(activation)
    dz = d_y if activation in (None, "linear") else d_y * dact(y)
    dz2 = dz.reshape(-1, dz.shape[-1])
    x2 = x.reshape(-1, x.shape[-1])
    if weight_grads:
        d_x, d_kernel = backend.matmuls([(dz2, kernel.T), (x2.T, dz2)])
    else:
        d_x, d_kernel = backend.matmul(dz2, kernel.T), Deferred(x2, dz2)
    return {
        "x": d_x.reshape(x.shape),
        "kernel": d_kernel,
        "bias": None if not has_bias else dz2.sum(axis=0) if weight_grads else Deferred(None, dz2),
    }
