"""Losses: finite differences (float64), parity with PyTorch and Keras 3, bad input."""
import numpy as np
import pytest

from lstmkit import losses
from helpers import numeric_grad


def _numeric_grad(f, x, eps=1e-6):
    return numeric_grad(lambda: f(x), x, eps)


def _probs(rng, shape):
    z = rng.normal(size=shape)
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


CASES = [
    ("sparse_logits", lambda **kw: losses.SparseCategoricalCrossentropy(from_logits=True, **kw)),
    ("sparse_probs", lambda **kw: losses.SparseCategoricalCrossentropy(from_logits=False, **kw)),
    ("dense_logits", lambda **kw: losses.CategoricalCrossentropy(from_logits=True, **kw)),
    ("dense_probs", lambda **kw: losses.CategoricalCrossentropy(from_logits=False, **kw)),
    ("binary_logits", lambda **kw: losses.BinaryCrossentropy(from_logits=True, **kw)),
    ("binary_probs", lambda **kw: losses.BinaryCrossentropy(from_logits=False, **kw)),
    ("mse", lambda **kw: losses.MeanSquaredError(**kw)),
]


def _data(kind, rng, B=3, T=4, C=5):
    if kind.startswith("sparse"):
        y = rng.integers(0, C, size=(B, T))
    elif kind.startswith("dense"):
        y = _probs(rng, (B, T, C))
    elif kind.startswith("binary"):
        y = rng.integers(0, 2, size=(B, T, C)).astype(np.float64)
    else:
        y = rng.normal(size=(B, T, C))
    pred = _probs(rng, (B, T, C)) if kind.endswith("probs") else rng.normal(size=(B, T, C))
    return pred, y


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "per_sequence", "sum"])
@pytest.mark.parametrize("kind,make", CASES)
def test_finite_differences(kind, make, reduction, rng):
    pred, y = _data(kind, rng)
    kw = {"reduction": reduction}
    if kind != "mse":
        kw["label_smoothing"] = 0.1
    loss = make(**kw)
    mask = rng.random(pred.shape[:-1]) < 0.7
    weight = rng.random(pred.shape[:1]) + 0.5
    value, cache = loss.forward(pred, y, weight, mask=mask)
    analytic = loss.backward(cache)
    numeric = _numeric_grad(lambda p: loss.forward(p, y, weight, mask=mask)[0], pred.copy())
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7)
    assert np.all(analytic[~mask] == 0)


