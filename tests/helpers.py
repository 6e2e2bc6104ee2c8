"""Helpers shared by the tests: finite differences and running the seed examples as programs."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


# The torch layer configurations the parity tests run: name -> (num_layers, bidirectional,
# packed sequences, initial state given).
TORCH_CONFIGS = {
    "1layer": (1, False, False, False),
    "1layer-packed-init": (1, False, True, True),
    "2layer-init": (2, False, False, True),
    "bidi-packed": (1, True, True, False),
    "2layer-bidi-packed-init": (2, True, True, True),
}


def central_difference(f, a, idx, eps=1e-6):
    """d f() / d a[idx] by a central difference (use float64); ``a`` is perturbed in place and restored."""
    old = a[idx]
    a[idx] = old + eps
    up = f()
    a[idx] = old - eps
    down = f()
    a[idx] = old
    return (up - down) / (2 * eps)


def numeric_grad(f, a, eps=1e-6):
    """d f() / d a by central differences, one entry of ``a`` at a time."""
    g = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        g[idx] = central_difference(f, a, idx, eps)
    return g


def run_example(name):
    """Run ``examples/<name>`` in a fresh interpreter with this checkout's ``src``; its stdout."""
    env = dict(os.environ, PYTHONPATH=str(EXAMPLES.parent / "src"))
    proc = subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def misaligned(a, offset=16):
    """A copy of ``a`` starting ``offset`` bytes past a 64-byte boundary (NumPy's arrays start on 16)."""
    raw = np.empty(a.nbytes + 128, np.uint8)
    start = -raw.ctypes.data % 64 + offset
    b = raw[start:start + a.nbytes].view(a.dtype).reshape(a.shape)
    b[...] = a
    return b
