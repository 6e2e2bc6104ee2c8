"""Export lstmkit recurrent layers to ONNX (``pip install lstmkit[onnx]``).

The graph takes lstmkit's batch-major input and gives lstmkit's named results::

    inputs   x        (batch, time, I) float32
             lengths  (batch,) int32               only with lengths=True: ONNX sequence_lens
    outputs  outputs  (batch, time, D*U)           D = 2 for Bidirectional; zero past each length
             h        (batch, D*U), or (L, batch, D*U) for num_layers=L
             c        same as h (LSTM only)

``batch`` and ``time`` are dynamic axes. Inside, each layer is one ONNX ``LSTM``/``GRU``/``RNN`` node
working time-major (T, B, F), with transposes around it; weights come from
``lstmkit.layouts.convert(..., "keras", "onnx")`` (gate order i o f c). A reverse layer is
``direction="reverse"`` and a Bidirectional one ``direction="bidirectional"``: both reverse within
each length, as lstmkit does.

Example::

    import onnxruntime as ort
    lstmkit.interop.to_onnx(layer, "lstm.onnx")
    sess = ort.InferenceSession("lstm.onnx")
    outputs, h, c = sess.run(None, {"x": x, "lengths": lengths.astype("int32")})
"""
import os

import numpy as np

from .. import layouts
from . import _common

OPSET = 17
IR_VERSION = 8
_OPS = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}


def _activation(name, argument):
    """ONNX name and (alpha, beta) of an lstmkit activation."""
    table = {"tanh": ("Tanh", None), "sigmoid": ("Sigmoid", None), "relu": ("Relu", None),
             "hard_sigmoid": ("HardSigmoid", (1.0 / 6.0, 0.5)), "linear": ("Affine", (1.0, 0.0)),
             None: ("Affine", (1.0, 0.0))}
    if name not in table:
        raise ValueError(f"{argument}: {name!r} has no ONNX recurrent activation")
    return table[name]


def _import_onnx():
    try:
        import onnx
        from onnx import helper
    except ImportError:
        raise ImportError("to_onnx needs onnx: pip install lstmkit[onnx]") from None
    return onnx, helper


class _Graph:
    """Nodes and initializers of the graph being written."""

    def __init__(self, onnx, helper):
        self.onnx, self.helper = onnx, helper
        self.nodes, self.inits, self._names = [], [], set()

    def const(self, name, value, dtype=np.float32):
        if name not in self._names:
            self._names.add(name)
            self.inits.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(value, dtype), name))
        return name

    def node(self, op, inputs, outputs, **attrs):
        self.nodes.append(self.helper.make_node(op, inputs, outputs, **attrs))
        return outputs[0] if len(outputs) == 1 else outputs


def _recurrent(g, layer, inp, prefix, lengths):
    """Emit the nodes of an lstmkit recurrent layer (or Bidirectional) reading the time-major
    tensor ``inp`` (T, B, F). Returns (time-major outputs (T, B, D*U), [h per layer], [c per layer]),
    each state (B, D*U), directions side by side."""
    s = _common.structure(layer)
    if s.proj_size:
        raise NotImplementedError(f"proj_size: ONNX's LSTM has no output projection; layer "
                                  f"{layer.name!r} has proj_size={s.proj_size} (h = (o * tanh(c)) @ "
                                  "projection_kernel) and cannot be exported")
    inner = layer.forward_layer if s.bidirectional else layer
    if s.bidirectional and layer.merge_mode != "concat":
        raise NotImplementedError(f"merge_mode: only 'concat' is exported, got {layer.merge_mode!r}")
    if lengths and inner.masked_output != "zero":
        raise ValueError(f"layer: ONNX outputs zero past each length; {layer.name!r} has "
                         f"masked_output={inner.masked_output!r}. Export with lengths=False or use "
                         "masked_output='zero'")
    D, U, L = (2 if s.bidirectional else 1), s.units, s.num_layers
    direction = "bidirectional" if s.bidirectional else ("reverse" if inner.reverse else "forward")
    g_act = _activation(inner.activation, "activation")
    f_act = _activation(getattr(inner, "recurrent_activation", None), "recurrent_activation") \
        if s.cell != "rnn" else None
    acts = {"lstm": [f_act, g_act, g_act], "gru": [f_act, g_act], "rnn": [g_act]}[s.cell] * D
    attrs = {"hidden_size": U, "direction": direction, "activations": [a for a, _ in acts]}
    if any(p is not None for _, p in acts):
        attrs["activation_alpha"] = [1.0 if p is None else p[0] for _, p in acts]
        attrs["activation_beta"] = [0.0 if p is None else p[1] for _, p in acts]
    if s.cell == "gru":
        attrs["linear_before_reset"] = int(s.reset_after)
    flat3 = g.const("shape_keep2_flat", [0, 0, -1], np.int64)
    flat2 = g.const("shape_keep1_flat", [0, -1], np.int64)
    hs, cs = [], []
    for k in range(L):
        parts = []
        for sub in (("forward", "backward") if s.bidirectional else (None,)):
            w = {n: layer.params[layouts.lstmkit_param_key(n, k, L, sub)]
                 for n in ("kernel", "recurrent_kernel", "bias")
                 if layouts.lstmkit_param_key(n, k, L, sub) in layer.params}
            opts = {"linear_before_reset": int(s.reset_after)} if s.cell == "gru" else {}
            parts.append(layouts.convert(w, "keras", "onnx", s.cell, **opts))
        wts = parts[0] if D == 1 else layouts.onnx_concat_directions(*parts)
        p = f"{prefix}{k}"
        ins = [inp, g.const(f"{p}_W", wts["W"]), g.const(f"{p}_R", wts["R"]),
               g.const(f"{p}_B", wts["B"]) if "B" in wts else "", "lengths" if lengths else ""]
        outs = [f"{p}_Y", f"{p}_Y_h"] + ([f"{p}_Y_c"] if s.cell == "lstm" else [])
        g.node(_OPS[s.cell], ins, outs, name=f"{p}_{_OPS[s.cell].lower()}", **attrs)
        # Y (T, D, B, U) -> (T, B, D*U): the next layer's input, both directions side by side
        y = g.node("Transpose", [f"{p}_Y"], [f"{p}_Y_tbdu"], perm=[0, 2, 1, 3])
        inp = g.node("Reshape", [y, flat3], [f"{p}_Y_flat"])
        for src, dst in ((f"{p}_Y_h", hs),) + (((f"{p}_Y_c", cs),) if s.cell == "lstm" else ()):
            # (D, B, U) -> (B, D*U): lstmkit's state, [forward | backward]
            t = g.node("Transpose", [src], [src + "_bdu"], perm=[1, 0, 2])
            dst.append(g.node("Reshape", [t, flat2], [src + "_flat"]))
    return inp, hs, cs


