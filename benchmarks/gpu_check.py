"""The GPU check: the test matrix on the GPU, then Hugging Face PyTorch vs longformer.pt vs longformer.flax.

Run through `benchmarks/gpu_check.sh` on a machine whose python3 has torch (CUDA), jax (CUDA), flax, transformers,
safetensors, tokenizers, h5py, pytest and hypothesis (no TensorFlow, no package index: the project runs from the
source tree). Steps, each in its own processes, under one time budget (default 8 minutes):

1. the backend-parametrized matrix (tests/test_models.py) with the device axis = the GPU, for pt and flax: every field of every head against the float64 reference (fp32 at 1e-4, TF32 off; bf16/fp16
   at the matrix's bounds), the device path (weights placed, the default strategy, gradients);
2. forward time and peak device memory of `LongformerModel` (longformer-base shape, one global token) at
   n = 4096 and 16384, batch 1 and 8, fp32 and bf16: Hugging Face, longformer.pt (its GPU default, "flex"; and
   "batched"), longformer.flax (jit);
3. one training step (forward + backward of LongformerForSequenceClassification, dropout on, fp32, batch 1) at
   n = 4096, with its peak memory.

Writes gpu-check.json and gpu-check.md (ratios against Hugging Face in the same run) into --out. `--device cpu
--quick` runs every step on a tiny model on the CPU (CI; the forward in bf16 only, fp32 in the training step), so
a GPU run fails only for GPU reasons. Exit 1 when the
matrix fails or one of our runs fails; Hugging Face running out of memory is a result, not a failure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = {
    "full": dict(layers=12, hidden=768, heads=12, ffn=3072, vocab=50265, window=512, lengths=[4096, 16384],
                 batches=[1, 8], train_n=4096, repeat=3),
    "quick": dict(layers=2, hidden=64, heads=4, ffn=128, vocab=1000, window=32, lengths=[128], batches=[1, 2],
                  train_n=128, repeat=2, dtypes=["bfloat16"]),  # fp32 runs in the training step
}
FORWARD_IMPLS = ["hf", "pt", "pt-batched", "flax"]
TRAIN_IMPLS = ["hf", "pt", "flax"]
DTYPES = ["float32", "bfloat16"]
MATRIX_TESTS = ["tests/test_models.py"]  # the matrix with the device axis


# ---------------------------------------------------------------------------------------------- the parent
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=["gpu", "cpu"], default="gpu")
    ap.add_argument("--quick", action="store_true", help="a tiny model and a few matrix tests (CI, on the CPU)")
    ap.add_argument("--out", default=os.environ.get("OUT") or os.path.join(ROOT, "benchmarks", "results"))
    ap.add_argument("--budget", type=float, default=480, help="seconds for every step together (default 480)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one worker's JSON spec
    args = ap.parse_args()
    if args.worker:
        return worker(json.loads(args.worker))
    os.makedirs(args.out, exist_ok=True)
    deadline = time.monotonic() + args.budget
    size = SIZES["quick" if args.quick else "full"]
    report = {"device": args.device, "quick": args.quick, "size": size, "environment": environment(args.device)}
    print(f"gpu_check: {report['environment']}", flush=True)
    report["matrix"] = run_matrix(args, deadline)
    print(f"matrix: {report['matrix']['summary']}", flush=True)
    report["forward"], report["train"] = [], []
    configs = sorted(((n, b) for n in size["lengths"] for b in size["batches"]), key=lambda c: (c[0] * c[1], c[0]))
    for dtype in size.get("dtypes", DTYPES):
        for impl in FORWARD_IMPLS:
            # One process per implementation and dtype, the shapes in increasing size (JAX's peak counter cannot be
            # reset: each shape's peak is the process's so far, which the largest shape yet sets).
            report["forward"] += spawn(dict(task="forward", impl=impl, dtype=dtype, configs=configs, size=size,
                                            device=args.device), deadline, args.out)
    for impl in TRAIN_IMPLS:
        report["train"] += spawn(dict(task="train", impl=impl, dtype="float32", configs=[[size["train_n"], 1]],
                                      size=size, device=args.device), deadline, args.out)
    json_path, md_path = os.path.join(args.out, "gpu-check.json"), os.path.join(args.out, "gpu-check.md")
    with open(json_path, "w") as f:
        json.dump(report, f, indent=1)
    table = markdown(report)
    with open(md_path, "w") as f:
        f.write(table)
    print("\n" + table + f"\nwrote {json_path} and {md_path}")
    ours_failed = [r for r in report["forward"] + report["train"] if r["impl"] != "hf" and "error" in r]
    return 0 if report["matrix"]["ok"] and not ours_failed else 1


def environment(device: str) -> dict:
    probe = ("import json, torch, jax; print(json.dumps({'torch': torch.__version__, 'cuda': torch.cuda.is_available(),"
             " 'gpu': torch.cuda.get_device_name() if torch.cuda.is_available() else None, 'jax': jax.__version__,"
             " 'jax_devices': [str(d) for d in jax.devices()]}))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=child_env())
    env = json.loads(out.stdout) if out.returncode == 0 else {"probe_error": out.stderr[-2000:]}
    env["python"] = platform.python_version()
    if device == "gpu" and not env.get("cuda"):
        raise SystemExit(f"gpu_check: no CUDA device visible to torch ({env}); use --device cpu for a CPU run")
    return env


def child_env() -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    env.update(NVIDIA_TF32_OVERRIDE="0", XLA_PYTHON_CLIENT_PREALLOCATE="false", TF_CPP_MIN_LOG_LEVEL="2",
               HF_HUB_OFFLINE="1")
    return env


def run_matrix(args, deadline: float) -> dict:
    """pytest on the matrix files, device axis = the GPU (`--quick`: a few of the CPU's)."""
    select = "every_length and cpu and n7" if args.quick else ("gpu" if args.device == "gpu" else "cpu")
    log = os.path.join(args.out, "gpu-check-matrix.log")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", select, *MATRIX_TESTS]
    left = max(30.0, deadline - time.monotonic() - (60 if args.quick else 270))  # the rest is for the timings
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=left, env=child_env())
        output, code = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as e:
        output, code = f"{e.stdout or ''}\n{e.stderr or ''}\nTIMEOUT after {left:.0f} s", -1
    with open(log, "w") as f:
        f.write(output if isinstance(output, str) else output.decode())
    summary = next((line.strip("= ") for line in reversed(output.splitlines()) if " in " in line and "=" in line),
                   output.strip().splitlines()[-1] if output.strip() else "no output")
    return {"ok": code == 0, "command": " ".join(cmd[1:]), "summary": summary, "log": os.path.basename(log)}


