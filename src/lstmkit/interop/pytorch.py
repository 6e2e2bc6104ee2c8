"""PyTorch ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` state dicts in and out, with or without torch.

A state dict holds, per layer ``k`` and direction (``_reverse`` for the backward one)::

    weight_ih_l{k}  (G*H, I)   weight_hh_l{k}  (G*H, H)   bias_ih_l{k}  (G*H,)   bias_hh_l{k}  (G*H,)

with G = 4 (LSTM, gates i f g o), 3 (GRU, r z n) or 1 (RNN); layers k > 0 read ``D*H`` inputs. An
LSTM with ``proj_size=P`` adds ``weight_hr_l{k}`` (P, H), its ``weight_hh_l{k}`` is (4H, P) and layers
k > 0 read ``D*P`` inputs: it loads as ``lstmkit.LSTM(H, proj_size=P)``. The
gate reordering and transposition is :mod:`lstmkit.layouts`'s. Files: ``.pt``/``.pth`` (needs torch;
read with ``torch.load(weights_only=True)``, which never runs pickled code), ``.safetensors`` and
``.npz`` (NumPy alone).

Example::

    layer = lstmkit.interop.load_torch("lstm.safetensors")       # a built lstmkit.LSTM
    lstmkit.interop.save_torch(layer, "copy.npz")
"""
import os
import re

import numpy as np

from .. import layouts
from . import _common, safetensors

_KEY = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(\d+)(_reverse)?$")
_GATES = {4: "lstm", 3: "gru", 1: "rnn"}


def read_file(path):
    """A state dict (name -> NumPy array) from a ``.pt``/``.pth``, ``.safetensors`` or ``.npz`` file."""
    name = os.fspath(path)
    kind = _common.sniff(path)
    if kind == "safetensors":
        return safetensors.load(path)
    if kind == "zip":
        names = _common.zip_names(path)
        if names and all(n.endswith(".npy") for n in names):
            try:
                with np.load(path, allow_pickle=False) as z:
                    return {k: z[k] for k in z.files}
            except Exception as err:   # a damaged member: zlib, EOF or format errors
                raise ValueError(f"path: {name!r} is a damaged or truncated .npz file ({err})") from None
        if any(n.endswith("data.pkl") for n in names):
            return _torch_load(path)
        raise ValueError(f"path: {name!r} is a zip file but neither a PyTorch checkpoint nor an .npz "
                         f"(it holds {names[:5]}); a Keras .keras file? use lstmkit.interop.load_keras")
    if kind == "pickle":
        return _torch_load(path)
    if kind == "hdf5":
        raise ValueError(f"path: {name!r} is an HDF5 file (a Keras .h5?), not a PyTorch state dict; "
                         "use lstmkit.interop.load_keras")
    raise ValueError(f"path: {name!r} is not a PyTorch (.pt), safetensors or .npz file")


def _torch_load(path):
    try:
        import torch
    except ImportError:
        raise ImportError("path: reading a .pt file needs PyTorch (pip install torch); or save the "
                          "state dict as .safetensors or .npz") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"path: {os.fspath(path)!r} could not be read as a PyTorch state dict "
                         f"(truncated, or holds more than tensors): {err}") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ValueError(f"path: {os.fspath(path)!r} holds a {type(obj).__name__}, not a state dict")
    return {k: _common.to_numpy(v) for k, v in obj.items() if hasattr(v, "shape")}


def _strip(state_dict, prefix):
    """Drop a module prefix (``encoder.rnn.``): ``prefix`` if given, else the one all keys share."""
    if prefix is not None:
        p = prefix if not prefix or prefix.endswith(".") else prefix + "."
        sd = {k[len(p):]: v for k, v in state_dict.items() if k.startswith(p)}
        if not sd:
            raise ValueError(f"prefix: no key starts with {p!r}; keys are {sorted(state_dict)[:8]}")
        return sd
    prefixes = {k.rpartition(".")[0] for k in state_dict}
    if len(prefixes) > 1:
        raise ValueError(f"state_dict: keys of several modules {sorted(prefixes)}; pass prefix= to "
                         "pick the recurrent one")
    return {k.rpartition(".")[2]: v for k, v in state_dict.items()}


