"""Export the translator (:class:`lstmkit.seq2seq.Seq2Seq`) to two ONNX graphs: the encoder, run once
per batch, and one decoder step, run once per generated token (greedy or beam search drive it).

Encoder graph::

    inputs   src (B, S) int64 token ids, src_lengths (B,) int32
    outputs  h, c      the decoder's initial state: (B, H), or (L, B, H) with num_layers=L
             keys      (B, S, H) encoder outputs          } with attention only
             memory    (B, S, K) keys projected for the score
             mask      (B, S) bool, True at valid source positions

Decoder-step graph (N rows: a batch, or batch x beam)::

    inputs   tokens (N,) int64 previous tokens; h, c as above; feed (N, A) with input feeding;
             keys, memory, mask as the encoder gave them (attention only)
    outputs  log_probs (N, V); h, c; feed (input feeding); weights (N, S) (attention)

Both give :meth:`Seq2Seq.start` and :meth:`Seq2Seq.step`'s numbers (tests: ONNX Runtime within 1e-5).
"""
import numpy as np

from . import _common
from .onnx_export import IR_VERSION, OPSET, _Graph, _import_onnx, _recurrent, _stack_states


def seq2seq_to_onnx(model, encoder_path=None, decoder_path=None, *, opset=OPSET):
    """Export a :class:`~lstmkit.seq2seq.Seq2Seq` as ``(encoder, decoder_step)`` ONNX models, each
    also written (atomically) to its path when given."""
    from ..seq2seq import Seq2Seq
    if not isinstance(model, Seq2Seq):
        raise TypeError(f"model: expected an lstmkit.seq2seq.Seq2Seq, got {type(model).__name__}")
    onnx, helper = _import_onnx()
    enc = _encoder(model, onnx, helper, opset)
    dec = _decoder(model, onnx, helper, opset)
    for proto, path in ((enc, encoder_path), (dec, decoder_path)):
        if path is not None:
            _common.atomic_write(path, lambda p, m=proto: onnx.save(m, p))
    return enc, dec


def _model(g, name, inputs, outputs, opset):
    helper = g.helper
    proto = helper.make_model(helper.make_graph(g.nodes, name, inputs, outputs, g.inits),
                              producer_name="lstmkit", opset_imports=[helper.make_opsetid("", opset)])
    proto.ir_version = IR_VERSION
    g.onnx.checker.check_model(proto)
    return proto


def _f32(a):
    return np.asarray(a, np.float32)


def _dense(g, layer, inp, out):
    """y = activation(x @ kernel + bias) for an lstmkit.layers.Dense (tanh or none)."""
    z = g.node("MatMul", [inp, g.const(out + "_kernel", _f32(layer.params["kernel"]))], [out + "_xw"])
    if "bias" in layer.params:
        z = g.node("Add", [z, g.const(out + "_bias", _f32(layer.params["bias"]))], [out + "_z"])
    if layer.activation in (None, "linear"):
        return g.node("Identity", [z], [out])
    if layer.activation == "tanh":
        return g.node("Tanh", [z], [out])
    raise NotImplementedError(f"layer {layer.name!r}: activation {layer.activation!r} is not exported")


