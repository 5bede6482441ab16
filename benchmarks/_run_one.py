"""One implementation, one length, in a fresh process: forward time without and with one global token.

The two cases alternate in the same process (so the global token's cost is measured against the same state),
after one first (warm-up) call of each. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import resource
import time


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--impl", choices=["pt", "hf", "flax", "tf-eager", "tf-xla", "onnx", "onnx-int8"], required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--repeat", type=int, default=2, help="timed calls of each case")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--window", type=int, default=512, help="attention_window of every layer")
    args = ap.parse_args()
    build = {"flax": run_flax, "tf": run_tf, "onnx": run_onnx}.get(args.impl.split("-")[0], run_torch)
    run, versions = build(args)
    print(json.dumps({"impl": args.impl, "n": args.n, "window": args.window, **measure(run, args.repeat),
                      **versions}))


def measure(run, repeat: int) -> dict:
    """Time `run(g)` (g = 0 or 1 global token; it returns when the result is ready): one first call of each
    case (for compiled implementations: trace + compile), then `repeat` timed calls of each, alternating.
    Memory is the peak RSS above the RSS once the model is built."""
    base = rss_mb()
    first, times = {}, {0: [], 1: []}
    for g in (0, 1):
        t = time.perf_counter()
        run(g)
        first[g] = time.perf_counter() - t
    for _ in range(repeat):
        for g in (0, 1):
            t = time.perf_counter()
            run(g)
            times[g].append(time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"time_s": {g: min(t) for g, t in times.items()}, "first_call_s": first,
            "peak_above_weights_mb": peak - base}


def config_kwargs(args) -> dict:
    return dict(vocab_size=50265, hidden_size=768, num_hidden_layers=args.layers, num_attention_heads=12,
                intermediate_size=3072, max_position_embeddings=max(4098, args.n + 2), type_vocab_size=1,
                layer_norm_eps=1e-5, attention_window=args.window)


def inputs(n: int):
    """Random ids (1, n) and a global mask with one global token, as NumPy arrays."""
    import numpy as np

    ids = np.random.default_rng(0).integers(3, 50265, (1, n))
    one_global = np.zeros((1, n), dtype=np.int64)
    one_global[0, 0] = 1
    return ids, one_global


def torch_model(args, head: str):
    """Hugging Face's (`--impl hf`) or longformer.pt's `head`, random weights (seed 0), on `--threads` threads."""
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    kw = config_kwargs(args)
    if args.impl == "hf":
        import transformers

        transformers.logging.set_verbosity_error()
        return getattr(transformers, head)(transformers.LongformerConfig(**kw))
    import longformer.pt
    from longformer import LongformerConfig

    return getattr(longformer.pt, head)(LongformerConfig(**kw))


def run_torch(args):
    """Hugging Face or longformer.pt, eval, under torch.no_grad()."""
    import torch

    model = torch_model(args, "LongformerModel").eval()
    ids, one_global = (torch.as_tensor(a) for a in inputs(args.n))
    cases = {0: {}, 1: {"global_attention_mask": one_global}}

    def run(g):
        with torch.no_grad():
            model(ids, **cases[g])

    return run, {"torch": torch.__version__}


def run_flax(args):
    """longformer.flax (compiled by default)."""
    import jax

    from longformer import LongformerConfig
    from longformer.flax import LongformerModel

    model = LongformerModel(LongformerConfig(**config_kwargs(args)))
    model.eval()
    ids, one_global = inputs(args.n)
    cases = {0: {}, 1: {"global_attention_mask": one_global}}

    def run(g):
        jax.block_until_ready(model(ids, **cases[g]).last_hidden_state)

    return run, {"jax": jax.__version__}


def run_tf(args):
    """longformer.tf eagerly, or under `tf.function(jit_compile=True)` with the global-slot count static."""
    import tensorflow as tf

    from longformer import LongformerConfig
    from longformer.tf import LongformerModel

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    model = LongformerModel(LongformerConfig(**config_kwargs(args)))
    ids, one_global = (tf.constant(a, tf.int32) for a in inputs(args.n))
    cases = {0: {}, 1: {"global_attention_mask": one_global}}

    def forward(g):
        return model(input_ids=ids, **cases[g], num_global_slots=g if args.impl == "tf-xla" else None)

    compiled = {g: tf.function(lambda g=g: forward(g).last_hidden_state, jit_compile=True) for g in cases}

    def run(g):
        (compiled[g]() if args.impl == "tf-xla" else forward(g).last_hidden_state).numpy()

    return run, {"tf": tf.__version__}


def run_onnx(args):
    """The `longformer convert --to onnx` graph of longformer.pt's random weights, in onnxruntime (CPU);
    `onnx-int8` after `--quantize int8`. Built and exported before the memory baseline is taken."""
    import tempfile

    import onnxruntime as ort
    import torch

    from longformer import LongformerConfig
    from longformer.onnx import LongformerOnnxModel, export, quantize
    from longformer.pt import LongformerModel

    torch.manual_seed(0)
    config = LongformerConfig(**config_kwargs(args))
    state = {k: v.numpy() for k, v in LongformerModel(config).state_dict().items()}
    folder = tempfile.mkdtemp()
    config.save_pretrained(folder)
    export(config, "LongformerModel", state, folder)
    del state
    if args.impl == "onnx-int8":
        quantize(folder)
    model = LongformerOnnxModel.from_pretrained(folder, threads=args.threads)
    ids, one_global = inputs(args.n)
    cases = {0: {}, 1: {"global_attention_mask": one_global}}

    def run(g):
        model(ids, **cases[g])

    return run, {"onnxruntime": ort.__version__}


if __name__ == "__main__":
    main()
