"""``lstmkit.explain``: every shape and every claimed equality is checked against the real framework.

Each claim is an expression over the names the framework's own code binds (Keras ``out, h, c``, TF1
``outputs, state``, PyTorch ``output, h_n, c_n``); the tests run the framework and evaluate it.
"""
import numpy as np
import pytest

import lstmkit
from lstmkit.cli import main as cli_main
from lstmkit.explain import explain

CONFIGS = [
    dict(cell="lstm", lengths=None, return_sequences=True, return_state=True),
    dict(cell="lstm", lengths=[3, 1], return_sequences=True, return_state=True),
    dict(cell="lstm", lengths=[2, 3], return_sequences=False, return_state=True),
    dict(cell="lstm", lengths=[3, 2], return_sequences=True, return_state=True, go_backwards=True),
    dict(cell="lstm", lengths=[3, 2], return_sequences=True, return_state=True, bidirectional=True),
    dict(cell="lstm", lengths=[1, 3], return_sequences=False, return_state=True, bidirectional=True),
    dict(cell="gru", lengths=[3, 1], return_sequences=True, return_state=True),
    dict(cell="rnn", lengths=[2, 3], return_sequences=True, return_state=True, bidirectional=True),
]
STACKED = [
    dict(cell="lstm", lengths=[3, 1], num_layers=2),
    dict(cell="gru", lengths=[2, 3], num_layers=2, bidirectional=True),
]
I, U, B, T = 2, 4, 2, 3
pytestmark = pytest.mark.filterwarnings("ignore:`tf.nn.rnn_cell.*is deprecated")


def _explain(cfg):
    cfg = dict(cfg)
    return explain(cfg.pop("cell"), units=U, input_size=I, batch=B, time=T, **cfg)


def _x(rng):
    return rng.normal(size=(B, T, I)).astype(np.float32)


def _check(e, framework, ns):
    for v in e.values[framework]:
        assert np.shape(eval(v.name, {}, ns)) == v.shape, (framework, v.name)
    claims = [c for c in e.claims if c.framework == framework]
    for c in claims:
        lhs, rhs = eval(c.lhs, {"np": np}, ns), eval(c.rhs, {"np": np}, ns)
        same = np.shape(lhs) == np.shape(rhs) or np.ndim(rhs) == 0
        holds = bool(same and np.allclose(lhs, rhs, atol=1e-6))
        assert holds == c.equal, f"{framework}: {c.lhs} {'==' if c.equal else '!='} {c.rhs} is false"
    return claims


def _mask(lengths):
    n = np.full(B, T) if lengths is None else np.asarray(lengths)
    return np.arange(T)[None, :] < n[:, None]


@pytest.mark.parametrize("cfg", CONFIGS + STACKED)
def test_lstmkit_claims(cfg, rng):
    e = _explain(cfg)
    cls = {"lstm": lstmkit.LSTM, "gru": lstmkit.GRU, "rnn": lstmkit.SimpleRNN}[cfg["cell"]]
    layer = cls(U, num_layers=cfg.get("num_layers", 1), reverse=cfg.get("go_backwards", False), seed=0)
    if cfg.get("bidirectional"):
        layer = lstmkit.Bidirectional(layer)
    res = layer(_x(rng), lengths=cfg["lengths"])
    assert _check(e, "lstmkit", {"res": res})


@pytest.mark.parametrize("cfg", CONFIGS)
def test_keras_claims(cfg, keras3, rng):
    e = _explain(cfg)
    cls = {"lstm": keras3.layers.LSTM, "gru": keras3.layers.GRU, "rnn": keras3.layers.SimpleRNN}
    layer = cls[cfg["cell"]](U, return_sequences=cfg["return_sequences"],
                             return_state=cfg["return_state"], go_backwards=cfg.get("go_backwards", False))
    if cfg.get("bidirectional"):
        layer = keras3.layers.Bidirectional(layer)
    result = layer(_x(rng), mask=_mask(cfg["lengths"]))
    assert isinstance(result, (list, tuple))
    names = [v.name for v in e.values["keras"]]
    assert len(result) == len(names)
    ns = {n: np.asarray(r) for n, r in zip(names, result)}
    _check(e, "keras", ns)


@pytest.mark.parametrize("cfg", CONFIGS + STACKED)
def test_tf1_claims(cfg, tf, rng):
    if cfg.get("go_backwards"):
        pytest.skip("TF1's dynamic_rnn has no go_backwards")
    e = _explain(cfg)
    v1 = tf.compat.v1.nn
    cells = {"lstm": v1.rnn_cell.LSTMCell, "gru": v1.rnn_cell.GRUCell, "rnn": v1.rnn_cell.BasicRNNCell}
    L = cfg.get("num_layers", 1)

    def cell():
        if L == 1:
            return cells[cfg["cell"]](U)
        return v1.rnn_cell.MultiRNNCell([cells[cfg["cell"]](U) for _ in range(L)])
    lengths = None if cfg["lengths"] is None else np.asarray(cfg["lengths"], np.int32)
    x = tf.constant(_x(rng))
    if cfg.get("bidirectional"):
        outputs, state = v1.bidirectional_dynamic_rnn(cell(), cell(), x, sequence_length=lengths,
                                                      dtype=tf.float32)
    else:
        outputs, state = v1.dynamic_rnn(cell(), x, sequence_length=lengths, dtype=tf.float32)
    as_np = lambda s: tf.nest.map_structure(lambda a: np.asarray(a), s)
    _check(e, "tf1", {"outputs": as_np(outputs), "state": as_np(state)})
    if cfg["cell"] == "lstm" and L == 1 and not cfg.get("bidirectional"):
        # TF1's LSTMStateTuple is (c, h): c first.
        assert type(state).__name__ == "LSTMStateTuple" and state._fields == ("c", "h")


