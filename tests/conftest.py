"""Shared test set-up: the oracles' environment, and skips when an oracle or the shared data is absent.

TensorFlow must see ``TF_USE_LEGACY_KERAS=1`` before it is first imported, so that ``tf.compat.v1.nn``'s
cells (which live in tf-keras) work; ``import keras`` still gives Keras 3.
"""
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")   # exact float32 parity: no oneDNN reordering
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def torch():
    return pytest.importorskip("torch")


@pytest.fixture(scope="session")
def tf():
    return pytest.importorskip("tensorflow")


@pytest.fixture(scope="session")
def keras3():
    keras = pytest.importorskip("keras")
    if not keras.__version__.startswith("3."):
        pytest.skip(f"Keras 3 needed, found {keras.__version__}")
    return keras


@pytest.fixture(scope="session")
def multi30k_dir():
    path = SHARED_DATA / "multi30k"
    if not (path / "train.de.gz").exists():
        pytest.skip("Multi30k data not present (../shared/data/multi30k)")
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _kernel_backends():
    try:
        import numba  # noqa: F401
        return ["numpy", "numba"]
    except ImportError:
        return ["numpy", pytest.param("numba", marks=pytest.mark.skip(reason="numba not installed"))]


@pytest.fixture(params=_kernel_backends())
def kernel_backend(request):
    """Run the test once per kernel backend (plain NumPy loops, compiled Numba loops)."""
    from lstmkit.kernels import backend
    previous = backend.set_backend(request.param)
    yield request.param
    backend.set_backend(previous)
