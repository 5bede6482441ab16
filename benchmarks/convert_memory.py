"""Peak memory of `longformer convert` on a longformer-large-shaped checkpoint, against its largest shard and
against Hugging Face (`from_pretrained` + `save_pretrained`, the usual way to re-save a checkpoint), same run.

    python benchmarks/convert_memory.py                        # shards of 500MB; targets safetensors,pt,tf,flax,bf16
    python benchmarks/convert_memory.py --shard-size 1GB --targets safetensors,flax --no-write

The source: random weights in longformer-large's shapes (24 layers, hidden 1024, ffn 4096, vocab 50265, 4098
positions: 435 M parameters, 1.74 GB fp32) written as sharded safetensors, then each conversion runs in its own
process: "extra" is that process's peak RSS (VmHWM) above its RSS after imports, so it counts what the conversion
holds, not the interpreter and libraries. Every target is written sharded at the same size, then (to measure the
readers too) converted back to safetensors. Prints a markdown table,
writes docs/<output>.md and benchmarks/results/<output>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

LARGE = dict(vocab_size=50265, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
             max_position_embeddings=4098, type_vocab_size=1, attention_window=512)
TARGETS = {"safetensors": ("safetensors", None), "pt": ("pt", None), "tf": ("tf", None), "flax": ("flax", None),
           "bf16": ("safetensors", "bf16")}


def rss_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(field)


def make_source(folder: str, shard_size: str) -> tuple[int, int]:
    """Random longformer-large MaskedLM weights, written tensor by tensor; returns (parameters, largest shard)."""
    import numpy as np

    from converters.convert import parse_size
    from converters.formats import write_checkpoint
    from converters.names import canonical_shapes
    from longformer import LongformerConfig

    config = LongformerConfig(**LARGE, architectures=["LongformerForMaskedLM"])
    shapes = canonical_shapes(config, "LongformerForMaskedLM")
    rng = np.random.default_rng(0)

    def read(key):
        return (0.02 * rng.standard_normal(shapes[key], dtype=np.float32)).astype(np.float32)

    os.makedirs(folder)
    files = write_checkpoint(folder, "safetensors", {k: (s, np.dtype(np.float32)) for k, s in shapes.items()}, read,
                             head="LongformerForMaskedLM", max_shard_size=parse_size(shard_size))
    config.save_pretrained(folder)
    params = sum(int(np.prod(s)) for s in shapes.values())
    return params, max(os.path.getsize(os.path.join(folder, f)) for f in files if not f.endswith(".json"))


def child(impl: str, src: str, dst: str, to: str, dtype: str | None, shard_size: str) -> None:
    """One conversion in this process; prints {seconds, baseline_mb, peak_mb, extra_mb} as JSON."""
    import h5py  # noqa: F401 - every library a conversion may use is imported before the baseline
    import msgpack  # noqa: F401
    import numpy  # noqa: F401
    import torch  # noqa: F401

    from converters.convert import convert

    if impl == "hf":
        import transformers
    base = rss_mb("VmRSS")
    t = time.perf_counter()
    if impl == "hf":
        model = transformers.LongformerForMaskedLM.from_pretrained(src)
        model.save_pretrained(dst, max_shard_size=shard_size)
    else:
        convert(src, dst, to, dtype=dtype, max_shard_size=shard_size, progress=False)
    seconds = time.perf_counter() - t
    peak = rss_mb("VmHWM")
    print(json.dumps({"seconds": seconds, "baseline_mb": base, "peak_mb": peak, "extra_mb": peak - base}))


def run(impl: str, src: str, dst: str, to: str, dtype: str | None, shard_size: str, keep: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--child", impl, src, dst, to, dtype or "-", shard_size]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"})
    if out.returncode:
        raise RuntimeError(f"{impl} {to}: {out.stderr[-2000:]}")
    if not keep:
        shutil.rmtree(dst, ignore_errors=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        impl, src, dst, to, dtype, shard_size = sys.argv[2:8]
        child(impl, src, dst, to, None if dtype == "-" else dtype, shard_size)
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shard-size", default="500MB")
    ap.add_argument("--targets", default=",".join(TARGETS), help=f"comma-separated, from {', '.join(TARGETS)}")
    ap.add_argument("--no-hf", action="store_true", help="skip the Hugging Face load + save row")
    ap.add_argument("--workdir", help="where the 1.7 GB source and each result go (default: a temporary folder)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--output", default="benchmarks-convert")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="longformer-convert-", dir=args.workdir)
    try:
        src = os.path.join(work, "source")
        t = time.perf_counter()
        params, largest = make_source(src, args.shard_size)
        print(f"source: {params / 1e6:.0f} M parameters, {sum(os.path.getsize(os.path.join(src, f)) for f in os.listdir(src)) / 1e9:.2f} GB "
              f"in shards of <= {args.shard_size} (largest {largest / 2**20:.0f} MiB), made in "
              f"{time.perf_counter() - t:.0f} s\n", flush=True)
        rows = {}
        if not args.no_hf:
            rows["hf"] = run("hf", src, os.path.join(work, "hf"), "safetensors", None, args.shard_size)
        for name in args.targets.split(","):  # to each format, and (the readers' turn) from it back to safetensors
            to, dtype = TARGETS[name]
            rows[name] = run("longformer", src, os.path.join(work, name), to, dtype, args.shard_size, keep=True)
            if dtype is None and to != "safetensors":
                rows[f"{name}-back"] = run("longformer", os.path.join(work, name), os.path.join(work, "back"),
                                           "safetensors", None, args.shard_size)
            shutil.rmtree(os.path.join(work, name), ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    largest_mb = largest / 2**20
    label = {"hf": "Hugging Face from_pretrained + save_pretrained (safetensors)"}
    lines = [f"Sharded safetensors source, {params / 1e6:.0f} M parameters (longformer-large shapes, fp32), shards "
             f"<= {args.shard_size}, largest shard {largest_mb:.0f} MiB. Output sharded at the same size. "
             f"{platform.processor() or platform.machine()}, Python {platform.python_version()}.", "",
             "| conversion | time (s) | extra memory (MiB) | / largest shard |" + (" / Hugging Face |" if "hf" in rows else ""),
             "|---|---|---|---|" + ("---|" if "hf" in rows else "")]
    for name, r in rows.items():
        if name.endswith("-back"):
            what = f"longformer convert ({TARGETS[name[:-5]][0]} shards) --to safetensors"
        else:
            what = label.get(name) or f"longformer convert --to {TARGETS[name][0]}" + (
                f" --dtype {TARGETS[name][1]}" if TARGETS[name][1] else "")
        line = f"| {what} | {r['seconds']:.1f} | {r['extra_mb']:.0f} | {r['extra_mb'] / largest_mb:.2f}x |"
        if "hf" in rows:
            line += f" {r['extra_mb'] / rows['hf']['extra_mb']:.2f}x |"
        lines.append(line)
    table = "\n".join(lines)
    print(table)
    if not args.no_write:
        with open(os.path.join(ROOT, "docs", f"{args.output}.md"), "w") as f:
            f.write("# Conversion memory\n\nMeasured by `python benchmarks/convert_memory.py` (see its docstring for the "
                    "method).\n\n" + table + "\n")
        os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
        with open(os.path.join(HERE, "results", f"{args.output}.json"), "w") as f:
            json.dump({"parameters": params, "largest_shard_bytes": largest, "shard_size": args.shard_size,
                       "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
