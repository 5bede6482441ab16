"""The `longformer` command.

    longformer parity [CHECKPOINT] [--backends pt,...] [--seq-len N]   same batch in every backend, max differences
    longformer inspect CHECKPOINT                                       format, config, parameters, problems

CHECKPOINT is a folder, a weights file or a Hub id; `parity` defaults to the small checkpoint bundled in the package.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from typing import Any

import numpy as np

from .backends import BACKENDS, available_backends, load_backend
from .config import LongformerConfig

BUNDLED = os.path.join(os.path.dirname(__file__), "data", "tiny")
FIELDS = ("last_hidden_state", "pooler_output", "logits", "hidden_states", "attentions", "global_attentions")


def bundled_checkpoint() -> str:
    """Path of the tiny random checkpoint shipped in the package (no download needed)."""
    return BUNDLED


# ---------------------------------------------------------------------------------------------- parity
def make_batch(config: LongformerConfig, seq_len: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Two rows: one full with three global tokens, one padded with a single global token."""
    r = np.random.default_rng(seed)
    ids = r.integers(5, config.vocab_size, size=(2, seq_len))
    ids[:, 0] = config.bos_token_id
    mask = np.ones_like(ids)
    short = max(1, (2 * seq_len) // 3)
    mask[1, short:] = 0
    ids[1, short:] = config.pad_token_id
    glob = np.zeros_like(ids)
    glob[0, [0, seq_len // 2, seq_len - 1]] = 1
    glob[1, 0] = 1
    return {"input_ids": ids, "attention_mask": mask, "global_attention_mask": glob}


def _max_difference(a: Any, b: Any) -> float:
    if isinstance(a, tuple):
        return max((_max_difference(x, y) for x, y in zip(a, b, strict=True)), default=0.0)
    if a.shape != b.shape:
        return float("inf")
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0


def cmd_parity(args: argparse.Namespace) -> int:
    from converters.checkpoint import read_checkpoint
    from converters.names import guess_head

    from .hub import resolve_checkpoint
    from .reference import ReferenceModel

    path = args.checkpoint or BUNDLED
    config = LongformerConfig.from_pretrained(path)
    weights, shards = resolve_checkpoint(path)
    backends = args.backends.split(",") if args.backends else available_backends()
    if not backends:
        print("No backend is installed: pip install 'longformer[torch]' (or [flax], [tf]).", file=sys.stderr)
        return 2
    inputs = make_batch(config, args.seq_len)
    results: dict[str, dict[str, Any]] = {}
    timings: dict[str, float] = {}
    state = None if args.no_reference else read_checkpoint(weights, framework="numpy", shard_paths=shards)
    # The MLM head is compared too when the checkpoint has one; every other head runs its base model.
    masked_lm = guess_head(_headers(weights)[1] if state is None else state) == "LongformerForMaskedLM"
    head = "LongformerForMaskedLM" if masked_lm else "LongformerModel"
    if state is not None:
        t = time.perf_counter()
        results["numpy-reference"] = ReferenceModel(config, state)(**inputs)
        timings["numpy-reference"] = time.perf_counter() - t
    for name in backends:
        module = load_backend(name)
        model = getattr(module, head).from_pretrained(path)
        module.forward_numpy(model, inputs, output_attentions=True, output_hidden_states=True)  # warm-up
        t = time.perf_counter()
        results[name] = module.forward_numpy(model, inputs, output_attentions=True, output_hidden_states=True)
        timings[name] = time.perf_counter() - t

    print(f"checkpoint: {path}\nmodel: {head}, {config.num_hidden_layers} layers, hidden {config.hidden_size}, "
          f"windows {list(config.attention_windows)}\nbatch: 2 x {args.seq_len} tokens (one row padded), "
          f"global tokens 3 / 1; tolerance {args.tolerance:g}\n")
    names = list(results)
    fields = [f for f in FIELDS if all(results[n].get(f) is not None for n in names)]
    header = ["pair"] + fields
    rows, worst = [], 0.0
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            diffs = [_max_difference(results[a][f], results[b][f]) for f in fields]
            worst = max([worst, *diffs])
            rows.append([f"{a} vs {b}"] + [f"{d:.2e}" for d in diffs])
    widths = [max(len(str(r[c])) for r in [header, *rows]) for c in range(len(header))]
    for r in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)))
    print()
    for name in names:
        print(f"time {name}: {timings[name] * 1000:.1f} ms")
    if len(names) < 2:
        print("\nOnly one implementation ran: nothing to compare.")
        return 1
    ok = worst <= args.tolerance
    print(f"\n{'PASS' if ok else 'FAIL'}: largest difference {worst:.2e} (tolerance {args.tolerance:g})")
    return 0 if ok else 1


