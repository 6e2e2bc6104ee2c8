"""The recurrent kernels' time loops compiled with Numba.

Imported only through :mod:`.backend`, on the first kernel call. Each loop fills exactly the buffers
the NumPy loop of the same kernel fills, so the caches (and backward passes) of the two paths are
interchangeable. Per step: one product with the recurrent matrix into a preallocated buffer, then
one fused pass over the gates, written so that LLVM vectorizes it. Nothing is allocated inside the
loop. From a few rows and steps on (``_packed``) the recurrent matrix is packed once per call and
the product is ``numba_matmul.packed_matmul``, the whole time loop compiled at every size. Below,
small shapes (``SMALL``) run the whole time loop compiled, BLAS called from inside it (a
matrix-vector product when the batch is 1); larger ones step from Python, where the call overhead
is negligible, so that NumPy's own BLAS does the product.

Activations in float32 use the vectorizable ``_exp32`` below (Cody-Waite range reduction and a
degree-7 polynomial, within 1 ulp of exp) and a polynomial for tanh near 0: tanh is within 1.6 ulp
and sigmoid within 2.4 ulp of the exact values over the whole float32 range (NumPy's own float32
tanh: 1.4 ulp). In float64 they use the C library's tanh.
"""
import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

from . import numba_matmul
from .numba_matmul import pack, packed_matmul, scratch

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
_ROUND = _f(1.5 * 2 ** 23)   # adding and subtracting it rounds a float32 of magnitude < 2**22
# tanh(x)/x = 1 + s*(T1 + s*(T2 + ...)), s = x*x, |x| < 0.55: least-squares fit, relative error 3e-9
_T1, _T2, _T3, _T4, _T5 = (_f(-0.33333320607613), _f(0.13332699681988655), _f(-0.05386507907087302),
                           _f(0.021127241400617364), _f(-0.006356495850162589))


@njit(inline="always", **JIT)
def _exp32(x):
    x = min(max(x, _f(-87.0)), _f(88.0))
    k = (x * _LOG2E + _ROUND) - _ROUND     # round to nearest: vectorizes, unlike floor
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
def _activate(v, code):
    """v[j] = f(v[j]) in place for the activation numbered ``code`` (loop per code: vectorizable)."""
    # Constants built from one of v's dtype: a Python float literal would promote float32 to float64.
    one = v.dtype.type(1.0)
    zero = one - one
    if code == 0:
        for j in range(v.shape[0]):
            v[j] = _tanh(v[j])
    elif code == 1:
        for j in range(v.shape[0]):
            v[j] = _sigmoid(v[j])
    elif code == 2:
        six, half = (one + one + one) * (one + one), one / (one + one)
        for j in range(v.shape[0]):
            v[j] = min(max(v[j] / six + half, zero), one)
    elif code == 3:
        for j in range(v.shape[0]):
            v[j] = max(v[j], zero)


@njit(**JIT)
def _grad_from_output(out, y, code):
    """out[j] = f'(x[j]) written with y = f(x) (see ``activations``)."""
    one = y.dtype.type(1.0)
    zero = one - one
    if code == 0:
        for j in range(y.shape[0]):
            out[j] = one - y[j] * y[j]
    elif code == 1:
        for j in range(y.shape[0]):
            out[j] = y[j] * (one - y[j])
    elif code == 2:
        sixth = one / ((one + one + one) * (one + one))
        for j in range(y.shape[0]):
            out[j] = sixth if (y[j] > zero and y[j] < one) else zero
    elif code == 3:
        for j in range(y.shape[0]):
            out[j] = one if y[j] > zero else zero
    else:
        for j in range(y.shape[0]):
            out[j] = one


@njit(inline="always", **JIT)
def _matmul(a, w, out):
    """out = a @ w; a matrix-vector product when a has one row (no packing of w)."""
    if a.shape[0] == 1:
        np.dot(a[0], w, out[0])
    else:
        np.dot(a, w, out)


