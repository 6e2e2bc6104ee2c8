"""Attention of decoder queries over encoder states: Luong dot / general and Bahdanau additive.

Shapes: query (B, T, Dq) — T decoder steps at once (teacher forcing) or T = 1 (one decoding step);
keys (B, S, Dk) and values (B, S, Dv) — the S encoder states (usually keys is values);
mask (B, S) bool, True at valid source positions (each row needs at least one), or None.

The score of query q against key k, and the parameters each kind needs::

    dot       score = q · k                      (Dq == Dk)            no parameters
    general   score = q · (k W^T) = q W k^T      W (Dq, Dk)            Luong et al. 2015
    additive  score = v · tanh(q W_q + k W_k)    W_q (Dq, A), W_k (Dk, A), v (A,)   Bahdanau et al. 2015

    weights = softmax over S of the scores, exactly 0 where mask is False      (B, T, S)
    context = weights @ values                                                  (B, T, Dv)

The part that depends on the keys alone (``k W^T``, ``k W_k``) is the *memory*: computed once per
source batch by :func:`attention_memory_forward`, then reused by every decoder step of
:func:`attention_forward`. Gradients of the memory from every step are summed and sent back once
through :func:`attention_memory_backward`.

Example (one decoder step against 5 encoder states)::

    mem, mcache = attention_memory_forward(keys, "general", W=W)
    context, weights, cache = attention_forward(q[:, None], mem, keys, mask, "general")
    g = attention_backward(cache, d_context)          # g["query"], g["memory"], g["values"], ...
    gm = attention_memory_backward(mcache, g["memory"])   # gm["keys"], gm["W"]
"""
import numpy as np

from . import backend
from .dense import Deferred, resolve

SCORES = ("dot", "general", "additive")


def check_score(score):
    if score not in SCORES:
        raise ValueError(f"score: expected one of {', '.join(SCORES)}, got {score!r}")


def attention_memory_forward(keys, score, W=None, W_k=None):
    """The key-side projection: ``keys`` (dot), ``keys @ W.T`` (general, (B, S, Dq)) or
    ``keys @ W_k`` (additive, (B, S, A)). Returns ``memory, cache``."""
    check_score(score)
    if score == "dot":
        memory = keys
    else:
        # One 2-D product: NumPy's batched (3-D) matmul against a shared matrix is several times slower.
        M = W.T if score == "general" else W_k
        memory = backend.matmul(keys.reshape(-1, keys.shape[-1]), M).reshape(*keys.shape[:-1], M.shape[1])
    return memory, (score, keys, W, W_k)


def attention_memory_backward(cache, d_memory):
    """Returns a dict with ``keys`` and ``W`` (general) or ``W_k`` (additive); None where unused."""
    score, keys, W, W_k = cache
    if score == "dot":
        return {"keys": d_memory, "W": None, "W_k": None}
    flat_keys = keys.reshape(-1, keys.shape[-1])
    flat_d = d_memory.reshape(-1, d_memory.shape[-1])
    M = W if score == "general" else W_k.T
    if score == "general":
        d_keys, d_W = backend.matmuls([(flat_d, M), (flat_d.T, flat_keys)])
        return {"keys": d_keys.reshape(keys.shape), "W": d_W, "W_k": None}
    d_keys, d_Wk = backend.matmuls([(flat_d, M), (flat_keys.T, flat_d)])
    return {"keys": d_keys.reshape(keys.shape), "W": None, "W_k": d_Wk}


def attention_forward(query, memory, values, mask, score, W_q=None, v=None):
    """Attend from ``query`` (B, T, Dq) over ``memory`` (from :func:`attention_memory_forward`).

    Returns ``context (B, T, Dv), weights (B, T, S), cache``.
    """
    check_score(score)
    if score == "additive":
        q_proj = query @ W_q                                         # (B, T, A)
        hidden = np.tanh(q_proj[:, :, None, :] + memory[:, None, :, :])   # (B, T, S, A)
        scores = hidden @ v                                          # (B, T, S)
    else:
        hidden = None
        scores = query @ memory.transpose(0, 2, 1)                  # (B, T, S)
    if mask is not None:
        valid = np.asarray(mask, bool)[:, None, :]
        # Masked positions get weight exactly 0: exclude them from the max and zero their exp.
        scores = np.where(valid, scores, -np.inf)
        e = np.exp(scores - scores.max(axis=-1, keepdims=True))
    else:
        e = np.exp(scores - scores.max(axis=-1, keepdims=True))
    weights = e / e.sum(axis=-1, keepdims=True)
    context = weights @ values
    cache = (score, query, memory, values, weights, hidden, W_q, v)
    return context, weights, cache


def attention_backward(cache, d_context, d_weights=None, *, key_grads=True):
    """Back-propagate through :func:`attention_forward`. ``d_context`` (B, T, Dv); ``d_weights``
    (B, T, S) or None. Returns a dict with ``query``, ``memory``, ``values``, ``W_q`` and ``v``
    (the last two None unless additive). ``key_grads=False``: ``values`` and (dot, general)
    ``memory`` are :class:`~lstmkit.kernels.dense.Deferred`, for a decoder stepped T times to sum them
    with one product of T rows per sentence (:func:`~lstmkit.kernels.dense.resolve`); only
    ``query`` is needed at each step."""
    score, query, memory, values, weights, hidden, W_q, v = cache
    d_w = d_context @ values.transpose(0, 2, 1)                      # (B, T, S)
    if d_weights is not None:
        d_w = d_w + d_weights
    d_values = Deferred(weights, d_context)                           # (B, S, Dv)
    # softmax: d_s = w * (d_w - sum_j d_w_j w_j); zero at masked positions since w is 0 there
    d_scores = weights * (d_w - (d_w * weights).sum(axis=-1, keepdims=True))
    if score == "additive":
        d_v = np.einsum("bts,btsa->a", d_scores, hidden)
        d_pre = d_scores[..., None] * v * (1.0 - hidden * hidden)    # (B, T, S, A)
        d_qproj = d_pre.sum(axis=2)                                   # (B, T, A)
        d_memory = d_pre.sum(axis=1)                                  # (B, S, A)
        d_query = d_qproj @ W_q.T
        d_Wq = query.reshape(-1, query.shape[-1]).T @ d_qproj.reshape(-1, d_qproj.shape[-1])
        g = {"query": d_query, "memory": d_memory, "values": d_values, "W_q": d_Wq, "v": d_v}
    else:
        g = {"query": d_scores @ memory,                              # (B, T, Dq)
             "memory": Deferred(d_scores, query),                     # (B, S, Dq)
             "values": d_values, "W_q": None, "v": None}
    if key_grads:
        g["values"], g["memory"] = resolve([g["values"]]), resolve([g["memory"]])
    return g
