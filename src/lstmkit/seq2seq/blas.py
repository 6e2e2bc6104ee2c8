"""Run NumPy's BLAS on one thread while a small model trains.

The matrices of a small recurrent model are tiny (a few hundred rows); OpenBLAS's worker threads then
cost more than they save, and on a machine whose cores are busy with other work they spin and wait:
we measured a training step 15-20x slower with the default thread count than with one thread on a
loaded 2-core machine. :func:`single_threaded_blas` sets OpenBLAS's thread count to 1 (through
``threadpoolctl`` when installed, else by calling ``openblas_set_num_threads`` of the library NumPy
loaded) and restores it afterwards; where neither works it does nothing.
"""
import contextlib
import ctypes


def _openblas_libs():
    libs = []
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line}
    except OSError:
        return libs
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_openblas", "openblas", ""):
            for suffix in ("64_", ""):
                setter = getattr(lib, f"{prefix}_set_num_threads{suffix}" if prefix else
                                 f"openblas_set_num_threads{suffix}", None)
                getter = getattr(lib, f"{prefix}_get_num_threads{suffix}" if prefix else
                                 f"openblas_get_num_threads{suffix}", None)
                if setter is not None and getter is not None:
                    libs.append((setter, getter))
                    break
            else:
                continue
            break
    return libs


@contextlib.contextmanager
def single_threaded_blas():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    if threadpool_limits is not None:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
        return
    libs = _openblas_libs()
    before = [getter() for _, getter in libs]
    for setter, _ in libs:
        setter(1)
    try:
        yield
    finally:
        for (setter, _), n in zip(libs, before):
            setter(n)
