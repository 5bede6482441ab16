"""One implementation, one length, in a fresh process: forward time without and with one global token.

The two cases alternate in the same process (so the global token's cost is measured against the same state),
after one warm-up call of each. Prints one JSON line.
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
    ap.add_argument("--impl", choices=["pt", "hf", "flax", "tf-eager", "tf-xla"], required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--repeat", type=int, default=2, help="timed calls of each case")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--layers", type=int, default=12)
    args = ap.parse_args()

    if args.impl == "flax":
        return run_flax(args)
    if args.impl.startswith("tf"):
        return run_tf(args)
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    kw = config_kwargs(args)
    if args.impl == "hf":
        import transformers

        transformers.logging.set_verbosity_error()
        model = transformers.LongformerModel(transformers.LongformerConfig(**kw)).eval()
    else:
        from longformer import LongformerConfig
        from longformer.pt import LongformerModel

        model = LongformerModel(LongformerConfig(**kw)).eval()
    ids = torch.randint(3, 50265, (1, args.n))
    one_global = torch.zeros(1, args.n, dtype=torch.long)
    one_global[0, 0] = 1
    cases = {0: {}, 1: {"global_attention_mask": one_global}}
    base = rss_mb()
    times: dict[int, list[float]] = {0: [], 1: []}
    with torch.no_grad():
        for kwargs in cases.values():  # warm-up
            model(ids, **kwargs)
        for _ in range(args.repeat):
            for g, kwargs in cases.items():
                t = time.perf_counter()
                model(ids, **kwargs)
                times[g].append(time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"impl": args.impl, "n": args.n, "time_s": {g: min(t) for g, t in times.items()},
                      "peak_above_weights_mb": peak - base, "torch": torch.__version__}))


def config_kwargs(args) -> dict:
    return dict(vocab_size=50265, hidden_size=768, num_hidden_layers=args.layers, num_attention_heads=12,
                intermediate_size=3072, max_position_embeddings=max(4098, args.n + 2), type_vocab_size=1,
                layer_norm_eps=1e-5, attention_window=512)


def run_flax(args) -> None:
    """longformer.flax: the first call (trace + XLA compile) is reported apart from the steady-state time."""
    import jax
    import numpy as np

    from longformer import LongformerConfig
    from longformer.flax import LongformerModel

    model = LongformerModel(LongformerConfig(**config_kwargs(args)))
    model.eval()
    r = np.random.default_rng(0)
    ids = r.integers(3, 50265, (1, args.n))
    one_global = np.zeros((1, args.n), dtype=np.int64)
    one_global[0, 0] = 1
    cases = {0: {}, 1: {"global_attention_mask": one_global}}
    base = rss_mb()
    compile_s = {}
    for g, kwargs in cases.items():
        t = time.perf_counter()
        jax.block_until_ready(model(ids, **kwargs).last_hidden_state)
        compile_s[g] = time.perf_counter() - t
    times: dict[int, list[float]] = {0: [], 1: []}
    for _ in range(args.repeat):
        for g, kwargs in cases.items():
            t = time.perf_counter()
            jax.block_until_ready(model(ids, **kwargs).last_hidden_state)
            times[g].append(time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"impl": "flax", "n": args.n, "time_s": {g: min(t) for g, t in times.items()},
                      "first_call_s": compile_s, "peak_above_weights_mb": peak - base, "jax": jax.__version__}))


def run_tf(args) -> None:
    """longformer.tf eagerly, or under `tf.function(jit_compile=True)` with the global-slot count as a static
    argument; the first call (trace + compile) is reported apart from the steady-state time."""
    import numpy as np
    import tensorflow as tf

    from longformer import LongformerConfig
    from longformer.tf import LongformerModel

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    model = LongformerModel(LongformerConfig(**config_kwargs(args)))
    r = np.random.default_rng(0)
    ids = tf.constant(r.integers(3, 50265, (1, args.n)), tf.int32)
    one_global = np.zeros((1, args.n), dtype=np.int32)
    one_global[0, 0] = 1
    cases = {0: {}, 1: {"global_attention_mask": tf.constant(one_global)}}
    if args.impl == "tf-xla":
        compiled = {g: tf.function(lambda ids, kw, g=g: model(input_ids=ids, **kw, num_global_slots=g)
                                   .last_hidden_state, jit_compile=True) for g in cases}

        def run(g, kwargs):
            return compiled[g](ids, kwargs)
    else:
        def run(g, kwargs):
            return model(input_ids=ids, **kwargs).last_hidden_state
    base = rss_mb()
    first = {}
    for g, kwargs in cases.items():
        t = time.perf_counter()
        run(g, kwargs).numpy()
        first[g] = time.perf_counter() - t
    times: dict[int, list[float]] = {0: [], 1: []}
    for _ in range(args.repeat):
        for g, kwargs in cases.items():
            t = time.perf_counter()
            run(g, kwargs).numpy()
            times[g].append(time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"impl": args.impl, "n": args.n, "time_s": {g: min(t) for g, t in times.items()},
                      "first_call_s": first, "peak_above_weights_mb": peak - base, "tf": tf.__version__}))


if __name__ == "__main__":
    main()
