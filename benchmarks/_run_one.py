"""Run one (implementation, length, globals) forward measurement in a fresh process; print one JSON line.

Each measurement gets its own process so that allocator state and peak RSS belong to it alone.
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
    ap.add_argument("--impl", choices=["ours", "hf"], required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--globals", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--layers", type=int, default=12)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    kw = dict(vocab_size=50265, hidden_size=768, num_hidden_layers=args.layers, num_attention_heads=12,
              intermediate_size=3072, max_position_embeddings=max(4098, args.n + 2), type_vocab_size=1,
              layer_norm_eps=1e-5, attention_window=512)
    if args.impl == "hf":
        import transformers

        transformers.logging.set_verbosity_error()
        model = transformers.LongformerModel(transformers.LongformerConfig(**kw)).eval()
    else:
        from longformer import LongformerConfig
        from longformer.pt import LongformerModel

        model = LongformerModel(LongformerConfig(**kw)).eval()
    ids = torch.randint(3, 50265, (1, args.n))
    gmask = torch.zeros(1, args.n, dtype=torch.long)
    gmask[0, : args.globals] = 1
    kwargs = {"global_attention_mask": gmask} if args.globals else {}
    base = rss_mb()
    times = []
    with torch.no_grad():
        for _ in range(args.repeat + 1):  # first call is the warm-up
            t = time.perf_counter()
            model(ids, **kwargs)
            times.append(time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"impl": args.impl, "n": args.n, "globals": args.globals, "time_s": min(times[1:]),
                      "warmup_s": times[0], "peak_above_weights_mb": peak - base, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
