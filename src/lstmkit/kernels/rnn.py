"""Simple (Elman) RNN over a whole sequence: forward and hand-derived backward.

Layout (Keras's): kernel (I, U), recurrent_kernel (U, U), bias (U,)::

    h_t = act(x_t @ kernel + (h_{t-1} * r) @ recurrent_kernel + bias)     r: recurrent dropout mask, or 1

Shapes: x (B, T, I), mask (B, T) or None, h0 (B, U), outputs (B, T, U), h (B, U).
"""
import numpy as np

from . import activations, buffers
from .dense import Deferred, resolve
from .sequence import check_mode, masked_output, output_grad, to_batch_major, to_processing_order


def rnn_forward(x, mask, h0, kernel, recurrent_kernel, bias, *, reverse=False,
                masked_output_mode="zero", activation="tanh", recurrent_dropout_mask=None):
    """Run a simple RNN over ``x``. Returns ``outputs, h, cache``; ``cache`` feeds :func:`rnn_backward`."""
    check_mode(masked_output_mode)
    act, _ = activations.get(activation)
    dtype = kernel.dtype
    B, T, _ = x.shape
    U = recurrent_kernel.shape[0]
    xs, ms = to_processing_order(x, mask, reverse, dtype)
    xw = (xs.reshape(T * B, xs.shape[2]) @ kernel).reshape(T, B, U)
    if bias is not None:
        xw += bias
    h = np.zeros((B, U), dtype) if h0 is None else np.asarray(h0, dtype)
    rmask = recurrent_dropout_mask
    new = buffers.empty((T, B, U), dtype)          # act(...) of every step, before masking
    hs = buffers.empty((T + 1, B, U), dtype)
    outs = buffers.zeros((T, B, U), dtype)
    hs[0] = h
    prev_out = np.zeros((B, U), dtype)
    for t in range(T):
        hr = h if rmask is None else h * rmask
        new[t] = act(xw[t] + hr @ recurrent_kernel)
        m = None if ms is None else ms[t]
        masked_output(outs[t], new[t], prev_out, m, masked_output_mode)
        prev_out = outs[t]
        h = new[t] if m is None else np.where(m != 0, new[t], h)   # select: exact final state
        hs[t + 1] = h
    cache = (xs, ms, kernel, recurrent_kernel, bias is not None, new, hs, rmask, reverse,
             masked_output_mode, activation)
    return to_batch_major(outs, reverse), h, cache


def rnn_backward(cache, d_outputs=None, d_h=None, *, weight_grads=True):
    """Back-propagate through :func:`rnn_forward`. Returns a dict like :func:`lstm_backward`'s, without c0
    (``weight_grads`` as there)."""
    xs, ms, kernel, recurrent_kernel, has_bias, new, hs, rmask, reverse, mode, activation = cache
    _, dact = activations.get(activation)
    T, B, _ = xs.shape
    U = recurrent_kernel.shape[0]
    dtype = kernel.dtype
    d_outs = None
    if d_outputs is not None:
        d_outs, _ = to_processing_order(d_outputs, None, reverse, dtype)
    dh = np.zeros((B, U), dtype) if d_h is None else np.array(d_h, dtype)
    pending = np.zeros((B, U), dtype)
    dz = buffers.empty((T, B, U), dtype)
    rk_t = recurrent_kernel.T
    for t in range(T - 1, -1, -1):
        m = None if ms is None else ms[t]
        dh_new = dh if m is None else dh * m
        if d_outs is not None:
            dh_new = dh_new + output_grad(d_outs[t], m, mode, pending)
        dz[t] = dh_new * dact(new[t])
        dh_prev = dz[t] @ rk_t
        if rmask is not None:
            dh_prev *= rmask
        dh = dh_prev if m is None else dh_prev + dh * (1 - m)
    dz2 = dz.reshape(T * B, U)
    h_in = hs[:-1] if rmask is None else hs[:-1] * rmask
    grads = {
        "x": to_batch_major((dz2 @ kernel.T).reshape(T, B, kernel.shape[0]), reverse),
        "h0": dh,
        "kernel": Deferred(xs.reshape(T * B, xs.shape[2]), dz2),
        "recurrent_kernel": Deferred(h_in.reshape(T * B, U), dz2),
        "bias": Deferred(None, dz2) if has_bias else None,
    }
    if weight_grads:
        for name in ("kernel", "recurrent_kernel", "bias"):
            if grads[name] is not None:
                grads[name] = resolve([grads[name]])
    return grads
