"""LSTM over a whole sequence: forward and hand-derived backward (back-propagation through time).

Canonical layout (Keras's), gate blocks in the order i, f, g, o::

    kernel            (I, 4U)
    recurrent_kernel  (U, 4U)
    bias              (4U,)

For each step t where ``mask[:, t]`` is True::

    z   = x_t @ kernel + (h_{t-1} * r) @ recurrent_kernel + bias      r: recurrent dropout mask, or 1
    i   = σ(z_i)    f = σ(z_f)    g = act(z_g)    o = σ(z_o)        σ = recurrent_activation
    c_t = f * c_{t-1} + i * g
    h_t = o * act(c_t)                                               act = activation

Shapes: x (B, T, I), mask (B, T) bool or None, h0 and c0 (B, U), outputs (B, T, U), h and c (B, U).
Where the mask is False the state is carried and the output is zero or repeated (see ``sequence``).

With a ``projection (U, P)`` (LSTMP, Sak et al. 2014; PyTorch's ``proj_size``, whose ``weight_hr``
(P, U) is its transpose; TF1's ``num_proj``) the state and the outputs are projected::

    h_t = (o * act(c_t)) @ projection          recurrent_kernel (P, 4U); h0, h, outputs P wide

and the time loop is the plain NumPy one.
"""
import numpy as np

from . import activations, backend, buffers
from .dense import Deferred, resolve
from .sequence import check_mode, masked_output, output_grad, to_batch_major, to_processing_order


def lstm_forward(x, mask, h0, c0, kernel, recurrent_kernel, bias, *, reverse=False,
                 masked_output_mode="zero", activation="tanh", recurrent_activation="sigmoid",
                 recurrent_dropout_mask=None, projection=None, inference=False):
    """Run an LSTM over ``x``. Returns ``outputs, h, c, cache``; ``cache`` feeds :func:`lstm_backward`.

    ``bias`` may be None (``use_bias=False``). ``h0``/``c0`` may be None (zeros).
    ``inference=True``: keep nothing for a backward pass (``cache`` is None): less memory and time.
    """
    check_mode(masked_output_mode)
    act, _ = activations.get(activation)
    ract, _ = activations.get(recurrent_activation)
    dtype = kernel.dtype
    B, T, _ = x.shape
    U = recurrent_kernel.shape[1] // 4
    P = U if projection is None else projection.shape[1]    # width of h and of the outputs
    xs, ms = to_processing_order(x, mask, reverse, dtype)

    loops = None if projection is not None else backend.compiled_loops(dtype, activation,
                                                                        recurrent_activation)
    h = np.zeros((B, P), dtype) if h0 is None else np.asarray(h0, dtype)
    c = np.zeros((B, U), dtype) if c0 is None else np.asarray(c0, dtype)
    rmask = recurrent_dropout_mask
    if loops is not None:
        outs = buffers.empty((T, B, P), dtype)
        keep = not inference
        act_c = buffers.empty((T, B, U), dtype) if keep else None
        hs, cs = (loops.state_buffers(T, B, U, dtype, keep) for _ in range(2))
        h, c, gates = loops.lstm_forward(xs, kernel, bias, recurrent_kernel, h, c, ms, rmask,
                                         masked_output_mode, activation, recurrent_activation, keep, hs,
                                         cs, act_c, outs)
    else:
        # Input projections of every step in one matrix product.
        xw = (xs.reshape(T * B, xs.shape[2]) @ kernel).reshape(T, B, 4 * U)
        if bias is not None:
            xw += bias
        outs = buffers.zeros((T, B, P), dtype)
        gates = buffers.empty((T, B, 4 * U), dtype)   # activated i, f, g, o
        hs = buffers.empty((T + 1, B, P), dtype)      # state entering each step (hs[0] = h0), the last
        cs = buffers.empty((T + 1, B, U), dtype)
        act_c = buffers.empty((T, B, U), dtype)
        hs[0], cs[0] = h, c
        prev_out = np.zeros((B, P), dtype)
        for t in range(T):
            hr = h if rmask is None else h * rmask
            z = xw[t] + hr @ recurrent_kernel
            a = gates[t]
            a[:, :2 * U] = ract(z[:, :2 * U])
            a[:, 2 * U:3 * U] = act(z[:, 2 * U:3 * U])
            a[:, 3 * U:] = ract(z[:, 3 * U:])
            i, f, g, o = a[:, :U], a[:, U:2 * U], a[:, 2 * U:3 * U], a[:, 3 * U:]
            c_new = f * c + i * g
            act_c[t] = act(c_new)
            h_new = o * act_c[t]
            if projection is not None:
                h_new = h_new @ projection
            m = None if ms is None else ms[t]
            masked_output(outs[t], h_new, prev_out, m, masked_output_mode)
            prev_out = outs[t]
            if m is None:
                h, c = h_new, c_new
            else:
                valid = m != 0   # select, not blend: the final state is bit-equal to the last output
                h = np.where(valid, h_new, h)
                c = np.where(valid, c_new, c)
            hs[t + 1], cs[t + 1] = h, c
    cache = None if inference else (xs, ms, kernel, recurrent_kernel, bias is not None, gates, hs, cs,
                                    act_c, rmask, reverse, masked_output_mode, activation,
                                    recurrent_activation, projection)
    return to_batch_major(outs, reverse), h, c, cache


