"""Attention kernels: finite differences (float64) and parity with a PyTorch autograd implementation."""
import numpy as np
import pytest

from lstmkit.kernels.attention import (attention_backward, attention_forward,
                                       attention_memory_backward, attention_memory_forward)
from helpers import numeric_grad

B, T, S, D, A = 3, 4, 5, 6, 7
LENGTHS = np.array([5, 2, 1])


def make(score, rng, dtype, Dq=D):
    p = {"query": rng.normal(size=(B, T, Dq)), "keys": rng.normal(size=(B, S, D))}
    if score == "general":
        p["W"] = rng.normal(size=(Dq, D)) * 0.5
    if score == "additive":
        p["W_k"] = rng.normal(size=(D, A)) * 0.5
        p["W_q"] = rng.normal(size=(Dq, A)) * 0.5
        p["v"] = rng.normal(size=(A,))
    return {k: v.astype(dtype) for k, v in p.items()}


def run(score, p, mask):
    mem, mcache = attention_memory_forward(p["keys"], score, W=p.get("W"), W_k=p.get("W_k"))
    ctx, w, cache = attention_forward(p["query"], mem, p["keys"], mask, score, W_q=p.get("W_q"),
                                      v=p.get("v"))
    return ctx, w, mcache, cache


def grads(score, p, mask, d_ctx, d_w):
    ctx, w, mcache, cache = run(score, p, mask)
    g = attention_backward(cache, d_ctx, d_w)
    gm = attention_memory_backward(mcache, g["memory"])
    out = {"query": g["query"], "keys": g["values"] + gm["keys"]}
    for k in ("W", "W_k"):
        if k in p:
            out[k] = gm[k]
    for k in ("W_q", "v"):
        if k in p:
            out[k] = g[k]
    return out


def mask_of(lengths):
    return np.arange(S)[None, :] < lengths[:, None]


@pytest.mark.parametrize("score", ["dot", "general", "additive"])
def test_finite_differences(score, rng):
    p = make(score, rng, np.float64)
    mask = mask_of(LENGTHS)
    d_ctx = rng.normal(size=(B, T, D))
    d_w = rng.normal(size=(B, T, S))

    def loss():
        ctx, w, _, _ = run(score, p, mask)
        return float((ctx * d_ctx).sum() + (w * d_w).sum())

    analytic = grads(score, p, mask, d_ctx, d_w)
    for name, arr in p.items():
        np.testing.assert_allclose(analytic[name], numeric_grad(loss, arr), rtol=1e-6, atol=1e-8,
                                   err_msg=name)


def test_masked_positions_get_zero_weight(rng):
    p = make("dot", rng, np.float64)
    ctx, w, _, _ = run("dot", p, mask_of(LENGTHS))
    assert np.all(w[1, :, 2:] == 0) and np.all(w[2, :, 1:] == 0)
    np.testing.assert_allclose(w.sum(-1), 1.0)
    np.testing.assert_allclose(ctx[2], np.repeat(p["keys"][2, :1], T, axis=0))


def torch_attention(torch, score, p, mask):
    q, k = p["query"], p["keys"]
    if score == "dot":
        s = q @ k.transpose(1, 2)
    elif score == "general":
        s = q @ (k @ p["W"].T).transpose(1, 2)
    else:
        s = torch.tanh((q @ p["W_q"]).unsqueeze(2) + (k @ p["W_k"]).unsqueeze(1)) @ p["v"]
    s = s.masked_fill(~torch.as_tensor(mask)[:, None, :], float("-inf"))
    w = torch.softmax(s, dim=-1)
    return w @ k, w


@pytest.mark.parametrize("score", ["dot", "general", "additive"])
def test_parity_with_torch(score, torch, rng):
    p = make(score, rng, np.float32, Dq=D)
    mask = mask_of(LENGTHS)
    d_ctx = rng.normal(size=(B, T, D)).astype(np.float32)
    d_w = rng.normal(size=(B, T, S)).astype(np.float32)
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in p.items()}
    t_ctx, t_w = torch_attention(torch, score, tp, mask)
    ((t_ctx * torch.tensor(d_ctx)).sum() + (t_w * torch.tensor(d_w)).sum()).backward()
    ctx, w, _, _ = run(score, p, mask)
    assert ctx.dtype == np.float32
    np.testing.assert_allclose(ctx, t_ctx.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(w, t_w.detach().numpy(), rtol=1e-5, atol=1e-6)
    ours = grads(score, p, mask, d_ctx, d_w)
    for name in p:
        np.testing.assert_allclose(ours[name], tp[name].grad.numpy(), rtol=1e-4, atol=1e-5,
                                   err_msg=name)


def test_step_by_step_equals_whole_sequence(rng):
    p = make("additive", rng, np.float64)
    mask = mask_of(LENGTHS)
    ctx, w, _, _ = run("additive", p, mask)
    mem, _ = attention_memory_forward(p["keys"], "additive", W_k=p["W_k"])
    for t in range(T):
        c_t, w_t, _ = attention_forward(p["query"][:, t:t + 1], mem, p["keys"], mask, "additive",
                                        W_q=p["W_q"], v=p["v"])
        np.testing.assert_allclose(c_t[:, 0], ctx[:, t], rtol=1e-12)
        np.testing.assert_allclose(w_t[:, 0], w[:, t], rtol=1e-12)