# Below SMALL multiply-adds per step the whole loop runs compiled, BLAS called from inside it. Above,
# the per-step Python overhead is negligible and NumPy's own BLAS (often faster than the one Numba
# reaches through SciPy) does the recurrent product, the compiled code the fused gate step.
SMALL = 1 << 20


def _whole_loop(B, U, G):
    return B * U * G <= SMALL


# From these batch sizes on, the recurrent product with the matrix packed once per call
# (``numba_matmul``) beats BLAS, which re-packs it at every step (measured, float32, one thread,
# per product: 1.1-3x for B = 2..128, U = 128..512), and the whole time loop runs compiled. With
# one row the forward's matrix-vector product is as fast as the packed one and packing is not
# repaid; the backward's is (whole backward 1.05-1.2x). Packing costs about one BLAS call's own
# re-packing: it pays from a few steps on (a decoder's single steps keep BLAS). Measured with
# AVX-512 only: without it the micro-kernel has half the vector width and BLAS keeps the product.
# The micro-kernel runs on one thread: past 32 rows NumPy's BLAS on all cores catches up and then
# wins (2 cores, wall clock, H=512 T=100: B=32 forward 87 vs 88 ms, B=128 347 vs 242 ms).
PACKED = numba_matmul.VECTOR_BYTES == 64
PACKED_MIN_BATCH = 2
PACKED_MIN_BATCH_BACKWARD = 1
PACKED_MAX_BATCH = 32
PACKED_MIN_STEPS = 4


def _packed(B, T, backward=False):
    return (PACKED and T >= PACKED_MIN_STEPS and B <= PACKED_MAX_BATCH
            and B >= (PACKED_MIN_BATCH_BACKWARD if backward else PACKED_MIN_BATCH))


def _transposed_product(B, U, T):
    """With few rows and a large recurrent matrix OpenBLAS is faster at (W @ d.T).T than at
    d @ W.T (measured: B=8..32, U=512, 1.1-1.4x per backward)."""
    return B <= 32 and U >= 256


class _BackwardProduct:
    """out = d @ w.T at every step of the stepwise backward, with NumPy's BLAS, in the faster form;
    ``w`` (U, G) is the recurrent kernel, used as it is (no transposed copy)."""

    def __init__(self, w, B, T):
        self.w = w
        self.out_t = np.empty((w.shape[0], B), w.dtype) if _transposed_product(B, w.shape[0], T) else None

    def __call__(self, d, out):
        if self.out_t is None:
            np.matmul(d, self.w.T, out=out)
        else:
            np.matmul(self.w, d.T, out=self.out_t)
            np.copyto(out, self.out_t.T)


# ----------------------------------------------------------------------------- LSTM
@njit(**JIT)
def _lstm_step(t, xw, z, ms, mode, act, ract, gates, hs, cs, act_c, outs, scratch):
    """One step's gates and state from z = h_{t-1} @ recurrent_kernel (B, 4U); state in hs[t], cs[t].
    ``gates`` may be ``xw`` itself (activated in place). A zero-size z: the product has already been
    added into ``gates[t]`` (which is then ``xw``)."""
    _, B, G = xw.shape
    U = G // 4
    has_mask = ms.shape[0] > 0
    zero = xw.dtype.type(0.0)
    for b in range(B):
        a = gates[t, b]
        if z.shape[0] > 0:
            x_b, z_b = xw[t, b], z[b]
            for j in range(G):
                a[j] = x_b[j] + z_b[j]
        _activate(a[:2 * U], ract)
        _activate(a[2 * U:3 * U], act)
        _activate(a[3 * U:], ract)
        ac = act_c[t, b]
        c_prev, h_prev = cs[t, b], hs[t, b]
        for j in range(U):
            ac[j] = a[U + j] * c_prev[j] + a[j] * a[2 * U + j]
        if not has_mask:
            cs[t + 1, b] = ac
            _activate(ac, act)
            out, h_next = outs[t, b], hs[t + 1, b]
            for j in range(U):
                out[j] = a[3 * U + j] * ac[j]
                h_next[j] = out[j]
            continue
        c_new = scratch[0]
        c_new[:] = ac
        _activate(ac, act)
        m = ms[t, b]
        out, h_next, c_next = outs[t, b], hs[t + 1, b], cs[t + 1, b]
        for j in range(U):
            h_new = a[3 * U + j] * ac[j]
            if mode == 0:
                out[j] = h_new * m + zero      # -0.0 * 0 would print as -0.
            else:
                prev = outs[t - 1, b, j] if t > 0 else zero
                out[j] = h_new if m != zero else prev
            # Select, not blend: the final state is bit-equal to the last valid output.
            h_next[j] = h_new if m != zero else h_prev[j]
            c_next[j] = c_new[j] if m != zero else c_prev[j]


