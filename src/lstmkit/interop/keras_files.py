"""Keras model files in and out: Keras 3 ``.keras`` and legacy ``.h5`` (needs h5py:
``pip install lstmkit[h5]``).

:func:`load_keras` rebuilds the model from the file's own configuration with the Keras-named layers
of :mod:`lstmkit.keras` and loads its weights (Keras's layout is lstmkit's: nothing is converted)::

    model = lstmkit.interop.load_keras("model.keras")     # or a tf.keras "model.h5"
    y = model.predict(x)                                   # Keras's numbers

:func:`save_keras` writes an ``lstmkit.keras`` model as a ``.keras`` file that Keras 3 loads with
``keras.saving.load_model``. A ``.keras`` file is a zip of ``config.json`` (the model's structure),
``metadata.json`` and ``model.weights.h5``, where the weights of the i-th layer of a class live under
``layers/<class in snake case>[_i]/`` (``cell/vars/0..2`` for a recurrent layer, ``forward_layer/`` and
``backward_layer/`` for Bidirectional). A legacy ``.h5`` keeps ``model_config`` as an attribute and
the weights under ``model_weights/<layer name>/`` in the order of its ``weight_names``.
"""
import datetime
import io
import json
import os
import re
import zipfile

import numpy as np

from . import _common

SUPPORTED = ("InputLayer", "LSTM", "GRU", "SimpleRNN", "Bidirectional", "Dense", "Embedding",
             "Masking", "Dropout", "TimeDistributed", "RepeatVector", "Concatenate", "Activation")
# Configuration entries that change nothing once the weights are loaded, or that lstmkit ignores.
_IGNORED = {"seed", "implementation", "quantization_config", "lora_rank", "lora_alpha", "lora_enabled",
            "batch_input_shape", "batch_shape", "autocast", "build_config", "use_cudnn"}


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ImportError("Keras weight files are HDF5: pip install lstmkit[h5] (h5py)") from None
    return h5py


def _snake(name):
    """Keras's ``to_snake_case``: the name a layer's weights get in a Keras 3 file."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


# -- reading ------------------------------------------------------------------------------------------
def load_keras(path, model=None):
    """Load a Keras model file into an :mod:`lstmkit.keras` model.

    path: a Keras 3 ``.keras`` file, a legacy (tf.keras / Keras 2) ``.h5`` model, or a weights-only
        ``.h5`` / ``.weights.h5`` file (then pass ``model``).
    model: an lstmkit.keras model of the same structure to load the weights into; None builds one
        from the file's configuration.

    Returns the model. A layer lstmkit.keras does not have is named in a ValueError, as are missing
    weights and shapes that do not fit; a file of another format or a truncated one is a ValueError.
    """
    name = os.fspath(path)
    kind = _common.sniff(path)
    if kind == "zip":
        names = _common.zip_names(path)
        if "config.json" not in names or "model.weights.h5" not in names:
            raise ValueError(f"path: {name!r} is a zip file without config.json and model.weights.h5; "
                             "not a Keras 3 .keras file")
        with zipfile.ZipFile(path) as z:
            try:
                config = json.loads(z.read("config.json"))
                weights = z.read("model.weights.h5")
            except (zipfile.BadZipFile, json.JSONDecodeError, EOFError, OSError) as err:
                raise ValueError(f"path: {name!r} is a damaged .keras file ({err})") from None
        if model is None:
            model = model_from_config(config)
        h5py = _h5py()
        with h5py.File(io.BytesIO(weights), "r") as f:
            _load_keras3_weights(f, model)
        return model
    if kind == "hdf5":
        h5py = _h5py()
        try:
            f = h5py.File(path, "r")
        except OSError as err:
            raise ValueError(f"path: {name!r} is a damaged or truncated HDF5 file ({err})") from None
        with f:
            if "layers" in f and model is not None:          # Keras 3 model.weights.h5
                _load_keras3_weights(f, model)
                return model
            if model is None:
                if "model_config" not in f.attrs:
                    raise ValueError(f"path: {name!r} holds weights only (no model_config); pass "
                                     "model= (an lstmkit.keras model of the same structure)")
                cfg = f.attrs["model_config"]
                model = model_from_config(json.loads(cfg.decode() if isinstance(cfg, bytes) else cfg))
            _load_legacy_weights(f["model_weights"] if "model_weights" in f else f, model)
        return model
    raise ValueError(f"path: {name!r} is neither a Keras .keras (zip) nor an .h5 (HDF5) file")


def _collect(group):
    """The arrays of one layer's group in a Keras 3 weights file, in Keras's order."""
    if "forward_layer" in group:
        return _collect(group["forward_layer"]) + _collect(group["backward_layer"])
    out = []
    if "vars" in group:
        out += [np.asarray(group["vars"][k]) for k in sorted(group["vars"], key=int)]
    for key in sorted(group):
        if key != "vars":
            out += _collect(group[key])
    return out


def _class_name(layer):
    """Keras's class name for a layer (an ``RNN`` of an ``LSTMCell`` is written as an ``LSTM``)."""
    cell = getattr(layer, "cell", None)
    if type(layer).__name__ == "RNN" and cell is not None:
        return {"LSTMCell": "LSTM", "GRUCell": "GRU", "SimpleRNNCell": "SimpleRNN"}.get(
            type(cell).__name__, "RNN")
    return type(layer).__name__


