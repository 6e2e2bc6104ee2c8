"""The safetensors file format, read and written with NumPy alone (no ``safetensors`` package).

A file is: 8 bytes little-endian header length N, N bytes of JSON
``{name: {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, "__metadata__": {...}}``,
then the raw little-endian tensor bytes; offsets count from the end of the header. Nothing in it can
execute code.
"""
import json
import os
import struct

import numpy as np

_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
           "I8": "i1", "U8": "u1", "BOOL": "?"}
_CODES = {np.dtype(v): k for k, v in _DTYPES.items()}


def load(path):
    """Read a safetensors file into a dict of NumPy arrays (BF16 becomes float32)."""
    name = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"path: {name!r} is too short for a safetensors file ({len(data)} bytes)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise ValueError(f"path: {name!r} is truncated or not a safetensors file (header of {n} bytes, "
                         f"file of {len(data)})")
    try:
        header = json.loads(data[8:8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"path: {name!r} is not a safetensors file (bad header: {err})") from None
    if not isinstance(header, dict):
        raise ValueError(f"path: {name!r} is not a safetensors file (header is not a JSON object)")
    body = data[8 + n:]
    out = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        code, shape, (begin, end) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
        if end > len(body):
            raise ValueError(f"path: {name!r} is truncated: tensor {key!r} ends at byte {end}, the "
                             f"data holds {len(body)}")
        raw = body[begin:end]
        if code == "BF16":
            arr = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        elif code in _DTYPES:
            arr = np.frombuffer(raw, _DTYPES[code])
        else:
            raise ValueError(f"path: {name!r}: tensor {key!r} has unsupported dtype {code}")
        if arr.size != int(np.prod(shape)):
            raise ValueError(f"path: {name!r}: tensor {key!r} has {arr.size} values for shape {shape}")
        out[key] = arr.reshape(shape).astype(arr.dtype.newbyteorder("="))
    return out


def save(tensors, path, metadata=None):
    """Write a dict of arrays as a safetensors file (keys sorted, as the reference writer does)."""
    header, chunks, offset = {}, [], 0
    for key in sorted(tensors):
        arr = np.ascontiguousarray(tensors[key])
        code = _CODES.get(np.dtype(arr.dtype.str.replace(">", "<")))
        if code is None:
            raise TypeError(f"tensors[{key!r}]: dtype {arr.dtype} cannot be stored in safetensors")
        raw = arr.astype(_DTYPES[code]).tobytes()
        header[key] = {"dtype": code, "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)    # keep the data 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for raw in chunks:
            f.write(raw)
