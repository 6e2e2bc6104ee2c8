"""The peers: the same layer (same weights, same inputs) in lstmkit, PyTorch, Keras 3 and ONNX Runtime.

Each builder takes a :class:`Problem` and returns ``{"fwd": callable, "fwdbwd": callable or None,
"out": callable returning the forward outputs (B, T, U) as NumPy}`` and, for a library that keeps
memory it no longer uses, ``"release"``, a callable that gives it back; or raises ImportError when the
peer is not installed (the runner then skips it). Weights are made once in Keras's canonical layout and
converted here, at the boundary, for each peer.
"""
import os
from dataclasses import dataclass

import numpy as np

GATES = {"lstm": 4, "gru": 3}
THREADS = os.cpu_count()     # threads each peer may use; bench/run.py --threads sets it


@dataclass
class Problem:
    cell: str        # "lstm" or "gru" (GRU: reset_after=True, as Keras 3 and PyTorch)
    B: int
    T: int
    H: int           # hidden size = input size

    def make(self, seed=0):
        rng = np.random.default_rng(seed)
        G = GATES[self.cell]
        s = 1.0 / np.sqrt(self.H)
        f32 = np.float32
        self.x = rng.normal(size=(self.B, self.T, self.H)).astype(f32)
        self.kernel = (rng.uniform(-s, s, (self.H, G * self.H))).astype(f32)
        self.recurrent_kernel = (rng.uniform(-s, s, (self.H, G * self.H))).astype(f32)
        bshape = (G * self.H,) if self.cell == "lstm" else (2, G * self.H)
        self.bias = rng.uniform(-s, s, bshape).astype(f32)
        self.d_out = rng.normal(size=(self.B, self.T, self.H)).astype(f32)
        return self

    def flops(self, backward):
        """Matrix-multiply FLOPs: forward 2*T*B*(I+U)*G*U; the backward does twice the forward's."""
        f = 2.0 * self.T * self.B * (2 * self.H) * GATES[self.cell] * self.H
        return 3 * f if backward else f


# ---------------------------------------------------------------- lstmkit
def build_lstmkit(p):
    from lstmkit import kernels
    from lstmkit.kernels import buffers
    # "fwd" is an inference pass, as PyTorch's (inference_mode) and ONNX Runtime's: nothing kept
    # for a backward pass.
    if p.cell == "lstm":
        def fwd(inference=True):
            return kernels.lstm_forward(p.x, None, None, None, p.kernel, p.recurrent_kernel, p.bias,
                                        inference=inference)

        def fwdbwd():
            cache = fwd(inference=False)[-1]
            return kernels.lstm_backward(cache, p.d_out, None, None)
    else:
        def fwd(inference=True):
            return kernels.gru_forward(p.x, None, None, p.kernel, p.recurrent_kernel, p.bias,
                                       reset_after=True, inference=inference)

        def fwdbwd():
            cache = fwd(inference=False)[-1]
            return kernels.gru_backward(cache, p.d_out, None)
    # "fwd_kept": the forward with the weights packed once and kept across calls, as an ONNX Runtime
    # session keeps its own (kernels.constant_weights: the promise that they do not change).
    kept = kernels.constant_weights([p.kernel, p.recurrent_kernel])

    def fwd_kept():
        with kept:
            return fwd()
    return {"fwd": fwd, "fwdbwd": fwdbwd, "fwd_kept": fwd_kept, "out": lambda: fwd()[0],
            "release": buffers.release}


# ---------------------------------------------------------------- PyTorch
def torch_weights(p):
    """Keras layout -> PyTorch's weight_ih (G*H, I), weight_hh, bias_ih, bias_hh."""
    H = p.H
    if p.cell == "lstm":   # i f g o in both
        return p.kernel.T, p.recurrent_kernel.T, p.bias, np.zeros_like(p.bias)

    def zr_to_rz(w):       # Keras z r h -> PyTorch r z n (last axis)
        return np.concatenate([w[..., H:2 * H], w[..., :H], w[..., 2 * H:]], axis=-1)
    b = zr_to_rz(p.bias)
    return zr_to_rz(p.kernel).T, zr_to_rz(p.recurrent_kernel).T, b[0], b[1]


