"""The fit loop: Keras 3 parity, kill-and-resume bit for bit, determinism, a learned task, bad input."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import lstmkit
from lstmkit import losses, optim, train

SRC = str(Path(__file__).resolve().parents[1] / "src")


class EmbLSTMDense:
    """Embedding -> LSTM (all outputs) -> Dense, from the native layers: a layer-like model."""

    def __init__(self, vocab, emb, units, classes, seed=0, recurrent_dropout=0.0, bidirectional=False):
        self.embedding = lstmkit.Embedding(vocab, emb, seed=seed, name="embedding")
        lstm = lstmkit.LSTM(units, seed=seed + 1, name="lstm", recurrent_dropout=recurrent_dropout)
        self.lstm = lstmkit.Bidirectional(lstm) if bidirectional else lstm
        self.dense = lstmkit.Dense(classes, seed=seed + 2, name="dense")
        self.layers = [self.embedding, self.lstm, self.dense]
        self.embedding.build()
        self.lstm.forward(np.zeros((1, 1, emb), "float32"))
        self.dense.build((units * (2 if bidirectional else 1),))
        self.params = {f"{l.name}/{k}": v for l in self.layers for k, v in l.params.items()}
        self.grads = {f"{l.name}/{k}": v for l in self.layers for k, v in l.grads.items()}

    def zero_grad(self):
        for layer in self.layers:
            layer.zero_grad()

    def forward(self, ids, training=False):
        e, c1 = self.embedding.forward(ids, training=training)
        r, c2 = self.lstm.forward(e, training=training)
        y, c3 = self.dense.forward(r.outputs, training=training)
        return y, (c1, c2, c3)

    def backward(self, cache, d_y):
        c1, c2, c3 = cache
        d_h = self.dense.backward(c3, d_y)
        d_e = self.lstm.backward(c2, (d_h, None)).inputs
        self.embedding.backward(c1, d_e)


def _data(rng, n=16, T=5, vocab=7, classes=4):
    x = rng.integers(0, vocab, size=(n, T))
    y = (x + np.roll(x, 1, axis=1)) % classes
    return x, y


# -- parity with Keras 3 ---------------------------------------------------------------------------
def _compat_model(V, E, U, C, T, weights):
    """The same model from lstmkit.keras's Sequential and layers (skipped if that is unavailable)."""
    try:
        from lstmkit.compat import keras as lk
    except ImportError as e:
        pytest.skip(f"lstmkit.keras not importable: {e}")
    m = lk.Sequential([lk.Input((T,), dtype="int32"), lk.layers.Embedding(V, E),
                       lk.layers.LSTM(U, return_sequences=True), lk.layers.Dense(C)])
    m.set_weights(weights)
    return m


@pytest.mark.parametrize("kind", ["native", "lstmkit.keras"])
@pytest.mark.parametrize("opt_name,kw", [("SGD", dict(learning_rate=0.5, momentum=0.9)),
                                         ("Adam", dict(learning_rate=0.01))])
