"""TF1's weight initializers (``tf.random_uniform_initializer(-0.1, 0.1)`` ...), as small callables.

``init(shape, dtype=float32)`` returns an array. An initializer with a ``seed`` gives the same array
at every call (as TF1's do); without one it draws from the generator it is handed (a cell's) or the
module generator (``tf.set_random_seed``).
"""
import math

import numpy as np

from . import random as _random


class Initializer:
    seed = None

    def __call__(self, shape, dtype=np.float32, partition_info=None, rng=None):
        if self.seed is not None or rng is None:
            rng = _random.generator(self.seed)
        return np.asarray(self._draw(tuple(int(d) for d in shape), rng), dtype=dtype)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class random_uniform_initializer(Initializer):
    def __init__(self, minval=0.0, maxval=1.0, seed=None, dtype=None):
        self.minval, self.maxval, self.seed = minval, maxval, seed

    def _draw(self, shape, rng):
        return rng.uniform(self.minval, self.maxval, shape)


class random_normal_initializer(Initializer):
    def __init__(self, mean=0.0, stddev=1.0, seed=None, dtype=None):
        self.mean, self.stddev, self.seed = mean, stddev, seed

    def _draw(self, shape, rng):
        return rng.normal(self.mean, self.stddev, shape)


class truncated_normal_initializer(Initializer):
    def __init__(self, mean=0.0, stddev=1.0, seed=None, dtype=None):
        self.mean, self.stddev, self.seed = mean, stddev, seed

    def _draw(self, shape, rng):
        out = rng.normal(0.0, 1.0, shape)
        bad = np.abs(out) > 2.0
        while bad.any():
            out[bad] = rng.normal(0.0, 1.0, int(bad.sum()))
            bad = np.abs(out) > 2.0
        return self.mean + self.stddev * out


class glorot_uniform_initializer(Initializer):
    """U(-l, l) with l = sqrt(6 / (fan_in + fan_out)): TF1's default for every cell kernel."""

    def __init__(self, seed=None, dtype=None):
        self.seed = seed

    def _draw(self, shape, rng):
        fan_in, fan_out = (shape[0], shape[0]) if len(shape) == 1 else (shape[-2], shape[-1])
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, shape)


class orthogonal_initializer(Initializer):
    def __init__(self, gain=1.0, seed=None, dtype=None):
        self.gain, self.seed = gain, seed

    def _draw(self, shape, rng):
        rows, cols = math.prod(shape[:-1]), shape[-1]
        q, r = np.linalg.qr(rng.normal(0.0, 1.0, (max(rows, cols), min(rows, cols))))
        q *= np.sign(np.diag(r))
        return self.gain * (q.T if rows < cols else q).reshape(shape)


class constant_initializer(Initializer):
    def __init__(self, value=0.0, dtype=None):
        self.value = value

    def _draw(self, shape, rng):
        return np.broadcast_to(np.asarray(self.value, np.float64), shape).copy()


class zeros_initializer(constant_initializer):
    def __init__(self, dtype=None):
        self.value = 0.0


class ones_initializer(constant_initializer):
    def __init__(self, dtype=None):
        self.value = 1.0


def draw(initializer, default, shape, dtype, rng, argument):
    """Initial value of one variable: ``initializer`` (None means ``default``) of ``shape``.

    Accepts one of these initializers (class or instance), a Keras name such as ``"orthogonal"``, or
    any callable ``init(shape, dtype=...)`` returning an array of ``shape``.
    """
    init = default if initializer is None else initializer
    if isinstance(init, type) and issubclass(init, Initializer):
        init = init()
    if isinstance(init, Initializer):
        value = init(shape, dtype, rng=rng)
    elif isinstance(init, str):
        from ... import initializers
        value = initializers.get(init, argument)(shape, rng, dtype)
    elif callable(init):
        value = init(shape, dtype=dtype)
    else:
        raise TypeError(f"{argument}: expected an initializer (tf.random_uniform_initializer(...), "
                        f"a Keras name such as 'orthogonal', or a callable), got {init!r}")
    value = np.asarray(value, dtype=dtype)
    if value.shape != tuple(shape):
        raise ValueError(f"{argument}: the initializer returned shape {value.shape}, expected "
                         f"{tuple(shape)}")
    return value