@njit(inline="always", **JIT)
def _product(a, R, P, tmp, out):
    """out = a @ R, with the packed R (``P``) when it is given, else with BLAS on R. The backward
    passes R.T (contiguous) and its packing."""
    if P.shape[0] > 0:
        packed_matmul(a, P, out, tmp)
    else:
        _matmul(a, R, out)


@njit(inline="always", **JIT)
def _recurrent_product(h, rmask, hr, R, P, tmp, out):
    """out = (h * rmask) @ R (rmask: recurrent dropout, or zero-size for none)."""
    if rmask.shape[0] > 0:
        np.multiply(h, rmask, hr)
        _product(hr, R, P, tmp, out)
    else:
        _product(h, R, P, tmp, out)


def _product_operands(w, B, T, dtype, backward=False):
    """(R, P, tmp) for the compiled loops' products with ``w``: P packed when the batch is large
    enough, R as BLAS inside compiled code wants it (contiguous) otherwise."""
    if _packed(B, T, backward):
        return _absent(dtype, 2), pack(np.asarray(w, dtype)), scratch(dtype)
    return np.ascontiguousarray(w, dtype), _absent(dtype, 3), scratch(dtype)


@njit(**JIT)
def _lstm_forward(xw, R, P, tmp, rmask, ms, mode, act, ract, gates, hs, cs, act_c, outs, fused):
    """``fused``: gates is xw and the packed product adds into it (no z buffer, one pass less)."""
    T, B, G = xw.shape
    z = np.empty((B, G), xw.dtype)
    no_z = np.empty((0, G), xw.dtype)
    hr = np.empty((B, G // 4), xw.dtype)
    scratch = np.empty((1, G // 4), xw.dtype)
    for t in range(T):
        if fused:
            h = hs[t]
            if rmask.shape[0] > 0:
                np.multiply(h, rmask, hr)
                h = hr
            packed_matmul(h, P, xw[t], tmp, True)
            _lstm_step(t, xw, no_z, ms, mode, act, ract, gates, hs, cs, act_c, outs, scratch)
        else:
            _recurrent_product(hs[t], rmask, hr, R, P, tmp, z)
            _lstm_step(t, xw, z, ms, mode, act, ract, gates, hs, cs, act_c, outs, scratch)


def lstm_forward(xw, recurrent_kernel, h, c, ms, rmask, mode, activation, recurrent_activation,
                 gates, hs, cs, act_c, outs):
    """Fill ``gates, hs, cs, act_c, outs`` as the NumPy loop of ``lstm_forward`` does; return h, c."""
    dtype = xw.dtype
    T, B, G = xw.shape
    hs[0], cs[0] = h, c
    ms2 = _absent(dtype, 2) if ms is None else np.ascontiguousarray(ms[:, :, 0], dtype)
    rm = _absent(dtype, 2) if rmask is None else np.ascontiguousarray(np.broadcast_to(rmask, (B, G // 4)), dtype)
    act, ract = codes(activation, recurrent_activation)
    R = recurrent_kernel
    if _packed(B, T) or _whole_loop(B, G // 4, G):
        R, P, tmp = _product_operands(R, B, T, dtype)
        fused = P.shape[0] > 0 and gates is xw
        _lstm_forward(xw, R, P, tmp, rm, ms2, MODES[mode], act, ract, gates, hs, cs, act_c, outs, fused)
    else:
        z = np.empty((B, G), dtype)
        hr = np.empty((B, G // 4), dtype)
        scratch = np.empty((1, G // 4), dtype)
        for t in range(T):
            np.matmul(hs[t] if rmask is None else np.multiply(hs[t], rm, out=hr), R, out=z)
            _lstm_step(t, xw, z, ms2, MODES[mode], act, ract, gates, hs, cs, act_c, outs, scratch)
    return hs[T].copy(), cs[T].copy()


@njit(**JIT)
def _lstm_backward_step(t, d_outs, gates, cs, act_c, dh, dc, ms, mode, act, ract, dz, pending, carry,
                        scratch):
    """Fill dz[t] from dh, dc (gradients reaching h_t, c_t); update dc to reach c_{t-1} and set
    ``carry`` to the part of dh that a padded step passes straight to h_{t-1}."""
    T, B, G = dz.shape
    U = G // 4
    has_mask = ms.shape[0] > 0
    has_dout = d_outs.shape[0] > 0
    one = dz.dtype.type(1.0)
    dg, dac, dh_new = scratch[0], scratch[1, :U], scratch[2, :U]
    for b in range(B):
        a, d, ac, c_prev = gates[t, b], dz[t, b], act_c[t, b], cs[t, b]
        _grad_from_output(dg[:2 * U], a[:2 * U], ract)
        _grad_from_output(dg[2 * U:3 * U], a[2 * U:3 * U], act)
        _grad_from_output(dg[3 * U:], a[3 * U:], ract)
        _grad_from_output(dac, ac, act)
        dh_b, dc_b = dh[b], dc[b]
        if has_mask:
            m = ms[t, b]
            for j in range(U):
                dh_new[j] = dh_b[j] * m
            if has_dout:
                if mode == 0:
                    for j in range(U):
                        dh_new[j] += d_outs[t, b, j] * m
                else:
                    for j in range(U):
                        total = pending[b, j] + d_outs[t, b, j]
                        pending[b, j] = total * (one - m)
                        dh_new[j] += total * m
            for j in range(U):
                dc_new = dc_b[j] * m
                dc_new = dc_new + dh_new[j] * a[3 * U + j] * dac[j]
                d[j] = dc_new * a[2 * U + j] * dg[j]
                d[U + j] = dc_new * c_prev[j] * dg[U + j]
                d[2 * U + j] = dc_new * a[j] * dg[2 * U + j]
                d[3 * U + j] = dh_new[j] * ac[j] * dg[3 * U + j]
                carry[b, j] = dh_b[j] * (one - m)
                dc_b[j] = dc_new * a[U + j] + dc_b[j] * (one - m)
        else:
            for j in range(U):
                dhn = dh_b[j] + d_outs[t, b, j] if has_dout else dh_b[j]
                dc_new = dc_b[j] + dhn * a[3 * U + j] * dac[j]
                d[j] = dc_new * a[2 * U + j] * dg[j]
                d[U + j] = dc_new * c_prev[j] * dg[U + j]
                d[2 * U + j] = dc_new * a[j] * dg[2 * U + j]
                d[3 * U + j] = dhn * ac[j] * dg[3 * U + j]
                dc_b[j] = dc_new * a[U + j]


@njit(**JIT)
def _finish_dh(dh, dh_gate, rmask, carry, has_mask):
    """dh_{t-1} = (dz_t @ recurrent_kernel.T) * r  (+ what a padded step carries)."""
    B, U = dh.shape
    for b in range(B):
        for j in range(U):
            v = dh_gate[b, j] * rmask[b, j] if rmask.shape[0] > 0 else dh_gate[b, j]
            dh[b, j] = v + carry[b, j] if has_mask else v


@njit(**JIT)
def _lstm_backward(d_outs, gates, cs, act_c, RT, PT, tmp, dh, dc, ms, rmask, mode, act, ract, dz):
    T, B, G = dz.shape
    U = G // 4
    pending = np.zeros((B, U), dz.dtype)
    carry = np.zeros((B, U), dz.dtype)
    dh_gate = np.empty((B, U), dz.dtype)
    scratch = np.empty((3, G), dz.dtype)
    for t in range(T - 1, -1, -1):
        _lstm_backward_step(t, d_outs, gates, cs, act_c, dh, dc, ms, mode, act, ract, dz, pending, carry,
                            scratch)
        _product(dz[t], RT, PT, tmp, dh_gate)
        _finish_dh(dh, dh_gate, rmask, carry, ms.shape[0] > 0)


def lstm_backward(d_outs, gates, cs, act_c, recurrent_kernel, dh, dc, ms, rmask, mode, activation,
                  recurrent_activation, dz):
    """Fill ``dz`` (T, B, 4U) as the NumPy loop of ``lstm_backward`` does; return dh0, dc0."""
    dtype = dz.dtype
    T, B, G = dz.shape
    dh = np.array(dh, dtype, order="C")
    dc = np.array(dc, dtype, order="C")
    d_outs = _absent(dtype, 3) if d_outs is None else np.ascontiguousarray(d_outs, dtype)
    ms2 = _absent(dtype, 2) if ms is None else np.ascontiguousarray(ms[:, :, 0], dtype)
    rm = _absent(dtype, 2) if rmask is None else np.ascontiguousarray(np.broadcast_to(rmask, dh.shape), dtype)
    act, ract = codes(activation, recurrent_activation)
    RT = recurrent_kernel.T       # NumPy's matmul takes the transposed view as it is
    if _packed(B, T, True) or _whole_loop(B, G // 4, G):
        # Compiled code calls BLAS on contiguous arrays: transpose (or pack) once, not at every step.
        RT, PT, tmp = _product_operands(RT, B, T, dtype, backward=True)
        _lstm_backward(d_outs, gates, cs, act_c, RT, PT, tmp, dh, dc, ms2, rm, MODES[mode], act, ract, dz)
    else:
        pending = np.zeros((B, G // 4), dtype)
        carry = np.zeros((B, G // 4), dtype)
        dh_gate = np.empty((B, G // 4), dtype)
        scratch = np.empty((3, G), dtype)
        product = _BackwardProduct(recurrent_kernel, B, T)
        for t in range(T - 1, -1, -1):
            _lstm_backward_step(t, d_outs, gates, cs, act_c, dh, dc, ms2, MODES[mode], act, ract, dz,
                                pending, carry, scratch)
            product(dz[t], dh_gate)
            _finish_dh(dh, dh_gate, rm, carry, ms is not None)
    return dh, dc


# ----------------------------------------------------------------------------- GRU (reset_after=True)
@njit(**JIT)
def _gru_step(t, xw, rec, b_rec, ms, mode, act, ract, gates, rh_all, hs, outs):
    """One step from rec = h_{t-1} @ recurrent_kernel (B, 3U); state in hs[t]."""
    B, G = rec.shape
    U = G // 3
    has_mask = ms.shape[0] > 0
    has_bias = b_rec.shape[0] > 0
    zero = rec.dtype.type(0.0)
    for b in range(B):
        a, x_b, r_b, rh = gates[t, b], xw[t, b], rec[b], rh_all[t, b]
        if has_bias:
            for j in range(G):
                r_b[j] = r_b[j] + b_rec[j]
        for j in range(2 * U):
            a[j] = x_b[j] + r_b[j]
        _activate(a[:2 * U], ract)
        for j in range(U):
            rh[j] = r_b[2 * U + j]
            a[2 * U + j] = x_b[2 * U + j] + a[U + j] * rh[j]
        _activate(a[2 * U:], act)
        h_prev, h_next, out = hs[t, b], hs[t + 1, b], outs[t, b]
        if not has_mask:
            for j in range(U):
                n = a[2 * U + j]
                out[j] = n + a[j] * (h_prev[j] - n)
                h_next[j] = out[j]
            continue
        m = ms[t, b]
        for j in range(U):
            n = a[2 * U + j]
            h_new = n + a[j] * (h_prev[j] - n)
            if mode == 0:
                out[j] = h_new * m + zero      # -0.0 * 0 would print as -0.
            else:
                prev = outs[t - 1, b, j] if t > 0 else zero
                out[j] = h_new if m != zero else prev
            h_next[j] = h_new if m != zero else h_prev[j]


@njit(**JIT)
def _gru_forward(xw, R, P, tmp, b_rec, rmask, ms, mode, act, ract, gates, rh_all, hs, outs):
    T, B, G = xw.shape
    rec = np.empty((B, G), xw.dtype)
    hr = np.empty((B, G // 3), xw.dtype)
    for t in range(T):
        _recurrent_product(hs[t], rmask, hr, R, P, tmp, rec)
        _gru_step(t, xw, rec, b_rec, ms, mode, act, ract, gates, rh_all, hs, outs)


def gru_forward(xw, recurrent_kernel, b_rec, h, ms, rmask, mode, activation, recurrent_activation,
                gates, rh_all, hs, outs):
    """Fill ``gates, rh_all, hs, outs`` as the NumPy loop of ``gru_forward`` (reset_after=True) does;
    return h."""
    dtype = xw.dtype
    T, B, G = xw.shape
    hs[0] = h
    ms2 = _absent(dtype, 2) if ms is None else np.ascontiguousarray(ms[:, :, 0], dtype)
    rm = _absent(dtype, 2) if rmask is None else np.ascontiguousarray(np.broadcast_to(rmask, (B, G // 3)), dtype)
    b_rec = _absent(dtype, 1) if b_rec is None else np.ascontiguousarray(b_rec, dtype)
    act, ract = codes(activation, recurrent_activation)
    R = recurrent_kernel
    if _packed(B, T) or _whole_loop(B, G // 3, G):
        R, P, tmp = _product_operands(R, B, T, dtype)
        _gru_forward(xw, R, P, tmp, b_rec, rm, ms2, MODES[mode], act, ract, gates, rh_all, hs, outs)
    else:
        rec = np.empty((B, G), dtype)
        hr = np.empty((B, G // 3), dtype)
        for t in range(T):
            np.matmul(hs[t] if rmask is None else np.multiply(hs[t], rm, out=hr), R, out=rec)
            _gru_step(t, xw, rec, b_rec, ms2, MODES[mode], act, ract, gates, rh_all, hs, outs)
    return hs[T].copy()


@njit(**JIT)
def _gru_backward_step(t, d_outs, gates, rh_all, hs, dh, ms, mode, act, ract, dxw, drec, pending, carry,
                       scratch):
    """Fill dxw[t], drec[t] from dh (gradient reaching h_t); set ``carry`` to the part of dh_{t-1}
    that does not pass through the recurrent product."""
    T, B, G = dxw.shape
    U = G // 3
    has_mask = ms.shape[0] > 0
    has_dout = d_outs.shape[0] > 0
    one = dxw.dtype.type(1.0)
    dg, dh_new = scratch[0], scratch[1, :U]
    for b in range(B):
        a, dx, dr, rh, h_prev = gates[t, b], dxw[t, b], drec[t, b], rh_all[t, b], hs[t, b]
        _grad_from_output(dg[:2 * U], a[:2 * U], ract)
        _grad_from_output(dg[2 * U:], a[2 * U:], act)
        dh_b = dh[b]
        m = ms[t, b] if has_mask else one
        for j in range(U):
            dh_new[j] = dh_b[j] * m if has_mask else dh_b[j]
        if has_dout:
            if not has_mask or mode == 0:
                for j in range(U):
                    dh_new[j] += d_outs[t, b, j] * m if has_mask else d_outs[t, b, j]
            else:
                for j in range(U):
                    total = pending[b, j] + d_outs[t, b, j]
                    pending[b, j] = total * (one - m)
                    dh_new[j] += total * m
        for j in range(U):
            z, r, n = a[j], a[U + j], a[2 * U + j]
            dn = dh_new[j] * (one - z) * dg[2 * U + j]
            dzp = dh_new[j] * (h_prev[j] - n) * dg[j]
            drp = dn * rh[j] * dg[U + j]
            dx[j] = dzp
            dx[U + j] = drp
            dx[2 * U + j] = dn
            dr[j] = dzp
            dr[U + j] = drp
            dr[2 * U + j] = dn * r
            carry[b, j] = dh_new[j] * z + dh_b[j] * (one - m) if has_mask else dh_new[j] * z


@njit(**JIT)
def _gru_backward(d_outs, gates, rh_all, hs, RT, PT, tmp, dh, ms, rmask, mode, act, ract, dxw, drec):
    T, B, G = dxw.shape
    U = G // 3
    pending = np.zeros((B, U), dxw.dtype)
    carry = np.zeros((B, U), dxw.dtype)
    dh_gate = np.empty((B, U), dxw.dtype)
    scratch = np.empty((2, G), dxw.dtype)
    for t in range(T - 1, -1, -1):
        _gru_backward_step(t, d_outs, gates, rh_all, hs, dh, ms, mode, act, ract, dxw, drec, pending,
                           carry, scratch)
        _product(drec[t], RT, PT, tmp, dh_gate)
        _finish_dh(dh, dh_gate, rmask, carry, True)


def gru_backward(d_outs, gates, rh_all, hs, recurrent_kernel, dh, ms, rmask, mode, activation,
                 recurrent_activation, dxw, drec):
    """Fill ``dxw`` and ``drec`` (T, B, 3U) as the NumPy loop of ``gru_backward`` (reset_after=True)
    does; return dh0."""
    dtype = dxw.dtype
    T, B, G = dxw.shape
    dh = np.array(dh, dtype, order="C")
    d_outs = _absent(dtype, 3) if d_outs is None else np.ascontiguousarray(d_outs, dtype)
    ms2 = _absent(dtype, 2) if ms is None else np.ascontiguousarray(ms[:, :, 0], dtype)
    rm = _absent(dtype, 2) if rmask is None else np.ascontiguousarray(np.broadcast_to(rmask, dh.shape), dtype)
    act, ract = codes(activation, recurrent_activation)
    RT = recurrent_kernel.T
    if _packed(B, T, True) or _whole_loop(B, G // 3, G):
        RT, PT, tmp = _product_operands(RT, B, T, dtype, backward=True)
        _gru_backward(d_outs, gates, rh_all, hs, RT, PT, tmp, dh, ms2, rm, MODES[mode], act, ract, dxw,
                      drec)
    else:
        pending = np.zeros((B, G // 3), dtype)
        carry = np.zeros((B, G // 3), dtype)
        dh_gate = np.empty((B, G // 3), dtype)
        scratch = np.empty((2, G), dtype)
        product = _BackwardProduct(recurrent_kernel, B, T)
        for t in range(T - 1, -1, -1):
            _gru_backward_step(t, d_outs, gates, rh_all, hs, dh, ms2, MODES[mode], act, ract, dxw, drec,
                               pending, carry, scratch)
            product(drec[t], dh_gate)
            _finish_dh(dh, dh_gate, rm, carry, True)
    return dh
