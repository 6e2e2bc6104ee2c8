"""Embedding lookup and its backward (a scatter-add into the table's rows).

    y = table[ids]        ids (...) integers in [0, V), table (V, D), y (..., D)
"""
import numpy as np


def embedding_forward(ids, table):
    """Returns ``y, cache``. ``ids`` must already be validated as integers in range."""
    return table[ids], (ids, table.shape)


def embedding_backward(cache, d_y):
    """Gradient of the table, (V, D); rows never looked up are zero."""
    ids, shape = cache
    d_table = np.zeros(shape, d_y.dtype)
    np.add.at(d_table, ids.reshape(-1), d_y.reshape(-1, shape[1]))
    return d_table
