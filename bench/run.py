"""Benchmark: one recurrent layer in lstmkit and its peers, side by side in one process run.

    python bench/run.py                 # every case, writes bench/RESULTS.md
    python bench/run.py --quick         # a few cases, prints only
    python bench/run.py --cells lstm --B 1 8 --H 128 --T 20 --repeats 5

Every peer runs the same layer on the same inputs and weights (converted from Keras's layout); a peer
whose outputs differ from lstmkit's by more than 1e-4 is flagged. Each time is the minimum over
``--repeats`` measurements (the machine may be shared). GFLOP/s counts matrix-multiply FLOPs only.
The ceiling is NumPy's float32 matrix-multiply rate on a square product. The run ends with the
seq2seq cases (``bench/seq2seq_cases.py``: a training step, greedy and beam decoding of the
translator's model against the same model in PyTorch and ONNX Runtime; ``--no-seq2seq`` skips them).
"""
import argparse
import datetime
import itertools
import os
import platform
import shlex
import subprocess
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
if "--threads" in sys.argv[:-1]:   # BLAS and OpenMP pools read these when first loaded
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "LSTMKIT_NUM_THREADS"):
        os.environ[_var] = sys.argv[sys.argv.index("--threads") + 1]
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))

import numpy as np  # noqa: E402

import peers  # noqa: E402
from peers import PEERS, Problem  # noqa: E402

CLOCK = time.perf_counter

PEER_ORDER = ["lstmkit", "torch", "onnxruntime", "keras"]
# Seconds between two measurements: the worker threads of what ran before stop spinning on the cores
# (OpenBLAS's spin for about 0.1 s after a product; lstmkit's threaded forward after a NumPy
# product measured 1.1 ms at 0.05 s, 0.29 ms from 0.1 s on).
SETTLE = 0.2
NAMES = {"torch": "PyTorch", "onnxruntime": "ONNX Runtime", "keras": "Keras 3"}


def timeit(fn, repeats, min_time=0.02):
    """Minimum over ``repeats`` of the mean time of a batch of calls lasting at least ``min_time``."""
    fn()
    t0 = CLOCK()
    fn()
    one = CLOCK() - t0
    n = max(1, int(min_time / max(one, 1e-6)))
    best = float("inf")
    for _ in range(repeats):
        t0 = CLOCK()
        for _ in range(n):
            fn()
        best = min(best, (CLOCK() - t0) / n)
    return best


def matmul_peak(repeats):
    a = np.random.default_rng(0).random((2048, 2048), dtype=np.float32)
    out = np.empty_like(a)
    t = timeit(lambda: np.matmul(a, a, out=out), repeats, 0.1)
    return 2 * 2048 ** 3 / t / 1e9


def versions():
    v = {"python": platform.python_version(), "numpy": np.__version__}
    for mod in ["numba", "torch", "keras", "tensorflow", "onnxruntime", "onnx"]:
        try:
            v[mod] = __import__(mod).__version__
        except Exception:
            v[mod] = "not installed"
    from lstmkit import kernels
    v["lstmkit backend"] = kernels.get_backend() if hasattr(kernels, "get_backend") else "numpy"
    return v


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run_cases(args):
    rows = []
    built_peers = [p for p in PEER_ORDER if p in args.peers]
    skipped = {}
    for cell, H, T, B in itertools.product(args.cells, args.H, args.T, args.B):
        prob = Problem(cell, B, T, H).make()
        fns = {}
        for name in built_peers:
            if name in skipped:
                continue
            try:
                fns[name] = PEERS[name](prob)
            except ImportError as e:
                skipped[name] = str(e)
        ref = fns["lstmkit"]["out"]()
        flags = {n: float(np.max(np.abs(np.asarray(f["out"]()) - ref))) for n, f in fns.items()}
        for mode in args.modes:
            times = {n: None for n in fns}
            kept = None       # lstmkit's forward with its weights kept packed (see peers.build_lstmkit)
            for _ in range(args.rounds):       # interleave the peers: noise hits them alike
                for n, f in fns.items():
                    fn = f["fwd"] if mode == "fwd" else f["fwdbwd"]
                    if fn is None:
                        continue
                    time.sleep(SETTLE)
                    t = timeit(fn, args.repeats)
                    times[n] = t if times[n] is None else min(times[n], t)
                    if n == "lstmkit" and mode == "fwd":
                        time.sleep(SETTLE)
                        t = timeit(f["fwd_kept"], args.repeats)
                        kept = t if kept is None else min(kept, t)
            row = {"cell": cell, "mode": mode, "B": B, "T": T, "H": H, "times": times, "kept": kept,
                   "gflops": prob.flops(mode == "fwdbwd") / times["lstmkit"] / 1e9, "maxdiff": flags}
            rows.append(row)
            print(format_row(row, args.peak), flush=True)
    return rows, skipped


