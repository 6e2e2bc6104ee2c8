"""Parameter keys of the functional Model and Sequential depend on the model's structure only, not on
the process-wide automatic layer names: two models built by the same code (in one process or two) have
the same keys, so a checkpoint of one loads into the other."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import lstmkit.keras as lk
from lstmkit import optim, train
from lstmkit.keras import layers as L

X = np.random.default_rng(0).normal(size=(6, 5, 3)).astype("float32")
Y = np.random.default_rng(1).normal(size=(6, 2)).astype("float32")


def build_functional():
    """Layers of the same class twice, wrappers with sub-layers (Bidirectional, stacked cells), a
    nested model and dropout (a generator a checkpoint saves)."""
    x = L.Input((5, 3))
    y = L.LSTM(4, return_sequences=True)(x)
    y = L.LSTM(4, return_sequences=True, dropout=0.2)(y)
    y = L.Bidirectional(L.GRU(3, return_sequences=True))(y)
    y = L.RNN([L.LSTMCell(3), L.SimpleRNNCell(3)])(y)
    y = lk.Sequential([L.Dense(4, activation="tanh"), L.Dropout(0.3)])(y)
    return lk.Model(x, L.Dense(2)(y))


def build_sequential():
    return lk.Sequential([L.Input((5, 3)), L.GRU(4, return_sequences=True), L.Dropout(0.2),
                          L.LSTM(4), L.Dense(3, activation="relu"), L.Dense(2)])


def build_sequential_lazy():
    """No Input: the first batch fixes the input shape and builds the weights."""
    model = lk.Sequential([L.SimpleRNN(4, return_sequences=True), L.SimpleRNN(4), L.Dense(2)])
    model.predict(X[:1])
    return model


BUILDERS = {"functional": build_functional, "sequential": build_sequential,
            "sequential_lazy": build_sequential_lazy}


@pytest.fixture(params=sorted(BUILDERS))
def build(request):
    return BUILDERS[request.param]


def test_two_models_of_the_same_code_have_the_same_keys(build):
    a, b = build(), build()
    assert [l.name for l in a.layers] != [l.name for l in b.layers]   # automatic names differ
    assert list(a.params) == list(b.params)
    assert list(a.grads) == list(a.params)
    assert [p.shape for p in a.params.values()] == [p.shape for p in b.params.values()]
    for p, w in zip(a.params.values(), a.get_weights()):              # the layers' own arrays
        assert np.array_equal(p, w)


def test_keys_are_the_class_numbered_within_the_model():
    keys = list(build_functional().params)
    prefixes = list(dict.fromkeys(k.split("/")[0] for k in keys))
    assert prefixes == ["lstm", "lstm_1", "bidirectional", "rnn", "sequential", "dense"]
    assert "bidirectional/forward_layer/kernel" in keys
    assert "bidirectional/backward_layer/bias" in keys
    assert "rnn/cells/1/recurrent_kernel" in keys
    assert "sequential/dense/kernel" in keys
    assert list(build_sequential().params)[:3] == ["gru/kernel", "gru/recurrent_kernel", "gru/bias"]


def test_checkpoint_of_one_model_loads_into_another(build, tmp_path):
    a, b = build(), build()
    assert not np.allclose(a.predict(X), b.predict(X))               # different initial weights
    path = tmp_path / "a.npz"
    opt_a = optim.Adam(0.01)
    train.fit(train.Supervised(a, "mse"), train.Batches(X, Y, batch_size=3, seed=0),
              optimizer=opt_a, epochs=1, checkpoint=path, verbose=0)
    ckpt = train.load_checkpoint(path)
    opt_b = optim.Adam(0.01)
    ckpt.restore(train.Supervised(b, "mse"), opt_b)
    np.testing.assert_array_equal(b.predict(X), a.predict(X))
    state_a, state_b = opt_a.state_dict(), opt_b.state_dict()
    assert sorted(state_a) == sorted(state_b) and any(k.startswith("slots/") for k in state_a)
    for k in state_a:
        np.testing.assert_array_equal(state_b[k], state_a[k])


def test_resuming_another_models_checkpoint_trains_on_identically(build, tmp_path):
    """Weights, Adam's slots and the dropout generators all go from one model to the other: model b
    resumed from a's first epoch ends where a ends, bit for bit."""
    a, b = build(), build()
    data = train.Batches(X, Y, batch_size=3, seed=0)
    path = tmp_path / "run.npz"
    train.fit(train.Supervised(a, "mse"), data, optimizer=optim.Adam(0.01), epochs=1,
              checkpoint=path, verbose=0, seed=7)
    shutil.copy(path, tmp_path / "copy.npz")
    train.fit(train.Supervised(a, "mse"), data, optimizer=optim.Adam(0.01), epochs=2, resume=path,
              verbose=0)
    train.fit(train.Supervised(b, "mse"), data, optimizer=optim.Adam(0.01), epochs=2,
              resume=tmp_path / "copy.npz", verbose=0)
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wb, wa)


def test_checkpoint_of_another_architecture_names_the_key(tmp_path):
    path = train.save_checkpoint(tmp_path / "seq.npz", train.Supervised(build_sequential(), "mse"))
    with pytest.raises(ValueError, match=r"parameter 'gru/kernel' \(shape \(3, 12\)\) is not in the model"):
        train.load_checkpoint(path).restore(train.Supervised(build_sequential_lazy(), "mse"))


_CHILD = """
import json, sys
import numpy as np
sys.path.insert(0, {tests!r})
import test_model_keys as t
from lstmkit import train
names = {{}}
for name, build in t.BUILDERS.items():
    model = build()
    train.save_checkpoint({out!r} + "/" + name + ".npz", train.Supervised(model, "mse"))
    np.save({out!r} + "/" + name + ".npy", model.predict(t.X))
    names[name] = [l.name for l in model.layers]
print(json.dumps(names))
"""


def test_checkpoint_from_another_process(tmp_path):
    code = _CHILD.format(tests=os.path.dirname(os.path.abspath(__file__)), out=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    child_names = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, build in BUILDERS.items():
        build()                                       # moves this process's name counters on
        model = build()
        assert [l.name for l in model.layers] != child_names[name]
        ckpt = train.load_checkpoint(tmp_path / f"{name}.npz")
        assert list(ckpt.params) == list(model.params)
        ckpt.restore(train.Supervised(model, "mse"))
        np.testing.assert_array_equal(model.predict(X), np.load(tmp_path / f"{name}.npy"))