def _state_info(helper, TensorProto, model, name, rows="batch"):
    L, H = model.config["num_layers"], model.config["hidden_size"]
    shape = [rows, H] if L == 1 else [L, rows, H]
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _encoder(model, onnx, helper, opset):
    from onnx import TensorProto
    g = _Graph(onnx, helper)
    H = model.config["hidden_size"]
    x = g.node("Gather", [g.const("src_embeddings", _f32(model.src_embedding.params["embeddings"])),
                          "src"], ["src_embedded"])
    x_tm = g.node("Transpose", [x], ["src_time_major"], perm=[1, 0, 2])
    g.nodes.append(helper.make_node("Identity", ["src_lengths"], ["lengths"]))
    y, hs, cs = _recurrent(g, model.encoder, x_tm, "encoder_", True)
    keys = g.node("Transpose", [y], ["keys"], perm=[1, 0, 2])
    h = _stack_states(g, hs, "encoder_h")
    c = _stack_states(g, cs, "encoder_c")
    if model.bridge_h is not None:
        _dense(g, model.bridge_h, h, "h")
        _dense(g, model.bridge_c, c, "c")
    else:
        g.node("Identity", [h], ["h"])
        g.node("Identity", [c], ["c"])
    inputs = [helper.make_tensor_value_info("src", TensorProto.INT64, ["batch", "source"]),
              helper.make_tensor_value_info("src_lengths", TensorProto.INT32, ["batch"])]
    outputs = [_state_info(helper, TensorProto, model, "h"), _state_info(helper, TensorProto, model, "c")]
    if model.attention is not None:
        att = model.attention
        if att.score == "dot":
            g.node("Identity", [keys], ["memory"])
            K = H
        elif att.score == "general":
            g.node("MatMul", [keys, g.const("attention_W_T", _f32(att.params["W"]).T)], ["memory"])
            K = att.params["W"].shape[0]
        else:
            g.node("MatMul", [keys, g.const("attention_W_k", _f32(att.params["W_k"]))], ["memory"])
            K = att.params["W_k"].shape[1]
        # mask = arange(S)[None, :] < src_lengths[:, None]
        shape = g.node("Shape", ["src"], ["src_shape"])
        S = g.node("Gather", [shape, g.const("one", np.array(1, np.int64), np.int64)], ["source_len"])
        steps = g.node("Range", [g.const("zero", np.array(0, np.int64), np.int64), S,
                                 "one"], ["positions"])
        lens = g.node("Cast", ["src_lengths"], ["lengths_i64"], to=TensorProto.INT64)
        lens = g.node("Unsqueeze", [lens, g.const("axes_1", [1], np.int64)], ["lengths_col"])
        g.node("Less", [steps, lens], ["mask"])
        outputs += [helper.make_tensor_value_info("keys", TensorProto.FLOAT, ["batch", "source", H]),
                    helper.make_tensor_value_info("memory", TensorProto.FLOAT, ["batch", "source", K]),
                    helper.make_tensor_value_info("mask", TensorProto.BOOL, ["batch", "source"])]
    return _model(g, "encoder", inputs, outputs, opset)