def test_fit_matches_keras3(keras3, opt_name, kw, kind, rng):
    # Keras on TensorFlow gives Embedding a sparse gradient (IndexedSlices) and its Adam then updates
    # m and v per occurrence of a token, only for the tokens of the batch. With every token exactly once
    # in every batch the sparse and the dense gradient agree, so the optimizers' formulas are compared.
    V, E, U, C, T, B = 20, 4, 6, 4, 5, 4
    x = np.concatenate([rng.permutation(V).reshape(B, T) for _ in range(4)])
    y = (x + np.roll(x, 1, axis=1)) % C
    model = EmbLSTMDense(V, E, U, C)
    km = keras3.Sequential([keras3.Input((T,), dtype="int32"), keras3.layers.Embedding(V, E),
                            keras3.layers.LSTM(U, return_sequences=True), keras3.layers.Dense(C)])
    km.set_weights([model.params[k] for k in ("embedding/embeddings", "lstm/kernel",
                                              "lstm/recurrent_kernel", "lstm/bias", "dense/kernel",
                                              "dense/bias")])
    km.compile(optimizer=getattr(keras3.optimizers, opt_name)(**kw),
               loss=keras3.losses.SparseCategoricalCrossentropy(from_logits=True))
    initial = km.get_weights()
    km.fit(x, y, batch_size=B, epochs=2, shuffle=False, verbose=0)

    start = model.params["lstm/kernel"].copy()
    if kind == "lstmkit.keras":
        model = _compat_model(V, E, U, C, T, initial)
    trainable = train.Supervised(model, losses.SparseCategoricalCrossentropy(from_logits=True))
    history = train.fit(trainable, train.Batches(x, y, batch_size=B, shuffle=False),
                        optimizer=getattr(optim, opt_name)(**kw), epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    ours = model.get_weights() if kind == "lstmkit.keras" else list(model.params.values())
    for mine, ref in zip(ours, km.get_weights(), strict=True):
        np.testing.assert_allclose(mine, ref, atol=1e-4, rtol=1e-4)
    assert not np.allclose(ours[1], start)     # the weights moved


# -- determinism and resume ----------------------------------------------------------------------
def _train_small(tmp=None, epochs=2, seed=3, stop_after=None, **fit_kw):
    rng = np.random.default_rng(1)
    x, y = _data(rng, n=40)
    model = EmbLSTMDense(7, 4, 6, 4, seed=5, recurrent_dropout=0.3)
    trainable = train.Supervised(model, losses.SparseCategoricalCrossentropy(True), ["accuracy"])
    data = train.Batches(x, y, batch_size=8, seed=seed)
    fit_kw.setdefault("verbose", 0)
    h = train.fit(trainable, data, optimizer=optim.Adam(0.01), epochs=epochs, seed=seed, **fit_kw)
    return model, h


def test_same_seed_same_weights_bit_for_bit():
    a, ha = _train_small()
    b, hb = _train_small()
    for k in a.params:
        assert np.array_equal(a.params[k], b.params[k]), k
    assert ha.history == hb.history
    c, _ = _train_small(seed=4)
    assert not np.array_equal(a.params["lstm/kernel"], c.params["lstm/kernel"])


class _Stop(train.Callback):
    """Simulate an interruption: raise after ``n`` batches."""

    def __init__(self, n):
        self.n, self.seen = n, 0

    def on_train_batch_end(self, step, logs=None):
        self.seen += 1
        if self.seen == self.n:
            raise KeyboardInterrupt


def test_resume_in_process_bit_for_bit(tmp_path):
    full, hf = _train_small(epochs=3)
    ckpt = tmp_path / "run.npz"
    with pytest.raises(KeyboardInterrupt):
        _train_small(epochs=3, checkpoint=ckpt, checkpoint_every=2, callbacks=[_Stop(9)])
    assert train.load_checkpoint(ckpt).step in (2, 4)
    resumed, hr = _train_small(epochs=3, checkpoint=ckpt, checkpoint_every=2, resume=ckpt)
    for k in full.params:
        assert np.array_equal(full.params[k], resumed.params[k]), k
    assert hr.history == hf.history


def test_resume_keeps_callback_state(tmp_path):
    def callbacks():
        return [train.EarlyStopping("loss", patience=2, min_delta=10.0, restore_best_weights=True),
                train.ReduceLROnPlateau("loss", factor=0.5, patience=1, min_delta=10.0)]

    full, hf = _train_small(epochs=6, callbacks=callbacks())
    assert len(hf.history["loss"]) == 3            # stopped early: the callbacks did something
    ckpt = tmp_path / "run.npz"
    with pytest.raises(KeyboardInterrupt):
        _train_small(epochs=6, checkpoint=ckpt, checkpoint_every=2, callbacks=callbacks() + [_Stop(9)])
    saved = train.load_checkpoint(ckpt)
    assert saved.epoch == 1 and saved.callbacks["0:EarlyStopping"]["best_weights"] is not None
    resumed, hr = _train_small(epochs=6, checkpoint=ckpt, checkpoint_every=2, resume=ckpt,
                               callbacks=callbacks())
    assert hr.history == hf.history
    for k in full.params:
        assert np.array_equal(full.params[k], resumed.params[k]), k


SCRIPT = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    sys.path.insert(0, {test_dir!r})
    from test_train import _train_small
    from lstmkit import train

    class Slow(train.Callback):
        def on_train_batch_end(self, step, logs=None):
            if os.environ.get("SLOW"):
                time.sleep(0.05)

    out = sys.argv[1]
    ckpt = out + ".ckpt.npz"
    model, _ = _train_small(epochs=4, checkpoint=ckpt, checkpoint_every=2, resume=ckpt,
                            callbacks=[Slow()], verbose=2)
    np.savez(out, **model.params)
""")


def test_sigkill_mid_training_resumes_bit_for_bit(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(SCRIPT.format(test_dir=str(Path(__file__).parent)))
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("SLOW", None)
    subprocess.run([sys.executable, str(script), str(tmp_path / "full.npz")], env=env, check=True,
                   capture_output=True, timeout=120)

    out = tmp_path / "killed.npz"
    ckpt = Path(str(out) + ".ckpt.npz")
    proc = subprocess.Popen([sys.executable, str(script), str(out)], env={**env, "SLOW": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not ckpt.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    time.sleep(0.3)                      # let it train on past the first checkpoint
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert ckpt.exists() and not out.exists()
    at = train.load_checkpoint(ckpt)
    assert (at.epoch, at.step) != (4, 0)          # it really was interrupted mid-run

    res = subprocess.run([sys.executable, str(script), str(out)], env=env, capture_output=True,
                         text=True, timeout=120, check=True)
    assert "resumed from" in res.stdout
    with np.load(tmp_path / "full.npz") as a, np.load(out) as b:
        for k in a.files:
            assert np.array_equal(a[k], b[k]), k


# -- a task learned to >= 99% --------------------------------------------------------------------
def test_learns_sequence_reversal():
    """Tag each position of a digit sequence with the digit at the mirrored position."""
    rng = np.random.default_rng(0)
    T, V = 4, 5

    def make(n):
        x = rng.integers(0, V, size=(n, T))
        return x, x[:, ::-1].copy()

    x, y = make(2000)
    xv, yv = make(500)
    model = EmbLSTMDense(V, 8, 24, V, seed=0, bidirectional=True)
    trainable = train.Supervised(model, "sparse_categorical_crossentropy", ["accuracy"])
    trainable.loss = losses.SparseCategoricalCrossentropy(from_logits=True)
    h = train.fit(trainable, train.Batches(x, y, batch_size=32, seed=0), optimizer=optim.Adam(0.02),
                  epochs=12, validation_data=(xv, yv), verbose=0,
                  callbacks=[train.EarlyStopping("val_accuracy", patience=100, baseline=None)])
    assert h.history["val_accuracy"][-1] >= 0.99, h.history["val_accuracy"]


# -- callbacks -----------------------------------------------------------------------------------
def test_early_stopping_restores_best_and_csv_and_model_checkpoint(tmp_path):
    rng = np.random.default_rng(0)
    x, y = _data(rng, n=32)
    model = EmbLSTMDense(7, 4, 6, 4)
    trainable = train.Supervised(model, losses.SparseCategoricalCrossentropy(True))
    seen = []

    class Spy(train.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append({k: v.copy() for k, v in trainable.params.items()})

    # a learning rate so large that validation gets worse: stops, and restores the best epoch
    stopper = train.EarlyStopping("val_loss", patience=1, restore_best_weights=True)
    csv_path, best_path = tmp_path / "log.csv", tmp_path / "best-{epoch:02d}.npz"
    h = train.fit(trainable, train.Batches(x, y, batch_size=8), optimizer=optim.SGD(30.0),
                  validation_data=(x, y), epochs=10, verbose=0,
                  callbacks=[Spy(), stopper, train.CSVLogger(csv_path),
                             train.ModelCheckpoint(best_path, save_best_only=True)])
    val = h.history["val_loss"]
    best = int(np.argmin(val))
    assert len(val) < 10 and stopper.best_epoch == best
    for k in model.params:
        assert np.array_equal(model.params[k], seen[best][k])
    rows = (tmp_path / "log.csv").read_text().strip().splitlines()
    assert rows[0].split(",") == ["epoch", "loss", "val_loss"] and len(rows) == len(val) + 1
    saved = train.load_checkpoint(tmp_path / f"best-{best + 1:02d}.npz")
    for k in model.params:
        assert np.array_equal(saved.params[k], seen[best][k])


def test_reduce_lr_on_plateau():
    rng = np.random.default_rng(0)
    x, y = _data(rng, n=16)
    trainable = train.Supervised(EmbLSTMDense(7, 4, 6, 4), losses.SparseCategoricalCrossentropy(True))
    opt = optim.SGD(1e-9)
    train.fit(trainable, train.Batches(x, y, batch_size=8), optimizer=opt, epochs=4, verbose=0,
              callbacks=[train.ReduceLROnPlateau("loss", factor=0.5, patience=1, min_delta=1.0)])
    assert opt.learning_rate == pytest.approx(1e-9 * 0.5 ** 3)


def test_bucketing_batches_are_deterministic_and_grouped():
    lengths = np.random.default_rng(0).integers(1, 30, size=400)
    x = np.arange(400)
    b = train.Batches(x, lengths, batch_size=16, seed=7, lengths=lengths, pool_size=5)
    e0 = [xb.tolist() for xb, _ in b.epoch(0)]
    assert e0 == [xb.tolist() for xb, _ in b.epoch(0)]
    assert e0 != [xb.tolist() for xb, _ in b.epoch(1)]
    assert sorted(sum(e0, [])) == list(range(400)) and len(e0) == len(b) == 25
    spread = np.mean([lb.max() - lb.min() for _, lb in b.epoch(0)])
    plain = train.Batches(x, lengths, batch_size=16, seed=7)
    assert spread < 0.5 * np.mean([lb.max() - lb.min() for _, lb in plain.epoch(0)])
    trimmed = train.Batches(np.zeros((400, 30)), batch_size=16, lengths=lengths, trim=True)
    for (xb,), idx in zip(trimmed.epoch(0), trimmed.indices(0)):
        assert xb.shape[1] == lengths[idx].max()


def test_progress_plain_lines_when_not_a_terminal(capsys):
    rng = np.random.default_rng(0)
    x, y = _data(rng, n=16)
    trainable = train.Supervised(EmbLSTMDense(7, 4, 6, 4), losses.SparseCategoricalCrossentropy(True))
    train.fit(trainable, train.Batches(x, y, batch_size=8), optimizer="adam", epochs=2)
    out = capsys.readouterr().out
    assert "\r" not in out and out.count("\n") == 2 and out.startswith("epoch 1/2")


# -- bad input -----------------------------------------------------------------------------------
def test_nan_loss_raises_with_step_or_is_skipped():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 3)).astype("float32")
    y = rng.integers(0, 2, size=24)
    x[13] = np.nan                       # batch 4 of 6 without shuffling
    dense = lstmkit.Dense(2, seed=0)
    dense.build((3,))
    trainable = train.Supervised(dense, losses.SparseCategoricalCrossentropy(True))
    data = train.Batches(x, y, batch_size=4, shuffle=False)
    with pytest.raises(train.NonFiniteLossError, match=r"epoch 1, step 4 of 6"):
        train.fit(trainable, data, optimizer=optim.SGD(0.1), verbose=0)
    dense.set_weights([np.ones((3, 2)), np.zeros(2)])
    h = train.fit(trainable, data, optimizer=optim.SGD(0.1), epochs=2, verbose=0, nan_policy="skip")
    assert h.history["skipped_steps"] == [1, 2]
    assert np.all(np.isfinite(dense.params["kernel"]))
    with pytest.raises(ValueError, match="nan_policy"):
        train.fit(trainable, data, optimizer=optim.SGD(0.1), nan_policy="ignore")


def test_load_checkpoint_errors(tmp_path):
    model, _ = _train_small(epochs=1)
    trainable = train.Supervised(model, "sparse_categorical_crossentropy")
    path = tmp_path / "c.npz"
    train.save_checkpoint(path, trainable, optim.Adam(), epoch=1)
    assert train.load_checkpoint(path).epoch == 1

    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match="not an lstmkit checkpoint"):
        train.load_checkpoint(tmp_path / "text.npz")
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not an lstmkit checkpoint"):
        train.load_checkpoint(tmp_path / "plain.npz")
    data = path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupted"):
        train.load_checkpoint(tmp_path / "cut.npz")

    other = train.Supervised(EmbLSTMDense(7, 4, 8, 4), "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"'lstm/kernel' has shape \(4, 24\) in the checkpoint but "
                                         r"\(4, 32\) in the model"):
        train.load_checkpoint(path).restore(other)
    # the file names no pickled objects: the metadata is JSON text
    with np.load(path, allow_pickle=False) as z:
        assert json.loads(str(z["__meta__"]))["format"] == train.FORMAT


def test_bad_arguments():
    dense = lstmkit.Dense(2)
    t = train.Supervised(dense, "mse")
    data = train.Batches(np.zeros((4, 3)), np.zeros((4, 2)), batch_size=2)
    with pytest.raises(TypeError, match="trainable"):
        train.fit(dense, data, optimizer="sgd")
    with pytest.raises(TypeError, match="train_data"):
        train.fit(t, [1, 2, 3], optimizer="sgd")
    with pytest.raises(ValueError, match="checkpoint_every"):
        train.fit(t, data, optimizer="sgd", checkpoint_every=5)
    with pytest.raises(ValueError, match="batch_size"):
        train.Batches(np.zeros(3), batch_size=0)
    with pytest.raises(ValueError, match="lengths"):
        train.Batches(np.zeros(3), batch_size=2, lengths=[1, 2])
    with pytest.raises(ValueError, match="learning_rate"):
        train.fit(t, data, optimizer=optim.SGD(learning_rate=0.0))
    labels = train.Supervised(lstmkit.Dense(3), losses.SparseCategoricalCrossentropy(True))
    with pytest.raises(ValueError, match=r"y_true: labels must be in \[0, 3\)"):
        train.fit(labels, train.Batches(np.zeros((4, 2)), np.array([0, 1, 2, 3]), batch_size=4),
                  optimizer="sgd", verbose=0)


def test_progress_bar_on_a_terminal(monkeypatch):
    import io

    class Tty(io.StringIO):
        def isatty(self):
            return True

    out = Tty()
    monkeypatch.setattr(sys, "stdout", out)
    rng = np.random.default_rng(0)
    x, y = _data(rng, n=16)
    trainable = train.Supervised(EmbLSTMDense(7, 4, 6, 4), losses.SparseCategoricalCrossentropy(True))
    train.fit(trainable, train.Batches(x, y, batch_size=8), optimizer="adam", epochs=1)
    text = out.getvalue()
    assert text.startswith("\repoch 1/1 1/2 [") and "loss" in text and "tok/s" in text
    assert text.count("\n") == 1


def test_rngs_reach_nested_layers_and_seed_reseeds_them():
    model = EmbLSTMDense(7, 4, 6, 4, bidirectional=True)
    gens = train.collect_rngs(model)
    assert model.lstm.forward_layer.rng is gens["lstm/forward_layer"]
    assert model.lstm.backward_layer.rng is gens["lstm/backward_layer"]
    assert model.dense.rng is gens["dense"]
    before = gens["lstm/backward_layer"].bit_generator.state
    trainable = train.Supervised(model, "sparse_categorical_crossentropy")
    train._reseed(trainable, 5)
    assert gens["lstm/backward_layer"].bit_generator.state != before


def test_evaluate_matches_eval_steps():
    rng = np.random.default_rng(0)
    x, y = _data(rng, n=12)
    trainable = train.Supervised(EmbLSTMDense(7, 4, 6, 4), losses.SparseCategoricalCrossentropy(True),
                                 ["accuracy"])
    whole = trainable.eval_step((x, y))
    parts = train.evaluate(trainable, train.Batches(x, y, batch_size=4, shuffle=False))
    np.testing.assert_allclose(parts["loss"], whole["loss"], rtol=1e-6)
    assert parts["accuracy"] == pytest.approx(whole["accuracy"])


def test_resume_builds_a_lazily_built_model(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 3)).astype("float32")
    y = rng.integers(0, 2, size=12)

    def run(**kw):
        dense = lstmkit.Dense(2, seed=0)             # weights are created by the first call
        t = train.Supervised(dense, losses.SparseCategoricalCrossentropy(True))
        train.fit(t, train.Batches(x, y, batch_size=4, seed=1), optimizer=optim.SGD(0.1, momentum=0.9),
                  epochs=3, verbose=0, **kw)
        return dense

    full = run()
    ckpt = tmp_path / "c.npz"
    with pytest.raises(KeyboardInterrupt):
        run(checkpoint=ckpt, checkpoint_every=1, callbacks=[_Stop(5)])
    resumed = run(checkpoint=ckpt, resume=ckpt)
    for k in full.params:
        assert np.array_equal(full.params[k], resumed.params[k])