def _keras3_keys(model):
    """(key in the weights file, layer) for each layer, named as Keras 3 names them."""
    counts, out = {}, []
    for layer in model.layers:
        base = _snake(_class_name(layer))
        n = counts.get(base, 0)
        counts[base] = n + 1
        out.append((base if n == 0 else f"{base}_{n}", layer))
    return out


def _set(layer, arrays, where):
    want = layer.get_weights()
    if len(arrays) != len(want):
        raise ValueError(f"{where}: layer {layer.name!r} has {len(want)} weights "
                         f"{[w.shape for w in want]}, the file has {len(arrays)} "
                         f"{[a.shape for a in arrays]}")
    for i, (a, w) in enumerate(zip(arrays, want)):
        if a.shape != w.shape:
            raise ValueError(f"{where}: weight {i} of layer {layer.name!r}: expected shape {w.shape}, "
                             f"found {a.shape}")
    layer.set_weights(arrays)


def _load_keras3_weights(f, model):
    layers = f["layers"] if "layers" in f else None
    for key, layer in _keras3_keys(model):
        if not layer.get_weights():
            continue
        if layers is None or key not in layers:
            raise ValueError(f"model.weights.h5: missing group layers/{key} for layer {layer.name!r}")
        _set(layer, _collect(layers[key]), f"model.weights.h5 layers/{key}")


def _load_legacy_weights(root, model):
    for layer in model.layers:
        if not layer.get_weights():
            continue
        if layer.name not in root:
            raise ValueError(f"h5: no weights for layer {layer.name!r}; the file has "
                             f"{sorted(root)}")
        g = root[layer.name]
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in g.attrs.get("weight_names", [])]
        _set(layer, [np.asarray(g[n]) for n in names], f"h5 model_weights/{layer.name}")


def _dtype_name(value):
    if isinstance(value, dict):
        value = value.get("config", {}).get("name", "float32")
    return value or "float32"


def layer_from_config(entry):
    """One lstmkit.keras layer from a Keras layer entry ``{"class_name": ..., "config": {...}}``."""
    from ..compat.keras import layers as kl
    cls, cfg = entry.get("class_name"), dict(entry.get("config", {}))
    name = cfg.get("name", "?")
    if cls not in SUPPORTED or cls == "InputLayer":
        raise ValueError(f"layer {name!r}: {cls} is not supported by lstmkit.keras (supported: "
                         f"{', '.join(c for c in SUPPORTED if c != 'InputLayer')})")
    for key in list(cfg):
        if key in _IGNORED or key.endswith("_initializer"):
            cfg.pop(key)
    if "dtype" in cfg:
        cfg["dtype"] = _dtype_name(cfg["dtype"])
        if cfg["dtype"] not in ("float32", "float64"):
            raise ValueError(f"layer {name!r}: dtype {cfg['dtype']!r} is not supported (float32, float64)")
    for key in ("layer", "backward_layer"):
        if isinstance(cfg.get(key), dict):
            cfg[key] = layer_from_config(cfg[key])
    if cls in ("Dense", "Activation") and cfg.get("activation") == "linear":
        cfg["activation"] = None if cls == "Dense" else "linear"
    try:
        return getattr(kl, cls)(**cfg)
    except TypeError as err:
        raise ValueError(f"layer {name!r} ({cls}): {err}") from None


