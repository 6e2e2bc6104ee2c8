"""A matrix product with the right-hand matrix packed once, for the compiled time loops.

At every step a recurrent layer multiplies the state (B, U) by the same recurrent matrix (U, G).
OpenBLAS re-packs that matrix at every call, which at B = 8 and U = 512 costs more than the
product itself. Here the matrix is packed once per forward (or backward) call::

    P = pack(w)                 # w (K, N) -> P (ceil(N / NR), K, NR): column panels, zero-padded
    packed_matmul(a, P, out, tmp)   # out (M, N) = a (M, K) @ w

Panel p holds columns p*NR .. p*NR+NR-1 of ``w``, row after row, so one panel is read from start to
end, once per block of MR rows of ``a``. The micro-kernel keeps MR x NR accumulators in vector
registers, two vectors a row (with AVX-512 up to 12 rows x 32 float32 or 16 float64 columns, else
4 rows x 16 or 8; a product of one row takes four panels at a time), and for each k adds the
broadcast a[i, k] times the NR-vector P[p, k] with a fused multiply-add. It is written directly in
LLVM IR (``_block``), because LLVM does not vectorize the equivalent Python loops across the columns.

The sums run over k in order, one fused multiply-add per term: the result differs from BLAS's only
by float rounding, and a row's result is the same bits whatever the rows beside it.

    >>> import numpy as np
    >>> w = np.arange(12.0).reshape(3, 4); a = np.ones((2, 3))
    >>> out = np.empty((2, 4)); packed_matmul(a, pack(w), out, scratch(w.dtype))
    >>> bool(np.array_equal(out, a @ w))
    True
"""
import hashlib
import os

import numpy as np
from llvmlite import binding, ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .buffers import aligned_empty

JIT = dict(cache=True, nogil=True, error_model="numpy")


def _vector_bytes():
    """64 where the code Numba generates may use 512-bit vectors (AVX-512), else 32."""
    features = os.environ.get("NUMBA_CPU_FEATURES") or binding.get_host_cpu_features().flatten()
    return 64 if "+avx512f" in features.split(",") else 32


# The block: 12 rows x two 512-bit vectors (24 accumulators of AVX-512's 32 registers), or
# 4 rows x two 256-bit vectors (8 of AVX2's 16): more would spill the accumulators to memory. Each
# panel row loaded feeds 24 fused multiply-adds (K = 512: 187 GFLOP/s a core with 8 rows, 202 with
# 12; 14 rows gave 208 but leave odd remainders for batches split in halves). One row over one
# panel has two sums, each waiting on its last fused multiply-add (1 x 512 x 1024, panels in the
# core's cache: 49 GFLOP/s); over four panels at once, eight (64 GFLOP/s, bound by reading the
# panels; the loops of a batch of one 8-17 % faster at U = 512).
VECTOR_BYTES = _vector_bytes()
ROWS = 12 if VECTOR_BYTES == 64 else 4
# The micro-kernel asks for the panel rows this far ahead (prefetches never fault past the end): a
# panel read from memory, not cache, comes 5-15 % faster (U = 512, one row to 32).
PREFETCH_ROWS = 32
# A transposed matrix is packed in blocks of this many of its rows, each block's reads and writes
# staying in the first-level cache.
TRANSPOSE_ROWS = 16


def panel_width(dtype):
    """NR, the columns per panel: two vectors (AVX-512: 32 float32 or 16 float64; else 16 or 8)."""
    return 2 * VECTOR_BYTES // np.dtype(dtype).itemsize


def pack(w):
    """Pack ``w`` (K, N) into column panels (ceil(N / NR), K, NR), the last one zero-padded, in memory
    of their own that starts on a cache line (each panel row is then one vector load, not two)."""
    shape = (panels(w.shape[1], w.dtype), w.shape[0], panel_width(w.dtype))
    P = aligned_empty(shape, w.dtype, reuse=False)
    pack_into(w, 0, w.shape[1], P)
    return P


