"""The threads of the compiled kernels: a pool, and matrix products split across it.

NumPy's OpenBLAS keeps its worker threads spinning for about 0.1 s after each multi-threaded
product. A time loop split across the cores in that window shares a core with a spinning thread
and runs slower than on one core. So while the kernels use several threads of their own, their
large products run here instead: the rows split across the same threads, each a one-thread BLAS
product (OpenBLAS told so for the duration), which leaves no spinning thread behind. Where NumPy
uses another BLAS, the products run as they are.
"""
import ctypes
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np

_pool = None
_pool_size = 0
_lock = threading.Lock()


def _workers(n):
    global _pool, _pool_size
    with _lock:
        if _pool_size < n:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool, _pool_size = ThreadPoolExecutor(n, thread_name_prefix="lstmkit"), n
        return _pool


def run(tasks):
    """Run the callables ``tasks`` at once, the first on this thread; re-raise the first error."""
    futures = [_workers(len(tasks) - 1).submit(task) for task in tasks[1:]] if len(tasks) > 1 else []
    try:
        tasks[0]()
    finally:
        for f in futures:
            f.result()


_OPENBLAS_NAMES = ("scipy_openblas_{}_num_threads64_", "scipy_openblas_{}_num_threads",
                   "openblas_{}_num_threads64_", "openblas_{}_num_threads")
_blas = None      # (get, set) of the OpenBLAS NumPy uses; False when there is none


def _openblas():
    global _blas
    if _blas is None:
        _blas = False
        try:
            with open("/proc/self/maps") as f:
                paths = sorted(set(re.findall(r"(/\S*openblas\S*\.so\S*)", f.read())))
            for path in paths:
                lib = ctypes.CDLL(path)
                for name in _OPENBLAS_NAMES:
                    if hasattr(lib, name.format("set")) and hasattr(lib, name.format("get")):
                        get, set_ = getattr(lib, name.format("get")), getattr(lib, name.format("set"))
                        get.restype, set_.argtypes = ctypes.c_int, [ctypes.c_int]
                        _blas = (get, set_)
                        return _blas
        except OSError:
            pass
    return _blas


@contextmanager
def one_blas_thread():
    """OpenBLAS on one thread (per calling thread's call) inside the block; as it was after."""
    blas = _openblas()
    if not blas:
        yield
        return
    get, set_ = blas
    before = get()
    set_(1)
    try:
        yield
    finally:
        set_(before)


def matmul(a, b, n):
    """a @ b (2-D), a's rows split across ``n`` threads, each a one-thread BLAS product."""
    out = np.empty((a.shape[0], b.shape[1]), np.result_type(a, b))
    step = -(-a.shape[0] // n)
    with one_blas_thread():
        run([lambda i=i: np.matmul(a[i:i + step], b, out=out[i:i + step]) for i in range(0, a.shape[0], step)])
    return out
