"""Embedding lookup and its backward (a scatter-add into the table's rows).

    y = table[ids]        ids (...) integers in [0, V), table (V, D), y (..., D)
"""
import numpy as np

from . import backend


def embedding_forward(ids, table):
    """Returns ``y, cache``. ``ids`` must already be validated as integers in range."""
    return table[ids], (ids, table.shape)


def embedding_backward(cache, d_y, out=None):
    """Gradient of the table, (V, D); rows never looked up are zero. With ``out`` (V, D) the
    gradient is added into it and ``out`` returned: no table-sized array is made (a layer adds into
    its ``grads``). Rows looked up several times get their gradients added in the order of ``ids``,
    as ``np.add.at``; compiled, 1024 rows of 256 take 0.1 ms, NumPy's ``add.at`` 1.6 ms."""
    ids, shape = cache
    if out is None:
        out = np.zeros(shape, d_y.dtype)
    flat = ids.reshape(-1)
    rows = d_y.reshape(-1, shape[1])
    loops = backend.compiled_loops(out.dtype)
    if loops is not None and out.flags.c_contiguous and flat.size:
        if flat.min() < 0 or flat.max() >= shape[0]:    # compiled code does not check its indices
            raise IndexError(f"ids: expected values in [0, {shape[0]}), got {flat.min()}..{flat.max()}")
        loops.scatter_add_rows(out, flat.astype(np.intp, copy=False), np.ascontiguousarray(rows, out.dtype))
    else:
        np.add.at(out, flat, rows)
    return out
