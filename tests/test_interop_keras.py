"""Keras files in and out, with the real Keras 3 (and tf.keras for legacy .h5) on the other side."""
import zipfile

import numpy as np
import pytest

from lstmkit import interop

pytest.importorskip("h5py")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


def _padded(rng, B=3, T=6, F=3):
    x = rng.normal(size=(B, T, F)).astype(np.float32)
    x[1, 4:] = 0.0     # Masking(0.0) pads these steps
    x[2, 2:] = 0.0
    return x


def _as_list(y):
    return [np.asarray(a) for a in (y if isinstance(y, (list, tuple)) else [y])]


def _same(a, b, atol=1e-5):
    a, b = _as_list(a), _as_list(b)
    assert len(a) == len(b)
    for u, v in zip(a, b):
        np.testing.assert_allclose(u, v, atol=atol)


def _keras_models(k):
    L = k.layers
    seq = k.Sequential([k.Input((None, 3)), L.Masking(0.0),
                        L.Bidirectional(L.LSTM(4, return_sequences=True)),
                        L.GRU(5, return_sequences=True), L.SimpleRNN(3, go_backwards=True),
                        L.Dense(2, activation="softmax")])
    x = k.Input((None, 3))
    out, h, c = L.LSTM(4, return_state=True, return_sequences=True)(x)
    dec = L.LSTM(4, return_sequences=True)(out, initial_state=[h, c])
    y = L.TimeDistributed(L.Dense(2))(L.Concatenate()([dec, out]))
    fun = k.Model(x, [y, h])
    ids = k.Input((None,), dtype="int32")
    emb = L.Embedding(7, 3, mask_zero=True)(ids)        # Keras 3 records a NotEqual op for the mask
    tok = k.Model(ids, L.Dense(2)(L.GRU(4, reset_after=False)(emb)))
    return {"sequential": seq, "functional": fun, "tokens": tok}


def _inputs(name, rng):
    if name == "tokens":
        return np.array([[1, 2, 3, 0, 0], [4, 5, 6, 6, 1]], np.int32)
    return _padded(rng)


@pytest.mark.parametrize("name", ["sequential", "functional", "tokens"])
def test_keras3_saves_lstmkit_loads_and_saves_keras3_loads(name, keras3, rng, tmp_path):
    km = _keras_models(keras3)[name]
    for w in km.weights:     # random biases too, so every weight matters
        w.assign(rng.normal(scale=0.4, size=w.shape).astype(np.float32))
    x = _inputs(name, rng)
    km.save(tmp_path / "k.keras")
    model = interop.load_keras(tmp_path / "k.keras")
    expected = km.predict(x, verbose=0)
    _same(model.predict(x), expected)
    interop.save_keras(model, tmp_path / "back.keras")
    again = keras3.saving.load_model(tmp_path / "back.keras")
    _same(again.predict(x, verbose=0), expected)


def test_legacy_h5_model_and_weights(tf, rng, tmp_path):
    k = pytest.importorskip("tf_keras")   # Keras 2: the legacy HDF5 format
    L = k.layers
    km = k.Sequential([L.Masking(0.0, input_shape=(None, 3)), L.Bidirectional(L.GRU(4, return_sequences=True)),
                       L.LSTM(3), L.Dense(2)])
    km.set_weights([rng.normal(scale=0.4, size=w.shape) for w in km.get_weights()])
    x = _padded(rng)
    expected = km.predict(x, verbose=0)
    km.save(tmp_path / "m.h5")
    model = interop.load_keras(tmp_path / "m.h5")
    _same(model.predict(x), expected)
    km.save_weights(tmp_path / "w.h5")
    for w in model.params.values():
        w[...] = 0
    with pytest.raises(ValueError, match="weights only"):
        interop.load_keras(tmp_path / "w.h5")
    _same(interop.load_keras(tmp_path / "w.h5", model=model).predict(x), expected)


def test_unsupported_layer_is_named(keras3, tmp_path):
    k = keras3
    km = k.Sequential([k.Input((5, 3)), k.layers.Conv1D(2, 3, name="my_conv"), k.layers.LSTM(2)])
    km.save(tmp_path / "c.keras")
    with pytest.raises(ValueError, match=r"layer 'my_conv': Conv1D is not supported"):
        interop.load_keras(tmp_path / "c.keras")


def test_bad_files(keras3, tmp_path):
    km = keras3.Sequential([keras3.Input((5, 3)), keras3.layers.LSTM(2)])
    km.save(tmp_path / "m.keras")
    data = (tmp_path / "m.keras").read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="damaged or truncated zip"):
        interop.load_keras(tmp_path / "cut.keras")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as z:
        z.writestr("hello.txt", "hi")
    with pytest.raises(ValueError, match="not a Keras 3 .keras file"):
        interop.load_keras(tmp_path / "other.zip")
    (tmp_path / "x.txt").write_text("plain text")
    with pytest.raises(ValueError, match="neither a Keras .keras"):
        interop.load_keras(tmp_path / "x.txt")
    # weights that do not fit the model they are loaded into
    other = interop.load_keras(tmp_path / "m.keras")
    km2 = keras3.Sequential([keras3.Input((5, 4)), keras3.layers.LSTM(2)])
    km2.save(tmp_path / "m2.keras")
    with pytest.raises(ValueError, match=r"expected shape \(3, 8\), found \(4, 8\)"):
        interop.load_keras(tmp_path / "m2.keras", model=other)
