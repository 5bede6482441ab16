"""The `longformer` command.

    longformer convert SRC DST --to {safetensors,pt,tf,flax,onnx}   convert, then check both give the same outputs
    longformer parity [CHECKPOINT] [--backends pt,...] [--seq-len N]   same batch in every backend, max differences
    longformer inspect CHECKPOINT                                       format, config, parameters, problems
    longformer from-roberta SRC DST [--max-positions 4096] [--attention-window 512]   RoBERTa -> Longformer

CHECKPOINT, SRC: a folder, a weights file or a Hub id; `parity` defaults to the small checkpoint bundled in the
package. Exit status: 0 success, 1 outputs differ beyond the tolerance or are not finite (or problems found),
2 an error (bad input, unreadable file, ...: one line on stderr; --debug or LONGFORMER_DEBUG=1 shows the traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys
import time
from collections import Counter
from typing import Any

import numpy as np

from . import __version__, bundled_checkpoint, semantics
from .backends import BACKENDS, available_backends, load_backend
from .config import LongformerConfig
from .semantics import max_tokens

BUNDLED = bundled_checkpoint()
FIELDS = ("last_hidden_state", "pooler_output", "logits", "start_logits", "end_logits", "hidden_states", "attentions",
          "global_attentions")


class Steps:
    """Long work, named on stderr before it starts and timed when it ends ("verify: loading the result in tf ...
    3.2 s"); nothing with --quiet. Progress bars (tqdm) only where stderr is a terminal: CI logs stay clean."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet

    @property
    def bars(self) -> bool:
        return not self.quiet and sys.stderr.isatty()

    @contextlib.contextmanager
    def __call__(self, what: str, bar: bool = False):
        """`what ... 1.2 s` on one line; a step showing a bar (`bar=True`, on a terminal) gets its own lines."""
        own_line = bar and self.bars
        if not self.quiet:
            print(f"{what} ...", end="\n" if own_line else "", file=sys.stderr, flush=True)
        start = time.perf_counter()
        try:
            yield
        except BaseException:
            if not self.quiet:
                print(f"{what}: failed" if own_line else " failed", file=sys.stderr, flush=True)
            raise
        if not self.quiet:
            took = f"{time.perf_counter() - start:.1f} s"
            print(f"{what}: {took}" if own_line else f" {took}", file=sys.stderr, flush=True)


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
    """Largest absolute difference of two outputs (tuples: over their members); NaN when either side holds a
    NaN or an infinity, so that a comparison `d <= tolerance` fails."""
    if isinstance(a, tuple):
        diffs = [_max_difference(x, y) for x, y in zip(a, b, strict=True)]
        return float("nan") if any(np.isnan(d) for d in diffs) else max(diffs, default=0.0)
    if a.shape != b.shape:
        return float("inf")
    if not a.size:
        return 0.0
    a, b = a.astype(np.float64), b.astype(np.float64)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("nan")
    return float(np.max(np.abs(a - b)))


def _non_finite(outputs: dict[str, Any], fields: list[str]) -> list[str]:
    """The fields of one implementation's outputs that hold a NaN or an infinity."""
    def bad(value):
        if isinstance(value, tuple):
            return any(bad(v) for v in value)
        return not np.isfinite(np.asarray(value, dtype=np.float64)).all()

    return [f for f in fields if outputs.get(f) is not None and bad(outputs[f])]


def _verdict(results: dict[str, dict[str, Any]], fields: list[str], worst: float, tolerance: float,
             option: str) -> bool:
    """Print PASS or FAIL. A NaN or infinity in any output is a FAIL, named by implementation and field."""
    if not _all_finite(results, fields):
        return False
    ok = worst <= tolerance
    print(f"{'PASS' if ok else 'FAIL'}: largest difference {worst:.2e} ({option} {tolerance:g})")
    return ok


def _all_finite(results: dict[str, dict[str, Any]], fields: list[str]) -> bool:
    """False, after printing FAIL naming implementation and field, when any output holds a NaN or an infinity."""
    broken = {name: _non_finite(out, fields) for name, out in results.items()}
    broken = {name: bad for name, bad in broken.items() if bad}
    if broken:
        where = "; ".join(f"{name}: {', '.join(bad)}" for name, bad in broken.items())
        print(f"FAIL: outputs are not finite (NaN or inf) in {where}")
    return not broken


def _worst(diffs: list[float]) -> float:
    return float("nan") if any(np.isnan(d) for d in diffs) else max(diffs, default=0.0)


def check_seq_len(config: LongformerConfig, seq_len: int, option: str = "--seq-len") -> None:
    """A test batch length the model can take: at least 1, at most the position table's capacity."""
    most = max_tokens(config)
    if not 1 <= seq_len <= most:
        raise ValueError(f"{option} {seq_len} does not fit this model: it takes 1 to {most} tokens "
                         f"(max_position_embeddings {config.max_position_embeddings}, pad_token_id "
                         f"{config.pad_token_id}).")


def _check_fits(config: LongformerConfig, weights: str, shards: list[str] | None) -> None:
    """Raise `CheckpointError` (naming the file and tensor) when the weights do not fit the config."""
    from converters.convert import plan
    from converters.formats import open_checkpoint

    with open_checkpoint(weights, shards) as source:
        plan(source, config, weights)


def cmd_parity(args: argparse.Namespace) -> int:
    from converters.checkpoint import read_checkpoint
    from converters.names import guess_head

    from .hub import resolve_checkpoint
    from .reference import ReferenceModel

    path = args.checkpoint or BUNDLED
    hub = {k: v for k, v in _hub_options(args).items() if v is not None}
    if args.tolerance is None:
        args.tolerance = default_tolerance(args.device, 1e-5)
    config = LongformerConfig.from_pretrained(path, **hub)
    if args.seq_len is None:
        args.seq_len = min(100, max_tokens(config))
    check_seq_len(config, args.seq_len)
    weights, shards = resolve_checkpoint(path, **hub)
    _check_fits(config, weights, shards)
    backends = args.backends.split(",") if args.backends else available_backends()
    if not backends:
        raise ImportError("No backend is installed: pip install 'longformer[torch]' (or [flax], [tf]).")
    for name in backends:
        if name == "onnx":
            from ._frameworks import require

            require("onnxruntime")
        elif name not in BACKENDS:
            load_backend(name)  # raises the error that lists the backends
    inputs = make_batch(config, args.seq_len)
    results: dict[str, dict[str, Any]] = {}
    timings: dict[str, float] = {}
    state = None if args.no_reference else read_checkpoint(weights, framework="numpy", shard_paths=shards)
    # The MLM head is compared too when the checkpoint has one; every other head runs its base model. An ONNX
    # export runs its own head only: every backend runs that one.
    found = guess_head(_headers(weights, shards)[1] if state is None else state)
    head = found if found == "LongformerForMaskedLM" or os.path.basename(weights) == "model.onnx" else "LongformerModel"
    if head == "LongformerForMultipleChoice":
        inputs = {k: v[None] for k, v in inputs.items()}  # one example, two choices
        state = None  # the NumPy reference runs rows, not choices
    steps = Steps(args.quiet)
    if state is not None:
        with steps("parity: the NumPy reference"):
            t = time.perf_counter()
            results["numpy-reference"] = ReferenceModel(config, state)(**inputs)
            timings["numpy-reference"] = time.perf_counter() - t
    tmp = None
    for name in backends:
        with steps(f"parity: loading {name}"):
            if name == "onnx":
                from . import onnx as module

                model, tmp = _onnx_model(weights, shards, config, head)
            else:
                module = load_backend(name)
                with _device_scope(name, args.device):
                    model = getattr(module, head).from_pretrained(path, device=args.device, **hub)
        with steps(f"parity: running {name}"), _device_scope(name, args.device):
            module.forward_numpy(model, inputs, output_attentions=True, output_hidden_states=True)  # warm-up
            t = time.perf_counter()
            results[name] = module.forward_numpy(model, inputs, output_attentions=True, output_hidden_states=True)
            timings[name] = time.perf_counter() - t

    print(f"checkpoint: {path}\nmodel: {head}, {config.num_hidden_layers} layers, hidden {config.hidden_size}, "
          f"windows {list(config.attention_windows)}\nbatch: 2 x {args.seq_len} tokens (one row padded), "
          f"global tokens 3 / 1; tolerance {args.tolerance:g}"
          f"{'' if args.device is None else f'; device {args.device} (the NumPy reference and onnx: the CPU)'}\n")
    if tmp is not None:
        tmp.cleanup()
    names = list(results)
    fields = [f for f in FIELDS if sum(results[n].get(f) is not None for n in names) >= 2]
    header = ["pair"] + fields
    rows, all_diffs = [], []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            cells = []
            for f in fields:  # a field one side lacks (an ONNX export has no attentions) is not compared: "-"
                if results[a].get(f) is None or results[b].get(f) is None:
                    cells.append("-")
                    continue
                all_diffs.append(_max_difference(results[a][f], results[b][f]))
                cells.append(f"{all_diffs[-1]:.2e}")
            rows.append([f"{a} vs {b}"] + cells)
    widths = [max(len(str(r[c])) for r in [header, *rows]) for c in range(len(header))]
    for r in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)))
    print()
    for name in names:
        print(f"time {name}: {timings[name] * 1000:.1f} ms")
    if len(names) < 2:
        print("\nOnly one implementation ran: nothing to compare.")
        return 1
    compared = {n for r in rows if any(c != "-" for c in r[1:]) for n in r[0].split(" vs ")}
    if set(names) - compared:
        print(f"\nFAIL: {', '.join(sorted(set(names) - compared))} shares no output field with any other "
              "implementation: nothing of it was compared.")
        return 1
    print()
    return 0 if _verdict(results, fields, _worst(all_diffs), args.tolerance, "tolerance") else 1


