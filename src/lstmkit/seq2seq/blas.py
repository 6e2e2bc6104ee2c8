"""Run NumPy's BLAS on one thread while a small model trains.

The matrices of a small recurrent model are tiny (a few hundred rows); OpenBLAS's worker threads then
cost more than they save, and on a machine whose cores are busy with other work they spin and wait:
we measured a training step 15-20x slower with the default thread count than with one thread on a
loaded 2-core machine. ``single_threaded_blas()`` is :func:`lstmkit.kernels.blas.single_threaded`.
"""
from ..kernels.blas import single_threaded as single_threaded_blas

__all__ = ["single_threaded_blas"]
