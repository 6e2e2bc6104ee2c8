"""Seeded weight initializers with Keras's names and formulas.

Each takes ``(shape, rng, dtype)`` with ``rng`` a ``numpy.random.Generator``. The draws cannot equal
Keras's (a different random generator), but the distributions are the same.
"""
import math

import numpy as np


def _fans(shape):
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
    return shape[-2] * receptive, shape[-1] * receptive


def zeros(shape, rng, dtype):
    return np.zeros(shape, dtype)


def ones(shape, rng, dtype):
    return np.ones(shape, dtype)


def glorot_uniform(shape, rng, dtype):
    fan_in, fan_out = _fans(shape)
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, shape).astype(dtype)


def glorot_normal(shape, rng, dtype):
    fan_in, fan_out = _fans(shape)
    return _truncated_normal(shape, math.sqrt(2.0 / (fan_in + fan_out)), rng, dtype)


def he_uniform(shape, rng, dtype):
    limit = math.sqrt(6.0 / _fans(shape)[0])
    return rng.uniform(-limit, limit, shape).astype(dtype)


def he_normal(shape, rng, dtype):
    return _truncated_normal(shape, math.sqrt(2.0 / _fans(shape)[0]), rng, dtype)


def lecun_uniform(shape, rng, dtype):
    limit = math.sqrt(3.0 / _fans(shape)[0])
    return rng.uniform(-limit, limit, shape).astype(dtype)


def lecun_normal(shape, rng, dtype):
    return _truncated_normal(shape, math.sqrt(1.0 / _fans(shape)[0]), rng, dtype)


def random_uniform(shape, rng, dtype):
    return rng.uniform(-0.05, 0.05, shape).astype(dtype)


def random_normal(shape, rng, dtype):
    return rng.normal(0.0, 0.05, shape).astype(dtype)


def truncated_normal(shape, rng, dtype):
    return _truncated_normal(shape, 0.05, rng, dtype, rescale=False)


def orthogonal(shape, rng, dtype):
    """Keras's orthogonal: QR of a normal matrix, signs fixed so the draw is uniform (Haar)."""
    rows = math.prod(shape[:-1])
    cols = shape[-1]
    a = rng.normal(0.0, 1.0, (max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return q.reshape(shape).astype(dtype)


def _truncated_normal(shape, stddev, rng, dtype, rescale=True):
    # Truncated at two standard deviations. Keras's variance-scaling initializers rescale so the
    # truncated distribution keeps the asked-for standard deviation; plain truncated_normal does not.
    scale = stddev / 0.87962566103423978 if rescale else stddev
    out = rng.normal(0.0, 1.0, shape)
    bad = np.abs(out) > 2.0
    while bad.any():
        out[bad] = rng.normal(0.0, 1.0, int(bad.sum()))
        bad = np.abs(out) > 2.0
    return (out * scale).astype(dtype)


_BY_NAME = {f.__name__: f for f in (
    zeros, ones, glorot_uniform, glorot_normal, he_uniform, he_normal, lecun_uniform, lecun_normal,
    random_uniform, random_normal, truncated_normal, orthogonal)}
_BY_NAME["uniform"] = random_uniform
_BY_NAME["normal"] = random_normal


def get(initializer, argument="initializer"):
    """Resolve a name (Keras spelling, case-insensitive) or a callable ``(shape, rng, dtype)``."""
    if callable(initializer):
        return initializer
    if isinstance(initializer, str):
        key = initializer.lower()
        if key in _BY_NAME:
            return _BY_NAME[key]
    raise ValueError(f"{argument}: expected one of {', '.join(sorted(_BY_NAME))} or a callable "
                     f"(shape, rng, dtype), got {initializer!r}")
