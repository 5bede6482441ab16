"""Forward time and peak memory of longformer.pt, .flax and .tf against Hugging Face (PyTorch), same run.

    python benchmarks/bench.py                                 # n = 1024, 4096, 16384; hf, pt, flax
    python benchmarks/bench.py --lengths 4096 --impls hf,pt,tf-eager,tf-xla --output benchmarks-tf

longformer-base shape, random weights, batch 1, fp32, eval, `torch.no_grad()`, the default allocator. Every
measurement runs in its own process (`_run_one.py`), the implementations alternating for `--rounds` rounds, so
allocator state and peak RSS belong to one process only; inside a process the cases without and with one global
token alternate after a warm-up of each. Time is the best timed call (the time a global token adds: each
process's ratio of its two cases, median over the rounds); memory is the process's peak RSS above its
RSS after the model was built. Prints a markdown table, writes it to docs/benchmarks.md and the raw numbers to
benchmarks/results/benchmarks.json (`--output` renames both). The compiled implementations' first call per shape
(trace + compile) is reported apart from their times; XLA uses the machine's cores as it likes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def measure(impl: str, n: int, repeat: int, threads: int, window: int = 512) -> dict:
    cmd = [sys.executable, os.path.join(HERE, "_run_one.py"), "--impl", impl, "--n", str(n), "--repeat", str(repeat),
           "--threads", str(threads), "--window", str(window)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["time_s"] = {int(g): t for g, t in result["time_s"].items()}
    return result


def best(runs: list[dict]) -> dict:
    """Fastest time per case and largest peak memory over the rounds of one implementation."""
    return {"time_s": {g: min(r["time_s"][g] for r in runs) for g in (0, 1)},
            "peak_above_weights_mb": max(r["peak_above_weights_mb"] for r in runs)}


def global_overhead(runs: list[dict]) -> float:
    """Time one global token adds: each process's ratio of its two cases (timed alternately, so both see the same
    machine state), median over the processes. Pairing cases from different processes would mix their noise."""
    return statistics.median(r["time_s"][1] / r["time_s"][0] for r in runs) - 1


NAMES = {"hf": "Hugging Face", "pt": "longformer.pt", "flax": "longformer.flax", "tf-eager": "longformer.tf eager",
         "tf-xla": "longformer.tf XLA", "onnx": "longformer ONNX (onnxruntime)",
         "onnx-int8": "longformer ONNX int8 (onnxruntime)"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384])
    ap.add_argument("--impls", default="hf,pt,flax", help=f"comma-separated, from {', '.join(NAMES)} (hf first)")
    ap.add_argument("--repeat", type=int, default=2, help="timed calls per case and process (16384: 1)")
    ap.add_argument("--rounds", type=int, default=2, help="processes per implementation, alternating (16384: 1)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--output", default="benchmarks", help="writes docs/<output>.md and benchmarks/results/<output>.json")
    ap.add_argument("--windows", help="compare attention windows instead (e.g. 500,512,514): every implementation "
                    "at every window, alternating; ratios to the first window")
    args = ap.parse_args()
    impls = args.impls.split(",")
    if args.windows:
        return compare_windows(args, impls, [int(w) for w in args.windows.split(",")])
    if impls[0] != "hf" or not set(impls) <= set(NAMES):
        ap.error(f"--impls must start with hf (the reference) and name only {', '.join(NAMES)}")

    results = []
    for n in args.lengths:
        long = n > 8192
        runs: dict[str, list[dict]] = {impl: [] for impl in impls}
        for _ in range(1 if long else args.rounds):
            for impl in impls:
                r = measure(impl, n, 1 if long else args.repeat, args.threads)
                runs[impl].append(r)
                print(f"  measured {impl:4s} n={n:6d}: {r['time_s'][0]:.2f} s, one global {r['time_s'][1]:.2f} s, "
                      f"{r['peak_above_weights_mb']:.0f} MB", file=sys.stderr)
        results.append({"n": n, **{impl: best(runs[impl]) for impl in impls}, "runs": runs})

    ours = impls[1:]
    lines = ["| n | global tokens | " + " | ".join(f"{NAMES[i]} time (s)" for i in impls) + " | "
             + " | ".join(f"{NAMES[i]} / HF" for i in ours) + (" | flax / pt |" if {"pt", "flax"} <= set(ours) else " |"),
             "|---:" * (2 + len(impls) + len(ours) + ({"pt", "flax"} <= set(ours))) + "|"]
    for row in results:
        for g in (0, 1):
            t = {i: row[i]["time_s"][g] for i in impls}
            cells = [f"{t[i]:.2f}" for i in impls] + [f"**{t[i] / t['hf']:.2f}x**" for i in ours]
            if {"pt", "flax"} <= set(ours):
                cells.append(f"{t['flax'] / t['pt']:.2f}x")
            lines.append(f"| {row['n']} | {g} | " + " | ".join(cells) + " |")
    memory = ["| n | " + " | ".join(f"{NAMES[i]} (MB)" for i in impls) + " | "
              + " | ".join(f"{NAMES[i]} / HF" for i in ours) + " |", "|---:" * (1 + len(impls) + len(ours)) + "|"]
    overhead = ["| n | " + " | ".join(NAMES[i] for i in impls) + " |", "|---:" * (1 + len(impls)) + "|"]
    for row in results:
        mb = {i: row[i]["peak_above_weights_mb"] for i in impls}
        memory.append(f"| {row['n']} | " + " | ".join(f"{mb[i]:.0f}" for i in impls) + " | "
                      + " | ".join(f"**{mb[i] / max(mb['hf'], 1):.2f}x**" for i in ours) + " |")
        added = {i: global_overhead(row["runs"][i]) for i in impls}
        overhead.append(f"| {row['n']} | " + " | ".join(f"{added[i]:+.1%}" for i in impls) + " |")
    text = ("Forward time (best of the timed calls over all rounds):\n\n" + "\n".join(lines)
            + "\n\nPeak memory above the weights (largest over the rounds; each process runs both cases):\n\n"
            + "\n".join(memory)
            + "\n\nTime added by one global token (per process, both cases timed alternately; median over the "
              "rounds):\n\n"
            + "\n".join(overhead))
    compiled = [i for i in impls if i in ("flax", "tf-xla")]
    if compiled:
        compile_lines = ["| n | implementation | first call, no global (s) | first call, one global (s) |",
                         "|---:|---|---:|---:|"]
        for row in results:
            for i in compiled:
                first = row["runs"][i][0]["first_call_s"]
                compile_lines.append(f"| {row['n']} | {NAMES[i]} | {first['0']:.1f} | {first['1']:.1f} |")
        text += ("\n\nFirst call per shape of the compiled implementations (trace + XLA compile + one run; not in "
                 "the times above):\n\n" + "\n".join(compile_lines))
    env = environment(args.threads)
    text += f"\n\nMachine: {env}.\n"
    print(text)
    if not args.no_write:
        write(args.output, "# Benchmarks: longformer against Hugging Face transformers (PyTorch)\n\n"
              "Generated by `python benchmarks/bench.py` (see its docstring for the method). "
              "longformer-base shape (12 layers, hidden 768, 12 heads, window 512), random weights, batch 1, "
              "fp32, CPU, default allocator. Ratios are measured in the same run; absolute times on shared "
              "machines are noise.\n\n" + text, {"environment": env, "results": results})


def write(output: str, page: str, raw: dict) -> None:
    """docs/<output>.md (the page) and benchmarks/results/<output>.json (the raw numbers)."""
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", f"{output}.json"), "w") as f:
        json.dump(raw, f, indent=2)
    doc = os.path.join(ROOT, "docs", f"{output}.md")
    with open(doc, "w") as f:
        f.write(page)
    print(f"wrote {doc}", file=sys.stderr)


def compare_windows(args, impls: list[str], windows: list[int]) -> None:
    """Forward time (no global token) of each implementation at each attention window, same run, alternating:
    no window may be much slower than its neighbours."""
    rows = []
    for n in args.lengths:
        runs = {(i, w): [] for i in impls for w in windows}
        for _ in range(args.rounds):
            for impl in impls:
                for window in windows:
                    r = measure(impl, n, args.repeat, args.threads, window)
                    runs[impl, window].append(r["time_s"][0])
                    print(f"  measured {impl:4s} n={n:6d} W={window}: {r['time_s'][0]:.2f} s", file=sys.stderr)
        for impl in impls:
            t = {w: min(runs[impl, w]) for w in windows}
            rows.append(f"| {n} | {NAMES[impl]} | " + " | ".join(f"{t[w]:.2f} ({t[w] / t[windows[0]]:.2f}x)"
                                                                  for w in windows) + " |")
    text = (f"Forward time by attention window (s; ratio to W = {windows[0]}), no global token:\n\n"
            + "| n | implementation | " + " | ".join(f"W = {w}" for w in windows) + " |\n"
            + "|---:|---|" + "---:|" * len(windows) + "\n" + "\n".join(rows)
            + f"\n\nMachine: {environment(args.threads)}.\n")
    print(text)
    if not args.no_write:
        os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
        with open(os.path.join(HERE, "results", f"{args.output}.json"), "w") as f:
            json.dump({"windows": windows, "table": text}, f, indent=2)


def environment(threads: int) -> str:
    import importlib.metadata as md

    versions = []
    for package in ("torch", "transformers", "jax", "flax", "tensorflow-cpu", "onnxruntime"):
        try:
            versions.append(f"{package} {md.version(package)}")
        except md.PackageNotFoundError:
            pass
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {threads} threads, "
            + ", ".join(versions) + f", Python {platform.python_version()}")


if __name__ == "__main__":
    main()
