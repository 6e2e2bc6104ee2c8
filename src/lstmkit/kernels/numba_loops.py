"""The recurrent kernels' time loops compiled with Numba.

Imported only through :mod:`.backend`, on the first kernel call. Each loop fills exactly the buffers
the NumPy loop of the same kernel fills, so the caches (and backward passes) of the two paths are
interchangeable. Per step: one product with the recurrent matrix, then one fused pass over the
gates, written so that LLVM vectorizes it. Nothing is allocated inside the loop. Which of three
ways a loop runs (packed and split across threads, compiled whole, or stepped from Python) is
decided by ``_parts`` and ``_whole_loop`` below. Beside the loops: compiled row-wise passes
(log-softmax, the cross-entropy's gradient, a beam search's top-k) and the fused decoding step of
``kernels.decoder``.

Activations in float32 use the vectorizable ``_exp32`` below (Cody-Waite range reduction and a
degree-7 polynomial, within 1 ulp of exp) and a polynomial for tanh near 0: tanh is within 1.6 ulp
and sigmoid within 2.4 ulp of the exact values over the whole float32 range (NumPy's own float32
tanh: 1.4 ulp). In float64 they use the C library's tanh. The gate step is bound by this
arithmetic (about 0.85 ns a gate element at U = 128 in cache, half of it the activations), not by
the division or by memory: written as explicit 512-bit vector code with ``vrcp14ps`` reciprocals,
one pass a row, it measured no faster; nor did computing the gates of each 12 rows right after
their product, while they are in the first-level cache.
"""
import math
from functools import partial

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

from . import backend, buffers, numba_matmul, numba_threads
from .numba_matmul import pack_into, packed_matmul, scratch

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


def _exp(x):
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