@njit(**JIT)
def pack_into(w, j0, N, P):
    """Fill ``P`` (panels, K, NR) with the column panels of ``w[:, j0:j0 + N]``, zero-padded: what
    ``pack`` returns for that slice, written in place (by the thread that will read it). ``w`` is
    read in the order it lies in memory: row by row (its reads stream: 1.4x faster than panel by
    panel at 512 x 1024), or, for a transposed matrix (a backward pass packs R.T), column by column
    into the panels' columns (R.T of a 512 x 2048 R: 0.5 ms; 2.5 ms read by rows, each element from
    a cache line of its own)."""
    K = w.shape[0]
    NR = P.shape[2]
    zero = P.dtype.type(0.0)
    if w.strides[0] < w.strides[1]:
        for p in range(P.shape[0]):
            for k0 in range(0, K, TRANSPOSE_ROWS):
                k1 = min(k0 + TRANSPOSE_ROWS, K)
                for r in range(NR):
                    j = p * NR + r
                    dst = P[p, k0:k1, r]
                    if j < N:
                        src = w[k0:k1, j0 + j]
                        for k in range(k1 - k0):
                            dst[k] = src[k]
                    else:
                        for k in range(k1 - k0):
                            dst[k] = zero
        return
    full = N // NR
    for k in range(K):
        row = w[k]
        for p in range(full):
            src, dst = row[j0 + p * NR:j0 + p * NR + NR], P[p, k]
            for r in range(NR):
                dst[r] = src[r]
        for p in range(full, P.shape[0]):
            dst = P[p, k]
            for r in range(NR):
                j = p * NR + r
                dst[r] = w[k, j0 + j] if j < N else zero


