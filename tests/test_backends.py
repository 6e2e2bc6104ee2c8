"""The compiled (Numba) loops give the plain NumPy loops' results: forward and backward, float32 and
float64, masks, both masked-output modes, reverse, recurrent dropout, every activation.

The NumPy path is the reference (it is the one checked against finite differences and the
frameworks); float32 results may differ by float rounding only.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

from lstmkit import kernels
from lstmkit.kernels import backend

from helpers import misaligned

numba_loops = pytest.importorskip("lstmkit.kernels.numba_loops", reason="numba not installed")
from lstmkit.kernels import numba_matmul  # noqa: E402

B, T, I, U = 3, 6, 4, 5
ACTIVATION_PAIRS = [("tanh", "sigmoid"), ("relu", "hard_sigmoid"), ("linear", "tanh"),
                    ("sigmoid", "linear"), ("hard_sigmoid", "relu")]


def run_lstm(name, x, mask, states, weights, d_out, d_states, **opts):
    backend.set_backend(name)
    try:
        out, h, c, cache = kernels.lstm_forward(x, mask, *states, *weights, **opts)
        grads = kernels.lstm_backward(cache, d_out, *d_states)
    finally:
        backend.set_backend("auto")
    return {"outputs": out, "h": h, "c": c, **{"d_" + k: v for k, v in grads.items() if v is not None}}


def make_problem(rng, dtype, batch=B, masked=True, dropout=False):
    x = rng.normal(size=(batch, T, I)).astype(dtype)
    lengths = rng.integers(0, T + 1, size=batch)
    lengths[0] = T
    mask = np.arange(T)[None] < lengths[:, None] if masked else None
    weights = [(rng.normal(size=s) * 0.5).astype(dtype) for s in ((I, 4 * U), (U, 4 * U), (4 * U,))]
    states = [rng.normal(size=(batch, U)).astype(dtype) for _ in range(2)]
    rmask = ((rng.random((batch, U)) < 0.7) / 0.7).astype(dtype) if dropout else None
    d_out = rng.normal(size=(batch, T, U)).astype(dtype)
    d_states = [rng.normal(size=(batch, U)).astype(dtype) for _ in range(2)]
    return x, mask, states, weights, d_out, d_states, rmask


def assert_same(ref, got, dtype):
    tol = 2e-5 if dtype == np.float32 else 1e-12
    assert ref.keys() == got.keys()
    for key in ref:
        assert got[key].dtype == ref[key].dtype, key
        scale = max(1.0, float(np.abs(ref[key]).max()))
        np.testing.assert_allclose(got[key], ref[key], rtol=tol, atol=tol * scale, err_msg=key)


@pytest.fixture(params=["whole_loop", "packed", "stepwise", "stepwise_transposed", "stepwise_pooled",
                        "threads_units", "threads_units_3", "threads_batch", "threads_units_unfolded"])
def loop_kind(request, monkeypatch):
    """The compiled path runs the whole loop compiled (small shapes, its products too; or, from a batch
    size on, with the recurrent matrix packed once, on one thread or split across threads by units
    or by rows) or steps from Python (large), computing the backward's recurrent product as d @ W.T
    or as (W @ d.T).T. The LSTM's split loops compute the input projections step by step when the
    weights are small (always here), or before the loop ("packed" and "unfolded"). "stepwise_pooled":
    every product split across 2 of lstmkit's threads, as while OpenBLAS runs on one thread."""
    packed = request.param == "packed" or request.param.startswith("threads")
    monkeypatch.setattr(numba_loops, "PACKED", packed)
    for name in ("PACKED_MIN_BATCH", "PACKED_MIN_BATCH_BACKWARD", "PACKED_MIN_STEPS"):
        monkeypatch.setattr(numba_loops, name, 1 if packed else 1 << 30)
    monkeypatch.setattr(numba_loops, "PACKED_MAX_BATCH", 1 << 30)
    monkeypatch.setattr(numba_loops, "FOLD_BYTES", -1 if request.param in ("packed", "threads_units_unfolded")
                        else numba_loops.FOLD_BYTES)
    threads = 3 if request.param.endswith("_3") else 2 if request.param.startswith("threads") else 1
    if request.param == "stepwise_pooled":
        threads = 2
        monkeypatch.setattr(backend, "own_products", lambda: True)
        monkeypatch.setattr(backend, "PRODUCT_MIN_WORK", 0)
    previous = backend.set_num_threads(threads)
    request.addfinalizer(lambda: backend.set_num_threads(previous))
    if request.param.startswith("threads"):
        monkeypatch.setattr(backend, "PARALLEL_MIN_WORK", 0)       # split even these tiny problems
        monkeypatch.setattr(numba_loops, "_unit_align", lambda dtype: 1)
        monkeypatch.setattr(numba_loops, "SPLIT", request.param.split("_")[1])
    if request.param.startswith("stepwise"):
        monkeypatch.setattr(numba_loops, "SMALL", 0)
    monkeypatch.setattr(numba_loops, "_transposed_product",
                        lambda B, U, T: request.param == "stepwise_transposed")
    return request.param


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("mode", ["zero", "repeat"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_lstm_numba_equals_numpy(dtype, masked, mode, reverse, loop_kind):
    rng = np.random.default_rng(0)
    x, mask, states, weights, d_out, d_states, _ = make_problem(rng, dtype, masked=masked)
    opts = dict(reverse=reverse, masked_output_mode=mode)
    ref = run_lstm("numpy", x, mask, states, weights, d_out, d_states, **opts)
    got = run_lstm("numba", x, mask, states, weights, d_out, d_states, **opts)
    assert_same(ref, got, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation,recurrent_activation", ACTIVATION_PAIRS)
def test_lstm_activations_and_dropout(dtype, activation, recurrent_activation, loop_kind):
    rng = np.random.default_rng(1)
    x, mask, states, weights, d_out, d_states, rmask = make_problem(rng, dtype, dropout=True)
    opts = dict(activation=activation, recurrent_activation=recurrent_activation,
                recurrent_dropout_mask=rmask, masked_output_mode="repeat")
    ref = run_lstm("numpy", x, mask, states, weights, d_out, d_states, **opts)
    got = run_lstm("numba", x, mask, states, weights, d_out, d_states, **opts)
    assert_same(ref, got, dtype)


@pytest.mark.parametrize("name", ["numpy", "numba"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_inference_gives_the_forward_results_and_no_cache(name, cell, loop_kind):
    """inference=True keeps two steps of state instead of all: the same outputs and final state."""
    rng = np.random.default_rng(7)
    x, mask, states, weights, _, _, rmask = make_problem(rng, np.float32, dropout=True)
    if cell == "gru":
        weights = [(rng.normal(size=s) * 0.5).astype(np.float32) for s in ((I, 3 * U), (U, 3 * U), (2, 3 * U))]
    backend.set_backend(name)
    try:
        for mode in ("zero", "repeat"):
            opts = dict(masked_output_mode=mode, recurrent_dropout_mask=rmask, reverse=mode == "zero")
            if cell == "lstm":
                ref = kernels.lstm_forward(x, mask, *states, *weights, **opts)
                got = kernels.lstm_forward(x, mask, *states, *weights, inference=True, **opts)
            else:
                ref = kernels.gru_forward(x, mask, states[0], *weights, **opts)
                got = kernels.gru_forward(x, mask, states[0], *weights, inference=True, **opts)
            assert got[-1] is None
            for r, g in zip(ref[:-1], got[:-1]):
                np.testing.assert_array_equal(g, r)
    finally:
        backend.set_backend("auto")


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_whole_loop_gives_the_same_bits_with_its_matrix_anywhere(cell, monkeypatch):
    """The whole loop compiled copies a recurrent matrix that does not start on 32 bytes to one that
    does (from ALIGN_MIN_STEPS steps): only where the memory lies changes, not one bit."""
    rng = np.random.default_rng(11)
    x, mask, states, weights, d_out, d_states, _ = make_problem(rng, np.float32)
    if cell == "gru":
        weights = [(rng.normal(size=s) * 0.5).astype(np.float32) for s in ((I, 3 * U), (U, 3 * U), (2, 3 * U))]
    weights[1] = misaligned(weights[1])
    monkeypatch.setattr(numba_loops, "PACKED", False)      # the whole loop at any batch size
    results = []
    for min_steps in (1 << 30, 1):
        monkeypatch.setattr(numba_loops, "ALIGN_MIN_STEPS", min_steps)
        if cell == "lstm":
            results.append(run_lstm("numba", x, mask, states, weights, d_out, d_states))
        else:
            out, h, cache = kernels.gru_forward(x, mask, states[0], *weights)
            grads = kernels.gru_backward(cache, d_out, d_states[0])
            results.append({"outputs": out, "h": h, **{k: v for k, v in grads.items() if v is not None}})
    assert results[0].keys() == results[1].keys()
    for key in results[0]:
        np.testing.assert_array_equal(results[1][key], results[0][key], err_msg=key)


@pytest.mark.parametrize("batch", [1, 2])
def test_lstm_no_state_no_bias_no_gradients(batch):
    """None for h0/c0/bias and for the incoming gradients; batch 1 uses a matrix-vector product."""
    rng = np.random.default_rng(2)
    x, mask, _, weights, _, _, _ = make_problem(rng, np.float32, batch=batch)
    weights[2] = None
    res = {}
    for name in ["numpy", "numba"]:
        backend.set_backend(name)
        out, h, c, cache = kernels.lstm_forward(x, mask, None, None, *weights)
        g = kernels.lstm_backward(cache, None, h, None)
        res[name] = {"outputs": out, "h": h, "c": c, **{k: v for k, v in g.items() if v is not None}}
    backend.set_backend("auto")
    assert g["bias"] is None
    assert_same(res["numpy"], res["numba"], np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threads", [1, 2])
def test_packed_loops_with_whole_panels(dtype, threads, monkeypatch):
    """Units a multiple of the panel width, not split by units: the LSTM's and GRU's loops multiply
    all the gate blocks at once (one product over their panels) instead of block by block."""
    monkeypatch.setattr(backend, "PARALLEL_MIN_WORK", 0)
    monkeypatch.setattr(numba_loops, "SPLIT", "batch")
    previous = backend.set_num_threads(threads)
    try:
        width = numba_matmul.panel_width(dtype)
        units, batch = 2 * width, 4
        assert numba_loops._parts(batch, T, units, 4 * units, dtype)[1][0][2:] == (0, units)
        rng = np.random.default_rng(8)
        x = rng.normal(size=(batch, T, I)).astype(dtype)
        weights = [(rng.normal(size=s) * 0.3).astype(dtype)
                   for s in ((I, 4 * units), (units, 4 * units), (4 * units,))]
        states = [rng.normal(size=(batch, units)).astype(dtype) for _ in range(2)]
        d_out = rng.normal(size=(batch, T, units)).astype(dtype)
        d_states = [rng.normal(size=(batch, units)).astype(dtype) for _ in range(2)]
        ref = run_lstm("numpy", x, None, states, weights, d_out, d_states)
        got = run_lstm("numba", x, None, states, weights, d_out, d_states)
        assert_same(ref, got, dtype)
        backend.set_backend("numba")
        try:
            out = kernels.lstm_forward(x, None, *states, *weights, inference=True)[0]
        finally:
            backend.set_backend("auto")
        np.testing.assert_array_equal(out, got["outputs"])
        gru_weights = [(rng.normal(size=s) * 0.3).astype(dtype)
                       for s in ((I, 3 * units), (units, 3 * units), (2, 3 * units))]
        ref = run_gru("numpy", x, None, states[0], gru_weights, d_out, d_states[0])
        got = run_gru("numba", x, None, states[0], gru_weights, d_out, d_states[0])
        assert_same(ref, got, dtype)
    finally:
        backend.set_num_threads(previous)


def test_caches_are_interchangeable():
    """A forward on one backend and the backward on the other give the same gradients."""
    rng = np.random.default_rng(3)
    x, mask, states, weights, d_out, d_states, _ = make_problem(rng, np.float64)
    backend.set_backend("numba")
    cache = kernels.lstm_forward(x, mask, *states, *weights)[-1]
    backend.set_backend("numpy")
    mixed = kernels.lstm_backward(cache, d_out, *d_states)
    pure = kernels.lstm_backward(kernels.lstm_forward(x, mask, *states, *weights)[-1], d_out, *d_states)
    backend.set_backend("auto")
    for key in pure:
        if pure[key] is not None:
            np.testing.assert_allclose(mixed[key], pure[key], rtol=1e-12, atol=1e-12, err_msg=key)


def test_float32_activations_are_accurate():
    """The compiled float32 tanh and sigmoid stay within 3 ulp of the exact (float64) values (within
    1e-38 where the exact value is subnormal: sigmoid(x < -87))."""
    x = np.concatenate([np.linspace(-20, 20, 200001), np.geomspace(1e-30, 90, 5000),
                        -np.geomspace(1e-30, 90, 5000), [0.0, 200.0, -200.0]]).astype(np.float32)
    for code, exact in [(0, np.tanh(x.astype(np.float64))),
                        (1, 1 / (1 + np.exp(-x.astype(np.float64))))]:
        y = x.copy()
        numba_loops._activate(y, code)
        ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
        err = np.abs(y.astype(np.float64) - exact)
        assert np.all(err <= 3 * ulp + 1e-38), (code, float((err / ulp).max()))


@pytest.mark.parametrize("shape", [(32, 2000), (3, 5, 17), (4, 1), (2, 15), (0, 7)])
def test_float32_log_softmax_is_accurate(shape):
    """The compiled float32 log-softmax (rows of any width, also not a multiple of its 16 lanes and
    non-contiguous input) is within 2e-6 plus 2-3 ulp of the exact values, and gives NumPy's
    infinities and NaNs."""
    rng = np.random.default_rng(1)
    z = (rng.normal(size=shape) * 5).astype(np.float32)
    if z.size and z.shape[-1] > 3:
        z.reshape(-1, z.shape[-1])[0, 2] = -np.inf
    if z.ndim == 3:
        z[1, 1, 0] = np.nan
    z64 = z.astype(np.float64)
    with np.errstate(invalid="ignore"):
        shifted = z64 - z64.max(axis=-1, keepdims=True)
        exact = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))     # the formula
    for x, ref in [(z, exact), (z[..., ::-1], exact[..., ::-1])]:
        got = kernels.activations.log_softmax(x)
        assert got.dtype == np.float32 and got.shape == x.shape
        np.testing.assert_allclose(got, ref, rtol=3e-7, atol=2e-6)   # equal infinities and NaNs too
    with np.errstate(invalid="ignore"):
        backend.set_backend("numpy")
        try:
            plain = kernels.activations.log_softmax(z)
        finally:
            backend.set_backend("auto")
    np.testing.assert_array_equal(np.isnan(plain), np.isnan(got[..., ::-1]))


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_float32_crossentropy_gradient_equals_numpy(smoothing):
    """The compiled gradient of the sparse cross-entropy (from logits, float32) is NumPy's to float
    rounding, masked positions and every reduction included."""
    from lstmkit.kernels import losses
    rng = np.random.default_rng(4)
    z = (rng.normal(size=(6, 5, 37)) * 3).astype(np.float32)
    labels = rng.integers(0, 37, size=(6, 5))
    mask = rng.random((6, 5)) < 0.7
    for reduction in ("sum_over_batch_size", "per_sequence", "sum", "none"):
        grads = {}
        for name in ("numba", "numpy"):
            backend.set_backend(name)
            try:
                _, cache = losses.sparse_categorical_crossentropy(
                    z, labels, from_logits=True, label_smoothing=smoothing, mask=mask, reduction=reduction)
                grads[name] = losses.sparse_categorical_crossentropy_backward(cache)
            finally:
                backend.set_backend("auto")
        assert grads["numba"].dtype == np.float32 and grads["numba"].shape == z.shape
        assert not grads["numba"][~mask].any()
        np.testing.assert_allclose(grads["numba"], grads["numpy"], rtol=1e-5, atol=1e-7, err_msg=reduction)


@pytest.mark.parametrize("threads", [2, 3])
def test_row_passes_split_across_threads_equal_one_call(monkeypatch, threads):
    """While lstmkit's threads do the products, the log-softmax and the cross-entropy's gradient of a
    large array run split by rows across them: the same values, bit for bit, as one call."""
    from lstmkit.kernels import losses
    from lstmkit.kernels import numba_threads
    rng = np.random.default_rng(5)
    z = (rng.normal(size=(7, 5, 41)) * 3).astype(np.float32)
    labels = rng.integers(0, 41, size=(7, 5))
    mask = rng.random((7, 5)) < 0.7

    def run():
        logp = kernels.activations.log_softmax(z)
        _, cache = losses.sparse_categorical_crossentropy(z, labels, from_logits=True, label_smoothing=0.1,
                                                          mask=mask)
        return logp, losses.sparse_categorical_crossentropy_backward(cache)
    whole = run()
    calls = []
    real = numba_threads.run_tasks
    monkeypatch.setattr(numba_threads, "run_tasks", lambda tasks, sync=None: (calls.append(len(tasks)),
                                                                              real(tasks, sync)))
    monkeypatch.setattr(backend, "own_products", lambda: True)
    monkeypatch.setattr(backend, "ROWS_MIN_SIZE", 0)
    previous = backend.set_num_threads(threads)
    try:
        split = run()
    finally:
        backend.set_num_threads(previous)
    assert calls.count(threads) >= 3                # log-softmax twice (the loss's too), the gradient
    for a, b in zip(whole, split):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_embedding_gradient_compiled_equals_add_at(dtype):
    """The compiled scatter-add of the embedding's backward is NumPy's add.at, bit for bit: repeated
    ids added in order, into a given gradient too; ids out of range raise instead of writing."""
    rng = np.random.default_rng(7)
    ids = rng.integers(0, 9, size=(6, 11))               # many repeats
    d_y = rng.normal(size=(6, 11, 5)).astype(dtype)
    start = rng.normal(size=(9, 5)).astype(dtype)
    expected = start.copy()
    np.add.at(expected, ids.reshape(-1), d_y.reshape(-1, 5))
    got = kernels.embedding_backward((ids, (9, 5)), d_y, out=start.copy())
    np.testing.assert_array_equal(got, expected)
    fresh = np.zeros((9, 5), dtype)
    np.add.at(fresh, ids.reshape(-1), d_y.reshape(-1, 5))
    np.testing.assert_array_equal(kernels.embedding_backward((ids, (9, 5)), d_y), fresh)
    with pytest.raises(IndexError, match="ids"):
        kernels.embedding_backward((np.array([[0, 9]]), (9, 5)), d_y[:1, :2])
    fortran = np.asfortranarray(start)                   # not C-contiguous: NumPy's add.at
    np.testing.assert_array_equal(kernels.embedding_backward((ids, (9, 5)), d_y, out=fortran), expected)


def test_split_plans_cover_every_row_and_unit_once(monkeypatch):
    """Each (row, unit) of a step belongs to exactly one thread, whatever the split."""
    monkeypatch.setattr(backend, "PARALLEL_MIN_WORK", 0)
    previous = backend.set_num_threads(3)
    try:
        for B, U in [(1, 512), (7, 100), (64, 128), (2, 40)]:
            waiting, parts = numba_loops._parts(B, 10, U, 4 * U, np.float32)
            owner = np.zeros((B, U), int)
            for b0, b1, u0, u1 in parts:
                owner[b0:b1, u0:u1] += 1
            assert (owner == 1).all(), (B, U, parts)
            assert waiting in (1, len(parts))
    finally:
        backend.set_num_threads(previous)


def test_a_failing_thread_releases_the_others():
    """An error in one part of a split loop is raised, not left waiting at a barrier."""
    from lstmkit.kernels import numba_threads

    def failing(sync):
        raise RuntimeError("part 1 failed")

    def waiting(sync):
        f32 = np.float32
        gates = np.zeros((3, 1, 16), f32)
        none = np.zeros((0, 0), f32)
        w = np.zeros((4, 16), f32)
        panels = numba_loops._panels(4, 0, 4, 4, f32)
        numba_loops._lstm_forward_part(
            sync, 0, 2, 0, 1, 0, 4, True, np.zeros((3, 1, 4), f32), w, (panels.copy(), -1), False,
            np.zeros(0, f32), w, (panels, -1), numba_matmul.scratch(f32), none, none, 0, 0, 1, gates,
            np.zeros((4, 1, 4), f32), np.zeros((4, 1, 4), f32), np.zeros((3, 1, 4), f32),
            np.zeros((3, 1, 4), f32))

    with pytest.raises(RuntimeError, match="part 1 failed"):
        numba_threads.run([waiting, failing])


def test_split_products_equal_numpy():
    """Rows (or columns) split across threads, transposed views as the kernels pass them (x.T @ dz)."""
    from lstmkit.kernels import numba_threads as threads
    rng = np.random.default_rng(6)
    a, b, c = rng.normal(size=(37, 11)), rng.normal(size=(11, 5)), rng.normal(size=(37, 6))
    for n in (1, 2, 3, 40):
        np.testing.assert_allclose(threads.matmuls([(a, b)], n)[0], a @ b, rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(threads.matmuls([(a.T, c)], n)[0], a.T @ c, rtol=1e-13, atol=1e-13)
    wide = rng.normal(size=(11, 300))           # few rows, many columns: b's columns split
    for n in (2, 3):
        np.testing.assert_allclose(threads.matmuls([(a[:10], wide)], n)[0], a[:10] @ wide,
                                   rtol=1e-13, atol=1e-13)
    x, dz = rng.normal(size=(50, 150)), rng.normal(size=(50, 400))   # a weight gradient: x.T @ dz,
    for n in (2, 3):                                                  # b wider than a is tall
        np.testing.assert_allclose(threads.matmuls([(x.T, dz)], n)[0], x.T @ dz, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("threaded", [None, False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_products_over_one_term_are_exact(dtype, threaded):
    """A product over a single term (a weight gradient of one step of one sequence: x.T @ dz with
    K = 1) is one multiplication per element, as in NumPy's product; the others beside it as usual."""
    rng = np.random.default_rng(12)
    a, b = rng.normal(size=(33, 1)).astype(dtype), rng.normal(size=(1, 70)).astype(dtype)
    c, d = rng.normal(size=(4, 6)).astype(dtype), rng.normal(size=(6, 5)).astype(dtype)
    outer, other = backend.matmuls([(a, b), (c, d)], threaded)
    np.testing.assert_array_equal(outer, a @ b)
    np.testing.assert_allclose(other, c @ d, rtol=1e-6)
    out = np.full((33, 70), np.nan, dtype)
    assert backend.matmul(a, b, threaded, out) is out
    np.testing.assert_array_equal(out, a @ b)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("steps", [1, 2])
@pytest.mark.parametrize("batch", [1, 3])
def test_backward_over_few_steps_equals_numpy(cell, steps, batch):
    """A backward of fewer steps than a forward packs for (as the compiled path plans it, unpatched)
    gives the NumPy loop's gradients."""
    rng = np.random.default_rng(13)
    G = 4 if cell == "lstm" else 3
    x = rng.normal(size=(batch, steps, I)).astype(np.float32)
    shapes = ((I, G * U), (U, G * U), (G * U,) if cell == "lstm" else (2, G * U))
    weights = [(rng.normal(size=s) * 0.5).astype(np.float32) for s in shapes]
    h0 = rng.normal(size=(batch, U)).astype(np.float32)
    d_out = rng.normal(size=(batch, steps, U)).astype(np.float32)
    results = {}
    for name in ("numpy", "numba"):
        backend.set_backend(name)
        try:
            if cell == "lstm":
                cache = kernels.lstm_forward(x, None, h0, h0, *weights)[-1]
                grads = kernels.lstm_backward(cache, d_out, h0, h0)
            else:
                cache = kernels.gru_forward(x, None, h0, *weights)[-1]
                grads = kernels.gru_backward(cache, d_out, h0)
        finally:
            backend.set_backend("auto")
        results[name] = {k: v for k, v in grads.items() if v is not None}
    assert_same(results["numpy"], results["numba"], np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_products_by_constant_weights_run_packed(dtype, monkeypatch):
    """Inside ``constant_weights`` the products by those matrices (the very arrays or their
    transposes, up to PACKED_MAX_ROWS rows) run packed, each packed once, on 1-3 threads; the
    others as before. Results equal NumPy's to float rounding."""
    import threading
    packed = []
    real_pack = numba_matmul.pack

    def name(p):
        return next(k + t for k, m in (("w", w), ("v", v)) for t, q in (("", m), (".T", m.T))
                    if p.base is q.base and p.shape == q.shape and p.strides == q.strides)
    monkeypatch.setattr(numba_matmul, "pack", lambda p: packed.append(name(p)) or real_pack(p))
    monkeypatch.setattr(backend, "PRODUCT_MIN_WORK", 0)              # split even these small ones
    rng = np.random.default_rng(3)
    w, v = rng.normal(size=(40, 70)).astype(dtype), rng.normal(size=(70, 33)).astype(dtype)
    a = rng.normal(size=(9, 40)).astype(dtype)
    strided = rng.normal(size=(9, 80)).astype(dtype)[:, ::2]       # columns not contiguous
    tol = dict(rtol=1e-5, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    previous = backend.get_num_threads()
    try:
        for n in (1, 2, 3):
            backend.set_num_threads(n)
            packed.clear()
            with backend.constant_weights([w, v]):
                other = []
                worker = threading.Thread(target=lambda: other.append(backend.matmul(a @ w, v)))
                worker.start()
                worker.join()
                y, z, c, s = backend.matmuls([(a, w), (a @ w, v), (a, w.copy()), (strided, w)])
                y2, view = backend.matmul(a, w), backend.matmul(a, w[:, :])
                big = backend.matmul(np.ones((backend.PACKED_MAX_ROWS + 1, 40), dtype), w)
                d = a @ w
                t1, t2, flipped = (backend.matmul(d, q) for q in (w.T, w.T, w[:, ::-1].T))
                assert backend.is_constant(w) and not backend.is_constant(w.T)
            assert not backend.is_constant(w)
            for got, ref in ((y, a @ w), (z, (a @ w) @ v), (c, a @ w), (s, strided @ w), (y2, a @ w),
                             (view, a @ w), (other[0], (a @ w) @ v), (t1, d @ w.T), (t2, d @ w.T),
                             (flipped, d @ w[:, ::-1].T),
                             (big, np.ones((backend.PACKED_MAX_ROWS + 1, 40), dtype) @ w)):
                np.testing.assert_allclose(got, ref, **tol)
            if numba_loops.PACKED:      # once each; not the copy, the view, another thread's product
                assert packed == ["w", "v", "w.T"]
            else:
                assert packed == []
            with backend.constant_weights([w]):
                # the other products too leave OpenBLAS's threads idle (they would spin)
                assert backend.own_products() == (numba_loops.PACKED and n > 1)
                with backend.constant_weights([v]):                  # nested: both
                    backend.matmuls([(a, w), (a @ w, v)])
                backend.matmul(a @ w, v)                             # the inner block's are gone
            backend.matmul(a, w)
            assert len(packed) == (5 if numba_loops.PACKED else 0)
    finally:
        backend.set_num_threads(previous)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("split", ["batch", "units"])
@pytest.mark.parametrize("cell", ["lstm", "lstm_unfolded", "gru"])
def test_split_loops_read_constant_weights_packed_once(cell, split, dtype, monkeypatch):
    """A loop split across threads inside a ``constant_weights`` block reads its recurrent matrix
    (and the LSTM's folded input matrix) from the block's packing, forward and backward: each
    matrix packed once for all the calls made in the object's blocks. The results are those of
    the threads' own packing (the products outside the loop to float rounding)."""
    if not numba_loops.PACKED:
        pytest.skip("the packed loops need AVX-512")
    monkeypatch.setattr(backend, "PARALLEL_MIN_WORK", 0)
    monkeypatch.setattr(numba_loops, "SPLIT", split)
    if cell == "lstm_unfolded":
        monkeypatch.setattr(numba_loops, "FOLD_BYTES", -1)
    packed = []
    real_pack = numba_matmul.pack
    rng = np.random.default_rng(11)
    G, Bn, Tn, In, Un = (3 if cell == "gru" else 4), 4, 6, 8, 2 * numba_matmul.panel_width(dtype)
    k, r = (rng.normal(size=s).astype(dtype) * 0.3 for s in ((In, G * Un), (Un, G * Un)))
    bias = rng.normal(size=(2, G * Un) if cell == "gru" else (G * Un,)).astype(dtype) * 0.3
    x = rng.normal(size=(Bn, Tn, In)).astype(dtype)

    def name(p):
        return next(n + t for n, m in (("k", k), ("r", r)) for t, q in (("", m), (".T", m.T))
                    if p.base is q.base and p.shape == q.shape and p.strides == q.strides)
    monkeypatch.setattr(numba_matmul, "pack", lambda p: packed.append(name(p)) or real_pack(p))

    def run():
        if cell == "gru":
            out, h, cache = kernels.gru_forward(x, None, None, k, r, bias, reset_after=True)
            grads = kernels.gru_backward(cache, np.cos(out), None)
        else:
            out, h, c, cache = kernels.lstm_forward(x, None, None, None, k, r, bias)
            grads = kernels.lstm_backward(cache, np.cos(out), None, None)
        return [out, h, grads["x"], grads["kernel"], grads["recurrent_kernel"]]

    previous = backend.set_num_threads(2)
    backend.set_backend("numba")
    try:
        assert len(numba_loops._parts(Bn, Tn, Un, G * Un, dtype)[1]) == 2
        ref = run()
        assert packed == []
        frozen = kernels.constant_weights([k, r])
        for _ in range(2):
            with frozen:
                got = run()
            for a, b in zip(got, ref):
                np.testing.assert_allclose(a, b, **(dict(rtol=1e-5, atol=1e-5) if dtype == np.float32
                                                    else dict(rtol=1e-12, atol=1e-12)))
        assert sorted(packed) == ["k", "k.T", "r", "r.T"]
    finally:
        backend.set_num_threads(previous)


def test_inference_with_many_rows_a_thread_folds_input_projections(monkeypatch):
    """An inference pass with large weights whose threads have SPLIT_MIN_ROWS rows each or more
    computes the input projections step by step in the loop: no product of T * B rows before it.
    With fewer rows, or in training, the projections of every step come first. The results are the
    NumPy loop's."""
    if not numba_loops.PACKED:
        pytest.skip("the packed loops need AVX-512")
    rng = np.random.default_rng(8)
    Tn, In, Un = 5, 24, 16     # weights larger than FOLD_BYTES (set to 0)
    k, r = (rng.normal(size=(n, 4 * Un)).astype(np.float32) * 0.3 for n in (In, Un))
    rows = []
    real = backend.matmuls
    monkeypatch.setattr(backend, "matmuls", lambda pairs, *a, **kw: rows.extend(
        p[0].shape[0] for p in pairs if p[1] is k) or real(pairs, *a, **kw))     # x @ kernel
    monkeypatch.setattr(numba_loops, "FOLD_BYTES", 0)
    previous = backend.set_num_threads(2)
    try:
        for Bn, inference, folds in ((2 * numba_loops.SPLIT_MIN_ROWS, True, True),
                                     (2 * numba_loops.SPLIT_MIN_ROWS, False, False),
                                     (2 * numba_loops.SPLIT_MIN_ROWS - 2, True, False)):
            x = rng.normal(size=(Bn, Tn, In)).astype(np.float32)
            backend.set_backend("numpy")
            ref = kernels.lstm_forward(x, None, None, None, k, r, None, inference=inference)[0]
            backend.set_backend("numba")
            rows.clear()
            got = kernels.lstm_forward(x, None, None, None, k, r, None, inference=inference)[0]
            assert (Tn * Bn in rows) == (not folds), (Bn, inference)
            np.testing.assert_allclose(got, ref, rtol=2e-5, atol=2e-5)
    finally:
        backend.set_backend("auto")
        backend.set_num_threads(previous)


@pytest.mark.parametrize("cell,split", [("lstm", "units"), ("gru", "units"), ("gru", "batch")])
@pytest.mark.parametrize("inference", [False, True], ids=["train", "infer"])
def test_split_loops_project_their_own_inputs(cell, split, inference, monkeypatch):
    """A loop split by units (the LSTM's weights larger than FOLD_BYTES), or a GRU's split by rows
    with small weights, computes the input projections in its threads, each those of its part for
    every step before its loop (by blocks of rows: split by units here 32 rows of 2048 inputs, and
    4), with no product of T * B rows before it. Outputs, states and gradients are the NumPy
    loop's."""
    from lstmkit.kernels import numba_threads
    if not numba_loops.PACKED:
        pytest.skip("the packed loops need AVX-512")
    rng = np.random.default_rng(9)
    G = 4 if cell == "lstm" else 3
    Bn, Tn, In, Un = 3, 12, (2048 if split == "units" else 24), 2 * numba_matmul.panel_width(np.float32)
    assert split == "batch" or numba_loops.PROJECT_BYTES // (In * 4) < Bn * Tn
    x = rng.normal(size=(Bn, Tn, In)).astype(np.float32)
    k, r = (rng.normal(size=(n, G * Un)).astype(np.float32) * 0.3 * np.sqrt(24 / max(n, 24), dtype=np.float32)
            for n in (In, Un))
    bias = rng.normal(size=(2, G * Un) if cell == "gru" else (G * Un,)).astype(np.float32) * 0.3
    rows, projects = [], []
    real, real_run = backend.matmuls, numba_threads.run
    monkeypatch.setattr(backend, "matmuls", lambda pairs, *a, **kw: rows.extend(
        p[0].shape[0] for p in pairs if p[1] is k) or real(pairs, *a, **kw))     # x @ kernel
    monkeypatch.setattr(numba_threads, "run", lambda parts: projects.extend(
        p.keywords.get("project", p.keywords.get("W") is not None and p.keywords["W"].size > 0)
        for p in parts) or real_run(parts))
    if split == "units":
        monkeypatch.setattr(numba_loops, "FOLD_BYTES", 0)
    monkeypatch.setattr(numba_loops, "SPLIT", split)
    monkeypatch.setattr(backend, "PARALLEL_MIN_WORK", 0)

    def run():
        if cell == "gru":
            out, h, cache = kernels.gru_forward(x, None, None, k, r, bias, inference=inference)
            grads = {} if inference else kernels.gru_backward(cache, np.cos(out), None)
            return [out, h] + [grads[n] for n in grads if n in ("x", "kernel", "recurrent_kernel")]
        out, h, c, cache = kernels.lstm_forward(x, None, None, None, k, r, bias, inference=inference)
        grads = {} if inference else kernels.lstm_backward(cache, np.cos(out))
        return [out, h, c] + [grads[n] for n in grads if n in ("x", "kernel", "recurrent_kernel")]

    previous = backend.set_num_threads(2)
    try:
        backend.set_backend("numpy")
        ref = run()
        backend.set_backend("numba")
        rows.clear()
        got = run()
        assert Tn * Bn not in rows
        assert len(projects) >= 2 and all(projects[:2])
        for a, b in zip(got, ref):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5 * max(1.0, float(np.abs(b).max())))
    finally:
        backend.set_backend("auto")
        backend.set_num_threads(previous)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_split_training_forward_runs_its_backwards_products_on_the_same_threads(cell, monkeypatch):
    """A training forward with small weights split across the threads (4 rows a thread or more)
    makes its backward's products run on lstmkit's threads too (``threaded``), even where the
    backward's own loop runs on one: OpenBLAS's threads would share the cores with lstmkit's."""
    from lstmkit.kernels import numba_threads
    if not numba_loops.PACKED:
        pytest.skip("the packed loops need AVX-512")
    rng = np.random.default_rng(10)
    G, Bn, Tn, In, Un = (4 if cell == "lstm" else 3), 8, 6, 8, 16
    x = rng.normal(size=(Bn, Tn, In)).astype(np.float32)
    k, r = (rng.normal(size=(n, G * Un)).astype(np.float32) * 0.3 for n in (In, Un))
    monkeypatch.setattr(backend, "PARALLEL_MIN_WORK", 2 * Bn * Un * G * Un * Tn)   # only the folding rule
    flags, parts = [], []
    real, real_run = backend.matmuls, numba_threads.run
    monkeypatch.setattr(backend, "matmuls", lambda pairs, threaded=None, *a: flags.append(threaded)
                        or real(pairs, threaded, *a))
    monkeypatch.setattr(numba_threads, "run", lambda p: parts.append(len(p)) or real_run(p))
    previous = backend.set_num_threads(2)
    backend.set_backend("numba")
    try:
        if cell == "lstm":
            out, _, _, cache = kernels.lstm_forward(x, None, None, None, k, r, None)
            flags.clear()
            kernels.lstm_backward(cache, np.cos(out))
        else:
            out, _, cache = kernels.gru_forward(x, None, None, k, r, None)
            flags.clear()
            kernels.gru_backward(cache, np.cos(out))
        assert parts[0] == 2                     # the forward, split
        assert flags and all(flags)
    finally:
        backend.set_backend("auto")
        backend.set_num_threads(previous)


def test_num_threads_setting():
    previous = kernels.set_num_threads(3)
    try:
        assert kernels.get_num_threads() == 3
        for bad in (0, -1, 1.5, True, "2"):
            with pytest.raises(ValueError, match="set_num_threads: n must be an integer >= 1"):
                kernels.set_num_threads(bad)
    finally:
        kernels.set_num_threads(previous)
    res = run_python("from lstmkit import kernels; print(kernels.get_num_threads())", LSTMKIT_NUM_THREADS="5")
    assert res.stdout.split() == ["5"], res.stderr
    res = run_python("from lstmkit import kernels; kernels.get_num_threads()", LSTMKIT_NUM_THREADS="two")
    assert res.returncode != 0 and "LSTMKIT_NUM_THREADS: expected an integer >= 1, got 'two'" in res.stderr


def test_set_backend_validates_and_reports():
    with pytest.raises(ValueError, match="backend: expected one of auto, numba, numpy, got 'fast'"):
        kernels.set_backend("fast")
    previous = kernels.set_backend("numpy")
    try:
        assert kernels.get_backend() == "numpy"
        kernels.set_backend("numba")
        assert kernels.get_backend() == "numba"
        kernels.set_backend("auto")
        assert kernels.get_backend() == "numba"       # numba is installed here
    finally:
        kernels.set_backend(previous)


def run_python(code, **env):
    full_env = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env)


def test_compiled_loops_run_without_scipy():
    """``lstmkit[fast]`` installs Numba, not SciPy, and Numba's own matrix products call SciPy's BLAS:
    the compiled loops' products must not (the whole-loop path, B = 1, used to crash here)."""
    code = """
import sys
sys.modules["scipy"] = None                     # import scipy now fails, as where it is missing
import numpy as np
from lstmkit import kernels
from lstmkit.kernels import backend, numba_loops
rng = np.random.default_rng(0)
x = rng.normal(size=(1, 3, 4)).astype(np.float32)
cells = [(kernels.lstm_forward, kernels.lstm_backward, 20, (20,), 2),
         (kernels.gru_forward, kernels.gru_backward, 15, (2, 15), 1)]
for forward, backward, G, bias_shape, n_states in cells:
    w = [(rng.normal(size=s) * 0.5).astype(np.float32) for s in ((4, G), (5, G), bias_shape)]
    assert numba_loops._parts(1, 3, 5, G, np.float32) is None and numba_loops._whole_loop(1, 5, G)
    results = []
    for name in ("numba", "numpy"):
        backend.set_backend(name)
        out = forward(x, None, *[None] * n_states, *w)
        grads = backward(out[-1], np.ones_like(out[0]))
        results.append([out[0], grads["x"], grads["recurrent_kernel"]])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)
print("ok", "scipy" in sys.modules and sys.modules["scipy"] is not None)
"""
    res = run_python(code)
    assert res.returncode == 0 and res.stdout.split() == ["ok", "False"], res.stderr[-3000:]


def test_environment_variable_selects_backend_and_import_stays_light():
    code = ("import sys, lstmkit; from lstmkit import kernels; "
            "print('numba' in sys.modules, kernels.get_backend())")
    res = run_python(code, LSTMKIT_BACKEND="numpy")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["False", "numpy"]
    res = run_python("from lstmkit import kernels; kernels.get_backend()", LSTMKIT_BACKEND="fastest")
    assert res.returncode != 0 and "LSTMKIT_BACKEND: expected one of auto, numba, numpy" in res.stderr


def run_gru(name, x, mask, h0, weights, d_out, d_h, **opts):
    backend.set_backend(name)
    try:
        out, h, cache = kernels.gru_forward(x, mask, h0, *weights, **opts)
        grads = kernels.gru_backward(cache, d_out, d_h)
    finally:
        backend.set_backend("auto")
    return {"outputs": out, "h": h, **{"d_" + k: v for k, v in grads.items() if v is not None}}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("masked,mode", [(False, "zero"), (True, "zero"), (True, "repeat")])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("reset_after", [True, False], ids=["reset_after", "reset_before"])
def test_gru_numba_equals_numpy(dtype, masked, mode, reverse, reset_after, loop_kind):
    rng = np.random.default_rng(4)
    x, mask, states, _, d_out, d_states, rmask = make_problem(rng, dtype, masked=masked, dropout=True)
    bias_shape = (2, 3 * U) if reset_after else (3 * U,)
    weights = [(rng.normal(size=s) * 0.5).astype(dtype) for s in ((I, 3 * U), (U, 3 * U), bias_shape)]
    opts = dict(reset_after=reset_after, reverse=reverse, masked_output_mode=mode,
                recurrent_dropout_mask=rmask)
    ref = run_gru("numpy", x, mask, states[0], weights, d_out, d_states[0], **opts)
    got = run_gru("numba", x, mask, states[0], weights, d_out, d_states[0], **opts)
    assert_same(ref, got, dtype)


@pytest.mark.parametrize("activation,recurrent_activation", ACTIVATION_PAIRS)
def test_gru_activations_no_bias(activation, recurrent_activation, loop_kind):
    rng = np.random.default_rng(5)
    x, mask, states, _, d_out, d_states, _ = make_problem(rng, np.float32, batch=1)
    weights = [(rng.normal(size=s) * 0.5).astype(np.float32) for s in ((I, 3 * U), (U, 3 * U))] + [None]
    opts = dict(activation=activation, recurrent_activation=recurrent_activation)
    ref = run_gru("numpy", x, mask, states[0], weights, d_out, d_states[0], **opts)
    got = run_gru("numba", x, mask, states[0], weights, d_out, d_states[0], **opts)
    assert_same(ref, got, np.float32)


@pytest.mark.parametrize("name", ["numpy", "numba"])
def test_empty_time_axis(name):
    x = np.zeros((2, 0, I), np.float32)
    h0 = np.ones((2, U), np.float32)
    backend.set_backend(name)
    try:
        out, h, c, cache = kernels.lstm_forward(x, None, h0, h0, np.zeros((I, 4 * U), np.float32),
                                                np.zeros((U, 4 * U), np.float32), None)
        grads = kernels.lstm_backward(cache, np.zeros((2, 0, U), np.float32), h0, h0)
        gout, gh, gcache = kernels.gru_forward(x, None, h0, np.zeros((I, 3 * U), np.float32),
                                               np.zeros((U, 3 * U), np.float32), None)
    finally:
        backend.set_backend("auto")
    assert out.shape == (2, 0, U) and gout.shape == (2, 0, U)
    np.testing.assert_array_equal(h, h0)
    np.testing.assert_array_equal(gh, h0)
    np.testing.assert_array_equal(grads["h0"], h0)


def test_layer_call_is_an_inference_pass():
    """``layer(x)`` runs the kernels with inference=True: the same result as ``forward``, no cache."""
    import lstmkit
    rng = np.random.default_rng(8)
    x = rng.normal(size=(4, 9, 3)).astype(np.float32)
    lengths = np.array([9, 5, 1, 7])
    layers = [lstmkit.LSTM(6, num_layers=2, seed=0), lstmkit.GRU(6, seed=0), lstmkit.SimpleRNN(6, seed=0),
              lstmkit.Bidirectional(lstmkit.LSTM(6, seed=0))]
    for layer in layers:
        ref, _ = layer.forward(x, lengths)
        got = layer(x, lengths)
        np.testing.assert_array_equal(got.outputs, ref.outputs)
        for a, b in zip(got.state, ref.state):
            np.testing.assert_array_equal(a, b)
    caches = layers[0].forward(x, lengths, inference=True)[1][0]
    assert caches == [None, None]


def test_split_loops_run_in_a_forked_child():
    """The pool's threads do not survive fork(); a child process starts its own instead of waiting."""
    code = ("import os, numpy as np; from lstmkit import kernels; from lstmkit.kernels import backend; "
            "kernels.set_num_threads(2); backend.PARALLEL_MIN_WORK = 0; "
            "x = np.ones((4, 8, 64), np.float32); w = np.full((64, 256), 0.01, np.float32); "
            "f = lambda: kernels.lstm_forward(x, None, None, None, w, w, None)[0]; ref = f(); "
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    os._exit(0 if np.array_equal(f(), ref) else 3)\n"
            "_, status = os.waitpid(pid, 0); print(os.waitstatus_to_exitcode(status))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "LSTMKIT_BACKEND": "numba"})
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["0"]


@pytest.mark.parametrize("split", ["batch", "units"])
def test_split_loops_called_from_several_python_threads(split, monkeypatch):
    """Calls from several Python threads at once take turns on the pool and each gets its own
    results, bit for bit (a worker's report of an earlier task must not pass for the current one)."""
    import threading
    monkeypatch.setattr(backend, "PARALLEL_MIN_WORK", 0)
    monkeypatch.setattr(numba_loops, "SPLIT", split)
    previous = backend.set_num_threads(2)
    backend.set_backend("numba")
    try:
        rng = np.random.default_rng(9)
        problems = []
        for batch, units in ((4, 64), (2, 128), (6, 96)):
            x = rng.normal(size=(batch, 7, 8)).astype(np.float32)
            w = [(rng.normal(size=s) * 0.3).astype(np.float32)
                 for s in ((8, 4 * units), (units, 4 * units), (4 * units,))]
            assert len(numba_loops._parts(batch, 7, units, 4 * units, np.float32)[1]) == 2
            problems.append((x, w))

        def run(x, w):
            out, h, c, cache = kernels.lstm_forward(x, None, None, None, *w)
            return out, kernels.lstm_backward(cache, np.ones_like(out))["x"]

        expected = [run(*p) for p in problems]
        mismatches, errors = [], []

        def calls(i):
            try:
                for n in range(40):
                    k = (i + n) % len(problems)
                    got = run(*problems[k])
                    if not all(np.array_equal(a, b) for a, b in zip(got, expected[k])):
                        mismatches.append((i, n))
            except BaseException as e:      # reported below, not lost in the thread
                errors.append(e)

        threads = [threading.Thread(target=calls, args=(i,), daemon=True) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads), "a call never returned"
        assert not errors and not mismatches, (errors, mismatches[:5])
    finally:
        backend.set_backend("auto")
        backend.set_num_threads(previous)


def test_single_threaded_blas_sets_and_restores_every_openblas():
    from lstmkit.kernels import blas
    libs = blas.openblas()
    if not libs:
        pytest.skip("NumPy uses no OpenBLAS here")
    before = [get() for get, _ in libs]
    with blas.single_threaded():
        assert [get() for get, _ in libs] == [1] * len(libs)
    assert [get() for get, _ in libs] == before


def test_products_take_lstmkit_threads_only_while_blas_runs_on_one(monkeypatch):
    """With NumPy's OpenBLAS on one thread the kernels' large products are split across lstmkit's
    threads (the translator trains so); with OpenBLAS's own threads, or small products, NumPy's
    products run as they are. The results are NumPy's either way."""
    from lstmkit.kernels import blas
    from lstmkit.kernels import numba_threads as threads
    if not blas.openblas():
        pytest.skip("NumPy uses no OpenBLAS here")
    calls = []
    real = threads.matmuls
    monkeypatch.setattr(threads, "matmuls",
                        lambda pairs, n, outs=None: calls.append(n) or real(pairs, n, outs))
    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, 256)).astype(np.float32)
    layer_kernel = rng.normal(size=(256, 512)).astype(np.float32)      # 8M multiply-adds
    previous = kernels.set_num_threads(2)
    try:
        with blas.single_threaded():
            y, cache = kernels.dense_forward(x, layer_kernel)
            g = kernels.dense_backward(cache, np.ones_like(y))
            kernels.dense_forward(x[:4, :8], layer_kernel[:8, :8])     # small: on one BLAS thread
        assert calls == [2, 2]                  # the forward, then both backward products at once
        np.testing.assert_allclose(y, x @ layer_kernel, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(g["kernel"], x.T @ np.ones_like(y), rtol=1e-5, atol=1e-4)
        calls.clear()
        if blas.openblas()[0][0]() > 1:
            kernels.dense_forward(x, layer_kernel)
            assert calls == []
        kernels.set_num_threads(1)
        with blas.single_threaded():
            kernels.dense_forward(x, layer_kernel)
        assert calls == []
    finally:
        kernels.set_num_threads(previous)
