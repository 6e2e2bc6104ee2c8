"""TF1's random helpers: ``tf.random.normal`` / ``tf.random_normal``, ``uniform``, and the global seed.

Every draw without its own ``seed`` (random arrays, and the initial weights of cells built without a
``seed``) comes from one module generator, so ``tf.set_random_seed(s)`` makes a whole program
reproducible. The draws cannot equal TensorFlow's (a different generator); the distributions do.
"""
import numpy as np

_generator = np.random.default_rng()


def set_seed(seed):
    """Reseed the generator behind every draw that has no seed of its own."""
    global _generator
    _generator = np.random.default_rng(seed)


set_random_seed = set_seed


def generator(seed=None):
    """A generator for one draw: a fresh one when ``seed`` is given, else the module's."""
    return _generator if seed is None else np.random.default_rng(seed)


def normal(shape, mean=0.0, stddev=1.0, dtype=np.float32, seed=None, name=None):
    """An array of ``shape`` drawn from N(mean, stddev²)."""
    return generator(seed).normal(mean, stddev, _shape(shape)).astype(dtype)


def uniform(shape, minval=0.0, maxval=1.0, dtype=np.float32, seed=None, name=None):
    """An array of ``shape`` drawn uniformly from [minval, maxval)."""
    return generator(seed).uniform(minval, maxval, _shape(shape)).astype(dtype)


def truncated_normal(shape, mean=0.0, stddev=1.0, dtype=np.float32, seed=None, name=None):
    """N(mean, stddev²) redrawn wherever a value falls more than two standard deviations out."""
    rng = generator(seed)
    out = rng.normal(0.0, 1.0, _shape(shape))
    bad = np.abs(out) > 2.0
    while bad.any():
        out[bad] = rng.normal(0.0, 1.0, int(bad.sum()))
        bad = np.abs(out) > 2.0
    return (mean + stddev * out).astype(dtype)


def _shape(shape):
    try:
        dims = tuple(int(d) for d in np.atleast_1d(shape))
    except (TypeError, ValueError):
        dims = None
    if dims is None or any(d < 0 for d in dims):
        raise ValueError(f"shape: expected a list of non-negative integers, got {shape!r}")
    return dims
