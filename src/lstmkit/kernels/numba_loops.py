"""The recurrent kernels' time loops compiled with Numba: the whole loop runs without Python.

Imported only through :mod:`.backend`, on the first kernel call. Each loop fills exactly the buffers
the NumPy loop of the same kernel fills, so the caches (and backward passes) of the two paths are
interchangeable. Per step: one BLAS product with the recurrent matrix into a preallocated buffer
(a matrix-vector product when the batch is 1), then one fused pass over the gates, written so that
LLVM vectorizes it. Nothing is allocated inside the loop.

Activations in float32 use the vectorizable ``_exp32`` below (Cody-Waite range reduction and a
degree-7 polynomial, within 0.6 ulp of exp) and a polynomial for tanh near 0, within 1.2 ulp of the
exact tanh over the whole float32 range, which NumPy's own float32 tanh also is.
In float64 they use the C library's exp.
"""
import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

ACTIVATIONS = {"tanh": 0, "sigmoid": 1, "hard_sigmoid": 2, "relu": 3, "linear": 4}
MODES = {"zero": 0, "repeat": 1}
# error_model="numpy": a division by zero gives inf, as in NumPy, instead of a Python exception
# check that stops vectorization. Only "contract" (fused multiply-add) of the fast-math flags:
# NaN and inf keep their meaning.
JIT = dict(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})


def supports(dtype, activation_names):
    return (np.dtype(dtype) in (np.float32, np.float64)
            and all((a or "linear") in ACTIVATIONS for a in activation_names))


def codes(*names):
    return tuple(ACTIVATIONS[n or "linear"] for n in names)


def _absent(dtype, ndim):
    """A zero-size array standing for "no mask", "no dropout", "no output gradient"."""
    return np.zeros((0,) * ndim, dtype)


# ----------------------------------------------------------------------------- activations
@intrinsic
def _int32_bits_as_float32(typingctx, x):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


_f = np.float32
_LOG2E, _LN2_HI, _LN2_LO = _f(1.4426950408889634), _f(0.693359375), _f(-2.12194440e-4)
# tanh(x)/x = 1 + s*(T1 + s*(T2 + ...)), s = x*x, |x| < 0.55: least-squares fit, relative error 3e-9
_T1, _T2, _T3, _T4, _T5 = (_f(-0.33333320607613), _f(0.13332699681988655), _f(-0.05386507907087302),
                           _f(0.021127241400617364), _f(-0.006356495850162589))


@njit(inline="always", **JIT)
def _exp32(x):
    x = min(max(x, _f(-87.0)), _f(88.0))
    k = math.floor(x * _LOG2E + _f(0.5))
    r = x - k * _LN2_HI - k * _LN2_LO
    p = _f(1 / 5040)
    p = p * r + _f(1 / 720)
    p = p * r + _f(1 / 120)
    p = p * r + _f(1 / 24)
    p = p * r + _f(1 / 6)
    p = p * r + _f(0.5)
    p = p * r + _f(1.0)
    p = p * r + _f(1.0)
    return p * _int32_bits_as_float32(np.int32((np.int32(k) + np.int32(127)) << np.int32(23)))


def _tanh(x):
    pass


def _sigmoid(x):
    pass


