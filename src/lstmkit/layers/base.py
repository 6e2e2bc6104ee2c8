"""The Layer contract.

A layer owns its parameters (``params``) and the gradients accumulated for them (``grads``, same keys
and shapes). It keeps no per-call state: ``forward`` returns a result and a ``cache``, and ``backward``
takes that cache back, so one layer can be called many times (a decoder step by step) and
back-propagated in any order::

    result, cache = layer.forward(x, training=True)
    grads_in = layer.backward(cache, grad_of_result)   # adds into layer.grads
    y = layer(x)                                        # inference: forward(..., training=False)

Parameters are built lazily from the first input and are only ever updated in place, so an optimizer
or a container may hold references to them.
"""
import contextlib
import itertools

import numpy as np

from .. import initializers
from ..kernels.dense import Deferred, resolve

_FLOAT_DTYPES = (np.dtype("float32"), np.dtype("float64"))
_counters = {}


def float_dtype(dtype, argument="dtype"):
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in _FLOAT_DTYPES:
        raise TypeError(f"{argument}: expected 'float32' or 'float64', got {dtype!r}")
    return dt


def unique_name(prefix):
    counter = _counters.setdefault(prefix, itertools.count())
    n = next(counter)
    return prefix if n == 0 else f"{prefix}_{n}"


class Layer:
    """Base class of every layer. Subclasses implement ``build``, ``forward`` and ``backward``."""

    _deferred = None     # {key: [Deferred, ...]} inside deferred_grads()

    def __init__(self, *, name=None, dtype="float32", seed=None):
        self.name = name or unique_name(_snake(type(self).__name__))
        self.dtype = float_dtype(dtype)
        self.seed = seed
        init_seq, dropout_seq = np.random.SeedSequence(seed).spawn(2)
        self._init_rng = np.random.default_rng(init_seq)
        self.rng = np.random.default_rng(dropout_seq)   # dropout draws; saved by checkpoints
        self.params = {}
        self.grads = {}
        self.built = False

    # -- parameters ---------------------------------------------------------------------------
    def add_weight(self, key, shape, initializer="zeros", argument=None):
        init = initializers.get(initializer, argument or f"{key}_initializer")
        # C order whatever the initializer returns (orthogonal: the transpose of a QR factor), as the
        # kernels' products and packing read rows fastest.
        value = np.ascontiguousarray(init(tuple(shape), self._init_rng, self.dtype), self.dtype)
        if value.shape != tuple(shape):
            raise ValueError(f"{argument or key}: initializer returned shape {value.shape}, "
                             f"expected {tuple(shape)}")
        self.params[key] = value
        self.grads[key] = np.zeros_like(value)
        return value

    def build(self, input_shape):
        self.built = True

    def zero_grad(self):
        for g in self.grads.values():
            g[...] = 0

    def count_params(self):
        return int(sum(p.size for p in self.params.values()))

    def get_weights(self):
        """Copies of the parameters, in Keras's order."""
        return [p.copy() for p in self.params.values()]

    def set_weights(self, weights):
        """Set the parameters from a list in Keras's order and shapes (copied in place)."""
        if not self.built:
            raise ValueError(f"{self.name}: set_weights needs a built layer; call it on an input "
                             "first or build it")
        weights = list(weights)
        if len(weights) != len(self.params):
            raise ValueError(f"weights: layer {self.name!r} expects {len(self.params)} arrays "
                             f"({', '.join(self.params)}), got {len(weights)}")
        for (key, p), w in zip(self.params.items(), weights):
            w = np.asarray(w)
            if w.shape != p.shape:
                raise ValueError(f"weights: {self.name}.{key} expects shape {p.shape}, got {w.shape}")
            p[...] = w

    # -- running ------------------------------------------------------------------------------
    def forward(self, *args, training=False, **kwargs):
        raise NotImplementedError

    def backward(self, cache, grad):
        raise NotImplementedError

    def __call__(self, *args, **kwargs):
        return self.forward(*args, training=False, **kwargs)[0]

    def accumulate(self, key, value):
        """Add a gradient into ``grads[key]``; a :class:`~lstmkit.kernels.dense.Deferred` one is kept
        until :meth:`deferred_grads` ends (outside it, computed and added at once)."""
        if isinstance(value, Deferred) and self._deferred is not None:
            self._deferred.setdefault(key, []).append(value)
        elif value is not None:
            self.grads[key] += resolve([value])

    @property
    def defers_grads(self):
        """Whether backward passes now keep the factors of the weights' gradients (kernels'
        ``weight_grads=False``) instead of computing them."""
        return self._deferred is not None

    @contextlib.contextmanager
    def deferred_grads(self):
        """Compute the weights' gradients of every backward pass made inside, once, on leaving: a layer
        called step by step (a decoder) then makes one product of T·B rows per weight instead of T
        products of B rows, each added into ``grads``. The sums are the same. Layers whose kernels
        cannot defer (GRU) add their gradients at once, as outside. If the block raises, the kept
        gradients are dropped."""
        if self._deferred is not None:
            raise RuntimeError(f"{self.name}: deferred_grads() is already active")
        self._deferred = {}
        try:
            yield self
            kept = self._deferred
        finally:
            self._deferred = None
        for key, parts in kept.items():
            self.grads[key] += resolve(parts)

    def __repr__(self):
        return f"<{type(self).__name__} {self.name!r}>"


def _snake(name):
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and not name[i - 1].isupper():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


def as_float_input(x, dtype, argument="x"):
    """Validate an input array: floats are cast to ``dtype``; integers too (as TF and Keras do)."""
    arr = np.asarray(x)
    if arr.dtype.kind in "iu":
        return arr.astype(dtype)
    if arr.dtype.kind != "f":
        raise TypeError(f"{argument}: expected a float (or integer) array, got dtype {arr.dtype}")
    return arr.astype(dtype, copy=False)


def check_finite(arr, argument):
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{argument}: expected finite values, found {arr[tuple(bad)]} at index "
                         f"{tuple(int(i) for i in bad)}")
