"""Running the compiled kernels on several cores: a barrier a step, a pool of threads, products.

**Time loops.** A recurrent layer's steps are sequential, but the rows of a batch are independent,
and so, within a step, are the hidden units once the previous state is known. A loop is split by
rows (each thread runs its rows alone) or, when the recurrent matrix is too large for one core's
cache, by units: each thread then owns a contiguous range of units, for every gate, and with it the
matching columns of the matrix, packed once and kept in its core's cache for the whole call. After
each step a thread publishes how many steps it has finished, and before the next it waits until
every thread has finished as many (one barrier a step, about 0.2 us on two cores): the forward's
product needs the whole previous state, the backward's the whole gate gradient of the step.

Threads wait by spinning (with the CPU's pause instruction), and yield the core after a while so
that an oversubscribed machine still makes progress.

**The pool.** The threads are Python threads running ``nogil`` compiled code. Waking a sleeping
thread takes 50-360 us here, as long as a small loop, so a worker that has finished spins for about
0.35 ms (compiled, without the GIL) before it sleeps: back-to-back calls, and the products and loop
of one call, find it awake. A thread that waits for the GIL sleeps as well, so the caller hands
the GIL over without contention: it tells the workers to start from compiled code, without the
GIL, and waits there until each has entered its part (each part counts itself in ``sync`` with
:func:`started` first). A worker likewise reports a finished task only once it has let go of the
GIL. (Handing over in Python cost about 45 us a call, most of a small loop.)

**Products.** NumPy's OpenBLAS keeps its worker threads spinning for about 0.1 s after each
multi-threaded product. A time loop split across the cores in that window shares a core with a
spinning thread and runs slower than on one core. So the products of a call whose loop is split,
and every product of the kernels while OpenBLAS is on one thread (the translator trains so: OpenBLAS's
spinning threads are slow on a busy machine), run here instead (``backend.matmuls``): rows (or, with
few rows, columns) split across this pool, each a one-thread BLAS product (OpenBLAS told so for the
duration), which leaves no spinning thread behind. Where NumPy uses another BLAS, the products run
as they are.
"""
import os
import platform
import sys
import threading
from functools import partial

import numpy as np
from llvmlite import ir
from numba import literal_unroll, njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from . import buffers
from .blas import single_threaded
from .numba_matmul import packed_matmul, scratch

JIT = dict(cache=True, nogil=True, error_model="numpy")
_STRIDE = 16          # one 128-byte slot a thread: no two threads' counters share a cache line
_SPINS = 1 << 14       # pause instructions before yielding the core (about 0.2 ms here)
_IDLE_SPINS = 1 << 15  # pause instructions a finished worker (or a waiting caller) spins (0.35 ms:
                       # a decoding step's products come 0.1-0.2 ms apart; with 0.2 ms greedy
                       # decoding took 21.3 ms, with 0.35 ms 18.3)
_GRACE_SPINS = 1 << 10  # pauses a caller waits, without the GIL, for workers to start tasks that
                        # do not count themselves (products: a worker is inside BLAS in a few us)


@intrinsic
def _load_acquire(typingctx, arr, idx):
    def codegen(context, builder, signature, args):
        ptr = builder.gep(context.make_array(signature.args[0])(context, builder, args[0]).data, [args[1]])
        return builder.load_atomic(ptr, "acquire", 8)
    return types.int64(arr, idx), codegen


@intrinsic
def _fetch_add(typingctx, arr, idx, value):
    def codegen(context, builder, signature, args):
        ptr = builder.gep(context.make_array(signature.args[0])(context, builder, args[0]).data, [args[1]])
        return builder.atomic_rmw("add", ptr, args[2], "seq_cst")
    return types.int64(arr, idx, value), codegen


@intrinsic
def _store_release(typingctx, arr, idx, value):
    def codegen(context, builder, signature, args):
        ptr = builder.gep(context.make_array(signature.args[0])(context, builder, args[0]).data, [args[1]])
        builder.store_atomic(args[2], ptr, "release", 8)
        return context.get_dummy_value()
    return types.void(arr, idx, value), codegen


_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")


@intrinsic
def _pause(typingctx):
    """The CPU's spin-wait hint (x86 ``pause``; nothing elsewhere)."""
    def codegen(context, builder, signature, args):
        if _X86:
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                                "llvm.x86.sse2.pause")
            builder.call(fn, [])
        return context.get_dummy_value()
    return types.void(), codegen


@intrinsic
def _sched_yield(typingctx):
    """Give the core to another thread (POSIX ``sched_yield``; nothing on Windows)."""
    def codegen(context, builder, signature, args):
        if sys.platform == "win32":
            return ir.Constant(ir.IntType(32), 0)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []),
                                            "sched_yield")
        return builder.call(fn, [])
    return types.int32(), codegen