def ratio(row, peer):
    t = row["times"].get(peer)
    return None if t is None else t / row["times"]["lstmkit"]


def format_row(row, peak):
    cells = [row["cell"], row["mode"], str(row["B"]), str(row["T"]), str(row["H"])]
    cells.append(f"{row['times']['lstmkit'] * 1e3:.3f}")
    cells.append(f"{row['gflops']:.1f} ({100 * row['gflops'] / peak:.0f}%)")
    cells.append("-" if row["kept"] is None else f"{row['kept'] * 1e3:.3f}")
    for peer in PEER_ORDER[1:]:
        cells.append(peer_time(row["times"].get(peer), row["times"]["lstmkit"], 3,
                               row["maxdiff"].get(peer, 0) > 1e-4))
    return "| " + " | ".join(cells) + " |"


def peer_time(t, base, digits, flag=False):
    """``ms / ratio`` of a peer's time ``t`` against lstmkit's ``base`` (``-`` where it did not run),
    with ``(!)`` when its outputs differ from lstmkit's."""
    if t is None:
        return "-"
    return f"{t * 1e3:.{digits}f} / {t / base:.2f}x" + (" (!)" if flag else "")


HEADER = ("| cell | mode | B | T | H | lstmkit ms | lstmkit GFLOP/s (% of peak) | lstmkit, weights kept ms | "
          "PyTorch ms / ratio | ONNX Runtime ms / ratio | Keras 3 (TF) ms / ratio |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|")


def memory(args):
    """Peak training memory of the largest case, each peer in a fresh process (Linux only)."""
    if not os.path.exists("/proc/self/clear_refs"):
        return {}
    cell, B, T, H = args.cells[0], max(args.B), max(args.T), max(args.H)
    res = {"case": f"{cell} fwd+bwd B={B} T={T} H={H}"}
    for peer in ["lstmkit", "torch", "keras"]:
        if peer not in args.peers:
            continue
        out = subprocess.run([sys.executable, os.path.join(HERE, "memory.py"), peer, cell, str(B),
                              str(T), str(H)], capture_output=True, text=True)
        res[peer] = out.stdout.strip().splitlines()[-1] + " MiB" if out.returncode == 0 else "skipped"
    return res


