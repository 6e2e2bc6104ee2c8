"""Peak resident memory of one forward+backward, one peer per fresh process.

Run as ``python bench/memory.py PEER CELL B T H``; prints the growth of the resident set's high-water
mark (MiB) over the set-up, which includes the inputs and weights but not the library's import.
Linux only (reads /proc/self/status, resets the mark through /proc/self/clear_refs).
"""
import gc
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))     # this checkout's lstmkit, as run.py

from peers import PEERS, Problem  # noqa: E402


def status_kib(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(key)


def main():
    peer, cell, B, T, H = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
    p = Problem(cell, B, T, H).make()
    fns = PEERS[peer](p)
    fns["fwd"]()                           # warm up: compile, trace, first-touch the library's pools
    gc.collect()
    fns.get("release", lambda: None)()     # memory kept for reuse counts in the peak, not the base
    base = status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")                       # reset the high-water mark to the current RSS
    fns["fwdbwd"]()
    print(f"{(status_kib('VmHWM') - base) / 1024:.1f}")


if __name__ == "__main__":
    main()