@overload(_exp, jit_options=dict(inline="always", **JIT))
def _exp_impl(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        return lambda x: _exp32(x)
    return lambda x: math.exp(x)


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


_LANES = 16   # partial maxima and sums kept per lane: the reductions vectorize, in any float mode


@njit(inline="always", **JIT)
def _row_max(z, lanes):
    """max(z) (z not empty), in ``_LANES`` partial maxima (``lanes``), which vectorize."""
    whole = z.shape[0] - z.shape[0] % _LANES
    for k in range(_LANES):
        lanes[k] = z[0]
    for j in range(0, whole, _LANES):
        for k in range(_LANES):
            lanes[k] = max(lanes[k], z[j + k])
    m = z[0]
    for k in range(_LANES):
        m = max(m, lanes[k])
    for j in range(whole, z.shape[0]):
        m = max(m, z[j])
    return m


@njit(inline="always", **JIT)
def _row_sum(e, lanes):
    """sum(e), in ``_LANES`` partial sums (``lanes``), which vectorize."""
    whole = e.shape[0] - e.shape[0] % _LANES
    zero = e.dtype.type(0.0)
    for k in range(_LANES):
        lanes[k] = zero
    for j in range(0, whole, _LANES):
        for k in range(_LANES):
            lanes[k] += e[j + k]
    total = zero
    for k in range(_LANES):
        total += lanes[k]
    for j in range(whole, e.shape[0]):
        total += e[j]
    return total


@njit(**JIT)
def log_softmax32(z, out):
    """out[i] = z[i] - max(z[i]) - log(sum(exp(z[i] - max(z[i])))) for every row of the float32 (R, C)
    ``z`` (measured: 32 x 2000 in 0.041 ms, NumPy's 0.081; 640 x 2000 0.88 against 2.1 ms)."""
    lanes = np.empty(_LANES, z.dtype)
    for i in range(z.shape[0]):
        row, o = z[i], out[i]
        m = _row_max(row, lanes)
        for j in range(row.shape[0]):
            o[j] = _exp32(row[j] - m)
        shift = m + np.log(_row_sum(o, lanes))
        for j in range(row.shape[0]):
            o[j] = row[j] - shift


@njit(**JIT)
def crossentropy_grad32(logp, labels, weights, smoothing, out):
    """The gradient of the (label-smoothed) cross-entropy with respect to the logits, from the float32
    log-probabilities (R, C): ``out[i] = (exp(logp[i]) - s / C - (1 - s) onehot(labels[i])) *
    weights[i]`` (one pass; NumPy's four took 16 ms at 1024 x 8000)."""
    R, C = logp.shape
    off = logp.dtype.type(smoothing / C)
    hit = logp.dtype.type(1.0 - smoothing)
    for i in range(R):
        row, o, w = logp[i], out[i], weights[i]
        for j in range(C):
            o[j] = (_exp32(row[j]) - off) * w
        o[labels[i]] -= hit * w


@njit(**JIT)
def beam_top_k(scores, log_probs, columns, values):
    """``beam.beam_top_k``: columns[b], values[b] the k = columns.shape[1] largest of the float64 sums
    scores[b, j] + log_probs[b * K + j, v] over j, v (column j * V + v), best first, ties in column
    order. One pass, each row's best k kept in order by insertion: a candidate goes after those
    already kept that are not smaller (they came first)."""
    B, K = scores.shape
    V = log_probs.shape[1]
    k = columns.shape[1]
    for b in range(B):
        best, cols = values[b], columns[b]
        n = 0
        for j in range(K):
            base = scores[b, j]
            row = log_probs[b * K + j]
            for v in range(V):
                c = base + np.float64(row[v])
                if n == k and not c > best[k - 1]:
                    continue
                i = n if n < k else k - 1
                while i > 0 and best[i - 1] < c:
                    best[i], cols[i] = best[i - 1], cols[i - 1]
                    i -= 1
                best[i], cols[i] = c, j * V + v
                n = min(n + 1, k)


@njit(**JIT)
def scatter_add_rows(table, ids, rows):
    """table[ids[i]] += rows[i] for each i in order (``np.add.at``); ids already checked in range."""
    for i in range(ids.shape[0]):
        t, r = table[ids[i]], rows[i]
        for j in range(r.shape[0]):
            t[j] += r[j]


@njit(inline="always", **JIT)
def _matmul(a, w, out):
    """out = a @ w for the small products of a loop that packs nothing, without BLAS (Numba's
    product calls SciPy's, which is not a dependency). Row by row, four rows of ``w`` at a time
    added along the row, which LLVM vectorizes (B = 1, U = 128: 2.3 us, SciPy's OpenBLAS 2.8 us,
    each alone; in a loop about 5 % slower than OpenBLAS, which used two threads)."""
    K, N = w.shape
    zero = out.dtype.type(0.0)
    for i in range(a.shape[0]):
        o, x = out[i], a[i]
        for j in range(N):
            o[j] = zero
        k = 0
        while k + 4 <= K:
            x0, x1, x2, x3 = x[k], x[k + 1], x[k + 2], x[k + 3]
            w0, w1, w2, w3 = w[k], w[k + 1], w[k + 2], w[k + 3]
            for j in range(N):
                o[j] += x0 * w0[j] + x1 * w1[j] + x2 * w2[j] + x3 * w3[j]
            k += 4
        for k in range(k, K):
            v, w0 = x[k], w[k]
            for j in range(N):
                o[j] += v * w0[j]


# ----------------------------------------------------------------------------- which loop runs
# Three ways to run a time loop, the first that applies:
#
# * parts: the whole loop compiled, the recurrent matrix packed once per call into column panels
#   and multiplied by ``numba_matmul.packed_matmul`` (BLAS re-packs it at every step, which at B = 8
#   and U = 512 costs more than the product). Several threads (``numba_threads``) split the loop
#   by rows of the batch (``_split``: independent, no waiting) or by units, each thread packing and
#   multiplying the columns of its units, its share of the matrix then staying in its core's
#   cache. Used from PACKED_MIN_STEPS steps (packing is repaid after a few; from one in a
#   backward small enough for the whole loop below, which would copy R.T where this packs it:
#   U = 128, 65 against 25 us) on CPUs with
#   AVX-512 (with half the vector width BLAS keeps the product); on one thread from a batch of 2
#   (forward: with one row a matrix-vector product is as fast) or 1 (backward) up to
#   PACKED_MAX_BATCH rows (one thread, B=128 T=20: LSTM H=128 fwd+bwd 16.4 -> 14.5 ms, GRU H=512
#   fwd 56.6 -> 46.7 ms; at B=512 H=512 BLAS is 5 % ahead); on several threads at every batch
#   size once a call has backend.PARALLEL_MIN_WORK multiply-adds (below, starting the threads
#   costs more than they save) or the recurrent matrix is larger than SPLIT_MATRIX_BYTES. The
#   LSTM's input projections are computed in the same loop, step by step, when both matrices
#   together fit FOLD_BYTES (they stay in cache); else those of every step before the loop (reading
#   the input matrix once): by each thread for its units where each has every row, else by one
#   product.
# * whole loop compiled, products included (``_matmul``): small shapes (B·U·G <= SMALL), where the
#   per-step Python overhead would dominate.
# * stepwise: larger shapes step from Python, NumPy's own BLAS doing the product, the compiled code
#   the fused gate step.
PACKED = numba_matmul.VECTOR_BYTES == 64
PACKED_MIN_BATCH = 2
PACKED_MIN_BATCH_BACKWARD = 1
PACKED_MAX_BATCH = 256
PACKED_MIN_STEPS = 4
SPLIT = "auto"
FOLD_BYTES = 1 << 20
SPLIT_MATRIX_BYTES = 1 << 20
SPLIT_MIN_ROWS = 32
SMALL = 1 << 20


def _unit_align(dtype):
    return numba_matmul.panel_width(dtype)


def _split(B, U, G, dtype, n):
    """How n threads share a loop: "batch" (each its rows, all units: the threads never wait for
    each other) or "units" (each its units of every row, and so its columns of the recurrent matrix:
    they wait for each other at every step). By rows where each thread gets enough rows and the
    whole matrix fits a core's cache next to another's share; by units otherwise (a batch of 1)."""
    if SPLIT != "auto":
        return SPLIT
    fits = U * G * np.dtype(dtype).itemsize <= SPLIT_MATRIX_BYTES
    return "batch" if B >= n * (1 if fits else SPLIT_MIN_ROWS) else "units"


def _parts(B, T, U, G, dtype, backward=False, folds=False):
    """(waiting, [(b0, b1, u0, u1) of each thread]) for a loop run packed, or None for another way;
    ``waiting``: the number of threads that wait for each other at every step (1: none). ``folds``:
    a loop that computes its input projections itself, with small weights (``_small``)."""
    if not PACKED or T < PACKED_MIN_STEPS and not (backward and _whole_loop(B, U, G)):
        return None
    # Threads pay for themselves on a large loop; on a smaller loop that computes its input
    # projections itself with small weights and gives each thread 4 rows of the batch or more (B=8
    # T=20 U=128: 1.3x; with a product before the loop splitting costs as much; a training forward
    # so split makes its backward's products run on the same threads: ``backward_threaded``); and
    # whatever the loop where the recurrent matrix does not fit one core's cache: split, each core
    # keeps its share (B=1 T=20 U=512: 3x).
    n = backend.get_num_threads()
    work = B * U * G * T
    fits = U * G * np.dtype(dtype).itemsize <= SPLIT_MATRIX_BYTES
    big = not fits or work >= backend.PARALLEL_MIN_WORK or (
        folds and B >= 4 * n and work >= backend.PARALLEL_MIN_WORK // 8)
    n = n if big else 1
    if n > 1 and _split(B, U, G, dtype, n) == "batch":
        rows = numba_threads.split_range(B, n, 1)
        if len(rows) > 1:
            return 1, [(b0, b1, 0, U) for b0, b1 in rows]
    units = numba_threads.split_range(U, n, _unit_align(dtype)) if n > 1 else [(0, U)]
    if len(units) > 1:
        return len(units), [(0, B, u0, u1) for u0, u1 in units]
    if (PACKED_MIN_BATCH_BACKWARD if backward else PACKED_MIN_BATCH) <= B <= PACKED_MAX_BATCH:
        return 1, [(0, B, 0, U)]
    return None


def _projects(plan, B, by_rows):
    """Whether the threads of ``plan`` (from ``_parts``) each compute their part of the input
    projections of every step before their loop, packing their columns of the input matrix (no
    product before the loop, no start of the threads for it, each thread's projections in its own
    core's cache: B=1 T=20 H=512, 1.2 -> 1.0 ms): split by units; split by rows where ``by_rows``
    (small weights: each thread packs all of the input matrix); on a single thread when it is the
    only one (one of BLAS's threads is no faster), not one of several (BLAS then uses them all)."""
    if plan is None:
        return False
    if len(plan[1]) == 1:
        return backend.get_num_threads() == 1
    return by_rows or all(b0 == 0 and b1 == B for b0, b1, _, _ in plan[1])


def threaded(B, T, U, G, dtype, backward=False, folds=False):
    """Whether a loop of this shape runs on several threads (its products then avoid OpenBLAS's)."""
    plan = _parts(B, T, U, G, dtype, backward, folds)
    return plan is not None and len(plan[1]) > 1


def _small(kernel, recurrent_kernel, dtype):
    """Whether both matrices together fit FOLD_BYTES: a loop's threads then compute the input
    projections themselves (they stay in cache), and a loop is split from a smaller size on."""
    return (kernel.size + recurrent_kernel.size) * np.dtype(dtype).itemsize <= FOLD_BYTES


def backward_threaded(B, T, kernel, recurrent_kernel, dtype):
    """Whether the backward of a layer of this shape, or its training forward, runs on several
    threads: the backward's products then run on lstmkit's threads, never on OpenBLAS's, which
    would share the cores with lstmkit's, still spinning after the forward (LSTM B=8 T=20 H=128,
    forward and backward: 1.28 -> 1.16 ms)."""
    U, G = recurrent_kernel.shape
    return (threaded(B, T, U, G, dtype, backward=True)
            or threaded(B, T, U, G, dtype, folds=_small(kernel, recurrent_kernel, dtype)))


def _whole_loop(B, U, G):
    return B * U * G <= SMALL


def _panels(K, u0, u1, blocks, dtype):
    """An empty buffer for ``blocks`` packings of u1 - u0 columns of K rows (filled by the thread)."""
    nr = numba_matmul.panel_width(dtype)
    return buffers.aligned_empty((blocks, numba_matmul.panels(u1 - u0, dtype), K, nr), dtype)


def _gate_panels(w, blocks, u0, u1, dtype):
    """(P, p0): the panels (blocks, panels, K, NR) holding units u0..u1 of each of ``w``'s gate
    blocks (columns q*U + u0 .. q*U + u1), the first of them at p0. Where ``w`` is a constant weight
    (``backend.constant_weights``) whose blocks are whole panels, the panels packed once for the
    block (a thread packs nothing: B=1 T=20 H=512 forward, 0.3 ms less); else an empty buffer for
    the thread to pack, and p0 = -1."""
    K, U = w.shape[0], w.shape[1] // blocks
    nr = numba_matmul.panel_width(dtype)
    full = backend.constant_panels(w) if w.dtype == dtype and U % nr == 0 and u0 % nr == 0 else None
    if full is None:
        return _panels(K, u0, u1, blocks, dtype), -1
    return full.reshape(blocks, U // nr, K, nr), u0 // nr


def _transposed_product(B, U, T):
    """With few rows and a large recurrent matrix OpenBLAS is faster at (W @ d.T).T than at
    d @ W.T (measured: B=8..32, U=512, 1.1-1.4x per backward)."""
    return B <= 32 and U >= 256


class _BackwardProduct:
    """out = d @ w.T at every step of the stepwise backward, in the faster form (``backend.matmul``,
    decided once a call); ``w`` (U, G) is the recurrent kernel, used as it is (no transposed copy)."""

    def __init__(self, w, B, T):
        self.w = w
        transposed = _transposed_product(B, w.shape[0], T) and not backend.is_constant(w)   # else packed
        self.out_t = np.empty((w.shape[0], B), w.dtype) if transposed else None
        self.own = backend.own_products()

    def __call__(self, d, out):
        if self.out_t is None:
            backend.matmul(d, self.w.T, self.own, out)
        else:
            backend.matmul(self.w, d.T, self.own, self.out_t)
            np.copyto(out, self.out_t.T)


# From this many steps a whole loop compiled copies a recurrent matrix whose rows do not start on 32
# bytes (NumPy's arrays start on 16) to one whose rows do: the 32-byte vector loads of ``_matmul``
# straddle cache lines otherwise, and each step's product is 30-40 % slower (B=1, 128 x 384: 2.7 ->
# 1.9 us); the copy costs about 10 us (GRU B=1 T=100 H=128: 0.38 -> 0.33 ms).
ALIGN_MIN_STEPS = 32


def _product_matrix(w, dtype, T):
    """``w`` C-contiguous, for ``_matmul`` in a loop of T steps: rows on 32 bytes where worth it."""
    if w.dtype != dtype or not w.flags.c_contiguous or (T >= ALIGN_MIN_STEPS and w.ctypes.data % 32):
        return buffers.contiguous(w, dtype, aligned=True)
    return w


def _absent_or(a, dtype, shape):
    """``a`` broadcast to ``shape`` and contiguous, or a zero-size stand-in for None."""
    if a is None:
        return _absent(dtype, len(shape))
    return np.ascontiguousarray(np.broadcast_to(a, shape), dtype)


def _step_mask(ms, dtype):
    return _absent(dtype, 2) if ms is None else np.ascontiguousarray(ms[:, :, 0], dtype)


# The inner loops run over zero-based ranges of slices: with an index that might be negative
# (range(u0, u1)) Numba checks for wraparound at every element, and LLVM does not vectorize.
@njit(inline="always", **JIT)
def _add_blocks(out, a, b, blocks, U, u0, u1):
    """out[q*U + j] = a[..] + b[..] for the blocks q < ``blocks`` and units j in u0..u1."""
    for q in range(blocks):
        o, x, y = out[q * U + u0:q * U + u1], a[q * U + u0:q * U + u1], b[q * U + u0:q * U + u1]
        for j in range(u1 - u0):
            o[j] = x[j] + y[j]


@njit(inline="always", **JIT)
def _add_to_blocks(out, b, blocks, U, u0, u1):
    """out[q*U + j] += b[q*U + j] (in place: one pointer written, so LLVM needs no overlap check)."""
    for q in range(blocks):
        o, y = out[q * U + u0:q * U + u1], b[q * U + u0:q * U + u1]
        for j in range(u1 - u0):
            o[j] += y[j]


@njit(**JIT)
def _finish_dh(dh, dh_gate, rmask, carry, has_mask, b0, b1, u0, u1):
    """dh_{t-1} = (dz_t @ recurrent_kernel.T) * r  (+ what a padded step carries), rows b0..b1,
    units u0..u1."""
    has_rmask = rmask.shape[0] > 0
    for b in range(b0, b1):
        d, g, car = dh[b, u0:u1], dh_gate[b, u0:u1], carry[b, u0:u1]
        r = rmask[b, u0:u1] if has_rmask else g
        for j in range(u1 - u0):
            v = g[j] * r[j] if has_rmask else g[j]
            d[j] = v + car[j] if has_mask else v


@njit(inline="always", **JIT)
def _shared_read(a, buf, n):
    """``a``, or, when other threads wrote parts of it (n > 1), its copy in this thread's ``buf``: one
    streaming copy fetches their cache lines many at a time, where the product's scalar reads wait
    for them one by one (measured: the copy halves a step at B = 32, U = 128)."""
    if n == 1:
        return a
    for b in range(a.shape[0]):
        src, dst = a[b], buf[b]
        for j in range(a.shape[1]):
            dst[j] = src[j]
    return buf


@njit(inline="always", **JIT)
def _local(h, rmask, hr, n):
    """h * rmask into hr (recurrent dropout), else ``_shared_read(h, hr, n)``."""
    if rmask.shape[0] > 0:
        np.multiply(h, rmask, hr)
        return hr
    return _shared_read(h, hr, n)


@njit(inline="always", **JIT)
def _slots(t, keep):
    """(slot of step t's gates and entering state, slot of the state it leaves) in the buffers."""
    if keep:
        return t, t + 1
    return t & 1, (t + 1) & 1


@njit(inline="always", **JIT)
def _gate_slot(t, gates, outs):
    """The slot of step t's gates: t where ``gates`` holds every step (kept, or the input
    projections activated in place), else t % 2."""
    return t if gates.shape[0] == outs.shape[0] else t & 1


@njit(inline="always", **JIT)
def _filled(w, panels, U, u0, u1):
    """``panels`` (P, p0) from ``_gate_panels`` ready to read: where p0 is -1 this thread packs the
    columns q*U + u0 .. q*U + u1 of ``w`` into P[q] for each block q now, and p0 becomes 0."""
    P, p = panels
    if p < 0:
        for q in range(P.shape[0]):
            pack_into(w, q * U + u0, u1 - u0, P[q])
    return P, max(p, 0)


@njit(inline="always", **JIT)
def _blocks_product(a, P, p0, out, U, u0, u1, tmp, accumulate, reverse):
    """out[:, q*U + u0:q*U + u1] (+)= a @ w[:, q*U + u0:q*U + u1] for each gate block q, ``P``
    (blocks, panels, K, NR) the packed columns of each block, these units' from panel p0 on
    (``_gate_panels``). Over all the units (a loop split by rows) the blocks' panels follow each
    other: one product for them all. ``reverse``: the panels in the opposite order, the same sums
    (a loop alternates it at each step, so that each step starts on the panels still in cache)."""
    blocks, NR = P.shape[0], P.shape[3]
    if u0 == 0 and u1 == U and U % NR == 0:
        P_all = P.reshape((blocks * P.shape[1], P.shape[2], NR))
        packed_matmul(a, P_all, out[:, :blocks * U], tmp, accumulate, reverse)
    else:
        n = (u1 - u0 + NR - 1) // NR
        for i in range(blocks):
            q = blocks - 1 - i if reverse else i
            packed_matmul(a, P[q, p0:p0 + n], out[:, q * U + u0:q * U + u1], tmp, accumulate, reverse)


# The input projections of every step that a thread computes before its loop go by blocks of rows
# of this many bytes of input, each multiplied by all of the thread's panels while it is in cache
# (over all the rows at once, each panel would read the whole input from memory: GRU, one thread,
# B=128 T=100 H=512, 480 -> 380 ms).
PROJECT_BYTES = 1 << 18


@njit(**JIT)
def _project(xs, P, p0, xw, b0, b1, U, u0, u1, tmp):
    """xw[t, b0:b1, q*U + u0:q*U + u1] = xs[t, b0:b1] @ w[:, q*U + u0:q*U + u1] for every step t and
    gate block q of the packed ``P`` (``_blocks_product``): a thread's part of the input projections
    (xs (T, B, I), xw (T, B, G)). With every row, all the steps' rows in one product, by blocks of
    PROJECT_BYTES of them; else step by step."""
    T, B, I = xs.shape
    if b1 - b0 < B:
        for t in range(T):
            _blocks_product(xs[t, b0:b1], P, p0, xw[t, b0:b1], U, u0, u1, tmp, False, False)
        return
    x, out = xs.reshape((T * B, I)), xw.reshape((T * B, xw.shape[2]))
    rows = max(12, PROJECT_BYTES // max(1, I * xs.itemsize) // 12 * 12)
    for r0 in range(0, T * B, rows):
        r1 = min(r0 + rows, T * B)
        _blocks_product(x[r0:r1], P, p0, out[r0:r1], U, u0, u1, tmp, False, False)


def state_buffers(T, B, width, dtype, keep):
    """A (T + 1, B, width) buffer of every step's state, or a two-slot one for inference."""
    return buffers.empty((T + 1 if keep else 2, B, width), dtype)


# ----------------------------------------------------------------------------- LSTM
@njit(**JIT)
def _lstm_step(t, keep, xw, z, bias, b0, b1, u0, u1, ms, mode, act, ract, gates, hs, cs, act_c, outs,
               scratch):
    """Gates and state of rows b0..b1, units u0..u1 at step t, from xw[t] + z + bias, z = h_{t-1} @
    recurrent_kernel (B, 4U) (``gates`` is then ``xw``: z is added and the gates activated in
    place), or, when z is zero-size, from the product already added into the step's ``gates``;
    ``bias`` (4U,) or zero-size.
    ``keep``: gates, act_c, hs and cs hold every step (state entering step t at t); else act_c, hs
    and cs are two-slot rolling buffers (slot t % 2), and so are the gates unless they are ``xw``
    (``_gate_slot``); only ``outs`` holds every step (inference)."""
    _, B, G = xw.shape
    U = G // 4
    nu = u1 - u0
    s, sn = _slots(t, keep)
    sg = _gate_slot(t, gates, outs)
    has_mask = ms.shape[0] > 0
    zero = xw.dtype.type(0.0)
    for b in range(b0, b1):
        a = gates[sg, b]
        if z.shape[0] > 0:
            _add_to_blocks(a, z[b], 4, U, u0, u1)
        if bias.shape[0] > 0:
            _add_to_blocks(a, bias, 4, U, u0, u1)
        i, f, g, o = a[u0:u1], a[U + u0:U + u1], a[2 * U + u0:2 * U + u1], a[3 * U + u0:3 * U + u1]
        _activate(i, ract)
        _activate(f, ract)
        _activate(g, act)
        _activate(o, ract)
        ac = act_c[s, b, u0:u1]
        c_prev, h_prev = cs[s, b, u0:u1], hs[s, b, u0:u1]
        for j in range(nu):
            ac[j] = f[j] * c_prev[j] + i[j] * g[j]
        out, h_next, c_next = outs[t, b, u0:u1], hs[sn, b, u0:u1], cs[sn, b, u0:u1]
        if not has_mask:
            for j in range(nu):
                c_next[j] = ac[j]
            _activate(ac, act)
            for j in range(nu):
                out[j] = o[j] * ac[j]
                h_next[j] = out[j]
            continue
        c_new = scratch[0, :nu]
        for j in range(nu):
            c_new[j] = ac[j]
        _activate(ac, act)
        m = ms[t, b]
        prev_out = outs[t - 1, b, u0:u1] if t > 0 else scratch[1, :nu]   # scratch[1]: zeros
        for j in range(nu):
            h_new = o[j] * ac[j]
            if mode == 0:
                out[j] = h_new * m + zero      # -0.0 * 0 would print as -0.
            else:
                out[j] = h_new if m != zero else prev_out[j]
            # Select, not blend: the final state is bit-equal to the last valid output.
            h_next[j] = h_new if m != zero else h_prev[j]
            c_next[j] = c_new[j] if m != zero else c_prev[j]


@njit(**JIT)
def _lstm_forward_part(sync, k, n, b0, b1, u0, u1, keep, xin, W, w_panels, project, bias, R, panels, tmp,
                       rmask, ms, mode, act, ract, gates, hs, cs, act_c, outs):
    """Thread k: rows b0..b1, units u0..u1 of every step; n threads wait for each other after each
    step (1: no waiting). The step's gates (``_gate_slot``) are x_t @ W + h_{t-1} @ R, R's columns
    of these units in ``panels`` (``_gate_panels``: packed here where its start is -1). With a ``W``
    (nonzero size) ``xin`` is the input xs (T, B, I), W's columns in ``w_panels``, and the thread
    computes x_t @ W itself: step by step, or with ``project`` (a thread of every row) for every
    step before the loop, into ``gates`` (T, B, 4U). Without, ``xin`` is the input projections xw
    (T, B, 4U) and ``gates`` itself."""
    numba_threads.started(sync)
    T = xin.shape[0]
    G = gates.shape[2]
    U = G // 4
    fold = W.shape[0] > 0 and not project
    Pw, pw = _filled(W, w_panels, U, u0, u1)     # no blocks without a W
    P, p = _filled(R, panels, U, u0, u1)
    if project:     # this thread's columns of every step's input projections: W's panels read once
        _project(xin, Pw, pw, gates, b0, b1, U, u0, u1, tmp)
    no_z = np.empty((0, G), gates.dtype)
    hr = np.empty((b1 - b0, hs.shape[2]), gates.dtype)
    scratch = np.zeros((2, U), gates.dtype)      # row 0: c before masking; row 1: zeros
    for t in range(T):
        s, _ = _slots(t, keep)
        h = _local(hs[s, b0:b1], rmask[b0:b1], hr, n)
        sg = _gate_slot(t, gates, outs)
        if fold:
            _blocks_product(xin[t, b0:b1], Pw, pw, gates[sg, b0:b1], U, u0, u1, tmp, False, t & 1 == 1)
        _blocks_product(h, P, p, gates[sg, b0:b1], U, u0, u1, tmp, True, t & 1 == 1)
        _lstm_step(t, keep, gates, no_z, bias, b0, b1, u0, u1, ms, mode, act, ract, gates, hs, cs, act_c,
                   outs, scratch)
        if not numba_threads.arrive_and_wait(sync, k, n, t + 1):
            return


@njit(**JIT)
def _lstm_forward_blas(keep, xw, bias, R, rmask, ms, mode, act, ract, gates, hs, cs, act_c, outs):
    T, B, G = xw.shape
    z = np.empty((B, G), xw.dtype)
    hr = np.empty((B, G // 4), xw.dtype)
    scratch = np.zeros((2, G // 4), xw.dtype)
    for t in range(T):
        _matmul(_local(hs[_slots(t, keep)[0]], rmask, hr, 1), R, z)
        _lstm_step(t, keep, xw, z, bias, 0, B, 0, G // 4, ms, mode, act, ract, gates, hs, cs, act_c, outs,
                   scratch)


def lstm_forward(xs, kernel, bias, recurrent_kernel, h, c, ms, rmask, mode, activation, recurrent_activation,
                 keep, hs, cs, act_c, outs):
    """Fill ``hs, cs, act_c, outs`` as the NumPy loop of ``lstm_forward`` does, from the time-major
    input ``xs`` (T, B, I); return h, c and the activated gates (T, B, 4U). With ``keep`` False
    (inference) only ``outs`` is filled, the gates returned are None and ``hs, cs`` may be two-slot
    buffers (``state_buffers``)."""
    dtype = kernel.dtype
    T, B, _ = xs.shape
    G = kernel.shape[1]
    U = G // 4
    hs[0], cs[0] = h, c
    ms2 = _step_mask(ms, dtype)
    rm = _absent_or(rmask, dtype, (B, U))
    act, ract = codes(activation, recurrent_activation)
    mode = MODES[mode]
    bias = _absent(dtype, 1) if bias is None else np.ascontiguousarray(bias, dtype)
    if act_c is None:
        act_c = np.empty((2, B, U), dtype)
    # Small weights: the packed loop computes the input projections step by step (they stay in
    # cache; no product before the loop). Large ones: those of every step before it, reading the
    # input matrix once; but step by step too in inference where each thread has enough rows to
    # multiply at full speed (no projections of every step in memory: B=128 T=20 H=256, 15.5 ->
    # 14.0 ms; B=64 T=50 H=512, 69.9 -> 65.0; at B=8 streaming the weights at each step is slower).
    small = _small(kernel, recurrent_kernel, dtype) or (
        not keep and B >= SPLIT_MIN_ROWS * backend.get_num_threads())
    plan = _parts(B, T, U, G, dtype, folds=small)
    fold = plan is not None and small
    # Larger ones split by units: each thread computes the input projections of its units itself,
    # before its loop (``_projects``).
    project = not small and _projects(plan, B, by_rows=False)
    if fold or project:
        xin, W = np.ascontiguousarray(xs, dtype), np.ascontiguousarray(kernel, dtype)
        gates = buffers.empty((T if keep or project else 2, B, G), dtype)
    else:
        split = plan is not None and len(plan[1]) > 1
        pairs = [(xs.reshape(T * B, xs.shape[2]), kernel)]
        stepwise = plan is None and not _whole_loop(B, U, G)
        if stepwise:    # the first step's recurrent product with them: one start of the threads for both
            pairs.append((h if rmask is None else h * rm, recurrent_kernel))
        products = backend.matmuls(pairs, split or None)
        xw = products[0].reshape(T, B, G)
        xin, W = xw, _absent(dtype, 2)
        gates = xin     # the product added and the gates activated in place: xw is this call's own
    if plan is not None:
        waiting, ranges = plan
        R = np.ascontiguousarray(recurrent_kernel, dtype)
        parts = []
        for k, (b0, b1, u0, u1) in enumerate(ranges):
            w_panels = (_gate_panels(kernel, 4, u0, u1, dtype) if fold or project
                        else (_panels(0, u0, u1, 0, dtype), -1))
            parts.append(partial(
                _lstm_forward_part, k=k, n=waiting, b0=b0, b1=b1, u0=u0, u1=u1, keep=keep, xin=xin, W=W,
                w_panels=w_panels, project=project, bias=bias, R=R,
                panels=_gate_panels(recurrent_kernel, 4, u0, u1, dtype),
                tmp=scratch(dtype), rmask=rm, ms=ms2, mode=mode, act=act, ract=ract, gates=gates, hs=hs,
                cs=cs, act_c=act_c, outs=outs))
        numba_threads.run(parts)
    else:
        if _whole_loop(B, U, G):
            _lstm_forward_blas(keep, xw, bias, _product_matrix(recurrent_kernel, dtype, T), rm, ms2, mode,
                               act, ract, gates, hs, cs, act_c, outs)
        else:
            z = products[1]
            hr = np.empty((B, U), dtype)
            scratch_ = np.zeros((2, U), dtype)
            own = backend.own_products()
            for t in range(T):
                if t:
                    h_t = hs[t if keep else t & 1]
                    h_in = h_t if rmask is None else np.multiply(h_t, rm, out=hr)
                    backend.matmul(h_in, recurrent_kernel, own, z)
                _lstm_step(t, keep, xw, z, bias, 0, B, 0, U, ms2, mode, act, ract, gates, hs, cs, act_c, outs,
                           scratch_)
    last = T if keep else T & 1      # the slot of the state leaving the last step
    return hs[last].copy(), cs[last].copy(), gates if keep else None


@njit(**JIT)
def _lstm_backward_step(t, b0, b1, u0, u1, d_outs, gates, cs, act_c, dh, dc, ms, mode, act, ract, dz, pending,
                        carry, scratch):
    """Fill dz[t] for rows b0..b1, units u0..u1 from dh, dc (gradients reaching h_t, c_t); update dc to reach
    c_{t-1} and set ``carry`` to the part of dh that a padded step passes straight to h_{t-1}.
    ``scratch`` (4, 4U). Each loop writes one array: with several, LLVM's overlap checks between
    them outnumber its limit and the loop stays scalar."""
    T, B, G = dz.shape
    U = G // 4
    nu = u1 - u0
    has_mask = ms.shape[0] > 0
    has_dout = d_outs.shape[0] > 0
    one = dz.dtype.type(1.0)
    dg, dac, dh_new, dc_new = scratch[0], scratch[1, :nu], scratch[2, :nu], scratch[3, :nu]
    di, df, dgg, do = dg[:nu], dg[U:U + nu], dg[2 * U:2 * U + nu], dg[3 * U:3 * U + nu]
    for b in range(b0, b1):
        a, d = gates[t, b], dz[t, b]
        i, f, g, o = a[u0:u1], a[U + u0:U + u1], a[2 * U + u0:2 * U + u1], a[3 * U + u0:3 * U + u1]
        zi, zf, zg, zo = d[u0:u1], d[U + u0:U + u1], d[2 * U + u0:2 * U + u1], d[3 * U + u0:3 * U + u1]
        ac, c_prev = act_c[t, b, u0:u1], cs[t, b, u0:u1]
        _grad_from_output(di, i, ract)
        _grad_from_output(df, f, ract)
        _grad_from_output(dgg, g, act)
        _grad_from_output(do, o, ract)
        _grad_from_output(dac, ac, act)
        dh_b, dc_b = dh[b, u0:u1], dc[b, u0:u1]
        m = ms[t, b] if has_mask else one
        # dh_new, dc_new: the gradients reaching h_t and c_t through this step (none at a padded one)
        for j in range(nu):
            dh_new[j] = dh_b[j] * m if has_mask else dh_b[j]
        if has_dout:
            d_o = d_outs[t, b, u0:u1]
            if not has_mask:
                for j in range(nu):
                    dh_new[j] += d_o[j]
            elif mode == 0:
                for j in range(nu):
                    dh_new[j] += d_o[j] * m
            else:
                pend = pending[b, u0:u1]
                for j in range(nu):
                    dh_new[j] += (pend[j] + d_o[j]) * m
                for j in range(nu):
                    pend[j] = (pend[j] + d_o[j]) * (one - m)
        for j in range(nu):
            dc_new[j] = dc_b[j] * m if has_mask else dc_b[j]
        for j in range(nu):
            dc_new[j] += dh_new[j] * o[j] * dac[j]
        for j in range(nu):
            zi[j] = dc_new[j] * g[j] * di[j]
        for j in range(nu):
            zf[j] = dc_new[j] * c_prev[j] * df[j]
        for j in range(nu):
            zg[j] = dc_new[j] * i[j] * dgg[j]
        for j in range(nu):
            zo[j] = dh_new[j] * ac[j] * do[j]
        if has_mask:
            car = carry[b, u0:u1]
            for j in range(nu):
                car[j] = dh_b[j] * (one - m)
            for j in range(nu):
                dc_b[j] = dc_new[j] * f[j] + dc_b[j] * (one - m)
        else:
            for j in range(nu):
                dc_b[j] = dc_new[j] * f[j]


@njit(inline="always", **JIT)
def _transposed_panels(RT, panels, u0, u1):
    """The panels of columns u0..u1 of R.T (a backward's ``_gate_panels``, one block)."""
    P, p = _filled(RT, panels, 0, u0, u1)
    return P[0, p:p + (u1 - u0 + P.shape[3] - 1) // P.shape[3]]


@njit(**JIT)
def _lstm_backward_part(sync, k, n, b0, b1, u0, u1, RT, panels, tmp, d_outs, gates, cs, act_c, dh, dc, ms,
                        rmask, mode, act, ract, dz, pending, carry, dh_gate):
    """Thread k: dz of rows b0..b1, units u0..u1 at every step, then, once the n threads have their
    parts of dz_t, dh_{t-1} of these units = dz_t @ (their columns of R.T, ``panels``: see
    ``_gate_panels``)."""
    numba_threads.started(sync)
    T, B, G = dz.shape
    Pu = _transposed_panels(RT, panels, u0, u1)
    scratch = np.empty((4, G), dz.dtype)
    dl = np.empty((b1 - b0, G), dz.dtype)
    for s in range(T):
        t = T - 1 - s
        _lstm_backward_step(t, b0, b1, u0, u1, d_outs, gates, cs, act_c, dh, dc, ms, mode, act, ract, dz,
                            pending, carry, scratch)
        if not numba_threads.arrive_and_wait(sync, k, n, s + 1):
            return
        packed_matmul(_shared_read(dz[t, b0:b1], dl, n), Pu, dh_gate[b0:b1, u0:u1], tmp, False,
                      s & 1 == 1)
        _finish_dh(dh, dh_gate, rmask, carry, ms.shape[0] > 0, b0, b1, u0, u1)


@njit(**JIT)
def _lstm_backward_blas(d_outs, gates, cs, act_c, RT, dh, dc, ms, rmask, mode, act, ract, dz):
    T, B, G = dz.shape
    U = G // 4
    pending = np.zeros((B, U), dz.dtype)
    carry = np.zeros((B, U), dz.dtype)
    dh_gate = np.empty((B, U), dz.dtype)
    scratch = np.empty((4, G), dz.dtype)
    for t in range(T - 1, -1, -1):
        _lstm_backward_step(t, 0, B, 0, U, d_outs, gates, cs, act_c, dh, dc, ms, mode, act, ract, dz, pending,
                            carry, scratch)
        _matmul(dz[t], RT, dh_gate)
        _finish_dh(dh, dh_gate, rmask, carry, ms.shape[0] > 0, 0, B, 0, U)


def lstm_backward(d_outs, gates, cs, act_c, recurrent_kernel, dh, dc, ms, rmask, mode, activation,
                  recurrent_activation, dz):
    """Fill ``dz`` (T, B, 4U) as the NumPy loop of ``lstm_backward`` does; return dh0, dc0."""
    dtype = dz.dtype
    T, B, G = dz.shape
    U = G // 4
    dh = np.array(dh, dtype, order="C")
    dc = np.array(dc, dtype, order="C")
    d_outs = _absent(dtype, 3) if d_outs is None else buffers.contiguous(d_outs, dtype)
    ms2 = _step_mask(ms, dtype)
    rm = _absent_or(rmask, dtype, dh.shape)
    act, ract = codes(activation, recurrent_activation)
    mode = MODES[mode]
    plan = _parts(B, T, U, G, dtype, backward=True)
    if plan is not None:
        waiting, ranges = plan
        pending, carry, dh_gate = (np.zeros((B, U), dtype) for _ in range(3))
        RT = recurrent_kernel.T
        numba_threads.run([
            partial(_lstm_backward_part, k=k, n=waiting, b0=b0, b1=b1, u0=u0, u1=u1, RT=RT,
                    panels=_gate_panels(RT, 1, u0, u1, dtype), tmp=scratch(dtype), d_outs=d_outs, gates=gates,
                    cs=cs, act_c=act_c, dh=dh, dc=dc, ms=ms2, rmask=rm, mode=mode, act=act, ract=ract, dz=dz,
                    pending=pending, carry=carry, dh_gate=dh_gate)
            for k, (b0, b1, u0, u1) in enumerate(ranges)])
    elif _whole_loop(B, U, G):
        # The compiled product reads rows of the matrix: transpose once, not at every step.
        RT = _product_matrix(recurrent_kernel.T, dtype, T)
        _lstm_backward_blas(d_outs, gates, cs, act_c, RT, dh, dc, ms2, rm, mode, act, ract, dz)
    else:
        pending, carry = np.zeros((B, U), dtype), np.zeros((B, U), dtype)
        dh_gate = np.empty((B, U), dtype)
        scratch_ = np.empty((4, G), dtype)
        product = _BackwardProduct(recurrent_kernel, B, T)
        for t in range(T - 1, -1, -1):
            _lstm_backward_step(t, 0, B, 0, U, d_outs, gates, cs, act_c, dh, dc, ms2, mode, act, ract, dz,
                                pending, carry, scratch_)
            product(dz[t], dh_gate)
            _finish_dh(dh, dh_gate, rm, carry, ms is not None, 0, B, 0, U)
    return dh, dc


# ----------------------------------------------------------------------------- a decoder step
@njit(**dict(JIT, fastmath={"reassoc", "contract"}))
def _dot(x, y):
    """sum(x * y), summed in any order (vectorized)."""
    total = x.dtype.type(0.0)
    for d in range(x.shape[0]):
        total += x[d] * y[d]
    return total


@njit(inline="always", **JIT)
def _attend(q, memory, values, valid, r, w, ctx):
    """One query's attention (``attention.attention_forward``, dot or general scores): ``w`` the
    softmax over the source of q . memory[s], exactly 0 where ``valid[r]`` is False (zero-size ``valid``:
    no mask); ``ctx`` = w @ values."""
    S = memory.shape[0]
    has_mask = valid.shape[0] > 0
    zero = q.dtype.type(0.0)
    top = q.dtype.type(-np.inf)
    for s in range(S):
        if not has_mask or valid[r, s]:
            w[s] = _dot(q, memory[s])
            top = max(top, w[s])
    total = zero
    for s in range(S):
        w[s] = _exp(w[s] - top) if not has_mask or valid[r, s] else zero
        total += w[s]
    for s in range(S):
        w[s] = w[s] / total
    for d in range(ctx.shape[0]):
        ctx[d] = zero
    for s in range(S):
        a, v = w[s], values[s]
        if a != zero:
            for d in range(ctx.shape[0]):
                ctx[d] += a * v[d]


@njit(inline="always", **JIT)
def _columns(P, c0, c1):
    """The panels of columns c0..c1 (c0 on a panel's start) of the packed ``P``."""
    NR = P.shape[2]
    return P[c0 // NR:c0 // NR + (c1 - c0 + NR - 1) // NR]


@njit(**JIT)
def _decoder_step_part(sync, k, n, rows, units, cols_a, cols_o, tokens, table, feed, x, kernel, w_panels,
                       recurrent_kernel, r_panels, bias, gates, hs, cs, act_c, outs, memory, keys, valid,
                       weights, cat, cat_k, W_a, b_a, att, att_k, W_o, b_o, logp, stats, tmp, scratch_):
    """Thread k of n of ``decoder_step``: its units of the cell; after a wait, its rows of the
    attention; after another, its columns of the attentional layer; after another, its columns of
    the output and their partial row maxima and sums of exponentials, combined after a last wait
    into its columns of the log-softmax. ``x``, ``cat_k`` and ``att_k``: this thread's own buffers."""
    numba_threads.started(sync)
    (r0, r1), (u0, u1), (a0, a1), (o0, o1) = rows, units, cols_a, cols_o
    N, E = tokens.shape[0], table.shape[1]
    U = hs.shape[2]
    for i in range(N):
        emb, f, row = table[tokens[i]], feed[i], x[i]
        for j in range(E):
            row[j] = emb[j]
        for j in range(f.shape[0]):
            row[E + j] = f[j]
    Pw, pw = _filled(kernel, w_panels, U, u0, u1)
    P, p = _filled(recurrent_kernel, r_panels, U, u0, u1)
    _blocks_product(x, Pw, pw, gates[0], U, u0, u1, tmp, False, False)
    _blocks_product(hs[0], P, p, gates[0], U, u0, u1, tmp, True, False)
    no_z = np.empty((0, gates.shape[2]), gates.dtype)
    no_mask = np.empty((0, 0), gates.dtype)
    # mode 0 ("zero"), activations 0 and 1 (tanh, sigmoid: ACTIVATIONS)
    _lstm_step(0, False, gates, no_z, bias, 0, N, u0, u1, no_mask, 0, 0, 1, gates, hs, cs, act_c, outs,
               scratch_)
    if not numba_threads.arrive_and_wait(sync, k, n, 1):
        return
    h = hs[1]
    Dv = keys.shape[2]
    for r in range(r0, r1):
        _attend(h[r], memory[r], keys[r], valid, r, weights[r], cat[r, :Dv])
        row, hr = cat[r, Dv:], h[r]
        for j in range(U):
            row[j] = hr[j]
    if not numba_threads.arrive_and_wait(sync, k, n, 2):
        return
    packed_matmul(_shared_read(cat, cat_k, n), _columns(W_a, a0, a1), att[:, a0:a1], tmp)
    for i in range(N):
        _add_to_blocks(att[i], b_a, 1, 0, a0, a1)
        _activate(att[i, a0:a1], 0)                 # tanh
    if not numba_threads.arrive_and_wait(sync, k, n, 3):
        return
    packed_matmul(_shared_read(att, att_k, n), _columns(W_o, o0, o1), logp[:, o0:o1], tmp)
    zero = logp.dtype.type(0.0)
    lanes, e = np.empty(_LANES, logp.dtype), np.empty(o1 - o0, logp.dtype)
    stats[k, :, 0], stats[k, :, 1] = -np.inf, zero      # no columns: no part of the sums
    for i in range(N if o1 > o0 else 0):
        _add_to_blocks(logp[i], b_o, 1, 0, o0, o1)
        z = logp[i, o0:o1]
        top = _row_max(z, lanes)
        for j in range(z.shape[0]):
            e[j] = _exp(z[j] - top)
        stats[k, i, 0], stats[k, i, 1] = top, _row_sum(e, lanes)
    if not numba_threads.arrive_and_wait(sync, k, n, 4):
        return
    for i in range(N if o1 > o0 else 0):
        top = logp.dtype.type(-np.inf)
        for q in range(n):
            top = max(top, stats[q, i, 0])
        total = zero
        for q in range(n):
            if stats[q, i, 1] > zero:
                total += stats[q, i, 1] * _exp(stats[q, i, 0] - top)
        shift = top + np.log(total)
        z = logp[i, o0:o1]
        for j in range(z.shape[0]):
            z[j] -= shift


def _shares(N, n, align):
    """``split_range`` into exactly n ranges, the missing ones empty."""
    ranges = numba_threads.split_range(N, n, align)
    return ranges + [(N, N)] * (n - len(ranges))


def decoder_step(tokens, table, feed, h, c, kernel, recurrent_kernel, bias, memory, keys, mask, W_a, b_a,
                 W_o, b_o):
    """``kernels.decoder.decoder_step`` compiled, on lstmkit's threads; None where W_a or W_o is not
    a constant weight (``backend.constant_panels``)."""
    dtype = kernel.dtype
    Pa, Po = backend.constant_panels(W_a), backend.constant_panels(W_o)
    if Pa is None or Po is None:
        return None
    n = backend.get_num_threads()
    nr = numba_matmul.panel_width(dtype)
    N, E = tokens.shape[0], table.shape[1]
    U, A, V, S = recurrent_kernel.shape[0], W_a.shape[1], W_o.shape[1], keys.shape[1]
    hs, cs = np.empty((2, N, U), dtype), np.empty((2, N, U), dtype)
    hs[0], cs[0] = h, c
    outs = np.empty((1, N, U), dtype)
    weights, att, logp = np.empty((N, S), dtype), np.empty((N, A), dtype), np.empty((N, V), dtype)
    cat = np.empty((N, keys.shape[2] + U), dtype)
    stats = np.empty((n, N, 2), dtype)
    valid = np.zeros((0, 0), np.bool_) if mask is None else np.ascontiguousarray(mask, np.bool_)
    common = dict(n=n, tokens=np.ascontiguousarray(tokens, np.intp), table=table, feed=feed,
                  kernel=kernel, recurrent_kernel=recurrent_kernel, bias=bias,
                  gates=np.empty((1, N, 4 * U), dtype), hs=hs, cs=cs,
                  act_c=np.empty((2, N, U), dtype), outs=outs, memory=memory, keys=keys, valid=valid,
                  weights=weights, cat=cat, W_a=Pa, b_a=b_a, att=att, W_o=Po, b_o=b_o, logp=logp,
                  stats=stats)
    parts = [partial(_decoder_step_part, k=k, rows=rows, units=units, cols_a=cols_a, cols_o=cols_o,
                     w_panels=_gate_panels(kernel, 4, *units, dtype),
                     r_panels=_gate_panels(recurrent_kernel, 4, *units, dtype),
                     x=np.empty((N, E + feed.shape[1]), dtype), cat_k=np.empty_like(cat),
                     att_k=np.empty_like(att), tmp=scratch(dtype), scratch_=np.zeros((2, U), dtype), **common)
             for k, (rows, units, cols_a, cols_o) in enumerate(zip(
                 _shares(N, n, 1), _shares(U, n, nr), _shares(A, n, nr), _shares(V, n, nr)))]
    numba_threads.run(parts)
    return logp, weights, hs[1], cs[1], att


# ----------------------------------------------------------------------------- GRU (reset_after=True)
@njit(**JIT)
def _gru_step(t, keep, b0, b1, u0, u1, xw, b_in, rec, b_rec, ms, mode, act, ract, gates, rh_all, hs, outs):
    """Rows b0..b1, units u0..u1 of one step from xw[t] (+ b_in) and rec = h_{t-1} @ recurrent_kernel
    (B, 3U), whose columns of these units get b_rec added. ``gates`` may be ``xw``; ``keep`` as for
    ``_lstm_step`` (gates, rh_all and hs rolling buffers when False)."""
    B, G = rec.shape
    U = G // 3
    nu = u1 - u0
    s, sn = _slots(t, keep)
    has_mask = ms.shape[0] > 0
    has_bias = b_rec.shape[0] > 0
    zero = rec.dtype.type(0.0)
    for b in range(b0, b1):
        a, x_b, r_b = gates[s, b], xw[t, b], rec[b]
        if has_bias:
            _add_to_blocks(r_b, b_rec, 3, U, u0, u1)
        if b_in.shape[0] > 0:
            _add_to_blocks(x_b, b_in, 3, U, u0, u1)
        _add_blocks(a, x_b, r_b, 2, U, u0, u1)
        z, r, nn = a[u0:u1], a[U + u0:U + u1], a[2 * U + u0:2 * U + u1]
        _activate(z, ract)
        _activate(r, ract)
        rh, x_n, r_n = rh_all[s, b, u0:u1], x_b[2 * U + u0:2 * U + u1], r_b[2 * U + u0:2 * U + u1]
        for j in range(nu):
            rh[j] = r_n[j]
            nn[j] = x_n[j] + r[j] * rh[j]
        _activate(nn, act)
        h_prev, h_next, out = hs[s, b, u0:u1], hs[sn, b, u0:u1], outs[t, b, u0:u1]
        if not has_mask:
            for j in range(nu):
                out[j] = nn[j] + z[j] * (h_prev[j] - nn[j])
                h_next[j] = out[j]
            continue
        m = ms[t, b]
        for j in range(nu):
            h_new = nn[j] + z[j] * (h_prev[j] - nn[j])
            if mode == 0:
                out[j] = h_new * m + zero      # -0.0 * 0 would print as -0.
            else:
                prev = outs[t - 1, b, u0 + j] if t > 0 else zero
                out[j] = h_new if m != zero else prev
            h_next[j] = h_new if m != zero else h_prev[j]


@njit(**JIT)
def _gru_forward_part(sync, k, n, b0, b1, u0, u1, keep, xs, W, w_panels, R, panels, tmp, b_in, b_rec, rmask,
                      ms, mode, act, ract, xw, rec, gates, rh_all, hs, outs):
    """As ``_lstm_forward_part``; ``rec`` (B, 3U) is shared, each thread writing its block of it.
    With a ``W`` (nonzero size) the thread first computes its part (rows b0..b1, units u0..u1) of
    the input projections ``xw`` = xs @ W of every step, W's columns in ``w_panels``."""
    numba_threads.started(sync)
    T, B, G = xw.shape
    U = G // 3
    if W.shape[0] > 0:
        Pw, pw = _filled(W, w_panels, U, u0, u1)
        _project(xs, Pw, pw, xw, b0, b1, U, u0, u1, tmp)
    P, p = _filled(R, panels, U, u0, u1)
    hr = np.empty((b1 - b0, U), xw.dtype)
    for t in range(T):
        h = _local(hs[_slots(t, keep)[0], b0:b1], rmask[b0:b1], hr, n)
        _blocks_product(h, P, p, rec[b0:b1], U, u0, u1, tmp, False, t & 1 == 1)
        _gru_step(t, keep, b0, b1, u0, u1, xw, b_in, rec, b_rec, ms, mode, act, ract, gates, rh_all, hs, outs)
        if not numba_threads.arrive_and_wait(sync, k, n, t + 1):
            return


@njit(**JIT)
def _gru_forward_blas(keep, xw, R, b_in, b_rec, rmask, ms, mode, act, ract, gates, rh_all, hs, outs):
    T, B, G = xw.shape
    rec = np.empty((B, G), xw.dtype)
    hr = np.empty((B, G // 3), xw.dtype)
    for t in range(T):
        _matmul(_local(hs[_slots(t, keep)[0]], rmask, hr, 1), R, rec)
        _gru_step(t, keep, 0, B, 0, G // 3, xw, b_in, rec, b_rec, ms, mode, act, ract, gates, rh_all, hs,
                  outs)


def gru_forward(xs, kernel, b_in, recurrent_kernel, b_rec, h, ms, rmask, mode, activation,
                recurrent_activation, keep, rh_all, hs, outs):
    """Fill ``rh_all, hs, outs`` as the NumPy loop of ``gru_forward`` (reset_after=True) does, from
    the time-major input ``xs`` (T, B, I); return h and the activated gates (T, B, 3U: the input
    projections without the input bias ``b_in``, activated in place). With ``keep`` False
    (inference) only ``outs`` is filled, the gates returned are None and ``hs`` may be a two-slot
    buffer (``state_buffers``)."""
    dtype = kernel.dtype
    T, B, _ = xs.shape
    G = kernel.shape[1]
    U = G // 3
    # Each thread computes its part of the input projections itself, before its loop, where split
    # by units (as the LSTM's) or, small weights (each thread packs all of the input matrix), by
    # rows: an inference loop is then split from a smaller size on, as the LSTM's that folds them
    # (B=8 T=20 H=128: 0.35 -> 0.26 ms); else one product first.
    small = _small(kernel, recurrent_kernel, dtype)
    plan = _parts(B, T, U, G, dtype, folds=small)
    project = _projects(plan, B, by_rows=small)
    if project:
        xin, W = np.ascontiguousarray(xs, dtype), np.ascontiguousarray(kernel, dtype)
        xw = buffers.empty((T, B, G), dtype)
    else:
        split = plan is not None and len(plan[1]) > 1
        xw = backend.matmul(xs.reshape(T * B, xs.shape[2]), kernel, split or None).reshape(T, B, G)
        xin, W = _absent(dtype, 3), _absent(dtype, 2)
    gates = xw
    if not keep:
        gates = np.empty((2, B, G), dtype)
        rh_all = np.empty((2, B, U), dtype)
    hs[0] = h
    ms2 = _step_mask(ms, dtype)
    rm = _absent_or(rmask, dtype, (B, U))
    b_in = _absent(dtype, 1) if b_in is None else np.ascontiguousarray(b_in, dtype)
    b_rec = _absent(dtype, 1) if b_rec is None else np.ascontiguousarray(b_rec, dtype)
    act, ract = codes(activation, recurrent_activation)
    mode = MODES[mode]
    R = recurrent_kernel     # made contiguous where compiled code reads it (not per decoder step)
    if plan is not None:
        waiting, ranges = plan
        R = np.ascontiguousarray(R, dtype)
        rec = np.empty((B, G), dtype)
        numba_threads.run([
            partial(_gru_forward_part, k=k, n=waiting, b0=b0, b1=b1, u0=u0, u1=u1, keep=keep, xs=xin, W=W,
                    w_panels=(_gate_panels(kernel, 3, u0, u1, dtype) if project
                              else (_panels(0, u0, u1, 0, dtype), -1)), R=R,
                    panels=_gate_panels(recurrent_kernel, 3, u0, u1, dtype), tmp=scratch(dtype),
                    b_in=b_in, b_rec=b_rec, rmask=rm, ms=ms2, mode=mode, act=act, ract=ract,
                    xw=xw, rec=rec, gates=gates, rh_all=rh_all, hs=hs, outs=outs)
            for k, (b0, b1, u0, u1) in enumerate(ranges)])
    elif _whole_loop(B, U, G):
        _gru_forward_blas(keep, xw, _product_matrix(R, dtype, T), b_in, b_rec, rm, ms2, mode, act, ract,
                          gates, rh_all, hs, outs)
    else:
        rec = np.empty((B, G), dtype)
        hr = np.empty((B, U), dtype)
        own = backend.own_products()
        for t in range(T):
            h_t = hs[t if keep else t & 1]
            backend.matmul(h_t if rmask is None else np.multiply(h_t, rm, out=hr), R, own, rec)
            _gru_step(t, keep, 0, B, 0, U, xw, b_in, rec, b_rec, ms2, mode, act, ract, gates, rh_all, hs,
                      outs)
    return hs[T if keep else T & 1].copy(), gates if keep else None


@njit(**JIT)
def _gru_backward_step(t, b0, b1, u0, u1, d_outs, gates, rh_all, hs, dh, ms, mode, act, ract, dxw, drec,
                       pending, carry, scratch):
    """Fill dxw[t], drec[t] for rows b0..b1, units u0..u1 from dh (gradient reaching h_t); set
    ``carry`` to the part of dh_{t-1} that does not pass through the recurrent product."""
    T, B, G = dxw.shape
    U = G // 3
    nu = u1 - u0
    has_mask = ms.shape[0] > 0
    has_dout = d_outs.shape[0] > 0
    one = dxw.dtype.type(1.0)
    dg, dh_new = scratch[0], scratch[1, :nu]
    dgz, dgr, dgn = dg[:nu], dg[U:U + nu], dg[2 * U:2 * U + nu]
    for b in range(b0, b1):
        a, dx, dr = gates[t, b], dxw[t, b], drec[t, b]
        z, r, nn = a[u0:u1], a[U + u0:U + u1], a[2 * U + u0:2 * U + u1]
        rh, h_prev = rh_all[t, b, u0:u1], hs[t, b, u0:u1]
        _grad_from_output(dgz, z, ract)
        _grad_from_output(dgr, r, ract)
        _grad_from_output(dgn, nn, act)
        dh_b, car = dh[b, u0:u1], carry[b, u0:u1]
        m = ms[t, b] if has_mask else one
        for j in range(nu):
            dh_new[j] = dh_b[j] * m if has_mask else dh_b[j]
        if has_dout:
            d_o = d_outs[t, b, u0:u1]
            if not has_mask or mode == 0:
                for j in range(nu):
                    dh_new[j] += d_o[j] * m if has_mask else d_o[j]
            else:
                pend = pending[b, u0:u1]
                for j in range(nu):
                    total = pend[j] + d_o[j]
                    pend[j] = total * (one - m)
                    dh_new[j] += total * m
        dxz, dxr, dxn = dx[u0:u1], dx[U + u0:U + u1], dx[2 * U + u0:2 * U + u1]
        for j in range(nu):
            dxn[j] = dh_new[j] * (one - z[j]) * dgn[j]
            dxz[j] = dh_new[j] * (h_prev[j] - nn[j]) * dgz[j]
        for j in range(nu):
            dxr[j] = dxn[j] * rh[j] * dgr[j]
        drz, drr, drn = dr[u0:u1], dr[U + u0:U + u1], dr[2 * U + u0:2 * U + u1]
        for j in range(nu):
            drz[j] = dxz[j]
            drr[j] = dxr[j]
            drn[j] = dxn[j] * r[j]
        for j in range(nu):
            car[j] = dh_new[j] * z[j] + dh_b[j] * (one - m) if has_mask else dh_new[j] * z[j]


@njit(**JIT)
def _gru_backward_part(sync, k, n, b0, b1, u0, u1, RT, panels, tmp, d_outs, gates, rh_all, hs, dh, ms, rmask,
                       mode, act, ract, dxw, drec, pending, carry, dh_gate):
    """As ``_lstm_backward_part``."""
    numba_threads.started(sync)
    T, B, G = dxw.shape
    Pu = _transposed_panels(RT, panels, u0, u1)
    scratch = np.empty((2, G), dxw.dtype)
    dl = np.empty((b1 - b0, G), dxw.dtype)
    for s in range(T):
        t = T - 1 - s
        _gru_backward_step(t, b0, b1, u0, u1, d_outs, gates, rh_all, hs, dh, ms, mode, act, ract, dxw, drec,
                           pending, carry, scratch)
        if not numba_threads.arrive_and_wait(sync, k, n, s + 1):
            return
        packed_matmul(_shared_read(drec[t, b0:b1], dl, n), Pu, dh_gate[b0:b1, u0:u1], tmp, False,
                      s & 1 == 1)
        _finish_dh(dh, dh_gate, rmask, carry, True, b0, b1, u0, u1)


@njit(**JIT)
def _gru_backward_blas(d_outs, gates, rh_all, hs, RT, dh, ms, rmask, mode, act, ract, dxw, drec):
    T, B, G = dxw.shape
    U = G // 3
    pending = np.zeros((B, U), dxw.dtype)
    carry = np.zeros((B, U), dxw.dtype)
    dh_gate = np.empty((B, U), dxw.dtype)
    scratch = np.empty((2, G), dxw.dtype)
    for t in range(T - 1, -1, -1):
        _gru_backward_step(t, 0, B, 0, U, d_outs, gates, rh_all, hs, dh, ms, mode, act, ract, dxw, drec,
                           pending, carry, scratch)
        _matmul(drec[t], RT, dh_gate)
        _finish_dh(dh, dh_gate, rmask, carry, True, 0, B, 0, U)


def gru_backward(d_outs, gates, rh_all, hs, recurrent_kernel, dh, ms, rmask, mode, activation,
                 recurrent_activation, dxw, drec):
    """Fill ``dxw`` and ``drec`` (T, B, 3U) as the NumPy loop of ``gru_backward`` (reset_after=True)
    does; return dh0."""
    dtype = dxw.dtype
    T, B, G = dxw.shape
    U = G // 3
    dh = np.array(dh, dtype, order="C")
    d_outs = _absent(dtype, 3) if d_outs is None else buffers.contiguous(d_outs, dtype)
    ms2 = _step_mask(ms, dtype)
    rm = _absent_or(rmask, dtype, dh.shape)
    act, ract = codes(activation, recurrent_activation)
    mode = MODES[mode]
    plan = _parts(B, T, U, G, dtype, backward=True)
    if plan is not None:
        waiting, ranges = plan
        pending, carry, dh_gate = (np.zeros((B, U), dtype) for _ in range(3))
        RT = recurrent_kernel.T
        numba_threads.run([
            partial(_gru_backward_part, k=k, n=waiting, b0=b0, b1=b1, u0=u0, u1=u1, RT=RT,
                    panels=_gate_panels(RT, 1, u0, u1, dtype), tmp=scratch(dtype), d_outs=d_outs,
                    gates=gates, rh_all=rh_all, hs=hs, dh=dh, ms=ms2, rmask=rm, mode=mode, act=act, ract=ract,
                    dxw=dxw, drec=drec, pending=pending, carry=carry, dh_gate=dh_gate)
            for k, (b0, b1, u0, u1) in enumerate(ranges)])
    elif _whole_loop(B, U, G):
        RT = _product_matrix(recurrent_kernel.T, dtype, T)
        _gru_backward_blas(d_outs, gates, rh_all, hs, RT, dh, ms2, rm, mode, act, ract, dxw, drec)
    else:
        pending, carry = np.zeros((B, U), dtype), np.zeros((B, U), dtype)
        dh_gate = np.empty((B, U), dtype)
        scratch_ = np.empty((2, G), dtype)
        product = _BackwardProduct(recurrent_kernel, B, T)
        for t in range(T - 1, -1, -1):
            _gru_backward_step(t, 0, B, 0, U, d_outs, gates, rh_all, hs, dh, ms2, mode, act, ract, dxw, drec,
                               pending, carry, scratch_)
            product(drec[t], dh_gate)
            _finish_dh(dh, dh_gate, rm, carry, True, 0, B, 0, U)
    return dh