@pytest.mark.parametrize("cfg", CONFIGS + STACKED)
def test_pytorch_claims(cfg, torch, rng):
    if cfg.get("go_backwards"):
        pytest.skip("PyTorch has no go_backwards")
    e = _explain(cfg)
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cfg["cell"]]
    mod = cls(I, U, num_layers=cfg.get("num_layers", 1), bidirectional=cfg.get("bidirectional", False),
              batch_first=True)
    x = torch.from_numpy(_x(rng))
    with torch.no_grad():
        if cfg["lengths"] is None:
            output, state = mod(x)
        else:
            packed = pack_padded_sequence(x, torch.tensor(cfg["lengths"]), batch_first=True,
                                          enforce_sorted=False)
            output, state = mod(packed)
            output, _ = pad_packed_sequence(output, batch_first=True, total_length=T)
    ns = {"output": output.numpy()}
    if cfg["cell"] == "lstm":
        ns["h_n"], ns["c_n"] = state[0].numpy(), state[1].numpy()
    else:
        ns["h_n"] = state.numpy()
    _check(e, "pytorch", ns)


def test_seed_question_text():
    """The seed question: Keras's three tensors are [out, h, c]; TF1's final state is (c, h)."""
    text = str(explain("lstm", units=4, input_size=2, batch=2, time=3, lengths=[3, 1],
                       return_sequences=True, return_state=True))
    assert "out, h, c = keras.layers.LSTM(4, return_sequences=True, return_state=True)" in text
    assert "LSTMStateTuple field 0: c" in text
    assert "kernel                             (2, 16)" in text
    assert "rnn/lstm_cell/kernel               (6, 16)" in text
    assert "h[1] == out[1, 0]" in text


def test_cli(capsys, tmp_path):
    png = tmp_path / "net.png"
    args = ["explain", "lstm", "--units", "4", "--input-size", "2", "--batch", "2", "--time", "3",
            "--lengths", "3,1", "--return-sequences", "--return-state", "--bidirectional",
            "--num-layers", "2"]
    pytest.importorskip("matplotlib")
    assert cli_main(args + ["--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "h_n[-2, 1] == output[1, 0, :4]" in out and "weight_ih_l0" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_bad_lengths(capsys):
    assert cli_main(["explain", "lstm", "--lengths", "3,4", "--time", "3"]) == 2
    assert "lengths: expected values in [1, 3]" in capsys.readouterr().err


def test_explain_layer_and_result(rng):
    layer = lstmkit.Bidirectional(lstmkit.GRU(5, seed=0))
    res = layer(rng.normal(size=(3, 4, 2)), lengths=[4, 2, 1])
    e = explain(res)
    assert e.config.cell == "GRU" and e.config.bidirectional and e.config.lengths == [4, 2, 1]
    assert _check(e, "lstmkit", {"res": res})
    e2 = explain(layer, batch=3, time=4)
    assert e2.config.units == 5 and e2.config.input_size == 2 and e2.config.bidirectional
    assert "GRU" in repr(e2)


@pytest.mark.parametrize("kwargs, match", [
    (dict(what="lstmx"), "what: expected one of"),
    (dict(units=0), "units: expected a positive integer"),
    (dict(lengths=[1, 2, 3]), "lengths: expected 2 integers"),
    (dict(go_backwards=True, bidirectional=True), "go_backwards"),
])
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        explain(**kwargs)


def test_explain_keras_named_layer():
    import lstmkit.keras as K
    layer = K.layers.Bidirectional(K.layers.LSTM(3, return_sequences=True, return_state=True))
    layer(np.zeros((2, 4, 5), np.float32))
    e = explain(layer, batch=2, time=4)
    assert (e.config.units, e.config.input_size, e.config.bidirectional) == (3, 5, True)
    assert [v.name for v in e.values["keras"]] == ["out", "h_fw", "c_fw", "h_bw", "c_bw"]
    gru = K.layers.GRU(3, go_backwards=True)
    assert explain(gru).config.go_backwards and explain(gru).config.cell == "GRU"


def test_tf1_state_is_tuple_false_is_c_then_h(tf, rng):
    """The note explain prints: with state_is_tuple=False TF1's state is [c | h], (B, 2U)."""
    assert "state_is_tuple=False the state is one (B, 2U) tensor [c | h]" in str(explain("lstm"))
    v1 = tf.compat.v1.nn
    x = tf.constant(_x(rng))
    cell = v1.rnn_cell.LSTMCell(U, state_is_tuple=False)
    outputs, state = v1.dynamic_rnn(cell, x, sequence_length=[3, 1], dtype=tf.float32)
    state, outputs = np.asarray(state), np.asarray(outputs)
    assert state.shape == (B, 2 * U)
    np.testing.assert_allclose(state[:, U:], outputs[[0, 1], [2, 0]], atol=1e-6)   # h is second
    assert not np.allclose(state[:, :U], state[:, U:])


def test_a_projected_lstm_is_refused_rather_than_explained_with_wrong_shapes():
    import lstmkit
    with pytest.raises(NotImplementedError, match="proj_size=2"):
        lstmkit.explain(lstmkit.LSTM(5, proj_size=2))
