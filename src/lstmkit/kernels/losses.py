"""Losses and their hand-derived gradients: pure functions of arrays.

Every loss is computed in two stages:

1. a *per-position* loss ``l`` (one value per token, or per sample), following Keras 3's formulas:

   =========================  ===========================================  ======================
   loss                       l at one position (C classes / F features)   d l / d y_pred
   =========================  ===========================================  ======================
   categorical CE, logits z   -sum_c q_c log softmax(z)_c                  softmax(z) - q
   categorical CE, probs p    -sum_c q_c log clip(p / sum p, e, 1-e)       (chain rule, below)
   binary CE, logits z        mean_f max(z,0) - z t + log(1 + e^-|z|)      (sigmoid(z) - t) / F
   binary CE, probs p         mean_f -t log(p'+e) - (1-t) log(1-p'+e)      (chain rule, below)
   mean squared error         mean_f (p - t)^2                             2 (p - t) / F
   =========================  ===========================================  ======================

   where ``q = (1 - s) * onehot(label) + s / C`` is the label-smoothed target (Keras's and PyTorch's
   definition, they agree), ``t' = (1 - s) t + s / 2`` for binary targets, ``p' = clip(p, e, 1 - e)``
   and ``e = 1e-7`` (Keras's ``backend.epsilon()``). Sparse CE from probabilities clips first and then
   normalizes (as Keras's TensorFlow backend); dense CE normalizes first and then clips.

2. a *reduction* of ``l`` (shape ``P``) with optional per-position ``weights`` (sample weights, shape
   ``P``) and ``mask`` (booleans, shape ``P``; False = padding, contributes nothing):

   ``"sum_over_batch_size"`` (Keras's default; also ``"mean"``): sum(l * w) / number of valid positions
   -- the mean over real tokens. ``"per_sequence"``: sum(l * w) / P[0] -- each sequence's summed
   loss, averaged over the batch. ``"sum"``: sum(l * w). ``"none"``: l * w (zero at masked positions).

Each ``name(...)`` returns ``(loss, cache)``; ``name_backward(cache, d_loss=None)`` returns the
gradient of the predictions (``d_loss`` is the upstream gradient; it defaults to 1, or to ones of the
loss's shape for ``reduction="none"``). Inputs must already be validated (see ``lstmkit.losses``).
"""
import numpy as np

from . import backend, buffers
from .activations import log_softmax

EPSILON = 1e-7
REDUCTIONS = ("sum_over_batch_size", "mean", "per_sequence", "sum", "none")


# -- reduction ----------------------------------------------------------------------------------
def reduce_forward(per, weights=None, mask=None, reduction="sum_over_batch_size"):
    """Reduce per-position losses ``per`` (shape P). Returns ``(loss, cache)``."""
    w = np.ones_like(per) if weights is None else np.asarray(weights, per.dtype)
    if mask is not None:
        w = np.where(mask, w, 0).astype(per.dtype)
        per = np.where(mask, per, 0)      # padded positions may hold inf/NaN: drop, don't multiply
    weighted = per * w
    if reduction == "none":
        return weighted, (w, None, per.shape)
    if reduction == "sum":
        scale = 1.0
    elif reduction in ("sum_over_batch_size", "mean"):
        count = per.size if mask is None else int(np.count_nonzero(mask))
        scale = 1.0 / count if count else 0.0
    elif reduction == "per_sequence":
        scale = 1.0 / per.shape[0] if per.ndim and per.shape[0] else 0.0
    else:
        raise ValueError(f"reduction: expected one of {REDUCTIONS}, got {reduction!r}")
    return weighted.sum(dtype=np.float64) * scale, (w, scale, per.shape)


def reduce_backward(cache, d_loss=None):
    """Gradient of the per-position losses."""
    w, scale, shape = cache
    if scale is None:       # reduction "none": d_loss has the loss's shape
        return w * (np.ones(shape, w.dtype) if d_loss is None else np.asarray(d_loss, w.dtype))
    return w * np.asarray(scale * (1.0 if d_loss is None else d_loss), w.dtype)


# -- categorical cross-entropy -------------------------------------------------------------------
def sparse_categorical_crossentropy(y_pred, labels, *, from_logits=False, label_smoothing=0.0,
                                    weights=None, mask=None, reduction="sum_over_batch_size"):
    """Cross-entropy of integer ``labels`` (P) against ``y_pred`` (P + (C,)) logits or probabilities.

    Labels at masked positions are ignored (they may hold any value, e.g. PyTorch's -100). No one-hot
    array is built: ``l = -(1 - s) logp[label] - (s / C) sum_c logp_c``.
    """
    labels = np.asarray(labels)
    if mask is not None:
        labels = np.where(mask, labels, 0)
    if from_logits:
        logp, clipped = log_softmax(y_pred), None
    else:
        clipped = np.clip(y_pred, EPSILON, 1.0 - EPSILON)
        logp = log_softmax(np.log(clipped))
    s, C = label_smoothing, y_pred.shape[-1]
    per = -(1.0 - s) * np.take_along_axis(logp, labels[..., None], axis=-1)[..., 0]
    if s:
        per = per - (s / C) * logp.sum(axis=-1)
    loss, rcache = reduce_forward(per, weights, mask, reduction)
    return loss, ("sparse", rcache, labels, logp, s, y_pred if clipped is not None else None, clipped)


