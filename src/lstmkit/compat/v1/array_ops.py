"""The few tensor helpers TF1 RNN programs use, on NumPy arrays (a tensor here IS a NumPy array)."""
import numpy as np

from .rnn import reverse_sequence

float16, float32, float64 = np.float16, np.float32, np.float64
int32, int64, bool_ = np.int32, np.int64, np.bool_


def constant(value, dtype=None, shape=None, name=None):
    arr = np.array(value, dtype=dtype)
    return arr if shape is None else np.broadcast_to(arr, tuple(shape)).copy()


def zeros(shape, dtype=np.float32, name=None):
    return np.zeros(tuple(shape) if not np.isscalar(shape) else shape, dtype)


def ones(shape, dtype=np.float32, name=None):
    return np.ones(tuple(shape) if not np.isscalar(shape) else shape, dtype)


def zeros_like(tensor, dtype=None, name=None):
    return np.zeros_like(tensor, dtype=dtype)


def concat(values, axis, name=None):
    return np.concatenate(values, axis=axis)


def stack(values, axis=0, name=None):
    return np.stack(values, axis=axis)


def unstack(value, num=None, axis=0, name=None):
    arr = np.asarray(value)
    if num is not None and arr.shape[axis] != num:
        raise ValueError(f"num: expected {arr.shape[axis]} (the size of axis {axis}), got {num}")
    return [np.take(arr, i, axis=axis) for i in range(arr.shape[axis])]


def transpose(a, perm=None, name=None):
    return np.transpose(a, perm)


def reshape(tensor, shape, name=None):
    return np.reshape(tensor, shape)


def sequence_mask(lengths, maxlen=None, dtype=np.bool_, name=None):
    lengths = np.asarray(lengths)
    maxlen = int(lengths.max()) if maxlen is None else int(maxlen)
    return (np.arange(maxlen) < lengths[..., None]).astype(dtype)


__all__ = ["float16", "float32", "float64", "int32", "int64", "bool_", "constant", "zeros", "ones",
           "zeros_like", "concat", "stack", "unstack", "transpose", "reshape", "sequence_mask",
           "reverse_sequence"]
