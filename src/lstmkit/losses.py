"""Loss objects named like Keras's, with their gradients.

Each object has ``forward(y_pred, y_true, sample_weight=None, *, mask=None) -> (loss, cache)`` and
``backward(cache) -> d_y_pred``. The math (and the exact formulas) are in ``lstmkit.kernels.losses``.

Shapes, with P the shape of the positions (``(B,)`` for one prediction per sample, ``(B, T)`` for one
per token):

    SparseCategoricalCrossentropy   y_pred P + (C,) logits or probabilities, y_true P integer labels
    CategoricalCrossentropy         y_pred P + (C,),  y_true P + (C,) target distributions
    BinaryCrossentropy              y_pred P + (F,),  y_true P + (F,) targets in [0, 1]
    MeanSquaredError                y_pred P + (F,),  y_true P + (F,)
    sample_weight and mask          P, or a prefix of it (e.g. (B,) for P = (B, T)), broadcast

Padding is ignored through ``mask`` (False = padding) or, for the sparse loss, ``ignore_index`` (a label
value, e.g. 0 or PyTorch's -100; Keras calls it ``ignore_class``). With the default reduction
``"sum_over_batch_size"`` the loss is the mean over the valid positions (Keras 3's and PyTorch's
``ignore_index`` mean). Other reductions: ``"per_sequence"`` (each sequence's summed loss, averaged over
the batch), ``"sum"``, ``"none"`` (the P-shaped array).

Example::

    >>> import numpy as np, lstmkit
    >>> loss = lstmkit.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_index=0)
    >>> logits = np.zeros((2, 3, 5), "float32"); labels = np.array([[1, 2, 0], [3, 0, 0]])
    >>> value, cache = loss.forward(logits, labels)      # mean over the 3 real tokens
    >>> round(float(value), 4) == round(float(np.log(5)), 4)
    True
    >>> loss.backward(cache).shape
    (2, 3, 5)
"""
import numpy as np

from .kernels import losses as K

__all__ = ["Loss", "SparseCategoricalCrossentropy", "CategoricalCrossentropy", "BinaryCrossentropy",
           "MeanSquaredError", "get"]

_REDUCTIONS = ("sum_over_batch_size", "mean", "per_sequence", "sum", "none")


def _pred_array(y_pred):
    arr = np.asarray(y_pred)
    if arr.dtype.kind != "f":
        if arr.dtype.kind in "iub":
            return arr.astype(np.float32)
        raise TypeError(f"y_pred: expected a float array, got dtype {arr.dtype}")
    return arr


def _positions_array(value, shape, argument):
    """Validate a mask or sample weight for positions of shape ``shape``; broadcast a prefix."""
    arr = np.asarray(value)
    if arr.shape != shape:
        if arr.ndim <= len(shape) and arr.shape == shape[:arr.ndim]:
            arr = arr.reshape(arr.shape + (1,) * (len(shape) - arr.ndim))
            arr = np.broadcast_to(arr, shape)
        else:
            raise ValueError(f"{argument}: expected shape {shape} (one value per position: the "
                             f"prediction's shape without its last axis) or a prefix of it, "
                             f"got {arr.shape}")
    return arr


