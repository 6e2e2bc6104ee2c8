"""PyTorch state dicts in and out: the real nn.LSTM/GRU/RNN gives the same numbers as the loaded layer."""
import json
import struct

import numpy as np
import pytest

import lstmkit
from lstmkit import interop

B, T, I, U = 3, 5, 3, 4
LENGTHS = [5, 2, 1]
CASES = [("lstm", 1, False), ("lstm", 2, True), ("gru", 2, False), ("gru", 1, True), ("rnn", 2, True)]


def _module(torch, cell, layers, bidi):
    torch.manual_seed(0)
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
    return cls(I, U, num_layers=layers, bidirectional=bidi, batch_first=True)


def _torch_run(torch, mod, x, lengths):
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
    packed = pack_padded_sequence(torch.from_numpy(x), torch.tensor(lengths), batch_first=True,
                                  enforce_sorted=False)
    with torch.no_grad():
        out, state = mod(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    h_n = (state[0] if isinstance(state, tuple) else state).numpy()
    c_n = state[1].numpy() if isinstance(state, tuple) else None
    return out.numpy(), h_n, c_n


def _compare(res, torch_out, layers, bidi, atol=1e-5):
    out, h_n, c_n = torch_out
    np.testing.assert_allclose(res.outputs, out, atol=atol)
    fields = [("h", h_n)] + ([("c", c_n)] if c_n is not None else [])
    for name, n in fields:
        if bidi:
            parts = [(getattr(res.forward.state, name), n[0::2]), (getattr(res.backward.state, name), n[1::2])]
        else:
            parts = [(getattr(res.state, name), n)]
        for mine, theirs in parts:
            np.testing.assert_allclose(mine, theirs[0] if layers == 1 else theirs, atol=atol)


@pytest.mark.parametrize("cell, layers, bidi", CASES)
def test_torch_module_to_lstmkit(cell, layers, bidi, torch, rng):
    mod = _module(torch, cell, layers, bidi)
    layer = interop.load_torch(mod.state_dict())
    assert isinstance(layer, lstmkit.Bidirectional) == bidi
    x = rng.normal(size=(B, T, I)).astype(np.float32)
    _compare(layer(x, lengths=LENGTHS), _torch_run(torch, mod, x, LENGTHS), layers, bidi)


@pytest.mark.parametrize("cell, layers, bidi", CASES)
def test_lstmkit_to_torch_module(cell, layers, bidi, torch, rng):
    cls = {"lstm": lstmkit.LSTM, "gru": lstmkit.GRU, "rnn": lstmkit.SimpleRNN}[cell]
    layer = cls(U, num_layers=layers, seed=1, bias_initializer="random_normal")
    if bidi:
        layer = lstmkit.Bidirectional(layer)
    x = rng.normal(size=(B, T, I)).astype(np.float32)
    res = layer(x, lengths=LENGTHS)
    mod = _module(torch, cell, layers, bidi)
    mod.load_state_dict({k: torch.from_numpy(v) for k, v in interop.save_torch(layer).items()})
    _compare(res, _torch_run(torch, mod, x, LENGTHS), layers, bidi)


@pytest.mark.parametrize("ext", [".pt", ".safetensors", ".npz"])
def test_files_round_trip(ext, tmp_path, torch, rng):
    mod = _module(torch, "lstm", 2, True)
    if ext == ".pt":
        torch.save(mod.state_dict(), tmp_path / "m.pt")          # what PyTorch users write
    else:
        interop.save_torch(interop.load_torch(mod.state_dict()), tmp_path / f"m{ext}")
    layer = interop.load_torch(tmp_path / f"m{ext}")
    x = rng.normal(size=(B, T, I)).astype(np.float32)
    _compare(layer(x, lengths=LENGTHS), _torch_run(torch, mod, x, LENGTHS), 2, True)
    if ext == ".pt":   # and our .pt loads into PyTorch
        interop.save_torch(layer, tmp_path / "back.pt")
        sd = torch.load(tmp_path / "back.pt", weights_only=True)
        mod2 = _module(torch, "lstm", 2, True)
        mod2.load_state_dict(sd)
        _compare(layer(x, lengths=LENGTHS), _torch_run(torch, mod2, x, LENGTHS), 2, True)


def test_safetensors_layout(tmp_path):
    """The file follows the published format: u64 header size, JSON header, raw little-endian data."""
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([1.5, -2.0], dtype=np.float64)
    interop.safetensors.save({"b": b, "a": a}, tmp_path / "t.safetensors")
    data = (tmp_path / "t.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    assert header["a"] == {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}
    assert header["b"] == {"dtype": "F64", "shape": [2], "data_offsets": [24, 40]}
    body = data[8 + n:]
    assert np.array_equal(np.frombuffer(body[:24], "<f4").reshape(2, 3), a)
    assert np.array_equal(np.frombuffer(body[24:40], "<f8"), b)
    back = interop.safetensors.load(tmp_path / "t.safetensors")
    assert back["a"].dtype == np.float32 and np.array_equal(back["a"], a)


def test_prefix_and_cell_check(torch):
    seq = torch.nn.Sequential()
    seq.add_module("emb", torch.nn.Embedding(10, I))
    seq.add_module("rnn", torch.nn.GRU(I, U, batch_first=True))
    with pytest.raises(ValueError, match="pass prefix="):
        interop.load_torch(seq.state_dict())
    layer = interop.load_torch(seq.state_dict(), prefix="rnn")
    assert isinstance(layer, lstmkit.GRU) and layer.units == U
    with pytest.raises(ValueError, match="cell: 'lstm' given"):
        interop.load_torch(seq.state_dict(), prefix="rnn", cell="lstm")


def test_missing_extra_and_shape_errors(torch):
    sd = {k: v.numpy() for k, v in torch.nn.LSTM(I, U, num_layers=2).state_dict().items()}
    bad = dict(sd)
    del bad["bias_hh_l1"]
    with pytest.raises(ValueError, match=r"missing \['bias_hh_l1'\]"):
        interop.load_torch(bad)
    with pytest.raises(ValueError, match=r"unexpected keys \[.weight_xx_l0.\]"):
        interop.load_torch({**sd, "weight_xx_l0": sd["weight_ih_l0"]})
    layer = lstmkit.LSTM(U, num_layers=2)
    layer.build((1, 1, I + 1))
    with pytest.raises(ValueError, match=r"state_dict\['weight_ih_l0'\]: expected shape \(16, 4\), "
                                         r"found \(16, 3\)"):
        interop.load_torch(sd, layer)
    layer = lstmkit.LSTM(U)
    layer.build((1, 1, I))
    with pytest.raises(ValueError, match=r"unexpected \['bias_hh_l1', 'bias_ih_l1'"):
        interop.load_torch(sd, layer)


def test_proj_size_mismatch_is_named(torch):
    sd = torch.nn.LSTM(I, U, proj_size=2).state_dict()
    layer = lstmkit.LSTM(U)
    layer.build((1, 1, I))
    with pytest.raises(ValueError, match=r"proj_size: the state dict is of an LSTM with proj_size=2"):
        interop.load_torch(sd, layer)
    assert interop.load_torch(sd).proj_size == 2


def test_bad_files(tmp_path, torch):
    torch.save(torch.nn.LSTM(I, U).state_dict(), tmp_path / "m.pt")
    data = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.pt"):
        interop.load_torch(tmp_path / "cut.pt")
    (tmp_path / "junk.bin").write_bytes(b"hello world, not weights")
    with pytest.raises(ValueError, match="is not a PyTorch"):
        interop.load_torch(tmp_path / "junk.bin")
    (tmp_path / "k.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 32)
    with pytest.raises(ValueError, match="HDF5"):
        interop.load_torch(tmp_path / "k.h5")
    interop.safetensors.save({"weight_ih_l0": np.zeros((16, 3), np.float32)}, tmp_path / "s.safetensors")
    blob = (tmp_path / "s.safetensors").read_bytes()
    (tmp_path / "s2.safetensors").write_bytes(blob[:-8])
    with pytest.raises(ValueError, match="truncated"):
        interop.load_torch(tmp_path / "s2.safetensors")


class _Payload:
    def __reduce__(self):
        return (print, ("code ran",))


def test_pickled_code_is_never_run(tmp_path, torch, capsys):
    torch.save({"weight_ih_l0": _Payload()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="could not be read as a PyTorch state dict"):
        interop.load_torch(tmp_path / "evil.pt")
    assert "code ran" not in capsys.readouterr().out


def test_into_keras_named_layer(torch, rng):
    import lstmkit.keras as K
    mod = torch.nn.GRU(I, U, batch_first=True)
    layer = K.layers.GRU(U, return_sequences=True)
    layer(np.zeros((1, 2, I), np.float32))
    assert interop.load_torch(mod.state_dict(), layer) is layer
    x = rng.normal(size=(B, T, I)).astype(np.float32)
    with torch.no_grad():
        out, _ = mod(torch.from_numpy(x))
    np.testing.assert_allclose(layer(x), out.numpy(), atol=1e-5)
    assert sorted(interop.save_torch(layer)) == sorted(mod.state_dict())
