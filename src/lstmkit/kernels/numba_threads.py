"""Running one compiled time loop on several cores.

A recurrent layer's steps are sequential, but within a step the hidden units are independent once
the previous state is known. Each thread therefore owns a contiguous range of units, for every gate,
and with it the matching columns of the recurrent matrix, packed once and kept in that core's cache
for the whole call. After each step a thread publishes how many steps it has finished, and before
the next it waits until every thread has finished as many (one barrier a step, about 0.2 us on two
cores): the forward's product needs the whole previous state, the backward's the whole gate
gradient of the step.

Threads wait by spinning (with the CPU's pause instruction), and yield the core after a while so
that an oversubscribed machine still makes progress. The threads are Python threads running
``nogil`` compiled code, run by ``threads.run``.
"""
from functools import partial

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from . import threads

JIT = dict(cache=True, nogil=True, error_model="numpy")
_STRIDE = 16          # one 128-byte slot a thread: no two threads' counters share a cache line
_SPINS = 1 << 14      # pause instructions before yielding the core (~ tens of microseconds)


@intrinsic
def _load_acquire(typingctx, arr, idx):
    def codegen(context, builder, signature, args):
        ptr = builder.gep(context.make_array(signature.args[0])(context, builder, args[0]).data, [args[1]])
        return builder.load_atomic(ptr, "acquire", 8)
    return types.int64(arr, idx), codegen


@intrinsic
def _store_release(typingctx, arr, idx, value):
    def codegen(context, builder, signature, args):
        ptr = builder.gep(context.make_array(signature.args[0])(context, builder, args[0]).data, [args[1]])
        builder.store_atomic(args[2], ptr, "release", 8)
        return context.get_dummy_value()
    return types.void(arr, idx, value), codegen


@intrinsic
def _pause(typingctx):
    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                            "llvm.x86.sse2.pause")
        builder.call(fn, [])
        return context.get_dummy_value()
    return types.void(), codegen


@intrinsic
def _sched_yield(typingctx):
    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []),
                                            "sched_yield")
        return builder.call(fn, [])
    return types.int32(), codegen


def new_sync(n):
    """The shared counters of ``n`` threads, and one more slot: nonzero when a thread failed."""
    return np.zeros((n + 1) * _STRIDE, np.int64)


@njit(inline="always", **JIT)
def arrive_and_wait(sync, k, n, steps):
    """Thread ``k`` has finished ``steps`` steps; wait until all ``n`` have. False when a thread failed
    (the caller returns at once)."""
    if n == 1:
        return True
    _store_release(sync, k * _STRIDE, np.int64(steps))
    failed = n * _STRIDE
    for j in range(n):
        spins = 0
        while _load_acquire(sync, j * _STRIDE) < steps:
            if _load_acquire(sync, failed) != 0:
                return False
            spins += 1
            if spins < _SPINS:
                _pause()
            else:
                _sched_yield()
    return True


def unit_ranges(U, n, align):
    """Split units 0..U into at most ``n`` contiguous ranges whose bounds are multiples of ``align``
    (the packed panel width, so that no thread's panels are partial) except the last."""
    chunk = -(-U // n)
    chunk = -(-chunk // align) * align
    return [(u0, min(u0 + chunk, U)) for u0 in range(0, U, chunk)]


def run(parts):
    """Run ``parts`` (callables ``part(sync)``, one per thread) at once (``threads.run``). Threads that
    wait for each other call :func:`arrive_and_wait` after each step with the same counts; if one
    fails, the others stop waiting and its error is raised."""
    sync = new_sync(len(parts))

    def guarded(part):
        try:
            part(sync)
        except BaseException:
            sync[len(parts) * _STRIDE] = 1      # releases the others from their waits
            raise

    threads.run([partial(guarded, part) for part in parts])
