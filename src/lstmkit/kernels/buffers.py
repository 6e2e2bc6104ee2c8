"""Memory for the kernels' large arrays, reused once nothing refers to it any more.

A large NumPy array is memory fresh from the operating system: each 4 KiB page faults on first touch.
On a virtual machine a fault costs about 2 us, and a recurrent layer writes megabytes per call. An
LSTM forward and backward at B=128 T=20 H=128 took 10.4 ms, 2 of them in its 1,300 faults.

``empty(shape, dtype)`` hands out a view of a byte buffer kept here. A buffer that nothing refers to
any more (no array, view or cache built on it: only this module) is handed out again for a request
of its size class. Only where the memory comes from changes, never a result. Small arrays come from
NumPy as usual. Idle buffers are kept up to ``KEEP_BYTES`` in all, the oldest dropped first;
:func:`release` drops them all.

    >>> a = empty((256, 256), np.float32)
    >>> address = a.ctypes.data
    >>> del a                          # nothing refers to the buffer any more
    >>> empty((256, 256), np.float32).ctypes.data == address
    True
"""
import math
import os
import sys
import threading

import numpy as np

MIN_BYTES = 1 << 16      # smaller arrays: NumPy's (malloc's heap hands them out without faults)
KEEP_BYTES = 1 << 26     # idle buffers kept at most, in all (a translator training step reuses 54 MB)
PER_SIZE = 64            # buffers kept per size class, busy or idle (a decoder's steps each hold some)
ALIGN = 64               # bytes: a cache line, and the widest vector

_lock = threading.Lock()
# size class (bytes) -> its entries, oldest first; classes least recently used first. An entry is
# (owner, aligned): the uint8 array that owns the memory and its view of ``size`` bytes from a
# 64-byte boundary. Every array handed out is a view whose base is the owner.
_pool = {}
_held = 0                 # bytes of all the entries, busy or idle


def _entry(size):
    owner = np.empty(size + ALIGN, np.uint8)
    start = -owner.ctypes.data % ALIGN
    return owner, owner[start:start + size]


def _refcount(entries, k):
    return sys.getrefcount(entries[k][0])


def _refcounts(entries):
    return [_refcount(entries, k) for k in range(len(entries))]


def _idle_refcount():
    """The count ``_refcount`` gives an owner that only its entry refers to, or None where a view
    of it does not count higher (nothing is then reused)."""
    entries = [_entry(0)]
    idle = _refcount(entries, 0)
    view = entries[0][1][:0].view(np.float32)
    return idle if _refcount(entries, 0) > idle and view.base is entries[0][0] else None


_IDLE = _idle_refcount()


def _size_class(nbytes):
    """nbytes rounded up to an eighth of the power of two below it (at most 12.5 % more)."""
    step = 1 << max(nbytes.bit_length() - 4, 12)
    return -(-nbytes // step) * step


def _claim(size):
    global _held
    entries = _pool.pop(size, [])
    _pool[size] = entries                      # now the most recently used class
    for k in range(len(entries)):               # the idle ones are first: claimed go last
        if _refcount(entries, k) == _IDLE:
            entries.append(entries.pop(k))
            return entries[-1][1]
    entries.append(_entry(size))
    _held += size
    if len(entries) > PER_SIZE:
        del entries[0]          # busy or idle, it is NumPy's again once nothing refers to it
        _held -= size
    if _held > KEEP_BYTES:      # else fewer than KEEP_BYTES can be idle
        _trim(KEEP_BYTES)
    return entries[-1][1]


def _trim(keep):
    """Drop idle buffers, least recently used classes and oldest first, until at most ``keep``
    bytes are idle."""
    global _held
    counts = {size: _refcounts(entries) for size, entries in _pool.items()}
    excess = sum(size * refs.count(_IDLE) for size, refs in counts.items()) - keep
    for size, refs in counts.items():
        if excess <= 0:
            break
        kept = []
        for entry, r in zip(_pool[size], refs):
            if r == _IDLE and excess > 0:
                excess -= size
                _held -= size
            else:
                kept.append(entry)
        if kept:
            _pool[size] = kept
        else:
            del _pool[size]


def _request(shape, dtype):
    """(shape as a tuple, dtype, its size in bytes)."""
    dtype = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    return shape, dtype, dtype.itemsize * int(math.prod(shape))


def empty(shape, dtype):
    """``np.empty(shape, dtype)``, its memory reused (see the module's description)."""
    shape, dtype, nbytes = _request(shape, dtype)
    if nbytes < MIN_BYTES or _IDLE is None:
        return np.empty(shape, dtype)
    with _lock:
        aligned = _claim(_size_class(nbytes))
    return aligned[:nbytes].view(dtype).reshape(shape)


def aligned_empty(shape, dtype, reuse=True):
    """``empty(shape, dtype)`` starting on an ALIGN-byte boundary whatever its size (NumPy's start on
    16: the compiled products' vector loads then straddle cache lines, and a product whose matrix is
    in cache runs 5-40 % slower). ``reuse=False``: memory of its own, not the pool's (arrays kept
    long: packed weights)."""
    shape, dtype, nbytes = _request(shape, dtype)
    if reuse and nbytes >= MIN_BYTES and _IDLE is not None:
        return empty(shape, dtype)
    return _entry(nbytes)[1].view(dtype).reshape(shape)


def zeros(shape, dtype):
    """``np.zeros(shape, dtype)``, its memory reused."""
    a = empty(shape, dtype)
    a.fill(0)
    return a


def contiguous(a, dtype, aligned=False):
    """``np.ascontiguousarray(a, dtype)``, the memory of a copy reused; ``aligned``: and starting on
    an ALIGN-byte boundary (see :func:`aligned_empty`), copied where it does not."""
    a = np.asarray(a)
    if a.dtype == dtype and a.flags.c_contiguous and not (aligned and a.ctypes.data % ALIGN):
        return a
    out = (aligned_empty if aligned else empty)(a.shape, dtype)
    np.copyto(out, a, casting="unsafe")
    return out


def release():
    """Give every idle buffer back (to NumPy, and so to the operating system)."""
    with _lock:
        _trim(0)


def _new_lock():
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):             # a lock held by another thread at fork stays held
    os.register_at_fork(after_in_child=_new_lock)