def seq2seq_cases(args):
    """Seq2seq training step and greedy/beam decoding: lstmkit (its compiled loops, and its NumPy
    loops) against the same model in PyTorch and, decoding only, ONNX Runtime."""
    try:
        import seq2seq_cases as s2s
        setup = s2s.build_setup()
    except ImportError as e:
        return f"skipped: {e}"
    from lstmkit import kernels
    mine = s2s.build_lstmkit(setup)
    built, notes = {}, []
    for peer, build in s2s.PEERS.items():
        if peer not in args.peers:
            continue
        try:
            built[peer] = build(setup, args.threads)
        except ImportError as e:
            notes.append(f"Skipped {NAMES[peer]}: {e}")
    # Outputs compared: the teacher-forced logits (dropout off) and the first decoding step.
    flagged = set()
    for peer, cases in built.items():
        for key in ("logits", "first_step"):
            if key in cases and np.abs(cases[key]() - mine[key]()).max() > 1e-4:
                flagged.add(peer)
    names = s2s.case_names()
    lines = ["| seq2seq case | lstmkit ms | lstmkit NumPy loops ms / ratio | "
             + " | ".join(f"{NAMES[p]} ms / ratio" for p in built) + " |",
             "|---|---|---|" + "---|" * len(built)]
    for key, name in names.items():
        times = {}
        for backend in ["numba", "numpy"]:
            try:
                kernels.set_backend(backend)
            except ImportError:
                continue
            times[backend] = timeit(mine[key], args.repeats, 0.2)
        kernels.set_backend("auto")
        base = times.get("numba", times["numpy"])
        cells = [f"{base * 1e3:.1f}", peer_time(times["numpy"] if "numba" in times else None, base, 1)]
        for peer, cases in built.items():
            t = timeit(cases[key], args.repeats, 0.2) if key in cases else None
            cells.append(peer_time(t, base, 1, peer in flagged))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    return "\n\n" + "\n".join(lines + [""] + notes)


def worst(rows):
    """The case with the smallest ratio to any peer."""
    best = None
    for row in rows:
        for peer in PEER_ORDER[1:]:
            r = ratio(row, peer)
            if r is not None and (best is None or r < best[0]):
                best = (r, peer, row)
    return best


def summary(rows, peak):
    """Lines measuring the rows against the targets of the speed issue."""
    def ratios(mode, peer, pred=lambda r: True):
        return [ratio(r, peer) for r in rows if r["mode"] == mode and pred(r) and ratio(r, peer)]

    def count(rs, at_least):
        return f"{sum(x >= at_least for x in rs)}/{len(rs)} cases (min {min(rs):.2f}x, median " \
               f"{float(np.median(rs)):.2f}x, max {max(rs):.2f}x)" if rs else "no cases"
    lines = []
    for peer, name in NAMES.items():
        lines.append(f"- forward >= 1.0x {name}: {count(ratios('fwd', peer), 1.0)}")
    kept = [r["times"]["onnxruntime"] / r["kept"] for r in rows
            if r["mode"] == "fwd" and r["kept"] and r["times"].get("onnxruntime")]
    lines.append(f"- forward >= 1.0x ONNX Runtime, lstmkit's weights kept packed as ONNX Runtime's "
                 f"session keeps its own: {count(kept, 1.0)}")
    lines.append(f"- forward+backward >= 1.0x PyTorch: {count(ratios('fwdbwd', 'torch'), 1.0)}")
    lines.append(f"- forward+backward >= 2.0x PyTorch at B <= 8: "
                 f"{count(ratios('fwdbwd', 'torch', lambda r: r['B'] <= 8), 2.0)}")
    lines.append(f"- forward+backward >= 1.0x Keras 3: {count(ratios('fwdbwd', 'keras'), 1.0)}")
    if rows:
        big = max(rows, key=lambda r: (r["B"] * r["T"] * r["H"], r["mode"] == "fwdbwd"))
        lines.append(f"- largest case ({big['cell']} {big['mode']} B={big['B']} T={big['T']} H={big['H']}): "
                     f"{big['gflops']:.1f} GFLOP/s = {100 * big['gflops'] / peak:.0f}% of the matmul peak")
    return lines


