"""Which implementation runs the recurrent kernels' time loops: compiled (Numba) or plain NumPy.

Both give the same results (to float rounding: the compiled loops round their activations correctly
in float32, NumPy to about one ulp); the tests run every kernel on both. The choice:

* ``LSTMKIT_BACKEND`` in the environment: ``auto`` (default), ``numba`` or ``numpy``;
* ``lstmkit.kernels.set_backend(name)`` at run time, same names;
* ``auto`` is the fastest available: ``numba`` when it is installed (``pip install lstmkit[fast]``),
  else ``numpy``.

Numba is imported on the first kernel call, never by ``import lstmkit``; its compiled loops are cached
on disk (``cache=True``), so the compilation (seconds) happens once per machine and Python version.
"""
import os

BACKENDS = ("auto", "numba", "numpy")
_requested = None     # None: read LSTMKIT_BACKEND on first use
_loops = None         # the numba_loops module once imported, False if numba is missing


def set_backend(name):
    """Select ``"auto"``, ``"numba"`` or ``"numpy"`` for every later kernel call; returns the previous
    request. ``"numba"`` raises ImportError at once when Numba is not installed."""
    if name not in BACKENDS:
        raise ValueError(f"backend: expected one of {', '.join(BACKENDS)}, got {name!r}")
    global _requested
    previous = requested()
    if name == "numba" and _import_loops() is None:
        raise ImportError("backend 'numba' needs Numba: pip install lstmkit[fast]")
    _requested = name
    return previous


def requested():
    global _requested
    if _requested is None:
        name = os.environ.get("LSTMKIT_BACKEND", "auto").strip().lower() or "auto"
        if name not in BACKENDS:
            raise ValueError(f"LSTMKIT_BACKEND: expected one of {', '.join(BACKENDS)}, got {name!r}")
        _requested = name
    return _requested


def get_backend():
    """The backend the kernels use now: ``"numba"`` or ``"numpy"``."""
    name = requested()
    if name == "numpy":
        return "numpy"
    if _import_loops() is None:
        if name == "numba":
            raise ImportError("LSTMKIT_BACKEND=numba needs Numba: pip install lstmkit[fast]")
        return "numpy"
    return "numba"


def compiled_loops(dtype, *activation_names):
    """The compiled loops module if they should run for this dtype and these activations, else None."""
    if get_backend() != "numba":
        return None
    loops = _import_loops()
    if not loops.supports(dtype, activation_names):
        return None
    return loops


def _import_loops():
    global _loops
    if _loops is None:
        try:
            from . import numba_loops
            _loops = numba_loops
        except ImportError:
            _loops = False
    return _loops or None
