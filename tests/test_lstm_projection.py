"""LSTM with a projection (PyTorch's proj_size): the kernel against finite differences (float64) and
against the plain LSTM kernel (identity projection); the layer against torch nn.LSTM(proj_size=P)
(outputs, final states and every gradient, float32 to 1e-5); interop round trips; bad input."""
import numpy as np
import pytest

import lstmkit
from lstmkit import kernels, layouts

B, T, I, U, P = 3, 5, 4, 3, 2
LENGTHS = np.array([5, 2, 0])


def numeric_grad(f, a, eps=1e-6):
    g = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        old = a[idx]
        a[idx] = old + eps
        up = f()
        a[idx] = old - eps
        down = f()
        a[idx] = old
        g[idx] = (up - down) / (2 * eps)
    return g


# ----------------------------------------------------------------------------------------- kernel
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("mode", ["zero", "repeat"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("dropout", [False, True], ids=["nodrop", "recdrop"])
def test_kernel_gradients_match_finite_differences(reverse, mode, masked, dropout):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(B, T, I))
    mask = np.arange(T)[None] < LENGTHS[:, None] if masked else None
    weights = [rng.normal(size=s) * 0.5 for s in [(I, 4 * U), (P, 4 * U), (4 * U,), (U, P)]]
    h0, c0 = rng.normal(size=(B, P)), rng.normal(size=(B, U))
    rmask = (rng.random((B, P)) < 0.7) / 0.7 if dropout else None
    d_out, d_h, d_c = rng.normal(size=(B, T, P)), rng.normal(size=(B, P)), rng.normal(size=(B, U))
    opts = dict(reverse=reverse, masked_output_mode=mode, recurrent_dropout_mask=rmask)

    def loss():
        out, h, c, _ = kernels.lstm_projection_forward(x, mask, h0, c0, *weights, **opts)
        return float((out * d_out).sum() + (h * d_h).sum() + (c * d_c).sum())

    cache = kernels.lstm_projection_forward(x, mask, h0, c0, *weights, **opts)[-1]
    grads = kernels.lstm_projection_backward(cache, d_out, d_h, d_c)
    named = {"x": x, "h0": h0, "c0": c0,
             **dict(zip(["kernel", "recurrent_kernel", "bias", "projection"], weights))}
    for key, arr in named.items():
        np.testing.assert_allclose(grads[key], numeric_grad(loss, arr), rtol=1e-6, atol=1e-7,
                                   err_msg=f"d{key}")


def test_kernel_without_bias_and_with_partial_gradients():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(B, T, I))
    weights = [rng.normal(size=s) * 0.5 for s in [(I, 4 * U), (P, 4 * U)]]
    proj = rng.normal(size=(U, P))
    d_c = rng.normal(size=(B, U))

    def loss():
        return float((kernels.lstm_projection_forward(x, None, None, None, *weights, None, proj)[2]
                      * d_c).sum())

    cache = kernels.lstm_projection_forward(x, None, None, None, *weights, None, proj)[-1]
    grads = kernels.lstm_projection_backward(cache, None, None, d_c)
    assert grads["bias"] is None
    for key, arr in {"x": x, "kernel": weights[0], "recurrent_kernel": weights[1],
                     "projection": proj}.items():
        np.testing.assert_allclose(grads[key], numeric_grad(loss, arr), rtol=1e-6, atol=1e-7,
                                   err_msg=f"d{key}")


@pytest.mark.parametrize("mode", ["zero", "repeat"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_identity_projection_is_the_plain_lstm(reverse, mode, kernel_backend):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(B, T, I))
    mask = np.arange(T)[None] < LENGTHS[:, None]
    kernel, rk, bias = (rng.normal(size=s) * 0.5 for s in [(I, 4 * U), (U, 4 * U), (4 * U,)])
    h0, c0 = rng.normal(size=(B, U)), rng.normal(size=(B, U))
    opts = dict(reverse=reverse, masked_output_mode=mode)
    plain = kernels.lstm_forward(x, mask, h0, c0, kernel, rk, bias, **opts)
    proj = kernels.lstm_projection_forward(x, mask, h0, c0, kernel, rk, bias, np.eye(U), **opts)
    for a, b in zip(plain[:3], proj[:3]):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)
    d = [rng.normal(size=s) for s in [(B, T, U), (B, U), (B, U)]]
    g_plain = kernels.lstm_backward(plain[-1], *d)
    g_proj = kernels.lstm_projection_backward(proj[-1], *d)
    for key in g_plain:
        np.testing.assert_allclose(g_proj[key], g_plain[key], rtol=1e-10, atol=1e-12, err_msg=key)
