"""Training step time and peak memory of longformer.pt, .flax and .tf against Hugging Face (PyTorch), same run.

    python benchmarks/train.py                                   # n = 1024, 4096, 16384; hf, pt; both settings
    python benchmarks/train.py --lengths 4096 --impls hf,pt,flax,tf-eager,tf-xla --checkpointing off

longformer-base shape, random weights, LongformerForSequenceClassification with a label, one global token, train
mode (dropout on), batch 1, fp32: forward + backward (`_train_one.py`), without and with gradient checkpointing.
Every measurement runs in its own process, the implementations alternating for `--rounds` rounds. Time is the
best timed step; memory is the process's peak RSS above its RSS once the model is built (the gradients are in
it). The RSS depends on the allocator as much as on the model: glibc by default keeps freed buffers under 32 MB
in its heap (fragmented, still resident); `--mmap-threshold 131072` runs every process with
MALLOC_MMAP_THRESHOLD_=131072, so that larger buffers are mapped and returned to the system when freed. Prints a
markdown table, writes it to docs/<output>.md and the raw numbers to benchmarks/results/<output>.json. A process
that fails (for example killed for memory) is reported as such.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from bench import HERE, NAMES, environment, write


def measure(impl: str, n: int, checkpointing: bool, repeat: int, threads: int, env: dict) -> dict | None:
    cmd = [sys.executable, os.path.join(HERE, "_train_one.py"), "--impl", impl, "--n", str(n), "--repeat",
           str(repeat), "--threads", str(threads)] + (["--checkpointing"] if checkpointing else [])
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        print(f"  {impl} n={n} checkpointing={checkpointing} failed (exit {out.returncode}): "
              f"{out.stderr.strip().splitlines()[-1:] if out.stderr.strip() else ''}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384])
    ap.add_argument("--impls", default="hf,pt", help="comma-separated, hf first: hf, pt, flax, tf-eager, tf-xla")
    ap.add_argument("--checkpointing", choices=["off", "on", "both"], default="both")
    ap.add_argument("--repeat", type=int, default=1, help="timed steps per process, after a warm-up step")
    ap.add_argument("--rounds", type=int, default=1, help="processes per implementation, alternating")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mmap-threshold", type=int, help="MALLOC_MMAP_THRESHOLD_ (bytes) for every process")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--output", default="benchmarks-train")
    args = ap.parse_args()
    impls = args.impls.split(",")
    if impls[0] != "hf" or not set(impls) <= {"hf", "pt", "flax", "tf-eager", "tf-xla"}:
        ap.error("--impls must start with hf (the reference) and name only hf, pt, flax, tf-eager, tf-xla")
    settings = {"off": [False], "on": [True], "both": [False, True]}[args.checkpointing]
    child_env = dict(os.environ)
    allocator = "glibc malloc, default settings"
    if args.mmap_threshold is not None:
        child_env["MALLOC_MMAP_THRESHOLD_"] = str(args.mmap_threshold)
        allocator = f"glibc malloc, MALLOC_MMAP_THRESHOLD_={args.mmap_threshold}"

    results = []
    for n in args.lengths:
        for checkpointing in settings:
            runs: dict[str, list[dict]] = {impl: [] for impl in impls}
            for _ in range(args.rounds):
                for impl in impls:
                    r = measure(impl, n, checkpointing, args.repeat, args.threads, child_env)
                    if r is not None:
                        runs[impl].append(r)
                        print(f"  measured {impl:8s} n={n:6d} checkpointing={checkpointing}: {r['time_s']:.2f} s, "
                              f"{r['peak_above_weights_mb']:.0f} MB", file=sys.stderr)
            best = {i: {"time_s": min(r["time_s"] for r in runs[i]),
                        "peak_above_weights_mb": max(r["peak_above_weights_mb"] for r in runs[i])}
                    for i in impls if runs[i]}
            results.append({"n": n, "checkpointing": checkpointing, "best": best, "runs": runs})

    ours = impls[1:]
    lines = ["| n | checkpointing | " + " | ".join(f"{NAMES[i]} time (s) | memory (MB)" for i in impls) + " | "
             + " | ".join(f"{NAMES[i]} / HF time | memory" for i in ours) + " |",
             "|---:|---|" + "---:|---:|" * len(impls) + "---:|---:|" * len(ours)]
    for row in results:
        b = row["best"]
        cells = [f"{b[i]['time_s']:.2f} | {b[i]['peak_above_weights_mb']:.0f}" if i in b else "failed | failed"
                 for i in impls]
        for i in ours:
            if i in b and "hf" in b:
                cells.append(f"**{b[i]['time_s'] / b['hf']['time_s']:.2f}x** | "
                             f"**{b[i]['peak_above_weights_mb'] / max(b['hf']['peak_above_weights_mb'], 1):.2f}x**")
            else:
                cells.append("- | -")
        lines.append(f"| {row['n']} | {'on' if row['checkpointing'] else 'off'} | " + " | ".join(cells) + " |")
    env = environment(args.threads)
    text = ("Training step (forward + backward; best timed step) and peak memory above the weights (largest over "
            "the rounds):\n\n" + "\n".join(lines) + f"\n\nMachine: {env}. Allocator: {allocator}.\n")
    print(text)
    if not args.no_write:
        write(args.output, "# Benchmarks: training steps against Hugging Face transformers (PyTorch)\n\n"
              "Generated by `python benchmarks/train.py` (see its docstring for the method). longformer-base shape, "
              "random weights, SequenceClassification with a label, one global token, dropout on, batch 1, fp32, "
              "CPU. Ratios are measured in the same run; absolute times on shared machines are noise.\n\n" + text,
              {"environment": env, "allocator": allocator, "results": results})


if __name__ == "__main__":
    main()
