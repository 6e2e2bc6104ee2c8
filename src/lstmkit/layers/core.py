"""Dense, Embedding and Dropout layers."""
import numpy as np

from .. import kernels
from ..kernels import activations
from .base import Layer, as_float_input


class Dense(Layer):
    """``y = activation(x @ kernel + bias)`` over the last axis: x (..., I), kernel (I, U), y (..., U)."""

    def __init__(self, units, *, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", name=None, dtype="float32", seed=None):
        super().__init__(name=name, dtype=dtype, seed=seed)
        if not isinstance(units, (int, np.integer)) or units < 1:
            raise ValueError(f"units: expected a positive integer, got {units!r}")
        activations.get(activation)
        self.units = int(units)
        self.activation = activation
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer
        self.input_size = None

    def build(self, input_shape):
        self.input_size = int(input_shape[-1])
        self.add_weight("kernel", (self.input_size, self.units), self.kernel_initializer,
                        "kernel_initializer")
        if self.use_bias:
            self.add_weight("bias", (self.units,), self.bias_initializer, "bias_initializer")
        self.built = True

    def forward(self, x, *, training=False):
        """Returns ``(y, cache)``."""
        x = as_float_input(x, self.dtype, "x")
        if x.ndim < 1:
            raise ValueError(f"x: expected at least 1 dimension (..., features), got shape {x.shape}")
        if not self.built:
            self.build(x.shape)
        elif x.shape[-1] != self.input_size:
            raise ValueError(f"x: layer {self.name!r} was built for {self.input_size} features, "
                             f"got {x.shape[-1]} (shape {x.shape})")
        return kernels.dense_forward(x, self.params["kernel"], self.params.get("bias"),
                                     self.activation)

    def backward(self, cache, grad):
        """Returns the gradient of x; adds the parameters' gradients into ``grads``."""
        g = kernels.dense_backward(cache, grad, weight_grads=not self.defers_grads)
        self.accumulate("kernel", g["kernel"])
        self.accumulate("bias", g["bias"])
        return g["x"]


class Embedding(Layer):
    """Look up rows of ``embeddings (V, D)``: ids (...) integers in [0, V) -> (..., D).

    ``mask_zero=True`` (Keras's) reserves id 0 for padding: :meth:`compute_mask` gives ``ids != 0``.
    """

    def __init__(self, input_dim, output_dim, *, embeddings_initializer="random_uniform",
                 mask_zero=False, name=None, dtype="float32", seed=None):
        super().__init__(name=name, dtype=dtype, seed=seed)
        for arg, v in (("input_dim", input_dim), ("output_dim", output_dim)):
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{arg}: expected a positive integer, got {v!r}")
        self.input_dim = int(input_dim)
        self.output_dim = int(output_dim)
        self.embeddings_initializer = embeddings_initializer
        self.mask_zero = bool(mask_zero)

    def build(self, input_shape=None):
        self.add_weight("embeddings", (self.input_dim, self.output_dim),
                        self.embeddings_initializer, "embeddings_initializer")
        self.built = True

    def check_ids(self, ids):
        ids = np.asarray(ids)
        if ids.dtype.kind not in "iu":
            if ids.dtype.kind == "f" and ids.size and np.all(ids == np.round(ids)):
                ids = ids.astype(np.int64)
            elif ids.size:
                raise TypeError(f"ids: expected integer token ids, got dtype {ids.dtype}")
            else:
                ids = ids.astype(np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.input_dim):
            raise ValueError(f"ids: expected values in [0, {self.input_dim}) (input_dim), "
                             f"got min {ids.min()} and max {ids.max()}")
        return ids

    def compute_mask(self, ids):
        return np.asarray(ids) != 0 if self.mask_zero else None

    def forward(self, ids, *, training=False):
        ids = self.check_ids(ids)
        if not self.built:
            self.build()
        return kernels.embedding_forward(ids, self.params["embeddings"])

    def backward(self, cache, grad):
        kernels.embedding_backward(cache, grad, out=self.grads["embeddings"])   # added in place
        return None


class Dropout(Layer):
    """Inverted dropout: in training, zero each unit with probability ``rate`` and scale the rest by
    1/(1 - rate); at inference, the identity. ``noise_shape`` broadcasts one draw (e.g. (B, 1, F))."""

    def __init__(self, rate, *, noise_shape=None, name=None, dtype="float32", seed=None):
        super().__init__(name=name, dtype=dtype, seed=seed)
        if not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"rate: expected a number in [0, 1), got {rate!r}")
        self.rate = float(rate)
        self.noise_shape = noise_shape
        self.built = True

    def forward(self, x, *, training=False):
        x = as_float_input(x, self.dtype, "x")
        if not training or self.rate == 0.0:
            return x, None
        shape = x.shape if self.noise_shape is None else tuple(
            d if n is None else n for d, n in zip(x.shape, self.noise_shape))
        mask = kernels.dropout_mask(self.rng, shape, self.rate, self.dtype)
        return x * mask, mask

    def backward(self, cache, grad):
        return grad if cache is None else grad * cache
