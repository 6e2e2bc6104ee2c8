"""Which implementation runs the recurrent kernels' time loops: compiled (Numba) or plain NumPy.

Both give the same results (to float rounding: the compiled loops round their activations correctly
in float32, NumPy to about one ulp); the tests run every kernel on both. The choice:

* ``LSTMKIT_BACKEND`` in the environment: ``auto`` (default), ``numba`` or ``numpy``;
* ``lstmkit.kernels.set_backend(name)`` at run time, same names;
* ``auto`` is the fastest available: ``numba`` when it is installed (``pip install lstmkit[fast]``),
  else ``numpy``.

The compiled loops run on ``get_num_threads()`` cores (default: all this process may use), set with
``LSTMKIT_NUM_THREADS`` or ``set_num_threads(n)``; the results do not depend on it.

Numba is imported on the first kernel call, never by ``import lstmkit``; its compiled loops are cached
on disk (``cache=True``), so the compilation (seconds) happens once per machine and Python version.
"""
import os
import threading
from functools import partial

import numpy as np

from . import buffers
from .blas import openblas, single_threaded

BACKENDS = ("auto", "numba", "numpy")
_requested = None     # None: read LSTMKIT_BACKEND on first use
_loops = None         # the numba_loops module once imported, False if numba is missing
_threads = None       # None: read LSTMKIT_NUM_THREADS (or count the cores) on first use


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