def _input_from(cfg):
    from ..compat.keras import layers as kl
    shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
    if shape is None:
        raise ValueError(f"layer {cfg.get('name')!r}: an InputLayer without batch_shape")
    return kl.Input(batch_shape=tuple(shape), dtype=_dtype_name(cfg.get("dtype")), name=cfg.get("name"))


def model_from_config(config):
    """An lstmkit.keras ``Sequential`` or ``Model`` from a Keras model configuration (config.json)."""
    from ..compat.keras import models
    cls, cfg = config.get("class_name"), config.get("config", {})
    if cls == "Sequential":
        entries = cfg.get("layers", [])
        items = []
        for i, e in enumerate(entries):
            if e.get("class_name") == "InputLayer":
                items.append(_input_from(e["config"]))
                continue
            if i == 0 and "batch_input_shape" in e.get("config", {}):
                items.append(_input_from(e["config"] | {"name": None}))
            items.append(layer_from_config(e))
        return models.Sequential(items, name=cfg.get("name"))
    if cls in ("Functional", "Model"):
        return _functional(cfg, models)
    raise ValueError(f"config: model class {cls!r} is not supported (Sequential, Functional)")


_IMPLICIT_MASK = object()


def _as_refs(spec):
    """input_layers/output_layers: one [name, node, index] or a list of them."""
    if spec and isinstance(spec[0], str):
        return [spec]
    return list(spec)


def _functional(cfg, models):
    from ..model import flatten
    tensors, layers, pending = {}, {}, []
    # Keras 3 records the mask of Embedding(mask_zero=True) as an op NotEqual(ids, 0) passed as
    # mask= to the next layer; lstmkit.keras carries that same mask beside the values already.
    zero_masked = {str(n["args"][0]["config"]["keras_history"][:2])
                   for e in cfg["layers"] if e.get("class_name") == "Embedding"
                   and e["config"].get("mask_zero") for n in e.get("inbound_nodes", [])
                   if isinstance(n, dict)}
    for e in cfg["layers"]:
        lname = e.get("name") or e["config"].get("name")
        if e.get("class_name") == "InputLayer":
            tensors[(lname, 0)] = [_input_from(e["config"] | {"name": lname})]
            continue
        if e.get("class_name") == "NotEqual" and all(
                isinstance(n, dict) and n["args"][1:] == [0]
                and str(n["args"][0]["config"]["keras_history"][:2]) in zero_masked
                for n in e.get("inbound_nodes", [])):
            for i in range(len(e["inbound_nodes"])):
                tensors[(lname, i)] = [_IMPLICIT_MASK]
            continue
        layers[lname] = layer_from_config(e)
        for i, node in enumerate(e.get("inbound_nodes", [])):
            pending.append((lname, i, node))

    def resolve(v):
        if isinstance(v, dict) and v.get("class_name") == "__keras_tensor__":
            lname, node, index = v["config"]["keras_history"]
            return tensors[(lname, node)][index]
        if isinstance(v, (list, tuple)):
            return [resolve(a) for a in v]
        if isinstance(v, dict):
            return {k: resolve(a) for k, a in v.items()}
        return v

    def ready(v):
        if isinstance(v, dict) and v.get("class_name") == "__keras_tensor__":
            lname, node, _ = v["config"]["keras_history"]
            return (lname, node) in tensors
        if isinstance(v, (list, tuple)):
            return all(ready(a) for a in v)
        if isinstance(v, dict):
            return all(ready(a) for a in v.values())
        return True

    def legacy(node):
        # Keras 2: [[layer, node_index, tensor_index, kwargs], ...]
        refs = [{"class_name": "__keras_tensor__", "config": {"keras_history": r[:3]}} for r in node]
        kwargs = node[0][3] if len(node[0]) > 3 else {}
        return {"args": [refs[0] if len(refs) == 1 else refs], "kwargs": kwargs}

    while pending:
        progressed = False
        for item in list(pending):
            lname, i, node = item
            node = legacy(node) if isinstance(node, list) else node
            if not ready([node.get("args", []), node.get("kwargs", {})]):
                continue
            args = resolve(node.get("args", []))
            kwargs = {k: v for k, v in resolve(node.get("kwargs", {})).items()
                      if k != "training" and not (k == "mask" and (v is None or v is _IMPLICIT_MASK))}
            out = layers[lname](*args, **kwargs)
            tensors[(lname, i)] = flatten(out)
            pending.remove(item)
            progressed = True
        if not progressed:
            raise ValueError(f"config: cannot order the layer calls of {[p[0] for p in pending]} "
                             "(inputs never produced)")
    ins = [tensors[(n, k)][j] for n, k, j in _as_refs(cfg["input_layers"])]
    outs = [tensors[(n, k)][j] for n, k, j in _as_refs(cfg["output_layers"])]
    single_in = isinstance(cfg["input_layers"][0], str)
    single_out = isinstance(cfg["output_layers"][0], str)
    return models.Model(ins[0] if single_in else ins, outs[0] if single_out else outs,
                        name=cfg.get("name"))