def spawn(spec: dict, deadline: float, out: str) -> list[dict]:
    """One worker process; its JSON lines, or an error row per shape it did not report."""
    left = deadline - time.monotonic()
    label = f"{spec['task']} {spec['impl']} {spec['dtype']} {spec['configs']}"
    if left < 20:
        return [dict(task=spec["task"], impl=spec["impl"], dtype=spec["dtype"], n=n, batch=b,
                     error="skipped: out of time") for n, b in spec["configs"]]
    try:
        done = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)], cwd=ROOT,
                              capture_output=True, text=True, timeout=left, env=child_env())
        stdout, stderr = done.stdout, done.stderr
    except subprocess.TimeoutExpired as e:
        stdout, stderr = e.stdout or "", f"timed out after {left:.0f} s"
        stdout = stdout if isinstance(stdout, str) else stdout.decode()
    rows = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    seen = {(r["n"], r["batch"]) for r in rows}
    for n, b in spec["configs"]:
        if (n, b) not in seen:
            rows.append(dict(task=spec["task"], impl=spec["impl"], dtype=spec["dtype"], n=n, batch=b,
                             error=(stderr.strip().splitlines() or ["no output"])[-1][:300]))
    for r in rows:
        print(f"  {label}: n={r['n']} b={r['batch']} "
              + (f"{r['time_s'] * 1e3:.1f} ms, peak {r['peak_mb']:.0f} MB" if "error" not in r else r["error"]),
              flush=True)
    if any("error" in r for r in rows):
        with open(os.path.join(out, "gpu-check-errors.log"), "a") as f:
            f.write(f"== {label}\n{stderr[-5000:]}\n")
    return rows