def test_reduction_none_backward_takes_upstream(rng):
    pred, y = _data("sparse_logits", rng)
    loss = losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")
    value, cache = loss.forward(pred, y)
    assert value.shape == y.shape
    up = rng.normal(size=y.shape)
    numeric = _numeric_grad(lambda p: float((loss.forward(p, y)[0] * up).sum()), pred.copy())
    np.testing.assert_allclose(loss.backward(cache, up), numeric, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_sparse_matches_torch_cross_entropy(torch, smoothing, rng):
    B, T, C = 4, 6, 7
    logits = rng.normal(size=(B, T, C)).astype(np.float32)
    labels = rng.integers(0, C, size=(B, T))
    labels[0, 3:] = -100
    labels[2, 1:] = -100
    loss = losses.SparseCategoricalCrossentropy(from_logits=True, ignore_index=-100,
                                                label_smoothing=smoothing)
    value, cache = loss.forward(logits, labels)
    grad = loss.backward(cache)

    z = torch.tensor(logits.reshape(-1, C), requires_grad=True)
    ref = torch.nn.functional.cross_entropy(z, torch.tensor(labels.reshape(-1)), ignore_index=-100,
                                            label_smoothing=smoothing)
    ref.backward()
    np.testing.assert_allclose(value, ref.item(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(grad.reshape(-1, C), z.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_sum_reduction_matches_torch(torch, rng):
    logits = rng.normal(size=(5, 3)).astype(np.float32)
    labels = rng.integers(0, 3, size=5)
    value, _ = losses.SparseCategoricalCrossentropy(True, reduction="sum").forward(logits, labels)
    ref = torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor(labels), reduction="sum")
    np.testing.assert_allclose(value, ref.item(), rtol=1e-6)


def _keras_loss_and_grad(tf, keras_loss, y_true, y_pred, sample_weight=None):
    p = tf.Variable(y_pred)
    with tf.GradientTape() as tape:
        value = keras_loss(y_true, p, sample_weight=sample_weight)
    return float(value), tape.gradient(value, p).numpy()


KERAS_CASES = [
    ("sparse_logits", lambda k: k.losses.SparseCategoricalCrossentropy(from_logits=True), {}),
    ("sparse_probs", lambda k: k.losses.SparseCategoricalCrossentropy(from_logits=False), {}),
    ("dense_logits", lambda k: k.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
     {"label_smoothing": 0.1}),
    ("dense_probs", lambda k: k.losses.CategoricalCrossentropy(label_smoothing=0.1),
     {"label_smoothing": 0.1}),
    ("binary_logits", lambda k: k.losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.2),
     {"label_smoothing": 0.2}),
    ("binary_probs", lambda k: k.losses.BinaryCrossentropy(label_smoothing=0.2),
     {"label_smoothing": 0.2}),
    ("mse", lambda k: k.losses.MeanSquaredError(), {}),
]


@pytest.mark.parametrize("kind,make_keras,kw", KERAS_CASES)
def test_matches_keras3(keras3, tf, kind, make_keras, kw, rng):
    pred, y = _data(kind, rng)
    pred = pred.astype(np.float32)
    y = y.astype(np.float32) if y.dtype.kind == "f" else y
    sw = (rng.random(pred.shape[:2]) + 0.5).astype(np.float32)
    ours = dict(CASES)[kind](**kw)
    value, cache = ours.forward(pred, y, sw)
    ref_value, ref_grad = _keras_loss_and_grad(tf, make_keras(keras3), y, pred, sw)
    np.testing.assert_allclose(value, ref_value, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.backward(cache), ref_grad, rtol=1e-4, atol=1e-6)


def test_ignore_index_matches_keras_ignore_class(keras3, tf, rng):
    logits = rng.normal(size=(3, 5, 6)).astype(np.float32)
    labels = rng.integers(1, 6, size=(3, 5))
    labels[:, 3:] = 0
    ours = losses.SparseCategoricalCrossentropy(from_logits=True, ignore_index=0)
    value, cache = ours.forward(logits, labels)
    ref_value, ref_grad = _keras_loss_and_grad(
        tf, keras3.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0), labels, logits)
    np.testing.assert_allclose(value, ref_value, rtol=1e-5)
    np.testing.assert_allclose(ours.backward(cache), ref_grad, rtol=1e-4, atol=1e-6)


def test_mask_equals_ignore_index(rng):
    logits = rng.normal(size=(2, 4, 3))
    labels = np.array([[1, 2, 0, 0], [2, 0, 0, 0]])
    a = losses.SparseCategoricalCrossentropy(True, ignore_index=0).forward(logits, labels)[0]
    b = losses.SparseCategoricalCrossentropy(True).forward(logits, labels, mask=labels != 0)[0]
    by_hand = -np.mean([np.log(np.exp(logits[i, t]) / np.exp(logits[i, t]).sum())[labels[i, t]]
                        for i, t in [(0, 0), (0, 1), (1, 0)]])
    assert a == b
    np.testing.assert_allclose(a, by_hand, rtol=1e-12)


def test_per_sequence_reduction_by_formula(rng):
    logits = rng.normal(size=(2, 3, 4))
    labels = rng.integers(0, 4, size=(2, 3))
    per = losses.SparseCategoricalCrossentropy(True, reduction="none").forward(logits, labels)[0]
    mask = np.array([[1, 1, 0], [1, 0, 0]], bool)
    value = losses.SparseCategoricalCrossentropy(True, reduction="per_sequence").forward(
        logits, labels, mask=mask)[0]
    np.testing.assert_allclose(value, (per * mask).sum() / 2, rtol=1e-12)


def test_get_by_keras_name():
    assert isinstance(losses.get("sparse_categorical_crossentropy"), losses.SparseCategoricalCrossentropy)
    assert isinstance(losses.get("mse"), losses.MeanSquaredError)
    assert isinstance(losses.get("BinaryCrossentropy"), losses.BinaryCrossentropy)
    with pytest.raises(ValueError, match="loss"):
        losses.get("hinge_of_doom")


def test_bad_input():
    loss = losses.SparseCategoricalCrossentropy(from_logits=True)
    logits = np.zeros((2, 3, 4))
    with pytest.raises(ValueError, match=r"y_true: labels must be in \[0, 4\)"):
        loss.forward(logits, np.array([[0, 1, 4], [0, 0, 0]]))
    with pytest.raises(ValueError, match="y_true"):
        loss.forward(logits, np.array([[-1, 1, 2], [0, 0, 0]]))
    with pytest.raises(ValueError, match=r"y_true: expected integer labels of shape \(2, 3\)"):
        loss.forward(logits, np.zeros((3, 2), int))
    with pytest.raises(ValueError, match=r"mask: expected shape \(2, 3\)"):
        loss.forward(logits, np.zeros((2, 3), int), mask=np.ones((3, 2), bool))
    with pytest.raises(ValueError, match="sample_weight"):
        loss.forward(logits, np.zeros((2, 3), int), np.ones(5))
    with pytest.raises(TypeError, match="y_true"):
        loss.forward(logits, np.full((2, 3), 0.5))
    with pytest.raises(ValueError, match="reduction"):
        losses.MeanSquaredError(reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing"):
        losses.CategoricalCrossentropy(label_smoothing=1.5)
    with pytest.raises(ValueError, match="y_true: expected the shape of y_pred"):
        losses.MeanSquaredError().forward(np.zeros((2, 3)), np.zeros((2, 4)))
    # labels out of range at ignored positions are fine
    loss = losses.SparseCategoricalCrossentropy(from_logits=True, ignore_index=-100)
    loss.forward(logits, np.array([[0, 1, -100], [3, -100, -100]]))


def test_all_positions_padding_gives_zero_loss_and_gradient():
    logits = np.ones((2, 3, 4))
    loss = losses.SparseCategoricalCrossentropy(from_logits=True, ignore_index=0)
    value, cache = loss.forward(logits, np.zeros((2, 3), int))
    assert value == 0.0 and not np.any(loss.backward(cache))


def test_sample_weight_prefix_broadcasts_over_time(rng):
    logits = rng.normal(size=(2, 3, 4))
    labels = rng.integers(0, 4, size=(2, 3))
    loss = losses.SparseCategoricalCrossentropy(from_logits=True)
    a = loss.forward(logits, labels, np.array([2.0, 0.5]))[0]
    b = loss.forward(logits, labels, np.array([[2.0] * 3, [0.5] * 3]))[0]
    per = losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none").forward(logits, labels)[0]
    np.testing.assert_allclose(a, (per * [[2.0], [0.5]]).mean(), rtol=1e-12)
    assert a == b