def build_torch(p):
    import torch
    torch.set_num_threads(THREADS)
    cls = torch.nn.LSTM if p.cell == "lstm" else torch.nn.GRU
    layer = cls(p.H, p.H, batch_first=True)
    w_ih, w_hh, b_ih, b_hh = torch_weights(p)
    with torch.no_grad():
        for name, val in zip(["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"],
                             [w_ih, w_hh, b_ih, b_hh]):
            getattr(layer, name).copy_(torch.from_numpy(np.ascontiguousarray(val)))
    x = torch.from_numpy(p.x)
    xg = x.clone().requires_grad_(True)
    d_out = torch.from_numpy(p.d_out)

    def fwd():
        with torch.inference_mode():
            return layer(x)

    def fwdbwd():
        layer.zero_grad(set_to_none=True)
        xg.grad = None
        out, _ = layer(xg)
        out.backward(d_out)

    return {"fwd": fwd, "fwdbwd": fwdbwd, "out": lambda: fwd()[0].numpy()}


# ---------------------------------------------------------------- Keras 3 (TensorFlow backend)
def build_keras(p):
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    if not keras.__version__.startswith("3.") or keras.backend.backend() != "tensorflow":
        raise ImportError("Keras 3 on the TensorFlow backend needed")
    import tensorflow as tf
    try:
        tf.config.threading.set_intra_op_parallelism_threads(THREADS)
        tf.config.threading.set_inter_op_parallelism_threads(THREADS)
    except RuntimeError:
        pass                      # already initialized by an earlier case
    cls = keras.layers.LSTM if p.cell == "lstm" else keras.layers.GRU
    layer = cls(p.H, return_sequences=True)
    layer.build((p.B, p.T, p.H))
    layer.set_weights([p.kernel, p.recurrent_kernel, p.bias])
    x = tf.constant(p.x)
    d_out = tf.constant(p.d_out)

    @tf.function
    def fwd_graph(x):
        return layer(x)

    @tf.function
    def fwdbwd_graph(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = layer(x)
            loss = tf.reduce_sum(out * d_out)
        return tape.gradient(loss, [x] + layer.trainable_weights)

    return {"fwd": lambda: fwd_graph(x), "fwdbwd": lambda: fwdbwd_graph(x),
            "out": lambda: fwd_graph(x).numpy()}


# ---------------------------------------------------------------- ONNX Runtime (inference only)
def onnx_weights(p):
    """Keras layout -> ONNX W (1, G*H, I), R (1, G*H, H), B (1, 2*G*H)."""
    H = p.H
    if p.cell == "lstm":   # Keras i f c o -> ONNX i o f c
        order = [0, 3, 1, 2]
        b_w, b_r = p.bias, np.zeros_like(p.bias)
    else:                  # Keras z r h == ONNX z r h
        order = [0, 1, 2]
        b_w, b_r = p.bias[0], p.bias[1]

    def reorder(w):
        return np.concatenate([w[..., k * H:(k + 1) * H] for k in order], axis=-1)
    W = reorder(p.kernel).T[None]
    R = reorder(p.recurrent_kernel).T[None]
    B = np.concatenate([reorder(b_w), reorder(b_r)])[None]
    return [np.ascontiguousarray(a, dtype=np.float32) for a in (W, R, B)]


def build_onnxruntime(p):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    W, R, B = onnx_weights(p)
    op = "LSTM" if p.cell == "lstm" else "GRU"
    attrs = {"hidden_size": p.H}
    if p.cell == "gru":
        attrs["linear_before_reset"] = 1     # reset after the matmul, as Keras 3 / PyTorch
    node = helper.make_node(op, ["X", "W", "R", "B"], ["Y"], **attrs)
    graph = helper.make_graph(
        [node], "bench",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [p.T, p.B, p.H])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(W, "W"), numpy_helper.from_array(R, "R"),
                     numpy_helper.from_array(B, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = THREADS
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    x_tm = np.ascontiguousarray(p.x.transpose(1, 0, 2))     # ONNX is time-major

    def fwd():
        return sess.run(None, {"X": x_tm})[0]

    return {"fwd": fwd, "fwdbwd": None, "out": lambda: fwd()[:, 0].transpose(1, 0, 2)}


PEERS = {"lstmkit": build_lstmkit, "torch": build_torch, "keras": build_keras,
         "onnxruntime": build_onnxruntime}