def markdown(report: dict) -> str:
    """Tables: each implementation's time and peak memory, and its ratio to Hugging Face's in the same run."""
    env, lines = report["environment"], []
    lines.append(f"# GPU check ({'quick, ' if report['quick'] else ''}{report['device']}: "
                 f"{env.get('gpu') or 'CPU'}; torch {env.get('torch')}, jax {env.get('jax')})\n")
    lines.append(f"Matrix ({report['matrix']['command']}): **{'PASS' if report['matrix']['ok'] else 'FAIL'}** "
                 f"- {report['matrix']['summary']}\n")
    for task, title in (("forward", "Forward, LongformerModel, one global token"),
                        ("train", "Training step (forward + backward), sequence classification, fp32")):
        rows = report[task]
        memory = sorted({r["memory"] for r in rows if "memory" in r})
        lines += [f"## {title}\n", f"Memory: {', '.join(memory) or '-'} (RSS: the process's peak, weights included)."
                  "\n", "| dtype | n | batch | impl | time (ms) | x HF | peak above weights (MB) | x HF |",
                  "|---|---|---|---|---|---|---|---|"]
        hf = {(r["dtype"], r["n"], r["batch"]): r for r in rows if r["impl"] == "hf" and "error" not in r}
        for r in sorted(rows, key=lambda r: (r["dtype"], r["n"], r["batch"], FORWARD_IMPLS.index(r["impl"]))):
            base = hf.get((r["dtype"], r["n"], r["batch"]))
            if "error" in r:
                lines.append(f"| {r['dtype']} | {r['n']} | {r['batch']} | {r['impl']} | {r['error']} | | | |")
                continue
            ratio_t = f"{r['time_s'] / base['time_s']:.2f}" if base else "-"
            ratio_m = f"{r['peak_mb'] / base['peak_mb']:.2f}" if base and base["peak_mb"] > 0 else "-"
            lines.append(f"| {r['dtype']} | {r['n']} | {r['batch']} | {r['impl']} | {r['time_s'] * 1e3:.1f} | "
                         f"{ratio_t} | {r['peak_mb']:.0f} | {ratio_m} |")
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- the workers
def config_kwargs(size: dict) -> dict:
    """longformer-base's shape (or the quick one), with positions for the longest length of the run."""
    return dict(vocab_size=size["vocab"], hidden_size=size["hidden"], num_hidden_layers=size["layers"],
                num_attention_heads=size["heads"], intermediate_size=size["ffn"],
                max_position_embeddings=max(size["lengths"] + [size["train_n"]]) + 2, type_vocab_size=1,
                layer_norm_eps=1e-5, attention_window=size["window"])


def batch_arrays(size: dict, n: int, b: int):
    """Random ids (b, n), one global token (`<s>`) per row, labels (b,), as NumPy arrays."""
    import numpy as np

    ids = np.random.default_rng(0).integers(3, size["vocab"], (b, n))
    ids[:, 0] = 0
    one_global = np.zeros((b, n), dtype=np.int64)
    one_global[:, 0] = 1
    return ids, one_global, np.ones(b, dtype=np.int64)


def worker(spec: dict) -> int:
    run = run_flax if spec["impl"] == "flax" else run_torch
    for n, b in spec["configs"]:
        result = run(spec, n, b)
        print(json.dumps(dict(task=spec["task"], impl=spec["impl"], dtype=spec["dtype"], n=n, batch=b, **result)),
              flush=True)
    return 0


