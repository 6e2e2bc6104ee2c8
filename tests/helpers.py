"""Helpers shared by the tests: finite differences and running the seed examples as programs."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def numeric_grad(f, a, eps=1e-6):
    """d f() / d a by central differences (use float64), perturbing ``a`` in place one entry at a time."""
    g = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        old = a[idx]
        a[idx] = old + eps
        up = f()
        a[idx] = old - eps
        down = f()
        a[idx] = old
        g[idx] = (up - down) / (2 * eps)
    return g


def run_example(name):
    """Run ``examples/<name>`` in a fresh interpreter with this checkout's ``src``; its stdout."""
    env = dict(os.environ, PYTHONPATH=str(EXAMPLES.parent / "src"))
    proc = subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout
