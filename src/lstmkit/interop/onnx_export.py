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


def to_onnx(layer, path=None, *, lengths=True, opset=OPSET, name=None):
    """Export a built lstmkit LSTM, GRU, SimpleRNN or Bidirectional layer (stacked too) to ONNX.

    layer: the layer (call it once, or build it, so that its weights exist).
    path: where to write the ``.onnx`` file (atomically); None only returns the model.
    lengths: add the ``lengths`` input (ONNX ``sequence_lens``, int32); the layer must then output
        zero past each length (``masked_output="zero"``, lstmkit's default).
    opset: the ONNX opset (17 by default; recurrent nodes are in every opset from 14).

    Returns the ``onnx.ModelProto`` (checked with ``onnx.checker``).
    """
    onnx, helper = _import_onnx()
    from onnx import TensorProto
    s = _common.structure(layer)
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
    attrs = {"hidden_size": U, "direction": direction,
             "activations": [a for a, _ in acts]}
    if any(p is not None for _, p in acts):
        attrs["activation_alpha"] = [1.0 if p is None else p[0] for _, p in acts]
        attrs["activation_beta"] = [0.0 if p is None else p[1] for _, p in acts]
    if s.cell == "gru":
        attrs["linear_before_reset"] = int(s.reset_after)

    inits, nodes = [], []

    def const(cname, value, dtype=np.float32):
        inits.append(onnx.numpy_helper.from_array(np.ascontiguousarray(value, dtype), cname))
        return cname

    shape_flat3 = const("shape_b_t_flat", [0, 0, -1], np.int64)
    shape_flat2 = const("shape_b_flat", [0, -1], np.int64)
    graph_inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "time", s.input_size])]
    if lengths:
        graph_inputs.append(helper.make_tensor_value_info("lengths", TensorProto.INT32, ["batch"]))
    nodes.append(helper.make_node("Transpose", ["x"], ["x_time_major"], perm=[1, 0, 2]))
    inp = "x_time_major"
    hs, cs = [], []
    for k in range(L):
        dirs = ("forward", "backward") if s.bidirectional else (None,)
        parts = []
        for sub in dirs:
            w = {n: layer.params[layouts.lstmkit_param_key(n, k, L, sub)]
                 for n in ("kernel", "recurrent_kernel", "bias")
                 if layouts.lstmkit_param_key(n, k, L, sub) in layer.params}
            opts = {"linear_before_reset": int(s.reset_after)} if s.cell == "gru" else {}
            parts.append(layouts.convert(w, "keras", "onnx", s.cell, **opts))
        wts = parts[0] if D == 1 else layouts.onnx_concat_directions(*parts)
        ins = [inp, const(f"W_{k}", wts["W"]), const(f"R_{k}", wts["R"]),
               const(f"B_{k}", wts["B"]) if "B" in wts else "", "lengths" if lengths else ""]
        outs = [f"Y_{k}", f"Y_h_{k}"] + ([f"Y_c_{k}"] if s.cell == "lstm" else [])
        nodes.append(helper.make_node(_OPS[s.cell], ins, outs, name=f"{_OPS[s.cell].lower()}_{k}",
                                      **attrs))
        # Y (T, D, B, U) -> (T, B, D*U): the next layer's input, both directions side by side
        nodes.append(helper.make_node("Transpose", [f"Y_{k}"], [f"Y_tbdu_{k}"], perm=[0, 2, 1, 3]))
        nodes.append(helper.make_node("Reshape", [f"Y_tbdu_{k}", shape_flat3], [f"Y_flat_{k}"]))
        inp = f"Y_flat_{k}"
        for src, dst in ((f"Y_h_{k}", hs),) + (((f"Y_c_{k}", cs),) if s.cell == "lstm" else ()):
            # (D, B, U) -> (B, D*U): lstmkit's state, [forward | backward]
            nodes.append(helper.make_node("Transpose", [src], [src + "_bdu"], perm=[1, 0, 2]))
            nodes.append(helper.make_node("Reshape", [src + "_bdu", shape_flat2], [src + "_flat"]))
            dst.append(src + "_flat")
    nodes.append(helper.make_node("Transpose", [inp], ["outputs"], perm=[1, 0, 2]))
    outputs = [helper.make_tensor_value_info("outputs", TensorProto.FLOAT, ["batch", "time", D * U])]
    for sname, items in (("h", hs), ("c", cs)):
        if not items:
            continue
        if L == 1:
            nodes.append(helper.make_node("Identity", items, [sname]))
            shape = ["batch", D * U]
        else:
            axes = const("axes_0", [0], np.int64) if "axes_0" not in [i.name for i in inits] else "axes_0"
            for it in items:
                nodes.append(helper.make_node("Unsqueeze", [it, axes], [it + "_1"]))
            nodes.append(helper.make_node("Concat", [it + "_1" for it in items], [sname], axis=0))
            shape = [L, "batch", D * U]
        outputs.append(helper.make_tensor_value_info(sname, TensorProto.FLOAT, shape))
    graph = helper.make_graph(nodes, name or layer.name, graph_inputs, outputs, inits)
    model = helper.make_model(graph, producer_name="lstmkit",
                              opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    if path is not None:
        _common.atomic_write(path, lambda p: onnx.save(model, p))
    return model
