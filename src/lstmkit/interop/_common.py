"""What the readers and writers share: the structure of an lstmkit recurrent layer, building one,
checking a foreign weight dict against the one expected (keys and shapes), files written atomically."""
import os
import tempfile

import numpy as np

CELL_OF_CLASS = {"LSTM": "lstm", "GRU": "gru", "SimpleRNN": "rnn"}


class Structure:
    """cell ('lstm', 'gru', 'rnn'), units, input_size, num_layers, bidirectional, use_bias, reset_after,
    activation, proj_size (LSTM only; 0: no projection)."""

    def __init__(self, cell, units, input_size, num_layers=1, bidirectional=False, use_bias=True,
                 reset_after=True, activation="tanh", proj_size=0):
        self.cell, self.units, self.input_size = cell, units, input_size
        self.num_layers, self.bidirectional, self.use_bias = num_layers, bidirectional, use_bias
        self.reset_after, self.activation, self.proj_size = reset_after, activation, proj_size

    def __repr__(self):
        return (f"{self.cell} units={self.units} input_size={self.input_size} "
                f"num_layers={self.num_layers} bidirectional={self.bidirectional}"
                + (f" proj_size={self.proj_size}" if self.proj_size else ""))


def structure(layer):
    """The :class:`Structure` of a built lstmkit LSTM, GRU, SimpleRNN or Bidirectional layer."""
    from ..layers.recurrent import Bidirectional, _Recurrent
    inner = layer.forward_layer if isinstance(layer, Bidirectional) else layer
    if not isinstance(inner, _Recurrent):
        raise TypeError(f"layer: expected an lstmkit LSTM, GRU, SimpleRNN or Bidirectional, got "
                        f"{type(layer).__name__}")
    if not layer.built:
        raise ValueError(f"layer: {layer.name!r} is not built yet; call it on an input first")
    return Structure(CELL_OF_CLASS[type(inner).__name__], inner.units, inner.input_size,
                     inner.num_layers, isinstance(layer, Bidirectional), inner.use_bias,
                     getattr(inner, "reset_after", True), inner.activation, inner.proj_size)


def native(layer):
    """The lstmkit layer inside a Keras-named LSTM/GRU/SimpleRNN (lstmkit.keras); else ``layer``.
    Both share the same parameter arrays, so loading into one loads the other."""
    from ..layers.recurrent import _Recurrent
    inner = getattr(getattr(layer, "cell", None), "layer", None)
    return inner if isinstance(inner, _Recurrent) else layer


def build(s, dtype="float32", name=None):
    """A new, built lstmkit layer of structure ``s`` (zero-initialized weights are overwritten)."""
    from .. import layers
    cls = {"lstm": layers.LSTM, "gru": layers.GRU, "rnn": layers.SimpleRNN}[s.cell]
    kw = dict(num_layers=s.num_layers, use_bias=s.use_bias, activation=s.activation, dtype=dtype,
              kernel_initializer="zeros", recurrent_initializer="zeros")
    if s.cell == "gru":
        kw["reset_after"] = s.reset_after
    if s.proj_size:
        kw["proj_size"] = s.proj_size
    if s.bidirectional:
        layer = layers.Bidirectional(cls(s.units, **kw), name=name)
    else:
        layer = cls(s.units, name=name, **kw)
    layer.build((1, 1, s.input_size))
    return layer


def check_against(given, expected, what):
    """Compare a foreign weight dict with the expected one (same format): name missing and unexpected
    keys, and the first key whose shape does not fit."""
    missing = [k for k in expected if k not in given]
    extra = sorted(k for k in given if k not in expected)
    if missing or extra:
        parts = ([f"missing {missing}"] if missing else []) + ([f"unexpected {extra}"] if extra else [])
        raise ValueError(f"{what}: {' and '.join(parts)} (expected keys {list(expected)})")
    for k, want in expected.items():
        found = tuple(np.shape(given[k]))
        if found != tuple(np.shape(want)):
            raise ValueError(f"{what}[{k!r}]: expected shape {tuple(np.shape(want))}, found {found}")


def assign(layer, params):
    """Copy canonical ``params`` (lstmkit keys) into ``layer.params`` in place."""
    for k, p in layer.params.items():
        if k not in params:
            raise ValueError(f"params: missing {k!r}")
        v = np.asarray(params[k])
        if v.shape != p.shape:
            raise ValueError(f"params[{k!r}]: expected shape {p.shape}, found {v.shape}")
        p[...] = v
    extra = sorted(set(params) - set(layer.params))
    if extra:
        raise ValueError(f"params: unexpected {extra} for layer {layer.name!r} "
                         f"(expected {list(layer.params)})")
    return layer


def to_numpy(value):
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    elif hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        value = value.numpy()
    return np.asarray(value)


def atomic_write(path, write):
    """Call ``write(tmp_path)`` and move the result onto ``path`` only once it is complete."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".lstmkit-", suffix=suffix)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def sniff(path):
    """The format of a file from its first bytes: 'zip', 'hdf5', 'safetensors', 'pickle' or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as err:
        raise ValueError(f"path: cannot read {os.fspath(path)!r}: {err.strerror}") from None
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "hdf5"
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    if head[:1] == b"\x80":
        return "pickle"
    return None


def zip_names(path):
    import zipfile
    try:
        with zipfile.ZipFile(path) as z:
            return z.namelist()
    except zipfile.BadZipFile as err:
        raise ValueError(f"path: {os.fspath(path)!r} is a damaged or truncated zip file ({err})") from None