def _stack_states(g, items, name):
    if len(items) == 1:
        return g.node("Identity", items, [name])
    axes = g.const("axes_0", [0], np.int64)
    ups = [g.node("Unsqueeze", [it, axes], [it + "_1"]) for it in items]
    return g.node("Concat", ups, [name], axis=0)


def to_onnx(layer, path=None, *, lengths=True, opset=OPSET, name=None):
    """Export a built lstmkit LSTM, GRU, SimpleRNN or Bidirectional layer (stacked too), or an
    ``lstmkit.keras.Sequential`` model of recurrent, Dense, Dropout and Activation layers, to ONNX.

    layer: the layer or model (call it once, or build it, so that its weights exist).
    path: where to write the ``.onnx`` file (atomically); None only returns the model.
    lengths: add the ``lengths`` input (ONNX ``sequence_lens``, int32); a layer must then output
        zero past each length (``masked_output="zero"``, lstmkit's default). A Keras-named model is
        exported without lengths (Keras's masking repeats outputs, which ONNX cannot express).
    opset: the ONNX opset (17 by default; recurrent nodes are in every opset from 14).

    Returns the ``onnx.ModelProto`` (checked with ``onnx.checker``). A layer's graph gives
    ``outputs``, ``h`` (and ``c``); a model's gives ``outputs``.
    """
    onnx, helper = _import_onnx()
    from onnx import TensorProto
    from ..model import Model
    g = _Graph(onnx, helper)
    if type(layer).__name__ == "Seq2Seq":
        raise TypeError("layer: a Seq2Seq translator is two graphs (encoder and decoder step); use "
                        "lstmkit.interop.seq2seq_to_onnx(model, encoder_path, decoder_path)")
    if isinstance(layer, Model):
        return _finish(g, *_sequential(g, layer), name or layer.name, opset, path)
    layer = _common.native(layer)
    s = _common.structure(layer)
    D, U, L = (2 if s.bidirectional else 1), s.units, s.num_layers
    graph_inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "time", s.input_size])]
    if lengths:
        graph_inputs.append(helper.make_tensor_value_info("lengths", TensorProto.INT32, ["batch"]))
    x_tm = g.node("Transpose", ["x"], ["x_time_major"], perm=[1, 0, 2])
    y, hs, cs = _recurrent(g, layer, x_tm, "layer", lengths)
    g.node("Transpose", [y], ["outputs"], perm=[1, 0, 2])
    outputs = [helper.make_tensor_value_info("outputs", TensorProto.FLOAT, ["batch", "time", D * U])]
    for sname, items in (("h", hs), ("c", cs)):
        if items:
            _stack_states(g, items, sname)
            shape = ["batch", D * U] if L == 1 else [L, "batch", D * U]
            outputs.append(helper.make_tensor_value_info(sname, TensorProto.FLOAT, shape))
    return _finish(g, graph_inputs, outputs, name or layer.name, opset, path)


