"""One layer's band attention (plus one global slot) per attention window, in each backend: no window may be much
slower than its neighbours (W = 514 used to get two-row blocks in Flax and TF, 10-40x slower than W = 512).

    python benchmarks/band_windows.py                          # pt, flax, tf; windows 320, 500, 512, 514
    python benchmarks/band_windows.py --backends flax --windows 512,514 --length 4096

longformer-base heads (12 x 64), batch 1, fp32, random inputs; each backend in its own process, each window timed
after two warm-up calls (compilation excluded), the windows alternating, median of --repeats. Prints a table, writes
benchmarks/results/band-windows.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def measure(backend: str, windows: list[int], length: int, repeats: int, strategy: str | None) -> dict[int, float]:
    """Median seconds per call of `band_attention`, per window (run inside the backend's own process)."""
    import importlib

    import numpy as np

    from longformer.semantics import band_strategy, query_block

    strategy = strategy or band_strategy(backend, "cpu")
    attention = importlib.import_module(f"longformer.{backend}.attention")
    B, nh, hd = 1, 12, 64
    r = np.random.default_rng(0)
    q, k, v = (r.standard_normal((B, length, nh, hd)).astype(np.float32) for _ in range(3))
    key_valid = np.ones((B, length), bool)
    gk, gv = (r.standard_normal((B, nh, 1, hd)).astype(np.float32) for _ in range(2))
    slot_valid = np.ones((B, 1), bool)
    runs = {}
    for window in windows:
        w = window // 2
        block = query_block(w, strategy, backend)
        if backend == "pt":
            import torch

            t = [torch.as_tensor(x) for x in (q, k, v, key_valid, gk, gv, slot_valid)]

            def run(t=t, w=w, block=block):
                with torch.no_grad():
                    attention.band_attention(t[0], t[1], t[2], t[3], w, block, global_k=t[4], global_v=t[5],
                                             slot_valid=t[6], strategy=strategy)
        elif backend == "flax":
            import jax

            f = jax.jit(lambda *a, w=w, block=block: attention.band_attention(
                a[0], a[1], a[2], a[3], w, block, global_k=a[4], global_v=a[5], slot_valid=a[6],
                strategy=strategy)[0])

            def run(f=f):
                f(q, k, v, key_valid, gk, gv, slot_valid).block_until_ready()
        else:
            import tensorflow as tf

            t = [tf.constant(x) for x in (q, k, v, key_valid, gk, gv, slot_valid)]

            def run(block=block, t=t, w=w):
                attention.band_attention(t[0], t[1], t[2], t[3], w, block, global_k=t[4], global_v=t[5],
                                         slot_valid=t[6], strategy=strategy)[0].numpy()
        run()
        run()
        runs[window] = run
    times: dict[int, list[float]] = {window: [] for window in windows}
    for _ in range(repeats):  # windows alternate, so drift of the machine hits them alike
        for window, run in runs.items():
            start = time.perf_counter()
            run()
            times[window].append(time.perf_counter() - start)
    return {window: sorted(t)[len(t) // 2] for window, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="pt,flax,tf")
    parser.add_argument("--windows", default="320,500,512,514")
    parser.add_argument("--length", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--strategy", choices=("rows", "batched"), help="default: each backend's own")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    windows = [int(w) for w in args.windows.split(",")]
    if args.child:
        print(json.dumps(measure(args.child, windows, args.length, args.repeats, args.strategy)))
        return
    results = {}
    for backend in args.backends.split(","):
        env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
        strategy = ["--strategy", args.strategy] if args.strategy else []
        done = subprocess.run([sys.executable, __file__, "--child", backend, "--windows", args.windows, "--length",
                               str(args.length), "--repeats", str(args.repeats), *strategy], capture_output=True,
                              text=True, env=env, check=True)
        results[backend] = {int(k): v for k, v in json.loads(done.stdout.strip().splitlines()[-1]).items()}
    base = 512 if 512 in windows else windows[0]
    print(f"band attention + 1 global slot, n = {args.length}, 12 heads x 64, batch 1, fp32 (ms per layer; "
          f"ratio to W = {base})\n")
    print("| backend | " + " | ".join(f"W = {w}" for w in windows) + " |")
    print("|---|" + "---:|" * len(windows))
    for backend, times in results.items():
        cells = [f"{times[w] * 1000:.0f} ({times[w] / times[base]:.2f}x)" for w in windows]
        print(f"| {backend} | " + " | ".join(cells) + " |")
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "band-windows.json"), "w") as f:
        json.dump({"length": args.length, "machine": platform.processor() or platform.machine(),
                   "cpus": os.cpu_count(), "seconds": results}, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
