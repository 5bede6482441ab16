"""Forward time and peak memory of longformer.pt against Hugging Face transformers (PyTorch), same run.

    python benchmarks/bench_pt.py                   # n = 1024, 4096, 16384; 0 and 1 global token
    python benchmarks/bench_pt.py --lengths 4096    # one length

longformer-base shape, random weights, batch 1, fp32, eval, `torch.no_grad()`, the default allocator. Every
measurement runs in its own process (`_run_one.py`), Hugging Face and ours alternating for `--rounds` rounds, so
allocator state and peak RSS belong to one process only; inside a process the cases without and with one global
token alternate after a warm-up of each. Time is the best timed call; memory is the process's peak RSS above its
RSS after the model was built. Prints a markdown table, writes it to
docs/benchmarks.md and the raw numbers to benchmarks/results/pt.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def measure(impl: str, n: int, repeat: int, threads: int) -> dict:
    cmd = [sys.executable, os.path.join(HERE, "_run_one.py"), "--impl", impl, "--n", str(n), "--repeat", str(repeat),
           "--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["time_s"] = {int(g): t for g, t in result["time_s"].items()}
    return result


def best(runs: list[dict]) -> dict:
    """Fastest time per case and largest peak memory over the rounds of one implementation."""
    return {"time_s": {g: min(r["time_s"][g] for r in runs) for g in (0, 1)},
            "peak_above_weights_mb": max(r["peak_above_weights_mb"] for r in runs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384])
    ap.add_argument("--repeat", type=int, default=2, help="timed calls per case and process (16384: 1)")
    ap.add_argument("--rounds", type=int, default=2, help="processes per implementation, alternating (16384: 1)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args()

    results = []
    for n in args.lengths:
        long = n > 8192
        runs: dict[str, list[dict]] = {"hf": [], "ours": []}
        for _ in range(1 if long else args.rounds):
            for impl in ("hf", "ours"):
                r = measure(impl, n, 1 if long else args.repeat, args.threads)
                runs[impl].append(r)
                print(f"  measured {impl:4s} n={n:6d}: {r['time_s'][0]:.2f} s, one global {r['time_s'][1]:.2f} s, "
                      f"{r['peak_above_weights_mb']:.0f} MB", file=sys.stderr)
        results.append({"n": n, "hf": best(runs["hf"]), "ours": best(runs["ours"]), "runs": runs})

    import torch
    import transformers

    lines = [
        "| n | global tokens | Hugging Face time (s) | longformer.pt time (s) | time ratio |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in results:
        for g in (0, 1):
            hf, ours = row["hf"]["time_s"][g], row["ours"]["time_s"][g]
            lines.append(f"| {row['n']} | {g} | {hf:.2f} | {ours:.2f} | **{ours / hf:.2f}x** |")
    memory = ["| n | Hugging Face peak above weights (MB) | longformer.pt (MB) | memory ratio |", "|---:|---:|---:|---:|"]
    overhead = ["| n | Hugging Face | longformer.pt |", "|---:|---:|---:|"]
    for row in results:
        hf_mb, ours_mb = row["hf"]["peak_above_weights_mb"], row["ours"]["peak_above_weights_mb"]
        memory.append(f"| {row['n']} | {hf_mb:.0f} | {ours_mb:.0f} | **{ours_mb / max(hf_mb, 1):.2f}x** |")
        added = {impl: row[impl]["time_s"][1] / row[impl]["time_s"][0] - 1 for impl in ("hf", "ours")}
        overhead.append(f"| {row['n']} | {added['hf']:+.1%} | {added['ours']:+.1%} |")
    env = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.threads} threads, "
           f"torch {torch.__version__}, transformers {transformers.__version__}, Python {platform.python_version()}")
    text = ("Forward time (best of the timed calls over all rounds):\n\n" + "\n".join(lines)
            + "\n\nPeak memory above the weights (largest over the rounds; each process runs both cases):\n\n"
            + "\n".join(memory)
            + "\n\nTime added by one global token (both cases timed alternately in the same processes):\n\n"
            + "\n".join(overhead) + f"\n\nMachine: {env}.\n")
    print(text)
    if args.no_write:
        return
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "pt.json"), "w") as f:
        json.dump({"environment": env, "results": results}, f, indent=2)
    doc = os.path.join(ROOT, "docs", "benchmarks.md")
    with open(doc, "w") as f:
        f.write("# Benchmarks: longformer.pt against Hugging Face transformers (PyTorch)\n\n"
                "Generated by `python benchmarks/bench_pt.py` (see its docstring for the method). "
                "longformer-base shape (12 layers, hidden 768, 12 heads, window 512), random weights, batch 1, "
                "fp32, CPU, default allocator. Ratios are ours / Hugging Face, measured in the same run; "
                "absolute times on shared machines are noise.\n\n" + text)
    print(f"wrote {doc}", file=sys.stderr)


if __name__ == "__main__":
    main()
