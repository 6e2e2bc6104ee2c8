"""Softmax over the last axis and its backward (the Jacobian-vector product).

    y = exp(x) / sum(exp(x))            x, y (..., C)
    dx = y * (dy - sum(dy * y))         the sum over the last axis, kept as (..., 1)
"""
from .activations import softmax


def softmax_forward(x):
    """Returns ``y, cache``."""
    y = softmax(x, axis=-1)
    return y, y


def softmax_backward(cache, d_y):
    y = cache
    return y * (d_y - (d_y * y).sum(axis=-1, keepdims=True))