# -- writing ------------------------------------------------------------------------------------------
def _rnn_config(layer):
    native = layer.cell.layer
    cls = _class_name(layer)
    cfg = {"name": layer.name, "trainable": True, "dtype": layer.dtype.name,
           "return_sequences": layer.return_sequences, "return_state": layer.return_state,
           "go_backwards": layer.go_backwards, "stateful": layer.stateful, "unroll": layer.unroll,
           "zero_output_for_mask": layer.zero_output_for_mask, "units": native.units,
           "activation": native.activation, "use_bias": native.use_bias,
           "dropout": native.input_dropout, "recurrent_dropout": native.recurrent_dropout}
    if cls in ("LSTM", "GRU"):
        cfg["recurrent_activation"] = native.recurrent_activation
    if cls == "LSTM":
        cfg["unit_forget_bias"] = native.unit_forget_bias
    if cls == "GRU":
        cfg["reset_after"] = native.reset_after
    return cfg


def layer_config(layer):
    """The Keras 3 entry ``{"module", "class_name", "config", "registered_name"}`` of a layer."""
    cls = _class_name(layer)
    base = {"name": layer.name, "trainable": True, "dtype": layer.dtype.name}
    if cls in ("LSTM", "GRU", "SimpleRNN"):
        if getattr(layer, "time_major", False):
            raise ValueError(f"layer {layer.name!r}: time_major=True does not exist in Keras 3")
        cfg = _rnn_config(layer)
    elif cls == "Bidirectional":
        cfg = {**base, "merge_mode": layer.merge_mode, "layer": layer_config(layer.forward_layer),
               "backward_layer": layer_config(layer.backward_layer)}
    elif cls == "Dense":
        cfg = {**base, "units": layer.units, "activation": layer.activation or "linear",
               "use_bias": layer.dense.use_bias}
    elif cls == "Embedding":
        cfg = {**base, "input_dim": layer.input_dim, "output_dim": layer.output_dim,
               "mask_zero": layer.mask_zero}
    elif cls == "Masking":
        cfg = {**base, "mask_value": layer.mask_value}
    elif cls == "Dropout":
        cfg = {**base, "rate": layer.rate}
    elif cls == "RepeatVector":
        cfg = {**base, "n": layer.n}
    elif cls == "Concatenate":
        cfg = {**base, "axis": layer.axis}
    elif cls == "Activation":
        cfg = {**base, "activation": layer.activation or "linear"}
    elif cls == "TimeDistributed":
        cfg = {**base, "layer": layer_config(layer.layer)}
    elif cls == "InputLayer":
        cfg = {"batch_shape": list(layer.batch_shape), "dtype": layer.input_dtype.name,
               "sparse": False, "name": layer.name}
    else:
        raise ValueError(f"layer {layer.name!r}: {cls} cannot be written to a Keras file "
                         f"(supported: {', '.join(SUPPORTED)})")
    return {"module": "keras.layers", "class_name": cls, "config": cfg, "registered_name": None}


