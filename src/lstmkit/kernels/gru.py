"""GRU over a whole sequence, both reset placements: forward and hand-derived backward.

Canonical layout (Keras's), gate blocks in the order z (update), r (reset), h (candidate)::

    kernel            (I, 3U)
    recurrent_kernel  (U, 3U)
    bias              (2, 3U) with reset_after=True: row 0 input bias, row 1 recurrent bias
                      (3U,)   with reset_after=False

reset_after=True (Keras default, PyTorch, cuDNN)::

    xz, xr, xh = x_t @ kernel + b_in          rz, rr, rh = h_{t-1} @ recurrent_kernel + b_rec
    z = σ(xz + rz)    r = σ(xr + rr)    n = act(xh + r * rh)

reset_after=False (Keras 2's default, TF1 GRUCell)::

    xz, xr, xh = x_t @ kernel + bias
    z = σ(xz + h_{t-1} @ R_z)   r = σ(xr + h_{t-1} @ R_r)   n = act(xh + (r * h_{t-1}) @ R_h)

and in both::

    h_t = z * h_{t-1} + (1 - z) * n

Shapes: x (B, T, I), mask (B, T) or None, h0 (B, U), outputs (B, T, U), h (B, U).
"""
import numpy as np

from . import activations, backend, buffers
from .sequence import check_mode, masked_output, output_grad, to_batch_major, to_processing_order


def gru_forward(x, mask, h0, kernel, recurrent_kernel, bias, *, reset_after=True, reverse=False,
                masked_output_mode="zero", activation="tanh", recurrent_activation="sigmoid",
                recurrent_dropout_mask=None, inference=False):
    """Run a GRU over ``x``. Returns ``outputs, h, cache``; ``cache`` feeds :func:`gru_backward`.

    ``inference=True``: keep nothing for a backward pass (``cache`` is None): less memory and time.
    """
    check_mode(masked_output_mode)
    act, _ = activations.get(activation)
    ract, _ = activations.get(recurrent_activation)
    dtype = kernel.dtype
    B, T, _ = x.shape
    U = recurrent_kernel.shape[0]
    xs, ms = to_processing_order(x, mask, reverse, dtype)
    b_in = b_rec = None
    if bias is not None:
        b_in, b_rec = (bias[0], bias[1]) if reset_after else (bias, None)
    loops = backend.compiled_loops(dtype, activation, recurrent_activation) if reset_after else None
    h = np.zeros((B, U), dtype) if h0 is None else np.asarray(h0, dtype)
    rmask = recurrent_dropout_mask
    keep = not inference or loops is None
    # reset_after: h @ R_h + b, else (r * h) fed to R_h; the state entering each step (hs[0] = h0)
    # and the last.
    rh_all = buffers.empty((T, B, U), dtype) if keep else None
    hs = buffers.empty((T + 1, B, U), dtype) if keep else loops.state_buffers(T, B, U, dtype, keep)
    outs = buffers.zeros((T, B, U), dtype)
    hs[0] = h
    prev_out = np.zeros((B, U), dtype)
    if loops is not None:   # the input projections, then activated z, r, n in their place (gates)
        h, gates = loops.gru_forward(xs, kernel, b_in, recurrent_kernel, b_rec, h, ms, rmask,
                                     masked_output_mode, activation, recurrent_activation, keep, rh_all,
                                     hs, outs)
    else:
        xw = backend.matmul(xs.reshape(T * B, xs.shape[2]), kernel).reshape(T, B, 3 * U)
        if b_in is not None:
            xw += b_in
        gates = buffers.empty((T, B, 3 * U), dtype)     # activated z, r, n
        R_zr, R_h = recurrent_kernel[:, :2 * U], recurrent_kernel[:, 2 * U:]
        for t in range(T):
            hr = h if rmask is None else h * rmask
            a = gates[t]
            if reset_after:
                rec = hr @ recurrent_kernel
                if b_rec is not None:
                    rec += b_rec
                a[:, :2 * U] = ract(xw[t, :, :2 * U] + rec[:, :2 * U])
                rh_all[t] = rec[:, 2 * U:]
                a[:, 2 * U:] = act(xw[t, :, 2 * U:] + a[:, U:2 * U] * rh_all[t])
            else:
                a[:, :2 * U] = ract(xw[t, :, :2 * U] + hr @ R_zr)
                rh_all[t] = a[:, U:2 * U] * hr
                a[:, 2 * U:] = act(xw[t, :, 2 * U:] + rh_all[t] @ R_h)
            z, n = a[:, :U], a[:, 2 * U:]
            h_new = n + z * (h - n)
            m = None if ms is None else ms[t]
            masked_output(outs[t], h_new, prev_out, m, masked_output_mode)
            prev_out = outs[t]
            h = h_new if m is None else np.where(m != 0, h_new, h)   # select: exact final state
            hs[t + 1] = h
    cache = None if inference else (xs, ms, kernel, recurrent_kernel, bias is not None, reset_after, gates,
                                    rh_all, hs, rmask, reverse, masked_output_mode, activation,
                                    recurrent_activation)
    return to_batch_major(outs, reverse), h, cache