def set_num_threads(n):
    """Let the compiled loops use ``n`` threads (n >= 1); returns the previous number."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads: n must be an integer >= 1, got {n!r}")
    global _threads
    previous = get_num_threads()
    _threads = n
    return previous


def get_num_threads():
    """How many threads the compiled loops use: ``LSTMKIT_NUM_THREADS``, else the cores this process
    may run on."""
    global _threads
    if _threads is None:
        value = os.environ.get("LSTMKIT_NUM_THREADS", "").strip()
        if value:
            if not value.isdigit() or int(value) < 1:
                raise ValueError(f"LSTMKIT_NUM_THREADS: expected an integer >= 1, got {value!r}")
            _threads = int(value)
        else:
            affinity = getattr(os, "sched_getaffinity", None)
            _threads = len(affinity(0)) if affinity else os.cpu_count() or 1
    return _threads


# Below this many multiply-adds a time loop is not worth splitting across threads (starting them
# costs about 0.1 ms; measured: 2 threads win from B=32 T=20 U=128 on).
PARALLEL_MIN_WORK = 1 << 25

# From this many multiply-adds a product run on lstmkit's threads is split across them (below, one
# BLAS thread is as fast: measured 8x512x2048 0.21 ms split against 0.34 on one thread; 32x256x256
# 0.049 against 0.036 ms).
PRODUCT_MIN_WORK = 1 << 22


def own_products():
    """Whether the kernels' products run on lstmkit's threads now (see :func:`matmuls`): the
    compiled loops have more than one, and NumPy's OpenBLAS is on one thread (``blas.single_threaded()``,
    as the translator trains; ``OPENBLAS_NUM_THREADS=1``) or this is a :func:`constant_weights`
    block (OpenBLAS's spinning threads would slow its packed products down: a training step 50 ->
    133 ms)."""
    if get_num_threads() < 2 or get_backend() != "numba":
        return False
    if getattr(_constant, "packs", None):
        return True
    libs = openblas()
    return bool(libs) and all(get() == 1 for get, _ in libs)


def matmuls(pairs, threaded=None, outs=None):
    """``[a @ b for a, b in pairs]`` (2-D), the products of lstmkit's kernels, into ``outs`` (arrays
    or None) when given, else into memory from :mod:`.buffers`.

    With ``threaded`` True (the products of a call whose time loop is split across lstmkit's
    threads), or None and :func:`own_products`, they run on lstmkit's threads: split across them when
    large (or when ``b`` is too large for one core's cache: with few rows the product streams it, and
    each thread then streams its share), else on one BLAS thread. Never on OpenBLAS's own threads,
    which spin on the cores for about 0.1 s after each product and take them from a loop split across
    them (see :mod:`.blas`). Otherwise: NumPy's products as they are."""
    outs = [buffers.empty((a.shape[0], b.shape[1]), np.result_type(a, b)) if o is None else o
            for (a, b), o in zip(pairs, outs or [None] * len(pairs))]
    rest = _outer_products(pairs, outs, _constant_products(pairs, outs))
    if len(rest) < len(pairs):
        if rest:
            matmuls([pairs[k] for k in rest], threaded, [outs[k] for k in rest])
        return outs
    if threaded is None:
        threaded = own_products()
    if not threaded:
        return [np.matmul(a, b, out=o) for (a, b), o in zip(pairs, outs)]
    from . import numba_threads as threads

    def split(a, b):
        work = a.shape[0] * a.shape[1] * b.shape[1]
        return work >= PRODUCT_MIN_WORK or (b.nbytes > 2 << 20 and work >= PRODUCT_MIN_WORK // 4)

    large = [k for k, (a, b) in enumerate(pairs) if split(a, b)]
    if large:
        done = threads.matmuls([pairs[k] for k in large], get_num_threads(), [outs[k] for k in large])
        for k, product in zip(large, done):
            outs[k] = product
    with single_threaded():
        for k, (a, b) in enumerate(pairs):
            if k not in large:
                np.matmul(a, b, out=outs[k])
    return outs


# Products by constant weights (see :func:`constant_weights`) of at most this many rows run packed.
PACKED_MAX_ROWS = 256

# .packs in a constant_weights block: {id(w): [w, its panels, w.T's]}; .outer: the enclosing blocks'
_constant = threading.local()


class constant_weights:
    """A promise that the matrices ``weights`` do not change while this object is in use. Inside
    ``with`` it, the kernels' products ``a @ w`` and ``a @ w.T`` by one of them (``w`` itself or
    its transpose, not a copy) with at most PACKED_MAX_ROWS rows run on lstmkit's packed
    micro-kernel, and a recurrent loop split across lstmkit's threads reads its recurrent (and
    folded input) matrix from there: each packed once, on first use, and kept for the next ``with``
    of the same object, as an inference session keeps its weights packed (LSTM forward, B=1 T=20
    H=512: 1.39 -> 1.05 ms a call). Every product of the kernels then runs on lstmkit's threads
    (:func:`own_products`). OpenBLAS packs ``w`` anew at each product, which is most of the work of
    a decoder step of a few rows: Seq2Seq's decoding, training and evaluation steps run in one
    (greedy decoding, B=32 H=256: 21.3 -> 17.8 ms; a training step about 55 -> 46 ms). Needs the
    compiled backend on a CPU with AVX-512, else changes nothing. Results differ from NumPy's
    products by float rounding only. Applies to the thread that enters it; blocks nest. The packed
    copies take as much memory as the weights and live as long as the object.

        >>> w = np.ones((3, 4), np.float32)
        >>> frozen = constant_weights([w])
        >>> with frozen:
        ...     y = matmul(np.ones((2, 3), np.float32), w)
        >>> y.tolist()
        [[3.0, 3.0, 3.0, 3.0], [3.0, 3.0, 3.0, 3.0]]
    """

    def __init__(self, weights):
        self._packs = {id(w): [w, None, None] for w in weights
                       if isinstance(w, np.ndarray) and w.ndim == 2 and w.dtype in (np.float32, np.float64)}

    def __enter__(self):
        outer = getattr(_constant, "packs", None)
        _constant.outer = getattr(_constant, "outer", []) + [outer]
        loops = _import_loops() if get_backend() == "numba" else None
        if loops is not None and loops.PACKED:
            outer = {**(outer or {}), **self._packs}     # the entries (lists) are shared: packs stay
        _constant.packs = outer
        return self

    def __exit__(self, *exc):
        _constant.packs = _constant.outer.pop()


def _constant_products(pairs, outs):
    """Compute into ``outs`` the products of ``pairs`` by constant weights; return the indices of
    the others."""
    packs = getattr(_constant, "packs", None)
    if not packs:
        return range(len(pairs))
    from . import numba_matmul, numba_threads
    items, rest = [], []
    for k, (a, b) in enumerate(pairs):
        panels = None
        if a.shape[0] <= PACKED_MAX_ROWS and a.dtype == b.dtype:
            panels = _panels(packs, b, numba_matmul.pack)
        if panels is None:
            rest.append(k)
            continue
        if a.strides[1] != a.itemsize:
            a = np.ascontiguousarray(a)
        items.append((a, panels, outs[k]))
    if items:
        numba_threads.packed_matmuls(items, get_num_threads(), PRODUCT_MIN_WORK)
    return rest


def _outer_products(pairs, outs, indices):
    """Compute into ``outs`` the products among ``pairs[indices]`` over a single term (``a`` of one
    column: a weight gradient over one step of one sequence), one multiplication each, where
    NumPy's matmul takes a slow path (128 x 1 x 512: 70 us, against 1); return the other indices."""
    rest = []
    for k in indices:
        a, b = pairs[k]
        if a.shape[1] == 1:
            np.multiply(a, b, out=outs[k])
        else:
            rest.append(k)
    return rest


def _panels(packs, b, pack):
    """The panels of ``b`` (packed on first use) where it is a constant weight ``w`` or ``w.T`` (a
    backward pass multiplies by the transpose), else None."""
    entry, slot = packs.get(id(b)), 1
    if entry is None or entry[0] is not b:
        w, slot = b.base, 2
        entry = packs.get(id(w)) if w is not None else None
        if (entry is None or entry[0] is not w or b.shape != w.shape[::-1] or b.strides != w.strides[::-1]
                or b.ctypes.data != w.ctypes.data):
            return None
    if entry[slot] is None:
        entry[slot] = pack(b)
    return entry[slot]


def constant_panels(w):
    """``numba_matmul.pack(w)``, packed once per :func:`constant_weights` block, where ``w`` is one
    of its weights or the transpose of one; else None."""
    packs = getattr(_constant, "packs", None)
    if not packs:
        return None
    from . import numba_matmul
    return _panels(packs, w, numba_matmul.pack)


def is_constant(w):
    """Whether ``w`` is one of the weights of the :func:`constant_weights` block this thread is in."""
    entry = (getattr(_constant, "packs", None) or {}).get(id(w))
    return entry is not None and entry[0] is w


# From this many elements a row-wise compiled pass (log-softmax, the cross-entropy's gradient) is
# split across lstmkit's threads while they do the products (measured: 1024 x 8000 log-softmax
# 8.6 -> 4.5 ms).
ROWS_MIN_SIZE = 1 << 20


def by_rows(fn, arrays):
    """``fn(*arrays)`` for a compiled ``fn`` that treats each row of its arrays (the same number of
    rows) on its own: split by rows across lstmkit's threads when :func:`own_products` (otherwise
    OpenBLAS's spinning threads would take the cores) and the first array is large."""
    n = get_num_threads()
    if arrays[0].size < ROWS_MIN_SIZE or not own_products():
        fn(*arrays)
        return
    from . import numba_threads as threads
    threads.run_tasks([partial(fn, *(a[r0:r1] for a in arrays))
                       for r0, r1 in threads.split_range(arrays[0].shape[0], n, 1)])


def matmul(a, b, threaded=None, out=None):
    """``a @ b`` (into ``out``), as :func:`matmuls`."""
    return matmuls([(a, b)], threaded, None if out is None else [out])[0]