def _sparse_backward(cache, d_loss):
    _, rcache, labels, logp, s, p, clipped = cache
    d_per = reduce_backward(rcache, d_loss)[..., None]
    # d l / d z = softmax(z) - (1 - s) onehot - s / C, with z the logits (or log of the clipped probs)
    loops = backend.compiled_loops(logp.dtype) if p is None and logp.dtype == np.float32 else None
    if loops is not None and logp.size:
        C = logp.shape[-1]
        d = buffers.empty(logp.shape, logp.dtype)
        per_row = np.ascontiguousarray(np.broadcast_to(d_per, labels.shape + (1,)), logp.dtype).reshape(-1)

        def grad(lp, lab, w, out):
            loops.crossentropy_grad32(lp, lab, w, float(s), out)
        backend.by_rows(grad, (logp.reshape(-1, C), labels.reshape(-1).astype(np.intp, copy=False), per_row,
                               d.reshape(-1, C)))
        return d
    d = np.exp(logp)
    np.put_along_axis(d, labels[..., None],
                      np.take_along_axis(d, labels[..., None], axis=-1) - (1.0 - s), axis=-1)
    if s:
        d -= s / logp.shape[-1]
    d *= d_per
    if p is None:
        return d
    inside = (p >= EPSILON) & (p <= 1.0 - EPSILON)
    return np.where(inside, d / clipped, 0).astype(p.dtype)


def categorical_crossentropy(y_pred, y_true, *, from_logits=False, label_smoothing=0.0,
                             weights=None, mask=None, reduction="sum_over_batch_size"):
    """Cross-entropy of target distributions ``y_true`` (P + (C,)) against ``y_pred`` (same shape)."""
    q = np.asarray(y_true, y_pred.dtype)
    if label_smoothing:
        q = q * (1.0 - label_smoothing) + label_smoothing / y_pred.shape[-1]
    return _categorical(y_pred, q, from_logits, weights, mask, reduction)


def _categorical(y_pred, q, from_logits, weights, mask, reduction):
    if from_logits:
        logp = log_softmax(y_pred)
        prob_cache = None
    else:
        total = y_pred.sum(axis=-1, keepdims=True)
        normed = y_pred / total
        clipped = np.clip(normed, EPSILON, 1.0 - EPSILON)
        logp = np.log(clipped)
        prob_cache = (normed, clipped, total)
    per = -(q * logp).sum(axis=-1)
    loss, rcache = reduce_forward(per, weights, mask, reduction)
    return loss, ("categorical", rcache, q, logp, prob_cache)


def _categorical_backward(cache, d_loss):
    _, rcache, q, logp, prob_cache = cache
    d_per = reduce_backward(rcache, d_loss)[..., None]
    if prob_cache is None:            # logits: softmax(z) sum(q) - q (targets may not sum to 1)
        return d_per * (np.exp(logp) * q.sum(axis=-1, keepdims=True) - q)
    normed, clipped, total = prob_cache
    d_clipped = d_per * (-q / clipped)
    d_normed = np.where((normed >= EPSILON) & (normed <= 1.0 - EPSILON), d_clipped, 0)
    # normed = p / sum(p): d p_j = (d n_j - sum_k d n_k n_k) / sum(p)
    return ((d_normed - (d_normed * normed).sum(axis=-1, keepdims=True)) / total).astype(normed.dtype)


def categorical_crossentropy_backward(cache, d_loss=None):
    """Gradient of ``y_pred`` for :func:`categorical_crossentropy`."""
    return _categorical_backward(cache, d_loss)


def sparse_categorical_crossentropy_backward(cache, d_loss=None):
    """Gradient of ``y_pred`` for :func:`sparse_categorical_crossentropy`."""
    return _sparse_backward(cache, d_loss)


# -- binary cross-entropy ------------------------------------------------------------------------
def binary_crossentropy(y_pred, y_true, *, from_logits=False, label_smoothing=0.0, weights=None,
                        mask=None, reduction="sum_over_batch_size"):
    """Binary cross-entropy of targets ``y_true`` in [0, 1] against ``y_pred`` (same shape, (..., F));
    the per-position loss is the mean over the last axis, as Keras's."""
    t = np.asarray(y_true, y_pred.dtype)
    if label_smoothing:
        t = t * (1.0 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        z = y_pred
        elem = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
        prob_cache = None
    else:
        p = np.clip(y_pred, EPSILON, 1.0 - EPSILON)
        elem = -(t * np.log(p + EPSILON) + (1.0 - t) * np.log(1.0 - p + EPSILON))
        prob_cache = p
    per = elem.mean(axis=-1)
    loss, rcache = reduce_forward(per, weights, mask, reduction)
    return loss, (rcache, y_pred, t, prob_cache)


def binary_crossentropy_backward(cache, d_loss=None):
    rcache, y_pred, t, p = cache
    d_per = reduce_backward(rcache, d_loss)[..., None] / y_pred.shape[-1]
    if p is None:
        s = 0.5 * np.tanh(0.5 * y_pred) + 0.5
        return (d_per * (s - t)).astype(y_pred.dtype)
    d_p = -t / (p + EPSILON) + (1.0 - t) / (1.0 - p + EPSILON)
    inside = (y_pred >= EPSILON) & (y_pred <= 1.0 - EPSILON)
    return np.where(inside, d_per * d_p, 0).astype(y_pred.dtype)


# -- mean squared error --------------------------------------------------------------------------
def mean_squared_error(y_pred, y_true, *, weights=None, mask=None, reduction="sum_over_batch_size"):
    """``mean((y_pred - y_true)**2)`` over the last axis, then reduced."""
    diff = y_pred - np.asarray(y_true, y_pred.dtype)
    per = np.mean(diff * diff, axis=-1)
    loss, rcache = reduce_forward(per, weights, mask, reduction)
    return loss, (rcache, diff)


def mean_squared_error_backward(cache, d_loss=None):
    rcache, diff = cache
    d_per = reduce_backward(rcache, d_loss)[..., None]
    return (d_per * (2.0 / diff.shape[-1]) * diff).astype(diff.dtype)