def lstm_backward(cache, d_outputs=None, d_h=None, d_c=None, *, weight_grads=True):
    """Back-propagate through :func:`lstm_forward`.

    ``d_outputs`` (B, T, P), ``d_h`` (B, P) and ``d_c`` (B, U) are the gradients of the loss with
    respect to the forward's results (P = U without a projection); any may be None (zero). Returns a
    dict with ``x``, ``h0``, ``c0``, ``kernel``, ``recurrent_kernel``, ``bias`` (None without bias)
    and, with a projection, ``projection``. ``weight_grads=False``: the weights' gradients are
    :class:`~lstmkit.kernels.dense.Deferred` (see :func:`~lstmkit.kernels.dense.resolve`).
    """
    (xs, ms, kernel, recurrent_kernel, has_bias, gates, hs, cs, act_c, rmask, reverse, mode,
     activation, recurrent_activation, projection) = cache
    _, dact = activations.get(activation)
    _, dract = activations.get(recurrent_activation)
    T, B, _ = xs.shape
    U = recurrent_kernel.shape[1] // 4
    P = U if projection is None else projection.shape[1]
    dtype = kernel.dtype
    d_outs = None
    if d_outputs is not None:
        d_outs, _ = to_processing_order(d_outputs, None, reverse, dtype)
    dh = np.zeros((B, P), dtype) if d_h is None else np.array(d_h, dtype)
    dc = np.zeros((B, U), dtype) if d_c is None else np.array(d_c, dtype)
    pending = np.zeros((B, P), dtype)
    dz = buffers.empty((T, B, 4 * U), dtype)
    dh_steps = None if projection is None else buffers.empty((T, B, P), dtype)   # for d_projection
    loops = None if projection is not None else backend.compiled_loops(dtype, activation,
                                                                        recurrent_activation)
    threaded = loops is not None and loops.backward_threaded(B, T, kernel, recurrent_kernel, dtype)
    if loops is not None:
        dh, dc = loops.lstm_backward(d_outs, gates, cs, act_c, recurrent_kernel, dh, dc, ms, rmask, mode,
                                     activation, recurrent_activation, dz)
    else:
        rk_t = recurrent_kernel.T
        for t in range(T - 1, -1, -1):
            m = None if ms is None else ms[t]
            dh_new = dh if m is None else dh * m
            if d_outs is not None:
                dh_new = dh_new + output_grad(d_outs[t], m, mode, pending)
            if projection is not None:
                dh_steps[t] = dh_new
                dh_new = dh_new @ projection.T       # through h_t = (o * act(c_t)) @ projection
            dc_new = dc if m is None else dc * m
            a = gates[t]
            i, f, g, o = a[:, :U], a[:, U:2 * U], a[:, 2 * U:3 * U], a[:, 3 * U:]
            ac = act_c[t]
            dc_new = dc_new + dh_new * o * dact(ac)
            d = dz[t]
            d[:, :U] = dc_new * g * dract(i)
            d[:, U:2 * U] = dc_new * cs[t] * dract(f)
            d[:, 2 * U:3 * U] = dc_new * i * dact(g)
            d[:, 3 * U:] = dh_new * ac * dract(o)
            dh_gate = d @ rk_t
            if rmask is not None:
                dh_gate *= rmask
            if m is None:
                dh, dc = dh_gate, dc_new * f
            else:
                dh = dh_gate + dh * (1 - m)
                dc = dc_new * f + dc * (1 - m)
    dz2 = dz.reshape(T * B, 4 * U)
    h_in = (hs[:-1] if rmask is None else hs[:-1] * rmask).reshape(T * B, P)
    x2 = xs.reshape(T * B, xs.shape[2])
    grads = {"kernel": Deferred(x2, dz2), "recurrent_kernel": Deferred(h_in, dz2),
             "bias": Deferred(None, dz2) if has_bias else None}
    if projection is not None:
        m_all = gates[:, :, 3 * U:] * act_c       # o * act(c_t) of every step, (T, B, U)
        grads["projection"] = Deferred(m_all.reshape(T * B, U), dh_steps.reshape(T * B, P))
    if weight_grads:
        d_x, grads["kernel"], grads["recurrent_kernel"] = backend.matmuls(
            [(dz2, kernel.T), (x2.T, dz2), (h_in.T, dz2)], threaded or None)
        for name in ("bias", "projection"):
            if grads.get(name) is not None:
                grads[name] = resolve([grads[name]])
    else:
        d_x = backend.matmul(dz2, kernel.T, threaded or None)
    grads.update(x=to_batch_major(d_x.reshape(T, B, kernel.shape[0]), reverse), h0=dh, c0=dc)
    return grads