def timed(call, sync, repeat: int) -> dict:
    """One first call (compiles: flex, jit), then the median of `repeat` timed calls."""
    t = time.perf_counter()
    call()
    sync()
    first = time.perf_counter() - t
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        call()
        sync()
        times.append(time.perf_counter() - t)
    return {"time_s": sorted(times)[len(times) // 2], "first_s": first}


def rss_peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


_TORCH_MODEL: list = []  # one model per worker process, for every shape


def run_torch(spec: dict, n: int, b: int) -> dict:
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = torch.device("cuda" if spec["device"] == "gpu" else "cpu")
    size, impl, train = spec["size"], spec["impl"], spec["task"] == "train"
    head = "LongformerForSequenceClassification" if train else "LongformerModel"
    if not _TORCH_MODEL:
        torch.manual_seed(0)
        if impl == "hf":
            import transformers

            model = getattr(transformers, head)(transformers.LongformerConfig(**config_kwargs(size)))
        else:
            from longformer import LongformerConfig
            from longformer.backends import load_backend

            model = getattr(load_backend("pt"), head)(LongformerConfig(**config_kwargs(size)))
            if impl == "pt-batched":
                model.set_band_strategy("batched")
        _TORCH_MODEL.append(model.to(device, getattr(torch, spec["dtype"])).train(train))
    model = _TORCH_MODEL[0]
    ids, one_global, labels = (torch.as_tensor(a, device=device) for a in batch_arrays(size, n, b))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated() if device.type == "cuda" else 0

    def call():
        if train:
            model.zero_grad(set_to_none=True)
            model(ids, global_attention_mask=one_global, labels=labels).loss.backward()
        else:
            with torch.no_grad():
                model(ids, global_attention_mask=one_global)

    try:
        result = timed(call, sync, size["repeat"])
    except torch.OutOfMemoryError:
        model.zero_grad(set_to_none=True)
        return {"error": "out of memory"}
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if device.type == "cuda" else rss_peak_mb()
    return {**result, "peak_mb": peak,
            "memory": "torch max_memory_allocated above the weights" if device.type == "cuda" else "RSS"}


_FLAX_MODEL: list = []  # model, device, bytes in use once it is built: one per worker process


def run_flax(spec: dict, n: int, b: int) -> dict:
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from longformer import LongformerConfig
    from longformer.flax import LongformerForSequenceClassification, LongformerModel
    from longformer.flax.checkpoint import cast_params, place

    jax.config.update("jax_default_matmul_precision", "highest")  # fp32 is fp32, as torch's (no TF32)
    size, train = spec["size"], spec["task"] == "train"
    cls = LongformerForSequenceClassification if train else LongformerModel
    if not _FLAX_MODEL:
        model = cls(LongformerConfig(**config_kwargs(size)), rngs=nnx.Rngs(0))
        if spec["dtype"] != "float32":
            cast_params(model, getattr(jnp, spec["dtype"]))
        place(model, spec["device"])
        model.train() if train else model.eval()
        device = jax.devices("gpu" if spec["device"] == "gpu" else "cpu")[0]
        _FLAX_MODEL.extend([model, device, (device.memory_stats() or {}).get("bytes_in_use", 0)])
    model, device, base = _FLAX_MODEL
    ids, one_global, labels = (jnp.asarray(a) for a in batch_arrays(size, n, b))

    @nnx.jit
    def grads(model, ids, one_global, labels):
        return nnx.grad(lambda m: m(ids, global_attention_mask=one_global, labels=labels,
                                    num_global_slots=1).loss)(model)

    def call():
        if train:
            jax.block_until_ready(grads(model, ids, one_global, labels))
        else:
            jax.block_until_ready(model(ids, global_attention_mask=one_global).last_hidden_state)

    try:
        result = timed(call, lambda: None, size["repeat"])
    except Exception as error:  # XLA reports running out of memory as a RuntimeError / XlaRuntimeError
        if "RESOURCE_EXHAUSTED" in str(error) or "out of memory" in str(error).lower():
            return {"error": "out of memory"}
        raise
    stats = device.memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return {**result, "peak_mb": (stats["peak_bytes_in_use"] - base) / 2**20,
                "memory": "jax peak_bytes_in_use above the weights (the process's peak so far)"}
    return {**result, "peak_mb": rss_peak_mb(), "memory": "RSS"}


if __name__ == "__main__":
    sys.exit(main())