def panels(N, dtype):
    """How many panels N columns pack into."""
    return -(-N // panel_width(dtype))


def scratch(dtype):
    """The (ROWS, NR) buffer ``packed_matmul`` writes a last, partial panel's block into; its row
    count is the largest block of rows."""
    return np.empty((ROWS, panel_width(dtype)), dtype)


def _block(MR, NR, PANELS=1):
    """c[r, :NR] (+)= sum over k < K of a[r, k] * w[k, :NR] for r < MR, from raw offsets into the
    arrays: ``a`` at a_off with row stride lda, ``w`` a panel (K, NR) at w_off, ``c`` at c_off with row
    stride ldc (all in elements); added to c's values when ``accumulate`` is nonzero. The MR
    accumulators are <NR x float> values carried by the loop. With PANELS > 1, as many consecutive
    panels (and columns of c) at once: more accumulators for a block of few rows, whose sums
    otherwise wait on each other's fused multiply-adds; and no prefetches, which took load slots
    from the panels' own loads (1 x 512 x 1024 in cache: 19.7 -> 16.3 us; from memory the same)."""
    @intrinsic
    def block(typingctx, a, a_off, lda, w, w_off, K, c, c_off, ldc, accumulate):
        sig = types.void(a, a_off, lda, w, w_off, K, c, c_off, ldc, accumulate)

        def codegen(context, builder, signature, args):
            a_, a_off_, lda_, w_, w_off_, K_, c_, c_off_, ldc_, accumulate_ = args
            a_ty, _, _, w_ty, _, _, c_ty, _, _, _ = signature.args
            a_ptr = builder.gep(context.make_array(a_ty)(context, builder, a_).data, [a_off_])
            w_ptr = builder.gep(context.make_array(w_ty)(context, builder, w_).data, [w_off_])
            c_ptr = builder.gep(context.make_array(c_ty)(context, builder, c_).data, [c_off_])
            fty = a_ptr.type.pointee
            vty = ir.VectorType(fty, NR)
            i64, i32 = ir.IntType(64), ir.IntType(32)
            bits = 32 if isinstance(fty, ir.FloatType) else 64
            fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty] * 3),
                                                 f"llvm.fma.v{NR}f{bits}")
            zero = ir.Constant(vty, [ir.Constant(fty, 0.0)] * NR)
            splat = ir.Constant(ir.VectorType(i32, NR), [0] * NR)
            undef = ir.Constant(vty, ir.Undefined)
            panel_size = builder.mul(K_, ir.Constant(i64, NR))
            cells = [(r, j) for r in range(MR) for j in range(PANELS)]

            c_at = {}
            for r, j in cells:
                offset = builder.add(builder.mul(ir.Constant(i64, r), ldc_), ir.Constant(i64, j * NR))
                c_at[r, j] = builder.bitcast(builder.gep(c_ptr, [offset]), vty.as_pointer())
            add_to_c = builder.icmp_signed("!=", accumulate_, ir.Constant(accumulate_.type, 0))
            init = {cell: builder.select(add_to_c, builder.load(c_at[cell], align=bits // 8), zero)
                    for cell in cells}
            entry = builder.block
            loop = builder.append_basic_block("block.loop")
            done = builder.append_basic_block("block.done")
            builder.cbranch(builder.icmp_signed(">", K_, ir.Constant(i64, 0)), loop, done)

            builder.position_at_end(loop)
            k = builder.phi(i64)
            acc = {cell: builder.phi(vty) for cell in cells}
            i8p = ir.IntType(8).as_pointer()
            prefetch = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                "llvm.prefetch.p0i8")
            lines = NR * (bits // 8) // 64 if PANELS == 1 else 0      # cache lines of a panel row
            hint = [ir.Constant(i32, v) for v in (0, 3, 1)]           # read, keep in every cache, data
            w_vecs = []
            for j in range(PANELS):
                w_k = builder.gep(w_ptr, [builder.add(builder.mul(k, ir.Constant(i64, NR)),
                                                      builder.mul(panel_size, ir.Constant(i64, j)))])
                w_vecs.append(builder.load(builder.bitcast(w_k, vty.as_pointer()), align=bits // 8))
                for line in range(lines):
                    ahead = builder.gep(w_k, [ir.Constant(i64, PREFETCH_ROWS * NR + line * 64 // (bits // 8))])
                    builder.call(prefetch, [builder.bitcast(ahead, i8p)] + hint)
            new = {}
            for r in range(MR):
                a_rk = builder.load(builder.gep(a_ptr, [builder.add(builder.mul(ir.Constant(i64, r), lda_), k)]))
                a_vec = builder.shuffle_vector(builder.insert_element(undef, a_rk, ir.Constant(i32, 0)),
                                               undef, splat)
                for j in range(PANELS):
                    new[r, j] = builder.call(fma, [a_vec, w_vecs[j], acc[r, j]])
            k_next = builder.add(k, ir.Constant(i64, 1))
            k.add_incoming(ir.Constant(i64, 0), entry)
            k.add_incoming(k_next, loop)
            for cell in cells:
                acc[cell].add_incoming(init[cell], entry)
                acc[cell].add_incoming(new[cell], loop)
            builder.cbranch(builder.icmp_signed("<", k_next, K_), loop, done)

            builder.position_at_end(done)
            totals = {cell: builder.phi(vty) for cell in cells}    # phi nodes first in a block
            for cell in cells:
                totals[cell].add_incoming(init[cell], entry)
                totals[cell].add_incoming(new[cell], loop)
                builder.store(totals[cell], c_at[cell], align=bits // 8)
            return context.get_dummy_value()
        return sig, codegen
    return block


_block12_32, _block8_32, _block4_32, _block2_32, _block1_32 = (_block(m, 32) for m in (12, 8, 4, 2, 1))
_block12_16, _block8_16, _block4_16, _block2_16, _block1_16 = (_block(m, 16) for m in (12, 8, 4, 2, 1))
_block4_8, _block2_8, _block1_8 = (_block(m, 8) for m in (4, 2, 1))
_block1x4_32, _block1x4_16, _block1x4_8 = (_block(1, nr, 4) for nr in (32, 16, 8))


@njit(inline="always", **JIT)
def _row_4_panels(a, P, w_off, K, c, c_off, accumulate):
    """One row of ``a`` by the four panels from w_off: the micro-kernel of 1 row x 4 panels."""
    if P.shape[2] == 32:
        _block1x4_32(a, 0, 0, P, w_off, K, c, c_off, 0, accumulate)
    elif P.shape[2] == 16:
        _block1x4_16(a, 0, 0, P, w_off, K, c, c_off, 0, accumulate)
    else:
        _block1x4_8(a, 0, 0, P, w_off, K, c, c_off, 0, accumulate)


@njit(inline="always", **JIT)
def _rows(MR, a, i, lda, P, w_off, K, c, c_off, ldc, accumulate):
    """Dispatch to the micro-kernel of MR rows for P's panel width."""
    if P.shape[2] == 32:
        if MR == 12:
            _block12_32(a, i * lda, lda, P, w_off, K, c, c_off, ldc, accumulate)
        elif MR == 8:
            _block8_32(a, i * lda, lda, P, w_off, K, c, c_off, ldc, accumulate)
        elif MR == 4:
            _block4_32(a, i * lda, lda, P, w_off, K, c, c_off, ldc, accumulate)
        elif MR == 2:
            _block2_32(a, i * lda, lda, P, w_off, K, c, c_off, ldc, accumulate)
        else:
            _block1_32(a, i * lda, lda, P, w_off, K, c, c_off, ldc, accumulate)
    elif P.shape[2] == 16:
        if MR == 12:
            _block12_16(a, i * lda, lda, P, w_off, K, c, c_off, ldc, accumulate)
        elif MR == 8:
            _block8_16(a, i * lda, lda, P, w_off, K, c, c_off, ldc, accumulate)
        elif MR == 4:
            _block4_16(a, i * lda, lda, P, w_off, K, c, c_off, ldc, accumulate)
        elif MR == 2:
            _block2_16(a, i * lda, lda, P, w_off, K, c, c_off, ldc, accumulate)
        else:
            _block1_16(a, i * lda, lda, P, w_off, K, c, c_off, ldc, accumulate)
    else:
        if MR == 4:
            _block4_8(a, i * lda, lda, P, w_off, K, c, c_off, ldc, accumulate)
        elif MR == 2:
            _block2_8(a, i * lda, lda, P, w_off, K, c, c_off, ldc, accumulate)
        else:
            _block1_8(a, i * lda, lda, P, w_off, K, c, c_off, ldc, accumulate)


@njit(**JIT)
def packed_matmul(a, P, out, tmp, accumulate=False, reverse=False):
    """out (M, N) = a (M, K) @ w, ``P = pack(w)``; ``tmp = scratch(dtype)`` (its row count, 12 or 4,
    is the largest block of rows). Rows of ``a`` and ``out`` must be contiguous (any row stride).
    ``accumulate=True``: out += a @ w. ``reverse=True``: the panels from the last to the first, the
    same sums: a loop that alternates the direction at each step starts on the panels the step before
    read last, still in cache (a matrix about a core's cache in size, one row: 32 -> 24 us a step)."""
    M, K = a.shape
    panels, _, NR = P.shape
    N = out.shape[1]
    if (P.shape[1] != K or out.shape[0] != M or panels != (N + NR - 1) // NR
            or tmp.shape[1] != NR or not (NR == 32 or NR == 16 or NR == 8)
            or not (tmp.shape[0] == 4 or (tmp.shape[0] == 12 and NR != 8))):
        raise ValueError("packed_matmul: shapes of a, P, out, tmp do not match")
    if M > 0 and ((K > 0 and a.strides[1] != a.itemsize) or (N > 0 and out.strides[1] != out.itemsize)):
        raise ValueError("packed_matmul: rows of a and out must be contiguous")
    lda = a.strides[0] // a.itemsize
    ldc = out.strides[0] // out.itemsize
    # Rows 0..twelve in blocks of 12, the rest in blocks of 8, 4, 2, 1; 16 rows left go as 8 + 8,
    # not 12 + 4 (a block of 4 runs at three quarters of the rate).
    twelve = M - M % 12 if tmp.shape[0] == 12 else 0
    if twelve and M % 12 == 4:
        twelve -= 12
    # One row: four whole panels at a time (one panel's two sums would wait on each other's fused
    # multiply-adds: 1 x 512 x 1024 in cache, 21 -> 16 us); each sum still runs over k in order.
    grouped = (N // NR) // 4 if M == 1 else 0
    for g in range(grouped):
        p = 4 * (grouped - 1 - g if reverse else g)
        _row_4_panels(a, P, p * K * NR, K, out, p * NR, accumulate)
    for q in range(4 * grouped, panels):
        p = panels - 1 - (q - 4 * grouped) if reverse else q
        j0 = p * NR
        cols = min(NR, N - j0)
        w_off = p * K * NR
        i = 0
        while i < M:
            MR = 12 if i < twelve else min(tmp.shape[0], 8)
            while MR > M - i:
                MR //= 2
            if cols == NR:
                _rows(MR, a, i, lda, P, w_off, K, out, i * ldc + j0, ldc, accumulate)
            else:
                if accumulate:
                    for r in range(MR):
                        for j in range(cols):
                            tmp[r, j] = out[i + r, j0 + j]
                _rows(MR, a, i, lda, P, w_off, K, tmp, 0, NR, accumulate)
                for r in range(MR):
                    for j in range(cols):
                        out[i + r, j0 + j] = tmp[r, j]
            i += MR


# Numba's disk cache checks only the contents of the file of the function it compiled: the loops of
# numba_loops.py would keep the micro-kernel of an earlier numba_matmul.py (another panel width:
# wrong results) for as long as their own file stays the same. So the compiled files' caches are
# dropped together whenever any of them changes (checked once, before any of them is loaded).
COMPILED = ("numba_matmul", "numba_threads", "numba_loops")


def _drop_stale_caches():
    here = os.path.dirname(os.path.abspath(__file__))
    digest = hashlib.sha256()
    for name in COMPILED:
        with open(os.path.join(here, name + ".py"), "rb") as f:
            digest.update(f.read())
    cache = getattr(getattr(pack_into, "_cache", None), "_cache_path", None)
    if cache is None or not os.path.isdir(cache):
        return
    stamp = os.path.join(cache, "lstmkit-kernels.sha256")
    try:
        with open(stamp) as f:
            if f.read() == digest.hexdigest():
                return
    except OSError:
        pass
    try:
        for entry in os.listdir(cache):
            if entry.startswith(tuple(n + "." for n in COMPILED)) and entry.endswith((".nbi", ".nbc")):
                os.remove(os.path.join(cache, entry))
        with open(stamp, "w") as f:
            f.write(digest.hexdigest())
    except OSError:     # another process cleaned first, or a read-only cache: Numba copes
        pass


_drop_stale_caches()
