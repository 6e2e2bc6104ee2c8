"""Hand-derived backward passes against central finite differences, in float64."""
import numpy as np
import pytest

from lstmkit import kernels
from helpers import numeric_grad

B, T, I, U = 3, 5, 4, 3
LENGTHS = np.array([5, 2, 0])


CASES = {
    "lstm": (kernels.lstm_forward, kernels.lstm_backward, [(I, 4 * U), (U, 4 * U), (4 * U,)], 2, {}),
    "gru_reset_after": (kernels.gru_forward, kernels.gru_backward, [(I, 3 * U), (U, 3 * U), (2, 3 * U)],
                        1, {"reset_after": True}),
    "gru_reset_before": (kernels.gru_forward, kernels.gru_backward, [(I, 3 * U), (U, 3 * U), (3 * U,)],
                         1, {"reset_after": False}),
    "rnn": (kernels.rnn_forward, kernels.rnn_backward, [(I, U), (U, U), (U,)], 1, {}),
}


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("mode", ["zero", "repeat"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("dropout", [False, True], ids=["nodrop", "recdrop"])
@pytest.mark.parametrize("name", list(CASES))
def test_recurrent_kernel_gradients(name, reverse, mode, masked, dropout, kernel_backend):
    fwd, bwd, wshapes, n_state, kw = CASES[name]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(B, T, I))
    mask = np.arange(T)[None] < LENGTHS[:, None] if masked else None
    weights = [rng.normal(size=s) * 0.5 for s in wshapes]
    states = [rng.normal(size=(B, U)) for _ in range(n_state)]
    rmask = (rng.random((B, U)) < 0.7) / 0.7 if dropout else None
    d_out = rng.normal(size=(B, T, U))
    d_states = [rng.normal(size=(B, U)) for _ in range(n_state)]
    opts = dict(kw, reverse=reverse, masked_output_mode=mode, recurrent_dropout_mask=rmask)

    def loss():
        res = fwd(x, mask, *states, *weights, **opts)
        return float((res[0] * d_out).sum() + sum((s * d).sum() for s, d in zip(res[1:1 + n_state], d_states)))

    cache = fwd(x, mask, *states, *weights, **opts)[-1]
    grads = bwd(cache, d_out, *d_states)
    named = {"x": x, **dict(zip(["h0", "c0"], states)),
             **dict(zip(["kernel", "recurrent_kernel", "bias"], weights))}
    for key, arr in named.items():
        np.testing.assert_allclose(grads[key], numeric_grad(loss, arr), rtol=1e-6, atol=1e-7,
                                   err_msg=f"{name}: d{key}")


@pytest.mark.parametrize("activation", [None, "tanh", "sigmoid", "relu"])
def test_dense_gradients(activation):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 4))
    kernel, bias = rng.normal(size=(4, 5)), rng.normal(size=5)
    d_y = rng.normal(size=(2, 3, 5))

    def loss():
        return float((kernels.dense_forward(x, kernel, bias, activation)[0] * d_y).sum())

    grads = kernels.dense_backward(kernels.dense_forward(x, kernel, bias, activation)[1], d_y)
    for key, arr in {"x": x, "kernel": kernel, "bias": bias}.items():
        np.testing.assert_allclose(grads[key], numeric_grad(loss, arr), rtol=1e-6, atol=1e-7)


def test_embedding_gradient_accumulates_repeated_ids():
    rng = np.random.default_rng(2)
    table = rng.normal(size=(6, 3))
    ids = np.array([[1, 1, 4], [0, 1, 5]])
    d_y = rng.normal(size=(2, 3, 3))

    def loss():
        return float((kernels.embedding_forward(ids, table)[0] * d_y).sum())

    d_table = kernels.embedding_backward(kernels.embedding_forward(ids, table)[1], d_y)
    np.testing.assert_allclose(d_table, numeric_grad(loss, table), rtol=1e-6, atol=1e-7)