def _onnx_model(weights: str, shards: list[str] | None, config: LongformerConfig, head: str):
    """The ONNX model parity runs: the checkpoint's own model.onnx, or `head` exported into a temporary folder
    (returned too, for cleaning up)."""
    import tempfile

    from converters.checkpoint import read_checkpoint

    from .onnx import LongformerOnnxModel, export

    if os.path.basename(weights) == "model.onnx":
        return LongformerOnnxModel.from_pretrained(os.path.dirname(weights)), None
    tmp = tempfile.TemporaryDirectory(prefix="longformer-parity-onnx-")
    config.save_pretrained(tmp.name)
    export(config, head, read_checkpoint(weights, shard_paths=shards), tmp.name)
    return LongformerOnnxModel.from_pretrained(tmp.name), tmp


# ---------------------------------------------------------------------------------------------- convert
# The framework each format comes from; a format whose framework is missing is checked in another installed one.
FORMAT_BACKEND = {"pt": "pt", "tf": "tf", "flax": "flax", "safetensors": "pt", "onnx": "pt"}
FP16_ONNX_MAX_ERROR = 5e-2  # an fp16 export computes in fp16 (the source runs in fp32 with fp16-rounded weights)
GPU_FP32_TOLERANCE = 1e-4  # fp32 on an accelerator (TF32 off) against the CPU


