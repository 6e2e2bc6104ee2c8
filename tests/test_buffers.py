"""The kernels' reused memory: a buffer goes back into use only when nothing refers to it."""
import threading

import numpy as np
import pytest

from lstmkit import kernels
from lstmkit.kernels import buffers

from helpers import misaligned

SHAPE = (300, 300)      # 360 kB: taken from the pool


def test_memory_is_reused_once_nothing_refers_to_it():
    a = buffers.empty(SHAPE, np.float32)
    address = a.ctypes.data
    del a
    assert buffers.empty(SHAPE, np.float32).ctypes.data == address


@pytest.mark.parametrize("keep", [
    lambda a: a[1:],                   # a slice
    lambda a: a.T,                     # a transposed view
    lambda a: a.reshape(-1),
    lambda a: a.view(np.int32),
    lambda a: {"cache": (a[:, :3],)},  # a view inside a container
    lambda a: memoryview(a),
])
def test_memory_still_referred_to_is_not_handed_out(keep):
    a = buffers.empty(SHAPE, np.float32)
    a.fill(7)
    held = keep(a)
    del a
    b = buffers.empty(SHAPE, np.float32)
    b.fill(0)
    assert held is not None
    view = np.asarray(held["cache"][0] if isinstance(held, dict) else held)
    assert (view.view(np.float32) == 7).all()


def test_arrays_have_the_requested_shape_dtype_and_alignment():
    for shape, dtype in [(SHAPE, np.float32), ((5, 7, 999), np.float64), ((70000,), np.int8),
                         (np.int64(20000), np.float32)]:
        a = buffers.empty(shape, dtype)
        assert a.shape == np.empty(shape, dtype).shape and a.dtype == dtype and a.flags.c_contiguous and a.flags.writeable
        assert a.ctypes.data % buffers.ALIGN == 0


@pytest.mark.parametrize("shape", [(3, 5), SHAPE])
def test_aligned_memory_starts_on_a_cache_line_whatever_its_size(shape):
    for reuse in (True, False):
        a = buffers.aligned_empty(shape, np.float32, reuse=reuse)
        assert a.shape == shape and a.dtype == np.float32 and a.flags.c_contiguous
        assert a.ctypes.data % buffers.ALIGN == 0
    kept = buffers.aligned_empty(SHAPE, np.float32, reuse=False)
    address = kept.ctypes.data
    del kept
    assert buffers.empty(SHAPE, np.float32).ctypes.data != address     # never the pool's


def test_aligned_copies_only_what_is_not_aligned():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    b = misaligned(a)
    assert b.ctypes.data % buffers.ALIGN == 16
    assert buffers.contiguous(b, np.float32) is b
    c = buffers.contiguous(b, np.float32, aligned=True)
    assert c.ctypes.data % buffers.ALIGN == 0 and c is not b
    np.testing.assert_array_equal(c, a)
    assert buffers.contiguous(c, np.float32, aligned=True) is c
    d = buffers.contiguous(c.T, np.float64, aligned=True)
    assert d.dtype == np.float64 and d.flags.c_contiguous and d.ctypes.data % buffers.ALIGN == 0
    np.testing.assert_array_equal(d, a.T)


def test_zeros_are_zero_in_reused_memory():
    a = buffers.empty(SHAPE, np.float32)
    a.fill(np.nan)
    del a
    assert not buffers.zeros(SHAPE, np.float32).any()


def test_small_arrays_are_numpys_own():
    a = buffers.empty((4, 4), np.float32)
    assert a.base is None and a.shape == (4, 4)


def test_contiguous_copies_only_when_needed():
    a = np.arange(60000, dtype=np.float32).reshape(200, 300)
    assert buffers.contiguous(a, np.float32) is a
    for b in (a.T, a.astype(np.float64)):
        c = buffers.contiguous(b, np.float32)
        assert c.flags.c_contiguous and c.dtype == np.float32
        np.testing.assert_array_equal(c, b)


def test_idle_memory_is_capped_and_released(monkeypatch):
    buffers.release()
    monkeypatch.setattr(buffers, "KEEP_BYTES", 1 << 20)
    arrays = [buffers.empty((k * 1000 + 70000,), np.uint8) for k in range(40)]
    idle_bytes = sum(a.nbytes for a in arrays)
    assert idle_bytes > 2 << 20
    del arrays
    buffers.empty((3 << 20,), np.uint8)      # a new allocation trims the idle ones to the cap

    def idle():
        return sum(size * buffers._refcounts(entries).count(buffers._IDLE)
                   for size, entries in buffers._pool.items())
    assert idle() <= 1 << 20
    buffers.release()
    assert idle() == 0


def test_threads_never_share_a_live_buffer():
    errors = []

    def work(k):
        for _ in range(300):
            a = buffers.empty(SHAPE, np.float32)
            a.fill(k)
            b = buffers.empty(SHAPE, np.float32)
            b.fill(-k)
            if not ((a == k).all() and (b == -k).all()):
                errors.append(k)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_layers_results_survive_later_calls(cell):
    """Outputs and the cache of one call are untouched by the calls after it, which reuse memory."""
    rng = np.random.default_rng(0)
    B, T, H = 16, 12, 128
    G = 4 if cell == "lstm" else 3
    k, r = (rng.uniform(-.2, .2, (H, G * H)).astype(np.float32) for _ in range(2))
    b = rng.uniform(-.2, .2, (G * H,) if cell == "lstm" else (2, G * H)).astype(np.float32)
    x1, x2 = (rng.standard_normal((B, T, H)).astype(np.float32) for _ in range(2))
    d = rng.standard_normal((B, T, H)).astype(np.float32)

    def forward(x):
        if cell == "lstm":
            return kernels.lstm_forward(x, None, None, None, k, r, b)
        return kernels.gru_forward(x, None, None, k, r, b, reset_after=True)

    def backward(cache):
        if cell == "lstm":
            return kernels.lstm_backward(cache, d)
        return kernels.gru_backward(cache, d)

    first = forward(x1)
    outs_before = first[0].copy()
    grads_before = {n: np.array(g) for n, g in backward(first[-1]).items() if g is not None}
    for _ in range(3):
        backward(forward(x2)[-1])
    np.testing.assert_array_equal(first[0], outs_before)
    for n, g in backward(first[-1]).items():
        if g is not None:
            np.testing.assert_array_equal(g, grads_before[n])