def _tensor_ref(t, node_index):
    return {"class_name": "__keras_tensor__",
            "config": {"shape": list(t.shape), "dtype": t.dtype.name,
                       "keras_history": [t.node.layer.name, node_index[id(t.node)], t.index]}}


def model_config(model):
    """The Keras 3 ``config.json`` of an lstmkit.keras Sequential or functional Model."""
    from ..model import Sequential, SymbolicTensor
    if isinstance(model, Sequential):
        if model._input is None:
            raise ValueError("model: build the Sequential model (give it an Input) before saving")
        entries = [layer_config(model._input.node.layer)] + [layer_config(l) for l in model.layers]
        return {"module": "keras", "class_name": "Sequential",
                "config": {"name": model.name, "trainable": True, "dtype": "float32", "layers": entries},
                "registered_name": None}
    node_index, per_layer = {}, {}
    nodes = [t.node for t in model._flat_inputs] + list(model._nodes)
    for node in nodes:
        k = per_layer.get(id(node.layer), 0)
        node_index[id(node)] = k
        per_layer[id(node.layer)] = k + 1

    def ser(v):
        if isinstance(v, SymbolicTensor):
            return _tensor_ref(v, node_index)
        if isinstance(v, (list, tuple)):
            return [ser(a) for a in v]
        if isinstance(v, dict):
            return {k: ser(a) for k, a in v.items()}
        if isinstance(v, (np.integer, np.floating, np.bool_)):
            return v.item()
        if isinstance(v, np.ndarray):
            raise ValueError("model: a layer call with a constant array argument cannot be saved")
        return v

    entries = []
    for layer in model.layers:
        e = layer_config(layer)
        e["name"] = layer.name
        e["inbound_nodes"] = [{"args": ser(list(n.args)), "kwargs": ser(n.kwargs)}
                              for n in model._nodes if n.layer is layer]
        entries.append(e)

    def refs(ts):
        return [[t.node.layer.name, node_index[id(t.node)], t.index] for t in ts]
    return {"module": "keras.src.models.functional", "class_name": "Functional",
            "config": {"name": model.name, "trainable": True, "layers": entries,
                       "input_layers": refs(model._flat_inputs), "output_layers": refs(model._flat_outputs)},
            "registered_name": "Functional"}


def _write_group(g, layer):
    """One layer's weights in the Keras 3 layout."""
    cls = _class_name(layer)
    if cls == "Bidirectional":
        g.create_group("vars")
        _write_group(g.create_group("forward_layer"), layer.forward_layer)
        _write_group(g.create_group("backward_layer"), layer.backward_layer)
        return
    if cls in ("LSTM", "GRU", "SimpleRNN"):
        g.create_group("vars")
        g = g.create_group("cell")
    elif cls == "TimeDistributed":
        g.create_group("vars")
        _write_group(g.create_group("layer"), layer.layer)
        return
    v = g.create_group("vars")
    for i, w in enumerate(layer.get_weights()):
        v.create_dataset(str(i), data=w)


def save_keras(model, path):
    """Write an lstmkit.keras ``Sequential`` or ``Model`` as a Keras 3 ``.keras`` file (atomically).

    ``keras.saving.load_model(path)`` then gives a Keras model with the same predictions.
    """
    h5py = _h5py()
    if not os.fspath(path).endswith(".keras"):
        raise ValueError(f"path: a Keras 3 model file name ends in .keras, got {os.fspath(path)!r}")
    from ..model import Model
    if not isinstance(model, Model):
        raise TypeError(f"model: expected an lstmkit.keras Sequential or Model, got {type(model).__name__}")
    config = model_config(model)
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        layers = f.create_group("layers")
        for key, layer in _keras3_keys(model):
            _write_group(layers.create_group(key), layer)
        f.create_group("vars")
    meta = {"keras_version": "3.0.0", "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")}

    def write(tmp):
        with zipfile.ZipFile(tmp, "w") as z:
            z.writestr("metadata.json", json.dumps(meta))
            z.writestr("config.json", json.dumps(config))
            z.writestr("model.weights.h5", buf.getvalue())
    _common.atomic_write(path, write)
    return path
