"""Weights in and out: PyTorch state dicts, TF1 variables and checkpoints, ONNX export, Keras files.

Every layout conversion goes through :mod:`lstmkit.layouts`; this package reads and writes the files
around it. Optional libraries (torch, tensorflow, onnx, h5py) are imported only by the function
that needs them.

    load_torch(source, layer=None)    save_torch(layer, path=None)     torch_module(layer)
    load_tf1(source, layer=None)      save_tf1(layer, path=None)
    to_onnx(layer_or_sequential, path)  seq2seq_to_onnx(translator, encoder_path, decoder_path)
    load_keras(path)                  save_keras(model, path)
"""
from .pytorch import load_torch, save_torch, torch_module
from .tf1 import load_tf1, save_tf1

__all__ = ["load_torch", "save_torch", "torch_module", "load_tf1", "save_tf1", "to_onnx",
           "seq2seq_to_onnx", "load_keras", "save_keras"]


def __getattr__(name):
    if name == "to_onnx":
        from .onnx_export import to_onnx
        return to_onnx
    if name == "seq2seq_to_onnx":
        from .onnx_seq2seq import seq2seq_to_onnx
        return seq2seq_to_onnx
    if name in ("load_keras", "save_keras"):
        from . import keras_files
        return getattr(keras_files, name)
    raise AttributeError(f"module 'lstmkit.interop' has no attribute {name!r}")