# ---------------------------------------------------------------------------------------------- inspect
def _headers(path: str) -> tuple[str, dict[str, tuple[tuple[int, ...], str]], list[str]]:
    """Format, {name: (shape, dtype)} and file list, reading safetensors headers only."""
    from converters.checkpoint import CheckpointError, checkpoint_format, read_checkpoint, read_index

    fmt = checkpoint_format(path)
    files = [path]
    if fmt.endswith("sharded"):
        files = [os.path.join(os.path.dirname(path), f) for f in sorted(set(read_index(path).values()))]
    tensors: dict[str, tuple[tuple[int, ...], str]] = {}
    for file in files:
        if file.endswith(".safetensors"):
            from safetensors import SafetensorError, safe_open

            try:
                with safe_open(file, framework="numpy") as f:
                    for key in f.keys():  # noqa: SIM118
                        s = f.get_slice(key)
                        tensors[key] = (tuple(s.get_shape()), s.get_dtype())
            except (SafetensorError, OSError) as e:
                raise CheckpointError(f"{file} is not a readable safetensors file: {e}") from e
        else:
            for key, value in read_checkpoint(file, framework="pt").items():
                tensors[key] = (tuple(value.shape), str(value.dtype).removeprefix("torch."))
    return fmt, tensors, files


def cmd_inspect(args: argparse.Namespace) -> int:
    from converters.checkpoint import CheckpointError
    from converters.names import canonical_shapes, guess_head, match_names

    from .hub import resolve_weights

    weights = resolve_weights(args.checkpoint)
    folder = os.path.dirname(weights)
    fmt, tensors, files = _headers(weights)
    head = guess_head(tensors)
    print(f"checkpoint: {weights}\nformat: {fmt} ({len(files)} file{'s' if len(files) > 1 else ''}, "
          f"{sum(os.path.getsize(f) for f in files) / 2**20:.1f} MiB)")
    print(f"architecture (from tensor names): {head}")
    count = sum(int(np.prod(shape)) for shape, _ in tensors.values())
    print(f"tensors: {len(tensors)}, parameters: {count:,}")
    print("dtypes: " + ", ".join(f"{d} x{n}" for d, n in Counter(d for _, d in tensors.values()).items()))
    problems = []
    try:
        config = LongformerConfig.from_pretrained(folder)
    except (FileNotFoundError, ValueError) as e:
        print(f"config: unavailable ({e})")
        return 1
    print(f"config: {config.num_hidden_layers} layers, hidden {config.hidden_size}, {config.num_attention_heads} "
          f"heads, ffn {config.intermediate_size}, vocab {config.vocab_size}, positions "
          f"{config.max_position_embeddings} (<= {config.max_position_embeddings - config.pad_token_id - 1} "
          f"tokens), windows {sorted(set(config.attention_windows))}, labels {config.num_labels}")
    expected = canonical_shapes(config, head)
    tied = ("lm_head.decoder.weight", "lm_head.decoder.bias") if head == "LongformerForMaskedLM" else ()
    try:
        report = match_names(expected, {k: s for k, (s, _) in tensors.items()},
                             model_has_prefix=head != "LongformerModel", tied=tied, source=weights)
        problems += [f"missing: {k}" for k in report.missing_keys]
        problems += [f"unused: {k}" for k in report.unexpected_keys]
    except CheckpointError as e:
        problems.append(str(e))
    print("problems: " + ("none" if not problems else "\n  " + "\n  ".join(problems)))
    return 1 if problems else 0


# ---------------------------------------------------------------------------------------------- entry point
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="longformer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("parity", help="run one batch in every installed backend and compare all outputs")
    p.add_argument("checkpoint", nargs="?", help="folder, file or Hub id (default: the bundled tiny checkpoint)")
    p.add_argument("--backends", help=f"comma-separated, from {sorted(BACKENDS)} (default: every installed one)")
    p.add_argument("--seq-len", type=int, default=100, help="tokens per row (default 100)")
    p.add_argument("--tolerance", type=float, default=1e-5, help="largest allowed difference (default 1e-5)")
    p.add_argument("--no-reference", action="store_true", help="skip the NumPy reference (large models)")
    p.set_defaults(func=cmd_parity)
    p = sub.add_parser("inspect", help="format, config summary, parameter count, dtypes, shards and problems")
    p.add_argument("checkpoint", help="folder, file or Hub id")
    p.set_defaults(func=cmd_inspect)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
