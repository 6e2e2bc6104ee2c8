"""The packed matrix product of the compiled loops equals a @ w (to float rounding): odd shapes,
partial panels, row remainders of every micro-kernel size, empty operands, float32 and float64."""
import numpy as np
import pytest

numba_matmul = pytest.importorskip("lstmkit.kernels.numba_matmul", reason="numba not installed")
pack, packed_matmul, scratch = numba_matmul.pack, numba_matmul.packed_matmul, numba_matmul.scratch

SHAPES = [(1, 1, 1), (3, 5, 7), (8, 64, 128), (13, 129, 385), (17, 33, 65), (5, 1, 31), (15, 128, 33),
          (2, 7, 16), (7, 3, 32), (9, 40, 160), (32, 128, 512), (0, 4, 5), (4, 3, 0), (6, 0, 20),
          (12, 9, 40), (16, 20, 33), (25, 17, 64), (28, 11, 70), (31, 8, 96), (64, 32, 65)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("M,K,N", SHAPES)
def test_packed_matmul_equals_matmul(dtype, M, K, N):
    rng = np.random.default_rng(M * 10000 + K * 100 + N)
    a = rng.normal(size=(M, K)).astype(dtype)
    w = rng.normal(size=(K, N)).astype(dtype)
    out = np.full((M, N), np.nan, dtype)
    packed_matmul(a, pack(w), out, scratch(dtype))
    exact = a.astype(np.float64) @ w.astype(np.float64)
    # float rounding of a K-term sum: a few ulp of the sum of |terms|
    bound = np.abs(a).astype(np.float64) @ np.abs(w).astype(np.float64)
    eps = np.finfo(dtype).eps
    assert np.all(np.abs(out - exact) <= 2 * (K + 1) * eps * bound + np.finfo(dtype).tiny)


def test_pack_layout():
    """Panel p holds columns p*NR .. p*NR+NR-1 row after row; the last panel is zero-padded."""
    nr = numba_matmul.panel_width(np.float32)
    N = 2 * nr + 5
    w = np.arange(3 * N, dtype=np.float32).reshape(3, N)
    P = pack(w)
    assert P.shape == (3, 3, nr) and P.flags.c_contiguous
    np.testing.assert_array_equal(P[0], w[:, :nr])
    np.testing.assert_array_equal(P[1], w[:, nr:2 * nr])
    np.testing.assert_array_equal(P[2, :, :5], w[:, 2 * nr:])
    assert not P[2, :, 5:].any()
    assert numba_matmul.panel_width(np.float64) == nr // 2
    assert P.ctypes.data % 64 == 0      # each panel row one vector load


def test_rows_with_a_stride_and_a_view_of_out():
    """a and out may be row views of larger arrays (as the loops pass hs[t] and a step's buffer)."""
    rng = np.random.default_rng(1)
    big_a = rng.normal(size=(9, 50)).astype(np.float32)
    w = rng.normal(size=(20, 45)).astype(np.float32)
    big_out = np.zeros((9, 60), np.float32)
    packed_matmul(big_a[:, 5:25], pack(w), big_out[:, 10:55], scratch(np.float32))
    np.testing.assert_allclose(big_out[:, 10:55], big_a[:, 5:25] @ w, rtol=1e-5, atol=1e-5)
    assert not big_out[:, :10].any() and not big_out[:, 55:].any()


def test_mismatched_shapes_raise():
    w = np.ones((4, 5), np.float32)
    with pytest.raises(ValueError, match="shapes"):
        packed_matmul(np.ones((2, 3), np.float32), pack(w), np.empty((2, 5), np.float32), scratch(np.float32))
    with pytest.raises(ValueError, match="shapes"):
        packed_matmul(np.ones((2, 4), np.float32), pack(w), np.empty((3, 5), np.float32), scratch(np.float32))
    with pytest.raises(ValueError, match="contiguous"):
        packed_matmul(np.ones((2, 8), np.float32)[:, ::2], pack(w), np.empty((2, 5), np.float32),
                      scratch(np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("M,K,N", [(3, 5, 7), (13, 129, 385), (9, 40, 160), (1, 2, 1), (28, 17, 70)])
def test_packed_matmul_accumulates(dtype, M, K, N):
    """accumulate=True adds the product to out's values (full and partial panels)."""
    rng = np.random.default_rng(M + K + N)
    a, w = rng.normal(size=(M, K)).astype(dtype), rng.normal(size=(K, N)).astype(dtype)
    start = rng.normal(size=(M, N)).astype(dtype)
    out = start.copy()
    packed_matmul(a, pack(w), out, scratch(dtype), True)
    tol = 1e-4 if dtype == np.float32 else 1e-11
    np.testing.assert_allclose(out, start + a.astype(np.float64) @ w, rtol=tol, atol=tol * (K + 1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("accumulate", [False, True])
@pytest.mark.parametrize("M,K,N", [(1, 64, 128), (3, 5, 7), (13, 129, 385), (2, 30, 97)])
def test_reverse_panel_order_gives_the_same_bits(dtype, accumulate, M, K, N):
    """reverse=True (the loops alternate it at each step) visits the panels last to first: every
    element is the same sum in the same order, so the same bits."""
    rng = np.random.default_rng(M + K + N)
    a, w = rng.normal(size=(M, K)).astype(dtype), rng.normal(size=(K, N)).astype(dtype)
    start = rng.normal(size=(M, N)).astype(dtype)
    forward, backward = start.copy(), start.copy()
    P = pack(w)
    packed_matmul(a, P, forward, scratch(dtype), accumulate)
    packed_matmul(a, P, backward, scratch(dtype), accumulate, True)
    np.testing.assert_array_equal(backward, forward)
    np.testing.assert_allclose(forward, (start if accumulate else 0) + a.astype(np.float64) @ w,
                               rtol=1e-4, atol=1e-4 * (K + 1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("K,N,j0,n", [(5, 7, 0, 7), (37, 70, 3, 60), (64, 128, 64, 64), (129, 40, 1, 33)])
def test_pack_reads_a_transposed_matrix(dtype, K, N, j0, n):
    """A transposed view (a backward pass packs R.T), read column by column, packs to exactly what
    its contiguous copy packs to: whole and partial panels, row counts off the block size."""
    rng = np.random.default_rng(K + N)
    wt = rng.normal(size=(N, K)).astype(dtype).T          # (K, N), columns contiguous
    assert wt.flags.f_contiguous and not wt.flags.c_contiguous
    nr = numba_matmul.panel_width(dtype)
    shape = (numba_matmul.panels(n, dtype), K, nr)
    got, ref = np.full(shape, np.nan, dtype), np.full(shape, np.nan, dtype)
    numba_matmul.pack_into(wt, j0, n, got)
    numba_matmul.pack_into(np.ascontiguousarray(wt), j0, n, ref)
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(got.transpose(1, 0, 2).reshape(K, -1)[:, :n], wt[:, j0:j0 + n])


def test_stale_compiled_caches_are_dropped_together(tmp_path, monkeypatch):
    """Numba checks only the compiled function's own file: when any of the compiled files changes,
    the cached code of all of them goes (the loops would keep an old micro-kernel), once."""
    class Cache:
        _cache_path = str(tmp_path)
    monkeypatch.setattr(numba_matmul.pack_into, "_cache", Cache())
    names = ["numba_loops._step-10.py311.nbi", "numba_loops._step-10.py311.1.nbc",
             "numba_matmul.pack_into-76.py311.nbi", "numba_threads._idle-3.py311.nbi", "other.f-1.py311.nbi"]
    for name in names:
        (tmp_path / name).write_text("")
    (tmp_path / "lstmkit-kernels.sha256").write_text("an older version")
    numba_matmul._drop_stale_caches()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lstmkit-kernels.sha256", "other.f-1.py311.nbi"]
    (tmp_path / names[0]).write_text("")        # compiled by this version: kept from now on
    numba_matmul._drop_stale_caches()
    assert (tmp_path / names[0]).exists()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reverse", [False, True])
def test_a_row_alone_gives_the_same_bits_as_in_a_block(dtype, reverse):
    """A product of one row (four panels at a time) sums over k in the same order as the blocks of
    several rows: each row's result does not depend on the rows computed beside it."""
    rng = np.random.default_rng(3)
    nr = numba_matmul.panel_width(dtype)
    K, N = 70, 9 * nr + 5                   # two groups of four panels, one more, a partial one
    a, w = rng.normal(size=(13, K)).astype(dtype), rng.normal(size=(K, N)).astype(dtype)
    P = pack(w)
    block = np.empty((13, N), dtype)
    packed_matmul(a, P, block, scratch(dtype), False, reverse)
    for i in (0, 5, 12):
        row = np.full((1, N), np.nan, dtype)
        packed_matmul(a[i:i + 1], P, row, scratch(dtype), False, not reverse)
        np.testing.assert_array_equal(row[0], block[i])