def write_results(path, args, rows, skipped, peak, mem, s2s, command):
    w = worst(rows)
    lines = [
        "# Benchmark results", "",
        f"Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC  ",
        f"Machine: {cpu_name()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}  ",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()) + "  ",
        f"Command: `{command}`  ",
        f"Conditions: {args.note}; {args.threads} thread(s) per peer; {args.clock} clock", "",
        f"NumPy float32 matmul peak (2048², the ceiling): **{peak:.1f} GFLOP/s**", "",
        "Times are the minimum over repeats, in ms; `ratio` = peer time / lstmkit time (> 1: lstmkit "
        "is faster). GFLOP/s counts matrix-multiply FLOPs (forward 2·T·B·(I+U)·G·U; forward+backward "
        "3×). ONNX Runtime runs inference only. `lstmkit, weights kept`: the forward in a "
        "`kernels.constant_weights` block that lives across calls, its weights packed once (as an ONNX "
        "Runtime session packs its own when it loads); every other lstmkit figure and every ratio is "
        "per call, packing included. `(!)` marks a peer whose outputs differ from lstmkit's "
        "by more than 1e-4.", "",
        HEADER, *[format_row(r, peak) for r in rows], "",
    ]
    lines += ["Against the targets:", "", *summary(rows, peak), ""]
    if w:
        r, peer, row = w
        lines += [f"Worst case: {row['cell']} {row['mode']} B={row['B']} T={row['T']} H={row['H']}: "
                  f"{r:.2f}x {peer}.", ""]
    for peer, why in skipped.items():
        lines.append(f"Skipped {peer}: {why}  ")
    if mem:
        lines += ["", f"Peak training memory ({mem.pop('case')}, growth of the resident set over the "
                  "inputs and weights, fresh process each): "
                  + ", ".join(f"{k} {v}" for k, v in mem.items()), ""]
    lines += ["", "Seq2seq: " + s2s, ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="B 1 32, H 128, T 20, LSTM only; no RESULTS.md")
    ap.add_argument("--cells", nargs="+", default=["lstm", "gru"], choices=["lstm", "gru"])
    ap.add_argument("--B", nargs="+", type=int, default=[1, 8, 32, 128])
    ap.add_argument("--H", nargs="+", type=int, default=[128, 512])
    ap.add_argument("--T", nargs="+", type=int, default=[20, 100])
    ap.add_argument("--modes", nargs="+", default=["fwd", "fwdbwd"], choices=["fwd", "fwdbwd"])
    ap.add_argument("--peers", nargs="+", default=PEER_ORDER, choices=PEER_ORDER)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds over the peers")
    ap.add_argument("--threads", type=int, default=os.cpu_count(),
                    help="threads for every peer (BLAS, PyTorch, ONNX Runtime, TensorFlow)")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="cpu: process CPU time, steadier on a busy machine (use with --threads 1)")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--no-seq2seq", action="store_true")
    ap.add_argument("--results", default=None, help="write this file (default bench/RESULTS.md, not with --quick)")
    ap.add_argument("--note", default="shared machine, other work running; minimum over repeats")
    args = ap.parse_args(argv)
    if "lstmkit" not in args.peers:
        args.peers = ["lstmkit", *args.peers]
    if args.quick:
        args.cells, args.B, args.H, args.T = ["lstm"], [1, 32], [128], [20]
        args.repeats, args.rounds, args.no_memory = 3, 1, True
    global CLOCK
    peers.THREADS = args.threads
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    command = "python " + shlex.join(["bench/run.py", *(argv if argv is not None else sys.argv[1:])])

    peak = args.peak = matmul_peak(args.repeats)
    print(f"NumPy float32 matmul peak: {peak:.1f} GFLOP/s")
    print(HEADER)
    rows, skipped = run_cases(args)
    for peer, why in skipped.items():
        print(f"skipped {peer}: {why}")
    w = worst(rows)
    if w:
        print(f"worst: {w[2]['cell']} {w[2]['mode']} B={w[2]['B']} T={w[2]['T']} H={w[2]['H']}: "
              f"{w[0]:.2f}x {w[1]}")
    print("\n".join(summary(rows, peak)))
    mem = {} if args.no_memory else memory(args)
    if mem:
        print("peak training memory:", mem)
    s2s = "skipped (--quick)" if args.quick or args.no_seq2seq else seq2seq_cases(args)
    path = args.results or (None if args.quick else os.path.join(HERE, "RESULTS.md"))
    if path:
        write_results(path, args, rows, skipped, peak, mem, s2s, command)
        print("wrote", path)


if __name__ == "__main__":
    main()