def new_sync(n):
    """The shared counters of ``n`` threads: how many have started, the steps each has finished,
    and whether one failed (nonzero)."""
    return np.zeros((n + 2) * _STRIDE, np.int64)


@njit(inline="always", **JIT)
def started(sync):
    """A part has started (the first thing each part does: the caller waits for it)."""
    _fetch_add(sync, 0, np.int64(1))


@njit(inline="always", **JIT)
def arrive_and_wait(sync, k, n, steps):
    """Thread ``k`` has finished ``steps`` steps; wait until all ``n`` have. False when a thread failed
    (the caller returns at once)."""
    if n == 1:
        return True
    _store_release(sync, (k + 1) * _STRIDE, np.int64(steps))
    failed = (n + 1) * _STRIDE
    for j in range(n):
        spins = 0
        while _load_acquire(sync, (j + 1) * _STRIDE) < steps:
            if _load_acquire(sync, failed) != 0:
                return False
            spins += 1
            if spins < _SPINS:
                _pause()
            else:
                _sched_yield()
    return True


def split_range(N, n, align):
    """Split 0..N (rows or units) into at most ``n`` contiguous ranges whose bounds are multiples of
    ``align`` (for units the packed panel width, so that no thread's panels are partial) except the
    last."""
    chunk = -(-N // n)
    chunk = -(-chunk // align) * align
    return [(i, min(i + chunk, N)) for i in range(0, N, chunk)]


_GO, _DONE = 0, _STRIDE     # a worker's flags: told to start (1), number of the last task done


@njit(**JIT)
def _spin_until_reached(flags, idx, value, spins):
    """Wait (spinning, no GIL) up to ``spins`` pauses for flags[idx] >= value; whether it came."""
    for _ in range(spins):
        if _load_acquire(flags, idx) >= value:
            return True
        _pause()
    return _load_acquire(flags, idx) >= value


@njit(**JIT)
def _idle(flags, finished, spins):
    """A worker, without the GIL: report its task number ``finished`` done (0: none; now that the
    caller can take the GIL without waiting for it), then wait up to ``spins`` pauses for the next;
    whether one came."""
    if finished:
        _store_release(flags, _DONE, finished)
    return _spin_until_reached(flags, _GO, 1, spins)


@njit(**JIT)
def _go_and_wait(flags, sync, parts, spins):
    """Tell the workers (their ``flags``, a tuple) to start, then wait without the GIL until they
    have all counted themselves in ``sync`` (of ``parts`` parts), one has failed, or ``spins``
    pauses have passed."""
    for f in flags:
        _store_release(f, _GO, np.int64(1))
    failed = (parts + 1) * _STRIDE
    for _ in range(spins):
        if _load_acquire(sync, 0) >= len(flags) or _load_acquire(sync, failed) != 0:
            return
        _pause()


class _Worker:
    """One pool thread: runs a task when told, spins a while after it, then sleeps."""

    def __init__(self):
        self.flags = np.zeros(2 * _STRIDE, np.int64)
        self.task = self.error = None
        self.number = 0         # of the task given last: DONE holds the number of the last done
        self.asleep = self.woken = False
        self.wake = threading.Condition()
        self.finished = threading.Event()
        threading.Thread(target=self._serve, name="lstmkit", daemon=True).start()

    def _serve(self):
        finished = 0
        while True:
            if not _idle(self.flags, finished, _IDLE_SPINS):
                finished = 0
                with self.wake:
                    self.asleep = True
                    while self.flags[_GO] == 0 and not self.woken:
                        self.wake.wait()
                    self.asleep = self.woken = False
                continue            # woken before GO, perhaps: wait for it spinning
            self.flags[_GO] = 0
            number = self.number
            try:
                self.task()
            except BaseException as e:      # handed to the caller
                self.error = e
            self.task = None
            self.finished.set()
            finished = number

    def assign(self, task):
        """Give the worker its task; it starts when GO is set (``_go_and_wait``)."""
        self.task, self.error = task, None
        self.number += 1
        self.finished.clear()

    def rouse(self):
        """Wake the worker if it sleeps (it then spins, waiting for GO)."""
        if self.asleep:
            with self.wake:
                self.woken = True
                self.wake.notify()

    def join(self):
        if not _spin_until_reached(self.flags, _DONE, self.number, _IDLE_SPINS):
            self.finished.wait()
        if self.error is not None:
            raise self.error


_workers = []
_lock = threading.Lock()


def _forget_workers():
    """In a forked child the workers' threads do not exist: start new ones when needed."""
    global _workers, _lock
    _workers, _lock = [], threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_workers)


def run_tasks(tasks, sync=None):
    """Run the callables ``tasks`` at once, the first on this thread; re-raise the first error.
    With ``sync`` (``new_sync(len(tasks))``) every task calls :func:`started` with it first, and
    the caller waits for the others to do so before it runs its own. Calls from several threads at
    once are run one after the other."""
    if len(tasks) == 1:
        tasks[0]()
        return
    with _lock:
        while len(_workers) < len(tasks) - 1:
            _workers.append(_Worker())
        workers = _workers[:len(tasks) - 1]
        for worker, task in zip(workers, tasks[1:]):
            worker.assign(task)
            worker.rouse()              # a sleeping worker takes long to wake: start it now
        counted = sync is not None
        _go_and_wait(tuple(w.flags for w in workers), sync if counted else new_sync(len(tasks)), len(tasks),
                     _IDLE_SPINS if counted else _GRACE_SPINS)
        for worker in workers:          # one that fell asleep before GO was set
            worker.rouse()
        try:
            tasks[0]()
        finally:
            errors = []
            for worker in workers:
                try:
                    worker.join()
                except BaseException as e:
                    errors.append(e)
        if errors:
            raise errors[0]


def run(parts):
    """Run ``parts`` (callables ``part(sync)``, one per thread) at once (``run_tasks``). Each part
    calls :func:`started` first; threads that wait for each other call :func:`arrive_and_wait`
    after each step with the same counts; if one fails, the others stop waiting and its error is
    raised."""
    sync = new_sync(len(parts))

    def guarded(part):
        try:
            part(sync)
        except BaseException:
            sync[(len(parts) + 1) * _STRIDE] = 1      # releases the others from their waits
            raise

    run_tasks([partial(guarded, part) for part in parts], sync)


# ----------------------------------------------------------------------------- products
def _product_tasks(a, b, out, n):
    """The products (one BLAS thread each) that compute out = a @ b on ``n`` threads: a's rows split
    (each thread reads its share of a and all of b), or b's columns (all of a, its share of b), which
    reads less where b is wider than a is tall (a weight gradient: x.T (512, 12800) @ dz (12800,
    2048): 76 -> 74 ms); never shares under 64 wide."""
    M, N = out.shape
    if (M >= N and M >= 64 * n) or N < 64 * n:
        step = -(-M // n)
        return [partial(np.matmul, a[i:i + step], b, out=out[i:i + step]) for i in range(0, M, step)]
    step = -(-N // n // 16) * 16
    return [partial(np.matmul, a, b[:, j:j + step], out=out[:, j:j + step]) for j in range(0, N, step)]


def matmuls(pairs, n, outs=None):
    """[a @ b for (a, b) in pairs] (2-D) on ``n`` threads, with one start of them for all; into
    ``outs`` (arrays, or None for new ones) when given."""
    outs = [buffers.empty((a.shape[0], b.shape[1]), np.result_type(a, b)) if o is None else o
            for (a, b), o in zip(pairs, outs or [None] * len(pairs))]
    shares = [[] for _ in range(n)]
    for (a, b), out in zip(pairs, outs):
        for k, task in enumerate(_product_tasks(a, b, out, n)):
            shares[k].append(task)

    def run_share(share):
        for task in share:
            task()

    with single_threaded():
        run_tasks([partial(run_share, share) for share in shares if share])
    return outs


def packed_matmuls(items, n, min_work):
    """out = a @ w for each ``(a, P, out)``, ``P = numba_matmul.pack(w)``, on up to ``n`` threads
    with one start of them for all: a product of ``min_work`` multiply-adds or more is split by its
    panels (each thread computes its columns, reading its share of P), a smaller one goes whole to
    the thread with the least work so far."""
    shares, load = [[] for _ in range(n)], [0] * n
    for a, P, out in items:
        work = a.shape[0] * a.shape[1] * out.shape[1]
        NR = P.shape[2]
        for p0, p1 in split_range(P.shape[0], n if work >= min_work else 1, 1):
            k = load.index(min(load))
            shares[k].append((a, P[p0:p1], out[:, p0 * NR:p1 * NR]))
            load[k] += work * (p1 - p0) // P.shape[0]

    run_tasks([partial(_packed_share, tuple(share), scratch(share[0][1].dtype)) for share in shares if share])


@njit(**JIT)
def _packed_share(items, tmp):
    """One thread's products (a tuple of (a, P, out)), all without the GIL (a thread that needs it
    between two of them would wait for the caller to let it go, and waking it costs 50 us here)."""
    for item in literal_unroll(items):
        packed_matmul(item[0], item[1], item[2], tmp)