def _hub_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"revision": args.revision, "cache_dir": args.cache_dir, "token": args.token,
            "local_files_only": args.local_files_only or None}


def _pick_backend(fmt: str) -> str:
    installed = available_backends()
    preferred = FORMAT_BACKEND[fmt]
    return preferred if preferred in installed else (installed[0] if installed else "numpy-reference")


def _run_model(backend: str, head: str, path: str, config: LongformerConfig, inputs, state=None, hub=None,
               device: str | None = None):
    """Outputs of `head` loaded from `path` (or, given `state`, built from those canonical NumPy tensors), run on
    `device` (None: the framework's default; ONNX and the NumPy reference: the CPU)."""
    from converters.checkpoint import read_checkpoint

    from .hub import resolve_checkpoint
    from .reference import ReferenceModel

    if backend == "onnx":
        from .onnx import LongformerOnnxModel, forward_numpy

        return forward_numpy(LongformerOnnxModel.from_pretrained(path, **(hub or {})), inputs)
    if backend == "numpy-reference":
        if state is None:
            weights, shards = resolve_checkpoint(path, **(hub or {}))
            state = read_checkpoint(weights, shard_paths=shards)
        return ReferenceModel(config, state)(**inputs)
    import importlib

    module = load_backend(backend)
    cls = getattr(module, head)
    checkpoint = importlib.import_module(f"longformer.{backend}.checkpoint")
    with _device_scope(backend, device):
        if state is None:
            model = cls.from_pretrained(path, device=device, **(hub or {}))
        else:
            from converters.formats import numpy_to_torch

            model = cls(config)
            checkpoint.load_canonical_state(model, {k: numpy_to_torch(v) for k, v in state.items()}
                                            if backend == "pt" else state, source=path)
            if device is not None and backend != "tf":
                checkpoint.place(model, device)
            if hasattr(model, "eval"):
                model.eval()
        return module.forward_numpy(model, inputs, output_attentions=True, output_hidden_states=True)