@overload(_tanh, jit_options=dict(inline="always", **JIT))
def _tanh_impl(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        def tanh32(x):
            a = abs(x)
            s = x * x
            small = x * (_f(1.0) + s * (_T1 + s * (_T2 + s * (_T3 + s * (_T4 + s * _T5)))))
            big = math.copysign(_f(1.0) - _f(2.0) / (_exp32(a + a) + _f(1.0)), x)
            return small if a < _f(0.55) else big
        return tanh32
    return lambda x: math.tanh(x)


@overload(_sigmoid, jit_options=dict(inline="always", **JIT))
def _sigmoid_impl(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        return lambda x: _f(1.0) / (_f(1.0) + _exp32(-x))
    return lambda x: 0.5 * math.tanh(0.5 * x) + 0.5


@njit(**JIT)
def _activate(out, a, b, code):
    """out[j] = f(a[j] + b[j]) for the activation numbered ``code``."""
    one = out.dtype.type(1.0)
    zero = one - one
    six = (one + one + one) * (one + one)
    half = one / (one + one)
    if code == 0:
        for j in range(out.shape[0]):
            out[j] = _tanh(a[j] + b[j])
    elif code == 1:
        for j in range(out.shape[0]):
            out[j] = _sigmoid(a[j] + b[j])
    elif code == 2:
        for j in range(out.shape[0]):
            out[j] = min(max((a[j] + b[j]) / six + half, zero), one)
    elif code == 3:
        for j in range(out.shape[0]):
            out[j] = max(a[j] + b[j], zero)
    else:
        for j in range(out.shape[0]):
            out[j] = a[j] + b[j]


@njit(inline="always", **JIT)
def _act1(v, code, one):
    zero = one - one
    if code == 0:
        return _tanh(v)
    if code == 1:
        return _sigmoid(v)
    if code == 2:
        return min(max(v / ((one + one + one) * (one + one)) + one / (one + one), zero), one)
    if code == 3:
        return max(v, zero)
    return v


@njit(inline="always", **JIT)
def _grad_from_output(y, code, one):
    zero = one - one
    if code == 0:
        return one - y * y
    if code == 1:
        return y * (one - y)
    if code == 2:
        return one / ((one + one + one) * (one + one)) if (y > zero and y < one) else zero
    if code == 3:
        return one if y > zero else zero
    return one


@njit(inline="always", **JIT)
def _matmul(a, w, out):
    """out = a @ w; a matrix-vector product when a has one row (no packing of w)."""
    if a.shape[0] == 1:
        np.dot(a[0], w, out[0])
    else:
        np.dot(a, w, out)


# ----------------------------------------------------------------------------- LSTM
@njit(**JIT)
def _lstm_forward(xw, R, h, c, ms, rmask, mode, act, ract, gates, hs, cs, act_c, outs):
    T, B, G = xw.shape
    U = G // 4
    has_mask = ms.shape[0] > 0
    has_rmask = rmask.shape[0] > 0
    z = np.empty((B, G), xw.dtype)
    hr = np.empty((B, U), xw.dtype)
    one = xw.dtype.type(1.0)
    zero = one - one
    hs[0] = h
    cs[0] = c
    for t in range(T):
        if has_rmask:
            for b in range(B):
                for j in range(U):
                    hr[b, j] = h[b, j] * rmask[b, j]
            _matmul(hr, R, z)
        else:
            _matmul(h, R, z)
        for b in range(B):
            a = gates[t, b]
            x_b = xw[t, b]
            z_b = z[b]
            _activate(a[:2 * U], x_b[:2 * U], z_b[:2 * U], ract)
            _activate(a[2 * U:3 * U], x_b[2 * U:3 * U], z_b[2 * U:3 * U], act)
            _activate(a[3 * U:], x_b[3 * U:], z_b[3 * U:], ract)
            ac, out, h_b, c_b = act_c[t, b], outs[t, b], h[b], c[b]
            for j in range(U):
                c_new = a[U + j] * c_b[j] + a[j] * a[2 * U + j]
                ac[j] = _act1(c_new, act, one)
                h_new = a[3 * U + j] * ac[j]
                if has_mask:
                    m = ms[t, b]
                    if mode == 0:
                        out[j] = h_new * m + zero   # -0.0 * 0 would print as -0.
                    else:
                        prev = outs[t - 1, b, j] if t > 0 else zero
                        out[j] = prev + m * (h_new - prev)
                    h_b[j] = h_b[j] + m * (h_new - h_b[j])
                    c_b[j] = c_b[j] + m * (c_new - c_b[j])
                else:
                    out[j] = h_new
                    h_b[j] = h_new
                    c_b[j] = c_new
        hs[t + 1] = h
        cs[t + 1] = c


def lstm_forward(xw, recurrent_kernel, h, c, ms, rmask, mode, activation, recurrent_activation,
                 gates, hs, cs, act_c, outs):
    """Fill ``gates, hs, cs, act_c, outs`` as the NumPy loop of ``lstm_forward`` does; return h, c."""
    dtype = xw.dtype
    h = np.array(h, dtype, order="C")
    c = np.array(c, dtype, order="C")
    ms2 = _absent(dtype, 2) if ms is None else np.ascontiguousarray(ms[:, :, 0], dtype)
    rm = _absent(dtype, 2) if rmask is None else np.ascontiguousarray(np.broadcast_to(rmask, h.shape), dtype)
    act, ract = codes(activation, recurrent_activation)
    _lstm_forward(xw, np.ascontiguousarray(recurrent_kernel, dtype), h, c, ms2, rm, MODES[mode], act, ract,
                  gates, hs, cs, act_c, outs)
    return h, c


@njit(**JIT)
def _lstm_backward(d_outs, gates, cs, act_c, RT, dh, dc, ms, rmask, mode, act, ract, dz):
    T, B, G = dz.shape
    U = G // 4
    has_mask = ms.shape[0] > 0
    has_rmask = rmask.shape[0] > 0
    has_dout = d_outs.shape[0] > 0
    pending = np.zeros((B, U), dz.dtype)
    carry = np.zeros((B, U), dz.dtype)      # dh * (1 - m): the part of dh a padded step passes on
    dh_gate = np.empty((B, U), dz.dtype)
    one = dz.dtype.type(1.0)
    for t in range(T - 1, -1, -1):
        for b in range(B):
            a = gates[t, b]
            d = dz[t, b]
            ac = act_c[t, b]
            c_prev = cs[t, b]
            m = ms[t, b] if has_mask else one
            for j in range(U):
                dh_new = dh[b, j] * m if has_mask else dh[b, j]
                if has_dout:
                    g_out = d_outs[t, b, j]
                    if has_mask:
                        if mode == 0:
                            g_out = g_out * m
                        else:
                            total = pending[b, j] + g_out
                            pending[b, j] = total * (one - m)
                            g_out = total * m
                    dh_new = dh_new + g_out
                dc_new = dc[b, j] * m if has_mask else dc[b, j]
                i, f, g, o = a[j], a[U + j], a[2 * U + j], a[3 * U + j]
                dc_new = dc_new + dh_new * o * _grad_from_output(ac[j], act, one)
                d[j] = dc_new * g * _grad_from_output(i, ract, one)
                d[U + j] = dc_new * c_prev[j] * _grad_from_output(f, ract, one)
                d[2 * U + j] = dc_new * i * _grad_from_output(g, act, one)
                d[3 * U + j] = dh_new * ac[j] * _grad_from_output(o, ract, one)
                if has_mask:
                    carry[b, j] = dh[b, j] * (one - m)
                    dc[b, j] = dc_new * f + dc[b, j] * (one - m)
                else:
                    dc[b, j] = dc_new * f
        _matmul(dz[t], RT, dh_gate)
        for b in range(B):
            for j in range(U):
                v = dh_gate[b, j] * rmask[b, j] if has_rmask else dh_gate[b, j]
                dh[b, j] = v + carry[b, j] if has_mask else v


def lstm_backward(d_outs, gates, cs, act_c, recurrent_kernel, dh, dc, ms, rmask, mode, activation,
                  recurrent_activation, dz):
    """Fill ``dz`` (T, B, 4U) as the NumPy loop of ``lstm_backward`` does; return dh0, dc0."""
    dtype = dz.dtype
    dh = np.array(dh, dtype, order="C")
    dc = np.array(dc, dtype, order="C")
    d_outs = _absent(dtype, 3) if d_outs is None else np.ascontiguousarray(d_outs, dtype)
    ms2 = _absent(dtype, 2) if ms is None else np.ascontiguousarray(ms[:, :, 0], dtype)
    rm = _absent(dtype, 2) if rmask is None else np.ascontiguousarray(np.broadcast_to(rmask, dh.shape), dtype)
    act, ract = codes(activation, recurrent_activation)
    # The transposed recurrent matrix, made contiguous once rather than handled at every step.
    RT = np.ascontiguousarray(recurrent_kernel.T, dtype)
    _lstm_backward(d_outs, gates, cs, act_c, RT, dh, dc, ms2, rm, MODES[mode], act, ract, dz)
    return dh, dc