def gru_backward(cache, d_outputs=None, d_h=None):
    """Back-propagate through :func:`gru_forward`.

    Returns a dict with ``x``, ``h0``, ``kernel``, ``recurrent_kernel`` and ``bias`` (same shape as
    the forward's bias, or None).
    """
    (xs, ms, kernel, recurrent_kernel, has_bias, reset_after, gates, rh_all, hs, rmask, reverse,
     mode, activation, recurrent_activation) = cache
    _, dact = activations.get(activation)
    _, dract = activations.get(recurrent_activation)
    T, B, _ = xs.shape
    U = recurrent_kernel.shape[0]
    dtype = kernel.dtype
    d_outs = None
    if d_outputs is not None:
        d_outs, _ = to_processing_order(d_outputs, None, reverse, dtype)
    dh = np.zeros((B, U), dtype) if d_h is None else np.array(d_h, dtype)
    pending = np.zeros((B, U), dtype)
    dxw = buffers.empty((T, B, 3 * U), dtype)     # gradient of the input projections
    drec = buffers.empty((T, B, 3 * U), dtype)    # gradient of the recurrent products' outputs
    loops = backend.compiled_loops(dtype, activation, recurrent_activation) if reset_after else None
    threaded = loops is not None and loops.backward_threaded(B, T, kernel, recurrent_kernel, dtype)
    if loops is not None:
        dh = loops.gru_backward(d_outs, gates, rh_all, hs, recurrent_kernel, dh, ms, rmask, mode, activation,
                                recurrent_activation, dxw, drec)
    else:
        R_zr_t, R_h_t = recurrent_kernel[:, :2 * U].T, recurrent_kernel[:, 2 * U:].T
        for t in range(T - 1, -1, -1):
            m = None if ms is None else ms[t]
            dh_new = dh if m is None else dh * m
            if d_outs is not None:
                dh_new = dh_new + output_grad(d_outs[t], m, mode, pending)
            a = gates[t]
            z, r, n = a[:, :U], a[:, U:2 * U], a[:, 2 * U:]
            h_prev = hs[t]
            hr = h_prev if rmask is None else h_prev * rmask
            dn = dh_new * (1 - z) * dact(n)
            dzp = dh_new * (h_prev - n) * dract(z)
            dx_t, dr_t = dxw[t], drec[t]
            dx_t[:, :U] = dzp
            dx_t[:, 2 * U:] = dn
            dr_t[:, :U] = dzp
            if reset_after:
                drp = dn * rh_all[t] * dract(r)
                dr_t[:, 2 * U:] = dn * r
                dx_t[:, U:2 * U] = drp
                dr_t[:, U:2 * U] = drp
                dhr = dr_t @ recurrent_kernel.T
            else:
                d_rh = dn @ R_h_t                     # gradient of (r * hr)
                drp = d_rh * hr * dract(r)
                dx_t[:, U:2 * U] = drp
                dr_t[:, U:2 * U] = drp
                dr_t[:, 2 * U:] = dn
                dhr = dr_t[:, :2 * U] @ R_zr_t + d_rh * r
            if rmask is not None:
                dhr *= rmask
            dh_prev = dhr + dh_new * z
            dh = dh_prev if m is None else dh_prev + dh * (1 - m)
    dxw2 = dxw.reshape(T * B, 3 * U)
    drec2 = drec.reshape(T * B, 3 * U)
    h_in = hs[:-1] if rmask is None else hs[:-1] * rmask
    h_in2 = h_in.reshape(T * B, U)
    products = [(dxw2, kernel.T), (xs.reshape(T * B, xs.shape[2]).T, dxw2)]
    if reset_after:
        products.append((h_in2.T, drec2))
    else:                   # the candidate's recurrent product takes r * h, not h
        products += [(h_in2.T, drec2[:, :2 * U]), (rh_all.reshape(T * B, U).T, drec2[:, 2 * U:])]
    d_x, d_kernel, *d_rk = backend.matmuls(products, threaded or None)
    d_rk = d_rk[0] if reset_after else np.concatenate(d_rk, axis=1)
    d_bias = None
    if has_bias:
        d_bias = np.stack([dxw2.sum(0), drec2.sum(0)]) if reset_after else dxw2.sum(0)
    return {
        "x": to_batch_major(d_x.reshape(T, B, kernel.shape[0]), reverse),
        "h0": dh,
        "kernel": d_kernel,
        "recurrent_kernel": d_rk,
        "bias": d_bias,
    }
