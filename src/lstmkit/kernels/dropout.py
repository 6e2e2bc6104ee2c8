"""Inverted dropout: kept units are scaled by 1 / (1 - rate) so inference needs no rescaling."""
import numpy as np


def dropout_mask(rng, shape, rate, dtype):
    """A mask of 0 and 1/(1-rate) values drawn from ``rng`` (a ``numpy.random.Generator``)."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"rate: expected a number in [0, 1), got {rate!r}")
    keep = 1.0 - rate
    return (rng.random(shape) < keep).astype(dtype) / np.asarray(keep, dtype)
