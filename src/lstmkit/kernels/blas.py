"""NumPy's BLAS on one thread for a block of code.

OpenBLAS's worker threads cost more than they save on small matrices, and after each multi-threaded
product they spin for about 0.1 s, taking cores that other threads need (see :mod:`.numba_threads`).
:func:`single_threaded` sets the thread count of every OpenBLAS library loaded (NumPy's, and
SciPy's when it was imported first) to 1 and restores it afterwards, through their own
``*_set_num_threads`` (about 1 us); where NumPy uses another BLAS it goes through
``threadpoolctl`` when that is installed, else it does nothing. The setting is process-wide:
products in other threads meanwhile run on one thread.
"""
import contextlib
import ctypes
import re

_NAMES = ("scipy_openblas_{}_num_threads64_", "scipy_openblas_{}_num_threads",
          "openblas_{}_num_threads64_", "openblas_{}_num_threads")
_libs = None      # [(get, set)] of the OpenBLAS libraries loaded when first asked (found once)


def openblas():
    """[(get_num_threads, set_num_threads)] of every OpenBLAS library in this process, as loaded at
    the first call (NumPy's; SciPy's if it was imported by then: lstmkit's compiled code calls none)."""
    global _libs
    if _libs is None:
        _libs = []
        try:
            with open("/proc/self/maps") as f:
                paths = sorted(set(re.findall(r"(/\S*openblas\S*\.so\S*)", f.read())))
        except OSError:
            paths = []
        for path in paths:
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for name in _NAMES:
                if hasattr(lib, name.format("set")) and hasattr(lib, name.format("get")):
                    get, set_ = getattr(lib, name.format("get")), getattr(lib, name.format("set"))
                    get.restype, set_.argtypes = ctypes.c_int, [ctypes.c_int]
                    _libs.append((get, set_))
                    break
    return _libs


@contextlib.contextmanager
def single_threaded():
    """BLAS on one thread inside the block; as it was after."""
    libs = openblas()
    if not libs:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            yield
            return
        with threadpool_limits(limits=1, user_api="blas"):
            yield
        return
    before = [get() for get, _ in libs]
    for _, set_ in libs:
        set_(1)
    try:
        yield
    finally:
        for (_, set_), n in zip(libs, before):
            set_(n)