class Loss:
    """Base class: validation of the reduction, mask and sample weights."""

    def __init__(self, *, reduction="sum_over_batch_size", name=None):
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction: expected one of {_REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction
        self.name = name or _snake(type(self).__name__)

    def _weights(self, positions, sample_weight, mask, dtype):
        weights = None
        if sample_weight is not None:
            weights = _positions_array(sample_weight, positions, "sample_weight").astype(dtype)
        if mask is not None:
            mask = _positions_array(mask, positions, "mask")
            if mask.dtype != bool:
                mask = mask.astype(bool)
        return weights, mask

    def __call__(self, y_pred, y_true, sample_weight=None, *, mask=None):
        return self.forward(y_pred, y_true, sample_weight, mask=mask)[0]

    def _result(self, loss, cache):
        if self.reduction != "none":
            loss = float(loss)
        return loss, cache

    def __repr__(self):
        return f"<{type(self).__name__} reduction={self.reduction!r}>"


class SparseCategoricalCrossentropy(Loss):
    """Cross-entropy between integer labels and predicted logits or probabilities over C classes.

    ``l = -sum_c q_c log p_c`` with ``q = (1 - label_smoothing) * onehot(y) + label_smoothing / C``
    (PyTorch's ``cross_entropy(label_smoothing=...)``; Keras has it on the dense loss only, with the
    same definition). ``from_logits=False`` (Keras's default) expects probabilities, clipped to
    [1e-7, 1 - 1e-7] as Keras does; prefer logits, which are exact and stable.

    Args:
        from_logits: y_pred holds logits (unnormalized scores) rather than probabilities.
        ignore_index: a label value whose positions are padding (also accepted as ``ignore_class``).
        label_smoothing: in [0, 1].
        reduction: "sum_over_batch_size" (mean over valid positions), "per_sequence", "sum", "none".
    """

    def __init__(self, from_logits=False, *, ignore_index=None, ignore_class=None, label_smoothing=0.0,
                 reduction="sum_over_batch_size", name=None):
        super().__init__(reduction=reduction, name=name)
        if ignore_index is not None and ignore_class is not None and ignore_index != ignore_class:
            raise ValueError("ignore_index and ignore_class: they are the same option; pass one")
        self.from_logits = bool(from_logits)
        self.ignore_index = ignore_index if ignore_index is not None else ignore_class
        self.label_smoothing = _check_smoothing(label_smoothing)

    def forward(self, y_pred, y_true, sample_weight=None, *, mask=None):
        y_pred = _pred_array(y_pred)
        if y_pred.ndim < 1:
            raise ValueError(f"y_pred: expected shape (..., classes), got {y_pred.shape}")
        labels = np.asarray(y_true)
        positions = y_pred.shape[:-1]
        if labels.shape == positions + (1,):       # Keras accepts a trailing axis of 1
            labels = labels[..., 0]
        if labels.shape != positions:
            raise ValueError(f"y_true: expected integer labels of shape {positions} (y_pred's shape "
                             f"{y_pred.shape} without the class axis), got {labels.shape}")
        if labels.dtype.kind not in "iu":
            if labels.dtype.kind == "f" and np.all(labels == np.round(labels)):
                labels = labels.astype(np.int64)
            else:
                raise TypeError(f"y_true: expected integer class labels, got dtype {labels.dtype}")
        weights, mask = self._weights(positions, sample_weight, mask, y_pred.dtype)
        if self.ignore_index is not None:
            keep = labels != self.ignore_index
            mask = keep if mask is None else mask & keep
        C = y_pred.shape[-1]
        checked = labels if mask is None else labels[mask]
        if checked.size and (checked.min() < 0 or checked.max() >= C):
            raise ValueError(f"y_true: labels must be in [0, {C}) (the {C} classes of y_pred), got "
                             f"min {checked.min()} and max {checked.max()}"
                             + ("" if self.ignore_index is None else
                                f" (ignore_index={self.ignore_index} positions excluded)"))
        return self._result(*K.sparse_categorical_crossentropy(
            y_pred, labels, from_logits=self.from_logits, label_smoothing=self.label_smoothing,
            weights=weights, mask=mask, reduction=self.reduction))

    def backward(self, cache, d_loss=None):
        return K.sparse_categorical_crossentropy_backward(cache, d_loss)


class _DenseTargetLoss(Loss):
    def _prepare(self, y_pred, y_true):
        y_pred = _pred_array(y_pred)
        if y_pred.ndim < 1:
            raise ValueError(f"y_pred: expected shape (..., features), got {y_pred.shape}")
        y_true = np.asarray(y_true)
        if y_true.dtype.kind not in "fiub":
            raise TypeError(f"y_true: expected numbers, got dtype {y_true.dtype}")
        if y_true.shape != y_pred.shape:
            raise ValueError(f"y_true: expected the shape of y_pred {y_pred.shape}, got {y_true.shape}")
        return y_pred, y_true.astype(y_pred.dtype, copy=False)


class CategoricalCrossentropy(_DenseTargetLoss):
    """Cross-entropy between target distributions (e.g. one-hot) and logits or probabilities.

    ``l = -sum_c q_c log p_c``, ``q = (1 - label_smoothing) * y_true + label_smoothing / C`` (Keras).
    """

    def __init__(self, from_logits=False, *, label_smoothing=0.0, reduction="sum_over_batch_size",
                 name=None):
        super().__init__(reduction=reduction, name=name)
        self.from_logits = bool(from_logits)
        self.label_smoothing = _check_smoothing(label_smoothing)

    def forward(self, y_pred, y_true, sample_weight=None, *, mask=None):
        y_pred, y_true = self._prepare(y_pred, y_true)
        weights, mask = self._weights(y_pred.shape[:-1], sample_weight, mask, y_pred.dtype)
        return self._result(*K.categorical_crossentropy(
            y_pred, y_true, from_logits=self.from_logits, label_smoothing=self.label_smoothing,
            weights=weights, mask=mask, reduction=self.reduction))

    def backward(self, cache, d_loss=None):
        return K.categorical_crossentropy_backward(cache, d_loss)


class BinaryCrossentropy(_DenseTargetLoss):
    """Binary cross-entropy, averaged over the last axis as Keras's; targets smoothed towards 0.5."""

    def __init__(self, from_logits=False, *, label_smoothing=0.0, reduction="sum_over_batch_size",
                 name=None):
        super().__init__(reduction=reduction, name=name)
        self.from_logits = bool(from_logits)
        self.label_smoothing = _check_smoothing(label_smoothing)

    def forward(self, y_pred, y_true, sample_weight=None, *, mask=None):
        y_pred, y_true = self._prepare(y_pred, y_true)
        weights, mask = self._weights(y_pred.shape[:-1], sample_weight, mask, y_pred.dtype)
        return self._result(*K.binary_crossentropy(
            y_pred, y_true, from_logits=self.from_logits, label_smoothing=self.label_smoothing,
            weights=weights, mask=mask, reduction=self.reduction))

    def backward(self, cache, d_loss=None):
        return K.binary_crossentropy_backward(cache, d_loss)


class MeanSquaredError(_DenseTargetLoss):
    """``mean((y_pred - y_true)**2)`` over the last axis (Keras's), then reduced."""

    def forward(self, y_pred, y_true, sample_weight=None, *, mask=None):
        y_pred, y_true = self._prepare(y_pred, y_true)
        weights, mask = self._weights(y_pred.shape[:-1], sample_weight, mask, y_pred.dtype)
        return self._result(*K.mean_squared_error(y_pred, y_true, weights=weights, mask=mask,
                                                  reduction=self.reduction))

    def backward(self, cache, d_loss=None):
        return K.mean_squared_error_backward(cache, d_loss)


def _check_smoothing(value):
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"label_smoothing: expected a number in [0, 1], got {value!r}")
    return float(value)


def _snake(name):
    return "".join("_" + c.lower() if c.isupper() and i else c.lower() for i, c in enumerate(name))


_BY_NAME = {
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "binary_crossentropy": BinaryCrossentropy,
    "mean_squared_error": MeanSquaredError,
    "mse": MeanSquaredError,
}


def get(identifier):
    """A loss object from a Keras name (``"sparse_categorical_crossentropy"``, ``"mse"``, ...), a class
    name, or a loss object (returned as is)."""
    if isinstance(identifier, Loss) or (hasattr(identifier, "forward")
                                        and hasattr(identifier, "backward")):
        return identifier
    if isinstance(identifier, str):
        key = identifier if identifier in _BY_NAME else _snake(identifier)
        if key in _BY_NAME:
            return _BY_NAME[key]()
    raise ValueError(f"loss: expected one of {sorted(_BY_NAME)} or a loss object, got {identifier!r}")
