"""Element-wise activations and their derivatives.

Every activation used inside a recurrent cell has a derivative that can be written in terms of its
*output* y = f(x) alone, so the backward passes only need to keep the activated values:

    tanh          y' = 1 - y**2
    sigmoid       y' = y * (1 - y)
    hard_sigmoid  y' = 1/6 where 0 < y < 1, else 0      (Keras 3: relu6(x + 3) / 6)
    relu          y' = 1 where y > 0, else 0
    linear        y' = 1
"""
import numpy as np


def sigmoid(x):
    # tanh form: no overflow warning for large |x| and float32-accurate.
    return 0.5 * np.tanh(0.5 * x) + 0.5


def hard_sigmoid(x):
    return np.clip(x / 6.0 + 0.5, 0.0, 1.0).astype(x.dtype, copy=False)


def relu(x):
    return np.maximum(x, 0)


def linear(x):
    return x


FORWARD = {
    "tanh": np.tanh,
    "sigmoid": sigmoid,
    "hard_sigmoid": hard_sigmoid,
    "relu": relu,
    "linear": linear,
}

GRAD_FROM_OUTPUT = {
    "tanh": lambda y: 1.0 - y * y,
    "sigmoid": lambda y: y * (1.0 - y),
    "hard_sigmoid": lambda y: ((y > 0) & (y < 1)).astype(y.dtype) / 6.0,
    "relu": lambda y: (y > 0).astype(y.dtype),
    "linear": lambda y: np.ones_like(y),
}

NAMES = tuple(FORWARD)


def get(name):
    """Return (forward, derivative-from-output) for an activation name; ValueError if unknown."""
    if name is None:
        name = "linear"
    if name not in FORWARD:
        raise ValueError(f"activation: expected one of {', '.join(NAMES)}, got {name!r}")
    return FORWARD[name], GRAD_FROM_OUTPUT[name]


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(x, axis=-1):
    """``x - logsumexp(x)`` over ``axis``; float32 over the last axis runs compiled when the compiled
    loops are in use (2x NumPy's, which makes three passes and a temporary)."""
    x = np.asarray(x)
    if axis in (-1, x.ndim - 1) and x.dtype == np.float32 and x.size and x.shape[-1]:
        from . import backend, buffers
        loops = backend.compiled_loops(x.dtype)
        if loops is not None:
            rows = buffers.contiguous(x, x.dtype).reshape(-1, x.shape[-1])
            out = buffers.empty(rows.shape, rows.dtype)
            backend.by_rows(loops.log_softmax32, (rows, out))
            return out.reshape(x.shape)
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