def _decoder(model, onnx, helper, opset):
    from onnx import TensorProto
    g = _Graph(onnx, helper)
    c_ = model.config
    L, H = c_["num_layers"], c_["hidden_size"]
    y = g.node("Gather", [g.const("tgt_embeddings", _f32(model.tgt_embedding.params["embeddings"])),
                          "tokens"], ["tokens_embedded"])
    inputs = [helper.make_tensor_value_info("tokens", TensorProto.INT64, ["rows"]),
              _state_info(helper, TensorProto, model, "h", "rows"),
              _state_info(helper, TensorProto, model, "c", "rows")]
    if model.input_feeding:
        inputs.append(helper.make_tensor_value_info("feed", TensorProto.FLOAT, ["rows", model.feed_size]))
        y = g.node("Concat", [y, "feed"], ["decoder_input"], axis=1)
    x = g.node("Unsqueeze", [y, g.const("axes_0", [0], np.int64)], ["decoder_x"])   # (1, N, F)
    # Each stacked layer is one single-step ONNX LSTM node started from that layer's state rows.
    hs, cs = [], []
    for k in range(L):
        weights = {name: model.decoder.params[name if L == 1 else f"{name}_l{k}"]
                   for name in ("kernel", "recurrent_kernel", "bias")}
        inits = []
        for s in ("h", "c"):
            if L == 1:
                inits.append(g.node("Unsqueeze", [s, "axes_0"], [f"{s}0_{k}"]))
            else:
                inits.append(g.node("Slice", [s, g.const(f"start_{k}", [k], np.int64),
                                              g.const(f"end_{k}", [k + 1], np.int64), "axes_0"],
                                    [f"{s}0_{k}"]))
        x, h_k, c_k = _one_step(g, weights, x, f"decoder{k}_", inits)
        hs.append(h_k)
        cs.append(c_k)
    if L == 1:
        g.node("Squeeze", [hs[0], "axes_0"], ["h_next"])
        g.node("Squeeze", [cs[0], "axes_0"], ["c_next"])
    else:
        g.node("Concat", hs, ["h_next"], axis=0)
        g.node("Concat", cs, ["c_next"], axis=0)
    top = g.node("Squeeze", [hs[-1], "axes_0"], ["top_h"])                      # (N, H)
    outputs = []
    out = top
    if model.attention is not None:
        att = model.attention
        inputs += [helper.make_tensor_value_info("keys", TensorProto.FLOAT, ["rows", "source", H]),
                   helper.make_tensor_value_info("memory", TensorProto.FLOAT, ["rows", "source", None]),
                   helper.make_tensor_value_info("mask", TensorProto.BOOL, ["rows", "source"])]
        q = g.node("Unsqueeze", [top, g.const("axes_1", [1], np.int64)], ["query"])   # (N, 1, H)
        if att.score == "additive":
            qp = g.node("MatMul", [q, g.const("attention_W_q", _f32(att.params["W_q"]))], ["query_proj"])
            qp = g.node("Unsqueeze", [qp, g.const("axes_2", [2], np.int64)], ["query_proj4"])
            mem = g.node("Unsqueeze", ["memory", "axes_1"], ["memory4"])
            hid = g.node("Tanh", [g.node("Add", [qp, mem], ["additive_sum"])], ["additive_hidden"])
            scores = g.node("MatMul", [hid, g.const("attention_v", _f32(att.params["v"]))], ["scores"])
        else:
            mem_t = g.node("Transpose", ["memory"], ["memory_t"], perm=[0, 2, 1])
            scores = g.node("MatMul", [q, mem_t], ["scores"])                      # (N, 1, S)
        valid = g.node("Unsqueeze", ["mask", "axes_1"], ["mask_rows"])
        scores = g.node("Where", [valid, scores, g.const("minus_inf", np.array(-np.inf, np.float32))],
                        ["scores_masked"])
        w = g.node("Softmax", [scores], ["weights_3d"], axis=-1)
        ctx = g.node("MatMul", [w, "keys"], ["context"])                         # (N, 1, H)
        cat = g.node("Concat", [g.node("Squeeze", [ctx, "axes_1"], ["context_2d"]), top],
                     ["context_query"], axis=1)
        out = _dense(g, model.attentional, cat, "attentional")
        g.node("Squeeze", [w, "axes_1"], ["weights"])
        outputs.append(helper.make_tensor_value_info("weights", TensorProto.FLOAT, ["rows", "source"]))
        if model.input_feeding:
            g.node("Identity", [out], ["feed_next"])
    if hasattr(model.output, "embedding"):   # tied: logits = out @ E^T + bias
        emb = _f32(model.output.embedding.params["embeddings"]).T
        z = g.node("MatMul", [out, g.const("output_kernel", emb)], ["logits_xw"])
        logits = g.node("Add", [z, g.const("output_bias", _f32(model.output.params["bias"]))], ["logits"])
    else:
        logits = _dense(g, model.output, out, "logits")
    g.node("LogSoftmax", [logits], ["log_probs"], axis=-1)
    V = c_["tgt_vocab_size"]
    outputs = [helper.make_tensor_value_info("log_probs", TensorProto.FLOAT, ["rows", V]),
               _state_info(helper, TensorProto, model, "h_next", "rows"),
               _state_info(helper, TensorProto, model, "c_next", "rows")] + outputs
    if model.input_feeding:
        outputs.append(helper.make_tensor_value_info("feed_next", TensorProto.FLOAT,
                                                     ["rows", model.feed_size]))
    return _model(g, "decoder_step", inputs, outputs, opset)


def _one_step(g, weights, x, prefix, inits):
    """A single-step LSTM node (canonical ``weights``) from initial states ``inits`` (1, N, H);
    returns (next input (1, N, H), Y_h, Y_c), each state (1, N, H)."""
    from .. import layouts
    w = layouts.convert(weights, "keras", "onnx", "lstm")
    H = weights["recurrent_kernel"].shape[0]
    ins = [x, g.const(prefix + "W", w["W"]), g.const(prefix + "R", w["R"]), g.const(prefix + "B", w["B"]),
           "", inits[0], inits[1]]
    g.node("LSTM", ins, [prefix + "Y", prefix + "Y_h", prefix + "Y_c"], hidden_size=H,
           name=prefix + "lstm")
    nxt = g.node("Squeeze", [prefix + "Y", g.const("axes_1", [1], np.int64)], [prefix + "out"])
    return nxt, prefix + "Y_h", prefix + "Y_c"