def infer_structure(state_dict, cell=None, nonlinearity="tanh"):
    """The :class:`~lstmkit.interop._common.Structure` of a (prefix-free) state dict."""
    layers, bidirectional, unknown = set(), False, []
    for key in state_dict:
        m = _KEY.match(key)
        if not m:
            unknown.append(key)
            continue
        layers.add(int(m.group(2)))
        bidirectional |= bool(m.group(3))
    if unknown:
        raise ValueError(f"state_dict: unexpected keys {sorted(unknown)} (expected weight_ih_l0, "
                         "weight_hh_l0, bias_ih_l0, bias_hh_l0, ... of nn.LSTM/GRU/RNN)")
    for need in ("weight_hh_l0", "weight_ih_l0"):
        if need not in state_dict:
            raise ValueError(f"state_dict: missing {need!r}; found {sorted(state_dict)}")
    whh = np.shape(state_dict["weight_hh_l0"])
    proj_size = 0
    if "weight_hr_l0" in state_dict:
        whr = np.shape(state_dict["weight_hr_l0"])
        if len(whr) != 2 or len(whh) != 2 or not 0 < whr[0] < whr[1] or whh != (4 * whr[1], whr[0]):
            raise ValueError(f"state_dict['weight_hr_l0']: an LSTM projection (proj_size P, hidden "
                             f"H) has weight_hr (P, H) with P < H and weight_hh (4H, P); found "
                             f"weight_hr {whr} and weight_hh {whh}")
        proj_size, hidden, found = whr[0], whr[1], "lstm"
    elif len(whh) != 2 or whh[0] % max(whh[1], 1) or whh[0] // whh[1] not in _GATES:
        raise ValueError(f"state_dict['weight_hh_l0']: expected shape (G*H, H) with G = 4 (LSTM), 3 "
                         f"(GRU) or 1 (RNN), found {whh}")
    else:
        hidden, found = whh[1], _GATES[whh[0] // whh[1]]
    if cell is not None and cell != found:
        raise ValueError(f"cell: {cell!r} given, but weight_hh_l0 of shape {whh} is a {found}")
    return _common.Structure(found, hidden, int(np.shape(state_dict["weight_ih_l0"])[-1]),
                             max(layers) + 1, bidirectional, "bias_ih_l0" in state_dict,
                             reset_after=True, activation=nonlinearity, proj_size=proj_size)


def load_torch(source, layer=None, *, cell=None, prefix=None, nonlinearity="tanh", dtype="float32"):
    """Load a PyTorch recurrent state dict into an lstmkit layer.

    source: a state dict (names -> torch tensors or arrays) or a path (``.pt``/``.pth``,
        ``.safetensors``, ``.npz``).
    layer: a built lstmkit LSTM/GRU/SimpleRNN/Bidirectional to load into; None builds one from the
        state dict (``Bidirectional`` when it has ``_reverse`` keys, ``num_layers`` from ``_l{k}``,
        ``proj_size`` from ``weight_hr_l0``).
    cell: 'lstm', 'gru' or 'rnn' to check against (read from the weights' shapes otherwise).
    prefix: the module path before the names (``encoder.rnn``) when the dict holds several modules.
    nonlinearity: an ``nn.RNN``'s (``'tanh'`` or ``'relu'``; not stored in the state dict).

    Returns the layer. Raises ValueError naming missing/unexpected keys and shapes that do not fit
    (a projected state dict loaded into a layer without ``proj_size``: ``unexpected weight_hr_l0``).
    """
    sd = read_file(source) if isinstance(source, (str, os.PathLike)) else dict(source)
    sd = {k: _common.to_numpy(v) for k, v in _strip(sd, prefix).items()}
    given = layer
    if layer is None:
        s = infer_structure(sd, cell, nonlinearity)
        layer = _common.build(s, dtype)
    else:
        layer = _common.native(layer)
        s = _common.structure(layer)
        if cell is not None and cell != s.cell:
            raise ValueError(f"cell: {cell!r} given, but layer {layer.name!r} is a {s.cell}")
        if ("weight_hr_l0" in sd) != bool(s.proj_size):
            found = np.shape(sd["weight_hr_l0"])[0] if "weight_hr_l0" in sd else 0
            raise ValueError(f"proj_size: the state dict is of an LSTM with proj_size={found} "
                             f"(weight_hr_l0 {'present' if found else 'absent'}), layer "
                             f"{layer.name!r} has proj_size={s.proj_size}")
    expected = save_torch(layer)
    _common.check_against(sd, expected, "state_dict")
    params = layouts.from_torch_state_dict(sd, s.cell)
    _common.assign(layer, params)
    return layer if given is None else given


def save_torch(layer, path=None):
    """An lstmkit recurrent layer as a PyTorch state dict of NumPy arrays; also written to ``path``
    when given: ``.pt``/``.pth`` (torch tensors, needs torch), ``.safetensors`` or ``.npz``.

    Load it with ``module.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})`` into
    ``nn.LSTM(I, H, num_layers=L, bidirectional=..., batch_first=True, proj_size=P)``. A GRU must have
    ``reset_after=True`` (PyTorch's formula). PyTorch keeps two biases: the whole bias goes to
    ``bias_ih`` and ``bias_hh`` is zero (their sum is what counts).
    """
    layer = _common.native(layer)
    s = _common.structure(layer)
    sd = layouts.to_torch_state_dict(layer.params, s.cell, s.num_layers, s.bidirectional)
    if path is not None:
        _write(sd, path)
    return sd


def _write(sd, path):
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext in (".pt", ".pth", ".bin"):
        try:
            import torch
        except ImportError:
            raise ImportError("path: writing a .pt file needs PyTorch (pip install torch); use "
                              ".safetensors or .npz") from None
        tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}
        _common.atomic_write(path, lambda p: torch.save(tensors, p))
    elif ext == ".safetensors":
        _common.atomic_write(path, lambda p: safetensors.save(sd, p, {"format": "pt"}))
    elif ext == ".npz":
        _common.atomic_write(path, lambda p: np.savez(p, **sd))
    else:
        raise ValueError(f"path: expected a .pt, .pth, .safetensors or .npz file name, got {path!r}")


def torch_module(layer):
    """A ``torch.nn.LSTM``/``GRU``/``RNN`` (batch_first=True) holding the weights of ``layer``."""
    import torch
    layer = _common.native(layer)
    s = _common.structure(layer)
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[s.cell]
    kw = {"nonlinearity": s.activation} if s.cell == "rnn" else {}
    if s.proj_size:
        kw["proj_size"] = s.proj_size
    mod = cls(s.input_size, s.units, num_layers=s.num_layers, bias=s.use_bias,
              bidirectional=s.bidirectional, batch_first=True, **kw)
    mod.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)).to(torch.float32)
                         for k, v in save_torch(layer).items()})
    return mod