def _device_scope(backend: str, device: str | None):
    """Where `backend` builds and runs on `device`: TensorFlow by scope (`tf.device`); PyTorch and JAX run where
    their weights are (from_pretrained(device=...)), so nothing."""
    if backend != "tf" or device is None:
        return contextlib.nullcontext()
    import tensorflow as tf

    from .tf.checkpoint import tf_device

    return tf.device(tf_device(device))


def default_tolerance(device: str | None, cpu: float) -> float:
    """A check's default bound: `cpu` on the CPU, 1e-4 (fp32 without TF32) on an accelerator."""
    return cpu if device is None or semantics.device_kind(device) == "cpu" else max(cpu, GPU_FP32_TOLERANCE)


def verify_conversion(src: str, dst: str, *, head: str, config: LongformerConfig, source_format: str,
                      target_format: str, dtype: str | None, seq_len: int, max_error: float,
                      hub: dict[str, Any] | None = None, steps: Steps | None = None, quantized: bool = False,
                      min_agreement: float = 0.99, device: str | None = None) -> int:
    """Run one batch through the source (in its framework) and the result (in its framework); print the largest
    difference per output field. With --dtype fp16/bf16 the source's weights are rounded the same way first, so
    the check measures the conversion, not the rounding. 0 if every field is within `max_error`, else 1.

    An ONNX result runs in onnxruntime, on the batch and also at lengths 1 and the first window + 1 (one graph
    serves every length). An int8-quantized one is judged by the share of positions whose argmax is unchanged
    (`min_agreement`); its largest differences are printed."""
    import warnings

    from converters.checkpoint import read_checkpoint
    from converters.convert import cast

    from .hub import resolve_checkpoint

    steps = steps or Steps(quiet=True)
    seq_len = min(seq_len, max_tokens(config))
    inputs = make_batch(config, seq_len)
    if head == "LongformerForMultipleChoice":
        inputs = {k: v[None] for k, v in inputs.items()}  # one example, two choices
    a, b = _pick_backend(source_format), "onnx" if target_format == "onnx" else _pick_backend(target_format)
    print(f"\nverify: {head}, batch 2 x {seq_len} tokens with global tokens and padding; source in {a}, result in "
          f"{b}{f', source weights rounded to {dtype}' if dtype not in (None, 'fp32') else ''}"
          f"{'' if device is None else f', on {device}'}", flush=True)
    state = None
    if dtype not in (None, "fp32") or a == "numpy-reference":
        with steps(f"verify: reading the source{' and rounding it to ' + dtype if dtype not in (None, 'fp32') else ''}"):
            weights, shards = resolve_checkpoint(src, **(hub or {}))
            state = read_checkpoint(weights, shard_paths=shards)
            if dtype not in (None, "fp32"):
                state = {k: cast(v, dtype).astype(v.dtype) for k, v in state.items()}
    batches = [inputs]
    if target_format == "onnx":
        batches += [_one_length(inputs, n) for n in sorted({1, min(seq_len, config.attention_windows[0] + 1)})
                    if n != seq_len]
    before, after = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unused-pooler and similar loading notes are not the point here
        with steps(f"verify: the source in {a}"):
            runs = [_run_model(a, head, src, config, batch, state, hub, device) for batch in batches]
        with steps(f"verify: the result in {b}"):
            results = [_run_model(b, head, dst, config, batch, device=device) for batch in batches]
    fields = [f for f in runs[0] if f in results[0] and runs[0][f] is not None and results[0][f] is not None
              and f != "loss"]
    if len(batches) > 1:
        print(f"  lengths {', '.join(str(batch['input_ids'].shape[-1]) for batch in batches)}")
    diffs = []
    width = max(len(f) for f in fields)
    for field in fields:
        before[field] = tuple(r[field] for r in runs)
        after[field] = tuple(r[field] for r in results)
        diffs.append(_max_difference(before[field], after[field]))
        print(f"  {field.ljust(width)}  {diffs[-1]:.2e}")
    outputs = {f"source ({a})": before, f"result ({b})": after}
    if quantized:
        ok = _agreement_verdict(outputs, fields, min_agreement)
    else:
        ok = _verdict(outputs, fields, _worst(diffs), max_error, "--max-error")
    return 0 if ok else 1