def _finish(g, graph_inputs, outputs, name, opset, path):
    onnx, helper = g.onnx, g.helper
    graph = helper.make_graph(g.nodes, name, graph_inputs, outputs, g.inits)
    model = helper.make_model(graph, producer_name="lstmkit",
                              opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    if path is not None:
        _common.atomic_write(path, lambda p: onnx.save(model, p))
    return model


_DENSE_ACTIVATIONS = {None: None, "linear": None, "tanh": "Tanh", "sigmoid": "Sigmoid",
                      "relu": "Relu", "softmax": "Softmax"}


def _activation_node(g, act, inp, out, owner):
    if act not in _DENSE_ACTIVATIONS:
        raise NotImplementedError(f"layer {owner!r}: activation {act!r} is not exported")
    op = _DENSE_ACTIVATIONS[act]
    if op is None:
        return g.node("Identity", [inp], [out])
    return g.node(op, [inp], [out], **({"axis": -1} if op == "Softmax" else {}))


def _sequential(g, model):
    """The nodes of an lstmkit.keras Sequential model, batch-major from ``x`` to ``outputs``."""
    from onnx import TensorProto
    from ..model import Sequential
    helper = g.helper
    if not isinstance(model, Sequential):
        raise NotImplementedError(f"layer: only Sequential models are exported, got "
                                  f"{type(model).__name__} {model.name!r}")
    if model._input is None:
        raise ValueError(f"layer: model {model.name!r} is not built; call it on an input first")
    shape = list(model._input.shape)
    if len(shape) != 3 or shape[2] is None:
        raise NotImplementedError(f"layer: the model's input must be (batch, time, features) floats, "
                                  f"got shape {tuple(shape)}")
    cur, last = "x", None            # a batch-major tensor: (B, T, F) or (B, F)
    for i, lay in enumerate(model.layers):
        cls = type(lay).__name__
        p = f"l{i}_{cls.lower()}"
        if cls in ("LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional"):
            if cur is not None and last == "2d":
                raise ValueError(f"layer {lay.name!r}: a recurrent layer needs (B, T, F) inputs")
            if lay.return_state:
                raise NotImplementedError(f"layer {lay.name!r}: return_state has no place in a "
                                          "Sequential model")
            if cls == "Bidirectional":
                native = _bidirectional_native(lay)
                backwards = False
            else:
                native, backwards = lay.cell.layer, lay.go_backwards
            tm = g.node("Transpose", [cur], [p + "_in_tm"], perm=[1, 0, 2])
            y, hs, _ = _recurrent(g, native, tm, p + "_", False)
            if lay.return_sequences:
                cur = g.node("Transpose", [y], [p + "_out"], perm=[1, 0, 2])
                if backwards:   # Keras keeps reading order: out[:, t] read x[:, T-1-t]
                    cur = g.node("Slice", [cur, g.const("rev_starts", [-1], np.int64),
                                           g.const("rev_ends", [-(2 ** 62)], np.int64),
                                           g.const("rev_axes", [1], np.int64),
                                           g.const("rev_steps", [-1], np.int64)], [p + "_out_rev"])
                last = "3d"
            else:
                cur, last = hs[-1], "2d"
        elif cls in ("Dense", "TimeDistributed"):
            dense = lay if cls == "Dense" else lay.layer
            if type(dense).__name__ != "Dense":
                raise NotImplementedError(f"layer {lay.name!r}: TimeDistributed of "
                                          f"{type(dense).__name__} is not exported")
            w = dense.get_weights()
            z = g.node("MatMul", [cur, g.const(p + "_kernel", w[0])], [p + "_z"])
            if len(w) > 1:
                z = g.node("Add", [z, g.const(p + "_bias", w[1])], [p + "_zb"])
            cur = _activation_node(g, dense.activation, z, p + "_out", lay.name)
        elif cls == "Activation":
            cur = _activation_node(g, lay.activation, cur, p + "_out", lay.name)
        elif cls == "Dropout":
            continue
        else:
            raise NotImplementedError(f"layer {lay.name!r}: {cls} is not exported to ONNX "
                                      "(recurrent layers, Dense, TimeDistributed(Dense), Activation, "
                                      "Dropout are)")
    g.node("Identity", [cur], ["outputs"])
    ins = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "time", shape[2]])]
    out_shape = ["batch", "time", 0][:len(model.outputs.shape)]
    out_shape = [d if d is not None else out_shape[i] for i, d in enumerate(model.outputs.shape)]
    outs = [helper.make_tensor_value_info("outputs", TensorProto.FLOAT, out_shape)]
    return ins, outs


def _bidirectional_native(lay):
    """A native lstmkit.Bidirectional carrying the weights of a Keras-named Bidirectional layer."""
    from ..layers.recurrent import Bidirectional
    if lay.merge_mode != "concat":
        raise NotImplementedError(f"layer {lay.name!r}: merge_mode={lay.merge_mode!r} is not exported")
    fw, bw = lay.forward_layer.cell.layer, lay.backward_layer.cell.layer
    if fw.reverse:
        raise NotImplementedError(f"layer {lay.name!r}: a Bidirectional of a go_backwards layer is "
                                  "not exported")
    config = fw.get_config()
    config["reverse"] = False
    config["masked_output"] = "zero"
    native = Bidirectional(type(fw)(**config))
    native.build((1, 1, fw.input_size))
    for sub, src in ((native.forward_layer, fw), (native.backward_layer, bw)):
        for k, v in src.params.items():
            sub.params[k][...] = v
    return native