def _one_length(inputs: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """The verification batch cut to `n` tokens (a global token kept at the start of each row)."""
    out = {k: v[..., :n].copy() for k, v in inputs.items()}
    out["attention_mask"][..., 0] = 1
    return out


def _agreement_verdict(results: dict[str, dict[str, Any]], fields: list[str], min_agreement: float) -> bool:
    """PASS when the result's argmax over the last axis (the predicted class of every position, or the answer
    start and end) equals the source's at a share of at least `min_agreement` positions, over every logits field
    (the base model: its hidden states)."""
    if not _all_finite(results, fields):
        return False
    source, result = results.values()
    judged = [f for f in fields if f.endswith("logits")] or fields[:1]
    same = total = 0
    for field in judged:
        for x, y in zip(source[field], result[field], strict=True):
            same += int((np.argmax(x, -1) == np.argmax(y, -1)).sum())
            total += int(np.argmax(x, -1).size)
    share = same / max(total, 1)
    ok = share >= min_agreement
    print(f"{'PASS' if ok else 'FAIL'}: argmax agreement {share:.1%} over {total} predictions of {', '.join(judged)} "
          f"(--min-agreement {min_agreement:.0%})")
    return ok


def cmd_convert(args: argparse.Namespace) -> int:
    from converters.convert import convert
    from converters.formats import weights_format

    from .hub import checkpoint_config, resolve_weights

    hub = {k: v for k, v in _hub_options(args).items() if v is not None}
    source_format = weights_format(resolve_weights(args.src, **hub))[0]
    if args.seq_len is not None and not args.no_verify:
        check_seq_len(checkpoint_config(args.src, None, **hub)[0], args.seq_len)
    if args.to == "onnx" and not args.no_verify:
        from ._frameworks import require

        require("onnxruntime")  # before writing anything: the export is verified in onnxruntime
    onnx = {"head": args.head, "opset": args.opset, "quantize": args.quantize}  # convert() refuses them elsewhere
    steps = Steps(args.quiet)
    t = time.perf_counter()
    with steps(f"converting {args.src} to {args.to}", bar=True):
        result = convert(args.src, args.dst, args.to, dtype=args.dtype, max_shard_size=args.max_shard_size,
                         force=args.force, progress=steps.bars, **onnx, **hub)
    dtype = f", {args.dtype}" if args.dtype else ""
    print(f"converted {args.src} ({source_format}) -> {result.folder} ({args.to}{dtype}"
          f"{', int8' if args.quantize else ''}): {result.head}, {result.tensors} tensors, "
          f"{result.nbytes / 2**20:.1f} MiB in {len(result.files)} file{'s' if len(result.files) > 1 else ''}, "
          f"{time.perf_counter() - t:.1f} s", flush=True)
    if result.carried:
        print(f"copied unchanged (no Longformer class uses them): {result.carried}")
    if args.no_verify:
        return 0
    max_error = args.max_error
    if max_error is None:
        max_error = FP16_ONNX_MAX_ERROR if args.to == "onnx" and args.dtype == "fp16" else default_tolerance(
            args.device, 5e-5)
    return verify_conversion(args.src, result.folder, head=result.head, config=result.config,
                             source_format=source_format, target_format=args.to, dtype=args.dtype,
                             seq_len=args.seq_len or 64, max_error=max_error, hub=hub, steps=steps,
                             quantized=bool(args.quantize), min_agreement=args.min_agreement, device=args.device)


def cmd_from_roberta(args: argparse.Namespace) -> int:
    from converters.convert import from_roberta

    try:
        windows = [int(w) for w in args.attention_window.split(",")]
    except ValueError:
        raise ValueError(f"--attention-window {args.attention_window!r}: give even integers, one (512) or one per "
                         "layer (256,512,...).") from None
    steps = Steps(args.quiet)
    t = time.perf_counter()
    with steps(f"converting RoBERTa {args.src} to a Longformer", bar=True):
        result = from_roberta(args.src, args.dst, max_positions=args.max_positions,
                              attention_window=windows[0] if len(windows) == 1 else windows, to=args.to,
                              dtype=args.dtype, max_shard_size=args.max_shard_size, force=args.force,
                              progress=steps.bars, **_hub_options(args))
    print(f"converted RoBERTa {args.src} -> Longformer {result.folder} ({args.to}): {result.head}, "
          f"{max_tokens(result.config)} positions, windows "
          f"{sorted(set(result.config.attention_windows))}, {result.tensors} tensors, {result.nbytes / 2**20:.1f} MiB, "
          f"{time.perf_counter() - t:.1f} s")
    return 0


# ---------------------------------------------------------------------------------------------- inspect
def _headers(path: str, shard_paths: list[str] | None = None):
    """Format, {name: (shape, dtype)} and file list (safetensors and h5: headers only, no tensor read)."""
    from converters.formats import open_checkpoint

    with open_checkpoint(path, shard_paths) as source:
        tensors = {k: (e.shape, e.dtype.name) for k, e in source.entries.items()}
        return source.format + ("-sharded" if len(source.files) > 1 or path.endswith(".index.json") else ""), \
            tensors, source.files


def cmd_inspect(args: argparse.Namespace) -> int:
    from converters.checkpoint import CheckpointError
    from converters.names import canonical_shapes, guess_head, match_names

    from .hub import resolve_checkpoint

    hub = {k: v for k, v in _hub_options(args).items() if v is not None}
    weights, shards = resolve_checkpoint(args.checkpoint, **hub)
    folder = os.path.dirname(weights)
    fmt, tensors, files = _headers(weights, shards)
    head = guess_head(tensors)
    print(f"checkpoint: {weights}\nformat: {fmt} ({len(files)} file{'s' if len(files) > 1 else ''}, "
          f"{sum(os.path.getsize(f) for f in files) / 2**20:.1f} MiB)")
    if len(files) > 1:
        print("shards: " + ", ".join(f"{os.path.basename(f)} ({os.path.getsize(f) / 2**20:.1f} MiB)" for f in files))
    print(f"architecture (from tensor names): {head}")
    count = sum(int(np.prod(shape)) for shape, _ in tensors.values())
    print(f"tensors: {len(tensors)}, parameters: {count:,}")
    print("dtypes: " + ", ".join(f"{d} x{n}" for d, n in Counter(d for _, d in tensors.values()).items()))
    problems = []
    try:
        config = LongformerConfig.from_pretrained(folder if os.path.isfile(args.checkpoint) else args.checkpoint,
                                                  **hub)
    except (FileNotFoundError, ValueError) as e:
        print(f"config: unavailable ({e})")
        return 1
    print(f"config: {config.num_hidden_layers} layers, hidden {config.hidden_size}, {config.num_attention_heads} "
          f"heads, ffn {config.intermediate_size}, vocab {config.vocab_size}, positions "
          f"{config.max_position_embeddings} (<= {max_tokens(config)} "
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
def _versions() -> str:
    """Python and the installed frameworks, without importing them."""
    from importlib.metadata import PackageNotFoundError, version

    found = [f"Python {sys.version.split()[0]}"]
    for package in ("torch", "jax", "flax", "tensorflow", "tensorflow-cpu", "keras"):
        try:
            found.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            pass
    return ", ".join(found)


def device_name(value: str) -> str:
    """--device: a device name (`semantics.device_spec`), refused by the parser, before anything loads or is
    written."""
    try:
        semantics.device_spec(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="longformer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    parser.add_argument("--version", action="version", version=f"longformer {__version__} ({_versions()})")
    sub = parser.add_subparsers(dest="command", required=True)
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the full traceback of an error (or set LONGFORMER_DEBUG=1)")
    debug.add_argument("--quiet", action="store_true", help="no progress on stderr (steps, bars)")

    def hub_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--revision", help="Hub branch, tag or commit (Hub ids only)")
        p.add_argument("--cache-dir", help="Hugging Face cache folder")
        p.add_argument("--token", help="Hub token for private repositories")
        p.add_argument("--local-files-only", action="store_true", help="use the local Hub cache only")

    def output_options(p: argparse.ArgumentParser, formats) -> None:
        p.add_argument("--to", choices=formats, default="safetensors", help="output format (default safetensors)")
        p.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], help="round floating tensors (default: keep)")
        p.add_argument("--max-shard-size", help="split the output into shards of at most this size (e.g. 2GB)")
        p.add_argument("--force", action="store_true", help="replace DST if it exists")

    from converters.convert import TARGETS
    from converters.formats import FORMATS

    from .onnx.graph import HEADS, OPSET

    p = sub.add_parser("convert", parents=[debug],
                       help="convert a checkpoint to another format, then verify the outputs match")
    p.add_argument("src", help="folder, weights file or Hub id")
    p.add_argument("dst", help="output folder (created; must not exist unless --force)")
    output_options(p, TARGETS)
    p.add_argument("--head", choices=HEADS, help="--to onnx: the model class to export (default: the checkpoint's)")
    p.add_argument("--opset", type=int, help=f"--to onnx: ONNX opset (default {OPSET})")
    p.add_argument("--quantize", choices=["int8"], help="--to onnx: int8 dynamic quantization of the linear layers "
                   "(verified by argmax agreement, see --min-agreement)")
    p.add_argument("--max-error", type=float, help="largest allowed output difference (default 5e-5; 5e-2 for an "
                   "fp16 ONNX export, which computes in fp16)")
    p.add_argument("--min-agreement", type=float, default=0.99, help="--quantize int8: smallest allowed share of "
                   "positions whose predicted class (argmax) is unchanged (default 0.99)")
    p.add_argument("--no-verify", action="store_true", help="skip loading both and comparing outputs")
    p.add_argument("--device", type=device_name, help="verify on this device: cpu, gpu, gpu:INDEX (default: each "
                   "framework's own; onnx runs on the CPU)")
    p.add_argument("--seq-len", type=int, help="tokens per row in the check (default 64, or the most the model "
                   "takes when that is fewer)")
    hub_options(p)
    p.set_defaults(func=cmd_convert)
    p = sub.add_parser("parity", parents=[debug],
                       help="run one batch in every installed backend and compare all outputs")
    p.add_argument("checkpoint", nargs="?", help="folder, file or Hub id (default: the bundled tiny checkpoint)")
    p.add_argument("--backends", help=f"comma-separated, from {sorted(BACKENDS) + ['onnx']} (default: every "
                   "installed one; onnx runs CHECKPOINT's model.onnx, or exports it first)")
    p.add_argument("--seq-len", type=int, help="tokens per row (default 100, or the most the model takes when that "
                   "is fewer)")
    p.add_argument("--tolerance", type=float, help="largest allowed difference (default 1e-5; 1e-4 on a GPU)")
    p.add_argument("--no-reference", action="store_true", help="skip the NumPy reference (large models)")
    p.add_argument("--device", type=device_name, help="run the backends on this device: cpu, gpu, gpu:INDEX "
                   "(default: each framework's own; the NumPy reference and onnx run on the CPU)")
    hub_options(p)
    p.set_defaults(func=cmd_parity)
    p = sub.add_parser("inspect", parents=[debug],
                       help="format, config summary, parameter count, dtypes, shards and problems")
    p.add_argument("checkpoint", help="folder, file or Hub id")
    hub_options(p)
    p.set_defaults(func=cmd_inspect)
    p = sub.add_parser("from-roberta", parents=[debug],
                       help="a Longformer checkpoint from a Hugging Face RoBERTa one (paper recipe)")
    p.add_argument("src", help="RoBERTa folder, weights file or Hub id (config.json beside it)")
    p.add_argument("dst", help="output folder")
    p.add_argument("--max-positions", type=int, default=4096, help="longest input in tokens (default 4096)")
    p.add_argument("--attention-window", default="512",
                   help="window of every layer, or one per layer comma-separated (even numbers; default 512)")
    output_options(p, FORMATS)
    hub_options(p)
    p.set_defaults(func=cmd_from_roberta)
    return parser


EXPECTED_ERRORS = (FileNotFoundError, FileExistsError, PermissionError, ValueError, ImportError, OSError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = getattr(args, "debug", False) or os.environ.get("LONGFORMER_DEBUG", "") not in ("", "0")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("error: interrupted (nothing half-written is left behind)", file=sys.stderr)
        return 130
    except Exception as e:  # one line for the user; the traceback with --debug
        if debug:
            raise
        print(f"error: {error_message(e)}", file=sys.stderr)
        return 2


def error_message(error: Exception) -> str:
    """One line saying what is wrong: our own messages as they are, OS errors with the file they concern, and
    anything unexpected as an internal error to report."""
    if isinstance(error, OSError) and not isinstance(error, (FileNotFoundError, FileExistsError)) and \
            error.strerror:
        text = f"{error.strerror}{': ' + str(error.filename) if error.filename else ''}"
        if error.errno == errno.ENOSPC:
            text += " (free some space, or write elsewhere; nothing half-written was left behind)"
    elif isinstance(error, EXPECTED_ERRORS):
        text = str(error) or type(error).__name__
    else:
        text = (f"internal error ({type(error).__name__}: {error}); please report it with the output of the same "
                "command run with --debug")
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
